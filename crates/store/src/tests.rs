use super::*;
use portwatch_core::config::from_toml;

fn temp_store() -> (tempdir::Dir, Store) {
    let dir = tempdir::Dir::new();
    let store = Store::open(&dir.path.join("test.db")).unwrap();
    (dir, store)
}

/// An UP result of `sensor` at `at_ms` (50 µs), and the last check it
/// leaves, as the monitor queues them.
fn up_result(sensor: i64, at_ms: i64) -> (StoredResult, writer::LastCheck) {
    (
        StoredResult {
            sensor,
            at_ms,
            status: portwatch_probe::Status::Up,
            reason: portwatch_probe::Reason::Connected,
            rtt_us: Some(50),
        },
        writer::LastCheck {
            state: portwatch_core::monitor::state::State::Up,
            since_ms: at_ms,
            message: String::new(),
            details: None,
        },
    )
}

/// A temporary directory removed on drop (no extra dependency).
mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("portwatch-store-test-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

const CONFIG: &str = "
[defaults]
interval = \"30s\"
[[group]]
name = \"Site\"
[[group]]
name = \"Site/Web\"
retries = 2
[[server]]
name = \"web\"
host = \"127.0.0.1\"
group = \"Site/Web\"
  [[server.sensor]]
  port = 80
  [[server.sensor]]
  port = 443
[[server]]
name = \"db\"
host = \"2001:db8::5\"
  [[server.sensor]]
  port = \"postgresql\"
[[maintenance]]
name = \"nightly\"
every = \"day\"
start = \"03:00\"
duration = \"30m\"
servers = [\"db\"]
";

#[test]
fn apply_then_load_round_trips_the_configuration() {
    let (_dir, mut store) = temp_store();
    let config = from_toml("c.toml", CONFIG).unwrap();
    let summary = store.apply(&config).unwrap();
    assert_eq!(
        summary,
        ApplySummary {
            sensors: 3,
            added: 3,
            removed: 0
        }
    );
    let loaded = store.load().unwrap();
    assert_eq!(loaded.config, config);
    assert_eq!(loaded.ids.len(), 3);
    assert_eq!(store.generation().unwrap(), 1);
    let again = store.apply(&config).unwrap();
    assert_eq!(again.added, 0, "nothing new the second time");
    assert_eq!(store.generation().unwrap(), 2);
}

#[test]
fn removed_items_keep_their_id_when_they_come_back() {
    let (_dir, mut store) = temp_store();
    let config = from_toml("c.toml", CONFIG).unwrap();
    store.apply(&config).unwrap();
    let id = store.load().unwrap().ids["web/https"];
    let without = CONFIG.replace("  [[server.sensor]]\n  port = 443\n", "");
    let summary = store
        .apply(&from_toml("c.toml", &without).unwrap())
        .unwrap();
    assert_eq!(summary.removed, 1);
    assert!(!store.load().unwrap().ids.contains_key("web/https"));
    assert!(matches!(
        store.sensor_ids("web/https"),
        Err(StoreError::NotFound(_))
    ));
    let summary = store.apply(&config).unwrap();
    assert_eq!(summary.added, 1);
    assert_eq!(
        store.load().unwrap().ids["web/https"],
        id,
        "same id, so same history"
    );
    // A whole server leaving retires its sensors.
    let without_db = CONFIG
        .split("[[server]]\nname = \"db\"")
        .next()
        .unwrap()
        .to_owned();
    let summary = store
        .apply(&from_toml("c.toml", &without_db).unwrap())
        .unwrap();
    assert_eq!(summary.removed, 1);
}

#[test]
fn names_select_sensors_servers_and_groups() {
    let (_dir, mut store) = temp_store();
    store.apply(&from_toml("c.toml", CONFIG).unwrap()).unwrap();
    assert_eq!(store.sensor_ids("web/http").unwrap().len(), 1);
    assert_eq!(store.sensor_ids("web").unwrap().len(), 2);
    assert_eq!(
        store.sensor_ids("Site").unwrap().len(),
        2,
        "a group covers its subgroups"
    );
    assert_eq!(store.sensor_ids("Site/Web").unwrap().len(), 2);
    assert!(store.sensor_ids("Sit").is_err());
    assert_eq!(store.set_paused("web", true).unwrap(), 2);
    assert_eq!(store.load().unwrap().paused.len(), 2);
    assert_eq!(store.set_paused("web/http", false).unwrap(), 1);
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("new.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = Store::open(&path).err().unwrap().to_string();
    assert!(
        error.contains("newer than this portwatch understands"),
        "{error}"
    );
}

#[test]
fn the_writer_packs_results_and_rolls_up_closed_hours() {
    use portwatch_core::monitor::state::{Change, State};
    use portwatch_probe::{Reason, Status};
    use rollup::HOUR_MS;
    use writer::LastCheck;

    let dir = tempdir::Dir::new();
    let path = dir.path.join("w.db");
    let mut store = Store::open(&path).unwrap();
    store.apply(&from_toml("c.toml", CONFIG).unwrap()).unwrap();
    let id = store.load().unwrap().ids["web/http"];
    drop(store);

    let now = jiff::Timestamp::now().as_millisecond();
    let two_hours_ago = rollup::hour_of(now) - 2 * HOUR_MS;
    let (writer, thread) = writer::start(&path).unwrap();
    let last = || LastCheck {
        state: State::Up,
        since_ms: two_hours_ago,
        message: "ok".into(),
        details: None,
    };
    // An hour of checks every 10 s, one in ten refused, then one check now.
    let mut expected = Vec::new();
    for i in 0..360 {
        let refused = i % 10 == 0;
        let result = StoredResult {
            sensor: id,
            at_ms: two_hours_ago + i * 10_000,
            status: if refused { Status::Down } else { Status::Up },
            reason: if refused {
                Reason::Refused
            } else {
                Reason::Connected
            },
            rtt_us: Some(100 + i as u32),
        };
        expected.push(result);
        writer.result(result, last());
    }
    let current = StoredResult {
        sensor: id,
        at_ms: now,
        status: Status::Up,
        reason: Reason::Connected,
        rtt_us: Some(50),
    };
    writer.result(current, last());
    let committed = writer.event(
        id,
        now,
        Change {
            from: State::Pending,
            to: State::Up,
            reason: Some(Reason::Connected),
            message: "up".into(),
        },
    );
    committed.blocking_recv().expect("the event is committed");
    let stats = writer.stats.clone();
    drop(writer);
    thread.join().unwrap();
    assert_eq!(
        stats.pending.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "everything queued was written"
    );
    assert_eq!(
        stats
            .results_stored
            .load(std::sync::atomic::Ordering::Relaxed),
        361
    );

    let store = Store::open(&path).unwrap();
    let results = store.results(id, 0, i64::MAX).unwrap();
    expected.push(current);
    assert_eq!(results, expected, "every result comes back, in order");
    // From within a row (rows of a sensor checked every 10 s span about
    // half an hour): its later results, not the row's start.
    let from = two_hours_ago + 1_205_000;
    let later: Vec<StoredResult> = expected
        .iter()
        .filter(|r| r.at_ms >= from)
        .copied()
        .collect();
    assert_eq!(store.results(id, from, i64::MAX).unwrap(), later);
    // A report of many reads the hourly rollup (marked here by 1,000
    // checks more than the raw results hold); one sensor's, the raw ones.
    let path = store.sensor_path(id).unwrap();
    // (Reports start at the first state: one from before the checks.)
    store
        .conn
        .execute(
            "INSERT INTO events (sensor_id, at_ms, from_state, to_state, message) VALUES (?1, ?2, 'pending', 'up', '')",
            rusqlite::params![id, two_hours_ago - 1],
        )
        .unwrap();
    let raw = store
        .sensor_report(id, &path, two_hours_ago, now + 1)
        .unwrap();
    assert_eq!(raw.checks, 361);
    store
        .conn
        .execute(
            "UPDATE rollups SET count = count + 1000, ups = ups + 1000",
            [],
        )
        .unwrap();
    let hourly = store
        .sensor_reports(&[id], two_hours_ago, now + 1, Detail::Hourly)
        .unwrap();
    assert_eq!(
        (hourly[0].checks, hourly[0].checks_up),
        (1361, raw.checks_up + 1000)
    );
    assert_eq!(hourly[0].sensor, path);
    assert_eq!(
        (hourly[0].min_us, hourly[0].max_us),
        (raw.min_us, raw.max_us)
    );
    assert!(hourly[0].p95_us >= raw.p95_us, "an upper bound");
    store
        .conn
        .execute(
            "UPDATE rollups SET count = count - 1000, ups = ups - 1000",
            [],
        )
        .unwrap();
    store
        .conn
        .execute("DELETE FROM events WHERE at_ms = ?1", [two_hours_ago - 1])
        .unwrap();
    let rollups = store.rollups(id, 0, i64::MAX).unwrap();
    assert_eq!(
        rollups.len(),
        1,
        "only the closed hour is rolled up: {rollups:?}"
    );
    let (hour, rollup) = rollups[0];
    assert_eq!(hour, two_hours_ago);
    assert_eq!((rollup.count, rollup.ups), (360, 324));
    // The first check (100 µs) was refused: a refusal is no connect time.
    assert_eq!((rollup.min_us, rollup.max_us), (Some(101), Some(459)));
    assert_eq!(store.events(id, 0, i64::MAX).unwrap().len(), 1);
    let (count, bytes) = store.result_footprint().unwrap();
    assert_eq!(count, 361);
    assert!(bytes <= 361 * 6, "{bytes} bytes for {count} results");
    let status = store.status().unwrap();
    let web = status.iter().find(|r| r.id == id).unwrap();
    assert_eq!((web.state, web.last_rtt_us), (State::Up, Some(50)));
    // The dashboard's glance: the last 20 checks, and uptime by requests
    // from the closed hour's rollup (and the day's, summed from it).
    let glance = &store.glances(&[id, id + 1000], now).unwrap()[&id];
    let last_twenty: Vec<_> = expected[expected.len() - 20..]
        .iter()
        .map(|r| (r.at_ms - r.at_ms % 1000, r.status, r.reason))
        .collect();
    assert_eq!(glance.ticks, last_twenty);
    assert_eq!(glance.uptime_24h, Some(90.0));
    assert_eq!(glance.uptime_30d, Some(90.0));
    // A day beyond the window: nothing counted.
    let later = &store.glances(&[id], now + 40 * writer::DAY_MS).unwrap()[&id];
    assert_eq!((later.uptime_24h, later.uptime_30d), (None, None));
}

/// Regression: a result queued just before a state change used to
/// overwrite the new state in `sensor_status` when both were committed
/// together, leaving a paused sensor shown as DOWN.
#[test]
fn a_state_change_wins_over_an_older_result_committed_with_it() {
    use portwatch_core::monitor::state::{Change, PauseCause, State};
    use portwatch_probe::{Reason, Status};
    use writer::LastCheck;

    let dir = tempdir::Dir::new();
    let path = dir.path.join("order.db");
    let mut store = Store::open(&path).unwrap();
    store.apply(&from_toml("c.toml", CONFIG).unwrap()).unwrap();
    let id = store.load().unwrap().ids["web/http"];
    drop(store);
    let (writer, thread) = writer::start(&path).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let down = StoredResult {
        sensor: id,
        at_ms: now,
        status: Status::Down,
        reason: Reason::Refused,
        rtt_us: Some(40),
    };
    writer.result(
        down,
        LastCheck {
            state: State::Down,
            since_ms: now,
            message: "refused".into(),
            details: None,
        },
    );
    let paused = State::Paused(PauseCause::Manual);
    let change = Change {
        from: State::Down,
        to: paused,
        reason: None,
        message: "paused by a user".into(),
    };
    writer.event(id, now + 1, change).blocking_recv().unwrap();
    drop(writer);
    thread.join().unwrap();
    let store = Store::open(&path).unwrap();
    let row = store
        .status()
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    assert_eq!(row.state, paused);
    assert_eq!(
        row.last_reason.as_deref(),
        Some("refused"),
        "the result is still recorded"
    );
}

/// Regression: two processes opening a new store at the same moment both
/// ran the first migration, and one failed with "table already exists".
#[test]
fn concurrent_opens_of_a_new_store_migrate_it_once() {
    for round in 0..5 {
        let dir = tempdir::Dir::new();
        let path = dir.path.join(format!("race{round}.db"));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    Store::open(&path).map(|_| ()).map_err(|e| e.to_string())
                })
            })
            .collect();
        for opener in openers {
            assert_eq!(opener.join().unwrap(), Ok(()));
        }
    }
}

