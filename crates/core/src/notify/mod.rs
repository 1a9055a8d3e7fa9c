//! Notifications as data: channel and rule definitions, payloads, and the
//! pure decisions about them.
//!
//! A notification is written to the store's outbox in the same transaction
//! as the state-change event that caused it, then delivered by the
//! application's delivery worker with retries and exponential backoff
//! ([`backoff`]) until it succeeds (at-least-once). Paused sensors never
//! notify, so while a dependency is down only that dependency alerts.
//!
//! - [`plan`]: which notifications a change causes, escalations and
//!   repeats while a sensor stays down, and the per-channel flapping limit.
//! - [`template`]: the message and title templates.

pub mod plan;
pub mod template;

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
        /// The environment variable holding the token (portwatch.toml only).
        token_env: Option<String>,
        /// The token itself, as entered in the web interface or API; stored,
        /// used for this channel only, and never shown again.
        #[serde(default)]
        token: Option<String>,
        /// Follow HTTP redirects (off by default: a 307 would carry the
        /// body, and the token, to wherever the receiver points).
        #[serde(default)]
        follow_redirects: bool,
        /// The body format of a chat or paging service, or the generic JSON.
        #[serde(default)]
        preset: Option<Preset>,
    },
    /// Mail over SMTP.
    Email {
        /// The SMTP server.
        host: String,
        /// Its port (default: 587 for STARTTLS, 465 for TLS, 25 for none).
        port: Option<u16>,
        /// How the connection is secured.
        security: Security,
        /// The sender.
        from: String,
        /// The recipients.
        to: Vec<String>,
        /// The SMTP user name, if the server wants one.
        username: Option<String>,
        /// The environment variable holding the password (portwatch.toml
        /// only).
        password_env: Option<String>,
        /// A file holding the password, first line (portwatch.toml only).
        password_file: Option<String>,
        /// The password itself, as entered in the web interface or API;
        /// stored, used for this channel only, and never shown again.
        #[serde(default)]
        password: Option<String>,
    },
    /// A local program, given the event in `PORTWATCH_*` environment
    /// variables and as JSON on stdin.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
    },
}

/// The body formats of services that take webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Slack incoming webhooks: `{"text": …}`.
    Slack,
    /// Discord webhooks: `{"content": …}`.
    Discord,
    /// Microsoft Teams incoming webhooks: `{"text": …}`.
    Teams,
    /// ntfy: the text as the body, with a title and priority header.
    Ntfy,
    /// Gotify: `{"title", "message", "priority"}`.
    Gotify,
    /// PagerDuty Events API v2 (the routing key comes from `token_env`).
    Pagerduty,
}

impl Preset {
    /// Parses a preset name.
    pub fn parse(text: &str) -> Option<Preset> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "slack" => Preset::Slack,
            "discord" => Preset::Discord,
            "teams" | "msteams" => Preset::Teams,
            "ntfy" => Preset::Ntfy,
            "gotify" => Preset::Gotify,
            "pagerduty" => Preset::Pagerduty,
            _ => return None,
        })
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plain SMTP upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption (a local relay).
    None,
}

/// A URL without its path, query or credentials: `https://hooks.example.com/…`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let more = rest.len() > authority.len() || authority.contains('@');
    format!("{scheme}://{host}{}", if more { "/…" } else { "" })
}

