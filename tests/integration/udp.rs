//! UDP sensors against real daemons from Debian's packages on loopback
//! ports — chrony (NTP), snmpd (SNMP v2c and v3), tftpd-hpa (TFTP) — and
//! against in-test servers for the rest: silence, garbage, custom bytes
//! and a NetBIOS name service. The real binary sends each request.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{Killed, TempDir, outcome, portwatch, said};

/// A daemon on a loopback UDP port; killed when dropped.
struct Daemon {
    _child: Killed,
    port: u16,
}

/// A UDP port free on 127.0.0.1 (free when this returns: the daemon
/// binds it next).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether this runs as root (the daemons want it: chrony and tftpd
/// change users, tftpd chroots).
fn root() -> bool {
    let uid = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&uid.stdout).trim() == "0"
}

/// Starts `binary` with the arguments `args` gives for a free UDP port,
/// and waits until a check with `ready` (the check's options) gets an
/// answer; `None` when the
/// binary is missing or not root (the test is skipped).
fn daemon(
    test: &str,
    (binary, package): (&str, &str),
    ready: &[&str],
    args: impl FnOnce(u16) -> Vec<String>,
) -> Option<Daemon> {
    if !std::path::Path::new(binary).exists() || !root() {
        crate::util::skip(
            test,
            &format!("needs root and {binary} (apt install {package})"),
        );
        return None;
    }
    let port = free_udp_port();
    let args = args(port);
    let child = Command::new(binary)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon {
        _child: Killed(child),
        port,
    };
    let target = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut all = vec!["check", "-t", "300ms"];
        all.extend_from_slice(ready);
        all.push(&target);
        let (code, _, _) = outcome(&portwatch(&all));
        if code == 0 {
            return Some(daemon);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{binary} did not answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `portwatch check --format json` with `args` against `target`.
fn check(target: &str, args: &[&str]) -> (i32, Value) {
    crate::util::check_one(target, args, "1s")
}

#[test]
fn chrony_answers_ntp_with_its_stratum_and_the_offset() {
    let dir = TempDir::new("chrony");
    let Some(chrony) = daemon(
        "udp::chrony_answers_ntp_with_its_stratum_and_the_offset",
        ("/usr/sbin/chronyd", "chrony"),
        &["--udp", "ntp"],
        |port| {
            let conf = dir.path.join("chrony.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\npidfile {}/chrony.pid\n",
                    dir.path.display()
                ),
            )
            .unwrap();
            vec![
                "-d".into(),
                "-x".into(),
                "-f".into(),
                conf.display().to_string(),
            ]
        },
    ) else {
        return;
    };
    let port = chrony.port;
    let (code, up) = check(&format!("127.0.0.1:{}", chrony.port), &["--udp", "ntp"]);
    assert_eq!((code, up["reason"].as_str()), (0, Some("answered")), "{up}");
    assert_eq!(up["protocol"], "ntp");
    assert_eq!(up["details"]["stratum"], "8");
    // The same clock: the offset is well under a second.
    let offset: f64 = up["details"]["offset_ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(offset.abs() < 1000.0, "{up}");
    drop(chrony);
    let (code, refused) = check(&format!("127.0.0.1:{port}"), &["--udp", "ntp"]);
    assert_eq!(
        (code, refused["reason"].as_str()),
        (2, Some("refused")),
        "{refused}"
    );
    assert!(
        said(&refused).contains("ICMP port unreachable"),
        "{refused}"
    );
}

#[test]
fn snmpd_answers_a_v2c_get_and_v3_discovery_and_ignores_a_wrong_community() {
    let dir = TempDir::new("snmpd");
    let conf = dir.path.join("snmpd.conf");
    std::fs::write(&conf, "rocommunity portwatch-test 127.0.0.1\n").unwrap();
    let conf = conf.display().to_string();
    let pid = dir.path.join("snmpd.pid").display().to_string();
    let Some(snmpd) = daemon(
        "udp::snmpd_answers_a_v2c_get_and_v3_discovery_and_ignores_a_wrong_community",
        ("/usr/sbin/snmpd", "snmpd"),
        &["--udp", "snmp", "--snmp-v3"],
        |port| {
            ["-f", "-Lo", "-C", "-c", &conf, "-p", &pid]
                .map(String::from)
                .into_iter()
                .chain([format!("udp:127.0.0.1:{port}")])
                .collect()
        },
    ) else {
        return;
    };
    let target = format!("127.0.0.1:{}", snmpd.port);
    let (code, v2c) = check(
        &target,
        &["--udp", "snmp", "--snmp-community", "portwatch-test"],
    );
    assert_eq!(code, 0, "{v2c}");
    assert_eq!(v2c["details"]["version"], "2c");
    assert!(v2c["details"]["uptime"].is_string(), "{v2c}");
    let (code, v3) = check(&target, &["--udp", "snmp", "--snmp-v3"]);
    assert_eq!(code, 0, "{v3}");
    assert!(
        !v3["details"]["engine_id"].as_str().unwrap().is_empty(),
        "{v3}"
    );
    // public is not this agent's community: it says nothing.
    let (code, wrong) = check(&target, &["--udp", "snmp"]);
    assert_eq!(
        (code, wrong["reason"].as_str()),
        (2, Some("no_response")),
        "{wrong}"
    );
    assert!(
        said(&wrong).contains("does not answer a wrong community"),
        "{wrong}"
    );
}

#[test]
fn tftpd_answers_a_read_request_with_data_or_an_error() {
    let dir = TempDir::new("tftpd");
    let root = dir.path.join("tftp");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("pxelinux.0"), vec![7u8; 600]).unwrap();
    let root = root.display().to_string();
    let Some(tftpd) = daemon(
        "udp::tftpd_answers_a_read_request_with_data_or_an_error",
        ("/usr/sbin/in.tftpd", "tftpd-hpa"),
        &["--udp", "tftp"],
        |port| {
            vec![
                "-L".into(),
                "-a".into(),
                format!("127.0.0.1:{port}"),
                "-s".into(),
                root.clone(),
            ]
        },
    ) else {
        return;
    };
    let target = format!("127.0.0.1:{}", tftpd.port);
    let (code, any) = check(&target, &["--udp", "tftp"]);
    assert_eq!(code, 0, "{any}");
    assert!(
        said(&any).contains("error 1"),
        "not found is an answer: {any}"
    );
    let (code, file) = check(&target, &["--udp", "tftp", "--tftp-file", "pxelinux.0"]);
    assert_eq!(code, 0, "{file}");
    assert_eq!(file["details"]["answer"], "data block 1 (512 bytes)");
    let (code, missing) = check(&target, &["--udp", "tftp", "--tftp-file", "missing.img"]);
    assert_eq!(
        (code, missing["reason"].as_str()),
        (2, Some("protocol_mismatch")),
        "{missing}"
    );
}

/// An in-test UDP server on 127.0.0.1 answering each datagram with
/// `reply(request)` (`None`: silence); its port.
fn serve(reply: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if let Some(answer) = reply(&buf[..n]) {
                let _ = socket.send_to(&answer, from);
            }
        }
    });
    port
}

