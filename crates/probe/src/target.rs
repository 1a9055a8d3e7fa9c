//! Targets: `host:port`, `host:service`, `[v6addr]:port` and
//! `tcp://host:port`.
//!
//! Every rule is checked here, before any packet is sent, and every error
//! names the input and says how to fix it.

use std::fmt;
use std::net::IpAddr;

use super::services::Services;

/// A validated target: a host (an IP address, or an ASCII host name with IDN
/// labels already converted to punycode) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The text the user gave, for reports.
    pub input: String,
    /// The host to resolve or connect to.
    pub host: Host,
    /// The TCP port.
    pub port: u16,
}

/// The host part of a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A host name in ASCII (punycode for internationalised names).
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Why a target, host, port or port name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No `:port` after the host.
    #[error("target '{0}' has no port: write host:port or host:service, e.g. {0}:22")]
    MissingPort(String),
    /// An IPv6 address with a port, written without brackets.
    #[error("target '{0}' looks like an IPv6 address without brackets: write [{1}]:{2}")]
    UnbracketedIpv6(String, String, String),
    /// An IPv6 address in brackets that does not parse.
    #[error("target '{0}': '{1}' is not a valid IPv6 address")]
    BadIpv6(String, String),
    /// A scheme other than `tcp://`.
    #[error("target '{0}': only tcp:// is supported, write tcp://host:port or host:port")]
    Scheme(String),
    /// Nothing before the colon.
    #[error("target '{0}' has an empty host: write host:port, e.g. localhost:22")]
    EmptyHost(String),
    /// A host name over 253 characters.
    #[error("host '{0}…' is {1} characters long: a host name has at most 253")]
    NameTooLong(String, usize),
    /// A label over 63 characters.
    #[error("host '{0}': the label '{1}…' is {2} characters long: a label has at most 63")]
    LabelTooLong(String, String, usize),
    /// A host name that is not a valid (internationalised) domain name.
    #[error(
        "host '{0}' is not a valid host name: use letters, digits, '-' and '.', or an IP address"
    )]
    BadName(String),
    /// A port outside 1-65535.
    #[error("port '{0}' is out of range: use a port from 1 to 65535")]
    PortRange(String),
    /// A service name the table does not know.
    #[error(
        "unknown service '{name}'{hint}: use a port number, or list names with `portwatch ports`"
    )]
    UnknownService {
        /// The name given.
        name: String,
        /// ` (did you mean …?)`, or empty.
        hint: String,
    },
}

impl Target {
    /// Parses one target, resolving service names with `services`.
    pub fn parse(input: &str, services: &Services) -> Result<Target, TargetError> {
        let text = input.trim();
        let text = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("tcp") => rest,
            Some(_) => return Err(TargetError::Scheme(input.to_owned())),
            None => text,
        };
        let text = text.strip_suffix('/').unwrap_or(text);
        let (host, port) = split_host_port(input, text)?;
        let host = parse_host(input, host)?;
        let port = parse_port(port, services)?;
        Ok(Target {
            input: input.to_owned(),
            host,
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            ref host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// Splits `host:port` or `[v6]:port`. The host keeps its brackets.
fn split_host_port<'a>(input: &str, text: &'a str) -> Result<(&'a str, &'a str), TargetError> {
    if let Some(rest) = text.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return Err(TargetError::BadIpv6(input.to_owned(), rest.to_owned()));
        };
        return match after.strip_prefix(':') {
            Some(port) => Ok((&text[..address.len() + 2], port)),
            None => Err(TargetError::MissingPort(input.to_owned())),
        };
    }
    match text.matches(':').count() {
        0 => Err(TargetError::MissingPort(input.to_owned())),
        1 => Ok(text.split_once(':').expect("one colon")),
        _ => {
            // `2001:db8::1:80` is ambiguous; suggest the bracketed form with
            // the last group taken as the port, which is what was meant.
            let (address, port) = text.rsplit_once(':').expect("colons");
            let split = address.parse::<std::net::Ipv6Addr>().is_ok() && !port.is_empty();
            if split || text.parse::<std::net::Ipv6Addr>().is_ok() {
                let (address, port) = if split {
                    (address, port)
                } else {
                    (text, "PORT")
                };
                Err(TargetError::UnbracketedIpv6(
                    input.to_owned(),
                    address.to_owned(),
                    port.to_owned(),
                ))
            } else {
                Err(TargetError::BadName(text.to_owned()))
            }
        }
    }
}

