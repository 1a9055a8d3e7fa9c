//! The file as written, with spans, before validation. Unknown keys are
//! refused by serde (`deny_unknown_fields`), which does not combine with
//! `flatten`, so the inheritable settings are spelled out in each table by
//! a macro.

use serde::Deserialize;
use toml::Spanned;

/// A key that most tables leave out, as written: boxed, so that an unset
/// one takes 8 bytes instead of 40 or more. A sensor has some fifty of
/// them, and a million sensors' unset keys took 2 GB unboxed.
pub type Rare<T> = Option<Box<Spanned<T>>>;

/// The text of a key, when it is written.
pub fn text(value: &Rare<String>) -> Option<&str> {
    value.as_deref().map(|v| v.get_ref().as_str())
}

/// [`text`], owned.
pub fn owned(value: &Rare<String>) -> Option<String> {
    text(value).map(str::to_owned)
}

/// Inheritable settings, as one value for validation.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub interval: Rare<String>,
    pub timeout: Rare<String>,
    pub warning: Rare<String>,
    pub critical: Rare<String>,
    pub retries: Rare<i64>,
    pub depends_on: Rare<String>,
    pub locations: Rare<Vec<String>>,
    pub down_when: Rare<toml::Value>,
    pub mode: Rare<String>,
    pub protocol: Rare<String>,
    pub tls: Rare<String>,
    pub insecure: Option<bool>,
    pub sni: Rare<String>,
    pub ca_file: Rare<String>,
    pub cert_warn_days: Rare<i64>,
    pub http_method: Rare<String>,
    pub http_path: Rare<String>,
    pub http_status: Rare<Vec<i64>>,
    pub http_headers: Rare<std::collections::BTreeMap<String, String>>,
    pub http_body: Rare<String>,
    pub http_auth: Rare<crate::config::probe::AuthSpec>,
    pub http_follow: Rare<bool>,
    pub http_contains: Rare<String>,
    pub http_absent: Rare<String>,
    pub http_regex: Rare<String>,
    pub http_json: Rare<crate::config::probe::JsonSpec>,
    pub phase_warning: Rare<std::collections::BTreeMap<String, String>>,
    pub phase_critical: Rare<std::collections::BTreeMap<String, String>>,
    pub steps: Rare<Vec<crate::config::probe::StepSpec>>,
    pub quit: Rare<String>,
    pub max_bytes: Rare<i64>,
}

