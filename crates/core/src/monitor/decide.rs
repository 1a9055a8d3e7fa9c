//! The monitor's decisions as one plain struct, with no runtime: [`Core`]
//! takes what happened (a check finished, the configuration changed, a
//! second passed, the monitor stops) and answers with the [`Effect`]s to
//! carry out (start a check, store a result, store and announce a state
//! change, release or cancel held notifications). The application's
//! monitor owns the clocks, the schedule, the sockets and the store, and
//! only carries effects out; everything it decides about a sensor is
//! decided here and unit-tested here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use portwatch_probe::proto::CheckDetails;
use portwatch_probe::{Reason, Status};

use super::dependency::{self, is_up};
use super::reload::{self, Changed, ConfigDiff};
use super::state::{self, Change, Input, State, Tracker};
use crate::config::model::ResolvedSensor;
use crate::notify::plan::{Current, Outgoing, Planner};
use crate::notify::{ChannelDef, RuleDef};
use crate::report::StoredResult;

/// How long a dependant's DOWN alert waits for its dependency's re-check
/// at most; if the monitor dies meanwhile, it is sent when this ends.
pub const HOLD_MS: i64 = 30_000;

/// What the monitor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start a check of the sensor now: a re-check confirming a failure or
    /// a dependency's state (`recheck`), or the first check after a pause.
    Check {
        /// The sensor.
        id: i64,
        /// Part of an earlier check rather than a scheduled one.
        recheck: bool,
    },
    /// Store a check's result and the sensor's state after it.
    Result {
        /// The result as stored.
        result: StoredResult,
        /// The sensor's state after it.
        state: State,
        /// Since when (ms).
        since_ms: i64,
        /// The check's message.
        message: String,
        /// A protocol check's phases, details and certificate.
        details: Option<Box<CheckDetails>>,
    },
    /// Store a state change with its notifications, held until
    /// `hold_until_ms` when set; announce it once committed.
    Event {
        /// The sensor.
        id: i64,
        /// Its path, for the announcement.
        path: String,
        /// When (ms).
        at_ms: i64,
        /// The change.
        change: Change,
        /// The notifications it causes.
        notify: Vec<Outgoing>,
        /// Held until then, unless settled first.
        hold_until_ms: Option<i64>,
    },
    /// Release a sensor's held notifications (`cancel` is `None`), or
    /// cancel them, saying why.
    Settle {
        /// The sensor.
        id: i64,
        /// When (ms).
        at_ms: i64,
        /// Why they are cancelled, if they are.
        cancel: Option<String>,
    },
    /// Store follow-up notifications (escalations, repeats, summaries).
    Notify {
        /// The sensor.
        id: i64,
        /// When (ms).
        at_ms: i64,
        /// The notifications.
        notify: Vec<Outgoing>,
    },
    /// Store a "monitor stopped" change; nobody waits for it.
    Stop {
        /// The sensor.
        id: i64,
        /// When (ms).
        at_ms: i64,
        /// The change to pending.
        change: Change,
    },
}

impl Effect {
    /// The sensor it is about.
    pub fn sensor(&self) -> i64 {
        match self {
            Effect::Result { result, .. } => result.sensor,
            Effect::Check { id, .. }
            | Effect::Event { id, .. }
            | Effect::Settle { id, .. }
            | Effect::Notify { id, .. }
            | Effect::Stop { id, .. } => *id,
        }
    }
}

/// A finished check, as the decisions need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// When the check started (ms).
    pub at_ms: i64,
    /// The verdict.
    pub status: Status,
    /// Why.
    pub reason: Reason,
    /// For people.
    pub message: String,
    /// The connect time, if an answer came.
    pub response_time: Option<Duration>,
    /// A protocol check's phases, details and certificate.
    pub details: Option<Box<CheckDetails>>,
}

/// What a scheduled check comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Start it (the sensor is now running).
    Start,
    /// The sensor is paused: nothing is due.
    Paused,
    /// The previous check still runs: this one is missed.
    Running,
}

/// A configuration reload: the diff from the running sensors to the new
/// configuration ([`Core::diff`]), and what comes with it from the store.
#[derive(Debug, Default)]
pub struct Reload {
    /// What changes.
    pub diff: ConfigDiff,
    /// Every sensor's store id by path.
    pub ids: HashMap<String, i64>,
    /// Sensors paused by hand.
    pub paused: HashSet<i64>,
    /// The last known state of each sensor and since when (ms), for
    /// sensors the monitor starts (after a restart, they keep it).
    pub states: HashMap<i64, (State, i64)>,
    /// The notification rules.
    pub rules: Vec<RuleDef>,
    /// The notification channels.
    pub channels: Vec<ChannelDef>,
}

/// A sensor as the decisions see it.
#[derive(Debug)]
struct Sensor {
    spec: ResolvedSensor,
    tracker: Tracker,
    since_ms: i64,
    running: bool,
    manual: bool,
    /// The last check's message while failing, for escalations and
    /// repeats (an UP message per sensor would cost megabytes at 100,000
    /// sensors).
    message: String,
}

