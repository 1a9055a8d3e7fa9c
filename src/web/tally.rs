//! Sensors by group and state, for the dashboard's counts, the API's
//! totals and the live counts. Counting reads every sensor's row, so a
//! large installation reuses a count for a few seconds and reads the next
//! one in the background, while requests go on with the last one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::store::{Backend, StatusQuery, Storage, StoreError, Tally};

/// Up to this many sensors, every request counts them afresh (a few
/// milliseconds); above it a count is reused.
const LARGE: i64 = 50_000;

/// How long a large installation's count is reused before the next one is
/// read, at least.
const REUSE: Duration = Duration::from_secs(10);

/// A count is reused for at least this many times as long as it took to
/// read, so that counting takes at most a twentieth of a core however
/// large the installation (a million sensors take most of a second).
const REUSE_PER_READ: u32 = 20;

/// The last count, shared by every request, and the lock of the first
/// count (requests that find none wait for one count, not one each).
#[derive(Clone, Default)]
pub(super) struct Tallies(Arc<Mutex<Option<Kept>>>, Arc<tokio::sync::Mutex<()>>);

struct Kept {
    tally: Arc<Tally>,
    read_at: Instant,
    /// How long it took to read.
    took: Duration,
    reading: bool,
}

/// How many sensors a tally counts.
pub(super) fn sensors(tally: &Tally) -> i64 {
    tally.iter().map(|(_, _, n)| n).sum()
}

/// What a request does with the last count.
#[derive(Debug, PartialEq, Eq)]
enum Use {
    /// Count now and wait for it.
    Read,
    /// Take the last count.
    Reuse,
    /// Take the last count, and count afresh in the background.
    ReuseAndRead,
}

/// What to do with the last count of `sensors` sensors, read `age` ago in
/// `took`, with a newer one being read or not.
fn decide(sensors: i64, age: Duration, took: Duration, reading: bool) -> Use {
    if sensors <= LARGE {
        Use::Read
    } else if age < REUSE.max(took * REUSE_PER_READ) || reading {
        Use::Reuse
    } else {
        Use::ReuseAndRead
    }
}

impl Tallies {
    /// Counts the sensors in the background, so that the first dashboard
    /// after a start does not wait for it.
    pub(super) fn warm(&self, db: &Backend) {
        let (tallies, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            if let Err(e) = tallies.first(&db).await {
                tracing::warn!("counting the sensors by state: {e}");
            }
        });
    }

    fn last(&self) -> Option<Arc<Tally>> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.as_ref().map(|kept| kept.tally.clone())
    }

    /// The first count: read once, by whoever comes first.
    async fn first(&self, db: &Backend) -> Result<Arc<Tally>, StoreError> {
        let _first = self.1.lock().await;
        match self.last() {
            Some(tally) => Ok(tally),
            None => self.read(db).await,
        }
    }

    /// Every active sensor by group and state.
    pub(super) async fn get(&self, db: &Backend) -> Result<Arc<Tally>, StoreError> {
        if self.last().is_none() {
            return self.first(db).await;
        }
        {
            let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(kept) = kept.as_mut() {
                match decide(
                    sensors(&kept.tally),
                    kept.read_at.elapsed(),
                    kept.took,
                    kept.reading,
                ) {
                    Use::Read => {}
                    Use::Reuse => return Ok(kept.tally.clone()),
                    Use::ReuseAndRead => {
                        kept.reading = true;
                        let (tallies, db) = (self.clone(), db.clone());
                        tokio::spawn(async move {
                            if let Err(e) = tallies.read(&db).await {
                                tracing::warn!("counting the sensors by state: {e}");
                            }
                        });
                        return Ok(kept.tally.clone());
                    }
                }
            }
        }
        self.read(db).await
    }

    async fn read(&self, db: &Backend) -> Result<Arc<Tally>, StoreError> {
        let started = Instant::now();
        let read = db.tally(StatusQuery::default()).await;
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match read {
            Ok(tally) => {
                let tally = Arc::new(tally);
                *kept = Some(Kept {
                    tally: tally.clone(),
                    read_at: Instant::now(),
                    took: started.elapsed(),
                    reading: false,
                });
                Ok(tally)
            }
            Err(e) => {
                if let Some(kept) = kept.as_mut() {
                    kept.reading = false;
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_installations_count_afresh_and_large_ones_reuse_a_recent_count() {
        let fresh = Duration::from_secs(1);
        let old = REUSE;
        let quick = Duration::from_millis(50);
        assert_eq!(decide(LARGE, old, quick, false), Use::Read);
        assert_eq!(decide(10, fresh, quick, false), Use::Read);
        assert_eq!(decide(LARGE + 1, fresh, quick, false), Use::Reuse);
        assert_eq!(decide(LARGE + 1, old, quick, false), Use::ReuseAndRead);
        // One background count at a time.
        assert_eq!(decide(LARGE + 1, old, quick, true), Use::Reuse);
    }

    #[test]
    fn a_count_that_took_long_is_reused_for_longer() {
        let slow = Duration::from_millis(800);
        let reused_for = slow * REUSE_PER_READ;
        assert!(reused_for > REUSE);
        assert_eq!(decide(LARGE + 1, REUSE, slow, false), Use::Reuse);
        assert_eq!(
            decide(
                LARGE + 1,
                reused_for - Duration::from_millis(1),
                slow,
                false
            ),
            Use::Reuse
        );
        assert_eq!(
            decide(LARGE + 1, reused_for, slow, false),
            Use::ReuseAndRead
        );
    }
}
