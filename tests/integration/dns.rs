//! DNS sensors against a real dnsmasq serving a test zone on a loopback
//! port, and against in-test servers for each failure: silence, garbage, an
//! answer to another query, a truncated answer (fallback to TCP), and DNS
//! over TLS. The real binary asks each question.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Killed, Pki, outcome, portwatch, said};

/// dnsmasq, authoritative for `test.example`, on a free loopback port;
/// killed when dropped.
struct Dnsmasq {
    _child: Killed,
    port: u16,
}

/// Starts dnsmasq, or `None` (the test skipped) where it is not installed.
fn dnsmasq(test: &str) -> Option<Dnsmasq> {
    let binary = "/usr/sbin/dnsmasq";
    if !std::path::Path::new(binary).exists() {
        crate::util::skip(test, "dnsmasq is not installed (apt install dnsmasq-base)");
        return None;
    }
    // A free port for UDP and TCP alike.
    let port = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break port;
        }
    };
    let mut args = vec![
        "--keep-in-foreground".to_owned(),
        format!("--port={port}"),
        "--listen-address=127.0.0.1".into(),
        "--bind-interfaces".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--conf-file=/dev/null".into(),
        "--pid-file=".into(),
        "--auth-zone=test.example".into(),
        "--auth-server=ns.test.example,lo".into(),
        "--auth-soa=2026120201,hostmaster.test.example".into(),
        "--host-record=www.test.example,192.0.2.10".into(),
        "--host-record=db.test.example,192.0.2.20,2001:db8::20".into(),
        "--mx-host=test.example,mail.test.example,10".into(),
        "--txt-record=test.example,v=spf1 -all".into(),
        "--srv-host=_sip._tcp.test.example,sip.test.example,5060,10,5".into(),
        "--cname=alias.test.example,www.test.example".into(),
    ];
    // As root, dnsmasq would change to a user that may not exist here.
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        args.push("--user=root".into());
    }
    let child = Command::new(binary)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Dnsmasq {
        _child: Killed(child),
        port,
    };
    // Ready when it answers over TCP.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "dnsmasq did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

/// `portwatch check --format json` with `args` against `target`.
fn check(target: &str, args: &[&str]) -> (i32, Value) {
    crate::util::check_one(target, args, "2s")
}

#[test]
fn a_name_server_is_judged_by_its_answers() {
    let Some(server) = dnsmasq("dns::a_name_server_is_judged_by_its_answers") else {
        return;
    };
    let target = format!("127.0.0.1:{}", server.port);
    let (code, up) = check(
        &target,
        &[
            "--dns-query",
            "www.test.example",
            "--dns-expect",
            "192.0.2.10",
        ],
    );
    assert_eq!((code, up["reason"].as_str()), (0, Some("answered")), "{up}");
    assert_eq!(up["protocol"], "dns");
    assert_eq!(up["details"]["answers"], "192.0.2.10");
    assert_eq!(up["details"]["rcode"], "NOERROR");
    assert!(up["response_time_ms"].as_f64().unwrap() > 0.0, "{up}");

    let (code, wrong) = check(
        &target,
        &[
            "--dns-query",
            "www.test.example",
            "--dns-expect",
            "192.0.2.99",
        ],
    );
    assert_eq!(
        (code, wrong["reason"].as_str()),
        (2, Some("unexpected_answer")),
        "{wrong}"
    );
    assert!(
        said(&wrong).contains("A www.test.example. is 192.0.2.10, expected 192.0.2.99"),
        "{wrong}"
    );
    let (code, missing) = check(&target, &["--dns-query", "nothing.test.example"]);
    assert_eq!(code, 2, "{missing}");
    assert!(
        said(&missing).contains("NXDOMAIN for A nothing.test.example., expected NOERROR"),
        "{missing}"
    );
    let (code, gone) = check(
        &target,
        &[
            "--dns-query",
            "nothing.test.example",
            "--dns-rcode",
            "NXDOMAIN",
        ],
    );
    assert_eq!(code, 0, "a name that must not exist: {gone}");

    // The record types, each compared as written.
    for (name, kind, expect) in [
        ("test.example", "MX", "10 mail.test.example"),
        ("test.example", "TXT", "v=spf1 -all"),
        ("test.example", "NS", "ns.test.example"),
        ("db.test.example", "AAAA", "2001:db8::20"),
        ("alias.test.example", "CNAME", "www.test.example."),
        (
            "_sip._tcp.test.example",
            "SRV",
            "10 5 5060 sip.test.example",
        ),
    ] {
        let (code, result) = check(
            &target,
            &[
                "--dns-query",
                name,
                "--dns-type",
                kind,
                "--dns-expect",
                expect,
            ],
        );
        assert_eq!(code, 0, "{kind} {name}: {result}");
    }
    let (code, soa) = check(
        &target,
        &["--dns-query", "test.example", "--dns-type", "SOA"],
    );
    assert_eq!(code, 0, "{soa}");
    assert_eq!(soa["details"]["serial"], "2026120201");
    // Several values: any one, or all.
    let (code, _) = check(
        &target,
        &[
            "--dns-query",
            "www.test.example",
            "--dns-expect",
            "192.0.2.99",
            "--dns-expect",
            "192.0.2.10",
        ],
    );
    assert_eq!(code, 0);
    let (code, all) = check(
        &target,
        &[
            "--dns-query",
            "www.test.example",
            "--dns-expect",
            "192.0.2.99",
            "--dns-expect",
            "192.0.2.10",
            "--dns-expect-all",
        ],
    );
    assert_eq!(code, 2, "{all}");
    assert!(
        said(&all).contains("expected all of 192.0.2.99, 192.0.2.10"),
        "{all}"
    );
    // Over TCP.
    let (code, tcp) = check(
        &target,
        &["--dns-query", "www.test.example", "--dns-transport", "tcp"],
    );
    assert_eq!(
        (code, tcp["protocol"].as_str()),
        (0, Some("dns+tcp")),
        "{tcp}"
    );
    // Nagios: the verdict and the time.
    let (code, stdout, _) = outcome(&portwatch(&[
        "check",
        "--format",
        "nagios",
        "--dns-query",
        "www.test.example",
        "--dns-expect",
        "192.0.2.10",
        &target,
    ]));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("DNS OK - ") && stdout.contains("|time="),
        "{stdout}"
    );

    // Stopped: nothing listens, and the ICMP port unreachable says so.
    drop(server);
    let (code, refused) = check(&target, &["--dns-query", "www.test.example"]);
    assert_eq!(
        (code, refused["reason"].as_str()),
        (2, Some("refused")),
        "{refused}"
    );
}

