//! The delivery worker: takes due notifications from the outbox, sends
//! them, and records each attempt. A failed attempt is retried with
//! exponential backoff until it succeeds, so a receiver that is down during
//! an outage gets its alerts once it is back, even across restarts.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::{ChannelDef, backoff, deliver::deliver};
use crate::store::Store;

/// Delivery counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Notifications delivered.
    pub delivered: AtomicU64,
    /// Failed attempts (each retried).
    pub failed_attempts: AtomicU64,
}

/// Runs until `stop` is notified: delivers whatever is due, then waits for
/// `wake` (new notifications) or the next retry, at most a second.
pub async fn run(db: PathBuf, wake: Arc<Notify>, stop: Arc<Notify>, stats: Arc<DeliveryStats>) {
    let client = reqwest::Client::builder()
        .user_agent(concat!("portwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with default settings");
    loop {
        let path = db.clone();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let due = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
            let store = Store::open(&path)?;
            Ok((
                store.due_notifications(now_ms, 100)?,
                store.notifications()?.0,
            ))
        })
        .await;
        match due {
            Ok(Ok((due, channels))) => {
                for pending in due {
                    let outcome = match channels
                        .iter()
                        .find(|c: &&ChannelDef| c.name == pending.channel)
                    {
                        Some(channel) => deliver(&channel.kind, &pending.payload, &client).await,
                        None => Err(format!(
                            "the channel '{}' no longer exists",
                            pending.channel
                        )),
                    };
                    let path = db.clone();
                    let now_ms = jiff::Timestamp::now().as_millisecond();
                    let retry_ms = now_ms + backoff(pending.attempts).as_millis() as i64;
                    let (channel, sensor, to) = (
                        pending.channel.clone(),
                        pending.payload.sensor.clone(),
                        pending.payload.to.clone(),
                    );
                    match &outcome {
                        Ok(()) => {
                            stats.delivered.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(%channel, %sensor, %to, "notification delivered");
                        }
                        Err(error) => {
                            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%channel, %sensor, %to, attempt = pending.attempts + 1, %error, "notification not delivered; it will be retried");
                        }
                    }
                    let recorded = tokio::task::spawn_blocking(move || {
                        let store = Store::open(&path)?;
                        match outcome {
                            Ok(()) => store.delivered(pending.id, now_ms),
                            Err(error) => store.delivery_failed(pending.id, &error, retry_ms),
                        }
                    })
                    .await;
                    if let Ok(Err(error)) = recorded {
                        tracing::error!(%error, "cannot record a delivery attempt; it may be repeated");
                    }
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "cannot read the outbox; retrying"),
            Err(error) => tracing::error!(%error, "the outbox reader failed; retrying"),
        }
        tokio::select! {
            () = stop.notified() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
