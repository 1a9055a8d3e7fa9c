//! `portwatch status`: every sensor's state, since when, and last result.

use std::io::Write;

use owo_colors::OwoColorize;
use serde::Serialize;

use super::StoreClient;
use super::{ScanFormat, StatusArgs};
use crate::monitor::state::State;
use crate::monitor::verdict::LocationReport;
use crate::probe::Status;
use crate::store::pg::nodes::NodeRow;
use crate::store::{StatusRow, Storage};

pub(super) const EXAMPLES: &str = "Examples:
  portwatch status
  portwatch status --format json | jq 'select(.state == \"down\")'

Exit codes: 0 every sensor is UP, paused or pending (not checked yet: no
verdict, so no alarm), 1 a WARNING, 2 a DOWN, 3 an UNKNOWN (Nagios style),
so `portwatch status` can itself be a check.";

#[derive(Serialize)]
struct JsonStatus<'a> {
    sensor: &'a str,
    group: Option<&'a str>,
    host: &'a str,
    port: u16,
    state: &'static str,
    since: Option<String>,
    last_check: Option<String>,
    response_time_ms: Option<f64>,
    reason: Option<&'a str>,
    message: Option<&'a str>,
    /// A sensor checked from several locations: each location's state.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    locations: &'a [JsonLocation],
}

#[derive(Serialize)]
struct JsonLocation {
    location: String,
    state: &'static str,
    since: String,
    last_check: String,
    response_time_ms: Option<f64>,
    reason: &'static str,
    message: String,
}

impl From<&LocationReport> for JsonLocation {
    fn from(r: &LocationReport) -> Self {
        JsonLocation {
            location: r.location.clone(),
            state: r.state.as_str(),
            since: time(r.since_ms),
            last_check: time(r.checked_ms),
            response_time_ms: r.rtt_us.map(|us| f64::from(us) / 1000.0),
            reason: r.reason.as_str(),
            message: r.message.clone(),
        }
    }
}

/// An RFC 3339 time from milliseconds since the epoch.
pub(super) fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub(super) fn paint(state: State) -> String {
    let text = state.as_str();
    match state {
        State::Up => text.green().bold().to_string(),
        State::Warning => text.yellow().bold().to_string(),
        State::Down => text.red().bold().to_string(),
        State::Unknown => text.magenta().bold().to_string(),
        State::Pending | State::Paused(_) => text.dimmed().to_string(),
    }
}

