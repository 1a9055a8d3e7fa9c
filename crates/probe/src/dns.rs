//! DNS sensors: one query for a record type at a name server — over UDP
//! (again over TCP when the answer is truncated), TCP, or DNS over TLS —
//! judged by its RCODE and its records. Messages are built and parsed by
//! hickory-proto; the sockets, deadlines and verdicts are portwatch's.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::time::Instant;

use crate::Reason;
use crate::proto::session::{Fail, Frame, SHOWN, Session, show};
use crate::proto::tls::{self, TlsReport, TlsSettings};

/// The record types a DNS sensor asks for.
pub const TYPES: [&str; 10] = [
    "A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV", "CAA", "PTR",
];

/// The RCODEs a DNS sensor may expect.
pub const RCODES: [&str; 6] = [
    "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "NOTIMP", "FORMERR",
];

/// How the query travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// UDP, again over TCP when the answer is truncated (port 53).
    #[default]
    Udp,
    /// TCP (port 53).
    Tcp,
    /// DNS over TLS (port 853).
    Tls,
}

impl Transport {
    /// Parses `udp`, `tcp` or `tls` (`dot`).
    pub fn parse(text: &str) -> Result<Transport, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            "tls" | "dot" => Ok(Transport::Tls),
            _ => Err(format!(
                "unknown transport '{}': use udp, tcp or tls",
                crate::text::visible(text)
            )),
        }
    }

    /// The port a server listens on for this transport.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 853,
            Transport::Udp | Transport::Tcp => 53,
        }
    }
}

/// What a DNS sensor asks and expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOptions {
    /// The name asked about (ASCII, with its final dot).
    pub name: String,
    /// The record type.
    pub record: RecordType,
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// The values that must come back (empty: any answer).
    pub expect: Vec<String>,
    /// Every expected value must come back (else: any one of them).
    pub expect_all: bool,
    /// The RCODE that must come back.
    pub rcode: ResponseCode,
    /// Ask for recursion.
    pub recursion: bool,
    /// DNS over TLS: verification, server name and CA file.
    pub tls: TlsSettings,
    /// Ask the system's resolver (the first `nameserver` of
    /// /etc/resolv.conf) instead of the target.
    pub system: bool,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            name: ".".into(),
            record: RecordType::A,
            transport: Transport::Udp,
            expect: Vec::new(),
            expect_all: false,
            rcode: ResponseCode::NoError,
            recursion: true,
            tls: TlsSettings {
                verify: true,
                sni: None,
                ca_file: None,
                warn_days: 14,
            },
            system: false,
        }
    }
}

/// The system's resolver: the first `nameserver` of /etc/resolv.conf, on
/// port 53.
pub fn system_server() -> Result<SocketAddr, String> {
    let (config, _) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| format!("cannot read the system's resolver from /etc/resolv.conf: {e}"))?;
    config
        .name_servers()
        .first()
        .map(|server| SocketAddr::new(server.ip, 53))
        .ok_or_else(|| "/etc/resolv.conf names no nameserver".to_owned())
}

/// A name to ask about: a host name (underscores allowed, as in SRV
/// names), or an IP address, which a PTR query turns into its reverse name.
pub fn parse_name(text: &str, record: RecordType) -> Result<String, String> {
    let text = text.trim();
    if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
        if record == RecordType::PTR {
            return Ok(Name::from(ip).to_ascii());
        }
        return Err(format!(
            "'{text}' is an address, not a name: ask for record = \"PTR\" to look it up"
        ));
    }
    match crate::target::parse_bare_host(text) {
        Ok(crate::Host::Name(name)) => Ok(format!("{name}.")),
        Ok(crate::Host::Ip(_)) | Err(_) => Err(format!(
            "'{}' is not a DNS name: write e.g. \"www.example.com\"",
            crate::text::visible(text)
        )),
    }
}

/// A record type of [`TYPES`].
pub fn parse_type(text: &str) -> Result<RecordType, String> {
    let upper = text.trim().to_ascii_uppercase();
    if TYPES.contains(&upper.as_str()) {
        upper.parse::<RecordType>().map_err(|e| e.to_string())
    } else {
        Err(format!(
            "unknown record type '{}': use {}",
            crate::text::visible(text),
            TYPES.join(", ")
        ))
    }
}

