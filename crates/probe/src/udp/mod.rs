//! UDP services: a request the service must answer, and the answer judged.
//! Built in for DNS, NTP (with the clock's offset), SNMP (a v2c `get` of
//! sysUpTime, or v3 engine discovery), TFTP (a read request answered by
//! data or an error packet) and NetBIOS name service (a node status
//! query); any other service with `send`/`expect` bytes.
//!
//! A UDP service that says nothing cannot be told from a lost packet, so
//! silence is DOWN `no_response`, never "up because nothing said no"; an
//! ICMP port unreachable is DOWN `refused`, with the router or host that
//! sent it (the socket's error queue, as for TCP).

pub mod netbios;
pub mod ntp;
pub mod snmp;
pub mod tftp;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::time::Instant;

use crate::Reason;
use crate::proto::Details;
use crate::proto::session::{SHOWN, show};

/// What a UDP sensor sends and expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpProtocol {
    /// A query for the root's name servers: any well-formed answer.
    Dns,
    /// An NTP client request: a server's answer with its stratum and the
    /// clock's offset.
    Ntp,
    /// SNMP: a v2c `get` of sysUpTime.0 with this community, or (`None`)
    /// v3 engine discovery (noAuthNoPriv, no credentials needed).
    Snmp(Option<String>),
    /// A TFTP read request for this file: data or an error packet answers
    /// it; `true`: the file must exist (data required).
    Tftp(String, bool),
    /// A NetBIOS node status query.
    NetbiosNs,
    /// These bytes sent; any answer, or one containing the expected bytes.
    Custom(Vec<u8>, Option<Vec<u8>>),
}

/// The built-in UDP protocols and their ports.
pub const PROTOCOLS: [(&str, u16); 5] = [
    ("dns", 53),
    ("ntp", 123),
    ("snmp", 161),
    ("tftp", 69),
    ("netbios-ns", 137),
];

impl UdpProtocol {
    /// Its name, as `protocol` writes it and results show it.
    pub fn name(&self) -> &'static str {
        match self {
            UdpProtocol::Dns => "dns",
            UdpProtocol::Ntp => "ntp",
            UdpProtocol::Snmp(_) => "snmp",
            UdpProtocol::Tftp(..) => "tftp",
            UdpProtocol::NetbiosNs => "netbios-ns",
            UdpProtocol::Custom(..) => "udp",
        }
    }

    /// Its well-known port (none for custom bytes).
    pub fn default_port(&self) -> Option<u16> {
        PROTOCOLS
            .iter()
            .find(|(name, _)| *name == self.name())
            .map(|(_, port)| *port)
    }
}

/// The request for `protocol`, with `nonce` to tell its answer from others.
fn request(protocol: &UdpProtocol, nonce: u32, now: jiff::Timestamp) -> Vec<u8> {
    match protocol {
        UdpProtocol::Dns => root_query(nonce as u16),
        UdpProtocol::Ntp => ntp::request(now),
        UdpProtocol::Snmp(Some(community)) => {
            snmp::get_uptime(community, nonce as i32 & 0x7fff_ffff)
        }
        UdpProtocol::Snmp(None) => snmp::discovery(nonce as i32 & 0x7fff_ffff),
        UdpProtocol::Tftp(file, _) => tftp::read_request(file),
        UdpProtocol::NetbiosNs => netbios::node_status(nonce as u16),
        UdpProtocol::Custom(send, _) => send.clone(),
    }
}

/// A DNS query for the root's NS records.
fn root_query(id: u16) -> Vec<u8> {
    let options = crate::dns::DnsOptions {
        record: crate::dns::parse_type("NS").expect("NS is a type"),
        ..crate::dns::DnsOptions::default()
    };
    crate::dns::query_bytes(id, &options).expect("the root is a name")
}

/// Whether `reply` may answer the request made with `nonce` (the rest is
/// ignored as strays: late answers to earlier checks, other traffic).
fn answers(protocol: &UdpProtocol, nonce: u32, reply: &[u8]) -> bool {
    match protocol {
        UdpProtocol::Dns => reply.len() >= 2 && reply[..2] == (nonce as u16).to_be_bytes(),
        UdpProtocol::NetbiosNs => reply.len() >= 2 && reply[..2] == (nonce as u16).to_be_bytes(),
        _ => true,
    }
}

