//! The JSON API: the same session as the pages, or `Authorization: Bearer`
//! with an API token. Read-only tokens can read; changes need admin.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Admin, ApiUser};
use super::{AppError, AppState};
use std::collections::HashMap;

use crate::monitor::verdict::{DownWhen, LocationReport, check_locations};
use crate::report::SensorReport;
use crate::store::{StatusQuery, StatusRow, Storage};

#[derive(Serialize)]
struct SensorJson {
    id: i64,
    sensor: String,
    group: Option<String>,
    host: String,
    port: u16,
    state: String,
    since_ms: Option<i64>,
    last_check_ms: Option<i64>,
    response_time_ms: Option<f64>,
    reason: Option<String>,
    message: Option<String>,
    tags: Vec<String>,
    managed: bool,
    /// The last protocol check: protocol, phases, details, TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<crate::probe::proto::CheckDetails>,
    /// A sensor checked from several locations: each location's state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    locations: Vec<LocationJson>,
}

/// One location's state of a sensor.
#[derive(Serialize)]
pub(crate) struct LocationJson {
    location: String,
    state: String,
    since_ms: i64,
    last_check_ms: i64,
    response_time_ms: Option<f64>,
    reason: String,
    message: String,
}

impl From<LocationReport> for LocationJson {
    fn from(report: LocationReport) -> Self {
        LocationJson {
            location: report.location,
            state: report.state.to_string(),
            since_ms: report.since_ms,
            last_check_ms: report.checked_ms,
            response_time_ms: report.rtt_us.map(|us| f64::from(us) / 1000.0),
            reason: report.reason.as_str().to_owned(),
            message: report.message,
        }
    }
}

/// Location reports by sensor.
fn by_sensor(reports: Vec<LocationReport>) -> HashMap<i64, Vec<LocationJson>> {
    let mut out: HashMap<i64, Vec<LocationJson>> = HashMap::new();
    for report in reports {
        out.entry(report.sensor).or_default().push(report.into());
    }
    out
}

