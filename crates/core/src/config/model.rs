//! Settings inheritance (defaults → group → parent groups → server →
//! sensor), maintenance window rules, and dependency cycles. Pure functions.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use serde::{Deserialize, Serialize};

use super::Config;
use crate::monitor::verdict::DownWhen;
use portwatch_probe::target::Host;

/// Settings as declared at one level; `None` inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overrides {
    /// How often to check.
    #[serde(with = "opt_duration")]
    pub interval: Option<Duration>,
    /// How long a check may take.
    #[serde(with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// WARNING above this connect time.
    #[serde(with = "opt_duration")]
    pub warning: Option<Duration>,
    /// DOWN above this connect time.
    #[serde(with = "opt_duration")]
    pub critical: Option<Duration>,
    /// Immediate re-checks before DOWN.
    pub retries: Option<u32>,
    /// The sensor path this depends on.
    pub depends_on: Option<String>,
    /// Protocol-check settings (boxed: most levels set none, and there is
    /// one of these per sensor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Box<super::probe::ProbeOverrides>>,
    /// The locations that check the sensor (nodes' `--location`); unset or
    /// empty: every location with a live node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<String>>,
    /// How many of its locations must see it down for DOWN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_when: Option<DownWhen>,
    /// A heartbeat sensor's period and grace (set on the sensor only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Box<crate::monitor::heartbeat::Heartbeat>>,
    /// A DNS sensor's query and expectations (set on the sensor only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Box<super::dns::DnsSpec>>,
    /// A UDP sensor's request (set on the sensor only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<Box<super::udp::UdpSpec>>,
    /// A PING sensor's echo requests (set on the sensor only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<Box<super::ping::PingSpec>>,
}

impl Overrides {
    /// `self` over `base`: each field set here wins.
    pub fn over(&self, base: &Overrides) -> Overrides {
        Overrides {
            interval: self.interval.or(base.interval),
            timeout: self.timeout.or(base.timeout),
            warning: self.warning.or(base.warning),
            critical: self.critical.or(base.critical),
            retries: self.retries.or(base.retries),
            depends_on: self.depends_on.clone().or_else(|| base.depends_on.clone()),
            locations: self.locations.clone().or_else(|| base.locations.clone()),
            down_when: self.down_when.or(base.down_when),
            heartbeat: self.heartbeat.clone().or_else(|| base.heartbeat.clone()),
            dns: self.dns.clone().or_else(|| base.dns.clone()),
            udp: self.udp.clone().or_else(|| base.udp.clone()),
            ping: self.ping.clone().or_else(|| base.ping.clone()),
            probe: match (&self.probe, &base.probe) {
                (None, None) => None,
                (Some(one), None) | (None, Some(one)) => Some(one.clone()),
                (Some(mine), Some(theirs)) => Some(Box::new(mine.over(theirs))),
            },
        }
    }

    /// Sets the check mode, protocol and TLS chosen in the web interface or
    /// the API (`None`: inherited), validated like the file; the error names
    /// the key at fault.
    pub fn set_check(
        &mut self,
        mode: Option<String>,
        protocol: Option<String>,
        tls: Option<String>,
    ) -> Result<(), (&'static str, String)> {
        let mut probe = self.probe.take().unwrap_or_default();
        probe.mode = mode;
        probe.protocol = protocol;
        probe.tls = tls;
        let checked = probe.options().map(|_| ());
        self.probe = Some(probe).filter(|p| !p.is_empty());
        checked
    }

    /// Sets the HTTP settings of the protocol check, checked as
    /// portwatch.toml's are (with the mode, protocol and TLS already set);
    /// the error names the `http_*` key and the fix.
    pub fn set_http(
        &mut self,
        http: super::probe::HttpSettings,
    ) -> Result<(), (&'static str, String)> {
        let mut probe = self.probe.take().unwrap_or_default();
        probe.set_http(http);
        let checked = probe.options().map(|_| ());
        self.probe = Some(probe).filter(|p| !p.is_empty());
        checked
    }
}

