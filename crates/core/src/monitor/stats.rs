//! Counters of the running monitor: checks due and done, lateness, missed.

use std::sync::Mutex;

/// Start lateness in whole milliseconds, counted up to 10 s (later is
/// counted in the last bucket).
const BUCKETS: usize = 10_001;

/// What the scheduler did. Shared between the monitor and its readers.
#[derive(Debug)]
pub struct MonitorStats {
    inner: Mutex<Counts>,
}

/// A snapshot of [`MonitorStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Scheduled checks whose time came (re-checks excluded).
    pub due: u64,
    /// Checks that ran to completion (re-checks included).
    pub done: u64,
    /// Re-checks of failures.
    pub rechecks: u64,
    /// Checks that started more than 1 s after their due time.
    pub late: u64,
    /// Scheduled checks that could not start because the previous check of
    /// the same sensor was still running, or the monitor fell a whole
    /// interval behind.
    pub missed: u64,
    /// Checks by status: up, warning, down, unknown.
    pub by_status: [u64; 4],
    /// Checks by reason, indexed like [`portwatch_probe::Reason`]'s variants.
    pub by_reason: [u64; portwatch_probe::Reason::ALL.len()],
    /// Checks in flight now.
    pub in_flight: u64,
    lateness: Vec<u64>,
}

impl Default for MonitorStats {
    fn default() -> Self {
        MonitorStats {
            inner: Mutex::new(Counts {
                due: 0,
                done: 0,
                rechecks: 0,
                late: 0,
                missed: 0,
                by_status: [0; 4],
                by_reason: [0; portwatch_probe::Reason::ALL.len()],
                in_flight: 0,
                lateness: vec![0; BUCKETS],
            }),
        }
    }
}

impl MonitorStats {
    /// Updates the counters under the lock.
    pub fn update(&self, change: impl FnOnce(&mut Counts)) {
        let mut counts = self.inner.lock().expect("stats lock");
        change(&mut counts);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Counts {
        self.inner.lock().expect("stats lock").clone()
    }
}

impl Counts {
    /// Records how late a check started.
    pub fn started_late_by(&mut self, late_ms: u64) {
        let bucket = (late_ms as usize).min(BUCKETS - 1);
        self.lateness[bucket] += 1;
        if late_ms > 1000 {
            self.late += 1;
        }
    }

    /// The lateness (ms) below which `quantile` of the starts fall.
    pub fn lateness_quantile(&self, quantile: f64) -> Option<u64> {
        let total: u64 = self.lateness.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * quantile).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in self.lateness.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        Some(BUCKETS as u64 - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let stats = MonitorStats::default();
        stats.update(|c| {
            for ms in 0..100 {
                c.started_late_by(ms);
            }
            c.started_late_by(5000);
        });
        let counts = stats.snapshot();
        assert_eq!(counts.lateness_quantile(0.5), Some(50));
        assert_eq!(counts.lateness_quantile(0.99), Some(99));
        assert_eq!(counts.lateness_quantile(1.0), Some(5000));
        assert_eq!(counts.late, 1);
        assert_eq!(
            MonitorStats::default().snapshot().lateness_quantile(0.5),
            None
        );
    }
    /// Mutation testing found the bucket clamp and the one-second boundary
    /// unchecked.
    #[test]
    fn lateness_past_the_last_bucket_and_the_one_second_boundary() {
        let mut counts = MonitorStats::default().snapshot();
        counts.started_late_by(u64::MAX);
        counts.started_late_by(BUCKETS as u64 * 10);
        assert_eq!(
            counts.lateness[BUCKETS - 1],
            2,
            "clamped into the last bucket"
        );
        assert_eq!(counts.lateness_quantile(0.5), Some(BUCKETS as u64 - 1));
        let mut counts = MonitorStats::default().snapshot();
        counts.started_late_by(1000);
        assert_eq!(counts.late, 0, "late means more than one second");
        counts.started_late_by(1001);
        assert_eq!(counts.late, 1);
        // A quantile above 1 (a caller's slip) is the largest bucket.
        assert_eq!(counts.lateness_quantile(2.0), Some(BUCKETS as u64 - 1));
    }
}
