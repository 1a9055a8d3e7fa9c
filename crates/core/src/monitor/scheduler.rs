//! Pure scheduling decisions.

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

#[cfg(test)]
mod tests {
    use super::*;

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
