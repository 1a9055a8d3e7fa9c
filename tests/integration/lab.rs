//! The exact reason for every fault, seen from a client namespace.

use crate::util::{Lab, field, json_lines, lab_available, outcome};

/// (target, reason, status, reported_by or "")
type Case<'a> = (&'a str, &'a str, &'a str, &'a str);

fn assert_cases(lab: &Lab, cases: &[Case]) {
    let targets: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let (code, results) = lab.check_json(&["--timeout", "2s"], &targets);
    for ((target, reason, status, reported_by), result) in cases.iter().zip(&results) {
        assert_eq!(field(result, "target"), *target);
        assert_eq!(
            (
                field(result, "reason").as_str(),
                field(result, "status").as_str(),
                field(result, "reported_by").as_str()
            ),
            (*reason, *status, *reported_by),
            "{target}: {result}"
        );
        if *reason == "connected" {
            assert!(
                result["response_time_ms"].as_f64().unwrap() > 0.0,
                "{result}"
            );
        }
    }
    assert_eq!(code, 2, "a DOWN target makes the exit code 2");
}

#[test]
fn lab_ipv4_reasons() {
    if !lab_available("lab_ipv4_reasons") {
        return;
    }
    let lab = Lab::new();
    assert_cases(
        &lab,
        &[
            ("192.0.2.2:80", "connected", "up", ""),
            ("192.0.2.2:86", "refused", "down", ""),
            ("192.0.2.2:81", "timeout", "down", ""),
            ("192.0.2.2:82", "refused", "down", ""),
            ("192.0.2.2:83", "host_unreachable", "down", "192.0.2.2"),
            ("192.0.2.2:84", "network_unreachable", "down", "192.0.2.2"),
            ("192.0.2.2:85", "admin_prohibited", "down", "192.0.2.2"),
            // ARP finds no host: the client's own stack reports it.
            ("192.0.2.99:80", "host_unreachable", "down", "192.0.2.1"),
            ("198.51.100.7:80", "network_unreachable", "down", ""),
        ],
    );
}

#[test]
fn lab_ipv6_reasons() {
    if !lab_available("lab_ipv6_reasons") {
        return;
    }
    let lab = Lab::new();
    assert_cases(
        &lab,
        &[
            ("[2001:db8::2]:80", "connected", "up", ""),
            ("[2001:db8::2]:86", "refused", "down", ""),
            ("[2001:db8::2]:81", "timeout", "down", ""),
            ("[2001:db8::2]:82", "refused", "down", ""),
            (
                "[2001:db8::2]:83",
                "host_unreachable",
                "down",
                "2001:db8::2",
            ),
            (
                "[2001:db8::2]:84",
                "network_unreachable",
                "down",
                "2001:db8::2",
            ),
            (
                "[2001:db8::2]:85",
                "admin_prohibited",
                "down",
                "2001:db8::2",
            ),
            (
                "[2001:db8::99]:80",
                "host_unreachable",
                "down",
                "2001:db8::1",
            ),
            ("[2001:db8:ffff::7]:80", "network_unreachable", "down", ""),
        ],
    );
}

#[test]
fn lab_happy_eyeballs_falls_back_from_dead_ipv6_to_ipv4() {
    if !lab_available("lab_happy_eyeballs_falls_back_from_dead_ipv6_to_ipv4") {
        return;
    }
    let lab = Lab::new();
    // dual.test has 2001:db8::2 (port 87 dropped) and 192.0.2.2 (listening).
    let (code, results) = lab.check_json(&["--timeout", "5s"], &["dual.test:87", "dual.test:80"]);
    let fallback = &results[0];
    assert_eq!(code, 0, "{results:?}");
    assert_eq!(field(fallback, "status"), "up", "{fallback}");
    assert_eq!(field(fallback, "address"), "192.0.2.2", "{fallback}");
    assert_eq!(field(fallback, "family"), "ipv4", "{fallback}");
    // Where both work, IPv6 is preferred.
    assert_eq!(
        field(&results[1], "address"),
        "2001:db8::2",
        "{}",
        results[1]
    );
    assert_eq!(field(&results[1], "family"), "ipv6");
    assert!(
        results[1]["dns_time_ms"].as_f64().is_some(),
        "{}",
        results[1]
    );

    // -4 and -6 restrict the family.
    let (_, results) = lab.check_json(&["-4"], &["dual.test:80"]);
    assert_eq!(field(&results[0], "address"), "192.0.2.2");
    let (code, results) = lab.check_json(&["-4"], &["v6only.test:80"]);
    assert_eq!(
        (code, field(&results[0], "reason")),
        (2, "dns_error".to_owned())
    );
    assert!(
        field(&results[0], "message").contains("no IPv4 address"),
        "{}",
        results[0]
    );
}

