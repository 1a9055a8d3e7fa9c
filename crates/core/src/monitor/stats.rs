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
    /// the same sensor was still running or waiting for a slot, the monitor
    /// fell a whole interval behind, or it stopped while they waited.
    pub missed: u64,
    /// Checks by status: up, warning, down, unknown.
    pub by_status: [u64; 4],
    /// Checks by reason, indexed like [`portwatch_probe::Reason`]'s variants.
    pub by_reason: [u64; portwatch_probe::Reason::ALL.len()],
    /// Checks in flight now.
    pub in_flight: u64,
    /// Checks waiting for a free slot now (the cap on checks in flight).
    pub waiting: u64,
    /// Sensors the monitor checks (on a node: its share).
    pub sensors: u64,
    /// Over the last window: how much more was due than was done, in
    /// percent of what was done (0 while the monitor keeps up).
    pub overload_percent: u64,
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
                waiting: 0,
                sensors: 0,
                overload_percent: 0,
                lateness: vec![0; BUCKETS],
            }),
        }
    }
}

impl MonitorStats {
    /// How much more was due than done over the last window, in percent
    /// (0 while the monitor keeps up), without copying the counters.
    pub fn overload_percent(&self) -> u64 {
        self.inner.lock().expect("stats lock").overload_percent
    }

    /// The counters an overload window is judged by, without copying the
    /// lateness histogram.
    pub fn window(&self) -> Window {
        self.inner.lock().expect("stats lock").window()
    }

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

/// The counters a window of time is judged by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Checks due.
    pub due: u64,
    /// Checks done, re-checks excluded.
    pub done: u64,
    /// Checks missed.
    pub missed: u64,
    /// Checks waiting for a slot.
    pub waiting: u64,
}

/// A monitor that could not keep up over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    /// Checks due in the window.
    pub due: u64,
    /// Checks done in the window (re-checks excluded).
    pub done: u64,
    /// Checks missed in the window.
    pub missed: u64,
    /// Checks waiting for a slot at its end.
    pub waiting: u64,
}

impl Overload {
    /// How much more was due than was done, in percent of what was done
    /// (at least 1 while overloaded, so that it reads as overloaded).
    pub fn percent(&self) -> u64 {
        let over = self.due.saturating_sub(self.done) * 100 / self.done.max(1);
        over.max(1)
    }
}

/// Whether the monitor was over capacity between two readings: checks were
/// missed, or checks waited for a slot at both readings (a moment's queue
/// is not an overload). `None` when it kept up.
pub fn overload(before: Window, now: Window) -> Option<Overload> {
    let missed = now.missed.saturating_sub(before.missed);
    if missed == 0 && (before.waiting == 0 || now.waiting == 0) {
        return None;
    }
    Some(Overload {
        due: now.due.saturating_sub(before.due),
        done: now.done.saturating_sub(before.done),
        missed,
        waiting: now.waiting,
    })
}

impl Counts {
    /// The counters a window is judged by, now.
    pub fn window(&self) -> Window {
        Window {
            due: self.due,
            done: self.done.saturating_sub(self.rechecks),
            missed: self.missed,
            waiting: self.waiting,
        }
    }

    /// Whether the last window found the monitor over capacity.
    pub fn over_capacity(&self) -> bool {
        self.overload_percent > 0
    }

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

    /// The starts counted into a bucket per bound (ms): those at most the
    /// first bound, then at most the second and above the first, and so
    /// on, and a last bucket for the rest; with the sum of all lateness
    /// (ms; a start 10 s late or more counts 10 s). What a Prometheus
    /// histogram of start lateness is made of.
    pub fn lateness_buckets(&self, bounds_ms: &[u64]) -> (Vec<u64>, u64) {
        let mut buckets = vec![0; bounds_ms.len() + 1];
        let mut sum = 0;
        for (ms, &n) in self.lateness.iter().enumerate() {
            let ms = ms as u64;
            let bucket = bounds_ms.partition_point(|&bound| bound < ms);
            buckets[bucket] += n;
            sum += ms * n;
        }
        (buckets, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_monitor_is_over_capacity_when_checks_are_missed_or_wait() {
        let stats = MonitorStats::default();
        stats.update(|c| {
            c.due = 100;
            c.done = 100;
        });
        let before = stats.snapshot().window();
        stats.update(|c| {
            c.due = 300;
            c.done = 210;
            c.rechecks = 10;
        });
        assert_eq!(overload(before, stats.window()), None, "it kept up");
        stats.update(|c| c.waiting = 3);
        assert_eq!(
            overload(before, stats.window()),
            None,
            "checks waiting at one reading only"
        );
        let before = Window {
            waiting: 1,
            ..before
        };
        let waiting = overload(before, stats.window()).unwrap();
        assert_eq!(
            (waiting.due, waiting.done, waiting.missed, waiting.waiting),
            (200, 100, 0, 3),
            "re-checks are not done scheduled checks"
        );
        assert_eq!(waiting.percent(), 100, "twice what was done was due");
        stats.update(|c| {
            c.waiting = 0;
            c.missed = 7;
        });
        let missed = overload(before, stats.window()).unwrap();
        assert_eq!(missed.missed, 7);
        let barely = Overload {
            due: 1000,
            done: 999,
            missed: 1,
            waiting: 0,
        };
        assert_eq!(barely.percent(), 1, "over capacity reads as more than zero");
        let nothing_done = Overload {
            due: 50,
            done: 0,
            missed: 50,
            waiting: 1,
        };
        assert_eq!(nothing_done.percent(), 5000);
        let counts = stats.snapshot();
        assert!(!counts.over_capacity());
        assert_eq!(stats.overload_percent(), 0);
        stats.update(|c| c.overload_percent = missed.percent());
        assert!(stats.snapshot().over_capacity());
        assert_eq!(stats.overload_percent(), missed.percent());
    }

    #[test]
    fn lateness_in_buckets() {
        let stats = MonitorStats::default();
        stats.update(|c| {
            for ms in [0, 10, 11, 100, 101, 2000, 20_000] {
                c.started_late_by(ms);
            }
        });
        let (buckets, sum) = stats.snapshot().lateness_buckets(&[10, 100, 1000]);
        assert_eq!(buckets, vec![2, 2, 1, 2]);
        assert_eq!(sum, 10 + 11 + 100 + 101 + 2000 + 10_000);
        let (buckets, sum) = MonitorStats::default().snapshot().lateness_buckets(&[10]);
        assert_eq!((buckets, sum), (vec![0, 0], 0));
    }

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
