//! Output formats for check results: human, JSON Lines and Nagios.

use std::net::IpAddr;
use std::time::Duration;

use owo_colors::OwoColorize;
use serde::Serialize;

use crate::probe::{CheckResult, Reason, Status, family_name};

/// The stable JSON form of a check result (one object per line). Field names
/// and order are a contract.
#[derive(Debug, Serialize)]
pub struct JsonResult<'a> {
    target: &'a str,
    host: &'a str,
    port: u16,
    service: Option<&'a str>,
    address: Option<IpAddr>,
    family: Option<&'static str>,
    status: Status,
    reason: Reason,
    message: &'a str,
    response_time_ms: Option<f64>,
    dns_time_ms: Option<f64>,
    reported_by: Option<IpAddr>,
    checked_at: String,
    /// Protocol checks only (absent for a plain connect).
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_time_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_byte_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<&'a crate::probe::proto::TlsReport>,
}

/// Milliseconds with microsecond resolution.
pub fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// The JSON line for one result.
pub fn json(result: &CheckResult) -> String {
    let json = JsonResult {
        target: &result.target,
        host: &result.host,
        port: result.port,
        service: result.service.as_deref(),
        address: result.address,
        family: result.address.map(family_name),
        status: result.status,
        reason: result.reason,
        message: &result.message,
        response_time_ms: result.response_time.map(millis),
        dns_time_ms: result.dns_time.map(millis),
        reported_by: result.reported_by,
        checked_at: result.checked_at.to_string(),
        protocol: result.protocol.as_ref().map(|p| p.protocol.as_str()),
        tls_time_ms: result
            .protocol
            .as_ref()
            .and_then(|p| p.tls_time)
            .map(millis),
        first_byte_ms: result
            .protocol
            .as_ref()
            .and_then(|p| p.first_byte)
            .map(millis),
        total_ms: result.protocol.as_ref().map(|p| millis(p.total)),
        details: result.protocol.as_ref().map(|p| &p.details),
        tls: result.protocol.as_ref().and_then(|p| p.tls.as_ref()),
    };
    serde_json::to_string(&json).expect("a check result always serialises")
}

/// A check_tcp-compatible line:
/// `TCP OK - 0.000481 second response time on HOST port 22|time=0.000481s;W;C;0.000000;T`.
/// Perfdata is given when a connection was made, as check_tcp does (and
/// when a protocol failed after connecting, as check_http does).
pub fn nagios(
    result: &CheckResult,
    warning: Option<Duration>,
    critical: Option<Duration>,
    timeout: Duration,
) -> String {
    let word = result.status.nagios_word();
    match (result.reason, result.response_time) {
        (reason, Some(time)) if reason.is_answer() => {
            let seconds = |d: Option<Duration>| {
                d.map(|d| format!("{:.6}", d.as_secs_f64()))
                    .unwrap_or_default()
            };
            let summary = if result.status == Status::Up || result.status == Status::Warning {
                format!(
                    "{:.6} second response time on {} port {}",
                    time.as_secs_f64(),
                    result.host,
                    result.port
                )
            } else {
                result.message.clone()
            };
            let mut line = format!(
                "TCP {word} - {summary}|time={:.6}s;{};{};0.000000;{:.6}",
                time.as_secs_f64(),
                seconds(warning),
                seconds(critical),
                timeout.as_secs_f64()
            );
            if let Some(report) = &result.protocol {
                line = format!(
                    "{} {}",
                    line.replacen("TCP ", &format!("{} ", report.protocol.to_uppercase()), 1),
                    protocol_perfdata(report)
                );
                if result.status == Status::Up {
                    line = line.replacen(&summary, &result.message, 1);
                }
            }
            line
        }
        _ => {
            let name = result
                .protocol
                .as_ref()
                .map_or("TCP".to_owned(), |p| p.protocol.to_uppercase());
            let line = format!("{name} {word} - {} ({})", result.message, result.reason);
            // A protocol that failed after connecting still has its times.
            match (&result.protocol, result.response_time) {
                (Some(report), Some(time)) => format!(
                    "{line}|time={:.6}s;;;0.000000;{:.6} {}",
                    time.as_secs_f64(),
                    timeout.as_secs_f64(),
                    protocol_perfdata(report)
                ),
                _ => line,
            }
        }
    }
}

/// Perfdata of a protocol check's phases, in seconds.
fn protocol_perfdata(report: &crate::probe::proto::ProtoReport) -> String {
    let mut out = Vec::new();
    if let Some(tls) = report.tls_time {
        out.push(format!("tls={:.6}s", tls.as_secs_f64()));
    }
    if let Some(first) = report.first_byte {
        out.push(format!("first_byte={:.6}s", first.as_secs_f64()));
    }
    out.push(format!("total={:.6}s", report.total.as_secs_f64()));
    // PING: the loss, as check_ping reports it.
    if let Some(loss) = report.details.get("loss_percent") {
        out.push(format!("pl={loss}%"));
    }
    if let Some(cert) = report.tls.as_ref().and_then(|t| t.cert.as_ref()) {
        let days = (cert.not_after_s - jiff::Timestamp::now().as_second()) / 86_400;
        out.push(format!("cert_days={days}"));
    }
    out.join(" ")
}

