//! Public status pages: chosen sensors' names and states, no sign-in. They
//! never show hosts, ports or messages, and they never start a check.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{Admin, CsrfForm, PageUser};
use super::{AppError, AppState, chart};
use crate::monitor::state::State as SensorState;
use crate::report::DAY_MS;
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
    /// An image's URL (empty: none).
    #[serde(default)]
    logo: String,
    /// The owner's site (empty: none).
    #[serde(default)]
    link: String,
}

/// An optional form field: `None` when left empty.
fn optional(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
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
        logo: optional(&form.logo),
        link: optional(&form.link),
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

#[derive(serde::Serialize)]
struct PublicSensor {
    name: String,
    state: String,
    #[serde(skip)]
    class: &'static str,
    /// Uptime by time over the page's period, as text.
    #[serde(skip)]
    uptime: String,
    #[serde(rename = "uptime_90d_percent")]
    uptime_percent: Option<f64>,
    /// One bar a day (SVG).
    #[serde(skip)]
    bars: String,
}

/// The sensors of one of the names the page's owner chose.
#[derive(serde::Serialize)]
struct PublicSection {
    name: String,
    sensors: Vec<PublicSensor>,
}

/// A maintenance window over some of the page's sensors, in force now or
/// coming within a week.
#[derive(serde::Serialize)]
struct PublicWindow {
    name: String,
    /// In force now.
    current: bool,
    /// Start and end, RFC 3339.
    start: String,
    end: String,
    /// As the page shows them.
    #[serde(skip)]
    when: String,
}

#[derive(Template, serde::Serialize)]
#[template(path = "public_status.html")]
struct PublicPage {
    title: String,
    #[serde(skip)]
    slug: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    logo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    maintenance: Vec<PublicWindow>,
    overall: &'static str,
    overall_class: &'static str,
    sections: Vec<PublicSection>,
    updated: String,
    #[serde(skip)]
    page: usize,
    #[serde(skip)]
    pages: usize,
    #[serde(skip)]
    previous: Option<usize>,
    #[serde(skip)]
    next: Option<usize>,
}

/// The days of history a public page shows.
const DAYS: usize = 90;

/// The banner over a public page: every sensor fine, some down (a partial
/// outage), most down (a major one), or some degraded (warning or unknown).
/// Sensors in maintenance, paused or pending count for none of these.
fn banner(states: &[SensorState]) -> (&'static str, &'static str) {
    let count = |wanted: &[SensorState]| states.iter().filter(|s| wanted.contains(s)).count();
    let down = count(&[SensorState::Down]);
    let degraded = count(&[SensorState::Warning, SensorState::Unknown]);
    let judged = count(&[
        SensorState::Up,
        SensorState::Warning,
        SensorState::Unknown,
        SensorState::Down,
    ]);
    if down > 0 && down * 2 > judged {
        ("Major outage", "down")
    } else if down > 0 {
        ("Partial outage", "down")
    } else if degraded > 0 {
        ("Degraded performance", "warning")
    } else {
        ("All systems operational", "up")
    }
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

/// Rendered pages by (slug, page number, JSON or not), with when they were
/// rendered.
type Pages = HashMap<(String, usize, Format), (tokio::time::Instant, Rendered)>;

#[derive(Clone)]
enum Rendered {
    /// The HTML, and the origin of its logo (allowed as an image source).
    Page(String, Option<String>),
    Json(String),
    Atom(String),
    Missing,
}

/// What a public page is rendered as (`?format=json|atom`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Format {
    Html,
    Json,
    Atom,
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
    /// `json`: the same page as JSON.
    #[serde(default)]
    format: Option<String>,
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
    let format = match query.format.as_deref() {
        Some("json") => Format::Json,
        Some("atom") => Format::Atom,
        _ => Format::Html,
    };
    let json = format == Format::Json;
    let key = (slug.clone(), query.page, format);
    let rendered = {
        let mut cache = state.status_cache.0.lock().await;
        let now = tokio::time::Instant::now();
        cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_TTL);
        match cache.get(&key) {
            Some((_, rendered)) => rendered.clone(),
            None => {
                let rendered = render_public(&state, slug.clone(), query.page, format).await?;
                cache.insert(key, (now, rendered.clone()));
                rendered
            }
        }
    };
    match rendered {
        Rendered::Page(html, logo_origin) => {
            // The owner's logo may come from their own site.
            let csp = super::SECURITY_HEADERS
                .iter()
                .find(|(name, _)| *name == "content-security-policy")
                .map(|(_, policy)| policy.to_string())
                .unwrap_or_default();
            let csp = match logo_origin {
                Some(origin) => csp.replace(
                    "img-src 'self' data:",
                    &format!("img-src 'self' data: {origin}"),
                ),
                None => csp,
            };
            Ok((
                [
                    (
                        axum::http::header::CACHE_CONTROL,
                        "public, max-age=10".to_owned(),
                    ),
                    (axum::http::header::CONTENT_SECURITY_POLICY, csp),
                ],
                Html(html),
            )
                .into_response())
        }
        Rendered::Atom(body) => Ok((
            [
                (axum::http::header::CACHE_CONTROL, "public, max-age=10"),
                (axum::http::header::CONTENT_TYPE, "application/atom+xml"),
            ],
            body,
        )
            .into_response()),
        Rendered::Json(body) => Ok((
            [
                (axum::http::header::CACHE_CONTROL, "public, max-age=10"),
                (axum::http::header::CONTENT_TYPE, "application/json"),
            ],
            body,
        )
            .into_response()),
        Rendered::Missing => {
            let wants_json = headers
                .get(axum::http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("application/json"));
            if wants_json || json {
                return Err(AppError::NotFound("no such status page".into()));
            }
            super::render(&MissingPage { slug }, axum::http::StatusCode::NOT_FOUND)
        }
    }
}

