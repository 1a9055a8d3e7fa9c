//! The delivery worker: takes due notifications from the outbox, sends
//! them, and records each attempt. A failed attempt is retried with
//! exponential backoff until it succeeds, so a receiver that is down during
//! an outage gets its alerts once it is back, even across restarts.
//!
//! Channels are delivered to independently, each in outbox order, by a task
//! of its own: a channel whose receiver hangs holds up only itself, and
//! every other channel's attempts are recorded as they end.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::deliver::{Failure, Http, deliver};
use super::{ChannelDef, backoff};
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

/// Runs until `stop` is notified: starts a delivery task for every channel
/// with something due and no task running, then waits for `wake` (new
/// notifications), a task finishing, or a second. Each channel's task
/// delivers that channel's notifications in order and records each attempt
/// as soon as it ends, so a hanging receiver delays nothing but itself.
pub async fn run(db: PathBuf, wake: Arc<Notify>, stop: Arc<Notify>, stats: Arc<DeliveryStats>) {
    let http = Http::new();
    let mut store: Option<Store> = None;
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while let Some(done) = tasks.try_join_next_with_id() {
            finished(&mut running, done);
        }
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let busy: Vec<String> = running.values().cloned().collect();
        let (taken, due) = on_store(store.take(), db.clone(), move |s| {
            Ok((
                s.due_notifications_except(now_ms, 200, &busy)?,
                s.notifications()?.0,
            ))
        })
        .await;
        store = taken;
        match due {
            Ok((due, channels)) => {
                for (name, queue) in by_channel(due) {
                    let channel = channels.iter().find(|c| c.name == name).cloned();
                    let task = deliver_channel(
                        db.clone(),
                        name.clone(),
                        channel,
                        queue,
                        http.clone(),
                        stats.clone(),
                    );
                    running.insert(tasks.spawn(task).id(), name);
                }
            }
            Err(error) => tracing::error!(%error, "cannot read the outbox; retrying"),
        }
        tokio::select! {
            () = stop.notified() => break,
            () = wake.notified() => {}
            Some(done) = tasks.join_next_with_id() => finished(&mut running, done),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    // Attempts under way end within their channel's timeout and are
    // recorded before the worker returns.
    while tasks.join_next().await.is_some() {}
}

fn finished(
    running: &mut HashMap<tokio::task::Id, String>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let id = match done {
        Ok((id, ())) => id,
        Err(error) => {
            tracing::error!(%error, "a delivery task failed");
            error.id()
        }
    };
    running.remove(&id);
}

fn by_channel(due: Vec<Pending>) -> BTreeMap<String, Vec<Pending>> {
    let mut by_channel: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    for pending in due {
        by_channel
            .entry(pending.channel.clone())
            .or_default()
            .push(pending);
    }
    by_channel
}

/// Delivers one channel's due notifications in order, recording each
/// attempt when it ends. A failure that a retry may mend stops the round
/// (the receiver is likely down); one that cannot be mended is recorded as
/// failed and the next notification goes on.
async fn deliver_channel(
    db: PathBuf,
    name: String,
    channel: Option<ChannelDef>,
    queue: Vec<Pending>,
    http: Http,
    stats: Arc<DeliveryStats>,
) {
    let mut store: Option<Store> = None;
    for pending in queue {
        let outcome = match &channel {
            Some(channel) => deliver(channel, &pending.payload, &http).await,
            None => Err(Failure {
                message: format!("the channel '{name}' no longer exists"),
                permanent: true,
            }),
        };
        let at_ms = jiff::Timestamp::now().as_millisecond();
        let (sensor, to) = (&pending.payload.sensor, &pending.payload.to);
        let kind = pending.payload.kind.as_str();
        let retry_ms = at_ms + backoff(pending.attempts).as_millis() as i64;
        let stop = match &outcome {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(channel = %name, %sensor, %to, kind, "notification delivered");
                false
            }
            Err(failure) if failure.permanent => {
                stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                tracing::error!(channel = %name, %sensor, %to, kind, error = %failure, "notification failed for good; it will not be retried");
                false
            }
            Err(failure) => {
                stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(channel = %name, %sensor, %to, attempt = pending.attempts + 1, error = %failure, "notification not delivered; it will be retried");
                true
            }
        };
        let id = pending.id;
        let (taken, recorded) = on_store(store.take(), db.clone(), move |s| match outcome {
            Ok(()) => s.delivered(id, at_ms),
            Err(failure) if failure.permanent => s.delivery_abandoned(id, &failure.message, at_ms),
            Err(failure) => s.delivery_failed(id, &failure.message, retry_ms),
        })
        .await;
        store = taken;
        if let Err(error) = recorded {
            tracing::error!(%error, "cannot record a delivery attempt; it may be repeated");
        }
        if stop {
            break;
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
