//! Every sensor kind from one portwatch.toml, as the README shows it: a
//! router watched by PING with a server depending on it, a second router
//! that drops echo requests (its server paused, not DOWN), a DNS server by
//! its answer (dnsmasq), NTP and SNMP by UDP (chrony, snmpd), a web page
//! by its content, and a nightly backup by heartbeat. The monitor runs in
//! the lab's client namespace, the daemons on its loopback.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Killed, Lab, TempDir, lab_available, outcome, portwatch};

/// Starts `argv` in the lab's client namespace; killed when dropped.
fn start(lab: &Lab, argv: &[&str]) -> Killed {
    Killed(
        Command::new("ip")
            .args(["netns", "exec", &lab.client])
            .args(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn every_kind_from_one_portwatch_toml() {
    const TEST: &str = "kinds::every_kind_from_one_portwatch_toml";
    if !lab_available(TEST) {
        return;
    }
    let binaries = [
        ("/usr/sbin/dnsmasq", "dnsmasq-base"),
        ("/usr/sbin/chronyd", "chrony"),
        ("/usr/sbin/snmpd", "snmpd"),
    ];
    if let Some((binary, package)) = binaries
        .iter()
        .find(|(b, _)| !std::path::Path::new(b).exists())
    {
        crate::util::skip(
            TEST,
            &format!("{binary} is missing (apt install {package})"),
        );
        return;
    }
    let lab = Lab::new();
    let dir = TempDir::new("kinds");
    let root = dir.path.display().to_string();
    // The namespace is new: every port is free in it.
    let _dns = start(
        &lab,
        &[
            "/usr/sbin/dnsmasq",
            "--keep-in-foreground",
            "--port=5353",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--user=root",
            "--auth-zone=example.test",
            "--auth-server=ns.example.test,lo",
            "--host-record=www.example.test,192.0.2.10",
        ],
    );
    std::fs::write(
        dir.path.join("chrony.conf"),
        format!("port 1123\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\npidfile {root}/chrony.pid\n"),
    )
    .unwrap();
    let _ntp = start(
        &lab,
        &[
            "/usr/sbin/chronyd",
            "-d",
            "-x",
            "-f",
            &format!("{root}/chrony.conf"),
        ],
    );
    std::fs::write(
        dir.path.join("snmpd.conf"),
        "rocommunity monitoring 127.0.0.1\n",
    )
    .unwrap();
    let _snmp = start(
        &lab,
        &[
            "/usr/sbin/snmpd",
            "-f",
            "-Lo",
            "-C",
            "-c",
            &format!("{root}/snmpd.conf"),
            "-p",
            &format!("{root}/snmpd.pid"),
            "udp:127.0.0.1:1161",
        ],
    );
    std::fs::create_dir_all(dir.path.join("site")).unwrap();
    std::fs::write(
        dir.path.join("site/index.html"),
        "<h1>Welcome to the shop</h1>\n",
    )
    .unwrap();
    let _web = start(
        &lab,
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            &format!("{root}/site"),
            "8000",
        ],
    );
    let config = r#"[defaults]
interval = "1s"
timeout = "900ms"
retries = 0

[[server]]
name = "router"
host = "192.0.2.2"
  [[server.sensor]]
  kind = "ping"

[[server]]
name = "branch-router"
host = "192.0.2.3"           # drops echo requests
  [[server.sensor]]
  kind = "ping"

[[server]]
name = "shop"
host = "127.0.0.1"
depends_on = "router/ping"
  [[server.sensor]]
  name = "home"
  port = 8000
  http_contains = "Welcome"

[[server]]
name = "branch"
host = "127.0.0.1"
depends_on = "branch-router/ping"
  [[server.sensor]]
  name = "home"
  port = 8000
  http_contains = "Welcome"

[[server]]
name = "ns1"
host = "127.0.0.1"
  [[server.sensor]]
  name = "www"
  kind = "dns"
  port = 5353
  query = "www.example.test"
  expect = ["192.0.2.10"]

[[server]]
name = "infra"
host = "127.0.0.1"
  [[server.sensor]]
  kind = "udp"
  protocol = "ntp"
  port = 1123
  [[server.sensor]]
  kind = "udp"
  protocol = "snmp"
  port = 1161
  community = "monitoring"

[[server]]
name = "backup"
host = "127.0.0.1"
  [[server.sensor]]
  name = "nightly"
  kind = "heartbeat"
  every = "1d"
"#;
    std::fs::write(dir.path.join("portwatch.toml"), config).unwrap();
    let db = format!("{root}/portwatch.db");
    let (code, _, stderr) = outcome(&portwatch(&[
        "apply",
        "--db",
        &db,
        &format!("{root}/portwatch.toml"),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let (code, url, stderr) = outcome(&portwatch(&[
        "push-url",
        "backup/nightly",
        "--db",
        &db,
        "--public-url",
        "http://127.0.0.1:8080",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let _serve = start(
        &lab,
        &[
            crate::util::bin(),
            "serve",
            "--db",
            &db,
            "--config",
            &format!("{root}/portwatch.toml"),
            "--listen",
            "127.0.0.1:8080",
        ],
    );
    // The backup job reports in (from the namespace, where the web is).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pushed = Command::new("ip")
            .args(["netns", "exec", &lab.client, "python3", "-c"])
            .arg(format!(
                "import urllib.request; urllib.request.urlopen('{}?msg=backup%20done', timeout=2)",
                url.trim()
            ))
            .status()
            .unwrap();
        if pushed.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the push URL never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let wanted = [
        ("router/ping", "up", "reply"),
        ("branch-router/ping", "down", "timeout"),
        ("shop/home", "up", "connected"),
        ("branch/home", "paused(dependency)", ""),
        ("ns1/www", "up", "answered"),
        ("infra/ntp", "up", "answered"),
        ("infra/snmp", "up", "answered"),
        ("backup/nightly", "up", ""),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let (_, stdout, _) = outcome(&portwatch(&["status", "--db", &db]));
        let all = wanted.iter().all(|(sensor, state, reason)| {
            stdout.lines().any(|l| {
                l.starts_with(&format!("{sensor} "))
                    && l.split_whitespace().nth(1) == Some(*state)
                    && l.contains(reason)
            })
        });
        if all {
            break stdout;
        }
        assert!(Instant::now() < deadline, "never all as wanted:\n{stdout}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(lines.contains("Welcome"), "{lines}");
    // /metrics: the PING sensors' loss, with no port and service="ping".
    let scrape = Command::new("ip")
        .args(["netns", "exec", &lab.client, "python3", "-c"])
        .arg("import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/metrics', timeout=5).read().decode())")
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&scrape.stdout);
    for (server, loss) in [("router", "0.0"), ("branch-router", "1.0")] {
        let wanted = format!(
            "portwatch_sensor_ping_loss_ratio{{group=\"\",server=\"{server}\",sensor=\"ping\",host=\"192.0.2.{}\",port=\"\",service=\"ping\"}} {loss}",
            if server == "router" { 2 } else { 3 }
        );
        assert!(metrics.contains(&wanted), "{wanted}\n{metrics}");
    }
}
