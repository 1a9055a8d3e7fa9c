//! The web interface and API through the real router (`oneshot`), on a real
//! SQLite store; the tests listed in `on_both_stores!` run again on a real
//! PostgreSQL.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use portwatch::config::from_toml;
use portwatch::store::accounts::Role;
use portwatch::store::location::Location;
use portwatch::store::{Backend, Storage, Store, Writes};
use portwatch::web::{AppState, app};
use tower::ServiceExt;

use crate::util::TempDir;

const CONFIG: &str = r#"
[[group]]
name = "Prod"
[[server]]
name = "<img src=x onerror=alert(1)>"
host = "127.0.0.1"
group = "Prod"
tags = ["edge"]
  [[server.sensor]]
  port = 22
[[server]]
name = "db"
host = "127.0.0.1"
  [[server.sensor]]
  port = 5432
"#;

fn setup() -> (TempDir, AppState) {
    let dir = TempDir::new("web");
    let db = dir.path.join("portwatch.db");
    let mut store = Store::open(&db).unwrap();
    store.apply(&from_toml("t.toml", CONFIG).unwrap()).unwrap();
    store
        .create_user("admin", "admin-password", Role::Admin)
        .unwrap();
    store
        .create_user("viewer", "viewer-password", Role::Read)
        .unwrap();
    (
        dir,
        AppState::new(portwatch::store::Db::open(&db, 16).unwrap(), None, None),
    )
}

/// [`setup`] on PostgreSQL: the same configuration and users in a
/// database on a new cluster (held by the caller).
async fn setup_postgres(
    test: &'static str,
) -> Option<(TempDir, AppState, portwatch_testpg::Cluster)> {
    let cluster = tokio::task::spawn_blocking(move || {
        let cluster = portwatch_testpg::Cluster::for_test(test)?;
        cluster.create_database("portwatch").unwrap();
        Some(cluster)
    })
    .await
    .unwrap()?;
    let location = Location::parse(&cluster.url("portwatch")).unwrap();
    let db = Backend::open(&location, 16).await.unwrap();
    db.apply(from_toml("t.toml", CONFIG).unwrap())
        .await
        .unwrap();
    db.create_user("admin".into(), "admin-password".into(), Role::Admin)
        .await
        .unwrap();
    db.create_user("viewer".into(), "viewer-password".into(), Role::Read)
        .await
        .unwrap();
    Some((
        TempDir::new("web-pg"),
        AppState::new(db, None, None),
        cluster,
    ))
}

async fn send(
    state: &AppState,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).unwrap()
}

fn post_form(path: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::from(form.to_owned())).unwrap()
}

/// A JSON API request with a bearer token.
fn api(token: &str, method: &str, path: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// Loads the sign-in form: its cookie and token, which a sign-in must
/// send back.
async fn login_form(state: &AppState) -> (String, String) {
    let (status, headers, page) = send(state, get("/login", None)).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.ends_with(&token), "the form's token is its cookie's");
    (cookie, token)
}

/// A sign-in request from the form, from `ip` if given.
async fn login_request(
    state: &AppState,
    name: &str,
    password: &str,
    ip: Option<[u8; 4]>,
) -> Request<Body> {
    let (cookie, token) = login_form(state).await;
    let mut request = post_form(
        "/login",
        Some(&cookie),
        &format!("name={name}&password={password}&csrf={token}"),
    );
    if let Some(ip) = ip {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 40000,
            ))));
    }
    request
}