/// Escapes text that came from monitored servers or users for a chat
/// service's markup, so a banner such as `<!channel>` or `@everyone` or a
/// disguised link arrives as the characters it is.
pub fn escape_for(preset: Option<Preset>, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match (preset, c) {
            (Some(Preset::Slack | Preset::Teams), '&') => out.push_str("&amp;"),
            (Some(Preset::Slack | Preset::Teams), '<') => out.push_str("&lt;"),
            (Some(Preset::Slack | Preset::Teams), '>') => out.push_str("&gt;"),
            (
                Some(Preset::Discord | Preset::Teams),
                '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '#' | '[' | ']' | '(' | ')' | '@'
                | '-' | '!',
            ) => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A webhook body: content type and bytes, shaped for `preset`. PagerDuty
/// takes its routing key in the body, so the token goes there. The chat
/// presets get their text rendered again with every field escaped for
/// their markup; the template's own text keeps its formatting.
pub fn webhook_body(
    preset: Option<Preset>,
    payload: &Payload,
    token: Option<&str>,
    options: &ChannelOptions,
) -> (&'static str, Vec<u8>) {
    let json = |value: serde_json::Value| {
        (
            "application/json",
            serde_json::to_vec(&value).expect("json serialises"),
        )
    };
    let chat_text = || {
        template::render_with(
            options
                .template
                .as_deref()
                .unwrap_or(template::default_text(payload.kind)),
            payload,
            &|value| escape_for(preset, value),
        )
    };
    let severe = payload.to == "down";
    match preset {
        None => (
            "application/json",
            serde_json::to_vec(payload).expect("a payload serialises"),
        ),
        Some(Preset::Slack | Preset::Teams) => json(serde_json::json!({ "text": chat_text() })),
        Some(Preset::Discord) => json(serde_json::json!({
            "content": chat_text(),
            "allowed_mentions": { "parse": [] },
        })),
        Some(Preset::Ntfy) => (
            "text/plain; charset=utf-8",
            payload.text.clone().into_bytes(),
        ),
        Some(Preset::Gotify) => json(serde_json::json!({
            "title": payload.title,
            "message": payload.text,
            "priority": if severe { 8 } else { 4 },
        })),
        Some(Preset::Pagerduty) => json(serde_json::json!({
            "routing_key": token.unwrap_or_default(),
            "event_action": if payload.to == "up" { "resolve" } else { "trigger" },
            "dedup_key": format!("portwatch:{}", payload.sensor),
            "payload": {
                "summary": payload.text,
                "source": format!("{}:{}", payload.host, payload.port),
                "severity": if severe { "critical" } else if payload.to == "warning" { "warning" } else { "info" },
                "component": payload.sensor,
                "group": payload.group,
                "custom_details": payload,
            },
        })),
    }
}

/// A named channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDef {
    /// Unique name.
    pub name: String,
    /// What it is.
    pub kind: ChannelKind,
    /// Templates, limits and timeout.
    #[serde(default)]
    pub options: ChannelOptions,
}

/// How a channel words its messages and how much it may receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelOptions {
    /// The message template (see [`template`]); `None`: the built-in one.
    pub template: Option<String>,
    /// The title template (mail subject, ntfy/Gotify title).
    pub title: Option<String>,
    /// At most this many change notifications per sensor within
    /// `rate_window_s`; 0: no limit.
    pub rate_limit: u32,
    /// The flapping window, in seconds.
    pub rate_window_s: u64,
    /// How long one delivery attempt may take, in seconds.
    pub timeout_s: u64,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            template: None,
            title: None,
            rate_limit: 5,
            rate_window_s: 3600,
            timeout_s: 10,
        }
    }
}

impl ChannelOptions {
    /// How long one delivery attempt may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s.clamp(1, 300))
    }
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
    /// Still DOWN a set time after going down (once per outage).
    Escalation,
    /// Every N minutes while DOWN.
    Repeat,
    /// A node sharing the store stopped renewing its lease (its sensors
    /// went to the other nodes). Not about a sensor: a rule's groups,
    /// servers and sensors do not apply.
    Node,
}

impl Trigger {
    /// Every trigger's name, for messages.
    pub const NAMES: &'static str = "down, warning, up, change, escalation, repeat or node";