/// Validates a host: an IP address (IPv6 in brackets), or a host name that is
/// converted to punycode and checked for length.
pub fn parse_host(input: &str, host: &str) -> Result<Host, TargetError> {
    if host.is_empty() || host == "[]" {
        return Err(TargetError::EmptyHost(input.to_owned()));
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| TargetError::BadIpv6(input.to_owned(), inner.to_owned()));
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    if host.contains(':') {
        return Err(TargetError::UnbracketedIpv6(
            input.to_owned(),
            host.to_owned(),
            "PORT".to_owned(),
        ));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    // IDN mapping would silently drop zero-width characters and let
    // control characters reach messages: refuse them first.
    if crate::text::name_problem(name).is_some() {
        return Err(TargetError::BadName(crate::text::visible(host)));
    }
    let short = |s: &str| s.chars().take(20).collect::<String>();
    // Check lengths before IDN conversion too, so that a huge input is
    // refused cheaply and with its own message.
    if name.len() > 253 {
        return Err(TargetError::NameTooLong(short(name), name.len()));
    }
    let ascii = idna::domain_to_ascii_strict(name)
        .or_else(|_| idna::domain_to_ascii(name))
        .map_err(|_| TargetError::BadName(host.to_owned()))?;
    if ascii.len() > 253 {
        return Err(TargetError::NameTooLong(short(&ascii), ascii.len()));
    }
    for label in ascii.split('.') {
        if label.len() > 63 {
            return Err(TargetError::LabelTooLong(
                short(host),
                short(label),
                label.len(),
            ));
        }
        let valid = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(TargetError::BadName(host.to_owned()));
        }
    }
    Ok(Host::Name(ascii))
}

/// Validates a host given on its own, with no port to confuse an IPv6
/// address with: a name, an IPv4 address, or an IPv6 address with or
/// without brackets.
pub fn parse_bare_host(text: &str) -> Result<Host, TargetError> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<std::net::Ipv6Addr>() {
        return Ok(Host::Ip(IpAddr::V6(ip)));
    }
    parse_host(text, text)
}

