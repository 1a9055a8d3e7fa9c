//! `/metrics` in the Prometheus text format: per-sensor state and
//! connect time, and the monitor's own counters. Open to loopback clients;
//! others need an API token.
//!
//! The per-sensor series are rendered at most once every
//! [`SENSORS_FRESH`] and shared by the scrapes in between (at 100,000
//! sensors one rendering reads every sensor's row and writes about 400,000
//! lines); the daemon's own counters are read at every scrape.
//! `/metrics?scope=summary` leaves the per-sensor series out and keeps the
//! count of sensors in each state, for installations too large to scrape
//! whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::auth::account;
use super::{AppError, AppState};
use crate::monitor::state::State as SensorState;
use crate::probe::Services;
use crate::store::Storage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LocationLabels {
    group: String,
    server: String,
    sensor: String,
    location: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
    location: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// The numeric code of `portwatch_sensor_state`.
fn state_code(state: SensorState) -> i64 {
    match state {
        SensorState::Pending => 0,
        SensorState::Up => 1,
        SensorState::Warning => 2,
        SensorState::Down => 3,
        SensorState::Paused(_) => 4,
        SensorState::Unknown => 5,
    }
}

/// How long rendered per-sensor series are served before the next scrape
/// renders them again.
pub(super) const SENSORS_FRESH: Duration = Duration::from_secs(5);

/// The state names of `portwatch_sensors`, indexed by [`state_code`].
const STATE_NAMES: [&str; 6] = ["pending", "up", "warning", "down", "paused", "unknown"];

/// The per-sensor series as last rendered, shared by the scrapes of
/// [`SENSORS_FRESH`]; a scrape that finds them stale renders them while
/// the others wait, so one rendering runs at a time.
#[derive(Clone, Default)]
pub(super) struct SensorSeries(Arc<tokio::sync::Mutex<Option<Rendered>>>);

struct Rendered {
    at: tokio::time::Instant,
    /// The per-sensor families, without the end-of-file marker; `None`
    /// when only summaries were asked for since the rows were read, or
    /// once stale (at 1,000,000 sensors they take about 480 MB).
    text: Option<Bytes>,
    /// Sensors by state, indexed by [`state_code`].
    by_state: [i64; 6],
}

impl SensorSeries {
    /// The count of sensors by state and, unless `summary`, the per-sensor
    /// text, read again when older than [`SENSORS_FRESH`]. A summary never
    /// renders the per-sensor series.
    async fn get(
        &self,
        db: &crate::store::Backend,
        tallies: &super::tally::Tallies,
        summary: bool,
    ) -> Result<(Option<Bytes>, [i64; 6]), AppError> {
        let mut cached = self.0.lock().await;
        if let Some(rendered) = cached.as_ref()
            && rendered.at.elapsed() < SENSORS_FRESH
            && (summary || rendered.text.is_some())
        {
            return Ok((rendered.text.clone(), rendered.by_state));
        }
        let mut by_state = [0; 6];
        let text = if summary {
            // The dashboard's tally: with 1,000,000 sensors, the rows
            // themselves would be about a gigabyte.
            for (_, state, n) in tallies.get(db).await?.iter() {
                by_state[state_code(*state) as usize] += n;
            }
            None
        } else {
            let rows = db.status().await?;
            for row in &rows {
                by_state[state_code(row.state) as usize] += 1;
            }
            let mut text = sensor_text(&rows);
            let mut registry = Registry::default();
            let reports = db.location_reports(None).await?;
            location_metrics(&mut registry, &rows, &reports);
            encode_registry(&mut text, &registry).map_err(|e| AppError::Internal(e.to_string()))?;
            // Bytes takes the string's buffer: the scrapes share it without
            // a copy.
            Some(Bytes::from(text))
        };
        let at = tokio::time::Instant::now();
        *cached = Some(Rendered {
            at,
            text: text.clone(),
            by_state,
        });
        if text.is_some() {
            // The text is let go once stale, rather than held until the
            // next full scrape.
            let series = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(SENSORS_FRESH).await;
                if let Some(rendered) = series.0.lock().await.as_mut()
                    && rendered.at == at
                {
                    rendered.text = None;
                }
            });
        }
        Ok((text, by_state))
    }
}

