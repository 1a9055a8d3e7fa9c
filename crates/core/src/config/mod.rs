//! Configuration as code: `portwatch.toml` declares groups, servers,
//! sensors, dependencies and maintenance windows.
//!
//! Reading a file ([`read_config`]) is kept apart from parsing text
//! ([`from_toml`]), so tests feed bytes. Every error names file:line:column.
//! Unknown keys are errors.

pub mod dns;
pub mod model;
mod raw;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use portwatch_probe::Services;
use portwatch_probe::target::{Host, parse_bare_host, parse_port};

pub use model::{Overrides, Settings, WindowRule};
pub mod ping;
pub mod probe;
pub mod udp;

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A validated configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Settings for everything, overridable at each level.
    pub defaults: Overrides,
    /// Groups by path (`Production/Web`), parents before children.
    pub groups: Vec<GroupDef>,
    /// Servers in file order.
    pub servers: Vec<ServerDef>,
    /// Maintenance windows.
    pub maintenance: Vec<WindowDef>,
    /// Notification channels.
    pub channels: Vec<crate::notify::ChannelDef>,
    /// Notification rules.
    pub rules: Vec<crate::notify::RuleDef>,
}

/// A group: a folder of servers, nested by `/` in its path.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDef {
    /// `Production/Web`.
    pub path: String,
    /// Settings that override the parent's.
    pub overrides: Overrides,
}

/// A server: a host holding sensors.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerDef {
    /// Unique server name.
    pub name: String,
    /// The host to check.
    pub host: Host,
    /// The group path, if any.
    pub group: Option<String>,
    /// Settings that override the group's.
    pub overrides: Overrides,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// The sensors.
    pub sensors: Vec<SensorDef>,
}

/// A PORT sensor on a server.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorDef {
    /// Name, unique within the server (defaults to the service name or port).
    pub name: String,
    /// The TCP port.
    pub port: u16,
    /// The port must be closed.
    pub expect_closed: bool,
    /// Settings that override the server's.
    pub overrides: Overrides,
    /// Free-form tags.
    pub tags: Vec<String>,
}

/// A maintenance window and what it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowDef {
    /// Name for reports.
    pub name: String,
    /// When it is in force.
    pub rule: WindowRule,
    /// Group paths covered (with everything below them).
    pub groups: Vec<String>,
    /// Server names covered.
    pub servers: Vec<String>,
    /// Sensor paths (`server/sensor`) covered.
    pub sensors: Vec<String>,
}

/// Reads and validates a configuration file.
pub fn read_config(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        file: name.clone(),
        line: 1,
        column: 1,
        message: format!("cannot read the file: {error}"),
    })?;
    from_toml(&name, &text)
}

/// Parses and validates configuration text; `file` names it in errors.
pub fn from_toml(file: &str, text: &str) -> Result<Config, ConfigError> {
    let locate = Locator { file, text };
    let raw: raw::File = toml::from_str(text).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        let message = error.message().trim().replace('`', "'");
        locate.error(span, message)
    })?;
    validate(&locate, raw)
}

