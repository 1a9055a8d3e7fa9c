//! Binary protocols: DNS over TCP, LDAP (BER), SOCKS5, the MySQL/MariaDB
//! greeting, PostgreSQL's SSLRequest and MongoDB's `hello`.

use super::session::{Fail, Frame, SHOWN, Session, show};
use super::{Ctx, Details};
use crate::Reason;

/// A DNS query over TCP for the root's NS records, with this id.
pub fn dns_query(id: u16) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    message.extend_from_slice(&[0, 0, 2, 0, 1]);
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    framed
}

/// A DNS answer over TCP: its response code and answer count.
pub fn parse_dns(bytes: &[u8], id: u16) -> Frame<(String, u16)> {
    let Some(length) = bytes.get(..2) else {
        return Frame::Need;
    };
    let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
    if length < 12 {
        return Frame::Bad(format!("a DNS message of {length} bytes is too short"));
    }
    let Some(message) = bytes.get(2..2 + length) else {
        return Frame::Need;
    };
    if message[..2] != id.to_be_bytes() {
        return Frame::Bad("the DNS answer's id does not match the query".into());
    }
    if message[2] & 0x80 == 0 {
        return Frame::Bad("expected a DNS response, got a query".into());
    }
    let rcode = match message[3] & 0x0f {
        0 => "NOERROR".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        other => format!("RCODE{other}"),
    };
    let answers = u16::from_be_bytes([message[6], message[7]]);
    Frame::Got((rcode, answers), 2 + length)
}

/// DNS: a query over TCP, answered (any response code proves a server).
pub async fn domain(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    let id: u16 = rand::random();
    session.send(&dns_query(id)).await?;
    let (rcode, answers) = session.frame("a DNS answer", |b| parse_dns(b, id)).await?;
    Ok(vec![("rcode", rcode), ("answers", answers.to_string())])
}

/// One BER element: tag, content, bytes used.
pub fn ber(bytes: &[u8]) -> Frame<(u8, &[u8])> {
    let (Some(&tag), Some(&first)) = (bytes.first(), bytes.get(1)) else {
        return Frame::Need;
    };
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Frame::Bad(format!("a BER length of {count} bytes"));
        }
        let Some(raw) = bytes.get(2..2 + count) else {
            return Frame::Need;
        };
        (
            raw.iter().fold(0usize, |n, b| n << 8 | usize::from(*b)),
            2 + count,
        )
    };
    if length > 1 << 20 {
        return Frame::Bad("an LDAP message over 1 MiB".into());
    }
    match bytes.get(header..header + length) {
        Some(content) => Frame::Got((tag, content), header + length),
        None => Frame::Need,
    }
}