/// Every decision the monitor makes about its sensors.
#[derive(Debug, Default)]
pub struct Core {
    /// Boxed: the map's table then holds 16 bytes per slot, not a whole
    /// sensor, and its spare slots (up to half at some sizes: 1,000,000
    /// sensors take 2,097,152) cost little.
    sensors: HashMap<i64, Box<Sensor>>,
    /// The running sensors that something depends on, by path.
    ids: HashMap<String, i64>,
    dependants: HashMap<i64, Vec<i64>>,
    /// Sensors with a dependency, a window or a manual pause: re-evaluated
    /// every second.
    watched: Vec<i64>,
    /// Sensors whose DOWN notifications are held until their dependency
    /// has been re-checked (usually none).
    held: HashSet<i64>,
    planner: Planner,
}

impl Core {
    /// No sensors yet; notifications link to sensor pages under `public_url`.
    pub fn new(public_url: Option<String>) -> Core {
        Core {
            planner: Planner::new(public_url),
            ..Core::default()
        }
    }

    /// How many sensors run.
    pub fn len(&self) -> usize {
        self.sensors.len()
    }

    /// Whether no sensor runs.
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }

    /// A running sensor's settings.
    pub fn spec(&self, id: i64) -> Option<&ResolvedSensor> {
        self.sensors.get(&id).map(|s| &s.spec)
    }

    /// A running sensor's state.
    pub fn state(&self, id: i64) -> Option<State> {
        self.sensors.get(&id).map(|s| s.tracker.state)
    }

    /// What a reload to `specs` changes (see [`reload::diff`]).
    pub fn diff(&self, specs: Vec<ResolvedSensor>, ids: &HashMap<String, i64>) -> ConfigDiff {
        let running: HashMap<i64, Duration> = self
            .sensors
            .iter()
            .map(|(id, sensor)| (*id, sensor.spec.settings.interval))
            .collect();
        reload::diff(&running, specs, ids)
    }

    /// Makes the sensors match a reload, keeping the state of sensors that
    /// stay; returns the pauses and resumes it causes.
    pub fn on_config(&mut self, reload: Reload, now: jiff::Timestamp) -> Vec<Effect> {
        let Reload {
            diff,
            ids,
            paused,
            states,
            rules,
            channels,
        } = reload;
        let now_ms = now.as_millisecond();
        self.planner.configure(rules, &channels);
        for id in &diff.to_remove {
            self.sensors.remove(id);
            self.held.remove(id);
        }
        for Changed { id, spec, .. } in diff.to_change {
            if let Some(sensor) = self.sensors.get_mut(&id) {
                sensor.spec = spec;
                sensor.manual = paused.contains(&id);
            }
        }
        self.sensors.reserve(diff.to_add.len());
        for (id, spec) in reload::drain_releasing(diff.to_add) {
            let (tracker, since_ms) = match states.get(&id) {
                Some(&(state, since)) => (Tracker { state, failures: 0 }, since),
                None => (Tracker::PENDING, now_ms),
            };
            self.sensors.insert(
                id,
                Box::new(Sensor {
                    manual: paused.contains(&id),
                    spec,
                    tracker,
                    since_ms,
                    running: false,
                    message: String::new(),
                }),
            );
        }
        // Only the paths that something depends on need looking up by name
        // (every declared path with an id runs: the diff added it).
        let dependencies: HashSet<&str> = self
            .sensors
            .values()
            .filter_map(|s| s.spec.depends_on.as_deref())
            .collect();
        let ids: HashMap<String, i64> = ids
            .into_iter()
            .filter(|(path, _)| dependencies.contains(path.as_str()))
            .collect();
        self.ids = ids;
        self.dependants = reload::dependants(
            self.sensors
                .iter()
                .map(|(id, sensor)| (*id, sensor.spec.depends_on.as_deref())),
            &self.ids,
        );
        self.watched = self
            .sensors
            .iter()
            .filter(|(_, sensor)| {
                sensor.spec.depends_on.is_some()
                    || !sensor.spec.windows.is_empty()
                    || sensor.manual
                    || matches!(sensor.tracker.state, State::Paused(_))
            })
            .map(|(id, _)| *id)
            .collect();
        self.watched.sort_unstable();
        // Outages that were under way before this load (a restart after a
        // crash, or new escalation rules) still escalate and repeat.
        if self.planner.has_rules() {
            for (id, sensor) in &self.sensors {
                if sensor.tracker.state == State::Down {
                    self.planner
                        .resume_outage(*id, &sensor.spec, sensor.since_ms, now_ms);
                }
            }
        }
        let mut effects = Vec::new();
        self.evaluate_watched(now, &mut effects);
        effects
    }

    /// Sets a running sensor's state back to the one stored for it: a
    /// sensor this node checked for its location only (its state there)
    /// and now decides itself goes on from the sensor's own state, so that
    /// its next check records the change from that state.
    pub fn resume_state(&mut self, id: i64, state: State, since_ms: i64) {
        if let Some(sensor) = self.sensors.get_mut(&id) {
            sensor.tracker = Tracker { state, failures: 0 };
            sensor.since_ms = since_ms;
        }
    }

    /// A scheduled check of `id` comes due.
    pub fn due(&mut self, id: i64) -> Option<Due> {
        let sensor = self.sensors.get_mut(&id)?;
        Some(if matches!(sensor.tracker.state, State::Paused(_)) {
            Due::Paused
        } else if sensor.running {
            Due::Running
        } else {
            sensor.running = true;
            Due::Start
        })
    }

    /// A check of `id` finished with nothing to report (a heartbeat
    /// sensor whose first push is not due): its state stays, and it may
    /// start again when next due.
    pub fn on_nothing(&mut self, id: i64) {
        if let Some(sensor) = self.sensors.get_mut(&id) {
            sensor.running = false;
        }
    }

    /// A check of `id` finished at `now`.
    pub fn on_result(&mut self, id: i64, outcome: Outcome, now: jiff::Timestamp) -> Vec<Effect> {
        let Outcome {
            at_ms,
            status,
            reason,
            message,
            response_time,
            details,
        } = outcome;
        let result = StoredResult {
            sensor: id,
            at_ms,
            status,
            reason,
            rtt_us: response_time.map(|t| t.as_micros().min(u128::from(u32::MAX)) as u32),
        };
        let mut effects = Vec::new();
        let Some(sensor) = self.sensors.get_mut(&id) else {
            // Removed while its check ran: the result is still history.
            effects.push(Effect::Result {
                result,
                state: State::Pending,
                since_ms: at_ms,
                message,
                details: None,
            });
            return effects;
        };
        sensor.running = false;
        if status == Status::Up {
            sensor.message = String::new();
        } else {
            sensor.message.clone_from(&message);
        }
        let slow = status == Status::Down && reason.is_answer() && !sensor.spec.expect_closed;
        let input = Input::Checked {
            status,
            reason,
            slow,
            message: message.clone(),
        };
        let was_up = is_up(sensor.tracker.state);
        let step = state::step(sensor.tracker, &input, sensor.spec.settings.retries);
        sensor.tracker = step.tracker;
        let mut recheck_dependency = None;
        if let Some(change) = step.change {
            sensor.since_ms = now.as_millisecond();
            let response_ms = response_time.map(|t| t.as_secs_f64() * 1000.0);
            let notify =
                self.planner
                    .on_change(id, &sensor.spec, &change, sensor.since_ms, response_ms);
            // A dependant going down while its dependency still looks up:
            // its alert waits for a fresh check of the dependency, so that
            // when the dependency is what failed, only the dependency alerts.
            let dependency = dependency::hold(
                &change,
                !notify.is_empty(),
                reload::dependency(sensor.spec.depends_on.as_deref(), &self.ids),
            );
            if dependency.is_some() {
                self.held.insert(id);
            } else {
                self.held.remove(&id);
            }
            recheck_dependency = dependency;
            effects.push(Effect::Event {
                id,
                path: sensor.spec.path.clone(),
                at_ms: sensor.since_ms,
                hold_until_ms: dependency.map(|_| sensor.since_ms + HOLD_MS),
                change,
                notify,
            });
        }
        effects.push(Effect::Result {
            result,
            state: sensor.tracker.state,
            since_ms: sensor.since_ms,
            message,
            details,
        });
        if step.recheck {
            sensor.running = true;
            effects.push(Effect::Check { id, recheck: true });
        }
        if was_up != is_up(sensor.tracker.state) {
            self.evaluate_dependants(id, now, &mut effects);
        }
        // A conclusive check of a sensor with held dependants settles them:
        // released if it is still up, cancelled by the pause if it is not.
        // A failure being re-checked settles nothing yet: the dependency
        // still looks up, and may be found down a moment later.
        if !step.recheck {
            self.settle_dependants(id, now.as_millisecond(), &mut effects);
        }
        if let Some(dependency) = recheck_dependency
            && let Some(sensor) = self.sensors.get_mut(&dependency)
            && !sensor.running
        {
            sensor.running = true;
            effects.push(Effect::Check {
                id: dependency,
                recheck: true,
            });
        }
        effects
    }

    /// A second passed: pauses and resumes for windows, dependencies and
    /// manual pauses, and the escalations, repeats and flapping summaries
    /// that are due.
    pub fn tick(&mut self, now: jiff::Timestamp) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.evaluate_watched(now, &mut effects);
        self.follow_up(now.as_millisecond(), &mut effects);
        effects
    }

    /// The sensors [`Monitor::stop`] marks pending: every checked one
    /// (neither pending nor paused), in id order.
    pub fn checked(&self) -> Vec<i64> {
        let mut checked: Vec<i64> = self
            .sensors
            .iter()
            .filter(|(_, s)| !matches!(s.tracker.state, State::Pending | State::Paused(_)))
            .map(|(id, _)| *id)
            .collect();
        checked.sort_unstable();
        checked
    }

    /// The monitor stops: each of `ids` that is still checked becomes
    /// `pending` with a "monitor stopped" change, so that reports do not
    /// count the time the monitor is off as uptime or downtime. The caller
    /// passes [`Monitor::checked`] a slice at a time, so that a million
    /// changes are never held at once.
    pub fn stop(&mut self, ids: &[i64], now: jiff::Timestamp) -> Vec<Effect> {
        let at_ms = now.as_millisecond();
        ids.iter()
            .filter_map(|id| {
                let sensor = self.sensors.get_mut(id)?;
                if matches!(sensor.tracker.state, State::Pending | State::Paused(_)) {
                    return None;
                }
                let id = *id;
                let change = Change {
                    from: sensor.tracker.state,
                    to: State::Pending,
                    reason: None,
                    message: "the monitor stopped".to_owned(),
                };
                sensor.tracker = Tracker::PENDING;
                Some(Effect::Stop { id, at_ms, change })
            })
            .collect()
    }

    /// Releases the held notifications of `id`'s dependants whose
    /// dependency is still up after its latest check. (Dependants it took
    /// down with it were paused, and their held notifications cancelled.)
    fn settle_dependants(&mut self, id: i64, at_ms: i64, effects: &mut Vec<Effect>) {
        if self.held.is_empty() {
            return;
        }
        let Some(dependants) = self.dependants.get(&id) else {
            return;
        };
        let dependency_up = self
            .sensors
            .get(&id)
            .is_some_and(|d| is_up(d.tracker.state));
        for dependant in dependency::to_release(dependency_up, &self.held, dependants) {
            self.held.remove(&dependant);
            effects.push(Effect::Settle {
                id: dependant,
                at_ms,
                cancel: None,
            });
        }
    }

    fn follow_up(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        if !self.planner.has_rules() {
            return;
        }
        let sensors = &self.sensors;
        let due = self.planner.due(now_ms, |id| {
            sensors.get(&id).map(|s| Current {
                spec: &s.spec,
                state: s.tracker.state,
                since_ms: s.since_ms,
                message: &s.message,
            })
        });
        let mut by_sensor: BTreeMap<i64, Vec<Outgoing>> = BTreeMap::new();
        for outgoing in due {
            by_sensor.entry(outgoing.sensor).or_default().push(outgoing);
        }
        effects.extend(by_sensor.into_iter().map(|(id, notify)| Effect::Notify {
            id,
            at_ms: now_ms,
            notify,
        }));
    }

    fn evaluate_watched(&mut self, now: jiff::Timestamp, effects: &mut Vec<Effect>) {
        for id in self.watched.clone() {
            self.evaluate(id, now, effects);
        }
    }

    fn evaluate_dependants(&mut self, id: i64, now: jiff::Timestamp, effects: &mut Vec<Effect>) {
        let mut pending = self.dependants.get(&id).cloned().unwrap_or_default();
        let mut seen = HashSet::new();
        while let Some(next) = pending.pop() {
            if seen.insert(next) && self.evaluate(next, now, effects) {
                pending.extend(self.dependants.get(&next).cloned().unwrap_or_default());
            }
        }
    }

    /// Pauses or resumes a sensor as its manual flag, windows and
    /// dependency want. Returns whether its up-ness changed.
    fn evaluate(&mut self, id: i64, now: jiff::Timestamp, effects: &mut Vec<Effect>) -> bool {
        let dependency_up = {
            let Some(sensor) = self.sensors.get(&id) else {
                return false;
            };
            reload::dependency(sensor.spec.depends_on.as_deref(), &self.ids)
                .and_then(|dep| self.sensors.get(&dep))
                .is_none_or(|dep| is_up(dep.tracker.state))
        };
        let Some(sensor) = self.sensors.get_mut(&id) else {
            return false;
        };
        let in_window = sensor
            .spec
            .windows
            .iter()
            .any(|(_, rule)| rule.contains(now));
        let Some(input) = dependency::pause_input(
            sensor.tracker.state,
            sensor.manual,
            in_window,
            dependency_up,
        ) else {
            return false;
        };
        let was_up = is_up(sensor.tracker.state);
        let step = state::step(sensor.tracker, &input, sensor.spec.settings.retries);
        sensor.tracker = step.tracker;
        let Some(change) = step.change else {
            return false;
        };
        sensor.since_ms = now.as_millisecond();
        if self.held.remove(&id) && matches!(change.to, State::Paused(_)) {
            // Its dependency went down: only the dependency alerts.
            let why = dependency::cancel_reason(
                change.to,
                sensor.spec.depends_on.as_deref(),
                &change.message,
            );
            effects.push(Effect::Settle {
                id,
                at_ms: sensor.since_ms,
                cancel: Some(why),
            });
        }
        let notify = self
            .planner
            .on_change(id, &sensor.spec, &change, sensor.since_ms, None);
        effects.push(Effect::Event {
            id,
            path: sensor.spec.path.clone(),
            at_ms: sensor.since_ms,
            change,
            notify,
            hold_until_ms: None,
        });
        if input == Input::Resume && !sensor.running {
            sensor.running = true;
            effects.push(Effect::Check { id, recheck: false });
        }
        was_up != is_up(step.tracker.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml;
    use crate::config::model::resolve;
    use crate::monitor::state::PauseCause;

    const GW: i64 = 1;
    const WEB: i64 = 2;
    const API: i64 = 3;

    /// A gateway and a web server that depends on it, both with one
    /// re-check before DOWN, and whatever `extra` adds.
    fn config(extra: &str) -> String {
        format!(
            "[[server]]\nname = \"gw\"\nhost = \"192.0.2.1\"\n  [[server.sensor]]\n  name = \"ping\"\n  port = 22\n\
             [[server]]\nname = \"app\"\nhost = \"192.0.2.2\"\n  [[server.sensor]]\n  name = \"web\"\n  port = 80\n  depends_on = \"gw/ping\"\n\
             {extra}"
        )
    }

    const NOTIFY_DOWN: &str = "[[channel]]\nname = \"hook\"\nwebhook = \"http://127.0.0.1:9/hook\"\n\
                               [[notify]]\nchannel = \"hook\"\non = [\"down\", \"up\"]\n";

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn reload(core: &Core, toml: &str, paused: &[i64], states: &[(i64, State, i64)]) -> Reload {
        let config = from_toml("t.toml", toml).unwrap();
        let ids: HashMap<String, i64> = [("gw/ping", GW), ("app/web", WEB), ("api/http", API)]
            .into_iter()
            .map(|(path, id)| (path.to_owned(), id))
            .collect();
        Reload {
            diff: core.diff(resolve(&config), &ids),
            ids,
            paused: paused.iter().copied().collect(),
            states: states
                .iter()
                .map(|&(id, state, since)| (id, (state, since)))
                .collect(),
            rules: config.rules.clone(),
            channels: config.channels.clone(),
        }
    }

    fn start(toml: &str, states: &[(i64, State, i64)]) -> Core {
        let mut core = Core::new(None);
        assert!(core.is_empty());
        let effects = core.on_config(reload(&core, toml, &[], states), at(0));
        assert_eq!((core.len(), core.is_empty()), (2, false));
        assert_eq!(core.spec(WEB).map(|s| s.port), Some(80));
        // Until its dependency has been checked, app/web waits.
        assert_eq!(
            changes(&effects),
            [(WEB, State::Pending, State::Paused(PauseCause::Dependency))]
        );
        assert_eq!(core.due(WEB), Some(Due::Paused));
        core
    }

    /// Both sensors checked and UP, neither running.
    fn start_up(toml: &str) -> Core {
        let mut core = start(toml, &[]);
        let effects = check(&mut core, GW, up(), 1);
        assert_eq!(
            changes(&effects),
            [
                (GW, State::Pending, State::Up),
                (WEB, State::Paused(PauseCause::Dependency), State::Pending)
            ]
        );
        assert_eq!(checks(&effects), [(WEB, false)], "resumed, checked at once");
        assert_eq!(core.due(WEB), Some(Due::Running));
        core.on_result(WEB, up(), at(1));
        assert_eq!(core.state(WEB), Some(State::Up));
        core
    }

    fn outcome(status: Status, reason: Reason) -> Outcome {
        Outcome {
            at_ms: at(0).as_millisecond(),
            status,
            reason,
            message: format!("{reason:?}"),
            response_time: (status == Status::Up).then_some(Duration::from_micros(250)),
            details: None,
        }
    }

    fn up() -> Outcome {
        outcome(Status::Up, Reason::Connected)
    }

    fn refused() -> Outcome {
        outcome(Status::Down, Reason::Refused)
    }

    /// Runs a scheduled check of `id` to `result` at second `s`.
    fn check(core: &mut Core, id: i64, result: Outcome, s: i64) -> Vec<Effect> {
        assert_eq!(core.due(id), Some(Due::Start), "sensor {id} can start");
        core.on_result(id, result, at(s))
    }

    /// The state changes among `effects`: (sensor, from, to).
    fn changes(effects: &[Effect]) -> Vec<(i64, State, State)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Event { id, change, .. } => Some((*id, change.from, change.to)),
                _ => None,
            })
            .collect()
    }

    fn checks(effects: &[Effect]) -> Vec<(i64, bool)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Check { id, recheck } => Some((*id, *recheck)),
                _ => None,
            })
            .collect()
    }

    fn settles(effects: &[Effect]) -> Vec<(i64, Option<String>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Settle { id, cancel, .. } => Some((*id, cancel.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_check_with_nothing_to_report_leaves_the_state_and_may_start_again() {
        let mut core = start(&config(""), &[]);
        assert_eq!(core.due(GW), Some(Due::Start));
        assert_eq!(core.due(GW), Some(Due::Running), "not started twice");
        core.on_nothing(GW);
        assert_eq!(core.state(GW), Some(State::Pending));
        assert_eq!(core.due(GW), Some(Due::Start), "free to start again");
    }

    #[test]
    fn a_result_is_stored_after_the_change_it_causes_with_the_state_it_leaves() {
        let mut core = start(&config(""), &[]);
        let effects = check(&mut core, GW, up(), 5);
        assert_eq!(changes(&effects)[0], (GW, State::Pending, State::Up));
        let [
            Effect::Event { at_ms, path, .. },
            Effect::Result {
                result,
                state,
                since_ms,
                message,
                ..
            },
            ..,
        ] = &effects[..]
        else {
            panic!("an event, then the result: {effects:?}");
        };
        assert_eq!(path, "gw/ping");
        assert_eq!(
            (*at_ms, *since_ms),
            (at(5).as_millisecond(), at(5).as_millisecond())
        );
        assert_eq!(*state, State::Up);
        assert_eq!(message, "Connected");
        assert_eq!(
            (
                result.sensor,
                result.at_ms,
                result.status,
                result.reason,
                result.rtt_us
            ),
            (
                GW,
                at(0).as_millisecond(),
                Status::Up,
                Reason::Connected,
                Some(250)
            )
        );
        // Another UP changes nothing: the result alone, since unchanged.
        let effects = check(&mut core, GW, up(), 15);
        assert!(
            matches!(&effects[..], [Effect::Result { state: State::Up, since_ms, .. }] if *since_ms == at(5).as_millisecond()),
            "{effects:?}"
        );
    }

    #[test]
    fn a_sensor_resumed_at_its_stored_state_records_the_change_from_it() {
        let mut core = start_up(&config(""));
        // Checked for one location, it was up there; the sensor's own state
        // (its verdict) was WARNING since second 3.
        core.resume_state(GW, State::Warning, at(3).as_millisecond());
        assert_eq!(core.state(GW), Some(State::Warning));
        let effects = check(&mut core, GW, up(), 5);
        assert_eq!(changes(&effects), [(GW, State::Warning, State::Up)]);
        core.resume_state(GW, State::Down, at(6).as_millisecond());
        let effects = check(&mut core, GW, refused(), 7);
        assert_eq!(changes(&effects), [], "down stays down");
        assert!(
            matches!(&effects[..], [Effect::Result { state: State::Down, since_ms, .. }, ..] if *since_ms == at(6).as_millisecond()),
            "{effects:?}"
        );
        core.resume_state(99, State::Down, 0);
        assert_eq!(core.state(99), None, "an unknown sensor is ignored");
    }

    #[test]
    fn a_failure_is_rechecked_at_once_and_down_only_when_confirmed() {
        let mut core = start_up(&config(""));
        let effects = check(&mut core, GW, refused(), 2);
        assert_eq!(changes(&effects), []);
        assert_eq!(checks(&effects), [(GW, true)]);
        assert_eq!(
            core.state(GW),
            Some(State::Up),
            "unchanged while re-checked"
        );
        assert_eq!(core.due(GW), Some(Due::Running), "the re-check runs");
        let effects = core.on_result(GW, refused(), at(3));
        assert_eq!(
            changes(&effects),
            [
                (GW, State::Up, State::Down),
                (WEB, State::Up, State::Paused(PauseCause::Dependency))
            ]
        );
        assert_eq!(checks(&effects), []);
        let Some(Effect::Event { change, .. }) = effects.first() else {
            panic!("{effects:?}");
        };
        assert_eq!(change.message, "Refused (confirmed by 1 re-check)");
        assert_eq!(change.reason, Some(Reason::Refused));
    }

    #[test]
    fn too_slow_is_down_at_once_but_a_port_that_must_be_closed_is_rechecked() {
        let mut core = start(&config(""), &[]);
        let effects = check(&mut core, GW, outcome(Status::Down, Reason::Connected), 1);
        assert_eq!(changes(&effects), [(GW, State::Pending, State::Down)]);
        assert_eq!(checks(&effects), []);
        let Some(Effect::Event { change, .. }) = effects.first() else {
            panic!("{effects:?}");
        };
        assert_eq!(change.message, "Connected", "no re-check to mention");

        let closed = config("").replace("port = 22\n", "port = 22\n  expect_closed = true\n");
        let mut core = start(&closed, &[]);
        let effects = check(&mut core, GW, outcome(Status::Down, Reason::Connected), 1);
        assert_eq!(changes(&effects), []);
        assert_eq!(checks(&effects), [(GW, true)]);
    }

    #[test]
    fn a_dependant_is_paused_while_its_dependency_is_down_and_checked_when_it_is_back() {
        let mut core = start_up(&config(""));
        assert_eq!(core.due(WEB), Some(Due::Start));
        core.on_result(WEB, up(), at(2));
        check(&mut core, GW, refused(), 2);
        let effects = core.on_result(GW, refused(), at(3));
        assert_eq!(
            changes(&effects),
            [
                (GW, State::Up, State::Down),
                (WEB, State::Up, State::Paused(PauseCause::Dependency))
            ]
        );
        assert_eq!(core.due(WEB), Some(Due::Paused));
        assert_eq!(settles(&effects), [], "nothing was held");
        let effects = check(&mut core, GW, up(), 10);
        assert_eq!(
            changes(&effects),
            [
                (GW, State::Down, State::Up),
                (WEB, State::Paused(PauseCause::Dependency), State::Pending)
            ]
        );
        assert_eq!(checks(&effects), [(WEB, false)], "resumed, checked at once");
        assert_eq!(core.due(WEB), Some(Due::Running));
    }

    #[test]
    fn a_pause_goes_down_a_chain_of_dependencies_at_once() {
        let api = "[[server]]\nname = \"api\"\nhost = \"192.0.2.3\"\n  [[server.sensor]]\n  name = \"http\"\n  port = 8080\n  depends_on = \"app/web\"\n";
        let mut core = Core::new(None);
        core.on_config(reload(&core, &config(api), &[], &[]), at(0));
        assert_eq!(core.len(), 3);
        core.due(GW);
        core.on_result(GW, up(), at(1));
        core.on_result(WEB, up(), at(1));
        core.on_result(API, up(), at(1));
        assert_eq!(core.state(API), Some(State::Up));
        core.due(GW);
        core.on_result(GW, refused(), at(2));
        let effects = core.on_result(GW, refused(), at(3));
        assert_eq!(
            changes(&effects),
            [
                (GW, State::Up, State::Down),
                (WEB, State::Up, State::Paused(PauseCause::Dependency)),
                (API, State::Up, State::Paused(PauseCause::Dependency))
            ],
            "not a second later"
        );
    }

    #[test]
    fn a_dependants_alert_waits_for_its_dependencys_recheck_and_is_released_when_it_is_up() {
        let mut core = start_up(&config(NOTIFY_DOWN));
        check(&mut core, WEB, refused(), 2);
        let effects = core.on_result(WEB, refused(), at(3));
        let Some(Effect::Event {
            notify,
            hold_until_ms,
            ..
        }) = effects.first()
        else {
            panic!("{effects:?}");
        };
        assert_eq!(notify.len(), 1, "the DOWN alert");
        assert_eq!(*hold_until_ms, Some(at(3).as_millisecond() + HOLD_MS));
        assert_eq!(
            checks(&effects),
            [(GW, true)],
            "the dependency is re-checked"
        );
        let effects = core.on_result(GW, up(), at(4));
        assert_eq!(settles(&effects), [(WEB, None)], "released");
        // Released once: the next check of the dependency settles nothing.
        let effects = check(&mut core, GW, up(), 14);
        assert_eq!(settles(&effects), []);
    }

    #[test]
    fn a_dependants_alert_is_cancelled_when_its_dependency_turns_out_down() {
        let mut core = start_up(&config(NOTIFY_DOWN));
        check(&mut core, WEB, refused(), 2);
        core.on_result(WEB, refused(), at(3));
        // The dependency's re-check fails once: nothing is settled while
        // that failure is confirmed.
        let effects = core.on_result(GW, refused(), at(4));
        assert_eq!(settles(&effects), [], "{effects:?}");
        assert_eq!(checks(&effects), [(GW, true)]);
        let effects = core.on_result(GW, refused(), at(5));
        assert_eq!(
            settles(&effects),
            [(
                WEB,
                Some("cancelled: its dependency gw/ping is down; it alerts instead".to_owned())
            )]
        );
        assert_eq!(
            changes(&effects),
            [
                (GW, State::Up, State::Down),
                (WEB, State::Down, State::Paused(PauseCause::Dependency))
            ]
        );
    }

    #[test]
    fn without_a_rule_a_dependants_down_is_not_held() {
        let mut core = start_up(&config(""));
        check(&mut core, WEB, refused(), 2);
        let effects = core.on_result(WEB, refused(), at(3));
        assert!(
            matches!(
                effects.first(),
                Some(Effect::Event {
                    hold_until_ms: None,
                    ..
                })
            ),
            "{effects:?}"
        );
        assert_eq!(checks(&effects), [], "no re-check of the dependency");
    }

    #[test]
    fn a_maintenance_window_pauses_on_the_tick_and_ends_with_a_check() {
        let window = "[[maintenance]]\nname = \"m\"\nfrom = \"2027-01-15T08:01\"\nuntil = \"2027-01-15T09:00\"\nsensors = [\"app/web\"]\n";
        let mut core = start_up(&config(window));
        // 1_800_000_000 s is 2027-01-15T08:00:00Z.
        let effects = core.tick(at(59));
        assert_eq!(changes(&effects), []);
        let effects = core.tick(at(60));
        assert_eq!(
            changes(&effects),
            [(WEB, State::Up, State::Paused(PauseCause::Schedule))]
        );
        assert_eq!(core.due(WEB), Some(Due::Paused));
        let effects = core.tick(at(3600));
        assert_eq!(
            changes(&effects),
            [(WEB, State::Paused(PauseCause::Schedule), State::Pending)]
        );
        assert_eq!(checks(&effects), [(WEB, false)]);
    }

    #[test]
    fn a_window_pauses_a_sensor_without_a_dependency_and_its_dependants_follow() {
        let window = "[[maintenance]]\nname = \"m\"\nfrom = \"2027-01-15T08:01\"\nuntil = \"2027-01-15T09:00\"\nsensors = [\"gw/ping\"]\n";
        let mut core = start_up(&config(window));
        let effects = core.tick(at(60));
        assert_eq!(
            changes(&effects),
            [
                (GW, State::Up, State::Paused(PauseCause::Schedule)),
                (WEB, State::Up, State::Paused(PauseCause::Dependency))
            ]
        );
    }

    #[test]
    fn notifications_carry_the_response_time_and_repeats_the_failure() {
        let rules = "[[channel]]\nname = \"hook\"\nwebhook = \"http://127.0.0.1:9/hook\"\n\
                     [[notify]]\nchannel = \"hook\"\non = [\"up\", \"repeat\"]\nevery = \"1h\"\n";
        let mut core = start_up(&config(rules));
        check(&mut core, GW, refused(), 10);
        core.on_result(GW, refused(), at(11));
        assert_eq!(core.state(GW), Some(State::Down));
        let repeats: Vec<String> = core
            .tick(at(11 + 3600))
            .into_iter()
            .filter_map(|e| match e {
                Effect::Notify { notify, .. } => Some(notify[0].payload.message.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(repeats, ["Refused"], "the last failure's message");
        let effects = check(&mut core, GW, up(), 3700);
        let Some(Effect::Event { notify, .. }) = effects.first() else {
            panic!("{effects:?}");
        };
        assert_eq!(notify.len(), 1, "the recovery: {effects:?}");
        assert_eq!(notify[0].payload.response_ms, Some(0.25), "250 µs");
    }

    #[test]
    fn a_reload_pauses_by_hand_keeps_states_and_drops_removed_sensors() {
        let mut core = start_up(&config(""));
        let effects = core.on_config(reload(&core, &config(""), &[GW], &[]), at(2));
        assert_eq!(
            changes(&effects),
            [
                (GW, State::Up, State::Paused(PauseCause::Manual)),
                (WEB, State::Up, State::Paused(PauseCause::Dependency))
            ]
        );
        let effects = core.on_config(reload(&core, &config(""), &[], &[]), at(3));
        assert_eq!(
            changes(&effects),
            [(GW, State::Paused(PauseCause::Manual), State::Pending),]
        );
        assert_eq!(checks(&effects), [(GW, false)]);
        assert_eq!(
            core.due(WEB),
            Some(Due::Paused),
            "until app/web's dependency is checked"
        );

        // app/web leaves while its check runs: its result is still stored.
        let only_gw = config("")
            .split("[[server]]\nname = \"app\"")
            .next()
            .unwrap()
            .to_owned();
        core.on_config(reload(&core, &only_gw, &[], &[]), at(4));
        assert_eq!((core.len(), core.spec(WEB).is_none()), (1, true));
        let effects = core.on_result(WEB, up(), at(5));
        assert!(
            matches!(
                &effects[..],
                [Effect::Result {
                    state: State::Pending,
                    ..
                }]
            ),
            "{effects:?}"
        );
    }

    #[test]
    fn a_restart_keeps_the_stored_state_and_its_outage_repeats() {
        let repeat = "[[channel]]\nname = \"hook\"\nwebhook = \"http://127.0.0.1:9/hook\"\n\
                      [[notify]]\nchannel = \"hook\"\non = [\"repeat\"]\nevery = \"1h\"\n";
        let since = at(-600).as_millisecond();
        let mut core = Core::new(None);
        core.on_config(
            reload(&core, &config(repeat), &[], &[(GW, State::Down, since)]),
            at(0),
        );
        assert_eq!(core.state(GW), Some(State::Down));
        assert!(
            core.tick(at(2999))
                .iter()
                .all(|e| !matches!(e, Effect::Notify { .. }))
        );
        let effects = core.tick(at(3000));
        let notified: Vec<(i64, usize)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify { id, notify, .. } => Some((*id, notify.len())),
                _ => None,
            })
            .collect();
        assert_eq!(notified, [(GW, 1)], "an hour after the outage began");
    }

    #[test]
    fn stopping_makes_checked_sensors_pending_and_leaves_the_rest() {
        let mut core = start_up(&config(""));
        let checked = core.checked();
        assert_eq!(checked, [GW, WEB], "in id order");
        // A slice at a time, as the daemon stops them.
        let mut effects = core.stop(&checked[..1], at(9));
        effects.extend(core.stop(&checked[1..], at(9)));
        let stopped: Vec<(i64, State, State)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Stop { id, change, .. } => Some((*id, change.from, change.to)),
                _ => None,
            })
            .collect();
        assert_eq!(
            stopped,
            [
                (GW, State::Up, State::Pending),
                (WEB, State::Up, State::Pending)
            ]
        );
        assert_eq!(
            core.checked(),
            Vec::<i64>::new(),
            "pending sensors are left alone"
        );
        assert_eq!(core.stop(&checked, at(10)), [], "stopped once");
    }
}
