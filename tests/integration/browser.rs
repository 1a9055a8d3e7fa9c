//! The web interface in a real headless Chromium, driven through
//! chromedriver (fantoccini), against the real `portwatch serve`.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::util::{Killed, TempDir, bin, closed_port};

/// Starts `portwatch serve` on a port the kernel picks (no race for a
/// "free" port) and returns it with the web address it printed.
fn start_serve(dir: &std::path::Path) -> (Killed, String) {
    start_serve_with(dir, &[])
}

/// [`start_serve`] with more arguments.
fn start_serve_with(dir: &std::path::Path, args: &[&str]) -> (Killed, String) {
    use std::io::BufRead;
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(dir)
        .env("PORTWATCH_ADMIN_PASSWORD", "browser-test-password")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let serve = Killed(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("serve printed its web address")
            .unwrap();
        if let Some(rest) = line.trim().strip_prefix("web       http://") {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    // Keep reading, so that serve never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (serve, address)
}

/// Starts chromedriver on a port below 32768 (the ephemeral range starts
/// there); a port that turns out to be taken makes it exit, and another is
/// tried.
fn start_chromedriver() -> (Killed, u16) {
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..10 {
        let port = 20_000 + ((seed + attempt * 104_729) % 12_000) as u16;
        let mut driver = Killed(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if driver.0.try_wait().unwrap().is_some() {
                break; // the port was taken: try another
            }
            if driver_ready(port) {
                return (driver, port);
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver never answered on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("chromedriver found no free port in 10 tries");
}

/// Whether chromedriver answers its status request on `port`.
fn driver_ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    // chromedriver may keep the connection open: read until its answer is
    // complete or a second passes.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        response.extend_from_slice(&chunk[..n]);
        if response.ends_with(b"}}") {
            break;
        }
    }
    String::from_utf8_lossy(&response).contains("\"ready\":true")
}

fn browser_available() -> bool {
    let found = ["chromium", "chromedriver"].iter().all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found {
        crate::util::skip(
            "browser tests",
            "chromium and chromedriver are not installed (Debian: chromium chromium-driver)",
        );
    }
    found
}

async fn browser(driver_port: u16, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ];
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": args, "binary": "/usr/bin/chromium" }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("connect to chromedriver")
}

/// Reloads `url` until the element `#id` reads `want`, for at most 30 s.
async fn wait_text(client: &Client, url: &str, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        client.goto(url).await.unwrap();
        // Read in one script: the page may reload itself (a sensor's page
        // does when its state changes) between a find and a read.
        let text = client
            .execute(
                "const e = document.getElementById(arguments[0]); return e ? e.innerText : null;",
                vec![serde_json::json!(id)],
            )
            .await
            .unwrap();
        if text == serde_json::json!(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "#{id} still reads {text:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Clicks the element `locator` finds.
async fn click(client: &Client, locator: Locator<'_>) {
    client.find(locator).await.unwrap().click().await.unwrap();
}

/// Clicks what submits a form, and waits until the page it leads to has
/// loaded: a navigation started before the form's request was sent would
/// cancel it.
async fn click_and_wait_for_the_next_page(client: &Client, locator: Locator<'_>) {
    client
        .execute("window.beforeTheClick = true;", vec![])
        .await
        .unwrap();
    click(client, locator).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // While the browser navigates a script may fail: not there yet.
        let old = client
            .execute("return window.beforeTheClick === true;", vec![])
            .await;
        if matches!(old, Ok(serde_json::Value::Bool(false))) {
            return;
        }
        assert!(Instant::now() < deadline, "the form never led to a page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Types `value` into each named input of the page.
async fn fill(client: &Client, fields: &[(&str, &str)]) {
    for (field, value) in fields {
        client
            .find(Locator::Css(&format!("input[name={field}]")))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
}

fn save_screenshot(png: &[u8], name: &str) {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(name), png).unwrap();
    // The README's screenshots are refreshed on request, so that a test run
    // leaves the work tree as it was.
    if std::env::var_os("PORTWATCH_UPDATE_SCREENSHOTS").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(name), png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_adds_a_sensor_and_watches_it_change() {
    if !browser_available() {
        return;
    }
    let dir = TempDir::new("browser");
    let (_serve, web_address) = start_serve(&dir.path);
    let (_driver, driver_port) = start_chromedriver();
    let client = browser(driver_port, &dir.path.join("profile")).await;
    let base = format!("http://{web_address}");

    // Sign in.
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/login")
    );
    client
        .find(Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .send_keys("admin")
        .await
        .unwrap();
    client
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("browser-test-password")
        .await
        .unwrap();
    click(&client, Locator::Css("form[action='/login'] button")).await;
    client
        .wait()
        .for_element(Locator::Css("form.filter"))
        .await
        .unwrap();

    // Add a sensor for a live listener.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    client.goto(&format!("{base}/sensors/new")).await.unwrap();
    fill(
        &client,
        &[
            ("server", "web"),
            ("host", "127.0.0.1"),
            ("port", &port.to_string()),
            ("name", "app"),
            ("interval", "1s"),
        ],
    )
    .await;
    click(&client, Locator::Css("form.edit button")).await;
    client
        .wait()
        .for_element(Locator::Id("state"))
        .await
        .unwrap();
    let sensor_url = client.current_url().await.unwrap().to_string();
    wait_text(&client, &sensor_url, "state", "up").await;
    wait_text(&client, &sensor_url, "reason", "connected").await;
    // A few results draw the chart's line.
    let deadline = Instant::now() + Duration::from_secs(30);
    let points = |source: &str| {
        source
            .split("points=\"")
            .nth(1)
            .map_or(0, |p| p.split('"').next().unwrap_or("").split(' ').count())
    };
    while points(&client.source().await.unwrap()) < 5 {
        assert!(Instant::now() < deadline, "the chart never got a line");
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.goto(&sensor_url).await.unwrap();
    }
    client.goto(&format!("{base}/")).await.unwrap();

    // Stop the service: DOWN, with the reason.
    // The port stays bound, not listening, so a connect is refused and
    // nothing else can take it meanwhile.
    let _held = crate::util::close_listener(listener);
    wait_text(&client, &sensor_url, "state", "down").await;
    wait_text(&client, &sensor_url, "reason", "refused").await;
    // The dashboard leads with it: a problems section, its count in the
    // title.
    client.goto(&format!("{base}/")).await.unwrap();
    let row = client
        .find(Locator::Css(
            "#problems tr.sensor[data-state='down'] td.name",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(row, "web/app");
    assert_eq!(client.title().await.unwrap(), "(1) portwatch");

    // Pause it.
    client.goto(&sensor_url).await.unwrap();
    click_and_wait_for_the_next_page(&client, Locator::Id("pause")).await;
    wait_text(&client, &sensor_url, "state", "paused(manual)").await;

    // A form post without the CSRF token is refused.
    let id = sensor_url.rsplit('/').next().unwrap().to_owned();
    let status = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/sensors/' + arguments[0] + '/resume', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: '' })
               .then(r => done(r.status));",
            vec![serde_json::json!(id)],
        )
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(403));
    wait_text(&client, &sensor_url, "state", "paused(manual)").await;

    // A webhook channel and a rule, made in the Notifications page; the
    // test button reports the exact delivery error in one line.
    let (_closed_hook, hook) = closed_port("127.0.0.1");
    client.goto(&format!("{base}/notifications")).await.unwrap();
    // The field names are unique on the page: `fill` finds each one.
    let webhook = format!("http://127.0.0.1:{}/hook/s3cr3t", hook.port());
    fill(
        &client,
        &[
            ("name", "ops-chat"),
            ("webhook", &webhook),
            ("preset", "slack"),
        ],
    )
    .await;
    click(&client, Locator::Css("#channel-form button")).await;
    client
        .wait()
        .for_element(Locator::Css("form[action$='/test'] button"))
        .await
        .unwrap();
    let channels = client
        .find(Locator::Id("channels"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        channels.contains("ops-chat") && !channels.contains("s3cr3t"),
        "the URL's path is not shown: {channels}"
    );
    fill(&client, &[("channel", "ops-chat"), ("on", "down, up")]).await;
    click(&client, Locator::Css("#rule-form button")).await;
    client
        .wait()
        .for_element(Locator::XPath(
            "//table[@id='rules']//td[text()='down, up']",
        ))
        .await
        .unwrap();
    click(&client, Locator::Css("form[action$='/test'] button")).await;
    let notice = client
        .wait()
        .for_element(Locator::Id("notice"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        notice.starts_with("'ops-chat' failed: cannot connect"),
        "{notice}"
    );
    save_screenshot(&client.screenshot().await.unwrap(), "notifications.png");

    // A public status page, opened without signing in.
    client.goto(&format!("{base}/status-pages")).await.unwrap();
    fill(
        &client,
        &[
            ("slug", "public"),
            ("title", "Our services"),
            ("names", "web"),
        ],
    )
    .await;
    click(&client, Locator::Css("form.edit button")).await;
    client
        .wait()
        .for_element(Locator::Css("a[href='/status/public']"))
        .await
        .unwrap();
    client.delete_all_cookies().await.unwrap();
    client.goto(&format!("{base}/status/public")).await.unwrap();
    let page = client.source().await.unwrap();
    assert!(
        page.contains("web/app") && page.contains("maintenance"),
        "{page}"
    );
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/login"),
        "signed out for the rest"
    );
    client.close().await.unwrap();
}

/// Listeners that accept and drop connections, from one thread, until one
/// is closed (then connects to it are refused).
struct Services {
    listeners: std::sync::Arc<std::sync::Mutex<Vec<Option<TcpListener>>>>,
    ports: Vec<u16>,
    held: Vec<socket2::Socket>,
}

impl Services {
    fn start(count: usize) -> Services {
        let mut ports = Vec::new();
        let mut listeners = Vec::new();
        for _ in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            ports.push(listener.local_addr().unwrap().port());
            listeners.push(Some(listener));
        }
        let listeners = std::sync::Arc::new(std::sync::Mutex::new(listeners));
        let shared = std::sync::Arc::downgrade(&listeners);
        std::thread::spawn(move || {
            while let Some(listeners) = shared.upgrade() {
                for listener in listeners.lock().unwrap().iter().flatten() {
                    while let Ok((stream, _)) = listener.accept() {
                        drop(stream);
                    }
                }
                drop(listeners);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Services {
            listeners,
            ports,
            held: Vec::new(),
        }
    }

    /// Stops listening on port number `index` (keeping it bound).
    fn close(&mut self, index: usize) {
        let listener = self.listeners.lock().unwrap()[index].take().unwrap();
        self.held.push(crate::util::close_listener(listener));
    }
}

/// The path of axe-core's browser build (`scripts/test` installs it with
/// npm), or `None` when it is not there.
fn axe_source() -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/axe/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&path).ok();
    if source.is_none() {
        crate::util::skip(
            "browser accessibility test",
            &format!(
                "axe-core is not at {} (scripts/test installs it: npm install --prefix target/axe axe-core)",
                path.display()
            ),
        );
    }
    source
}

/// A Chrome DevTools command through chromedriver, for what WebDriver has
/// no command for (the colour scheme the page sees).
#[derive(Debug)]
struct Cdp(serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.0.to_string()))
    }
}

/// Makes the page see `prefers-color-scheme: dark` (or light).
async fn color_scheme(client: &Client, scheme: &str) {
    client
        .issue_cmd(Cdp(serde_json::json!({
            "cmd": "Emulation.setEmulatedMedia",
            "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] }
        })))
        .await
        .unwrap();
}

/// The page's computed background colour.
async fn background(client: &Client) -> String {
    client
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs axe-core on the page and fails on any serious or critical
/// violation of WCAG 2.1 A and AA, naming the rule and the elements.
async fn accessible(client: &Client, axe: &str, page: &str) {
    client.execute(axe, vec![]).await.unwrap();
    let found = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
               .then(r => done(r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\\s+/g, ' ')).join(' | '))))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    let found: Vec<String> = serde_json::from_value(found).unwrap();
    assert!(found.is_empty(), "{page}: {found:#?}");
}

/// Waits (at most 30 s, without reloading) until `script` returns true.
async fn until(client: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.execute(script, vec![]).await.unwrap() != serde_json::json!(true) {
        assert!(Instant::now() < deadline, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A monitor of 205 sensors in five groups, three of them down and one
/// WARNING: the dashboard follows a state change live, remembers a closed
/// group, keeps its filter in the URL, follows the system's dark mode and
/// its own toggle, fits a phone, the status pages show each overall state,
/// and every page passes axe-core's WCAG checks in light and dark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interface_is_live_remembers_adapts_and_is_accessible() {
    if !browser_available() {
        return;
    }
    let Some(axe) = axe_source() else {
        return;
    };
    let dir = TempDir::new("browser-ui");
    let mut services = Services::start(205);
    // (group, name, count): the ports are used in this order.
    let groups = [
        ("Web", "app", 60),
        ("Databases", "db", 41),
        ("Office/Servers", "srv", 60),
        ("Office/Printers", "printer", 41),
        ("Legacy", "old", 3),
    ];
    let mut config = String::from(
        "[defaults]\ninterval = \"2s\"\ntimeout = \"1s\"\nretries = 0\n\n[[group]]\nname = \"Office\"\n",
    );
    let mut index = 0;
    let mut port_of = std::collections::HashMap::new();
    for (group, name, count) in groups {
        config.push_str(&format!("[[group]]\nname = \"{group}\"\n"));
        for n in 1..=count {
            let server = format!("{name}-{n}");
            let extra = if server == "printer-41" {
                "warning = \"1us\"\n"
            } else {
                ""
            };
            config.push_str(&format!(
                "[[server]]\nname = \"{server}\"\nhost = \"127.0.0.1\"\ngroup = \"{group}\"\n  [[server.sensor]]\n  name = \"tcp\"\n  port = {}\n  {extra}",
                services.ports[index]
            ));
            port_of.insert(server, index);
            index += 1;
        }
    }
    // Down from the start: one database, two of the three legacy servers.
    for server in ["db-41", "old-1", "old-2"] {
        services.close(port_of[server]);
    }
    std::fs::write(dir.path.join("portwatch.toml"), config).unwrap();
    let (serve, web_address) = start_serve_with(&dir.path, &["--config", "portwatch.toml"]);
    let (_driver, driver_port) = start_chromedriver();
    let client = browser(driver_port, &dir.path.join("profile")).await;
    let base = format!("http://{web_address}");

    client.goto(&format!("{base}/login")).await.unwrap();
    accessible(&client, &axe, "/login").await;
    fill(
        &client,
        &[("name", "admin"), ("password", "browser-test-password")],
    )
    .await;
    click(&client, Locator::Css("form[action='/login'] button")).await;
    client
        .wait()
        .for_element(Locator::Css("form.filter"))
        .await
        .unwrap();
    // Wait for the first checks: three down, one WARNING.
    wait_text_where(
        &client,
        &format!("{base}/"),
        "document.title",
        "(4) portwatch",
    )
    .await;

    // Live: a service stops; its row turns DOWN without a reload.
    client
        .execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    let id = client
        .find(Locator::Css("tr.sensor[data-path='app-7/tcp']"))
        .await
        .unwrap()
        .attr("data-id")
        .await
        .unwrap()
        .unwrap();
    services.close(port_of["app-7"]);
    until(
        &client,
        &format!(
            "return document.querySelector('tr.sensor[data-id=\"{id}\"]').dataset.state === 'down';"
        ),
        "app-7's row turns down live",
    )
    .await;
    assert_eq!(
        client
            .execute("return window.notReloaded === true;", vec![])
            .await
            .unwrap(),
        serde_json::json!(true),
        "the page was not reloaded"
    );
    until(
        &client,
        "return document.title === '(5) portwatch';",
        "the title counts it",
    )
    .await;
    let changes = client
        .find(Locator::Id("live-changes"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(changes.contains("app-7/tcp down (refused)"), "{changes}");
    accessible(&client, &axe, "/ (dashboard, live)").await;

    // A closed group stays closed for this user across reloads.
    let open = |group: &'static str| {
        let client = client.clone();
        async move {
            client
                .execute(
                    &format!("return document.querySelector('details.group[data-group=\"{group}\"]').open;"),
                    vec![],
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(open("Office/Servers").await, serde_json::json!(true));
    click(
        &client,
        Locator::Css("details.group[data-group='Office/Servers'] > summary"),
    )
    .await;
    assert_eq!(open("Office/Servers").await, serde_json::json!(false));
    client.refresh().await.unwrap();
    assert_eq!(
        open("Office/Servers").await,
        serde_json::json!(false),
        "remembered"
    );
    assert_eq!(
        open("Web").await,
        serde_json::json!(true),
        "others as they were"
    );

    // The filter lives in the URL.
    client
        .find(Locator::Css("input[name=q]"))
        .await
        .unwrap()
        .send_keys("printer-4")
        .await
        .unwrap();
    click(&client, Locator::Css("form.filter button")).await;
    client
        .wait()
        .for_url(&url::Url::parse(&format!("{base}/?q=printer-4&tag=")).unwrap())
        .await
        .unwrap();
    let shown = client
        .execute(
            "return Array.from(document.querySelectorAll('details tr.sensor')).map(r => r.dataset.path);",
            vec![],
        )
        .await
        .unwrap();
    let mut shown: Vec<String> = serde_json::from_value(shown).unwrap();
    shown.sort();
    assert_eq!(
        shown,
        ["printer-4/tcp", "printer-40/tcp", "printer-41/tcp"],
        "only what matches"
    );

    // Dark mode: the system's, then the toggle's.
    client.goto(&format!("{base}/")).await.unwrap();
    let light = background(&client).await;
    color_scheme(&client, "dark").await;
    let dark = background(&client).await;
    assert_eq!(
        (light.as_str(), dark.as_str()),
        ("rgb(255, 255, 255)", "rgb(13, 17, 23)")
    );
    color_scheme(&client, "light").await;
    click(&client, Locator::Id("theme")).await; // auto -> light
    click(&client, Locator::Id("theme")).await; // light -> dark
    assert_eq!(background(&client).await, "rgb(13, 17, 23)", "the toggle");
    client.refresh().await.unwrap();
    assert_eq!(background(&client).await, "rgb(13, 17, 23)", "remembered");
    click(&client, Locator::Id("theme")).await; // dark -> auto
    assert_eq!(background(&client).await, "rgb(255, 255, 255)");

    // Status pages, one per overall state.
    client.goto(&format!("{base}/status-pages")).await.unwrap();
    for (slug, names) in [
        ("servers", "Office/Servers"),
        ("databases", "Databases"),
        ("legacy", "Legacy"),
        ("printers", "Office/Printers"),
    ] {
        fill(
            &client,
            &[
                ("slug", slug),
                ("title", &format!("{names} status")),
                ("names", names),
            ],
        )
        .await;
        click(&client, Locator::Css("form.edit button")).await;
        client
            .wait()
            .for_element(Locator::Css(&format!("a[href='/status/{slug}']")))
            .await
            .unwrap();
    }
    let sensor_url = format!("{base}/sensors/{id}");
    // Every page, light and dark, desktop and phone: accessible, and
    // screenshots for the README.
    let pages = [
        ("dashboard", format!("{base}/")),
        ("sensor", sensor_url.clone()),
        ("events", format!("{base}/events")),
        ("reports", format!("{base}/reports")),
        ("status-pages", format!("{base}/status-pages")),
        ("notifications", format!("{base}/notifications")),
        ("nodes", format!("{base}/nodes")),
        ("new-sensor", format!("{base}/sensors/new")),
        ("configuration", format!("{base}/config")),
        ("status-page", format!("{base}/status/databases")),
    ];
    for (width, height, suffix) in [(1280, 900, ""), (390, 844, "-phone")] {
        client.set_window_size(width, height).await.unwrap();
        for scheme in ["light", "dark"] {
            color_scheme(&client, scheme).await;
            for (name, url) in &pages {
                client.goto(url).await.unwrap();
                accessible(&client, &axe, &format!("{name} ({scheme}, {width} px)")).await;
                save_screenshot(
                    &client.screenshot().await.unwrap(),
                    &format!("{name}-{scheme}{suffix}.png"),
                );
            }
        }
    }
    color_scheme(&client, "light").await;

    // The phone layout: the menu button instead of the navigation, and
    // sensor rows as cards (no table header).
    client.goto(&format!("{base}/")).await.unwrap();
    let shown = |css: &'static str| {
        let client = client.clone();
        async move {
            client
                .execute(
                    &format!("const e = document.querySelector('{css}'); return e !== null && e.getClientRects().length > 0;"),
                    vec![],
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(shown("#menu").await, serde_json::json!(true));
    assert_eq!(shown("header nav").await, serde_json::json!(false));
    assert_eq!(shown("table.sensors thead").await, serde_json::json!(false));
    click(&client, Locator::Id("menu")).await;
    assert_eq!(shown("header nav").await, serde_json::json!(true));
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        serde_json::json!(true),
        "nothing wider than the phone"
    );
    client.set_window_size(1280, 900).await.unwrap();

    // Each overall state on its status page (no sign-in needed).
    for (slug, banner) in [
        ("servers", "All systems operational"),
        ("databases", "Partial outage"),
        ("legacy", "Major outage"),
        ("printers", "Degraded performance"),
    ] {
        client.goto(&format!("{base}/status/{slug}")).await.unwrap();
        let text = client
            .find(Locator::Id("overall"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(text, banner, "/status/{slug}");
    }

    // The stream drops (the monitor stops): the dashboard says so.
    client.goto(&format!("{base}/")).await.unwrap();
    until(
        &client,
        "return document.getElementById('live-lost').hidden === true;",
        "the stream is open",
    )
    .await;
    drop(serve);
    until(
        &client,
        "return document.getElementById('live-lost').hidden === false;",
        "the connection-lost notice",
    )
    .await;
    client.close().await.unwrap();
}

/// Reloads `url` until the script expression `expression` equals `want`,
/// for at most 30 s.
async fn wait_text_where(client: &Client, url: &str, expression: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        client.goto(url).await.unwrap();
        let value = client
            .execute(&format!("return {expression};"), vec![])
            .await
            .unwrap();
        if value == serde_json::json!(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{expression} still reads {value}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
