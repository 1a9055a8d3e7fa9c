//! The command line against real listeners on 127.0.0.1 and ::1.

use std::io::ErrorKind;

use crate::util::{closed_port, field, json_lines, listener, outcome, portwatch};

#[test]
fn open_and_closed_ports_on_ipv4_and_ipv6_loopback() {
    let open4 = listener("127.0.0.1");
    let open6 = listener("::1");
    let (_c4, closed4) = closed_port("127.0.0.1");
    let (_c6, closed6) = closed_port("::1");
    let targets = [
        format!("127.0.0.1:{}", open4.local_addr().unwrap().port()),
        format!("[::1]:{}", open6.local_addr().unwrap().port()),
        format!("tcp://127.0.0.1:{}", closed4.port()),
        format!("[::1]:{}", closed6.port()),
    ];
    let mut args = vec!["check", "--format", "json"];
    args.extend(targets.iter().map(String::as_str));
    let (code, stdout, stderr) = outcome(&portwatch(&args));
    assert_eq!(code, 2, "a closed port makes the exit code 2: {stderr}");
    let results = json_lines(&stdout);
    let summary: Vec<(String, String, String, String)> = results
        .iter()
        .map(|r| {
            (
                field(r, "status"),
                field(r, "reason"),
                field(r, "address"),
                field(r, "family"),
            )
        })
        .collect();
    let expect = |s: &str, r: &str, a: &str, f: &str| {
        (s.to_owned(), r.to_owned(), a.to_owned(), f.to_owned())
    };
    assert_eq!(
        summary,
        [
            expect("up", "connected", "127.0.0.1", "ipv4"),
            expect("up", "connected", "::1", "ipv6"),
            expect("down", "refused", "127.0.0.1", "ipv4"),
            expect("down", "refused", "::1", "ipv6"),
        ]
    );
    for (result, target) in results.iter().zip(&targets) {
        assert_eq!(&field(result, "target"), target);
        assert!(
            result["checked_at"].as_str().unwrap().ends_with('Z'),
            "{result}"
        );
    }
    let up_time = results[0]["response_time_ms"].as_f64().unwrap();
    assert!(up_time > 0.0 && up_time < 1000.0, "{up_time}");
    assert_eq!(
        results[0]["dns_time_ms"].as_f64(),
        Some(0.0),
        "a literal needs no DNS"
    );
    // The listener saw the handshake (it is in the accept queue).
    open4.set_nonblocking(true).unwrap();
    assert!(
        open4.accept().is_ok(),
        "portwatch connected to the listener"
    );
}