/// Turns byte spans into file:line:column errors.
struct Locator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    /// Refuses a name with control, invisible or text-direction characters.
    fn check_name(&self, span: Range<usize>, what: &str, text: &str) -> Result<(), ConfigError> {
        match portwatch_probe::text::name_problem(text) {
            Some(problem) => Err(self.error(
                span,
                format!(
                    "{what} '{}' {problem}",
                    portwatch_probe::text::visible(text)
                ),
            )),
            None => Ok(()),
        }
    }

    fn error(&self, span: Range<usize>, message: impl fmt::Display) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            message: message.to_string(),
        }
    }

    fn duration(
        &self,
        value: Option<&toml::Spanned<String>>,
    ) -> Result<Option<Duration>, ConfigError> {
        value
            .map(|v| {
                portwatch_probe::duration::parse(v.get_ref()).map_err(|e| self.error(v.span(), e))
            })
            .transpose()
    }

    fn overrides(&self, raw: &raw::Settings) -> Result<Overrides, ConfigError> {
        let interval = self.duration(raw.interval.as_deref())?;
        if let (Some(value), Some(raw)) = (interval, &raw.interval)
            && value < Duration::from_secs(1)
        {
            return Err(self.error(raw.span(), "interval must be at least 1s"));
        }
        let retries = raw
            .retries
            .as_ref()
            .map(|r| match u32::try_from(*r.get_ref()) {
                Ok(n @ 0..=10) => Ok(n),
                _ => Err(self.error(r.span(), "retries must be from 0 to 10")),
            })
            .transpose()?;
        let probe = Some(Box::new(self.probe(raw)?)).filter(|p| !p.is_empty());
        let locations = match &raw.locations {
            Some(list) => {
                crate::monitor::verdict::check_locations(list.get_ref())
                    .map_err(|e| self.error(list.span(), e))?;
                Some(list.get_ref().clone())
            }
            None => None,
        };
        let down_when = match &raw.down_when {
            Some(value) => {
                let text = match value.get_ref() {
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                Some(
                    crate::monitor::verdict::DownWhen::parse(&text)
                        .map_err(|e| self.error(value.span(), e))?,
                )
            }
            None => None,
        };
        Ok(Overrides {
            heartbeat: None,
            dns: None,
            udp: None,
            ping: None,
            locations,
            down_when,
            interval,
            timeout: self.duration(raw.timeout.as_deref())?,
            warning: self.duration(raw.warning.as_deref())?,
            critical: self.duration(raw.critical.as_deref())?,
            retries,
            depends_on: raw.depends_on.as_ref().map(|d| d.get_ref().clone()),
            probe,
        })
    }

    /// The protocol-check keys of one table, validated on their own (the
    /// error points at the key at fault).
    fn probe(&self, raw: &raw::Settings) -> Result<probe::ProbeOverrides, ConfigError> {
        let text = raw::owned;
        let number = |v: &raw::Rare<i64>, key: &str| -> Result<Option<u32>, ConfigError> {
            v.as_ref()
                .map(|n| {
                    u32::try_from(*n.get_ref()).map_err(|_| {
                        self.error(n.span(), format!("{key} must be a positive number"))
                    })
                })
                .transpose()
        };
        let mut statuses = None;
        if let Some(list) = &raw.http_status {
            let mut out = Vec::new();
            for code in list.get_ref() {
                out.push(u16::try_from(*code).map_err(|_| {
                    self.error(
                        list.span(),
                        format!("{code} is not an HTTP status: use 100 to 999"),
                    )
                })?);
            }
            statuses = Some(out);
        }
        let probe = probe::ProbeOverrides {
            mode: text(&raw.mode),
            protocol: text(&raw.protocol),
            tls: text(&raw.tls),
            insecure: raw.insecure,
            sni: text(&raw.sni),
            ca_file: text(&raw.ca_file),
            cert_warn_days: number(&raw.cert_warn_days, "cert_warn_days")?,
            http_method: text(&raw.http_method),
            http_path: text(&raw.http_path),
            http_status: statuses,
            http_headers: raw.http_headers.as_ref().map(|v| v.get_ref().clone()),
            http_body: raw.http_body.as_ref().map(|v| v.get_ref().clone()),
            http_auth: raw.http_auth.as_ref().map(|v| v.get_ref().clone()),
            http_follow: raw.http_follow.as_ref().map(|v| *v.get_ref()),
            http_contains: raw.http_contains.as_ref().map(|v| v.get_ref().clone()),
            http_absent: raw.http_absent.as_ref().map(|v| v.get_ref().clone()),
            http_regex: raw.http_regex.as_ref().map(|v| v.get_ref().clone()),
            http_json: raw.http_json.as_ref().map(|v| v.get_ref().clone()),
            phase_warning: raw.phase_warning.as_ref().map(|v| v.get_ref().clone()),
            phase_critical: raw.phase_critical.as_ref().map(|v| v.get_ref().clone()),
            steps: raw.steps.as_ref().map(|s| s.get_ref().clone()),
            quit: text(&raw.quit),
            max_bytes: number(&raw.max_bytes, "max_bytes")?,
        };
        if let Err((key, message)) = probe.options() {
            let span = match key {
                "mode" => raw.mode.as_ref().map(|v| v.span()),
                "protocol" => raw.protocol.as_ref().map(|v| v.span()),
                "tls" => raw.tls.as_ref().map(|v| v.span()),
                "http_method" => raw.http_method.as_ref().map(|v| v.span()),
                "http_path" => raw.http_path.as_ref().map(|v| v.span()),
                "http_status" => raw.http_status.as_ref().map(|v| v.span()),
                "http_headers" => raw.http_headers.as_ref().map(|v| v.span()),
                "http_body" => raw.http_body.as_ref().map(|v| v.span()),
                "http_auth" => raw.http_auth.as_ref().map(|v| v.span()),
                "http_contains" => raw.http_contains.as_ref().map(|v| v.span()),
                "http_absent" => raw.http_absent.as_ref().map(|v| v.span()),
                "http_regex" => raw.http_regex.as_ref().map(|v| v.span()),
                "http_json" => raw.http_json.as_ref().map(|v| v.span()),
                "phase_warning" => raw.phase_warning.as_ref().map(|v| v.span()),
                "phase_critical" => raw.phase_critical.as_ref().map(|v| v.span()),
                "steps" => raw.steps.as_ref().map(|v| v.span()),
                "quit" => raw.quit.as_ref().map(|v| v.span()),
                "max_bytes" => raw.max_bytes.as_ref().map(|v| v.span()),
                _ => None,
            };
            return Err(self.error(span.unwrap_or(0..0), message));
        }
        Ok(probe)
    }
}

fn validate(locate: &Locator, raw: raw::File) -> Result<Config, ConfigError> {
    let raw_defaults = raw
        .defaults
        .as_ref()
        .map(raw::Defaults::settings)
        .unwrap_or_default();
    let defaults = locate.overrides(&raw_defaults)?;
    let mut names = Names::default();
    let groups = raw
        .group
        .iter()
        .map(|group| group_def(locate, group, &mut names))
        .collect::<Result<Vec<_>, _>>()?;
    let servers = raw
        .server
        .iter()
        .map(|server| server_def(locate, server, &mut names))
        .collect::<Result<Vec<_>, _>>()?;
    dependencies(locate, &raw, &raw_defaults, &names)?;
    let maintenance = raw
        .maintenance
        .iter()
        .map(|window| window_def(locate, window, &names))
        .collect::<Result<Vec<_>, _>>()?;
    let (channels, rules) =
        notifications(locate, &raw, &names.groups, &names.servers, &names.sensors)?;
    let config = Config {
        defaults,
        groups,
        servers,
        maintenance,
        channels,
        rules,
    };
    if let Some(path) = model::find_cycle(&config) {
        let span = names.sensors.get(&path).cloned().unwrap_or(0..0);
        return Err(locate.error(span, format!("dependency cycle through sensor '{path}': a sensor cannot depend on itself, directly or through others")));
    }
    Ok(config)
}

/// The names declared so far, which later tables refer to: group paths,
/// server names, and sensor paths with where they were declared.
#[derive(Default)]
struct Names {
    groups: HashSet<String>,
    servers: HashSet<String>,
    sensors: HashMap<String, std::ops::Range<usize>>,
}