#[test]
fn lab_names_that_do_not_resolve() {
    if !lab_available("lab_names_that_do_not_resolve") {
        return;
    }
    let lab = Lab::new();
    let (code, results) = lab.check_json(
        &["--timeout", "5s"],
        &["nothing-here.invalid:80", "unknown.example:80"],
    );
    assert_eq!(code, 2);
    for result in &results {
        assert_eq!(field(result, "reason"), "dns_error", "{result}");
        assert_eq!(field(result, "status"), "down", "{result}");
        assert_eq!(
            field(result, "address"),
            "",
            "no address was tried: {result}"
        );
    }
    assert!(
        field(&results[0], "message").contains("NXDOMAIN"),
        "{}",
        results[0]
    );
    // No name server answers in the lab: the message says the lookup failed.
    assert!(
        field(&results[1], "message").contains("could not be resolved"),
        "{}",
        results[1]
    );
}

#[test]
fn lab_expect_closed_both_ways() {
    if !lab_available("lab_expect_closed_both_ways") {
        return;
    }
    let lab = Lab::new();
    let closed = [
        "192.0.2.2:86",
        "192.0.2.2:81",
        "192.0.2.2:85",
        "[2001:db8::2]:85",
    ];
    let (code, results) = lab.check_json(&["--expect-closed", "--timeout", "1s"], &closed);
    assert_eq!(
        code, 0,
        "closed ports are UP with --expect-closed: {results:?}"
    );
    assert!(
        results.iter().all(|r| field(r, "status") == "up"),
        "{results:?}"
    );
    let (code, results) = lab.check_json(&["--expect-closed"], &["192.0.2.2:80"]);
    assert_eq!(code, 2);
    assert_eq!(field(&results[0], "status"), "down");
    assert_eq!(field(&results[0], "reason"), "connected");
    assert!(
        field(&results[0], "message").contains("expected closed"),
        "{}",
        results[0]
    );
}

