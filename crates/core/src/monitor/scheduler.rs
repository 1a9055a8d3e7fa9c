//! Pure scheduling decisions.

use std::collections::VecDeque;
use std::time::Duration;

/// Where in its first interval a sensor runs first: spread by a hash of its
/// path, so that a restart does not check everything at once, and stable,
/// so that the same sensor keeps its slot across restarts.
pub fn first_offset(path: &str, interval: Duration) -> Duration {
    // FNV-1a: stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let interval_us = interval.as_micros().max(1) as u64;
    Duration::from_micros(hash % interval_us)
}

/// How long until the first check of a sensor this node takes over from
/// another (a node that left or died, or gave it to this one), last
/// checked at `last_ms` (wall time, ms) with `now_ms` now: its next slot
/// on the previous node's cadence, so that a hand-over neither checks it
/// twice in one interval nor leaves it a whole extra interval; a sensor
/// already overdue is checked within [`CATCH_UP`] (spread by its path, so
/// that the share of a dead node does not start at one instant).
pub fn resume_offset(path: &str, interval: Duration, last_ms: i64, now_ms: i64) -> Duration {
    let next_ms = last_ms.saturating_add(interval.as_millis() as i64);
    if next_ms >= now_ms {
        return Duration::from_millis((next_ms - now_ms) as u64);
    }
    first_offset(path, interval.min(CATCH_UP))
}

/// The span over which overdue sensors taken over from another node are
/// first checked.
pub const CATCH_UP: Duration = Duration::from_secs(2);

/// The next due time after a check that was due at `due` (times as
/// durations since any origin), and how many whole intervals were missed
/// because the monitor fell behind by more than an interval.
pub fn next_due(due: Duration, interval: Duration, now: Duration) -> (Duration, u64) {
    let next = due + interval;
    if next > now {
        return (next, 0);
    }
    let behind = (now - next).as_micros() / interval.as_micros().max(1);
    let missed = behind as u64 + 1;
    (next + interval * missed as u32, missed)
}

/// The cap on checks in flight. A check that comes due while every slot
/// is taken waits in a first-in, first-out line instead of becoming a task,
/// so that an overloaded monitor holds one small entry per waiting sensor
/// rather than one parked check each. (A sensor is in the line at most
/// once: until its check has run, its next due times are missed, not
/// queued again.) `T` is what a check needs to start (its due time).
#[derive(Debug)]
pub struct Slots<T> {
    max: usize,
    in_flight: usize,
    waiting: VecDeque<(i64, T)>,
}

impl<T> Slots<T> {
    /// At most `max` checks at once (at least one).
    pub fn new(max: usize) -> Slots<T> {
        Slots {
            max: max.max(1),
            in_flight: 0,
            waiting: VecDeque::new(),
        }
    }

    /// A check of sensor `id` is due: it starts now (it is returned and
    /// holds a slot) or waits at the back of the line.
    pub fn offer(&mut self, id: i64, check: T) -> Option<(i64, T)> {
        if self.take_slot() {
            return Some((id, check));
        }
        self.waiting.push_back((id, check));
        None
    }

    /// A check that is part of another (a re-check confirming a failure or
    /// a dependency): it starts now or waits at the front of the line.
    pub fn offer_first(&mut self, id: i64, check: T) -> Option<(i64, T)> {
        if self.take_slot() {
            return Some((id, check));
        }
        self.waiting.push_front((id, check));
        None
    }

    /// Takes a free slot, if there is one.
    fn take_slot(&mut self) -> bool {
        let free = self.in_flight < self.max;
        if free {
            self.in_flight += 1;
        }
        free
    }

    /// A check ended (or never started): its slot goes to the first
    /// waiting check, which is returned to start now.
    pub fn release(&mut self) -> Option<(i64, T)> {
        match self.waiting.pop_front() {
            Some(next) => Some(next),
            None => {
                self.in_flight = self.in_flight.saturating_sub(1);
                None
            }
        }
    }