/// Validates one `[[group]]`; its parent must come before it.
fn group_def(
    locate: &Locator,
    group: &raw::Group,
    names: &mut Names,
) -> Result<GroupDef, ConfigError> {
    let path = group.name.get_ref().trim().trim_matches('/').to_owned();
    locate.check_name(group.name.span(), "the group name", &path)?;
    if path.is_empty() || path.split('/').any(|part| part.trim().is_empty()) {
        return Err(locate.error(
            group.name.span(),
            "group names must be non-empty; nest groups with '/', e.g. \"Production/Web\"",
        ));
    }
    if let Some((parent, _)) = path.rsplit_once('/')
        && !names.groups.contains(parent)
    {
        return Err(locate.error(
            group.name.span(),
            format!("group '{path}' needs its parent group '{parent}' declared before it"),
        ));
    }
    if !names.groups.insert(path.clone()) {
        return Err(locate.error(
            group.name.span(),
            format!("duplicate group '{path}': group names must be unique"),
        ));
    }
    Ok(GroupDef {
        path,
        overrides: locate.overrides(&group.settings())?,
    })
}

/// Validates one `[[server]]` and its sensors.
fn server_def(
    locate: &Locator,
    server: &raw::Server,
    names: &mut Names,
) -> Result<ServerDef, ConfigError> {
    let name = server.name.get_ref().trim().to_owned();
    locate.check_name(server.name.span(), "the server name", &name)?;
    for tag in &server.tags {
        locate.check_name(server.name.span(), "the tag", tag)?;
    }
    if name.is_empty() || name.contains('/') {
        return Err(locate.error(
            server.name.span(),
            "server names must be non-empty and contain no '/'",
        ));
    }
    if !names.servers.insert(name.clone()) {
        return Err(locate.error(
            server.name.span(),
            format!("duplicate server '{name}': server names must be unique"),
        ));
    }
    let host =
        parse_bare_host(server.host.get_ref()).map_err(|e| locate.error(server.host.span(), e))?;
    if let Some(group) = &server.group
        && !names.groups.contains(group.get_ref().trim_matches('/'))
    {
        return Err(locate.error(
            group.span(),
            format!(
                "unknown group '{}': declare it in a [[group]] table",
                group.get_ref()
            ),
        ));
    }
    let sensors = server
        .sensor
        .iter()
        .map(|sensor| sensor_def(locate, &name, sensor, names, server.name.span()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ServerDef {
        name,
        host,
        group: server
            .group
            .as_ref()
            .map(|g| g.get_ref().trim_matches('/').to_owned()),
        overrides: locate.overrides(&server.settings())?,
        tags: server.tags.clone(),
        sensors,
    })
}

/// Validates one `[[server.sensor]]` of the server `server`.
fn sensor_def(
    locate: &Locator,
    server: &str,
    sensor: &raw::Sensor,
    names: &mut Names,
    server_span: std::ops::Range<usize>,
) -> Result<SensorDef, ConfigError> {
    let services = Services::global();
    let heartbeat = heartbeat_of(locate, sensor)?;
    let dns = dns_of(locate, sensor)?;
    let udp = udp_of(locate, sensor)?;
    let ping = ping_of(locate, sensor)?;
    // Where to point at this sensor: its name, kind or port, or its server.
    let span = sensor
        .name
        .as_ref()
        .map(|n| n.span())
        .or_else(|| sensor.kind.as_ref().map(|k| k.span()))
        .or_else(|| sensor.port.as_ref().map(|p| p.span()))
        .unwrap_or(server_span);
    if let (Some(port), Some(_)) = (&sensor.port, &ping) {
        return Err(locate.error(
            port.span(),
            "a PING sensor has no port: remove 'port' (ICMP echo has none)",
        ));
    }
    let port = match (&sensor.port, heartbeat) {
        (Some(port), Some(_)) => {
            return Err(locate.error(
                port.span(),
                "a heartbeat sensor has no port: remove 'port' (jobs call its push URL)",
            ));
        }
        (None, Some(_)) => 0,
        // A UDP service listens on its protocol's port.
        (None, None) if udp.as_ref().and_then(udp_port).is_some() => {
            udp.as_ref().and_then(udp_port).unwrap_or_default()
        }
        // ICMP echo has no port.
        (None, None) if ping.is_some() => 0,
        (None, None) if udp.is_some() => {
            return Err(locate.error(
                span,
                "a UDP sensor that sends its own bytes has no well-known port: add port = NUMBER",
            ));
        }
        // A DNS server listens on the transport's port.
        (None, None) if dns.is_some() => {
            let transport = dns.as_ref().and_then(|d| d.transport.as_deref());
            portwatch_probe::dns::Transport::parse(transport.unwrap_or("udp"))
                .map_or(53, |t| t.default_port())
        }
        (None, None) => {
            return Err(locate.error(
                span,
                "this sensor has no port: add port = NUMBER or NAME, or kind = \"heartbeat\"",
            ));
        }
        (Some(port), None) => match port.get_ref() {
            raw::Port::Number(n) => match u16::try_from(*n) {
                Ok(number @ 1..) => number,
                _ => {
                    return Err(locate.error(
                        port.span(),
                        format!("port {n} is out of range: use a port from 1 to 65535"),
                    ));
                }
            },
            raw::Port::Name(text) => {
                parse_port(text, services).map_err(|e| locate.error(port.span(), e))?
            }
        },
    };
    let default_name = if heartbeat.is_some() {
        "heartbeat".to_owned()
    } else if dns.is_some() {
        "dns".to_owned()
    } else if ping.is_some() {
        "ping".to_owned()
    } else if let Some(name) = udp
        .as_ref()
        .and_then(|spec| spec.protocol().ok())
        .map(|p| p.name())
    {
        name.to_owned()
    } else {
        services
            .by_port(port)
            .map_or_else(|| port.to_string(), |s| s.name.clone())
    };
    let sensor_name = sensor
        .name
        .as_ref()
        .map_or(default_name, |n| n.get_ref().trim().to_owned());
    let name_span = span;
    locate.check_name(name_span.clone(), "the sensor name", &sensor_name)?;
    for tag in &sensor.tags {
        locate.check_name(name_span.clone(), "the tag", tag)?;
    }
    if sensor_name.is_empty() || sensor_name.contains('/') {
        return Err(locate.error(
            name_span,
            "sensor names must be non-empty and contain no '/'",
        ));
    }
    let path = format!("{server}/{sensor_name}");
    if names
        .sensors
        .insert(path.clone(), name_span.clone())
        .is_some()
    {
        return Err(locate.error(
            name_span,
            format!("duplicate sensor '{path}': give one of them a different name"),
        ));
    }
    let mut settings = sensor.settings();
    if udp.is_some() {
        // A UDP sensor's protocol is its own (ntp, snmp, …).
        settings.protocol = None;
    }
    let mut overrides = locate.overrides(&settings)?;
    overrides.heartbeat = heartbeat.map(Box::new);
    if let Some(spec) = &dns {
        let tls = dns::tls_settings(overrides.probe.as_deref());
        if let Err((key, message)) = spec.options(tls) {
            let at = match key {
                "record" => sensor.record.as_ref().map(|v| v.span()),
                "expect" => sensor.expect.as_ref().map(|v| v.span()),
                "rcode" => sensor.rcode.as_ref().map(|v| v.span()),
                "transport" => sensor.transport.as_ref().map(|v| v.span()),
                "resolver" => sensor.resolver.as_ref().map(|v| v.span()),
                _ => sensor.query.as_ref().map(|v| v.span()),
            };
            return Err(locate.error(at.unwrap_or(name_span), message));
        }
    }
    overrides.dns = dns.map(Box::new);
    overrides.udp = udp.map(Box::new);
    overrides.ping = ping.map(Box::new);
    Ok(SensorDef {
        name: sensor_name,
        port,
        expect_closed: sensor.expect_closed.unwrap_or(false),
        overrides,
        tags: sensor.tags.clone(),
    })
}

/// A sensor's DNS keys: its settings when `kind = "dns"` (checked when
/// the sensor is made), the error at the first DNS key otherwise.
fn dns_of(locate: &Locator, sensor: &raw::Sensor) -> Result<Option<dns::DnsSpec>, ConfigError> {
    let keys = [
        sensor.query.as_ref().map(|v| v.span()),
        sensor.record.as_ref().map(|v| v.span()),
        // A UDP sensor's expect is its own.
        sensor
            .expect
            .as_ref()
            .filter(|_| !is_kind(sensor, "udp"))
            .map(|v| v.span()),
        sensor.expect_all.as_ref().map(|v| v.span()),
        sensor.rcode.as_ref().map(|v| v.span()),
        sensor.transport.as_ref().map(|v| v.span()),
        sensor.recursion.as_ref().map(|v| v.span()),
        sensor.resolver.as_ref().map(|v| v.span()),
    ];
    if !is_kind(sensor, "dns") {
        return stray(
            locate,
            keys,
            "query, record, expect, expect_all, rcode, transport, recursion and resolver are for DNS sensors: add kind = \"dns\"",
        );
    }
    let expect = match &sensor.expect {
        None => Vec::new(),
        Some(value) => match value.get_ref() {
            toml::Value::String(one) => vec![one.clone()],
            toml::Value::Array(list) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    locate.error(
                        value.span(),
                        "expect is a list of strings, e.g. [\"192.0.2.10\"]",
                    )
                })?,
            _ => {
                return Err(locate.error(
                    value.span(),
                    "expect is a list of strings, e.g. [\"192.0.2.10\"]",
                ));
            }
        },
    };
    let text = raw::owned;
    Ok(Some(dns::DnsSpec {
        query: text(&sensor.query).unwrap_or_default(),
        record: text(&sensor.record),
        expect,
        expect_all: sensor.expect_all.as_ref().is_some_and(|v| *v.get_ref()),
        rcode: text(&sensor.rcode),
        transport: text(&sensor.transport),
        recursion: sensor.recursion.as_ref().map(|v| *v.get_ref()),
        resolver: text(&sensor.resolver),
    }))
}