/// Which series a scrape wants: every one, or the summary.
fn summary_only(parts: &Parts) -> Result<bool, AppError> {
    let mut summary = false;
    for pair in parts.uri.query().unwrap_or("").split('&') {
        match pair {
            "" | "scope=full" => {}
            "scope=summary" => summary = true,
            other => {
                return Err(AppError::BadRequest(format!(
                    "unknown /metrics parameter '{other}': use scope=summary (the daemon's series and sensors by state) or scope=full (the default)"
                )));
            }
        }
    }
    Ok(summary)
}

/// A counter holding `n`, for values the monitor already counts.
fn counter(n: u64) -> Counter {
    let c = Counter::<u64>::default();
    c.inc_by(n);
    c
}

pub async fn metrics(
    State(state): State<AppState>,
    mut parts: Parts,
) -> Result<Response, AppError> {
    let free = match state.metrics {
        super::MetricsAccess::Open => true,
        super::MetricsAccess::Loopback => {
            state.client_ip(&parts).is_some_and(|ip| ip.is_loopback())
        }
        super::MetricsAccess::Token => false,
    };
    if !free && account(&mut parts, &state).await?.is_none() {
        return Err(AppError::Unauthorized);
    }
    let summary = summary_only(&parts)?;
    // While the store cannot be read, the daemon's own series are still
    // served, with portwatch_store_up 0 and without the store's.
    let read = async {
        let (text, by_state) = state
            .sensor_series
            .get(&state.db, &state.tallies, summary)
            .await?;
        let undelivered = state.db.undelivered().await?;
        let nodes = state.db.nodes().await?;
        Ok::<_, AppError>((text, by_state, undelivered, nodes))
    };
    let (store_up, (sensor_text, by_state, undelivered, nodes)) = match read.await {
        Ok(read) => (1, read),
        Err(error) => {
            tracing::warn!(%error, "metrics without the store's series: it cannot be read");
            (0, (None, [0; 6], 0, Vec::new()))
        }
    };
    // A summary leaves the per-sensor series out, even when they are cached.
    let sensor_text = sensor_text.filter(|_| !summary);
    let mut registry = Registry::default();
    let sensors = Family::<StateLabels, Gauge>::default();
    for (name, count) in STATE_NAMES.iter().zip(by_state) {
        sensors
            .get_or_create(&StateLabels {
                state: (*name).to_owned(),
            })
            .set(count);
    }
    registry.register("portwatch_sensors", "Sensors in each state", sensors);
    node_metrics(&mut registry, &nodes);
    if let Some(monitor) = &state.monitor {
        monitor_metrics(&mut registry, &monitor.snapshot());
    }
    let up = Gauge::<i64>::default();
    up.set(store_up);
    registry.register(
        "portwatch_store_up",
        "Whether the store answered this scrape's reads (1) or not (0)",
        up,
    );
    if let Some(writer) = &state.writer {
        let queued = Gauge::<i64>::default();
        queued.set(writer.pending.load(Ordering::Relaxed) as i64);
        registry.register(
            "portwatch_store_queued_results",
            "Raw results waiting to be written",
            queued,
        );
        let events = Gauge::<i64>::default();
        events.set(writer.events_pending.load(Ordering::Relaxed) as i64);
        registry.register(
            "portwatch_store_queued_events",
            "State changes and notifications waiting to be written",
            events,
        );
        registry.register(
            "portwatch_store_write_errors",
            "Failed store commits (retried)",
            counter(writer.write_errors.load(Ordering::Relaxed)),
        );
        registry.register(
            "portwatch_store_results",
            "Raw results written",
            counter(writer.results_stored.load(Ordering::Relaxed)),
        );
        registry.register(
            "portwatch_store_results_lost",
            "Raw results lost",
            counter(writer.results_dropped.load(Ordering::Relaxed)),
        );
        let longest = Gauge::<f64, AtomicU64>::default();
        longest.set(writer.longest_step_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        registry.register(
            "portwatch_store_longest_step_seconds",
            "The longest one commit, repack or merge step of the store's writer took since the start (results wait in its queue meanwhile)",
            longest,
        );
    }
    let pending = Gauge::<i64>::default();
    pending.set(undelivered);
    registry.register(
        "portwatch_notifications_pending",
        "Notifications not delivered yet (being retried)",
        pending,
    );
    if let Some(delivery) = &state.delivery {
        registry.register(
            "portwatch_notifications_delivered",
            "Notifications delivered",
            counter(delivery.delivered.load(Ordering::Relaxed)),
        );
        registry.register(
            "portwatch_notification_failures",
            "Failed delivery attempts (each retried)",
            counter(delivery.failed_attempts.load(Ordering::Relaxed)),
        );
    }
    registry.register(
        "portwatch_web_sign_in_verifications",
        "Passwords verified by the sign-in form (right or wrong)",
        counter(state.sign_ins.verified.load(Ordering::Relaxed)),
    );
    registry.register(
        "portwatch_web_sign_ins_refused",
        "Sign-ins refused before their password was verified (throttled or busy)",
        counter(state.sign_ins.refused.load(Ordering::Relaxed)),
    );
    let mut daemon = String::with_capacity(4096);
    encode_registry(&mut daemon, &registry).map_err(|e| AppError::Internal(e.to_string()))?;
    encode_eof(&mut daemon).map_err(|e| AppError::Internal(e.to_string()))?;
    // The per-sensor text is sent from the shared buffer, not copied.
    let chunks = sensor_text
        .into_iter()
        .chain([Bytes::from(daemon)])
        .map(Ok::<_, std::convert::Infallible>);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response())
}

