//! SNMP: a v2c `get` of sysUpTime.0 with a community, or v3 engine
//! discovery (noAuthNoPriv: the agent answers with a Report naming its
//! engine, no credentials needed). A small BER writer and reader.

use crate::proto::Details;
use crate::proto::session::{SHOWN, show};

/// sysUpTime.0: 1.3.6.1.2.1.1.3.0.
const SYS_UPTIME: [u8; 8] = [0x2b, 6, 1, 2, 1, 1, 3, 0];

const INTEGER: u8 = 0x02;
const OCTETS: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const TIMETICKS: u8 = 0x43;
const GET: u8 = 0xa0;
const RESPONSE: u8 = 0xa2;
const REPORT: u8 = 0xa8;

/// One BER element: tag, length, value.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(value);
    out
}

fn integer(value: i64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    // The shortest two's complement form.
    let mut start = 0;
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(INTEGER, &bytes[start..])
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A v2c GetRequest for sysUpTime.0.
pub fn get_uptime(community: &str, request_id: i32) -> Vec<u8> {
    let varbind = tlv(SEQUENCE, &concat(&[tlv(OID, &SYS_UPTIME), tlv(NULL, &[])]));
    let pdu = tlv(
        GET,
        &concat(&[
            integer(i64::from(request_id)),
            integer(0),
            integer(0),
            tlv(SEQUENCE, &varbind),
        ]),
    );
    tlv(
        SEQUENCE,
        &concat(&[integer(1), tlv(OCTETS, community.as_bytes()), pdu]),
    )
}

/// A v3 discovery request: no engine, no user, reportable.
pub fn discovery(message_id: i32) -> Vec<u8> {
    let global = tlv(
        SEQUENCE,
        &concat(&[
            integer(i64::from(message_id)),
            integer(65_507),
            tlv(OCTETS, &[0x04]),
            integer(3),
        ]),
    );
    let usm = tlv(
        SEQUENCE,
        &concat(&[
            tlv(OCTETS, &[]),
            integer(0),
            integer(0),
            tlv(OCTETS, &[]),
            tlv(OCTETS, &[]),
            tlv(OCTETS, &[]),
        ]),
    );
    let pdu = tlv(
        GET,
        &concat(&[
            integer(i64::from(message_id)),
            integer(0),
            integer(0),
            tlv(SEQUENCE, &[]),
        ]),
    );
    let scoped = tlv(
        SEQUENCE,
        &concat(&[tlv(OCTETS, &[]), tlv(OCTETS, &[]), pdu]),
    );
    tlv(
        SEQUENCE,
        &concat(&[integer(3), global, tlv(OCTETS, &usm), scoped]),
    )
}

/// A BER reader over untrusted bytes: every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The next element: its tag and value.
    fn next(&mut self) -> Result<(u8, &'a [u8]), String> {
        let short = || "an SNMP message cut short".to_owned();
        let (&tag, rest) = self.bytes.split_first().ok_or_else(short)?;
        let (&first, rest) = rest.split_first().ok_or_else(short)?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 3 || rest.len() < count {
                return Err("an SNMP length that cannot be read".into());
            }
            let length = rest[..count]
                .iter()
                .fold(0usize, |n, b| (n << 8) | usize::from(*b));
            (length, &rest[count..])
        };
        if rest.len() < length {
            return Err(short());
        }
        let (value, rest) = rest.split_at(length);
        self.bytes = rest;
        Ok((tag, value))
    }

    /// The next element, which must have `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        match self.next()? {
            (found, value) if found == tag => Ok(value),
            (found, _) => Err(format!(
                "expected {what} (tag 0x{tag:02x}), got tag 0x{found:02x}"
            )),
        }
    }

    fn integer(&mut self, what: &str) -> Result<i64, String> {
        let value = self.expect(INTEGER, what)?;
        if value.is_empty() || value.len() > 8 {
            return Err(format!("{what}: an integer of {} bytes", value.len()));
        }
        let negative = value[0] & 0x80 != 0;
        Ok(value.iter().fold(if negative { -1i64 } else { 0 }, |n, b| {
            (n << 8) | i64::from(*b)
        }))
    }
}