/// `apply` takes a larger page cache while it runs, then gives it back.
#[test]
fn apply_gives_its_page_cache_back() {
    let (_dir, mut store) = temp_store();
    let cache = |store: &Store| -> i64 {
        store
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap()
    };
    let usual = cache(&store);
    store.apply(&from_toml("c.toml", CONFIG).unwrap()).unwrap();
    assert_eq!(cache(&store), usual);
}

#[test]
fn one_sensor_status_matches_the_full_listing() {
    let (_dir, mut store) = temp_store();
    store.apply(&from_toml("c.toml", CONFIG).unwrap()).unwrap();
    let all = store.status().unwrap();
    for row in &all {
        assert_eq!(&store.status_of(row.id).unwrap(), row);
    }
    assert!(matches!(
        store.status_of(999_999),
        Err(StoreError::NotFound(_))
    ));
}

/// A sensor added from the web (one statement, the search index's trigger)
/// and one added by `apply` (indexed in one statement at its end) are both
/// found by a search of three characters.
#[test]
fn added_sensors_are_found_by_a_search() {
    let (_dir, mut store) = temp_store();
    store.apply(&from_toml("c.toml", CONFIG).unwrap()).unwrap();
    let host = portwatch_probe::Host::Ip("192.0.2.44".parse().unwrap());
    let id = store
        .add_sensor("cache", &host, 6379, "redis", &Overrides::default())
        .unwrap();
    let found = |text: &str| -> Vec<String> {
        store
            .list(&crate::StatusQuery {
                text: text.into(),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|l| l.row.path)
            .collect()
    };
    assert_eq!(found("che/red"), ["cache/redis"]);
    assert_eq!(found("2.44"), ["cache/redis"]);
    let row = store.status_of(id).unwrap();
    assert_eq!(found(&row.path), std::slice::from_ref(&row.path));
    let applied = store.status().unwrap();
    assert!(!applied.is_empty());
    for row in applied {
        assert!(found(&row.path).contains(&row.path), "{}", row.path);
    }
    let deferred: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM meta WHERE key = 'search_deferred'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(deferred, 0, "apply indexes what it deferred");
}

/// A search of one or two characters finds what a reading of every
/// sensor's path, host and group finds: each two characters of each
/// text, and some in none. Unit tests read the first three texts through
/// and look the others up by their trigrams, so both ways are taken; a
/// list that stops at the first n takes the same n.
#[test]
fn short_searches_find_what_reading_every_text_finds() {
    let (_dir, mut store) = temp_store();
    let mut config = String::from(
        "[[group]]\nname = \"Edge\"\n[[group]]\nname = \"Core\"\n[[group]]\nname = \"Core/DB\"\n",
    );
    for (server, host, group) in [
        ("web-1", "10.0.0.1", Some("Edge")),
        ("web-2", "Web2.example.NET", Some("Edge")),
        ("db", "2001:db8::5", Some("Core/DB")),
        ("mail", "mx.example.org", None),
        ("queue", "10.9.8.7", Some("Core/DB")),
    ] {
        config += &format!("[[server]]\nname = \"{server}\"\nhost = \"{host}\"\n");
        if let Some(group) = group {
            config += &format!("group = \"{group}\"\n");
        }
        config += "  [[server.sensor]]\n  port = 22\n  [[server.sensor]]\n  port = 8080\n";
    }
    store.apply(&from_toml("c.toml", &config).unwrap()).unwrap();
    let rows = store.status().unwrap();
    let listed = |text: &str, at_most: Option<u64>| -> Vec<i64> {
        let mut ids: Vec<i64> = store
            .list(&crate::StatusQuery {
                text: text.into(),
                at_most,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|l| l.row.id)
            .collect();
        ids.sort();
        ids
    };
    let mut texts: Vec<String> = vec!["zq".into(), "Q".into(), "::".into(), "/d".into()];
    for row in &rows {
        for text in [
            &row.path,
            &row.host,
            row.group.as_ref().unwrap_or(&row.path),
        ] {
            let chars: Vec<char> = text.chars().collect();
            texts.extend(chars.windows(2).map(|w| w.iter().collect::<String>()));
            texts.extend(chars.iter().map(char::to_string));
        }
    }
    texts.sort();
    texts.dedup();
    for text in &texts {
        let lower = text.to_lowercase();
        let mut every: Vec<i64> = rows
            .iter()
            .filter(|r| {
                [&r.path, &r.host, r.group.as_ref().unwrap_or(&String::new())]
                    .iter()
                    .any(|t| t.to_lowercase().contains(&lower))
            })
            .map(|r| r.id)
            .collect();
        every.sort();
        assert_eq!(listed(text, None), every, "{text:?}");
        let first: Vec<i64> = every.iter().copied().take(5).collect();
        assert_eq!(listed(text, Some(5)), first, "{text:?}, the first 5");
    }
}

/// Tests #1: "a state-change event is committed before anyone is notified
/// of it". Another connection holds the write lock, so the writer's commit
/// fails (and is counted); by then the event must not have been
/// acknowledged, and it must not be in the store. Once the lock is gone,
/// the retry commits it and only then acknowledges it.
#[test]
fn an_event_is_acknowledged_only_after_its_commit() {
    use portwatch_core::monitor::state::{Change, State};
    let (dir, mut store) = temp_store();
    store.apply(&from_toml("t.toml", CONFIG).unwrap()).unwrap();
    let id = store.sensor_ids("web/http").unwrap()[0];
    let path = dir.path.join("test.db");
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (writer, thread) = writer::start(&path).unwrap();
    let change = Change {
        from: State::Up,
        to: State::Down,
        reason: None,
        message: "down".into(),
    };
    let mut acknowledged = writer.event(id, 1_790_000_000_000, change);
    // Wait for the writer's first commit to fail (its busy timeout runs
    // out while the lock is held).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while writer
        .stats
        .write_errors
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the commit never failed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        acknowledged.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Empty),
        "acknowledged although not committed"
    );
    let stored: i64 = blocker
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 0);
    blocker.execute_batch("ROLLBACK").unwrap();
    // The retry commits it, then acknowledges it.
    acknowledged
        .blocking_recv()
        .expect("acknowledged after the commit");
    let stored: i64 = blocker
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 1, "acknowledged, so stored");
    drop(writer);
    thread.join().unwrap();
}

