//! The web interface, JSON API and Prometheus metrics, served by
//! `portwatch serve` (default 127.0.0.1:8080).
//!
//! [`app`] builds the router from its state, so tests drive it with
//! `oneshot`. Pages need a signed-in session (cookie, HttpOnly, SameSite)
//! and every form carries the session's CSRF token; the API takes the same
//! session or a bearer token. Every string a user typed is HTML-escaped by
//! the templates (askama). Assets are embedded; nothing comes from a CDN.

mod api;
mod auth;
pub mod chart;
mod config_pages;
mod edit;
mod metrics;
mod notify_pages;
mod pages;
mod reports;
mod status_pages;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;

use crate::monitor::stats::MonitorStats;
use crate::store::writer::WriterStats;
use crate::store::{Store, StoreError};

pub use auth::ensure_admin;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    db: PathBuf,
    pool: Arc<Mutex<Vec<Store>>>,
    monitor: Option<Arc<MonitorStats>>,
    writer: Option<Arc<WriterStats>>,
    failed_logins: Arc<Mutex<HashMap<IpAddr, (u32, Instant)>>>,
    metrics: MetricsAccess,
    delivery: Option<Arc<crate::notify::worker::DeliveryStats>>,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MetricsAccess {
    /// Clients on loopback freely, others with a token.
    #[default]
    Loopback,
    /// Only with a token (or a session).
    Token,
    /// Anyone who can reach the port.
    Open,
}

impl AppState {
    /// State for the store at `db`, with the monitor's counters if one runs.
    pub fn new(
        db: PathBuf,
        monitor: Option<Arc<MonitorStats>>,
        writer: Option<Arc<WriterStats>>,
    ) -> AppState {
        AppState {
            db,
            pool: Arc::default(),
            monitor,
            writer,
            failed_logins: Arc::default(),
            metrics: MetricsAccess::default(),
            delivery: None,
        }
    }

    /// Adds the notification worker's counters to `/metrics`.
    pub fn with_delivery_stats(
        mut self,
        stats: Arc<crate::notify::worker::DeliveryStats>,
    ) -> AppState {
        self.delivery = Some(stats);
        self
    }

    /// Sets who may read `/metrics`.
    pub fn with_metrics_access(mut self, access: MetricsAccess) -> AppState {
        self.metrics = access;
        self
    }

    /// Runs `work` with a store connection on a blocking thread.
    async fn store<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let (db, pool) = (self.db.clone(), self.pool.clone());
        tokio::task::spawn_blocking(move || {
            let pooled = pool.lock().expect("pool lock").pop();
            let mut store = match pooled {
                Some(store) => store,
                None => Store::open(&db)?,
            };
            let result = work(&mut store);
            pool.lock().expect("pool lock").push(store);
            result
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(AppError::from)
    }
}

/// Errors of handlers: 4xx with a message for bad input, a plain 500 whose
/// details are logged and never shown.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Not signed in.
    #[error("sign in first")]
    Unauthorized,
    /// Signed in, but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// Bad input.
    #[error("{0}")]
    BadRequest(String),
    /// Too many attempts.
    #[error("too many failed sign-ins from this address; wait a minute")]
    TooMany,
    /// Our fault.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(name) => {
                AppError::NotFound(format!("no sensor, server or group named '{name}'"))
            }
            StoreError::Conflict(message) => AppError::BadRequest(message),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::TooMany => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (
            self.status(),
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(body),
        )
            .into_response()
    }
}

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match Assets::get(&file) {
        Some(content) => {
            let kind = if file.ends_with(".css") {
                "text/css"
            } else {
                "application/octet-stream"
            };
            (
                [
                    (header::CONTENT_TYPE, kind),
                    (header::CACHE_CONTROL, "max-age=3600"),
                ],
                content.data,
            )
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The router: pages, API, metrics and assets.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route(
            "/sensors/new",
            get(pages::new_sensor_form).post(pages::create_sensor),
        )
        .route("/sensors/{id}", get(pages::sensor))
        .route("/sensors/{id}/edit", get(edit::form).post(edit::update))
        .route("/sensors/{id}/delete", post(edit::delete))
        .route("/sensors/{id}/pause", post(pages::pause))
        .route("/sensors/{id}/resume", post(pages::resume))
        .route("/events", get(pages::events))
        .route("/config", get(config_pages::page))
        .route("/config/group", post(config_pages::save_group))
        .route("/config/server", post(config_pages::save_server))
        .route("/config/window", post(config_pages::add_window))
        .route(
            "/config/window/{id}/delete",
            post(config_pages::delete_window),
        )
        .route("/config/{kind}/delete", post(config_pages::delete))
        .route("/config/{kind}/{action}", post(config_pages::pause))
        .route("/reports", get(reports::page))
        .route(
            "/status-pages",
            get(status_pages::list).post(status_pages::create),
        )
        .route("/status-pages/{slug}/delete", post(status_pages::delete))
        .route("/status/{slug}", get(status_pages::public))
        .route("/api/reports", get(reports::api))
        .route("/api/sensors", get(api::list).post(api::create))
        .route("/api/sensors/{id}", get(api::get).delete(api::delete))
        .route("/api/sensors/{id}/pause", post(api::pause))
        .route("/api/sensors/{id}/resume", post(api::resume))
        .route("/api/events", get(api::events))
        .route("/api/notifications", get(api::notifications))
        .route(
            "/api/channels",
            get(notify_pages::api_channels).post(notify_pages::api_save_channel),
        )
        .route(
            "/api/channels/{name}",
            axum::routing::delete(notify_pages::api_delete_channel),
        )
        .route(
            "/api/rules",
            get(notify_pages::api_rules).post(notify_pages::api_add_rule),
        )
        .route(
            "/api/rules/{id}",
            axum::routing::delete(notify_pages::api_delete_rule),
        )
        .route("/notifications", get(notify_pages::page))
        .route("/notifications/channel", post(notify_pages::save_channel))
        .route("/notifications/rule", post(notify_pages::add_rule))
        .route(
            "/notifications/channel/{name}/delete",
            post(notify_pages::delete_channel),
        )
        .route(
            "/notifications/channel/{name}/test",
            post(notify_pages::test_channel),
        )
        .route(
            "/notifications/rule/{id}/delete",
            post(notify_pages::delete_rule),
        )
        .route(
            "/api/groups",
            get(config_pages::api_groups).post(config_pages::api_save_group),
        )
        .route(
            "/api/servers",
            get(config_pages::api_servers).post(config_pages::api_save_server),
        )
        .route(
            "/api/groups/{name}",
            axum::routing::delete(config_pages::api_delete_group),
        )
        .route(
            "/api/servers/{name}",
            axum::routing::delete(config_pages::api_delete_server),
        )
        .route(
            "/api/maintenance",
            get(config_pages::api_windows).post(config_pages::api_add_window),
        )
        .route(
            "/api/maintenance/{id}",
            axum::routing::delete(config_pages::api_delete_window),
        )
        .route(
            "/api/status-pages",
            get(status_pages::api_list).post(status_pages::api_save),
        )
        .route(
            "/api/status-pages/{slug}",
            axum::routing::delete(status_pages::api_delete),
        )
        .route("/api/openapi.json", get(api::openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/assets/{*file}", get(asset))
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .with_state(state)
}
