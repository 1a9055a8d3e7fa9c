//! The PORT sensor: one check of one target, with no storage.
//!
//! A check resolves the host, races a TCP connect to each of its addresses
//! (Happy Eyeballs), closes the winning connection at once, and judges the
//! outcome. Outcomes are data: a refused port is a [`CheckResult`] with
//! reason [`Reason::Refused`], not an error.

pub mod check;
pub mod connect;
pub mod dns;
pub mod duration;
pub mod happy;
pub mod ping;
pub mod portspec;
pub mod proto;
pub mod resolve;
pub mod scan;
pub mod services;
pub mod target;
pub mod text;
pub mod udp;
pub mod verdict;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

pub use check::{CheckOptions, Checker};
pub use resolve::Resolver;
pub use services::Services;
pub use target::{Host, Target, TargetError};

/// The outcome of a check, in Nagios order of severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The service answered as expected.
    Up,
    /// The service answered, but slower than the warning threshold.
    Warning,
    /// The service did not answer as expected.
    Down,
    /// The monitor itself could not perform the check.
    Unknown,
}

impl Status {
    /// The lowercase name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Warning => "warning",
            Status::Down => "down",
            Status::Unknown => "unknown",
        }
    }

    /// The Nagios plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn nagios_code(self) -> u8 {
        match self {
            Status::Up => 0,
            Status::Warning => 1,
            Status::Down => 2,
            Status::Unknown => 3,
        }
    }

    /// The Nagios state word: OK, WARNING, CRITICAL or UNKNOWN.
    pub fn nagios_word(self) -> &'static str {
        match self {
            Status::Up => "OK",
            Status::Warning => "WARNING",
            Status::Down => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check came out as it did. A stable API: the names are part of the
/// JSON contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The three-way handshake completed.
    Connected,
    /// The host answered, but nothing listens on that port (RST, or ICMP
    /// port unreachable).
    Refused,
    /// No answer before the timeout: a firewall dropped the packets, or the
    /// host is down behind a router.
    Timeout,
    /// ICMP host unreachable, or ARP/ND found no host on the link.
    HostUnreachable,
    /// ICMP network unreachable, or no route to the network.
    NetworkUnreachable,
    /// A firewall actively rejected the connection (ICMP administratively
    /// prohibited).
    AdminProhibited,
    /// The name did not resolve.
    DnsError,
    /// The check could not be made here (out of file descriptors, a bad
    /// source address, …). Always status `unknown`.
    LocalError,
    /// Protocol checks: the connection was reset right after it was
    /// accepted.
    Reset,
    /// Protocol checks: the server closed the connection before answering
    /// in full.
    ClosedByPeer,
    /// Protocol checks: nothing (or not enough) arrived before the timeout.
    NoResponse,
    /// Protocol checks: the answer is not what the protocol (or `expect`)
    /// wants; the message says what was expected and what arrived.
    ProtocolMismatch,
    /// The TLS handshake failed, or the certificate is not trusted for the
    /// name.
    TlsError,
    /// The certificate expires within the warning period (status WARNING).
    CertExpiring,
    /// The certificate has expired.
    CertExpired,
    /// A sensor checked from several locations: down at some of them, but
    /// fewer than its `down_when` (status WARNING); the message names them.
    Partial,
    /// A sensor checked from several locations: fewer than its `down_when`
    /// have fresh results (their nodes are dead or cut off), so no verdict
    /// is possible (status UNKNOWN, never DOWN).
    TooFewLocations,
    /// A heartbeat sensor: no push arrived within its period and grace.
    MissedHeartbeat,
    /// A heartbeat sensor: the last push said the job failed
    /// (`?status=down`); its message is the push's.
    ReportedDown,
    /// An HTTP check: the body lacks the expected text, holds a forbidden
    /// one, misses the regular expression or the JSON value; the message
    /// shows what was found (escaped, truncated).
    ContentMismatch,
    /// A DNS sensor: the server answered, but not with the expected
    /// records or RCODE; the message shows what came back.
    UnexpectedAnswer,
    /// A DNS (or UDP) sensor: the server answered as expected (status UP,
    /// or WARNING/DOWN above the response-time thresholds).
    Answered,
    /// A PING sensor: the host replied to echo requests (status UP, or
    /// WARNING on loss or round trips above the thresholds).
    Reply,
}

