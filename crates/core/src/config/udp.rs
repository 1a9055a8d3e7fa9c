//! A UDP sensor's settings (`kind = "udp"`): a built-in protocol (dns,
//! ntp, snmp, tftp, netbios-ns) or bytes of its own to send and expect;
//! validated where they are written and turned into the probe's request.

use serde::{Deserialize, Serialize};

use portwatch_probe::udp::{self, UdpProtocol};

/// The file a TFTP check asks for when none is given: its absence is an
/// answer too.
pub const TFTP_PROBE_FILE: &str = "portwatch-probe";

/// A UDP sensor's settings as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UdpSpec {
    /// dns, ntp, snmp, tftp or netbios-ns; none with `send`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// SNMP v2c: the community (default public).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    /// SNMP: 2c (default) or 3 (engine discovery, no credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snmp_version: Option<String>,
    /// TFTP: a file that must exist (default: any answer will do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Bytes to send (escapes \r \n \t \0 \\ \xNN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Bytes the answer must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

impl UdpSpec {
    /// The probe's request; the error names the key at fault and the fix.
    pub fn protocol(&self) -> Result<UdpProtocol, (&'static str, String)> {
        let names = || {
            udp::PROTOCOLS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let only = |key: &'static str, set: bool, protocol: &str| {
            if set {
                Err((
                    key,
                    format!("'{key}' is not a setting of {protocol}: remove it"),
                ))
            } else {
                Ok(())
            }
        };
        let name = self
            .protocol
            .as_deref()
            .map(|p| p.trim().to_ascii_lowercase());
        let protocol = match name.as_deref() {
            None | Some("custom") => {
                let Some(send) = &self.send else {
                    return Err((
                        "protocol",
                        format!(
                            "a UDP sensor needs protocol = one of {}, or send = \"BYTES\"",
                            names()
                        ),
                    ));
                };
                let send =
                    portwatch_probe::proto::expect::unescape(send).map_err(|e| ("send", e))?;
                if send.is_empty() || send.len() > 1400 {
                    return Err(("send", "send 1 to 1400 bytes (one datagram)".into()));
                }
                let expect = self
                    .expect
                    .as_deref()
                    .map(portwatch_probe::proto::expect::unescape)
                    .transpose()
                    .map_err(|e| ("expect", e))?
                    .filter(|e| !e.is_empty());
                UdpProtocol::Custom(send, expect)
            }
            Some(other) => {
                only("send", self.send.is_some(), other)?;
                only("expect", self.expect.is_some(), other)?;
                match other {
                    "dns" => UdpProtocol::Dns,
                    "ntp" => UdpProtocol::Ntp,
                    "netbios-ns" | "netbios" => UdpProtocol::NetbiosNs,
                    "snmp" => match self.snmp_version.as_deref().map(str::trim) {
                        None | Some("2c" | "2") => {
                            let community =
                                self.community.clone().unwrap_or_else(|| "public".into());
                            if community.is_empty()
                                || community.len() > 255
                                || community.chars().any(char::is_control)
                            {
                                return Err((
                                    "community",
                                    "the community is 1 to 255 printable characters".into(),
                                ));
                            }
                            UdpProtocol::Snmp(Some(community))
                        }
                        Some("3") => {
                            only("community", self.community.is_some(), "SNMP v3 discovery")?;
                            UdpProtocol::Snmp(None)
                        }
                        Some(version) => {
                            return Err((
                                "snmp_version",
                                format!("unknown SNMP version '{version}': use \"2c\" or \"3\""),
                            ));
                        }
                    },
                    "tftp" => {
                        let file = self.file.clone();
                        if let Some(file) = &file {
                            udp::tftp::check_file(file).map_err(|e| ("file", e))?;
                        }
                        let must_exist = file.is_some();
                        UdpProtocol::Tftp(
                            file.unwrap_or_else(|| TFTP_PROBE_FILE.into()),
                            must_exist,
                        )
                    }
                    _ => {
                        return Err((
                            "protocol",
                            format!(
                                "unknown UDP protocol '{}': use one of {}, or send = \"BYTES\"",
                                portwatch_probe::text::visible(other),
                                names()
                            ),
                        ));
                    }
                }
            }
        };
        let name = protocol.name();
        if !matches!(protocol, UdpProtocol::Snmp(_)) {
            only("community", self.community.is_some(), name)?;
            only("snmp_version", self.snmp_version.is_some(), name)?;
        }
        if !matches!(protocol, UdpProtocol::Tftp(..)) {
            only("file", self.file.is_some(), name)?;
        }
        Ok(protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(protocol: &str) -> UdpSpec {
        UdpSpec {
            protocol: Some(protocol.into()),
            ..UdpSpec::default()
        }
    }

    #[test]
    fn settings_become_requests_and_bad_ones_name_their_key() {
        assert_eq!(spec("NTP").protocol(), Ok(UdpProtocol::Ntp));
        assert_eq!(
            spec("snmp").protocol(),
            Ok(UdpProtocol::Snmp(Some("public".into())))
        );
        let v3 = UdpSpec {
            snmp_version: Some("3".into()),
            ..spec("snmp")
        };
        assert_eq!(v3.protocol(), Ok(UdpProtocol::Snmp(None)));
        assert_eq!(
            spec("tftp").protocol(),
            Ok(UdpProtocol::Tftp(TFTP_PROBE_FILE.into(), false))
        );
        let custom = UdpSpec {
            send: Some("PING\\n".into()),
            expect: Some("PONG".into()),
            ..UdpSpec::default()
        };
        assert_eq!(
            custom.protocol(),
            Ok(UdpProtocol::Custom(
                b"PING\n".to_vec(),
                Some(b"PONG".to_vec())
            ))
        );
        let key = |s: UdpSpec| s.protocol().unwrap_err().0;
        assert_eq!(key(UdpSpec::default()), "protocol");
        assert_eq!(key(spec("quic")), "protocol");
        assert_eq!(
            key(UdpSpec {
                community: Some("x".into()),
                ..spec("ntp")
            }),
            "community"
        );
        assert_eq!(
            key(UdpSpec {
                file: Some("x".into()),
                ..spec("snmp")
            }),
            "file"
        );
        assert_eq!(
            key(UdpSpec {
                send: Some("x".into()),
                ..spec("ntp")
            }),
            "send"
        );
        assert_eq!(
            key(UdpSpec {
                snmp_version: Some("1".into()),
                ..spec("snmp")
            }),
            "snmp_version"
        );
        assert_eq!(
            key(UdpSpec {
                snmp_version: Some("3".into()),
                community: Some("public".into()),
                ..spec("snmp")
            }),
            "community"
        );
        assert_eq!(
            key(UdpSpec {
                file: Some("a\0b".into()),
                ..spec("tftp")
            }),
            "file"
        );
        assert_eq!(
            key(UdpSpec {
                send: Some("\\q".into()),
                ..UdpSpec::default()
            }),
            "send"
        );
    }
}