/// The nodes sharing the store (none on SQLite), but those that left:
/// whether each holds its lease, its sensors and its checks per second.
fn node_metrics(registry: &mut Registry, nodes: &[crate::store::pg::nodes::NodeRow]) {
    if nodes.is_empty() {
        return;
    }
    let up = Family::<NodeLabels, Gauge>::default();
    let sensors = Family::<NodeLabels, Gauge>::default();
    let rate = Family::<NodeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let mut seen = std::collections::HashSet::new();
    // Live first: a name that rejoined is shown by its live row.
    for node in nodes.iter().filter(|n| !n.left) {
        if !seen.insert(node.name.as_str()) {
            continue;
        }
        let labels = NodeLabels {
            node: node.name.clone(),
            location: node.location.clone(),
        };
        up.get_or_create(&labels).set(i64::from(node.live));
        if node.live {
            sensors.get_or_create(&labels).set(node.heartbeat.sensors);
            rate.get_or_create(&labels).set(node.heartbeat.checks_per_s);
        }
    }
    registry.register(
        "portwatch_node_up",
        "Whether a node sharing the store holds its lease (1) or let it lapse (0)",
        up,
    );
    registry.register(
        "portwatch_node_sensors",
        "Sensors a live node checks",
        sensors,
    );
    registry.register(
        "portwatch_node_checks_per_second",
        "A live node's checks per second (over its last 10 s)",
        rate,
    );
}

/// Sensors checked from several locations: each location's up, state and
/// connect time, with a `location` label.
fn location_metrics(
    registry: &mut Registry,
    rows: &[crate::store::StatusRow],
    reports: &[crate::monitor::verdict::LocationReport],
) {
    if reports.is_empty() {
        return;
    }
    let up = Family::<LocationLabels, Gauge>::default();
    let state_gauge = Family::<LocationLabels, Gauge>::default();
    let response = Family::<LocationLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let rows: std::collections::HashMap<i64, &crate::store::StatusRow> =
        rows.iter().map(|r| (r.id, r)).collect();
    for report in reports {
        let Some(row) = rows.get(&report.sensor) else {
            continue;
        };
        let (server, sensor) = row.path.split_once('/').unwrap_or((&row.path, ""));
        let labels = LocationLabels {
            group: row.group.clone().unwrap_or_default(),
            server: server.to_owned(),
            sensor: sensor.to_owned(),
            location: report.location.clone(),
        };
        up.get_or_create(&labels).set(i64::from(matches!(
            report.state,
            SensorState::Up | SensorState::Warning
        )));
        state_gauge
            .get_or_create(&labels)
            .set(state_code(report.state));
        if let Some(us) = report.rtt_us {
            response.get_or_create(&labels).set(f64::from(us) / 1e6);
        }
    }
    registry.register(
        "portwatch_sensor_location_up",
        "Sensors checked from several locations: 1 when UP or WARNING at that location",
        up,
    );
    registry.register(
        "portwatch_sensor_location_state",
        "Sensors checked from several locations: the state at that location (as portwatch_sensor_state)",
        state_gauge,
    );
    registry.register(
        "portwatch_sensor_location_response_seconds",
        "Sensors checked from several locations: the last connect time from that location",
        response,
    );
}

/// A family's samples of one sensor: (the `phase` label, if any; value).
type Samples<'a> = dyn Fn(&crate::store::StatusRow) -> Vec<(Option<&'static str>, String)> + 'a;

