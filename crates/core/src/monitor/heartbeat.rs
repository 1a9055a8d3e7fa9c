//! Heartbeat ("push") sensors: a job calls the sensor's secret URL; the
//! sensor is DOWN when no call arrived within its period and grace.

use std::time::Duration;

use portwatch_probe::{Reason, Status};
use serde::{Deserialize, Serialize};

/// A heartbeat sensor's period and grace (`kind = "heartbeat"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// How often a push is expected.
    #[serde(with = "millis")]
    pub every: Duration,
    /// How late a push may be before the sensor is DOWN.
    #[serde(with = "millis")]
    pub grace: Duration,
}

impl Heartbeat {
    /// A sensor's `kind`, `every` and `grace` as written (in
    /// portwatch.toml, a form or the API): its heartbeat settings when
    /// `kind` is `heartbeat` (every: 1m to 400d, default a day; grace: up
    /// to `every`, default a tenth of it, at least a minute), `None` for a
    /// TCP sensor. An error names the key at fault.
    pub fn from_settings(
        kind: Option<&str>,
        every: Option<&str>,
        grace: Option<&str>,
    ) -> Result<Option<Heartbeat>, (&'static str, String)> {
        let heartbeat = match kind.map(str::trim) {
            None | Some("" | "tcp" | "dns" | "udp" | "ping") => false,
            Some("heartbeat") => true,
            Some(other) => {
                return Err((
                    "kind",
                    format!(
                        "unknown kind '{other}': use \"tcp\" (the default), \"heartbeat\", \"dns\", \"udp\" or \"ping\""
                    ),
                ));
            }
        };
        fn given(value: Option<&str>) -> Option<&str> {
            value.map(str::trim).filter(|v| !v.is_empty())
        }
        let (every, grace) = (given(every), given(grace));
        if !heartbeat {
            return match (every, grace) {
                (None, None) => Ok(None),
                (Some(_), _) => Err(("every", NOT_A_HEARTBEAT.into())),
                (None, Some(_)) => Err(("grace", NOT_A_HEARTBEAT.into())),
            };
        }
        let parse = |key: &'static str, text: &str| {
            portwatch_probe::duration::parse_at_most(text, 400 * 86_400, "400 days")
                .map_err(|e| (key, e.to_string()))
        };
        let every = match every {
            None => Duration::from_secs(86_400),
            Some(text) => {
                let every = parse("every", text)?;
                if !(Duration::from_secs(60)..=Duration::from_secs(400 * 86_400)).contains(&every) {
                    return Err(("every", "every must be from 1m to 400d".into()));
                }
                every
            }
        };
        let grace = match grace {
            None => (every / 10).max(Duration::from_secs(60)),
            Some(text) => {
                let grace = parse("grace", text)?;
                if grace > every {
                    return Err((
                        "grace",
                        "grace must not be longer than every: a job that is a whole period late has missed one".into(),
                    ));
                }
                grace
            }
        };
        Ok(Some(Heartbeat { every, grace }))
    }
}

const NOT_A_HEARTBEAT: &str =
    "'every' and 'grace' are for heartbeat sensors: add kind = \"heartbeat\"";

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// What the store knows of a sensor's pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushes {
    /// When its current push URL was made (ms): pushes are expected from
    /// then on.
    pub since_ms: i64,
    /// Its last push, if any.
    pub last: Option<Push>,
}

/// One call of a push URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// The caller said the job failed (`?status=down`).
    pub down: bool,
    /// The caller's message (`?msg=`), printable, at most 200 characters.
    pub message: String,
    /// How long the job took, as the caller said (`?duration=`).
    pub duration_ms: Option<i64>,
}

/// The most characters of a push's message that are kept.
pub const MESSAGE_MAX: usize = 200;

