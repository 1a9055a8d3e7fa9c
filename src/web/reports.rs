//! Uptime reports for any sensor, server or group and period, as a page,
//! as CSV and as JSON.

use askama::Template;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{ApiUser, PageUser};
use super::{AppError, AppState};
use crate::report::SensorReport;
use crate::store::{Detail, Storage};

#[derive(Deserialize, Default)]
pub struct ReportQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    format: String,
}

async fn build(
    state: &AppState,
    query: &ReportQuery,
) -> Result<Vec<(i64, SensorReport)>, AppError> {
    let since = if query.since.trim().is_empty() {
        "30d"
    } else {
        query.since.trim()
    };
    let span = crate::duration::parse_at_most(since, 400 * 86_400, "400 days")
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let name = query.name.trim().to_owned();
    let to_ms = jiff::Timestamp::now().as_millisecond();
    let from_ms = to_ms - span.as_millis() as i64;
    let ids: Vec<i64> = if name.is_empty() {
        state.db.status().await?.iter().map(|r| r.id).collect()
    } else {
        state.db.sensor_ids(name).await?
    };
    let detail = Detail::for_sensors(ids.len());
    let reports = state
        .db
        .sensor_reports(ids.clone(), from_ms, to_ms, detail)
        .await?;
    let mut reports: Vec<(i64, SensorReport)> = ids.into_iter().zip(reports).collect();
    reports.sort_by(|a, b| a.1.sensor.cmp(&b.1.sensor));
    Ok(reports)
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| format!("{v:.3}"))
}

fn millis(us: Option<u32>) -> String {
    us.map_or_else(String::new, |us| format!("{:.3}", f64::from(us) / 1000.0))
}

/// A CSV field: quoted when it holds a comma, quote or line break; a
/// leading =, +, - or @ is defused so spreadsheets do not run it.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

struct RowView {
    id: i64,
    sensor: String,
    by_time: String,
    by_requests: String,
    checks: u32,
    outages: usize,
    avg: String,
    p95: String,
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    name: String,
    since: String,
    error: Option<String>,
    rows: Vec<RowView>,
}

/// `/reports?name=&since=30d[&format=csv]`.
pub async fn page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Query(query): Query<ReportQuery>,
) -> Result<Response, AppError> {
    let (reports, error) = match build(&state, &query).await {
        Ok(reports) => (reports, None),
        Err(AppError::BadRequest(message) | AppError::NotFound(message)) => {
            (Vec::new(), Some(message))
        }
        Err(other) => return Err(other),
    };
    if query.format == "csv" {
        let mut csv = String::from(
            "sensor,from,to,uptime_by_time_percent,uptime_by_requests_percent,checks,checks_up,outages,down_ms,min_ms,avg_ms,p95_ms,max_ms\n",
        );
        for (_, r) in &reports {
            let time = |ms: i64| {
                jiff::Timestamp::from_millisecond(ms)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            };
            csv += &[
                csv_field(&r.sensor),
                time(r.from_ms),
                time(r.to_ms),
                percent(r.uptime_by_time),
                percent(r.uptime_by_requests),
                r.checks.to_string(),
                r.checks_up.to_string(),
                r.outages.len().to_string(),
                r.time.down_ms.to_string(),
                millis(r.min_us),
                millis(r.avg_us),
                millis(r.p95_us),
                millis(r.max_us),
            ]
            .join(",");
            csv.push('\n');
        }
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"portwatch-report.csv\"",
                ),
            ],
            csv,
        )
            .into_response());
    }
    let rows = reports
        .into_iter()
        .map(|(id, r)| RowView {
            id,
            by_time: percent(r.uptime_by_time).to_string()
                + if r.uptime_by_time.is_some() { "%" } else { "-" },
            by_requests: percent(r.uptime_by_requests).to_string()
                + if r.uptime_by_requests.is_some() {
                    "%"
                } else {
                    "-"
                },
            checks: r.checks,
            outages: r.outages.len(),
            avg: millis(r.avg_us),
            p95: millis(r.p95_us),
            sensor: r.sensor,
        })
        .collect();
    let page = ReportsPage {
        user: Some(user.name.clone()),
        admin: user.role == crate::store::accounts::Role::Admin,
        csrf: user.csrf.clone(),
        name: query.name,
        since: if query.since.is_empty() {
            "30d".into()
        } else {
            query.since
        },
        error,
        rows,
    };
    super::render(&page, axum::http::StatusCode::OK)
}

/// `GET /api/reports?name=&since=30d`.
pub async fn api(
    State(state): State<AppState>,
    _: ApiUser,
    Query(query): Query<ReportQuery>,
) -> Result<Response, AppError> {
    let reports: Vec<SensorReport> = build(&state, &query)
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    Ok(Json(reports).into_response())
}

/// Reports: page and API.
pub(super) fn routes() -> super::Routes {
    super::Routes::new()
        .get("/reports", page)
        .get("/api/reports", api)
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("web/https"), "web/https");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
