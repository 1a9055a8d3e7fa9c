//! Editing and deleting sensors made in the web interface or the API.
//! Sensors declared in a configuration file are read-only here.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use std::collections::HashMap;

use super::auth::{Admin, CsrfForm};
use super::config_pages::parse_overrides;
use super::{AppError, AppState};
use crate::config::Overrides;
use crate::probe::Services;
use crate::probe::target::parse_port;
use crate::store::Storage;

struct Field {
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    value: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "edit_sensor.html")]
struct EditPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    id: i64,
    path: String,
    fields: Vec<Field>,
    expect_closed: bool,
    /// Follow HTTP redirects.
    follow: bool,
    /// `heartbeat`, or empty for a TCP sensor.
    kind: String,
}

#[derive(Deserialize, Default)]
pub struct EditForm {
    /// Its kind (kept in a hidden field: a sensor keeps its kind), period
    /// and grace.
    #[serde(flatten)]
    beat: super::pages::HeartbeatFields,
    #[serde(default)]
    port: String,
    #[serde(default)]
    interval: String,
    #[serde(default)]
    timeout: String,
    #[serde(default)]
    warning: String,
    #[serde(default)]
    critical: String,
    #[serde(default)]
    retries: String,
    #[serde(default)]
    depends_on: String,
    #[serde(default)]
    locations: String,
    #[serde(default)]
    down_when: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    tls: String,
    #[serde(default)]
    expect_closed: Option<String>,
    #[serde(flatten)]
    http: super::pages::HttpFields,
    #[serde(flatten)]
    dns: super::pages::DnsFields,
    #[serde(flatten)]
    udp: super::pages::UdpFields,
}

fn show(duration: Option<std::time::Duration>) -> String {
    duration.map(crate::duration::format).unwrap_or_default()
}

fn fields(form: &EditForm) -> Vec<Field> {
    let field = |name, label, hint, value: &String| Field {
        name,
        label,
        hint,
        value: value.clone(),
        error: None,
    };
    if form.beat.is_heartbeat() {
        return vec![
            field("every", "A push every", "1d", &form.beat.every),
            field("grace", "Grace", "a tenth of every", &form.beat.grace),
            field("interval", "Looked at every", "inherited", &form.interval),
            field(
                "depends_on",
                "Depends on",
                "server/sensor",
                &form.depends_on,
            ),
        ];
    }
    // What every checked kind has: its schedule, thresholds, re-checks
    // and dependency.
    let checked = |warning: &'static str, critical: &'static str| {
        vec![
            field("interval", "Interval", "inherited", &form.interval),
            field("timeout", "Timeout", "inherited", &form.timeout),
            field("warning", warning, "none", &form.warning),
            field("critical", critical, "none", &form.critical),
            field(
                "retries",
                "Re-checks before DOWN",
                "inherited",
                &form.retries,
            ),
            field(
                "depends_on",
                "Depends on",
                "server/sensor",
                &form.depends_on,
            ),
        ]
    };
    let own = match form.beat.kind.as_str() {
        "ping" => {
            return checked(
                "Warning above (average round trip)",
                "Down above (average round trip)",
            );
        }
        "udp" => vec![
            field("port", "Port", "the protocol's", &form.port),
            field(
                "udp_protocol",
                "Protocol",
                "ntp, snmp, tftp, netbios-ns or dns",
                &form.udp.udp_protocol,
            ),
            field(
                "udp_community",
                "SNMP community",
                "never shown: empty keeps it",
                &form.udp.udp_community,
            ),
            field("udp_send", "Or send", "PING\\n", &form.udp.udp_send),
            field("udp_expect", "and expect", "PONG", &form.udp.udp_expect),
        ],
        "dns" => vec![
            field("port", "Port", "53", &form.port),
            field(
                "dns_query",
                "Name to ask about",
                "www.example.com",
                &form.dns.dns_query,
            ),
            field("dns_record", "Record type", "A", &form.dns.dns_record),
            field(
                "dns_expect",
                "Expected values",
                "192.0.2.10, 192.0.2.11 (any one)",
                &form.dns.dns_expect,
            ),
        ],
        _ => Vec::new(),
    };
    if !own.is_empty() {
        return own
            .into_iter()
            .chain(checked("Warning above", "Down above"))
            .collect();
    }
    let mut fields = vec![field("port", "Port", "443 or https", &form.port)];
    fields.extend(checked("Warning above", "Down above"));
    fields.extend([
        field(
            "locations",
            "Checked from",
            "inherited: every location, or eu-west, us-east",
            &form.locations,
        ),
        field(
            "down_when",
            "Down when down at",
            "inherited: a majority, or 2, all",
            &form.down_when,
        ),
        field("mode", "Check", "inherited: connect or auto", &form.mode),
        field(
            "protocol",
            "Protocol",
            "by port, or e.g. https",
            &form.protocol,
        ),
        field("tls", "TLS", "none, implicit or starttls", &form.tls),
        field("http_path", "HTTP path", "/", &form.http.http_path),
        field(
            "http_contains",
            "HTTP body must contain",
            "e.g. Welcome",
            &form.http.http_contains,
        ),
        field(
            "http_absent",
            "HTTP body must not contain",
            "e.g. Fatal error",
            &form.http.http_absent,
        ),
        field(
            "http_regex",
            "HTTP body must match",
            "a regular expression",
            &form.http.http_regex,
        ),
        field(
            "http_json",
            "HTTP JSON value",
            "status=ok",
            &form.http.http_json,
        ),
    ]);
    fields
}