/// An LDAP response: (protocol op tag, result code, diagnostic message).
pub fn parse_ldap(bytes: &[u8]) -> Frame<(u8, u8, String)> {
    if bytes.first().is_some_and(|t| *t != 0x30) {
        return Frame::Bad(format!(
            "expected an LDAP message, got '{}'",
            show(bytes, SHOWN)
        ));
    }
    let ((_, message), used) = match ber(bytes) {
        Frame::Got(element, used) => (element, used),
        Frame::Need => return Frame::Need,
        Frame::Bad(m) => return Frame::Bad(m),
    };
    let bad = |what: &str| Frame::Bad(format!("a malformed LDAP message: {what}"));
    let Frame::Got((0x02, _), id_len) = ber(message) else {
        return bad("no message id");
    };
    let Frame::Got((op, body), _) = ber(&message[id_len..]) else {
        return bad("no protocol operation");
    };
    let Frame::Got((0x0a, code), code_len) = ber(body) else {
        return bad("no result code");
    };
    let code = code.last().copied().unwrap_or(0);
    let rest = &body[code_len..];
    let diagnostic = match ber(rest) {
        Frame::Got(_, dn_len) => match ber(&rest[dn_len..]) {
            Frame::Got((_, text), _) => String::from_utf8_lossy(text).into_owned(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    Frame::Got((op, code, diagnostic), used)
}

/// An anonymous simple bind, message id 2.
const LDAP_BIND: &[u8] = &[
    0x30, 0x0c, 0x02, 0x01, 0x02, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
];
/// The StartTLS extended request (OID 1.3.6.1.4.1.1466.20037), message id 1.
const LDAP_STARTTLS: &[u8] = &[
    0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16, b'1', b'.', b'3', b'.', b'6', b'.', b'1',
    b'.', b'4', b'.', b'1', b'.', b'1', b'4', b'6', b'6', b'.', b'2', b'0', b'0', b'3', b'7',
];
/// unbindRequest, message id 3.
const LDAP_UNBIND: &[u8] = &[0x30, 0x05, 0x02, 0x01, 0x03, 0x42, 0x00];

/// LDAP: an anonymous bind answered with a bind response (any result code
/// proves a directory); with STARTTLS, the extended operation first.
pub async fn ldap(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    if ctx.starttls {
        session.send(LDAP_STARTTLS).await?;
        let (op, code, text) = session.frame("an answer to StartTLS", parse_ldap).await?;
        if op != 0x78 || code != 0 {
            return Err(Fail {
                reason: Reason::TlsError,
                message: format!("the directory refused StartTLS (result {code}) {text}"),
            });
        }
        let report = super::tls::handshake(session, ctx.host, ctx.tls, &[]).await?;
        *ctx.tls_report.lock().expect("not poisoned") = Some(report);
    }
    session.send(LDAP_BIND).await?;
    let (op, code, text) = session.frame("a bind response", parse_ldap).await?;
    if op != 0x61 {
        return Err(Fail::mismatch(format!(
            "expected a bind response, got operation 0x{op:02x}"
        )));
    }
    session.quit(LDAP_UNBIND).await;
    let mut details = vec![("bind_result", code.to_string())];
    if !text.is_empty() {
        details.push(("diagnostic", text));
    }
    Ok(details)
}

/// The SOCKS5 method selection answer.
pub fn parse_socks(bytes: &[u8]) -> Frame<String> {
    match bytes {
        [] | [5] => Frame::Need,
        [5, method, ..] => Frame::Got(
            match method {
                0x00 => "no authentication".to_owned(),
                0x02 => "username/password".to_owned(),
                0xff => "no acceptable method".to_owned(),
                other => format!("method {other}"),
            },
            2,
        ),
        _ => Frame::Bad(format!(
            "expected a SOCKS5 answer (0x05), got '{}'",
            show(bytes, SHOWN)
        )),
    }
}

/// SOCKS5: the greeting offering "no authentication" and
/// "username/password" is answered with a method.
pub async fn socks(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    session.send(&[0x05, 0x02, 0x00, 0x02]).await?;
    let method = session.frame("a SOCKS5 answer", parse_socks).await?;
    Ok(vec![("method", method)])
}

/// A MySQL/MariaDB server greeting: the server version, or the error the
/// server sent instead (such as "host is not allowed").
pub fn parse_mysql(bytes: &[u8]) -> Frame<Result<String, String>> {
    let Some(header) = bytes.get(..4) else {
        return Frame::Need;
    };
    let length =
        usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if length == 0 || length > 64 * 1024 {
        return Frame::Bad(format!(
            "expected a MySQL greeting, got '{}'",
            show(bytes, SHOWN)
        ));
    }
    let Some(payload) = bytes.get(4..4 + length) else {
        return Frame::Need;
    };
    match payload[0] {
        0x0a => {
            let end = payload[1..]
                .iter()
                .position(|b| *b == 0)
                .map_or(payload.len(), |e| e + 1);
            Frame::Got(
                Ok(String::from_utf8_lossy(&payload[1..end]).into_owned()),
                4 + length,
            )
        }
        0xff => {
            let code = payload
                .get(1..3)
                .map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
            let text = String::from_utf8_lossy(payload.get(3..).unwrap_or(&[]));
            Frame::Got(
                Err(format!("error {code}: {}", text.trim_start_matches('#'))),
                4 + length,
            )
        }
        other => Frame::Bad(format!("expected MySQL protocol 10, got {other}")),
    }
}

/// MySQL/MariaDB: the server greeting and its version.
pub async fn mysql(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    match session.frame("a MySQL greeting", parse_mysql).await? {
        Ok(version) => Ok(vec![("version", version)]),
        Err(error) => Ok(vec![("error", error)]),
    }
}

/// PostgreSQL's SSLRequest.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The answer to an SSLRequest: `S` (TLS offered), `N`, or an error
/// message (`E…`) from an old server.
pub fn parse_postgres(bytes: &[u8]) -> Frame<char> {
    match bytes.first() {
        None => Frame::Need,
        Some(b'S') => Frame::Got('S', 1),
        Some(b'N') => Frame::Got('N', 1),
        Some(b'E') => Frame::Got('E', bytes.len()),
        Some(_) => Frame::Bad(format!(
            "expected 'S' or 'N' to an SSLRequest, got '{}'",
            show(bytes, SHOWN)
        )),
    }
}

/// PostgreSQL: the SSLRequest answered `S` or `N`; with STARTTLS, `S` and
/// the handshake.
pub async fn postgresql(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    session.send(&SSL_REQUEST).await?;
    let answer = session
        .frame("an answer to SSLRequest", parse_postgres)
        .await?;
    let offered = answer == 'S';
    if ctx.starttls {
        if !offered {
            return Err(Fail {
                reason: Reason::TlsError,
                message: "the PostgreSQL server does not offer TLS".into(),
            });
        }
        let report = super::tls::handshake(session, ctx.host, ctx.tls, &[b"postgresql"]).await?;
        *ctx.tls_report.lock().expect("not poisoned") = Some(report);
    }
    Ok(vec![(
        "tls",
        if offered { "offered" } else { "not offered" }.into(),
    )])
}

/// MongoDB `hello` as an OP_MSG.
pub fn mongodb_hello(request_id: i32) -> Vec<u8> {
    let mut doc = Vec::new();
    doc.push(0x10);
    doc.extend_from_slice(b"hello\0");
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.push(0x02);
    doc.extend_from_slice(b"$db\0");
    doc.extend_from_slice(&6i32.to_le_bytes());
    doc.extend_from_slice(b"admin\0");
    doc.push(0);
    let mut bson = ((doc.len() + 4) as i32).to_le_bytes().to_vec();
    bson.extend_from_slice(&doc);
    let mut body = 0u32.to_le_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&bson);
    let mut message = ((16 + body.len()) as i32).to_le_bytes().to_vec();
    message.extend_from_slice(&request_id.to_le_bytes());
    message.extend_from_slice(&0i32.to_le_bytes());
    message.extend_from_slice(&2013i32.to_le_bytes());
    message.extend_from_slice(&body);
    message
}

/// A BSON value the check reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Bson {
    /// A double.
    Double(f64),
    /// A string.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// An int32 or int64.
    Int(i64),
    /// Anything else.
    Other,
}

/// The top-level fields of a BSON document.
pub fn bson_fields(doc: &[u8]) -> Result<Vec<(String, Bson)>, String> {
    let total = doc
        .get(..4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("a BSON document shorter than 4 bytes")?;
    if total < 5 || total as usize > doc.len() {
        return Err(format!("a BSON length of {total}"));
    }
    let doc = &doc[..total as usize];
    let mut at = 4;
    let mut fields = Vec::new();
    let int = |b: &[u8], at: usize, n: usize| -> Result<i64, String> {
        let bytes = b.get(at..at + n).ok_or("a truncated BSON value")?;
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(bytes);
        Ok(i64::from_le_bytes(buf))
    };
    while at < doc.len() {
        let kind = doc[at];
        if kind == 0 {
            break;
        }
        let name_end = doc[at + 1..]
            .iter()
            .position(|b| *b == 0)
            .ok_or("an unterminated BSON field name")?
            + at
            + 1;
        let name = String::from_utf8_lossy(&doc[at + 1..name_end]).into_owned();
        let value_at = name_end + 1;
        let (value, size) = match kind {
            0x01 => (
                Bson::Double(f64::from_bits(int(doc, value_at, 8)? as u64)),
                8,
            ),
            0x02 => {
                let n = int(doc, value_at, 4)? as usize;
                let text = doc
                    .get(value_at + 4..value_at + 4 + n.saturating_sub(1))
                    .ok_or("a truncated BSON string")?;
                (
                    Bson::Text(String::from_utf8_lossy(text).into_owned()),
                    4 + n,
                )
            }
            0x03 | 0x04 => (Bson::Other, int(doc, value_at, 4)? as usize),
            0x05 => (Bson::Other, 5 + int(doc, value_at, 4)? as usize),
            0x07 => (Bson::Other, 12),
            0x08 => (Bson::Bool(doc.get(value_at) == Some(&1)), 1),
            0x09 | 0x11 => (Bson::Other, 8),
            0x0a => (Bson::Other, 0),
            0x10 => (Bson::Int(int(doc, value_at, 4)? as i32 as i64), 4),
            0x12 => (Bson::Int(int(doc, value_at, 8)?), 8),
            0x13 => (Bson::Other, 16),
            other => return Err(format!("an unknown BSON type 0x{other:02x}")),
        };
        fields.push((name, value));
        at = value_at
            .checked_add(size)
            .filter(|end| *end <= doc.len())
            .ok_or("a BSON value past the document's end")?;
    }
    Ok(fields)
}

/// A MongoDB OP_MSG reply's top-level fields.
pub fn parse_mongodb(bytes: &[u8]) -> Frame<Vec<(String, Bson)>> {
    let Some(header) = bytes.get(..16) else {
        return Frame::Need;
    };
    let length = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let opcode = i32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if !(21..=16 * 1024 * 1024).contains(&length) || opcode != 2013 {
        return Frame::Bad(format!(
            "expected a MongoDB OP_MSG reply, got '{}'",
            show(bytes, SHOWN)
        ));
    }
    let Some(message) = bytes.get(..length as usize) else {
        return Frame::Need;
    };
    if message[20] != 0 {
        return Frame::Bad("expected a body section in the MongoDB reply".into());
    }
    match bson_fields(&message[21..]) {
        Ok(fields) => Frame::Got(fields, length as usize),
        Err(error) => Frame::Bad(format!("a malformed MongoDB reply: {error}")),
    }
}

/// MongoDB: `hello` answered with `ok: 1`.
pub async fn mongodb(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    session
        .send(&mongodb_hello(rand::random::<i32>() & 0x7fff_ffff))
        .await?;
    let fields = session.frame("a MongoDB reply", parse_mongodb).await?;
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let ok = matches!(get("ok"), Some(Bson::Double(v)) if *v == 1.0)
        || matches!(get("ok"), Some(Bson::Int(1)));
    if !ok {
        let error = match get("errmsg") {
            Some(Bson::Text(text)) => text.clone(),
            _ => "no ok: 1".into(),
        };
        return Err(Fail::mismatch(format!(
            "MongoDB answered hello with an error: {error}"
        )));
    }
    let mut details = Vec::new();
    if let Some(Bson::Int(wire)) = get("maxWireVersion") {
        details.push(("max_wire_version", wire.to_string()));
    }
    if let Some(Bson::Bool(primary)) = get("isWritablePrimary").or(get("ismaster")) {
        details.push(("writable_primary", primary.to_string()));
    }
    Ok(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answers() {
        let query = dns_query(0x1234);
        assert_eq!(&query[..4], &[0, 17, 0x12, 0x34]);
        let mut answer = vec![0, 12, 0x12, 0x34, 0x81, 0x85, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_dns(&answer, 0x1234),
            Frame::Got(("REFUSED".into(), 0), 14)
        );
        assert!(matches!(parse_dns(&answer, 0x9999), Frame::Bad(_)));
        answer.truncate(8);
        assert_eq!(parse_dns(&answer, 0x1234), Frame::Need);
    }

    #[test]
    fn ldap_bind_responses() {
        // bindResponse, message 2, resultCode 0 (success), empty DN and text.
        let ok = [
            0x30, 0x0c, 0x02, 0x01, 0x02, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(parse_ldap(&ok), Frame::Got((0x61, 0, String::new()), 14));
        assert_eq!(parse_ldap(&ok[..5]), Frame::Need);
        assert!(matches!(parse_ldap(b"HTTP/1.1"), Frame::Bad(_)));
        assert!(matches!(ber(&[0x30, 0x85, 1, 2, 3, 4, 5]), Frame::Bad(_)));
    }

    #[test]
    fn socks_mysql_postgres() {
        assert_eq!(
            parse_socks(&[5, 0]),
            Frame::Got("no authentication".into(), 2)
        );
        assert!(matches!(parse_socks(&[0, 0x5b]), Frame::Bad(_)));
        let mut greeting = vec![0x0a];
        greeting.extend_from_slice(b"10.11.6-MariaDB\0rest");
        let mut packet = vec![greeting.len() as u8, 0, 0, 0];
        packet.extend_from_slice(&greeting);
        assert_eq!(
            parse_mysql(&packet),
            Frame::Got(Ok("10.11.6-MariaDB".into()), packet.len())
        );
        let error = [
            9, 0, 0, 0, 0xff, 0x6a, 0x04, b'#', b'H', b'o', b's', b't', b'!',
        ];
        assert_eq!(
            parse_mysql(&error),
            Frame::Got(Err("error 1130: Host!".into()), 13)
        );
        assert_eq!(parse_postgres(b"N"), Frame::Got('N', 1));
        assert!(matches!(parse_postgres(b"HTTP"), Frame::Bad(_)));
    }

    #[test]
    fn mongodb_replies() {
        let hello = mongodb_hello(7);
        assert_eq!(
            i32::from_le_bytes(hello[..4].try_into().unwrap()) as usize,
            hello.len()
        );
        // A reply is the same shape: reuse the request's document.
        let mut reply = hello.clone();
        reply[12..16].copy_from_slice(&2013i32.to_le_bytes());
        let Frame::Got(fields, used) = parse_mongodb(&reply) else {
            panic!("not parsed");
        };
        assert_eq!(used, reply.len());
        assert_eq!(fields[0], ("hello".into(), Bson::Int(1)));
        assert_eq!(fields[1], ("$db".into(), Bson::Text("admin".into())));
        assert_eq!(bson_fields(&[5, 0, 0, 0, 0]).unwrap(), vec![]);
        assert!(bson_fields(&[0xff, 0, 0, 0, 0]).is_err());
    }
}
