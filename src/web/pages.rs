//! HTML pages. Every value reaches the page through an askama template,
//! which escapes it; the charts are generated SVG holding numbers only.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{Admin, COOKIE, CsrfForm, LOGIN_COOKIE, PageUser, cookie_value};
use super::chart;
use super::{AppError, AppState};
use crate::monitor::state::State as SensorState;
use crate::probe::Services;
use crate::probe::target::{parse_bare_host, parse_port};
use crate::store::accounts::{Account, Role};
use crate::store::{StatusOrder, StatusQuery, StatusRow, Storage, Tally};

fn render(template: impl Template) -> Result<Response, AppError> {
    super::render(&template, axum::http::StatusCode::OK)
}

pub(super) fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// The rows the sensor page shows for its last protocol check: protocol,
/// phases, certificate and what the check found.
pub(super) fn protocol_rows(
    check: &crate::probe::proto::CheckDetails,
    rtt_us: Option<i64>,
) -> Vec<(String, String)> {
    let mut rows = vec![("Protocol".to_owned(), check.protocol.clone())];
    let mut phases = Vec::new();
    if let Some(ms) = check.dns_ms {
        phases.push(format!("DNS {ms:.1} ms"));
    }
    if let Some(us) = rtt_us {
        phases.push(format!("connect {:.1} ms", us as f64 / 1e3));
    }
    for (ms, label) in [
        (check.tls_ms, "TLS"),
        (check.first_byte_ms, "first byte"),
        (Some(check.total_ms), "total"),
    ] {
        if let Some(ms) = ms {
            phases.push(format!("{label} {ms:.1} ms"));
        }
    }
    rows.push(("Phases".to_owned(), phases.join(" · ")));
    if let Some(tls) = &check.tls {
        rows.push(("TLS".to_owned(), format!("{} {}", tls.version, tls.cipher)));
        if let Some(cert) = &tls.cert {
            rows.push((
                "Certificate".to_owned(),
                format!(
                    "{} issued by {}, valid until {}{}",
                    cert.subject,
                    cert.issuer,
                    cert.not_after,
                    if cert.sans.is_empty() {
                        String::new()
                    } else {
                        format!(" for {}", cert.sans.join(", "))
                    }
                ),
            ));
        }
        if let Some(error) = &tls.verify_error {
            rows.push(("Not verified".to_owned(), error.clone()));
        }
    }
    for (key, detail) in &check.details {
        rows.push((key.replace('_', " "), detail.clone()));
    }
    for row in &mut rows {
        row.1 = crate::text::visible(&row.1);
    }
    rows
}

/// The CSS class of a state.
pub(super) fn class(state: SensorState) -> &'static str {
    match state {
        SensorState::Up => "up",
        SensorState::Warning => "warning",
        SensorState::Down => "down",
        SensorState::Unknown => "unknown",
        SensorState::Pending => "pending",
        SensorState::Paused(_) => "paused",
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    error: Option<String>,
}

/// The sign-in form, with a token tied to this browser by a cookie, so
/// that another site cannot sign a visitor in to an account of its own.
pub async fn login_form(State(state): State<AppState>) -> Result<Response, AppError> {
    let token = crate::store::accounts::random_token();
    let cookie = format!(
        "{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        state.secure_flag()
    );
    let mut response = render(LoginPage {
        user: None,
        admin: false,
        csrf: token,
        error: None,
    })?;
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie.parse().expect("a cookie is a header value"),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

/// Signs in. The attempt is counted before the password is verified, and
/// at most a few verifications run at once (see [`super::signin`]).
pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let expected = cookie_value(&parts, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !crate::store::accounts::same_secret(&expected, &form.csrf) {
        return Err(AppError::Forbidden(
            "the sign-in form is stale: reload the page and sign in again",
        ));
    }
    let ip = state.client_ip(&parts);
    let permit = state
        .sign_ins
        .admit(ip, &form.name)
        .await
        .map_err(|refusal| match refusal {
            super::signin::Refusal::TooMany => AppError::TooMany,
            super::signin::Refusal::Busy => AppError::Busy,
        })?;
    let (name, password) = (form.name.clone(), form.password);
    let token = state.db.login(name, password).await.map_err(AppError::from);
    drop(permit);
    let token = token?;
    state.sign_ins.settle(ip, &form.name, token.is_some());
    match token {
        Some(token) => {
            let cookie = format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{}",
                state.secure_flag()
            );
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
        }
        None => {
            let page = LoginPage {
                user: None,
                admin: false,
                csrf: form.csrf,
                error: Some("Wrong user name or password.".into()),
            };
            let mut response = render(page)?;
            *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            Ok(response)
        }
    }
}

pub async fn logout(
    State(state): State<AppState>,
    _: PageUser,
    parts: Parts,
    CsrfForm(_): CsrfForm,
) -> Result<Response, AppError> {
    if let Some(token) = cookie_value(&parts, COOKIE) {
        state.db.logout(token).await?;
    }
    let expire = format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        state.secure_flag()
    );
    Ok(([(header::SET_COOKIE, expire)], Redirect::to("/login")).into_response())
}

/// One check in a row's bar of recent checks.
struct TickView {
    class: &'static str,
    /// When, the status and the reason (the tick's tooltip).
    title: String,
}

struct SensorView {
    /// Its last checks, oldest first.
    ticks: Vec<TickView>,
    /// Uptime by requests over 24 hours and 30 days ("-" without checks).
    uptime_24h: String,
    uptime_30d: String,
    /// Days until its certificate expires, when a check read one; and the
    /// exact date, and whether it is near (14 days or less).
    cert: String,
    cert_exact: String,
    cert_near: bool,
    id: i64,
    path: String,
    server: String,
    name: String,
    target: String,
    state: String,
    class: &'static str,
    since: String,
    since_exact: String,
    time: String,
    reason: String,
    message: String,
}

struct GroupView {
    name: String,
    /// Shown open: it has problems, or the dashboard is small or filtered.
    open: bool,
    /// Its sensors by state, problems first (only the states it has).
    counts: Vec<CountView>,
    /// How many sensors it has (under the filter).
    total: usize,
    /// The rows on this page: all, the first page, one page of the group
    /// asked for, or none (a large dashboard shows a quiet group's summary).
    sensors: Vec<SensorView>,
    /// Its own pages.
    link: String,
}

/// One group's sensors, page by page (`?group=NAME&page=N`).
struct GroupPage {
    name: String,
    first: usize,
    last: usize,
    total: usize,
    previous: Option<String>,
    next: Option<String>,
    all: String,
}

pub(super) struct CountView {
    label: &'static str,
    pub(super) class: &'static str,
    pub(super) n: usize,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    user: Option<String>,
    admin: bool,
    csrf: String,
    /// Sensors down, unknown or warning (for the page's title).
    problem_count: usize,
    counts: Vec<CountView>,
    /// The filtered sensors that are down, unknown or warning, worst first.
    problems: Vec<SensorView>,
    /// Problems beyond those shown.
    problems_more: usize,
    groups: Vec<GroupView>,
    /// How many sensors the filter shows.
    shown: usize,
    /// The filter read this many matching sensors and stopped: there may
    /// be more.
    stopped_at: Option<usize>,
    /// Showing one group's sensors, page by page.
    group_page: Option<GroupPage>,
    query: String,
    tag: String,
    problems_only: bool,
    /// The tables' column headers.
    columns: Vec<Column>,
    /// The tab's icon: a dot in the worst state's colour.
    favicon: &'static str,
    /// When the page was drawn: live changes follow from there.
    now_ms: i64,
}

