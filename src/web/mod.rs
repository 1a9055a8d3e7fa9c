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
pub(crate) mod chart;
mod config_pages;
mod edit;
mod guard;
mod listen;
mod live;
mod metrics;
mod nodes;
mod notify_pages;
mod pages;
mod push;
mod reports;
mod signin;
mod status_pages;
mod tally;

use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::monitor::stats::MonitorStats;
use crate::store::writer::WriterStats;
use crate::store::{Backend, StoreError};

pub use auth::{CSRF_HEADER, Cidr, ensure_admin};
pub use listen::{WebLimits, serve};
pub use signin::SignIns;

/// Store connections a `portwatch serve` holds open at once (the web,
/// the monitor's reloads and the delivery worker share them; the writer
/// has its own); requests beyond it wait for one.
pub const MAX_STORE_CONNECTIONS: usize = 16;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    db: Backend,
    monitor: Option<Arc<MonitorStats>>,
    writer: Option<Arc<WriterStats>>,
    sign_ins: Arc<SignIns>,
    metrics: MetricsAccess,
    delivery: Option<Arc<crate::notify::worker::DeliveryStats>>,
    trusted_proxies: Arc<[Cidr]>,
    public_url: Option<String>,
    status_cache: status_pages::Cache,
    tallies: tally::Tallies,
    sensor_series: metrics::SensorSeries,
    push_limits: push::PushLimits,
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
    /// The store behind the web.
    pub fn db(&self) -> &Backend {
        &self.db
    }

    /// State for the store behind `db`, with the monitor's counters if one
    /// runs.
    pub fn new(
        db: impl Into<Backend>,
        monitor: Option<Arc<MonitorStats>>,
        writer: Option<Arc<WriterStats>>,
    ) -> AppState {
        AppState {
            db: db.into(),
            monitor,
            writer,
            sign_ins: Arc::default(),
            metrics: MetricsAccess::default(),
            delivery: None,
            trusted_proxies: Arc::new([]),
            public_url: None,
            status_cache: status_pages::Cache::default(),
            tallies: tally::Tallies::default(),
            push_limits: push::PushLimits::default(),
            sensor_series: metrics::SensorSeries::default(),
        }
    }

    /// Starts counting the sensors by state, which a large installation's
    /// first dashboard would otherwise wait for.
    pub fn warm(&self) {
        self.tallies.warm(&self.db);
    }

    /// Believes `X-Forwarded-For` and `Forwarded` from these proxies only.
    pub fn with_trusted_proxies(mut self, proxies: Vec<Cidr>) -> AppState {
        self.trusted_proxies = proxies.into();
        self
    }

    /// The address users reach the interface at (`--public-url`): its
    /// origin is accepted on changes, and an `https://` URL marks the
    /// session cookie `Secure`.
    pub fn with_public_url(mut self, url: Option<String>) -> AppState {
        self.public_url = url;
        self
    }

    /// `; Secure` when users reach the interface over HTTPS.
    fn secure_flag(&self) -> &'static str {
        match &self.public_url {
            Some(url) if url.starts_with("https://") => "; Secure",
            _ => "",
        }
    }

    /// The sign-in counters, for `/metrics` and tests.
    pub fn sign_ins(&self) -> &SignIns {
        &self.sign_ins
    }

    /// The client's address, with forwarded headers believed only from a
    /// trusted proxy.
    fn client_ip(&self, parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
        auth::client_ip(parts, &self.trusted_proxies)
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
    #[error("too many sign-in attempts; wait a minute")]
    TooMany,
    /// Every slot for this kind of work is taken.
    #[error("the server is busy; try again in a few seconds")]
    Busy,
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
            AppError::Busy => StatusCode::SERVICE_UNAVAILABLE,
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
            } else if file.ends_with(".js") {
                "text/javascript"
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

/// A template's HTML.
fn html(page: &impl askama::Template) -> Result<String, AppError> {
    page.render().map_err(|e| AppError::Internal(e.to_string()))
}

/// Every page is rendered here: HTML with `status`, never stored by a
/// cache (pages show what one account may see, and carry its CSRF token).
fn render(page: &impl askama::Template, status: StatusCode) -> Result<Response, AppError> {
    Ok((
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::response::Html(html(page)?),
    )
        .into_response())
}

/// Records each route as it is added, so tests can walk every route of the
/// router (every change must be refused without a CSRF token).
struct Routes {
    router: Router<AppState>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    /// The routes of one resource, joined with [`Router::merge`].
    fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let route = match method {
            Method::GET => get(handler),
            Method::POST => post(handler),
            Method::DELETE => delete(handler),
            _ => unreachable!("the web uses GET, POST and DELETE"),
        };
        self.router = self.router.route(path, route);
        self.table.push((method, path));
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Routes {
        self.add(Method::GET, path, handler)
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Routes {
        self.add(Method::POST, path, handler)
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Routes {
        self.add(Method::DELETE, path, handler)
    }
}

fn routes() -> Routes {
    Routes::new()
        .merge(pages::routes())
        .merge(edit::routes())
        .merge(config_pages::routes())
        .merge(reports::routes())
        .merge(status_pages::routes())
        .merge(api::routes())
        .merge(notify_pages::routes())
        .merge(nodes::routes())
        .merge(live::routes())
        .merge(push::routes())
        .merge(metrics::routes())
        .get("/healthz", healthz)
        .get("/assets/{*file}", asset)
}

/// `/healthz`: `ok`, or `degraded` with the reason when the monitor cannot
/// keep up with its schedule (HTTP 200 either way: the process is alive and
/// serving; the body says whether it does all its work).
async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    if let Some(writer) = &state.writer
        && let Some((since_ms, error)) = writer.failing()
    {
        let since = jiff::Timestamp::from_millisecond(since_ms)
            .map(|t| t.strftime("%H:%M:%S UTC").to_string())
            .unwrap_or_default();
        return format!(
            "degraded: the store takes no writes since {since} ({error}); {} results and {} state changes wait in memory and are written when it is back\n",
            writer.pending.load(std::sync::atomic::Ordering::Relaxed),
            writer
                .events_pending
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    match state.monitor.as_ref().map(|m| m.overload_percent()) {
        Some(percent) if percent > 0 => format!(
            "degraded: the monitor is over capacity ({percent}% more checks came due over the last 10 s than it could do; see portwatch_checks_missed)\n"
        ),
        _ => "ok\n".to_owned(),
    }
}

/// Every route of [`app`]: method and path pattern.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().table
}

/// Headers on every response: no framing, no type sniffing, no referrer
/// leaving the site, and a policy that allows this site's own styles and
/// scripts and nothing inline.
pub(super) const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
];

/// The router: pages, API, metrics and assets. Every request passes the
/// guard (`guard.rs`): a change from another origin is refused, and a change made
/// with the session cookie needs the session's CSRF token.
pub fn app(state: AppState) -> Router {
    let mut router = routes()
        .router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(RequestBodyLimitLayer::new(64 * 1024));
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    router.with_state(state)
}
