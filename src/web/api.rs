//! The JSON API: the same session as the pages, or `Authorization: Bearer`
//! with an API token. Read-only tokens can read; changes need admin.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::ApiUser;
use super::{AppError, AppState};
use crate::report::{SensorReport, sensor_report};
use crate::store::StatusRow;

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
    let rows = state.store(|store| store.status()).await?;
    let total = rows.len();
    let items: Vec<SensorJson> = rows
        .into_iter()
        .skip(page.offset)
        .take(limit)
        .map(SensorJson::from)
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
    let (row, report) = state
        .store(move |store| {
            let path = store.sensor_path(id)?;
            let row = store
                .status()?
                .into_iter()
                .find(|r| r.id == id)
                .ok_or_else(|| crate::store::StoreError::NotFound(path.clone()))?;
            let report = sensor_report(store, id, &path, now - 86_400_000, now)?;
            Ok((row, report))
        })
        .await?;
    Ok(Json(SensorDetail {
        sensor: row.into(),
        report_24h: report,
    })
    .into_response())
}

async fn set_paused(
    state: AppState,
    user: ApiUser,
    id: i64,
    paused: bool,
) -> Result<Response, AppError> {
    user.0.require_admin()?;
    let changed = state
        .store(move |store| {
            let path = store.sensor_path(id)?;
            store.set_paused(&path, paused)
        })
        .await?;
    Ok(Json(serde_json::json!({ "id": id, "paused": paused, "changed": changed })).into_response())
}

/// `POST /api/sensors/{id}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    user: ApiUser,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    set_paused(state, user, id, true).await
}

/// `POST /api/sensors/{id}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    user: ApiUser,
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
    let events = state
        .store(move |store| store.recent_events(limit, query.before))
        .await?;
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