/// A column header: its label, the link that sorts by it (sortable
/// columns), how it sorts now ("ascending", "descending" or "none"), and
/// whether it holds figures (aligned right).
struct Column {
    label: &'static str,
    /// What a short label stands for (a tooltip).
    long: Option<&'static str>,
    link: Option<String>,
    order: &'static str,
    numeric: bool,
}

/// The dashboard's columns, in order: the key a sortable one sorts by
/// (`?sort=…`, `&desc=1`; without one, triage order: worst first, then by
/// name), its header, and whether it holds figures. The bar of recent
/// checks, the uptimes and the certificate are read for the rows shown
/// only, so they do not sort.
const COLUMNS: [(Option<&str>, &str, bool); 10] = [
    (Some("state"), "State", false),
    (Some("sensor"), "Sensor", false),
    (Some("target"), "Target", false),
    (Some("reason"), "Last result", false),
    (Some("response"), "Response", true),
    (None, "Last checks", false),
    (None, "24 h", true),
    (None, "30 d", true),
    (Some("since"), "Since", true),
    (None, "Certificate", true),
];

/// A dot of colour `$hex` as an SVG data URL, for the tab's icon.
macro_rules! dot_icon {
    ($hex:literal) => {
        concat!(
            "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='7' fill='%23",
            $hex,
            "'/%3E%3C/svg%3E"
        )
    };
}

/// The tab's icon for the worst problem: red for down, amber for unknown
/// or warning, green for none.
fn favicon(problems: impl Iterator<Item = SensorState>) -> &'static str {
    match problems.map(severity).min() {
        Some(0) => dot_icon!("c62828"),
        Some(1 | 2) => dot_icon!("9a6700"),
        _ => dot_icon!("1a7f37"),
    }
}

#[derive(Deserialize, Default)]
pub struct DashboardQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    problems: Option<String>,
    /// One group's sensors, page by page.
    #[serde(default)]
    group: Option<String>,
    /// The page of that group (from 1).
    #[serde(default)]
    page: Option<usize>,
    /// The column the groups' tables sort by.
    #[serde(default)]
    sort: Option<String>,
    /// Sort it the other way.
    #[serde(default)]
    desc: Option<String>,
}

