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

/// Serves every connection to a new listener on 127.0.0.1 with `handle`,
/// in a thread of its own; returns the port.
fn listen<F, Fut>(handle: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    crate::util::serve_in_thread(move |listener| async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream));
            }
        }
    })
}

/// Starts a server on 127.0.0.1 in its own thread; returns its port.
fn serve(behaviour: Behaviour) -> u16 {
    listen(move |mut stream| {
        let behaviour = behaviour.clone();
        async move {
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
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nServer: test-tls\r\nContent-Length: 0\r\n\r\n",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            }
        }
    })
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
    // The server's delay starts when it accepts, which may be a little
    // before the client starts its clock: far above the connect time all
    // the same.
    assert!(first_byte >= 250.0 && total >= first_byte, "{result}");
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

    // Plain TCP where TLS was expected: the server answers bytes that are
    // no TLS record (and keeps the connection open), so the handshake
    // fails on them.
    let plain = format!("127.0.0.1:{}", serve(Behaviour::Garbage));
    let (code, result) = check(&["--protocol", "https", "-t", "2s", &plain]);
    assert_eq!(
        (code, field(&result, "reason")),
        (2, "tls_error".into()),
        "{result}"
    );
}

#[test]
fn bad_protocol_options_are_refused_with_the_fix() {
    crate::util::assert_refused(&[
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
        (
            &["--protocol", "http", "--http-status", "99"][..],
            "--http-status: 99 is not an HTTP status",
        ),
    ]);
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
    let details = serde_json::to_value(ssh.last_details.as_ref().unwrap()).unwrap();
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
        let state =
            portwatch::web::AppState::new(portwatch::store::Db::open(&db, 16).unwrap(), None, None)
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

/// A scripted server: sends `greeting` on connect, then answers each
/// request (each read) with the next answer; `tls_after` answers later
/// switch to TLS (a STARTTLS upgrade) after that many answers.
fn scripted(
    greeting: &'static [u8],
    answers: Vec<Vec<u8>>,
    tls_after: Option<(usize, Arc<tokio_rustls::rustls::ServerConfig>)>,
) -> u16 {
    listen(move |mut stream| {
        let (answers, tls_after) = (answers.clone(), tls_after.clone());
        async move {
            let mut buf = vec![0u8; 4096];
            if !greeting.is_empty() {
                let _ = stream.write_all(greeting).await;
            }
            let mut answers = answers.into_iter();
            let mut sent = 0;
            loop {
                if let Some((after, config)) = &tls_after
                    && sent == *after
                {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    for answer in answers.by_ref() {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let _ = tls.write_all(&answer).await;
                    }
                    let _ = tls.read(&mut buf).await;
                    return;
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let Some(answer) = answers.next() else {
                    return;
                };
                let _ = stream.write_all(&answer).await;
                sent += 1;
            }
        }
    })
}

#[test]
fn every_builtin_protocol_holds_its_conversation() {
    let echo_port = {
        // echo: a server that sends back what it reads.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = stream;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        port
    };
    let now_1900 = (jiff::Timestamp::now().as_second() + 2_208_988_800) as u32;
    let mut mysql = vec![0x0a];
    mysql.extend_from_slice(b"10.11.6-MariaDB\0\x01\x00\x00\x00");
    let mut mysql_packet = vec![mysql.len() as u8, 0, 0, 0];
    mysql_packet.extend_from_slice(&mysql);
    let mongo_reply = {
        // OP_MSG reply {ok: 1.0, maxWireVersion: 21}.
        let mut doc = vec![0x01];
        doc.extend_from_slice(b"ok\0");
        doc.extend_from_slice(&1.0f64.to_le_bytes());
        doc.push(0x10);
        doc.extend_from_slice(b"maxWireVersion\0");
        doc.extend_from_slice(&21i32.to_le_bytes());
        doc.push(0);
        let mut bson = ((doc.len() + 4) as i32).to_le_bytes().to_vec();
        bson.extend_from_slice(&doc);
        let mut body = vec![0, 0, 0, 0, 0];
        body.extend_from_slice(&bson);
        let mut message = ((16 + body.len()) as i32).to_le_bytes().to_vec();
        message.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        message.extend_from_slice(&2013i32.to_le_bytes());
        message.extend_from_slice(&body);
        message
    };
    let ldap_bind = vec![
        0x30, 0x0c, 0x02, 0x01, 0x02, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
    ];
    let cases: Vec<(&str, u16, &str, &str)> = vec![
        ("echo", echo_port, "echoed", "16 bytes"),
        ("ftp", scripted(b"220 FTP ready\r\n", vec![], None), "greeting", "FTP ready"),
        ("telnet", scripted(&[0xff, 0xfd, 0x18], vec![], None), "greeting", "IAC DO option 24"),
        ("smtp", scripted(b"220-mx.example ESMTP\r\n220 ready\r\n", vec![b"250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n".to_vec()], None), "extensions", "PIPELINING STARTTLS"),
        ("time", scripted(Box::leak(now_1900.to_be_bytes().to_vec().into_boxed_slice()), vec![], None), "offset_s", ""),
        ("whois", scripted(b"", vec![b"\r\nDomain Name: EXAMPLE\r\n".to_vec()], None), "answer", "Domain Name: EXAMPLE"),
        ("gopher", scripted(b"", vec![b"iWelcome\tfake\t(NULL)\t0\r\n.\r\n".to_vec()], None), "answer", "iWelcome\\tfake\\t(NULL)\\t0"),
        ("finger", scripted(b"", vec![b"No one logged on.\r\n".to_vec()], None), "answer", "No one logged on."),
        ("pop3", scripted(b"+OK POP3 ready\r\n", vec![], None), "greeting", "POP3 ready"),
        ("nntp", scripted(b"201 news ready, no posting\r\n", vec![], None), "greeting", "201 news ready, no posting"),
        ("imap", scripted(b"* OK [CAPABILITY IMAP4rev1] ready\r\n", vec![], None), "greeting", "* OK [CAPABILITY IMAP4rev1] ready"),
        ("ldap", scripted(b"", vec![ldap_bind], None), "bind_result", "0"),
        ("socks", scripted(b"", vec![vec![5, 0]], None), "method", "no authentication"),
        ("mysql", scripted(Box::leak(mysql_packet.into_boxed_slice()), vec![], None), "version", "10.11.6-MariaDB"),
        ("mongodb", scripted(b"", vec![mongo_reply], None), "max_wire_version", "21"),
        ("xmpp", scripted(b"", vec![b"<?xml version='1.0'?><stream:stream><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>".to_vec()], None), "starttls", "offered"),
    ];
    for (protocol, port, key, wanted) in cases {
        let (code, result) = check(&[
            "--protocol",
            protocol,
            "-t",
            "3s",
            &format!("127.0.0.1:{port}"),
        ]);
        assert_eq!(code, 0, "{protocol}: {result}");
        assert_eq!(field(&result, "protocol"), protocol, "{result}");
        let got = result["details"][key].as_str().unwrap_or_default();
        if protocol == "time" {
            // The clock offset: the script's time was taken moments ago.
            let offset: i64 = got.parse().unwrap();
            assert!(offset.abs() <= 5, "{result}");
        } else {
            assert_eq!(got, wanted, "{protocol}: {result}");
        }
    }
}

#[test]
fn starttls_upgrades_for_imap_pop3_ftp_ldap_and_xmpp() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let config = pki.server(
        &["localhost", "127.0.0.1"],
        days_from_now(-1),
        days_from_now(90),
    );
    let ldap_starttls_ok = vec![
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
    ];
    let ldap_bind = vec![
        0x30, 0x0c, 0x02, 0x01, 0x02, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
    ];
    let cases: Vec<(&str, u16)> = vec![
        ("imap", scripted(b"* OK ready\r\n", vec![b"a1 OK begin TLS\r\n".to_vec(), b"* BYE\r\na2 OK\r\n".to_vec()], Some((1, config.clone())))),
        ("pop3", scripted(b"+OK ready\r\n", vec![b"+OK begin TLS\r\n".to_vec(), b"+OK bye\r\n".to_vec()], Some((1, config.clone())))),
        ("ftp", scripted(b"220 ready\r\n", vec![b"234 AUTH TLS ok\r\n".to_vec(), b"221 bye\r\n".to_vec()], Some((1, config.clone())))),
        ("ldap", scripted(b"", vec![ldap_starttls_ok, ldap_bind], Some((1, config.clone())))),
        ("xmpp", scripted(b"", vec![b"<?xml version='1.0'?><stream:stream><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>".to_vec(), b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".to_vec()], Some((2, config.clone())))),
    ];
    for (protocol, port) in cases {
        let (code, result) = check(&[
            "--protocol",
            protocol,
            "--tls",
            "starttls",
            "--ca-file",
            &ca,
            "-t",
            "3s",
            &format!("127.0.0.1:{port}"),
        ]);
        assert_eq!(code, 0, "{protocol}: {result}");
        assert_eq!(field(&result, "protocol"), format!("{protocol}+starttls"));
        assert_eq!(
            result["tls"]["cert"]["subject"], "CN=localhost",
            "{protocol}: {result}"
        );
    }
    // A server that does not offer STARTTLS is a TLS error, said plainly.
    let port = scripted(b"220 mx\r\n", vec![b"250 mx\r\n".to_vec()], None);
    let (_, result) = check(&[
        "--protocol",
        "smtp",
        "--tls",
        "starttls",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(field(&result, "reason"), "tls_error", "{result}");
    assert!(
        field(&result, "message").contains("does not offer STARTTLS"),
        "{result}"
    );
}