#[test]
fn exit_code_zero_when_everything_is_up_and_names_resolve_from_etc_hosts() {
    let open = listener("127.0.0.1");
    let port = open.local_addr().unwrap().port();
    let target = format!("localhost:{port}");
    let (code, stdout, _) = outcome(&portwatch(&["check", "-4", &target]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("UP "), "{stdout}");
    assert!(stdout.contains("connected to 127.0.0.1"), "{stdout}");
}

#[test]
fn nagios_output_is_check_tcp_compatible() {
    let open = listener("127.0.0.1");
    let port = open.local_addr().unwrap().port();
    let target = format!("127.0.0.1:{port}");
    let (code, stdout, _) = outcome(&portwatch(&[
        "check", "--format", "nagios", "-w", "5s", "-c", "9s", &target,
    ]));
    assert_eq!(code, 0);
    let line = stdout.trim_end();
    let prefix = "TCP OK - ";
    assert!(line.starts_with(prefix), "{line}");
    let (text, perf) = line[prefix.len()..]
        .split_once('|')
        .expect("perfdata after |");
    let (seconds, rest) = text.split_once(' ').unwrap();
    assert_eq!(
        rest,
        format!("second response time on 127.0.0.1 port {port}")
    );
    let seconds: f64 = seconds.parse().unwrap();
    assert_eq!(
        perf,
        format!("time={seconds:.6}s;5.000000;9.000000;0.000000;10.000000")
    );

    // A slow connect against a tiny critical threshold is CRITICAL, exit 2.
    let (code, stdout, _) = outcome(&portwatch(&[
        "check", "--format", "nagios", "-c", "1us", &target,
    ]));
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.starts_with("TCP CRITICAL - "), "{stdout}");
    assert!(stdout.contains("above the critical threshold"), "{stdout}");
    let (code, stdout, _) = outcome(&portwatch(&[
        "check", "--format", "nagios", "-w", "1us", &target,
    ]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("TCP WARNING - "), "{stdout}");
}

#[test]
fn bad_input_is_refused_before_any_packet_with_one_line_and_exit_3() {
    let open = listener("127.0.0.1");
    open.set_nonblocking(true).unwrap();
    let good = format!("127.0.0.1:{}", open.local_addr().unwrap().port());
    let long_name = format!("{}:80", ["abcdefghi"; 26].join("."));
    let long_label = format!("{}.example:80", "a".repeat(64));
    let cases: &[(&[&str], &str)] = &[
        (&["check", "host:0"], "1 to 65535"),
        (&["check", "host:65536"], "1 to 65535"),
        (&["check", "host:-1"], "1 to 65535"),
        (&["check", "host:abc"], "unknown service 'abc'"),
        (&["check", "host:sshd"], "did you mean ssh"),
        (&["check", "2001:db8::1:80"], "write [2001:db8::1]:80"),
        (&["check", ":22"], "empty host"),
        (&["check", &long_name], "at most 253"),
        (&["check", &long_label], "at most 63"),
        (&["check", "-t", "ten", "host:22"], "invalid duration 'ten'"),
        (&["check", "-w", "0s", "host:22"], "greater than zero"),
        (
            &["check", "--source", "nowhere", "host:22"],
            "not an IP address",
        ),
        (&["scan", "localhost", "--ports", "10-5"], "write 5-10"),
        (&["scan", "localhost", "--ports", "1-70000"], "1 to 65535"),
        (&["check", "--format", "xml", "host:22"], "--format"),
    ];
    for (args, needle) in cases {
        // The valid target comes first: nothing may be sent to it either.
        let mut full: Vec<&str> = args.to_vec();
        if full[0] == "check" {
            full.insert(1, &good);
        }
        let (code, stdout, stderr) = outcome(&portwatch(&full));
        assert_eq!(code, 3, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} should mention {needle:?}"
        );
    }
    assert_eq!(
        open.accept().err().map(|e| e.kind()),
        Some(ErrorKind::WouldBlock),
        "no connection was made"
    );
}

#[test]
fn internationalised_names_are_converted_to_punycode() {
    let (code, stdout, _) = outcome(&portwatch(&[
        "check",
        "--format",
        "json",
        "-t",
        "2s",
        "bücher.invalid:80",
    ]));
    assert_eq!(code, 2);
    let result = &json_lines(&stdout)[0];
    assert_eq!(field(result, "host"), "xn--bcher-kva.invalid");
    assert_eq!(field(result, "target"), "bücher.invalid:80");
    assert_eq!(field(result, "reason"), "dns_error");
}

#[test]
fn a_checker_failure_is_unknown_never_down() {
    let open = listener("127.0.0.1");
    let target = format!("127.0.0.1:{}", open.local_addr().unwrap().port());
    // 192.0.2.200 is not an address of this machine: bind fails.
    let (code, stdout, _) = outcome(&portwatch(&[
        "check",
        "--format",
        "json",
        "--source",
        "192.0.2.200",
        &target,
    ]));
    assert_eq!(code, 3, "{stdout}");
    let result = &json_lines(&stdout)[0];
    assert_eq!(field(result, "status"), "unknown", "{result}");
    assert_eq!(field(result, "reason"), "local_error", "{result}");
    assert!(field(result, "message").contains("192.0.2.200"), "{result}");

    // Out of file descriptors. Below some limit the program cannot start
    // at all (exit 3 with a message); just above it, the check's socket
    // cannot be made. Neither may ever look like DOWN, nor crash.
    let mut saw_local_error = false;
    for limit in 4..=16 {
        let script = format!(
            "ulimit -n {limit}; exec {} check --format json {target}",
            crate::util::bin()
        );
        let output = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let (code, stdout, stderr) = outcome(&output);
        assert!(
            code == 0 || code == 3,
            "limit {limit}: exit {code}: {stdout} {stderr}"
        );
        if let Some(result) = json_lines(&stdout).first() {
            let status = field(result, "status");
            assert!(
                status == "up" || status == "unknown",
                "limit {limit}: {result}"
            );
            if field(result, "reason") == "local_error" {
                assert_eq!((code, status.as_str()), (3, "unknown"), "{result}");
                saw_local_error = true;
            }
        } else {
            assert!(
                stderr.starts_with("portwatch: "),
                "limit {limit}: a clear message, got {stderr:?}"
            );
        }
    }
    assert!(
        saw_local_error,
        "some descriptor limit lets the program start but not the check"
    );
}

