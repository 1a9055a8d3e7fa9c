//! Notifications: rules say which state changes go to which channel.
//!
//! A notification is written to the store's outbox in the same transaction
//! as the state-change event that caused it, then delivered by the
//! [`worker`] with retries and exponential backoff until it succeeds
//! (at-least-once), across restarts and `kill -9`. Paused sensors never
//! notify, so while a dependency is down only that dependency alerts.
//!
//! - [`deliver`]: the channels (an HTTP webhook, a local command).
//! - [`worker`]: the delivery loop over the outbox.

pub mod deliver;
pub mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::monitor::state::{Change, State};

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelKind {
    /// A JSON POST to a URL, with an optional bearer token from the
    /// environment (the token itself is never stored).
    Webhook {
        /// The URL.
        url: String,
        /// The environment variable holding the token.
        token_env: Option<String>,
    },
    /// A local program, given the event in `PORTWATCH_*` environment
    /// variables and as JSON on stdin.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
    },
}

/// A named channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDef {
    /// Unique name.
    pub name: String,
    /// What it is.
    pub kind: ChannelKind,
}

/// What a rule reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The sensor went DOWN.
    Down,
    /// The sensor went WARNING.
    Warning,
    /// The sensor recovered: UP after DOWN or WARNING.
    Up,
    /// Any change between up, warning, down and unknown.
    Change,
}

impl Trigger {
    /// Parses `down`, `warning`, `up` or `change`.
    pub fn parse(text: &str) -> Option<Trigger> {
        match text.trim().to_ascii_lowercase().as_str() {
            "down" => Some(Trigger::Down),
            "warning" => Some(Trigger::Warning),
            "up" | "recovery" => Some(Trigger::Up),
            "change" => Some(Trigger::Change),
            _ => None,
        }
    }
}

/// A rule: changes of the covered sensors matching `on` go to `channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleDef {
    /// The channel's name.
    pub channel: String,
    /// What it reacts to.
    pub on: Vec<Trigger>,
    /// Groups covered (and everything below them).
    pub groups: Vec<String>,
    /// Servers covered.
    pub servers: Vec<String>,
    /// Sensors covered (`server/sensor`).
    pub sensors: Vec<String>,
}

impl RuleDef {
    /// Whether the rule covers a sensor (no names at all: every sensor).
    pub fn covers(&self, path: &str, server: &str, group: Option<&str>) -> bool {
        if self.groups.is_empty() && self.servers.is_empty() && self.sensors.is_empty() {
            return true;
        }
        self.sensors.iter().any(|s| s == path)
            || self.servers.iter().any(|s| s == server)
            || group.is_some_and(|g| {
                self.groups
                    .iter()
                    .any(|rule| g == rule || g.starts_with(&format!("{rule}/")))
            })
    }
}

/// Whether a state change fires a trigger. Changes into or out of
/// `paused` and `pending` never notify: a paused sensor is silent, and a
/// sensor resuming or starting is not news.
pub fn fires(trigger: Trigger, change: &Change) -> bool {
    let quiet = |s: State| matches!(s, State::Paused(_) | State::Pending);
    if quiet(change.to) {
        return false;
    }
    match trigger {
        Trigger::Down => change.to == State::Down,
        Trigger::Warning => change.to == State::Warning,
        Trigger::Up => {
            change.to == State::Up && matches!(change.from, State::Down | State::Warning)
        }
        Trigger::Change => !quiet(change.from) && change.from != change.to,
    }
}

/// The wait before delivery attempt `attempt + 1`: 1 s, 2 s, 4 s, … up to
/// 10 minutes.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(10)).min(Duration::from_secs(600))
}

/// The JSON a channel receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// `server/sensor`.
    pub sensor: String,
    /// The server.
    pub server: String,
    /// The group, if any.
    pub group: Option<String>,
    /// The host and port checked.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The state before.
    pub from: String,
    /// The state now.
    pub to: String,
    /// The check's reason.
    pub reason: Option<String>,
    /// What happened.
    pub message: String,
    /// When (RFC 3339).
    pub at: String,
    /// A one-line summary for chat tools.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::state::PauseCause;
    use crate::probe::Reason;

    fn change(from: State, to: State) -> Change {
        Change {
            from,
            to,
            reason: Some(Reason::Refused),
            message: String::new(),
        }
    }

    #[test]
    fn triggers() {
        let paused = State::Paused(PauseCause::Dependency);
        let cases = [
            (State::Up, State::Down, [true, false, false, true]),
            (State::Warning, State::Down, [true, false, false, true]),
            (State::Up, State::Warning, [false, true, false, true]),
            (State::Down, State::Up, [false, false, true, true]),
            (State::Warning, State::Up, [false, false, true, true]),
            (State::Pending, State::Up, [false, false, false, false]),
            (State::Pending, State::Down, [true, false, false, false]),
            (State::Up, paused, [false, false, false, false]),
            (paused, State::Pending, [false, false, false, false]),
            (State::Up, State::Unknown, [false, false, false, true]),
        ];
        for (from, to, wanted) in cases {
            let got = [
                Trigger::Down,
                Trigger::Warning,
                Trigger::Up,
                Trigger::Change,
            ]
            .map(|t| fires(t, &change(from, to)));
            assert_eq!(got, wanted, "{from} -> {to}");
        }
    }

    #[test]
    fn rules_cover_names_or_everything() {
        let everything = RuleDef {
            channel: "c".into(),
            on: vec![Trigger::Down],
            groups: vec![],
            servers: vec![],
            sensors: vec![],
        };
        assert!(everything.covers("web/https", "web", None));
        let site = RuleDef {
            groups: vec!["Site".into()],
            ..everything.clone()
        };
        assert!(site.covers("web/https", "web", Some("Site/Web")));
        assert!(!site.covers("web/https", "web", Some("Sites")));
        let one = RuleDef {
            sensors: vec!["db/postgresql".into()],
            ..everything
        };
        assert!(one.covers("db/postgresql", "db", None) && !one.covers("db/ssh", "db", None));
    }

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(600));
    }
}
