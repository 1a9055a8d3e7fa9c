//! One TCP connect attempt to one address.
//!
//! The socket is made by hand (socket2) rather than through
//! `tokio::net::TcpStream::connect`, for three reasons:
//! - `IP_RECVERR` / `IPV6_RECVERR` must be set before connecting, so that an
//!   ICMP error is queued with its type, code and sender. Linux reports both
//!   "host unreachable" and "administratively prohibited" as EHOSTUNREACH;
//!   only the queued ICMP message tells them apart and names the router.
//! - The socket must outlive a failed connect, to read that queue.
//! - `--source` binds the local address, and `--abort` closes with RST.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockaddrStorage, setsockopt, sockopt};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::Interest;

use super::{CloseMode, Reason};

/// The outcome of one connect attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed after `elapsed`; the connection is closed.
    Connected {
        /// SYN sent to handshake done.
        elapsed: Duration,
        /// The open connection, when asked to keep it (protocol checks).
        kept: Option<Kept>,
    },
    /// The attempt failed.
    Failed(Failure),
}

/// An established connection handed on to a protocol check. Cloning shares
/// it; [`Kept::take`] gives it to one owner.
#[derive(Debug, Clone)]
pub struct Kept(std::sync::Arc<std::sync::Mutex<Option<std::net::TcpStream>>>);

impl Kept {
    fn new(stream: std::net::TcpStream) -> Kept {
        Kept(std::sync::Arc::new(std::sync::Mutex::new(Some(stream))))
    }

    /// The connection, once.
    pub fn take(&self) -> Option<std::net::TcpStream> {
        self.0.lock().ok()?.take()
    }
}

impl PartialEq for Kept {
    fn eq(&self, other: &Kept) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Kept {}

/// A failed connect attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why it failed.
    pub reason: Reason,
    /// What the kernel said, for the message.
    pub detail: String,
    /// The sender of the ICMP error, if one was queued.
    pub reported_by: Option<IpAddr>,
    /// Time from SYN to the failure, when an answer came back.
    pub elapsed: Option<Duration>,
}

impl Failure {
    /// A failure of the checker itself, from an I/O error.
    pub fn local(context: &str, error: &io::Error) -> Failure {
        Failure {
            reason: Reason::LocalError,
            detail: format!("{context}: {error}"),
            reported_by: None,
            elapsed: None,
        }
    }
}

/// Settings of one attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// The local address to bind (port 0), if any.
    pub source: Option<IpAddr>,
    /// How to close an established connection.
    pub close: CloseMode,
    /// Keep the established connection open and hand it over.
    pub keep: bool,
}