/// An RCODE of [`RCODES`].
pub fn parse_rcode(text: &str) -> Result<ResponseCode, String> {
    match text.trim().to_ascii_uppercase().as_str() {
        "NOERROR" => Ok(ResponseCode::NoError),
        "NXDOMAIN" => Ok(ResponseCode::NXDomain),
        "SERVFAIL" => Ok(ResponseCode::ServFail),
        "REFUSED" => Ok(ResponseCode::Refused),
        "NOTIMP" => Ok(ResponseCode::NotImp),
        "FORMERR" => Ok(ResponseCode::FormErr),
        _ => Err(format!(
            "unknown rcode '{}': use {}",
            crate::text::visible(text),
            RCODES.join(", ")
        )),
    }
}

/// An RCODE's name as dig prints it.
pub fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// The query's bytes.
pub fn query_bytes(id: u16, options: &DnsOptions) -> Result<Vec<u8>, String> {
    let name = Name::from_ascii(&options.name).map_err(|e| format!("bad name: {e}"))?;
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = options.recursion;
    message.add_query(Query::query(name, options.record));
    message
        .to_vec()
        .map_err(|e| format!("cannot build the query: {e}"))
}

/// A value as compared: lowercase, no final dots, single spaces (TXT
/// values are compared as they are).
fn normal(value: &str, record: RecordType) -> String {
    if record == RecordType::TXT {
        return value.to_owned();
    }
    if let Ok(ip) = value.trim().parse::<IpAddr>() {
        return ip.to_string();
    }
    value
        .split_whitespace()
        .map(|word| word.trim_end_matches('.').to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an answer held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The RCODE.
    pub rcode: ResponseCode,
    /// The values of the records of the asked type in the answer section.
    pub values: Vec<String>,
    /// The SOA serial, from the answer or the authority section.
    pub serial: Option<u32>,
    /// Whether the server is authoritative for the name.
    pub authoritative: bool,
    /// Whether the answer was cut to fit UDP.
    pub truncated: bool,
}

/// A record's value as a user writes it.
fn value(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect::<String>(),
        other => other.to_string(),
    }
}

/// Parses a response to query `id`; `Err` when it is not one.
pub fn parse_answer(bytes: &[u8], id: u16, record: RecordType) -> Result<Answer, String> {
    let message = Message::from_vec(bytes)
        .map_err(|e| format!("not a DNS message ({e}): '{}'", show(bytes, SHOWN)))?;
    if message.metadata.id != id {
        return Err(format!(
            "an answer to another query (id {}, expected {id})",
            message.metadata.id
        ));
    }
    let values = message
        .answers
        .iter()
        .filter(|r| r.record_type() == record)
        .map(|r| value(&r.data))
        .collect();
    let serial = message
        .answers
        .iter()
        .chain(message.authorities.iter())
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        });
    Ok(Answer {
        rcode: message.metadata.response_code,
        values,
        serial,
        authoritative: message.metadata.authoritative,
        truncated: message.metadata.truncation,
    })
}

/// Judges an answer: the details to report, or why it is not the expected
/// one (reason `unexpected_answer`, with what came back).
pub fn judge(answer: &Answer, options: &DnsOptions) -> Result<Vec<(&'static str, String)>, String> {
    let rcode = rcode_name(answer.rcode);
    let kind = options.record.to_string();
    let shown = |values: &[String]| {
        let text = values.join(", ");
        show(text.as_bytes(), 4 * SHOWN)
    };
    let mut details = vec![("rcode", rcode.clone())];
    if !answer.values.is_empty() {
        details.push(("answers", shown(&answer.values)));
    }
    if let Some(serial) = answer.serial {
        details.push(("serial", serial.to_string()));
    }
    if answer.authoritative {
        details.push(("authoritative", "yes".into()));
    }
    if answer.rcode != options.rcode {
        return Err(format!(
            "{rcode} for {kind} {}, expected {}",
            options.name,
            rcode_name(options.rcode)
        ));
    }
    if options.rcode != ResponseCode::NoError {
        return Ok(details);
    }
    if answer.values.is_empty() {
        return Err(format!(
            "no {kind} record for {} (NOERROR, empty)",
            options.name
        ));
    }
    let got: Vec<String> = answer
        .values
        .iter()
        .map(|v| normal(v, options.record))
        .collect();
    let present = |wanted: &String| got.contains(&normal(wanted, options.record));
    let fits = if options.expect.is_empty() {
        true
    } else if options.expect_all {
        options.expect.iter().all(present)
    } else {
        options.expect.iter().any(present)
    };
    if !fits {
        let which = if options.expect_all && options.expect.len() > 1 {
            "all of"
        } else if options.expect.len() > 1 {
            "one of"
        } else {
            ""
        };
        return Err(format!(
            "{kind} {} is {}, expected {which}{}{}",
            options.name,
            shown(&answer.values),
            if which.is_empty() { "" } else { " " },
            shown(&options.expect)
        ));
    }
    Ok(details)
}

