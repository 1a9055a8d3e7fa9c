//! Notifications end to end: the real `portwatch serve`, a real HTTP
//! receiver that fails at first, a local command, and `kill -9` in the
//! middle of a retry sequence.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use portwatch::store::{Storage, Store};
use serde_json::Value;

use crate::util::{TempDir, TestStore, closed_port};

/// A webhook receiver: answers 500 to the first `fail` requests, then
/// records each JSON body and answers 200.
struct Receiver {
    port: u16,
    fail: Arc<AtomicU32>,
    /// While set, requests are read and never answered.
    hang: Arc<AtomicBool>,
    attempts: Arc<AtomicU32>,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(fail: u32) -> Receiver {
        let (fail, attempts, received) = (
            Arc::new(AtomicU32::new(fail)),
            Arc::new(AtomicU32::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let hang = Arc::new(AtomicBool::new(false));
        let (f, a, r, h) = (
            fail.clone(),
            attempts.clone(),
            received.clone(),
            hang.clone(),
        );
        let app = Router::new().route(
            "/hook",
            post(move |body: axum::Json<Value>| {
                let (f, a, r, h) = (f.clone(), a.clone(), r.clone(), h.clone());
                async move {
                    a.fetch_add(1, Ordering::SeqCst);
                    if h.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    if f.load(Ordering::SeqCst) > 0 {
                        f.fetch_sub(1, Ordering::SeqCst);
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "receiver down for a while",
                        );
                    }
                    r.lock().unwrap().push(body.0);
                    (StatusCode::OK, "ok")
                }
            }),
        );
        let port = crate::util::serve_in_thread(|listener| async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            port,
            fail,
            hang,
            attempts,
            received,
        }
    }

    fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.received.lock().unwrap().clone();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} notifications after {} attempts",
                received.len(),
                self.attempts.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn config(port: u16, receiver: u16, command_out: &std::path::Path) -> String {
    format!(
        r#"[defaults]
interval = "1s"
retries = 0
[[server]]
name = "app"
host = "127.0.0.1"
  [[server.sensor]]
  name = "api"
  port = {port}
[[channel]]
name = "hook"
webhook = "http://127.0.0.1:{receiver}/hook"
[[channel]]
name = "script"
command = ["sh", "-c", "cat >> '{out}'; echo >> '{out}'; echo \"$PORTWATCH_SENSOR $PORTWATCH_TO\" >> '{out}.env'"]
[[notify]]
channel = "hook"
on = ["down", "up"]
[[notify]]
channel = "script"
on = ["down"]
servers = ["app"]
"#,
        out = command_out.display()
    )
}

fn serve(dir: &std::path::Path) -> std::process::Child {
    serve_on(dir, &TestStore::sqlite(dir))
}

fn serve_on(dir: &std::path::Path, store: &TestStore) -> std::process::Child {
    std::process::Command::new(crate::util::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "portwatch.toml",
            "--db",
            &store.arg(),
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap()
}

fn outbox(db: &std::path::Path) -> Vec<portwatch::store::outbox::OutboxRow> {
    Store::open(db).unwrap().outbox(100).unwrap()
}

#[test]
fn one_alert_and_one_recovery_arrive_although_the_receiver_fails_at_first() {
    let dir = TempDir::new("notify");
    let store = TestStore::sqlite(&dir.path);
    alert_and_recovery(&dir, &store);
}

/// The same on PostgreSQL: the monitor, the outbox and the delivery work
/// on either store.
#[test]
fn one_alert_and_one_recovery_arrive_on_postgresql() {
    let Some(store) =
        TestStore::postgres("notify::one_alert_and_one_recovery_arrive_on_postgresql")
    else {
        return;
    };
    alert_and_recovery(&TempDir::new("notify-pg"), &store);
}

fn alert_and_recovery(dir: &TempDir, store: &TestStore) {
    let receiver = Receiver::start(2);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = dir.path.join("script.jsonl");
    std::fs::write(
        dir.path.join("portwatch.toml"),
        config(port, receiver.port, &out),
    )
    .unwrap();
    let mut child = serve_on(&dir.path, store);

    // Up first: no notification (pending -> up is not news).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store
        .read(|db| async move { db.status().await })
        .unwrap_or_default()
        .iter()
        .any(|r| r.state == portwatch::monitor::state::State::Up)
    {
        assert!(
            Instant::now() < deadline,
            "the sensor never came up: {}",
            std::fs::read_to_string(dir.path.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _held = crate::util::close_listener(listener);
    let received = receiver.wait_for(1);
    assert_eq!(
        (received[0]["sensor"].as_str(), received[0]["to"].as_str()),
        (Some("app/api"), Some("down")),
        "{received:?}"
    );
    assert_eq!(received[0]["reason"], "refused");
    // A link to the sensor's page on the address serve listens on.
    let link = received[0]["link"].as_str().unwrap_or_default();
    assert!(
        link.starts_with("http://127.0.0.1:") && link.contains("/sensors/"),
        "{received:?}"
    );
    assert!(
        receiver.attempts.load(Ordering::SeqCst) >= 3,
        "two 500s, then the delivery"
    );

    let listener = TcpListener::bind(("127.0.0.1", port));
    if listener.is_err() {
        // The port was taken meanwhile; the recovery cannot be staged.
        let _ = child.kill();
        panic!("could not listen on {port} again");
    }
    let received = receiver.wait_for(2);
    assert_eq!(
        (received[1]["from"].as_str(), received[1]["to"].as_str()),
        (Some("down"), Some("up"))
    );
    let rows = store
        .read(|db| async move { db.outbox(100).await })
        .unwrap();
    let hook: Vec<_> = rows.iter().filter(|r| r.channel == "hook").collect();
    assert_eq!(
        hook.len(),
        2,
        "exactly one alert and one recovery: {rows:?}"
    );
    assert!(hook.iter().all(|r| r.delivered_ms.is_some()));
    // The command got the event as JSON on stdin and in its environment.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !out.exists() || std::fs::read_to_string(&out).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "the command never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["to"], "down");
    assert_eq!(
        std::fs::read_to_string(format!("{}.env", out.display()))
            .unwrap()
            .trim(),
        "app/api down"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_retry_sequence_survives_kill_9() {
    let dir = TempDir::new("notify-restart");
    let receiver = Receiver::start(u32::MAX);
    let (_closed, closed) = closed_port("127.0.0.1");
    let out = dir.path.join("script.jsonl");
    std::fs::write(
        dir.path.join("portwatch.toml"),
        config(closed.port(), receiver.port, &out),
    )
    .unwrap();
    let db = dir.path.join("portwatch.db");
    let mut child = serve(&dir.path);
    // Pending -> down alerts; the receiver refuses it at least once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failed = Store::open(&db)
            .ok()
            .and_then(|s| s.outbox(10).ok())
            .unwrap_or_default()
            .iter()
            .any(|r| r.channel == "hook" && r.attempts >= 1);
        if failed {
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    receiver.fail.store(0, Ordering::SeqCst);
    let mut child = serve(&dir.path);
    let received = receiver.wait_for(1);
    assert_eq!(received[0]["to"], "down");
    let hook: Vec<_> = outbox(&db)
        .into_iter()
        .filter(|r| r.channel == "hook")
        .collect();
    assert_eq!(hook.len(), 1, "{hook:?}");
    assert!(
        hook[0].delivered_ms.is_some() && hook[0].attempts >= 2,
        "{hook:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A real SMTP server (aiosmtpd) that prints every mail it receives.
struct Smtp {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_server(dir: &std::path::Path) -> Option<Smtp> {
    let available = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        crate::util::skip(
            "a_down_alert_arrives_by_mail",
            "the SMTP server aiosmtpd is not installed (Debian: python3-aiosmtpd)",
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.join("smtp.log");
    let child = std::process::Command::new("python3")
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Debugging",
        ])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Smtp { child, port, log })
}

#[test]
fn a_down_alert_arrives_by_mail() {
    let dir = TempDir::new("notify-mail");
    let Some(smtp) = smtp_server(&dir.path) else {
        return;
    };
    let (_closed, closed) = closed_port("127.0.0.1");
    let config = format!(
        r#"[defaults]
interval = "1s"
retries = 0
[[server]]
name = "app"
host = "127.0.0.1"
  [[server.sensor]]
  name = "api"
  port = {}
[[channel]]
name = "mail"
smtp = "127.0.0.1"
port = {}
security = "none"
from = "portwatch@example.com"
to = ["ops@example.com", "oncall@example.com"]
[[notify]]
channel = "mail"
on = ["down"]
"#,
        closed.port(),
        smtp.port
    );
    std::fs::write(dir.path.join("portwatch.toml"), config).unwrap();
    let mut child = serve(&dir.path);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mail = loop {
        let text = std::fs::read_to_string(&smtp.log).unwrap_or_default();
        if text.contains("Subject:") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no mail arrived: {}",
            std::fs::read_to_string(dir.path.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        mail.contains("Subject: [portwatch] app/api is DOWN"),
        "{mail}"
    );
    assert!(
        mail.contains("ops@example.com") && mail.contains("oncall@example.com"),
        "{mail}"
    );
    assert!(
        mail.contains("text/plain") && mail.contains("text/html"),
        "a plain and an HTML part: {mail}"
    );
}

/// Regression (hardening #9, tests #6): the other channel's delivery is
/// **recorded** while the hanging receiver still holds its request, not
/// after it times out; then the hanging one times out and is retried.
#[test]
fn a_hanging_receiver_times_out_is_retried_and_holds_up_no_other_channel() {
    let dir = TempDir::new("notify-hang");
    let receiver = Receiver::start(0);
    receiver.hang.store(true, Ordering::SeqCst);
    let (_bound, closed) = closed_port("127.0.0.1");
    let out = dir.path.join("script.jsonl");
    let config = config(closed.port(), receiver.port, &out)
        .replace("webhook = \"http", "timeout = \"6s\"\nwebhook = \"http");
    assert!(config.contains("timeout = \"6s\""));
    std::fs::write(dir.path.join("portwatch.toml"), config).unwrap();
    let mut child = serve(&dir.path);
    let db = dir.path.join("portwatch.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = Store::open(&db)
            .and_then(|s| s.outbox(100))
            .unwrap_or_default();
        if rows
            .iter()
            .any(|r| r.channel == "script" && r.delivered_ms.is_some())
        {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the command's delivery was never recorded: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let hook = rows.iter().find(|r| r.channel == "hook").unwrap();
    assert!(
        hook.attempts == 0 && hook.last_error.is_none(),
        "the command's delivery is recorded while the webhook still hangs: {rows:?}"
    );
    assert_eq!(
        receiver.attempts.load(Ordering::SeqCst),
        1,
        "the webhook's request is held"
    );
    // Then the hanging attempt times out, is recorded, and is retried.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = outbox(&db);
        let timed_out = rows.iter().any(|r| {
            r.channel == "hook"
                && r.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("no answer within 6s"))
        });
        if timed_out {
            break;
        }
        assert!(Instant::now() < deadline, "no timeout recorded: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    receiver.hang.store(false, Ordering::SeqCst);
    let received = receiver.wait_for(1);
    assert_eq!(received[0]["to"], "down");
    assert!(receiver.attempts.load(Ordering::SeqCst) >= 2);
    let _ = child.kill();
    let _ = child.wait();
}

/// A receiver that answers every request with `status` (and a `Location`
/// header when it is a redirect), counting the requests.
fn answering(status: u16, location: Option<String>) -> (u16, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let counted = hits.clone();
    let app = Router::new().fallback(move || {
        let (counted, location) = (counted.clone(), location.clone());
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut response = axum::response::Response::new(axum::body::Body::from("bad payload"));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(location) = location {
                response
                    .headers_mut()
                    .insert("location", location.parse().unwrap());
            }
            response
        }
    });
    let port = crate::util::serve_in_thread(|listener| async move {
        axum::serve(listener, app).await.unwrap();
    });
    (port, hits)
}

/// Regressions (hardening #10, #14, #15): redirects are not followed unless
/// a channel opts in; a reply that no retry can mend (400) marks the
/// notification failed after one attempt; a title with a CR still goes out
/// (headers are cleaned); command channels do not see the daemon's
/// environment.
#[test]
fn deliveries_follow_no_redirects_give_up_on_hopeless_errors_and_keep_secrets_from_commands() {
    let dir = TempDir::new("notify-edges");
    let receiver = Receiver::start(0);
    let target = format!("http://127.0.0.1:{}/hook", receiver.port);
    let (redirect, redirect_hits) = answering(307, Some(target));
    let (rejecting, rejected) = answering(400, None);
    let (_bound, closed) = closed_port("127.0.0.1");
    let port = closed.port();
    let env_out = dir.path.join("env.txt");
    let config = format!(
        r#"[defaults]
interval = "1s"
retries = 0
[[server]]
name = "app"
host = "127.0.0.1"
  [[server.sensor]]
  name = "api"
  port = {port}
[[channel]]
name = "moved"
webhook = "http://127.0.0.1:{redirect}/x"
[[channel]]
name = "follows"
webhook = "http://127.0.0.1:{redirect}/y"
follow_redirects = true
[[channel]]
name = "rejects"
webhook = "http://127.0.0.1:{rejecting}/z"
preset = "ntfy"
title = "{{sensor}}\r\nX-Injected: yes"
[[channel]]
name = "script"
command = ["sh", "-c", "env > '{env}'"]
[[notify]]
channel = "moved"
on = ["down"]
[[notify]]
channel = "follows"
on = ["down"]
[[notify]]
channel = "rejects"
on = ["down"]
[[notify]]
channel = "script"
on = ["down"]
"#,
        env = env_out.display()
    );
    std::fs::write(dir.path.join("portwatch.toml"), config).unwrap();
    let mut child = std::process::Command::new(crate::util::bin())
        .args(["serve", "--no-web", "--config", "portwatch.toml"])
        .current_dir(&dir.path)
        .env("PORTWATCH_ADMIN_PASSWORD", "never-shown-to-commands")
        .env("SOME_TOKEN", "also-private")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let db = dir.path.join("portwatch.db");
    // The channel that follows redirects reaches the receiver; the other
    // does not.
    let received = receiver.wait_for(1);
    assert_eq!(received[0]["to"], "down");
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = outbox(&db);
        let moved = rows.iter().find(|r| r.channel == "moved");
        let rejects = rows.iter().find(|r| r.channel == "rejects");
        if moved.is_some_and(|r| r.last_error.is_some())
            && rejects.is_some_and(|r| r.failed_ms.is_some())
            && env_out.exists()
        {
            break rows;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let moved = rows.iter().find(|r| r.channel == "moved").unwrap();
    assert!(moved.delivered_ms.is_none());
    assert!(
        moved
            .last_error
            .as_deref()
            .unwrap()
            .contains("redirects are not followed"),
        "{moved:?}"
    );
    let rejects = rows.iter().find(|r| r.channel == "rejects").unwrap();
    assert_eq!(rejects.attempts, 1, "{rejects:?}");
    assert!(
        rejects
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("HTTP 400")
    );
    // Not retried: still one request a few seconds later (the backoff
    // would have retried it after 1 s).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rejected.load(Ordering::SeqCst), 1);
    assert_eq!(
        outbox(&db)
            .iter()
            .find(|r| r.channel == "rejects")
            .unwrap()
            .attempts,
        1
    );
    assert!(
        redirect_hits.load(Ordering::SeqCst) >= 2,
        "both channels reached the redirect"
    );
    let env = std::fs::read_to_string(&env_out).unwrap();
    assert!(env.contains("PORTWATCH_SENSOR=app/api"), "{env}");
    assert!(env.contains("PATH="), "{env}");
    assert!(
        !env.contains("never-shown-to-commands") && !env.contains("also-private"),
        "{env}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Regression (first-run #8): `notify test` printed a whole HTML error
/// page over many lines. It prints one line, the body folded and cut.
#[test]
fn notify_test_reports_an_html_error_page_on_one_line() {
    use std::io::{Read, Write};
    let dir = TempDir::new("notify-test-line");
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = server.accept() {
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let body = "<!DOCTYPE HTML>\n<html>\n  <head>\n    <title>Error response</title>\n  </head>\n  <body>\r\n    <h1>Error response</h1>\n    <p>Error code: 501</p>\n  </body>\n</html>\n";
            let _ = write!(
                stream,
                "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let file = dir.path.join("p.toml");
    std::fs::write(
        &file,
        format!("[[channel]]\nname = \"hook\"\nwebhook = \"http://127.0.0.1:{port}/hook\"\n"),
    )
    .unwrap();
    let db = dir.path.join("portwatch.db");
    let db = db.to_str().unwrap();
    let (code, _, stderr) = crate::util::outcome(&crate::util::portwatch(&[
        "apply",
        file.to_str().unwrap(),
        "--db",
        db,
    ]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = crate::util::outcome(&crate::util::portwatch(&[
        "notify", "test", "hook", "--db", db,
    ]));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("portwatch: 'hook' failed: HTTP 501 Not Implemented: <!DOCTYPE HTML> <html> <head> <title>Error response</title>"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\r') && !stderr.contains("  "),
        "{stderr:?}"
    );
}