/// Declares a table that carries the inheritable settings plus its own keys.
macro_rules! with_settings {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            /// How often to check (1s to 1d).
            #[serde(default)]
            pub interval: Rare<String>,
            /// How long a check may take.
            #[serde(default)]
            pub timeout: Rare<String>,
            /// Connect time above which a sensor is WARNING.
            #[serde(default)]
            pub warning: Rare<String>,
            /// Connect time above which a sensor is DOWN.
            #[serde(default)]
            pub critical: Rare<String>,
            /// Immediate re-checks before DOWN.
            #[serde(default)]
            pub retries: Rare<i64>,
            /// The sensor (`server/sensor`) this depends on.
            #[serde(default)]
            pub depends_on: Rare<String>,
            /// The locations that check the sensor.
            #[serde(default)]
            pub locations: Rare<Vec<String>>,
            /// How many locations must see it down: 1, 2, … or "all".
            #[serde(default)]
            pub down_when: Rare<toml::Value>,
            /// connect or auto (speak the well-known port's protocol).
            #[serde(default)]
            pub mode: Rare<String>,
            /// A protocol to speak on any port.
            #[serde(default)]
            pub protocol: Rare<String>,
            /// none, implicit or starttls.
            #[serde(default)]
            pub tls: Rare<String>,
            /// Do not verify certificates (still reported).
            #[serde(default)]
            pub insecure: Option<bool>,
            /// The TLS server name.
            #[serde(default)]
            pub sni: Rare<String>,
            /// A PEM file of trusted CA certificates.
            #[serde(default)]
            pub ca_file: Rare<String>,
            /// Warn this many days before a certificate expires.
            #[serde(default)]
            pub cert_warn_days: Rare<i64>,
            /// HEAD or GET.
            #[serde(default)]
            pub http_method: Rare<String>,
            /// The HTTP request path.
            #[serde(default)]
            pub http_path: Rare<String>,
            /// Accepted HTTP statuses.
            #[serde(default)]
            pub http_status: Rare<Vec<i64>>,
            /// Extra HTTP request headers.
            #[serde(default)]
            pub http_headers: Rare<std::collections::BTreeMap<String, String>>,
            /// The HTTP request body.
            #[serde(default)]
            pub http_body: Rare<String>,
            /// HTTP authentication from an environment variable or a file.
            #[serde(default)]
            pub http_auth: Rare<crate::config::probe::AuthSpec>,
            /// Follow HTTP redirects.
            #[serde(default)]
            pub http_follow: Rare<bool>,
            /// Text the HTTP body must contain.
            #[serde(default)]
            pub http_contains: Rare<String>,
            /// Text the HTTP body must not contain.
            #[serde(default)]
            pub http_absent: Rare<String>,
            /// A regular expression the HTTP body must match.
            #[serde(default)]
            pub http_regex: Rare<String>,
            /// A value in a JSON body.
            #[serde(default)]
            pub http_json: Rare<crate::config::probe::JsonSpec>,
            /// Phase thresholds above which a check is WARNING.
            #[serde(default)]
            pub phase_warning: Rare<std::collections::BTreeMap<String, String>>,
            /// Phase thresholds above which a check is DOWN.
            #[serde(default)]
            pub phase_critical: Rare<std::collections::BTreeMap<String, String>>,
            /// Send/expect steps.
            #[serde(default)]
            pub steps: Rare<Vec<crate::config::probe::StepSpec>>,
            /// Sent before closing.
            #[serde(default)]
            pub quit: Rare<String>,
            /// The most bytes read.
            #[serde(default)]
            pub max_bytes: Rare<i64>,
        }

        impl $name {
            pub fn settings(&self) -> Settings {
                Settings {
                    interval: self.interval.clone(),
                    timeout: self.timeout.clone(),
                    warning: self.warning.clone(),
                    critical: self.critical.clone(),
                    retries: self.retries.clone(),
                    depends_on: self.depends_on.clone(),
                    locations: self.locations.clone(),
                    down_when: self.down_when.clone(),
                    mode: self.mode.clone(),
                    protocol: self.protocol.clone(),
                    tls: self.tls.clone(),
                    insecure: self.insecure,
                    sni: self.sni.clone(),
                    ca_file: self.ca_file.clone(),
                    cert_warn_days: self.cert_warn_days.clone(),
                    http_method: self.http_method.clone(),
                    http_path: self.http_path.clone(),
                    http_status: self.http_status.clone(),
                    http_headers: self.http_headers.clone(),
                    http_body: self.http_body.clone(),
                    http_auth: self.http_auth.clone(),
                    http_follow: self.http_follow.clone(),
                    http_contains: self.http_contains.clone(),
                    http_absent: self.http_absent.clone(),
                    http_regex: self.http_regex.clone(),
                    http_json: self.http_json.clone(),
                    phase_warning: self.phase_warning.clone(),
                    phase_critical: self.phase_critical.clone(),
                    steps: self.steps.clone(),
                    quit: self.quit.clone(),
                    max_bytes: self.max_bytes.clone(),
                }
            }
        }
    };
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Settings for everything.
    #[serde(default)]
    pub defaults: Option<Defaults>,
    /// Groups.
    #[serde(default)]
    pub group: Vec<Group>,
    /// Servers with their sensors.
    #[serde(default)]
    pub server: Vec<Server>,
    /// Maintenance windows.
    #[serde(default)]
    pub maintenance: Vec<Maintenance>,
    /// Where notifications go.
    #[serde(default)]
    pub channel: Vec<Channel>,
    /// Which state changes notify which channel.
    #[serde(default)]
    pub notify: Vec<Notify>,
}

/// `[[channel]]`: exactly one of `webhook` or `command`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// Unique name.
    pub name: Spanned<String>,
    /// An http(s) URL that receives a JSON POST.
    #[serde(default)]
    pub webhook: Option<Spanned<String>>,
    /// The environment variable holding a bearer token for the webhook.
    #[serde(default)]
    pub token_env: Option<Spanned<String>>,
    /// The webhook's bearer token itself (the web interface and API store
    /// it; in a file, prefer token_env).
    #[serde(default)]
    pub token: Option<Spanned<String>>,
    /// Follow the webhook's HTTP redirects (default false).
    #[serde(default)]
    pub follow_redirects: Option<Spanned<bool>>,
    /// A program and its arguments, run with the event in its environment
    /// and as JSON on stdin.
    #[serde(default)]
    pub command: Option<Spanned<Vec<String>>>,
    /// A webhook body format: slack, discord, teams, ntfy, gotify, pagerduty.
    #[serde(default)]
    pub preset: Option<Spanned<String>>,
    /// An SMTP server: the channel sends mail.
    #[serde(default)]
    pub smtp: Option<Spanned<String>>,
    /// The SMTP port.
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    /// starttls (default), tls or none.
    #[serde(default)]
    pub security: Option<Spanned<String>>,
    /// The sender address.
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    /// The recipients.
    #[serde(default)]
    pub to: Vec<Spanned<String>>,
    /// The SMTP user name.
    #[serde(default)]
    pub username: Option<Spanned<String>>,
    /// The environment variable holding the SMTP password.
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
    /// A file holding the SMTP password.
    #[serde(default)]
    pub password_file: Option<Spanned<String>>,
    /// The SMTP password itself (the web interface and API store it; in a
    /// file, prefer password_env or password_file).
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    /// The message template, e.g. "{sensor} is {STATE}: {message}".
    #[serde(default)]
    pub template: Option<Spanned<String>>,
    /// The title template (mail subject, ntfy/Gotify title).
    #[serde(default)]
    pub title: Option<Spanned<String>>,
    /// At most this many notifications per sensor within `rate_window`
    /// (default 5; 0: no limit).
    #[serde(default)]
    pub rate_limit: Option<Spanned<i64>>,
    /// The flapping window (default 1h).
    #[serde(default)]
    pub rate_window: Option<Spanned<String>>,
    /// How long one delivery attempt may take (default 10s).
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
}