/// Durations are stored as whole microseconds.
mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&(d.as_micros() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_micros))
    }
}

/// The effective settings of a sensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Settings {
    /// How often to check (default 60 s).
    pub interval: Duration,
    /// How long a check may take (default 10 s, never over the interval).
    pub timeout: Duration,
    /// WARNING above this connect time.
    pub warning: Option<Duration>,
    /// DOWN above this connect time.
    pub critical: Option<Duration>,
    /// Immediate re-checks before DOWN (default 1).
    pub retries: u32,
}

impl Settings {
    /// Fills in the built-in defaults.
    pub fn from_overrides(o: &Overrides) -> Settings {
        let interval = o.interval.unwrap_or(Duration::from_secs(60));
        Settings {
            interval,
            timeout: o.timeout.unwrap_or(Duration::from_secs(10)).min(interval),
            warning: o.warning,
            critical: o.critical,
            retries: o.retries.unwrap_or(1),
        }
    }
}

/// When a maintenance window is in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowRule {
    /// From `start` until `end`.
    Once {
        /// Start.
        start: Timestamp,
        /// End (exclusive).
        end: Timestamp,
    },
    /// Every chosen weekday at `start` local time, for `duration`.
    Weekly {
        /// Bit 0 = Monday … bit 6 = Sunday.
        days: u8,
        /// Local start time.
        start: Time,
        /// Length (at most a day).
        #[serde(with = "micros")]
        duration: Duration,
        /// The time zone of `start`.
        #[serde(with = "zone")]
        zone: jiff::tz::TimeZone,
    },
}

mod micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

mod zone {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &jiff::tz::TimeZone, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.iana_name().unwrap_or("UTC"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<jiff::tz::TimeZone, D::Error> {
        let name = String::deserialize(d)?;
        jiff::tz::TimeZone::get(&name).map_err(D::Error::custom)
    }
}

fn day_bit(day: Weekday) -> u8 {
    1 << (day.to_monday_zero_offset() as u8)
}

/// Parses `day`, `weekday`, `weekend`, or day names (`sunday`, `mon,wed`).
pub fn parse_days(text: &str) -> Result<u8, String> {
    let text = text.trim().to_ascii_lowercase();
    match text.as_str() {
        "day" | "daily" | "every day" => return Ok(0x7f),
        "weekday" | "weekdays" => return Ok(0x1f),
        "weekend" | "weekends" => return Ok(0x60),
        _ => {}
    }
    let mut days = 0;
    for word in text.split([',', ' ']).filter(|w| !w.is_empty()) {
        let day = match word.get(..3) {
            Some("mon") => Weekday::Monday,
            Some("tue") => Weekday::Tuesday,
            Some("wed") => Weekday::Wednesday,
            Some("thu") => Weekday::Thursday,
            Some("fri") => Weekday::Friday,
            Some("sat") => Weekday::Saturday,
            Some("sun") => Weekday::Sunday,
            _ => {
                return Err(format!(
                    "unknown day '{word}' in every = \"{text}\": use day names (sunday, mon,wed), weekday, weekend or day"
                ));
            }
        };
        days |= day_bit(day);
    }
    if days == 0 {
        return Err("'every' names no day: use e.g. \"sunday\" or \"day\"".to_owned());
    }
    Ok(days)
}

impl super::WindowDef {
    /// Whether the window covers a sensor: by its path, its server, or a
    /// group it is in (a group covers everything below it).
    pub fn covers(&self, path: &str, server: &str, group: Option<&str>) -> bool {
        self.sensors.iter().any(|s| s == path)
            || self.servers.iter().any(|s| s == server)
            || group.is_some_and(|g| {
                group_chain(g)
                    .iter()
                    .any(|g| self.groups.iter().any(|wg| wg == g))
            })
    }
}

impl WindowRule {
    /// The window's span in force at `now`, or else its next one within a
    /// week: `(start, end)`. `None`: it never comes again.
    pub fn next_span(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        match self {
            WindowRule::Once { start, end } => (now < *end).then_some((*start, *end)),
            WindowRule::Weekly {
                days,
                start,
                duration,
                zone,
            } => {
                let mut date = now
                    .to_zoned_datetime(zone.clone())
                    .date()
                    .yesterday()
                    .ok()?;
                for _ in 0..9 {
                    if days & day_bit(date.weekday()) != 0
                        && let Ok(begin) = zone.to_timestamp(date.to_datetime(*start))
                        && let Ok(end) = begin.checked_add(
                            jiff::SignedDuration::try_from(*duration).unwrap_or_default(),
                        )
                        && now < end
                    {
                        return Some((begin, end));
                    }
                    date = date.tomorrow().ok()?;
                }
                None
            }
        }
    }

