//! `portwatch serve`, `apply`, `status` and `report` as a user runs them:
//! the real binary, real listeners, a real SQLite file, `kill -9`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portwatch::monitor::state::State;
use portwatch::store::Store;

use crate::util::{TempDir, bin, json_lines, outcome, portwatch};

/// A `portwatch serve` child whose stderr lines are collected.
pub(crate) struct Serve {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Serve {
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Serve {
        Serve::start_with_fd_limit(dir, args, None)
    }

    /// Starts serve with its descriptors limited (soft and hard) to
    /// `nofile`, as `ulimit -n` would.
    pub(crate) fn start_with_fd_limit(dir: &Path, args: &[&str], nofile: Option<u32>) -> Serve {
        let mut command = match nofile {
            Some(limit) => {
                let mut command = Command::new("sh");
                command.args([
                    "-c",
                    &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
                    bin(),
                ]);
                command
            }
            None => Command::new(bin()),
        };
        let mut child = command
            .arg("serve")
            // Tests run side by side: each web server takes a free port.
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("PORTWATCH_LOG", "portwatch=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start portwatch serve");
        let (sender, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        for stream in [
            Box::new(stderr) as Box<dyn std::io::Read + Send>,
            Box::new(stdout),
        ] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = sender.send(line);
                }
            });
        }
        Serve {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`, for at most `limit`.
    pub(crate) fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {limit:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    pub(crate) fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// The web interface's address, once serve has printed it.
    pub(crate) fn web_address(&mut self) -> String {
        let line = self.wait_for("  web       http://", Duration::from_secs(30));
        line.split("http://")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    }

    pub(crate) fn terminate(mut self) -> (i32, Vec<String>) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        // The reader threads end with the pipes.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen)
    }
}

fn config(listeners: &[TcpListener], closed: u16) -> String {
    let mut text = String::from(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"1s\"\n[[server]]\nname = \"local\"\nhost = \"127.0.0.1\"\n",
    );
    for listener in listeners {
        text += &format!(
            "  [[server.sensor]]\n  port = {}\n",
            listener.local_addr().unwrap().port()
        );
    }
    text += &format!("  [[server.sensor]]\n  name = \"closed\"\n  port = {closed}\n");
    text
}

/// Polls the store until `ready` says yes, for at most `limit`.
pub(crate) fn wait_store(db: &Path, limit: Duration, ready: impl Fn(&Store) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(store) = Store::open(db)
            && ready(&store)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the store did not get there within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn latest_result_ms(store: &Store, id: i64) -> Option<i64> {
    store.results(id, 0, i64::MAX).ok()?.last().map(|r| r.at_ms)
}

#[test]
fn apply_refuses_a_bad_file_with_its_position_and_changes_nothing() {
    let dir = TempDir::new("apply");
    let db = dir.path.join("portwatch.db");
    let db_arg = db.to_str().unwrap();
    let good = dir.path.join("good.toml");
    std::fs::write(
        &good,
        "[[server]]\nname = \"a\"\nhost = \"localhost\"\n  [[server.sensor]]\n  port = 22\n",
    )
    .unwrap();
    let (code, stdout, _) = outcome(&portwatch(&[
        "apply",
        "--db",
        db_arg,
        good.to_str().unwrap(),
    ]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("1 sensors (1 added, 0 removed)"),
        "{stdout}"
    );

    let bad = dir.path.join("bad.toml");
    std::fs::write(&bad, "[[server]]\nname = \"b\"\nhost = \"localhost\"\n  [[server.sensor]]\n  port = 22\n  intervall = \"5s\"\n").unwrap();
    let (code, stdout, stderr) = outcome(&portwatch(&[
        "apply",
        "--db",
        db_arg,
        bad.to_str().unwrap(),
    ]));
    assert_eq!(code, 3, "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("bad.toml:6:3: unknown field 'intervall'"),
        "{stderr}"
    );
    let (_, stdout, _) = outcome(&portwatch(&["status", "--db", db_arg, "--format", "json"]));
    let sensors: Vec<String> = json_lines(&stdout)
        .iter()
        .map(|s| s["sensor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sensors, ["a/ssh"], "the store is unchanged");
    let (code, stdout, _) = outcome(&portwatch(&["apply", "--check", bad.to_str().unwrap()]));
    assert_eq!((code, stdout.as_str()), (3, ""));
}

#[test]
fn serve_without_sensors_tells_a_newcomer_what_to_do() {
    let dir = TempDir::new("first-screen");
    let mut serve = Serve::start(&dir.path, &[]);
    serve.wait_for("is monitoring 0 sensors", Duration::from_secs(20));
    serve.wait_for("portwatch apply portwatch.toml", Duration::from_secs(5));
    serve.wait_for("monitor started", Duration::from_secs(5));
    let (code, lines) = serve.terminate();
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        dir.path.join("portwatch.db").exists(),
        "the store is created in the current directory"
    );
    // First-run #11: the banner's lines stay together, the hint follows.
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {lines:?}"))
    };
    assert!(at("  store ") < at("  config ") && at("  config ") < at("  web "));
    assert!(
        at("  web ") < at("There is nothing to check yet"),
        "{lines:?}"
    );
}

#[test]
fn kill_9_loses_at_most_the_last_second_and_no_event() {
    let dir = TempDir::new("crash");
    let db = dir.path.join("portwatch.db");
    let mut listeners: Vec<TcpListener> = (0..20)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let (_closed, closed) = crate::util::closed_port("127.0.0.1");
    std::fs::write(
        dir.path.join("portwatch.toml"),
        config(&listeners, closed.port()),
    )
    .unwrap();
    let mut serve = Serve::start(&dir.path, &["--config", "portwatch.toml"]);
    serve.wait_for("to=down", Duration::from_secs(20));
    let started = jiff::Timestamp::now().as_millisecond();
    // Let results pile up for a few seconds of checks.
    wait_store(&db, Duration::from_secs(20), |store| {
        let id = store.sensor_ids("local/closed").unwrap()[0];
        latest_result_ms(store, id).is_some_and(|at| at > started + 3000)
    });
    // Half the services stop: their sensors go down over the next second.
    // Kill the monitor as soon as the first of them is announced, while
    // the others' state changes are in flight.
    let stopped: Vec<u16> = listeners
        .drain(..10)
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let first_down = format!("sensor=local/{} from=up to=down", stopped[0]);
    serve.wait_for(&first_down, Duration::from_secs(20));
    serve.child.kill().unwrap();
    let killed = jiff::Timestamp::now().as_millisecond();
    serve.child.wait().unwrap();
    serve.drain();

    let store = Store::open(&db).unwrap();
    // Every state change that was announced is stored (an announcement
    // follows its commit, so none can be missing).
    let announced: Vec<&String> = serve.seen.iter().filter(|l| l.contains(" to=")).collect();
    let mut stored = 0;
    for id in store.sensor_ids("local").unwrap() {
        let events = store.events(id, 0, i64::MAX).unwrap();
        stored += events.len();
        // At most the last second of results is lost: with checks every
        // second, each sensor's newest stored result is at most one
        // interval plus one flush period old (plus scheduling slack).
        let latest = latest_result_ms(&store, id).expect("results stored");
        assert!(
            killed - latest <= 2500,
            "sensor {id}: last stored result {} ms before the kill",
            killed - latest
        );
    }
    for line in &announced {
        let sensor = line
            .split("sensor=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let to = line.split("to=").nth(1).unwrap().split(' ').next().unwrap();
        let id = store.sensor_ids(sensor).unwrap()[0];
        assert!(
            store
                .events(id, 0, i64::MAX)
                .unwrap()
                .iter()
                .any(|e| e.to.as_str() == to),
            "announced but not stored: {line}"
        );
    }
    assert!(
        stored >= announced.len(),
        "{stored} events stored, {} announced",
        announced.len()
    );
    // The closed one down (once: its re-check is part of its check), and
    // at least the first stopped service down. A first check finding a
    // sensor UP is logged at debug level only, but stored all the same:
    // each of the 20 services was up before half of them stopped.
    assert!(announced.len() >= 2, "{announced:?}");
    let ups = store
        .sensor_ids("local")
        .unwrap()
        .into_iter()
        .filter(|&id| {
            store
                .events(id, 0, i64::MAX)
                .unwrap()
                .iter()
                .any(|e| e.from == State::Pending && e.to == State::Up)
        })
        .count();
    assert_eq!(ups, 20, "a stored pending -> up event for each service");
    drop(store);

    // A restart carries on with the same store.
    let mut serve = Serve::start(&dir.path, &["--config", "portwatch.toml"]);
    serve.wait_for("monitor started", Duration::from_secs(20));
    let restarted = jiff::Timestamp::now().as_millisecond();
    wait_store(&db, Duration::from_secs(20), |store| {
        let id = store.sensor_ids("local/closed").unwrap()[0];
        latest_result_ms(store, id).is_some_and(|at| at > restarted)
    });
    let (code, lines) = serve.terminate();
    assert_eq!(code, 0, "{lines:?}");
    let (code, stdout, _) = outcome(&portwatch(&[
        "status",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert_eq!(
        code, 0,
        "after a clean stop every sensor is pending: {stdout}"
    );
    assert_eq!(json_lines(&stdout).len(), 21);
    let (code, stdout, _) = outcome(&portwatch(&[
        "report",
        "--db",
        db.to_str().unwrap(),
        "local/closed",
        "--since",
        "1h",
        "--format",
        "json",
    ]));
    assert_eq!(code, 0);
    let report = &json_lines(&stdout)[0];
    assert_eq!(report["uptime_by_requests"].as_f64(), Some(0.0), "{report}");
    assert!(
        !report["outages"].as_array().unwrap().is_empty(),
        "{report}"
    );
}

#[test]
fn monitoring_goes_on_while_the_database_is_locked() {
    let dir = TempDir::new("locked");
    let db = dir.path.join("portwatch.db");
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let (_closed, closed) = crate::util::closed_port("127.0.0.1");
    std::fs::write(
        dir.path.join("portwatch.toml"),
        config(&listeners, closed.port()),
    )
    .unwrap();
    let mut serve = Serve::start(&dir.path, &["--config", "portwatch.toml"]);
    serve.wait_for("to=down", Duration::from_secs(20));

    // Hold the write lock longer than the writer's 5 s busy timeout.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked_at = jiff::Timestamp::now().as_millisecond();
    serve.wait_for("cannot write to the store", Duration::from_secs(20));
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    let unlocked_at = jiff::Timestamp::now().as_millisecond();
    wait_store(&db, Duration::from_secs(30), |store| {
        let id = store.sensor_ids("local/closed").unwrap()[0];
        latest_result_ms(store, id).is_some_and(|at| at > unlocked_at)
    });
    let (code, lines) = serve.terminate();
    assert_eq!(code, 0, "{lines:?}");
    // The checks made while the store was locked were kept and written.
    let store = Store::open(&db).unwrap();
    let id = store.sensor_ids("local/closed").unwrap()[0];
    let during = store
        .results(id, locked_at + 500, unlocked_at - 500)
        .unwrap();
    let seconds = (unlocked_at - locked_at) / 1000;
    assert!(
        during.len() as i64 >= seconds - 2,
        "{} results over {seconds} s of lock",
        during.len()
    );
}

#[test]
fn sighup_re_reads_the_configuration_file() {
    let dir = TempDir::new("sighup");
    let listeners: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let (_closed, closed) = crate::util::closed_port("127.0.0.1");
    std::fs::write(
        dir.path.join("portwatch.toml"),
        config(&listeners[..1], closed.port()),
    )
    .unwrap();
    let mut serve = Serve::start(&dir.path, &["--config", "portwatch.toml"]);
    serve.wait_for("monitor started sensors=2", Duration::from_secs(20));
    // A broken file is refused and the running configuration kept.
    std::fs::write(dir.path.join("portwatch.toml"), "[[server]]\nname = 1\n").unwrap();
    Command::new("kill")
        .args(["-HUP", &serve.child.id().to_string()])
        .status()
        .unwrap();
    serve.wait_for("portwatch.toml:2:8", Duration::from_secs(20));
    std::fs::write(
        dir.path.join("portwatch.toml"),
        config(&listeners, closed.port()),
    )
    .unwrap();
    Command::new("kill")
        .args(["-HUP", &serve.child.id().to_string()])
        .status()
        .unwrap();
    serve.wait_for("configuration reloaded sensors=3", Duration::from_secs(20));
    let (code, lines) = serve.terminate();
    assert_eq!(code, 0, "{lines:?}");
}

/// A full disk: a small tmpfs, filled up while the monitor runs, then
/// freed. Needs root (mount); skipped elsewhere.
#[test]
fn monitoring_goes_on_while_the_disk_is_full() {
    if !crate::util::lab_available("monitoring_goes_on_while_the_disk_is_full") {
        return;
    }
    let dir = TempDir::new("diskfull");
    let disk = dir.path.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=4m",
            "tmpfs",
            disk.to_str().unwrap(),
        ])
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        crate::util::skip(
            "monitoring_goes_on_while_the_disk_is_full",
            "mounting a small tmpfs needs root",
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let db = disk.join("portwatch.db");
    let listeners: Vec<TcpListener> = (0..20)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let (_closed, closed) = crate::util::closed_port("127.0.0.1");
    std::fs::write(
        dir.path.join("portwatch.toml"),
        config(&listeners, closed.port()),
    )
    .unwrap();
    let mut serve = Serve::start(
        &dir.path,
        &["--config", "portwatch.toml", "--db", db.to_str().unwrap()],
    );
    serve.wait_for("to=down", Duration::from_secs(20));
    // Fill the disk to the last byte.
    let filler = disk.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=4k"])
        .output();
    let full_at = jiff::Timestamp::now().as_millisecond();
    serve.wait_for("cannot write to the store", Duration::from_secs(60));
    std::fs::remove_file(&filler).unwrap();
    let freed_at = jiff::Timestamp::now().as_millisecond();
    wait_store(&db, Duration::from_secs(60), |store| {
        let id = store.sensor_ids("local/closed").unwrap()[0];
        latest_result_ms(store, id).is_some_and(|at| at > freed_at)
    });
    let (code, lines) = serve.terminate();
    assert_eq!(code, 0, "{lines:?}");
    let store = Store::open(&db).unwrap();
    let id = store.sensor_ids("local/closed").unwrap()[0];
    let during = store.results(id, full_at + 500, freed_at - 500).unwrap();
    let seconds = (freed_at - full_at) / 1000;
    assert!(
        during.len() as i64 >= seconds - 2,
        "{} results over {seconds} s of full disk",
        during.len()
    );
}

/// A raw HTTP/1.1 GET, for checking the served web interface without a
/// client library: returns the status code.
pub(crate) fn http_status(address: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn serve_wires_the_web_options() {
    let dir = TempDir::new("web-options");
    let mut serve = Serve::start(&dir.path, &["--metrics-access", "token"]);
    let line = serve.wait_for("  web       http://", Duration::from_secs(20));
    let address = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    serve.wait_for("sign in   user admin, password", Duration::from_secs(5));
    assert_eq!(http_status(&address, "/healthz"), 200);
    assert_eq!(
        http_status(&address, "/metrics"),
        401,
        "--metrics-access token applies even on loopback"
    );
    assert_eq!(
        http_status(&address, "/"),
        303,
        "pages send visitors to sign in"
    );
    let (code, _) = serve.terminate();
    assert_eq!(code, 0);
}

/// A heartbeat sensor as a user runs one: declared in portwatch.toml, its
/// push URL made with `portwatch push-url`, called over HTTP by a "job"
/// (GET, then a POST that reports a failure), its state read with
/// `portwatch status`.
#[test]
fn a_job_reports_in_through_its_push_url() {
    use std::io::{Read, Write};
    let dir = TempDir::new("heartbeat");
    std::fs::write(
        dir.path.join("portwatch.toml"),
        "[[server]]\nname = \"backup\"\nhost = \"localhost\"\n  [[server.sensor]]\n  name = \"nightly\"\n  kind = \"heartbeat\"\n  every = \"1d\"\n  interval = \"1s\"\n",
    )
    .unwrap();
    let db = dir.path.join("portwatch.db");
    let db = db.to_str().unwrap();
    let (code, _, stderr) = outcome(&portwatch(&[
        "apply",
        "--db",
        db,
        &format!("{}/portwatch.toml", dir.path.display()),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let mut serve = Serve::start(&dir.path, &["--db", db]);
    let web = serve.web_address();
    let (code, url, stderr) = outcome(&portwatch(&[
        "push-url",
        "backup/nightly",
        "--db",
        db,
        "--public-url",
        &format!("http://{web}"),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("shown this once"), "{stderr}");
    let path = url
        .trim()
        .strip_prefix(&format!("http://{web}"))
        .unwrap_or_else(|| panic!("{url}"))
        .to_owned();
    let call = |method: &str, query: &str| {
        let mut stream = std::net::TcpStream::connect(&web).unwrap();
        write!(
            stream,
            "{method} {path}{query} HTTP/1.1\r\nHost: {web}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    };
    let status_line = || {
        let (_, stdout, _) = outcome(&portwatch(&["status", "--db", db]));
        stdout
            .lines()
            .find(|l| l.starts_with("backup/nightly"))
            .unwrap_or_default()
            .to_owned()
    };
    let until = |wanted: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = status_line();
            if wanted.iter().all(|w| line.contains(w)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "{line:?} never showed {wanted:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let reply = call("GET", "?msg=backup%20done&duration=95");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    until(&[" up ", "connected", "took 1m 35s: backup done"]);
    let reply = call("POST", "?status=down&msg=tape%20jammed");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    until(&[" down ", "reported_down", "reported a failure: tape jammed"]);
    // A token that is no push URL's.
    let mut stream = std::net::TcpStream::connect(&web).unwrap();
    write!(
        stream,
        "GET /push/not-a-token HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    let (code, lines) = serve.terminate();
    assert_eq!(code, 0, "{lines:?}");
}
