//! The delivery worker: takes due notifications from the outbox, sends
//! them, and records each attempt. A failed attempt is retried with
//! exponential backoff until it succeeds, so a receiver that is down during
//! an outage gets its alerts once it is back, even across restarts.
//!
//! Channels are delivered to independently, each in outbox order, by a task
//! of its own: a channel whose receiver hangs holds up only itself, and
//! every other channel's attempts are recorded as they end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::deliver::{Failure, Http, deliver};
use super::{ChannelDef, retry_at};
use crate::monitor::Clock;
use crate::store::Storage;
use crate::store::outbox::Pending;
use crate::store::writer::Fence;

/// Delivery counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Notifications delivered.
    pub delivered: AtomicU64,
    /// Failed attempts (each retried).
    pub failed_attempts: AtomicU64,
}

/// How long a claimed notification is this worker's alone on a store that
/// nodes share: longer than a round of attempts takes. If the node dies
/// meanwhile, another attempts it once this node's lease lapses. (On
/// SQLite, which one process has, a claim holds nothing back.)
const CLAIM: Duration = Duration::from_secs(120);

/// Runs until `stop` is cancelled: starts a delivery task for every channel
/// with something due and no task running, then waits for `wake` (new
/// notifications), a task finishing, or a second. Each channel's task
/// delivers that channel's notifications in order and records each attempt
/// as soon as it ends, so a hanging receiver delays nothing but itself.
pub async fn run<S: Storage>(
    db: S,
    clock: Clock,
    wake: Arc<Notify>,
    stop: CancellationToken,
    stats: Arc<DeliveryStats>,
    fence: Option<Arc<Fence>>,
) {
    let http = Http::new();
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while let Some(done) = tasks.try_join_next_with_id() {
            finished(&mut running, done);
        }
        let now_ms = clock.now().as_millisecond();
        let busy: Vec<String> = running.values().cloned().collect();
        let claim_until = now_ms + CLAIM.as_millis() as i64;
        let node = fence.as_ref().and_then(|f| f.node());
        let due = match db
            .claim_notifications(now_ms, claim_until, 200, busy, node)
            .await
        {
            Ok(due) => db
                .notifications()
                .await
                .map(|(channels, _)| (due, channels)),
            Err(error) => Err(error),
        };
        match due {
            Ok((due, channels)) => {
                for (name, queue) in by_channel(due) {
                    let channel = channels.iter().find(|c| c.name == name).cloned();
                    let task = deliver_channel(
                        db.clone(),
                        clock.clone(),
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
            () = stop.cancelled() => break,
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

/// Whether an attempt's outcome ends its channel's round: a failure that a
/// retry may mend (the receiver is likely down, and the next ones would
/// fail too). A delivery, or a failure no retry can mend, goes on to the
/// channel's next notification.
fn ends_round(outcome: &Result<(), Failure>) -> bool {
    matches!(outcome, Err(failure) if !failure.permanent)
}

/// Delivers one channel's due notifications in order, recording each
/// attempt when it ends. A failure that a retry may mend stops the round
/// (the receiver is likely down); one that cannot be mended is recorded as
/// failed and the next notification goes on.
async fn deliver_channel<S: Storage>(
    db: S,
    clock: Clock,
    name: String,
    channel: Option<ChannelDef>,
    queue: Vec<Pending>,
    http: Http,
    stats: Arc<DeliveryStats>,
) {
    let mut queue = queue.into_iter();
    while let Some(pending) = queue.next() {
        let outcome = match &channel {
            Some(channel) => deliver(channel, &pending.payload, &http, Some(pending.id)).await,
            None => Err(Failure {
                message: format!("the channel '{name}' no longer exists"),
                permanent: true,
            }),
        };
        let at_ms = clock.now().as_millisecond();
        let (sensor, to) = (&pending.payload.sensor, &pending.payload.to);
        let kind = pending.payload.kind.as_str();
        let retry_ms = retry_at(at_ms, pending.attempts);
        let stop = ends_round(&outcome);
        match &outcome {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(channel = %name, %sensor, %to, kind, "notification delivered");
            }
            Err(failure) => {
                stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                if stop {
                    tracing::warn!(channel = %name, %sensor, %to, attempt = pending.attempts + 1, error = %failure, "notification not delivered; it will be retried");
                } else {
                    tracing::error!(channel = %name, %sensor, %to, kind, error = %failure, "notification failed for good; it will not be retried");
                }
            }
        }
        let id = pending.id;
        let recorded = match outcome {
            Ok(()) => db.delivered(id, at_ms).await,
            Err(failure) if failure.permanent => {
                db.delivery_abandoned(id, failure.message, at_ms).await
            }
            Err(failure) => db.delivery_failed(id, failure.message, retry_ms).await,
        };
        if let Err(error) = recorded {
            tracing::error!(%error, "cannot record a delivery attempt; it may be repeated");
        }
        if stop {
            // The rest of the round follows the failed one, in order.
            let rest: Vec<i64> = queue.map(|p| p.id).collect();
            if !rest.is_empty()
                && let Err(error) = db.release_notifications(rest, retry_ms).await
            {
                tracing::error!(%error, "cannot give claimed notifications back; they are retried when the claim ends");
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failure_a_retry_may_mend_ends_the_round() {
        let failure = |permanent| {
            Err(Failure {
                message: "x".into(),
                permanent,
            })
        };
        assert!(!ends_round(&Ok(())));
        assert!(
            !ends_round(&failure(true)),
            "hopeless: the next one may work"
        );
        assert!(ends_round(&failure(false)), "the receiver is likely down");
    }
}
