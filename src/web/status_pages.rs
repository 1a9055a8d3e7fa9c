//! Public status pages: chosen sensors' names and states, no sign-in. They
//! never show hosts, ports or messages, and they never start a check.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{Admin, CsrfForm, PageUser};
use super::{AppError, AppState};
use crate::monitor::state::State as SensorState;
use crate::store::Storage;
use crate::store::accounts::{Role, StatusPage};

#[derive(Template)]
#[template(path = "status_pages.html")]
struct ListPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    pages: Vec<StatusPage>,
    error: Option<String>,
}

async fn list_page(
    state: &AppState,
    user: &crate::store::accounts::Account,
    error: Option<String>,
) -> Result<Response, AppError> {
    let pages = state.db.status_pages().await?;
    let page = ListPage {
        user: Some(user.name.clone()),
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        pages,
        error,
    };
    super::render(&page, axum::http::StatusCode::OK)
}

/// `GET /status-pages`: the list, and a form for admins.
pub async fn list(
    State(state): State<AppState>,
    PageUser(user): PageUser,
) -> Result<Response, AppError> {
    list_page(&state, &user, None).await
}

#[derive(Deserialize)]
pub struct NewPage {
    slug: String,
    title: String,
    names: String,
}

/// `POST /status-pages`.
pub async fn create(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfForm(form): CsrfForm<NewPage>,
) -> Result<Response, AppError> {
    let page = StatusPage {
        slug: form.slug.trim().to_owned(),
        title: form.title.trim().to_owned(),
        names: form
            .names
            .split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect(),
    };
    match state
        .db
        .save_status_page(page)
        .await
        .map_err(AppError::from)
    {
        Ok(()) => Ok(Redirect::to("/status-pages").into_response()),
        Err(AppError::BadRequest(message) | AppError::NotFound(message)) => {
            let mut response = list_page(&state, &user, Some(message)).await?;
            *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
        Err(other) => Err(other),
    }
}

/// `POST /status-pages/{slug}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    _: Admin,
    Path(slug): Path<String>,
    CsrfForm(_): CsrfForm,
) -> Result<Response, AppError> {
    state.db.delete_status_page(slug).await?;
    Ok(Redirect::to("/status-pages").into_response())
}

struct PublicSensor {
    name: String,
    state: String,
    class: &'static str,
    uptime: String,
}

#[derive(Template)]
#[template(path = "public_status.html")]
struct PublicPage {
    title: String,
    overall: String,
    overall_class: &'static str,
    sensors: Vec<PublicSensor>,
    updated: String,
    page: usize,
    pages: usize,
    previous: Option<usize>,
    next: Option<usize>,
}

/// Sensors on one page of a public status page.
const PAGE_SIZE: usize = 100;
/// How long a rendered status page is served from memory.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Rendered public pages by (slug, page number). One page is computed at a
/// time, and concurrent visitors wait for it and share the result: an
/// anonymous page costs the monitor at most one computation per page per
/// [`CACHE_TTL`], whatever the traffic.
#[derive(Clone, Default)]
pub(super) struct Cache(std::sync::Arc<tokio::sync::Mutex<Pages>>);

/// Rendered pages by (slug, page number), with when they were rendered.
type Pages = HashMap<(String, usize), (tokio::time::Instant, Rendered)>;

#[derive(Clone)]
enum Rendered {
    Page(String),
    Missing,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head><body><main><h1>No status page here</h1><p>There is no status page named &#8216;{{ slug }}&#8217;. Check the address, or ask whoever gave it to you.</p></main></body></html>"
)]
struct MissingPage {
    slug: String,
}

#[derive(Deserialize)]
pub struct PublicQuery {
    #[serde(default)]
    page: usize,
}

/// `GET /status/{slug}?page=N`: public, read-only, cached, 100 sensors a
/// page. An unknown slug is an HTML 404 page (JSON for
/// `Accept: application/json`).
pub async fn public(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    axum::extract::Query(query): axum::extract::Query<PublicQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    let key = (slug.clone(), query.page);
    let rendered = {
        let mut cache = state.status_cache.0.lock().await;
        let now = tokio::time::Instant::now();
        cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_TTL);
        match cache.get(&key) {
            Some((_, rendered)) => rendered.clone(),
            None => {
                let rendered = render_public(&state, slug.clone(), query.page).await?;
                cache.insert(key, (now, rendered.clone()));
                rendered
            }
        }
    };
    match rendered {
        Rendered::Page(html) => Ok((
            [(axum::http::header::CACHE_CONTROL, "public, max-age=10")],
            Html(html),
        )
            .into_response()),
        Rendered::Missing => {
            let wants_json = headers
                .get(axum::http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("application/json"));
            if wants_json {
                return Err(AppError::NotFound("no such status page".into()));
            }
            super::render(&MissingPage { slug }, axum::http::StatusCode::NOT_FOUND)
        }
    }
}