/// What an in-test UDP server does with a query.
#[derive(Clone, Copy)]
enum Udp {
    /// Nothing.
    Silent,
    /// The query's id, then bytes that are not DNS.
    Garbage,
    /// An answer with another id.
    OtherId,
    /// An answer cut to fit (TC); the TCP port has the whole answer.
    Truncated,
}

/// The answer to `query`: its question, one A record 192.0.2.53.
fn answer_to(query: &[u8]) -> Message {
    let query = Message::from_vec(query).unwrap();
    let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    answer.metadata.response_code = ResponseCode::NoError;
    answer.queries = query.queries.clone();
    let name = query.queries[0].name().clone();
    answer.answers = vec![Record::from_rdata(
        name,
        60,
        RData::A(A::new(192, 0, 2, 53)),
    )];
    answer
}

/// A UDP server (and a TCP one on the same port) on 127.0.0.1; its port.
fn udp_server(behaviour: Udp) -> u16 {
    // A port free for UDP and TCP alike.
    let (socket, tcp, port) = loop {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            break (socket, tcp, port);
        }
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let reply = match behaviour {
                Udp::Silent => continue,
                // The query's id, then bytes that are not DNS.
                Udp::Garbage => [&buf[..2], b"\x1b[2J not DNS at all"].concat(),
                Udp::OtherId => {
                    let mut answer = answer_to(&buf[..n]);
                    answer.metadata.id = answer.metadata.id.wrapping_add(1);
                    answer.to_vec().unwrap()
                }
                Udp::Truncated => {
                    let mut answer = answer_to(&buf[..n]);
                    answer.answers.clear();
                    answer.metadata.truncation = true;
                    answer.to_vec().unwrap()
                }
            };
            let _ = socket.send_to(&reply, from);
        }
    });
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in tcp.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut length = [0u8; 2];
            if stream.read_exact(&mut length).is_err() {
                continue;
            }
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(length))];
            if stream.read_exact(&mut query).is_err() {
                continue;
            }
            let answer = answer_to(&query).to_vec().unwrap();
            let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
            framed.extend(answer);
            let _ = stream.write_all(&framed);
        }
    });
    port
}

#[test]
fn silence_garbage_and_strangers_are_down_and_a_truncated_answer_is_asked_again_over_tcp() {
    let query = ["--dns-query", "www.test.example", "--timeout", "500ms"];
    let (code, silent) = check(&format!("127.0.0.1:{}", udp_server(Udp::Silent)), &query);
    assert_eq!(
        (code, silent["reason"].as_str()),
        (2, Some("no_response")),
        "{silent}"
    );
    assert!(
        said(&silent).contains("no answer from 127.0.0.1 udp port"),
        "{silent}"
    );
    let (code, garbage) = check(&format!("127.0.0.1:{}", udp_server(Udp::Garbage)), &query);
    assert_eq!(
        (code, garbage["reason"].as_str()),
        (2, Some("protocol_mismatch")),
        "{garbage}"
    );
    assert!(!said(&garbage).contains('\x1b'), "escaped: {garbage}");
    // An answer to another query is not the answer: still waiting.
    let (code, stranger) = check(&format!("127.0.0.1:{}", udp_server(Udp::OtherId)), &query);
    assert_eq!(
        (code, stranger["reason"].as_str()),
        (2, Some("no_response")),
        "{stranger}"
    );
    let (code, truncated) = check(&format!("127.0.0.1:{}", udp_server(Udp::Truncated)), &query);
    assert_eq!(code, 0, "{truncated}");
    assert_eq!(truncated["protocol"], "dns+tcp");
    assert_eq!(truncated["details"]["answers"], "192.0.2.53");
}