/// A sensor's PING keys: its settings when `kind = "ping"` (checked
/// here), the error at the first PING key otherwise.
fn ping_of(locate: &Locator, sensor: &raw::Sensor) -> Result<Option<ping::PingSpec>, ConfigError> {
    if !is_kind(sensor, "ping") {
        return stray(
            locate,
            [&sensor.count, &sensor.loss_warning].map(|k| k.as_ref().map(|v| v.span())),
            "count and loss_warning are for PING sensors: add kind = \"ping\"",
        );
    }
    let spec = ping::PingSpec {
        count: sensor.count.as_ref().map(|v| *v.get_ref()),
        loss_warning: sensor.loss_warning.as_ref().map(|v| *v.get_ref()),
    };
    if let Err((key, message)) = spec.options() {
        let at = if key == "count" {
            &sensor.count
        } else {
            &sensor.loss_warning
        };
        return Err(locate.error(at.as_ref().map(|v| v.span()).unwrap_or(0..0), message));
    }
    Ok(Some(spec))
}

/// Whether a sensor's `kind` is `name`.
fn is_kind(sensor: &raw::Sensor, name: &str) -> bool {
    sensor
        .kind
        .as_ref()
        .is_some_and(|k| k.get_ref().trim() == name)
}

/// The error at the first of `keys` (their spans, where given) that a
/// sensor of another kind has, with `message`; `Ok(None)` when it has none.
fn stray<T>(
    locate: &Locator,
    keys: impl IntoIterator<Item = Option<std::ops::Range<usize>>>,
    message: &str,
) -> Result<Option<T>, ConfigError> {
    match keys.into_iter().flatten().next() {
        Some(at) => Err(locate.error(at, message)),
        None => Ok(None),
    }
}

