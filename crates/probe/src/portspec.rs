//! Port lists for the scanner: `1-1024,3306,ssh`.

use super::services::Services;
use super::target::{TargetError, parse_port};

/// Why a port list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    /// An empty list or an empty item between commas.
    #[error("port list '{0}' has an empty item: write e.g. 1-1024,3306,ssh")]
    Empty(String),
    /// A range whose end is below its start.
    #[error("port range '{0}' is backwards: write {2}-{1}")]
    Backwards(String, u16, u16),
    /// A port or range end outside 1-65535.
    #[error("port range '{0}' leaves 1-65535: use ports from 1 to 65535")]
    OutOfRange(String),
    /// A port or service name that is not valid.
    #[error(transparent)]
    Port(#[from] TargetError),
}

/// Parses a port list into sorted, unique ports.
pub fn parse(spec: &str, services: &Services) -> Result<Vec<u16>, PortSpecError> {
    let mut ports = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(PortSpecError::Empty(spec.to_owned()));
        }
        match item.split_once('-') {
            // A leading '-' is a negative number, which parse_port refuses.
            Some((start, end)) if !start.is_empty() => {
                let bound = |text: &str| match text.trim().parse::<u32>() {
                    Ok(port @ 1..=65535) => Ok(port as u16),
                    Ok(_) => Err(PortSpecError::OutOfRange(item.to_owned())),
                    Err(_) => parse_port(text, services).map_err(PortSpecError::from),
                };
                let (start, end) = (bound(start)?, bound(end)?);
                if end < start {
                    return Err(PortSpecError::Backwards(item.to_owned(), start, end));
                }
                ports.extend(start..=end);
            }
            _ => ports.push(parse_port(item, services)?),
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(text: &str) -> Result<Vec<u16>, PortSpecError> {
        parse(text, &Services::builtin())
    }

    #[test]
    fn ranges_names_and_numbers() {
        assert_eq!(spec("22").unwrap(), [22]);
        assert_eq!(spec("80-82, ssh,80").unwrap(), [22, 80, 81, 82]);
        assert_eq!(spec("1-1024,3306,ssh").unwrap().len(), 1025);
        assert_eq!(spec("65535-65535").unwrap(), [65535]);
        assert_eq!(spec("1-65535").unwrap().len(), 65535);
    }

    #[test]
    fn bad_specs() {
        assert_eq!(
            spec("10-5"),
            Err(PortSpecError::Backwards("10-5".into(), 10, 5))
        );
        assert_eq!(
            spec("10-5").unwrap_err().to_string(),
            "port range '10-5' is backwards: write 5-10"
        );
        assert_eq!(
            spec("1-70000"),
            Err(PortSpecError::OutOfRange("1-70000".into()))
        );
        assert_eq!(spec("0-10"), Err(PortSpecError::OutOfRange("0-10".into())));
        assert!(matches!(spec("22,,23"), Err(PortSpecError::Empty(_))));
        assert!(matches!(spec(""), Err(PortSpecError::Empty(_))));
        assert!(matches!(
            spec("-1"),
            Err(PortSpecError::Port(TargetError::PortRange(_)))
        ));
        assert!(matches!(
            spec("65536"),
            Err(PortSpecError::Port(TargetError::PortRange(_)))
        ));
        assert!(matches!(
            spec("sshh"),
            Err(PortSpecError::Port(TargetError::UnknownService { .. }))
        ));
        assert!(matches!(
            spec("a-b"),
            Err(PortSpecError::Port(TargetError::UnknownService { .. }))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(text in "[-,0-9a-z ]{0,30}") {
            let _ = spec(&text);
        }

        #[test]
        fn a_range_holds_exactly_its_ports(a in 1u16..=65535, b in 1u16..=65535) {
            let (low, high) = (a.min(b), a.max(b));
            let ports = spec(&format!("{low}-{high}")).unwrap();
            prop_assert_eq!(ports.len(), usize::from(high - low) + 1);
            prop_assert_eq!(ports.first(), Some(&low));
            prop_assert_eq!(ports.last(), Some(&high));
        }
    }
}