/// Parses a port number or service name.
pub fn parse_port(text: &str, services: &Services) -> Result<u16, TargetError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TargetError::PortRange(text.to_owned()));
    }
    let numeric = text.strip_prefix(['-', '+']).unwrap_or(text);
    if numeric.bytes().all(|b| b.is_ascii_digit()) && !numeric.is_empty() {
        return match text.parse::<u32>() {
            Ok(port @ 1..=65535) => Ok(port as u16),
            _ => Err(TargetError::PortRange(text.to_owned())),
        };
    }
    match services.by_name(text) {
        Some(service) => Ok(service.port),
        None => {
            let suggestions = services.suggest(text);
            let hint = if suggestions.is_empty() {
                String::new()
            } else {
                format!(" (did you mean {}?)", suggestions.join(", "))
            };
            Err(TargetError::UnknownService {
                name: text.to_owned(),
                hint,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<Target, TargetError> {
        Target::parse(text, &Services::builtin())
    }

    fn name(n: &str) -> Host {
        Host::Name(n.to_owned())
    }

    #[test]
    fn accepted_forms() {
        let t = parse("example.com:22").unwrap();
        assert_eq!((t.host, t.port), (name("example.com"), 22));
        let t = parse("example.com:ssh").unwrap();
        assert_eq!(t.port, 22);
        let t = parse("tcp://db.example:postgresql").unwrap();
        assert_eq!((t.host, t.port), (name("db.example"), 5432));
        let t = parse("TCP://10.0.0.1:80/").unwrap();
        assert_eq!(t.host, Host::Ip("10.0.0.1".parse().unwrap()));
        let t = parse("[2001:db8::1]:443").unwrap();
        assert_eq!(t.host, Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(t.to_string(), "[2001:db8::1]:443");
        let t = parse("localhost.:22").unwrap();
        assert_eq!(t.host, name("localhost"));
    }

    #[test]
    fn internationalised_names_become_punycode() {
        let t = parse("bücher.example:80").unwrap();
        assert_eq!(t.host, name("xn--bcher-kva.example"));
        let t = parse("ΠΑΡΆΔΕΙΓΜΑ.δοκιμή:443").unwrap();
        assert_eq!(t.host, name("xn--hxajbheg2az3al.xn--jxalpdlp"));
    }

    #[test]
    fn bad_ports() {
        for port in ["0", "65536", "-1", "99999999999"] {
            let err = parse(&format!("host:{port}")).unwrap_err();
            assert_eq!(err, TargetError::PortRange(port.into()), "{port}");
            assert!(err.to_string().contains("1 to 65535"));
        }
        let err = parse("host:abc").unwrap_err();
        assert!(matches!(err, TargetError::UnknownService { .. }), "{err:?}");
        let err = parse("host:shh").unwrap_err();
        assert!(err.to_string().contains("did you mean ssh"), "{err}");
        assert!(matches!(parse("host:"), Err(TargetError::PortRange(_))));
    }

    #[test]
    fn bad_hosts() {
        assert_eq!(
            parse("2001:db8::1:80").unwrap_err().to_string(),
            "target '2001:db8::1:80' looks like an IPv6 address without brackets: write [2001:db8::1]:80"
        );
        assert!(matches!(
            parse("::1"),
            Err(TargetError::UnbracketedIpv6(..))
        ));
        assert!(matches!(parse(":22"), Err(TargetError::EmptyHost(_))));
        assert!(matches!(parse("[]:22"), Err(TargetError::EmptyHost(_))));
        assert!(matches!(parse("[zz::1]:22"), Err(TargetError::BadIpv6(..))));
        assert!(matches!(parse("[::1]"), Err(TargetError::MissingPort(_))));
        assert!(matches!(
            parse("example.com"),
            Err(TargetError::MissingPort(_))
        ));
        assert!(matches!(
            parse("udp://host:53"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(parse("bad host:22"), Err(TargetError::BadName(_))));
        assert!(matches!(
            parse("-bad.example:22"),
            Err(TargetError::BadName(_))
        ));
        assert!(matches!(parse("a..b:22"), Err(TargetError::BadName(_))));
        let long_label = format!("{}.example:22", "a".repeat(64));
        assert!(matches!(
            parse(&long_label),
            Err(TargetError::LabelTooLong(..))
        ));
        let long_name = format!("{}:22", ["abcdefghi"; 26].join("."));
        assert!(matches!(
            parse(&long_name),
            Err(TargetError::NameTooLong(_, 259))
        ));
        let just_fits = format!("{}.abc:22", ["abcdefghi"; 25].join("."));
        assert!(parse(&just_fits).is_ok(), "253 characters are allowed");
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,80}") {
            let _ = parse(&text);
        }

        #[test]
        fn valid_ports_round_trip(port in 1u16..=65535) {
            let t = parse(&format!("tcp://[::1]:{port}")).unwrap();
            prop_assert_eq!(t.port, port);
            let again = parse(&t.to_string()).unwrap();
            prop_assert_eq!(again.host, t.host);
        }

        #[test]
        fn ascii_names_round_trip(labels in proptest::collection::vec("[a-z][a-z0-9]{0,10}", 1..5), port in 1u16..=65535) {
            let host = labels.join(".");
            let t = parse(&format!("{host}:{port}")).unwrap();
            prop_assert_eq!(t.host, Host::Name(host));
        }
    }
}
