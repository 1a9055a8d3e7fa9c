//! Which notifications to send, and when: the rules applied to a state
//! change, escalations and repeats while a sensor stays DOWN, and each
//! channel's flapping limit. Pure bookkeeping on wall-clock milliseconds;
//! the monitor calls it and writes what it returns to the outbox.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use super::{ChannelDef, ChannelOptions, Kind, Payload, RuleDef, Trigger, fires};
use crate::config::model::ResolvedSensor;
use crate::monitor::state::{Change, State};

/// A notification to write to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The sensor's id.
    pub sensor: i64,
    /// The channel's name.
    pub channel: String,
    /// What it receives.
    pub payload: Payload,
}

/// What a sensor is now, for scheduled notifications.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    /// Its configuration.
    pub spec: &'a ResolvedSensor,
    /// Its state.
    pub state: State,
    /// Since when.
    pub since_ms: i64,
    /// The last check's message.
    pub message: &'a str,
}

/// The outcome of offering one notification to a flapping limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Under the limit: send it.
    Send,
    /// The limit is reached: send a "flapping" notice instead, once.
    Notice,
    /// Held back (counted for the summary).
    Hold,
}

/// One channel's recent notifications about one sensor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limit {
    sent: VecDeque<i64>,
    held: u32,
}

impl Limit {
    fn prune(&mut self, now_ms: i64, window_ms: i64) {
        while self.sent.front().is_some_and(|t| *t <= now_ms - window_ms) {
            self.sent.pop_front();
        }
    }

    /// Offers a notification at `now_ms`: at most `limit` are sent within
    /// `window_ms`; beyond that one notice goes out and the rest are held.
    pub fn admit(&mut self, now_ms: i64, limit: u32, window_ms: i64) -> Admit {
        if limit == 0 {
            return Admit::Send;
        }
        self.prune(now_ms, window_ms);
        if self.held == 0 && self.sent.len() < limit as usize {
            self.sent.push_back(now_ms);
            return Admit::Send;
        }
        self.held += 1;
        if self.held == 1 {
            Admit::Notice
        } else {
            Admit::Hold
        }
    }

    /// Once the window has room again after a suppression: how many were
    /// held (the notice counts as one of them).
    pub fn release(&mut self, now_ms: i64, limit: u32, window_ms: i64) -> Option<u32> {
        if self.held == 0 {
            return None;
        }
        self.prune(now_ms, window_ms);
        if self.sent.len() >= limit as usize {
            return None;
        }
        let held = std::mem::take(&mut self.held);
        self.sent.push_back(now_ms);
        Some(held)
    }

    /// Whether nothing is remembered any more.
    fn idle(&self) -> bool {
        self.held == 0 && self.sent.is_empty()
    }
}

/// The facts of one notification besides the sensor.
#[derive(Debug, Clone, Copy)]
struct Moment<'a> {
    from: State,
    to: State,
    reason: Option<&'a str>,
    message: &'a str,
    at_ms: i64,
    since_ms: i64,
}

/// A channel's flapping limit: notifications per sensor, and the window in
/// milliseconds.
fn limit_of(channels: &HashMap<String, ChannelOptions>, channel: &str) -> (u32, i64) {
    let defaults = ChannelOptions::default();
    let options = channels.get(channel).unwrap_or(&defaults);
    (
        options.rate_limit,
        (options.rate_window_s.max(1) as i64).saturating_mul(1000),
    )
}

/// A follow-up without its due time: sensor, outage start, channel,
/// repeat or escalation, period.
type FollowUpKey = (i64, i64, String, bool, i64);

/// A scheduled escalation or repeat.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct FollowUp {
    due_ms: i64,
    sensor: i64,
    since_ms: i64,
    channel: String,
    repeat: bool,
    period_ms: i64,
}

impl FollowUp {
    fn key(&self) -> FollowUpKey {
        (
            self.sensor,
            self.since_ms,
            self.channel.clone(),
            self.repeat,
            self.period_ms,
        )
    }
}

