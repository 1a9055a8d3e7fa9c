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

/// `http_auth`: where the credential comes from (read at each check, never
/// stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSpec {
    /// `basic` or `bearer`.
    pub scheme: String,
    /// The user (basic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The environment variable holding the password or token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The file holding the password or token (its first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl AuthSpec {
    /// The probe's authentication, or why these settings are not one.
    pub fn auth(&self) -> Result<proto::http::Auth, String> {
        use proto::http::{Auth, Secret};
        let secret = match (&self.env, &self.file) {
            (Some(env), None) if !env.is_empty() && !env.contains(['=', '\0']) => {
                Secret::Env(env.clone())
            }
            (None, Some(file)) if !file.is_empty() => Secret::File(file.into()),
            _ => {
                return Err(
                    "http_auth needs exactly one of env = \"VARIABLE\" or file = \"/path\"".into(),
                );
            }
        };
        match (self.scheme.to_ascii_lowercase().as_str(), &self.user) {
            ("basic", Some(user)) if !user.contains(':') && !user.chars().any(char::is_control) => {
                Ok(Auth::Basic(user.clone(), secret))
            }
            ("basic", _) => Err(
                "basic http_auth needs user = \"NAME\" (without ':' or control characters)".into(),
            ),
            ("bearer", None) => Ok(Auth::Bearer(secret)),
            ("bearer", Some(_)) => Err("bearer http_auth takes no user: remove it".into()),
            (other, _) => Err(format!(
                "unknown http_auth scheme '{other}': use scheme = \"basic\" or \"bearer\""
            )),
        }
    }
}

/// `http_json`: a value in a JSON body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonSpec {
    /// `status`, `checks.db[0].state`.
    pub path: String,
    /// The value it must have (strings as they are, others as JSON);
    /// absent: it must exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
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
    /// Extra request headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_headers: Option<std::collections::BTreeMap<String, String>>,
    /// The request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_body: Option<String>,
    /// Authentication from an environment variable or a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_auth: Option<AuthSpec>,
    /// Follow redirects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_follow: Option<bool>,
    /// Text the body must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_contains: Option<String>,
    /// Text the body must not contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_absent: Option<String>,
    /// A regular expression the body must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_regex: Option<String>,
    /// A value in a JSON body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_json: Option<JsonSpec>,
    /// Phase thresholds above which a check is WARNING: dns, connect,
    /// tls, first_byte, total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_warning: Option<std::collections::BTreeMap<String, String>>,
    /// Phase thresholds above which a check is DOWN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_critical: Option<std::collections::BTreeMap<String, String>>,
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

/// The HTTP settings of a sensor added by the web interface or the API:
/// portwatch.toml's `http_*` keys without their prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// The request method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Accepted statuses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<u16>>,
    /// Extra request headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// The request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Authentication (the names of an environment variable or a file,
    /// never the secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Follow redirects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow: Option<bool>,
    /// Text the body must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// Text the body must not contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absent: Option<String>,
    /// A regular expression the body must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// A value in a JSON body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonSpec>,
}

impl ProbeOverrides {
    /// Replaces the HTTP settings.
    pub fn set_http(&mut self, http: HttpSettings) {
        self.http_method = http.method;
        self.http_path = http.path;
        self.http_status = http.status;
        self.http_headers = http.headers;
        self.http_body = http.body;
        self.http_auth = http.auth;
        self.http_follow = http.follow;
        self.http_contains = http.contains;
        self.http_absent = http.absent;
        self.http_regex = http.regex;
        self.http_json = http.json;
    }

