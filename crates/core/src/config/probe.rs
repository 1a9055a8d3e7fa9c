//! The protocol-check settings of a sensor: inherited like the others
//! (`[defaults] mode = "auto"` makes every sensor speak its protocol),
//! validated where they are written, and turned into the probe's options.

use serde::{Deserialize, Serialize};

use portwatch_probe::proto::{self, Mode, ProtoOptions, TlsMode, expect};

/// One send/expect step as written: exactly one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepSpec {
    /// Bytes to send (escapes: \r \n \t \0 \\ \xNN; `${1}` reuses a capture).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Text to wait for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// A regular expression to wait for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_regex: Option<String>,
}

/// Protocol-check settings as declared at one level; `None` inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeOverrides {
    /// `connect` or `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// A protocol name (any port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// `none`, `implicit` or `starttls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// Do not verify certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// The TLS server name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// A PEM file of trusted CAs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Days before expiry that warn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_warn_days: Option<u32>,
    /// HEAD or GET.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// The HTTP path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
    /// Accepted HTTP statuses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<Vec<u16>>,
    /// Send/expect steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepSpec>>,
    /// Sent before closing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quit: Option<String>,
    /// The most bytes read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u32>,
}

impl ProbeOverrides {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == ProbeOverrides::default()
    }

    /// `self` over `base`.
    pub fn over(&self, base: &ProbeOverrides) -> ProbeOverrides {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        ProbeOverrides {
            mode: pick(&self.mode, &base.mode),
            protocol: pick(&self.protocol, &base.protocol),
            tls: pick(&self.tls, &base.tls),
            insecure: pick(&self.insecure, &base.insecure),
            sni: pick(&self.sni, &base.sni),
            ca_file: pick(&self.ca_file, &base.ca_file),
            cert_warn_days: pick(&self.cert_warn_days, &base.cert_warn_days),
            http_method: pick(&self.http_method, &base.http_method),
            http_path: pick(&self.http_path, &base.http_path),
            http_status: pick(&self.http_status, &base.http_status),
            steps: pick(&self.steps, &base.steps),
            quit: pick(&self.quit, &base.quit),
            max_bytes: pick(&self.max_bytes, &base.max_bytes),
        }
    }

    /// The probe's options; `None` for a plain connect check. The error
    /// names the key and the fix.
    pub fn options(&self) -> Result<Option<ProtoOptions>, (&'static str, String)> {
        let mut options = ProtoOptions::default();
        if let Some(mode) = &self.mode {
            options.mode = Mode::parse(mode).ok_or((
                "mode",
                format!("unknown mode '{mode}': use connect or auto"),
            ))?;
        }
        if let Some(name) = &self.protocol {
            options.protocol = Some(proto::Protocol::parse(name).ok_or((
                "protocol",
                format!("unknown protocol '{name}': use one of {}", proto::names()),
            ))?);
        }
        if let Some(tls) = &self.tls {
            options.tls = Some(TlsMode::parse(tls).ok_or((
                "tls",
                format!("unknown tls '{tls}': use none, implicit or starttls"),
            ))?);
        }
        options.tls_settings.verify = !self.insecure.unwrap_or(false);
        if let Some(sni) = &self.sni {
            portwatch_probe::proto::tls::check_sni(sni).map_err(|e| ("sni", e))?;
        }
        options.tls_settings.sni.clone_from(&self.sni);
        options.tls_settings.ca_file = self.ca_file.as_ref().map(Into::into);
        if let Some(days) = self.cert_warn_days {
            options.tls_settings.warn_days = days;
        }
        if let Some(method) = &self.http_method {
            let upper = method.to_ascii_uppercase();
            if upper != "HEAD" && upper != "GET" {
                return Err((
                    "http_method",
                    format!("unknown HTTP method '{method}': use HEAD or GET"),
                ));
            }
            options.http.method = upper;
        }
        if let Some(path) = &self.http_path {
            portwatch_probe::proto::http::check_path(path).map_err(|e| ("http_path", e))?;
            options.http.path.clone_from(path);
        }
        if let Some(statuses) = &self.http_status {
            if let Some(bad) = statuses.iter().find(|s| !(100..=999).contains(*s)) {
                return Err((
                    "http_status",
                    format!("{bad} is not an HTTP status: use 100 to 999"),
                ));
            }
            options.http.expect_status.clone_from(statuses);
        }
        if let Some(max) = self.max_bytes {
            if !(16..=1 << 24).contains(&max) {
                return Err(("max_bytes", "max_bytes must be from 16 to 16777216".into()));
            }
            options.max_bytes = max as usize;
        }
        for step in self.steps.iter().flatten() {
            let step = match (&step.send, &step.expect, &step.expect_regex) {
                (Some(send), None, None) => {
                    expect::Step::Send(expect::unescape(send).map_err(|e| ("steps", e))?)
                }
                (None, Some(text), None) => {
                    expect::Step::Expect(expect::unescape(text).map_err(|e| ("steps", e))?)
                }
                (None, None, Some(re)) => {
                    expect::Step::ExpectRegex(expect::regex(re).map_err(|e| ("steps", e))?)
                }
                _ => {
                    return Err((
                        "steps",
                        "each step has exactly one of send, expect or expect_regex".into(),
                    ));
                }
            };
            options.steps.push(step);
        }
        if let Some(quit) = &self.quit {
            options.quit = Some(expect::unescape(quit).map_err(|e| ("quit", e))?);
        }
        match options.conflict() {
            Some(proto::Conflict::StepsAndProtocol) => Err((
                "steps",
                "steps define a conversation of their own: drop 'protocol', or drop the steps"
                    .into(),
            )),
            Some(proto::Conflict::NoStarttls(protocol)) => Err((
                "tls",
                format!(
                    "{} has no STARTTLS: use tls = \"implicit\", or a protocol with STARTTLS ({})",
                    protocol.as_str(),
                    proto::starttls_names()
                ),
            )),
            None => Ok((!options.connect_only()).then_some(options)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inheritance_and_validation() {
        let defaults = ProbeOverrides {
            mode: Some("auto".into()),
            cert_warn_days: Some(30),
            ..ProbeOverrides::default()
        };
        let sensor = ProbeOverrides {
            protocol: Some("https".into()),
            http_status: Some(vec![200, 204]),
            ..ProbeOverrides::default()
        };
        let options = sensor.over(&defaults).options().unwrap().unwrap();
        assert_eq!(options.tls_settings.warn_days, 30);
        assert_eq!(options.plan(8443).map(|p| p.tls), Some(TlsMode::Implicit));
        assert_eq!(ProbeOverrides::default().options().unwrap(), None);
        let bad = |o: ProbeOverrides| o.options().unwrap_err();
        assert_eq!(
            bad(ProbeOverrides {
                protocol: Some("gopherx".into()),
                ..Default::default()
            })
            .0,
            "protocol"
        );
        assert_eq!(
            bad(ProbeOverrides {
                steps: Some(vec![StepSpec {
                    send: Some("a".into()),
                    expect: Some("b".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            })
            .1,
            "each step has exactly one of send, expect or expect_regex"
        );
        assert!(
            bad(ProbeOverrides {
                protocol: Some("redis".into()),
                tls: Some("starttls".into()),
                ..Default::default()
            })
            .1
            .contains("redis has no STARTTLS")
        );
    }
}