/// Judges an answer; the details, or why it is not the service's answer.
fn judge(
    protocol: &UdpProtocol,
    nonce: u32,
    reply: &[u8],
    sent: jiff::Timestamp,
    received: jiff::Timestamp,
) -> Result<Details, String> {
    match protocol {
        // Any well-formed answer shows a name server at work (REFUSED
        // too: it answers, it only will not recurse for this host).
        UdpProtocol::Dns => {
            let record = crate::dns::parse_type("NS").expect("NS is a type");
            crate::dns::parse_answer(reply, nonce as u16, record).map(|answer| {
                vec![
                    ("rcode", crate::dns::rcode_name(answer.rcode)),
                    ("answers", answer.values.len().to_string()),
                ]
            })
        }
        UdpProtocol::Ntp => ntp::judge(reply, sent, received),
        UdpProtocol::Snmp(Some(_)) => snmp::judge_get(reply, nonce as i32 & 0x7fff_ffff),
        UdpProtocol::Snmp(None) => snmp::judge_discovery(reply, nonce as i32 & 0x7fff_ffff),
        UdpProtocol::Tftp(_, must_exist) => tftp::judge(reply, *must_exist),
        UdpProtocol::NetbiosNs => netbios::judge(reply, nonce as u16),
        UdpProtocol::Custom(_, expect) => match expect {
            None => Ok(vec![("answer", show(reply, SHOWN))]),
            Some(expected) => {
                if matches!(
                    crate::proto::expect::find(reply, expected),
                    crate::proto::session::Frame::Got(..)
                ) {
                    Ok(vec![("matched", show(expected, SHOWN))])
                } else {
                    Err(format!(
                        "expected '{}', got '{}'",
                        show(expected, SHOWN),
                        show(reply, SHOWN)
                    ))
                }
            }
        },
    }
}

/// Runs every parser of untrusted UDP answers: the property tests and the
/// fuzz target call it with arbitrary input.
pub fn parse_untrusted(data: &[u8]) {
    let now = jiff::Timestamp::now();
    for protocol in [
        UdpProtocol::Dns,
        UdpProtocol::Ntp,
        UdpProtocol::Snmp(Some("public".into())),
        UdpProtocol::Snmp(None),
        UdpProtocol::Tftp("x".into(), false),
        UdpProtocol::NetbiosNs,
        UdpProtocol::Custom(Vec::new(), Some(b"x".to_vec())),
    ] {
        drop(judge(&protocol, 0x1234, data, now, now));
    }
}

/// The outcome of one exchange.
#[derive(Debug)]
pub struct Exchange {
    /// Why it failed, if it did, and the message.
    pub fail: Option<(Reason, String)>,
    /// The sender of an ICMP error.
    pub reported_by: Option<IpAddr>,
    /// What the answer said.
    pub details: Details,
    /// Request sent to answer (or ICMP error) received.
    pub elapsed: Option<Duration>,
}

/// Sends `protocol`'s request to `server` and judges the answer that
/// arrives before `deadline`.
pub async fn exchange(
    server: SocketAddr,
    protocol: &UdpProtocol,
    deadline: Instant,
    timeout: Duration,
) -> Exchange {
    let nonce: u32 = rand::random();
    let sent = jiff::Timestamp::now();
    let request = request(protocol, nonce, sent);
    // A TFTP server answers from a new port: the socket takes answers from
    // any port of the server.
    let connected = !matches!(protocol, UdpProtocol::Tftp(..));
    let started = Instant::now();
    let mut exchange = Exchange {
        fail: None,
        reported_by: None,
        details: Vec::new(),
        elapsed: None,
    };
    match ask(server, &request, connected, deadline, |reply| {
        answers(protocol, nonce, reply)
    })
    .await
    {
        Ok(reply) => {
            let received = jiff::Timestamp::now();
            exchange.elapsed = Some(started.elapsed());
            if let UdpProtocol::Tftp(..) = protocol {
                // End the transfer the answer may have begun.
                tftp::abort(server, &reply.1).await;
            }
            match judge(protocol, nonce, &reply.0, sent, received) {
                Ok(details) => exchange.details = details,
                Err(message) => exchange.fail = Some((Reason::ProtocolMismatch, message)),
            }
        }
        Err(failure) => {
            exchange.reported_by = failure.reported_by;
            exchange.elapsed = failure.elapsed;
            let text = message(server, protocol.name(), &failure, timeout);
            exchange.fail = Some((failure.reason, text));
        }
    }
    exchange
}

