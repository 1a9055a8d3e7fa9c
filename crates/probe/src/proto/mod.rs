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
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

pub use http::HttpOptions;
use session::{Fail, Session};
pub use tls::{CertInfo, TlsReport, TlsSettings};

use super::Reason;

/// What a protocol check found out (version, banner, status …).
pub type Details = Vec<(&'static str, String)>;

/// Every built-in protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// echo (7).
    Echo,
    /// FTP (21).
    Ftp,
    /// SSH (22).
    Ssh,
    /// telnet (23).
    Telnet,
    /// SMTP (25, 587; 465 over TLS).
    Smtp,
    /// time (37).
    Time,
    /// whois (43).
    Whois,
    /// DNS over TCP (53).
    Domain,
    /// gopher (70).
    Gopher,
    /// finger (79).
    Finger,
    /// HTTP (80, 8080; over TLS: 443, 8443).
    Http,
    /// POP3 (110; 995 over TLS).
    Pop3,
    /// NNTP (119).
    Nntp,
    /// IMAP (143; 993 over TLS).
    Imap,
    /// LDAP (389; 636 over TLS).
    Ldap,
    /// SOCKS5 (1080).
    Socks,
    /// MySQL and MariaDB (3306).
    Mysql,
    /// PostgreSQL (5432).
    Postgresql,
    /// Redis (6379).
    Redis,
    /// memcached (11211).
    Memcached,
    /// MongoDB (27017).
    Mongodb,
    /// XMPP client connections (5222).
    Xmpp,
    /// A TLS handshake only (any TLS service).
    Tls,
    /// Send/expect steps.
    Custom,
}

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

/// Names `--protocol` accepts, for help and errors.
pub const NAMES: &str = "echo, ftp, ssh, telnet, smtp, smtps, submission, time, whois, domain (dns), gopher, finger, http, https, pop3, pop3s, nntp, imap, imaps, ldap, ldaps, socks, mysql (mariadb), postgresql (postgres), redis, memcached, mongodb, xmpp, tls";

impl Protocol {
    /// Parses a protocol name; names of TLS variants (https, smtps, …)
    /// come with implicit TLS.
    pub fn parse(name: &str) -> Option<(Protocol, TlsMode)> {
        use Protocol::*;
        let plain = |p| Some((p, TlsMode::None));
        let tls = |p| Some((p, TlsMode::Implicit));
        match name.trim().to_ascii_lowercase().as_str() {
            "echo" => plain(Echo),
            "ftp" => plain(Ftp),
            "ssh" => plain(Ssh),
            "telnet" => plain(Telnet),
            "smtp" | "submission" => plain(Smtp),
            "smtps" | "submissions" => tls(Smtp),
            "time" => plain(Time),
            "whois" | "nicname" => plain(Whois),
            "domain" | "dns" => plain(Domain),
            "gopher" => plain(Gopher),
            "finger" => plain(Finger),
            "http" => plain(Http),
            "https" => tls(Http),
            "pop3" => plain(Pop3),
            "pop3s" => tls(Pop3),
            "nntp" => plain(Nntp),
            "imap" => plain(Imap),
            "imaps" => tls(Imap),
            "ldap" => plain(Ldap),
            "ldaps" => tls(Ldap),
            "socks" | "socks5" => plain(Socks),
            "mysql" | "mariadb" => plain(Mysql),
            "postgresql" | "postgres" => plain(Postgresql),
            "redis" => plain(Redis),
            "memcached" | "memcache" => plain(Memcached),
            "mongodb" | "mongo" => plain(Mongodb),
            "xmpp" | "xmpp-client" => plain(Xmpp),
            "tls" => tls(Tls),
            _ => None,
        }
    }