/// Connects to `address` once, without a timeout of its own: the caller
/// bounds it (and dropping the future closes the socket).
pub async fn connect(address: SocketAddr, options: ConnectOptions) -> Outcome {
    let socket = match open(address, options.source) {
        Ok(socket) => socket,
        Err(failure) => return Outcome::Failed(failure),
    };
    let started = Instant::now();
    let target = address.into();
    match socket.connect(&target) {
        Ok(()) => {
            let outcome = finish(&SockRef::from(&socket), started, options.close);
            return keep(outcome, options.keep, || socket.into());
        }
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => {
            return Outcome::Failed(failure_from(&SockRef::from(&socket), &error, started));
        }
    }
    // Loopback and nearby hosts often complete the handshake (or refuse it)
    // within the connect() call itself. Asking once more costs one system
    // call and saves registering with the reactor, which triples the work.
    if let Some(outcome) = progress(&SockRef::from(&socket), &target, started, options.close) {
        return keep(outcome, options.keep, || socket.into());
    }
    // tokio registers the connecting socket with its reactor; the socket
    // stays reachable through SockRef for the error queue and SO_LINGER.
    let stream = match tokio::net::TcpStream::from_std(std::net::TcpStream::from(socket)) {
        Ok(stream) => stream,
        Err(error) => return Outcome::Failed(Failure::local("cannot watch the socket", &error)),
    };
    loop {
        if let Err(error) = stream.writable().await {
            return Outcome::Failed(Failure::local("cannot watch the socket", &error));
        }
        if let Some(outcome) = progress(&SockRef::from(&stream), &target, started, options.close) {
            return match stream.into_std() {
                Ok(std) => keep(outcome, options.keep, || std),
                Err(error) => Outcome::Failed(Failure::local("cannot keep the connection", &error)),
            };
        }
        // A spurious wake-up: forget the readiness and wait again.
        let _ = stream.try_io(Interest::WRITABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
    }
}

/// Asks a connecting socket how it is doing, by calling connect() again:
/// 0 or EISCONN once established, EALREADY while the handshake runs, and
/// the pending error (which it clears) when the attempt failed. One system
/// call instead of SO_ERROR plus getpeername.
fn progress(
    socket: &SockRef<'_>,
    target: &socket2::SockAddr,
    started: Instant,
    close: CloseMode,
) -> Option<Outcome> {
    match socket.connect(target) {
        Ok(()) => Some(finish(socket, started, close)),
        Err(error) => match error.raw_os_error() {
            Some(libc::EISCONN) => Some(finish(socket, started, close)),
            Some(libc::EALREADY | libc::EINPROGRESS) => None,
            _ => Some(Outcome::Failed(failure_from(socket, &error, started))),
        },
    }
}

/// Opens a non-blocking TCP socket for `address`, with ICMP errors queued
/// and the source address bound.
fn open(address: SocketAddr, source: Option<IpAddr>) -> Result<Socket, Failure> {
    let domain = Domain::for_address(address);
    let socket = Socket::new(
        domain,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )
    .map_err(|error| Failure::local("cannot create a socket", &error))?;
    queue_icmp_errors(&socket, address);
    if let Some(source) = source {
        let local = SocketAddr::new(source, 0);
        socket.bind(&local.into()).map_err(|error| {
            Failure::local(&format!("cannot use source address {source}"), &error)
        })?;
    }
    Ok(socket)
}

/// Asks the kernel to queue ICMP errors for `socket` (which talks to
/// `address`) with their type, code and sender.
pub(crate) fn queue_icmp_errors(socket: &Socket, address: SocketAddr) {
    let queued = match address {
        SocketAddr::V4(_) => setsockopt(socket, sockopt::Ipv4RecvErr, &true),
        SocketAddr::V6(_) => setsockopt(socket, sockopt::Ipv6RecvErr, &true),
    };
    if let Err(errno) = queued {
        tracing::debug!(%errno, "IP_RECVERR unavailable; ICMP senders will not be reported");
    }
}

/// Attaches the connection to a successful outcome when it is to be kept;
/// otherwise it is closed when `socket` is dropped.
fn keep(outcome: Outcome, wanted: bool, socket: impl FnOnce() -> std::net::TcpStream) -> Outcome {
    match outcome {
        Outcome::Connected { elapsed, .. } if wanted => Outcome::Connected {
            elapsed,
            kept: Some(Kept::new(socket())),
        },
        other => other,
    }
}

fn finish(socket: &SockRef<'_>, started: Instant, close: CloseMode) -> Outcome {
    let elapsed = started.elapsed();
    if close == CloseMode::Abort {
        // SO_LINGER with a zero timeout makes close() send RST and skip
        // TIME_WAIT. Failing to set it only changes how we close.
        let _ = socket.set_linger(Some(Duration::ZERO));
    }
    Outcome::Connected {
        elapsed,
        kept: None,
    }
}

/// Builds the failure for a connect (or UDP) error, consulting the error
/// queue.
pub(crate) fn failure_from(socket: &SockRef<'_>, error: &io::Error, started: Instant) -> Failure {
    let elapsed = started.elapsed();
    let errno = error.raw_os_error().unwrap_or(0);
    let icmp = read_icmp_error(socket);
    let reason = icmp
        .as_ref()
        .and_then(|icmp| reason_from_icmp(icmp.v6, icmp.kind, icmp.code))
        .unwrap_or_else(|| reason_from_errno(errno));
    let detail = match &icmp {
        Some(icmp) => {
            let protocol = if icmp.v6 { "ICMPv6" } else { "ICMP" };
            format!(
                "{} ({protocol} type {} code {})",
                error_text(error),
                icmp.kind,
                icmp.code
            )
        }
        // Without an ICMP message the reason says it all, except where the
        // kernel's words add something (no route here, a local error).
        None => match reason {
            Reason::Refused | Reason::Timeout => String::new(),
            Reason::NetworkUnreachable => "no route to it from this host".to_owned(),
            _ => error_text(error),
        },
    };
    let answered = !matches!(reason, Reason::Timeout | Reason::LocalError);
    Failure {
        reason,
        detail,
        reported_by: icmp.and_then(|icmp| icmp.sender),
        elapsed: answered.then_some(elapsed),
    }
}

/// `Connection refused` rather than `Connection refused (os error 111)`.
fn error_text(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(errno) => Errno::from_raw(errno).desc().to_owned(),
        None => error.to_string(),
    }
}