fn not_snmp(reply: &[u8], why: String) -> String {
    format!("not an SNMP answer ({why}): '{}'", show(reply, SHOWN))
}

/// SNMP's error-status names (RFC 3416).
fn error_name(status: i64) -> String {
    const NAMES: [&str; 19] = [
        "noError",
        "tooBig",
        "noSuchName",
        "badValue",
        "readOnly",
        "genErr",
        "noAccess",
        "wrongType",
        "wrongLength",
        "wrongEncoding",
        "wrongValue",
        "noCreation",
        "inconsistentValue",
        "resourceUnavailable",
        "commitFailed",
        "undoFailed",
        "authorizationError",
        "notWritable",
        "inconsistentName",
    ];
    usize::try_from(status)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("error {status}"), |n| (*n).to_owned())
}

/// Judges the answer to [`get_uptime`] with `request_id`.
pub fn judge_get(reply: &[u8], request_id: i32) -> Result<Details, String> {
    let inner = |reply: &[u8]| -> Result<Result<Details, String>, String> {
        let mut message = Reader {
            bytes: Reader { bytes: reply }.expect(SEQUENCE, "a message")?,
        };
        let version = message.integer("the version")?;
        message.expect(OCTETS, "the community")?;
        let mut pdu = Reader {
            bytes: message.expect(RESPONSE, "a GetResponse")?,
        };
        let id = pdu.integer("the request id")?;
        if id != i64::from(request_id) {
            return Err(format!("an answer to another request ({id})"));
        }
        let status = pdu.integer("the error status")?;
        pdu.integer("the error index")?;
        if status != 0 {
            return Ok(Err(format!(
                "the agent answered {} (SNMP v{})",
                error_name(status),
                if version == 1 { "2c" } else { "1" }
            )));
        }
        let mut list = Reader {
            bytes: pdu.expect(SEQUENCE, "the variable bindings")?,
        };
        let mut binding = Reader {
            bytes: list.expect(SEQUENCE, "a variable binding")?,
        };
        binding.expect(OID, "an object id")?;
        match binding.next()? {
            (TIMETICKS, value) if !value.is_empty() && value.len() <= 5 => {
                let ticks = value.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
                Ok(Ok(vec![
                    ("version", "2c".into()),
                    (
                        "uptime",
                        crate::duration::format(std::time::Duration::from_secs(ticks / 100)),
                    ),
                ]))
            }
            (0x80..=0x82, _) => Ok(Err("the agent has no sysUpTime.0 (noSuchObject)".into())),
            (tag, _) => Err(format!(
                "sysUpTime.0 of type 0x{tag:02x}, expected TimeTicks"
            )),
        }
    };
    inner(reply).map_err(|why| not_snmp(reply, why))?
}