/// The per-sensor families as OpenMetrics text, written directly: with
/// 100,000 sensors, building them as label maps first (six strings a
/// series, about 400,000 series) took most of a scrape. Each sensor's
/// labels are written once and shared by its series.
fn sensor_text(rows: &[crate::store::StatusRow]) -> String {
    use std::fmt::Write as _;
    let services = Services::global();
    let labels: Vec<String> = rows
        .iter()
        .map(|row| {
            let (server, sensor) = row.path.split_once('/').unwrap_or((&row.path, ""));
            // A heartbeat or PING sensor (port 0) has no port.
            let port = if row.port == 0 {
                String::new()
            } else {
                row.port.to_string()
            };
            let service = if row.ping {
                "ping"
            } else if row.port == 0 {
                "heartbeat"
            } else {
                services.by_port(row.port).map_or("", |s| s.name.as_str())
            };
            let mut text = String::new();
            for (i, (name, value)) in [
                ("group", row.group.as_deref().unwrap_or_default()),
                ("server", server),
                ("sensor", sensor),
                ("host", row.host.as_str()),
                ("port", port.as_str()),
                ("service", service),
            ]
            .into_iter()
            .enumerate()
            {
                if i > 0 {
                    text.push(',');
                }
                let _ = write!(text, "{name}=\"");
                escape_label(&mut text, value);
                text.push('"');
            }
            text
        })
        .collect();
    let mut text = String::with_capacity(rows.len() * 400);
    let mut family = |name: &str, help: &str, value: &Samples<'_>| {
        let _ = write!(text, "# HELP {name} {help}.\n# TYPE {name} gauge\n");
        for (row, labels) in rows.iter().zip(&labels) {
            for (phase, value) in value(row) {
                match phase {
                    Some(phase) => {
                        let _ = writeln!(text, "{name}{{{labels},phase=\"{phase}\"}} {value}");
                    }
                    None => {
                        let _ = writeln!(text, "{name}{{{labels}}} {value}");
                    }
                }
            }
        }
    };
    let one = |value: Option<String>| value.map(|v| (None, v)).into_iter().collect::<Vec<_>>();
    family(
        "portwatch_sensor_up",
        "1 when the sensor is UP or WARNING, 0 otherwise",
        &|row| {
            let up = matches!(row.state, SensorState::Up | SensorState::Warning);
            one(Some(i64::from(up).to_string()))
        },
    );
    family(
        "portwatch_sensor_state",
        "0 pending, 1 up, 2 warning, 3 down, 4 paused, 5 unknown",
        &|row| one(Some(state_code(row.state).to_string())),
    );
    family(
        "portwatch_sensor_response_seconds",
        "The last connect time",
        &|row| one(row.last_rtt_us.map(|us| float(us as f64 / 1e6))),
    );
    family(
        "portwatch_sensor_last_check_timestamp_seconds",
        "When the sensor was last checked",
        &|row| one(row.last_check_ms.map(|ms| float(ms as f64 / 1e3))),
    );
    family(
        "portwatch_sensor_phase_seconds",
        "Protocol checks: the last check's TLS handshake, first byte and total time",
        &|row| {
            let Some(details) = &row.last_details else {
                return Vec::new();
            };
            [
                (details.tls_ms, "tls"),
                (details.first_byte_ms, "first_byte"),
                (Some(details.total_ms), "total"),
            ]
            .into_iter()
            .filter_map(|(ms, phase)| Some((Some(phase), float(ms? / 1e3))))
            .collect()
        },
    );
    family(
        "portwatch_sensor_ping_loss_ratio",
        "PING sensors: the share of the last check's echo requests that got no reply (0 to 1)",
        &|row| {
            one(row
                .last_details
                .as_ref()
                .and_then(|d| d.details.get("loss_percent"))
                .and_then(|p| p.parse::<f64>().ok())
                .filter(|_| row.ping)
                .map(|loss| float(loss / 100.0)))
        },
    );
    family(
        "portwatch_sensor_cert_expiry_timestamp_seconds",
        "Protocol checks over TLS: when the last seen certificate expires",
        &|row| {
            one(row
                .last_details
                .as_ref()
                .and_then(|d| d.cert_not_after_s)
                .map(|seconds| seconds.to_string()))
        },
    );
    text
}

