//! The sensor state machine, as a pure function:
//! (state, input, retries) → (state, event?, re-check now?).

use std::fmt;
use std::str::FromStr;

use portwatch_probe::{Reason, Status};

/// Why a sensor is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseCause {
    /// Paused by a person.
    Manual,
    /// The sensor it depends on is not UP.
    Dependency,
    /// A maintenance window is in force.
    Schedule,
}

/// The state of a sensor in the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not checked yet.
    Pending,
    /// Answering as expected.
    Up,
    /// Slower than the warning threshold (or, with several locations, down
    /// at some of them). An immediate re-check of a failure is part of its
    /// check and does not pass through WARNING.
    Warning,
    /// A failure confirmed by re-checks, or slower than the error threshold.
    Down,
    /// Not checked; paused time counts as neither uptime nor downtime.
    Paused(PauseCause),
    /// The monitor could not perform the check (never reported as DOWN).
    Unknown,
}

impl State {
    /// The stored and printed name: `up`, `paused(dependency)`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Up => "up",
            State::Warning => "warning",
            State::Down => "down",
            State::Paused(PauseCause::Manual) => "paused(manual)",
            State::Paused(PauseCause::Dependency) => "paused(dependency)",
            State::Paused(PauseCause::Schedule) => "paused(schedule)",
            State::Unknown => "unknown",
        }
    }

    /// Whether time in this state counts toward availability, and how:
    /// `Some(true)` up, `Some(false)` down, `None` excluded.
    pub fn availability(self) -> Option<bool> {
        match self {
            State::Up | State::Warning => Some(true),
            State::Down => Some(false),
            State::Pending | State::Paused(_) | State::Unknown => None,
        }
    }
}

impl fmt::Display for State {
    /// The name, honouring width and alignment (`{:<18}` in tables).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(text: &str) -> Result<State, String> {
        Ok(match text {
            "pending" => State::Pending,
            "up" => State::Up,
            "warning" => State::Warning,
            "down" => State::Down,
            "paused(manual)" => State::Paused(PauseCause::Manual),
            "paused(dependency)" => State::Paused(PauseCause::Dependency),
            "paused(schedule)" => State::Paused(PauseCause::Schedule),
            "unknown" => State::Unknown,
            other => return Err(format!("unknown state '{other}'")),
        })
    }
}

/// What happened to a sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A check finished.
    Checked {
        /// Its verdict.
        status: Status,
        /// Its reason.
        reason: Reason,
        /// True when DOWN came from the critical latency threshold, which
        /// needs no re-check.
        slow: bool,
        /// Its message.
        message: String,
    },
    /// The sensor must be paused for this cause.
    Pause(PauseCause),
    /// The pause is over.
    Resume,
}

/// A state change, to be stored and announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// The reason of the check that caused it, if a check did.
    pub reason: Option<Reason>,
    /// What happened, for people.
    pub message: String,
}

/// A sensor's state and its run of consecutive failed checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    /// The current state.
    pub state: State,
    /// Failed checks in a row.
    pub failures: u32,
}

impl Tracker {
    /// A sensor not checked yet.
    pub const PENDING: Tracker = Tracker {
        state: State::Pending,
        failures: 0,
    };
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The new tracker.
    pub tracker: Tracker,
    /// The state change, if the state changed.
    pub change: Option<Change>,
    /// Check again at once (a failure being confirmed).
    pub recheck: bool,
}

/// Advances the state machine by one input. `retries` failed re-checks
/// confirm a failure before DOWN (IPCheck's default is 1).
pub fn step(tracker: Tracker, input: &Input, retries: u32) -> Step {
    let (next, reason, message, recheck) = match input {
        Input::Pause(cause) => (
            Tracker {
                state: State::Paused(*cause),
                failures: 0,
            },
            None,
            pause_message(*cause),
            false,
        ),
        Input::Resume if matches!(tracker.state, State::Paused(_)) => {
            (Tracker::PENDING, None, "checks resume".to_owned(), false)
        }
        Input::Resume => return unchanged(tracker),
        // A check that was running when the sensor was paused is ignored.
        Input::Checked { .. } if matches!(tracker.state, State::Paused(_)) => {
            return unchanged(tracker);
        }
        Input::Checked {
            status,
            reason,
            slow,
            message,
        } => {
            let (next, recheck) = match status {
                Status::Up => (
                    Tracker {
                        state: State::Up,
                        failures: 0,
                    },
                    false,
                ),
                Status::Warning => (
                    Tracker {
                        state: State::Warning,
                        failures: 0,
                    },
                    false,
                ),
                Status::Unknown => (
                    Tracker {
                        state: State::Unknown,
                        failures: tracker.failures,
                    },
                    false,
                ),
                Status::Down => {
                    let failures = tracker.failures + 1;
                    if *slow || failures > retries {
                        (
                            Tracker {
                                state: State::Down,
                                failures,
                            },
                            false,
                        )
                    } else {
                        // An immediate re-check is part of this check: the
                        // state stays as it is until the re-check answers
                        // (never up -> warning -> down within milliseconds).
                        (
                            Tracker {
                                state: tracker.state,
                                failures,
                            },
                            true,
                        )
                    }
                }
            };
            let message = if next.state == State::Down && !*slow && next.failures > 1 {
                let rechecks = next.failures - 1;
                let plural = if rechecks == 1 { "" } else { "s" };
                format!("{message} (confirmed by {rechecks} re-check{plural})")
            } else {
                message.clone()
            };
            (next, Some(*reason), message, recheck)
        }
    };
    let change = (next.state != tracker.state).then_some(Change {
        from: tracker.state,
        to: next.state,
        reason,
        message,
    });
    Step {
        tracker: next,
        change,
        recheck,
    }
}

