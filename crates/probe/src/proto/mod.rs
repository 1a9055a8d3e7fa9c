//! Protocol-aware checks: after the PORT check connects, speak the
//! service's protocol over the same connection and judge the answer.
//!
//! - [`session`]: bounded reads against the deadline, and the reasons a
//!   conversation ends with (reset, closed by the peer, no response,
//!   protocol mismatch).
//! - [`tls`]: implicit TLS and STARTTLS handshakes, verification and the
//!   certificate's details and expiry.
//! - [`expect`]: send/expect steps for any other service.
//! - [`text`], [`http`], [`wire`], [`simple`]: the built-in protocols, each
//!   a pure parser plus a short conversation.

pub mod expect;
pub mod http;
pub mod session;
pub mod simple;
pub mod text;
pub mod tls;
pub mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use http::HttpOptions;
use session::{Fail, Session};
pub use tls::{CertInfo, TlsReport, TlsSettings};

use super::Reason;

/// What a protocol check found out (version, banner, status …).
pub type Details = Vec<(&'static str, String)>;

/// How TLS is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    None,
    /// TLS from the first byte.
    Implicit,
    /// The protocol's STARTTLS upgrade.
    Starttls,
}

impl TlsMode {
    /// Parses `none`, `implicit` (or `tls`) and `starttls`.
    pub fn parse(text: &str) -> Option<TlsMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "off" | "no" => Some(TlsMode::None),
            "implicit" | "tls" | "on" | "yes" => Some(TlsMode::Implicit),
            "starttls" => Some(TlsMode::Starttls),
            _ => None,
        }
    }
}

/// A protocol's conversation over an established session.
pub type Conversation =
    for<'a> fn(
        &'a mut Session,
        &'a Ctx<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<Details, Fail>> + Send + 'a>>;

/// Boxes `async fn(&mut Session, &Ctx) -> Result<Details, Fail>` as a
/// [`Conversation`].
macro_rules! conversation {
    ($f:path) => {
        |session, ctx| Box::pin($f(session, ctx))
    };
}

/// One built-in protocol: everything portwatch knows of it. Adding a
/// protocol is adding one of these to [`PROTOCOLS`]; parsing its name,
/// `auto` mode's port table, STARTTLS checks, help texts, the property
/// tests and the fuzz target all read the list.
pub struct Descriptor {
    /// The name `--protocol` takes and results report (`smtp`).
    pub name: &'static str,
    /// Other names of the same protocol (`submission`).
    pub aliases: &'static [&'static str],
    /// The TLS mode its name and aliases imply (implicit for `tls`).
    pub implied_tls: TlsMode,
    /// Names of its implicit-TLS variant (`smtps`, `submissions`).
    pub tls_names: &'static [&'static str],
    /// Well-known ports `auto` mode speaks it on in plain TCP.
    pub ports: &'static [u16],
    /// Well-known ports of its implicit-TLS variant.
    pub tls_ports: &'static [u16],
    /// Whether it has a STARTTLS upgrade.
    pub starttls: bool,
    /// The conversation.
    pub speak: Conversation,
    /// Feeds untrusted bytes to each parser of its replies; the property
    /// tests and the `protocol_replies` fuzz target call it with arbitrary
    /// input, and nothing it calls may panic.
    pub parse: fn(&[u8]),
}

