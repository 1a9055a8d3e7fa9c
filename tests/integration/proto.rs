//! Protocol checks against small in-test servers, one per failure mode:
//! silent, garbage, reset, closed, slow first byte, and TLS with a good,
//! wrong-name, unknown-CA, expiring and expired certificate (made with
//! rcgen). The real binary runs each check.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Pki, field, json_lines, outcome, portwatch};

/// What a test server does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// Accepts and says nothing.
    Silent,
    /// Answers anything with bytes of no protocol.
    Garbage,
    /// Resets the connection at once.
    Reset,
    /// Closes the connection at once.
    Close,
    /// Says an SSH banner after a delay.
    SlowSsh(Duration),
    /// TLS with this certificate chain and key, then HTTP 200.
    Https(Arc<tokio_rustls::rustls::ServerConfig>),
}

/// Starts a server on 127.0.0.1 in its own thread; returns its port.
fn serve(behaviour: Behaviour) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let behaviour = behaviour.clone();
                tokio::spawn(async move {
                    match behaviour {
                        Behaviour::Silent => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                        Behaviour::Garbage => {
                            let mut buf = [0u8; 64];
                            let _ = stream.read(&mut buf).await;
                            let _ = stream.write_all(b"\x00\x01\x02garbage\r\n").await;
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                        Behaviour::Reset => {
                            let std = stream.into_std().unwrap();
                            socket2::SockRef::from(&std)
                                .set_linger(Some(Duration::ZERO))
                                .unwrap();
                            drop(std);
                        }
                        Behaviour::Close => drop(stream),
                        Behaviour::SlowSsh(delay) => {
                            tokio::time::sleep(delay).await;
                            let _ = stream.write_all(b"SSH-2.0-slow_1.0\r\n").await;
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                        Behaviour::Https(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            let Ok(mut tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let mut buf = [0u8; 1024];
                            let _ = tls.read(&mut buf).await;
                            let _ = tls
                                .write_all(b"HTTP/1.1 200 OK\r\nServer: test-tls\r\nContent-Length: 0\r\n\r\n")
                                .await;
                            let _ = tls.shutdown().await;
                        }
                    }
                });
            }
        });
    });
    port
}

/// Runs `portwatch check --format json` with `args`; the exit code and the
/// one result.
fn check(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["check", "--format", "json"];
    all.extend_from_slice(args);
    let output = portwatch(&all);
    let (code, stdout, stderr) = outcome(&output);
    let mut results = json_lines(&stdout);
    assert_eq!(results.len(), 1, "stdout: {stdout}\nstderr: {stderr}");
    (code, results.remove(0))
}

#[test]
fn a_server_that_accepts_but_never_speaks_is_down_with_no_response() {
    let port = serve(Behaviour::Silent);
    let target = format!("127.0.0.1:{port}");
    let (code, result) = check(&["--protocol", "ssh", "-t", "500ms", &target]);
    assert_eq!(
        (code, field(&result, "status"), field(&result, "reason")),
        (2, "down".into(), "no_response".into()),
        "{result}"
    );
    assert!(
        field(&result, "message").contains("no answer within 500ms"),
        "{result}"
    );
    // The plain connect check calls the same server UP: that is the point.
    let (code, result) = check(&[&target]);
    assert_eq!((code, field(&result, "reason")), (0, "connected".into()));
}

#[test]
fn garbage_reset_and_close_have_their_own_reasons() {
    let garbage = format!("127.0.0.1:{}", serve(Behaviour::Garbage));
    let (_, result) = check(&["--protocol", "redis", &garbage]);
    assert_eq!(field(&result, "reason"), "protocol_mismatch", "{result}");
    // What arrived is shown escaped.
    assert!(
        field(&result, "message").contains("expected '+PONG', got '\\x00\\x01\\x02garbage'"),
        "{result}"
    );
    let reset = format!("127.0.0.1:{}", serve(Behaviour::Reset));
    let (_, result) = check(&["--protocol", "ssh", &reset]);
    assert_eq!(field(&result, "reason"), "reset", "{result}");
    let closed = format!("127.0.0.1:{}", serve(Behaviour::Close));
    let (code, result) = check(&["--protocol", "ssh", &closed]);
    assert_eq!(
        (code, field(&result, "reason")),
        (2, "closed_by_peer".into()),
        "{result}"
    );
}

