//! The monitor with real listeners, a real SQLite store and the real writer
//! thread; time driven with tokio::time::pause() (loopback connects finish
//! inside the connect call, so virtual time never races real sockets).

use portwatch::store::location::Location;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use portwatch::config::from_toml;
use portwatch::daemon;
use portwatch::monitor::state::{PauseCause, State};
use portwatch::monitor::stats::MonitorStats;
use portwatch::monitor::{Clock, MonitorOptions};
use portwatch::store::{EventRow, Store};

use crate::util::TempDir;

/// A running monitor on a temporary store.
struct Running {
    dir: TempDir,
    stats: Arc<MonitorStats>,
    daemon: daemon::Running,
}

const ORIGIN: &str = "2026-11-29T00:00:00Z";

async fn start(config: &str) -> Running {
    let dir = TempDir::new("monitor");
    let db = dir.path.join("portwatch.db");
    Store::open(&db)
        .unwrap()
        .apply(&from_toml("test.toml", config).unwrap())
        .unwrap();
    start_on(dir, &db).await
}

/// Starts the monitor (the daemon without its web) on a store already
/// prepared in `dir`.
async fn start_on(dir: TempDir, db: &std::path::Path) -> Running {
    start_with(dir, db, MonitorOptions::default()).await
}

/// [`start_on`] with `options` (its clock is replaced by the test's).
async fn start_with(dir: TempDir, db: &std::path::Path, options: MonitorOptions) -> Running {
    let options = MonitorOptions {
        clock: Clock::starting_at(ORIGIN.parse().unwrap()),
        ..options
    };
    let store = daemon::open(&Location::Sqlite(db.to_owned()))
        .await
        .unwrap();
    let daemon = daemon::start(daemon::Options {
        db: store,
        config: None,
        monitor: options,
        web: None,
        // The outbox is checked as the monitor leaves it.
        deliver: false,
        share: None,
    })
    .unwrap();
    Running {
        dir,
        stats: daemon.stats().clone(),
        daemon,
    }
}

