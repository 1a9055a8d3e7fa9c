//! Hardening of a running `portwatch serve`, tried as an attacker would:
//! concurrent guesses, idle connections, a second monitor on one store,
//! file modes, and the systemd unit.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use portwatch::store::Store;

use crate::serve::{Serve, latest_result_ms, wait_store};
use crate::util::{TempDir, bin, outcome, portwatch};

/// A field of /proc/PID/status, in kB.
fn proc_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// One raw HTTP request; returns the status and the whole response.
fn request(address: &str, head: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{head}\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// The sign-in form's cookie and token.
fn login_form(address: &str) -> (String, String) {
    let (status, response) = request(address, "GET /login HTTP/1.1", "");
    assert_eq!(status, 200, "{response}");
    let cookie = response
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let token = cookie.split('=').nth(1).unwrap().to_owned();
    assert!(response.contains(&format!("value=\"{token}\"")));
    (cookie, token)
}

fn metric(address: &str, name: &str) -> u64 {
    let (status, body) = request(address, "GET /metrics HTTP/1.1", "");
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Regression (hardening #1): 300 concurrent wrong sign-ins from one
/// address ran 300 argon2 hashes at once (7 GB) and passed the limit.
/// Now each is counted before its hash: at most 5 are verified, the rest
/// get 429, and the monitor's memory grows by less than 150 MB (4
/// concurrent hashes of 19 MiB at most, plus buffers).
#[test]
fn three_hundred_concurrent_guesses_verify_at_most_five_passwords() {
    let dir = TempDir::new("guesses");
    let mut serve = Serve::start(&dir.path, &[]);
    let address = serve.web_address();
    serve.wait_for("sign in   user admin", Duration::from_secs(10));
    let pid = serve.child.id();
    let (cookie, token) = login_form(&address);
    let rss_before = proc_kb(pid, "VmRSS:");
    let fds_before = open_fds(pid);
    let body = format!("name=admin&password=wrong-guess&csrf={token}");
    let head = format!(
        "POST /login HTTP/1.1\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded"
    );
    let guesses: Vec<_> = (0..300)
        .map(|_| {
            let (address, head, body) = (address.clone(), head.clone(), body.clone());
            std::thread::spawn(move || request(&address, &head, &body).0)
        })
        .collect();
    let statuses: Vec<u16> = guesses.into_iter().map(|t| t.join().unwrap()).collect();
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    assert!(count(429) >= 295, "429s: {} of {statuses:?}", count(429));
    assert_eq!(
        count(429) + count(401) + count(503),
        300,
        "only refusals and wrong passwords: {statuses:?}"
    );
    assert!(
        metric(&address, "portwatch_web_sign_in_verifications_total") <= 5,
        "at most five passwords verified"
    );
    let peak_growth_mb = proc_kb(pid, "VmHWM:").saturating_sub(rss_before) / 1024;
    assert!(
        peak_growth_mb < 150,
        "peak memory grew by {peak_growth_mb} MB"
    );
    let fds_after = open_fds(pid);
    assert!(
        fds_after <= fds_before + 20,
        "open files {fds_before} -> {fds_after}: the store pool is bounded"
    );
    let (code, _) = serve.terminate();
    assert_eq!(code, 0);
}

fn one_sensor_config(port: u16) -> String {
    format!(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"1s\"\n[[server]]\nname = \"local\"\nhost = \"127.0.0.1\"\n  [[server.sensor]]\n  name = \"app\"\n  port = {port}\n"
    )
}

/// Regression (hardening #4): 1,100 idle connections against a process
/// with 1,024 descriptors made every sensor `unknown` and the store
/// unopenable. Now the web takes at most a quarter of the descriptors,
/// idle connections are closed after the header timeout, and checks and
/// store writes go on throughout.
#[test]
fn idle_connections_beyond_the_cap_stop_neither_checks_nor_the_store() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < 1400 {
        panic!(
            "this test needs 1,400 descriptors for its own idle connections; the hard limit is {hard}"
        );
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let dir = TempDir::new("idle");
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        dir.path.join("portwatch.toml"),
        one_sensor_config(app.local_addr().unwrap().port()),
    )
    .unwrap();
    let mut serve =
        Serve::start_with_fd_limit(&dir.path, &["--config", "portwatch.toml"], Some(1024));
    let address = serve.web_address();
    let db = dir.path.join("portwatch.db");
    let id = Store::open(&db).unwrap().sensor_ids("local/app").unwrap()[0];
    wait_store(&db, Duration::from_secs(20), |s| {
        latest_result_ms(s, id).is_some()
    });
    // 1,100 clients connect and say nothing. Past the cap they wait in
    // the kernel's backlog (or are refused when it is full).
    let idle: Vec<TcpStream> = (0..1100)
        .filter_map(|_| TcpStream::connect(&address).ok())
        .collect();
    assert!(idle.len() > 300, "{} idle connections", idle.len());
    let started = Instant::now();
    // Checks and writes go on: results keep arriving, less than 3 s old,
    // for the next 6 seconds.
    while started.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(1500));
        let now = jiff::Timestamp::now().as_millisecond();
        let latest = latest_result_ms(&Store::open(&db).unwrap(), id).unwrap();
        assert!(
            now - latest < 3000,
            "the last result is {} ms old",
            now - latest
        );
    }
    let (code, stdout, stderr) = outcome(&portwatch(&["status", "--db", db.to_str().unwrap()]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("local/app") && stdout.contains("up"),
        "{stdout}"
    );
    // The header timeout (10 s) closes the idle connections: the web
    // answers again, while they are all still open on this side.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        if response.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the web never answered again");
    }
    drop(idle);
    serve.drain();
    let (code, lines) = serve.terminate();
    assert_eq!(code, 0);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Too many open files") && l.contains("unknown")),
        "{lines:?}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Regressions (hardening #6 and #7): the store was created 0644, and two
/// monitors on one store both ran, doubling every check and alert.
#[test]
fn the_store_is_private_and_has_one_monitor() {
    let dir = TempDir::new("one-monitor");
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        dir.path.join("portwatch.toml"),
        one_sensor_config(app.local_addr().unwrap().port()),
    )
    .unwrap();
    let mut first = Serve::start(&dir.path, &["--config", "portwatch.toml"]);
    first.web_address();
    let db = dir.path.join("portwatch.db");
    for file in [
        "portwatch.db",
        "portwatch.db-wal",
        "portwatch.db-shm",
        "portwatch.db.lock",
    ] {
        assert_eq!(mode(&dir.path.join(file)), 0o600, "{file}");
    }
    let second = std::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--no-web"])
        .current_dir(&dir.path)
        .output()
        .unwrap();
    let (code, _, stderr) = outcome(&second);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another portwatch serve (pid {}) is already monitoring the store",
            first.child.id()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Read and edit commands work beside the monitor.
    for (args, says) in [
        (vec!["status"], "local/app"),
        (vec!["report", "--since", "1h"], "local/app"),
        (
            vec!["pause", "local/app"],
            "paused 1 sensor under 'local/app'",
        ),
        (
            vec!["resume", "local/app"],
            "resumed 1 sensor under 'local/app'",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--db", db.to_str().unwrap()]);
        let (code, stdout, stderr) = outcome(&portwatch(&args));
        assert!(
            code == 0 && stdout.contains(says),
            "{args:?}: {code} {stdout}{stderr}"
        );
    }
    let (code, _) = first.terminate();
    assert_eq!(code, 0);
    // A store that others can read is named at start.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut again = Serve::start(&dir.path, &["--no-web"]);
    again.wait_for("readable by other users", Duration::from_secs(20));
    let (code, _) = again.terminate();
    assert_eq!(code, 0);
}

/// Regression (hardening #17): with `DynamicUser` the service could not
/// read its configuration installed as the header said. The unit now names
/// a system user that reads the file through its group: systemd accepts the
/// unit, and a non-root user in that group reads a 640 file in a 750
/// directory (while one outside it cannot).
#[test]
fn the_systemd_unit_verifies_and_its_user_can_read_the_configuration() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = ["systemd-analyze", "setpriv"].iter().all(|tool| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !(root && tools) {
        crate::util::skip(
            "the_systemd_unit_verifies_and_its_user_can_read_the_configuration",
            "needs root, systemd-analyze (Debian: systemd) and setpriv (util-linux)",
        );
        return;
    }
    let dir = TempDir::new("unit");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/portwatch.service"
    ))
    .unwrap();
    assert!(unit.contains("User=portwatch") && !unit.contains("DynamicUser"));
    assert!(unit.contains("install -d -m 750 -o root -g portwatch /etc/portwatch"));
    assert!(unit.contains("install -m 640 -o root -g portwatch"));
    let copy = dir.path.join("portwatch.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/portwatch", bin())).unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .args(["verify", copy.to_str().unwrap()])
        .output()
        .unwrap();
    let (code, stdout, stderr) = outcome(&verify);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("portwatch.service"))
        .collect();
    assert!(code == 0 && complaints.is_empty(), "{stdout}{stderr}");
    // The install steps' modes, with nogroup (65534) standing for the
    // service's group: its member reads the file, others do not.
    let etc = dir.path.join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/portwatch.toml"),
        etc.join("portwatch.toml"),
    )
    .unwrap();
    for (path, mode) in [(&etc, "750"), (&etc.join("portwatch.toml"), "640")] {
        let done = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "chown root:65534 '{0}' && chmod {mode} '{0}'",
                    path.display()
                ),
            ])
            .status()
            .unwrap();
        assert!(done.success());
    }
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let read_as = |gid: &str| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                &format!("--regid={gid}"),
                "--clear-groups",
                bin(),
            ])
            .args(["apply", "--check"])
            .arg(etc.join("portwatch.toml"))
            .output()
            .unwrap()
    };
    let (code, stdout, stderr) = outcome(&read_as("65534"));
    assert_eq!(code, 0, "the service's group reads it: {stdout}{stderr}");
    let (code, _, stderr) = outcome(&read_as("65533"));
    assert_eq!(code, 3, "others do not: {stderr}");
}
