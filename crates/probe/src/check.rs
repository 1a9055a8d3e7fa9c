//! The whole PORT check: resolve, race the connects, judge, explain.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use super::connect::{self, ConnectOptions, Failure, Outcome};
use super::happy::{self, Race};
use super::verdict::{self, Expectation, Note};
use super::{CheckResult, CloseMode, Family, Reason, Resolver, Services, Status, Target};
use crate::duration;

/// Settings of a check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The whole check, name resolution included, must finish within this.
    pub timeout: Duration,
    /// Thresholds and `expect_closed`.
    pub expect: Expectation,
    /// Which address families to use.
    pub family: Family,
    /// The local address to connect from.
    pub source: Option<IpAddr>,
    /// How to close an established connection.
    pub close: CloseMode,
    /// The protocol check to run once connected (`None`: connect only).
    pub proto: Option<std::sync::Arc<super::proto::ProtoOptions>>,
    /// A DNS query to ask the target instead of connecting.
    pub dns: Option<std::sync::Arc<super::dns::DnsOptions>>,
    /// A UDP service's request to send the target instead of connecting.
    pub udp: Option<std::sync::Arc<super::udp::UdpProtocol>>,
    /// Echo requests to send the target's host instead of connecting.
    pub ping: Option<super::ping::PingOptions>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            timeout: Duration::from_secs(10),
            expect: Expectation::default(),
            family: Family::Any,
            source: None,
            close: CloseMode::Graceful,
            proto: None,
            dns: None,
            udp: None,
            ping: None,
        }
    }
}

/// Runs PORT checks. Holds the caching resolver, so one `Checker` should be
/// shared by all checks of a process. Cheap to clone.
#[derive(Clone)]
pub struct Checker {
    resolver: Resolver,
    services: &'static Services,
    pinger: super::ping::Pinger,
}

impl Checker {
    /// A checker using the system's resolver configuration and port table.
    pub fn from_system() -> Checker {
        Checker {
            resolver: Resolver::from_system(),
            services: Services::global(),
            pinger: super::ping::Pinger::default(),
        }
    }

    /// Checks one target, following HTTP redirects when asked to.
    pub async fn check(&self, target: &Target, options: &CheckOptions) -> CheckResult {
        let mut result = self.check_once(target, options).await;
        let follow = options.proto.as_ref().is_some_and(|p| p.http.follow);
        let started = Instant::now();
        let (mut hop, mut hop_options) = (target.clone(), options.clone());
        let mut hops = 0;
        while follow
            && let Some(report) = result.protocol.as_ref()
            && let Some(location) = report.redirect.clone()
        {
            let tls = report.protocol == "https";
            let next = redirect(&hop, &hop_options, tls, &location);
            let remaining = options.timeout.saturating_sub(started.elapsed());
            let failed = match next {
                Err(message) => Some((Reason::ProtocolMismatch, message)),
                Ok(_) if hops == super::proto::http::MAX_REDIRECTS => Some((
                    Reason::ProtocolMismatch,
                    format!(
                        "more than {} redirects, the last to '{location}'",
                        super::proto::http::MAX_REDIRECTS
                    ),
                )),
                Ok(_) if remaining.is_zero() => Some((
                    Reason::NoResponse,
                    format!(
                        "redirects took the whole timeout of {}",
                        duration::format(options.timeout)
                    ),
                )),
                Ok((next, proto)) => {
                    hop = next;
                    hop_options.proto = Some(std::sync::Arc::new(proto));
                    hop_options.timeout = remaining;
                    None
                }
            };
            if let Some((reason, message)) = failed {
                result.reason = reason;
                result.status = verdict::judge(reason, None, &options.expect).0;
                result.message = format!("{}: {message}", report.protocol);
                break;
            }
            hops += 1;
            result = self.check_once(&hop, &hop_options).await;
            result.message = format!(
                "after {hops} redirect{} to {}://{}:{}{}: {}",
                if hops == 1 { "" } else { "s" },
                if hop_options
                    .proto
                    .as_ref()
                    .and_then(|p| p.protocol)
                    .map(|p| p.1)
                    == Some(super::proto::TlsMode::Implicit)
                {
                    "https"
                } else {
                    "http"
                },
                hop.host,
                hop.port,
                hop_options
                    .proto
                    .as_ref()
                    .map_or("/", |p| p.http.path.as_str()),
                result.message
            );
        }
        result.target.clone_from(&target.input);
        result
    }