/// `https://host:port` of a URL, for the page's content security policy.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// The maintenance windows over the page's sensors `rows`: those in force
/// at `now`, then those starting within a week, soonest first.
fn windows_over(
    windows: &[(i64, bool, crate::config::WindowDef)],
    rows: &[&crate::store::StatusRow],
    now: jiff::Timestamp,
) -> Vec<PublicWindow> {
    let week = jiff::SignedDuration::from_hours(7 * 24);
    let mut found: Vec<(jiff::Timestamp, jiff::Timestamp, String)> = windows
        .iter()
        .filter(|(_, _, window)| {
            rows.iter().any(|row| {
                let server = row
                    .path
                    .split_once('/')
                    .map_or(row.path.as_str(), |(s, _)| s);
                window.covers(&row.path, server, row.group.as_deref())
            })
        })
        .filter_map(|(_, _, window)| {
            let (start, end) = window.rule.next_span(now)?;
            (start <= now.checked_add(week).ok()?).then(|| (start, end, window.name.clone()))
        })
        .collect();
    found.sort();
    let show = |t: jiff::Timestamp| t.strftime("%Y-%m-%d %H:%M UTC").to_string();
    found
        .into_iter()
        .map(|(start, end, name)| PublicWindow {
            current: start <= now,
            when: if start <= now {
                format!("in progress, until {}", show(end))
            } else {
                format!("{} to {}", show(start), show(end))
            },
            name,
            start: start.to_string(),
            end: end.to_string(),
        })
        .collect()
}

/// One state change in a page's Atom feed.
struct FeedEntry {
    id: i64,
    title: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "status_feed.xml")]
struct Feed {
    title: String,
    slug: String,
    updated: String,
    entries: Vec<FeedEntry>,
}

/// The most entries in a page's feed.
const FEED_ENTRIES: usize = 50;

