//! Heartbeat sensors' push URLs: `/push/TOKEN`, called by a cron job, a
//! backup script or CI (GET or POST, no sign-in: the token is the
//! credential), and the admin's requests for a new URL (shown once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Admin, CsrfForm};
use super::{AppError, AppState};
use crate::monitor::heartbeat::{MESSAGE_MAX, Push};
use crate::store::Storage;

/// Pushes one URL may make per [`WINDOW`]; more are refused with 429.
const PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);

/// Recent pushes per token (by its hash), to refuse floods.
#[derive(Clone, Default)]
pub(super) struct PushLimits(Arc<Mutex<HashMap<String, (Instant, u32)>>>);

impl PushLimits {
    /// Whether one more push with `key` is allowed at `now`; counts it.
    fn admit(&self, key: &str, now: Instant) -> bool {
        let mut seen = self.0.lock().expect("push limits lock");
        if seen.len() > 10_000 {
            seen.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = seen.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= PER_WINDOW
    }
}

#[derive(Deserialize, Default)]
pub struct PushQuery {
    /// `up` (the default) or `down`.
    #[serde(default)]
    status: Option<String>,
    /// What the job says (kept printable, at most 200 characters).
    #[serde(default)]
    msg: Option<String>,
    /// How long the job took: seconds (`12.5`) or a duration (`3m`).
    #[serde(default)]
    duration: Option<String>,
}

/// The push a query describes, or the one-line error naming the bad value.
fn parse_push(query: &PushQuery, at_ms: i64) -> Result<Push, String> {
    let down = match query.status.as_deref().map(str::trim) {
        None | Some("" | "up" | "ok") => false,
        Some("down" | "fail" | "error") => true,
        Some(other) => {
            return Err(format!(
                "status: '{}' is not a status: use up or down",
                crate::text::header_safe(other, 40)
            ));
        }
    };
    let duration_ms = match query.duration.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let seconds = text
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0);
            let ms = match seconds {
                Some(seconds) => (seconds * 1000.0).round() as i64,
                None => crate::duration::parse(text)
                    .map_err(|_| {
                        format!(
                            "duration: '{}' is not a duration: give seconds (12.5) or a duration (3m)",
                            crate::text::header_safe(text, 40)
                        )
                    })?
                    .as_millis() as i64,
            };
            Some(ms)
        }
    };
    Ok(Push {
        at_ms,
        down,
        message: crate::text::header_safe(query.msg.as_deref().unwrap_or_default(), MESSAGE_MAX),
        duration_ms,
    })
}

/// `GET|POST /push/{token}?status=up|down&msg=…&duration=…`.
pub async fn push(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(query): Query<PushQuery>,
) -> Response {
    let key = crate::store::accounts::token_hash(&token);
    if !state.push_limits.admit(&key, Instant::now()) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, WINDOW.as_secs().to_string())],
            format!(
                "too many pushes: at most {PER_WINDOW} a minute per URL; try again in a minute\n"
            ),
        )
            .into_response();
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let push = match parse_push(&query, now_ms) {
        Ok(push) => push,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    match state.db.push(token, push).await {
        Ok(Some(_)) => "ok\n".into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "no heartbeat sensor has this push URL (it may have been replaced by a new one)\n",
        )
            .into_response(),
        Err(error) => AppError::from(error).into_response(),
    }
}

/// The push URL of `token`, at `--public-url` or the address the request
/// came to.
fn push_url(state: &AppState, headers: &HeaderMap, token: &str) -> String {
    let base = match &state.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8080");
            format!("http://{host}")
        }
    };
    format!("{base}/push/{token}")
}

/// Makes a new push URL for sensor `id` if it is a heartbeat sensor.
async fn new_url(state: &AppState, headers: &HeaderMap, id: i64) -> Result<String, AppError> {
    let (_, _, overrides, _) = state.db.sensor_settings(id).await?;
    if overrides.heartbeat.is_none() {
        return Err(AppError::BadRequest(
            "this sensor is not a heartbeat sensor: only those have a push URL".into(),
        ));
    }
    let token = state
        .db
        .new_push_token(id, jiff::Timestamp::now().as_millisecond())
        .await?;
    Ok(push_url(state, headers, &token))
}

#[derive(Template)]
#[template(path = "push_url.html")]
struct PushUrlPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    id: i64,
    path: String,
    url: String,
}

/// `POST /sensors/{id}/push-url`: a new push URL, shown once (the old one
/// stops working).
pub async fn create_page(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    headers: HeaderMap,
    CsrfForm(_): CsrfForm,
) -> Result<Response, AppError> {
    let url = new_url(&state, &headers, id).await?;
    let path = state.db.sensor_path(id).await?;
    let (user, admin, csrf) = super::pages::page_frame(&user);
    super::render(
        &PushUrlPage {
            user,
            admin,
            csrf,
            id,
            path,
            url,
        },
        StatusCode::OK,
    )
}

/// `POST /api/sensors/{id}/push-url`: `{"url": …}`, shown once.
pub async fn create_api(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let url = new_url(&state, &headers, id).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({ "url": url })),
    )
        .into_response())
}

pub(super) fn routes() -> super::Routes {
    super::Routes::new()
        .get("/push/{token}", push)
        .post("/push/{token}", push)
        .post("/sensors/{id}/push-url", create_page)
        .post("/api/sensors/{id}/push-url", create_api)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(status: Option<&str>, msg: Option<&str>, duration: Option<&str>) -> PushQuery {
        PushQuery {
            status: status.map(Into::into),
            msg: msg.map(Into::into),
            duration: duration.map(Into::into),
        }
    }

    #[test]
    fn a_push_reads_its_status_message_and_duration() {
        let push = parse_push(&query(Some("down"), Some("disk\nfull"), Some("12.5")), 7).unwrap();
        assert_eq!(
            push,
            Push {
                at_ms: 7,
                down: true,
                message: "disk full".into(),
                duration_ms: Some(12_500),
            }
        );
        let push = parse_push(&query(None, None, Some("3m")), 7).unwrap();
        assert_eq!((push.down, push.duration_ms), (false, Some(180_000)));
        let long = "x".repeat(500);
        assert_eq!(
            parse_push(&query(None, Some(&long), None), 7)
                .unwrap()
                .message
                .len(),
            MESSAGE_MAX
        );
        assert_eq!(
            parse_push(&query(Some("maybe"), None, None), 7).unwrap_err(),
            "status: 'maybe' is not a status: use up or down"
        );
        assert!(
            parse_push(&query(None, None, Some("-1")), 7)
                .unwrap_err()
                .starts_with("duration: '-1' is not a duration")
        );
    }

    #[test]
    fn each_url_may_push_ten_times_a_minute() {
        let limits = PushLimits::default();
        let start = Instant::now();
        for _ in 0..PER_WINDOW {
            assert!(limits.admit("a", start));
        }
        assert!(!limits.admit("a", start), "the eleventh is refused");
        assert!(limits.admit("b", start), "another URL is not held up");
        assert!(limits.admit("a", start + WINDOW), "a minute on, room again");
    }
}
