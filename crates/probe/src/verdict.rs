//! Judging a check: from a reason and a response time to a status.

use std::time::Duration;

use super::{Reason, Status};

/// Latency thresholds and the `--expect-closed` inversion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expectation {
    /// A response time above this is `warning`.
    pub warning: Option<Duration>,
    /// A response time above this is `down`.
    pub critical: Option<Duration>,
    /// The port must not accept connections.
    pub expect_closed: bool,
}

/// Why a status differs from what the reason alone says, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// Connected, but slower than the warning threshold.
    AboveWarning(Duration),
    /// Connected, but slower than the critical threshold.
    AboveCritical(Duration),
    /// Connected, but the port is expected to be closed.
    OpenButExpectedClosed,
    /// Not connected, as expected.
    ClosedAsExpected,
}

/// The status of a check, and the note that explains it when thresholds or
/// `expect_closed` changed the plain verdict.
pub fn judge(
    reason: Reason,
    response_time: Option<Duration>,
    expect: &Expectation,
) -> (Status, Option<Note>) {
    match reason {
        Reason::LocalError => (Status::Unknown, None),
        Reason::Connected if expect.expect_closed => {
            (Status::Down, Some(Note::OpenButExpectedClosed))
        }
        Reason::Connected | Reason::Answered | Reason::Reply => {
            let time = response_time.unwrap_or_default();
            match (expect.critical, expect.warning) {
                (Some(critical), _) if time > critical => {
                    (Status::Down, Some(Note::AboveCritical(critical)))
                }
                (_, Some(warning)) if time > warning => {
                    (Status::Warning, Some(Note::AboveWarning(warning)))
                }
                _ => (Status::Up, None),
            }
        }
        Reason::Refused | Reason::Timeout | Reason::AdminProhibited if expect.expect_closed => {
            (Status::Up, Some(Note::ClosedAsExpected))
        }
        Reason::CertExpiring => (Status::Warning, None),
        _ => (Status::Down, None),
    }
}

/// The phases of a protocol check that thresholds may judge, in order.
pub const PHASES: [&str; 5] = ["dns", "connect", "tls", "first_byte", "total"];

/// Thresholds on the phases of a protocol check, indexed as [`PHASES`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PhaseLimits {
    /// Above these a check is WARNING.
    pub warning: [Option<Duration>; 5],
    /// Above these a check is DOWN.
    pub critical: [Option<Duration>; 5],
}

impl PhaseLimits {
    /// Whether no phase has a threshold.
    pub fn is_empty(&self) -> bool {
        self.warning
            .iter()
            .chain(&self.critical)
            .all(Option::is_none)
    }

    /// Sets the threshold of `phase` (one of [`PHASES`]); `false` for an
    /// unknown phase.
    pub fn set(&mut self, critical: bool, phase: &str, limit: Duration) -> bool {
        let Some(at) = PHASES.iter().position(|p| *p == phase) else {
            return false;
        };
        if critical {
            self.critical[at] = Some(limit);
        } else {
            self.warning[at] = Some(limit);
        }
        true
    }