/// Judges the answer to [`discovery`] with `message_id`: a Report naming
/// the agent's engine.
pub fn judge_discovery(reply: &[u8], message_id: i32) -> Result<Details, String> {
    let inner = |reply: &[u8]| -> Result<Details, String> {
        let mut message = Reader {
            bytes: Reader { bytes: reply }.expect(SEQUENCE, "a message")?,
        };
        let version = message.integer("the version")?;
        if version != 3 {
            return Err(format!("version {version}, expected 3"));
        }
        let mut global = Reader {
            bytes: message.expect(SEQUENCE, "the header")?,
        };
        let id = global.integer("the message id")?;
        if id != i64::from(message_id) {
            return Err(format!("an answer to another request ({id})"));
        }
        let mut usm = Reader {
            bytes: Reader {
                bytes: message.expect(OCTETS, "the security parameters")?,
            }
            .expect(SEQUENCE, "the USM parameters")?,
        };
        let engine = usm.expect(OCTETS, "the engine id")?;
        let boots = usm.integer("the engine boots")?;
        let time = usm.integer("the engine time")?;
        let mut scoped = Reader {
            bytes: message.expect(SEQUENCE, "the scoped PDU")?,
        };
        scoped.expect(OCTETS, "the context engine")?;
        scoped.expect(OCTETS, "the context name")?;
        scoped.expect(REPORT, "a Report")?;
        if engine.is_empty() {
            return Err("a Report without an engine id".into());
        }
        let hex: String = engine.iter().map(|b| format!("{b:02x}")).collect();
        Ok(vec![
            ("version", "3".into()),
            ("engine_id", hex),
            ("engine_boots", boots.to_string()),
            (
                "engine_time",
                crate::duration::format(std::time::Duration::from_secs(time.max(0) as u64)),
            ),
        ])
    };
    inner(reply).map_err(|why| not_snmp(reply, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GetResponse as an agent writes it.
    fn response(request_id: i32, status: i64, value: Vec<u8>) -> Vec<u8> {
        let varbind = tlv(SEQUENCE, &concat(&[tlv(OID, &SYS_UPTIME), value]));
        let pdu = tlv(
            RESPONSE,
            &concat(&[
                integer(i64::from(request_id)),
                integer(status),
                integer(0),
                tlv(SEQUENCE, &varbind),
            ]),
        );
        tlv(
            SEQUENCE,
            &concat(&[integer(1), tlv(OCTETS, b"public"), pdu]),
        )
    }

    #[test]
    fn the_get_request_is_the_one_net_snmp_sends() {
        // snmpget -v2c -c public HOST 1.3.6.1.2.1.1.3.0 with request id 1.
        let expected = [
            0x30, 0x26, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0,
            0x19, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c,
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x03, 0x00, 0x05, 0x00,
        ];
        assert_eq!(get_uptime("public", 1), expected);
        assert_eq!(integer(128), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(-1), vec![0x02, 0x01, 0xff]);
        assert_eq!(tlv(OCTETS, &[0; 200])[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn answers_give_the_uptime_or_say_why_not() {
        let ok = response(7, 0, tlv(TIMETICKS, &[0x01, 0x5f, 0x90]));
        let details = judge_get(&ok, 7).unwrap();
        assert!(details.contains(&("uptime", "15m".into())), "{details:?}");
        assert!(judge_get(&ok, 8).unwrap_err().contains("another request"));
        let denied = response(7, 16, tlv(NULL, &[]));
        assert!(
            judge_get(&denied, 7)
                .unwrap_err()
                .contains("authorizationError")
        );
        let missing = response(7, 0, tlv(0x80, &[]));
        assert!(judge_get(&missing, 7).unwrap_err().contains("noSuchObject"));
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x1b[2Jgarbage",
        ] {
            assert!(
                judge_get(bad, 7)
                    .unwrap_err()
                    .starts_with("not an SNMP answer"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn discovery_reports_name_the_engine() {
        let usm = tlv(
            SEQUENCE,
            &concat(&[
                tlv(OCTETS, &[0x80, 0x00, 0x1f, 0x88, 0x80]),
                integer(3),
                integer(3600),
                tlv(OCTETS, &[]),
                tlv(OCTETS, &[]),
                tlv(OCTETS, &[]),
            ]),
        );
        let global = tlv(
            SEQUENCE,
            &concat(&[integer(42), integer(65_507), tlv(OCTETS, &[0]), integer(3)]),
        );
        let report = tlv(
            REPORT,
            &concat(&[integer(42), integer(0), integer(0), tlv(SEQUENCE, &[])]),
        );
        let scoped = tlv(
            SEQUENCE,
            &concat(&[tlv(OCTETS, &[]), tlv(OCTETS, &[]), report]),
        );
        let reply = tlv(
            SEQUENCE,
            &concat(&[integer(3), global, tlv(OCTETS, &usm), scoped]),
        );
        let details = judge_discovery(&reply, 42).unwrap();
        assert!(
            details.contains(&("engine_id", "80001f8880".into())),
            "{details:?}"
        );
        assert!(
            details.contains(&("engine_time", "1h".into())),
            "{details:?}"
        );
        assert!(judge_discovery(&reply, 43).is_err());
        // Our own request is not a Report.
        assert!(
            judge_discovery(&discovery(42), 42)
                .unwrap_err()
                .contains("Report")
        );
    }
}