impl DashboardQuery {
    /// This query's link with another group and page (the filter kept).
    fn link(&self, group: Option<&str>, page: Option<usize>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (key, value) in [("q", &self.q), ("tag", &self.tag)] {
            if !value.is_empty() {
                pairs.push((key, value.clone()));
            }
        }
        if self.problems.is_some() {
            pairs.push(("problems", "1".into()));
        }
        if let Some(sort) = &self.sort {
            pairs.push(("sort", sort.clone()));
            if self.desc.is_some() {
                pairs.push(("desc", "1".into()));
            }
        }
        if let Some(group) = group {
            pairs.push(("group", group.to_owned()));
        }
        if let Some(page) = page.filter(|p| *p > 1) {
            pairs.push(("page", page.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() {
            "/".into()
        } else {
            format!("/?{query}")
        }
    }
}

pub(super) fn page_frame(user: &Account) -> (Option<String>, bool, String) {
    (
        Some(user.name.clone()),
        user.role == Role::Admin,
        user.csrf.clone(),
    )
}

/// How bad a state is for triage: down, unknown, warning, then the rest.
fn severity(state: SensorState) -> u8 {
    match state {
        SensorState::Down => 0,
        SensorState::Unknown => 1,
        SensorState::Warning => 2,
        SensorState::Up => 3,
        SensorState::Pending => 4,
        SensorState::Paused(_) => 5,
    }
}

/// Whether a state needs someone's attention.
pub(super) fn is_problem(state: SensorState) -> bool {
    severity(state) < 3
}

/// The dashboard shows every group open up to this many sensors; above it
/// only the groups with problems (and every group while filtering).
const OPEN_UP_TO: usize = 300;

/// The most rows of one group on a page.
const PAGE_SIZE: usize = 200;

/// The most rows the problems section shows (the worst first); the
/// groups' pages show the rest.
const PROBLEMS_SHOWN: usize = 500;

/// The most rows the groups show on the dashboard's first view, so that
/// a filter matching thousands of sensors in many groups stays a page a
/// browser draws at once; each group's own pages show all of its rows.
const GROUP_ROWS: usize = 500;

/// A filter reads at most this many matching sensors, so that a search
/// that matches most of a large installation stays as quick as one that
/// matches this many; the page says that it stopped there.
const FILTER_READS: usize = 5_000;

/// The states in triage order, as [`severity`] ranks them.
const TRIAGE: [&str; 6] = ["down", "unknown", "warning", "up", "pending", "paused"];

/// Sensors by state (each state with how many), in triage order, every
/// state (zeros included).
pub(super) fn tally(states: impl Iterator<Item = (SensorState, usize)>) -> Vec<CountView> {
    let mut counts = [0usize; 6];
    for (state, n) in states {
        counts[usize::from(severity(state))] += n;
    }
    TRIAGE
        .into_iter()
        .zip(counts)
        .map(|(label, n)| CountView {
            label,
            class: label,
            n,
        })
        .collect()
}

/// Every sensor of `everything` by state, as [`tally`] counts them.
pub(super) fn tally_of(everything: &Tally) -> Vec<CountView> {
    tally(everything.iter().map(|(_, state, n)| (*state, *n as usize)))
}

/// How many of a [`tally`]'s sensors are problems (down, unknown or
/// warning: its first three states).
pub(super) fn problems_in(counts: &[CountView]) -> usize {
    counts.iter().take(3).map(|c| c.n).sum()
}

/// The order of the dashboard's groups from their [`tally`]: those with
/// the worst problems first (most down, then unknown, then warning).
fn group_order(counts: &[CountView]) -> [std::cmp::Reverse<usize>; 3] {
    [0, 1, 2].map(|severity| std::cmp::Reverse(counts[severity].n))
}

/// A tick's colour class for a check's status.
fn status_class(status: crate::probe::Status) -> &'static str {
    match status {
        crate::probe::Status::Up => "up",
        crate::probe::Status::Warning => "warning",
        crate::probe::Status::Down => "down",
        crate::probe::Status::Unknown => "unknown",
    }
}

/// A tick's time, short (a row has twenty): `07:53:10` today (UTC),
/// `12-01 07:53` before.
fn tick_time(at_ms: i64, now_ms: i64) -> String {
    let Ok(at) = jiff::Timestamp::from_millisecond(at_ms) else {
        return String::new();
    };
    if at_ms.div_euclid(86_400_000) == now_ms.div_euclid(86_400_000) {
        at.strftime("%H:%M:%S").to_string()
    } else {
        at.strftime("%m-%d %H:%M").to_string()
    }
}

/// An uptime in percent as the dashboard shows it: three decimals below
/// 100 (so that 99.999 never reads as 100), "-" without checks.
fn uptime_text(percent: Option<f64>) -> String {
    match percent {
        None => "-".into(),
        Some(p) if p >= 100.0 => "100%".into(),
        Some(p) => format!("{:.3}%", (p * 1000.0).floor() / 1000.0),
    }
}

/// Days until a certificate that expires at `not_after_s` (seconds) runs
/// out, as of `now_ms`: "41 d", "expired" once past.
fn cert_days(not_after_s: i64, now_ms: i64) -> (String, bool) {
    let left_ms = not_after_s.saturating_mul(1000) - now_ms;
    if left_ms <= 0 {
        return ("expired".into(), true);
    }
    let days = left_ms / 86_400_000;
    (format!("{days} d"), days <= 14)
}

fn sensor_view(row: &StatusRow, glance: Option<&crate::store::Glance>, now_ms: i64) -> SensorView {
    let (server, name) = row.path.split_once('/').unwrap_or((&row.path, ""));
    let glance = glance.cloned().unwrap_or_default();
    let not_after = row.last_details.as_ref().and_then(|d| d.cert_not_after_s);
    let (cert, cert_near) = not_after.map_or((String::new(), false), |s| cert_days(s, now_ms));
    SensorView {
        ticks: glance
            .ticks
            .iter()
            .map(|(at, status, reason)| TickView {
                class: status_class(*status),
                title: format!(
                    "{} UTC {} {}",
                    tick_time(*at, now_ms),
                    status.as_str(),
                    reason.as_str()
                ),
            })
            .collect(),
        uptime_24h: uptime_text(glance.uptime_24h),
        uptime_30d: uptime_text(glance.uptime_30d),
        cert,
        cert_exact: not_after
            .map(|s| time(s.saturating_mul(1000)))
            .unwrap_or_default(),
        cert_near,
        id: row.id,
        path: row.path.clone(),
        server: server.to_owned(),
        name: name.to_owned(),
        target: if row.ping {
            format!("{} (ping)", row.host)
        } else if row.port == 0 {
            // A heartbeat sensor: jobs push to it; nothing is checked.
            "heartbeat (push)".to_owned()
        } else {
            format!("{}:{}", row.host, row.port)
        },
        state: row.state.to_string(),
        class: class(row.state),
        since: row
            .since_ms
            .map(|ms| crate::duration::age(ms, now_ms))
            .unwrap_or_default(),
        since_exact: row.since_ms.map(time).unwrap_or_default(),
        time: row
            .last_rtt_us
            .map(|us| format!("{:.3} ms", us as f64 / 1000.0))
            .unwrap_or_default(),
        reason: row.last_reason.clone().unwrap_or_default(),
        // What went wrong, on hover; an UP sensor's message says nothing
        // its row does not (and 10,000 of them would double the page).
        message: if is_problem(row.state) {
            crate::text::visible(row.last_message.as_deref().unwrap_or_default())
        } else {
            String::new()
        },
    }
}

/// The label of a group in the dashboard's links: its path, or "(no
/// group)".
const NO_GROUP: &str = "(no group)";

fn group_label(group: &Option<String>) -> &str {
    group.as_deref().unwrap_or(NO_GROUP)
}

/// The order of a table column's sort key (none: worst state first).
fn list_order(sort: Option<&str>) -> StatusOrder {
    match sort {
        Some("sensor") => StatusOrder::Path,
        Some("target") => StatusOrder::Target,
        Some("reason") => StatusOrder::Reason,
        Some("response") => StatusOrder::Response,
        Some("since") => StatusOrder::Since,
        _ => StatusOrder::Severity,
    }
}

/// Which rows the dashboard's groups show, as one list: page `page` of
/// the group asked for; else the first page of every group when the
/// dashboard is small or filtered; else (large) the problems of each
/// group, since a quiet group is its summary with a link to its pages.
/// Either way at most [`GROUP_ROWS`] in all, groups in name order: those
/// past it are summaries too.
fn group_rows(
    base: &StatusQuery,
    asked: Option<(Option<String>, usize)>,
    open_all: bool,
) -> StatusQuery {
    match asked {
        Some((group, page)) => StatusQuery {
            group: Some(group),
            offset: ((page.max(1) - 1) * PAGE_SIZE) as u64,
            limit: Some(PAGE_SIZE as u64),
            ..base.clone()
        },
        None => StatusQuery {
            per_group: Some(PAGE_SIZE as u64),
            problems: base.problems || !open_all,
            limit: Some(GROUP_ROWS as u64),
            ..base.clone()
        },
    }
}

/// The dashboard, triage first: the problems in a section of their own,
/// then the groups, those with problems first, each one table with
/// headers. Counts come from the tally (kept for a while on large
/// installations) and rows from lists of the rows shown: the statements
/// are the same few for ten sensors as for a million.
pub async fn dashboard(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Query(filter): Query<DashboardQuery>,
) -> Result<Response, AppError> {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let problems_only = filter.problems.is_some();
    let base = StatusQuery {
        text: filter.q.clone(),
        tag: filter.tag.clone(),
        problems: problems_only,
        order: list_order(filter.sort.as_deref()),
        descending: filter.desc.is_some(),
        ..StatusQuery::default()
    };
    let filtering = base.filters();
    let everything = state.tallies.get(&state.db).await?;
    let counts = tally_of(&everything);
    let problem_count = problems_in(&counts);
    let asked_group = filter.group.as_ref().map(|label| {
        let group = (label != NO_GROUP).then(|| label.clone());
        (group, filter.page.unwrap_or(1))
    });
    // While filtering, the first sensors the filter finds, read once: the
    // count and the rows below are of those. The problems, worst first,
    // are the first the filter finds among the problems (a group's own
    // pages have none). The two read at once.
    let bounded = StatusQuery {
        at_most: filtering.then_some(FILTER_READS as u64),
        ..base.clone()
    };
    let found = async {
        if filtering {
            state.db.first_found(bounded.clone()).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let problems = async {
        match asked_group {
            Some(_) => Ok(Vec::new()),
            None => {
                let worst_first = StatusQuery {
                    problems: true,
                    order: if filter.sort.is_some() {
                        base.order
                    } else {
                        StatusOrder::Triage
                    },
                    limit: Some(PROBLEMS_SHOWN as u64),
                    ..bounded.clone()
                };
                state.db.list(worst_first).await
            }
        }
    };
    let (found, problems) = tokio::try_join!(found, problems)?;
    let base = StatusQuery {
        among: found.map(Arc::from),
        ..base
    };
    // The sensors the filter shows, by group and state, and while
    // filtering the rows, which do not wait for the count then: the two
    // read at once.
    let counted = async {
        if filtering {
            state.db.tally(base.clone()).await
        } else {
            Ok(everything.as_ref().clone())
        }
    };
    let filtered_rows = filtering.then(|| group_rows(&base, asked_group.clone(), true));
    let rows_now = async {
        match &filtered_rows {
            Some(query) => state.db.list(query.clone()).await.map(Some),
            None => Ok(None),
        }
    };
    let (mut shown_tally, listed) = tokio::try_join!(counted, rows_now)?;
    let read: i64 = shown_tally.iter().map(|(_, _, n)| n).sum();
    let stopped_at = (filtering && read >= FILTER_READS as i64).then_some(read as usize);
    if let Some((group, _)) = &asked_group {
        shown_tally.retain(|(g, _, _)| g == group);
    }
    let mut by_group: BTreeMap<Option<String>, Vec<(SensorState, usize)>> = BTreeMap::new();
    for (group, state, n) in shown_tally {
        by_group.entry(group).or_default().push((state, n as usize));
    }
    let shown: usize = by_group.values().flatten().map(|(_, n)| n).sum();
    let small = shown <= OPEN_UP_TO;
    let rows_query = filtered_rows.unwrap_or_else(|| group_rows(&base, asked_group.clone(), small));
    let listed = match listed {
        Some(listed) => listed,
        None => state.db.list(rows_query.clone()).await?,
    };
    let mut rows: BTreeMap<Option<String>, Vec<StatusRow>> = BTreeMap::new();
    for listed in listed {
        rows.entry(listed.row.group.clone())
            .or_default()
            .push(listed.row);
    }
    let mut groups: Vec<(Option<String>, Vec<CountView>)> = by_group
        .into_iter()
        .map(|(group, states)| (group, tally(states.into_iter())))
        .collect();
    groups.sort_by(|(a, a_counts), (b, b_counts)| {
        (group_order(a_counts), group_label(a)).cmp(&(group_order(b_counts), group_label(b)))
    });
    let shown_problems: usize = groups.iter().map(|(_, counts)| problems_in(counts)).sum();
    let group_page = asked_group.as_ref().map(|(group, page)| {
        let name = group_label(group);
        let total: usize = groups.iter().flat_map(|(_, c)| c).map(|c| c.n).sum();
        let first = (rows_query.offset as usize).min(total);
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        GroupPage {
            name: name.to_owned(),
            first: first + 1,
            last: first + rows.values().map(Vec::len).sum::<usize>(),
            total,
            previous: (*page > 1).then(|| filter.link(Some(name), Some(page - 1))),
            next: (*page < pages).then(|| filter.link(Some(name), Some(page + 1))),
            all: filter.link(None, None),
        }
    });
    // The bars of recent checks and the uptimes of the rows shown only,
    // from maintained aggregates, in a few statements.
    let ids: Vec<i64> = problems
        .iter()
        .map(|l| l.row.id)
        .chain(rows.values().flatten().map(|r| r.id))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let glances = state.db.glances(ids, now_ms).await?;
    let view = |r: &StatusRow| sensor_view(r, glances.get(&r.id), now_ms);
    let groups = groups
        .into_iter()
        .map(|(group, mut counts)| {
            let name = group_label(&group).to_owned();
            let total = counts.iter().map(|c| c.n).sum();
            let has_problems = problems_in(&counts) > 0;
            counts.retain(|c| c.n > 0);
            GroupView {
                link: filter.link(Some(&name), None),
                open: has_problems || small || filtering || asked_group.is_some(),
                counts,
                total,
                sensors: rows
                    .remove(&group)
                    .unwrap_or_default()
                    .iter()
                    .map(view)
                    .collect(),
                name,
            }
        })
        .collect();
    let columns = COLUMNS
        .iter()
        .map(|&(key, label, numeric)| {
            let long = match label {
                "24 h" => Some("Uptime over the last 24 hours"),
                "30 d" => Some("Uptime over the last 30 days"),
                _ => None,
            };
            let Some(key) = key else {
                return Column {
                    long,
                    label,
                    link: None,
                    order: "none",
                    numeric,
                };
            };
            let current = filter.sort.as_deref() == Some(key);
            let descending = current && filter.desc.is_some();
            let link = DashboardQuery {
                sort: Some(key.to_owned()),
                desc: (current && !descending).then(|| "1".to_owned()),
                group: None,
                page: None,
                q: filter.q.clone(),
                tag: filter.tag.clone(),
                problems: filter.problems.clone(),
            }
            .link(filter.group.as_deref(), None);
            let order = match (current, descending) {
                (false, _) => "none",
                (true, false) => "ascending",
                (true, true) => "descending",
            };
            Column {
                long,
                label,
                link: Some(link),
                order,
                numeric,
            }
        })
        .collect();
    let favicon = favicon(problems.iter().map(|l| l.row.state));
    let (user, admin, csrf) = page_frame(&user);
    render(Dashboard {
        now_ms,
        columns,
        favicon,
        user,
        admin,
        csrf,
        problem_count,
        counts,
        problems: problems.iter().map(|l| view(&l.row)).collect(),
        problems_more: shown_problems.saturating_sub(problems.len()),
        groups,
        shown,
        stopped_at,
        group_page,
        query: filter.q,
        tag: filter.tag,
        problems_only,
    })
}

/// What a DNS sensor asks, in words: "DNS: A www.example.com, expecting
/// 192.0.2.10 (over udp)".
fn dns_question(dns: &crate::config::dns::DnsSpec) -> String {
    let mut text = format!(
        "DNS: {} {}",
        dns.record.as_deref().unwrap_or("A").to_ascii_uppercase(),
        dns.query
    );
    if !dns.expect.is_empty() {
        text += &format!(
            ", expecting {}{}",
            if dns.expect_all && dns.expect.len() > 1 {
                "all of "
            } else if dns.expect.len() > 1 {
                "one of "
            } else {
                ""
            },
            dns.expect.join(", ")
        );
    }
    if let Some(rcode) = &dns.rcode {
        text += &format!(", RCODE {}", rcode.to_ascii_uppercase());
    }
    text + &format!(" (over {})", dns.transport.as_deref().unwrap_or("udp"))
}

/// What a UDP sensor sends, in words (never the SNMP community).
fn udp_request(udp: &crate::config::udp::UdpSpec) -> String {
    match (&udp.protocol, &udp.send) {
        (Some(protocol), _) => format!("UDP: {}", protocol.to_ascii_lowercase()),
        (None, Some(send)) => format!(
            "UDP: sends '{}'{}",
            crate::text::visible(send),
            udp.expect
                .as_deref()
                .map(|e| format!(", expecting '{}'", crate::text::visible(e)))
                .unwrap_or_default()
        ),
        (None, None) => "UDP".to_owned(),
    }
}

/// A heartbeat sensor on its page.
struct HeartbeatView {
    /// "every 1d 0h, grace 2h 0m".
    expects: String,
    /// Its push URL's age and last push, in words.
    heard: String,
}

/// What a heartbeat sensor's page says of it (`None`: not one).
async fn heartbeat_view(
    db: &crate::store::Backend,
    id: i64,
    overrides: &crate::config::Overrides,
    now_ms: i64,
) -> Result<Option<HeartbeatView>, AppError> {
    let Some(heartbeat) = overrides.heartbeat.as_deref().copied() else {
        return Ok(None);
    };
    let age = |ms: i64| crate::duration::age(0, ms);
    let heard = match db.pushes(id).await? {
        None => "No push URL yet: make one below.".to_owned(),
        Some(pushes) => match pushes.last.filter(|p| p.at_ms >= pushes.since_ms) {
            None => format!(
                "Push URL made {} ago; no push since.",
                crate::duration::age(pushes.since_ms, now_ms)
            ),
            Some(push) => format!(
                "Last push {} ago ({}){}{}.",
                crate::duration::age(push.at_ms, now_ms),
                if push.down {
                    "reported a failure"
                } else {
                    "success"
                },
                push.duration_ms
                    .map(|ms| format!(", took {}", age(ms)))
                    .unwrap_or_default(),
                if push.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", crate::text::visible(&push.message))
                }
            ),
        },
    };
    Ok(Some(HeartbeatView {
        expects: format!(
            "a push every {}, with {} grace",
            crate::duration::format(heartbeat.every),
            crate::duration::format(heartbeat.grace)
        ),
        heard,
    }))
}

struct OutageView {
    start: String,
    end: String,
    duration: String,
    reason: String,
    message: String,
}

struct EventView {
    at: String,
    from: String,
    to: String,
    reason: String,
    message: String,
}

#[derive(Template)]
#[template(path = "sensor.html")]
struct SensorPage {
    /// When the page was drawn: it reloads when the sensor's state changes
    /// from then on.
    now_ms: i64,
    /// A DNS sensor: its question and expectations.
    asks: Option<String>,
    /// A heartbeat sensor: what it expects, and what it last heard.
    push: Option<HeartbeatView>,
    user: Option<String>,
    admin: bool,
    csrf: String,
    id: i64,
    path: String,
    host: String,
    port: u16,
    state: String,
    class: &'static str,
    since: String,
    managed: bool,
    paused: bool,
    last_time: String,
    reason: String,
    message: String,
    protocol: Vec<(String, String)>,
    ranges: Vec<(&'static str, bool)>,
    chart: String,
    bars: String,
    outages: Vec<OutageView>,
    events: Vec<EventView>,
    locations: Vec<LocationView>,
    uptimes: Vec<UptimeView>,
    /// The last checks as a bar of ticks (SVG), and how many.
    heartbeat: String,
    checks: usize,
}

/// Uptime over one period, for the sensor page's table.
struct UptimeView {
    period: &'static str,
    by_time: String,
    by_requests: String,
    outages: usize,
}

/// One location's state of a sensor checked from several.
struct LocationView {
    location: String,
    state: String,
    class: &'static str,
    since: String,
    last: String,
    response: String,
    reason: String,
    message: String,
}

#[derive(Deserialize, Default)]
pub struct RangeQuery {
    #[serde(default)]
    range: Option<String>,
}

use crate::report::DAY_MS;

/// One sensor: state, last result, chart, uptime bars, outages, events.
pub async fn sensor(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
    Query(range): Query<RangeQuery>,
) -> Result<Response, AppError> {
    let (current_range, span_ms) = match range.range.as_deref() {
        Some("1h") => ("1h", DAY_MS / 24),
        Some("7d") => ("7d", 7 * DAY_MS),
        Some("30d") => ("30d", 30 * DAY_MS),
        Some("90d") => ("90d", 90 * DAY_MS),
        _ => ("24h", DAY_MS),
    };
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let from_ms = now_ms - span_ms;
    let db = &state.db;
    let path = db.sensor_path(id).await?;
    let row = db.status_of(id).await?;
    let (_, _, overrides, _) = db.sensor_settings(id).await?;
    let push = heartbeat_view(db, id, &overrides, now_ms).await?;
    let asks = overrides
        .dns
        .as_deref()
        .map(dns_question)
        .or_else(|| overrides.udp.as_deref().map(udp_request))
        .or_else(|| {
            let ping = overrides.ping.as_ref()?.options().ok()?;
            Some(format!(
                "PING: {} echo requests, WARNING at {}% loss",
                ping.count, ping.loss_warning
            ))
        });
    let report = db.sensor_report(id, path.clone(), from_ms, now_ms).await?;
    let percent = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}%"));
    let mut uptimes = Vec::new();
    for (label, days) in [
        ("24 hours", 1),
        ("7 days", 7),
        ("30 days", 30),
        ("90 days", 90),
    ] {
        let over = db
            .sensor_report(id, path.clone(), now_ms - days * DAY_MS, now_ms)
            .await?;
        uptimes.push(UptimeView {
            period: label,
            by_time: percent(over.uptime_by_time),
            by_requests: percent(over.uptime_by_requests),
            outages: over.outages.len(),
        });
    }
    // Up to 30 days of events for the per-day bars.
    let bars_from = (now_ms / DAY_MS - 29) * DAY_MS;
    let initial = db.state_at(id, bars_from).await?;
    let events = db.events(id, bars_from, now_ms).await?;
    let points: Vec<(i64, Option<f64>)> = if span_ms <= DAY_MS {
        db.results(id, from_ms, now_ms)
            .await?
            .into_iter()
            .map(|r| {
                (
                    r.at_ms,
                    r.rtt_us
                        .filter(|_| r.status != crate::probe::Status::Down)
                        .map(|us| f64::from(us) / 1000.0),
                )
            })
            .collect()
    } else {
        db.rollups(id, from_ms, now_ms)
            .await?
            .into_iter()
            .map(|(hour, r)| (hour, r.avg_us.map(|us| f64::from(us) / 1000.0)))
            .collect()
    };
    let days = crate::report::daily_uptime(initial, &events, bars_from, 30, now_ms);
    // The last 50 checks of the last 24 hours, oldest first.
    let mut recent = db.results(id, now_ms - DAY_MS, now_ms).await?;
    let recent = recent.split_off(recent.len().saturating_sub(50));
    let heartbeat = chart::heartbeat(
        &recent
            .iter()
            .map(|r| (r.at_ms, r.status, r.reason))
            .collect::<Vec<_>>(),
    );
    let checks = recent.len();
    let locations = db
        .location_reports(Some(id))
        .await?
        .into_iter()
        .map(|r| LocationView {
            class: class(r.state),
            state: r.state.to_string(),
            since: time(r.since_ms),
            last: time(r.checked_ms),
            response: r
                .rtt_us
                .map(|us| format!("{:.3} ms", f64::from(us) / 1000.0))
                .unwrap_or_else(|| "-".into()),
            reason: r.reason.as_str().to_owned(),
            message: crate::text::visible(&r.message),
            location: r.location,
        })
        .collect();
    let (user, admin, csrf) = page_frame(&user);
    render(SensorPage {
        now_ms,
        push,
        asks,
        locations,
        uptimes,
        heartbeat,
        checks,
        user,
        admin,
        csrf,
        id,
        path,
        host: row.host.clone(),
        port: row.port,
        state: row.state.to_string(),
        class: class(row.state),
        since: row.since_ms.map(time).unwrap_or_default(),
        managed: row.managed,
        paused: matches!(
            row.state,
            SensorState::Paused(crate::monitor::state::PauseCause::Manual)
        ),
        last_time: row
            .last_check_ms
            .map(time)
            .unwrap_or_else(|| "not yet".into()),
        reason: row.last_reason.clone().unwrap_or_default(),
        message: crate::text::visible(&row.last_message.clone().unwrap_or_default()),
        protocol: row
            .last_details
            .as_ref()
            .map(|d| protocol_rows(d, row.last_rtt_us))
            .unwrap_or_default(),
        ranges: ["1h", "24h", "7d", "30d", "90d"]
            .into_iter()
            .map(|r| (r, r == current_range))
            .collect(),
        chart: chart::response_time(
            &points,
            from_ms,
            now_ms,
            &report
                .outages
                .iter()
                .map(|o| (o.start_ms, o.end_ms))
                .collect::<Vec<_>>(),
        ),
        bars: chart::uptime_bars(&days, bars_from),
        outages: report
            .outages
            .iter()
            .map(|o| OutageView {
                start: time(o.start_ms),
                end: o.end_ms.map_or_else(|| "ongoing".to_owned(), time),
                duration: crate::duration::age(0, o.duration_ms(now_ms)),
                reason: o.reason.clone().unwrap_or_default(),
                message: crate::text::visible(&o.message),
            })
            .collect(),
        events: events
            .iter()
            .rev()
            .take(50)
            .map(|e| EventView {
                at: time(e.at_ms),
                from: e.from.to_string(),
                to: e.to.to_string(),
                reason: e.reason.clone().unwrap_or_default(),
                message: crate::text::visible(&e.message),
            })
            .collect(),
    })
}

async fn set_paused(
    state: AppState,
    _: Admin,
    id: i64,
    paused: bool,
) -> Result<Response, AppError> {
    state
        .db
        .set_paused(state.db.sensor_path(id).await?, paused)
        .await?;
    Ok(Redirect::to(&format!("/sensors/{id}")).into_response())
}

pub async fn pause(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm,
) -> Result<Response, AppError> {
    set_paused(state, admin, id, true).await
}

pub async fn resume(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm,
) -> Result<Response, AppError> {
    set_paused(state, admin, id, false).await
}

struct EventRowView {
    at: String,
    sensor_id: i64,
    path: String,
    from: String,
    to: String,
    reason: String,
    message: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    events: Vec<EventRowView>,
    next: Option<i64>,
}

#[derive(Deserialize, Default)]
pub struct EventsQuery {
    before: Option<i64>,
}

/// The event log across all sensors, newest first, 100 a page.
pub async fn events(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Query(query): Query<EventsQuery>,
) -> Result<Response, AppError> {
    let events = state.db.recent_events(100, query.before).await?;
    let next = (events.len() == 100)
        .then(|| events.last().map(|e| e.0))
        .flatten();
    let (user, admin, csrf) = page_frame(&user);
    render(EventsPage {
        user,
        admin,
        csrf,
        next,
        events: events
            .into_iter()
            .map(|(_, path, e)| EventRowView {
                at: time(e.at_ms),
                sensor_id: e.sensor_id,
                path,
                from: e.from.to_string(),
                to: e.to.to_string(),
                reason: e.reason.unwrap_or_default(),
                message: crate::text::visible(&e.message),
            })
            .collect(),
    })
}

#[derive(Deserialize, Default, Clone)]
pub struct SensorForm {
    #[serde(default)]
    server: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    protocol: String,
    #[serde(flatten)]
    beat: HeartbeatFields,
    #[serde(flatten)]
    http: HttpFields,
    #[serde(flatten)]
    dns: DnsFields,
    #[serde(flatten)]
    udp: UdpFields,
}

/// A sensor form's HTTP content checks. (Headers, a body and
/// authentication are set in portwatch.toml or the API; the forms keep
/// them as they are.)
#[derive(Deserialize, Default, Clone)]
pub(super) struct HttpFields {
    #[serde(default)]
    pub(super) http_path: String,
    #[serde(default)]
    pub(super) http_contains: String,
    #[serde(default)]
    pub(super) http_absent: String,
    #[serde(default)]
    pub(super) http_regex: String,
    /// `PATH` or `PATH=VALUE`.
    #[serde(default)]
    pub(super) http_json: String,
    #[serde(default)]
    pub(super) http_follow: Option<String>,
}

impl HttpFields {
    /// The fields of these settings.
    pub(super) fn of(http: &crate::config::probe::HttpSettings) -> HttpFields {
        HttpFields {
            http_path: http.path.clone().unwrap_or_default(),
            http_contains: http.contains.clone().unwrap_or_default(),
            http_absent: http.absent.clone().unwrap_or_default(),
            http_regex: http.regex.clone().unwrap_or_default(),
            http_json: http
                .json
                .as_ref()
                .map(|j| match &j.equals {
                    Some(value) => format!("{}={value}", j.path),
                    None => j.path.clone(),
                })
                .unwrap_or_default(),
            http_follow: http.follow.filter(|f| *f).map(|_| "1".to_owned()),
        }
    }

    /// Sets these over the sensor's other HTTP settings, checked as
    /// portwatch.toml's are; the error names the field at fault (the path
    /// field for settings the form does not show).
    pub(super) fn apply(
        &self,
        overrides: &mut crate::config::Overrides,
    ) -> Result<(), (&'static str, String)> {
        let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut http = overrides
            .probe
            .as_ref()
            .map(|p| p.http_settings())
            .unwrap_or_default();
        http.path = text(&self.http_path);
        http.contains = text(&self.http_contains);
        http.absent = text(&self.http_absent);
        http.regex = text(&self.http_regex);
        http.json = text(&self.http_json).map(|json| match json.split_once('=') {
            Some((path, value)) => crate::config::probe::JsonSpec {
                path: path.trim().to_owned(),
                equals: Some(value.trim().to_owned()),
            },
            None => crate::config::probe::JsonSpec {
                path: json,
                equals: None,
            },
        });
        http.follow = self.http_follow.is_some().then_some(true);
        overrides.set_http(http).map_err(|(key, message)| {
            let field = match key {
                "http_contains" | "http_absent" | "http_regex" | "http_json" => key,
                "protocol" => "protocol",
                _ => "http_path",
            };
            (field, message)
        })
    }
}

/// A DNS sensor's fields on the forms: the name, the record type, and
/// the expected values separated by commas.
#[derive(Deserialize, Default, Clone)]
pub(super) struct DnsFields {
    #[serde(default)]
    pub(super) dns_query: String,
    #[serde(default)]
    pub(super) dns_record: String,
    #[serde(default)]
    pub(super) dns_expect: String,
}

impl DnsFields {
    /// The fields of these settings.
    pub(super) fn of(dns: &crate::config::dns::DnsSpec) -> DnsFields {
        DnsFields {
            dns_query: dns.query.clone(),
            dns_record: dns.record.clone().unwrap_or_default(),
            dns_expect: dns.expect.join(", "),
        }
    }

    /// The settings, checked as portwatch.toml's are, over `kept` (what
    /// the form does not show, such as the transport); the error names
    /// the field at fault.
    pub(super) fn spec(
        &self,
        kept: Option<crate::config::dns::DnsSpec>,
    ) -> Result<crate::config::dns::DnsSpec, (&'static str, String)> {
        let record = Some(self.dns_record.trim().to_owned()).filter(|r| !r.is_empty());
        let spec = crate::config::dns::DnsSpec {
            query: self.dns_query.trim().to_owned(),
            record,
            expect: self
                .dns_expect
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect(),
            ..kept.unwrap_or_default()
        };
        spec.options(crate::config::dns::tls_settings(None))
            .map(|_| spec.clone())
            .map_err(|(key, message)| {
                let field = match key {
                    "record" => "dns_record",
                    "expect" | "rcode" => "dns_expect",
                    _ => "dns_query",
                };
                (field, message)
            })
    }
}

/// A UDP sensor's fields on the forms: the protocol (or bytes to send and
/// expect) and the SNMP community.
#[derive(Deserialize, Default, Clone)]
pub(super) struct UdpFields {
    #[serde(default)]
    pub(super) udp_protocol: String,
    #[serde(default)]
    pub(super) udp_community: String,
    #[serde(default)]
    pub(super) udp_send: String,
    #[serde(default)]
    pub(super) udp_expect: String,
}

impl UdpFields {
    /// The fields of these settings.
    pub(super) fn of(udp: &crate::config::udp::UdpSpec) -> UdpFields {
        UdpFields {
            udp_protocol: udp.protocol.clone().unwrap_or_default(),
            // The community is a password: never shown, kept when left
            // empty.
            udp_community: String::new(),
            udp_send: udp.send.clone().unwrap_or_default(),
            udp_expect: udp.expect.clone().unwrap_or_default(),
        }
    }

    /// The settings, checked as portwatch.toml's are, over `kept` (what
    /// the form does not show: the SNMP version, the TFTP file), and the
    /// protocol's port; the error names the field at fault.
    pub(super) fn spec(
        &self,
        kept: Option<crate::config::udp::UdpSpec>,
    ) -> Result<(crate::config::udp::UdpSpec, Option<u16>), (&'static str, String)> {
        let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        let kept = kept.unwrap_or_default();
        let protocol = text(&self.udp_protocol);
        let snmp = protocol.as_deref().map(str::to_ascii_lowercase).as_deref() == Some("snmp");
        let spec = crate::config::udp::UdpSpec {
            community: text(&self.udp_community).or(kept.community.clone().filter(|_| snmp)),
            snmp_version: kept.snmp_version.clone().filter(|_| snmp),
            file: kept
                .file
                .clone()
                .filter(|_| protocol.as_deref() == Some("tftp")),
            protocol,
            send: text(&self.udp_send),
            expect: text(&self.udp_expect),
        };
        match spec.protocol() {
            Ok(protocol) => Ok((spec, protocol.default_port())),
            Err((key, message)) => {
                let field = match key {
                    "community" => "udp_community",
                    "send" => "udp_send",
                    "expect" => "udp_expect",
                    _ => "udp_protocol",
                };
                Err((field, message))
            }
        }
    }
}

/// A sensor form's kind (`tcp`, the default, or `heartbeat`), and a
/// heartbeat sensor's period and grace.
#[derive(Deserialize, Default, Clone)]
pub(super) struct HeartbeatFields {
    #[serde(default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) every: String,
    #[serde(default)]
    pub(super) grace: String,
}

impl HeartbeatFields {
    /// The heartbeat settings, checked as in portwatch.toml; the error
    /// names its field.
    pub(super) fn heartbeat(
        &self,
    ) -> Result<Option<crate::monitor::heartbeat::Heartbeat>, (&'static str, String)> {
        crate::monitor::heartbeat::Heartbeat::from_settings(
            Some(&self.kind),
            Some(&self.every),
            Some(&self.grace),
        )
    }

    pub(super) fn is_heartbeat(&self) -> bool {
        self.kind == "heartbeat"
    }
}

#[derive(Default)]
struct SensorErrors {
    kind: Option<String>,
    every: Option<String>,
    grace: Option<String>,
    server: Option<String>,
    host: Option<String>,
    port: Option<String>,
    name: Option<String>,
    interval: Option<String>,
    protocol: Option<String>,
    http: Option<String>,
    dns: Option<String>,
    udp: Option<String>,
}

#[derive(Template)]
#[template(path = "new_sensor.html")]
struct NewSensorPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    form: SensorForm,
    errors: SensorErrors,
}

pub async fn new_sensor_form(Admin(user): Admin) -> Result<Response, AppError> {
    let (user, admin, csrf) = page_frame(&user);
    render(NewSensorPage {
        user,
        admin,
        csrf,
        form: SensorForm::default(),
        errors: SensorErrors::default(),
    })
}

/// Adds a sensor; invalid fields come back with a message next to them.
pub async fn create_sensor(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfForm(form): CsrfForm<SensorForm>,
) -> Result<Response, AppError> {
    let mut errors = SensorErrors::default();
    let server = form.server.trim().to_owned();
    if server.is_empty() || server.contains('/') {
        errors.server = Some("Give the server a name without '/'.".into());
    }
    let host = parse_bare_host(&form.host)
        .map_err(|e| errors.host = Some(e.to_string()))
        .ok();
    let heartbeat = form
        .beat
        .heartbeat()
        .map_err(|(key, message)| match key {
            "kind" => errors.kind = Some(message),
            "every" => errors.every = Some(message),
            _ => errors.grace = Some(message),
        })
        .unwrap_or(None);
    let dns = (form.beat.kind == "dns")
        .then(|| form.dns.spec(None))
        .transpose()
        .map_err(|(_, message)| errors.dns = Some(message))
        .unwrap_or(None);
    let udp = (form.beat.kind == "udp")
        .then(|| form.udp.spec(None))
        .transpose()
        .map_err(|(_, message)| errors.udp = Some(message))
        .unwrap_or(None);
    let udp_port = udp.as_ref().and_then(|(_, port)| *port);
    let is_ping = form.beat.kind == "ping";
    let port = match (&heartbeat, form.port.trim()) {
        // A heartbeat sensor has no port: jobs call its push URL.
        (Some(_), "") => Some(0),
        // Nor has ICMP echo.
        (None, "") if is_ping => Some(0),
        (None, _) if is_ping => {
            errors.port = Some("A PING sensor has no port: leave it empty.".into());
            None
        }
        // A name server listens on 53.
        (None, "") if form.beat.kind == "dns" => Some(53),
        // A UDP service on its protocol's port.
        (None, "") if udp_port.is_some() => udp_port,
        (Some(_), _) => {
            errors.port = Some("A heartbeat sensor has no port: leave it empty.".into());
            None
        }
        (None, text) => parse_port(text, Services::global())
            .map_err(|e| errors.port = Some(e.to_string()))
            .ok(),
    };
    let interval = if form.interval.trim().is_empty() {
        None
    } else {
        match crate::duration::parse(&form.interval) {
            Ok(d) if d.as_secs() >= 1 => Some(d),
            Ok(_) => {
                errors.interval = Some("The interval must be at least 1s.".into());
                None
            }
            Err(e) => {
                errors.interval = Some(e.to_string());
                None
            }
        }
    };
    let name = match (form.name.trim(), port) {
        ("", Some(0)) if is_ping => "ping".to_owned(),
        ("", Some(0)) => "heartbeat".to_owned(),
        ("", _) if form.beat.kind == "dns" => "dns".to_owned(),
        ("", Some(port)) if udp_port == Some(port) => udp
            .as_ref()
            .and_then(|(spec, _)| spec.protocol().ok())
            .map_or_else(|| port.to_string(), |p| p.name().to_owned()),
        ("", Some(port)) => Services::global()
            .by_port(port)
            .map_or_else(|| port.to_string(), |s| s.name.clone()),
        (name, _) => name.to_owned(),
    };
    if name.contains('/') {
        errors.name = Some("A sensor name cannot contain '/'.".into());
    }
    let is_dns = matches!(form.beat.kind.as_str(), "dns" | "udp" | "ping");
    let mut overrides = crate::config::Overrides {
        interval,
        heartbeat: heartbeat.map(Box::new),
        dns: dns.map(Box::new),
        udp: udp.map(|(spec, _)| Box::new(spec)),
        ping: is_ping.then(Box::default),
        ..crate::config::Overrides::default()
    };
    let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    if is_dns {
        // A DNS or UDP sensor sends its own request; no other protocol.
    } else if let Err((_, message)) =
        overrides.set_check(text(&form.mode), text(&form.protocol), None)
    {
        errors.protocol = Some(message);
    } else if let Err((_, message)) = form.http.apply(&mut overrides) {
        errors.http = Some(message);
    }
    let (Some(host), Some(port), None, None, None, None, None, None, None, None, None, None, None) = (
        host,
        port,
        &errors.server,
        &errors.name,
        &errors.interval,
        &errors.host,
        &errors.protocol,
        &errors.kind,
        &errors.every,
        &errors.grace,
        &errors.http,
        &errors.dns,
        &errors.udp,
    ) else {
        let (user, admin, csrf) = page_frame(&user);
        let mut response = render(NewSensorPage {
            user,
            admin,
            csrf,
            form,
            errors,
        })?;
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(response);
    };
    let id = state
        .db
        .add_sensor(server, host, port, name, overrides)
        .await?;
    Ok(Redirect::to(&format!("/sensors/{id}")).into_response())
}

/// The dashboard, sign-in, the sensor pages and the events page.
pub(super) fn routes() -> super::Routes {
    super::Routes::new()
        .get("/", dashboard)
        .get("/login", login_form)
        .post("/login", login)
        .post("/logout", logout)
        .get("/sensors/new", new_sensor_form)
        .post("/sensors/new", create_sensor)
        .get("/sensors/{id}", sensor)
        .post("/sensors/{id}/pause", pause)
        .post("/sensors/{id}/resume", resume)
        .get("/events", events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phases_of_a_check_run_from_dns_to_the_end() {
        let check = crate::probe::proto::CheckDetails {
            protocol: "https".into(),
            dns_ms: Some(1.25),
            tls_ms: Some(4.0),
            first_byte_ms: Some(9.5),
            total_ms: 12.0,
            details: Default::default(),
            tls: None,
            cert_not_after_s: None,
        };
        let rows = protocol_rows(&check, Some(300));
        assert_eq!(
            rows[1],
            (
                "Phases".into(),
                "DNS 1.2 ms · connect 0.3 ms · TLS 4.0 ms · first byte 9.5 ms · total 12.0 ms"
                    .into()
            )
        );
        let without = crate::probe::proto::CheckDetails {
            dns_ms: None,
            ..check
        };
        assert!(
            protocol_rows(&without, Some(300))[1]
                .1
                .starts_with("connect")
        );
    }

    #[test]
    fn a_tick_gives_the_time_of_day_today_and_the_date_before() {
        let now = 1_796_083_200_000 + 10 * 3_600_000; // 2026-12-01 10:00 UTC
        assert_eq!(tick_time(now - 5_000, now), "09:59:55");
        assert_eq!(tick_time(now - 11 * 3_600_000, now), "11-30 23:00");
    }

    #[test]
    fn uptimes_never_round_up_to_100_and_certificates_count_down_in_days() {
        assert_eq!(uptime_text(None), "-");
        assert_eq!(uptime_text(Some(100.0)), "100%");
        assert_eq!(uptime_text(Some(99.99999)), "99.999%");
        assert_eq!(uptime_text(Some(50.0)), "50.000%");
        let now = 1_796_083_200_000;
        let day = 86_400;
        assert_eq!(
            cert_days(now / 1000 + 41 * day + 5, now),
            ("41 d".into(), false)
        );
        assert_eq!(
            cert_days(now / 1000 + 14 * day + 5, now),
            ("14 d".into(), true)
        );
        assert_eq!(cert_days(now / 1000, now), ("expired".into(), true));
    }

    #[test]
    fn triage_ranks_down_then_unknown_then_warning() {
        use crate::monitor::state::PauseCause;
        let order = [
            SensorState::Down,
            SensorState::Unknown,
            SensorState::Warning,
            SensorState::Up,
            SensorState::Pending,
            SensorState::Paused(PauseCause::Manual),
        ];
        let ranks: Vec<u8> = order.iter().map(|s| severity(*s)).collect();
        assert_eq!(ranks, [0, 1, 2, 3, 4, 5]);
        let problems: Vec<bool> = order.iter().map(|s| is_problem(*s)).collect();
        assert_eq!(problems, [true, true, true, false, false, false]);
        for (state, label) in order.iter().zip(TRIAGE) {
            assert_eq!(class(*state), label, "TRIAGE follows severity");
        }
    }

    #[test]
    fn a_large_dashboard_shows_quiet_groups_as_summaries_and_pages_a_group() {
        let base = StatusQuery {
            text: "web".into(),
            order: StatusOrder::Since,
            ..StatusQuery::default()
        };
        // Small, or filtered: the first page of every group.
        let every_group = group_rows(&base, None, true);
        assert_eq!(every_group.per_group, Some(PAGE_SIZE as u64));
        assert!(!every_group.problems);
        assert_eq!(every_group.limit, Some(GROUP_ROWS as u64));
        assert_eq!(
            (every_group.text.as_str(), every_group.order),
            ("web", StatusOrder::Since)
        );
        // Large: each group's problems (a quiet group is its summary).
        let large = group_rows(&base, None, false);
        assert!(large.problems);
        assert_eq!(large.per_group, Some(PAGE_SIZE as u64));
        // A group asked for, page by page.
        let third = group_rows(&base, Some((Some("Web".into()), 3)), false);
        assert_eq!(third.group, Some(Some("Web".into())));
        assert_eq!((third.offset, third.limit), (400, Some(PAGE_SIZE as u64)));
        assert!(!third.problems && third.per_group.is_none());
        let first = group_rows(&base, Some((None, 0)), false);
        assert_eq!((first.group, first.offset), (Some(None), 0));
    }

    #[test]
    fn columns_sort_by_their_key_and_the_worst_problem_colours_the_icon() {
        assert_eq!(list_order(None), StatusOrder::Severity);
        assert_eq!(list_order(Some("sensor")), StatusOrder::Path);
        assert_eq!(list_order(Some("target")), StatusOrder::Target);
        assert_eq!(list_order(Some("reason")), StatusOrder::Reason);
        assert_eq!(list_order(Some("response")), StatusOrder::Response);
        assert_eq!(list_order(Some("since")), StatusOrder::Since);
        assert_eq!(list_order(Some("nonsense")), StatusOrder::Severity);
        let problems = [SensorState::Warning, SensorState::Down];
        assert!(favicon(problems.into_iter()).contains("c62828"));
        assert!(favicon(problems[..1].iter().copied()).contains("9a6700"));
        assert!(favicon(std::iter::empty()).contains("1a7f37"));
    }

    #[test]
    fn links_keep_the_filter_and_encode_the_group() {
        let query = DashboardQuery {
            q: "web & db".into(),
            problems: Some("1".into()),
            sort: Some("since".into()),
            desc: Some("1".into()),
            ..DashboardQuery::default()
        };
        assert_eq!(
            query.link(None, None),
            "/?q=web+%26+db&problems=1&sort=since&desc=1"
        );
        assert_eq!(
            query.link(Some("Prod/EU"), Some(2)),
            "/?q=web+%26+db&problems=1&sort=since&desc=1&group=Prod%2FEU&page=2"
        );
        assert_eq!(
            DashboardQuery::default().link(Some("A"), Some(1)),
            "/?group=A"
        );
        assert_eq!(DashboardQuery::default().link(None, None), "/");
    }

    #[test]
    fn states_are_tallied_in_triage_order_and_groups_with_problems_come_first() {
        let tallied = tally([(SensorState::Up, 2), (SensorState::Down, 1)].into_iter());
        let pairs: Vec<(&str, usize)> = tallied.iter().map(|c| (c.label, c.n)).collect();
        assert_eq!(
            pairs,
            [
                ("down", 1),
                ("unknown", 0),
                ("warning", 0),
                ("up", 2),
                ("pending", 0),
                ("paused", 0)
            ]
        );
        assert_eq!(problems_in(&tallied), 1);
        let order = |states: &[SensorState]| group_order(&tally(states.iter().map(|s| (*s, 1))));
        let calm = order(&[SensorState::Up, SensorState::Up]);
        let warned = order(&[SensorState::Warning, SensorState::Up]);
        let blind = order(&[SensorState::Unknown]);
        let down = order(&[SensorState::Down, SensorState::Up]);
        let worse = order(&[SensorState::Down, SensorState::Down]);
        let mut groups = vec![calm, warned, blind, down, worse];
        groups.sort();
        assert_eq!(groups, [worse, down, blind, warned, calm]);
    }
}
