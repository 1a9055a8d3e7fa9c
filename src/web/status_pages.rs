//! Public status pages: chosen sensors' names and states, no sign-in. They
//! never show hosts, ports or messages, and they never start a check.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{CsrfForm, PageUser};
use super::{AppError, AppState};
use crate::monitor::state::State as SensorState;
use crate::report::sensor_report;
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
    let pages = state.store(|store| store.status_pages()).await?;
    let html = ListPage {
        user: Some(user.name.clone()),
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        pages,
        error,
    }
    .render()
    .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(Html(html).into_response())
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
    #[serde(default)]
    csrf: String,
    slug: String,
    title: String,
    names: String,
}

/// `POST /status-pages`.
pub async fn create(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<NewPage>,
) -> Result<Response, AppError> {
    user.check_csrf(&form.csrf)?;
    user.require_admin()?;
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
        .store(move |store| store.save_status_page(&page))
        .await
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
    PageUser(user): PageUser,
    Path(slug): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, AppError> {
    user.check_csrf(&form.csrf)?;
    user.require_admin()?;
    state
        .store(move |store| store.delete_status_page(&slug))
        .await?;
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
}

/// `GET /status/{slug}`: public, read-only.
pub async fn public(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Response, AppError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let data = state
        .store(move |store| {
            let Some(page) = store.status_pages()?.into_iter().find(|p| p.slug == slug) else {
                return Ok(None);
            };
            let mut ids = Vec::new();
            for name in &page.names {
                ids.extend(store.sensor_ids(name).unwrap_or_default());
            }
            let mut sensors = Vec::new();
            for row in store.status()?.into_iter().filter(|r| ids.contains(&r.id)) {
                let report = sensor_report(store, row.id, &row.path, now - 30 * 86_400_000, now)?;
                sensors.push((row.path, row.state, report.uptime_by_time));
            }
            Ok(Some((page.title, sensors)))
        })
        .await?;
    let Some((title, sensors)) = data else {
        return Err(AppError::NotFound("no such status page".into()));
    };
    let down = sensors.iter().filter(|s| s.1 == SensorState::Down).count();
    let warning = sensors
        .iter()
        .filter(|s| s.1 == SensorState::Warning)
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
    let html = PublicPage {
        title,
        overall,
        overall_class,
        sensors,
        updated,
    }
    .render()
    .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(Html(html).into_response())
}

/// `GET /api/status-pages`.
pub async fn api_list(
    State(state): State<AppState>,
    _: super::auth::ApiUser,
) -> Result<Response, AppError> {
    let pages = state.store(|store| store.status_pages()).await?;
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
    user: super::auth::ApiUser,
    axum::Json(page): axum::Json<NewPageJson>,
) -> Result<Response, AppError> {
    user.0.require_admin()?;
    let page = StatusPage {
        slug: page.slug,
        title: page.title,
        names: page.names,
    };
    state
        .store(move |store| store.save_status_page(&page))
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/status-pages/{slug}`.
pub async fn api_delete(
    State(state): State<AppState>,
    user: super::auth::ApiUser,
    Path(slug): Path<String>,
) -> Result<Response, AppError> {
    user.0.require_admin()?;
    state
        .store(move |store| store.delete_status_page(&slug))
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}