/// The well-known port of a UDP sensor's protocol.
fn udp_port(spec: &udp::UdpSpec) -> Option<u16> {
    spec.protocol().ok().and_then(|p| p.default_port())
}

/// A sensor's UDP keys: its settings when `kind = "udp"` (checked here),
/// the error at the first UDP key otherwise.
fn udp_of(locate: &Locator, sensor: &raw::Sensor) -> Result<Option<udp::UdpSpec>, ConfigError> {
    let text = raw::owned;
    if !is_kind(sensor, "udp") {
        let keys = [
            &sensor.community,
            &sensor.snmp_version,
            &sensor.file,
            &sensor.send,
        ];
        return stray(
            locate,
            keys.map(|k| k.as_ref().map(|v| v.span())),
            "community, snmp_version, file and send are for UDP sensors: add kind = \"udp\"",
        );
    }
    let expect = match &sensor.expect {
        None => None,
        Some(value) => match value.get_ref() {
            toml::Value::String(text) => Some(text.clone()),
            _ => {
                return Err(locate.error(
                    value.span(),
                    "a UDP sensor's expect is a string of bytes, e.g. \"PONG\"",
                ));
            }
        },
    };
    let spec = udp::UdpSpec {
        protocol: sensor.protocol.as_ref().map(|v| v.get_ref().clone()),
        community: text(&sensor.community),
        snmp_version: text(&sensor.snmp_version),
        file: text(&sensor.file),
        send: text(&sensor.send),
        expect,
    };
    if let Err((key, message)) = spec.protocol() {
        let at = match key {
            "community" => sensor.community.as_ref().map(|v| v.span()),
            "snmp_version" => sensor.snmp_version.as_ref().map(|v| v.span()),
            "file" => sensor.file.as_ref().map(|v| v.span()),
            "send" => sensor.send.as_ref().map(|v| v.span()),
            "expect" => sensor.expect.as_ref().map(|v| v.span()),
            _ => sensor.protocol.as_ref().map(|v| v.span()),
        };
        let at = at.or_else(|| sensor.kind.as_ref().map(|k| k.span()));
        return Err(locate.error(at.unwrap_or(0..0), message));
    }
    Ok(Some(spec))
}

/// A sensor's `kind`, `every` and `grace`: its heartbeat settings when
/// `kind = "heartbeat"`, the error at the key at fault otherwise.
fn heartbeat_of(
    locate: &Locator,
    sensor: &raw::Sensor,
) -> Result<Option<crate::monitor::heartbeat::Heartbeat>, ConfigError> {
    let text = raw::text;
    crate::monitor::heartbeat::Heartbeat::from_settings(
        text(&sensor.kind),
        text(&sensor.every),
        text(&sensor.grace),
    )
    .map_err(|(key, message)| {
        let at = match key {
            "kind" => &sensor.kind,
            "every" => &sensor.every,
            _ => &sensor.grace,
        };
        locate.error(at.as_ref().map(|v| v.span()).unwrap_or(0..0), message)
    })
}

/// Every `depends_on`, at any level, names a declared sensor.
fn dependencies(
    locate: &Locator,
    raw: &raw::File,
    raw_defaults: &raw::Settings,
    names: &Names,
) -> Result<(), ConfigError> {
    let all_settings = std::iter::once(raw_defaults.clone())
        .chain(raw.group.iter().map(raw::Group::settings))
        .chain(raw.server.iter().map(raw::Server::settings))
        .chain(
            raw.server
                .iter()
                .flat_map(|s| s.sensor.iter().map(raw::Sensor::settings)),
        );
    for settings in all_settings {
        if let Some(dep) = &settings.depends_on
            && !names.sensors.contains_key(dep.get_ref())
        {
            return Err(locate.error(
                dep.span(),
                format!(
                    "depends_on '{}' is not a declared sensor: write \"server/sensor\"",
                    dep.get_ref()
                ),
            ));
        }
    }
    Ok(())
}

/// Validates one `[[maintenance]]`: its times and what it covers.
fn window_def(
    locate: &Locator,
    window: &raw::Maintenance,
    names: &Names,
) -> Result<WindowDef, ConfigError> {
    let rule = window_rule(locate, window)?;
    for group in &window.groups {
        if !names.groups.contains(group.get_ref().trim_matches('/')) {
            return Err(locate.error(group.span(), format!("unknown group '{}'", group.get_ref())));
        }
    }
    for server in &window.servers {
        if !names.servers.contains(server.get_ref()) {
            return Err(locate.error(
                server.span(),
                format!("unknown server '{}'", server.get_ref()),
            ));
        }
    }
    for sensor in &window.sensors {
        if !names.sensors.contains_key(sensor.get_ref()) {
            return Err(locate.error(
                sensor.span(),
                format!(
                    "unknown sensor '{}': write \"server/sensor\"",
                    sensor.get_ref()
                ),
            ));
        }
    }
    Ok(WindowDef {
        name: window.name.get_ref().clone(),
        rule,
        groups: window
            .groups
            .iter()
            .map(|g| g.get_ref().trim_matches('/').to_owned())
            .collect(),
        servers: window.servers.iter().map(|s| s.get_ref().clone()).collect(),
        sensors: window.sensors.iter().map(|s| s.get_ref().clone()).collect(),
    })
}

