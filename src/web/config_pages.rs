//! The configuration page: groups, servers and maintenance windows made in
//! the web interface, each with a form whose errors sit next to the field.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::{Admin, CsrfForm};
use super::{AppError, AppState};
use crate::config::model::parse_days;
use crate::config::{Overrides, WindowDef, WindowRule};
use crate::store::Storage;
use crate::store::accounts::Account;

/// A form field with its value and error.
pub struct Field {
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    value: String,
    error: Option<String>,
}

const SETTINGS: [(&str, &str, &str); 8] = [
    ("interval", "Interval", "inherited"),
    ("timeout", "Timeout", "inherited"),
    ("warning", "Warning above", "none"),
    ("critical", "Down above", "none"),
    ("retries", "Re-checks before DOWN", "inherited"),
    ("depends_on", "Depends on", "server/sensor"),
    (
        "locations",
        "Checked from",
        "every location: or eu-west, us-east",
    ),
    (
        "down_when",
        "Down when down at",
        "1 of 1, a majority of several: or 2, all",
    ),
];
const GROUP: [(&str, &str, &str); 1] = [("name", "Group", "Production or Production/Web")];
const SERVER: [(&str, &str, &str); 4] = [
    ("name", "Server", "web1"),
    ("host", "Host", "web1.example.com"),
    ("group", "Group", "none"),
    ("tags", "Tags", "frontend, eu"),
];
const WINDOW: [(&str, &str, &str); 10] = [
    ("name", "Name", "Sunday backups"),
    ("from", "From (one-off)", "2026-12-01T22:00"),
    ("until", "Until (one-off)", "2026-12-02T01:00"),
    (
        "every",
        "Every (recurring)",
        "sunday, weekday, weekend or day",
    ),
    ("start", "Start (recurring)", "02:00"),
    ("duration", "Duration (recurring)", "1h"),
    ("timezone", "Time zone", "UTC"),
    ("groups", "Groups", "Production"),
    ("servers", "Servers", "web1, web2"),
    ("sensors", "Sensors", "db/postgresql"),
];