/// A label value as OpenMetrics writes it: backslash, quote and line feed
/// escaped.
fn escape_label(text: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

/// A sample value: the shortest text that reads back as the same number,
/// with a decimal point ("1.0", "0.00025").
fn float(value: f64) -> String {
    format!("{value:?}")
}

/// The upper bounds (ms) of the start lateness histogram's buckets.
const LATENESS_BOUNDS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/// A histogram whose buckets are counted elsewhere: the monitor keeps its
/// start lateness by the millisecond, and a scrape only sums it up.
#[derive(Debug)]
struct CountedHistogram {
    sum: f64,
    count: u64,
    /// (upper bound, count in this bucket only), the last bound infinite.
    buckets: Vec<(f64, u64)>,
}

impl prometheus_client::encoding::EncodeMetric for CountedHistogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum,
            self.count,
            &self.buckets,
            None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

/// The monitor's counters: checks by status and reason, in flight, late,
/// missed, re-checks.
fn monitor_metrics(registry: &mut Registry, counts: &crate::monitor::stats::Counts) {
    let checks = Family::<StatusLabels, Counter>::default();
    for (status, n) in ["up", "warning", "down", "unknown"]
        .iter()
        .zip(counts.by_status)
    {
        checks
            .get_or_create(&StatusLabels {
                status: (*status).to_owned(),
            })
            .inc_by(n);
    }
    registry.register("portwatch_checks", "Checks done, by status", checks);
    let by_reason = Family::<ReasonLabels, Counter>::default();
    for (reason, n) in crate::probe::Reason::ALL.iter().zip(counts.by_reason) {
        by_reason
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().to_owned(),
            })
            .inc_by(n);
    }
    registry.register(
        "portwatch_check_reasons",
        "Checks done, by reason",
        by_reason,
    );
    let in_flight = Gauge::<i64>::default();
    in_flight.set(counts.in_flight as i64);
    registry.register(
        "portwatch_checks_in_flight",
        "Checks running now",
        in_flight,
    );
    let waiting = Gauge::<i64>::default();
    waiting.set(counts.waiting as i64);
    registry.register(
        "portwatch_checks_waiting",
        "Due checks waiting for a free slot (the cap on checks in flight)",
        waiting,
    );
    let overload = Gauge::<i64>::default();
    overload.set(counts.overload_percent as i64);
    registry.register(
        "portwatch_monitor_overload_percent",
        "How much more was due than done over the last 10 s, in percent (0: the monitor keeps up)",
        overload,
    );
    registry.register(
        "portwatch_checks_late",
        "Checks that started more than 1 s late",
        counter(counts.late),
    );
    registry.register(
        "portwatch_checks_missed",
        "Scheduled checks that could not run",
        counter(counts.missed),
    );
    let (buckets, sum_ms) = counts.lateness_buckets(&LATENESS_BOUNDS_MS);
    registry.register(
        "portwatch_check_start_lateness_seconds",
        "How late scheduled checks started after their due time (10 s or more counts 10 s)",
        CountedHistogram {
            sum: sum_ms as f64 / 1000.0,
            count: buckets.iter().sum(),
            buckets: LATENESS_BOUNDS_MS
                .iter()
                .map(|&ms| ms as f64 / 1000.0)
                .chain([f64::INFINITY])
                .zip(buckets)
                .collect(),
        },
    );
    registry.register(
        "portwatch_rechecks",
        "Immediate re-checks of failures",
        counter(counts.rechecks),
    );
}