/// Validates `[[channel]]` and `[[notify]]`.
fn notifications(
    locate: &Locator,
    raw: &raw::File,
    groups: &HashSet<String>,
    servers: &HashSet<String>,
    sensors: &HashMap<String, Range<usize>>,
) -> Result<(Vec<crate::notify::ChannelDef>, Vec<crate::notify::RuleDef>), ConfigError> {
    let mut channels = Vec::new();
    let mut names = HashSet::new();
    for channel in &raw.channel {
        let def = channel_def(locate, channel)?;
        if !names.insert(def.name.clone()) {
            return Err(locate.error(
                channel.name.span(),
                format!("channel names must be unique: '{}'", def.name),
            ));
        }
        channels.push(def);
    }
    let mut rules = Vec::new();
    for rule in &raw.notify {
        rules.push(rule_def(locate, rule, &names, groups, servers, &|path| {
            sensors.contains_key(path)
        })?);
    }
    Ok((channels, rules))
}

/// Validates one `[[channel]]`.
fn channel_def(
    locate: &Locator,
    channel: &raw::Channel,
) -> Result<crate::notify::ChannelDef, ConfigError> {
    use crate::notify::{ChannelDef, ChannelKind};
    let name = channel.name.get_ref().trim().to_owned();
    locate.check_name(channel.name.span(), "the channel name", &name)?;
    if name.is_empty() || name.contains('/') {
        return Err(locate.error(
            channel.name.span(),
            format!("'{name}' cannot name a channel: give a non-empty name without '/'"),
        ));
    }
    {
        let kinds = [
            channel.webhook.is_some(),
            channel.command.is_some(),
            channel.smtp.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds != 1 {
            return Err(locate.error(
                channel.name.span(),
                "a channel needs exactly one of 'webhook' (a URL), 'smtp' (a mail server) or 'command' (a program and its arguments)",
            ));
        }
        let kind = if let Some(url) = &channel.webhook {
            let text = url.get_ref().trim();
            if !(text.starts_with("http://") || text.starts_with("https://")) {
                return Err(locate.error(
                    url.span(),
                    format!("webhook '{text}' is not an http:// or https:// URL"),
                ));
            }
            let preset = match &channel.preset {
                Some(p) => Some(crate::notify::Preset::parse(p.get_ref()).ok_or_else(|| {
                    locate.error(p.span(), format!("unknown preset '{}': use slack, discord, teams, ntfy, gotify or pagerduty", p.get_ref()))
                })?),
                None => None,
            };
            if preset == Some(crate::notify::Preset::Pagerduty)
                && channel.token_env.is_none()
                && channel.token.is_none()
            {
                return Err(locate.error(
                    url.span(),
                    "the pagerduty preset needs token_env (the variable holding the routing key) or token",
                ));
            }
            ChannelKind::Webhook {
                url: text.to_owned(),
                token_env: channel.token_env.as_ref().map(|t| t.get_ref().clone()),
                token: channel.token.as_ref().map(|t| t.get_ref().clone()),
                preset,
                follow_redirects: channel
                    .follow_redirects
                    .as_ref()
                    .is_some_and(|f| *f.get_ref()),
            }
        } else if let Some(command) = &channel.command {
            if command.get_ref().is_empty() {
                return Err(locate.error(
                    command.span(),
                    "the command is empty: write e.g. [\"/usr/local/bin/alert\"]",
                ));
            }
            ChannelKind::Command {
                argv: command.get_ref().clone(),
            }
        } else {
            let smtp = channel.smtp.as_ref().expect("one kind");
            // `host:port` would reach the resolver as a name and fail only
            // at the first delivery: the port has its own key.
            if let Some((host, port)) = smtp.get_ref().trim().rsplit_once(':')
                && !host.contains(':')
            {
                return Err(locate.error(
                    smtp.span(),
                    format!("smtp = \"{host}:{port}\": give the host alone and the port as port = {port}"),
                ));
            }
            if let Err(error) = portwatch_probe::target::parse_bare_host(smtp.get_ref()) {
                return Err(locate.error(smtp.span(), error));
            }
            let security = match channel
                .security
                .as_ref()
                .map(|s| s.get_ref().to_ascii_lowercase())
            {
                None => crate::notify::Security::Starttls,
                Some(s) if s == "starttls" => crate::notify::Security::Starttls,
                Some(s) if s == "tls" => crate::notify::Security::Tls,
                Some(s) if s == "none" => crate::notify::Security::None,
                Some(s) => {
                    let span = channel
                        .security
                        .as_ref()
                        .map(|x| x.span())
                        .unwrap_or(smtp.span());
                    return Err(locate.error(
                        span,
                        format!("unknown security '{s}': use starttls, tls or none"),
                    ));
                }
            };
            let port = match &channel.port {
                Some(p) => Some(
                    u16::try_from(*p.get_ref())
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| {
                            locate.error(p.span(), "the port must be from 1 to 65535")
                        })?,
                ),
                None => None,
            };
            let Some(from) = &channel.from else {
                return Err(locate.error(
                    smtp.span(),
                    "a mail channel needs 'from', the sender address",
                ));
            };
            if channel.to.is_empty() {
                return Err(locate.error(
                    smtp.span(),
                    "a mail channel needs 'to', a list of recipients",
                ));
            }
            for address in std::iter::once(from).chain(&channel.to) {
                if address
                    .get_ref()
                    .parse::<lettre::message::Mailbox>()
                    .is_err()
                {
                    return Err(locate.error(
                        address.span(),
                        format!("'{}' is not a mail address", address.get_ref()),
                    ));
                }
            }
            ChannelKind::Email {
                host: smtp.get_ref().trim().to_owned(),
                port,
                security,
                from: from.get_ref().clone(),
                to: channel.to.iter().map(|t| t.get_ref().clone()).collect(),
                username: channel.username.as_ref().map(|u| u.get_ref().clone()),
                password_env: channel.password_env.as_ref().map(|p| p.get_ref().clone()),
                password_file: channel.password_file.as_ref().map(|p| p.get_ref().clone()),
                password: channel.password.as_ref().map(|p| p.get_ref().clone()),
            }
        };
        let options = channel_options(locate, channel)?;
        Ok(ChannelDef {
            name,
            kind,
            options,
        })
    }
}

