//! PING: ICMP echo requests to a host, its replies and errors, with loss
//! and round-trip times (min, avg, max, jitter).
//!
//! One socket per address family serves every check of the process: a
//! task reads it and hands each reply (or ICMP error) to the check that
//! waits for it, by destination and sequence number. The socket is an
//! unprivileged ICMP datagram socket where `net.ipv4.ping_group_range`
//! allows it, a raw socket (root, or `CAP_NET_RAW`) otherwise; when
//! neither opens, the check is UNKNOWN `local_error` with the sysctl that
//! would allow it.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::libc;
use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockaddrStorage};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::Reason;

/// What a PING check sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PingOptions {
    /// Echo requests per check.
    pub count: u8,
    /// Time between them.
    pub interval: Duration,
    /// Loss (percent) at or above which the host is WARNING.
    pub loss_warning: u8,
}

impl Default for PingOptions {
    fn default() -> Self {
        PingOptions {
            count: 3,
            interval: Duration::from_millis(200),
            loss_warning: 20,
        }
    }
}

/// The answer to one echo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// A reply after this long.
    Reply(Duration),
    /// An ICMP error (unreachable, prohibited, …) from this sender.
    Error(Reason, Option<IpAddr>),
    /// Nothing before the deadline.
    Lost,
}

/// A check's echoes, summed up.
#[derive(Debug, Clone, PartialEq)]
pub struct PingStats {
    /// Requests sent.
    pub sent: usize,
    /// Replies received.
    pub received: usize,
    /// Their round-trip times.
    pub rtts: Vec<Duration>,
    /// The first ICMP error, with its sender.
    pub error: Option<(Reason, Option<IpAddr>)>,
}

impl PingStats {
    /// Sums up the echoes.
    pub fn of(echoes: &[Echo]) -> PingStats {
        let rtts: Vec<Duration> = echoes
            .iter()
            .filter_map(|e| match e {
                Echo::Reply(rtt) => Some(*rtt),
                _ => None,
            })
            .collect();
        PingStats {
            sent: echoes.len(),
            received: rtts.len(),
            error: echoes.iter().find_map(|e| match e {
                Echo::Error(reason, sender) => Some((*reason, *sender)),
                _ => None,
            }),
            rtts,
        }
    }

    /// Lost echoes, as a percentage of those sent.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * (self.sent - self.received) as f64 / self.sent as f64
    }

    /// min, avg, max and jitter (the mean difference between consecutive
    /// round trips), when there was a reply.
    pub fn times(&self) -> Option<(Duration, Duration, Duration, Duration)> {
        let min = *self.rtts.iter().min()?;
        let max = *self.rtts.iter().max()?;
        let avg = self.rtts.iter().sum::<Duration>() / self.rtts.len() as u32;
        let jitter = if self.rtts.len() < 2 {
            Duration::ZERO
        } else {
            self.rtts
                .windows(2)
                .map(|w| w[0].abs_diff(w[1]))
                .sum::<Duration>()
                / (self.rtts.len() - 1) as u32
        };
        Some((min, avg, max, jitter))
    }
}

/// An echo request: type 8 (ICMP) or 128 (ICMPv6), id, sequence and a
/// payload; the checksum is filled in for ICMP (the kernel fills it for
/// ICMPv6 and for datagram sockets).
pub fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(b"portwatch ping!!");
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a received ICMP packet says about our echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// An echo reply.
    Reply {
        /// Its identifier.
        id: u16,
        /// Its sequence number.
        seq: u16,
    },
    /// An error about an echo request we sent.
    Error {
        /// Where the request went.
        to: IpAddr,
        /// Its identifier.
        id: u16,
        /// Its sequence number.
        seq: u16,
        /// What the error says.
        reason: Reason,
    },
}