    /// Pings the first of `addresses` and judges the echoes.
    async fn ping(
        &self,
        mut result: CheckResult,
        addresses: &[IpAddr],
        ping: &super::ping::PingOptions,
        options: &CheckOptions,
        deadline: Instant,
    ) -> CheckResult {
        let Some(ip) = addresses.first() else {
            result.message = "no address to ping".to_owned();
            return result;
        };
        result.address = Some(*ip);
        match self.pinger.ping(*ip, ping, deadline).await {
            Ok(echoes) => judge_ping(result, &super::ping::PingStats::of(&echoes), ping, options),
            Err(message) => {
                result.message = message;
                result
            }
        }
    }

    /// A check's result before the verdict, with the target's addresses;
    /// the finished `dns_error` result when the name does not resolve.
    async fn start(
        &self,
        target: &Target,
        options: &CheckOptions,
        deadline: Instant,
    ) -> Result<(CheckResult, super::resolve::Resolved), CheckResult> {
        let checked_at = jiff::Timestamp::now();
        let mut result = CheckResult {
            target: target.input.clone(),
            host: target.host.to_string(),
            port: target.port,
            service: self.services.by_port(target.port).map(|s| s.name.clone()),
            address: None,
            status: Status::Unknown,
            reason: Reason::LocalError,
            message: String::new(),
            response_time: None,
            dns_time: None,
            reported_by: None,
            checked_at,
            protocol: None,
        };
        // A source address decides the family: an IPv4 source cannot reach
        // an IPv6 address.
        let family = match options.source {
            Some(IpAddr::V4(_)) => Family::V4,
            Some(IpAddr::V6(_)) => Family::V6,
            None => options.family,
        };
        let resolving = self.resolver.resolve(&target.host, family);
        let resolved = match tokio::time::timeout_at(deadline, resolving).await {
            Ok(Ok(resolved)) => resolved,
            Ok(Err(error)) => return Err(dns_failure(result, error.to_string(), options)),
            Err(_) => {
                let message = format!(
                    "{} could not be resolved within {}",
                    target.host,
                    duration::format(options.timeout)
                );
                return Err(dns_failure(result, message, options));
            }
        };
        result.dns_time = Some(resolved.elapsed);
        Ok((result, resolved))
    }

    /// Checks one target, with no redirects followed.
    async fn check_once(&self, target: &Target, options: &CheckOptions) -> CheckResult {
        let deadline = Instant::now() + options.timeout;
        let (result, resolved) = match self.start(target, options, deadline).await {
            Ok(started) => started,
            Err(failed) => return failed,
        };
        if let Some(ping) = &options.ping {
            return self
                .ping(result, &resolved.addresses, ping, options, deadline)
                .await;
        }
        if options.dns.is_some() || options.udp.is_some() {
            return ask(result, &resolved.addresses, target, options, deadline).await;
        }
        let addresses = happy::interleave(&resolved.addresses);
        // A port that must stay shut is not spoken to.
        let plan = options
            .proto
            .as_ref()
            .filter(|_| !options.expect.expect_closed)
            .and_then(|p| p.plan(target.port));
        let connect_options = ConnectOptions {
            source: options.source,
            close: options.close,
            keep: plan.is_some(),
        };
        let race = happy::race(&addresses, target.port, deadline, |address| {
            connect::connect(address, connect_options)
        })
        .await;
        let result = describe(result, &race, options);
        match (
            plan,
            &options.proto,
            race.kept.as_ref().and_then(|k| k.take()),
        ) {
            (Some(plan), Some(proto), Some(stream)) => {
                let host = target.host.to_string();
                let (fail, report) =
                    super::proto::converse(stream, plan, proto, &host, deadline, options.timeout)
                        .await;
                judge_protocol(result, fail, report, options)
            }
            _ => result,
        }
    }
}

/// The target and protocol options of the next hop of a redirect from
/// `target` (over TLS when `tls`), or why it cannot be followed.
/// Credentials and a `Host` header go to the same host only.
fn redirect(
    target: &Target,
    options: &CheckOptions,
    tls: bool,
    location: &str,
) -> Result<(Target, super::proto::ProtoOptions), String> {
    use super::proto::{Protocol, TlsMode, http};
    let proto = options.proto.as_deref().cloned().unwrap_or_default();
    let host = target.host.to_string();
    let (tls, next_host, port, path) =
        http::resolve_location((tls, &host, target.port, &proto.http.path), location)?;
    let parsed = super::target::parse_bare_host(&next_host).map_err(|e| e.to_string())?;
    let mut next = proto;
    next.protocol = Some((
        Protocol::parse("http").expect("http is built in").0,
        if tls {
            TlsMode::Implicit
        } else {
            TlsMode::None
        },
    ));
    next.tls = None;
    next.http.path = path;
    if parsed != target.host {
        next.tls_settings.sni = None;
        next.http.auth = None;
        next.http
            .headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("host"));
    }
    let target = Target {
        input: format!("{next_host}:{port}"),
        host: parsed,
        port,
    };
    Ok((target, next))
}