#[test]
fn dns_over_tls_verifies_the_server_and_reports_its_certificate() {
    let pki = Pki::new();
    let config = pki.server(&["dns.test.example"], (2020, 1, 1), (2090, 1, 1));
    let port = crate::util::serve_in_thread(move |listener| async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut length = [0u8; 2];
                if tls.read_exact(&mut length).await.is_err() {
                    return;
                }
                let mut query = vec![0u8; usize::from(u16::from_be_bytes(length))];
                if tls.read_exact(&mut query).await.is_err() {
                    return;
                }
                let answer = answer_to(&query).to_vec().unwrap();
                let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                framed.extend(answer);
                let _ = tls.write_all(&framed).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let target = format!("127.0.0.1:{port}");
    let ca = pki.ca_file();
    let dot = [
        "--dns-query",
        "www.test.example",
        "--dns-transport",
        "tls",
        "--dns-expect",
        "192.0.2.53",
    ];
    let mut trusted = dot.to_vec();
    trusted.extend(["--ca-file", &ca, "--sni", "dns.test.example"]);
    let (code, up) = check(&target, &trusted);
    assert_eq!(code, 0, "{up}");
    assert_eq!(up["protocol"], "dns+tls");
    assert_eq!(up["tls"]["cert"]["subject"], "CN=dns.test.example");
    // Not trusted: the system's CAs do not know the test CA.
    let (code, untrusted) = check(&target, &dot);
    assert_eq!(
        (code, untrusted["reason"].as_str()),
        (2, Some("tls_error")),
        "{untrusted}"
    );
}

#[test]
fn bad_dns_options_are_refused_before_any_packet() {
    crate::util::assert_refused(&[
        (
            &["--dns-query", "a b"][..],
            "--dns-query: 'a b' is not a DNS name",
        ),
        (
            &["--dns-query", "x.example", "--dns-type", "AXFR"][..],
            "--dns-type: unknown record type 'AXFR'",
        ),
        (
            &["--dns-query", "x.example", "--dns-expect", "mail"][..],
            "--dns-expect: 'mail' is not an address",
        ),
        (
            &["--dns-query", "x.example", "--dns-transport", "quic"][..],
            "--dns-transport: unknown transport 'quic'",
        ),
        (
            &["--dns-query", "x.example", "--dns-rcode", "YX"][..],
            "--dns-rcode: unknown rcode 'YX'",
        ),
        (
            &["--dns-query", "192.0.2.1"][..],
            "ask for record = \"PTR\"",
        ),
        (
            &["--dns-query", "x.example", "--protocol", "ssh"][..],
            "--dns-query asks a name server",
        ),
    ]);
}

#[test]
fn the_monitor_asks_dns_sensors_from_portwatch_toml() {
    let Some(server) = dnsmasq("dns::the_monitor_asks_dns_sensors_from_portwatch_toml") else {
        return;
    };
    let dir = crate::util::TempDir::new("dns-serve");
    std::fs::write(
        dir.path.join("portwatch.toml"),
        format!(
            r#"[defaults]
interval = "1s"
timeout = "1s"
retries = 0
[[server]]
name = "ns1"
host = "127.0.0.1"
  [[server.sensor]]
  name = "www"
  kind = "dns"
  port = {port}
  query = "www.test.example"
  expect = ["192.0.2.10"]
  [[server.sensor]]
  name = "moved"
  kind = "dns"
  port = {port}
  query = "db.test.example"
  expect = ["192.0.2.99"]
"#,
            port = server.port
        ),
    )
    .unwrap();
    let mut child = Command::new(crate::util::bin())
        .args(["serve", "--no-web", "--config", "portwatch.toml"])
        .current_dir(&dir.path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
    let _ = child.kill();
    let _ = child.wait();
    let www = rows.iter().find(|r| r.path == "ns1/www").unwrap();
    assert_eq!(www.last_reason.as_deref(), Some("answered"), "{www:?}");
    let details = serde_json::to_value(www.last_details.as_ref().unwrap()).unwrap();
    assert_eq!(details["protocol"], "dns");
    assert_eq!(details["details"]["answers"], "192.0.2.10");
    let moved = rows.iter().find(|r| r.path == "ns1/moved").unwrap();
    assert_eq!(
        moved.last_reason.as_deref(),
        Some("unexpected_answer"),
        "{moved:?}"
    );
    assert!(
        moved
            .last_message
            .as_deref()
            .unwrap_or("")
            .contains("A db.test.example. is 192.0.2.20, expected 192.0.2.99"),
        "{moved:?}"
    );
}
