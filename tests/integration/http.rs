//! HTTP content checks against an in-test server with one route per case:
//! a page, chunked JSON, redirects (and a loop), basic auth, a body larger
//! than `max_bytes`, and a POST that echoes. The real binary runs each
//! check, from the command line and from the monitor.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{json_lines, outcome, portwatch, said};

/// The answer to one request: status line, headers and body as bytes.
fn answer(method: &str, path: &str, headers: &str, body: &[u8], port: u16) -> Vec<u8> {
    let with_length = |status: &str, extra: &str, body: &[u8]| {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nServer: test-http\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(body);
        }
        out
    };
    match path {
        "/page" => with_length(
            "200 OK",
            "",
            b"<html><h1>Welcome</h1><p>all good</p></html>",
        ),
        "/error-page" => with_length(
            "200 OK",
            "",
            b"<html><p>Fatal error: database down</p></html>",
        ),
        "/json" => {
            // Chunked, split inside the value.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n\
              b\r\n{\"status\":\"\r\n1b\r\ndegraded\",\"db\":{\"up\":true}}\r\n0\r\n\r\n"
                .to_vec()
        }
        "/moved" => with_length("301 Moved Permanently", "Location: /page\r\n", b""),
        "/away" => with_length(
            "302 Found",
            &format!("Location: http://127.0.0.1:{port}/page\r\n"),
            b"",
        ),
        "/loop" => with_length("302 Found", "Location: /loop\r\n", b""),
        "/private" => {
            // "mon:s3cret" in base64.
            if headers.contains("\r\nAuthorization: Basic bW9uOnMzY3JldA==\r\n") {
                with_length("200 OK", "", b"members only")
            } else {
                with_length("401 Unauthorized", "WWW-Authenticate: Basic\r\n", b"")
            }
        }
        "/big" => {
            // No length: the body ends when the server closes.
            let mut out = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
            out.extend(std::iter::repeat_n(b'x', 200_000));
            out.extend_from_slice(b"THE END");
            out
        }
        "/echo" if method == "POST" => with_length("200 OK", "", body),
        "/slow" => with_length("200 OK", "", b"late"),
        "/garbage" => {
            b"HTTP/1.1 200 OK\r\n\x1b[31mX: y\r\n\r\n\x1b[2Jterminal\x07 escapes".to_vec()
        }
        _ => with_length("404 Not Found", "", b"no such page"),
    }
}

/// Serves `answer` on 127.0.0.1; returns the port.
fn server() -> u16 {
    let port = std::sync::Arc::new(std::sync::OnceLock::new());
    let known = port.clone();
    let bound = crate::util::serve_in_thread(move |listener| async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let port = *known.get().expect("set before any request");
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let (head, body) = loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&request[..end + 2]).into_owned();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break (head, request[end + 4..end + 4 + length].to_vec());
                    }
                };
                let mut words = head.split(' ');
                let method = words.next().unwrap_or("").to_owned();
                let path = words.next().unwrap_or("").to_owned();
                if path == "/slow" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let reply = answer(&method, &path, &head, &body, port);
                let _ = stream.write_all(&reply).await;
                let _ = stream.shutdown().await;
                // Drain, so that closing does not reset an unread request.
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
            });
        }
    });
    port.set(bound).unwrap();
    bound
}

/// `portwatch check --format json` against the server: exit code and result.
fn check(port: u16, args: &[&str]) -> (i32, Value) {
    crate::util::check_one(&format!("127.0.0.1:{port}"), args, "5s")
}