    /// The worst verdict of the phases' times (indexed as [`PHASES`]; a
    /// phase that did not happen is `None`): DOWN above a critical
    /// threshold, else WARNING above a warning one, with what was slow.
    pub fn judge(&self, times: [Option<Duration>; 5]) -> Option<(Status, String)> {
        let over = |limits: &[Option<Duration>; 5]| {
            PHASES
                .iter()
                .zip(times)
                .zip(limits)
                .find_map(|((phase, time), limit)| {
                    let (time, limit) = (time?, (*limit)?);
                    (time > limit).then(|| (phase.replace('_', " "), time, limit))
                })
        };
        let say = |(phase, time, limit): (String, Duration, Duration), which: &str| {
            format!(
                "{phase} took {:.3} ms, above the {which} threshold of {}",
                time.as_secs_f64() * 1e3,
                crate::duration::format(limit)
            )
        };
        if let Some(slow) = over(&self.critical) {
            return Some((Status::Down, say(slow, "critical")));
        }
        over(&self.warning).map(|slow| (Status::Warning, say(slow, "warning")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Reason; 23] = Reason::ALL;

    #[test]
    fn phases_are_judged_worst_first() {
        let mut limits = PhaseLimits::default();
        assert!(limits.is_empty());
        assert!(limits.set(false, "first_byte", ms(100).unwrap()));
        assert!(limits.set(true, "total", ms(500).unwrap()));
        assert!(!limits.set(true, "handshake", ms(1).unwrap()));
        let times = |first: u64, total: u64| [None, ms(1), None, ms(first), ms(total)];
        assert_eq!(
            limits.judge(times(100, 500)),
            None,
            "at the limit is within"
        );
        assert_eq!(
            limits.judge(times(101, 200)),
            Some((
                Status::Warning,
                "first byte took 101.000 ms, above the warning threshold of 100ms".into()
            ))
        );
        assert_eq!(limits.judge(times(101, 501)).unwrap().0, Status::Down);
        // A phase that did not happen is not judged.
        assert_eq!(limits.judge([None; 5]), None);
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn plain_verdicts() {
        let expect = Expectation::default();
        for reason in ALL {
            let (status, note) = judge(reason, ms(1), &expect);
            let wanted = match reason {
                Reason::Connected | Reason::Answered | Reason::Reply => Status::Up,
                Reason::LocalError => Status::Unknown,
                Reason::CertExpiring => Status::Warning,
                _ => Status::Down,
            };
            assert_eq!((status, note), (wanted, None), "{reason}");
        }
    }

    #[test]
    fn expect_closed_inverts_only_closed_answers() {
        let expect = Expectation {
            expect_closed: true,
            ..Default::default()
        };
        for reason in ALL {
            let (status, _) = judge(reason, ms(1), &expect);
            let wanted = match reason {
                Reason::Connected => Status::Down,
                // Not a port: a DNS answer is judged as it is.
                Reason::Answered | Reason::Reply => Status::Up,
                Reason::Refused | Reason::Timeout | Reason::AdminProhibited => Status::Up,
                Reason::LocalError => Status::Unknown,
                Reason::CertExpiring => Status::Warning,
                _ => Status::Down,
            };
            assert_eq!(status, wanted, "{reason}");
        }
    }

    #[test]
    fn thresholds() {
        let expect = Expectation {
            warning: ms(100),
            critical: ms(500),
            expect_closed: false,
        };
        assert_eq!(
            judge(Reason::Connected, ms(100), &expect),
            (Status::Up, None)
        );
        assert_eq!(
            judge(Reason::Connected, ms(101), &expect),
            (
                Status::Warning,
                Some(Note::AboveWarning(Duration::from_millis(100)))
            )
        );
        assert_eq!(
            judge(Reason::Connected, ms(501), &expect),
            (
                Status::Down,
                Some(Note::AboveCritical(Duration::from_millis(500)))
            )
        );
        // A critical threshold alone still works, and thresholds never make a
        // failed check look better.
        let critical_only = Expectation {
            critical: ms(10),
            ..Default::default()
        };
        assert_eq!(
            judge(Reason::Connected, ms(11), &critical_only).0,
            Status::Down
        );
        assert_eq!(judge(Reason::Refused, ms(1), &expect).0, Status::Down);
    }
    /// Mutation testing: "above the warning threshold" is strictly above.
    #[test]
    fn a_time_equal_to_the_warning_threshold_is_up() {
        let expect = Expectation {
            warning: ms(100),
            ..Default::default()
        };
        assert_eq!(judge(Reason::Connected, ms(100), &expect).0, Status::Up);
        let critical = Expectation {
            critical: ms(200),
            ..Default::default()
        };
        assert_eq!(judge(Reason::Connected, ms(200), &critical).0, Status::Up);
        assert_eq!(judge(Reason::Connected, ms(201), &critical).0, Status::Down);
        assert_eq!(
            judge(
                Reason::Connected,
                Some(Duration::from_micros(100_001)),
                &expect
            )
            .0,
            Status::Warning
        );
    }
}