    /// Whether the window is in force at `now`.
    pub fn contains(&self, now: Timestamp) -> bool {
        self.next_span(now).is_some_and(|(start, _)| start <= now)
    }
}

/// A sensor with everything it inherits, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSensor {
    /// `server/sensor`.
    pub path: String,
    /// The server name (shared by the server's sensors).
    pub server: std::sync::Arc<str>,
    /// The group path (shared by the server's sensors).
    pub group: Option<std::sync::Arc<str>>,
    /// The host.
    pub host: Host,
    /// The port.
    pub port: u16,
    /// Effective settings (shared by the sensors with the same ones: a
    /// large configuration has few distinct sets).
    pub settings: std::sync::Arc<Settings>,
    /// The port must be closed.
    pub expect_closed: bool,
    /// The sensor path this depends on (never itself).
    pub depends_on: Option<String>,
    /// Names and rules of the maintenance windows that cover it.
    pub windows: Vec<(String, WindowRule)>,
    /// Tags of the server and the sensor.
    pub tags: Vec<String>,
    /// The protocol check, if any (validated when the file was read).
    pub probe: Option<std::sync::Arc<portwatch_probe::proto::ProtoOptions>>,
    /// The locations that check it; `None`: every location with a live
    /// node. (Shared by the sensors that list the same ones.)
    pub locations: Option<std::sync::Arc<[String]>>,
    /// How many locations must see it down for DOWN (`None`: one of one,
    /// a majority of several).
    pub down_when: Option<DownWhen>,
    /// A heartbeat sensor's period and grace: jobs push, nothing is
    /// checked (its port is 0). Boxed: most sensors have none, and the
    /// monitor holds one of these per sensor.
    pub heartbeat: Option<Box<crate::monitor::heartbeat::Heartbeat>>,
    /// What a DNS, UDP or PING sensor sends instead of connecting. Boxed
    /// and in one field: most sensors send none, and the monitor holds one
    /// of these per sensor.
    pub query: Option<Box<Query>>,
}

/// What a sensor that does not connect sends its host.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// A DNS question, asked of the host's name server at the port.
    Dns(std::sync::Arc<portwatch_probe::dns::DnsOptions>),
    /// A UDP service's request, sent to the host at the port.
    Udp(std::sync::Arc<portwatch_probe::udp::UdpProtocol>),
    /// ICMP echo requests.
    Ping(portwatch_probe::ping::PingOptions),
}

impl ResolvedSensor {
    /// A DNS sensor's question.
    pub fn dns(&self) -> Option<&std::sync::Arc<portwatch_probe::dns::DnsOptions>> {
        match self.query.as_deref() {
            Some(Query::Dns(dns)) => Some(dns),
            _ => None,
        }
    }

    /// A UDP sensor's request.
    pub fn udp(&self) -> Option<&std::sync::Arc<portwatch_probe::udp::UdpProtocol>> {
        match self.query.as_deref() {
            Some(Query::Udp(udp)) => Some(udp),
            _ => None,
        }
    }