/// A query over UDP (or DNS's transports): what came back.
struct Answer {
    /// `dns`, `dns+tls`, `ntp`, …
    protocol: String,
    /// What the answer said.
    details: super::proto::Details,
    /// Why it is not the expected answer, if it is not.
    fail: Option<(Reason, String)>,
    /// Query sent to answer (or ICMP error) received.
    elapsed: Option<std::time::Duration>,
    /// DNS over TLS: the handshake and certificate.
    tls: Option<super::proto::TlsReport>,
    /// The sender of an ICMP error.
    reported_by: Option<IpAddr>,
}

/// Asks the service at the first of `addresses` — a DNS question or a UDP
/// protocol's request — and judges its answer.
async fn ask(
    mut result: CheckResult,
    addresses: &[IpAddr],
    target: &Target,
    options: &CheckOptions,
    deadline: Instant,
) -> CheckResult {
    let Some(ip) = addresses.first() else {
        result.message = "no address to ask".to_owned();
        return result;
    };
    let mut server = SocketAddr::new(*ip, target.port);
    if options.dns.as_ref().is_some_and(|d| d.system) {
        match super::dns::system_server() {
            Ok(system) => server = system,
            Err(message) => {
                result.message = message;
                return result;
            }
        }
    }
    result.address = Some(server.ip());
    let answer = if let Some(dns) = &options.dns {
        let host = target.host.to_string();
        let exchange = super::dns::exchange(server, &host, dns, deadline, options.timeout).await;
        Answer {
            protocol: exchange.protocol.to_owned(),
            details: exchange.details,
            fail: exchange.fail.map(|f| (f.reason, f.message)),
            elapsed: exchange.elapsed,
            tls: exchange.tls,
            reported_by: None,
        }
    } else if let Some(udp) = &options.udp {
        let exchange = super::udp::exchange(server, udp, deadline, options.timeout).await;
        Answer {
            protocol: udp.name().to_owned(),
            details: exchange.details,
            fail: exchange.fail,
            elapsed: exchange.elapsed,
            tls: None,
            reported_by: exchange.reported_by,
        }
    } else {
        result.message = "nothing to ask".to_owned();
        return result;
    };
    judge_answer(result, answer, options)
}

/// The verdict on an answer: UP `answered` (thresholds apply to its
/// time), or the failure's reason and message.
fn judge_answer(mut result: CheckResult, answer: Answer, options: &CheckOptions) -> CheckResult {
    let report = super::proto::ProtoReport {
        protocol: answer.protocol,
        details: answer
            .details
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        tls_time: answer.tls.as_ref().map(|t| t.handshake),
        tls: answer.tls,
        first_byte: None,
        total: answer.elapsed.unwrap_or_default(),
        redirect: None,
    };
    match answer.fail {
        None => {
            result.reason = Reason::Answered;
            result.response_time = answer.elapsed;
            let (status, note) = verdict::judge(Reason::Answered, answer.elapsed, &options.expect);
            result.status = status;
            let limit = match note {
                Some(Note::AboveWarning(limit)) => {
                    format!(
                        ", above the warning threshold of {}",
                        duration::format(limit)
                    )
                }
                Some(Note::AboveCritical(limit)) => {
                    format!(
                        ", above the critical threshold of {}",
                        duration::format(limit)
                    )
                }
                _ => String::new(),
            };
            result.message = format!(
                "{} answered in {:.3} ms{limit}: {}",
                report.protocol,
                report.total.as_secs_f64() * 1e3,
                super::proto::summary(&report)
            );
        }
        Some((reason, message)) => {
            if matches!(reason, Reason::UnexpectedAnswer | Reason::ProtocolMismatch) {
                result.response_time = answer.elapsed;
            }
            result.reason = reason;
            result.reported_by = answer.reported_by;
            result.status = verdict::judge(reason, None, &options.expect).0;
            result.message = format!("{}: {message}", report.protocol);
        }
    }
    result.protocol = Some(report);
    result
}