    /// The HTTP settings.
    pub fn http_settings(&self) -> HttpSettings {
        HttpSettings {
            method: self.http_method.clone(),
            path: self.http_path.clone(),
            status: self.http_status.clone(),
            headers: self.http_headers.clone(),
            body: self.http_body.clone(),
            auth: self.http_auth.clone(),
            follow: self.http_follow,
            contains: self.http_contains.clone(),
            absent: self.http_absent.clone(),
            regex: self.http_regex.clone(),
            json: self.http_json.clone(),
        }
    }

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
            http_headers: pick(&self.http_headers, &base.http_headers),
            http_body: pick(&self.http_body, &base.http_body),
            http_auth: pick(&self.http_auth, &base.http_auth),
            http_follow: pick(&self.http_follow, &base.http_follow),
            http_contains: pick(&self.http_contains, &base.http_contains),
            http_absent: pick(&self.http_absent, &base.http_absent),
            http_regex: pick(&self.http_regex, &base.http_regex),
            http_json: pick(&self.http_json, &base.http_json),
            phase_warning: pick(&self.phase_warning, &base.phase_warning),
            phase_critical: pick(&self.phase_critical, &base.phase_critical),
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
        options.http = self.http()?;
        options.phases = self.phases()?;
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
            Some(proto::Conflict::NotHttp(protocol)) => Err((
                "protocol",
                format!(
                    "http_* settings are for HTTP, not {}: use protocol = \"http\" or \"https\"",
                    protocol.as_str()
                ),
            )),
            Some(proto::Conflict::Http(message)) => Err(("http_method", message)),
            None => Ok((!options.connect_only()).then_some(options)),
        }
    }

    /// The phase thresholds; the error names the key and the fix.
    pub fn phases(&self) -> Result<portwatch_probe::verdict::PhaseLimits, (&'static str, String)> {
        let mut limits = portwatch_probe::verdict::PhaseLimits::default();
        for (key, critical, table) in [
            ("phase_warning", false, &self.phase_warning),
            ("phase_critical", true, &self.phase_critical),
        ] {
            for (phase, text) in table.iter().flatten() {
                let limit = portwatch_probe::duration::parse(text)
                    .map_err(|e| (key, format!("{key}.{phase}: {e}")))?;
                if !limits.set(critical, phase, limit) {
                    return Err((
                        key,
                        format!(
                            "unknown phase '{}': use {}",
                            portwatch_probe::text::visible(phase),
                            portwatch_probe::verdict::PHASES.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(limits)
    }

    /// The HTTP settings. A check with content rules and no method sends
    /// GET; with a body, POST.
    pub fn http(&self) -> Result<proto::HttpOptions, (&'static str, String)> {
        use proto::http::{self as http, ContentRule};
        let mut options = proto::HttpOptions::default();
        if let Some(path) = &self.http_path {
            http::check_path(path).map_err(|e| ("http_path", e))?;
            options.path.clone_from(path);
        }
        if let Some(statuses) = &self.http_status {
            if let Some(bad) = statuses.iter().find(|s| !(100..=999).contains(*s)) {
                return Err((
                    "http_status",
                    format!("{bad} is not an HTTP status: use 100 to 999"),
                ));
            }
            options.expect_status.clone_from(statuses);
        }
        for (name, value) in self.http_headers.iter().flatten() {
            http::check_header(name, value).map_err(|e| ("http_headers", e))?;
            options.headers.push((name.clone(), value.clone()));
        }
        if let Some(body) = &self.http_body {
            if body.len() > 1 << 20 {
                return Err(("http_body", "http_body is longer than 1 MiB".into()));
            }
            options.body = Some(body.clone());
        }
        if let Some(auth) = &self.http_auth {
            options.auth = Some(auth.auth().map_err(|e| ("http_auth", e))?);
        }
        options.follow = self.http_follow.unwrap_or(false);
        let nonempty = |key: &'static str, text: &String| {
            if text.is_empty() {
                Err((key, format!("{key} is empty: give the text to look for")))
            } else {
                Ok(text.clone())
            }
        };
        if let Some(text) = &self.http_contains {
            options
                .content
                .push(ContentRule::Contains(nonempty("http_contains", text)?));
        }
        if let Some(text) = &self.http_absent {
            options
                .content
                .push(ContentRule::Absent(nonempty("http_absent", text)?));
        }
        if let Some(re) = &self.http_regex {
            options.content.push(ContentRule::Regex(
                expect::regex(re).map_err(|e| ("http_regex", e))?,
            ));
        }
        if let Some(json) = &self.http_json {
            let path = http::JsonPath::parse(&json.path).map_err(|e| ("http_json", e))?;
            options
                .content
                .push(ContentRule::Json(path, json.equals.clone()));
        }
        options.method = match &self.http_method {
            Some(method) => http::parse_method(method).map_err(|e| ("http_method", e))?,
            None if options.body.is_some() => "POST".into(),
            None if !options.content.is_empty() => "GET".into(),
            None => options.method,
        };
        Ok(options)
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