/// Validates one `[[notify]]` rule against the known channels, groups,
/// servers and sensors.
fn rule_def(
    locate: &Locator,
    rule: &raw::Notify,
    names: &HashSet<String>,
    groups: &HashSet<String>,
    servers: &HashSet<String>,
    sensor_exists: &dyn Fn(&str) -> bool,
) -> Result<crate::notify::RuleDef, ConfigError> {
    use crate::notify::{RuleDef, Trigger};
    {
        if !names.contains(rule.channel.get_ref()) {
            return Err(locate.error(
                rule.channel.span(),
                format!(
                    "unknown channel '{}': declare it in a [[channel]] table",
                    rule.channel.get_ref()
                ),
            ));
        }
        let mut on = Vec::new();
        for word in rule.on.get_ref() {
            match Trigger::parse(word) {
                Some(trigger) => on.push(trigger),
                None => {
                    return Err(locate.error(
                        rule.on.span(),
                        format!("unknown trigger '{word}': use {}", Trigger::NAMES),
                    ));
                }
            }
        }
        if on.is_empty() {
            return Err(locate.error(
                rule.on.span(),
                "'on' names no trigger: use e.g. [\"down\", \"up\"]",
            ));
        }
        for group in &rule.groups {
            if !groups.contains(group.get_ref().trim_matches('/')) {
                return Err(
                    locate.error(group.span(), format!("unknown group '{}'", group.get_ref()))
                );
            }
        }
        for server in &rule.servers {
            if !servers.contains(server.get_ref()) {
                return Err(locate.error(
                    server.span(),
                    format!("unknown server '{}'", server.get_ref()),
                ));
            }
        }
        for sensor in &rule.sensors {
            if !sensor_exists(sensor.get_ref()) {
                return Err(locate.error(
                    sensor.span(),
                    format!(
                        "unknown sensor '{}': write \"server/sensor\"",
                        sensor.get_ref()
                    ),
                ));
            }
        }
        let after = locate.duration(rule.after.as_ref())?;
        let every = locate.duration(rule.every.as_ref())?;
        let wants = |trigger| on.contains(&trigger);
        match (&rule.after, wants(Trigger::Escalation)) {
            (None, true) => {
                return Err(locate.error(
                    rule.on.span(),
                    "an escalation needs 'after', how long the sensor must stay down: e.g. after = \"30m\"",
                ));
            }
            (Some(value), false) => {
                return Err(locate.error(
                    value.span(),
                    "'after' is for escalations: add \"escalation\" to 'on'",
                ));
            }
            _ => {}
        }
        match (&rule.every, wants(Trigger::Repeat)) {
            (None, true) => {
                return Err(locate.error(
                    rule.on.span(),
                    "a repeat needs 'every', how often while down: e.g. every = \"1h\"",
                ));
            }
            (Some(value), false) => {
                return Err(locate.error(
                    value.span(),
                    "'every' is for repeats: add \"repeat\" to 'on'",
                ));
            }
            (Some(value), true) if every.is_some_and(|e| e < Duration::from_secs(60)) => {
                return Err(locate.error(value.span(), "repeat at most once a minute: every >= 1m"));
            }
            _ => {}
        }
        Ok(RuleDef {
            after_s: after.map(|d| d.as_secs().max(1)),
            every_s: every.map(|d| d.as_secs()),
            channel: rule.channel.get_ref().clone(),
            on,
            groups: rule
                .groups
                .iter()
                .map(|g| g.get_ref().trim_matches('/').to_owned())
                .collect(),
            servers: rule.servers.iter().map(|s| s.get_ref().clone()).collect(),
            sensors: rule.sensors.iter().map(|s| s.get_ref().clone()).collect(),
        })
    }
}

