//! The monitor with real listeners, a real SQLite store and the real writer
//! thread; time driven with tokio::time::pause() (loopback connects finish
//! inside the connect call, so virtual time never races real sockets).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use portwatch::config::from_toml;
use portwatch::monitor::state::{PauseCause, State};
use portwatch::monitor::stats::MonitorStats;
use portwatch::monitor::{Clock, MonitorOptions};
use portwatch::store::{EventRow, Store, writer};
use tokio::sync::{Notify, oneshot};

use crate::util::TempDir;

/// A running monitor on a temporary store.
struct Running {
    dir: TempDir,
    stats: Arc<MonitorStats>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    writer: Option<std::thread::JoinHandle<()>>,
}

const ORIGIN: &str = "2026-11-29T00:00:00Z";

async fn start(config: &str) -> Running {
    let dir = TempDir::new("monitor");
    let db = dir.path.join("portwatch.db");
    Store::open(&db)
        .unwrap()
        .apply(&from_toml("test.toml", config).unwrap())
        .unwrap();
    let (writer, thread) = writer::start(&db).unwrap();
    let stats = Arc::new(MonitorStats::default());
    let options = MonitorOptions {
        clock: Clock::starting_at(ORIGIN.parse().unwrap()),
        ..MonitorOptions::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let stats = stats.clone();
        async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            portwatch::monitor::run(
                db,
                writer,
                options,
                stats,
                Arc::new(Notify::new()),
                shutdown,
            )
            .await
            .unwrap();
        }
    });
    Running {
        dir,
        stats,
        stop: Some(stop),
        task,
        writer: Some(thread),
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
    async fn stop(mut self) -> (Store, TempDir) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
        let writer = self.writer.take().unwrap();
        tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
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

#[tokio::test(start_paused = true)]
async fn up_then_warning_while_rechecking_then_down_then_up() {
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
    assert_eq!(
        transitions(&events),
        [
            (State::Pending, State::Up),
            (State::Up, State::Warning),
            (State::Warning, State::Down),
            (State::Down, State::Up),
            (State::Up, State::Pending),
        ]
    );
    assert_eq!(events[2].reason.as_deref(), Some("refused"));
    assert!(
        events[1].message.contains("re-checking"),
        "{}",
        events[1].message
    );
    // The re-check ran at once, not an interval later.
    assert!(events[2].at_ms - events[1].at_ms < 1000, "{events:?}");
    // Every result was stored, and reports see the outage.
    let id = store.sensor_ids("web/tcp").unwrap()[0];
    let results = store.results(id, 0, i64::MAX).unwrap();
    assert_eq!(results.len(), 4);
    let report =
        portwatch::report::sensor_report(&store, id, "web/tcp", 0, events[4].at_ms).unwrap();
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