/// An ICMP error read from the socket's error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IcmpError {
    v6: bool,
    kind: u8,
    code: u8,
    sender: Option<IpAddr>,
}

/// Reads one ICMP error from the error queue, if one is there.
fn read_icmp_error(socket: &SockRef<'_>) -> Option<IcmpError> {
    let mut payload = [0u8; 128];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let mut control = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
    let message = socket::recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    for cmsg in message.cmsgs().ok()? {
        let (error, sender) = match cmsg {
            ControlMessageOwned::Ipv4RecvErr(error, sender) => {
                let sender =
                    sender.map(|s| IpAddr::from(Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr))));
                (error, sender)
            }
            ControlMessageOwned::Ipv6RecvErr(error, sender) => {
                (error, sender.map(|s| IpAddr::from(s.sin6_addr.s6_addr)))
            }
            _ => continue,
        };
        let icmp_origin = matches!(
            error.ee_origin,
            libc::SO_EE_ORIGIN_ICMP | libc::SO_EE_ORIGIN_ICMP6
        );
        if icmp_origin {
            return Some(IcmpError {
                v6: error.ee_origin == libc::SO_EE_ORIGIN_ICMP6,
                kind: error.ee_type,
                code: error.ee_code,
                sender: sender.filter(|ip| !ip.is_unspecified()),
            });
        }
    }
    None
}

/// The reason an ICMP destination-unreachable message gives, by type and
/// code (RFC 792 and RFC 1812 for ICMP, RFC 4443 for ICMPv6).
pub fn reason_from_icmp(v6: bool, kind: u8, code: u8) -> Option<Reason> {
    let reason = match (v6, kind, code) {
        // ICMP type 3: destination unreachable.
        (false, 3, 0 | 6 | 11) => Reason::NetworkUnreachable,
        (false, 3, 1 | 5 | 7 | 12) => Reason::HostUnreachable,
        (false, 3, 2 | 3) => Reason::Refused,
        (false, 3, 9 | 10 | 13 | 14 | 15) => Reason::AdminProhibited,
        // ICMPv6 type 1: destination unreachable.
        (true, 1, 0 | 2) => Reason::NetworkUnreachable,
        (true, 1, 1 | 5 | 6) => Reason::AdminProhibited,
        (true, 1, 3) => Reason::HostUnreachable,
        (true, 1, 4) => Reason::Refused,
        _ => return None,
    };
    Some(reason)
}