#[test]
fn a_page_is_up_when_its_content_is_right_and_down_content_mismatch_when_not() {
    let port = server();
    // Any port: the content options make it an HTTP check.
    let (code, up) = check(
        port,
        &["--http-path", "/page", "--http-contains", "Welcome"],
    );
    assert_eq!((code, up["status"].as_str()), (0, Some("up")), "{up}");
    assert_eq!(up["protocol"], "http");
    assert_eq!(up["details"]["contains"], "Welcome");
    assert_eq!(up["details"]["body"], "44 bytes");

    let (code, missing) = check(
        port,
        &["--http-path", "/page", "--http-contains", "Goodbye"],
    );
    assert_eq!(code, 2, "{missing}");
    assert_eq!(missing["reason"], "content_mismatch");
    assert!(
        said(&missing).contains("'Goodbye' not found in the body (44 bytes): '<html><h1>Welcome"),
        "{missing}"
    );

    let (code, forbidden) = check(
        port,
        &["--http-path", "/error-page", "--http-absent", "Fatal error"],
    );
    assert_eq!(
        (code, forbidden["reason"].as_str()),
        (2, Some("content_mismatch"))
    );
    assert!(
        said(&forbidden).contains("'Fatal error' found in the body at byte 9"),
        "{forbidden}"
    );

    let (code, regex) = check(
        port,
        &["--http-path", "/page", "--http-regex", r"<h1>(\w+)</h1>"],
    );
    assert_eq!(code, 0, "{regex}");
    assert_eq!(regex["details"]["matched"], "<h1>Welcome</h1>");

    // A status outside the accepted ones is a protocol mismatch, as before.
    let (code, gone) = check(port, &["--http-path", "/nothing", "--http-contains", "x"]);
    assert_eq!(
        (code, gone["reason"].as_str()),
        (2, Some("protocol_mismatch")),
        "{gone}"
    );
}

#[test]
fn a_chunked_json_body_is_judged_by_the_value_at_a_path() {
    let port = server();
    let (code, up) = check(port, &["--http-path", "/json", "--http-json", "db.up=true"]);
    assert_eq!(code, 0, "{up}");
    assert_eq!(up["details"]["json"], "db.up = true");
    let (code, down) = check(port, &["--http-path", "/json", "--http-json", "status=ok"]);
    assert_eq!(
        (code, down["reason"].as_str()),
        (2, Some("content_mismatch")),
        "{down}"
    );
    assert!(
        said(&down).contains("status is 'degraded', expected 'ok'"),
        "{down}"
    );
    let (code, absent) = check(port, &["--http-path", "/json", "--http-json", "db.version"]);
    assert_eq!(code, 2, "{absent}");
    assert!(
        said(&absent).contains("no db.version in the JSON body"),
        "{absent}"
    );
    // Nagios output carries the verdict and the perfdata.
    let target = format!("127.0.0.1:{port}");
    let (code, stdout, _) = outcome(&portwatch(&[
        "check",
        "--format",
        "nagios",
        "--http-path",
        "/json",
        "--http-json",
        "status=ok",
        &target,
    ]));
    assert_eq!(code, 2);
    assert!(stdout.starts_with("HTTP CRITICAL"), "{stdout}");
    assert!(
        stdout.contains("expected 'ok'") && stdout.contains("|time="),
        "{stdout}"
    );
}

#[test]
fn redirects_are_followed_when_asked_and_loops_end() {
    let port = server();
    // Not followed: a 301 is within 200-399.
    let (code, plain) = check(port, &["--protocol", "http", "--http-path", "/moved"]);
    assert_eq!(code, 0, "{plain}");
    assert!(
        plain["details"]["status"]
            .as_str()
            .unwrap()
            .starts_with("301")
    );
    // Followed: the content of where it leads is judged.
    let (code, followed) = check(
        port,
        &[
            "--http-path",
            "/moved",
            "--http-follow",
            "--http-contains",
            "Welcome",
        ],
    );
    assert_eq!(code, 0, "{followed}");
    assert!(
        said(&followed).starts_with(&format!(
            "after 1 redirect to http://127.0.0.1:{port}/page: "
        )),
        "{followed}"
    );
    assert_eq!(followed["target"], format!("127.0.0.1:{port}"));
    let (code, absolute) = check(port, &["--http-path", "/away", "--http-follow"]);
    assert_eq!(code, 0, "{absolute}");
    assert_eq!(absolute["details"]["status"], "200 OK");
    let (code, looped) = check(port, &["--http-path", "/loop", "--http-follow"]);
    assert_eq!(
        (code, looped["reason"].as_str()),
        (2, Some("protocol_mismatch")),
        "{looped}"
    );
    assert!(said(&looped).contains("more than 5 redirects"), "{looped}");
}

