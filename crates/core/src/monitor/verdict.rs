//! A sensor checked from several locations, judged from k of n.
//!
//! Each location keeps its own state (its node's state machine, with its
//! re-checks); the sensor's verdict combines them:
//!
//! - DOWN when at least `k` locations see it down with fresh results;
//! - UNKNOWN when fewer than `k` locations have fresh results at all (their
//!   nodes are dead or cut off): the monitor's blindness is never the
//!   service's failure;
//! - WARNING `partial` when some locations see it down but fewer than `k`,
//!   naming them;
//! - otherwise the worst of the fresh locations (WARNING, UNKNOWN), or UP.
//!
//! `k` is the sensor's `down_when`: a number, `"all"`, or by default 1 with
//! one location and a majority with several.
//!
//! The node that judges a sensor reads its locations' states from the
//! store and feeds the verdict to the sensor's state machine as if it were
//! a check (see the application's monitor).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use std::time::Duration;

use portwatch_probe::{Reason, Status};

use super::decide::Outcome;
use super::state::State;

/// How many locations must see a sensor down for it to be DOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DownWhen {
    /// At least this many (at least 1).
    Count(u32),
    /// Every location.
    All,
}

impl DownWhen {
    /// Parses `1`, `2`, … or `all`.
    pub fn parse(text: &str) -> Result<DownWhen, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(DownWhen::All);
        }
        match text.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(DownWhen::Count(n)),
            _ => Err(format!(
                "down_when = '{text}' is not a count of locations: give 1, 2, … or \"all\""
            )),
        }
    }

    /// `k` among `n` locations: at most `n` (a count above it needs them
    /// all). Without a setting: a majority (1 of 1, 2 of 2 or 3, …).
    pub fn needed(setting: Option<DownWhen>, n: usize) -> usize {
        let n = n.max(1);
        match setting {
            None => n / 2 + 1,
            Some(DownWhen::All) => n,
            Some(DownWhen::Count(k)) => (k as usize).min(n),
        }
    }
}

impl std::fmt::Display for DownWhen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownWhen::Count(n) => write!(f, "{n}"),
            DownWhen::All => f.write_str("all"),
        }
    }
}

/// Stored and sent as `2` or `"all"`, as written in portwatch.toml.
impl Serialize for DownWhen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DownWhen::Count(n) => s.serialize_u32(*n),
            DownWhen::All => s.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for DownWhen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DownWhen, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Count(i64),
            Text(String),
        }
        let text = match Written::deserialize(d)? {
            Written::Count(n) => n.to_string(),
            Written::Text(text) => text,
        };
        DownWhen::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Checks a sensor's `locations`: names as nodes give them with
/// `--location`, each once. An empty list means every location with a
/// live node.
pub fn check_locations(names: &[String]) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err("locations has an empty name: give names as the nodes' --location".into());
        }
        if let Some(problem) = portwatch_probe::text::name_problem(name) {
            return Err(format!(
                "location '{}' {problem}",
                portwatch_probe::text::visible(name)
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("location '{name}' is listed twice"));
        }
    }
    Ok(())
}

/// What the node checking a sensor from one location stores about it
/// after each check, for the node that judges it and for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationReport {
    /// The sensor.
    pub sensor: i64,
    /// The location.
    pub location: String,
    /// Its state there, after that location's re-checks.
    pub state: State,
    /// Since when (ms).
    pub since_ms: i64,
    /// When it was last checked there (ms).
    pub checked_ms: i64,
    /// The last check's reason.
    pub reason: Reason,
    /// The last connect time (µs), if an answer came.
    pub rtt_us: Option<u32>,
    /// The last check's message.
    pub message: String,
}

impl LocationReport {
    /// As the verdict needs it.
    pub fn at(&self) -> AtLocation {
        AtLocation {
            location: self.location.clone(),
            state: self.state,
            last_check_ms: Some(self.checked_ms),
        }
    }
}

