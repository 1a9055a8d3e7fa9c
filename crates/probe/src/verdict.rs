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

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Reason; 23] = Reason::ALL;

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