/// Parses a packet from an ICMP socket: with its IPv4 header (`ip_header`:
/// raw ICMP sockets) or without (datagram sockets, ICMPv6). Anything else
/// (other traffic, our own requests, cut packets) is `None`.
pub fn parse(packet: &[u8], v6: bool, ip_header: bool) -> Option<Heard> {
    let icmp = if ip_header {
        let length = usize::from(packet.first()? & 0x0f) * 4;
        packet.get(length..)?
    } else {
        packet
    };
    let (kind, code) = (*icmp.first()?, *icmp.get(1)?);
    let word = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*icmp.get(at)?, *icmp.get(at + 1)?]))
    };
    match (v6, kind) {
        (false, 0) | (true, 129) => Some(Heard::Reply {
            id: word(4)?,
            seq: word(6)?,
        }),
        (false, 3 | 11) => {
            // The original IPv4 header and the first 8 bytes of our echo.
            let inner = icmp.get(8..)?;
            let length = usize::from(inner.first()? & 0x0f) * 4;
            let to = IpAddr::from(<[u8; 4]>::try_from(inner.get(16..20)?).ok()?);
            let echo = inner.get(length..length + 8)?;
            if echo[0] != 8 {
                return None;
            }
            let reason = if kind == 11 {
                Reason::HostUnreachable
            } else {
                crate::connect::reason_from_icmp(false, kind, code)?
            };
            Some(Heard::Error {
                to,
                id: u16::from_be_bytes([echo[4], echo[5]]),
                seq: u16::from_be_bytes([echo[6], echo[7]]),
                reason,
            })
        }
        (true, 1 | 3) => {
            // The original IPv6 header (40 bytes) and our echo.
            let inner = icmp.get(8..)?;
            let to = IpAddr::from(<[u8; 16]>::try_from(inner.get(24..40)?).ok()?);
            let echo = inner.get(40..48)?;
            if echo[0] != 128 {
                return None;
            }
            let reason = if kind == 3 {
                Reason::HostUnreachable
            } else {
                crate::connect::reason_from_icmp(true, kind, code)?
            };
            Some(Heard::Error {
                to,
                id: u16::from_be_bytes([echo[4], echo[5]]),
                seq: u16::from_be_bytes([echo[6], echo[7]]),
                reason,
            })
        }
        _ => None,
    }
}

/// Runs the parser over untrusted bytes in every mode: the property tests
/// and the fuzz target call it.
pub fn parse_untrusted(data: &[u8]) {
    for (v6, ip_header) in [(false, true), (false, false), (true, false)] {
        let _ = parse(data, v6, ip_header);
    }
}

/// How the socket of one family was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An unprivileged ICMP datagram socket: the kernel sets the id and
    /// checksums, replies come without the IP header, errors through the
    /// error queue.
    Datagram,
    /// A raw socket: every ICMP packet of the host, IPv4 with its header.
    Raw,
}

/// A check waiting for the answer to one echo request.
struct Waiter {
    sent: Instant,
    tx: oneshot::Sender<Echo>,
}

/// One family's socket and the checks waiting on it.
struct Family {
    /// The ICMP socket, driven by tokio as a datagram socket (reads and
    /// writes are plain recvfrom and sendto).
    socket: tokio::net::UdpSocket,
    kind: Kind,
    v6: bool,
    id: u16,
    waiting: Mutex<HashMap<(IpAddr, u16), Waiter>>,
}

/// Sends echo requests and matches their answers; one per process, cheap
/// to clone.
#[derive(Clone, Default)]
pub struct Pinger {
    v4: Arc<OnceLock<Result<Arc<Family>, String>>>,
    v6: Arc<OnceLock<Result<Arc<Family>, String>>>,
    seq: Arc<AtomicU16>,
}

impl std::fmt::Debug for Pinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pinger")
    }
}

/// Why no ICMP socket opens, with the fix.
fn cannot_open(v6: bool, error: &std::io::Error) -> String {
    let family = if v6 { "ICMPv6" } else { "ICMP" };
    format!(
        "cannot open an {family} socket ({error}): allow unprivileged ping with sysctl -w net.ipv4.ping_group_range=\"0 2147483647\" (it covers IPv6 too), or run portwatch as root or with CAP_NET_RAW"
    )
}