/// `/metrics`.
pub(super) fn routes() -> super::Routes {
    super::Routes::new().get("/metrics", metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::pg::nodes::{Heartbeat, NodeRow};

    fn node(id: i64, name: &str, live: bool, left: bool) -> NodeRow {
        NodeRow {
            id,
            name: name.into(),
            location: "eu".into(),
            version: "0".into(),
            started_ms: 0,
            heartbeat_ms: 0,
            expires_ms: 0,
            live,
            left,
            heartbeat: Heartbeat {
                sensors: 40,
                checks_per_s: 4.5,
                late: 0,
                missed: 0,
            },
        }
    }

    fn text(nodes: &[NodeRow]) -> String {
        let mut registry = Registry::default();
        node_metrics(&mut registry, nodes);
        let mut body = String::new();
        encode_registry(&mut body, &registry).unwrap();
        body
    }

    #[test]
    fn nodes_are_series_by_name_live_or_lapsed_and_those_that_left_are_not() {
        assert_eq!(text(&[]), "", "SQLite: no node series");
        let body = text(&[
            node(5, "a", true, false),
            node(2, "a", false, false),
            node(3, "b", false, false),
            node(4, "c", false, true),
        ]);
        assert!(
            body.contains("portwatch_node_up{node=\"a\",location=\"eu\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("portwatch_node_up{node=\"b\",location=\"eu\"} 0"),
            "{body}"
        );
        assert!(!body.contains("node=\"c\""), "{body}");
        assert!(
            body.contains("portwatch_node_sensors{node=\"a\",location=\"eu\"} 40"),
            "{body}"
        );
        assert!(
            !body.contains("portwatch_node_sensors{node=\"b\""),
            "{body}"
        );
        assert!(
            body.contains("portwatch_node_checks_per_second{node=\"a\",location=\"eu\"} 4.5"),
            "{body}"
        );
    }

    /// A WARNING sensor `shop/https` (id 7) in group `web`, never checked.
    fn shop() -> crate::store::StatusRow {
        crate::store::StatusRow {
            id: 7,
            path: "shop/https".into(),
            group: Some("web".into()),
            host: "shop.example.com".into(),
            port: 443,
            state: SensorState::Warning,
            since_ms: None,
            last_check_ms: None,
            last_rtt_us: None,
            last_reason: None,
            last_message: None,
            last_details: None,
            tags: Vec::new(),
            managed: false,
            ping: false,
        }
    }

    /// Each sensor's series carry its labels, escaped as OpenMetrics
    /// wants; values a sensor lacks are left out, not written as 0.
    #[test]
    fn sensor_series_are_written_with_escaped_labels() {
        let row = crate::store::StatusRow {
            group: Some("a\"b\\c\nd".into()),
            last_check_ms: Some(1_790_000_000_500),
            last_rtt_us: Some(250),
            ..shop()
        };
        let text = sensor_text(&[row]);
        let labels = r#"group="a\"b\\c\nd",server="shop",sensor="https",host="shop.example.com",port="443",service="https""#;
        for line in [
            "# HELP portwatch_sensor_up 1 when the sensor is UP or WARNING, 0 otherwise."
                .to_owned(),
            "# TYPE portwatch_sensor_up gauge".to_owned(),
            format!("portwatch_sensor_up{{{labels}}} 1"),
            format!("portwatch_sensor_state{{{labels}}} 2"),
            format!("portwatch_sensor_response_seconds{{{labels}}} 0.00025"),
            format!("portwatch_sensor_last_check_timestamp_seconds{{{labels}}} 1790000000.5"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(!text.contains("portwatch_sensor_phase_seconds{"), "{text}");
        assert!(
            !text.contains("portwatch_sensor_ping_loss_ratio{"),
            "{text}"
        );
    }

    #[test]
    fn each_location_of_a_sensor_is_a_series_with_a_location_label() {
        use crate::monitor::verdict::LocationReport;
        let row = shop();
        let report = |location: &str, state, rtt_us| LocationReport {
            sensor: 7,
            location: location.into(),
            state,
            since_ms: 0,
            checked_ms: 0,
            reason: crate::probe::Reason::Connected,
            rtt_us,
            message: String::new(),
        };
        let render = |reports: &[LocationReport]| {
            let mut registry = Registry::default();
            location_metrics(&mut registry, std::slice::from_ref(&row), reports);
            let mut body = String::new();
            encode_registry(&mut body, &registry).unwrap();
            body
        };
        assert_eq!(render(&[]), "", "no locations: no series");
        let body = render(&[
            report("eu", SensorState::Down, None),
            report("us", SensorState::Up, Some(2_500)),
            LocationReport {
                sensor: 99,
                ..report("ap", SensorState::Up, None)
            },
        ]);
        let labels = |location: &str| {
            format!("{{group=\"web\",server=\"shop\",sensor=\"https\",location=\"{location}\"}}")
        };
        for line in [
            format!("portwatch_sensor_location_up{} 0", labels("eu")),
            format!("portwatch_sensor_location_up{} 1", labels("us")),
            format!("portwatch_sensor_location_state{} 3", labels("eu")),
            format!(
                "portwatch_sensor_location_response_seconds{} 0.0025",
                labels("us")
            ),
        ] {
            assert!(body.contains(&line), "{line} in {body}");
        }
        assert!(
            !body.contains("location=\"ap\""),
            "a sensor that is gone: {body}"
        );
    }
}