    /// Parses a trigger name.
    pub fn parse(text: &str) -> Option<Trigger> {
        match text.trim().to_ascii_lowercase().as_str() {
            "down" => Some(Trigger::Down),
            "warning" => Some(Trigger::Warning),
            "up" | "recovery" => Some(Trigger::Up),
            "change" => Some(Trigger::Change),
            "escalation" | "escalate" => Some(Trigger::Escalation),
            "repeat" => Some(Trigger::Repeat),
            "node" => Some(Trigger::Node),
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
    /// Escalation: how long a sensor must stay DOWN, in seconds.
    #[serde(default)]
    pub after_s: Option<u64>,
    /// Repeat: how often while DOWN, in seconds.
    #[serde(default)]
    pub every_s: Option<u64>,
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
        // Scheduled while DOWN, never caused by a change itself; a node's
        // lease is not a sensor's change.
        Trigger::Escalation | Trigger::Repeat | Trigger::Node => false,
    }
}

/// The wait before delivery attempt `attempt + 1`: 1 s, 2 s, 4 s, … up to
/// 10 minutes.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(10)).min(Duration::from_secs(600))
}

/// When to try again a delivery whose attempt `attempt` failed at `at_ms`.
pub fn retry_at(at_ms: i64, attempt: u32) -> i64 {
    at_ms + backoff(attempt).as_millis() as i64
}

/// Why a notification was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A state change.
    #[default]
    Change,
    /// Still DOWN after the rule's `after`.
    Escalation,
    /// Still DOWN, repeated every rule's `every`.
    Repeat,
    /// The sensor flaps: this channel's limit is reached, and further
    /// changes are held back.
    Flapping,
    /// The end of a flapping suppression: how many were held back, and the
    /// state now.
    Summary,
    /// `portwatch notify test`.
    Test,
    /// A node's lease lapsed.
    Node,
}

impl Kind {
    /// The name in payloads and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Change => "change",
            Kind::Escalation => "escalation",
            Kind::Repeat => "repeat",
            Kind::Flapping => "flapping",
            Kind::Summary => "summary",
            Kind::Test => "test",
            Kind::Node => "node",
        }
    }
}

/// The JSON a channel receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Why it was sent.
    #[serde(default)]
    pub kind: Kind,
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
    /// Since when the sensor has been in `to` (RFC 3339).
    #[serde(default)]
    pub since: String,
    /// The last connect time, in milliseconds.
    #[serde(default)]
    pub response_ms: Option<f64>,
    /// The sensor's page in the web interface.
    #[serde(default)]
    pub link: Option<String>,
    /// Held-back notifications this one reports (kind `summary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u32>,
    /// A short title (mail subject, ntfy/Gotify title).
    #[serde(default)]
    pub title: String,
    /// A one-line summary for chat tools.
    pub text: String,
}

/// A time in milliseconds since the epoch as payloads give it (RFC 3339).
pub(crate) fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Payload {
    /// Fills the title and text with a channel's templates (its
    /// options), or the built-in ones.
    pub(crate) fn worded(mut self, options: Option<&ChannelOptions>) -> Payload {
        template::word(
            &mut self,
            options.and_then(|o| o.template.as_deref()),
            options.and_then(|o| o.title.as_deref()),
        );
        self
    }
}

/// A node that stopped renewing its lease, as its notification tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct LapsedNode {
    /// Its name.
    pub name: String,
    /// Its location.
    pub location: String,
    /// The sensors it held, now the other nodes'.
    pub sensors: i64,
    /// Its last heartbeat (ms).
    pub heartbeat_ms: i64,
    /// When its lease ended (ms).
    pub expired_ms: i64,
}