/// The verdict on a host's echoes: UP `reply` (WARNING on loss at or
/// above `loss_warning`, thresholds on the average round trip), DOWN with
/// the ICMP error and its sender, or DOWN `timeout` when nothing came back.
fn judge_ping(
    mut result: CheckResult,
    stats: &super::ping::PingStats,
    ping: &super::ping::PingOptions,
    options: &CheckOptions,
) -> CheckResult {
    let ms = |d: std::time::Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
    let address = result.address.map(|a| a.to_string()).unwrap_or_default();
    let loss = stats.loss_percent();
    let mut details: super::proto::Details = vec![
        ("sent", stats.sent.to_string()),
        ("received", stats.received.to_string()),
        ("loss_percent", format!("{loss:.0}")),
    ];
    let times = stats.times();
    if let Some((min, avg, max, jitter)) = times {
        details.extend([
            ("rtt_min_ms", ms(min)),
            ("rtt_avg_ms", ms(avg)),
            ("rtt_max_ms", ms(max)),
            ("jitter_ms", ms(jitter)),
        ]);
    }
    let total = times.map(|t| t.1).unwrap_or_default();
    result.protocol = Some(super::proto::ProtoReport {
        protocol: "ping".into(),
        details: details
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        tls: None,
        tls_time: None,
        first_byte: None,
        total,
        redirect: None,
    });
    match (times, stats.error) {
        (Some((min, avg, max, jitter)), _) => {
            result.reason = Reason::Reply;
            result.response_time = Some(avg);
            let (mut status, note) = verdict::judge(Reason::Reply, Some(avg), &options.expect);
            let mut message = format!(
                "{} of {} replies from {address}, rtt min/avg/max/jitter {}/{}/{}/{} ms",
                stats.received,
                stats.sent,
                ms(min),
                ms(avg),
                ms(max),
                ms(jitter)
            );
            if loss > 0.0 {
                message += &format!(", {loss:.0}% lost");
            }
            match note {
                Some(Note::AboveWarning(limit)) => {
                    message += &format!(
                        ", above the warning threshold of {}",
                        duration::format(limit)
                    );
                }
                Some(Note::AboveCritical(limit)) => {
                    message += &format!(
                        ", above the critical threshold of {}",
                        duration::format(limit)
                    );
                }
                _ => {}
            }
            if status == Status::Up && loss >= f64::from(ping.loss_warning) && loss > 0.0 {
                status = Status::Warning;
                message += &format!(" (warning at {}%)", ping.loss_warning);
            }
            result.status = status;
            result.message = message;
        }
        (None, Some((reason, sender))) => {
            result.reason = reason;
            result.reported_by = sender;
            result.status = verdict::judge(reason, None, &options.expect).0;
            let what = match reason {
                Reason::NetworkUnreachable => format!("network of {address} is unreachable"),
                Reason::AdminProhibited => {
                    format!("echo requests to {address} are rejected by a firewall")
                }
                Reason::Refused => format!("{address} refused the echo requests"),
                _ => format!("host {address} is unreachable"),
            };
            result.message = match sender {
                Some(sender) => format!("{what}, reported by {sender}"),
                None => what,
            };
        }
        (None, None) => {
            result.reason = Reason::Timeout;
            result.status = verdict::judge(Reason::Timeout, None, &options.expect).0;
            result.message = format!(
                "no reply from {address} to {} echo request{} within {} (100% lost)",
                stats.sent,
                if stats.sent == 1 { "" } else { "s" },
                duration::format(options.timeout)
            );
        }
    }
    result
}

/// The verdict of a connected check after its protocol conversation.
fn judge_protocol(
    mut result: CheckResult,
    fail: Option<super::proto::session::Fail>,
    report: super::proto::ProtoReport,
    options: &CheckOptions,
) -> CheckResult {
    let protocol = report.protocol.clone();
    match fail {
        None => {
            // Thresholds still judge the connect time, and the phases.
            let (status, _) =
                verdict::judge(Reason::Connected, result.response_time, &options.expect);
            result.status = status;
            let summary = super::proto::summary(&report);
            result.message = format!(
                "{protocol} answered in {:.3} ms{}{} ({})",
                report.total.as_secs_f64() * 1e3,
                if summary.is_empty() { "" } else { ": " },
                summary,
                result.message
            );
            let limits = options.proto.as_ref().map(|p| p.phases).unwrap_or_default();
            let times = [
                result.dns_time.filter(|d| !d.is_zero()),
                result.response_time,
                report.tls_time,
                report.first_byte,
                Some(report.total),
            ];
            if let Some((slow, note)) = limits.judge(times)
                && slow > result.status
            {
                result.status = slow;
                result.message = format!("{note}: {}", result.message);
            }
        }
        Some(fail) => {
            result.reason = fail.reason;
            result.status = verdict::judge(fail.reason, result.response_time, &options.expect).0;
            result.message = format!("{protocol}: {}", fail.message);
        }
    }
    result.protocol = Some(report);
    result
}