impl Running {
    /// Waits (in virtual time, at most `limit`) until `done` checks finished.
    async fn until_done(&self, done: u64, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.stats.snapshot().done < done {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {:?} checks done",
                self.stats.snapshot().done
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the monitor, waits for the writer, and opens the store.
    async fn stop(self) -> (Store, TempDir) {
        self.daemon.shutdown().cancel();
        self.daemon.wait().await.unwrap();
        let store = Store::open(&self.dir.path.join("portwatch.db")).unwrap();
        (store, self.dir)
    }
}

fn transitions(events: &[EventRow]) -> Vec<(State, State)> {
    events.iter().map(|e| (e.from, e.to)).collect()
}

fn events_of(store: &Store, path: &str) -> Vec<EventRow> {
    let id = store.sensor_ids(path).unwrap()[0];
    store.events(id, 0, i64::MAX).unwrap()
}

fn server(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[server]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\n  [[server.sensor]]\n  name = \"tcp\"\n  port = {port}\n{extra}"
    )
}

/// A loopback port whose accept queue is full: a connect to it gets no
/// answer (the SYN is dropped) and times out.
fn blackhole() -> (socket2::Socket, std::net::TcpStream, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap();
    // The one connection a backlog of 0 queues; nobody accepts it.
    let filler = std::net::TcpStream::connect(address).unwrap();
    (socket, filler, address.port())
}

/// The overload defect: twenty sensors due every 2 s whose checks each
/// take 1 s (a timeout), with one check at a time. The monitor must keep
/// a line of at most one entry per sensor instead of a task per due check,
/// account for every due check (done, missed, in flight or waiting), count
/// lateness as it is, and say it is over capacity.
#[tokio::test(start_paused = true)]
async fn an_overloaded_monitor_keeps_a_bounded_line_and_accounts_for_every_due_check() {
    let (_blackhole, _filler, port) = blackhole();
    let sensors: String = (0..20)
        .map(|i| format!("  [[server.sensor]]\n  name = \"s{i}\"\n  port = {port}\n"))
        .collect();
    let config = format!(
        "[defaults]\ninterval = \"2s\"\ntimeout = \"1s\"\nretries = 0\n[[server]]\nname = \"busy\"\nhost = \"127.0.0.1\"\n{sensors}"
    );
    let dir = TempDir::new("monitor");
    let db = dir.path.join("portwatch.db");
    Store::open(&db)
        .unwrap()
        .apply(&from_toml("test.toml", &config).unwrap())
        .unwrap();
    let options = MonitorOptions {
        max_checks: 1,
        ..MonitorOptions::default()
    };
    let monitor = start_with(dir, &db, options).await;
    let stats = monitor.stats.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !stats.snapshot().over_capacity() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never judged over capacity: {:?}",
            stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = stats.snapshot();
    assert_eq!(counts.in_flight, 1, "never more checks than the cap");
    assert!(
        (15..=20).contains(&counts.waiting),
        "the line holds each sensor once: {} waiting",
        counts.waiting
    );
    assert!(counts.missed > 0 && counts.done > 0, "{counts:?}");
    assert_eq!(counts.rechecks, 0);
    assert_eq!(
        counts.due,
        counts.done + counts.missed + counts.in_flight + counts.waiting,
        "every due check is done, missed, in flight or waiting"
    );
    assert!(counts.late > 0, "{counts:?}");
    assert!(
        counts.lateness_quantile(0.99).unwrap() >= 5_000,
        "lateness as it is: {:?}",
        counts.lateness_quantile(0.99)
    );
    assert!(
        stats.overload_percent() > 100,
        "{}",
        stats.overload_percent()
    );

    monitor.stop().await;
    let stopped = stats.snapshot();
    assert_eq!(stopped.waiting, 0);
    assert_eq!(
        stopped.due,
        stopped.done + stopped.missed + stopped.in_flight,
        "what waited when the monitor stopped is missed; what was in flight was abandoned"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_and_its_recheck_make_one_event_then_up() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let monitor = start(&format!(
        "[defaults]\ninterval = \"10s\"\n{}",
        server("web", port, "")
    ))
    .await;
    monitor.until_done(1, Duration::from_secs(30)).await;

    drop(listener);
    // The next scheduled check fails, its immediate re-check confirms it.
    monitor.until_done(3, Duration::from_secs(30)).await;
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    monitor.until_done(4, Duration::from_secs(30)).await;
    let counts = monitor.stats.snapshot();
    assert_eq!(
        (counts.rechecks, counts.missed, counts.in_flight),
        (1, 0, 0)
    );
    assert_eq!(counts.by_reason[..2], [2, 2], "two connected, two refused");

    let (store, _dir) = monitor.stop().await;
    drop(listener);
    let events = events_of(&store, "web/tcp");
    // One change per check: never up -> warning -> down (first-run #7).
    assert_eq!(
        transitions(&events),
        [
            (State::Pending, State::Up),
            (State::Up, State::Down),
            (State::Down, State::Up),
            (State::Up, State::Pending),
        ]
    );
    assert_eq!(events[1].reason.as_deref(), Some("refused"));
    assert!(
        events[1].message.contains("(confirmed by 1 re-check)"),
        "{}",
        events[1].message
    );
    // Every result was stored (the failed first attempt too), and the
    // re-check ran at once, not an interval later.
    let id = store.sensor_ids("web/tcp").unwrap()[0];
    let results = store.results(id, 0, i64::MAX).unwrap();
    assert_eq!(results.len(), 4);
    assert!(results[2].at_ms - results[1].at_ms < 1000, "{results:?}");
    assert_eq!(events[1].at_ms, results[2].at_ms.max(events[1].at_ms));
    let report = store
        .sensor_report(id, "web/tcp", 0, events[3].at_ms)
        .unwrap();
    assert_eq!(report.outages.len(), 1);
    assert_eq!((report.checks, report.checks_up), (4, 2));
}

#[tokio::test(start_paused = true)]
async fn dependants_pause_while_their_dependency_is_down_and_resume_by_themselves() {
    let gateway = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway_port = gateway.local_addr().unwrap().port();
    let config = format!(
        "[defaults]\ninterval = \"10s\"\nretries = 0\n{}{}",
        server("gw", gateway_port, ""),
        server(
            "app",
            app.local_addr().unwrap().port(),
            "  depends_on = \"gw/tcp\"\n"
        ),
    );
    let monitor = start(&config).await;
    monitor.until_done(2, Duration::from_secs(30)).await;
    drop(gateway);
    // The gateway goes down; the app must not be checked or go down.
    monitor.until_done(3, Duration::from_secs(30)).await;
    drop(app);
    tokio::time::sleep(Duration::from_secs(35)).await;
    let gateway = TcpListener::bind(("127.0.0.1", gateway_port)).unwrap();
    let app = TcpListener::bind(("127.0.0.1", config_port(&config, 1))).unwrap();
    tokio::time::sleep(Duration::from_secs(25)).await;
    let (store, _dir) = monitor.stop().await;
    drop((gateway, app));

    let app_events = transitions(&events_of(&store, "app/tcp"));
    assert_eq!(
        app_events,
        [
            (State::Pending, State::Paused(PauseCause::Dependency)),
            (State::Paused(PauseCause::Dependency), State::Pending),
            (State::Pending, State::Up),
            (State::Up, State::Paused(PauseCause::Dependency)),
            (State::Paused(PauseCause::Dependency), State::Pending),
            (State::Pending, State::Up),
            (State::Up, State::Pending),
        ],
        "the app never went DOWN although it was closed while paused"
    );
    let gw_events = transitions(&events_of(&store, "gw/tcp"));
    assert!(
        gw_events.contains(&(State::Up, State::Down)),
        "{gw_events:?}"
    );
}

/// Regression (first-run #7): while a dependency that never came up was
/// re-checked it passed through WARNING, which counts as up, so every
/// dependant flipped `paused(dependency) -> pending -> paused(dependency)`.
#[tokio::test(start_paused = true)]
async fn dependants_stay_paused_while_their_dependency_is_rechecked() {
    let (_bound, gateway) = crate::util::closed_port("127.0.0.1");
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = format!(
        "[defaults]\ninterval = \"10s\"\nretries = 1\n{}{}",
        server("gw", gateway.port(), ""),
        server(
            "app",
            app.local_addr().unwrap().port(),
            "  depends_on = \"gw/tcp\"\n"
        ),
    );
    let monitor = start(&config).await;
    // Three rounds of the gateway's check and re-check.
    monitor.until_done(6, Duration::from_secs(60)).await;
    let (store, _dir) = monitor.stop().await;
    assert_eq!(
        transitions(&events_of(&store, "app/tcp")),
        [(State::Pending, State::Paused(PauseCause::Dependency))],
        "the dependant never passed through pending (and it stays paused when the monitor stops)"
    );
    assert_eq!(
        transitions(&events_of(&store, "gw/tcp")),
        [(State::Pending, State::Down), (State::Down, State::Pending)],
        "down once; pending when the monitor stopped"
    );
    // Never up: 0 % by time, not 0.002 % for an instant in WARNING
    // (first-run #6), and no connect time for a sensor that never
    // connected.
    let id = store.sensor_ids("gw/tcp").unwrap()[0];
    let report = store.sensor_report(id, "gw/tcp", 0, i64::MAX / 2).unwrap();
    assert_eq!(report.uptime_by_time, Some(0.0), "{report:?}");
    assert_eq!(report.time.up_ms, 0);
    let (code, stdout, stderr) = crate::util::outcome(&crate::util::portwatch(&[
        "report",
        "gw/tcp",
        "--db",
        store.path().to_str().unwrap(),
    ]));
    assert!(code == 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("connect time        - (no check connected)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0.000%") || stdout.contains("0.00%"),
        "{stdout}"
    );
}

fn config_port(config: &str, index: usize) -> u16 {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("port = "))
        .nth(index)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn maintenance_windows_pause_and_resume_on_time() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // ORIGIN is 00:00 UTC; the window runs 00:01-00:02.
    let config = format!(
        "[defaults]\ninterval = \"10s\"\n{}[[maintenance]]\nname = \"patching\"\nfrom = \"2026-11-29T00:01\"\nuntil = \"2026-11-29T00:02\"\nservers = [\"web\"]\n",
        server("web", port, "")
    );
    let monitor = start(&config).await;
    tokio::time::sleep(Duration::from_secs(150)).await;
    let done = monitor.stats.snapshot().done;
    let (store, _dir) = monitor.stop().await;
    drop(listener);
    let events = events_of(&store, "web/tcp");
    assert_eq!(
        transitions(&events)[..4],
        [
            (State::Pending, State::Up),
            (State::Up, State::Paused(PauseCause::Schedule)),
            (State::Paused(PauseCause::Schedule), State::Pending),
            (State::Pending, State::Up),
        ]
    );
    let origin: jiff::Timestamp = ORIGIN.parse().unwrap();
    let offset = |e: &EventRow| (e.at_ms - origin.as_millisecond()) / 1000;
    assert_eq!(offset(&events[1]), 60, "paused when the window opened");
    assert_eq!(offset(&events[2]), 120, "resumed when it closed");
    // No checks inside the window: 6 slots before, 3 after (roughly), none
    // of the 6 inside.
    assert!((8..=11).contains(&done), "{done} checks");
    let id = store.sensor_ids("web/tcp").unwrap()[0];
    let inside = store
        .results(
            id,
            origin.as_millisecond() + 60_000,
            origin.as_millisecond() + 120_000,
        )
        .unwrap();
    assert!(inside.is_empty(), "checked during maintenance: {inside:?}");
}

#[tokio::test(start_paused = true)]
async fn configuration_changes_apply_without_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let monitor = start(&format!(
        "[defaults]\ninterval = \"10s\"\n{}",
        server("a", port, "")
    ))
    .await;
    monitor.until_done(1, Duration::from_secs(30)).await;
    let db = monitor.dir.path.join("portwatch.db");
    let two = format!(
        "[defaults]\ninterval = \"10s\"\n{}{}",
        server("a", port, ""),
        server("b", port, "")
    );
    tokio::task::spawn_blocking(move || {
        Store::open(&db)
            .unwrap()
            .apply(&from_toml("t.toml", &two).unwrap())
            .unwrap()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (store, _dir) = monitor.stop().await;
    drop(listener);
    assert_eq!(
        transitions(&events_of(&store, "b/tcp"))[0],
        (State::Pending, State::Up),
        "the new sensor is checked"
    );
}

/// The outbox rows of one sensor, oldest first.
fn outbox_of(store: &Store, sensor: &str) -> Vec<portwatch::store::outbox::OutboxRow> {
    let mut rows: Vec<_> = store
        .outbox(1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.sensor == sensor)
        .collect();
    rows.reverse();
    rows
}

const CHANNELS: &str = r#"
[[channel]]
name = "chat"
command = ["true"]
[[channel]]
name = "pager"
command = ["true"]
"#;

#[tokio::test(start_paused = true)]
async fn escalation_and_repeat_follow_an_outage_in_virtual_time() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = format!(
        "[defaults]\ninterval = \"10s\"\nretries = 0\n{}{CHANNELS}
[[notify]]
channel = \"chat\"
on = [\"down\", \"up\", \"repeat\"]
every = \"10m\"
[[notify]]
channel = \"pager\"
on = [\"escalation\"]
after = \"5m\"
",
        server("web", port, "")
    );
    let monitor = start(&config).await;
    monitor.until_done(1, Duration::from_secs(30)).await;
    drop(listener);
    // Down for 25 minutes: one escalation at 5m, repeats at 10m and 20m.
    tokio::time::sleep(Duration::from_secs(25 * 60)).await;
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    // Up again; nothing more follows the outage.
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    let (store, _dir) = monitor.stop().await;
    drop(listener);

    let events = events_of(&store, "web/tcp");
    let down_at = events
        .iter()
        .find(|e| e.to == State::Down)
        .expect("went down")
        .at_ms;
    let rows = outbox_of(&store, "web/tcp");
    let seen: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.channel.as_str(),
                r.kind.as_str(),
                // Whole minutes after the outage began.
                (r.created_ms - down_at) / 60_000,
            )
        })
        .collect();
    let up_after = (events
        .iter()
        .find(|e| e.to == State::Up && e.from == State::Down)
        .expect("recovered")
        .at_ms
        - down_at)
        / 60_000;
    assert_eq!(
        seen,
        [
            ("chat", "change", 0),
            ("pager", "escalation", 5),
            ("chat", "repeat", 10),
            ("chat", "repeat", 20),
            ("chat", "change", up_after),
        ],
        "{rows:#?}"
    );
    // On time to the tick (a second).
    for row in &rows[1..4] {
        let late = (row.created_ms - down_at) % 60_000;
        assert!(late <= 1_000, "{late} ms late: {row:?}");
    }
    assert!(rows[1].text.contains("still DOWN"), "{}", rows[1].text);
}