impl From<StatusRow> for SensorJson {
    fn from(row: StatusRow) -> Self {
        SensorJson {
            id: row.id,
            sensor: row.path,
            group: row.group,
            host: row.host,
            port: row.port,
            state: row.state.to_string(),
            since_ms: row.since_ms,
            last_check_ms: row.last_check_ms,
            response_time_ms: row.last_rtt_us.map(|us| us as f64 / 1000.0),
            reason: row.last_reason,
            message: row.last_message,
            tags: row.tags,
            managed: row.managed,
            protocol: row.last_details,
            locations: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
pub struct Page {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

#[derive(Serialize)]
struct Listing<T> {
    items: Vec<T>,
    total: usize,
    offset: usize,
    limit: usize,
}

/// `GET /api/sensors?offset=0&limit=100`.
pub async fn list(
    State(state): State<AppState>,
    _: ApiUser,
    Query(page): Query<Page>,
) -> Result<Response, AppError> {
    let limit = page.limit.clamp(1, 10_000);
    let everything = state.tallies.get(&state.db).await?;
    let total = super::tally::sensors(&everything) as usize;
    // The page's rows only, in list order, read from the index.
    let rows: Vec<StatusRow> = state
        .db
        .list(StatusQuery {
            offset: page.offset as u64,
            limit: Some(limit as u64),
            ..StatusQuery::default()
        })
        .await?
        .into_iter()
        .map(|listed| listed.row)
        .collect();
    // The page's sensors' locations only.
    let ids = rows.iter().map(|r| r.id).collect();
    let mut locations = by_sensor(state.db.location_reports_of(ids).await?);
    let items: Vec<SensorJson> = rows
        .into_iter()
        .map(|row| {
            let id = row.id;
            SensorJson {
                locations: locations.remove(&id).unwrap_or_default(),
                ..row.into()
            }
        })
        .collect();
    Ok(Json(Listing {
        items,
        total,
        offset: page.offset,
        limit,
    })
    .into_response())
}

#[derive(Serialize)]
struct SensorDetail {
    #[serde(flatten)]
    sensor: SensorJson,
    report_24h: SensorReport,
}

/// `GET /api/sensors/{id}`: the sensor and its last 24 hours.
pub async fn get(
    State(state): State<AppState>,
    _: ApiUser,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let path = state.db.sensor_path(id).await?;
    let row = state.db.status_of(id).await?;
    let report = state
        .db
        .sensor_report(id, path, now - 86_400_000, now)
        .await?;
    let locations = by_sensor(state.db.location_reports(Some(id)).await?);
    Ok(Json(SensorDetail {
        sensor: SensorJson {
            locations: locations.into_values().flatten().collect(),
            ..row.into()
        },
        report_24h: report,
    })
    .into_response())
}

async fn set_paused(
    state: AppState,
    _: Admin,
    id: i64,
    paused: bool,
) -> Result<Response, AppError> {
    let changed = state
        .db
        .set_paused(state.db.sensor_path(id).await?, paused)
        .await?;
    Ok(Json(serde_json::json!({ "id": id, "paused": paused, "changed": changed })).into_response())
}

/// `POST /api/sensors/{id}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    user: Admin,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    set_paused(state, user, id, true).await
}

/// `POST /api/sensors/{id}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    user: Admin,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    set_paused(state, user, id, false).await
}

#[derive(Deserialize)]
pub struct EventsQuery {
    before: Option<i64>,
    #[serde(default = "default_limit")]
    limit: usize,
}

#[derive(Serialize)]
struct EventJson {
    id: i64,
    sensor_id: i64,
    sensor: String,
    at_ms: i64,
    from: String,
    to: String,
    reason: Option<String>,
    message: String,
}

/// `GET /api/events?before=ID&limit=100`: newest first.
pub async fn events(
    State(state): State<AppState>,
    _: ApiUser,
    Query(query): Query<EventsQuery>,
) -> Result<Response, AppError> {
    let limit = query.limit.clamp(1, 1000);
    let events = state.db.recent_events(limit, query.before).await?;
    let items: Vec<EventJson> = events
        .into_iter()
        .map(|(id, sensor, e)| EventJson {
            id,
            sensor_id: e.sensor_id,
            sensor,
            at_ms: e.at_ms,
            from: e.from.to_string(),
            to: e.to.to_string(),
            reason: e.reason,
            message: e.message,
        })
        .collect();
    Ok(Json(items).into_response())
}

/// `GET /api/openapi.json`: the API described for tools.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct NewSensor {
    server: String,
    host: String,
    /// A number or a service name (none for a heartbeat sensor).
    #[serde(default)]
    port: serde_json::Value,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    /// connect or auto.
    #[serde(default)]
    mode: Option<String>,
    /// A protocol name.
    #[serde(default)]
    protocol: Option<String>,
    /// none, implicit or starttls.
    #[serde(default)]
    tls: Option<String>,
    /// The locations that check it (default: every location with a node).
    #[serde(default)]
    locations: Option<Vec<String>>,
    /// How many locations must see it down: 1, 2, … or "all".
    #[serde(default)]
    down_when: Option<serde_json::Value>,
    /// `tcp` (default) or `heartbeat` (no port: jobs call its push URL).
    #[serde(default)]
    kind: Option<String>,
    /// A heartbeat sensor: how often a push is expected.
    #[serde(default)]
    every: Option<String>,
    /// A heartbeat sensor: how late a push may be.
    #[serde(default)]
    grace: Option<String>,
    /// HTTP settings: method, path, headers, body, auth, content rules.
    #[serde(default)]
    http: Option<crate::config::probe::HttpSettings>,
    /// A DNS sensor's question and expectations (`kind` = `dns`).
    #[serde(default)]
    dns: Option<crate::config::dns::DnsSpec>,
    /// A UDP sensor's request (`kind` = `udp`).
    #[serde(default)]
    udp: Option<crate::config::udp::UdpSpec>,
    /// A PING sensor's echo requests (`kind` = `ping`; optional).
    #[serde(default)]
    ping: Option<crate::config::ping::PingSpec>,
}

/// `POST /api/sensors`: adds a sensor (admin); the server is created if
/// needed.
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    Json(new): Json<NewSensor>,
) -> Result<Response, AppError> {
    let services = crate::probe::Services::global();
    let server = new.server.trim().to_owned();
    if server.is_empty() || server.contains('/') {
        return Err(AppError::BadRequest(
            "server: give a name without '/'".into(),
        ));
    }
    let host = crate::probe::target::parse_bare_host(&new.host)
        .map_err(|e| AppError::BadRequest(format!("host: {e}")))?;
    let heartbeat = crate::monitor::heartbeat::Heartbeat::from_settings(
        new.kind.as_deref(),
        new.every.as_deref(),
        new.grace.as_deref(),
    )
    .map_err(|(key, message)| AppError::BadRequest(format!("{key}: {message}")))?;
    let is_dns = new.kind.as_deref().map(str::trim) == Some("dns");
    let dns = match (is_dns, new.dns) {
        (true, Some(spec)) => {
            spec.options(crate::config::dns::tls_settings(None))
                .map_err(|(key, message)| AppError::BadRequest(format!("dns.{key}: {message}")))?;
            Some(spec)
        }
        (true, None) => {
            return Err(AppError::BadRequest(
                "dns: a DNS sensor needs \"dns\": {\"query\": \"NAME\"}".into(),
            ));
        }
        (false, Some(_)) => {
            return Err(AppError::BadRequest(
                "dns: DNS settings are for DNS sensors: add \"kind\": \"dns\"".into(),
            ));
        }
        (false, None) => None,
    };
    let is_udp = new.kind.as_deref().map(str::trim) == Some("udp");
    let udp = match (is_udp, new.udp) {
        (true, Some(spec)) => {
            let protocol = spec
                .protocol()
                .map_err(|(key, message)| AppError::BadRequest(format!("udp.{key}: {message}")))?;
            Some((spec, protocol.default_port()))
        }
        (true, None) => {
            return Err(AppError::BadRequest(
                "udp: a UDP sensor needs \"udp\": {\"protocol\": \"ntp\"} (or send)".into(),
            ));
        }
        (false, Some(_)) => {
            return Err(AppError::BadRequest(
                "udp: UDP settings are for UDP sensors: add \"kind\": \"udp\"".into(),
            ));
        }
        (false, None) => None,
    };
    let is_ping = new.kind.as_deref().map(str::trim) == Some("ping");
    let ping = match (is_ping, new.ping) {
        (true, spec) => {
            let spec = spec.unwrap_or_default();
            spec.options()
                .map_err(|(key, message)| AppError::BadRequest(format!("ping.{key}: {message}")))?;
            if !new.port.is_null() {
                return Err(AppError::BadRequest(
                    "port: a PING sensor has no port: leave it out".into(),
                ));
            }
            Some(spec)
        }
        (false, Some(_)) => {
            return Err(AppError::BadRequest(
                "ping: PING settings are for PING sensors: add \"kind\": \"ping\"".into(),
            ));
        }
        (false, None) => None,
    };
    let port = match (&heartbeat, &new.port) {
        (Some(_), serde_json::Value::Null) => 0,
        // ICMP echo has no port.
        (None, serde_json::Value::Null) if ping.is_some() => 0,
        // A UDP service listens on its protocol's port.
        (None, serde_json::Value::Null) if udp.as_ref().is_some_and(|(_, p)| p.is_some()) => {
            udp.as_ref().and_then(|(_, p)| *p).unwrap_or_default()
        }
        // A name server listens on its transport's port.
        (None, serde_json::Value::Null) if dns.is_some() => {
            let transport = dns.as_ref().and_then(|d| d.transport.as_deref());
            crate::probe::dns::Transport::parse(transport.unwrap_or("udp"))
                .map_or(53, |t| t.default_port())
        }
        (Some(_), _) => {
            return Err(AppError::BadRequest(
                "port: a heartbeat sensor has no port: leave it out".into(),
            ));
        }
        (None, serde_json::Value::Null) => {
            return Err(AppError::BadRequest(
                "port: give a port number or service name".into(),
            ));
        }
        (None, port) => {
            let port_text = match port {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            crate::probe::target::parse_port(&port_text, services)
                .map_err(|e| AppError::BadRequest(format!("port: {e}")))?
        }
    };
    let interval = match new.interval.as_deref() {
        None | Some("") => None,
        Some(text) => {
            let interval = crate::duration::parse(text)
                .map_err(|e| AppError::BadRequest(format!("interval: {e}")))?;
            if interval.as_secs() < 1 {
                return Err(AppError::BadRequest(
                    "interval: it must be at least 1s".into(),
                ));
            }
            Some(interval)
        }
    };
    let name = new
        .name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| {
            if ping.is_some() {
                return "ping".to_owned();
            }
            if port == 0 {
                return "heartbeat".to_owned();
            }
            if dns.is_some() {
                return "dns".to_owned();
            }
            if let Some((spec, _)) = &udp
                && let Ok(protocol) = spec.protocol()
                && protocol.default_port().is_some()
            {
                return protocol.name().to_owned();
            }
            services
                .by_port(port)
                .map_or_else(|| port.to_string(), |s| s.name.clone())
        });
    if name.contains('/') {
        return Err(AppError::BadRequest("name: it cannot contain '/'".into()));
    }
    if let Some(locations) = &new.locations {
        check_locations(locations).map_err(|e| AppError::BadRequest(format!("locations: {e}")))?;
    }
    let down_when = match &new.down_when {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some(
                DownWhen::parse(&text)
                    .map_err(|e| AppError::BadRequest(format!("down_when: {e}")))?,
            )
        }
    };
    let mut overrides = crate::config::Overrides {
        interval,
        heartbeat: heartbeat.map(Box::new),
        dns: dns.map(Box::new),
        udp: udp.map(|(spec, _)| Box::new(spec)),
        ping: ping.clone().map(Box::new),
        locations: new.locations.filter(|l| !l.is_empty()),
        down_when,
        ..crate::config::Overrides::default()
    };
    if overrides.dns.is_some()
        && (new.mode.is_some() || new.protocol.is_some() || new.http.is_some())
    {
        return Err(AppError::BadRequest(
            "dns: a DNS sensor asks its question: drop mode, protocol and http".into(),
        ));
    }
    overrides
        .set_check(new.mode, new.protocol, new.tls)
        .map_err(|(field, message)| AppError::BadRequest(format!("{field}: {message}")))?;
    if let Some(http) = new.http {
        overrides.set_http(http).map_err(|(field, message)| {
            AppError::BadRequest(format!(
                "{}: {message}",
                field.replacen("http_", "http.", 1)
            ))
        })?;
    }
    let id = state
        .db
        .add_sensor(server, host, port, name, overrides)
        .await?;
    let row = state.db.status_of(id).await.map(Some)?;
    let row = row.ok_or_else(|| AppError::Internal("the new sensor vanished".into()))?;
    Ok((axum::http::StatusCode::CREATED, Json(SensorJson::from(row))).into_response())
}