fn dns_failure(mut result: CheckResult, message: String, options: &CheckOptions) -> CheckResult {
    result.reason = Reason::DnsError;
    result.status = verdict::judge(Reason::DnsError, None, &options.expect).0;
    result.message = message;
    result
}

/// Fills in the verdict and message from a finished race.
fn describe(mut result: CheckResult, race: &Race, options: &CheckOptions) -> CheckResult {
    let tried = |except: SocketAddr| -> String {
        let others: Vec<String> = race
            .failures
            .iter()
            .filter(|(address, _)| *address != except)
            .map(|(address, failure)| format!("{} {}", address.ip(), failure.reason))
            .collect();
        if others.is_empty() {
            String::new()
        } else {
            format!(" (also tried: {})", others.join(", "))
        }
    };
    let (address, message) = match (race.winner, race.main_failure()) {
        (Some((address, elapsed)), _) => {
            result.reason = Reason::Connected;
            result.response_time = Some(elapsed);
            let message = format!(
                "connected to {} port {} in {:.3} ms{}",
                address.ip(),
                address.port(),
                elapsed.as_secs_f64() * 1e3,
                tried(address)
            );
            (address, message)
        }
        (None, Some((address, failure))) => {
            result.reason = failure.reason;
            result.response_time = failure.elapsed;
            result.reported_by = failure.reported_by;
            let message = failure_message(*address, failure, options.timeout) + &tried(*address);
            (*address, message)
        }
        (None, None) => {
            // The resolver never returns an empty list; keep the contract
            // anyway rather than panic.
            result.reason = Reason::LocalError;
            result.status = Status::Unknown;
            result.message = "no address to connect to".to_owned();
            return result;
        }
    };
    result.address = Some(address.ip());
    let (status, note) = verdict::judge(result.reason, result.response_time, &options.expect);
    result.status = status;
    result.message = match note {
        None => message,
        Some(Note::AboveWarning(limit)) => {
            format!(
                "{message}, above the warning threshold of {}",
                duration::format(limit)
            )
        }
        Some(Note::AboveCritical(limit)) => {
            format!(
                "{message}, above the critical threshold of {}",
                duration::format(limit)
            )
        }
        Some(Note::OpenButExpectedClosed) => format!("port is open but expected closed: {message}"),
        Some(Note::ClosedAsExpected) => format!("port is closed as expected: {message}"),
    };
    result
}

/// A one-line explanation of a failed attempt.
pub fn failure_message(address: SocketAddr, failure: &Failure, timeout: Duration) -> String {
    let (ip, port) = (address.ip(), address.port());
    let mut message = match failure.reason {
        Reason::Refused => format!("connection refused by {ip} port {port}"),
        Reason::Timeout => format!(
            "no answer from {ip} port {port} within {} (packets dropped, or the host is down)",
            duration::format(timeout)
        ),
        Reason::HostUnreachable => format!("host {ip} is unreachable"),
        Reason::NetworkUnreachable => format!("network of {ip} is unreachable"),
        Reason::AdminProhibited => format!("connection to {ip} port {port} rejected by a firewall"),
        Reason::Reset => format!("{ip} port {port} accepted the connection and reset it at once"),
        Reason::DnsError
        | Reason::Connected
        | Reason::ClosedByPeer
        | Reason::NoResponse
        | Reason::ProtocolMismatch
        | Reason::TlsError
        | Reason::CertExpiring
        | Reason::CertExpired
        | Reason::Partial
        | Reason::TooFewLocations
        | Reason::MissedHeartbeat
        | Reason::ReportedDown
        | Reason::ContentMismatch
        | Reason::UnexpectedAnswer
        | Reason::Answered
        | Reason::Reply => format!("{ip} port {port}"),
        Reason::LocalError => format!("could not check {ip} port {port}"),
    };
    if failure.reason != Reason::Timeout && !failure.detail.is_empty() {
        message = format!("{message}: {}", failure.detail);
    }
    if let Some(sender) = failure.reported_by {
        message = format!("{message}, reported by {sender}");
    }
    message
}

/// Checks one address with no name resolution and no racing, as the port
/// scanner does. Returns the outcome of the attempt within `timeout`.
pub async fn check_address(
    address: SocketAddr,
    timeout: Duration,
    options: ConnectOptions,
) -> Outcome {
    match tokio::time::timeout(timeout, connect::connect(address, options)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failed(Failure {
            reason: Reason::Timeout,
            detail: String::new(),
            reported_by: None,
            elapsed: None,
        }),
    }
}