/// Reads one table of JSON (from the API or a web form) as TOML, so that
/// it is validated exactly like the file. Errors are the message alone.
fn table_from_json<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<(String, T), String> {
    let serde_json::Value::Object(map) = value else {
        return Err("expected a JSON object".into());
    };
    let table: toml::Table = serde_json::from_value(serde_json::Value::Object(
        map.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
    .map_err(|e| format!("{e}"))?;
    let text = toml::to_string(&table).map_err(|e| e.to_string())?;
    let parsed =
        toml::from_str(&text).map_err(|e: toml::de::Error| e.message().trim().replace('`', "'"))?;
    Ok((text, parsed))
}

/// A channel given as JSON (the same keys as `[[channel]]`), validated like
/// the file's. It comes from the web interface or API, whose admins do not
/// administer the monitor's host: it may not name an environment variable
/// or a file of that host (`token_env`, `password_env`, `password_file`),
/// only carry its secret itself (`token`, `password`).
pub fn channel_from_json(value: &serde_json::Value) -> Result<crate::notify::ChannelDef, String> {
    let (text, raw): (String, raw::Channel) = table_from_json(value)?;
    for (key, given, instead) in [
        ("token_env", raw.token_env.is_some(), "token"),
        ("password_env", raw.password_env.is_some(), "password"),
        ("password_file", raw.password_file.is_some(), "password"),
    ] {
        if given {
            return Err(format!(
                "{key} names an environment variable or file of the monitor's host, which only portwatch.toml may do: give the secret itself in '{instead}' (it is stored and never shown again)"
            ));
        }
    }
    let locate = Locator {
        file: "channel",
        text: &text,
    };
    channel_def(&locate, &raw).map_err(|e| e.message)
}

/// What a rule given as JSON may name.
pub struct Known<'a> {
    /// Channel names.
    pub channels: &'a HashSet<String>,
    /// Group paths.
    pub groups: &'a HashSet<String>,
    /// Server names.
    pub servers: &'a HashSet<String>,
    /// Sensor paths.
    pub sensors: &'a HashSet<String>,
}

/// A rule given as JSON (the same keys as `[[notify]]`), validated like
/// the file's.
pub fn rule_from_json(
    value: &serde_json::Value,
    known: &Known<'_>,
) -> Result<crate::notify::RuleDef, String> {
    let (text, raw): (String, raw::Notify) = table_from_json(value)?;
    let locate = Locator {
        file: "rule",
        text: &text,
    };
    rule_def(
        &locate,
        &raw,
        known.channels,
        known.groups,
        known.servers,
        &|path| known.sensors.contains(path),
    )
    .map_err(|e| e.message)
}

/// A channel's templates, flapping limit and timeout.
fn channel_options(
    locate: &Locator,
    channel: &raw::Channel,
) -> Result<crate::notify::ChannelOptions, ConfigError> {
    let mut options = crate::notify::ChannelOptions::default();
    for (value, slot) in [
        (&channel.template, &mut options.template),
        (&channel.title, &mut options.title),
    ] {
        if let Some(value) = value {
            crate::notify::template::validate(value.get_ref())
                .map_err(|e| locate.error(value.span(), e))?;
            *slot = Some(value.get_ref().clone());
        }
    }
    if let Some(limit) = &channel.rate_limit {
        options.rate_limit = u32::try_from(*limit.get_ref()).map_err(|_| {
            locate.error(
                limit.span(),
                "rate_limit is a count of notifications per sensor (0: no limit)",
            )
        })?;
    }
    if let Some(window) = locate.duration(channel.rate_window.as_ref())? {
        if window < Duration::from_secs(60) {
            let span = channel.rate_window.as_ref().expect("parsed").span();
            return Err(locate.error(span, "rate_window must be at least 1m"));
        }
        options.rate_window_s = window.as_secs();
    }
    if let Some(timeout) = locate.duration(channel.timeout.as_ref())? {
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&timeout) {
            let span = channel.timeout.as_ref().expect("parsed").span();
            return Err(locate.error(span, "timeout must be from 1s to 5m"));
        }
        options.timeout_s = timeout.as_secs();
    }
    Ok(options)
}

fn window_rule(locate: &Locator, window: &raw::Maintenance) -> Result<WindowRule, ConfigError> {
    let zone_name = window
        .timezone
        .as_ref()
        .map_or("UTC", |z| z.get_ref().as_str());
    let zone = jiff::tz::TimeZone::get(zone_name).map_err(|_| {
        let span = window
            .timezone
            .as_ref()
            .map_or(window.name.span(), |z| z.span());
        locate.error(
            span,
            format!(
                "unknown time zone '{zone_name}': use an IANA name such as Europe/Berlin or UTC"
            ),
        )
    })?;
    let civil = |value: &toml::Spanned<String>| -> Result<jiff::civil::DateTime, ConfigError> {
        value
            .get_ref()
            .trim()
            .replace(' ', "T")
            .parse()
            .map_err(|_| {
                locate.error(
                    value.span(),
                    format!(
                        "invalid date and time '{}': write e.g. 2026-12-01T22:00",
                        value.get_ref()
                    ),
                )
            })
    };
    match (&window.from, &window.until, &window.every) {
        (Some(from), Some(until), None) => {
            let start = zone.to_timestamp(civil(from)?).map_err(|e| locate.error(from.span(), e))?;
            let end = zone.to_timestamp(civil(until)?).map_err(|e| locate.error(until.span(), e))?;
            if end <= start {
                return Err(locate.error(until.span(), "'until' must be after 'from'"));
            }
            Ok(WindowRule::Once { start, end })
        }
        (None, None, Some(every)) => {
            let days = model::parse_days(every.get_ref()).map_err(|e| locate.error(every.span(), e))?;
            let Some(start) = &window.start else {
                return Err(locate.error(window.name.span(), "a recurring window needs 'start' (e.g. \"02:00\") and 'duration'"));
            };
            let at: jiff::civil::Time = start.get_ref().trim().parse().map_err(|_| {
                locate.error(start.span(), format!("invalid time '{}': write e.g. \"02:00\"", start.get_ref()))
            })?;
            let Some(duration) = locate.duration(window.duration.as_ref())? else {
                return Err(locate.error(window.name.span(), "a recurring window needs 'duration' (e.g. \"1h\")"));
            };
            Ok(WindowRule::Weekly { days, start: at, duration, zone })
        }
        _ => Err(locate.error(
            window.name.span(),
            "a maintenance window needs either 'from' and 'until', or 'every', 'start' and 'duration'",
        )),
    }
}

impl Config {
    /// All sensor paths (`server/sensor`) declared.
    pub fn sensor_paths(&self) -> Vec<String> {
        self.servers
            .iter()
            .flat_map(|s| {
                s.sensors
                    .iter()
                    .map(move |x| format!("{}/{}", s.name, x.name))
            })
            .collect()
    }

    /// Counts for messages: (groups, servers, sensors).
    pub fn counts(&self) -> (usize, usize, usize) {
        let sensors = self.servers.iter().map(|s| s.sensors.len()).sum();
        (self.groups.len(), self.servers.len(), sensors)
    }

    /// Group paths with their depth-first order preserved.
    pub fn group_map(&self) -> BTreeMap<&str, &GroupDef> {
        self.groups.iter().map(|g| (g.path.as_str(), g)).collect()
    }
}

#[cfg(test)]
mod tests;