/// `[[notify]]`: a rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The channel's name.
    pub channel: Spanned<String>,
    /// Triggers: down, warning, up, change.
    pub on: Spanned<Vec<String>>,
    /// Groups covered (with everything below); all three empty: everything.
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    /// Servers covered.
    #[serde(default)]
    pub servers: Vec<Spanned<String>>,
    /// Sensors covered.
    #[serde(default)]
    pub sensors: Vec<Spanned<String>>,
    /// Escalation: how long a sensor must stay down first.
    #[serde(default)]
    pub after: Option<Spanned<String>>,
    /// Repeat: how often while down.
    #[serde(default)]
    pub every: Option<Spanned<String>>,
}

with_settings!(
    /// `[defaults]`.
    Defaults {}
);

with_settings!(
    /// `[[group]]`.
    Group {
        /// `Production` or `Production/Web`.
        name: Spanned<String>,
    }
);

with_settings!(
    /// `[[server]]`.
    Server {
        /// Unique name.
        name: Spanned<String>,
        /// Host name or address.
        host: Spanned<String>,
        /// Group path.
        #[serde(default)]
        group: Option<Spanned<String>>,
        /// Tags.
        #[serde(default)]
        tags: Vec<String>,
        /// Sensors.
        #[serde(default)]
        sensor: Vec<Sensor>,
    }
);

with_settings!(
    /// `[[server.sensor]]`.
    Sensor {
        /// Name within the server.
        #[serde(default)]
        name: Option<Spanned<String>>,
        /// Port number or service name (none for a heartbeat sensor).
        #[serde(default)]
        port: Option<Spanned<Port>>,
        /// `"heartbeat"`: a job calls the sensor's URL instead of portwatch
        /// checking a port; `"dns"`: a query to a name server; `"udp"`: a
        /// UDP service's request; `"ping"`: ICMP echo requests.
        #[serde(default)]
        kind: Rare<String>,
        /// A heartbeat sensor: how often a push is expected.
        #[serde(default)]
        every: Rare<String>,
        /// A heartbeat sensor: how late a push may be.
        #[serde(default)]
        grace: Rare<String>,
        /// A DNS sensor: the name to ask about.
        #[serde(default)]
        query: Rare<String>,
        /// A DNS sensor: the record type.
        #[serde(default)]
        record: Rare<String>,
        /// A DNS sensor: the values that must come back.
        #[serde(default)]
        expect: Rare<toml::Value>,
        /// A DNS sensor: every expected value must come back.
        #[serde(default)]
        expect_all: Rare<bool>,
        /// A DNS sensor: the RCODE that must come back.
        #[serde(default)]
        rcode: Rare<String>,
        /// A DNS sensor: udp, tcp or tls.
        #[serde(default)]
        transport: Rare<String>,
        /// A DNS sensor: ask for recursion.
        #[serde(default)]
        recursion: Rare<bool>,
        /// A DNS sensor: "system" asks the system's resolver.
        #[serde(default)]
        resolver: Rare<String>,
        /// A UDP sensor (snmp): the community.
        #[serde(default)]
        community: Rare<String>,
        /// A UDP sensor (snmp): 2c or 3.
        #[serde(default)]
        snmp_version: Rare<String>,
        /// A UDP sensor (tftp): a file that must exist.
        #[serde(default)]
        file: Rare<String>,
        /// A UDP sensor: bytes to send.
        #[serde(default)]
        send: Rare<String>,
        /// A PING sensor: echo requests per check.
        #[serde(default)]
        count: Rare<i64>,
        /// A PING sensor: the loss (percent) that makes it WARNING.
        #[serde(default)]
        loss_warning: Rare<i64>,
        /// The port must be closed.
        #[serde(default)]
        expect_closed: Option<bool>,
        /// Tags.
        #[serde(default)]
        tags: Vec<String>,
    }
);

/// A port as a number or a service name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Port {
    /// `22`.
    Number(i64),
    /// `"ssh"`.
    Name(String),
}

/// `[[maintenance]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// Name for reports.
    pub name: Spanned<String>,
    /// One-off start (civil time in `timezone`).
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    /// One-off end.
    #[serde(default)]
    pub until: Option<Spanned<String>>,
    /// Recurring days: `day`, `weekday`, `weekend`, or names like `sunday`.
    #[serde(default)]
    pub every: Option<Spanned<String>>,
    /// Recurring start time, `02:00`.
    #[serde(default)]
    pub start: Option<Spanned<String>>,
    /// Recurring length.
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    /// IANA time zone (default UTC).
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// Group paths covered.
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    /// Server names covered.
    #[serde(default)]
    pub servers: Vec<Spanned<String>>,
    /// Sensor paths covered.
    #[serde(default)]
    pub sensors: Vec<Spanned<String>>,
}
