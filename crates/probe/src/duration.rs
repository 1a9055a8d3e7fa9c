//! Human durations: `250ms`, `10s`, `1.5s`, `2m`, `1h`, `1d`, or a bare
//! number of seconds. Used by the command line and, later, the configuration.

use std::time::Duration;

/// Why a duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is not a number followed by a known unit.
    #[error("invalid duration '{0}': use a number with a unit, e.g. 500ms, 10s, 2m")]
    Syntax(String),
    /// The number is zero or negative where a positive duration is needed.
    #[error("invalid duration '{0}': it must be greater than zero")]
    NotPositive(String),
    /// The number is above the limit for this use.
    #[error("invalid duration '{0}': it must be at most {1}")]
    TooLong(String, &'static str),
}

/// Parses a positive duration of at most one day.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(portwatch_probe::duration::parse("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(portwatch_probe::duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(portwatch_probe::duration::parse("3"), Ok(Duration::from_secs(3)));
/// ```
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    parse_at_most(text, 86_400, "1 day")
}

/// Parses a positive duration of at most `max_seconds` (`limit` names it in
/// the error), e.g. a report period of `30d`.
pub fn parse_at_most(
    text: &str,
    max_seconds: u64,
    limit: &'static str,
) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(DurationError::Syntax(text.to_owned())),
    };
    if number.is_empty() || number.matches('.').count() > 1 {
        return Err(DurationError::Syntax(text.to_owned()));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::Syntax(text.to_owned()))?;
    let seconds = value * scale;
    if seconds <= 0.0 {
        return Err(DurationError::NotPositive(text.to_owned()));
    }
    if seconds > max_seconds as f64 {
        return Err(DurationError::TooLong(text.to_owned(), limit));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Formats a duration the way [`parse`] reads it, choosing a readable unit.
pub fn format(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros < 1_000 {
        format!("{micros}us")
    } else if micros < 1_000_000 {
        format!("{}ms", trim_float(micros as f64 / 1e3))
    } else if micros < 60_000_000 {
        format!("{}s", trim_float(micros as f64 / 1e6))
    } else if micros.is_multiple_of(86_400_000_000) {
        format!("{}d", micros / 86_400_000_000)
    } else if micros.is_multiple_of(3_600_000_000) {
        format!("{}h", micros / 3_600_000_000)
    } else {
        format!("{}m", trim_float(micros as f64 / 6e7))
    }
}

/// A short, coarse age: "45s", "3m 20s", "2h 5m", "4d 3h", for the time
/// from `from_ms` to `now_ms` (milliseconds).
pub fn age(from_ms: i64, now_ms: i64) -> String {
    let seconds = (now_ms - from_ms).max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("750us"), Ok(Duration::from_micros(750)));
        assert_eq!(parse(" 5 s "), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", "s", "abc", "10x", "1.2.3s", "-1s", "ten seconds"] {
            assert!(
                matches!(parse(bad), Err(DurationError::Syntax(_))),
                "{bad:?} should be a syntax error, got {:?}",
                parse(bad)
            );
        }
        assert_eq!(parse("0s"), Err(DurationError::NotPositive("0s".into())));
        assert_eq!(
            parse("2d"),
            Err(DurationError::TooLong("2d".into(), "1 day"))
        );
        assert_eq!(
            parse_at_most("30d", 400 * 86_400, "400 days"),
            Ok(Duration::from_secs(30 * 86_400))
        );
    }

    #[test]
    fn ages() {
        assert_eq!(age(0, 45_000), "45s");
        assert_eq!(age(0, 200_000), "3m 20s");
        assert_eq!(age(0, 7_500_000), "2h 5m");
        assert_eq!(age(0, 4 * 86_400_000 + 3 * 3_600_000), "4d 3h");
        assert_eq!(age(10, 0), "0s");
    }

    #[test]
    fn formats_readably() {
        assert_eq!(format(Duration::from_micros(481)), "481us");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_secs(120)), "2m");
        assert_eq!(format(Duration::from_secs(5400)), "90m");
        assert_eq!(format(Duration::from_secs(7200)), "2h");
        assert_eq!(format(Duration::from_secs(2 * 86_400)), "2d");
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,12}") {
            let _ = parse(&text);
        }

        #[test]
        fn format_round_trips(millis in 1u64..86_400_000) {
            let duration = Duration::from_millis(millis);
            let back = parse(&format(duration)).unwrap();
            let diff = back.as_secs_f64() - duration.as_secs_f64();
            // Minutes are printed with three decimals, so allow 30 ms of rounding.
            prop_assert!(diff.abs() < 0.031, "{duration:?} -> {} -> {back:?}", format(duration));
        }
    }
}