    /// A PING sensor's echo requests.
    pub fn ping(&self) -> Option<portwatch_probe::ping::PingOptions> {
        match self.query.as_deref() {
            Some(Query::Ping(ping)) => Some(*ping),
            _ => None,
        }
    }
}

/// The chain of group paths from the root to `path`: `A`, `A/B`, `A/B/C`.
fn group_chain(path: &str) -> Vec<&str> {
    path.match_indices('/')
        .map(|(i, _)| &path[..i])
        .chain(std::iter::once(path))
        .collect()
}

/// Resolves every sensor's effective settings, dependency and windows.
pub fn resolve(config: &Config) -> Vec<ResolvedSensor> {
    let groups: HashMap<&str, &super::GroupDef> =
        config.groups.iter().map(|g| (g.path.as_str(), g)).collect();
    let mut resolved = Vec::with_capacity(config.servers.iter().map(|s| s.sensors.len()).sum());
    let mut probes: HashMap<
        super::probe::ProbeOverrides,
        Option<std::sync::Arc<portwatch_probe::proto::ProtoOptions>>,
    > = HashMap::new();
    let mut location_lists: HashMap<Vec<String>, std::sync::Arc<[String]>> = HashMap::new();
    let mut shared_settings: HashMap<Settings, std::sync::Arc<Settings>> = HashMap::new();
    for server in &config.servers {
        let mut inherited = config.defaults.clone();
        let chain = server.group.as_deref().map(group_chain).unwrap_or_default();
        for path in &chain {
            if let Some(group) = groups.get(path) {
                inherited = group.overrides.over(&inherited);
            }
        }
        let inherited = server.overrides.over(&inherited);
        let server_name: std::sync::Arc<str> = server.name.as_str().into();
        let group: Option<std::sync::Arc<str>> = server.group.as_deref().map(Into::into);
        for sensor in &server.sensors {
            let path = format!("{}/{}", server.name, sensor.name);
            let overrides = sensor.overrides.over(&inherited);
            let windows = config
                .maintenance
                .iter()
                .filter(|w| w.covers(&path, &server.name, server.group.as_deref()))
                .map(|w| (w.name.clone(), w.rule.clone()))
                .collect();
            let mut tags = server.tags.clone();
            tags.extend(sensor.tags.iter().cloned());
            // Sensors with the same settings share one set of options.
            let probe = match overrides.probe.as_deref() {
                None => None,
                Some(settings) => match probes.get(settings) {
                    Some(shared) => shared.clone(),
                    None => {
                        let options = match settings.options() {
                            Ok(options) => options.map(std::sync::Arc::new),
                            Err((key, message)) => {
                                tracing::warn!(sensor = %path, key, %message, "protocol settings ignored");
                                None
                            }
                        };
                        probes.insert(settings.clone(), options.clone());
                        options
                    }
                },
            };
            let locations = overrides
                .locations
                .as_ref()
                .filter(|list| !list.is_empty())
                .map(|list| {
                    location_lists
                        .entry(list.clone())
                        .or_insert_with(|| list.as_slice().into())
                        .clone()
                });
            let mut settings = Settings::from_overrides(&overrides);
            let heartbeat = overrides.heartbeat;
            if heartbeat.is_some() {
                // A missed push is missed: checking again would not help.
                settings.retries = 0;
            }
            let dns = overrides.dns.as_ref().and_then(|spec| {
                let tls = super::dns::tls_settings(overrides.probe.as_deref());
                match spec.options(tls) {
                    Ok(options) => Some(Query::Dns(std::sync::Arc::new(options))),
                    Err((key, message)) => {
                        tracing::warn!(sensor = %path, key, %message, "DNS settings ignored");
                        None
                    }
                }
            });
            let udp = overrides
                .udp
                .as_ref()
                .and_then(|spec| match spec.protocol() {
                    Ok(protocol) => Some(Query::Udp(std::sync::Arc::new(protocol))),
                    Err((key, message)) => {
                        tracing::warn!(sensor = %path, key, %message, "UDP settings ignored");
                        None
                    }
                });
            let ping = overrides
                .ping
                .as_ref()
                .and_then(|spec| match spec.options() {
                    Ok(options) => Some(Query::Ping(options)),
                    Err((key, message)) => {
                        tracing::warn!(sensor = %path, key, %message, "PING settings ignored");
                        None
                    }
                });
            let settings = match shared_settings.get(&settings) {
                Some(shared) => shared.clone(),
                None => {
                    let shared = std::sync::Arc::new(settings.clone());
                    shared_settings.insert(settings, shared.clone());
                    shared
                }
            };
            let speaks = heartbeat.is_none()
                && overrides.dns.is_none()
                && overrides.udp.is_none()
                && overrides.ping.is_none();
            resolved.push(ResolvedSensor {
                probe: if speaks { probe } else { None },
                heartbeat,
                query: dns.or(udp).or(ping).map(Box::new),
                locations,
                down_when: overrides.down_when,
                depends_on: overrides.depends_on.clone().filter(|dep| *dep != path),
                settings,
                path,
                server: server_name.clone(),
                group: group.clone(),
                host: server.host.clone(),
                port: sensor.port,
                expect_closed: sensor.expect_closed,
                windows,
                tags,
            });
        }
    }
    resolved
}