/// One human line: status, target with service, reason and message.
pub fn human(result: &CheckResult, target_width: usize) -> String {
    let status = format!("{:<7}", result.status.as_str().to_uppercase());
    let status = match result.status {
        Status::Up => status.green().bold().to_string(),
        Status::Warning => status.yellow().bold().to_string(),
        Status::Down => status.red().bold().to_string(),
        Status::Unknown => status.magenta().bold().to_string(),
    };
    let target = match &result.service {
        Some(service) => format!("{} ({service})", result.target),
        None => result.target.clone(),
    };
    let reason = format!("{:<19}", result.reason.as_str());
    format!(
        "{status} {target:<target_width$}  {}  {}",
        reason.dimmed(),
        result.message
    )
}

/// The width of the target column for a set of results.
pub fn target_width(results: &[CheckResult]) -> usize {
    results
        .iter()
        .map(|r| r.target.chars().count() + r.service.as_ref().map_or(0, |s| s.len() + 3))
        .max()
        .unwrap_or(0)
}

/// The Nagios exit code for several results: CRITICAL over WARNING over
/// UNKNOWN over OK, so that 1 means "warnings, nothing down".
pub fn exit_code(statuses: impl IntoIterator<Item = Status>) -> u8 {
    let worst = statuses.into_iter().max_by_key(|status| match status {
        Status::Up => 0,
        Status::Unknown => 1,
        Status::Warning => 2,
        Status::Down => 3,
    });
    worst.map_or(0, Status::nagios_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: Status, reason: Reason, time: Option<u64>) -> CheckResult {
        CheckResult {
            target: "localhost:ssh".into(),
            host: "localhost".into(),
            port: 22,
            service: Some("ssh".into()),
            address: Some("127.0.0.1".parse().unwrap()),
            status,
            reason,
            message: "connection refused by 127.0.0.1 port 22".into(),
            response_time: time.map(Duration::from_micros),
            dns_time: Some(Duration::from_micros(12)),
            reported_by: None,
            checked_at: "2026-11-23T19:00:00Z".parse().unwrap(),
            protocol: None,
        }
    }

    #[test]
    fn nagios_matches_check_tcp() {
        let up = result(Status::Up, Reason::Connected, Some(481));
        assert_eq!(
            nagios(&up, None, None, Duration::from_secs(10)),
            "TCP OK - 0.000481 second response time on localhost port 22|time=0.000481s;;;0.000000;10.000000"
        );
        let warn = result(Status::Warning, Reason::Connected, Some(250_000));
        assert_eq!(
            nagios(
                &warn,
                Some(Duration::from_millis(200)),
                Some(Duration::from_secs(1)),
                Duration::from_secs(10)
            ),
            "TCP WARNING - 0.250000 second response time on localhost port 22|time=0.250000s;0.200000;1.000000;0.000000;10.000000"
        );
        let down = result(Status::Down, Reason::Refused, Some(40));
        assert_eq!(
            nagios(&down, None, None, Duration::from_secs(10)),
            "TCP CRITICAL - connection refused by 127.0.0.1 port 22 (refused)"
        );
    }

    #[test]
    fn json_has_the_stable_fields_in_order() {
        let line = json(&result(Status::Up, Reason::Connected, Some(481)));
        let keys: Vec<String> = serde_json::from_str::<serde_json::Value>(&line)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut expected = [
            "target",
            "host",
            "port",
            "service",
            "address",
            "family",
            "status",
            "reason",
            "message",
            "response_time_ms",
            "dns_time_ms",
            "reported_by",
            "checked_at",
        ];
        // serde_json's map sorts keys; order is checked on the raw line.
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        assert!(line.starts_with(r#"{"target":"localhost:ssh","host":"localhost","port":22,"service":"ssh","address":"127.0.0.1","family":"ipv4","status":"up","reason":"connected""#), "{line}");
        assert!(line.contains(r#""response_time_ms":0.481,"dns_time_ms":0.012,"reported_by":null,"checked_at":"2026-11-23T19:00:00Z""#), "{line}");
    }

    #[test]
    fn exit_codes_follow_nagios() {
        use Status::*;
        assert_eq!(exit_code([Up, Up]), 0);
        assert_eq!(exit_code([Up, Warning]), 1);
        assert_eq!(exit_code([Warning, Down, Up]), 2);
        assert_eq!(exit_code([Unknown, Up]), 3);
        assert_eq!(exit_code([Unknown, Warning]), 1);
        assert_eq!(exit_code([Unknown, Down]), 2);
    }
}