/// Tests #4: the README promises that `kill -9` loses at most the last
/// second of results, so the writer commits a queued result within one
/// second (its flush period), without anything else asking it to.
#[test]
fn a_queued_result_is_committed_within_a_second() {
    let (dir, mut store) = temp_store();
    store.apply(&from_toml("t.toml", CONFIG).unwrap()).unwrap();
    let id = store.sensor_ids("web/http").unwrap()[0];
    let (writer, thread) = writer::start(&dir.path.join("test.db")).unwrap();
    let queued = std::time::Instant::now();
    let now = jiff::Timestamp::now().as_millisecond();
    let (result, last) = up_result(id, now);
    writer.result(result, last);
    while store.results(id, 0, i64::MAX).unwrap().is_empty() {
        assert!(
            queued.elapsed() < std::time::Duration::from_millis(1500),
            "a result waited more than a second to be committed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(writer::FLUSH_EVERY <= std::time::Duration::from_secs(1));
    drop(writer);
    thread.join().unwrap();
}

/// Ordered writes (events, notification holds) keep their order when the
/// result queue is full, and waiting for room starts no thread per write.
/// The writer is held inside a commit by another connection's write lock
/// while its queue is full; fifty events are then made from a thread whose
/// name every thread it starts inherits.
#[test]
fn ordered_writes_keep_their_order_and_start_no_threads_when_the_queue_is_full() {
    use portwatch_core::monitor::state::{Change, State};
    let (dir, mut store) = temp_store();
    store.apply(&from_toml("t.toml", CONFIG).unwrap()).unwrap();
    let id = store.sensor_ids("web/http").unwrap()[0];
    let path = dir.path.join("test.db");
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (writer, thread) = writer::start_with_queue(&path, 4).unwrap();
    let change = |n: i64| Change {
        from: State::Up,
        to: State::Down,
        reason: None,
        message: format!("event {n}"),
    };
    let base = 1_790_000_000_000;
    let (result, last) = up_result(id, base);
    // The first event sends the writer into a commit that waits for the lock.
    let first = writer.event(id, base, change(0));
    let maker = std::thread::Builder::new()
        .name("pw-order-test".into())
        .spawn({
            let writer = writer.clone();
            move || {
                // Fill the queue: results are dropped once it is full.
                let dropped = || {
                    writer
                        .stats
                        .results_dropped
                        .load(std::sync::atomic::Ordering::Relaxed)
                };
                for _ in 0..1000 {
                    if dropped() > 0 {
                        break;
                    }
                    writer.result(result, last.clone());
                }
                assert!(dropped() > 0, "the queue never filled");
                let acks: Vec<_> = (1..=50)
                    .map(|n| writer.event(id, base + n, change(n)))
                    .collect();
                let threads = std::fs::read_dir("/proc/self/task")
                    .unwrap()
                    .filter(|task| {
                        let comm = task.as_ref().unwrap().path().join("comm");
                        std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == "pw-order-test")
                    })
                    .count();
                (acks, threads)
            }
        })
        .unwrap();
    let (acks, threads) = maker.join().unwrap();
    assert_eq!(threads, 1, "threads started to wait for room in the queue");
    blocker.execute_batch("ROLLBACK").unwrap();
    first.blocking_recv().expect("the first event is committed");
    for ack in acks {
        ack.blocking_recv().expect("every event is committed");
    }
    let order: Vec<i64> = blocker
        .prepare("SELECT at_ms - ?1 FROM events ORDER BY id")
        .unwrap()
        .query_map([base], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        order,
        (0..=50).collect::<Vec<i64>>(),
        "committed out of order"
    );
    drop(writer);
    thread.join().unwrap();
}

/// A read error on a stored results window must not be taken for "no
/// window yet": the window would be replaced by only the new results. A
/// window whose data is not a blob (damaged) fails the repack, which keeps
/// both the window and the journal for the next try.
#[test]
fn a_window_that_cannot_be_read_is_not_overwritten() {
    let (dir, mut store) = temp_store();
    store.apply(&from_toml("t.toml", CONFIG).unwrap()).unwrap();
    let id = store.sensor_ids("web/http").unwrap()[0];
    let now = jiff::Timestamp::now().as_millisecond();
    let start = now.div_euclid(writer::WINDOW_MS) * writer::WINDOW_MS;
    let path = dir.path.join("test.db");
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute(
            "INSERT INTO results (sensor_id, start_ms, end_ms, count, data) VALUES (?1, ?2, ?2, 1, 'not a blob')",
            rusqlite::params![id, start],
        )
        .unwrap();
    let (writer, thread) = writer::start(&path).unwrap();
    let (result, last) = up_result(id, now);
    writer.result(result, last);
    let errors = writer.stats.clone();
    // Dropping the writer commits the result and repacks every window.
    drop(writer);
    thread.join().unwrap();
    let (kind, data): (String, String) = other
        .query_row(
            "SELECT typeof(data), CAST(data AS TEXT) FROM results WHERE sensor_id = ?1 AND start_ms = ?2",
            rusqlite::params![id, start],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), data.as_str()), ("text", "not a blob"));
    let journal: i64 = other
        .query_row("SELECT count(*) FROM journal", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, 1, "the new result waits in the journal");
    assert!(
        errors
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

/// Damaged JSON in a row is reported as a damaged row wherever it is read,
/// never taken for an empty list.
#[test]
fn damaged_json_is_a_damaged_row_everywhere() {
    let (dir, mut store) = temp_store();
    store.apply(&from_toml("t.toml", CONFIG).unwrap()).unwrap();
    let other = rusqlite::Connection::open(dir.path.join("test.db")).unwrap();
    other
        .execute("UPDATE sensors SET tags = '[\"a\"' WHERE name = 'http'", [])
        .unwrap();
    let damaged = |result: Result<(), StoreError>, says: &str| match result {
        Err(StoreError::Damaged(_, what)) => assert!(what.contains(says), "{what}"),
        other => panic!("expected a damaged row, got {other:?}"),
    };
    damaged(store.load().map(drop), "EOF while parsing");
    damaged(store.status().map(drop), "EOF while parsing");
    other.execute("UPDATE sensors SET tags = '[]'", []).unwrap();
    other
        .execute("UPDATE maintenance SET servers = 'db'", [])
        .unwrap();
    damaged(store.load().map(drop), "db: expected value");
}

/// `Writer::flush` returns only once everything queued before it is
/// committed (the monitor relies on it when it stops).
#[test]
fn flush_returns_once_everything_queued_is_committed() {
    let (dir, mut store) = temp_store();
    store.apply(&from_toml("t.toml", CONFIG).unwrap()).unwrap();
    let id = store.sensor_ids("web/http").unwrap()[0];
    let (writer, thread) = writer::start(&dir.path.join("test.db")).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    for n in 0..100 {
        let (result, last) = up_result(id, now + n);
        writer.result(result, last);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(writer.flush());
    // No wait: flush has returned, so all hundred are in the store.
    assert_eq!(store.results(id, 0, i64::MAX).unwrap().len(), 100);
    // The status row's ticks: the last twenty, across commits.
    for n in 0..7 {
        let (mut result, last) = up_result(id, now + 5_000 + n * 1000);
        result.status = portwatch_probe::Status::Down;
        result.reason = portwatch_probe::Reason::Timeout;
        writer.result(result, last);
    }
    runtime.block_on(writer.flush());
    let ticks = &store.glances(&[id], now).unwrap()[&id].ticks;
    let downs = ticks
        .iter()
        .filter(|t| t.2 == portwatch_probe::Reason::Timeout)
        .count();
    assert_eq!((ticks.len(), downs), (20, 7), "{ticks:?}");
    assert_eq!(ticks[19].0, (now + 11_000) / 1000 * 1000, "newest last");
    drop(writer);
    thread.join().unwrap();
}

/// The outbox from event to delivery: notifications written with their
/// event are due at once, per channel; a failed attempt waits for its
/// retry, a delivered or abandoned one leaves the queue, and every attempt
/// is counted and listed. Held notifications wait for their hold or a
/// settle; a cancelled one is never due.
#[test]
fn the_outbox_takes_a_notification_from_its_event_to_its_delivery() {
    use portwatch_core::monitor::state::{Change, State};
    let (dir, mut store) = temp_store();
    store.apply(&from_toml("t.toml", CONFIG).unwrap()).unwrap();
    let id = store.sensor_ids("web/http").unwrap()[0];
    let (writer, thread) = writer::start(&dir.path.join("test.db")).unwrap();
    let channel = portwatch_core::config::channel_from_json(&serde_json::json!({
        "name": "chat", "webhook": "http://127.0.0.1:9/hook"
    }))
    .unwrap();
    let payload = portwatch_core::notify::test_payload(&channel);
    let down = Change {
        from: State::Up,
        to: State::Down,
        reason: None,
        message: "down".into(),
    };
    let at = 1_790_000_000_000;
    let notify = vec![
        ("chat".to_owned(), payload.clone()),
        ("ops".to_owned(), payload.clone()),
    ];
    writer
        .event_notifying(id, at, down.clone(), notify.clone())
        .blocking_recv()
        .unwrap();
    let due = store.due_notifications(at, 10).unwrap();
    let channels: Vec<&str> = due.iter().map(|p| p.channel.as_str()).collect();
    assert_eq!(channels, ["chat", "ops"]);
    assert_eq!((due[0].attempts, &due[0].payload), (0, &payload));
    assert!(
        store.due_notifications(at - 1, 10).unwrap().is_empty(),
        "not before its time"
    );
    assert_eq!(store.undelivered().unwrap(), 2);
    let others = store
        .due_notifications_except(at, 10, &["chat".to_owned()])
        .unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].channel, "ops");

    let (chat, ops) = (due[0].id, due[1].id);
    store.delivery_failed(chat, "503 busy", at + 1_000).unwrap();
    let ids = |now| -> Vec<i64> {
        store
            .due_notifications(now, 10)
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(ids(at), [ops], "the failed one waits for its retry");
    assert_eq!(ids(at + 1_000), [chat, ops]);
    store.delivered(ops, at + 5).unwrap();
    assert_eq!(ids(i64::MAX), [chat]);
    assert_eq!(store.undelivered().unwrap(), 1);
    store
        .delivery_abandoned(chat, "410 gone", at + 2_000)
        .unwrap();
    assert!(ids(i64::MAX).is_empty());
    assert_eq!(store.undelivered().unwrap(), 0);
    let rows = store.outbox(10).unwrap();
    let summary: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.channel.as_str(),
                r.attempts,
                r.delivered_ms,
                r.failed_ms,
                r.last_error.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ops", 1, Some(at + 5), None, None),
            ("chat", 2, None, Some(at + 2_000), Some("410 gone")),
        ],
        "newest first"
    );

    // Held until the dependency's re-check: released by a settle...
    writer
        .event_holding(
            id,
            at + 10,
            down.clone(),
            notify[..1].to_vec(),
            Some(at + 30_000),
        )
        .blocking_recv()
        .unwrap();
    assert!(ids(at + 20).is_empty(), "held");
    writer.settle(id, at + 20, None).blocking_recv().unwrap();
    let released = ids(at + 20);
    assert_eq!(released.len(), 1, "released at once");
    store.delivered(released[0], at + 21).unwrap();
    // ...or cancelled by one, with the reason kept.
    writer
        .event_holding(id, at + 30, down, notify[..1].to_vec(), Some(at + 30_000))
        .blocking_recv()
        .unwrap();
    writer
        .settle(id, at + 40, Some("its dependency is down".into()))
        .blocking_recv()
        .unwrap();
    assert!(ids(i64::MAX).is_empty(), "a cancelled one is never due");
    let cancelled = &store.outbox(1).unwrap()[0];
    assert_eq!(cancelled.cancelled_ms, Some(at + 40));
    assert_eq!(
        cancelled.last_error.as_deref(),
        Some("its dependency is down")
    );
    drop(writer);
    thread.join().unwrap();
}