/// A TCP DNS message: two bytes of length, then the message.
pub fn tcp_frame(bytes: &[u8]) -> Frame<Vec<u8>> {
    if bytes.len() < 2 {
        return Frame::Need;
    }
    let length = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    if bytes.len() < 2 + length {
        return Frame::Need;
    }
    Frame::Got(bytes[2..2 + length].to_vec(), 2 + length)
}

/// Runs every parser of untrusted DNS bytes: the property tests and the
/// fuzz target call it with arbitrary input.
pub fn parse_untrusted(data: &[u8]) {
    drop(tcp_frame(data));
    if let Ok(answer) = parse_answer(data, 0x1234, RecordType::A) {
        drop(judge(&answer, &DnsOptions::default()));
    }
}

/// The outcome of a query.
#[derive(Debug)]
pub struct Exchange {
    /// The verdict's failure, if any.
    pub fail: Option<Fail>,
    /// What the answer said.
    pub details: Vec<(&'static str, String)>,
    /// The transport used in the end (`dns`, `dns+tcp`, `dns+tls`).
    pub protocol: &'static str,
    /// Query sent to answer received.
    pub elapsed: Option<Duration>,
    /// DNS over TLS: the handshake and certificate.
    pub tls: Option<TlsReport>,
}

/// Asks `server` and judges the answer before `deadline`.
pub async fn exchange(
    server: SocketAddr,
    host: &str,
    options: &DnsOptions,
    deadline: Instant,
    timeout: Duration,
) -> Exchange {
    let id: u16 = rand::random();
    let mut exchange = Exchange {
        fail: None,
        details: Vec::new(),
        protocol: "dns",
        elapsed: None,
        tls: None,
    };
    let query = match query_bytes(id, options) {
        Ok(query) => query,
        Err(message) => {
            exchange.fail = Some(Fail {
                reason: Reason::LocalError,
                message,
            });
            return exchange;
        }
    };
    let started = Instant::now();
    let mut reply = match options.transport {
        Transport::Udp => udp(server, &query, id, deadline, timeout).await,
        Transport::Tcp | Transport::Tls => Err(Fail::mismatch(String::new())),
    };
    let truncated = matches!(&reply, Ok(bytes) if parse_answer(bytes, id, options.record).is_ok_and(|a| a.truncated));
    if options.transport != Transport::Udp || truncated {
        exchange.protocol = if options.transport == Transport::Tls {
            "dns+tls"
        } else {
            "dns+tcp"
        };
        let over = stream(server, host, &query, options, deadline, timeout).await;
        exchange.tls = over.1;
        reply = over.0;
    }
    exchange.elapsed = Some(started.elapsed());
    let bytes = match reply {
        Ok(bytes) => bytes,
        Err(fail) => {
            exchange.fail = Some(fail);
            return exchange;
        }
    };
    let verdict = parse_answer(&bytes, id, options.record)
        .map_err(Fail::mismatch)
        .and_then(|answer| {
            judge(&answer, options).map_err(|message| Fail {
                reason: Reason::UnexpectedAnswer,
                message,
            })
        });
    match verdict {
        Ok(details) => exchange.details = details,
        Err(fail) => exchange.fail = Some(fail),
    }
    exchange
}

/// Sends the query over UDP and waits for the answer with its id (others
/// are late answers to earlier queries, or strays).
async fn udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, Fail> {
    let answer = crate::udp::ask(server, query, true, deadline, |reply| {
        reply.len() >= 2 && reply[..2] == id.to_be_bytes()
    })
    .await;
    answer.map(|(bytes, _)| bytes).map_err(|failure| Fail {
        reason: failure.reason,
        message: crate::udp::message(server, "dns", &failure, timeout),
    })
}

/// Sends the query over TCP (and TLS when asked) and reads the answer.
async fn stream(
    server: SocketAddr,
    host: &str,
    query: &[u8],
    options: &DnsOptions,
    deadline: Instant,
    timeout: Duration,
) -> (Result<Vec<u8>, Fail>, Option<TlsReport>) {
    let connected = tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(server)).await;
    let tcp = match connected {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => {
            let reason = error
                .raw_os_error()
                .map_or(Reason::LocalError, crate::connect::reason_from_errno);
            let message = format!("{} tcp port {}: {error}", server.ip(), server.port());
            return (Err(Fail { reason, message }), None);
        }
        Err(_) => {
            let message = format!(
                "no answer from {} tcp port {} within {}",
                server.ip(),
                server.port(),
                crate::duration::format(timeout)
            );
            let fail = Fail {
                reason: Reason::Timeout,
                message,
            };
            return (Err(fail), None);
        }
    };
    let mut session = Session::new(tcp, deadline, timeout, 65_537);
    let mut report = None;
    if options.transport == Transport::Tls {
        match tls::handshake(&mut session, host, &options.tls, &[b"dot"]).await {
            Ok(tls) => report = Some(tls),
            Err(fail) => return (Err(fail), None),
        }
    }
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    let answer = async {
        session.send(&framed).await?;
        session.frame("a DNS answer", tcp_frame).await
    }
    .await;
    (answer, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::{MessageType, OpCode};
    use hickory_resolver::proto::rr::Record;
    use hickory_resolver::proto::rr::rdata::{A, MX, SOA, TXT};

    fn response(id: u16, rcode: ResponseCode, answers: Vec<Record>) -> Vec<u8> {
        let mut message = Message::new(id, MessageType::Response, OpCode::Query);
        message.metadata.response_code = rcode;
        message.answers = answers;
        message.to_vec().unwrap()
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn options(record: RecordType, expect: &[&str], all: bool) -> DnsOptions {
        DnsOptions {
            name: "www.example.com.".into(),
            record,
            expect: expect.iter().map(|s| (*s).to_owned()).collect(),
            expect_all: all,
            ..DnsOptions::default()
        }
    }

    #[test]
    fn answers_are_judged_by_rcode_and_values() {
        let a = |ip: [u8; 4]| {
            Record::from_rdata(
                name("www.example.com."),
                300,
                RData::A(A::from(std::net::Ipv4Addr::from(ip))),
            )
        };
        let bytes = response(
            7,
            ResponseCode::NoError,
            vec![a([192, 0, 2, 10]), a([192, 0, 2, 11])],
        );
        let answer = parse_answer(&bytes, 7, RecordType::A).unwrap();
        assert_eq!(answer.values, vec!["192.0.2.10", "192.0.2.11"]);
        let details = judge(&answer, &options(RecordType::A, &["192.0.2.11"], false)).unwrap();
        assert!(details.contains(&("answers", "192.0.2.10, 192.0.2.11".into())));
        assert!(
            judge(
                &answer,
                &options(RecordType::A, &["192.0.2.10", "192.0.2.99"], false)
            )
            .is_ok()
        );
        assert_eq!(
            judge(
                &answer,
                &options(RecordType::A, &["192.0.2.10", "192.0.2.99"], true)
            )
            .unwrap_err(),
            "A www.example.com. is 192.0.2.10, 192.0.2.11, expected all of 192.0.2.10, 192.0.2.99"
        );
        assert_eq!(
            judge(&answer, &options(RecordType::A, &["192.0.2.99"], false)).unwrap_err(),
            "A www.example.com. is 192.0.2.10, 192.0.2.11, expected 192.0.2.99"
        );
        // Any answer will do without expectations; none will not.
        assert!(judge(&answer, &options(RecordType::A, &[], false)).is_ok());
        let empty = parse_answer(
            &response(7, ResponseCode::NoError, vec![]),
            7,
            RecordType::A,
        )
        .unwrap();
        assert!(
            judge(&empty, &options(RecordType::A, &[], false))
                .unwrap_err()
                .contains("no A record")
        );
        // RCODEs.
        let nx = parse_answer(
            &response(7, ResponseCode::NXDomain, vec![]),
            7,
            RecordType::A,
        )
        .unwrap();
        assert_eq!(
            judge(&nx, &options(RecordType::A, &[], false)).unwrap_err(),
            "NXDOMAIN for A www.example.com., expected NOERROR"
        );
        let gone = DnsOptions {
            rcode: ResponseCode::NXDomain,
            ..options(RecordType::A, &[], false)
        };
        assert!(judge(&nx, &gone).is_ok());
        // Not an answer to this query.
        assert!(
            parse_answer(&bytes, 8, RecordType::A)
                .unwrap_err()
                .contains("another query")
        );
        assert!(parse_answer(b"\x00\x07garbage", 7, RecordType::A).is_err());
    }

    #[test]
    fn names_mail_exchangers_text_and_serials_compare_as_written() {
        let mx = Record::from_rdata(
            name("example.com."),
            300,
            RData::MX(MX::new(10, name("Mail.Example.com."))),
        );
        let answer = parse_answer(
            &response(1, ResponseCode::NoError, vec![mx]),
            1,
            RecordType::MX,
        )
        .unwrap();
        assert!(
            judge(
                &answer,
                &options(RecordType::MX, &["10 mail.example.com"], false)
            )
            .is_ok()
        );
        assert!(
            judge(
                &answer,
                &options(RecordType::MX, &["20 mail.example.com"], false)
            )
            .is_err()
        );
        let txt = Record::from_rdata(
            name("example.com."),
            300,
            RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()])),
        );
        let answer = parse_answer(
            &response(1, ResponseCode::NoError, vec![txt]),
            1,
            RecordType::TXT,
        )
        .unwrap();
        assert_eq!(answer.values, vec!["v=spf1 -all"]);
        assert!(judge(&answer, &options(RecordType::TXT, &["v=spf1 -all"], false)).is_ok());
        assert!(judge(&answer, &options(RecordType::TXT, &["V=SPF1 -ALL"], false)).is_err());
        let soa = Record::from_rdata(
            name("example.com."),
            300,
            RData::SOA(SOA::new(
                name("ns1.example.com."),
                name("admin.example.com."),
                2026120201,
                3600,
                600,
                86400,
                300,
            )),
        );
        let answer = parse_answer(
            &response(1, ResponseCode::NoError, vec![soa]),
            1,
            RecordType::SOA,
        )
        .unwrap();
        assert_eq!(answer.serial, Some(2026120201));
        let details = judge(&answer, &options(RecordType::SOA, &[], false)).unwrap();
        assert!(details.contains(&("serial", "2026120201".into())));
    }

    #[test]
    fn names_types_rcodes_and_transports_are_checked_before_any_packet() {
        assert_eq!(
            parse_name("www.example.com", RecordType::A).unwrap(),
            "www.example.com."
        );
        assert_eq!(
            parse_name("_sip._tcp.example.com.", RecordType::SRV).unwrap(),
            "_sip._tcp.example.com."
        );
        assert_eq!(
            parse_name("192.0.2.10", RecordType::PTR).unwrap(),
            "10.2.0.192.in-addr.arpa."
        );
        assert!(
            parse_name("192.0.2.10", RecordType::A)
                .unwrap_err()
                .contains("PTR")
        );
        assert!(parse_name("a b", RecordType::A).is_err());
        assert_eq!(parse_type("aaaa"), Ok(RecordType::AAAA));
        assert!(parse_type("AXFR").unwrap_err().contains("use A, AAAA"));
        assert_eq!(parse_rcode("nxdomain"), Ok(ResponseCode::NXDomain));
        assert!(parse_rcode("YXDOMAIN").is_err());
        assert_eq!(Transport::parse("DoT"), Ok(Transport::Tls));
        assert!(Transport::parse("quic").is_err());
        assert_eq!(Transport::Tls.default_port(), 853);
    }

    #[test]
    fn tcp_frames() {
        assert_eq!(tcp_frame(b"\x00"), Frame::Need);
        assert_eq!(tcp_frame(b"\x00\x03ab"), Frame::Need);
        assert_eq!(tcp_frame(b"\x00\x03abcd"), Frame::Got(b"abc".to_vec(), 5));
    }

    #[test]
    fn the_query_asks_for_the_name_and_type_with_recursion() {
        let bytes = query_bytes(0xbeef, &options(RecordType::MX, &[], false)).unwrap();
        let message = Message::from_vec(&bytes).unwrap();
        assert_eq!(message.metadata.id, 0xbeef);
        assert!(message.metadata.recursion_desired);
        assert_eq!(message.queries[0].query_type(), RecordType::MX);
        assert_eq!(message.queries[0].name().to_ascii(), "www.example.com.");
    }
}