fn fields(
    spec: &[(&'static str, &'static str, &'static str)],
    form: &HashMap<String, String>,
    errors: &[(&'static str, String)],
) -> Vec<Field> {
    spec.iter()
        .map(|&(name, label, hint)| Field {
            name,
            label,
            hint,
            value: form.get(name).cloned().unwrap_or_default(),
            error: errors
                .iter()
                .find(|(field, _)| *field == name)
                .map(|(_, e)| e.clone()),
        })
        .collect()
}

struct ItemView {
    name: String,
    host: String,
    group: String,
    summary: String,
    managed: bool,
}

struct WindowView {
    id: i64,
    name: String,
    when: String,
    covers: String,
    managed: bool,
}

#[derive(Template)]
#[template(path = "config.html")]
struct ConfigPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    groups: Vec<ItemView>,
    servers: Vec<ItemView>,
    windows: Vec<WindowView>,
    group_fields: Vec<Field>,
    server_fields: Vec<Field>,
    window_fields: Vec<Field>,
}

fn summary(o: &Overrides) -> String {
    let show = |name: &str, d: Option<std::time::Duration>| {
        d.map(|d| format!("{name} {}", crate::duration::format(d)))
    };
    [
        show("every", o.interval),
        show("timeout", o.timeout),
        show("warning", o.warning),
        show("down", o.critical),
        o.retries.map(|r| format!("{r} re-checks")),
        o.depends_on.as_ref().map(|d| format!("depends on {d}")),
        o.locations
            .as_ref()
            .filter(|l| !l.is_empty())
            .map(|l| format!("from {}", l.join(", "))),
        o.down_when.map(|k| format!("down at {k}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

/// Which form the errors belong to.
enum Failed {
    None,
    Group(HashMap<String, String>, Vec<(&'static str, String)>),
    Server(HashMap<String, String>, Vec<(&'static str, String)>),
    Window(HashMap<String, String>, Vec<(&'static str, String)>),
}

async fn render(state: &AppState, user: &Account, failed: Failed) -> Result<Response, AppError> {
    let groups = state.db.config_items(false).await?;
    let servers = state.db.config_items(true).await?;
    let windows = state.db.windows().await?;
    let view = |item: crate::store::edit::ConfigItem| ItemView {
        summary: summary(&item.overrides),
        name: item.name,
        host: item.host,
        group: item.group,
        managed: item.managed,
    };
    let empty = HashMap::new();
    let (mut g, mut s, mut w) = ((&empty, &[][..]), (&empty, &[][..]), (&empty, &[][..]));
    let invalid = !matches!(failed, Failed::None);
    match &failed {
        Failed::Group(form, errors) => g = (form, errors),
        Failed::Server(form, errors) => s = (form, errors),
        Failed::Window(form, errors) => w = (form, errors),
        Failed::None => {}
    }
    let page = ConfigPage {
        user: Some(user.name.clone()),
        admin: true,
        csrf: user.csrf.clone(),
        groups: groups.into_iter().map(view).collect(),
        servers: servers.into_iter().map(view).collect(),
        windows: windows
            .into_iter()
            .map(|(id, managed, w)| WindowView {
                id,
                when: match &w.rule {
                    WindowRule::Once { start, end } => format!("{start} to {end}"),
                    WindowRule::Weekly {
                        start,
                        duration,
                        zone,
                        ..
                    } => {
                        format!(
                            "weekly at {start} for {} ({})",
                            crate::duration::format(*duration),
                            zone.iana_name().unwrap_or("UTC")
                        )
                    }
                },
                covers: w
                    .groups
                    .iter()
                    .chain(&w.servers)
                    .chain(&w.sensors)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                name: w.name,
                managed,
            })
            .collect(),
        group_fields: fields(&[&GROUP[..], &SETTINGS[..]].concat(), g.0, g.1),
        server_fields: fields(&[&SERVER[..], &SETTINGS[..]].concat(), s.0, s.1),
        window_fields: fields(&WINDOW, w.0, w.1),
    };
    let status = if invalid {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    super::render(&page, status)
}

/// `GET /config`.
pub async fn page(State(state): State<AppState>, Admin(user): Admin) -> Result<Response, AppError> {
    render(&state, &user, Failed::None).await
}

fn text(form: &HashMap<String, String>, name: &str) -> String {
    form.get(name)
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn list(form: &HashMap<String, String>, name: &str) -> Vec<String> {
    text(form, name)
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The inheritable settings of a form; errors by field.
pub fn parse_overrides(
    form: &HashMap<String, String>,
    errors: &mut Vec<(&'static str, String)>,
) -> Overrides {
    let mut duration = |name: &'static str| -> Option<std::time::Duration> {
        let value = text(form, name);
        if value.is_empty() {
            return None;
        }
        crate::duration::parse(&value)
            .map_err(|e| errors.push((name, e.to_string())))
            .ok()
    };
    let interval = duration("interval");
    let timeout = duration("timeout");
    let warning = duration("warning");
    let critical = duration("critical");
    if interval.is_some_and(|i| i.as_secs() < 1) {
        errors.push(("interval", "The interval must be at least 1s.".into()));
    }
    let retries = match text(form, "retries").as_str() {
        "" => None,
        value => match value.parse::<u32>() {
            Ok(n @ 0..=10) => Some(n),
            _ => {
                errors.push(("retries", "Use a number from 0 to 10.".into()));
                None
            }
        },
    };
    let depends_on = Some(text(form, "depends_on")).filter(|d| !d.is_empty());
    let locations: Vec<String> = text(form, "locations")
        .split(',')
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    if let Err(message) = crate::monitor::verdict::check_locations(&locations) {
        errors.push(("locations", message));
    }
    let down_when = match text(form, "down_when").as_str() {
        "" => None,
        value => crate::monitor::verdict::DownWhen::parse(value)
            .map_err(|message| errors.push(("down_when", message)))
            .ok(),
    };
    Overrides {
        heartbeat: None,
        dns: None,
        udp: None,
        ping: None,
        locations: Some(locations).filter(|l| !l.is_empty()),
        down_when,
        interval,
        timeout,
        warning,
        critical,
        retries,
        depends_on,
        probe: None,
    }
}

/// Puts a store refusal next to the field it is about.
fn refusal(error: AppError, field: &'static str) -> Result<(&'static str, String), AppError> {
    match error {
        AppError::BadRequest(message) | AppError::NotFound(message) => {
            let field = if message.contains("depends_on") || message.contains("cycle") {
                "depends_on"
            } else {
                field
            };
            Ok((field, message))
        }
        other => Err(other),
    }
}

/// `POST /config/group`.
pub async fn save_group(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let mut errors = Vec::new();
    let overrides = parse_overrides(&form, &mut errors);
    if errors.is_empty() {
        let name = text(&form, "name");
        match state
            .db
            .save_group(name, overrides)
            .await
            .map_err(AppError::from)
        {
            Ok(()) => return Ok(Redirect::to("/config").into_response()),
            Err(error) => errors.push(refusal(error, "name")?),
        }
    }
    render(&state, &user, Failed::Group(form, errors)).await
}

/// `POST /config/server`.
pub async fn save_server(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let mut errors = Vec::new();
    let overrides = parse_overrides(&form, &mut errors);
    let host = crate::probe::target::parse_bare_host(&text(&form, "host"))
        .map_err(|e| errors.push(("host", e.to_string())))
        .ok();
    if let (Some(host), true) = (host, errors.is_empty()) {
        let (name, group, tags) = (
            text(&form, "name"),
            Some(text(&form, "group")).filter(|g| !g.is_empty()),
            list(&form, "tags"),
        );
        let field = if group.is_some() { "group" } else { "name" };
        match state
            .db
            .save_server(name, host, group, overrides, tags)
            .await
            .map_err(AppError::from)
        {
            Ok(()) => return Ok(Redirect::to("/config").into_response()),
            Err(error) => {
                let (field, message) = refusal(error, field)?;
                let field = if message.contains("group") {
                    "group"
                } else if message.contains("server") {
                    "name"
                } else {
                    field
                };
                errors.push((field, message));
            }
        }
    }
    render(&state, &user, Failed::Server(form, errors)).await
}

/// Builds a window from the form: `from`/`until`, or `every`/`start`/`duration`.
fn parse_window(
    form: &HashMap<String, String>,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<WindowDef> {
    let name = text(form, "name");
    if name.is_empty() {
        errors.push(("name", "Give the window a name.".into()));
    }
    let zone_name = Some(text(form, "timezone"))
        .filter(|z| !z.is_empty())
        .unwrap_or_else(|| "UTC".into());
    let zone = jiff::tz::TimeZone::get(&zone_name)
        .map_err(|_| {
            errors.push((
                "timezone",
                format!("Unknown time zone '{zone_name}': use an IANA name such as Europe/Berlin."),
            ))
        })
        .ok()?;
    let civil = |field: &'static str,
                 errors: &mut Vec<(&'static str, String)>|
     -> Option<jiff::Timestamp> {
        let value = text(form, field).replace(' ', "T");
        let parsed: Option<jiff::civil::DateTime> = value.parse().ok();
        match parsed.and_then(|dt| zone.to_timestamp(dt).ok()) {
            Some(ts) => Some(ts),
            None => {
                errors.push((
                    field,
                    format!("Write a date and time such as 2026-12-01T22:00, not '{value}'."),
                ));
                None
            }
        }
    };
    let rule = if !text(form, "from").is_empty() || !text(form, "until").is_empty() {
        let (start, end) = (civil("from", errors), civil("until", errors));
        match (start, end) {
            (Some(start), Some(end)) if end > start => Some(WindowRule::Once { start, end }),
            (Some(_), Some(_)) => {
                errors.push(("until", "'Until' must be after 'from'.".into()));
                None
            }
            _ => None,
        }
    } else {
        let days = parse_days(&text(form, "every"))
            .map_err(|e| errors.push(("every", e)))
            .ok();
        let start: Option<jiff::civil::Time> = text(form, "start")
            .parse()
            .map_err(|_| errors.push(("start", "Write a time such as 02:00.".into())))
            .ok();
        let duration = crate::duration::parse(&text(form, "duration"))
            .map_err(|e| errors.push(("duration", e.to_string())))
            .ok();
        match (days, start, duration) {
            (Some(days), Some(start), Some(duration)) => Some(WindowRule::Weekly {
                days,
                start,
                duration,
                zone: zone.clone(),
            }),
            _ => None,
        }
    };
    let window = WindowDef {
        name,
        rule: rule?,
        groups: list(form, "groups"),
        servers: list(form, "servers"),
        sensors: list(form, "sensors"),
    };
    if window.groups.is_empty() && window.servers.is_empty() && window.sensors.is_empty() {
        errors.push((
            "sensors",
            "Name at least one group, server or sensor.".into(),
        ));
    }
    errors.is_empty().then_some(window)
}

/// `POST /config/window`.
pub async fn add_window(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let mut errors = Vec::new();
    if let Some(window) = parse_window(&form, &mut errors) {
        match state.db.add_window(window).await.map_err(AppError::from) {
            Ok(()) => return Ok(Redirect::to("/config").into_response()),
            Err(error) => errors.push(refusal(error, "sensors")?),
        }
    }
    render(&state, &user, Failed::Window(form, errors)).await
}

/// `POST /config/group/delete` and `/config/server/delete`.
pub async fn delete(
    State(state): State<AppState>,
    _: Admin,
    Path(kind): Path<String>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let name = text(&form, "name");
    state.db.retire(kind.to_owned(), name).await?;
    Ok(Redirect::to("/config").into_response())
}

/// `POST /config/window/{id}/delete`.
pub async fn delete_window(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<HashMap<String, String>>,
) -> Result<Response, AppError> {
    state.db.delete_window(id).await?;
    Ok(Redirect::to("/config").into_response())
}

/// JSON bodies of the configuration API take the form's fields; numbers,
/// booleans and lists are accepted too and turned into the form's text.
fn json_fields(body: serde_json::Map<String, serde_json::Value>) -> HashMap<String, String> {
    body.into_iter()
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Array(items) => items
                    .into_iter()
                    .map(|i| match i {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (key, text)
        })
        .collect()
}

fn first_error(errors: Vec<(&'static str, String)>) -> AppError {
    let text = errors
        .into_iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect::<Vec<_>>()
        .join("; ");
    AppError::BadRequest(text)
}

type JsonBody = axum::Json<serde_json::Map<String, serde_json::Value>>;

/// `GET /api/groups`.
pub async fn api_groups(
    State(state): State<AppState>,
    _: super::auth::ApiUser,
) -> Result<Response, AppError> {
    api_list(state, false).await
}

/// `GET /api/servers`.
pub async fn api_servers(
    State(state): State<AppState>,
    _: super::auth::ApiUser,
) -> Result<Response, AppError> {
    api_list(state, true).await
}

async fn api_list(state: AppState, servers: bool) -> Result<Response, AppError> {
    let items = state.db.config_items(servers).await?;
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .map(|i| serde_json::json!({ "name": i.name, "host": i.host, "group": i.group, "settings": i.overrides, "managed": i.managed }))
        .collect();
    Ok(axum::Json(items).into_response())
}

/// `POST /api/groups`: `{"name": "Site/Web", "interval": "30s", …}`.
pub async fn api_save_group(
    State(state): State<AppState>,
    _: Admin,
    axum::Json(body): JsonBody,
) -> Result<Response, AppError> {
    let form = json_fields(body);
    let mut errors = Vec::new();
    let overrides = parse_overrides(&form, &mut errors);
    if !errors.is_empty() {
        return Err(first_error(errors));
    }
    let name = text(&form, "name");
    state.db.save_group(name, overrides).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/servers`: `{"name": "web1", "host": "…", "group": "Site", "tags": ["eu"], …}`.
pub async fn api_save_server(
    State(state): State<AppState>,
    _: Admin,
    axum::Json(body): JsonBody,
) -> Result<Response, AppError> {
    let form = json_fields(body);
    let mut errors = Vec::new();
    let overrides = parse_overrides(&form, &mut errors);
    let host = crate::probe::target::parse_bare_host(&text(&form, "host"))
        .map_err(|e| errors.push(("host", e.to_string())))
        .ok();
    let Some(host) = host.filter(|_| errors.is_empty()) else {
        return Err(first_error(errors));
    };
    let (name, group, tags) = (
        text(&form, "name"),
        Some(text(&form, "group")).filter(|g| !g.is_empty()),
        list(&form, "tags"),
    );
    state
        .db
        .save_server(name, host, group, overrides, tags)
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/groups/{name}`.
pub async fn api_delete_group(
    State(state): State<AppState>,
    user: Admin,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    api_delete(state, user, "group", name).await
}

/// `DELETE /api/servers/{name}`.
pub async fn api_delete_server(
    State(state): State<AppState>,
    user: Admin,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    api_delete(state, user, "server", name).await
}

async fn api_delete(
    state: AppState,
    _: Admin,
    kind: &'static str,
    name: String,
) -> Result<Response, AppError> {
    state.db.retire(kind.to_owned(), name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/maintenance`.
pub async fn api_windows(
    State(state): State<AppState>,
    _: super::auth::ApiUser,
) -> Result<Response, AppError> {
    let windows = state.db.windows().await?;
    let windows: Vec<serde_json::Value> = windows
        .into_iter()
        .map(|(id, managed, w)| {
            serde_json::json!({ "id": id, "managed": managed, "name": w.name, "rule": w.rule, "groups": w.groups, "servers": w.servers, "sensors": w.sensors })
        })
        .collect();
    Ok(axum::Json(windows).into_response())
}

/// `POST /api/maintenance`: the form's fields (`from`/`until`, or
/// `every`/`start`/`duration`, `timezone`, `groups`/`servers`/`sensors`).
pub async fn api_add_window(
    State(state): State<AppState>,
    _: Admin,
    axum::Json(body): JsonBody,
) -> Result<Response, AppError> {
    let form = json_fields(body);
    let mut errors = Vec::new();
    let Some(window) = parse_window(&form, &mut errors) else {
        return Err(first_error(errors));
    };
    state.db.add_window(window).await?;
    Ok(axum::http::StatusCode::CREATED.into_response())
}

/// `DELETE /api/maintenance/{id}`.
pub async fn api_delete_window(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    state.db.delete_window(id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `POST /config/{kind}/pause` and `/resume` for groups and servers.
pub async fn pause(
    State(state): State<AppState>,
    _: Admin,
    Path((_kind, action)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let paused = action == "pause";
    let name = text(&form, "name");
    state.db.set_paused(name, paused).await?;
    Ok(Redirect::to("/config").into_response())
}

/// Groups, servers and maintenance windows: pages and API.
pub(super) fn routes() -> super::Routes {
    super::Routes::new()
        .get("/config", page)
        .post("/config/group", save_group)
        .post("/config/server", save_server)
        .post("/config/window", add_window)
        .post("/config/window/{id}/delete", delete_window)
        .post("/config/{kind}/delete", delete)
        .post("/config/{kind}/{action}", pause)
        .get("/api/groups", api_groups)
        .post("/api/groups", api_save_group)
        .get("/api/servers", api_servers)
        .post("/api/servers", api_save_server)
        .delete("/api/groups/{name}", api_delete_group)
        .delete("/api/servers/{name}", api_delete_server)
        .get("/api/maintenance", api_windows)
        .post("/api/maintenance", api_add_window)
        .delete("/api/maintenance/{id}", api_delete_window)
}