async fn page(
    state: &AppState,
    user: &crate::store::accounts::Account,
    id: i64,
    form: EditForm,
    errors: Vec<(&str, String)>,
) -> Result<Response, AppError> {
    let path = state.db.sensor_path(id).await?;
    let mut fields = fields(&form);
    for (name, message) in errors {
        if let Some(field) = fields.iter_mut().find(|f| f.name == name) {
            field.error = Some(message);
        }
    }
    let invalid = fields.iter().any(|f| f.error.is_some());
    let page = EditPage {
        user: Some(user.name.clone()),
        admin: true,
        csrf: user.csrf.clone(),
        id,
        path,
        fields,
        expect_closed: form.expect_closed.is_some(),
        follow: form.http.http_follow.is_some(),
        kind: form.beat.kind.clone(),
    };
    let status = if invalid {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    super::render(&page, status)
}

/// `GET /sensors/{id}/edit`.
pub async fn form(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let (port, expect_closed, o, managed) = state.db.sensor_settings(id).await?;
    if managed {
        return Err(AppError::Forbidden(
            "this sensor is declared in the configuration file: change it there",
        ));
    }
    let every = |h: &crate::monitor::heartbeat::Heartbeat| crate::duration::format(h.every);
    let grace = |h: &crate::monitor::heartbeat::Heartbeat| crate::duration::format(h.grace);
    let form = EditForm {
        beat: super::pages::HeartbeatFields {
            kind: if o.heartbeat.is_some() {
                "heartbeat"
            } else if o.dns.is_some() {
                "dns"
            } else if o.udp.is_some() {
                "udp"
            } else if o.ping.is_some() {
                "ping"
            } else {
                ""
            }
            .to_owned(),
            every: o.heartbeat.as_deref().map(every).unwrap_or_default(),
            grace: o.heartbeat.as_deref().map(grace).unwrap_or_default(),
        },
        port: port.to_string(),
        interval: show(o.interval),
        timeout: show(o.timeout),
        warning: show(o.warning),
        critical: show(o.critical),
        retries: o.retries.map(|r| r.to_string()).unwrap_or_default(),
        depends_on: o.depends_on.unwrap_or_default(),
        locations: o.locations.map(|l| l.join(", ")).unwrap_or_default(),
        down_when: o.down_when.map(|k| k.to_string()).unwrap_or_default(),
        mode: o
            .probe
            .as_ref()
            .and_then(|p| p.mode.clone())
            .unwrap_or_default(),
        protocol: o
            .probe
            .as_ref()
            .and_then(|p| p.protocol.clone())
            .unwrap_or_default(),
        tls: o
            .probe
            .as_ref()
            .and_then(|p| p.tls.clone())
            .unwrap_or_default(),
        expect_closed: expect_closed.then(|| "1".to_owned()),
        http: super::pages::HttpFields::of(
            &o.probe
                .as_ref()
                .map(|p| p.http_settings())
                .unwrap_or_default(),
        ),
        dns: o
            .dns
            .as_deref()
            .map(super::pages::DnsFields::of)
            .unwrap_or_default(),
        udp: o
            .udp
            .as_deref()
            .map(super::pages::UdpFields::of)
            .unwrap_or_default(),
    };
    page(&state, &user, id, form, Vec::new()).await
}

/// Parses the form over the sensor's HTTP settings `kept` (those the form
/// does not show stay as they are); errors come back by field name.
fn parse(
    form: &EditForm,
    kept: crate::config::probe::HttpSettings,
    kept_dns: Option<crate::config::dns::DnsSpec>,
    kept_udp: Option<crate::config::udp::UdpSpec>,
    kept_ping: Option<crate::config::ping::PingSpec>,
) -> Result<(u16, Overrides), Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let heartbeat = form
        .beat
        .heartbeat()
        .map_err(|error| errors.push(error))
        .unwrap_or(None);
    let port = if form.beat.is_heartbeat() || form.beat.kind == "ping" {
        // No port: jobs call its push URL, or ICMP echo has none.
        Some(0)
    } else {
        parse_port(&form.port, Services::global())
            .map_err(|e| errors.push(("port", e.to_string())))
            .ok()
    };
    let fields: HashMap<String, String> = [
        ("interval", &form.interval),
        ("timeout", &form.timeout),
        ("warning", &form.warning),
        ("critical", &form.critical),
        ("retries", &form.retries),
        ("depends_on", &form.depends_on),
        ("locations", &form.locations),
        ("down_when", &form.down_when),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.clone()))
    .collect();
    let mut overrides = parse_overrides(&fields, &mut errors);
    overrides.heartbeat = heartbeat.map(Box::new);
    let mut probe = crate::config::probe::ProbeOverrides::default();
    probe.set_http(kept);
    overrides.probe = Some(Box::new(probe)).filter(|p| !p.is_empty());
    let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    if form.beat.kind == "ping" {
        // A PING sensor sends echo requests; it speaks no other protocol.
        overrides.probe = None;
        overrides.ping = Some(Box::new(kept_ping.unwrap_or_default()));
    } else if form.beat.kind == "udp" {
        // A UDP sensor sends its request; it speaks no other protocol.
        overrides.probe = None;
        match form.udp.spec(kept_udp) {
            Ok((spec, _)) => overrides.udp = Some(Box::new(spec)),
            Err(error) => errors.push(error),
        }
    } else if form.beat.kind == "dns" {
        // A DNS sensor asks its question; it speaks no other protocol.
        overrides.probe = None;
        match form.dns.spec(kept_dns) {
            Ok(spec) => overrides.dns = Some(Box::new(spec)),
            Err(error) => errors.push(error),
        }
    } else if let Err(error) =
        overrides.set_check(text(&form.mode), text(&form.protocol), text(&form.tls))
    {
        errors.push(error);
    } else if !form.beat.is_heartbeat()
        && let Err(error) = form.http.apply(&mut overrides)
    {
        errors.push(error);
    }
    match (port, errors.is_empty()) {
        (Some(port), true) => Ok((port, overrides)),
        _ => Err(errors),
    }
}