#[test]
fn silence_is_never_up_garbage_is_a_mismatch_and_custom_bytes_are_matched() {
    let silent = serve(|_| None);
    let (code, quiet) = check(&format!("127.0.0.1:{silent}"), &["--udp", "ntp"]);
    assert_eq!(
        (code, quiet["reason"].as_str()),
        (2, Some("no_response")),
        "{quiet}"
    );
    let garbage = serve(|_| Some(b"\x1b[2J\x07garbage".to_vec()));
    let (code, bad) = check(&format!("127.0.0.1:{garbage}"), &["--udp", "ntp"]);
    assert_eq!(
        (code, bad["reason"].as_str()),
        (2, Some("protocol_mismatch")),
        "{bad}"
    );
    assert!(
        !said(&bad).contains('\x1b') && !said(&bad).contains('\x07'),
        "{bad}"
    );
    let game = serve(|request| (request == b"PING\n").then(|| b"PONG 42\n".to_vec()));
    let target = format!("127.0.0.1:{game}");
    let (code, pong) = check(&target, &["--udp-send", "PING\\n", "--udp-expect", "PONG"]);
    assert_eq!(code, 0, "{pong}");
    assert_eq!(pong["protocol"], "udp");
    let (code, other) = check(&target, &["--udp-send", "PING\\n", "--udp-expect", "HELLO"]);
    assert_eq!(code, 2, "{other}");
    assert!(
        said(&other).contains("expected 'HELLO', got 'PONG 42\\n'"),
        "{other}"
    );
}

#[test]
fn a_netbios_name_service_lists_its_names() {
    let port = serve(|request| {
        // A node status answer for FILESRV in WORKGROUP.
        let mut out = request[..2].to_vec();
        out.extend_from_slice(&[0x84, 0x00, 0, 0, 0, 1, 0, 0, 0, 0]);
        out.extend_from_slice(&request[12..46]);
        out.extend_from_slice(&[0x00, 0x21, 0x00, 0x01, 0, 0, 0, 0, 0, 83]);
        out.push(2);
        for (name, flags) in [("FILESRV", 0x04u8), ("WORKGROUP", 0x84)] {
            out.extend_from_slice(format!("{name:<15}").as_bytes());
            out.extend_from_slice(&[0, flags, 0]);
        }
        out.extend_from_slice(&[0; 46]);
        Some(out)
    });
    let (code, result) = check(&format!("127.0.0.1:{port}"), &["--udp", "netbios-ns"]);
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["details"]["computer"], "FILESRV");
    assert_eq!(result["details"]["workgroup"], "WORKGROUP");
}

#[test]
fn bad_udp_options_are_refused_before_any_packet() {
    crate::util::assert_refused(&[
        (&["--udp", "quic"][..], "--udp: unknown UDP protocol 'quic'"),
        (
            &["--udp", "ntp", "--snmp-community", "x"][..],
            "--snmp-community: 'community' is not a setting of ntp",
        ),
        (
            &["--udp", "snmp", "--snmp-v3", "--snmp-community", "x"][..],
            "--snmp-community:",
        ),
        (&["--udp-send", "\\q"][..], "--udp-send: unknown escape"),
        (&["--udp", "tftp", "--tftp-file", ""][..], "--tftp-file:"),
        (
            &["--udp", "ntp", "--protocol", "ssh"][..],
            "--udp sends a UDP request",
        ),
    ]);
}