/// `DELETE /api/sensors/{id}` (admin): stops monitoring it; history stays.
pub async fn delete(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    state.db.retire_sensor(id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/notifications`: the latest notifications with their delivery
/// state (attempts, last error, when delivered). Never the channel secrets;
/// the last error (which may quote a receiver's reply) only for admins.
pub async fn notifications(
    State(state): State<AppState>,
    user: ApiUser,
) -> Result<Response, AppError> {
    let mut rows = state.db.outbox(200).await?;
    if super::auth::require_admin(&user.0).is_err() {
        for row in &mut rows {
            row.last_error = row
                .last_error
                .as_ref()
                .map(|_| "(shown to admins only)".to_owned());
        }
    }
    Ok(Json(rows).into_response())
}

/// The sensors API, its events and notifications, and its OpenAPI document.
pub(super) fn routes() -> super::Routes {
    super::Routes::new()
        .get("/api/sensors", list)
        .post("/api/sensors", create)
        .get("/api/sensors/{id}", get)
        .delete("/api/sensors/{id}", delete)
        .post("/api/sensors/{id}/pause", pause)
        .post("/api/sensors/{id}/resume", resume)
        .get("/api/events", events)
        .get("/api/notifications", notifications)
        .get("/api/openapi.json", openapi)
}