/// The notifications a lapsed node causes: one per channel of each rule
/// with `on = ["node"]` (a channel named by several such rules gets one).
pub fn node_lapsed(
    rules: &[RuleDef],
    channels: &[ChannelDef],
    node: &LapsedNode,
) -> Vec<(String, Payload)> {
    let time = rfc3339;
    let mut seen = std::collections::HashSet::new();
    rules
        .iter()
        .filter(|rule| rule.on.contains(&Trigger::Node))
        .filter(|rule| seen.insert(rule.channel.as_str()))
        .filter_map(|rule| {
            let channel = channels.iter().find(|c| c.name == rule.channel)?;
            let payload = Payload {
                kind: Kind::Node,
                sensor: format!("node/{}", node.name),
                server: node.name.clone(),
                group: None,
                host: node.location.clone(),
                port: 0,
                from: "live".into(),
                to: "lapsed".into(),
                reason: Some("missed_heartbeats".into()),
                message: format!(
                    "node {} (location {}) stopped renewing its lease; its last heartbeat was at {}, and its {} sensors went to the other nodes",
                    node.name,
                    node.location,
                    time(node.heartbeat_ms),
                    node.sensors
                ),
                at: time(node.expired_ms),
                since: time(node.expired_ms),
                response_ms: None,
                link: None,
                suppressed: None,
                title: String::new(),
                text: String::new(),
            };
            Some((rule.channel.clone(), payload.worded(Some(&channel.options))))
        })
        .collect()
}