impl Reason {
    /// Every reason, in declaration order.
    /// Stored results encode a reason by its index here: new reasons go at
    /// the end.
    pub const ALL: [Reason; 23] = [
        Reason::Connected,
        Reason::Refused,
        Reason::Timeout,
        Reason::HostUnreachable,
        Reason::NetworkUnreachable,
        Reason::AdminProhibited,
        Reason::DnsError,
        Reason::LocalError,
        Reason::Reset,
        Reason::ClosedByPeer,
        Reason::NoResponse,
        Reason::ProtocolMismatch,
        Reason::TlsError,
        Reason::CertExpiring,
        Reason::CertExpired,
        Reason::Partial,
        Reason::TooFewLocations,
        Reason::MissedHeartbeat,
        Reason::ReportedDown,
        Reason::ContentMismatch,
        Reason::UnexpectedAnswer,
        Reason::Answered,
        Reason::Reply,
    ];

    /// The reason named `name` (as [`Reason::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether the service answered as it should: a connection made, or a
    /// query answered (thresholds may still make it WARNING or DOWN).
    pub fn is_answer(self) -> bool {
        matches!(self, Reason::Connected | Reason::Answered | Reason::Reply)
    }

    /// The snake_case name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connected => "connected",
            Reason::Refused => "refused",
            Reason::Timeout => "timeout",
            Reason::HostUnreachable => "host_unreachable",
            Reason::NetworkUnreachable => "network_unreachable",
            Reason::AdminProhibited => "admin_prohibited",
            Reason::DnsError => "dns_error",
            Reason::LocalError => "local_error",
            Reason::Reset => "reset",
            Reason::ClosedByPeer => "closed_by_peer",
            Reason::NoResponse => "no_response",
            Reason::ProtocolMismatch => "protocol_mismatch",
            Reason::TlsError => "tls_error",
            Reason::CertExpiring => "cert_expiring",
            Reason::CertExpired => "cert_expired",
            Reason::Partial => "partial",
            Reason::TooFewLocations => "too_few_locations",
            Reason::MissedHeartbeat => "missed_heartbeat",
            Reason::ReportedDown => "reported_down",
            Reason::ContentMismatch => "content_mismatch",
            Reason::UnexpectedAnswer => "unexpected_answer",
            Reason::Answered => "answered",
            Reason::Reply => "reply",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which address families a check may use (`-4`, `-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// IPv6 and IPv4.
    #[default]
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    /// Whether `ip` belongs to this family.
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }

    /// A name for messages.
    pub fn label(self) -> &'static str {
        match self {
            Family::Any => "IP",
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The family of an address as the JSON field `family` spells it.
pub fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "ipv4" } else { "ipv6" }
}

/// How a connection is closed once established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloseMode {
    /// A normal FIN close.
    #[default]
    Graceful,
    /// Close with RST (SO_LINGER 0), which leaves no TIME_WAIT entry.
    Abort,
}

/// The outcome of one check of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// The target as the user gave it.
    pub target: String,
    /// The host part of the target (punycode for internationalised names).
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// The well-known service name of the port, if any.
    pub service: Option<String>,
    /// The address that decided the result, if any was tried.
    pub address: Option<IpAddr>,
    /// The verdict.
    pub status: Status,
    /// Why.
    pub reason: Reason,
    /// A human-readable explanation.
    pub message: String,
    /// The TCP connect time (SYN sent to handshake done, or to the answer
    /// that refused it), on a monotonic clock.
    pub response_time: Option<Duration>,
    /// The time spent resolving the name.
    pub dns_time: Option<Duration>,
    /// For ICMP errors: the router or host that sent the ICMP message.
    pub reported_by: Option<IpAddr>,
    /// When the check started.
    pub checked_at: jiff::Timestamp,
    /// What the protocol check found, when one ran.
    pub protocol: Option<proto::ProtoReport>,
}
