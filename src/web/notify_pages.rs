//! Notification channels, rules and deliveries: the `/notifications` page
//! and the `/api/channels` and `/api/rules` endpoints. Channels and rules
//! made here are validated exactly like portwatch.toml's; those declared in
//! the file are shown and changed there. Secrets never appear: webhook URLs
//! are shown without their path (a chat webhook's path is its key), and
//! passwords and tokens are only ever named by variable or file.

use std::collections::{HashMap, HashSet};

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::auth::{Admin, ApiUser, CsrfForm, PageUser};
use super::{AppError, AppState};
use crate::config::{Known, channel_from_json, rule_from_json};
use crate::notify::redact_url;
use crate::notify::{ChannelDef, ChannelKind, RuleDef};
use crate::store::Storage;
use crate::store::StoreError;
use crate::store::accounts::{Account, Role};
use crate::store::outbox::{StoredChannel, StoredRule};

/// A channel as the API shows it.
fn channel_json(channel: &StoredChannel) -> Value {
    let def = &channel.def;
    let mut value = match &def.kind {
        ChannelKind::Webhook {
            url,
            token_env,
            token,
            preset,
            follow_redirects,
        } => json!({
            "kind": "webhook",
            "webhook": redact_url(url),
            "token_env": token_env,
            "token_set": token.is_some(),
            "preset": preset,
            "follow_redirects": follow_redirects,
        }),
        ChannelKind::Email {
            host,
            port,
            security,
            from,
            to,
            username,
            password_env,
            password_file,
            password,
        } => json!({
            "kind": "email",
            "smtp": host,
            "port": port,
            "security": security,
            "from": from,
            "to": to,
            "username": username,
            "password_env": password_env,
            "password_file": password_file,
            "password_set": password.is_some(),
        }),
        ChannelKind::Command { argv } => json!({
            "kind": "command",
            "command": argv.first(),
        }),
    };
    value["name"] = json!(def.name);
    value["managed"] = json!(channel.managed);
    value["template"] = json!(def.options.template);
    value["title"] = json!(def.options.title);
    value["rate_limit"] = json!(def.options.rate_limit);
    value["rate_window"] = json!(crate::duration::format(std::time::Duration::from_secs(
        def.options.rate_window_s
    )));
    value["timeout"] = json!(crate::duration::format(std::time::Duration::from_secs(
        def.options.timeout_s
    )));
    value
}

/// A rule as the API shows it.
fn rule_json(rule: &StoredRule) -> Value {
    let seconds =
        |s: Option<u64>| s.map(|s| crate::duration::format(std::time::Duration::from_secs(s)));
    json!({
        "id": rule.id,
        "managed": rule.managed,
        "channel": rule.def.channel,
        "on": rule.def.on,
        "groups": rule.def.groups,
        "servers": rule.def.servers,
        "sensors": rule.def.sensors,
        "after": seconds(rule.def.after_s),
        "every": seconds(rule.def.every_s),
    })
}

/// Validates a channel made in the web interface or API.
fn new_channel(value: &Value) -> Result<ChannelDef, String> {
    let def = channel_from_json(value)?;
    if matches!(def.kind, ChannelKind::Command { .. }) {
        return Err(
            "command channels run programs on the monitor's machine: declare them in portwatch.toml"
                .into(),
        );
    }
    Ok(def)
}

/// Validates a rule made in the web interface or API against the store;
/// an invalid rule is a [`StoreError::Conflict`] with the reason.
async fn new_rule<S: Storage>(db: &S, value: &Value) -> Result<RuleDef, StoreError> {
    let channels: HashSet<String> = db
        .channels()
        .await?
        .into_iter()
        .map(|c| c.def.name)
        .collect();
    let config = db.load().await?.config;
    let groups = config.groups.iter().map(|g| g.path.clone()).collect();
    let servers = config.servers.iter().map(|s| s.name.clone()).collect();
    let sensors = config
        .servers
        .iter()
        .flat_map(|s| {
            s.sensors
                .iter()
                .map(move |x| format!("{}/{}", s.name, x.name))
        })
        .collect();
    rule_from_json(
        value,
        &Known {
            channels: &channels,
            groups: &groups,
            servers: &servers,
            sensors: &sensors,
        },
    )
    .map_err(StoreError::Conflict)
}

