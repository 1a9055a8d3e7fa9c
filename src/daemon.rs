//! One way to start and stop a whole monitor: the store's writer thread,
//! the scheduled monitor, the delivery worker and the web, wired together
//! and stopped by one [`CancellationToken`]. `portwatch serve` parses its
//! arguments, calls [`start`], forwards signals, and prints the
//! [`Summary`]; tests start a daemon the same way.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::monitor::MonitorOptions;
use crate::monitor::daemon::Wiring;
use crate::monitor::stats::{Counts, MonitorStats};
use crate::notify::worker::DeliveryStats;
use crate::store::writer::{Fence, WriterStats};
use crate::store::{Backend, Storage, StoreError};
use crate::web::{AppState, WebLimits};

/// What to run.
pub struct Options {
    /// The store, open (see [`open`]).
    pub db: Backend,
    /// A configuration file, applied again by [`Running::reload`].
    pub config: Option<PathBuf>,
    /// The monitor's settings.
    pub monitor: MonitorOptions,
    /// The web interface, if any.
    pub web: Option<Web>,
    /// Whether this daemon delivers the outbox's notifications (else they
    /// wait in the store for a daemon that does).
    pub deliver: bool,
    /// On a node sharing the store: its share of the sensors and the
    /// location reports (see [`crate::node::Node::cluster`]). `None`:
    /// every sensor is this daemon's.
    pub share: Option<crate::monitor::daemon::Cluster>,
}

/// The web interface of a daemon.
pub struct Web {
    /// The listener, already bound (so that its address can be shown
    /// before anything starts).
    pub listener: tokio::net::TcpListener,
    /// Connection limits.
    pub limits: WebLimits,
    /// Builds the web's state from the store handle and the counters:
    /// metrics access, trusted proxies, public URL.
    pub configure: Box<dyn FnOnce(AppState) -> AppState + Send>,
}

/// A running daemon.
pub struct Running {
    shutdown: CancellationToken,
    reload: Arc<Notify>,
    db: Backend,
    config: Option<PathBuf>,
    stats: Arc<MonitorStats>,
    written: Arc<WriterStats>,
    fence: Arc<Fence>,
    monitor: JoinHandle<Result<(), StoreError>>,
    delivery: Option<(JoinHandle<()>, CancellationToken)>,
    web: Option<JoinHandle<()>>,
    writer: std::thread::JoinHandle<()>,
}

/// What a daemon did, once stopped.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Checks due, done, late and missed, with start lateness.
    pub checks: Counts,
    /// Results committed to the store.
    pub stored: u64,
    /// Results lost (the writer's queue was full, or its backlog overflowed).
    pub dropped: u64,
    /// Failed commits (each retried).
    pub write_errors: u64,
}

/// Applies a configuration file to the store; returns its sensor count.
pub async fn apply_file(db: &Backend, file: &Path) -> anyhow::Result<usize> {
    let config = crate::config::read_config(file)?;
    let summary = db.apply(config).await?;
    log_applied(file, &summary);
    Ok(summary.sensors)
}

/// Opens the store a daemon runs on, with the connections it holds open
/// at once besides the writer's.
pub async fn open(location: &crate::store::location::Location) -> Result<Backend, StoreError> {
    Backend::open(location, CONNECTIONS).await
}

fn log_applied(file: &Path, summary: &crate::store::ApplySummary) {
    tracing::info!(file = %file.display(), sensors = summary.sensors, added = summary.added, removed = summary.removed, "configuration applied");
}

/// The store connections a daemon holds open at once, besides the writer's.
const CONNECTIONS: usize = crate::web::MAX_STORE_CONNECTIONS;

/// Starts everything on the current Tokio runtime.
pub fn start(options: Options) -> Result<Running, StoreError> {
    let db = options.db;
    let (writer, writer_thread) = db.writer()?;
    let written = writer.stats.clone();
    let fence = writer.fence.clone();
    let stats = Arc::new(MonitorStats::default());
    let delivery_stats = Arc::new(DeliveryStats::default());
    let shutdown = CancellationToken::new();
    let reload = Arc::new(Notify::new());
    let notified = Arc::new(Notify::new());

    let web = options.web.map(|web| {
        let state = AppState::new(db.clone(), Some(stats.clone()), Some(written.clone()))
            .with_delivery_stats(delivery_stats.clone());
        let state = (web.configure)(state);
        state.warm();
        let app = crate::web::app(state);
        let stopped = shutdown.clone().cancelled_owned();
        tokio::spawn(crate::web::serve(web.listener, app, web.limits, stopped))
    });
    // The delivery worker stops after the monitor, which may commit
    // notifications while it stops.
    let delivery = options.deliver.then(|| {
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::notify::worker::run(
            db.clone(),
            options.monitor.clock.clone(),
            notified.clone(),
            stop.clone(),
            delivery_stats,
            Some(fence.clone()),
        ));
        (task, stop)
    });
    let wiring = Wiring {
        db: db.clone(),
        writer,
        stats: stats.clone(),
        reload: reload.clone(),
        notified,
        shutdown: shutdown.clone(),
        share: options.share,
    };
    let monitor = tokio::spawn(crate::monitor::daemon::run(wiring, options.monitor));
    Ok(Running {
        shutdown,
        reload,
        db,
        config: options.config,
        stats,
        written,
        fence,
        monitor,
        delivery,
        web,
        writer: writer_thread,
    })
}

impl Running {
    /// The token that stops the daemon when cancelled.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The monitor's counters.
    pub fn stats(&self) -> &Arc<MonitorStats> {
        &self.stats
    }

    /// The store writer's counters.
    pub fn writer_stats(&self) -> &Arc<WriterStats> {
        &self.written
    }

    /// The store writer's fence (for a node sharing the store).
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// Applies the configuration file again (if one was given) and reloads
    /// the monitor. A file with errors changes nothing and is reported.
    pub async fn reload(&self) -> anyhow::Result<()> {
        if let Some(file) = self.config.clone() {
            let config = crate::config::read_config(&file)?;
            let summary = self.db.apply(config).await?;
            log_applied(&file, &summary);
        }
        self.reload.notify_one();
        Ok(())
    }

    /// Waits until the daemon has stopped (after [`Running::shutdown`] is
    /// cancelled, or the monitor failed) and everything it took is
    /// written.
    pub async fn wait(self) -> anyhow::Result<Summary> {
        let monitor = self.monitor.await;
        // The monitor may also end by itself (a store it cannot read):
        // everything else stops with it.
        self.shutdown.cancel();
        if let Some((task, stop)) = self.delivery {
            stop.cancel();
            let _ = task.await;
        }
        if let Some(web) = self.web {
            let _ = web.await;
        }
        // The monitor has dropped its writer handle: the thread commits what
        // is left, repacks, and ends.
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        monitor??;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        Ok(Summary {
            checks: self.stats.snapshot(),
            stored: load(&self.written.results_stored),
            dropped: load(&self.written.results_dropped),
            write_errors: load(&self.written.write_errors),
        })
    }
}