/// The notification planner the monitor keeps.
#[derive(Debug, Default)]
pub struct Planner {
    rules: Vec<RuleDef>,
    channels: HashMap<String, ChannelOptions>,
    public_url: Option<String>,
    limits: HashMap<(String, i64), Limit>,
    followups: BinaryHeap<Reverse<FollowUp>>,
    scheduled: HashSet<FollowUpKey>,
    /// Escalations sent for the current outages (sent once each).
    fired: HashSet<FollowUpKey>,
}

impl Planner {
    /// A planner whose payloads link to sensor pages under `public_url`.
    pub fn new(public_url: Option<String>) -> Planner {
        Planner {
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            ..Planner::default()
        }
    }

    /// Takes new rules and channels (after a reload). Scheduled follow-ups
    /// whose rule is gone are dropped when they come due.
    pub fn configure(&mut self, rules: Vec<RuleDef>, channels: &[ChannelDef]) {
        self.rules = rules;
        self.channels = channels
            .iter()
            .map(|c| (c.name.clone(), c.options.clone()))
            .collect();
    }

    /// Whether any rule exists (the monitor skips the work otherwise).
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    fn payload(&self, kind: Kind, id: i64, spec: &ResolvedSensor, m: Moment<'_>) -> Payload {
        let Moment {
            from,
            to,
            reason,
            message,
            at_ms,
            since_ms,
        } = m;
        let time = super::rfc3339;
        Payload {
            kind,
            sensor: spec.path.clone(),
            server: spec.server.to_string(),
            group: spec.group.as_deref().map(str::to_owned),
            host: spec.host.to_string(),
            port: spec.port,
            from: from.to_string(),
            to: to.to_string(),
            reason: reason.map(str::to_owned),
            message: message.to_owned(),
            at: time(at_ms),
            since: time(since_ms),
            response_ms: None,
            link: self
                .public_url
                .as_ref()
                .map(|base| format!("{base}/sensors/{id}")),
            suppressed: None,
            title: String::new(),
            text: String::new(),
        }
    }

    fn word(&self, sensor: i64, channel: &str, payload: Payload) -> Outgoing {
        Outgoing {
            sensor,
            channel: channel.to_owned(),
            payload: payload.worded(self.channels.get(channel)),
        }
    }