/// A sensor path on a dependency cycle, if there is one.
pub fn find_cycle(config: &Config) -> Option<String> {
    let deps: HashMap<String, String> = resolve(config)
        .into_iter()
        .filter_map(|s| s.depends_on.map(|d| (s.path, d)))
        .collect();
    let mut clear: HashSet<&str> = HashSet::new();
    for start in deps.keys() {
        let mut seen = HashSet::new();
        let mut at = start.as_str();
        while let Some(next) = deps.get(at) {
            if clear.contains(at) {
                break;
            }
            if !seen.insert(at) {
                return Some(at.to_owned());
            }
            at = next;
        }
        clear.extend(seen);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn overrides_inherit_field_by_field() {
        let base = Overrides {
            interval: Some(Duration::from_secs(30)),
            retries: Some(2),
            ..Default::default()
        };
        let child = Overrides {
            retries: Some(0),
            timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        let merged = child.over(&base);
        assert_eq!(merged.interval, Some(Duration::from_secs(30)));
        assert_eq!(merged.retries, Some(0));
        assert_eq!(merged.timeout, Some(Duration::from_secs(3)));
        let settings = Settings::from_overrides(&Overrides::default());
        assert_eq!(
            (settings.interval, settings.timeout, settings.retries),
            (Duration::from_secs(60), Duration::from_secs(10), 1)
        );
        let short = Settings::from_overrides(&Overrides {
            interval: Some(Duration::from_secs(5)),
            ..Default::default()
        });
        assert_eq!(
            short.timeout,
            Duration::from_secs(5),
            "a check never outlasts its interval"
        );
    }

    #[test]
    fn days() {
        assert_eq!(parse_days("sunday"), Ok(0x40));
        assert_eq!(parse_days("Mon, wed"), Ok(0b101));
        assert_eq!(parse_days("weekend"), Ok(0x60));
        assert_eq!(parse_days("day"), Ok(0x7f));
        assert!(parse_days("someday").is_err());
        assert!(parse_days("").is_err());
    }

    #[test]
    fn weekly_window_in_a_time_zone() {
        // Every Sunday 02:00-03:00 in Berlin (UTC+1 in winter).
        let rule = WindowRule::Weekly {
            days: parse_days("sunday").unwrap(),
            start: "02:00".parse().unwrap(),
            duration: Duration::from_secs(3600),
            zone: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
        };
        // 2026-11-29 is a Sunday.
        assert!(!rule.contains(ts("2026-11-29T00:59:59Z")));
        assert!(rule.contains(ts("2026-11-29T01:00:00Z")));
        assert!(rule.contains(ts("2026-11-29T01:59:59Z")));
        assert!(!rule.contains(ts("2026-11-29T02:00:00Z")));
        assert!(
            !rule.contains(ts("2026-11-30T01:30:00Z")),
            "Monday is not covered"
        );
    }

    #[test]
    fn window_crossing_midnight() {
        let rule = WindowRule::Weekly {
            days: parse_days("saturday").unwrap(),
            start: "23:00".parse().unwrap(),
            duration: Duration::from_secs(2 * 3600),
            zone: jiff::tz::TimeZone::UTC,
        };
        assert!(rule.contains(ts("2026-11-28T23:30:00Z")));
        assert!(
            rule.contains(ts("2026-11-29T00:59:00Z")),
            "continues into Sunday"
        );
        assert!(!rule.contains(ts("2026-11-29T01:00:00Z")));
    }

    #[test]
    fn a_window_gives_its_current_span_or_its_next() {
        let sunday_two = WindowRule::Weekly {
            days: parse_days("sunday").unwrap(),
            start: Time::constant(2, 0, 0, 0),
            duration: Duration::from_secs(3600),
            zone: jiff::tz::TimeZone::UTC,
        };
        // Tuesday: next Sunday's.
        assert_eq!(
            sunday_two.next_span(ts("2026-12-01T12:00:00Z")),
            Some((ts("2026-12-06T02:00:00Z"), ts("2026-12-06T03:00:00Z")))
        );
        // During it: this one; at its end: next week's.
        assert_eq!(
            sunday_two.next_span(ts("2026-12-06T02:30:00Z")),
            Some((ts("2026-12-06T02:00:00Z"), ts("2026-12-06T03:00:00Z")))
        );
        assert_eq!(
            sunday_two.next_span(ts("2026-12-06T03:00:00Z")),
            Some((ts("2026-12-13T02:00:00Z"), ts("2026-12-13T03:00:00Z")))
        );
        let once = WindowRule::Once {
            start: ts("2026-12-01T22:00:00Z"),
            end: ts("2026-12-02T02:00:00Z"),
        };
        assert_eq!(
            once.next_span(ts("2026-12-01T00:00:00Z")),
            Some((ts("2026-12-01T22:00:00Z"), ts("2026-12-02T02:00:00Z")))
        );
        assert_eq!(once.next_span(ts("2026-12-02T02:00:00Z")), None);
    }

    #[test]
    fn a_window_covers_sensors_by_path_server_or_group_and_below() {
        let window = crate::config::WindowDef {
            name: "w".into(),
            rule: WindowRule::Once {
                start: ts("2026-12-01T22:00:00Z"),
                end: ts("2026-12-02T02:00:00Z"),
            },
            groups: vec!["Office".into()],
            servers: vec!["files".into()],
            sensors: vec!["web/http".into()],
        };
        assert!(window.covers("web/http", "web", None));
        assert!(!window.covers("web/ssh", "web", None));
        assert!(window.covers("files/smb", "files", None));
        assert!(window.covers("gw/ssh", "gw", Some("Office/Net")));
        assert!(window.covers("gw/ssh", "gw", Some("Office")));
        assert!(!window.covers("gw/ssh", "gw", Some("Officers")));
    }

    #[test]
    fn one_off_window() {
        let rule = WindowRule::Once {
            start: ts("2026-12-01T22:00:00Z"),
            end: ts("2026-12-02T02:00:00Z"),
        };
        assert!(rule.contains(ts("2026-12-01T22:00:00Z")));
        assert!(!rule.contains(ts("2026-12-02T02:00:00Z")));
        let json = serde_json::to_string(&rule).unwrap();
        assert_eq!(serde_json::from_str::<WindowRule>(&json).unwrap(), rule);
    }
}