/// One location's view of a sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtLocation {
    /// The location.
    pub location: String,
    /// Its state there.
    pub state: State,
    /// When it was last checked there (ms), if ever.
    pub last_check_ms: Option<i64>,
}

/// The combined verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// UP, WARNING, DOWN or UNKNOWN.
    pub state: State,
    /// `partial` (down at fewer than k locations), `too_few_locations`
    /// (fewer than k with fresh results), or `None` when the locations
    /// agree.
    pub reason: Option<&'static str>,
    /// The locations that see it down, with fresh results.
    pub down: Vec<String>,
    /// The locations without a fresh result.
    pub stale: Vec<String>,
    /// For people: what the locations say.
    pub message: String,
}

/// Judges a sensor from its locations at `now_ms`; a location's result is
/// fresh for `fresh_ms` (two intervals and a timeout, say).
pub fn judge(
    locations: &[AtLocation],
    down_when: Option<DownWhen>,
    now_ms: i64,
    fresh_ms: i64,
) -> Verdict {
    let k = DownWhen::needed(down_when, locations.len());
    let is_fresh = |l: &&AtLocation| {
        !matches!(l.state, State::Pending | State::Paused(_))
            && l.last_check_ms.is_some_and(|at| now_ms - at <= fresh_ms)
    };
    let fresh: Vec<&AtLocation> = locations.iter().filter(is_fresh).collect();
    let names = |wanted: &dyn Fn(&AtLocation) -> bool| -> Vec<String> {
        locations
            .iter()
            .filter(|l| wanted(l))
            .map(|l| l.location.clone())
            .collect()
    };
    let down = names(&|l| is_fresh(&l) && l.state == State::Down);
    let stale = names(&|l| !is_fresh(&l));
    let (state, reason, message) = if down.len() >= k {
        (
            State::Down,
            None,
            format!(
                "down at {} of {} locations ({}; {k} needed)",
                down.len(),
                locations.len(),
                down.join(", ")
            ),
        )
    } else if fresh.len() < k {
        (
            State::Unknown,
            Some("too_few_locations"),
            format!(
                "{} of {} locations have fresh results, {k} needed for a verdict (none from {})",
                fresh.len(),
                locations.len(),
                stale.join(", ")
            ),
        )
    } else if !down.is_empty() {
        (
            State::Warning,
            Some("partial"),
            format!(
                "down at {} only ({} of {} locations; {k} needed for DOWN)",
                down.join(", "),
                down.len(),
                locations.len()
            ),
        )
    } else if fresh.iter().any(|l| l.state == State::Warning) {
        (
            State::Warning,
            None,
            format!(
                "warning at {}",
                names(&|l| is_fresh(&l) && l.state == State::Warning).join(", ")
            ),
        )
    } else if fresh.iter().any(|l| l.state == State::Unknown) {
        (
            State::Unknown,
            None,
            format!(
                "not checked at {}",
                names(&|l| is_fresh(&l) && l.state == State::Unknown).join(", ")
            ),
        )
    } else {
        (
            State::Up,
            None,
            format!("up at {} of {} locations", fresh.len(), locations.len()),
        )
    };
    Verdict {
        state,
        reason,
        down,
        stale,
        message,
    }
}