/// The reason for a connect errno when no ICMP message says more.
pub fn reason_from_errno(errno: i32) -> Reason {
    match errno {
        libc::ECONNREFUSED | libc::ENOPROTOOPT | libc::EPROTO => Reason::Refused,
        libc::ETIMEDOUT => Reason::Timeout,
        libc::EHOSTUNREACH | libc::EHOSTDOWN => Reason::HostUnreachable,
        libc::ENETUNREACH | libc::ENETDOWN => Reason::NetworkUnreachable,
        // EACCES is how Linux reports ICMPv6 "administratively prohibited";
        // EPERM is a local firewall rule rejecting the SYN.
        libc::EACCES | libc::EPERM => Reason::AdminProhibited,
        // The handshake completed and the server reset the connection
        // before it was seen established (a TCP wrapper saying no).
        libc::ECONNRESET => Reason::Reset,
        // Everything else (EMFILE, ENFILE, ENOBUFS, EADDRNOTAVAIL, …) is the
        // checker's own trouble, never the service's.
        _ => Reason::LocalError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_codes() {
        let table: [(bool, u8, &[u8], Reason); 8] = [
            (false, 3, &[0, 6, 11], Reason::NetworkUnreachable),
            (false, 3, &[1, 5, 7, 12], Reason::HostUnreachable),
            (false, 3, &[2, 3], Reason::Refused),
            (false, 3, &[9, 10, 13, 14, 15], Reason::AdminProhibited),
            (true, 1, &[0, 2], Reason::NetworkUnreachable),
            (true, 1, &[1, 5, 6], Reason::AdminProhibited),
            (true, 1, &[3], Reason::HostUnreachable),
            (true, 1, &[4], Reason::Refused),
        ];
        for (v6, kind, codes, reason) in table {
            for &code in codes {
                assert_eq!(
                    reason_from_icmp(v6, kind, code),
                    Some(reason),
                    "v6 {v6} type {kind} code {code}"
                );
            }
        }
        // Time exceeded, fragmentation needed, source route failed and the
        // other family's numbers carry no reachability verdict of their own.
        for (v6, kind, code) in [
            (false, 11, 0),
            (false, 3, 4),
            (false, 3, 8),
            (true, 3, 0),
            (false, 1, 4),
            (true, 3, 3),
        ] {
            assert_eq!(
                reason_from_icmp(v6, kind, code),
                None,
                "v6 {v6} type {kind} code {code}"
            );
        }
    }

    #[test]
    fn errnos() {
        let table = [
            (libc::ECONNREFUSED, Reason::Refused),
            (libc::ENOPROTOOPT, Reason::Refused),
            (libc::EPROTO, Reason::Refused),
            (libc::ETIMEDOUT, Reason::Timeout),
            (libc::EHOSTUNREACH, Reason::HostUnreachable),
            (libc::EHOSTDOWN, Reason::HostUnreachable),
            (libc::ENETUNREACH, Reason::NetworkUnreachable),
            (libc::ENETDOWN, Reason::NetworkUnreachable),
            (libc::EACCES, Reason::AdminProhibited),
            (libc::EPERM, Reason::AdminProhibited),
            (libc::ECONNRESET, Reason::Reset),
        ];
        for (errno, reason) in table {
            assert_eq!(reason_from_errno(errno), reason, "errno {errno}");
        }
        for local in [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
            0,
        ] {
            assert_eq!(reason_from_errno(local), Reason::LocalError);
        }
    }

    #[test]
    fn kernel_errors_read_as_words() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(error_text(&refused), "Connection refused");
        let other = io::Error::other("no socket");
        assert_eq!(error_text(&other), "no socket");
    }

    /// A failure without an ICMP message: what the errno gives, with the
    /// kernel's words only where they add something, and a time only when
    /// something answered.
    #[test]
    fn a_failure_without_icmp_says_what_its_errno_means() {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        let socket = SockRef::from(&socket);
        let failure = |errno| {
            failure_from(
                &socket,
                &io::Error::from_raw_os_error(errno),
                Instant::now(),
            )
        };
        let refused = failure(libc::ECONNREFUSED);
        assert_eq!(
            (refused.reason, refused.detail.as_str()),
            (Reason::Refused, "")
        );
        assert!(refused.elapsed.is_some(), "a refusal is an answer");
        assert_eq!(refused.reported_by, None);
        let timeout = failure(libc::ETIMEDOUT);
        assert_eq!(
            (timeout.reason, timeout.detail.as_str(), timeout.elapsed),
            (Reason::Timeout, "", None)
        );
        let no_route = failure(libc::ENETUNREACH);
        assert_eq!(no_route.detail, "no route to it from this host");
        assert!(no_route.elapsed.is_some());
        let local = failure(libc::EMFILE);
        assert_eq!(
            (local.reason, local.detail.as_str(), local.elapsed),
            (Reason::LocalError, "Too many open files", None)
        );
        let prohibited = failure(libc::EACCES);
        assert_eq!(prohibited.detail, "Permission denied");
    }

    fn listener() -> (std::net::TcpListener, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        (listener, address)
    }

    /// What the server side reads after the checker is done: `Ok(0)` for a
    /// graceful close, an error for a reset.
    fn server_reads(listener: &std::net::TcpListener) -> io::Result<usize> {
        use std::io::Read;
        let (mut accepted, _) = listener.accept().unwrap();
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        accepted.read(&mut [0u8; 16])
    }

    #[tokio::test]
    async fn an_open_port_connects_and_the_connection_is_closed_gracefully() {
        let (listener, address) = listener();
        let outcome = connect(address, ConnectOptions::default()).await;
        assert!(
            matches!(outcome, Outcome::Connected { kept: None, .. }),
            "{outcome:?}"
        );
        assert_eq!(server_reads(&listener).unwrap(), 0, "FIN, not RST");
    }

    #[tokio::test]
    async fn abort_closes_with_a_reset() {
        let (listener, address) = listener();
        let options = ConnectOptions {
            close: CloseMode::Abort,
            ..ConnectOptions::default()
        };
        let outcome = connect(address, options).await;
        assert!(matches!(outcome, Outcome::Connected { .. }), "{outcome:?}");
        let read = server_reads(&listener);
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset)
        );
    }

    #[tokio::test]
    async fn a_kept_connection_is_handed_over_once_and_stays_open() {
        use std::io::{Read, Write};
        let (listener, address) = listener();
        let options = ConnectOptions {
            keep: true,
            ..ConnectOptions::default()
        };
        let Outcome::Connected {
            kept: Some(kept), ..
        } = connect(address, options).await
        else {
            panic!("a kept connection");
        };
        assert_eq!(kept.clone(), kept, "clones share it");
        let mut stream = kept.take().expect("the connection");
        assert!(kept.take().is_none(), "given once");
        stream.write_all(b"ping").unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        let mut buffer = [0u8; 4];
        accepted.read_exact(&mut buffer).unwrap();
        assert_eq!(&buffer, b"ping");
        let (other, other_address) = self::listener();
        let Outcome::Connected {
            kept: Some(second), ..
        } = connect(other_address, options).await
        else {
            panic!("a kept connection");
        };
        assert_ne!(second, kept, "two connections are not equal");
        drop(other);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_with_its_time() {
        let (listener, address) = listener();
        drop(listener);
        let Outcome::Failed(failure) = connect(address, ConnectOptions::default()).await else {
            panic!("refused");
        };
        assert_eq!(failure.reason, Reason::Refused);
        assert!(failure.elapsed.is_some());
    }

    #[tokio::test]
    async fn a_source_address_that_is_not_ours_is_the_checkers_own_error() {
        let (_listener, address) = listener();
        let options = ConnectOptions {
            source: Some("192.0.2.1".parse().unwrap()),
            ..ConnectOptions::default()
        };
        let Outcome::Failed(failure) = connect(address, options).await else {
            panic!("a local error");
        };
        assert_eq!(failure.reason, Reason::LocalError);
        assert!(
            failure
                .detail
                .starts_with("cannot use source address 192.0.2.1: "),
            "{}",
            failure.detail
        );
        let local = Failure::local("cannot create a socket", &io::Error::other("EMFILE"));
        assert_eq!(
            (local.reason, local.detail.as_str(), local.elapsed),
            (Reason::LocalError, "cannot create a socket: EMFILE", None)
        );
    }
}