#[test]
fn lab_scan_reports_every_state() {
    if !lab_available("lab_scan_reports_every_state") {
        return;
    }
    let lab = Lab::new();
    for host in ["192.0.2.2", "2001:db8::2"] {
        let output = lab.portwatch(&[
            "scan",
            host,
            "--ports",
            "80-86",
            "--timeout",
            "1s",
            "--format",
            "json",
        ]);
        let (code, stdout, stderr) = outcome(&output);
        assert_eq!(code, 0, "{stderr}");
        let states: Vec<(String, String)> = json_lines(&stdout)
            .iter()
            .map(|r| (field(r, "port"), field(r, "state")))
            .collect();
        let expected = [
            ("80", "open"),
            ("81", "filtered"),
            ("82", "closed"),
            ("83", "unreachable"),
            ("84", "unreachable"),
            ("85", "prohibited"),
            ("86", "closed"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect();
        assert_eq!(states, expected, "{host}");
    }
}

/// `portwatch ping --format json` in the client namespace: exit code and
/// one result per host.
fn ping(lab: &Lab, args: &[&str], hosts: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let mut all = vec!["ping", "--format", "json", "-t", "2s", "-n", "2"];
    all.extend_from_slice(args);
    all.extend_from_slice(hosts);
    let (code, stdout, stderr) = outcome(&lab.portwatch(&all));
    let results = json_lines(&stdout);
    assert_eq!(results.len(), hosts.len(), "{stdout}\n{stderr}");
    (code, results)
}

/// PING from the client: a reply, a drop (timeout), and each ICMP error
/// with the address that sent it (the server rejects from the address
/// asked for), over IPv4 and IPv6 — once through a raw
/// socket (root) and once through an unprivileged ICMP socket (the
/// namespace's ping_group_range opened), which read errors differently.
#[test]
fn lab_ping_reasons_over_raw_and_unprivileged_sockets() {
    if !lab_available("lab_ping_reasons_over_raw_and_unprivileged_sockets") {
        return;
    }
    let lab = Lab::new();
    let cases: [(&str, &str, &str, &str); 10] = [
        ("192.0.2.2", "reply", "up", ""),
        ("192.0.2.3", "timeout", "down", ""),
        ("192.0.2.4", "host_unreachable", "down", "192.0.2.4"),
        ("192.0.2.5", "network_unreachable", "down", "192.0.2.5"),
        ("192.0.2.6", "admin_prohibited", "down", "192.0.2.6"),
        ("2001:db8::2", "reply", "up", ""),
        ("2001:db8::3", "timeout", "down", ""),
        ("2001:db8::4", "host_unreachable", "down", "2001:db8::4"),
        ("2001:db8::5", "network_unreachable", "down", "2001:db8::5"),
        ("2001:db8::6", "admin_prohibited", "down", "2001:db8::6"),
    ];
    let hosts: Vec<&str> = cases.iter().map(|c| c.0).collect();
    for range in ["1 0", "0 2147483647"] {
        crate::util::sh(&format!(
            "ip netns exec {} sysctl -qw net.ipv4.ping_group_range='{range}'",
            lab.client
        ));
        let (code, results) = ping(&lab, &[], &hosts);
        assert_eq!(code, 2, "{results:?}");
        for ((host, reason, status, reported_by), result) in cases.iter().zip(&results) {
            assert_eq!(
                (
                    field(result, "reason").as_str(),
                    field(result, "status").as_str(),
                    field(result, "reported_by").as_str()
                ),
                (*reason, *status, *reported_by),
                "{host} with ping_group_range {range}: {result}"
            );
            if *reason == "reply" {
                assert_eq!(result["details"]["received"], "2", "{result}");
                assert!(
                    result["response_time_ms"].as_f64().unwrap() > 0.0,
                    "{result}"
                );
            }
        }
    }
    // Neither socket: UNKNOWN, saying which sysctl opens one.
    crate::util::sh(&format!(
        "ip netns exec {} sysctl -qw net.ipv4.ping_group_range='1 0'",
        lab.client
    ));
    let output = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(crate::util::bin())
        .args(["ping", "--format", "json", "192.0.2.2"])
        .output()
        .unwrap();
    let (code, stdout, _) = outcome(&output);
    let result = &json_lines(&stdout)[0];
    assert_eq!(
        (code, field(result, "status").as_str()),
        (3, "unknown"),
        "{result}"
    );
    assert!(
        field(result, "message").contains("net.ipv4.ping_group_range"),
        "{result}"
    );
}

/// A DNS sensor with `--dns-system` asks the resolver of the client's
/// /etc/resolv.conf (the lab's server, where a dnsmasq answers), whatever
/// the target names.
#[test]
fn lab_dns_sensors_can_ask_the_system_resolver() {
    const TEST: &str = "lab_dns_sensors_can_ask_the_system_resolver";
    if !lab_available(TEST) {
        return;
    }
    if !std::path::Path::new("/usr/sbin/dnsmasq").exists() {
        crate::util::skip(TEST, "dnsmasq is not installed (apt install dnsmasq-base)");
        return;
    }
    let lab = Lab::new();
    let mut dnsmasq = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.server, "/usr/sbin/dnsmasq"])
        .args([
            "--keep-in-foreground",
            "--port=53",
            "--listen-address=192.0.2.2",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--user=root",
            "--host-record=www.lab.test,192.0.2.80",
        ])
        .spawn()
        .unwrap();
    let args = [
        "check",
        "--format",
        "json",
        "-t",
        "1s",
        "--dns-system",
        "--dns-query",
        "www.lab.test",
        "--dns-expect",
        "192.0.2.80",
        "localhost:53",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let result = loop {
        let (code, stdout, _) = outcome(&lab.portwatch(&args));
        let result = json_lines(&stdout).pop().unwrap();
        if code == 0 {
            break result;
        }
        assert!(std::time::Instant::now() < deadline, "{result}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    assert_eq!(field(&result, "reason"), "answered", "{result}");
    assert_eq!(field(&result, "address"), "192.0.2.2", "{result}");
}
