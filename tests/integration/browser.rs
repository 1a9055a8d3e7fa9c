//! The web interface in a real headless Chromium, driven through
//! chromedriver (fantoccini), against the real `portwatch serve`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::util::{TempDir, bin, closed_port};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `portwatch serve` on a port the kernel picks (no race for a
/// "free" port) and returns it with the web address it printed.
fn start_serve(dir: &std::path::Path) -> (Killed, String) {
    use std::io::BufRead;
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
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
        let text = client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text == want {
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
    save_screenshot(&client.screenshot().await.unwrap(), "sensor.png");
    client.goto(&format!("{base}/")).await.unwrap();
    save_screenshot(&client.screenshot().await.unwrap(), "dashboard.png");

    // Stop the service: DOWN, with the reason.
    // The port stays bound, not listening, so a connect is refused and
    // nothing else can take it meanwhile.
    let _held = crate::util::close_listener(listener);
    wait_text(&client, &sensor_url, "state", "down").await;
    assert_eq!(
        client
            .find(Locator::Id("reason"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "refused"
    );
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
    save_screenshot(&client.screenshot().await.unwrap(), "dashboard-problem.png");

    // Pause it.
    client.goto(&sensor_url).await.unwrap();
    click(&client, Locator::Id("pause")).await;
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
    save_screenshot(&client.screenshot().await.unwrap(), "status-page.png");
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