    /// The notifications a committed-to-be state change causes, one per
    /// channel whose rules match, within each channel's flapping limit.
    /// A change to DOWN also schedules the escalations and repeats.
    pub fn on_change(
        &mut self,
        id: i64,
        spec: &ResolvedSensor,
        change: &Change,
        at_ms: i64,
        response_ms: Option<f64>,
    ) -> Vec<Outgoing> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let covering: Vec<&RuleDef> = self
            .rules
            .iter()
            .filter(|rule| rule.covers(&spec.path, &spec.server, spec.group.as_deref()))
            .collect();
        let mut channels: Vec<String> = covering
            .iter()
            .filter(|rule| rule.on.iter().any(|t| fires(*t, change)))
            .map(|rule| rule.channel.clone())
            .collect();
        channels.sort();
        channels.dedup();
        let mut out = Vec::new();
        for channel in channels {
            let (limit, window_ms) = limit_of(&self.channels, &channel);
            let admit = self
                .limits
                .entry((channel.clone(), id))
                .or_default()
                .admit(at_ms, limit, window_ms);
            let kind = match admit {
                Admit::Send => Kind::Change,
                Admit::Notice => Kind::Flapping,
                Admit::Hold => continue,
            };
            let mut payload = self.payload(
                kind,
                id,
                spec,
                Moment {
                    from: change.from,
                    to: change.to,
                    reason: change.reason.map(|r| r.as_str()),
                    message: &change.message,
                    at_ms,
                    since_ms: at_ms,
                },
            );
            payload.response_ms = response_ms;
            out.push(self.word(id, &channel, payload));
        }
        if change.to != State::Down {
            // The outage (if any) is over: its escalations may fire again
            // in the next one.
            self.fired.retain(|key| key.0 != id);
        } else if change.from != State::Down {
            self.schedule(id, spec, at_ms, at_ms);
        }
        out
    }

    /// Schedules the escalations and repeats of an outage that began at
    /// `since_ms`, skipping those already scheduled and escalations already
    /// sent. Repeats start at their next slot after `now_ms`; an
    /// escalation whose time has passed fires at the next tick.
    fn schedule(&mut self, id: i64, spec: &ResolvedSensor, since_ms: i64, now_ms: i64) {
        let mut followups = Vec::new();
        for rule in &self.rules {
            if !rule.covers(&spec.path, &spec.server, spec.group.as_deref()) {
                continue;
            }
            for (trigger, period) in [
                (Trigger::Escalation, rule.after_s),
                (Trigger::Repeat, rule.every_s),
            ] {
                let Some(period) = period.filter(|p| *p > 0) else {
                    continue;
                };
                if !rule.on.contains(&trigger) {
                    continue;
                }
                let period_ms = (period as i64).saturating_mul(1000);
                let mut due_ms = since_ms.saturating_add(period_ms);
                if trigger == Trigger::Repeat {
                    while due_ms <= now_ms {
                        due_ms = due_ms.saturating_add(period_ms);
                    }
                }
                followups.push(FollowUp {
                    due_ms,
                    sensor: id,
                    since_ms,
                    channel: rule.channel.clone(),
                    repeat: trigger == Trigger::Repeat,
                    period_ms,
                });
            }
        }
        for followup in followups {
            let key = followup.key();
            if !self.fired.contains(&key) && self.scheduled.insert(key) {
                self.followups.push(Reverse(followup));
            }
        }
    }

    /// Picks up a sensor that is DOWN since `since_ms` without this
    /// planner having seen it go down: after a restart (the state came
    /// from the store) or a reload that added rules.
    pub fn resume_outage(&mut self, id: i64, spec: &ResolvedSensor, since_ms: i64, now_ms: i64) {
        if self
            .rules
            .iter()
            .any(|r| r.after_s.is_some() || r.every_s.is_some())
        {
            self.schedule(id, spec, since_ms, now_ms);
        }
    }

    /// The earliest time a scheduled notification is due.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.followups.peek().map(|Reverse(f)| f.due_ms)
    }

    /// Escalations and repeats that have come due while their sensor is
    /// still DOWN, and the summaries of suppressions that have ended.
    pub fn due<'a>(
        &mut self,
        now_ms: i64,
        current: impl Fn(i64) -> Option<Current<'a>>,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        while let Some(Reverse(next)) = self.followups.peek() {
            if next.due_ms > now_ms {
                break;
            }
            let Some(Reverse(followup)) = self.followups.pop() else {
                break;
            };
            let still_down = current(followup.sensor)
                .filter(|c| c.state == State::Down && c.since_ms == followup.since_ms);
            let wanted = (followup.repeat, followup.period_ms);
            let rule_stays = still_down.is_some_and(|c| {
                self.rules.iter().any(|rule| {
                    rule.channel == followup.channel
                        && rule.covers(&c.spec.path, &c.spec.server, c.spec.group.as_deref())
                        && if wanted.0 {
                            rule.on.contains(&Trigger::Repeat)
                                && rule.every_s.map(|s| s as i64 * 1000) == Some(wanted.1)
                        } else {
                            rule.on.contains(&Trigger::Escalation)
                                && rule.after_s.map(|s| s as i64 * 1000) == Some(wanted.1)
                        }
                })
            });
            let (Some(now), true) = (still_down, rule_stays) else {
                self.scheduled.remove(&followup.key());
                continue;
            };
            let kind = if followup.repeat {
                Kind::Repeat
            } else {
                Kind::Escalation
            };
            let payload = self.payload(
                kind,
                followup.sensor,
                now.spec,
                Moment {
                    from: State::Down,
                    to: State::Down,
                    reason: None,
                    message: now.message,
                    at_ms: now_ms,
                    since_ms: now.since_ms,
                },
            );
            out.push(self.word(followup.sensor, &followup.channel, payload));
            if followup.repeat {
                // The next repeat follows this one's due time, not now, so
                // a late tick does not drift the schedule.
                let mut again = followup;
                while again.due_ms <= now_ms {
                    again.due_ms = again.due_ms.saturating_add(again.period_ms);
                }
                self.followups.push(Reverse(again));
            } else {
                let key = followup.key();
                self.scheduled.remove(&key);
                self.fired.insert(key);
            }
        }
        let channels = &self.channels;
        let mut released = Vec::new();
        self.limits.retain(|(channel, id), entry| {
            let (limit, window_ms) = limit_of(channels, channel);
            if let Some(held) = entry.release(now_ms, limit, window_ms) {
                released.push((channel.clone(), *id, held));
                return true;
            }
            entry.prune(now_ms, window_ms);
            !entry.idle()
        });
        for (channel, id, held) in released {
            let Some(now) = current(id) else { continue };
            let mut payload = self.payload(
                Kind::Summary,
                id,
                now.spec,
                Moment {
                    from: now.state,
                    to: now.state,
                    reason: None,
                    message: now.message,
                    at_ms: now_ms,
                    since_ms: now.since_ms,
                },
            );
            payload.suppressed = Some(held);
            out.push(self.word(id, &channel, payload));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portwatch_probe::Reason;

    #[test]
    fn a_limit_sends_then_notices_once_then_holds_then_summarises() {
        let mut limit = Limit::default();
        let window = 60_000;
        let got: Vec<Admit> = (0..5).map(|i| limit.admit(i * 1000, 3, window)).collect();
        assert_eq!(
            got,
            [
                Admit::Send,
                Admit::Send,
                Admit::Send,
                Admit::Notice,
                Admit::Hold
            ]
        );
        assert_eq!(limit.release(30_000, 3, window), None, "the window is full");
        // The first one leaves the window at 60 s: room again.
        assert_eq!(limit.release(60_000, 3, window), Some(2));
        assert_eq!(limit.release(61_000, 3, window), None, "reported once");
        assert_eq!(limit.admit(62_000, 3, window), Admit::Send);
        assert_eq!(Limit::default().admit(0, 0, window), Admit::Send);
    }

    fn spec() -> ResolvedSensor {
        let config = crate::config::from_toml(
            "t.toml",
            "[[server]]\nname = \"web\"\nhost = \"127.0.0.1\"\n[[server.sensor]]\nname = \"https\"\nport = 443\n",
        )
        .unwrap();
        crate::config::model::resolve(&config).remove(0)
    }

    fn rule(on: &[Trigger], after_s: Option<u64>, every_s: Option<u64>) -> RuleDef {
        RuleDef {
            channel: "pager".into(),
            on: on.to_vec(),
            groups: vec![],
            servers: vec![],
            sensors: vec![],
            after_s,
            every_s,
        }
    }

    fn down(from: State) -> Change {
        Change {
            from,
            to: State::Down,
            reason: Some(Reason::Refused),
            message: "connection refused".into(),
        }
    }

    #[test]
    fn escalation_fires_once_and_repeat_keeps_its_rhythm_while_down() {
        let spec = spec();
        let mut planner = Planner::new(Some("http://mon/".into()));
        planner.configure(
            vec![
                rule(&[Trigger::Down], None, None),
                rule(&[Trigger::Escalation], Some(300), None),
                RuleDef {
                    channel: "chat".into(),
                    ..rule(&[Trigger::Repeat], None, Some(600))
                },
            ],
            &[],
        );
        let first = planner.on_change(7, &spec, &down(State::Up), 1_000, Some(2.0));
        assert_eq!(first.len(), 1);
        assert_eq!(
            first[0].payload.link.as_deref(),
            Some("http://mon/sensors/7")
        );
        let current = |since_ms| {
            let spec = &spec;
            move |_| {
                Some(Current {
                    spec,
                    state: State::Down,
                    since_ms,
                    message: "connection refused",
                })
            }
        };
        assert!(planner.due(300_999, current(1_000)).is_empty());
        let escalated = planner.due(301_000, current(1_000));
        assert_eq!(
            escalated
                .iter()
                .map(|o| (o.channel.as_str(), o.payload.kind))
                .collect::<Vec<_>>(),
            [("pager", Kind::Escalation)]
        );
        assert!(
            escalated[0].payload.text.contains("still DOWN"),
            "{}",
            escalated[0].payload.text
        );
        // Repeats at 601 s and 1201 s; a late tick at 1250 s sends one.
        let kinds = |out: Vec<Outgoing>| out.iter().map(|o| o.payload.kind).collect::<Vec<_>>();
        assert_eq!(kinds(planner.due(601_000, current(1_000))), [Kind::Repeat]);
        assert_eq!(
            kinds(planner.due(1_250_000, current(1_000))),
            [Kind::Repeat]
        );
        assert_eq!(planner.next_due_ms(), Some(1_801_000));
        // Recovered (a newer outage started at 1300 s): nothing more for
        // the old outage.
        assert!(planner.due(1_801_000, current(1_300_000)).is_empty());
        assert_eq!(planner.next_due_ms(), None);
    }

    #[test]
    fn an_outage_found_after_a_restart_escalates_once_and_repeats_on_its_slots() {
        let spec = spec();
        let mut planner = Planner::new(None);
        planner.configure(
            vec![
                rule(&[Trigger::Escalation], Some(300), None),
                RuleDef {
                    channel: "chat".into(),
                    ..rule(&[Trigger::Repeat], None, Some(600))
                },
            ],
            &[],
        );
        let current = |_| {
            Some(Current {
                spec: &spec,
                state: State::Down,
                since_ms: 0,
                message: "refused",
            })
        };
        // Down since 0; the monitor restarts at 1,000 s.
        planner.resume_outage(1, &spec, 0, 1_000_000);
        let kinds = |out: Vec<Outgoing>| out.iter().map(|o| o.payload.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(planner.due(1_000_000, current)),
            [Kind::Escalation],
            "overdue: at once"
        );
        // The repeats keep their slots: 1,200 s, not 1,000 + 600.
        assert_eq!(planner.next_due_ms(), Some(1_200_000));
        // A reload resumes again: nothing is sent twice.
        planner.resume_outage(1, &spec, 0, 1_100_000);
        assert_eq!(kinds(planner.due(1_200_000, current)), [Kind::Repeat]);
        // Recovered, then down again: the new outage escalates again.
        let up = Change {
            from: State::Down,
            to: State::Up,
            reason: None,
            message: String::new(),
        };
        planner.on_change(1, &spec, &up, 1_250_000, None);
        planner.on_change(1, &spec, &down(State::Up), 1_300_000, None);
        let again = |_| {
            Some(Current {
                spec: &spec,
                state: State::Down,
                since_ms: 1_300_000,
                message: "refused",
            })
        };
        assert_eq!(kinds(planner.due(1_600_000, again)), [Kind::Escalation]);
    }

    #[test]
    fn a_removed_rule_cancels_its_follow_ups() {
        let spec = spec();
        let mut planner = Planner::new(None);
        planner.configure(vec![rule(&[Trigger::Escalation], Some(60), None)], &[]);
        assert!(
            planner
                .on_change(1, &spec, &down(State::Up), 0, None)
                .is_empty()
        );
        planner.configure(vec![rule(&[Trigger::Down], None, None)], &[]);
        let current = |_| {
            Some(Current {
                spec: &spec,
                state: State::Down,
                since_ms: 0,
                message: "",
            })
        };
        assert!(planner.due(60_000, current).is_empty());
    }

    #[test]
    fn a_flapping_sensor_is_limited_per_channel_and_summarised() {
        let spec = spec();
        let mut planner = Planner::new(None);
        let options = ChannelOptions {
            rate_limit: 2,
            rate_window_s: 100,
            ..ChannelOptions::default()
        };
        planner.configure(
            vec![rule(&[Trigger::Change], None, None)],
            &[ChannelDef {
                name: "pager".into(),
                kind: super::super::ChannelKind::Command { argv: vec![] },
                options,
            }],
        );
        let flip = |from, to| Change {
            from,
            to,
            reason: None,
            message: String::new(),
        };
        let mut kinds = Vec::new();
        for i in 0..6 {
            let (from, to) = if i % 2 == 0 {
                (State::Up, State::Down)
            } else {
                (State::Down, State::Up)
            };
            kinds.extend(
                planner
                    .on_change(1, &spec, &flip(from, to), i * 1000, None)
                    .into_iter()
                    .map(|o| o.payload.kind),
            );
        }
        assert_eq!(kinds, [Kind::Change, Kind::Change, Kind::Flapping]);
        let current = |_| {
            Some(Current {
                spec: &spec,
                state: State::Up,
                since_ms: 5_000,
                message: "",
            })
        };
        assert!(planner.due(50_000, current).is_empty());
        let summary = planner.due(100_000, current);
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].payload.kind, Kind::Summary);
        assert_eq!(summary[0].payload.suppressed, Some(4));
        assert!(
            summary[0]
                .payload
                .text
                .contains("4 notifications held back"),
            "{}",
            summary[0].payload.text
        );
    }
    /// Mutation testing found these planner decisions unchecked.
    #[test]
    fn an_escalation_fires_again_in_the_next_outage() {
        let spec = spec();
        let mut planner = Planner::new(None);
        planner.configure(vec![rule(&[Trigger::Escalation], Some(60), None)], &[]);
        let up = Change {
            from: State::Down,
            to: State::Up,
            reason: None,
            message: String::new(),
        };
        let current = |state, since_ms| {
            let spec = &spec;
            move |_| {
                Some(Current {
                    spec,
                    state,
                    since_ms,
                    message: "",
                })
            }
        };
        planner.on_change(3, &spec, &down(State::Up), 0, None);
        assert_eq!(planner.due(60_000, current(State::Down, 0)).len(), 1);
        planner.on_change(9, &spec, &down(State::Up), 0, None);
        planner.due(60_000, current(State::Down, 0));
        planner.on_change(3, &spec, &up, 70_000, None);
        // The recovered sensor's record is gone; the other's is kept.
        assert!(planner.fired.iter().all(|key| key.0 != 3));
        assert!(planner.fired.iter().any(|key| key.0 == 9));
        // A second outage escalates again.
        planner.on_change(3, &spec, &down(State::Up), 100_000, None);
        assert_eq!(planner.due(160_000, current(State::Down, 100_000)).len(), 1);
    }

    #[test]
    fn a_zero_period_schedules_nothing_and_rules_are_known() {
        let spec = spec();
        let mut planner = Planner::new(None);
        assert!(!planner.has_rules());
        planner.configure(
            vec![rule(
                &[Trigger::Escalation, Trigger::Repeat],
                Some(0),
                Some(0),
            )],
            &[],
        );
        assert!(planner.has_rules());
        planner.on_change(4, &spec, &down(State::Up), 1_000, None);
        assert_eq!(planner.next_due_ms(), None, "a zero period is no follow-up");
    }

    #[test]
    fn a_quiet_sensor_is_forgotten_by_the_flapping_limit() {
        let spec = spec();
        let mut planner = Planner::new(None);
        planner.configure(vec![rule(&[Trigger::Change], None, None)], &[]);
        let sent = planner.on_change(5, &spec, &down(State::Up), 0, None);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            planner.limits.len(),
            1,
            "the change is remembered for the window"
        );
        let window_ms = ChannelOptions::default().rate_window_s as i64 * 1000;
        let current = |_| None;
        planner.due(window_ms / 2, current);
        assert_eq!(planner.limits.len(), 1, "still inside the window");
        planner.due(window_ms + 1, current);
        assert!(
            planner.limits.is_empty(),
            "nothing held and the window passed"
        );
    }

    #[test]
    fn a_changed_period_cancels_the_old_follow_ups() {
        let spec = spec();
        let mut planner = Planner::new(None);
        planner.configure(
            vec![
                rule(&[Trigger::Escalation], Some(60), None),
                rule(&[Trigger::Repeat], None, Some(60)),
            ],
            &[],
        );
        planner.on_change(6, &spec, &down(State::Up), 0, None);
        // Both periods change before the follow-ups are due.
        planner.configure(
            vec![
                rule(&[Trigger::Escalation], Some(600), None),
                rule(&[Trigger::Repeat], None, Some(600)),
            ],
            &[],
        );
        let current = |_| {
            Some(Current {
                spec: &spec,
                state: State::Down,
                since_ms: 0,
                message: "",
            })
        };
        assert!(
            planner.due(60_000, current).is_empty(),
            "follow-ups of periods no rule has any more do not fire"
        );
    }
}