async fn render_public(state: &AppState, slug: String, page: usize) -> Result<Rendered, AppError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let db = &state.db;
    let Some(found) = db
        .status_pages()
        .await?
        .into_iter()
        .find(|p| p.slug == slug)
    else {
        return Ok(Rendered::Missing);
    };
    let mut ids = std::collections::HashSet::new();
    for name in found.names {
        ids.extend(db.sensor_ids(name).await.unwrap_or_default());
    }
    let rows: Vec<_> = db
        .status()
        .await?
        .into_iter()
        .filter(|r| ids.contains(&r.id))
        .collect();
    let states: Vec<SensorState> = rows.iter().map(|r| r.state).collect();
    let pages = rows.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages - 1);
    let mut sensors = Vec::new();
    for row in rows.into_iter().skip(page * PAGE_SIZE).take(PAGE_SIZE) {
        let report = db
            .sensor_report(row.id, row.path.clone(), now - 30 * 86_400_000, now)
            .await?;
        sensors.push((row.path, row.state, report.uptime_by_time));
    }
    let title = found.title;
    let down = states.iter().filter(|s| **s == SensorState::Down).count();
    let warning = states
        .iter()
        .filter(|s| **s == SensorState::Warning)
        .count();
    let (overall, overall_class) = match (down, warning) {
        (0, 0) => ("All systems operational".to_owned(), "up"),
        (0, n) => (format!("{n} degraded"), "warning"),
        (n, _) => (format!("{n} down"), "down"),
    };
    let sensors = sensors
        .into_iter()
        .map(|(name, state, uptime)| PublicSensor {
            name,
            class: match state {
                SensorState::Up => "up",
                SensorState::Warning => "warning",
                SensorState::Down => "down",
                _ => "paused",
            },
            state: match state {
                SensorState::Paused(_) => "maintenance".to_owned(),
                other => other.to_string(),
            },
            uptime: uptime.map_or_else(|| "-".to_owned(), |u| format!("{u:.2}%")),
        })
        .collect();
    let updated = jiff::Timestamp::from_millisecond(now)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let public = PublicPage {
        title,
        overall,
        overall_class,
        sensors,
        updated,
        page: page + 1,
        pages,
        previous: page.checked_sub(1),
        next: (page + 1 < pages).then_some(page + 1),
    };
    Ok(Rendered::Page(super::html(&public)?))
}

/// `GET /api/status-pages`.
pub async fn api_list(
    State(state): State<AppState>,
    _: super::auth::ApiUser,
) -> Result<Response, AppError> {
    let pages = state.db.status_pages().await?;
    Ok(axum::Json(pages).into_response())
}

#[derive(Deserialize)]
pub struct NewPageJson {
    slug: String,
    title: String,
    names: Vec<String>,
}

/// `POST /api/status-pages`: `{"slug": "public", "title": "…", "names": ["web", "db/postgresql"]}`.
pub async fn api_save(
    State(state): State<AppState>,
    _: Admin,
    axum::Json(page): axum::Json<NewPageJson>,
) -> Result<Response, AppError> {
    let page = StatusPage {
        slug: page.slug,
        title: page.title,
        names: page.names,
    };
    state.db.save_status_page(page).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/status-pages/{slug}`.
pub async fn api_delete(
    State(state): State<AppState>,
    _: Admin,
    Path(slug): Path<String>,
) -> Result<Response, AppError> {
    state.db.delete_status_page(slug).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// Status pages: their management and the public pages.
pub(super) fn routes() -> super::Routes {
    super::Routes::new()
        .get("/status-pages", list)
        .post("/status-pages", create)
        .post("/status-pages/{slug}/delete", delete)
        .get("/status/{slug}", public)
        .get("/api/status-pages", api_list)
        .post("/api/status-pages", api_save)
        .delete("/api/status-pages/{slug}", api_delete)
}