#[tokio::test(start_paused = true)]
async fn only_the_dependency_alerts_when_it_takes_its_dependants_down() {
    let gateway = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let lone = TcpListener::bind("127.0.0.1:0").unwrap();
    // The app is checked far more often than the gateway, so it sees the
    // failure first: its alert must wait for the gateway's re-check.
    let config = format!(
        "[defaults]\nretries = 0\n{}  interval = \"60s\"\n{}  interval = \"5s\"\n  depends_on = \"gw/tcp\"\n{}  interval = \"5s\"\n  depends_on = \"gw/tcp\"\n{CHANNELS}
[[notify]]
channel = \"chat\"
on = [\"down\"]
",
        server("gw", gateway.local_addr().unwrap().port(), ""),
        server("app", app.local_addr().unwrap().port(), ""),
        server("lone", lone.local_addr().unwrap().port(), ""),
    );
    let monitor = start(&config).await;
    monitor.until_done(3, Duration::from_secs(120)).await;
    // The lone dependant fails by itself: its alert is held, then released
    // once the gateway's re-check finds it up.
    drop(lone);
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Now the gateway and the app fail together.
    drop((gateway, app));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (store, _dir) = monitor.stop().await;

    let gw = outbox_of(&store, "gw/tcp");
    assert_eq!(
        gw.iter().map(|r| r.to.as_str()).collect::<Vec<_>>(),
        ["down"],
        "{gw:?}"
    );
    let app = outbox_of(&store, "app/tcp");
    assert_eq!(app.len(), 1, "the app's alert was written, held: {app:?}");
    assert!(
        app[0].cancelled_ms.is_some() && !app[0].held,
        "and cancelled when the gateway turned out down: {app:?}"
    );
    assert!(
        app[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("gw/tcp")),
        "{app:?}"
    );
    let lone = outbox_of(&store, "lone/tcp");
    assert_eq!(lone.len(), 1, "{lone:?}");
    assert!(
        !lone[0].held && lone[0].cancelled_ms.is_none(),
        "released: {lone:?}"
    );
    // Released at once, not at the end of the hold.
    let due = store
        .due_notifications(lone[0].created_ms + 5_000, 100)
        .unwrap();
    assert!(
        due.iter().any(|p| p.payload.sensor == "lone/tcp"),
        "{due:?}"
    );
    assert!(
        !due.iter().any(|p| p.payload.sensor == "app/tcp"),
        "a cancelled alert is never sent"
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_is_notified_during_maintenance() {
    let inside = TcpListener::bind("127.0.0.1:0").unwrap();
    let outside = TcpListener::bind("127.0.0.1:0").unwrap();
    let inside_port = inside.local_addr().unwrap().port();
    // ORIGIN is 00:00 UTC; the window covers "web" from 00:01 to 00:03.
    let config = format!(
        "[defaults]\ninterval = \"10s\"\nretries = 0\n{}{}[[maintenance]]\nname = \"patching\"\nfrom = \"2026-11-29T00:01\"\nuntil = \"2026-11-29T00:03\"\nservers = [\"web\"]\n{CHANNELS}
[[notify]]
channel = \"chat\"
on = [\"change\"]
",
        server("web", inside_port, ""),
        server("db", outside.local_addr().unwrap().port(), ""),
    );
    let monitor = start(&config).await;
    tokio::time::sleep(Duration::from_secs(65)).await;
    // Both services stop inside the window and the web one is back before
    // it ends.
    drop((inside, outside));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let inside = TcpListener::bind(("127.0.0.1", inside_port)).unwrap();
    tokio::time::sleep(Duration::from_secs(90)).await;
    let (store, _dir) = monitor.stop().await;
    drop(inside);
    assert!(
        outbox_of(&store, "web/tcp").is_empty(),
        "{:?}",
        outbox_of(&store, "web/tcp")
    );
    // The sensor outside the window did alert.
    let db = outbox_of(&store, "db/tcp");
    assert_eq!(
        db.iter().map(|r| r.to.as_str()).collect::<Vec<_>>(),
        ["down"]
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_under_way_before_a_restart_still_escalates_once() {
    let (_closed, closed) = crate::util::closed_port("127.0.0.1");
    let config = format!(
        "[defaults]\ninterval = \"10s\"\nretries = 0\n{}{CHANNELS}
[[notify]]
channel = \"pager\"
on = [\"down\", \"escalation\"]
after = \"5m\"
",
        server("db", closed.port(), "")
    );
    // A crash left the sensor DOWN for ten minutes already (a `kill -9`
    // skips the "monitor stopped" event).
    let dir = TempDir::new("monitor-resume");
    let db = dir.path.join("portwatch.db");
    let mut store = Store::open(&db).unwrap();
    store
        .apply(&from_toml("test.toml", &config).unwrap())
        .unwrap();
    let id = store.sensor_ids("db/tcp").unwrap()[0];
    let origin: jiff::Timestamp = ORIGIN.parse().unwrap();
    let since = origin.as_millisecond() - 600_000;
    drop(store);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO sensor_status (sensor_id, state, since_ms) VALUES (?1, 'down', ?2)",
            (id, since),
        )
        .unwrap();
    let monitor = start_on(dir, &db).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (store, _dir) = monitor.stop().await;
    let rows = outbox_of(&store, "db/tcp");
    assert_eq!(
        rows.iter()
            .map(|r| (r.channel.as_str(), r.kind.as_str()))
            .collect::<Vec<_>>(),
        [("pager", "escalation")],
        "one escalation, no new DOWN alert: {rows:#?}"
    );
    assert!(rows[0].text.contains("still DOWN"), "{}", rows[0].text);
}

/// A heartbeat sensor in virtual time: pending until its first push is
/// due, UP after a push, DOWN `missed_heartbeat` once a push is more than
/// `every + grace` late, DOWN `reported_down` when a push says the job
/// failed, and UP again after a good push. (The pushes are written to the
/// store as the web's push URL does, at the virtual time.)
#[tokio::test(start_paused = true)]
async fn a_heartbeat_sensor_follows_its_pushes_in_virtual_time() {
    use portwatch::monitor::heartbeat::Push;
    let config = "[[server]]\nname = \"backup\"\nhost = \"localhost\"\n[[server.sensor]]\nname = \"nightly\"\nkind = \"heartbeat\"\nevery = \"1h\"\ngrace = \"10m\"\ninterval = \"1m\"\n";
    let dir = TempDir::new("monitor");
    let db = dir.path.join("portwatch.db");
    let mut store = Store::open(&db).unwrap();
    store
        .apply(&from_toml("test.toml", config).unwrap())
        .unwrap();
    let id = store.sensor_ids("backup/nightly").unwrap()[0];
    let origin: jiff::Timestamp = ORIGIN.parse().unwrap();
    let origin_ms = origin.as_millisecond();
    let token = store.new_push_token(id, origin_ms).unwrap();
    let start = tokio::time::Instant::now();
    let monitor = start_on(dir, &db).await;
    let now_ms = || origin_ms + start.elapsed().as_millis() as i64;
    let push = |down: bool, message: &str| {
        let found = store
            .push(
                &token,
                &Push {
                    at_ms: now_ms(),
                    down,
                    message: message.into(),
                    duration_ms: Some(42_000),
                },
            )
            .unwrap();
        assert_eq!(found, Some(id));
    };
    // Half an hour without a push (nothing is due yet), then a push; 70
    // minutes after it the push is still on time, 72 it is missed; then a
    // push that reports a failure, and a good one.
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    push(false, "backup done");
    tokio::time::sleep(Duration::from_secs(74 * 60)).await;
    let failed_at = now_ms();
    push(true, "disk full");
    tokio::time::sleep(Duration::from_secs(3 * 60)).await;
    let fixed_at = now_ms();
    push(false, "");
    tokio::time::sleep(Duration::from_secs(3 * 60)).await;
    let (store, _dir) = monitor.stop().await;
    let events = events_of(&store, "backup/nightly");
    // (Then PENDING: the monitor stopped.)
    assert_eq!(
        transitions(&events)[..3],
        [
            (State::Pending, State::Up),
            (State::Up, State::Down),
            (State::Down, State::Up)
        ]
    );
    // When, in minutes from the start: UP within a minute of the first
    // push, DOWN within a minute of 70 minutes after it, UP again within
    // a minute of the good push.
    let minute = |e: &EventRow| (e.at_ms - origin_ms) as f64 / 60_000.0;
    let at: Vec<f64> = events.iter().map(minute).collect();
    assert!((30.0..=31.5).contains(&at[0]), "{at:?}");
    assert!((100.0..=101.5).contains(&at[1]), "{at:?}");
    let fixed = (fixed_at - origin_ms) as f64 / 60_000.0;
    assert!((fixed..=fixed + 1.5).contains(&at[2]), "{at:?}");
    assert_eq!(events[1].reason.as_deref(), Some("missed_heartbeat"));
    // Between the failed push and the good one, the checks said why.
    let reasons: Vec<_> = store
        .results(id, failed_at, fixed_at)
        .unwrap()
        .into_iter()
        .map(|r| r.reason)
        .collect();
    assert!(
        !reasons.is_empty()
            && reasons
                .iter()
                .all(|r| *r == portwatch::probe::Reason::ReportedDown),
        "{reasons:?}"
    );
    assert!(
        events[1].message.contains("expected every 1h, grace 10m"),
        "{}",
        events[1].message
    );
}