/// `POST /sensors/{id}/edit`.
pub async fn update(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<EditForm>,
) -> Result<Response, AppError> {
    let (_, _, before, _) = state.db.sensor_settings(id).await?;
    let kept = before.probe.map(|p| p.http_settings()).unwrap_or_default();
    let (port, overrides) = match parse(
        &form,
        kept,
        before.dns.map(|d| *d),
        before.udp.map(|u| *u),
        before.ping.map(|p| *p),
    ) {
        Ok(parsed) => parsed,
        Err(errors) => return page(&state, &user, id, form, errors).await,
    };
    let expect_closed = form.expect_closed.is_some();
    match state
        .db
        .update_sensor(id, port, expect_closed, overrides)
        .await
        .map_err(AppError::from)
    {
        Ok(()) => Ok(Redirect::to(&format!("/sensors/{id}")).into_response()),
        Err(AppError::BadRequest(message)) => {
            page(&state, &user, id, form, vec![("depends_on", message)]).await
        }
        Err(other) => Err(other),
    }
}

/// `POST /sensors/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm,
) -> Result<Response, AppError> {
    state.db.retire_sensor(id).await?;
    Ok(Redirect::to("/").into_response())
}

/// Editing and deleting a sensor.
pub(super) fn routes() -> super::Routes {
    super::Routes::new()
        .get("/sensors/{id}/edit", form)
        .post("/sensors/{id}/edit", update)
        .post("/sensors/{id}/delete", delete)
}
