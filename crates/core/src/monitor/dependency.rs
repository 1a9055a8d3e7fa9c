//! The decisions about dependencies and held alerts, apart from the
//! running monitor:
//!
//! - a sensor is paused while its dependency is down, in a maintenance
//!   window, or paused by hand ([`pause_input`]);
//! - a dependant that goes DOWN while its dependency still looks up has its
//!   alert held until the dependency is re-checked ([`hold`]); the
//!   dependency's check then releases it ([`to_release`]) or, when the
//!   dependency is down too, the dependant's pause cancels it
//!   ([`cancel_reason`]), so that only the dependency alerts.

use std::collections::HashSet;

use super::state::{Change, Input, PauseCause, State, wanted_pause};

/// Whether a state satisfies dependants: UP, or WARNING (still answering).
/// A failure being re-checked leaves the state as it was until the
/// re-check answers.
pub fn is_up(state: State) -> bool {
    matches!(state, State::Up | State::Warning)
}

/// What the state machine must be told so that a sensor in `state` is
/// paused as `manual`, `in_window` and `dependency_up` want; `None` when it
/// already is as it should be.
pub fn pause_input(
    state: State,
    manual: bool,
    in_window: bool,
    dependency_up: bool,
) -> Option<Input> {
    match (wanted_pause(manual, in_window, dependency_up), state) {
        (Some(cause), State::Paused(current)) if cause == current => None,
        (Some(cause), _) => Some(Input::Pause(cause)),
        (None, State::Paused(_)) => Some(Input::Resume),
        (None, _) => None,
    }
}

/// The dependency to re-check before a dependant's alert goes out: when
/// `change` takes the dependant DOWN, it notifies someone, and it has a
/// running dependency. Its alert is then held until that re-check.
pub fn hold(change: &Change, notifies: bool, dependency: Option<i64>) -> Option<i64> {
    dependency.filter(|_| change.to == State::Down && notifies)
}

/// Which held dependants a check of their dependency releases: all of them
/// when the dependency is still up, none when it is not (they are paused
/// instead, which cancels their alerts).
pub fn to_release(dependency_up: bool, held: &HashSet<i64>, dependants: &[i64]) -> Vec<i64> {
    if !dependency_up {
        return Vec::new();
    }
    dependants
        .iter()
        .copied()
        .filter(|id| held.contains(id))
        .collect()
}

/// Why a held alert is cancelled by the pause `to`, for the outbox's record.
pub fn cancel_reason(to: State, depends_on: Option<&str>, message: &str) -> String {
    match (to, depends_on) {
        (State::Paused(PauseCause::Dependency), Some(dependency)) => {
            format!("cancelled: its dependency {dependency} is down; it alerts instead")
        }
        _ => format!("cancelled: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_and_warning_satisfy_dependants() {
        assert!(is_up(State::Up) && is_up(State::Warning));
        for state in [
            State::Down,
            State::Pending,
            State::Unknown,
            State::Paused(PauseCause::Manual),
        ] {
            assert!(!is_up(state), "{state}");
        }
    }

    #[test]
    fn a_sensor_is_paused_and_resumed_as_its_causes_want() {
        let dependency = State::Paused(PauseCause::Dependency);
        // A down dependency pauses an up sensor, once.
        assert_eq!(
            pause_input(State::Up, false, false, false),
            Some(Input::Pause(PauseCause::Dependency))
        );
        assert_eq!(pause_input(dependency, false, false, false), None);
        // A window outranks the dependency; a manual pause outranks both.
        assert_eq!(
            pause_input(dependency, false, true, false),
            Some(Input::Pause(PauseCause::Schedule))
        );
        assert_eq!(
            pause_input(State::Paused(PauseCause::Schedule), true, true, false),
            Some(Input::Pause(PauseCause::Manual))
        );
        // The dependency back up: resumed; a running sensor is left alone.
        assert_eq!(
            pause_input(dependency, false, false, true),
            Some(Input::Resume)
        );
        assert_eq!(pause_input(State::Down, false, false, true), None);
    }

    fn change(to: State) -> Change {
        Change {
            from: State::Up,
            to,
            reason: None,
            message: String::new(),
        }
    }

    #[test]
    fn only_a_notifying_down_with_a_dependency_is_held() {
        assert_eq!(hold(&change(State::Down), true, Some(7)), Some(7));
        assert_eq!(
            hold(&change(State::Down), false, Some(7)),
            None,
            "no alert to hold"
        );
        assert_eq!(
            hold(&change(State::Down), true, None),
            None,
            "no dependency"
        );
        assert_eq!(
            hold(&change(State::Warning), true, Some(7)),
            None,
            "not down"
        );
    }

    #[test]
    fn a_dependency_still_up_releases_only_its_held_dependants() {
        let held: HashSet<i64> = [2, 3, 9].into();
        assert_eq!(to_release(true, &held, &[1, 2, 3]), [2, 3]);
        assert!(to_release(false, &held, &[1, 2, 3]).is_empty());
    }

    #[test]
    fn a_cancelled_alert_says_why() {
        assert_eq!(
            cancel_reason(State::Paused(PauseCause::Dependency), Some("gw/ping"), "x"),
            "cancelled: its dependency gw/ping is down; it alerts instead"
        );
        assert_eq!(
            cancel_reason(
                State::Paused(PauseCause::Manual),
                Some("gw/ping"),
                "paused by hand"
            ),
            "cancelled: paused by hand"
        );
    }
}