    /// The protocol `auto` mode speaks on a well-known port.
    pub fn for_port(port: u16) -> Option<(Protocol, TlsMode)> {
        let name = match port {
            7 => "echo",
            21 => "ftp",
            22 => "ssh",
            23 => "telnet",
            25 | 587 => "smtp",
            465 => "smtps",
            37 => "time",
            43 => "whois",
            53 => "domain",
            70 => "gopher",
            79 => "finger",
            80 | 8080 => "http",
            443 | 8443 => "https",
            110 => "pop3",
            995 => "pop3s",
            119 => "nntp",
            143 => "imap",
            993 => "imaps",
            389 => "ldap",
            636 => "ldaps",
            1080 => "socks",
            3306 => "mysql",
            5432 => "postgresql",
            6379 => "redis",
            11211 => "memcached",
            27017 => "mongodb",
            5222 => "xmpp",
            _ => return None,
        };
        Protocol::parse(name)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        use Protocol::*;
        match self {
            Echo => "echo",
            Ftp => "ftp",
            Ssh => "ssh",
            Telnet => "telnet",
            Smtp => "smtp",
            Time => "time",
            Whois => "whois",
            Domain => "domain",
            Gopher => "gopher",
            Finger => "finger",
            Http => "http",
            Pop3 => "pop3",
            Nntp => "nntp",
            Imap => "imap",
            Ldap => "ldap",
            Socks => "socks",
            Mysql => "mysql",
            Postgresql => "postgresql",
            Redis => "redis",
            Memcached => "memcached",
            Mongodb => "mongodb",
            Xmpp => "xmpp",
            Tls => "tls",
            Custom => "custom",
        }
    }

    /// Whether the protocol has a STARTTLS upgrade.
    pub fn has_starttls(self) -> bool {
        use Protocol::*;
        matches!(self, Smtp | Imap | Pop3 | Ftp | Ldap | Xmpp | Postgresql)
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
        }
    }
}

/// Settings that contradict each other (each front end words it with its
/// own option names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Send/expect steps and a built-in protocol: two conversations.
    StepsAndProtocol,
    /// STARTTLS asked of a protocol that has none.
    NoStarttls(Protocol),
}

/// The protocols with a STARTTLS upgrade, for messages.
pub const STARTTLS_NAMES: &str = "smtp, imap, pop3, ftp, ldap, xmpp, postgresql";

impl ProtoOptions {
    /// The first contradiction in these options, if any.
    pub fn conflict(&self) -> Option<Conflict> {
        match (self.protocol, self.tls) {
            (Some(_), _) if !self.steps.is_empty() => Some(Conflict::StepsAndProtocol),
            (Some((protocol, _)), Some(TlsMode::Starttls)) if !protocol.has_starttls() => {
                Some(Conflict::NoStarttls(protocol))
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
            (None, _) if !self.steps.is_empty() => Some((Protocol::Custom, TlsMode::None)),
            (None, Mode::Auto) => Protocol::for_port(port),
            (None, Mode::Connect) => self
                .tls
                .filter(|t| *t == TlsMode::Implicit)
                .map(|_| (Protocol::Tls, TlsMode::Implicit)),
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
}

fn label(plan: Plan) -> String {
    match (plan.protocol, plan.tls) {
        (Protocol::Http, TlsMode::Implicit) => "https".into(),
        (Protocol::Tls, _) => "tls".into(),
        (p, TlsMode::Implicit) => format!("{}+tls", p.as_str()),
        (p, TlsMode::Starttls) => format!("{}+starttls", p.as_str()),
        (p, TlsMode::None) => p.as_str().into(),
    }
}

async fn speak(
    session: &mut Session,
    plan: Plan,
    ctx: &Ctx<'_>,
    options: &ProtoOptions,
) -> Result<Details, Fail> {
    use Protocol::*;
    match plan.protocol {
        Echo => simple::echo(session, ctx).await,
        Ftp => text::ftp(session, ctx).await,
        Ssh => text::ssh(session, ctx).await,
        Telnet => text::telnet(session, ctx).await,
        Smtp => text::smtp(session, ctx).await,
        Time => simple::time(session, ctx).await,
        Whois => simple::whois(session, ctx).await,
        Domain => wire::domain(session, ctx).await,
        Gopher => simple::gopher(session, ctx).await,
        Finger => simple::finger(session, ctx).await,
        Http => http::http(session, ctx).await,
        Pop3 => text::pop3(session, ctx).await,
        Nntp => text::nntp(session, ctx).await,
        Imap => text::imap(session, ctx).await,
        Ldap => wire::ldap(session, ctx).await,
        Socks => wire::socks(session, ctx).await,
        Mysql => wire::mysql(session, ctx).await,
        Postgresql => wire::postgresql(session, ctx).await,
        Redis => text::redis(session, ctx).await,
        Memcached => text::memcached(session, ctx).await,
        Mongodb => wire::mongodb(session, ctx).await,
        Xmpp => text::xmpp(session, ctx).await,
        Tls => Ok(Vec::new()),
        Custom => {
            let matched = expect::run(session, &options.steps).await?;
            if let Some(quit) = &options.quit {
                session.quit(quit).await;
            }
            Ok(if matched.is_empty() {
                Vec::new()
            } else {
                vec![("matched", matched)]
            })
        }
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
    };
    let mut outcome = Ok(Vec::new());
    if plan.tls == TlsMode::Implicit {
        let alpn: &[&[u8]] = if plan.protocol == Protocol::Http {
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
        outcome = speak(&mut session, plan, &ctx, options).await;
    }
    if plan.protocol == Protocol::Tls && outcome.is_ok() {
        session.quit(b"").await;
    }
    report.total = started.elapsed();
    report.first_byte = session.first_byte;
    report.tls = ctx.tls_report.into_inner().expect("not poisoned");
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

/// The phases, details and certificate of a protocol check as stored with
/// the sensor's last result (JSON), for the web interface and metrics.
pub fn stored_details(report: &ProtoReport) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    serde_json::json!({
        "protocol": report.protocol,
        "tls_ms": report.tls_time.map(ms),
        "first_byte_ms": report.first_byte.map(ms),
        "total_ms": ms(report.total),
        "details": report.details,
        "tls": report.tls,
        "cert_not_after_s": report.tls.as_ref().and_then(|t| t.cert.as_ref()).map(|c| c.not_after_s),
    })
    .to_string()
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
                protocol: Protocol::Http,
                tls: TlsMode::Implicit
            })
        );
        assert_eq!(auto.plan(22).map(|p| p.protocol), Some(Protocol::Ssh));
        assert_eq!(auto.plan(12345), None, "no known protocol: connect");
        assert_eq!(ProtoOptions::default().plan(22), None, "connect mode");
        let explicit = ProtoOptions {
            protocol: Protocol::parse("redis"),
            ..ProtoOptions::default()
        };
        assert_eq!(
            explicit.plan(7000).map(|p| p.protocol),
            Some(Protocol::Redis)
        );
        let starttls = ProtoOptions {
            mode: Mode::Auto,
            tls: Some(TlsMode::Starttls),
            ..ProtoOptions::default()
        };
        assert_eq!(starttls.plan(25).map(|p| p.tls), Some(TlsMode::Starttls));
        assert_eq!(label(starttls.plan(25).unwrap()), "smtp+starttls");
    }

