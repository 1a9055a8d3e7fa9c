//! The port range sensor: connect to many ports of one address and report
//! each as open, closed, filtered, unreachable or prohibited.
//!
//! A fixed pool of workers pulls ports from a shared counter, so the number
//! of sockets in flight never exceeds `concurrency`. Open ports are closed
//! with RST so that a large scan leaves no TIME_WAIT entries behind.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::check::check_address;
use super::connect::{ConnectOptions, Outcome};
use super::{CloseMode, Reason};

/// What a port scan found on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortState {
    /// The handshake completed.
    Open,
    /// The host answered with RST (or ICMP port unreachable).
    Closed,
    /// No answer within the timeout.
    Filtered,
    /// ICMP host or network unreachable.
    Unreachable,
    /// A firewall rejected the connection (ICMP administratively prohibited).
    Prohibited,
    /// The scanner could not check this port (e.g. out of file descriptors).
    Error,
}

impl PortState {
    /// The state a connect outcome's reason means.
    pub fn from_reason(reason: Reason) -> PortState {
        match reason {
            Reason::Connected => PortState::Open,
            Reason::Refused => PortState::Closed,
            Reason::Timeout => PortState::Filtered,
            Reason::HostUnreachable | Reason::NetworkUnreachable => PortState::Unreachable,
            Reason::AdminProhibited => PortState::Prohibited,
            Reason::DnsError | Reason::LocalError => PortState::Error,
            // A scan only connects; protocol reasons never reach it.
            Reason::Reset
            | Reason::ClosedByPeer
            | Reason::NoResponse
            | Reason::ProtocolMismatch
            | Reason::TlsError
            | Reason::CertExpiring
            | Reason::CertExpired => PortState::Open,
            // Verdicts from several locations never reach a scan either.
            Reason::Partial
            | Reason::TooFewLocations
            | Reason::MissedHeartbeat
            | Reason::ReportedDown
            | Reason::ContentMismatch
            | Reason::UnexpectedAnswer
            | Reason::Answered
            | Reason::Reply => PortState::Error,
        }
    }

    /// The lowercase name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
            PortState::Unreachable => "unreachable",
            PortState::Prohibited => "prohibited",
            PortState::Error => "error",
        }
    }
}

/// The result for one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortReport {
    /// The port.
    pub port: u16,
    /// Its state.
    pub state: PortState,
    /// The exact reason behind the state.
    pub reason: Reason,
    /// Connect (or refusal) time, when an answer came.
    pub response_time: Option<Duration>,
    /// The sender of an ICMP error, if any.
    pub reported_by: Option<IpAddr>,
    /// The kernel's words for a failure, empty when open or filtered.
    pub detail: String,
}

/// How hard a scan pushes.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// How long to wait for each port before calling it filtered.
    pub timeout: Duration,
    /// The most connection attempts in flight at once.
    pub concurrency: usize,
    /// The most new connection attempts per second, if limited.
    pub rate: Option<u32>,
    /// The local address to scan from.
    pub source: Option<IpAddr>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            timeout: Duration::from_secs(2),
            concurrency: 1000,
            rate: None,
            source: None,
        }
    }
}

/// Spaces out connection attempts to at most `rate` per second.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: u32) -> Pacer {
        Pacer {
            interval: Duration::from_secs(1) / rate.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Scans `ports` on `address`. `on_report` sees each report as it arrives
/// (for a progress bar), from the worker tasks; the returned list is in port
/// order.
pub async fn scan<F>(
    address: IpAddr,
    ports: &[u16],
    options: ScanOptions,
    on_report: F,
) -> Vec<PortReport>
where
    F: Fn(&PortReport) + Send + Sync + 'static,
{
    let ports: Arc<[u16]> = ports.into();
    let next = Arc::new(AtomicUsize::new(0));
    let pacer = options.rate.map(|rate| Arc::new(Pacer::new(rate)));
    let on_report = Arc::new(on_report);
    let workers = options.concurrency.clamp(1, ports.len().max(1));
    let connect_options = ConnectOptions {
        source: options.source,
        close: CloseMode::Abort,
        keep: false,
    };
    // Each worker keeps its own reports: no channel, no cross-thread wake-up
    // per port.
    let mut pool = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (ports, next, pacer, on_report) = (
            ports.clone(),
            next.clone(),
            pacer.clone(),
            on_report.clone(),
        );
        pool.spawn(async move {
            let mut reports = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&port) = ports.get(index) else { break };
                if let Some(pacer) = &pacer {
                    pacer.wait().await;
                }
                let target = SocketAddr::new(address, port);
                let outcome = check_address(target, options.timeout, connect_options).await;
                let report = PortReport::new(port, outcome);
                on_report(&report);
                reports.push(report);
            }
            reports
        });
    }
    let mut reports = Vec::with_capacity(ports.len());
    while let Some(done) = pool.join_next().await {
        reports.extend(done.expect("a scan worker never panics"));
    }
    reports.sort_unstable_by_key(|report| report.port);
    reports
}

impl PortReport {
    fn new(port: u16, outcome: Outcome) -> PortReport {
        match outcome {
            Outcome::Connected { elapsed, .. } => PortReport {
                port,
                state: PortState::Open,
                reason: Reason::Connected,
                response_time: Some(elapsed),
                reported_by: None,
                detail: String::new(),
            },
            Outcome::Failed(failure) => PortReport {
                port,
                state: PortState::from_reason(failure.reason),
                reason: failure.reason,
                response_time: failure.elapsed,
                reported_by: failure.reported_by,
                detail: failure.detail,
            },
        }
    }
}

/// Raises the soft open-file limit to the hard limit, and returns the soft
/// limit now in force. A scan needs one descriptor per attempt in flight.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_reasons() {
        assert_eq!(PortState::from_reason(Reason::Connected), PortState::Open);
        assert_eq!(PortState::from_reason(Reason::Refused), PortState::Closed);
        assert_eq!(PortState::from_reason(Reason::Timeout), PortState::Filtered);
        assert_eq!(
            PortState::from_reason(Reason::HostUnreachable),
            PortState::Unreachable
        );
        assert_eq!(
            PortState::from_reason(Reason::NetworkUnreachable),
            PortState::Unreachable
        );
        assert_eq!(
            PortState::from_reason(Reason::AdminProhibited),
            PortState::Prohibited
        );
        assert_eq!(PortState::from_reason(Reason::LocalError), PortState::Error);
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_attempts_evenly() {
        let pacer = Pacer::new(10);
        let origin = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..5 {
            pacer.wait().await;
            starts.push(origin.elapsed().as_millis());
        }
        assert_eq!(starts, [0, 100, 200, 300, 400]);
    }
}