impl Family {
    /// Opens the family's socket (datagram first, raw otherwise) and
    /// starts the task that reads it.
    fn open(v6: bool) -> Result<Arc<Family>, String> {
        let (domain, protocol) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let (socket, kind) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
            Ok(socket) => (socket, Kind::Datagram),
            Err(_) => match Socket::new(domain, Type::RAW, Some(protocol)) {
                Ok(socket) => (socket, Kind::Raw),
                Err(error) => return Err(cannot_open(v6, &error)),
            },
        };
        socket
            .set_nonblocking(true)
            .map_err(|e| cannot_open(v6, &e))?;
        if kind == Kind::Datagram {
            // ICMP errors about our echoes come through the error queue.
            let unspecified = if v6 {
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
            } else {
                SocketAddr::from(([0, 0, 0, 0], 0))
            };
            crate::connect::queue_icmp_errors(&socket, unspecified);
        }
        let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))
            .map_err(|e| cannot_open(v6, &e))?;
        let family = Arc::new(Family {
            socket,
            kind,
            v6,
            id: rand::random(),
            waiting: Mutex::new(HashMap::new()),
        });
        tokio::spawn(listen(Arc::downgrade(&family)));
        Ok(family)
    }

    /// Hands what was heard to the check waiting for it.
    fn deliver(&self, from: IpAddr, heard: Heard, at: Instant) {
        let (key, echo) = match heard {
            Heard::Reply { id, seq } => {
                if self.kind == Kind::Raw && id != self.id {
                    return;
                }
                ((from, seq), None)
            }
            Heard::Error {
                to,
                id,
                seq,
                reason,
            } => {
                if self.kind == Kind::Raw && id != self.id {
                    return;
                }
                ((to, seq), Some(Echo::Error(reason, Some(from))))
            }
        };
        let waiter = self.waiting.lock().expect("not poisoned").remove(&key);
        if let Some(waiter) = waiter {
            let echo = echo.unwrap_or_else(|| Echo::Reply(at - waiter.sent));
            let _ = waiter.tx.send(echo);
        }
    }

    /// Reads the error queue of a datagram socket: each entry names the
    /// echo it is about (its destination and our packet) and the sender.
    fn drain_errors(&self) {
        loop {
            let mut payload = [0u8; 64];
            let mut iov = [IoSliceMut::new(&mut payload)];
            let mut control = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
            let Ok(message) = socket::recvmsg::<SockaddrStorage>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            ) else {
                return;
            };
            let to = message.address.as_ref().and_then(address_of);
            let mut error = None;
            if let Ok(cmsgs) = message.cmsgs() {
                for cmsg in cmsgs {
                    let (err, sender) = match cmsg {
                        ControlMessageOwned::Ipv4RecvErr(err, sender) => (
                            err,
                            sender.map(|s| {
                                IpAddr::from(std::net::Ipv4Addr::from(u32::from_be(
                                    s.sin_addr.s_addr,
                                )))
                            }),
                        ),
                        ControlMessageOwned::Ipv6RecvErr(err, sender) => {
                            (err, sender.map(|s| IpAddr::from(s.sin6_addr.s6_addr)))
                        }
                        _ => continue,
                    };
                    let v6 = err.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                    if let Some(reason) = crate::connect::reason_from_icmp(
                        v6,
                        err.ee_type,
                        err.ee_code,
                    )
                    .or(matches!(err.ee_type, 11 | 3).then_some(Reason::HostUnreachable))
                    {
                        error = Some((reason, sender));
                    }
                }
            }
            let bytes = message.bytes;
            if let (Some(to), Some((reason, sender)), true) = (to, error, bytes >= 8) {
                let seq = u16::from_be_bytes([payload[6], payload[7]]);
                let waiter = self
                    .waiting
                    .lock()
                    .expect("not poisoned")
                    .remove(&(to, seq));
                if let Some(waiter) = waiter {
                    let _ = waiter.tx.send(Echo::Error(reason, sender));
                }
            }
        }
    }
}

fn address_of(address: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(IpAddr::from(v4.ip()));
    }
    address.as_sockaddr_in6().map(|v6| IpAddr::from(v6.ip()))
}

/// Reads a family's socket until the family is gone.
async fn listen(family: std::sync::Weak<Family>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Some(family) = family.upgrade() else {
            return;
        };
        let received = family.socket.recv_from(&mut buf).await;
        let at = Instant::now();
        match received {
            Ok((n, from)) => {
                let ip_header = family.kind == Kind::Raw && !family.v6;
                if let Some(heard) = parse(&buf[..n], family.v6, ip_header) {
                    family.deliver(from.ip(), heard, at);
                }
            }
            // An error waits in the queue (datagram sockets).
            Err(_) => family.drain_errors(),
        }
    }
}

impl Pinger {
    /// The socket of `ip`'s family, opened on first use.
    fn family(&self, ip: IpAddr) -> Result<Arc<Family>, String> {
        let (cell, v6) = match ip {
            IpAddr::V4(_) => (&self.v4, false),
            IpAddr::V6(_) => (&self.v6, true),
        };
        cell.get_or_init(|| Family::open(v6)).clone()
    }