pub(super) fn run(args: &StatusArgs) -> anyhow::Result<u8> {
    let store = StoreClient::open(&args.db, true)?;
    let rows = store.call(store.db.status())?;
    let mut locations: std::collections::HashMap<i64, Vec<LocationReport>> =
        std::collections::HashMap::new();
    for report in store.call(store.db.location_reports(None))? {
        locations.entry(report.sensor).or_default().push(report);
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let mut stdout = std::io::BufWriter::new(anstream::stdout().lock());
    match args.format {
        ScanFormat::Json => {
            for row in &rows {
                let at: Vec<JsonLocation> = locations
                    .get(&row.id)
                    .map(|l| l.iter().map(JsonLocation::from).collect())
                    .unwrap_or_default();
                writeln!(stdout, "{}", serde_json::to_string(&json(row, &at))?)?;
            }
        }
        ScanFormat::Human if rows.is_empty() => {
            writeln!(
                stdout,
                "No sensors in {}. Add some with `portwatch apply portwatch.toml`.",
                args.db.db
            )?;
        }
        ScanFormat::Human => {
            let width = rows
                .iter()
                .map(|r| r.path.chars().count())
                .chain(
                    locations
                        .values()
                        .flatten()
                        .map(|l| l.location.chars().count() + 4),
                )
                .max()
                .unwrap_or(6)
                .max(6);
            writeln!(
                stdout,
                "{}",
                format!(
                    "{:<width$}  {:<18}  {:>9}  {:>10}  {:<19}  MESSAGE",
                    "SENSOR", "STATE", "SINCE", "TIME", "REASON"
                )
                .bold()
            )?;
            for row in &rows {
                let state = format!("{:<18}", row.state.as_str());
                let state = state.replacen(row.state.as_str(), &paint(row.state), 1);
                writeln!(
                    stdout,
                    "{:<width$}  {state}  {:>9}  {:>10}  {:<19}  {}",
                    row.path,
                    row.since_ms
                        .map(|ms| crate::duration::age(ms, now_ms))
                        .unwrap_or_else(|| "-".into()),
                    row.last_rtt_us
                        .map(|us| format!("{:.3} ms", us as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into()),
                    row.last_reason.as_deref().unwrap_or("-"),
                    row.last_message.as_deref().unwrap_or(""),
                )?;
                // Each location's own state, under the verdict.
                for report in locations.get(&row.id).into_iter().flatten() {
                    let place = format!("  @ {}", report.location);
                    let state = format!("{:<18}", report.state.as_str());
                    let state = state.replacen(report.state.as_str(), &paint(report.state), 1);
                    writeln!(
                        stdout,
                        "{place:<width$}  {state}  {:>9}  {:>10}  {:<19}  {}",
                        crate::duration::age(report.since_ms, now_ms),
                        report
                            .rtt_us
                            .map(|us| format!("{:.3} ms", f64::from(us) / 1000.0))
                            .unwrap_or_else(|| "-".into()),
                        report.reason.as_str(),
                        report.message,
                    )?;
                }
            }
            let count = |wanted: fn(State) -> bool| rows.iter().filter(|r| wanted(r.state)).count();
            writeln!(
                stdout,
                "{} sensors: {} up, {} warning, {} down, {} paused, {} pending, {} unknown",
                rows.len(),
                count(|s| s == State::Up),
                count(|s| s == State::Warning),
                count(|s| s == State::Down),
                count(|s| matches!(s, State::Paused(_))),
                count(|s| s == State::Pending),
                count(|s| s == State::Unknown),
            )?;
            let nodes = store.call(store.db.nodes())?;
            if let Some(line) = nodes_summary(&nodes, now_ms) {
                writeln!(stdout, "{line}")?;
            }
        }
    }
    stdout.flush()?;
    let statuses = rows.iter().filter_map(|r| match r.state {
        State::Up => Some(Status::Up),
        State::Warning => Some(Status::Warning),
        State::Down => Some(Status::Down),
        State::Unknown => Some(Status::Unknown),
        State::Pending | State::Paused(_) => None,
    });
    Ok(super::output::exit_code(statuses))
}

/// One line on the nodes sharing the store: the live ones with their
/// share and rate, then those whose lease lapsed. `None` without nodes
/// (a SQLite store).
fn nodes_summary(nodes: &[NodeRow], now_ms: i64) -> Option<String> {
    if nodes.is_empty() {
        return None;
    }
    let live: Vec<String> = nodes
        .iter()
        .filter(|n| n.live)
        .map(|n| {
            format!(
                "{} ({}, {} sensors, {:.1} checks/s)",
                n.name, n.location, n.heartbeat.sensors, n.heartbeat.checks_per_s
            )
        })
        .collect();
    let lapsed: Vec<String> = nodes
        .iter()
        .filter(|n| !n.live && !n.left)
        .map(|n| {
            format!(
                "{} (last heartbeat {} ago)",
                n.name,
                crate::duration::age(n.heartbeat_ms, now_ms)
            )
        })
        .collect();
    let mut line = if live.is_empty() {
        "Nodes: none live: no node checks the sensors".to_owned()
    } else {
        format!("Nodes: {} live: {}", live.len(), live.join(", "))
    };
    if !lapsed.is_empty() {
        line.push_str(&format!("; lapsed: {}", lapsed.join(", ")));
    }
    Some(line)
}

fn json<'a>(row: &'a StatusRow, locations: &'a [JsonLocation]) -> JsonStatus<'a> {
    JsonStatus {
        sensor: &row.path,
        group: row.group.as_deref(),
        host: &row.host,
        port: row.port,
        state: row.state.as_str(),
        since: row.since_ms.map(time),
        last_check: row.last_check_ms.map(time),
        response_time_ms: row.last_rtt_us.map(|us| us as f64 / 1000.0),
        reason: row.last_reason.as_deref(),
        message: row.last_message.as_deref(),
        locations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::pg::nodes::Heartbeat;

    fn node(name: &str, live: bool, left: bool, heartbeat_ms: i64) -> NodeRow {
        NodeRow {
            id: 1,
            name: name.into(),
            location: "eu".into(),
            version: "0".into(),
            started_ms: 0,
            heartbeat_ms,
            expires_ms: 0,
            live,
            left,
            heartbeat: Heartbeat {
                sensors: 100,
                checks_per_s: 9.96,
                late: 0,
                missed: 0,
            },
        }
    }

    #[test]
    fn the_nodes_line_names_live_and_lapsed_nodes_and_leaves_out_those_that_left() {
        assert_eq!(nodes_summary(&[], 0), None, "SQLite: no line");
        let nodes = [
            node("a", true, false, 60_000),
            node("b", false, false, 30_000),
            node("c", false, true, 0),
        ];
        assert_eq!(
            nodes_summary(&nodes, 60_000).unwrap(),
            "Nodes: 1 live: a (eu, 100 sensors, 10.0 checks/s); lapsed: b (last heartbeat 30s ago)"
        );
        assert_eq!(
            nodes_summary(&nodes[1..], 60_000).unwrap(),
            "Nodes: none live: no node checks the sensors; lapsed: b (last heartbeat 30s ago)"
        );
    }
}