/// The verdict on a sensor from its locations' reports, as a check's
/// outcome for the sensor's state machine: `wanted` are its locations (a
/// location without a report is stale), `fresh_ms` how long a report
/// counts. The reason is the down (or warning, or unknown) locations' first
/// reason, `partial` or `too_few_locations`; the connect time the fastest
/// fresh location's.
pub fn combine(
    reports: &[LocationReport],
    wanted: &[&str],
    down_when: Option<DownWhen>,
    now_ms: i64,
    fresh_ms: i64,
) -> (Verdict, Outcome) {
    let report = |location: &str| reports.iter().find(|r| r.location == location);
    let at: Vec<AtLocation> = wanted
        .iter()
        .map(|location| match report(location) {
            Some(report) => report.at(),
            None => AtLocation {
                location: (*location).to_owned(),
                state: State::Pending,
                last_check_ms: None,
            },
        })
        .collect();
    let verdict = judge(&at, down_when, now_ms, fresh_ms);
    let fresh = |r: &&LocationReport| {
        wanted.contains(&r.location.as_str()) && now_ms - r.checked_ms <= fresh_ms
    };
    let first_reason = |state: State| {
        reports
            .iter()
            .filter(fresh)
            .filter(|r| r.state == state)
            .min_by(|a, b| a.location.cmp(&b.location))
            .map(|r| (r.reason, r.message.as_str()))
    };
    let status = match verdict.state {
        State::Up => Status::Up,
        State::Warning => Status::Warning,
        State::Down => Status::Down,
        _ => Status::Unknown,
    };
    let (reason, detail) = match (verdict.reason, verdict.state) {
        (Some("partial"), _) => (Reason::Partial, first_reason(State::Down)),
        (Some(_), _) => (Reason::TooFewLocations, None),
        (None, state) => match first_reason(state) {
            Some((reason, message)) => (reason, Some((reason, message))),
            None => (Reason::Connected, None),
        },
    };
    let message = match detail {
        Some((_, message)) if !message.is_empty() => format!("{}: {message}", verdict.message),
        _ => verdict.message.clone(),
    };
    let response_time = reports
        .iter()
        .filter(fresh)
        .filter_map(|r| r.rtt_us)
        .min()
        .map(|us| Duration::from_micros(u64::from(us)));
    let outcome = Outcome {
        at_ms: now_ms,
        status,
        reason,
        message,
        response_time,
        details: None,
    };
    (verdict, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::state::PauseCause;

    const NOW: i64 = 1_000_000;
    const FRESH: i64 = 25_000;

    fn at(location: &str, state: State, age_ms: Option<i64>) -> AtLocation {
        AtLocation {
            location: location.into(),
            state,
            last_check_ms: age_ms.map(|age| NOW - age),
        }
    }

    fn judged(locations: &[AtLocation], k: Option<DownWhen>) -> (State, Option<&'static str>) {
        let verdict = judge(locations, k, NOW, FRESH);
        (verdict.state, verdict.reason)
    }

    fn report(
        location: &str,
        state: State,
        age_ms: i64,
        reason: Reason,
        rtt_us: Option<u32>,
    ) -> LocationReport {
        LocationReport {
            sensor: 1,
            location: location.into(),
            state,
            since_ms: 0,
            checked_ms: NOW - age_ms,
            reason,
            rtt_us,
            message: format!("{} from {location}", reason.as_str()),
        }
    }

    #[test]
    fn combined_reports_become_a_checks_outcome() {
        let k2 = Some(DownWhen::Count(2));
        let both_up = [
            report("eu", State::Up, 1_000, Reason::Connected, Some(900)),
            report("us", State::Up, 1_000, Reason::Connected, Some(300)),
        ];
        let (verdict, outcome) = combine(&both_up, &["eu", "us"], k2, NOW, FRESH);
        assert_eq!(
            (verdict.state, outcome.status, outcome.reason),
            (State::Up, Status::Up, Reason::Connected)
        );
        assert_eq!(
            outcome.response_time,
            Some(Duration::from_micros(300)),
            "the fastest location"
        );
        assert_eq!(outcome.at_ms, NOW);

        let eu_cut = [
            report("eu", State::Down, 1_000, Reason::Timeout, None),
            report("us", State::Up, 1_000, Reason::Connected, Some(300)),
        ];
        let (_, outcome) = combine(&eu_cut, &["eu", "us"], k2, NOW, FRESH);
        assert_eq!(
            (outcome.status, outcome.reason),
            (Status::Warning, Reason::Partial)
        );
        assert_eq!(
            outcome.message,
            "down at eu only (1 of 2 locations; 2 needed for DOWN): timeout from eu"
        );

        let both_down = [
            report("eu", State::Down, 1_000, Reason::Timeout, None),
            report("us", State::Down, 1_000, Reason::Refused, None),
        ];
        let (_, outcome) = combine(&both_down, &["eu", "us"], k2, NOW, FRESH);
        assert_eq!(
            (outcome.status, outcome.reason),
            (Status::Down, Reason::Timeout),
            "eu's, first by name"
        );
        assert_eq!(outcome.response_time, None);

        // us's node is dead: its last report is old, and a location with
        // no report at all is stale too.
        let us_dead = [
            report("eu", State::Down, 1_000, Reason::Timeout, None),
            report("us", State::Up, FRESH + 1, Reason::Connected, Some(5)),
        ];
        let (_, outcome) = combine(&us_dead, &["eu", "us"], k2, NOW, FRESH);
        assert_eq!(
            (outcome.status, outcome.reason),
            (Status::Unknown, Reason::TooFewLocations)
        );
        assert_eq!(
            outcome.response_time, None,
            "a stale location's time is not used"
        );
        let (_, outcome) = combine(&us_dead[..1], &["eu", "us"], k2, NOW, FRESH);
        assert_eq!(outcome.reason, Reason::TooFewLocations);
        // A report from a location the sensor no longer lists is ignored.
        let (verdict, outcome) = combine(&both_down, &["eu"], None, NOW, FRESH);
        assert_eq!(
            (verdict.state, outcome.reason),
            (State::Down, Reason::Timeout)
        );
        assert_eq!(verdict.down, ["eu"]);
        assert!(verdict.message.contains("1 of 1"), "{}", verdict.message);
        // A check without a message adds nothing to the verdict's.
        let quiet = [LocationReport {
            message: String::new(),
            ..report("eu", State::Down, 0, Reason::Refused, None)
        }];
        let (verdict, outcome) = combine(&quiet, &["eu"], None, NOW, FRESH);
        assert_eq!(outcome.message, verdict.message);
    }

    #[test]
    fn the_default_is_one_of_one_and_a_majority_of_several() {
        assert_eq!(DownWhen::needed(None, 1), 1);
        assert_eq!(DownWhen::needed(None, 2), 2);
        assert_eq!(DownWhen::needed(None, 3), 2);
        assert_eq!(DownWhen::needed(None, 4), 3);
        assert_eq!(DownWhen::needed(None, 0), 1);
        assert_eq!(DownWhen::needed(Some(DownWhen::All), 3), 3);
        assert_eq!(DownWhen::needed(Some(DownWhen::Count(5)), 3), 3);
        assert_eq!(DownWhen::needed(Some(DownWhen::Count(1)), 3), 1);
    }

    #[test]
    fn down_when_reads_and_writes_as_in_the_file() {
        let read = |json: &str| serde_json::from_str::<DownWhen>(json).map_err(|e| e.to_string());
        assert_eq!(read("2"), Ok(DownWhen::Count(2)));
        assert_eq!(read("\"all\""), Ok(DownWhen::All));
        assert!(read("0").unwrap_err().contains("not a count of locations"));
        assert_eq!(serde_json::to_string(&DownWhen::Count(3)).unwrap(), "3");
        assert_eq!(serde_json::to_string(&DownWhen::All).unwrap(), "\"all\"");
        assert_eq!(DownWhen::All.to_string(), "all");
    }

    #[test]
    fn locations_are_named_once_each() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_locations(&names(&["eu-west", "us-east"])), Ok(()));
        assert_eq!(check_locations(&[]), Ok(()));
        assert!(
            check_locations(&names(&["eu", " "]))
                .unwrap_err()
                .contains("empty name")
        );
        assert_eq!(
            check_locations(&names(&["eu", "us", "eu"])),
            Err("location 'eu' is listed twice".into())
        );
        assert!(check_locations(&names(&["eu\u{202e}"])).is_err());
    }

    #[test]
    fn down_when_parses_counts_and_all_and_refuses_the_rest() {
        assert_eq!(DownWhen::parse("2"), Ok(DownWhen::Count(2)));
        assert_eq!(DownWhen::parse(" ALL "), Ok(DownWhen::All));
        for bad in ["0", "-1", "most", ""] {
            let error = DownWhen::parse(bad).unwrap_err();
            assert!(error.contains("give 1, 2, … or \"all\""), "{error}");
        }
    }

    #[test]
    fn k_locations_down_make_it_down_and_fewer_a_partial_warning() {
        let two_down = [
            at("eu", State::Down, Some(1_000)),
            at("us", State::Down, Some(2_000)),
        ];
        let one_down = [
            at("eu", State::Down, Some(1_000)),
            at("us", State::Up, Some(2_000)),
        ];
        let k2 = Some(DownWhen::Count(2));
        assert_eq!(judged(&two_down, k2), (State::Down, None));
        assert_eq!(judged(&one_down, k2), (State::Warning, Some("partial")));
        assert_eq!(
            judged(&one_down, Some(DownWhen::Count(1))),
            (State::Down, None)
        );
        let verdict = judge(&one_down, k2, NOW, FRESH);
        assert_eq!(verdict.down, ["eu"]);
        assert_eq!(
            verdict.message,
            "down at eu only (1 of 2 locations; 2 needed for DOWN)"
        );
    }

    #[test]
    fn too_few_fresh_locations_are_unknown_never_down() {
        // The us node is dead: its last result is old.
        let one_fresh = [
            at("eu", State::Down, Some(1_000)),
            at("us", State::Down, Some(FRESH + 1)),
        ];
        let k2 = Some(DownWhen::Count(2));
        assert_eq!(
            judged(&one_fresh, k2),
            (State::Unknown, Some("too_few_locations"))
        );
        let verdict = judge(&one_fresh, k2, NOW, FRESH);
        assert_eq!(verdict.stale, ["us"]);
        assert!(
            verdict.message.contains("none from us"),
            "{}",
            verdict.message
        );
        // Fresh up to the limit, and a location never checked is stale.
        let edge = [
            at("eu", State::Down, Some(FRESH)),
            at("us", State::Down, None),
        ];
        assert_eq!(judged(&edge, k2).0, State::Unknown);
        assert_eq!(judged(&edge, Some(DownWhen::Count(1))).0, State::Down);
        // Pending or paused locations give no verdict either.
        let quiet = [
            at("eu", State::Pending, Some(0)),
            at("us", State::Paused(PauseCause::Schedule), Some(0)),
        ];
        assert_eq!(judged(&quiet, None).0, State::Unknown);
    }

    #[test]
    fn agreeing_locations_give_their_state_and_the_worst_wins() {
        let up = [
            at("eu", State::Up, Some(0)),
            at("us", State::Up, Some(0)),
            at("ap", State::Up, Some(0)),
        ];
        assert_eq!(judged(&up, None), (State::Up, None));
        let slow = [
            at("eu", State::Up, Some(0)),
            at("us", State::Warning, Some(0)),
            at("ap", State::Unknown, Some(0)),
        ];
        assert_eq!(judged(&slow, None), (State::Warning, None));
        let blind = [
            at("eu", State::Up, Some(0)),
            at("us", State::Unknown, Some(0)),
        ];
        assert_eq!(
            judged(&blind, Some(DownWhen::Count(1))),
            (State::Unknown, None)
        );
        // Three locations, one dead: two fresh are enough for a majority.
        let one_dead = [
            at("eu", State::Down, Some(0)),
            at("us", State::Down, Some(0)),
            at("ap", State::Up, Some(FRESH * 10)),
        ];
        assert_eq!(judged(&one_dead, None), (State::Down, None));
    }
}
