//! The delivery worker: takes due notifications from the outbox, sends
//! them, and records each attempt. A failed attempt is retried with
//! exponential backoff until it succeeds, so a receiver that is down during
//! an outage gets its alerts once it is back, even across restarts.
//!
//! Channels are delivered to side by side, each in outbox order: a channel
//! whose receiver hangs holds up only itself, for at most its timeout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::{ChannelDef, backoff, deliver::deliver};
use crate::store::outbox::Pending;
use crate::store::{Store, StoreError};

/// Delivery counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Notifications delivered.
    pub delivered: AtomicU64,
    /// Failed attempts (each retried).
    pub failed_attempts: AtomicU64,
}

/// One attempt's outcome, to record.
struct Attempt {
    id: i64,
    at_ms: i64,
    outcome: Result<(), String>,
    retry_ms: i64,
}

/// Runs until `stop` is notified: delivers whatever is due, then waits for
/// `wake` (new notifications) or the next retry, at most a second.
pub async fn run(db: PathBuf, wake: Arc<Notify>, stop: Arc<Notify>, stats: Arc<DeliveryStats>) {
    let client = reqwest::Client::builder()
        .user_agent(concat!("portwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with default settings");
    let mut store: Option<Store> = None;
    loop {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let (taken, due) = on_store(store.take(), db.clone(), move |s| {
            Ok((s.due_notifications(now_ms, 200)?, s.notifications()?.0))
        })
        .await;
        store = taken;
        match due {
            Ok((due, channels)) if !due.is_empty() => {
                let attempts = deliver_all(due, &channels, &client, &stats).await;
                let (taken, recorded) = on_store(store.take(), db.clone(), move |s| {
                    for attempt in attempts {
                        match attempt.outcome {
                            Ok(()) => s.delivered(attempt.id, attempt.at_ms)?,
                            Err(error) => {
                                s.delivery_failed(attempt.id, &error, attempt.retry_ms)?
                            }
                        }
                    }
                    Ok(())
                })
                .await;
                store = taken;
                if let Err(error) = recorded {
                    tracing::error!(%error, "cannot record delivery attempts; they may be repeated");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "cannot read the outbox; retrying"),
        }
        tokio::select! {
            () = stop.notified() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Runs `work` on the worker's store connection on a blocking thread,
/// opening it first if needed. A failure drops the connection, so the next
/// call opens a fresh one.
async fn on_store<T: Send + 'static>(
    store: Option<Store>,
    path: PathBuf,
    work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> (Option<Store>, Result<T, StoreError>) {
    let joined = tokio::task::spawn_blocking(move || {
        let store = match store {
            Some(store) => store,
            None => match Store::open(&path) {
                Ok(store) => store,
                Err(error) => return (None, Err(error)),
            },
        };
        let result = work(&store);
        let keep = result.is_ok().then_some(store);
        (keep, result)
    })
    .await;
    match joined {
        Ok(done) => done,
        Err(error) => (
            None,
            Err(StoreError::Damaged(
                PathBuf::new(),
                format!("the outbox task failed: {error}"),
            )),
        ),
    }
}

/// Delivers every due notification: channels in parallel, each channel's
/// in order.
async fn deliver_all(
    due: Vec<Pending>,
    channels: &[ChannelDef],
    client: &reqwest::Client,
    stats: &Arc<DeliveryStats>,
) -> Vec<Attempt> {
    let mut by_channel: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    for pending in due {
        by_channel
            .entry(pending.channel.clone())
            .or_default()
            .push(pending);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (name, queue) in by_channel {
        let channel = channels.iter().find(|c| c.name == name).cloned();
        let (client, stats) = (client.clone(), stats.clone());
        tasks.spawn(async move {
            let mut attempts = Vec::new();
            for pending in queue {
                let outcome = match &channel {
                    Some(channel) => deliver(channel, &pending.payload, &client).await,
                    None => Err(format!("the channel '{name}' no longer exists")),
                };
                let at_ms = jiff::Timestamp::now().as_millisecond();
                let (sensor, to) = (&pending.payload.sensor, &pending.payload.to);
                match &outcome {
                    Ok(()) => {
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(channel = %name, %sensor, %to, kind = pending.payload.kind.as_str(), "notification delivered");
                    }
                    Err(error) => {
                        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(channel = %name, %sensor, %to, attempt = pending.attempts + 1, %error, "notification not delivered; it will be retried");
                    }
                }
                let failed = outcome.is_err();
                attempts.push(Attempt {
                    id: pending.id,
                    at_ms,
                    outcome,
                    retry_ms: at_ms + backoff(pending.attempts).as_millis() as i64,
                });
                // The receiver is likely down: the channel's other
                // notifications are tried on the next round.
                if failed {
                    break;
                }
            }
            attempts
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(attempts) = done {
            all.extend(attempts);
        }
    }
    all
}