/// A failed exchange with a `service` in words.
pub(crate) fn message(
    server: SocketAddr,
    service: &str,
    failure: &crate::connect::Failure,
    timeout: Duration,
) -> String {
    let (ip, port) = (server.ip(), server.port());
    let mut text = match failure.reason {
        Reason::NoResponse => format!(
            "no answer from {ip} udp port {port} within {} (packets dropped, {} not running, or nothing listens and ICMP is filtered)",
            crate::duration::format(timeout),
            service
        ),
        Reason::Refused => {
            format!("nothing listens on udp port {port} of {ip} (ICMP port unreachable)")
        }
        Reason::HostUnreachable => format!("host {ip} is unreachable"),
        Reason::NetworkUnreachable => format!("network of {ip} is unreachable"),
        Reason::AdminProhibited => format!("udp port {port} of {ip} is rejected by a firewall"),
        _ => format!("could not ask {ip} udp port {port}"),
    };
    if failure.reason == Reason::NoResponse && service == "snmp" {
        // Agents ignore a wrong community rather than refuse it.
        text.push_str("; an SNMP agent does not answer a wrong community");
    }
    if !failure.detail.is_empty() && failure.reason != Reason::Refused {
        text = format!("{text}: {}", failure.detail);
    }
    if let Some(sender) = failure.reported_by {
        text = format!("{text}, reported by {sender}");
    }
    text
}

/// Sends `request` to `server` and waits for a datagram from it that
/// `accept` takes: its bytes and the port it came from. The socket queues
/// ICMP errors, so a refusal or an unreachable host comes back with its
/// reason and sender.
pub(crate) async fn ask(
    server: SocketAddr,
    request: &[u8],
    connected: bool,
    deadline: Instant,
    accept: impl Fn(&[u8]) -> bool,
) -> Result<(Vec<u8>, u16), crate::connect::Failure> {
    use crate::connect::{Failure, failure_from, queue_icmp_errors};
    let socket = Socket::new(
        Domain::for_address(server),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )
    .map_err(|error| Failure::local("cannot create a UDP socket", &error))?;
    queue_icmp_errors(&socket, server);
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    socket
        .bind(&local.into())
        .map_err(|error| Failure::local("cannot bind a UDP socket", &error))?;
    if connected {
        socket
            .connect(&server.into())
            .map_err(|error| Failure::local("cannot address the server", &error))?;
    }
    let std: std::net::UdpSocket = socket.into();
    let socket = tokio::net::UdpSocket::from_std(std)
        .map_err(|error| Failure::local("cannot use a UDP socket", &error))?;
    let started = std::time::Instant::now();
    let sent = if connected {
        socket.send(request).await
    } else {
        socket.send_to(request, server).await
    };
    if let Err(error) = sent {
        return Err(failure_from(
            &socket2::SockRef::from(&socket),
            &error,
            started,
        ));
    }
    let mut buf = vec![0u8; 65_535];
    loop {
        match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                if from.ip() == server.ip() && accept(&buf[..n]) {
                    return Ok((buf[..n].to_vec(), from.port()));
                }
            }
            Ok(Err(error)) => {
                return Err(failure_from(
                    &socket2::SockRef::from(&socket),
                    &error,
                    started,
                ));
            }
            Err(_) => {
                return Err(Failure {
                    reason: Reason::NoResponse,
                    detail: String::new(),
                    reported_by: None,
                    elapsed: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn answer_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            parse_untrusted(&data);
        }
    }

    #[test]
    fn strays_are_told_from_answers_by_their_id() {
        let nonce = 0xabcd_1234;
        assert!(answers(&UdpProtocol::Dns, nonce, &[0x12, 0x34, 0x81]));
        assert!(!answers(&UdpProtocol::Dns, nonce, &[0x12, 0x35, 0x81]));
        assert!(!answers(&UdpProtocol::NetbiosNs, nonce, &[0x12]));
        assert!(answers(&UdpProtocol::Ntp, nonce, b"anything"));
        assert_eq!(UdpProtocol::Snmp(None).default_port(), Some(161));
        assert_eq!(UdpProtocol::Custom(vec![1], None).default_port(), None);
    }
}