    /// Checks holding a slot.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Checks waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Empties the line (the monitor stops): how many checks were waiting,
    /// which will not run.
    pub fn abandon_waiting(&mut self) -> usize {
        let waiting = self.waiting.len();
        self.waiting.clear();
        waiting
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_sensor_taken_over_keeps_its_cadence_and_an_overdue_one_catches_up_soon() {
        let ten = Duration::from_secs(10);
        // Last checked 3 s ago: next in 7 s, as on the previous node.
        assert_eq!(
            resume_offset("s/p", ten, 97_000, 100_000),
            Duration::from_secs(7)
        );
        // Due right now.
        assert_eq!(resume_offset("s/p", ten, 90_000, 100_000), Duration::ZERO);
        // Overdue: within the catch-up span, the same for the same path.
        let late = resume_offset("s/p", ten, 50_000, 100_000);
        assert!(late < CATCH_UP, "{late:?}");
        assert_eq!(late, resume_offset("s/p", ten, 80_000, 100_000));
        assert_eq!(late, first_offset("s/p", CATCH_UP));
        // A short interval catches up within itself.
        let one = Duration::from_secs(1);
        assert!(resume_offset("s/p", one, 0, 100_000) < one);
    }

    use super::*;

    #[test]
    fn checks_beyond_the_cap_wait_in_line_and_take_freed_slots_in_order() {
        let mut slots = Slots::new(2);
        assert_eq!(slots.offer(1, "a"), Some((1, "a")));
        assert_eq!(slots.offer(2, "b"), Some((2, "b")));
        assert_eq!(slots.offer(3, "c"), None);
        assert_eq!(slots.offer(4, "d"), None);
        assert_eq!(slots.offer_first(5, "recheck"), None);
        assert_eq!((slots.in_flight(), slots.waiting()), (2, 3));
        // A freed slot goes straight to the first in line: still two in flight.
        assert_eq!(slots.release(), Some((5, "recheck")));
        assert_eq!(slots.release(), Some((3, "c")));
        assert_eq!((slots.in_flight(), slots.waiting()), (2, 1));
        assert_eq!(slots.abandon_waiting(), 1);
        assert_eq!(slots.release(), None);
        assert_eq!(slots.in_flight(), 1);
        assert_eq!(slots.release(), None);
        assert_eq!(slots.release(), None, "never below zero");
        assert_eq!(slots.in_flight(), 0);
        assert_eq!(slots.offer_first(6, "x"), Some((6, "x")), "a free slot");
    }

    #[test]
    fn a_cap_of_zero_is_one() {
        let mut slots = Slots::new(0);
        assert!(slots.offer(1, ()).is_some());
        assert!(slots.offer(2, ()).is_none());
    }

    #[test]
    fn offsets_are_stable_and_spread() {
        let interval = Duration::from_secs(60);
        assert_eq!(
            first_offset("web/ssh", interval),
            first_offset("web/ssh", interval)
        );
        let offsets: Vec<Duration> = (0..1000)
            .map(|i| first_offset(&format!("server{i}/http"), interval))
            .collect();
        assert!(offsets.iter().all(|o| *o < interval));
        // Spread: every 6-second slice of the minute gets some sensors.
        for slice in 0..10 {
            let range = Duration::from_secs(slice * 6)..Duration::from_secs(slice * 6 + 6);
            let n = offsets.iter().filter(|o| range.contains(*o)).count();
            assert!((50..=150).contains(&n), "slice {slice}: {n}");
        }
    }

    #[test]
    fn deadlines_are_kept_and_missed_slots_counted() {
        let s = Duration::from_secs;
        assert_eq!(
            next_due(s(10), s(10), s(12)),
            (s(20), 0),
            "a late start keeps the grid"
        );
        assert_eq!(
            next_due(s(10), s(10), s(20)),
            (s(30), 1),
            "exactly one interval behind"
        );
        assert_eq!(next_due(s(10), s(10), s(45)), (s(50), 3));
    }
}