/// Signs in and returns the session cookie and the page's CSRF token.
async fn sign_in(state: &AppState, name: &str, password: &str) -> (String, String) {
    let request = login_request(state, name, password, None).await;
    let (status, headers, _) = send(state, request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let (_, _, page) = send(state, get("/", Some(&cookie))).await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

async fn is_paused(state: &AppState, id: i64) -> bool {
    state.db().load().await.unwrap().paused.contains(&id)
}

async fn sensor_id(state: &AppState, path: &str) -> i64 {
    state.db().sensor_ids(path.into()).await.unwrap()[0]
}

async fn pages_need_a_sign_in_and_wrong_passwords_are_refused(_dir: TempDir, state: AppState) {
    let (status, headers, _) = send(&state, get("/", None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    let request = login_request(&state, "admin", "wrong", None).await;
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Wrong user name or password"));
    // Without the form's cookie and token (login CSRF), no sign-in at all.
    let (status, _, _) = send(
        &state,
        post_form("/login", None, "name=admin&password=admin-password"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (cookie, _) = login_form(&state).await;
    let (status, _, _) = send(
        &state,
        post_form(
            "/login",
            Some(&cookie),
            "name=admin&password=admin-password&csrf=0123456789abcdef0123456789abcdef",
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a token that is not the cookie's"
    );
    let (status, _, _) = send(&state, get("/api/sensors", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(&state, get("/healthz", None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
}

async fn names_are_html_escaped(_dir: TempDir, state: AppState) {
    let (cookie, _) = sign_in(&state, "admin", "admin-password").await;
    let (status, _, page) = send(&state, get("/", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !page.contains("<img src=x onerror=alert(1)>"),
        "raw markup reached the page"
    );
    assert!(
        page.contains("&#60;img src=x onerror=alert(1)&#62;")
            || page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
}

async fn forms_without_the_csrf_token_are_refused(_dir: TempDir, state: AppState) {
    let (cookie, csrf) = sign_in(&state, "admin", "admin-password").await;
    let id = sensor_id(&state, "db/postgresql").await;
    let (status, _, _) = send(
        &state,
        post_form(&format!("/sensors/{id}/pause"), Some(&cookie), ""),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(
        &state,
        post_form(&format!("/sensors/{id}/pause"), Some(&cookie), "csrf=0000"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        state.db().load().await.unwrap().paused.is_empty(),
        "nothing was paused"
    );
    // The token is found in a large form too (any form the router accepts,
    // up to 64 KB): here 32 KB of other fields come first.
    let (status, _, _) = send(
        &state,
        post_form(
            &format!("/sensors/{id}/pause"),
            Some(&cookie),
            &format!("note={}&csrf={csrf}", "x".repeat(32 * 1024)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(is_paused(&state, id).await);
}

async fn read_only_users_and_tokens_cannot_change_anything(_dir: TempDir, state: AppState) {
    let id = sensor_id(&state, "db/postgresql").await;
    let (cookie, csrf) = sign_in(&state, "viewer", "viewer-password").await;
    // Signing out is the one change a read-only account may make.
    let (other_cookie, other_csrf) = sign_in(&state, "viewer", "viewer-password").await;
    let (status, headers, _) = send(
        &state,
        post_form(
            "/logout",
            Some(&other_cookie),
            &format!("csrf={other_csrf}"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, _) = send(&state, get("/", Some(&other_cookie))).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the session has ended");
    let (status, _, _) = send(
        &state,
        post_form(
            &format!("/sensors/{id}/pause"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let read = state
        .db()
        .create_token("grafana".into(), Role::Read)
        .await
        .unwrap();
    let admin = state
        .db()
        .create_token("automation".into(), Role::Admin)
        .await
        .unwrap();
    let bearer = |token: &str, request: axum::http::request::Builder| {
        request
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = send(&state, bearer(&read, Request::get("/api/sensors?limit=1"))).await;
    assert_eq!(status, StatusCode::OK);
    let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            listing["total"].as_u64(),
            listing["items"].as_array().unwrap().len()
        ),
        (Some(2), 1),
        "paginated"
    );
    let (status, _, body) = send(
        &state,
        bearer(&read, Request::post(format!("/api/sensors/{id}/pause"))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].as_str().unwrap().contains("read-only"));
    let (status, _, _) = send(
        &state,
        bearer(&admin, Request::post(format!("/api/sensors/{id}/pause"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(
        &state,
        bearer("pw_not-a-token", Request::get("/api/sensors")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Tokens are stored hashed: the database never holds the token itself.
    if let Backend::Sqlite(db) = state.db() {
        let raw = std::fs::read(db.path()).unwrap();
        assert!(
            !raw.windows(read.len()).any(|w| w == read.as_bytes()),
            "a token is stored in clear"
        );
    }
}

async fn adding_a_sensor_validates_each_field(_dir: TempDir, state: AppState) {
    let (cookie, csrf) = sign_in(&state, "admin", "admin-password").await;
    let form = format!("csrf={csrf}&server=web&host=bad%20host&port=99999&name=&interval=ten");
    let (status, _, page) = send(&state, post_form("/sensors/new", Some(&cookie), &form)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["error-host", "error-port", "error-interval"] {
        assert!(page.contains(field), "{field} missing in {page}");
    }
    assert!(page.contains("value=\"web\""), "the valid input is kept");
    let form = format!(
        "csrf={csrf}&server=web&host=127.0.0.1&port=https&name=&interval=&mode=auto&protocol=htps"
    );
    let (status, _, page) = send(&state, post_form("/sensors/new", Some(&cookie), &form)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("error-protocol") && page.contains("unknown protocol &#39;htps&#39;"),
        "{page}"
    );
    assert!(
        page.contains("<option value=\"auto\" selected>"),
        "the mode is kept"
    );
    let form =
        format!("csrf={csrf}&server=web&host=127.0.0.1&port=https&name=&interval=30s&mode=auto");
    let (status, headers, _) = send(&state, post_form("/sensors/new", Some(&cookie), &form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let id = sensor_id(&state, "web/https").await;
    assert_eq!(headers[header::LOCATION], format!("/sensors/{id}"));
    let (status, _, page) = send(&state, get(&format!("/sensors/{id}"), Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("web/https") && page.contains("<svg"),
        "{page}"
    );
}

async fn metrics_use_prometheus_names_and_need_a_token_off_loopback(
    _dir: TempDir,
    state: AppState,
) {
    // oneshot requests carry no client address: they count as remote.
    let (status, _, _) = send(&state, get("/metrics", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token = state
        .db()
        .create_token("prometheus".into(), Role::Read)
        .await
        .unwrap();
    let request = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("# TYPE portwatch_sensor_up gauge"), "{body}");
    assert!(body.contains(r#"portwatch_sensor_state{group="",server="db",sensor="postgresql",host="127.0.0.1",port="5432",service="postgresql"} 0"#), "{body}");
    let (status, _, body) = send(&state, get("/api/openapi.json", None)).await;
    assert_eq!(status, StatusCode::OK);
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(document["paths"]["/api/sensors"]["get"].is_object());
}

async fn failed_sign_ins_are_rate_limited_per_address(_dir: TempDir, state: AppState) {
    for _ in 0..5 {
        let request = login_request(&state, "admin", "guess", Some([192, 0, 2, 7])).await;
        let (status, _, _) = send(&state, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let request = login_request(&state, "admin", "admin-password", Some([192, 0, 2, 7])).await;
    let (status, _, _) = send(&state, request).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    let request = login_request(&state, "admin", "admin-password", None).await;
    let (status, _, _) = send(&state, request).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "other addresses are not affected, and the user is not locked out"
    );
}

async fn reports_as_a_page_as_csv_and_as_json(_dir: TempDir, state: AppState) {
    let (cookie, _) = sign_in(&state, "admin", "admin-password").await;
    let (status, headers, csv) = send(
        &state,
        get("/reports?name=db&since=7d&format=csv", Some(&cookie)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("sensor,from,to,uptime_by_time_percent"));
    assert!(lines[1].starts_with("db/postgresql,"), "{csv}");
    let (status, _, page) = send(&state, get("/reports?since=ten", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("invalid duration &#39;ten&#39;"), "{page}");
    let (status, _, body) = send(&state, get("/api/reports?since=24h", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    let reports: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 2);
}

async fn public_status_pages_need_no_sign_in_and_show_no_hosts(_dir: TempDir, state: AppState) {
    let (cookie, csrf) = sign_in(&state, "admin", "admin-password").await;
    let (status, _, page) = send(
        &state,
        post_form(
            "/status-pages",
            Some(&cookie),
            &format!("csrf={csrf}&slug=Bad+Slug&title=x&names=db"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("page-error"), "{page}");
    let (status, _, page) = send(
        &state,
        post_form(
            "/status-pages",
            Some(&cookie),
            &format!("csrf={csrf}&slug=public&title=Our+services&names=nothing"),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown names are refused: {page}"
    );
    let (status, _, page) = send(
        &state,
        post_form(
            "/status-pages",
            Some(&cookie),
            &format!("csrf={csrf}&slug=public&title=x&names=db&logo=javascript%3Aalert(1)"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(
        page.contains("logo: &#39;javascript:alert(1)&#39; is not a web address")
            || page.contains("logo: &#x27;javascript:alert(1)&#x27; is not a web address"),
        "{page}"
    );
    let form = format!(
        "csrf={csrf}&slug=public&title=Our+%3Cb%3Eservices&names=Prod%2C+db\
         &logo=https%3A%2F%2Fcdn.example.com%2Flogo.png&link=https%3A%2F%2Fexample.com%2F"
    );
    let (status, _, _) = send(&state, post_form("/status-pages", Some(&cookie), &form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let db = sensor_id(&state, "db/postgresql").await;
    let now = jiff::Timestamp::now().as_millisecond();
    set_state(&state, db, portwatch::monitor::state::State::Down, now).await;
    record_change(&state, db, portwatch::monitor::state::State::Down, now).await;
    // A window in force over db, and one in two days over Prod.
    let once = |name: &str, from_h: i64, to_h: i64, servers: &[&str], groups: &[&str]| {
        let at = |h: i64| jiff::Timestamp::from_millisecond(now + h * 3_600_000).unwrap();
        portwatch::config::WindowDef {
            name: name.into(),
            rule: portwatch::config::WindowRule::Once {
                start: at(from_h),
                end: at(to_h),
            },
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            servers: servers.iter().map(|s| (*s).to_owned()).collect(),
            sensors: Vec::new(),
        }
    };
    for window in [
        once("Database upgrade", -1, 1, &["db"], &[]),
        once("Network work", 48, 50, &[], &["Prod"]),
    ] {
        state.db().add_window(window).await.unwrap();
    }
    let (status, headers, page) = send(&state, get("/status/public", None)).await;
    assert_eq!(status, StatusCode::OK);
    // The owner's logo (allowed by the page's policy) and link.
    assert!(
        page.contains("<img class=\"logo\" src=\"https://cdn.example.com/logo.png\"")
            && page.contains("<a class=\"brand\" href=\"https://example.com/\">"),
        "{page}"
    );
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        policy.contains("img-src 'self' data: https://cdn.example.com;"),
        "{policy}"
    );
    // Maintenance: the one in force first, then the coming one.
    let (current, coming) = (
        page.find("<li class=\"current\"><strong>Database upgrade</strong>: in progress, until")
            .unwrap_or_else(|| panic!("{page}")),
        page.find("<li><strong>Network work</strong>:")
            .unwrap_or_else(|| panic!("{page}")),
    );
    assert!(current < coming, "{page}");
    // A banner, one section per name in the owner's order, 90 days a row.
    assert!(
        page.contains("<h1 class=\"banner banner-down\" id=\"overall\">Major outage</h1>"),
        "the one sensor checked is down: {page}"
    );
    // An Atom feed of the state changes, escaped, without messages.
    let (status, headers, feed) = send(&state, get("/status/public?format=atom", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/atom+xml");
    assert!(
        feed.contains("<title>Our &#60;b&#62;services</title>")
            || feed.contains("<title>Our &lt;b&gt;services</title>"),
        "{feed}"
    );
    assert_eq!(feed.matches("<entry>").count(), 1, "{feed}");
    assert!(
        feed.contains("<title>db/postgresql is down</title>"),
        "{feed}"
    );
    let (prod, other) = (
        page.find("<h2>Prod</h2>").expect("a Prod section"),
        page.find("<h2>db</h2>").expect("a db section"),
    );
    assert!(
        prod < other && other < page.find("db/postgresql").unwrap(),
        "{page}"
    );
    assert_eq!(page.matches("<svg").count(), 2, "a bar per sensor");
    assert!(page.matches(": no data</title>").count() >= 90, "{page}");
    assert!(page.contains("90-day uptime"), "the period is stated");
    let (status, headers, json) = send(&state, get("/status/public?format=json", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["overall"], "Major outage");
    assert_eq!(json["sections"][1]["name"], "db");
    assert_eq!(json["sections"][1]["sensors"][0]["name"], "db/postgresql");
    assert_eq!(json["sections"][1]["sensors"][0]["state"], "down");
    assert_eq!(json["maintenance"][0]["name"], "Database upgrade");
    assert_eq!(json["maintenance"][0]["current"], true);
    assert_eq!(json["logo"], "https://cdn.example.com/logo.png");
    assert!(
        json["sections"][1]["sensors"][0]
            .get("uptime_90d_percent")
            .is_some()
    );
    assert!(!json.to_string().contains("127.0.0.1"), "no hosts: {json}");
    assert!(page.contains("db/postgresql"), "{page}");
    assert!(
        page.contains("&#60;img src=x onerror=alert(1)&#62;/ssh")
            || page.contains("&lt;img src=x onerror=alert(1)&gt;/ssh"),
        "{page}"
    );
    assert!(!page.contains("<b>services"), "the title is escaped");
    assert!(!page.contains("127.0.0.1"), "no hosts on a public page");
    let (status, _, _) = send(&state, get("/status/nothing-here", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn sensors_made_in_the_ui_can_be_edited_and_deleted_but_file_ones_cannot(
    _dir: TempDir,
    state: AppState,
) {
    let (cookie, csrf) = sign_in(&state, "admin", "admin-password").await;
    let file_sensor = sensor_id(&state, "db/postgresql").await;
    let (status, _, _) = send(
        &state,
        get(&format!("/sensors/{file_sensor}/edit"), Some(&cookie)),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "file-managed sensors are read-only"
    );

    let form = format!("csrf={csrf}&server=app&host=127.0.0.1&port=8080&name=&interval=");
    send(&state, post_form("/sensors/new", Some(&cookie), &form)).await;
    let form = format!("csrf={csrf}&server=app&host=127.0.0.1&port=8443&name=&interval=");
    send(&state, post_form("/sensors/new", Some(&cookie), &form)).await;
    let a = sensor_id(&state, "app/http-alt").await;
    let b = sensor_id(&state, "app/pcsync-https").await;

    let edit = |id: i64, fields: &str| {
        post_form(
            &format!("/sensors/{id}/edit"),
            Some(&cookie),
            &format!("csrf={csrf}&{fields}"),
        )
    };
    let (status, _, page) = send(
        &state,
        edit(a, "port=8080&interval=ten&retries=99&depends_on="),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("error-interval") && page.contains("error-retries"),
        "{page}"
    );
    let (status, _, _) = send(
        &state,
        edit(
            a,
            "port=8080&interval=30s&retries=2&depends_on=app%2Fpcsync-https&expect_closed=1",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, page) = send(&state, edit(b, "port=8443&depends_on=app%2Fhttp-alt")).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a cycle is refused"
    );
    assert!(page.contains("cycle"), "{page}");
    let (status, _, page) = send(&state, edit(b, "port=8443&depends_on=nope%2Fnothing")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("error-depends_on"), "{page}");
    // Locations: validated next to their fields, then stored.
    let (status, _, page) = send(
        &state,
        edit(b, "port=8443&locations=eu%2C+eu&down_when=most"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("error-locations") && page.contains("error-down_when"),
        "{page}"
    );
    let (status, _, _) = send(
        &state,
        edit(b, "port=8443&locations=eu-west%2C+us-east&down_when=all"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let loaded = state.db().load().await.unwrap().config;
    let located = portwatch::config::model::resolve(&loaded)
        .into_iter()
        .find(|s| s.path == "app/pcsync-https")
        .unwrap();
    assert_eq!(
        located.locations.as_deref().map(<[String]>::to_vec),
        Some(vec!["eu-west".to_string(), "us-east".to_string()])
    );
    assert_eq!(
        located.down_when,
        Some(portwatch::monitor::verdict::DownWhen::All)
    );
    let (_, _, page) = send(&state, get(&format!("/sensors/{b}/edit"), Some(&cookie))).await;
    assert!(
        page.contains("name=\"locations\" value=\"eu-west, us-east\""),
        "{page}"
    );
    // Protocol checks: validated next to the field, then stored.
    let (status, _, page) = send(&state, edit(b, "port=8443&protocol=gopherx")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("error-protocol") && page.contains("unknown protocol &#39;gopherx&#39;"),
        "{page}"
    );
    let (status, _, _) = send(
        &state,
        edit(b, "port=8443&mode=auto&protocol=https&tls=implicit"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let loaded = state.db().load().await.unwrap().config;
    let probe = portwatch::config::model::resolve(&loaded)
        .into_iter()
        .find(|s| s.path == "app/pcsync-https")
        .and_then(|s| s.probe)
        .expect("the sensor speaks https now");
    assert_eq!(probe.plan(8443).map(|p| p.protocol.as_str()), Some("http"));
    let (_, _, page) = send(&state, get(&format!("/sensors/{b}/edit"), Some(&cookie))).await;
    assert!(
        page.contains("name=\"protocol\" value=\"https\""),
        "prefilled: {page}"
    );
    let (port, expect_closed, overrides, managed) = state.db().sensor_settings(a).await.unwrap();
    assert_eq!((port, expect_closed, managed), (8080, true, false));
    assert_eq!(overrides.interval, Some(std::time::Duration::from_secs(30)));
    assert_eq!(overrides.depends_on.as_deref(), Some("app/pcsync-https"));

    let (status, _, _) = send(
        &state,
        post_form(
            &format!("/sensors/{b}/delete"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        state
            .db()
            .sensor_ids("app/pcsync-https".into())
            .await
            .is_err()
    );
}

async fn the_api_adds_and_removes_sensors(_dir: TempDir, state: AppState) {
    let token = state
        .db()
        .create_token("ci".into(), Role::Admin)
        .await
        .unwrap();
    let json = |method: &str, path: &str, body: &str| api(&token, method, path, body);
    let (status, _, body) = send(
        &state,
        json(
            "POST",
            "/api/sensors",
            r#"{"server":"api","host":"2001:db8::1","port":"ssh"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (created["sensor"].as_str(), created["port"].as_u64()),
        (Some("api/ssh"), Some(22))
    );
    let (status, _, body) = send(
        &state,
        json(
            "POST",
            "/api/sensors",
            r#"{"server":"api","host":"x","port":0}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("port: port '0' is out of range"), "{body}");
    for (bad, error) in [
        (
            r#"{"server":"api","host":"127.0.0.1","port":80,"down_when":0}"#,
            "down_when: down_when = '0' is not a count of locations",
        ),
        (
            r#"{"server":"api","host":"127.0.0.1","port":80,"locations":["eu","eu"]}"#,
            "locations: location 'eu' is listed twice",
        ),
    ] {
        let (status, _, body) = send(&state, json("POST", "/api/sensors", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body.contains(error), "{body}");
    }
    let (status, _, body) = send(
        &state,
        json(
            "POST",
            "/api/sensors",
            r#"{"server":"api","host":"127.0.0.1","port":6380,"protocol":"rediss"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("protocol: unknown protocol 'rediss'"),
        "{body}"
    );
    let (status, _, body) = send(
        &state,
        json(
            "POST",
            "/api/sensors",
            r#"{"server":"api","host":"2001:db8::1","port":6380,"name":"cache","protocol":"redis","locations":["eu","us"],"down_when":2}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let config = state.db().load().await.unwrap().config;
    let cache = portwatch::config::model::resolve(&config)
        .into_iter()
        .find(|s| s.path == "api/cache")
        .unwrap();
    assert_eq!(
        (
            cache.locations.as_deref().map(<[String]>::len),
            cache.down_when
        ),
        (
            Some(2),
            Some(portwatch::monitor::verdict::DownWhen::Count(2))
        )
    );
    assert_eq!(
        cache
            .probe
            .and_then(|p| p.plan(6380))
            .map(|p| p.protocol.as_str()),
        Some("redis")
    );
    let id = created["id"].as_i64().unwrap();
    let (status, _, _) = send(&state, json("DELETE", &format!("/api/sensors/{id}"), "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let file = sensor_id(&state, "db/postgresql").await;
    let (status, _, body) = send(&state, json("DELETE", &format!("/api/sensors/{file}"), "")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("configuration file"), "{body}");
}

async fn groups_servers_and_maintenance_windows_are_edited_through_forms(
    _dir: TempDir,
    state: AppState,
) {
    let (cookie, csrf) = sign_in(&state, "admin", "admin-password").await;
    let post =
        |path: &str, fields: &str| post_form(path, Some(&cookie), &format!("csrf={csrf}&{fields}"));

    let (status, _, page) = send(&state, post("/config/group", "name=Site%2FWeb")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("error-group-name") && page.contains("parent group"),
        "{page}"
    );
    let (status, _, _) = send(
        &state,
        post("/config/group", "name=Site&interval=30s&retries=2"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, page) = send(
        &state,
        post(
            "/config/group",
            "name=Site&depends_on=db%2Fpostgresql&interval=ten",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("error-group-interval"), "{page}");

    let (status, _, page) = send(
        &state,
        post("/config/server", "name=edge&host=127.0.0.1&group=Nowhere"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("error-server-group"), "{page}");
    let (status, _, page) = send(&state, post("/config/server", "name=edge&host=bad+host")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("error-server-host"), "{page}");
    let (status, _, _) = send(
        &state,
        post(
            "/config/server",
            "name=edge&host=127.0.0.1&group=Site&tags=eu%2C+lb",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, page) = send(&state, post("/config/server", "name=db&host=127.0.0.2")).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "file-managed servers are read-only"
    );
    assert!(page.contains("configuration file"), "{page}");

    let (status, _, page) = send(
        &state,
        post(
            "/config/window",
            "name=nightly&every=day&start=02%3A00&duration=1h&timezone=Mars%2FBase&servers=db",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("error-window-timezone"), "{page}");
    let (status, _, page) = send(
        &state,
        post(
            "/config/window",
            "name=move&from=2026-12-02T00%3A00&until=2026-12-01T00%3A00&servers=db",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("error-window-until"), "{page}");
    let (status, _, _) = send(
        &state,
        post(
            "/config/window",
            "name=nightly&every=day&start=02%3A00&duration=1h&timezone=Europe%2FBerlin&servers=db",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let loaded = state.db().load().await.unwrap();
    let site = loaded
        .config
        .groups
        .iter()
        .find(|g| g.path == "Site")
        .unwrap();
    assert_eq!(
        (site.overrides.interval, site.overrides.retries),
        (Some(std::time::Duration::from_secs(30)), Some(2))
    );
    let edge = loaded
        .config
        .servers
        .iter()
        .find(|s| s.name == "edge")
        .unwrap();
    assert_eq!(
        (edge.group.as_deref(), edge.tags.clone()),
        (Some("Site"), vec!["eu".to_owned(), "lb".to_owned()])
    );
    assert_eq!(loaded.config.maintenance.len(), 1);
    let window_id = state.db().windows().await.unwrap()[0].0;

    let (status, _, page) = send(&state, post("/config/group/delete", "name=Site")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a group holding servers stays: {page}"
    );
    let (status, _, _) = send(&state, post("/config/server/delete", "name=edge")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = send(&state, post("/config/group/delete", "name=Site")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = send(
        &state,
        post(&format!("/config/window/{window_id}/delete"), ""),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let loaded = state.db().load().await.unwrap();
    assert!(
        loaded.config.maintenance.is_empty()
            && !loaded.config.groups.iter().any(|g| g.path == "Site")
    );
    let (status, _, page) = send(&state, get("/config", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<em>file</em>"),
        "file-managed items are marked"
    );
}

/// 10,000 sensors in 10 groups, one of them down: the first view is the
/// problems and the groups' summaries (under 200 KB), and a group's sensors
/// come page by page, the problems first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_dashboard_leads_with_problems_and_pages_each_group() {
    let dir = TempDir::new("web-large");
    let db = dir.path.join("portwatch.db");
    let mut config = String::new();
    for g in 0..10 {
        config += &format!("[[group]]\nname = \"G{g}\"\n");
    }
    for g in 0..10 {
        for v in 0..10 {
            config += &format!(
                "[[server]]\nname = \"s{g}-{v}\"\nhost = \"127.0.0.1\"\ngroup = \"G{g}\"\n"
            );
            for port in 1..=100 {
                config += &format!("  [[server.sensor]]\n  name = \"p{port}\"\n  port = {port}\n");
            }
        }
    }
    let mut store = Store::open(&db).unwrap();
    store.apply(&from_toml("t.toml", &config).unwrap()).unwrap();
    store
        .create_user("admin", "admin-password", Role::Admin)
        .unwrap();
    drop(store);
    let state = AppState::new(portwatch::store::Db::open(&db, 16).unwrap(), None, None);
    let down = sensor_id(&state, "s7-3/p1").await;
    let now = jiff::Timestamp::now().as_millisecond();
    set_state(
        &state,
        down,
        portwatch::monitor::state::State::Down,
        now - 5_000,
    )
    .await;
    let (cookie, _) = sign_in(&state, "admin", "admin-password").await;

    let (status, _, page) = send(&state, get("/", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.len() < 200_000,
        "the first view is {} bytes",
        page.len()
    );
    let rows = page.matches("<tr class=\"sensor\"").count();
    // The problem, then its group open on its problems; the nine quiet
    // groups are summaries.
    assert_eq!(rows, 1 + 1, "{rows} rows");
    assert_eq!(page.matches("class=\"group quiet\"").count(), 9);
    let hot = page.find("data-group=\"G7\"").unwrap();
    assert!(
        hot < page.find("data-group=\"G0\"").unwrap(),
        "the group with the problem first"
    );
    assert!(
        page.contains("href=\"/?group=G0\">Show its 1000 sensors</a>"),
        "{page}"
    );
    assert!(
        page.contains("href=\"/?group=G7\">All 1000 sensors of G7</a>"),
        "{page}"
    );

    // A group, page by page.
    let (_, _, hot) = send(&state, get("/?group=G7", Some(&cookie))).await;
    let first_row = hot.find("<tr class=\"sensor\"").unwrap();
    assert!(
        hot[first_row..].find("s7-3/p1").unwrap() < hot[first_row..].find("s7-0/p1").unwrap(),
        "the problem leads its group's first page"
    );
    let (_, _, first) = send(&state, get("/?group=G0", Some(&cookie))).await;
    assert_eq!(first.matches("<tr class=\"sensor\"").count(), 200);
    assert!(first.contains("G0: sensors 1–200 of 1000"), "{first}");
    assert!(
        first.contains("href=\"/?group=G0&amp;page=2\" rel=\"next\"")
            || first.contains("href=\"/?group=G0&#38;page=2\" rel=\"next\""),
        "{first}"
    );
    assert!(!first.contains("rel=\"prev\""));
    let (_, _, last) = send(&state, get("/?group=G0&page=5", Some(&cookie))).await;
    assert!(last.contains("G0: sensors 801–1000 of 1000"), "{last}");
    assert!(!last.contains("rel=\"next\"") && last.contains("rel=\"prev\""));
    assert!(!last.contains("data-group=\"G1\""), "one group only");
    // A filter shows what matches, every group open up to a page.
    let (_, _, found) = send(&state, get("/?q=s3-4", Some(&cookie))).await;
    assert_eq!(found.matches("<tr class=\"sensor\"").count(), 100);
    assert!(!found.contains("The filter stopped"), "{found}");
    // A filter that matches every sensor stops at the first 5,000 it
    // reads, by the search index (three characters or more) or without
    // it, and says so; the problem is still found first.
    for text in ["127.0.0", "/p", "g"] {
        let (status, _, everything) =
            send(&state, get(&format!("/?q={text}"), Some(&cookie))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            everything.contains("The filter stopped at the first 5000 matching sensors"),
            "{text}: {everything}"
        );
        let problems = everything.find("id=\"problems\"").unwrap();
        assert!(everything[problems..].contains("s7-3/p1"), "{text}");
        // 500 rows at most; the groups past them are summaries.
        let rows = everything.matches("<tr class=\"sensor\"").count();
        assert!(rows <= 1 + 500, "{text}: {rows} rows");
        assert!(everything.contains("class=\"group quiet\""), "{text}");
    }
}

#[tokio::test]
async fn metrics_access_is_configurable() {
    use portwatch::web::MetricsAccess;
    let (_dir, state) = setup();
    let from =
        |ip: [u8; 4]| {
            let mut request = get("/metrics", None);
            request.extensions_mut().insert(axum::extract::ConnectInfo(
                std::net::SocketAddr::from((ip, 40000)),
            ));
            request
        };
    let loopback = state.clone().with_metrics_access(MetricsAccess::Loopback);
    assert_eq!(
        send(&loopback, from([127, 0, 0, 1])).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&loopback, from([192, 0, 2, 9])).await.0,
        StatusCode::UNAUTHORIZED
    );
    let token_only = state.clone().with_metrics_access(MetricsAccess::Token);
    assert_eq!(
        send(&token_only, from([127, 0, 0, 1])).await.0,
        StatusCode::UNAUTHORIZED
    );
    let open = state.clone().with_metrics_access(MetricsAccess::Open);
    assert_eq!(send(&open, from([192, 0, 2, 9])).await.0, StatusCode::OK);
    // Behind a reverse proxy on loopback (hardening #5): forwarded
    // addresses are believed only from a trusted proxy, and then decide.
    let forwarded = |ip: [u8; 4], client: &str| {
        let mut request = from(ip);
        request
            .headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        request
    };
    let proxied = state
        .clone()
        .with_trusted_proxies(vec!["127.0.0.1/32".parse().unwrap()]);
    assert_eq!(
        send(&proxied, forwarded([127, 0, 0, 1], "203.0.113.5"))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "a visitor of the proxy is not loopback"
    );
    assert_eq!(
        send(&proxied, forwarded([127, 0, 0, 1], "127.0.0.1"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(&proxied, forwarded([192, 0, 2, 9], "127.0.0.1"))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "only the trusted proxy is believed"
    );
    assert_eq!(
        send(&loopback, forwarded([127, 0, 0, 1], "203.0.113.5"))
            .await
            .0,
        StatusCode::OK,
        "without --trusted-proxy the header means nothing"
    );
}

/// Hardening "also": text a monitored server sent is shown with its
/// hidden and text-direction characters escaped.
async fn server_replies_show_hidden_characters_escaped(_dir: TempDir, state: AppState) {
    let id = sensor_id(&state, "db/postgresql").await;
    let (writer, thread) = state.db().writer().unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    writer.result(
        portwatch::store::pack::StoredResult {
            sensor: id,
            at_ms: now,
            status: portwatch::probe::Status::Down,
            reason: portwatch::probe::Reason::ProtocolMismatch,
            rtt_us: Some(100),
        },
        portwatch::store::writer::LastCheck {
            state: portwatch::monitor::state::State::Down,
            since_ms: now,
            message: "banner: admin\u{202E}gpj.exe\r\nforged".into(),
            details: None,
        },
    );
    drop(writer);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    let (cookie, _) = sign_in(&state, "admin", "admin-password").await;
    let (_, _, page) = send(&state, get(&format!("/sensors/{id}"), Some(&cookie))).await;
    assert!(
        !page.contains('\u{202E}') && !page.contains("\r\nforged"),
        "raw characters reached the page"
    );
    assert!(
        page.contains("admin\\u{202e}gpj.exe\\u{000d}\\u{000a}forged"),
        "{page}"
    );
    // The check is the heartbeat bar's one tick; the uptime table has its
    // four periods.
    assert!(page.contains("<h2>Last 1 checks</h2>"), "{page}");
    assert!(
        page.contains("UTC: down (protocol_mismatch)</title>"),
        "{page}"
    );
    for period in ["24 hours", "7 days", "30 days", "90 days"] {
        assert!(
            page.contains(&format!("<td>Last {period}</td>")),
            "{period}: {page}"
        );
    }
}

async fn the_api_covers_groups_servers_windows_and_status_pages(_dir: TempDir, state: AppState) {
    let token = state
        .db()
        .create_token("ops".into(), Role::Admin)
        .await
        .unwrap();
    let call = |method: &str, path: &str, body: &str| api(&token, method, path, body);
    let cases: &[(&str, &str, &str, StatusCode)] = &[
        (
            "POST",
            "/api/groups",
            r#"{"name":"Edge","interval":"15s","retries":2}"#,
            StatusCode::NO_CONTENT,
        ),
        (
            "POST",
            "/api/groups",
            r#"{"name":"Edge","interval":"soon"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/servers",
            r#"{"name":"lb1","host":"192.0.2.5","group":"Edge","tags":["eu","lb"]}"#,
            StatusCode::NO_CONTENT,
        ),
        (
            "POST",
            "/api/servers",
            r#"{"name":"lb2","host":"192.0.2.6","depends_on":"lb1/none"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/maintenance",
            r#"{"name":"patch","every":"weekday","start":"03:00","duration":"30m","servers":["db"]}"#,
            StatusCode::CREATED,
        ),
        (
            "POST",
            "/api/maintenance",
            r#"{"name":"patch","every":"someday","start":"03:00","duration":"30m","servers":["db"]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/status-pages",
            r#"{"slug":"edge","title":"Edge","names":["db"]}"#,
            StatusCode::NO_CONTENT,
        ),
        ("DELETE", "/api/groups/Edge", "", StatusCode::BAD_REQUEST),
        ("DELETE", "/api/servers/lb1", "", StatusCode::NO_CONTENT),
        ("DELETE", "/api/groups/Edge", "", StatusCode::NO_CONTENT),
        (
            "DELETE",
            "/api/status-pages/edge",
            "",
            StatusCode::NO_CONTENT,
        ),
    ];
    for (method, path, body, want) in cases {
        let (status, _, text) = send(&state, call(method, path, body)).await;
        assert_eq!(status, *want, "{method} {path} {body}: {text}");
    }
    let (_, _, windows) = send(&state, call("GET", "/api/maintenance", "")).await;
    let windows: serde_json::Value = serde_json::from_str(&windows).unwrap();
    assert_eq!(windows[0]["name"], "patch");
    let (_, _, servers) = send(&state, call("GET", "/api/servers", "")).await;
    assert!(
        servers.contains("\"db\"") && !servers.contains("lb1"),
        "{servers}"
    );
}

async fn servers_and_groups_pause_and_resume_from_the_configuration_page(
    _dir: TempDir,
    state: AppState,
) {
    let (cookie, csrf) = sign_in(&state, "admin", "admin-password").await;
    let (status, _, _) = send(
        &state,
        post_form(
            "/config/group/pause",
            Some(&cookie),
            &format!("csrf={csrf}&name=Prod"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let paused = state.db().load().await.unwrap().paused;
    assert_eq!(paused.len(), 1, "the group's one sensor");
    let (status, _, _) = send(
        &state,
        post_form("/config/server/pause", Some(&cookie), "name=db"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token, no change");
    let (status, _, _) = send(
        &state,
        post_form(
            "/config/group/resume",
            Some(&cookie),
            &format!("csrf={csrf}&name=Prod"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(state.db().load().await.unwrap().paused.is_empty());
}

async fn the_api_shows_notifications_and_their_delivery(_dir: TempDir, state: AppState) {
    use portwatch::monitor::state::{Change, State};
    let id = sensor_id(&state, "db/postgresql").await;
    let (writer, thread) = state.db().writer().unwrap();
    let payload = portwatch::notify::Payload {
        sensor: "db/postgresql".into(),
        server: "db".into(),
        group: None,
        host: "127.0.0.1".into(),
        port: 5432,
        from: "up".into(),
        to: "down".into(),
        reason: Some("refused".into()),
        message: "connection refused".into(),
        at: "2026-11-23T20:00:00Z".into(),
        since: "2026-11-23T20:00:00Z".into(),
        kind: portwatch::notify::Kind::Change,
        response_ms: None,
        link: None,
        suppressed: None,
        title: "db/postgresql is DOWN".into(),
        text: "db/postgresql is DOWN".into(),
    };
    let change = Change {
        from: State::Up,
        to: State::Down,
        reason: None,
        message: "down".into(),
    };
    writer
        .event_notifying(id, 1, change, vec![("pager".into(), payload)])
        .await
        .unwrap();
    drop(writer);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    let (cookie, _) = sign_in(&state, "viewer", "viewer-password").await;
    let (status, _, body) = send(&state, get("/api/notifications", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows[0]["channel"], "pager");
    assert_eq!(rows[0]["to"], "down");
    assert_eq!(rows[0]["attempts"], 0);
    assert!(rows[0]["delivered_ms"].is_null());
    // A receiver's error reply is for admins only (hardening #14).
    let outbox_id = rows[0]["id"].as_i64().unwrap();
    state
        .db()
        .delivery_failed(outbox_id, "HTTP 500: internal reply body".into(), 0)
        .await
        .unwrap();
    let (_, _, body) = send(&state, get("/api/notifications", Some(&cookie))).await;
    assert!(!body.contains("internal reply body"), "{body}");
    assert!(body.contains("(shown to admins only)"), "{body}");
    let (_, _, page) = send(&state, get("/notifications", Some(&cookie))).await;
    assert!(!page.contains("internal reply body"));
    let (admin, _) = sign_in(&state, "admin", "admin-password").await;
    let (_, _, body) = send(&state, get("/api/notifications", Some(&admin))).await;
    assert!(body.contains("HTTP 500: internal reply body"), "{body}");
}

async fn channels_and_rules_are_edited_through_the_api_and_pages_without_showing_secrets(
    _dir: TempDir,
    state: AppState,
) {
    let (admin, read) = {
        (
            state
                .db()
                .create_token("ci".into(), Role::Admin)
                .await
                .unwrap(),
            state
                .db()
                .create_token("ro".into(), Role::Read)
                .await
                .unwrap(),
        )
    };
    let json = api;
    let hook = r#"{"name":"chat","webhook":"https://hooks.slack.com/services/T0/B0/s3cr3t","preset":"slack","template":"{summary} <{link}>","rate_limit":3}"#;
    let (status, _, body) = send(&state, json(&read, "POST", "/api/channels", hook)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = send(&state, json(&admin, "POST", "/api/channels", hook)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!body.contains("s3cr3t"), "{body}");
    // Validated like the file: the message names the problem and the fix.
    for (bad, says) in [
        (
            r#"{"name":"x","webhook":"ftp://h/"}"#,
            "is not an http:// or https:// URL",
        ),
        (
            r#"{"name":"x","webhook":"http://h/","template":"{sensr}"}"#,
            "unknown placeholder {sensr}",
        ),
        (
            r#"{"name":"x","command":["/bin/sh"]}"#,
            "declare them in portwatch.toml",
        ),
        (
            r#"{"name":"x","smtp":"m","from":"a@b.c","to":["not an address"]}"#,
            "is not a mail address",
        ),
    ] {
        let (status, _, body) = send(&state, json(&admin, "POST", "/api/channels", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains(says), "{bad}: {body}");
    }
    let rule = r#"{"channel":"chat","on":["escalation"],"after":"30m","servers":["db"]}"#;
    let (status, _, body) = send(&state, json(&admin, "POST", "/api/rules", rule)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["after"], "30m");
    for (bad, says) in [
        (
            r#"{"channel":"nope","on":["down"]}"#,
            "unknown channel 'nope'",
        ),
        (
            r#"{"channel":"chat","on":["repeat"]}"#,
            "a repeat needs 'every'",
        ),
        (
            r#"{"channel":"chat","on":["down"],"servers":["ghost"]}"#,
            "unknown server 'ghost'",
        ),
    ] {
        let (status, _, body) = send(&state, json(&admin, "POST", "/api/rules", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains(says), "{bad}: {body}");
    }
    // The monitor reads them like the file's.
    let (channels, rules) = state.db().notifications().await.unwrap();
    assert_eq!(channels[0].options.rate_limit, 3);
    assert_eq!(rules[0].after_s, Some(1800));
    let (status, _, body) = send(&state, json(&read, "GET", "/api/channels", "")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("https://hooks.slack.com/…") && !body.contains("s3cr3t"),
        "{body}"
    );
    // A channel in use cannot go; its rule first.
    let (status, _, body) = send(&state, json(&admin, "DELETE", "/api/channels/chat", "")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("rules still send to 'chat'"), "{body}");
    let id = created["id"].as_i64().unwrap();
    let (status, _, _) = send(
        &state,
        json(&admin, "DELETE", &format!("/api/rules/{id}"), ""),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = send(&state, json(&admin, "DELETE", "/api/channels/chat", "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The page: forms with CSRF, errors next to the form, escaping.
    let (cookie, csrf) = sign_in(&state, "admin", "admin-password").await;
    let (status, _, _) = send(
        &state,
        post_form(
            "/notifications/channel",
            Some(&cookie),
            "name=ops&smtp=mail.example.com&from=pw%40example.com&to=a%40example.com",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let (status, _, _) = send(
        &state,
        post_form(
            "/notifications/channel",
            Some(&cookie),
            &format!("csrf={csrf}&name=ops&smtp=mail.example.com&from=pw%40example.com&to=a%40example.com%2C+b%40example.com&password_env=SMTP_PW"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, page) = send(
        &state,
        post_form(
            "/notifications/rule",
            Some(&cookie),
            &format!("csrf={csrf}&channel=ops&on=down%2C+sideways"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("id=\"error-rule\"") && page.contains("unknown trigger &#39;sideways&#39;"),
        "{page}"
    );
    let (status, _, _) = send(
        &state,
        post_form(
            "/notifications/rule",
            Some(&cookie),
            &format!("csrf={csrf}&channel=ops&on=down%2C+up&groups=Prod"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, page) = send(&state, get("/notifications", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("a@example.com, b@example.com via mail.example.com"),
        "{page}"
    );
    assert!(page.contains("<td>down, up</td><td>Prod</td>"), "{page}");
    let (_, rules) = state.db().notifications().await.unwrap();
    assert_eq!(rules.len(), 1);
}

/// The web and API tests above, each on SQLite and again on PostgreSQL
/// (a cluster of its own): one body, both stores.
/// Stores a check's result for sensor `id`, leaving it in `state`.
async fn set_state(state: &AppState, id: i64, to: portwatch::monitor::state::State, at_ms: i64) {
    set_states(state, id, &[(to, at_ms)]).await;
}

/// Records a state change of sensor `id` (from UP) as the monitor does.
async fn record_change(
    state: &AppState,
    id: i64,
    to: portwatch::monitor::state::State,
    at_ms: i64,
) {
    let (writer, thread) = state.db().writer().unwrap();
    writer
        .event(
            id,
            at_ms,
            portwatch::monitor::state::Change {
                from: portwatch::monitor::state::State::Up,
                to,
                reason: Some(portwatch::probe::Reason::Refused),
                message: "connection <refused>".into(),
            },
        )
        .await
        .unwrap();
    drop(writer);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
}

/// Writes checks of sensor `id` that leave it in each state in turn, with
/// one writer (so that the hours they close are rolled up).
async fn set_states(state: &AppState, id: i64, checks: &[(portwatch::monitor::state::State, i64)]) {
    let (writer, thread) = state.db().writer().unwrap();
    for &(to, at_ms) in checks {
        let down = to == portwatch::monitor::state::State::Down;
        writer.result(
            portwatch::store::pack::StoredResult {
                sensor: id,
                at_ms,
                status: if down {
                    portwatch::probe::Status::Down
                } else {
                    portwatch::probe::Status::Up
                },
                reason: if down {
                    portwatch::probe::Reason::Refused
                } else {
                    portwatch::probe::Reason::Connected
                },
                rtt_us: (!down).then_some(250),
            },
            portwatch::store::writer::LastCheck {
                state: to,
                since_ms: at_ms,
                message: if down {
                    "connection refused".into()
                } else {
                    "Connected".into()
                },
                details: None,
            },
        );
    }
    drop(writer);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
}

async fn the_dashboard_puts_problems_first(_dir: TempDir, state: AppState) {
    use portwatch::monitor::state::State;
    let (cookie, _) = sign_in(&state, "admin", "admin-password").await;
    let edge = sensor_id(&state, "<img src=x onerror=alert(1)>/ssh").await;
    let db = sensor_id(&state, "db/postgresql").await;
    let now = jiff::Timestamp::now().as_millisecond();
    // A check two hours ago: its hour is closed, so rolled up.
    set_states(
        &state,
        db,
        &[(State::Up, now - 7_200_000), (State::Up, now - 60_000)],
    )
    .await;
    set_state(&state, edge, State::Down, now - 90_000).await;
    let (status, _, page) = send(&state, get("/", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    // Each row: a bar of its last checks (a tooltip each), uptime over 24
    // hours and 30 days from the rollups.
    let row_of = |page: &str, id: i64| {
        let start = page
            .find(&format!("data-id=\"{id}\""))
            .unwrap_or_else(|| panic!("row {id} in {page}"));
        page[start..][..page[start..].find("</tr>").unwrap()].to_owned()
    };
    let edge_row = row_of(&page, edge);
    let at = jiff::Timestamp::from_millisecond(now - 90_000).unwrap();
    let (day, time) = (
        at.strftime("%m-%d %H:%M").to_string(),
        at.strftime("%H:%M:%S").to_string(),
    );
    assert!(
        edge_row.contains(&format!(
            "<i class=t-down title=\"{time} UTC down refused\"></i>"
        )) || edge_row.contains(&format!(
            "<i class=t-down title=\"{day} UTC down refused\"></i>"
        )),
        "{edge_row}"
    );
    let db_row = row_of(&page, db);
    assert_eq!(db_row.matches("<i class=t-up ").count(), 2, "{db_row}");
    assert!(
        db_row.contains("data-label=\"uptime 24 h\">100%</td>")
            && db_row.contains("data-label=\"30 d\">100%</td>"),
        "{db_row}"
    );
    assert!(page.contains("<title>(1) portwatch</title>"), "{page}");
    // The problems first, then the group with the problem (Prod sorts after
    // "(no group)" by name, but has the problem), open.
    let at = |needle: &str| {
        page.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {page}"))
    };
    let problems = at("id=\"problems\"");
    let prod = at("<details class=\"group\" data-group=\"Prod\" open>");
    let other = at("data-group=\"(no group)\"");
    assert!(problems < prod && prod < other, "{page}");
    let section = &page[problems..prod];
    assert!(
        section.contains(&format!("href=\"/sensors/{edge}\""))
            && section.contains("data-state=\"down\""),
        "{section}"
    );
    assert!(
        !section.contains(&format!("href=\"/sensors/{db}\"")),
        "an UP sensor is no problem"
    );
    // One table per group, with headers; human times with the exact one.
    assert!(
        page.contains(
            "<th scope=\"col\" aria-sort=\"none\"><a href=\"/?sort=sensor\">Sensor</a></th>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<link rel=\"icon\" href=\"data:image/svg+xml,"),
        "{page}"
    );
    // Sorted by a column: its header says so and links to the other way.
    let (_, _, sorted) = send(&state, get("/?sort=since", Some(&cookie))).await;
    assert!(
        sorted.contains(
            "aria-sort=\"ascending\" class=\"num\"><a href=\"/?sort=since&#38;desc=1\">Since ▲</a>"
        ),
        "{sorted}"
    );
    let exact = jiff::Timestamp::from_millisecond(now - 90_000)
        .unwrap()
        .strftime("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    assert!(page.contains(&format!("title=\"{exact}\">1m 3")), "{page}");
    assert!(
        page.contains("<span class=\"badge state-down\">1 down</span>"),
        "{page}"
    );
    // Fixed: no problems section, no count in the title.
    set_state(&state, edge, State::Up, now).await;
    let (_, _, page) = send(&state, get("/", Some(&cookie))).await;
    assert!(page.contains("<title>portwatch</title>"), "{page}");
    assert!(
        page.contains("id=\"all-well\"") && !page.contains("id=\"problems\""),
        "{page}"
    );
}

/// The dashboard's live stream: a state change stored after the page was
/// drawn arrives as an event with the sensor's new state, then the counts
/// and title; without a sign-in there is no stream.
async fn the_dashboard_streams_state_changes(_dir: TempDir, state: AppState) {
    use axum::body::HttpBody;
    use portwatch::monitor::state::State;
    let (cookie, _) = sign_in(&state, "admin", "admin-password").await;
    let id = sensor_id(&state, "db/postgresql").await;
    let now = jiff::Timestamp::now().as_millisecond();
    let (status, _, _) = send(&state, get(&format!("/live?since={now}"), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = app(state.clone())
        .oneshot(get(&format!("/live?since={now}"), Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    record_change(&state, id, State::Down, now + 10).await;
    // Read the stream until the counts that follow the change.
    let mut body = response.into_body();
    let mut text = String::new();
    let read = async {
        while !text.contains("event: counts") {
            let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx))
                .await
                .expect("the stream goes on")
                .unwrap();
            if let Some(data) = frame.data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("the change arrives");
    let change = text
        .lines()
        .skip_while(|l| *l != "event: state")
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("{text}"));
    let change: serde_json::Value = serde_json::from_str(change).unwrap();
    assert_eq!(change["id"], id);
    assert_eq!(change["path"], "db/postgresql");
    assert_eq!(
        (&change["state"], &change["class"]),
        (&"down".into(), &"down".into())
    );
    assert_eq!(change["reason"], "refused");
    assert!(text.contains("\"title\":\"(1) portwatch\""), "{text}");
    assert!(text.contains("\"down\":1"), "{text}");
}

/// A heartbeat sensor's push URL: made by an admin (shown once, on the
/// page or through the API), called with GET or POST (no sign-in), its
/// status, message and duration stored; bad values, unknown tokens and
/// floods refused; a new URL retires the old one.
async fn heartbeat_push_urls_take_pushes(_dir: TempDir, state: AppState) {
    state
        .db()
        .apply(
            from_toml(
                "t.toml",
                &format!(
                    "{CONFIG}[[server]]\nname = \"backup\"\nhost = \"localhost\"\n[[server.sensor]]\nname = \"nightly\"\nkind = \"heartbeat\"\nevery = \"1d\"\n"
                ),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let (cookie, csrf) = sign_in(&state, "admin", "admin-password").await;
    let id = sensor_id(&state, "backup/nightly").await;
    let (_, _, page) = send(&state, get(&format!("/sensors/{id}"), Some(&cookie))).await;
    assert!(
        page.contains("heartbeat: a push every 1d, with 144m grace")
            && page.contains("No push URL yet"),
        "{page}"
    );
    // A TCP sensor has no push URL.
    let db = sensor_id(&state, "db/postgresql").await;
    let (status, _, body) = send(
        &state,
        post_form(
            &format!("/sensors/{db}/push-url"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Made on the page: shown once, with examples.
    let mut request = post_form(
        &format!("/sensors/{id}/push-url"),
        Some(&cookie),
        &format!("csrf={csrf}"),
    );
    request
        .headers_mut()
        .insert(header::HOST, "monitor.example:8080".parse().unwrap());
    let (status, _, page) = send(&state, request).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let start = page
        .find("http://monitor.example:8080/push/")
        .expect("the URL")
        + "http://monitor.example:8080".len();
    let path = page[start..].split('<').next().unwrap().to_owned();
    assert!(page.contains("crontab"), "{page}");
    // Pushes: no sign-in; GET and POST.
    let (status, _, body) = send(&state, get(&format!("{path}?msg=started"), None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, _, body) = send(
        &state,
        Request::post(format!("{path}?status=down&msg=disk%20full&duration=12.5"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let pushes = state.db().pushes(id).await.unwrap().unwrap();
    let last = pushes.last.unwrap();
    assert_eq!(
        (last.down, last.message.as_str(), last.duration_ms),
        (true, "disk full", Some(12_500))
    );
    let (_, _, page) = send(&state, get(&format!("/sensors/{id}"), Some(&cookie))).await;
    assert!(
        page.contains("(reported a failure), took 12s: disk full."),
        "{page}"
    );
    // Bad values and unknown tokens.
    let (status, _, body) = send(&state, get(&format!("{path}?status=maybe"), None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, "status: 'maybe' is not a status: use up or down\n");
    let (status, _, _) = send(&state, get("/push/0123456789abcdef", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A new URL through the API: the old one stops working.
    let token = state
        .db()
        .create_token("ops".into(), Role::Admin)
        .await
        .unwrap();
    let (status, headers, body) = send(
        &state,
        api(&token, "POST", &format!("/api/sensors/{id}/push-url"), ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let url: serde_json::Value = serde_json::from_str(&body).unwrap();
    let new_path = format!(
        "/push/{}",
        url["url"].as_str().unwrap().rsplit('/').next().unwrap()
    );
    let (status, _, _) = send(&state, get(&path, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the old URL is dead");
    // Ten a minute per URL; the eleventh is refused.
    for n in 0..9 {
        let (status, _, _) = send(&state, get(&new_path, None)).await;
        assert_eq!(status, StatusCode::OK, "push {n}");
    }
    let (status, _, _) = send(&state, get(&new_path, None)).await;
    assert_eq!(status, StatusCode::OK, "the tenth");
    let (status, headers, _) = send(&state, get(&new_path, None)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "60");
    // Heartbeat sensors made through the API and the form, their
    // settings checked like the file's.
    add_sensors(&state, &token, &[
        (
            r#"{"server": "ci", "host": "ci.internal", "kind": "heartbeat", "every": "1h"}"#,
            StatusCode::CREATED,
            "",
        ),
        (
            r#"{"server": "ci", "host": "ci.internal", "kind": "heartbeat", "port": 22}"#,
            StatusCode::BAD_REQUEST,
            "port: a heartbeat sensor has no port",
        ),
        (
            r#"{"server": "ci", "host": "ci.internal", "kind": "heartbeat", "name": "x", "every": "10s"}"#,
            StatusCode::BAD_REQUEST,
            "every: every must be from 1m to 400d",
        ),
        (
            r#"{"server": "ci", "host": "ci.internal", "port": 22, "grace": "1h"}"#,
            StatusCode::BAD_REQUEST,
            "grace: 'every' and 'grace' are for heartbeat sensors",
        ),
    ])
    .await;
    let made = sensor_id(&state, "ci/heartbeat").await;
    let (_, _, overrides, _) = state.db().sensor_settings(made).await.unwrap();
    assert_eq!(
        overrides
            .heartbeat
            .map(|h| (h.every.as_secs(), h.grace.as_secs())),
        Some((3600, 360))
    );
    let (status, _, page) = send(
        &state,
        post_form(
            "/sensors/new",
            Some(&cookie),
            &format!("csrf={csrf}&server=ci&host=ci.internal&kind=heartbeat&name=deploy&every=10s"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("id=\"error-every\">every must be from 1m to 400d"),
        "{page}"
    );
    let (status, headers, _) = send(
        &state,
        post_form(
            "/sensors/new",
            Some(&cookie),
            &format!("csrf={csrf}&server=ci&host=ci.internal&kind=heartbeat&name=deploy&every=1h&grace=5m"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    let (_, _, page) = send(&state, get(&location, Some(&cookie))).await;
    assert!(
        page.contains("heartbeat: a push every 1h, with 5m grace"),
        "{page}"
    );
    // Edited: its period and grace, never a port.
    let edit = format!("{location}/edit");
    let (_, _, page) = send(&state, get(&edit, Some(&cookie))).await;
    assert!(
        page.contains("name=\"every\" value=\"1h\"")
            && page.contains("name=\"grace\" value=\"5m\"")
            && !page.contains("name=\"port\""),
        "{page}"
    );
    let (status, _, page) = send(
        &state,
        post_form(
            &edit,
            Some(&cookie),
            &format!("csrf={csrf}&kind=heartbeat&every=1h&grace=3h"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("id=\"error-grace\">grace must not be longer than every"),
        "{page}"
    );
    let (status, _, _) = send(
        &state,
        post_form(
            &edit,
            Some(&cookie),
            &format!("csrf={csrf}&kind=heartbeat&every=2h&grace=10m"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = send(&state, get(&location, Some(&cookie))).await;
    assert!(
        page.contains("heartbeat: a push every 2h, with 10m grace"),
        "{page}"
    );
    // In /metrics: no port, the service says what it is.
    let (_, _, metrics) = send(&state, api(&token, "GET", "/metrics", "")).await;
    assert!(
        metrics.contains("server=\"backup\",sensor=\"nightly\",host=\"localhost\",port=\"\",service=\"heartbeat\"}"),
        "{metrics}"
    );
    // A read-only account cannot make one.
    let (viewer, viewer_csrf) = sign_in(&state, "viewer", "viewer-password").await;
    let (status, _, _) = send(
        &state,
        post_form(
            &format!("/sensors/{id}/push-url"),
            Some(&viewer),
            &format!("csrf={viewer_csrf}"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// HTTP content settings through the API (every key, checked as the
/// file's, field named on error) and the forms (the content fields; what
/// the form does not show, such as headers and auth, kept on edit).
async fn http_content_settings_through_the_api_and_the_forms(_dir: TempDir, state: AppState) {
    let (cookie, csrf, token) = admin(&state).await;
    add_sensors(&state, &token, &[
        (
            r#"{"server": "shop", "host": "shop.example", "port": 8080, "name": "api", "http": {"path": "/health", "headers": {"X-Key": "k"}, "auth": {"scheme": "bearer", "env": "SHOP_TOKEN"}, "json": {"path": "status", "equals": "ok"}, "follow": true}}"#,
            StatusCode::CREATED,
            "",
        ),
        (
            r#"{"server": "shop", "host": "shop.example", "port": 80, "http": {"json": {"path": "a..b"}}}"#,
            StatusCode::BAD_REQUEST,
            "http.json: 'a..b' is not a JSON path",
        ),
        (
            r#"{"server": "shop", "host": "shop.example", "port": 80, "http": {"auth": {"scheme": "basic", "env": "PW"}}}"#,
            StatusCode::BAD_REQUEST,
            "http.auth: basic http_auth needs user",
        ),
        (
            r#"{"server": "shop", "host": "shop.example", "port": 22, "protocol": "ssh", "http": {"contains": "x"}}"#,
            StatusCode::BAD_REQUEST,
            "protocol: http_* settings are for HTTP, not ssh",
        ),
        (
            r#"{"server": "shop", "host": "shop.example", "port": 80, "http": {"password": "x"}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "password",
        ),
    ])
    .await;
    let made = sensor_id(&state, "shop/api").await;
    let (_, _, overrides, _) = state.db().sensor_settings(made).await.unwrap();
    let probe = overrides.probe.expect("HTTP settings stored");
    assert_eq!(probe.http_path.as_deref(), Some("/health"));
    assert_eq!(probe.http_follow, Some(true));
    let options = probe.options().unwrap().expect("an HTTP check");
    assert_eq!(options.http.method, "GET");
    assert_eq!(
        options.plan(8080).map(|p| p.protocol.as_str()),
        Some("http")
    );

    // The form: a bad content field is named; a good one is stored.
    let (status, _, page) = send(
        &state,
        post_form(
            "/sensors/new",
            Some(&cookie),
            &format!("csrf={csrf}&server=shop&host=shop.example&port=80&name=home&http_regex=%28"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("id=\"error-http\">&#39;(&#39; is not a regular expression")
            || page.contains("id=\"error-http\">&#x27;(&#x27; is not a regular expression"),
        "{page}"
    );
    let (status, headers, _) = send(
        &state,
        post_form(
            "/sensors/new",
            Some(&cookie),
            &format!("csrf={csrf}&server=shop&host=shop.example&port=80&name=home&http_contains=Welcome&http_absent=Fatal&http_follow=1"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let home = sensor_id(&state, "shop/home").await;
    let (_, _, overrides, _) = state.db().sensor_settings(home).await.unwrap();
    let probe = overrides.probe.unwrap();
    assert_eq!(
        (
            probe.http_contains.as_deref(),
            probe.http_absent.as_deref(),
            probe.http_follow
        ),
        (Some("Welcome"), Some("Fatal"), Some(true))
    );
    assert!(headers.contains_key(header::LOCATION));

    // Edit: the form shows the content fields; headers and auth, which it
    // does not show, are kept.
    let edit = format!("/sensors/{made}/edit");
    let (_, _, page) = send(&state, get(&edit, Some(&cookie))).await;
    assert!(
        page.contains("name=\"http_json\" value=\"status=ok\"")
            && page.contains("name=\"http_path\" value=\"/health\""),
        "{page}"
    );
    assert!(!page.contains("SHOP_TOKEN"), "auth is not on the form");
    let (status, _, page) = send(
        &state,
        post_form(
            &edit,
            Some(&cookie),
            &format!("csrf={csrf}&port=8080&http_path=/health&http_json=status%3Dfine&http_contains=ready"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (_, _, overrides, _) = state.db().sensor_settings(made).await.unwrap();
    let probe = overrides.probe.unwrap();
    assert_eq!(probe.http_contains.as_deref(), Some("ready"));
    assert_eq!(probe.http_json.unwrap().equals.as_deref(), Some("fine"));
    assert_eq!(probe.http_follow, None, "unticked");
    assert_eq!(probe.http_auth.unwrap().env.as_deref(), Some("SHOP_TOKEN"));
    assert_eq!(
        probe.http_headers.unwrap().get("X-Key").map(String::as_str),
        Some("k")
    );
    let (status, _, page) = send(
        &state,
        post_form(
            &edit,
            Some(&cookie),
            &format!("csrf={csrf}&port=8080&http_json=a..b"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"error-http_json\">"), "{page}");
}

/// DNS sensors through the API and the forms: checked as the file's,
/// their question on the sensor page, edited with their own fields.
async fn dns_sensors_through_the_api_and_the_forms(_dir: TempDir, state: AppState) {
    let (cookie, csrf, token) = admin(&state).await;
    add_sensors(&state, &token, &[
        (
            r#"{"server": "ns1", "host": "192.0.2.53", "kind": "dns", "dns": {"query": "www.example.com", "expect": ["192.0.2.10"]}}"#,
            StatusCode::CREATED,
            "",
        ),
        (
            r#"{"server": "ns1", "host": "192.0.2.53", "kind": "dns"}"#,
            StatusCode::BAD_REQUEST,
            "dns: a DNS sensor needs",
        ),
        (
            r#"{"server": "ns1", "host": "192.0.2.53", "kind": "dns", "name": "x", "dns": {"query": "a b"}}"#,
            StatusCode::BAD_REQUEST,
            "dns.query: 'a b' is not a DNS name",
        ),
        (
            r#"{"server": "ns1", "host": "192.0.2.53", "kind": "dns", "name": "x", "dns": {"query": "x.example", "record": "AXFR"}}"#,
            StatusCode::BAD_REQUEST,
            "dns.record: unknown record type",
        ),
        (
            r#"{"server": "ns1", "host": "192.0.2.53", "port": 53, "dns": {"query": "x.example"}}"#,
            StatusCode::BAD_REQUEST,
            "DNS settings are for DNS sensors",
        ),
    ])
    .await;
    let made = sensor_id(&state, "ns1/dns").await;
    let row = state.db().status_of(made).await.unwrap();
    assert_eq!(row.port, 53, "a name server's port by default");
    let (_, _, page) = send(&state, get(&format!("/sensors/{made}"), Some(&cookie))).await;
    assert!(
        page.contains("DNS: A www.example.com, expecting 192.0.2.10 (over udp)"),
        "{page}"
    );
    // The form: a bad field is named; a good one is stored.
    let (status, _, page) = send(
        &state,
        post_form(
            "/sensors/new",
            Some(&cookie),
            &format!("csrf={csrf}&server=ns1&host=192.0.2.53&kind=dns&name=mail&dns_query=example.com&dns_record=A&dns_expect=mail"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"error-dns\">"), "{page}");
    let (status, _, _) = send(
        &state,
        post_form(
            "/sensors/new",
            Some(&cookie),
            &format!("csrf={csrf}&server=ns1&host=192.0.2.53&kind=dns&name=mail&dns_query=example.com&dns_record=MX&dns_expect=10+mail.example.com"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let mail = sensor_id(&state, "ns1/mail").await;
    let (_, _, overrides, _) = state.db().sensor_settings(mail).await.unwrap();
    let spec = overrides.dns.expect("a DNS sensor");
    assert_eq!((spec.record.as_deref(), spec.expect.len()), (Some("MX"), 1));
    // Edited with its own fields, no protocol ones.
    let edit = format!("/sensors/{made}/edit");
    let (_, _, page) = send(&state, get(&edit, Some(&cookie))).await;
    assert!(
        page.contains("name=\"dns_query\" value=\"www.example.com\"")
            && page.contains("name=\"kind\" value=\"dns\"")
            && !page.contains("name=\"protocol\""),
        "{page}"
    );
    let (status, _, page) = send(
        &state,
        post_form(
            &edit,
            Some(&cookie),
            &format!("csrf={csrf}&kind=dns&port=5353&dns_query=www.example.com&dns_expect=192.0.2.10%2C+192.0.2.11"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (port, _, overrides, _) = state.db().sensor_settings(made).await.unwrap();
    assert_eq!(port, 5353);
    assert_eq!(
        overrides.dns.unwrap().expect,
        vec!["192.0.2.10", "192.0.2.11"]
    );
    let (status, _, page) = send(
        &state,
        post_form(
            &edit,
            Some(&cookie),
            &format!("csrf={csrf}&kind=dns&port=53&dns_query=www.example.com&dns_record=BOGUS"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("id=\"error-dns_record\">unknown record type"),
        "{page}"
    );
}

/// UDP sensors through the API and the forms: the protocol's port by
/// default, checked as the file's; the SNMP community (a password) never
/// shown again and kept when an edit leaves it empty.
async fn udp_sensors_through_the_api_and_the_forms(_dir: TempDir, state: AppState) {
    let (cookie, csrf, token) = admin(&state).await;
    add_sensors(&state, &token, &[
        (
            r#"{"server": "infra", "host": "192.0.2.1", "kind": "udp", "udp": {"protocol": "ntp"}}"#,
            StatusCode::CREATED,
            "",
        ),
        (
            r#"{"server": "infra", "host": "192.0.2.1", "kind": "udp", "udp": {"protocol": "quic"}}"#,
            StatusCode::BAD_REQUEST,
            "udp.protocol: unknown UDP protocol",
        ),
        (
            r#"{"server": "infra", "host": "192.0.2.1", "kind": "udp", "name": "g", "udp": {"send": "PING"}}"#,
            StatusCode::BAD_REQUEST,
            "port:",
        ),
        (
            r#"{"server": "infra", "host": "192.0.2.1", "port": 123, "udp": {"protocol": "ntp"}}"#,
            StatusCode::BAD_REQUEST,
            "UDP settings are for UDP sensors",
        ),
    ])
    .await;
    let ntp = sensor_id(&state, "infra/ntp").await;
    assert_eq!(state.db().status_of(ntp).await.unwrap().port, 123);
    // The form, with a community.
    let (status, _, _) = send(
        &state,
        post_form(
            "/sensors/new",
            Some(&cookie),
            &format!("csrf={csrf}&server=infra&host=192.0.2.1&kind=udp&udp_protocol=snmp&udp_community=s3cret-community"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let snmp = sensor_id(&state, "infra/snmp").await;
    assert_eq!(state.db().status_of(snmp).await.unwrap().port, 161);
    let (_, _, page) = send(&state, get(&format!("/sensors/{snmp}"), Some(&cookie))).await;
    assert!(
        page.contains("UDP: snmp") && !page.contains("s3cret-community"),
        "{page}"
    );
    let edit = format!("/sensors/{snmp}/edit");
    let (_, _, page) = send(&state, get(&edit, Some(&cookie))).await;
    assert!(
        page.contains("name=\"udp_protocol\" value=\"snmp\"") && !page.contains("s3cret-community"),
        "{page}"
    );
    let (status, _, page) = send(
        &state,
        post_form(
            &edit,
            Some(&cookie),
            &format!("csrf={csrf}&kind=udp&port=1161&udp_protocol=snmp&udp_community="),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (port, _, overrides, _) = state.db().sensor_settings(snmp).await.unwrap();
    assert_eq!(port, 1161);
    assert_eq!(
        overrides.udp.unwrap().community.as_deref(),
        Some("s3cret-community"),
        "kept"
    );
    let (status, _, page) = send(
        &state,
        post_form(
            &edit,
            Some(&cookie),
            &format!("csrf={csrf}&kind=udp&port=161&udp_protocol=gopher"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("id=\"error-udp_protocol\">unknown UDP protocol"),
        "{page}"
    );
}

/// PING sensors through the API and the forms: no port, their host shown
/// as pinged on the dashboard, `service="ping"` in /metrics, edited
/// without a port.
async fn ping_sensors_through_the_api_and_the_forms(_dir: TempDir, state: AppState) {
    let (cookie, csrf, token) = admin(&state).await;
    add_sensors(&state, &token, &[
        (
            r#"{"server": "router", "host": "192.0.2.1", "kind": "ping", "ping": {"count": 5}}"#,
            StatusCode::CREATED,
            "",
        ),
        (
            r#"{"server": "router", "host": "192.0.2.1", "kind": "ping", "name": "x", "port": 7}"#,
            StatusCode::BAD_REQUEST,
            "port: a PING sensor has no port",
        ),
        (
            r#"{"server": "router", "host": "192.0.2.1", "kind": "ping", "name": "x", "ping": {"count": 99}}"#,
            StatusCode::BAD_REQUEST,
            "ping.count: count = 99",
        ),
    ])
    .await;
    let made = sensor_id(&state, "router/ping").await;
    let (port, _, overrides, _) = state.db().sensor_settings(made).await.unwrap();
    assert_eq!((port, overrides.ping.unwrap().count), (0, Some(5)));
    let (status, _, _) = send(
        &state,
        post_form(
            "/sensors/new",
            Some(&cookie),
            &format!("csrf={csrf}&server=gateway&host=192.0.2.254&kind=ping"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let gateway = sensor_id(&state, "gateway/ping").await;
    let (_, _, page) = send(&state, get("/", Some(&cookie))).await;
    assert!(page.contains("192.0.2.254 (ping)"), "{page}");
    let (_, _, page) = send(&state, get(&format!("/sensors/{gateway}"), Some(&cookie))).await;
    assert!(
        page.contains("PING: 3 echo requests, WARNING at 20% loss") && !page.contains("port 0"),
        "{page}"
    );
    let (_, _, metrics) = send(&state, api(&token, "GET", "/metrics", "")).await;
    assert!(
        metrics.contains(
            "server=\"gateway\",sensor=\"ping\",host=\"192.0.2.254\",port=\"\",service=\"ping\"}"
        ),
        "{metrics}"
    );
    let edit = format!("/sensors/{made}/edit");
    let (_, _, page) = send(&state, get(&edit, Some(&cookie))).await;
    assert!(
        page.contains("name=\"kind\" value=\"ping\"") && !page.contains("name=\"port\""),
        "{page}"
    );
    let (status, _, page) = send(
        &state,
        post_form(
            &edit,
            Some(&cookie),
            &format!("csrf={csrf}&kind=ping&interval=30s"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (port, _, overrides, _) = state.db().sensor_settings(made).await.unwrap();
    assert_eq!(port, 0);
    assert_eq!(overrides.interval, Some(std::time::Duration::from_secs(30)));
    assert_eq!(overrides.ping.unwrap().count, Some(5), "kept");
}

/// An admin's session cookie and CSRF token, and an admin API token.
async fn admin(state: &AppState) -> (String, String, String) {
    let (cookie, csrf) = sign_in(state, "admin", "admin-password").await;
    let token = state
        .db()
        .create_token("ops".into(), Role::Admin)
        .await
        .unwrap();
    (cookie, csrf, token)
}

/// Each of `cases` (a body for `POST /api/sensors`, the status wanted and
/// a text the reply must hold) sent with `token`.
async fn add_sensors(state: &AppState, token: &str, cases: &[(&str, StatusCode, &str)]) {
    for (body, status, wanted) in cases {
        let (got, _, reply) = send(state, api(token, "POST", "/api/sensors", body)).await;
        assert_eq!(got, *status, "{body}: {reply}");
        assert!(reply.contains(wanted), "{body}: {reply}");
    }
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (dir, state) = super::setup();
                    super::$name(dir, state).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((dir, state, _cluster)) =
                        super::setup_postgres(concat!("web::on_postgres::", stringify!($name))).await
                    else {
                        return;
                    };
                    super::$name(dir, state).await;
                }
            )*
        }
    };
}

on_both_stores!(
    pages_need_a_sign_in_and_wrong_passwords_are_refused,
    names_are_html_escaped,
    the_dashboard_puts_problems_first,
    the_dashboard_streams_state_changes,
    heartbeat_push_urls_take_pushes,
    http_content_settings_through_the_api_and_the_forms,
    dns_sensors_through_the_api_and_the_forms,
    udp_sensors_through_the_api_and_the_forms,
    ping_sensors_through_the_api_and_the_forms,
    forms_without_the_csrf_token_are_refused,
    read_only_users_and_tokens_cannot_change_anything,
    adding_a_sensor_validates_each_field,
    metrics_use_prometheus_names_and_need_a_token_off_loopback,
    failed_sign_ins_are_rate_limited_per_address,
    reports_as_a_page_as_csv_and_as_json,
    public_status_pages_need_no_sign_in_and_show_no_hosts,
    sensors_made_in_the_ui_can_be_edited_and_deleted_but_file_ones_cannot,
    the_api_adds_and_removes_sensors,
    groups_servers_and_maintenance_windows_are_edited_through_forms,
    server_replies_show_hidden_characters_escaped,
    the_api_covers_groups_servers_windows_and_status_pages,
    servers_and_groups_pause_and_resume_from_the_configuration_page,
    channels_and_rules_are_edited_through_the_api_and_pages_without_showing_secrets,
    the_api_shows_notifications_and_their_delivery,
);

/// A concrete path for a route pattern, naming things that exist.
fn concrete(pattern: &str, sensor: i64) -> String {
    pattern
        .replace("{id}", &sensor.to_string())
        .replace("{name}", "db")
        .replace("{slug}", "status")
        .replace("{kind}", "server")
        .replace("{action}", "pause")
        .replace("{token}", "not-a-push-token")
}

/// A change request with the session cookie and `csrf`, as a form (pages)
/// or with the header (API).
fn change(method: &axum::http::Method, path: &str, cookie: &str, csrf: &str) -> Request<Body> {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::COOKIE, cookie);
    if path.starts_with("/api/") {
        request = request
            .header("x-csrf-token", csrf)
            .header(header::CONTENT_TYPE, "application/json");
        request.body(Body::from("{}")).unwrap()
    } else {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        request.body(Body::from(format!("csrf={csrf}"))).unwrap()
    }
}

/// Regression (hardening #3, tests #5): every route that changes something
/// refuses a session request with a wrong token of the right length, a
/// request from another origin even with the right token, and a read-only
/// user. The walk covers every route of the router, so a new one cannot
/// forget.
#[tokio::test]
async fn every_change_needs_the_csrf_token_the_same_origin_and_an_admin() {
    let (dir, state) = setup();
    let db = dir.path.join("portwatch.db");
    let id = sensor_id(&state, "db/postgresql").await;
    let (cookie, csrf) = sign_in(&state, "admin", "admin-password").await;
    let (viewer, viewer_csrf) = sign_in(&state, "viewer", "viewer-password").await;
    let wrong: String = csrf
        .chars()
        .map(|c| if c == 'a' { 'b' } else { 'a' })
        .collect();
    assert_eq!(wrong.len(), csrf.len());
    let changes: Vec<_> = portwatch::web::route_table()
        .into_iter()
        .filter(|(method, _)| !method.is_safe())
        .collect();
    assert!(changes.len() >= 35, "{} change routes", changes.len());
    let before = Store::open(&db).unwrap().load().unwrap();
    for (method, pattern) in &changes {
        if *pattern == "/login" {
            continue; // its own token; tested above
        }
        let path = concrete(pattern, id);
        if *pattern == "/push/{token}" {
            // A push URL's token is its credential (jobs call it without a
            // session or an origin): a session, a CSRF token or an origin
            // change nothing, and a wrong token is refused.
            let (status, _, body) = send(&state, change(method, &path, &cookie, &csrf)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
            continue;
        }
        let (status, _, body) = send(&state, change(method, &path, &cookie, &wrong)).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} with a wrong token: {body}"
        );
        let mut cross = change(method, &path, &cookie, &csrf);
        cross
            .headers_mut()
            .insert(header::ORIGIN, "http://127.0.0.1:9999".parse().unwrap());
        let (status, _, body) = send(&state, cross).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} from another origin: {body}"
        );
        let mut site = change(method, &path, &cookie, &csrf);
        site.headers_mut()
            .insert("sec-fetch-site", "same-site".parse().unwrap());
        let (status, _, _) = send(&state, site).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} same-site");
        if *pattern != "/logout" {
            let (status, _, body) =
                send(&state, change(method, &path, &viewer, &viewer_csrf)).await;
            assert!(
                status == StatusCode::FORBIDDEN,
                "{method} {path} as a read-only user: {status} {body}"
            );
        }
    }
    assert_eq!(
        Store::open(&db).unwrap().load().unwrap().paused,
        before.paused,
        "nothing was paused"
    );
    // The API's pause with the cookie, no body and no token (the finding).
    let (status, _, _) = send(
        &state,
        Request::post(format!("/api/sensors/{id}/pause"))
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // With the token it works, and a bearer token needs none.
    let (status, _, body) = send(
        &state,
        change(
            &axum::http::Method::POST,
            &format!("/api/sensors/{id}/pause"),
            &cookie,
            &csrf,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(is_paused(&state, id).await);
}

/// Hardening "also": framing, sniffing, referrers and inline script are
/// refused by headers on every response; signed-in pages are not cached;
/// the cookie is Secure behind an https:// public URL.
#[tokio::test]
async fn responses_carry_the_security_headers() {
    let (_dir, state) = setup();
    let (cookie, _) = sign_in(&state, "admin", "admin-password").await;
    for path in [
        "/login",
        "/",
        "/config",
        "/notifications",
        "/api/sensors",
        "/healthz",
    ] {
        let (_, headers, _) = send(&state, get(path, Some(&cookie))).await;
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
            "{path}: {csp}"
        );
        if path != "/login" {
            assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
        }
    }
    let https = state
        .clone()
        .with_public_url(Some("https://mon.example.com".into()));
    let (_, headers, _) = send(&https, get("/login", None)).await;
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    let (_, headers, _) = send(&state, get("/login", None)).await;
    assert!(
        !headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
}

/// Regression (hardening #2): a web admin could make a channel send
/// `PORTWATCH_ADMIN_PASSWORD` or `/etc/shadow` to a receiver of theirs.
/// Channels from the web carry their own secret, stored and never shown.
#[tokio::test]
async fn web_channels_cannot_reach_the_hosts_environment_or_files() {
    let (dir, state) = setup();
    let db = dir.path.join("portwatch.db");
    let admin = Store::open(&db)
        .unwrap()
        .create_token("ci", Role::Admin)
        .unwrap();
    for bad in [
        r#"{"name":"x","webhook":"http://127.0.0.1:9/h","token_env":"PORTWATCH_ADMIN_PASSWORD"}"#,
        r#"{"name":"x","smtp":"127.0.0.1","from":"a@b.c","to":["d@e.f"],"username":"u","password_file":"/proc/self/environ"}"#,
        r#"{"name":"x","smtp":"127.0.0.1","from":"a@b.c","to":["d@e.f"],"username":"u","password_env":"HOME"}"#,
    ] {
        let (status, _, body) = send(&state, api(&admin, "POST", "/api/channels", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("only portwatch.toml may do"), "{body}");
    }
    let good = r#"{"name":"chat","webhook":"http://127.0.0.1:9/h","token":"tok-s3cret"}"#;
    let (status, _, body) = send(&state, api(&admin, "POST", "/api/channels", good)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        !body.contains("tok-s3cret") && body.contains("\"token_set\":true"),
        "{body}"
    );
    let (_, _, body) = send(&state, api(&admin, "GET", "/api/channels", "")).await;
    assert!(!body.contains("tok-s3cret"), "{body}");
    let (cookie, _) = sign_in(&state, "admin", "admin-password").await;
    let (_, _, page) = send(&state, get("/notifications", Some(&cookie))).await;
    assert!(!page.contains("tok-s3cret") && !page.contains("name=\"token_env\""));
    // The stored channel uses its own token.
    let stored = Store::open(&db).unwrap().channel("chat").unwrap().unwrap();
    match stored.kind {
        portwatch::notify::ChannelKind::Webhook {
            token, token_env, ..
        } => {
            assert_eq!((token.as_deref(), token_env), (Some("tok-s3cret"), None));
        }
        other => panic!("{other:?}"),
    }
}

/// Hardening "also" and #12: request-parsing errors on the API are JSON; a
/// sensor cannot silently get another host than its server's; names with
/// control or text-direction characters are refused.
#[tokio::test]
async fn the_api_refuses_bad_requests_in_json() {
    let (dir, state) = setup();
    let db = dir.path.join("portwatch.db");
    let admin = Store::open(&db)
        .unwrap()
        .create_token("ci", Role::Admin)
        .unwrap();
    for (method, path, body) in [
        ("POST", "/api/sensors", "{not json"),
        ("GET", "/api/sensors/abc", ""),
        ("GET", "/api/events?limit=many", ""),
    ] {
        let (status, headers, text) = send(&state, api(&admin, method, path, body)).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{path}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let error = value["error"].as_str().unwrap_or_default();
        // The extractor's own words, not only a status phrase.
        let expected = match path {
            "/api/sensors" => "Failed to parse the request body as JSON",
            "/api/sensors/abc" => "Invalid URL",
            _ => "Failed to deserialize query string",
        };
        assert!(error.starts_with(expected), "{path}: {text}");
    }
    let conflict = r#"{"server":"db","host":"192.0.2.50","port":6379}"#;
    let (status, _, body) = send(&state, api(&admin, "POST", "/api/sensors", conflict)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    let error = value["error"].as_str().unwrap();
    assert!(
        error.contains("has the host 127.0.0.1, not 192.0.2.50") && !error.starts_with('{'),
        "a JSON error is sent as it is, not wrapped again: {body}"
    );
    for bad in [
        r#"{"server":"new\nserver","host":"127.0.0.1","port":80}"#,
        r#"{"server":"admin\u202egpj","host":"127.0.0.1","port":80}"#,
        r#"{"server":"ok","name":"a\u0000b","host":"127.0.0.1","port":80}"#,
        r#"{"server":"ok","host":"exa\u200bmple.com","port":80}"#,
    ] {
        let (status, _, body) = send(&state, api(&admin, "POST", "/api/sensors", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _, body) = send(
        &state,
        api(&admin, "POST", "/api/groups", r#"{"name":"Ops\r\nforged"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        Store::open(&db)
            .unwrap()
            .load()
            .unwrap()
            .config
            .servers
            .iter()
            .all(|s| s.name == "db" || s.name.starts_with('<'))
    );
}

/// Regression (hardening #16, first-run #10): a public status page cost
/// seconds per anonymous request. It is now computed at most once per
/// 10 seconds and 100 sensors a page; an unknown page is an HTML 404.
#[tokio::test]
async fn public_status_pages_are_cached_paged_and_404_in_html() {
    let dir = TempDir::new("status-cache");
    let db = dir.path.join("portwatch.db");
    let mut config = String::from("[[server]]\nname = \"s\"\nhost = \"127.0.0.1\"\n");
    for port in 1..=150 {
        config += &format!("  [[server.sensor]]\n  name = \"p{port:03}\"\n  port = {port}\n");
    }
    let mut store = Store::open(&db).unwrap();
    store.apply(&from_toml("t.toml", &config).unwrap()).unwrap();
    store
        .save_status_page(&portwatch::store::accounts::StatusPage {
            slug: "all".into(),
            title: "All".into(),
            names: vec!["s".into()],
            logo: None,
            link: None,
        })
        .unwrap();
    let state = AppState::new(portwatch::store::Db::open(&db, 16).unwrap(), None, None);
    let (status, _, page1) = send(&state, get("/status/all", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page1.contains("s/p001") && page1.contains("s/p100") && !page1.contains("s/p101"));
    assert!(page1.contains("Page 1 of 2"), "{page1}");
    let (_, _, page2) = send(&state, get("/status/all?page=1", None)).await;
    assert!(page2.contains("s/p101") && page2.contains("s/p150") && !page2.contains("s/p001"));
    // A change within the cache's life is not recomputed for visitors.
    store
        .save_status_page(&portwatch::store::accounts::StatusPage {
            slug: "all".into(),
            title: "Renamed".into(),
            names: vec!["s".into()],
            logo: None,
            link: None,
        })
        .unwrap();
    let (_, headers, again) = send(&state, get("/status/all", None)).await;
    assert_eq!(again, page1, "served from the cache");
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=10");
    let (status, headers, body) = send(&state, get("/status/nope", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        body.contains("No status page here") && body.contains("nope"),
        "{body}"
    );
    let mut json = get("/status/nope", None);
    json.headers_mut()
        .insert(header::ACCEPT, "application/json".parse().unwrap());
    let (status, headers, body) = send(&state, json).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{body}");
}

/// A web state whose monitor counters the test sets, with /metrics open.
fn with_monitor_stats() -> (
    TempDir,
    AppState,
    std::sync::Arc<portwatch::monitor::stats::MonitorStats>,
) {
    let (dir, _) = setup();
    let monitor = std::sync::Arc::new(portwatch::monitor::stats::MonitorStats::default());
    let state = AppState::new(
        portwatch::store::Db::open(&dir.path.join("portwatch.db"), 4).unwrap(),
        Some(monitor.clone()),
        None,
    )
    .with_metrics_access(portwatch::web::MetricsAccess::Open);
    (dir, state, monitor)
}

/// `/metrics` has the monitor's start lateness as a Prometheus histogram,
/// in its summary too: cumulative buckets, count and sum in seconds.
#[tokio::test]
async fn metrics_have_a_histogram_of_start_lateness() {
    let (_dir, state, monitor) = with_monitor_stats();
    monitor.update(|c| {
        for ms in [0, 3, 40, 100, 101, 1500, 30_000] {
            c.started_late_by(ms);
        }
    });
    let (_, _, metrics) = send(&state, get("/metrics?scope=summary", None)).await;
    for line in [
        "# TYPE portwatch_check_start_lateness_seconds histogram",
        r#"portwatch_check_start_lateness_seconds_bucket{le="0.005"} 2"#,
        r#"portwatch_check_start_lateness_seconds_bucket{le="0.05"} 3"#,
        r#"portwatch_check_start_lateness_seconds_bucket{le="0.1"} 4"#,
        r#"portwatch_check_start_lateness_seconds_bucket{le="1.0"} 5"#,
        r#"portwatch_check_start_lateness_seconds_bucket{le="2.5"} 6"#,
        r#"portwatch_check_start_lateness_seconds_bucket{le="10.0"} 7"#,
        r#"portwatch_check_start_lateness_seconds_bucket{le="+Inf"} 7"#,
        "portwatch_check_start_lateness_seconds_count 7",
        "portwatch_check_start_lateness_seconds_sum 11.744",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

/// `/metrics` has the store writer's counters: results written and lost,
/// what waits, and the longest step it took (while results queue up).
#[tokio::test]
async fn metrics_have_the_store_writers_counters() {
    use std::sync::atomic::Ordering;
    let (dir, _) = setup();
    let stats = std::sync::Arc::new(portwatch::store::writer::WriterStats::default());
    stats.results_stored.store(12, Ordering::Relaxed);
    stats.results_dropped.store(3, Ordering::Relaxed);
    stats.longest_step_ms.store(2_500, Ordering::Relaxed);
    let db = portwatch::store::Db::open(&dir.path.join("portwatch.db"), 4).unwrap();
    let state = AppState::new(db, None, Some(stats))
        .with_metrics_access(portwatch::web::MetricsAccess::Open);
    let (_, _, metrics) = send(&state, get("/metrics?scope=summary", None)).await;
    for line in [
        "portwatch_store_results_total 12",
        "portwatch_store_results_lost_total 3",
        "portwatch_store_longest_step_seconds 2.5",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

/// `/healthz` says `degraded` while the monitor is over capacity, and
/// `/metrics` says by how much and how many checks wait for a slot.
#[tokio::test]
async fn an_overloaded_monitor_is_degraded_in_healthz_and_metrics() {
    let (_dir, state, monitor) = with_monitor_stats();
    let (status, _, body) = send(&state, get("/healthz", None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    monitor.update(|c| {
        c.waiting = 17;
        c.overload_percent = 240;
    });
    let (status, _, body) = send(&state, get("/healthz", None)).await;
    assert_eq!(status, StatusCode::OK, "alive, serving");
    assert!(
        body.starts_with("degraded: the monitor is over capacity (240% more checks"),
        "{body}"
    );
    let (_, _, metrics) = send(&state, get("/metrics", None)).await;
    for line in [
        "portwatch_checks_waiting 17",
        "portwatch_monitor_overload_percent 240",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

/// The per-sensor series are rendered at most once every 5 s and shared by
/// the scrapes in between; `scope=summary` keeps only the daemon's series
/// and the count of sensors by state.
#[tokio::test(start_paused = true)]
async fn metrics_render_sensors_once_per_interval_and_summarise_on_request() {
    let (dir, state) = setup();
    let state = state.with_metrics_access(portwatch::web::MetricsAccess::Open);
    let scrape = |path: &'static str| {
        let state = state.clone();
        async move { send(&state, get(path, None)).await }
    };
    let line = |body: &str, prefix: &str| {
        body.lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {prefix} in:\n{body}"))
    };
    let (status, _, full) = scrape("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        line(&full, r#"portwatch_sensors{state="pending"}"#),
        r#"portwatch_sensors{state="pending"} 2"#
    );
    assert_eq!(full.matches("portwatch_sensor_up{").count(), 2);
    assert!(
        full.ends_with("# EOF\n") && full.matches("# EOF").count() == 1,
        "{full}"
    );

    // A third sensor: the series rendered a moment ago are served as they were.
    let mut store = Store::open(&dir.path.join("portwatch.db")).unwrap();
    let more = format!("{CONFIG}  [[server.sensor]]\n  port = 6379\n");
    store.apply(&from_toml("t.toml", &more).unwrap()).unwrap();
    let (_, _, cached) = scrape("/metrics").await;
    assert_eq!(
        cached.matches("portwatch_sensor_up{").count(),
        2,
        "still the rendered series"
    );
    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    let (_, _, fresh) = scrape("/metrics").await;
    assert_eq!(fresh.matches("portwatch_sensor_up{").count(), 3);
    assert_eq!(
        line(&fresh, r#"portwatch_sensors{state="pending"}"#),
        r#"portwatch_sensors{state="pending"} 3"#
    );

    let (status, _, summary) = scrape("/metrics?scope=summary").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!summary.contains("portwatch_sensor_up"), "{summary}");
    assert_eq!(
        line(&summary, r#"portwatch_sensors{state="pending"}"#),
        r#"portwatch_sensors{state="pending"} 3"#
    );
    assert!(
        summary.contains("portwatch_web_sign_ins_refused"),
        "the daemon's own series"
    );
    assert!(summary.ends_with("# EOF\n"));

    // A summary of stale series reads the counts only; a full scrape right
    // after it renders the series.
    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    let (_, _, summary) = scrape("/metrics?scope=summary").await;
    assert!(!summary.contains("portwatch_sensor_up"), "{summary}");
    let (_, _, full) = scrape("/metrics").await;
    assert_eq!(full.matches("portwatch_sensor_up{").count(), 3, "{full}");

    let (status, _, body) = scrape("/metrics?scope=everything").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("unknown /metrics parameter 'scope=everything': use scope=summary"),
        "{body}"
    );
}