async fn render_public(
    state: &AppState,
    slug: String,
    page: usize,
    format: Format,
) -> Result<Rendered, AppError> {
    let json = format == Format::Json;
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
    let rows: HashMap<i64, crate::store::StatusRow> =
        db.status().await?.into_iter().map(|r| (r.id, r)).collect();
    // One section per name the owner chose, in their order; a sensor under
    // two names shows under the first.
    let mut seen = std::collections::HashSet::new();
    let mut listed: Vec<(String, i64)> = Vec::new();
    for name in &found.names {
        let mut ids = db.sensor_ids(name.clone()).await.unwrap_or_default();
        ids.sort_unstable_by(|a, b| {
            let path = |id: &i64| rows.get(id).map(|r| r.path.as_str());
            path(a).cmp(&path(b))
        });
        for id in ids {
            if rows.contains_key(&id) && seen.insert(id) {
                listed.push((name.clone(), id));
            }
        }
    }
    if format == Format::Atom {
        // The page's sensors' latest state changes (from the store's latest
        // events: one query), names and states only, as on the page.
        let ids: std::collections::HashSet<i64> = listed.iter().map(|(_, id)| *id).collect();
        let rfc3339 = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        let entries: Vec<FeedEntry> = db
            .recent_events(1000, None)
            .await?
            .into_iter()
            .filter(|(_, _, event)| ids.contains(&event.sensor_id))
            .take(FEED_ENTRIES)
            .map(|(id, path, event)| FeedEntry {
                id,
                title: format!("{path} is {}", public_state(event.to)),
                updated: rfc3339(event.at_ms),
            })
            .collect();
        let feed = Feed {
            title: found.title,
            updated: entries
                .first()
                .map_or_else(|| rfc3339(now), |e| e.updated.clone()),
            slug,
            entries,
        };
        return Ok(Rendered::Atom(super::html(&feed)?));
    }
    let now_ts = jiff::Timestamp::from_millisecond(now).unwrap_or_default();
    let windows = db.windows().await?;
    let listed_rows: Vec<&crate::store::StatusRow> =
        listed.iter().map(|(_, id)| &rows[id]).collect();
    let maintenance = windows_over(&windows, &listed_rows, now_ts);
    let states: Vec<SensorState> = listed.iter().map(|(_, id)| rows[id].state).collect();
    let (overall, overall_class) = banner(&states);
    let pages = listed.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages - 1);
    let first_day = (now / DAY_MS - (DAYS as i64 - 1)) * DAY_MS;
    let mut sections: Vec<PublicSection> = Vec::new();
    for (section, id) in listed.into_iter().skip(page * PAGE_SIZE).take(PAGE_SIZE) {
        let row = &rows[&id];
        let initial = db.state_at(id, first_day).await?;
        let events = db.events(id, first_day, now).await?;
        let days = crate::report::daily_uptime(initial, &events, first_day, DAYS, now);
        let (totals, _) = crate::report::timeline(initial, &events, first_day, now);
        let uptime = totals.uptime_percent();
        let sensor = PublicSensor {
            name: row.path.clone(),
            class: match row.state {
                SensorState::Up => "up",
                SensorState::Warning => "warning",
                SensorState::Down => "down",
                SensorState::Unknown => "unknown",
                _ => "paused",
            },
            state: public_state(row.state),
            uptime: uptime.map_or_else(|| "-".to_owned(), |u| format!("{u:.2}%")),
            uptime_percent: uptime.map(|u| (u * 1000.0).round() / 1000.0),
            bars: chart::uptime_bars(&days, first_day),
        };
        match sections.last_mut() {
            Some(last) if last.name == section => last.sensors.push(sensor),
            _ => sections.push(PublicSection {
                name: section,
                sensors: vec![sensor],
            }),
        }
    }
    let updated = jiff::Timestamp::from_millisecond(now)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let logo_origin = found.logo.as_deref().and_then(origin);
    let public = PublicPage {
        title: found.title,
        slug,
        logo: found.logo,
        link: found.link,
        maintenance,
        overall,
        overall_class,
        sections,
        updated,
        page: page + 1,
        pages,
        previous: page.checked_sub(1),
        next: (page + 1 < pages).then_some(page + 1),
    };
    if json {
        let body = serde_json::to_string(&public).map_err(|e| AppError::Internal(e.to_string()))?;
        return Ok(Rendered::Json(body));
    }
    Ok(Rendered::Page(super::html(&public)?, logo_origin))
}

/// A state as a public page names it: a paused sensor is in maintenance
/// (whatever paused it, nothing more is said).
fn public_state(state: SensorState) -> String {
    match state {
        SensorState::Paused(_) => "maintenance".to_owned(),
        other => other.to_string(),
    }
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
    #[serde(default)]
    logo: Option<String>,
    #[serde(default)]
    link: Option<String>,
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
        logo: page.logo,
        link: page.link,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_says_how_bad_it_is() {
        use SensorState::{Down, Paused, Pending, Unknown, Up, Warning};
        let maintenance = Paused(crate::monitor::state::PauseCause::Schedule);
        assert_eq!(
            banner(&[Up, Up, maintenance, Pending]).0,
            "All systems operational"
        );
        assert_eq!(banner(&[]).0, "All systems operational");
        assert_eq!(banner(&[Up, Warning]).0, "Degraded performance");
        assert_eq!(banner(&[Up, Unknown]).0, "Degraded performance");
        assert_eq!(banner(&[Up, Up, Down, Warning]), ("Partial outage", "down"));
        assert_eq!(banner(&[Up, Down]).0, "Partial outage", "half is not most");
        assert_eq!(banner(&[Up, Down, Down]).0, "Major outage");
        assert_eq!(banner(&[Down, maintenance, maintenance]).0, "Major outage");
    }
}