#[test]
fn a_slow_first_byte_is_timed_and_too_slow_is_no_response() {
    let port = serve(Behaviour::SlowSsh(Duration::from_millis(300)));
    let target = format!("127.0.0.1:{port}");
    let (code, result) = check(&["--protocol", "ssh", &target]);
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["details"]["software"], "slow_1.0");
    let first_byte = result["first_byte_ms"].as_f64().unwrap();
    let total = result["total_ms"].as_f64().unwrap();
    assert!(first_byte >= 300.0 && total >= first_byte, "{result}");
    assert!(result["response_time_ms"].as_f64().unwrap() < first_byte);
    let (_, result) = check(&["--protocol", "ssh", "-t", "100ms", &target]);
    assert_eq!(field(&result, "reason"), "no_response", "{result}");
}

#[test]
fn send_expect_steps_with_escapes() {
    let port = serve(Behaviour::Garbage);
    let target = format!("127.0.0.1:{port}");
    let (code, result) = check(&[
        "--send",
        "hello\\r\\n",
        "--expect",
        "\\x02garbage",
        "--expect-regex",
        "(\\r\\n)$",
        &target,
    ]);
    assert_eq!(code, 0, "{result}");
    assert_eq!(field(&result, "protocol"), "custom");
    let (code, result) = check(&[
        "--send",
        "x",
        "--expect",
        "nothing like it",
        "-t",
        "300ms",
        &target,
    ]);
    assert_eq!((code, field(&result, "reason")), (2, "no_response".into()));
    assert!(
        field(&result, "message").contains("expected 'nothing like it'")
            && field(&result, "message").contains("garbage"),
        "{result}"
    );
    let output = portwatch(&["check", "--send", "\\q", &target]);
    let (code, _, stderr) = outcome(&output);
    assert_eq!(code, 3);
    assert!(stderr.contains("--send: unknown escape '\\q'"), "{stderr}");
}

fn days_from_now(days: i64) -> (i32, u8, u8) {
    let date = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * days))
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    (i32::from(date.year()), date.month() as u8, date.day() as u8)
}

#[test]
fn tls_certificates_are_verified_reported_and_judged_by_expiry() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let good = serve(Behaviour::Https(pki.server(
        &["localhost", "127.0.0.1"],
        days_from_now(-10),
        days_from_now(365),
    )));
    let target = format!("127.0.0.1:{good}");
    let (code, result) = check(&["--protocol", "https", "--ca-file", &ca, &target]);
    assert_eq!(code, 0, "{result}");
    assert_eq!(field(&result, "protocol"), "https");
    assert_eq!(result["details"]["status"], "200 OK");
    assert_eq!(result["details"]["server"], "test-tls");
    let cert = &result["tls"]["cert"];
    assert_eq!(cert["subject"], "CN=localhost");
    assert_eq!(cert["issuer"], "CN=portwatch test CA");
    assert_eq!(cert["sans"], serde_json::json!(["localhost", "127.0.0.1"]));
    assert!(result["tls_time_ms"].as_f64().unwrap() > 0.0, "{result}");
    assert!(
        field(&result["tls"], "version").starts_with("TLSv1."),
        "{result}"
    );

    // The system's CA store does not know the test CA.
    let (code, result) = check(&["--protocol", "https", &target]);
    assert_eq!((code, field(&result, "reason")), (2, "tls_error".into()));
    assert!(
        field(&result, "message").contains("UnknownIssuer"),
        "{result}"
    );
    // --insecure checks anyway and reports why it is not trusted.
    let (code, result) = check(&["--protocol", "https", "--insecure", &target]);
    assert_eq!(code, 0, "{result}");
    assert!(field(&result["tls"], "verify_error").contains("UnknownIssuer"));

    // A name the certificate does not cover.
    let (_, result) = check(&[
        "--protocol",
        "https",
        "--ca-file",
        &ca,
        "--sni",
        "other.example",
        &target,
    ]);
    assert_eq!(field(&result, "reason"), "tls_error", "{result}");
    assert!(
        field(&result, "message").contains("not valid for name \"other.example\""),
        "{result}"
    );

    let expiring = serve(Behaviour::Https(pki.server(
        &["127.0.0.1"],
        days_from_now(-10),
        days_from_now(5),
    )));
    let (code, result) = check(&[
        "--protocol",
        "https",
        "--ca-file",
        &ca,
        &format!("127.0.0.1:{expiring}"),
    ]);
    assert_eq!(
        (code, field(&result, "status"), field(&result, "reason")),
        (1, "warning".into(), "cert_expiring".into()),
        "{result}"
    );
    let (code, _) = check(&[
        "--protocol",
        "https",
        "--ca-file",
        &ca,
        "--cert-warn-days",
        "2",
        &format!("127.0.0.1:{expiring}"),
    ]);
    assert_eq!(code, 0, "5 days left, warned from 2");

    let expired = serve(Behaviour::Https(pki.server(
        &["127.0.0.1"],
        days_from_now(-30),
        days_from_now(-1),
    )));
    let (code, result) = check(&[
        "--protocol",
        "https",
        "--ca-file",
        &ca,
        &format!("127.0.0.1:{expired}"),
    ]);
    assert_eq!(
        (code, field(&result, "reason")),
        (2, "cert_expired".into()),
        "{result}"
    );
    assert!(field(&result, "message").contains("expired on"), "{result}");
    assert_eq!(result["tls"]["cert"]["subject"], "CN=127.0.0.1");

    // Plain TCP where TLS was expected.
    let plain = format!("127.0.0.1:{}", serve(Behaviour::Garbage));
    let (_, result) = check(&["--protocol", "https", "-t", "2s", &plain]);
    assert!(
        ["tls_error", "closed_by_peer", "reset"].contains(&field(&result, "reason").as_str()),
        "{result}"
    );
}

