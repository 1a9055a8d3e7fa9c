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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let web_port = free_port();
    let _serve = Killed(
        Command::new(bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{web_port}")])
            .current_dir(&dir.path)
            .env("PORTWATCH_ADMIN_PASSWORD", "browser-test-password")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver_port = free_port();
    let _driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(web_port);
    wait_port(driver_port);
    let client = browser(driver_port, &dir.path.join("profile")).await;
    let base = format!("http://127.0.0.1:{web_port}");

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
    drop(listener);
    let (_closed, _) = closed_port("127.0.0.1");
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

    // Pause it.
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