fn unchanged(tracker: Tracker) -> Step {
    Step {
        tracker,
        change: None,
        recheck: false,
    }
}

fn pause_message(cause: PauseCause) -> String {
    match cause {
        PauseCause::Manual => "paused by a user",
        PauseCause::Dependency => "paused: the sensor it depends on is not UP",
        PauseCause::Schedule => "paused: a maintenance window is in force",
    }
    .to_owned()
}

/// The pause a sensor should be in, if any: a manual pause wins over a
/// maintenance window, which wins over a dependency.
pub fn wanted_pause(manual: bool, in_window: bool, dependency_up: bool) -> Option<PauseCause> {
    if manual {
        Some(PauseCause::Manual)
    } else if in_window {
        Some(PauseCause::Schedule)
    } else if !dependency_up {
        Some(PauseCause::Dependency)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(status: Status, reason: Reason) -> Input {
        Input::Checked {
            status,
            reason,
            slow: false,
            message: String::new(),
        }
    }

    fn up() -> Input {
        checked(Status::Up, Reason::Connected)
    }

    fn refused() -> Input {
        checked(Status::Down, Reason::Refused)
    }

    /// Runs a script of inputs and returns the states after each.
    fn run(retries: u32, inputs: &[Input]) -> Vec<(State, bool, bool)> {
        let mut tracker = Tracker::PENDING;
        inputs
            .iter()
            .map(|input| {
                let step = step(tracker, input, retries);
                tracker = step.tracker;
                (tracker.state, step.change.is_some(), step.recheck)
            })
            .collect()
    }

    /// Regression (first-run #7): every failure made two events,
    /// `up -> warning -> down` a millisecond apart. The re-check is part of
    /// the check: one change, when it has answered.
    #[test]
    fn a_failure_is_rechecked_once_before_down_with_one_change() {
        let states = run(1, &[up(), refused(), refused(), refused(), up()]);
        assert_eq!(
            states,
            [
                (State::Up, true, false),
                (State::Up, false, true),
                (State::Down, true, false),
                (State::Down, false, false),
                (State::Up, true, false),
            ]
        );
        let mut tracker = Tracker::PENDING;
        let mut changes = Vec::new();
        for input in [up(), refused(), refused()] {
            let step = step(tracker, &input, 1);
            tracker = step.tracker;
            changes.extend(step.change);
        }
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!((changes[1].from, changes[1].to), (State::Up, State::Down));
        assert!(
            changes[1].message.ends_with("(confirmed by 1 re-check)"),
            "{changes:?}"
        );
    }

    #[test]
    fn a_passing_recheck_leaves_the_sensor_up_without_an_event() {
        let states = run(1, &[up(), refused(), up()]);
        assert_eq!(
            states,
            [
                (State::Up, true, false),
                (State::Up, false, true),
                (State::Up, false, false),
            ]
        );
    }

    #[test]
    fn a_sensor_never_up_goes_from_pending_straight_to_down() {
        let states = run(1, &[refused(), refused()]);
        assert_eq!(
            states,
            [(State::Pending, false, true), (State::Down, true, false)]
        );
    }

    #[test]
    fn retries_zero_goes_down_at_once_and_two_needs_three_failures() {
        assert_eq!(run(0, &[refused()])[0], (State::Down, true, false));
        let states: Vec<(State, bool, bool)> = run(2, &[up(), refused(), refused(), refused()]);
        assert_eq!(
            states[1..],
            [
                (State::Up, false, true),
                (State::Up, false, true),
                (State::Down, true, false)
            ]
        );
    }

    #[test]
    fn slowness_above_critical_is_down_without_recheck() {
        let slow = Input::Checked {
            status: Status::Down,
            reason: Reason::Connected,
            slow: true,
            message: String::new(),
        };
        assert_eq!(run(1, &[up(), slow])[1], (State::Down, true, false));
        let warn = checked(Status::Warning, Reason::Connected);
        assert_eq!(run(1, &[up(), warn])[1], (State::Warning, true, false));
    }

    #[test]
    fn unknown_is_never_down_and_keeps_the_failure_run() {
        let states = run(
            1,
            &[
                refused(),
                checked(Status::Unknown, Reason::LocalError),
                refused(),
            ],
        );
        assert_eq!(
            states.iter().map(|s| s.0).collect::<Vec<_>>(),
            [State::Pending, State::Unknown, State::Down]
        );
    }

    #[test]
    fn pauses_ignore_results_and_resume_to_pending() {
        let states = run(
            1,
            &[
                up(),
                Input::Pause(PauseCause::Dependency),
                refused(),
                Input::Pause(PauseCause::Dependency),
                Input::Resume,
                refused(),
            ],
        );
        assert_eq!(
            states,
            [
                (State::Up, true, false),
                (State::Paused(PauseCause::Dependency), true, false),
                (State::Paused(PauseCause::Dependency), false, false),
                (State::Paused(PauseCause::Dependency), false, false),
                (State::Pending, true, false),
                (State::Pending, false, true),
            ]
        );
        // A different cause is a change of its own.
        let step = step(
            Tracker {
                state: State::Paused(PauseCause::Dependency),
                failures: 0,
            },
            &Input::Pause(PauseCause::Manual),
            1,
        );
        assert_eq!(step.change.unwrap().to, State::Paused(PauseCause::Manual));
        assert!(
            super::step(Tracker::PENDING, &Input::Resume, 1)
                .change
                .is_none()
        );
    }

    #[test]
    fn every_state_round_trips_as_text_and_counts_correctly() {
        for state in [
            State::Pending,
            State::Up,
            State::Warning,
            State::Down,
            State::Paused(PauseCause::Manual),
            State::Paused(PauseCause::Dependency),
            State::Paused(PauseCause::Schedule),
            State::Unknown,
        ] {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
        }
        assert_eq!(State::Warning.availability(), Some(true));
        assert_eq!(State::Down.availability(), Some(false));
        assert_eq!(State::Paused(PauseCause::Schedule).availability(), None);
    }

    fn checked_with(status: Status, reason: Reason, slow: bool) -> Input {
        Input::Checked {
            status,
            reason,
            slow,
            message: "m".into(),
        }
    }

    /// Runs `inputs` and returns the messages of the changes they made.
    fn messages(retries: u32, inputs: &[Input]) -> Vec<(State, String)> {
        let mut tracker = Tracker::PENDING;
        let mut out = Vec::new();
        for input in inputs {
            let step = step(tracker, input, retries);
            tracker = step.tracker;
            out.extend(step.change.map(|c| (c.to, c.message)));
        }
        out
    }

    #[test]
    fn only_a_down_confirmed_by_rechecks_says_so() {
        let refused = || checked_with(Status::Down, Reason::Refused, false);
        // No re-check: no suffix.
        assert_eq!(messages(0, &[refused()]), [(State::Down, "m".into())]);
        // Two re-checks.
        assert_eq!(
            messages(2, &[refused(), refused(), refused()]),
            [(State::Down, "m (confirmed by 2 re-checks)".into())]
        );
        // A failure run that ends in UNKNOWN is not a confirmed DOWN.
        let unknown = checked_with(Status::Unknown, Reason::LocalError, false);
        assert_eq!(
            messages(5, &[refused(), refused(), unknown]),
            [(State::Unknown, "m".into())]
        );
        // Too slow after a failed attempt: DOWN at once, no re-check claimed.
        let slow = checked_with(Status::Down, Reason::Connected, true);
        assert_eq!(messages(5, &[refused(), slow]), [(State::Down, "m".into())]);
    }

    #[test]
    fn resume_changes_only_a_paused_sensor() {
        let up = Tracker {
            state: State::Up,
            failures: 0,
        };
        assert_eq!(step(up, &Input::Resume, 1).tracker, up);
        assert!(step(up, &Input::Resume, 1).change.is_none());
    }

    #[test]
    fn pauses_say_why_and_states_print_their_names() {
        let cases = [
            (PauseCause::Manual, "paused by a user"),
            (
                PauseCause::Dependency,
                "paused: the sensor it depends on is not UP",
            ),
            (
                PauseCause::Schedule,
                "paused: a maintenance window is in force",
            ),
        ];
        for (cause, says) in cases {
            let change = step(Tracker::PENDING, &Input::Pause(cause), 1)
                .change
                .unwrap();
            assert_eq!(change.message, says);
            assert_eq!(
                State::Paused(cause).to_string(),
                State::Paused(cause).as_str()
            );
        }
        assert_eq!(format!("{}", State::Down), "down");
        assert_eq!(format!("{:>6}", State::Up), "    up");
    }

    #[test]
    fn pause_priority() {
        assert_eq!(wanted_pause(true, true, false), Some(PauseCause::Manual));
        assert_eq!(wanted_pause(false, true, false), Some(PauseCause::Schedule));
        assert_eq!(
            wanted_pause(false, false, false),
            Some(PauseCause::Dependency)
        );
        assert_eq!(wanted_pause(false, false, true), None);
    }
}