#[test]
fn credentials_come_from_the_environment_or_a_file_and_a_missing_one_is_unknown() {
    let port = server();
    let target = format!("127.0.0.1:{port}");
    let run = |extra: &[&str], env: Option<&str>| {
        let mut command = std::process::Command::new(crate::util::bin());
        command.args([
            "check",
            "--format",
            "json",
            "--http-path",
            "/private",
            "--http-auth",
            "basic",
            "--http-user",
            "mon",
        ]);
        command
            .args(extra)
            .arg(&target)
            .env("NO_COLOR", "1")
            .env_remove("SITE_PW");
        if let Some(value) = env {
            command.env("SITE_PW", value);
        }
        let (code, stdout, stderr) = outcome(&command.output().unwrap());
        let result = json_lines(&stdout)
            .pop()
            .unwrap_or_else(|| panic!("{stderr}"));
        (code, result)
    };
    let (code, ok) = run(&["--http-secret-env", "SITE_PW"], Some("s3cret"));
    assert_eq!(code, 0, "{ok}");
    let (code, wrong) = run(&["--http-secret-env", "SITE_PW"], Some("guess"));
    assert_eq!(code, 2, "{wrong}");
    assert!(said(&wrong).contains("HTTP 401 Unauthorized"), "{wrong}");
    // No secret: the check cannot be made, which is UNKNOWN, never DOWN.
    let (code, unset) = run(&["--http-secret-env", "SITE_PW"], None);
    assert_eq!(
        (code, unset["status"].as_str()),
        (3, Some("unknown")),
        "{unset}"
    );
    assert!(
        said(&unset).contains("the environment variable SITE_PW is not set"),
        "{unset}"
    );
    assert!(!said(&ok).contains("s3cret") && !said(&wrong).contains("guess"));
    let dir = crate::util::TempDir::new("http-secret");
    let file = dir.path.join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let (code, from_file) = run(&["--http-secret-file", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{from_file}");
}

#[test]
fn a_body_is_sent_and_a_long_answer_is_cut_at_max_bytes() {
    let port = server();
    let (code, echoed) = check(
        port,
        &[
            "--http-path",
            "/echo",
            "--http-body",
            "{\"ping\":42}",
            "--http-header",
            "Content-Type: application/json",
            "--http-json",
            "ping=42",
        ],
    );
    assert_eq!(code, 0, "{echoed}");
    // The keyword is past the first 64 KiB: not found, and the message
    // says how much was read.
    let (code, cut) = check(port, &["--http-path", "/big", "--http-contains", "THE END"]);
    assert_eq!(code, 2, "{cut}");
    assert!(said(&cut).contains("not found in the first 65"), "{cut}");
    let (code, whole) = check(
        port,
        &[
            "--http-path",
            "/big",
            "--http-contains",
            "THE END",
            "--max-bytes",
            "300000",
        ],
    );
    assert_eq!(code, 0, "{whole}");
    // Terminal escapes in a reply never reach the output raw.
    let (code, garbage) = check(
        port,
        &["--http-path", "/garbage", "--http-contains", "nothing"],
    );
    assert_eq!(code, 2, "{garbage}");
    let message = said(&garbage);
    assert!(
        !message.contains('\x1b') && !message.contains('\x07'),
        "{message}"
    );
}

#[test]
fn bad_http_options_are_refused_before_any_packet() {
    crate::util::assert_refused(&[
        (
            &["--http-method", "BREW"][..],
            "--http-method: unknown HTTP method 'BREW'",
        ),
        (
            &["--http-header", "NoColon"][..],
            "--http-header: 'NoColon' has no ':'",
        ),
        (
            &["--http-header", "Connection: close"][..],
            "--http-header: portwatch sets 'Connection' itself",
        ),
        (
            &["--http-json", "a..b"][..],
            "--http-json: 'a..b' is not a JSON path",
        ),
        (
            &["--http-regex", "("][..],
            "--http-regex: '(' is not a regular expression",
        ),
        (
            &["--http-method", "HEAD", "--http-contains", "x"][..],
            "--http-method: a HEAD request has no body",
        ),
        (
            &["--protocol", "ssh", "--http-contains", "x"][..],
            "--http-* options are for HTTP, not ssh",
        ),
        (
            &["--http-auth", "basic", "--http-secret-env", "X"][..],
            "--http-auth: basic http_auth needs user",
        ),
    ]);
}

#[test]
fn the_monitor_judges_content_from_portwatch_toml_and_status_shows_why() {
    let dir = crate::util::TempDir::new("http-serve");
    let port = server();
    std::fs::write(
        dir.path.join("portwatch.toml"),
        format!(
            r#"[defaults]
interval = "1s"
timeout = "2s"
retries = 0
[[server]]
name = "shop"
host = "127.0.0.1"
  [[server.sensor]]
  name = "home"
  port = {port}
  http_path = "/page"
  http_contains = "Welcome"
  [[server.sensor]]
  name = "health"
  port = {port}
  http_path = "/json"
  http_json = {{ path = "status", equals = "ok" }}
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
        let rows = portwatch::store::Store::open(&db)
            .and_then(|s| s.status())
            .unwrap_or_default();
        if rows.len() == 2 && rows.iter().all(|r| r.last_reason.is_some()) {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "{rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (code, stdout, stderr) = outcome(&portwatch(&[
        "status",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
    ]));
    let _ = child.kill();
    let _ = child.wait();
    let home = rows.iter().find(|r| r.path == "shop/home").unwrap();
    assert_eq!(home.last_reason.as_deref(), Some("connected"), "{home:?}");
    let health = rows.iter().find(|r| r.path == "shop/health").unwrap();
    assert_eq!(
        health.last_reason.as_deref(),
        Some("content_mismatch"),
        "{health:?}"
    );
    assert_eq!(code, 2, "a sensor is down: {stdout} {stderr}");
    let listed = json_lines(&stdout);
    let shown = listed
        .iter()
        .find(|r| r["sensor"] == "shop/health")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        shown
            .to_string()
            .contains("status is 'degraded', expected 'ok'"),
        "{shown}"
    );
}

#[test]
fn slow_phases_are_warning_or_down_by_their_own_thresholds() {
    let port = server();
    let slow = ["--protocol", "http", "--http-path", "/slow"];
    let (code, fine) = check(port, &slow);
    assert_eq!(code, 0, "{fine}");
    let mut args = slow.to_vec();
    args.extend(["--phase-warning", "first_byte=100ms"]);
    let (code, warned) = check(port, &args);
    assert_eq!(
        (code, warned["status"].as_str()),
        (1, Some("warning")),
        "{warned}"
    );
    assert!(
        said(&warned).starts_with("first byte took 3")
            && said(&warned).contains("above the warning threshold of 100ms"),
        "{warned}"
    );
    args.extend(["--phase-critical", "total=200ms"]);
    let (code, down) = check(port, &args);
    assert_eq!((code, down["status"].as_str()), (2, Some("down")), "{down}");
    assert!(said(&down).starts_with("total took"), "{down}");
    // A fast page is within the same thresholds.
    let (code, quick) = check(
        port,
        &[
            "--http-path",
            "/page",
            "--http-contains",
            "Welcome",
            "--phase-warning",
            "first_byte=100ms",
        ],
    );
    assert_eq!(code, 0, "{quick}");
    crate::util::assert_refused(&[
        (
            &["--protocol", "http", "--phase-warning", "handshake=1s"][..],
            "--phase-warning: unknown phase 'handshake'",
        ),
        (
            &["--protocol", "http", "--phase-critical", "total"][..],
            "is not PHASE=DURATION",
        ),
        (
            &["--phase-warning", "total=1s"][..],
            "judge a protocol check",
        ),
    ]);
}
