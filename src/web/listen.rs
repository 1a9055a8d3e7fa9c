//! The web listener: HTTP/1.1 with a header read timeout (which also ends
//! idle keep-alive connections) and a cap on open connections, so that
//! slow or idle clients cannot take the descriptors the monitor's checks
//! and store need.
//!
//! At the cap the listener stops accepting: further clients wait in the
//! kernel's backlog, which holds none of the process's descriptors, until
//! a connection ends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

/// How the web listener protects the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// A client must send a request's headers within this time after
    /// connecting or after its previous response; otherwise the connection
    /// is closed.
    pub header_timeout: Duration,
}

impl WebLimits {
    /// The limits for a process allowed `fd_limit` descriptors: a quarter
    /// of them, between 16 and 1,024, for the web; the rest stay for checks
    /// and the store.
    pub fn for_fd_limit(fd_limit: u64) -> WebLimits {
        WebLimits {
            max_connections: (fd_limit / 4).clamp(16, 1024) as usize,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets
/// requests under way finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: WebLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopped) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and the like: wait a moment rather than spin.
                    tracing::warn!(%error, "the web listener cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let (app, builder, mut stopped) = (app.clone(), builder.clone(), stopped.clone());
        connections.spawn(async move {
            let _slot = slot;
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(peer));
                    app.clone().call(request)
                });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = async { let _ = stopped.wait_for(|stop| *stop).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_takes_a_quarter_of_the_descriptors_within_bounds() {
        assert_eq!(WebLimits::for_fd_limit(1024).max_connections, 256);
        assert_eq!(WebLimits::for_fd_limit(40).max_connections, 16);
        assert_eq!(WebLimits::for_fd_limit(1 << 20).max_connections, 1024);
    }
}