/// The message `portwatch notify test` and the web interface's test button
/// send, worded with the channel's templates.
pub fn test_payload(channel: &ChannelDef) -> Payload {
    let now = jiff::Timestamp::now().to_string();
    Payload {
        kind: Kind::Test,
        sensor: "portwatch/test".into(),
        server: "portwatch".into(),
        group: None,
        host: "localhost".into(),
        port: 0,
        from: "up".into(),
        to: "down".into(),
        reason: None,
        message: "a test notification from portwatch".into(),
        at: now.clone(),
        since: now,
        response_ms: None,
        link: None,
        suppressed: None,
        title: String::new(),
        text: String::new(),
    }
    .worded(Some(&channel.options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::state::PauseCause;
    use portwatch_probe::Reason;

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
            after_s: None,
            every_s: None,
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

    fn payload(to: &str) -> Payload {
        Payload {
            kind: Kind::Change,
            since: "2026-11-23T20:00:00Z".into(),
            response_ms: None,
            link: None,
            suppressed: None,
            title: "web/https is DOWN".into(),
            sensor: "web/https".into(),
            server: "web".into(),
            group: None,
            host: "192.0.2.1".into(),
            port: 443,
            from: "up".into(),
            to: to.into(),
            reason: Some("refused".into()),
            message: "connection refused".into(),
            at: "2026-11-23T20:00:00Z".into(),
            text: "web/https is DOWN (refused): connection refused".into(),
        }
    }

    #[test]
    fn presets_shape_the_body() {
        let body = |preset, to| {
            let (kind, bytes) = webhook_body(
                Some(preset),
                &payload(to),
                Some("routing-key"),
                &ChannelOptions::default(),
            );
            (kind, String::from_utf8(bytes).unwrap())
        };
        assert_eq!(
            body(Preset::Slack, "down").1,
            r#"{"text":"web/https is DOWN (refused): connection refused"}"#
        );
        let discord: serde_json::Value =
            serde_json::from_str(&body(Preset::Discord, "down").1).unwrap();
        assert_eq!(
            discord["content"],
            "web/https is DOWN (refused): connection refused"
        );
        assert_eq!(
            body(Preset::Ntfy, "down"),
            (
                "text/plain; charset=utf-8",
                "web/https is DOWN (refused): connection refused".to_owned()
            )
        );
        let pagerduty: serde_json::Value =
            serde_json::from_str(&body(Preset::Pagerduty, "down").1).unwrap();
        assert_eq!(
            (
                pagerduty["event_action"].as_str(),
                pagerduty["routing_key"].as_str()
            ),
            (Some("trigger"), Some("routing-key"))
        );
        assert_eq!(pagerduty["payload"]["severity"], "critical");
        let resolved: serde_json::Value =
            serde_json::from_str(&body(Preset::Pagerduty, "up").1).unwrap();
        assert_eq!(resolved["event_action"], "resolve");
        assert_eq!(
            resolved["dedup_key"], pagerduty["dedup_key"],
            "the same incident is resolved"
        );
        let gotify: serde_json::Value =
            serde_json::from_str(&body(Preset::Gotify, "down").1).unwrap();
        assert_eq!(gotify["priority"], 8);
        let generic: Payload = serde_json::from_slice(
            &webhook_body(None, &payload("down"), None, &ChannelOptions::default()).1,
        )
        .unwrap();
        assert_eq!(generic, payload("down"));
    }

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(600));
        assert_eq!(retry_at(10_000, 0), 11_000, "later, never earlier");
        assert_eq!(retry_at(10_000, 3), 18_000);
    }

    /// Regression (hardening #8): a banner with chat markup reached Slack,
    /// Discord and Teams verbatim.
    #[test]
    fn chat_markup_from_a_monitored_server_arrives_as_text() {
        let mut p = payload("down");
        p.message = "<!channel> @everyone <https://evil.example/x|Re-login> **now**".into();
        let options = ChannelOptions::default();
        let body = |preset| {
            let (_, bytes) = webhook_body(Some(preset), &p, None, &options);
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        let slack = body(Preset::Slack)["text"].as_str().unwrap().to_owned();
        assert!(!slack.contains('<') && !slack.contains('>'), "{slack}");
        assert!(slack.contains("&lt;!channel&gt;"), "{slack}");
        let discord = body(Preset::Discord);
        assert_eq!(discord["allowed_mentions"]["parse"], serde_json::json!([]));
        let text = discord["content"].as_str().unwrap();
        assert!(
            text.contains("\\@everyone") && text.contains("\\*\\*now\\*\\*"),
            "{text}"
        );
        let teams = body(Preset::Teams)["text"].as_str().unwrap().to_owned();
        assert!(
            teams.contains("&lt;https://evil.example/x\\|Re\\-login&gt;"),
            "{teams}"
        );
        // portwatch's own wording (the template's text) is kept.
        assert!(slack.starts_with(&p.sensor), "{slack}");
        // A CR from a server never reaches a chat body.
        p.message = "up\r\nX-Injected: yes".into();
        let (_, bytes) = webhook_body(Some(Preset::Slack), &p, None, &options);
        assert!(!String::from_utf8(bytes).unwrap().contains("\\r"));
    }

    #[test]
    fn a_lapsed_node_notifies_each_channel_with_a_node_rule_once() {
        let channel = |name: &str| {
            crate::config::channel_from_json(&serde_json::json!({
                "name": name, "webhook": "http://127.0.0.1:9/hook"
            }))
            .unwrap()
        };
        let rule = |channel: &str, on: Vec<Trigger>| RuleDef {
            channel: channel.into(),
            on,
            groups: vec!["Elsewhere".into()],
            servers: vec![],
            sensors: vec![],
            after_s: None,
            every_s: None,
        };
        let rules = [
            rule("ops", vec![Trigger::Down, Trigger::Node]),
            rule("chat", vec![Trigger::Down]),
            rule("ops", vec![Trigger::Node]),
            rule("gone", vec![Trigger::Node]),
        ];
        let node = LapsedNode {
            name: "mon3".into(),
            location: "eu".into(),
            sensors: 120,
            heartbeat_ms: 1_790_000_000_000,
            expired_ms: 1_790_000_006_000,
        };
        let sent = node_lapsed(&rules, &[channel("ops"), channel("chat")], &node);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let (channel, payload) = &sent[0];
        assert_eq!(channel, "ops");
        assert_eq!(
            (payload.kind, payload.sensor.as_str(), payload.to.as_str()),
            (Kind::Node, "node/mon3", "lapsed")
        );
        assert_eq!(payload.at, "2026-09-21T14:13:26Z");
        assert_eq!(payload.title, "portwatch node mon3 lapsed");
        assert!(
            payload
                .text
                .starts_with("node mon3 (location eu) stopped renewing its lease")
                && payload
                    .text
                    .contains("its 120 sensors went to the other nodes"),
            "{}",
            payload.text
        );
        assert_eq!(Trigger::parse("node"), Some(Trigger::Node));
        assert!(!fires(Trigger::Node, &change(State::Up, State::Down)));
    }
}