/// The verdict on a heartbeat sensor at `now_ms`: UP when a push arrived
/// within `every + grace` (DOWN `reported_down` when it said the job
/// failed), DOWN `missed_heartbeat` when none did, UNKNOWN when it has no
/// push URL yet (nobody can push: never a false DOWN). `None` while the
/// first push is not due yet (the sensor stays pending).
pub fn judge(
    pushes: Option<&Pushes>,
    heartbeat: &Heartbeat,
    now_ms: i64,
) -> Option<(Status, Reason, String)> {
    let allowed = (heartbeat.every + heartbeat.grace).as_millis() as i64;
    let Some(pushes) = pushes else {
        return Some((
            Status::Unknown,
            Reason::LocalError,
            "no push URL yet: make one on the sensor's page or with `portwatch push-url SERVER/SENSOR`".into(),
        ));
    };
    let age = |at_ms: i64| portwatch_probe::duration::age(at_ms, now_ms);
    match &pushes.last {
        Some(push) if push.at_ms >= pushes.since_ms && now_ms - push.at_ms <= allowed => {
            let took = push
                .duration_ms
                .map(|ms| format!(", took {}", portwatch_probe::duration::age(0, ms)))
                .unwrap_or_default();
            let said = if push.message.is_empty() {
                String::new()
            } else {
                format!(": {}", push.message)
            };
            Some(if push.down {
                (
                    Status::Down,
                    Reason::ReportedDown,
                    format!(
                        "the last push ({} ago{took}) reported a failure{said}",
                        age(push.at_ms)
                    ),
                )
            } else {
                (
                    Status::Up,
                    Reason::Connected,
                    format!("pushed {} ago{took}{said}", age(push.at_ms)),
                )
            })
        }
        // Nothing pushed with this URL yet (a push before it was made
        // counts for nothing), and its first push is not due.
        _ if now_ms - pushes.since_ms <= allowed => None,
        last => {
            let since = match last {
                Some(push) if push.at_ms >= pushes.since_ms => {
                    format!("the last push was {} ago", age(push.at_ms))
                }
                _ => format!(
                    "no push since its URL was made {} ago",
                    age(pushes.since_ms)
                ),
            };
            Some((
                Status::Down,
                Reason::MissedHeartbeat,
                format!(
                    "{since} (expected every {}, grace {})",
                    portwatch_probe::duration::format(heartbeat.every),
                    portwatch_probe::duration::format(heartbeat.grace)
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn hourly() -> Heartbeat {
        Heartbeat {
            every: Duration::from_secs(3600),
            grace: Duration::from_secs(600),
        }
    }

    fn pushed(at_ms: i64, down: bool, message: &str) -> Option<Push> {
        Some(Push {
            at_ms,
            down,
            message: message.into(),
            duration_ms: Some(90_000),
        })
    }

    #[test]
    fn a_push_within_the_period_and_grace_is_up_and_one_later_is_missed() {
        let pushes = Pushes {
            since_ms: 0,
            last: pushed(100 * MIN, false, "backup done"),
        };
        let (status, reason, message) = judge(Some(&pushes), &hourly(), 170 * MIN).unwrap();
        assert_eq!((status, reason), (Status::Up, Reason::Connected));
        assert_eq!(message, "pushed 1h 10m ago, took 1m 30s: backup done");
        // 70 minutes is every + grace exactly: still on time; a minute on,
        // missed.
        let (status, reason, message) = judge(Some(&pushes), &hourly(), 171 * MIN).unwrap();
        assert_eq!((status, reason), (Status::Down, Reason::MissedHeartbeat));
        assert_eq!(
            message,
            "the last push was 1h 11m ago (expected every 1h, grace 10m)"
        );
    }

    #[test]
    fn a_push_that_reports_a_failure_is_down_with_its_message() {
        let pushes = Pushes {
            since_ms: 0,
            last: pushed(100 * MIN, true, "disk full"),
        };
        let (status, reason, message) = judge(Some(&pushes), &hourly(), 101 * MIN).unwrap();
        assert_eq!((status, reason), (Status::Down, Reason::ReportedDown));
        assert_eq!(
            message,
            "the last push (1m 0s ago, took 1m 30s) reported a failure: disk full"
        );
    }

    #[test]
    fn the_first_push_is_awaited_from_when_the_url_was_made() {
        let new = Pushes {
            since_ms: 100 * MIN,
            last: None,
        };
        assert_eq!(judge(Some(&new), &hourly(), 170 * MIN), None, "not due yet");
        let (status, reason, message) = judge(Some(&new), &hourly(), 171 * MIN).unwrap();
        assert_eq!((status, reason), (Status::Down, Reason::MissedHeartbeat));
        assert!(
            message.starts_with("no push since its URL was made 1h 11m ago"),
            "{message}"
        );
        // A push made with an older URL (before a rotation) counts for
        // nothing, but the new URL gets its full period.
        let rotated = Pushes {
            since_ms: 100 * MIN,
            last: pushed(99 * MIN, false, ""),
        };
        assert_eq!(judge(Some(&rotated), &hourly(), 120 * MIN), None);
        let (_, reason, message) = judge(Some(&rotated), &hourly(), 171 * MIN).unwrap();
        assert_eq!(reason, Reason::MissedHeartbeat);
        assert!(
            message.starts_with("no push since its URL was made 1h 11m ago"),
            "{message}"
        );
    }

    #[test]
    fn settings_are_checked_at_their_bounds_and_stored_in_milliseconds() {
        let settings = |every, grace| Heartbeat::from_settings(Some("heartbeat"), every, grace);
        assert_eq!(
            settings(Some("400d"), None).unwrap().map(|h| h.every),
            Some(Duration::from_secs(400 * 86_400))
        );
        assert_eq!(settings(Some("401d"), None).unwrap_err().0, "every");
        assert_eq!(settings(Some("59s"), None).unwrap_err().0, "every");
        // Grace may be as long as the period, not longer.
        assert_eq!(
            settings(Some("1h"), Some("1h")).unwrap().map(|h| h.grace),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(settings(Some("1h"), Some("61m")).unwrap_err().0, "grace");
        assert_eq!(Heartbeat::from_settings(Some("tcp"), None, None), Ok(None));
        let heartbeat = hourly();
        let json = serde_json::to_string(&heartbeat).unwrap();
        assert_eq!(json, r#"{"every":3600000,"grace":600000}"#);
        assert_eq!(serde_json::from_str::<Heartbeat>(&json).unwrap(), heartbeat);
    }

    #[test]
    fn without_a_push_url_the_sensor_is_unknown_never_down() {
        let (status, reason, _) = judge(None, &hourly(), 0).unwrap();
        assert_eq!((status, reason), (Status::Unknown, Reason::LocalError));
    }
}