/// Every built-in protocol, in the order help lists them.
pub static PROTOCOLS: &[Descriptor] = &[
    Descriptor {
        name: "echo",
        ports: &[7],
        speak: conversation!(simple::echo),
        parse: |data| drop(simple::parse_echo(data, b"0123456789abcdef")),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "ftp",
        ports: &[21],
        starttls: true,
        speak: conversation!(text::ftp),
        parse: |data| drop(text::parse_reply(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "ssh",
        ports: &[22],
        speak: conversation!(text::ssh),
        parse: |data| drop(text::parse_ssh(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "telnet",
        ports: &[23],
        speak: conversation!(text::telnet),
        parse: |data| drop(text::parse_telnet(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "smtp",
        aliases: &["submission"],
        tls_names: &["smtps", "submissions"],
        ports: &[25, 587],
        tls_ports: &[465],
        starttls: true,
        speak: conversation!(text::smtp),
        parse: |data| drop(text::parse_reply(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "time",
        ports: &[37],
        speak: conversation!(simple::time),
        parse: |data| drop(simple::parse_time(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "whois",
        aliases: &["nicname"],
        ports: &[43],
        speak: conversation!(simple::whois),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "domain",
        aliases: &["dns"],
        ports: &[53],
        speak: conversation!(wire::domain),
        // The DNS sensor's answers are fuzzed with the protocol's.
        parse: |data| {
            drop(wire::parse_dns(data, 0x1234));
            crate::dns::parse_untrusted(data);
        },
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "gopher",
        ports: &[70],
        speak: conversation!(simple::gopher),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "finger",
        ports: &[79],
        speak: conversation!(simple::finger),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "http",
        tls_names: &["https"],
        ports: &[80, 8080],
        tls_ports: &[443, 8443],
        speak: conversation!(http::http),
        parse: http::parse_untrusted,
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "pop3",
        tls_names: &["pop3s"],
        ports: &[110],
        tls_ports: &[995],
        starttls: true,
        speak: conversation!(text::pop3),
        parse: |data| drop(text::parse_pop3(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "nntp",
        ports: &[119],
        speak: conversation!(text::nntp),
        parse: |data| drop(text::parse_reply(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "imap",
        tls_names: &["imaps"],
        ports: &[143],
        tls_ports: &[993],
        starttls: true,
        speak: conversation!(text::imap),
        parse: |data| {
            drop(text::parse_imap_greeting(data));
            drop(text::parse_imap_tagged(data, "a1"));
        },
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "ldap",
        tls_names: &["ldaps"],
        ports: &[389],
        tls_ports: &[636],
        starttls: true,
        speak: conversation!(wire::ldap),
        parse: |data| drop(wire::parse_ldap(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "socks",
        aliases: &["socks5"],
        ports: &[1080],
        speak: conversation!(wire::socks),
        parse: |data| drop(wire::parse_socks(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "mysql",
        aliases: &["mariadb"],
        ports: &[3306],
        speak: conversation!(wire::mysql),
        parse: |data| drop(wire::parse_mysql(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "postgresql",
        aliases: &["postgres"],
        ports: &[5432],
        starttls: true,
        speak: conversation!(wire::postgresql),
        parse: |data| drop(wire::parse_postgres(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "redis",
        ports: &[6379],
        speak: conversation!(text::redis),
        parse: |data| drop(text::parse_redis(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "memcached",
        aliases: &["memcache"],
        ports: &[11211],
        speak: conversation!(text::memcached),
        parse: |data| drop(text::parse_memcached(data)),
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "mongodb",
        aliases: &["mongo"],
        ports: &[27017],
        speak: conversation!(wire::mongodb),
        parse: |data| {
            drop(wire::parse_mongodb(data));
            drop(wire::bson_fields(data));
        },
        ..Descriptor::PLAIN
    },
    Descriptor {
        name: "xmpp",
        aliases: &["xmpp-client"],
        ports: &[5222],
        starttls: true,
        speak: conversation!(text::xmpp),
        parse: |data| drop(text::parse_xmpp_features(data)),
        ..Descriptor::PLAIN
    },
    // A TLS handshake only, for any TLS service.
    Descriptor {
        name: "tls",
        implied_tls: TlsMode::Implicit,
        speak: |_, _| Box::pin(async { Ok(Vec::new()) }),
        ..Descriptor::PLAIN
    },
];

/// Send/expect steps: not a name `--protocol` takes; chosen by giving
/// steps.
static CUSTOM: Descriptor = Descriptor {
    name: "custom",
    speak: conversation!(expect::conversation),
    ..Descriptor::PLAIN
};

impl Descriptor {
    /// The fields most protocols leave as they are.
    const PLAIN: Descriptor = Descriptor {
        name: "",
        aliases: &[],
        implied_tls: TlsMode::None,
        tls_names: &[],
        ports: &[],
        tls_ports: &[],
        starttls: false,
        speak: |_, _| Box::pin(async { Ok(Vec::new()) }),
        parse: |_| {},
    };
}

/// A built-in protocol (or send/expect steps): a handle to its
/// [`Descriptor`].
#[derive(Clone, Copy)]
pub struct Protocol(&'static Descriptor);

impl PartialEq for Protocol {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Protocol {}

impl std::hash::Hash for Protocol {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name)
    }
}

/// Names `--protocol` accepts, for help and errors: `echo, …, smtp
/// (submission), smtps (submissions), …`.
pub fn names() -> String {
    let listed = |names: &[&str]| match names {
        [] => String::new(),
        [name] => (*name).to_owned(),
        [name, aliases @ ..] => format!("{name} ({})", aliases.join(", ")),
    };
    PROTOCOLS
        .iter()
        .flat_map(|d| {
            let plain: Vec<&str> = std::iter::once(d.name)
                .chain(d.aliases.iter().copied())
                .collect();
            [listed(&plain), listed(d.tls_names)]
        })
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The protocols with a STARTTLS upgrade, for messages.
pub fn starttls_names() -> String {
    PROTOCOLS
        .iter()
        .filter(|d| d.starttls)
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Protocol {
    /// Send/expect steps.
    pub const CUSTOM: Protocol = Protocol(&CUSTOM);

    /// Parses a protocol name; names of TLS variants (https, smtps, …)
    /// come with implicit TLS.
    pub fn parse(name: &str) -> Option<(Protocol, TlsMode)> {
        let name = name.trim().to_ascii_lowercase();
        PROTOCOLS.iter().find_map(|d| {
            if d.name == name || d.aliases.contains(&name.as_str()) {
                Some((Protocol(d), d.implied_tls))
            } else if d.tls_names.contains(&name.as_str()) {
                Some((Protocol(d), TlsMode::Implicit))
            } else {
                None
            }
        })
    }

    /// The protocol `auto` mode speaks on a well-known port.
    pub fn for_port(port: u16) -> Option<(Protocol, TlsMode)> {
        PROTOCOLS.iter().find_map(|d| {
            if d.ports.contains(&port) {
                Some((Protocol(d), d.implied_tls))
            } else if d.tls_ports.contains(&port) {
                Some((Protocol(d), TlsMode::Implicit))
            } else {
                None
            }
        })
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        self.0.name
    }

    /// Whether the protocol has a STARTTLS upgrade.
    pub fn has_starttls(self) -> bool {
        self.0.starttls
    }

    /// Its descriptor.
    pub fn descriptor(self) -> &'static Descriptor {
        self.0
    }
}

/// Which check to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Connect only (the PORT check).
    #[default]
    Connect,
    /// Speak the protocol of the well-known port, if there is one.
    Auto,
}

impl Mode {
    /// Parses `connect` or `auto`.
    pub fn parse(text: &str) -> Option<Mode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "connect" => Some(Mode::Connect),
            "auto" => Some(Mode::Auto),
            _ => None,
        }
    }
}

/// What the user asked of a protocol check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoOptions {
    /// connect or auto.
    pub mode: Mode,
    /// An explicit protocol (on any port).
    pub protocol: Option<(Protocol, TlsMode)>,
    /// Overrides the TLS mode of the protocol.
    pub tls: Option<TlsMode>,
    /// Verification, SNI, CA file, expiry warning.
    pub tls_settings: TlsSettings,
    /// HTTP method, path and statuses.
    pub http: HttpOptions,
    /// Send/expect steps (protocol `custom`).
    pub steps: Vec<expect::Step>,
    /// Sent before closing (custom steps).
    pub quit: Option<Vec<u8>>,
    /// The most bytes read.
    pub max_bytes: usize,
    /// Thresholds on the phases (DNS, connect, TLS, first byte, total).
    pub phases: crate::verdict::PhaseLimits,
}

impl Default for ProtoOptions {
    fn default() -> Self {
        ProtoOptions {
            mode: Mode::Connect,
            protocol: None,
            tls: None,
            tls_settings: TlsSettings {
                verify: true,
                sni: None,
                ca_file: None,
                warn_days: 14,
            },
            http: HttpOptions::default(),
            steps: Vec::new(),
            quit: None,
            max_bytes: 64 * 1024,
            phases: crate::verdict::PhaseLimits::default(),
        }
    }
}

/// Settings that contradict each other (each front end words it with its
/// own option names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Send/expect steps and a built-in protocol: two conversations.
    StepsAndProtocol,
    /// STARTTLS asked of a protocol that has none.
    NoStarttls(Protocol),
    /// HTTP settings (content, headers, body …) with another protocol.
    NotHttp(Protocol),
    /// HTTP settings that contradict each other (the message says how).
    Http(String),
}

impl ProtoOptions {
    /// The first contradiction in these options, if any.
    pub fn conflict(&self) -> Option<Conflict> {
        if let Some(message) = self.http.conflict() {
            return Some(Conflict::Http(message));
        }
        match (self.protocol, self.tls) {
            (Some(_), _) if !self.steps.is_empty() => Some(Conflict::StepsAndProtocol),
            (Some((protocol, _)), Some(TlsMode::Starttls)) if !protocol.has_starttls() => {
                Some(Conflict::NoStarttls(protocol))
            }
            (Some((protocol, _)), _)
                if self.http.asks_for_http() && protocol.as_str() != "http" =>
            {
                Some(Conflict::NotHttp(protocol))
            }
            _ => None,
        }
    }

    /// Whether nothing beyond the plain connect check is asked for.
    pub fn connect_only(&self) -> bool {
        self.mode == Mode::Connect
            && self.protocol.is_none()
            && self.steps.is_empty()
            && self.tls.is_none()
            && !self.http.asks_for_http()
    }
}

/// The protocol and TLS mode a check will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The protocol.
    pub protocol: Protocol,
    /// Its TLS.
    pub tls: TlsMode,
}

impl ProtoOptions {
    /// What to speak on `port`; `None`: connect only.
    pub fn plan(&self, port: u16) -> Option<Plan> {
        let chosen = match (self.protocol, self.mode) {
            (Some(chosen), _) => Some(chosen),
            (None, _) if !self.steps.is_empty() => Some((Protocol::CUSTOM, TlsMode::None)),
            // HTTP settings speak HTTP on any port: HTTPS where the port's
            // protocol is HTTPS (or TLS is asked for), plain HTTP elsewhere.
            (None, _) if self.http.asks_for_http() => Some(
                Protocol::for_port(port)
                    .filter(|(p, _)| p.as_str() == "http")
                    .unwrap_or((
                        Protocol::parse("http").expect("http is built in").0,
                        TlsMode::None,
                    )),
            ),
            (None, Mode::Auto) => Protocol::for_port(port),
            (None, Mode::Connect) => self
                .tls
                .filter(|t| *t == TlsMode::Implicit)
                .map(|_| Protocol::parse("tls").expect("tls is built in")),
        };
        chosen.map(|(protocol, tls)| Plan {
            protocol,
            tls: self.tls.unwrap_or(tls),
        })
    }
}

/// What a protocol check reports besides the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtoReport {
    /// The protocol spoken (`https`, `smtp+starttls`, …).
    pub protocol: String,
    /// What it found out.
    pub details: BTreeMap<String, String>,
    /// The TLS handshake's outcome and certificate.
    pub tls: Option<TlsReport>,
    /// The TLS handshake's duration.
    #[serde(skip)]
    pub tls_time: Option<Duration>,
    /// Connection established to the first byte of the answer.
    #[serde(skip)]
    pub first_byte: Option<Duration>,
    /// Connection established to the end of the conversation.
    #[serde(skip)]
    pub total: Duration,
    /// Where an HTTP answer redirects (followed by the check).
    #[serde(skip)]
    pub redirect: Option<String>,
}

/// What the protocol functions share.
pub struct Ctx<'a> {
    /// The target's host (SNI, Host header, whois query).
    pub host: &'a str,
    /// TLS settings.
    pub tls: &'a TlsSettings,
    /// Upgrade with the protocol's STARTTLS.
    pub starttls: bool,
    /// HTTP settings.
    pub http: &'a HttpOptions,
    /// The report of a STARTTLS handshake.
    pub tls_report: Mutex<Option<TlsReport>>,
    /// Send/expect steps (protocol `custom`).
    pub steps: &'a [expect::Step],
    /// Sent before closing, after the steps.
    pub quit: Option<&'a [u8]>,
    /// Where an HTTP answer redirects, when redirects are followed.
    pub redirect: Mutex<Option<String>>,
}

fn label(plan: Plan) -> String {
    match (plan.protocol.as_str(), plan.tls) {
        ("http", TlsMode::Implicit) => "https".into(),
        ("tls", _) => "tls".into(),
        (p, TlsMode::Implicit) => format!("{p}+tls"),
        (p, TlsMode::Starttls) => format!("{p}+starttls"),
        (p, TlsMode::None) => p.into(),
    }
}

/// Speaks `plan` over an established connection until the deadline.
/// Returns the failure, if any, and the report.
pub async fn converse(
    stream: std::net::TcpStream,
    plan: Plan,
    options: &ProtoOptions,
    host: &str,
    deadline: Instant,
    timeout: Duration,
) -> (Option<Fail>, ProtoReport) {
    let started = Instant::now();
    let mut report = ProtoReport {
        protocol: label(plan),
        details: BTreeMap::new(),
        tls: None,
        tls_time: None,
        first_byte: None,
        total: Duration::ZERO,
        redirect: None,
    };
    let stream = match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(error) => {
            let fail = Fail {
                reason: Reason::LocalError,
                message: format!("cannot use the connection: {error}"),
            };
            return (Some(fail), report);
        }
    };
    let mut session = Session::new(stream, deadline, timeout, options.max_bytes.max(16));
    let ctx = Ctx {
        host,
        tls: &options.tls_settings,
        starttls: plan.tls == TlsMode::Starttls,
        http: &options.http,
        tls_report: Mutex::new(None),
        steps: &options.steps,
        quit: options.quit.as_deref(),
        redirect: Mutex::new(None),
    };
    let mut outcome = Ok(Vec::new());
    if plan.tls == TlsMode::Implicit {
        let alpn: &[&[u8]] = if plan.protocol.as_str() == "http" {
            &[b"http/1.1"]
        } else {
            &[]
        };
        match tls::handshake(&mut session, host, &options.tls_settings, alpn).await {
            Ok(tls) => *ctx.tls_report.lock().expect("not poisoned") = Some(tls),
            Err(fail) => outcome = Err(fail),
        }
    }
    if outcome.is_ok() {
        outcome = (plan.protocol.0.speak)(&mut session, &ctx).await;
    }
    if plan.protocol.as_str() == "tls" && outcome.is_ok() {
        session.quit(b"").await;
    }
    report.total = started.elapsed();
    report.first_byte = session.first_byte;
    report.tls = ctx.tls_report.into_inner().expect("not poisoned");
    report.redirect = ctx.redirect.into_inner().expect("not poisoned");
    report.tls_time = report.tls.as_ref().map(|t| t.handshake);
    let mut fail = None;
    match outcome {
        Ok(details) => {
            report.details = details
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            if let Some(tls) = &report.tls {
                fail = tls::judge_cert(
                    tls,
                    jiff::Timestamp::now().as_second(),
                    options.tls_settings.warn_days,
                );
            }
        }
        Err(failure) => fail = Some(failure),
    }
    (fail, report)
}

/// The phases, details and certificate of a protocol check, as stored
/// with the sensor's last result (JSON) and read back by the web pages, the
/// API (`protocol` of a sensor) and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckDetails {
    /// The protocol spoken (`https`, `smtp+starttls`, …).
    pub protocol: String,
    /// Resolving the host's name, when it had one to resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<f64>,
    /// The TLS handshake's duration.
    pub tls_ms: Option<f64>,
    /// Connection established to the first byte of the answer.
    pub first_byte_ms: Option<f64>,
    /// Connection established to the end of the conversation.
    pub total_ms: f64,
    /// What the check found out (version, banner, status …).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    /// The TLS handshake's outcome and certificate.
    pub tls: Option<TlsReport>,
    /// The certificate's expiry, seconds since the epoch.
    pub cert_not_after_s: Option<i64>,
}

impl From<&ProtoReport> for CheckDetails {
    fn from(report: &ProtoReport) -> CheckDetails {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        CheckDetails {
            protocol: report.protocol.clone(),
            dns_ms: None,
            tls_ms: report.tls_time.map(ms),
            first_byte_ms: report.first_byte.map(ms),
            total_ms: ms(report.total),
            details: report.details.clone(),
            tls: report.tls.clone(),
            cert_not_after_s: report
                .tls
                .as_ref()
                .and_then(|t| t.cert.as_ref())
                .map(|c| c.not_after_s),
        }
    }
}

/// A one-line summary of what a successful check found.
pub fn summary(report: &ProtoReport) -> String {
    let mut parts: Vec<String> = report
        .details
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "extensions" | "banner"))
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if let Some(tls) = &report.tls {
        let mut text = tls.version.clone();
        if let Some(cert) = &tls.cert {
            text.push_str(&format!(
                ", certificate {} valid until {}",
                cert.subject, cert.not_after
            ));
        }
        if let Some(error) = &tls.verify_error {
            text.push_str(&format!(" (not verified: {error})"));
        }
        parts.push(text);
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_by_port_and_falls_back_to_connect() {
        let auto = ProtoOptions {
            mode: Mode::Auto,
            ..ProtoOptions::default()
        };
        assert_eq!(
            auto.plan(443),
            Some(Plan {
                protocol: Protocol::parse("http").unwrap().0,
                tls: TlsMode::Implicit
            })
        );
        assert_eq!(auto.plan(22).map(|p| p.protocol.as_str()), Some("ssh"));
        assert_eq!(auto.plan(12345), None, "no known protocol: connect");
        assert_eq!(ProtoOptions::default().plan(22), None, "connect mode");
        let explicit = ProtoOptions {
            protocol: Protocol::parse("redis"),
            ..ProtoOptions::default()
        };
        assert_eq!(
            explicit.plan(7000).map(|p| p.protocol.as_str()),
            Some("redis")
        );
        let starttls = ProtoOptions {
            mode: Mode::Auto,
            tls: Some(TlsMode::Starttls),
            ..ProtoOptions::default()
        };
        assert_eq!(starttls.plan(25).map(|p| p.tls), Some(TlsMode::Starttls));
        assert_eq!(label(starttls.plan(25).unwrap()), "smtp+starttls");
    }

    /// The stored JSON of a check's details is a contract: rows written
    /// by earlier versions must read back, and a round trip keeps every
    /// field.
    #[test]
    fn stored_check_details_read_back_unchanged() {
        let stored = serde_json::json!({
            "protocol": "https",
            "tls_ms": 4.25,
            "first_byte_ms": 7.5,
            "total_ms": 9.0,
            "details": {"status": "200", "server": "nginx"},
            "tls": {
                "version": "TLSv1_3",
                "cipher": "TLS13_AES_256_GCM_SHA384",
                "cert": {
                    "subject": "CN=www.example",
                    "issuer": "CN=Example CA",
                    "sans": ["www.example", "192.0.2.1"],
                    "not_before": "2026-01-01T00:00:00Z",
                    "not_after": "2027-01-01T00:00:00Z",
                    "serial": "0a"
                },
                "verify_error": null
            },
            "cert_not_after_s": 1798761600_i64
        });
        let details: CheckDetails = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(details.details["status"], "200");
        assert_eq!(details.cert_not_after_s, Some(1_798_761_600));
        assert_eq!(
            details
                .tls
                .as_ref()
                .unwrap()
                .cert
                .as_ref()
                .unwrap()
                .sans
                .len(),
            2
        );
        assert_eq!(serde_json::to_value(&details).unwrap(), stored);
        let plain: CheckDetails = serde_json::from_str(
            r#"{"protocol":"ssh","tls_ms":null,"first_byte_ms":1.0,"total_ms":2.0,"details":{"software":"OpenSSH_9.6"},"tls":null,"cert_not_after_s":null}"#,
        )
        .unwrap();
        assert_eq!(plain.tls, None);
        assert_eq!(plain.details["software"], "OpenSSH_9.6");
    }

    #[test]
    fn every_name_in_the_help_parses_and_names_are_unique() {
        let help = names();
        assert!(
            help.starts_with(
                "echo, ftp, ssh, telnet, smtp (submission), smtps (submissions), time,"
            ),
            "{help}"
        );
        let mut seen = std::collections::HashSet::new();
        for name in help
            .split([',', '(', ')'])
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            assert!(Protocol::parse(name).is_some(), "{name}");
            assert!(seen.insert(name), "{name} names two protocols");
        }
        assert_eq!(
            starttls_names(),
            "ftp, smtp, pop3, imap, ldap, postgresql, xmpp"
        );
        assert_eq!(
            Protocol::parse("custom"),
            None,
            "steps choose custom, not a name"
        );
    }

    #[test]
    fn auto_mode_speaks_the_protocol_of_each_well_known_port() {
        let label_of =
            |port| Protocol::for_port(port).map(|(protocol, tls)| label(Plan { protocol, tls }));
        let table = [
            (7, "echo"),
            (21, "ftp"),
            (22, "ssh"),
            (23, "telnet"),
            (25, "smtp"),
            (37, "time"),
            (43, "whois"),
            (53, "domain"),
            (70, "gopher"),
            (79, "finger"),
            (80, "http"),
            (110, "pop3"),
            (119, "nntp"),
            (143, "imap"),
            (389, "ldap"),
            (443, "https"),
            (465, "smtp+tls"),
            (587, "smtp"),
            (636, "ldap+tls"),
            (993, "imap+tls"),
            (995, "pop3+tls"),
            (1080, "socks"),
            (3306, "mysql"),
            (5222, "xmpp"),
            (5432, "postgresql"),
            (6379, "redis"),
            (8080, "http"),
            (8443, "https"),
            (11211, "memcached"),
            (27017, "mongodb"),
        ];
        for (port, expected) in table {
            assert_eq!(label_of(port).as_deref(), Some(expected), "port {port}");
        }
        let listed: usize = PROTOCOLS
            .iter()
            .map(|d| d.ports.len() + d.tls_ports.len())
            .sum();
        assert_eq!(
            listed,
            table.len(),
            "a port in the table is not pinned here"
        );
        assert_eq!(label_of(12345), None);
    }
}

#[cfg(test)]
mod no_panic {
    //! Every parser of untrusted bytes, on arbitrary input (the fuzz
    //! targets under fuzz/ run the same parsers much longer).
    use proptest::prelude::*;

    use super::{PROTOCOLS, expect, session, tls, wire};

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let data = &data[..];
            let _ = session::parse_line(data);
            for protocol in PROTOCOLS {
                (protocol.parse)(data);
            }
            let _ = tls::cert_info(data);
            let half = data.len() / 2;
            let _ = expect::find(&data[..half], &data[half..]);
        }

        #[test]
        fn structured_inputs_never_panic(
            length in 0u32..70_000,
            tag in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            // Length-prefixed formats with lying lengths.
            let mut mysql = length.to_le_bytes()[..3].to_vec();
            mysql.push(0);
            mysql.push(tag);
            mysql.extend_from_slice(&rest);
            let _ = wire::parse_mysql(&mysql);
            let mut ber = vec![0x30, 0x84];
            ber.extend_from_slice(&length.to_be_bytes());
            ber.extend_from_slice(&rest);
            let _ = wire::parse_ldap(&ber);
            let mut mongo = (length as i32).to_le_bytes().to_vec();
            mongo.extend_from_slice(&[0; 8]);
            mongo.extend_from_slice(&2013i32.to_le_bytes());
            mongo.extend_from_slice(&[0, 0, 0, 0, 0]);
            mongo.extend_from_slice(&rest);
            let _ = wire::parse_mongodb(&mongo);
            let mut dns = (length as u16).to_be_bytes().to_vec();
            dns.extend_from_slice(&rest);
            let _ = wire::parse_dns(&dns, 0);
        }
    }
}