#[test]
fn bad_protocol_options_are_refused_with_the_fix() {
    for (args, says) in [
        (&["--protocol", "gopherx"][..], "unknown protocol 'gopherx'"),
        (
            &["--protocol", "redis", "--tls", "starttls"][..],
            "redis has no STARTTLS",
        ),
        (
            &["--tls", "starttls"][..],
            "--tls starttls needs a protocol",
        ),
        (&["--protocol", "ssh", "--send", "x"][..], "drop --protocol"),
        (&["--expect-regex", "("][..], "is not a regular expression"),
    ] {
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        all.push("127.0.0.1:9");
        let (code, _, stderr) = outcome(&portwatch(&all));
        assert!(code == 3 || code == 2, "{args:?}: {code}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn the_monitor_runs_protocol_checks_and_shows_their_phases() {
    use portwatch::store::Store;
    let dir = crate::util::TempDir::new("proto-serve");
    let silent = serve(Behaviour::Silent);
    let slow = serve(Behaviour::SlowSsh(Duration::from_millis(50)));
    std::fs::write(
        dir.path.join("portwatch.toml"),
        format!(
            r#"[defaults]
interval = "1s"
timeout = "500ms"
retries = 0
mode = "auto"
[[server]]
name = "box"
host = "127.0.0.1"
  [[server.sensor]]
  name = "ssh"
  port = {slow}
  protocol = "ssh"
  [[server.sensor]]
  name = "quiet"
  port = {silent}
  protocol = "ssh"
"#
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(crate::util::bin())
        .args(["serve", "--no-web", "--config", "portwatch.toml"])
        .current_dir(&dir.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let db = dir.path.join("portwatch.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = Store::open(&db)
            .and_then(|s| s.status())
            .unwrap_or_default();
        let done = rows.len() == 2
            && rows.iter().all(|r| r.last_reason.is_some())
            && rows
                .iter()
                .any(|r| r.last_reason.as_deref() == Some("no_response"));
        if done {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "{rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let ssh = rows.iter().find(|r| r.path == "box/ssh").unwrap();
    let quiet = rows.iter().find(|r| r.path == "box/quiet").unwrap();
    assert_eq!(ssh.last_reason.as_deref(), Some("connected"), "{ssh:?}");
    let details: Value = serde_json::from_str(ssh.last_details.as_deref().unwrap()).unwrap();
    assert_eq!(details["protocol"], "ssh");
    assert_eq!(details["details"]["software"], "slow_1.0");
    assert!(
        details["first_byte_ms"].as_f64().unwrap() >= 50.0,
        "{details}"
    );
    assert!(
        quiet
            .last_message
            .as_deref()
            .unwrap_or("")
            .contains("no answer within 500ms"),
        "{quiet:?}"
    );

    // The sensor page and /metrics show the phases.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tower::ServiceExt;
        let state = portwatch::web::AppState::new(db.clone(), None, None)
            .with_metrics_access(portwatch::web::MetricsAccess::Open);
        let response = portwatch::web::app(state)
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("portwatch_sensor_phase_seconds{")
                    && l.contains("sensor=\"ssh\"")
                    && l.contains("phase=\"first_byte\"")
            })
            .unwrap_or_else(|| panic!("{text}"));
        let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(seconds >= 0.05, "{line}");
    });
}