    /// Sends `options.count` echo requests to `ip`, `options.interval`
    /// apart, and waits for their answers until `deadline`. `Err`: no ICMP
    /// socket could be opened (the message says how to allow one).
    pub async fn ping(
        &self,
        ip: IpAddr,
        options: &PingOptions,
        deadline: Instant,
    ) -> Result<Vec<Echo>, String> {
        let family = self.family(ip)?;
        let mut pending = Vec::new();
        for n in 0..options.count {
            if n > 0 {
                tokio::time::sleep(options.interval).await;
            }
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            let sent = Instant::now();
            family
                .waiting
                .lock()
                .expect("not poisoned")
                .insert((ip, seq), Waiter { sent, tx });
            let packet = echo_request(family.v6, family.id, seq);
            let to = SocketAddr::new(ip, 0);
            let mut result = family.socket.send_to(&packet, to).await;
            if result.is_err() && family.kind == Kind::Datagram {
                // A pending error may be an earlier echo's (an ICMP error
                // reported on the next call): hand it to its check, and
                // send again.
                family.drain_errors();
                result = family.socket.send_to(&packet, to).await;
            }
            if let Err(error) = result {
                family
                    .waiting
                    .lock()
                    .expect("not poisoned")
                    .remove(&(ip, seq));
                let reason = error
                    .raw_os_error()
                    .map_or(Reason::LocalError, crate::connect::reason_from_errno);
                if reason == Reason::LocalError {
                    return Err(format!("cannot send an echo request to {ip}: {error}"));
                }
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Echo::Error(reason, None));
                pending.push((ip, seq, rx));
                continue;
            }
            pending.push((ip, seq, rx));
        }
        let mut echoes = Vec::with_capacity(pending.len());
        for (ip, seq, rx) in pending {
            let echo = match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(echo)) => echo,
                _ => {
                    family
                        .waiting
                        .lock()
                        .expect("not poisoned")
                        .remove(&(ip, seq));
                    Echo::Lost
                }
            };
            echoes.push(echo);
        }
        Ok(echoes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            parse_untrusted(&data);
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn echoes_sum_up_to_loss_and_times() {
        let stats = PingStats::of(&[
            Echo::Reply(ms(10)),
            Echo::Lost,
            Echo::Reply(ms(30)),
            Echo::Reply(ms(20)),
        ]);
        assert_eq!((stats.sent, stats.received), (4, 3));
        assert_eq!(stats.loss_percent(), 25.0);
        assert_eq!(stats.times(), Some((ms(10), ms(20), ms(30), ms(15))));
        let down = PingStats::of(&[Echo::Lost, Echo::Error(Reason::HostUnreachable, None)]);
        assert_eq!(down.loss_percent(), 100.0);
        assert_eq!(down.times(), None);
        assert_eq!(down.error, Some((Reason::HostUnreachable, None)));
        assert_eq!(
            PingStats::of(&[Echo::Reply(ms(5))]).times().unwrap().3,
            Duration::ZERO
        );
        let two = PingStats::of(&[Echo::Reply(ms(5)), Echo::Reply(ms(9))]);
        assert_eq!(two.times().unwrap().3, ms(4), "two replies have a jitter");
    }

    #[test]
    fn requests_carry_id_sequence_and_a_valid_checksum() {
        let packet = echo_request(false, 0x1234, 7);
        assert_eq!(&packet[..2], &[8, 0]);
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(
            checksum(&packet),
            0,
            "a packet with its checksum sums to zero"
        );
        // RFC 1071's example: the carries fold back in.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        assert_eq!(checksum(&[0xff]), 0x00ff, "an odd byte is padded with zero");
        assert_eq!(echo_request(true, 1, 2)[0], 128);
    }

    #[test]
    fn replies_and_errors_are_told_apart() {
        // A raw IPv4 reply: a 20-byte header, then the echo reply.
        let mut reply = vec![0x45; 1];
        reply.extend_from_slice(&[0; 19]);
        reply.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert_eq!(
            parse(&reply, false, true),
            Some(Heard::Reply { id: 0x1234, seq: 7 })
        );
        assert_eq!(
            parse(&reply[20..], false, false),
            Some(Heard::Reply { id: 0x1234, seq: 7 })
        );
        // Our own request, seen by a raw socket on loopback: not an answer.
        assert_eq!(parse(&echo_request(false, 1, 1), false, false), None);
        // Host unreachable (type 3 code 1) about an echo to 192.0.2.4.
        let mut error = vec![3, 1, 0, 0, 0, 0, 0, 0];
        let mut inner = vec![0x45];
        inner.extend_from_slice(&[0; 15]);
        inner.extend_from_slice(&[192, 0, 2, 4]);
        inner.extend_from_slice(&echo_request(false, 0x1234, 9)[..8]);
        error.extend_from_slice(&inner);
        assert_eq!(
            parse(&error, false, false),
            Some(Heard::Error {
                to: "192.0.2.4".parse().unwrap(),
                id: 0x1234,
                seq: 9,
                reason: Reason::HostUnreachable
            })
        );
        error[1] = 13;
        assert!(matches!(
            parse(&error, false, false),
            Some(Heard::Error {
                reason: Reason::AdminProhibited,
                ..
            })
        ));
        // ICMPv6 admin prohibited (type 1 code 1) about an echo to 2001:db8::6.
        let mut error6 = vec![1, 1, 0, 0, 0, 0, 0, 0];
        let mut header = vec![0x60; 1];
        header.extend_from_slice(&[0; 23]);
        header.extend_from_slice(
            &"2001:db8::6"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        error6.extend_from_slice(&header);
        error6.extend_from_slice(&echo_request(true, 5, 6)[..8]);
        assert_eq!(
            parse(&error6, true, false),
            Some(Heard::Error {
                to: "2001:db8::6".parse().unwrap(),
                id: 5,
                seq: 6,
                reason: Reason::AdminProhibited
            })
        );
        for cut in 0..error.len() {
            let _ = parse(&error[..cut], false, false);
        }
        assert_eq!(parse(&[], false, true), None);
    }
}