    #[test]
    fn every_name_in_the_help_parses() {
        for name in NAMES.split(", ") {
            let name = name.split(' ').next().unwrap();
            assert!(Protocol::parse(name).is_some(), "{name}");
        }
        for port in [
            7, 21, 22, 23, 25, 37, 43, 53, 70, 79, 80, 110, 119, 143, 389, 443, 465, 587, 636, 993,
            995, 1080, 3306, 5222, 5432, 6379, 8080, 8443, 11211, 27017,
        ] {
            assert!(Protocol::for_port(port).is_some(), "{port}");
        }
    }
}

#[cfg(test)]
mod no_panic {
    //! Every parser of untrusted bytes, on arbitrary input (the fuzz
    //! targets under fuzz/ run the same parsers much longer).
    use proptest::prelude::*;

    use super::{expect, http, session, simple, text, tls, wire};

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let data = &data[..];
            let _ = session::parse_line(data);
            let _ = text::parse_reply(data);
            let _ = text::parse_pop3(data);
            let _ = text::parse_imap_greeting(data);
            let _ = text::parse_imap_tagged(data, "a1");
            let _ = text::parse_ssh(data);
            let _ = text::parse_telnet(data);
            let _ = text::parse_redis(data);
            let _ = text::parse_memcached(data);
            let _ = text::parse_xmpp_features(data);
            let _ = http::parse_head(data);
            let _ = wire::parse_dns(data, 1);
            let _ = wire::parse_ldap(data);
            let _ = wire::parse_socks(data);
            let _ = wire::parse_mysql(data);
            let _ = wire::parse_postgres(data);
            let _ = wire::parse_mongodb(data);
            let _ = wire::bson_fields(data);
            let _ = simple::parse_time(data);
            let _ = simple::parse_echo(data, b"0123456789abcdef");
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