#[test]
fn one_sensor_reads_raw_results_while_kept_and_several_read_rollups() {
    assert_eq!(Detail::for_sensors(1), Detail::Raw);
    assert_eq!(Detail::for_sensors(2), Detail::Hourly);
    let (day, now) = (writer::DAY_MS, 100 * writer::DAY_MS);
    assert!(reads_raw(Detail::Raw, now - 7 * day, now));
    assert!(
        !reads_raw(Detail::Raw, now - 7 * day - 1, now),
        "past the raw results' 7 days"
    );
    assert!(!reads_raw(Detail::Hourly, now - day, now));
}

/// A statement from the cache runs as planned: it is not parsed and
/// planned again because its bound values changed.
#[test]
fn cached_statements_are_not_planned_again_for_new_values() {
    use rusqlite::StatementStatus;
    let (_dir, store) = temp_store();
    let sql = "SELECT hour_ms, count FROM rollups WHERE sensor_id = ?1 AND hour_ms >= ?2 ORDER BY hour_ms";
    for sensor in 1..20i64 {
        let mut statement = store.conn.prepare_cached(sql).unwrap();
        let mut rows = statement.query(rusqlite::params![sensor, 0]).unwrap();
        while rows.next().unwrap().is_some() {}
    }
    let statement = store.conn.prepare_cached(sql).unwrap();
    assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
}