#[test]
fn scan_finds_open_ports_among_closed_ones() {
    let listeners: Vec<_> = (0..5).map(|_| listener("127.0.0.1")).collect();
    let mut open: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    open.sort_unstable();
    let (low, high) = (
        open[0].saturating_sub(20).max(1),
        open[4].saturating_add(20),
    );
    let spec = format!("{low}-{high}");
    let (code, stdout, stderr) = outcome(&portwatch(&[
        "scan",
        "127.0.0.1",
        "--ports",
        &spec,
        "--format",
        "json",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let reports = json_lines(&stdout);
    assert_eq!(
        reports.len(),
        usize::from(high - low) + 1,
        "every port is reported"
    );
    let found: Vec<u16> = reports
        .iter()
        .filter(|r| r["state"] == "open")
        .map(|r| r["port"].as_u64().unwrap() as u16)
        .collect();
    // Other processes may listen in the range too, but ours must be there
    // and everything else must be closed.
    for port in &open {
        assert!(found.contains(port), "{port} missing from {found:?}");
    }
    assert!(
        reports
            .iter()
            .all(|r| r["state"] == "open" || r["state"] == "closed"),
        "{stdout}"
    );
    assert!(
        stderr.is_empty(),
        "no progress bar when stderr is not a terminal: {stderr:?}"
    );

    let (code, stdout, _) = outcome(&portwatch(&["scan", "localhost", "-4", "--ports", &spec]));
    assert_eq!(code, 0);
    for port in &open {
        assert!(stdout.contains(&format!("{port}/tcp")), "{stdout}");
    }
    assert!(
        stdout.contains(&format!(
            "Scanned {} ports on localhost (127.0.0.1)",
            high - low + 1
        )),
        "{stdout}"
    );
}

#[test]
fn ports_looks_up_the_table() {
    let (code, stdout, _) = outcome(&portwatch(&["ports", "netbios"]));
    assert_eq!(code, 0);
    let names: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(names, ["netbios-ns", "netbios-dgm", "netbios-ssn"]);
    let (_, stdout, _) = outcome(&portwatch(&["ports", "--format", "json", "150"]));
    let entry = &json_lines(&stdout)[0];
    assert_eq!(
        (entry["port"].as_u64(), field(entry, "name")),
        (Some(150), "sql-net".to_owned())
    );
    let (code, _, stderr) = outcome(&portwatch(&["ports", "zzzz-nothing"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("no well-known port matches"), "{stderr}");
}

#[test]
fn help_explains_with_examples_and_completions_are_generated() {
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["scan", "--help"],
        &["ports", "--help"],
    ] {
        let (code, stdout, _) = outcome(&portwatch(args));
        assert_eq!(code, 0);
        assert!(stdout.contains("Examples:"), "{args:?}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let (code, stdout, _) = outcome(&portwatch(&["completions", shell]));
        assert_eq!(code, 0);
        assert!(
            stdout.contains("portwatch") && stdout.contains("scan"),
            "{shell}"
        );
    }
}

/// Regression (hardening #11): `--sni $'a\r\nX-Injected: yes'` added an
/// HTTP header. Values that go onto the wire are checked before any packet,
/// on the command line and in portwatch.toml.
#[test]
fn values_that_go_onto_the_wire_are_validated_first() {
    for (args, says) in [
        (
            vec!["--protocol", "https", "--sni", "a\r\nX-Injected: yes"],
            "--sni: 'a\\u{000d}\\u{000a}X-Injected: yes' is not a server name",
        ),
        (
            vec!["--protocol", "http", "--http-path", "/a b"],
            "--http-path: '/a b' is not a request path",
        ),
        (
            vec!["--protocol", "http", "--http-path", "/x\r\nHost: evil"],
            "--http-path:",
        ),
    ] {
        let mut all = vec!["check"];
        all.extend(args.iter().copied());
        all.push("127.0.0.1:1");
        let (code, stdout, stderr) = outcome(&portwatch(&all));
        assert_eq!(code, 3, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let dir = crate::util::TempDir::new("wire-values");
    let file = dir.path.join("p.toml");
    std::fs::write(
        &file,
        "[[server]]\nname = \"web\"\nhost = \"127.0.0.1\"\n  [[server.sensor]]\n  port = 443\n  protocol = \"https\"\n  sni = \"a\\r\\nX: y\"\n",
    )
    .unwrap();
    let (code, _, stderr) = outcome(&portwatch(&["apply", "--check", file.to_str().unwrap()]));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("p.toml:") && stderr.contains("is not a server name"),
        "{stderr}"
    );
}

/// Regression (hardening #12): a server name with a newline forged a log
/// line. Names, tags and hosts refuse control, text-direction and
/// zero-width characters, at file:line:column.
#[test]
fn names_with_hidden_characters_are_refused() {
    let dir = crate::util::TempDir::new("names");
    for (body, line) in [
        (
            "[[server]]\nname = \"web\\nINFO forged\"\nhost = \"127.0.0.1\"\n",
            2,
        ),
        ("[[group]]\nname = \"Ops\\u202e\"\n", 2),
        (
            "[[server]]\nname = \"web\"\nhost = \"127.0.0.1\"\ntags = [\"a\\u200bb\"]\n",
            2,
        ),
        (
            "[[server]]\nname = \"web\"\nhost = \"127.0.0.1\"\n  [[server.sensor]]\n  name = \"a\\u0000\"\n  port = 80\n",
            5,
        ),
        (
            "[[server]]\nname = \"web\"\nhost = \"exa\\u200bmple.com\"\n",
            3,
        ),
    ] {
        let file = dir.path.join("n.toml");
        std::fs::write(&file, body).unwrap();
        let (code, _, stderr) = outcome(&portwatch(&["apply", "--check", file.to_str().unwrap()]));
        assert_eq!(code, 3, "{body}: {stderr}");
        assert!(
            stderr.contains(&format!("n.toml:{line}:")),
            "{body}: {stderr}"
        );
    }
    let (code, _, stderr) = outcome(&portwatch(&["check", "exa\u{200b}mple.com:80"]));
    assert_eq!(code, 3, "{stderr}");
}

/// Regressions (hardening #13, first-run #5): tokens can be listed and
/// revoked, users disabled and given new passwords from the command line,
/// token names are unique; and these commands refuse a store that does not
/// exist instead of creating an empty one.
#[test]
fn access_is_managed_from_the_command_line() {
    let dir = crate::util::TempDir::new("access");
    let db = dir.path.join("portwatch.db");
    let db_arg = db.to_str().unwrap();
    let missing = dir.path.join("mistyped.db");
    for args in [
        vec!["status"],
        vec!["report"],
        vec!["pause", "x"],
        vec!["access", "list"],
        vec!["notify", "test", "x"],
    ] {
        let mut all = args.clone();
        all.extend(["--db", missing.to_str().unwrap()]);
        let (code, _, stderr) = outcome(&portwatch(&all));
        assert_eq!(code, 3, "{args:?}: {stderr}");
        assert!(
            stderr.contains("no store at")
                && stderr.contains("start the monitor with portwatch serve, or give --db"),
            "{stderr}"
        );
        assert!(!missing.exists(), "{args:?} created a store");
    }
    portwatch::store::Store::open(&db).unwrap();
    let (code, token, _) = outcome(&portwatch(&["access", "token", "grafana", "--db", db_arg]));
    assert_eq!(code, 0);
    let (code, _, stderr) = outcome(&portwatch(&["access", "token", "grafana", "--db", db_arg]));
    assert_eq!(code, 3);
    assert!(stderr.contains("already exists"), "{stderr}");
    let store = portwatch::store::Store::open(&db).unwrap();
    assert!(store.token(token.trim()).unwrap().is_some());
    let (code, _, _) = outcome(&portwatch(&["access", "user", "alice", "--db", db_arg]));
    assert_eq!(code, 0);
    let (code, list, _) = outcome(&portwatch(&["access", "list", "--db", db_arg]));
    assert_eq!(code, 0);
    assert!(
        list.contains("alice") && list.contains("grafana") && !list.contains(token.trim()),
        "{list}"
    );
    let (code, _, _) = outcome(&portwatch(&["access", "revoke", "grafana", "--db", db_arg]));
    assert_eq!(code, 0);
    assert!(
        store.token(token.trim()).unwrap().is_none(),
        "revoked at once"
    );
    let (code, _, stderr) = outcome(&portwatch(&["access", "revoke", "grafana", "--db", db_arg]));
    assert_eq!(code, 3, "{stderr}");
    let passwd = std::process::Command::new(crate::util::bin())
        .args(["access", "passwd", "alice", "--db", db_arg])
        .env("PORTWATCH_PASSWORD", "new-password-1")
        .output()
        .unwrap();
    assert_eq!(passwd.status.code(), Some(0));
    let session = store
        .login("alice", "new-password-1")
        .unwrap()
        .expect("the new password works");
    assert!(store.session(&session).unwrap().is_some());
    let (code, _, _) = outcome(&portwatch(&["access", "disable", "alice", "--db", db_arg]));
    assert_eq!(code, 0);
    assert!(store.session(&session).unwrap().is_none(), "sessions end");
    assert!(
        store.login("alice", "new-password-1").unwrap().is_none(),
        "disabled"
    );
    let (_, list, _) = outcome(&portwatch(&["access", "list", "--db", db_arg]));
    assert!(list.contains("disabled since"), "{list}");
    let (code, _, _) = outcome(&portwatch(&["access", "enable", "alice", "--db", db_arg]));
    assert_eq!(code, 0);
    assert!(store.login("alice", "new-password-1").unwrap().is_some());
}

/// Regression (first-run #4): `scan localhost` scanned only `::1` and
/// called an IPv4-only service closed. Every address of the name is
/// scanned and named.
#[test]
fn scan_covers_every_address_of_a_name() {
    let v4_only = listener("127.0.0.1");
    let port = v4_only.local_addr().unwrap().port().to_string();
    let (code, stdout, stderr) = outcome(&portwatch(&[
        "scan",
        "localhost",
        "--ports",
        &port,
        "--format",
        "json",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stdout);
    let v4 = lines
        .iter()
        .find(|l| l["address"] == "127.0.0.1")
        .unwrap_or_else(|| panic!("127.0.0.1 was not scanned: {stdout}"));
    assert_eq!(v4["state"], "open", "{stdout}");
    let (code, human, _) = outcome(&portwatch(&["scan", "localhost", "--ports", &port]));
    assert_eq!(code, 0);
    assert!(human.contains("on localhost (127.0.0.1)"), "{human}");
    let (_, only4, _) = outcome(&portwatch(&[
        "scan",
        "localhost",
        "-4",
        "--ports",
        &port,
        "--format",
        "json",
    ]));
    assert!(
        json_lines(&only4)
            .iter()
            .all(|l| l["address"] == "127.0.0.1"),
        "{only4}"
    );
}

/// First-run #11: wording a user meets.
#[test]
fn usage_errors_name_the_valid_values() {
    let (code, _, stderr) = outcome(&portwatch(&["completions", "tcsh"]));
    assert_eq!(code, 3);
    assert!(
        stderr.contains("use one of bash, elvish, fish, powershell, zsh"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
}
