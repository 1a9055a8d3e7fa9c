//! A DNS sensor's settings (`kind = "dns"`): the name, record type,
//! expected values and RCODE, and the transport; validated where they are
//! written (portwatch.toml, a form, the API, the command line) and turned
//! into the probe's options.

use serde::{Deserialize, Serialize};

use portwatch_probe::dns::{self, DnsOptions, Transport};
use portwatch_probe::proto::TlsSettings;

/// A DNS sensor's settings as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSpec {
    /// The name to ask about (an address, for PTR).
    pub query: String,
    /// The record type (default A).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Values that must come back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<String>,
    /// Every expected value must come back (default: any one).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expect_all: bool,
    /// The RCODE that must come back (default NOERROR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// udp (default), tcp or tls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Ask for recursion (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recursion: Option<bool>,
    /// `system`: ask the system's resolver (the first nameserver of
    /// /etc/resolv.conf), not the server's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
}

impl DnsSpec {
    /// The probe's options (DNS over TLS verifies with `tls`); the error
    /// names the key at fault and the fix.
    pub fn options(&self, tls: TlsSettings) -> Result<DnsOptions, (&'static str, String)> {
        let record = match &self.record {
            Some(text) => dns::parse_type(text).map_err(|e| ("record", e))?,
            None => dns::parse_type("A").expect("A is a type"),
        };
        if self.query.trim().is_empty() {
            return Err((
                "query",
                "a DNS sensor needs query = \"NAME\": the name to ask about".into(),
            ));
        }
        let name = dns::parse_name(&self.query, record).map_err(|e| ("query", e))?;
        let transport = match &self.transport {
            Some(text) => Transport::parse(text).map_err(|e| ("transport", e))?,
            None => Transport::Udp,
        };
        let rcode = match &self.rcode {
            Some(text) => dns::parse_rcode(text).map_err(|e| ("rcode", e))?,
            None => dns::parse_rcode("NOERROR").expect("NOERROR is an rcode"),
        };
        let mut expect = Vec::new();
        for value in &self.expect {
            let value = value.trim();
            if value.is_empty() || value.len() > 1024 || value.chars().any(char::is_control) {
                return Err((
                    "expect",
                    format!(
                        "'{}' cannot be a record's value: give e.g. \"192.0.2.10\"",
                        portwatch_probe::text::visible(value)
                    ),
                ));
            }
            if matches!(record.to_string().as_str(), "A" | "AAAA")
                && value.parse::<std::net::IpAddr>().is_err()
            {
                return Err((
                    "expect",
                    format!(
                        "'{}' is not an address, and {record} records hold addresses",
                        portwatch_probe::text::visible(value)
                    ),
                ));
            }
            expect.push(value.to_owned());
        }
        if !expect.is_empty() && self.rcode.is_some() && rcode_is_error(&self.rcode) {
            return Err((
                "expect",
                "an answer with an error RCODE has no records: drop 'expect' or 'rcode'".into(),
            ));
        }
        let system = match self.resolver.as_deref().map(str::trim) {
            None => false,
            Some("system") => true,
            Some(other) => {
                return Err((
                    "resolver",
                    format!(
                        "unknown resolver '{}': write resolver = \"system\" to ask the system's resolver, or leave it out to ask the server's host",
                        portwatch_probe::text::visible(other)
                    ),
                ));
            }
        };
        Ok(DnsOptions {
            system,
            name,
            record,
            transport,
            expect,
            expect_all: self.expect_all,
            rcode,
            recursion: self.recursion.unwrap_or(true),
            tls,
        })
    }
}

fn rcode_is_error(rcode: &Option<String>) -> bool {
    rcode
        .as_deref()
        .is_some_and(|r| !r.trim().eq_ignore_ascii_case("NOERROR"))
}

/// The TLS settings of DNS over TLS: verified against the system's CAs
/// unless the sensor's `insecure`, `sni` or `ca_file` say otherwise.
pub fn tls_settings(probe: Option<&super::probe::ProbeOverrides>) -> TlsSettings {
    TlsSettings {
        verify: !probe.and_then(|p| p.insecure).unwrap_or(false),
        sni: probe.and_then(|p| p.sni.clone()),
        ca_file: probe.and_then(|p| p.ca_file.as_ref()).map(Into::into),
        warn_days: probe.and_then(|p| p.cert_warn_days).unwrap_or(14),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(query: &str) -> DnsSpec {
        DnsSpec {
            query: query.into(),
            ..DnsSpec::default()
        }
    }

    #[test]
    fn settings_become_options_and_bad_ones_name_their_key() {
        let options = DnsSpec {
            record: Some("mx".into()),
            expect: vec!["10 mail.example.com".into()],
            transport: Some("tcp".into()),
            ..spec("example.com")
        }
        .options(tls_settings(None))
        .unwrap();
        assert_eq!(options.name, "example.com.");
        assert_eq!(options.record.to_string(), "MX");
        assert_eq!(options.transport, Transport::Tcp);
        assert!(options.recursion && options.tls.verify);
        let key = |s: DnsSpec| s.options(tls_settings(None)).unwrap_err().0;
        assert_eq!(key(spec("")), "query");
        assert_eq!(key(spec("a b")), "query");
        assert_eq!(
            key(DnsSpec {
                record: Some("AXFR".into()),
                ..spec("x.example")
            }),
            "record"
        );
        assert_eq!(
            key(DnsSpec {
                transport: Some("quic".into()),
                ..spec("x.example")
            }),
            "transport"
        );
        assert_eq!(
            key(DnsSpec {
                rcode: Some("YXDOMAIN".into()),
                ..spec("x.example")
            }),
            "rcode"
        );
        assert_eq!(
            key(DnsSpec {
                expect: vec!["mail".into()],
                ..spec("x.example")
            }),
            "expect"
        );
        assert_eq!(
            key(DnsSpec {
                expect: vec!["192.0.2.1".into()],
                rcode: Some("NXDOMAIN".into()),
                ..spec("x.example")
            }),
            "expect"
        );
        let ptr = DnsSpec {
            record: Some("PTR".into()),
            ..spec("192.0.2.10")
        };
        assert_eq!(
            ptr.options(tls_settings(None)).unwrap().name,
            "10.2.0.192.in-addr.arpa."
        );
    }
}