/// `GET /api/channels`.
pub async fn api_channels(State(state): State<AppState>, _: ApiUser) -> Result<Response, AppError> {
    let channels = state.db.channels().await?;
    Ok(Json(channels.iter().map(channel_json).collect::<Vec<_>>()).into_response())
}

/// `POST /api/channels` (admin): adds or replaces a webhook or mail channel.
pub async fn api_save_channel(
    State(state): State<AppState>,
    _: Admin,
    Json(value): Json<Value>,
) -> Result<Response, AppError> {
    let def = new_channel(&value).map_err(AppError::BadRequest)?;
    let saved = def.clone();
    state.db.save_channel(saved).await?;
    let shown = channel_json(&StoredChannel {
        managed: false,
        def,
    });
    Ok((axum::http::StatusCode::CREATED, Json(shown)).into_response())
}

/// `DELETE /api/channels/{name}` (admin).
pub async fn api_delete_channel(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    state.db.delete_channel(name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/rules`.
pub async fn api_rules(State(state): State<AppState>, _: ApiUser) -> Result<Response, AppError> {
    let rules = state.db.rules().await?;
    Ok(Json(rules.iter().map(rule_json).collect::<Vec<_>>()).into_response())
}

/// `POST /api/rules` (admin).
pub async fn api_add_rule(
    State(state): State<AppState>,
    _: Admin,
    Json(value): Json<Value>,
) -> Result<Response, AppError> {
    let def = new_rule(&state.db, &value).await?;
    let id = state.db.add_rule(def.clone()).await?;
    let shown = rule_json(&StoredRule {
        id,
        managed: false,
        def,
    });
    Ok((axum::http::StatusCode::CREATED, Json(shown)).into_response())
}

/// `DELETE /api/rules/{id}` (admin).
pub async fn api_delete_rule(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    state.db.delete_rule(id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

struct ChannelView {
    name: String,
    kind: String,
    target: String,
    limit: String,
    managed: bool,
}

struct RuleView {
    id: i64,
    channel: String,
    on: String,
    covers: String,
    managed: bool,
}

struct DeliveryView {
    created: String,
    channel: String,
    sensor: String,
    kind: String,
    text: String,
    attempts: u32,
    state: &'static str,
    class: &'static str,
    error: String,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    channels: Vec<ChannelView>,
    rules: Vec<RuleView>,
    deliveries: Vec<DeliveryView>,
    channel_form: HashMap<String, String>,
    channel_error: Option<String>,
    rule_form: HashMap<String, String>,
    rule_error: Option<String>,
    message: Option<String>,
}

impl NotificationsPage {
    fn value<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
        form.get(name).map_or("", String::as_str)
    }
}

#[derive(Default)]
struct Outcome {
    channel: Option<(HashMap<String, String>, String)>,
    rule: Option<(HashMap<String, String>, String)>,
    message: Option<String>,
}

async fn render(state: &AppState, user: &Account, outcome: Outcome) -> Result<Response, AppError> {
    let channels = state.db.channels().await?;
    let rules = state.db.rules().await?;
    let outbox = state.db.outbox(100).await?;
    let channels = channels
        .iter()
        .map(|c| {
            let shown = channel_json(c);
            let target = match &c.def.kind {
                ChannelKind::Webhook { url, preset, .. } => format!(
                    "{}{}",
                    redact_url(url),
                    preset.map(|p| format!(" ({p:?})")).unwrap_or_default()
                ),
                ChannelKind::Email { host, to, .. } => format!("{} via {host}", to.join(", ")),
                ChannelKind::Command { argv } => argv.first().cloned().unwrap_or_default(),
            };
            ChannelView {
                name: c.def.name.clone(),
                kind: shown["kind"].as_str().unwrap_or("").to_owned(),
                target,
                limit: if c.def.options.rate_limit == 0 {
                    "no limit".into()
                } else {
                    format!(
                        "{} per sensor per {}",
                        c.def.options.rate_limit,
                        shown["rate_window"].as_str().unwrap_or("")
                    )
                },
                managed: c.managed,
            }
        })
        .collect();
    let rules = rules
        .iter()
        .map(|r| {
            let shown = rule_json(r);
            let mut on: Vec<String> = r
                .def
                .on
                .iter()
                .map(|t| format!("{t:?}").to_lowercase())
                .collect();
            if let Some(after) = shown["after"].as_str() {
                on.push(format!("after {after}"));
            }
            if let Some(every) = shown["every"].as_str() {
                on.push(format!("every {every}"));
            }
            let covers: Vec<String> = r
                .def
                .groups
                .iter()
                .chain(&r.def.servers)
                .chain(&r.def.sensors)
                .cloned()
                .collect();
            RuleView {
                id: r.id,
                channel: r.def.channel.clone(),
                on: on.join(", "),
                covers: if covers.is_empty() {
                    "every sensor".into()
                } else {
                    covers.join(", ")
                },
                managed: r.managed,
            }
        })
        .collect();
    let deliveries = outbox
        .into_iter()
        .map(|row| {
            let (state, class) = if row.delivered_ms.is_some() {
                ("delivered", "up")
            } else if row.failed_ms.is_some() {
                ("failed", "down")
            } else if row.cancelled_ms.is_some() {
                ("cancelled", "paused")
            } else if row.held {
                ("held", "pending")
            } else if row.attempts > 0 {
                ("retrying", "down")
            } else {
                ("queued", "pending")
            };
            DeliveryView {
                created: super::pages::time(row.created_ms),
                channel: row.channel,
                sensor: row.sensor,
                kind: row.kind.as_str().to_owned(),
                text: row.text,
                attempts: row.attempts,
                state,
                class,
                // A receiver's reply may hold anything: admins only.
                error: if user.role == Role::Admin {
                    row.last_error.unwrap_or_default()
                } else {
                    row.last_error
                        .map(|_| "(shown to admins only)".to_owned())
                        .unwrap_or_default()
                },
            }
        })
        .collect();
    let failed = outcome.channel.is_some() || outcome.rule.is_some();
    let (channel_form, channel_error) = match outcome.channel {
        Some((form, error)) => (form, Some(error)),
        None => (HashMap::new(), None),
    };
    let (rule_form, rule_error) = match outcome.rule {
        Some((form, error)) => (form, Some(error)),
        None => (HashMap::new(), None),
    };
    let page = NotificationsPage {
        user: Some(user.name.clone()),
        admin: user.role == Role::Admin,
        csrf: user.csrf.clone(),
        channels,
        rules,
        deliveries,
        channel_form,
        channel_error,
        rule_form,
        rule_error,
        message: outcome.message,
    };
    let status = if failed {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    super::render(&page, status)
}

/// `GET /notifications`.
pub async fn page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
) -> Result<Response, AppError> {
    render(&state, &user, Outcome::default()).await
}

fn text<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}

fn list(form: &HashMap<String, String>, name: &str) -> Vec<String> {
    text(form, name)
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The channel form as the JSON the API takes.
fn channel_value(form: &HashMap<String, String>) -> Result<Value, String> {
    let mut value = serde_json::Map::new();
    for key in [
        "name",
        "webhook",
        "preset",
        "token",
        "smtp",
        "security",
        "from",
        "username",
        "password",
        "template",
        "title",
        "rate_window",
        "timeout",
    ] {
        let field = text(form, key);
        if !field.is_empty() {
            value.insert(key.into(), json!(field));
        }
    }
    for key in ["port", "rate_limit"] {
        let field = text(form, key);
        if !field.is_empty() {
            let number: i64 = field
                .parse()
                .map_err(|_| format!("{key}: '{field}' is not a number"))?;
            value.insert(key.into(), json!(number));
        }
    }
    let to = list(form, "to");
    if !to.is_empty() {
        value.insert("to".into(), json!(to));
    }
    Ok(Value::Object(value))
}

/// The rule form as the JSON the API takes.
fn rule_value(form: &HashMap<String, String>) -> Value {
    let mut value = serde_json::Map::new();
    value.insert("channel".into(), json!(text(form, "channel")));
    value.insert("on".into(), json!(list(form, "on")));
    for key in ["groups", "servers", "sensors"] {
        value.insert(key.into(), json!(list(form, key)));
    }
    for key in ["after", "every"] {
        if !text(form, key).is_empty() {
            value.insert(key.into(), json!(text(form, key)));
        }
    }
    Value::Object(value)
}

/// `POST /notifications/channel` (admin).
pub async fn save_channel(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let def = channel_value(&form).and_then(|v| new_channel(&v));
    let error = match def {
        Ok(def) => match state.db.save_channel(def).await.map_err(AppError::from) {
            Ok(()) => return Ok(Redirect::to("/notifications").into_response()),
            Err(AppError::BadRequest(message)) => message,
            Err(other) => return Err(other),
        },
        Err(message) => message,
    };
    let outcome = Outcome {
        channel: Some((form, error)),
        ..Outcome::default()
    };
    render(&state, &user, outcome).await
}

/// `POST /notifications/rule` (admin).
pub async fn add_rule(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let value = rule_value(&form);
    let added = match new_rule(&state.db, &value).await {
        Ok(def) => state.db.add_rule(def).await.map_err(AppError::from),
        Err(error) => Err(AppError::from(error)),
    };
    match added {
        Ok(_) => Ok(Redirect::to("/notifications").into_response()),
        Err(AppError::BadRequest(error)) => {
            let outcome = Outcome {
                rule: Some((form, error)),
                ..Outcome::default()
            };
            render(&state, &user, outcome).await
        }
        Err(other) => Err(other),
    }
}

/// `POST /notifications/channel/{name}/delete` (admin).
pub async fn delete_channel(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(name): Path<String>,
    CsrfForm(_): CsrfForm,
) -> Result<Response, AppError> {
    match state.db.delete_channel(name).await.map_err(AppError::from) {
        Ok(()) => Ok(Redirect::to("/notifications").into_response()),
        Err(AppError::BadRequest(message)) => {
            let outcome = Outcome {
                message: Some(message),
                ..Outcome::default()
            };
            render(&state, &user, outcome).await
        }
        Err(other) => Err(other),
    }
}

/// `POST /notifications/rule/{id}/delete` (admin).
pub async fn delete_rule(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm,
) -> Result<Response, AppError> {
    state.db.delete_rule(id).await?;
    Ok(Redirect::to("/notifications").into_response())
}

/// `POST /notifications/channel/{name}/test` (admin): sends a test message
/// through a configured channel and shows the outcome. Only channels that
/// an admin has configured are reached, never an address from the request.
pub async fn test_channel(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(name): Path<String>,
    CsrfForm(_): CsrfForm,
) -> Result<Response, AppError> {
    let lookup = name.clone();
    let channel = state
        .db
        .channel(lookup)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no channel named '{name}'")))?;
    let payload = crate::notify::test_payload(&channel);
    let client = crate::notify::deliver::Http::new();
    let message = match crate::notify::deliver::deliver(&channel, &payload, &client, None).await {
        Ok(()) => format!("Delivered a test notification through '{name}'."),
        Err(error) => format!("'{name}' failed: {error}"),
    };
    let outcome = Outcome {
        message: Some(message),
        ..Outcome::default()
    };
    render(&state, &user, outcome).await
}

/// Notification channels and rules: pages and API.
pub(super) fn routes() -> super::Routes {
    super::Routes::new()
        .get("/api/channels", api_channels)
        .post("/api/channels", api_save_channel)
        .delete("/api/channels/{name}", api_delete_channel)
        .get("/api/rules", api_rules)
        .post("/api/rules", api_add_rule)
        .delete("/api/rules/{id}", api_delete_rule)
        .get("/notifications", page)
        .post("/notifications/channel", save_channel)
        .post("/notifications/rule", add_rule)
        .post("/notifications/channel/{name}/delete", delete_channel)
        .post("/notifications/channel/{name}/test", test_channel)
        .post("/notifications/rule/{id}/delete", delete_rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_paths_and_credentials() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_url("https://user:pw@ntfy.example.com:8443/topic?x=1"),
            "https://ntfy.example.com:8443/…"
        );
        assert_eq!(redact_url("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
    }
}
