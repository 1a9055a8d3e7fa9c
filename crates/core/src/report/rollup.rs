//! Hourly rollups: count, up count, and min/avg/max/p95 connect time per
//! sensor per hour. Kept far longer than raw results, for reports.
//!
//! The p95 comes from a sparse log histogram with 8 buckets per power of
//! two, so it is exact to within 1/8 of an octave (about 9 %), and never
//! above the true maximum.

use portwatch_probe::Status;

use super::StoredResult;

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the hour holding `at_ms`.
pub fn hour_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// Running totals for one sensor and hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accumulator {
    /// Checks.
    pub count: u32,
    /// Checks that found the service answering (UP or WARNING).
    pub ups: u32,
    min_us: u32,
    max_us: u32,
    sum_us: u64,
    timed: u32,
    /// (bucket, count), sorted by bucket.
    histogram: Vec<(u16, u32)>,
}

/// One finished rollup row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    /// Checks.
    pub count: u32,
    /// UP or WARNING checks.
    pub ups: u32,
    /// Connect time statistics over the checks that got an answer.
    pub min_us: Option<u32>,
    /// Mean.
    pub avg_us: Option<u32>,
    /// Maximum.
    pub max_us: Option<u32>,
    /// 95th percentile (see the module note on precision).
    pub p95_us: Option<u32>,
}

fn bucket(value: u32) -> u16 {
    if value < 8 {
        return value as u16;
    }
    let exponent = 31 - value.leading_zeros();
    let sub = (value >> (exponent - 3)) & 7;
    ((exponent - 2) * 8 + sub) as u16
}

fn bucket_top(bucket: u16) -> u32 {
    if bucket < 8 {
        return u32::from(bucket);
    }
    let exponent = u32::from(bucket / 8) + 2;
    let sub = u32::from(bucket % 8);
    let low = (8 + sub) << (exponent - 3);
    low.saturating_add((1 << (exponent - 3)) - 1)
}

impl Accumulator {
    /// Adds one result.
    pub fn add(&mut self, result: &StoredResult) {
        self.count += 1;
        if matches!(result.status, Status::Up | Status::Warning) {
            self.ups += 1;
        }
        // Connect times are handshakes (or a query's answer): the time a
        // refusal (RST) or an ICMP error took to come back is not one.
        if let Some(rtt) = result.rtt_us.filter(|_| result.reason.is_answer()) {
            if self.timed == 0 || rtt < self.min_us {
                self.min_us = rtt;
            }
            self.max_us = self.max_us.max(rtt);
            self.sum_us += u64::from(rtt);
            self.timed += 1;
            let b = bucket(rtt);
            match self.histogram.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => self.histogram[i].1 += 1,
                Err(i) => self.histogram.insert(i, (b, 1)),
            }
        }
    }

    /// The rollup row.
    pub fn finish(&self) -> Rollup {
        let timed = self.timed > 0;
        let p95 = timed.then(|| {
            let rank = (u64::from(self.timed) * 95).div_ceil(100);
            let mut seen = 0u64;
            let mut top = self.max_us;
            for (b, n) in &self.histogram {
                seen += u64::from(*n);
                if seen >= rank {
                    top = bucket_top(*b);
                    break;
                }
            }
            top.min(self.max_us)
        });
        Rollup {
            count: self.count,
            ups: self.ups,
            min_us: timed.then_some(self.min_us),
            avg_us: timed.then(|| (self.sum_us / u64::from(self.timed)) as u32),
            max_us: timed.then_some(self.max_us),
            p95_us: p95,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portwatch_probe::Reason;
    use proptest::prelude::*;

    fn up(rtt: u32) -> StoredResult {
        StoredResult {
            sensor: 1,
            at_ms: 0,
            status: Status::Up,
            reason: Reason::Connected,
            rtt_us: Some(rtt),
        }
    }

    #[test]
    fn only_completed_handshakes_count_as_connect_times() {
        let mut acc = Accumulator::default();
        acc.add(&up(2_000));
        acc.add(&StoredResult {
            status: Status::Down,
            reason: Reason::Refused,
            rtt_us: Some(40),
            ..up(0)
        });
        // A slow answer that was judged DOWN still completed its handshake.
        acc.add(&StoredResult {
            status: Status::Down,
            ..up(9_000)
        });
        let rollup = acc.finish();
        assert_eq!((rollup.count, rollup.ups), (3, 1));
        assert_eq!((rollup.min_us, rollup.max_us), (Some(2_000), Some(9_000)));
        assert_eq!(rollup.avg_us, Some(5_500));
    }

    #[test]
    fn totals_and_percentile() {
        let mut acc = Accumulator::default();
        for rtt in 1..=100 {
            acc.add(&up(rtt * 100));
        }
        acc.add(&StoredResult {
            status: Status::Down,
            reason: Reason::Timeout,
            rtt_us: None,
            ..up(0)
        });
        let rollup = acc.finish();
        assert_eq!((rollup.count, rollup.ups), (101, 100));
        assert_eq!(
            (rollup.min_us, rollup.max_us, rollup.avg_us),
            (Some(100), Some(10_000), Some(5050))
        );
        let p95 = rollup.p95_us.unwrap();
        assert!((9_500..=9_500 + 9_500 / 8).contains(&p95), "{p95}");
    }

    #[test]
    fn no_timings_no_statistics() {
        let mut acc = Accumulator::default();
        acc.add(&StoredResult {
            status: Status::Down,
            reason: Reason::Timeout,
            rtt_us: None,
            ..up(0)
        });
        assert_eq!(
            acc.finish(),
            Rollup {
                count: 1,
                ups: 0,
                min_us: None,
                avg_us: None,
                max_us: None,
                p95_us: None
            }
        );
    }

    #[test]
    fn hours() {
        assert_eq!(hour_of(HOUR_MS * 5 + 1234), HOUR_MS * 5);
        assert_eq!(hour_of(HOUR_MS * 5), HOUR_MS * 5);
    }

    proptest! {
        #[test]
        fn buckets_hold_their_values(value in any::<u32>()) {
            let b = bucket(value);
            prop_assert!(bucket_top(b) >= value);
            prop_assert!(u64::from(bucket_top(b)) <= u64::from(value) + u64::from(value) / 8 + 1);
        }

        #[test]
        fn p95_is_close_to_the_exact_one(mut values in proptest::collection::vec(1u32..10_000_000, 1..300)) {
            let mut acc = Accumulator::default();
            for v in &values { acc.add(&up(*v)); }
            values.sort_unstable();
            let exact = values[(values.len() * 95).div_ceil(100) - 1];
            let p95 = acc.finish().p95_us.unwrap();
            prop_assert!(p95 >= exact && u64::from(p95) <= u64::from(exact) + u64::from(exact) / 8 + 1, "{p95} vs {exact}");
        }
    }
}
