//! The monitor on a real PostgreSQL (a throwaway cluster per test, see
//! `portwatch-testpg`): it keeps monitoring while the database is away and
//! writes what waited when it is back, and it follows a primary failover
//! to the promoted standby. Real time: the database and the listeners are
//! real, and every wait polls for its condition with a deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use portwatch::config::from_toml;
use portwatch::daemon;
use portwatch::monitor::MonitorOptions;
use portwatch::monitor::state::State;
use portwatch::store::location::Location;
use portwatch::store::writer::WriterStats;
use portwatch::store::{Backend, Storage};
use portwatch_testpg::Cluster;
use tokio::task::JoinHandle;

/// A loopback listener that accepts and drops every connection.
struct Listener {
    port: u16,
    task: JoinHandle<()>,
}

impl Listener {
    /// A listener on loopback address `ip`. Each test has an address of
    /// its own, never 127.0.0.1: a port one test closes may be taken by
    /// another test's listener, and a sensor meant to be refused would
    /// then find it open.
    async fn start(ip: &str) -> Listener {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        Listener { port, task }
    }

    /// Stops listening: connects to its port are refused from now on.
    fn close(self) {
        self.task.abort();
    }
}

/// Sensors of server `s` on `ip`, checked every second, one per listener.
fn config(ip: &str, listeners: &[Listener]) -> String {
    let mut text = format!(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\nretries = 0\n[[server]]\nname = \"s\"\nhost = \"{ip}\"\n",
    );
    for (i, listener) in listeners.iter().enumerate() {
        text += &format!(
            "  [[server.sensor]]\n  name = \"p{i}\"\n  port = {}\n",
            listener.port
        );
    }
    text
}

pub(crate) async fn cluster(test: &'static str) -> Option<Cluster> {
    tokio::task::spawn_blocking(move || {
        let cluster = Cluster::for_test(test)?;
        cluster.create_database("portwatch").unwrap();
        Some(cluster)
    })
    .await
    .unwrap()
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

/// Waits until `done` says so, polling every 100 ms, for at most `limit`.
pub(crate) async fn until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many active sensors are in `state`, by the store (0 when it cannot
/// be read).
async fn in_state(db: &Backend, state: State) -> usize {
    db.status()
        .await
        .map(|rows| rows.iter().filter(|r| r.state == state).count())
        .unwrap_or(0)
}

fn start(db: &Backend) -> daemon::Running {
    daemon::start(daemon::Options {
        db: db.clone(),
        config: None,
        monitor: MonitorOptions::default(),
        web: None,
        deliver: false,
        share: None,
    })
    .unwrap()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The up → down events of `path` at or after `from_ms`.
async fn downs(db: &Backend, path: &str, from_ms: i64) -> usize {
    let id = db.sensor_ids(path.into()).await.unwrap()[0];
    db.events(id, from_ms, i64::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.from == State::Up && e.to == State::Down)
        .count()
}

/// PostgreSQL stopped for 10 s while 100 sensors are checked every second,
/// and 10 of them go down meanwhile: monitoring goes on, the outage is
/// visible in the writer's counters, and once the server is back every
/// state change and the results of the outage are stored; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_goes_on_while_postgresql_is_down_and_nothing_is_lost() {
    let Some(cluster) =
        cluster("postgres::monitoring_goes_on_while_postgresql_is_down_and_nothing_is_lost").await
    else {
        return;
    };
    let cluster = Arc::new(cluster);
    let location = Location::parse(&cluster.url("portwatch")).unwrap();
    let db = daemon::open(&location).await.unwrap();
    let mut listeners = Vec::new();
    for _ in 0..100 {
        listeners.push(Listener::start("127.0.101.1").await);
    }
    db.apply(from_toml("t.toml", &config("127.0.101.1", &listeners)).unwrap())
        .await
        .unwrap();
    let running = start(&db);
    let writer: Arc<WriterStats> = running.writer_stats().clone();
    until("100 sensors up", Duration::from_secs(30), || async {
        in_state(&db, State::Up).await == 100
    })
    .await;
    assert_eq!(in_state(&db, State::Up).await, 100);

    let stopping = cluster.clone();
    blocking(move || stopping.stop().unwrap()).await;
    let outage_from = now_ms();
    for listener in listeners.drain(..10) {
        listener.close();
    }
    until(
        "the writer to hold 10 state changes it cannot write",
        Duration::from_secs(20),
        || async {
            writer.failing().is_some() && writer.events_pending.load(Ordering::Relaxed) >= 10
        },
    )
    .await;
    let checks_before = running.stats().snapshot().done;
    // The outage lasts 10 s, as the scenario says.
    tokio::time::sleep_until(
        tokio::time::Instant::now()
            + Duration::from_millis((outage_from + 10_000 - now_ms()).max(0) as u64),
    )
    .await;
    assert!(
        running.stats().snapshot().done >= checks_before + 500,
        "checks went on during the outage"
    );
    let restarting = cluster.clone();
    blocking(move || restarting.restart().unwrap()).await;
    let outage_to = now_ms();

    until(
        "what waited to be written",
        Duration::from_secs(30),
        || async {
            writer.failing().is_none() && writer.events_pending.load(Ordering::Relaxed) == 0
        },
    )
    .await;
    assert_eq!(in_state(&db, State::Down).await, 10);
    assert_eq!(in_state(&db, State::Up).await, 90);
    for i in 0..10 {
        assert_eq!(
            downs(&db, &format!("s/p{i}"), outage_from).await,
            1,
            "s/p{i}: its state change of the outage is stored once"
        );
    }
    running.shutdown().cancel();
    let summary = running.wait().await.unwrap();
    assert_eq!(summary.dropped, 0, "no result lost");
    assert!(summary.write_errors > 0, "the outage was seen");
    // The results checked during the outage are stored.
    let id = db.sensor_ids("s/p50".into()).await.unwrap()[0];
    let during = db.results(id, outage_from, outage_to).await.unwrap();
    assert!(
        during.len() >= 8,
        "{} results of s/p50 stored from the 10 s outage",
        during.len()
    );
}

/// A primary and a streaming-replication standby (`pg_basebackup -R`),
/// and a multi-host URL with `target_session_attrs=read-write`: the
/// primary is killed, sensors go down meanwhile, the standby is promoted,
/// and portwatch writes to the new primary by itself with no state change
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failover_is_followed_with_no_event_lost() {
    let Some(primary) =
        cluster("postgres::a_primary_failover_is_followed_with_no_event_lost").await
    else {
        return;
    };
    let primary = Arc::new(primary);
    let replicating = primary.clone();
    let standby = Arc::new(blocking(move || replicating.standby().unwrap()).await);
    let url = format!(
        "postgres://{}@127.0.0.1:{},127.0.0.1:{}/portwatch?target_session_attrs=read-write",
        portwatch_testpg::USER,
        primary.port(),
        standby.port()
    );
    let db = daemon::open(&Location::parse(&url).unwrap()).await.unwrap();
    let mut listeners = Vec::new();
    for _ in 0..10 {
        listeners.push(Listener::start("127.0.101.2").await);
    }
    db.apply(from_toml("t.toml", &config("127.0.101.2", &listeners)).unwrap())
        .await
        .unwrap();
    let running = start(&db);
    let writer = running.writer_stats().clone();
    until("10 sensors up", Duration::from_secs(30), || async {
        in_state(&db, State::Up).await == 10
    })
    .await;
    assert_eq!(in_state(&db, State::Up).await, 10);
    // Replication is asynchronous: what the primary committed reaches the
    // standby shortly after. Wait until it has, as a failover tool would
    // (or use synchronous replication).
    let (p, s) = (primary.clone(), standby.clone());
    until("the standby to catch up", Duration::from_secs(30), || {
        let (p, s) = (p.clone(), s.clone());
        async move {
            blocking(move || {
                let sent = p.psql("portwatch", "SELECT pg_current_wal_lsn()").ok();
                let replayed = s.psql("portwatch", "SELECT pg_last_wal_replay_lsn()").ok();
                sent.is_some() && sent == replayed
            })
            .await
        }
    })
    .await;

    let killing = primary.clone();
    blocking(move || killing.kill().unwrap()).await;
    let failed_at = now_ms();
    for listener in listeners.drain(..3) {
        listener.close();
    }
    until(
        "the writer to hold 3 state changes",
        Duration::from_secs(20),
        || async { writer.events_pending.load(Ordering::Relaxed) >= 3 },
    )
    .await;
    let promoting = standby.clone();
    blocking(move || promoting.promote().unwrap()).await;
    until(
        "writes to the promoted standby",
        Duration::from_secs(10),
        || async {
            writer.failing().is_none() && writer.events_pending.load(Ordering::Relaxed) == 0
        },
    )
    .await;
    assert_eq!(in_state(&db, State::Down).await, 3);
    for i in 0..3 {
        assert_eq!(downs(&db, &format!("s/p{i}"), failed_at).await, 1, "s/p{i}");
    }
    // Every state change is on the new primary: 10 pending → up, 3 up → down.
    let events = blocking(move || {
        standby
            .psql("portwatch", "SELECT count(*) FROM events")
            .unwrap()
    })
    .await;
    assert_eq!(events, "13");
    running.shutdown().cancel();
    assert_eq!(running.wait().await.unwrap().dropped, 0);
}

/// `portwatch store copy` moves a SQLite store with months of history, an
/// outbox, users and tokens into PostgreSQL and back: the reports of every
/// sensor (raw results, rollups, outages) are the same in all three
/// stores, users sign in with their passwords, and a store that holds
/// data already is refused as a destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_round_trips_sqlite_postgresql_sqlite() {
    use portwatch::probe::{Reason, Status};
    use portwatch::store::StoredResult;
    use portwatch::store::Writes;
    use portwatch::store::accounts::Role;
    use portwatch::store::writer::LastCheck;

    let Some(cluster) = cluster("postgres::store_copy_round_trips_sqlite_postgresql_sqlite").await
    else {
        return;
    };
    let dir = crate::util::TempDir::new("store-copy");
    let first = dir.path.join("first.db");
    let sqlite = Backend::from(portwatch::store::Db::open(&first, 2).unwrap());
    let config = "[[server]]\nname = \"web\"\nhost = \"127.0.0.1\"\n  [[server.sensor]]\n  port = 80\n  [[server.sensor]]\n  port = 443\n[[channel]]\nname = \"chat\"\nwebhook = \"http://127.0.0.1:9/hook\"\n[[notify]]\nchannel = \"chat\"\non = [\"down\", \"up\"]\n";
    sqlite
        .apply(from_toml("t.toml", config).unwrap())
        .await
        .unwrap();
    let now = now_ms();
    let start = now - 40 * 86_400_000;
    {
        let (writer, thread) = sqlite.writer().unwrap();
        for (n, id) in sqlite
            .sensor_ids("web".into())
            .await
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let mut state = State::Pending;
            // Every 20 minutes for 40 days; down for an hour every 5 days.
            for step in 0..(40 * 72) {
                let at_ms = start + step * 1_200_000 + n as i64;
                let down = step % 360 < 3;
                let result = StoredResult {
                    sensor: id,
                    at_ms,
                    status: if down { Status::Down } else { Status::Up },
                    reason: if down {
                        Reason::Refused
                    } else {
                        Reason::Connected
                    },
                    rtt_us: (!down).then_some(100 + (step % 50) as u32),
                };
                let next = if down { State::Down } else { State::Up };
                if next != state {
                    let change = portwatch::monitor::state::Change {
                        from: state,
                        to: next,
                        reason: Some(result.reason),
                        message: format!("{next:?}"),
                    };
                    let channel = sqlite.channel("chat".into()).await.unwrap().unwrap();
                    let notify =
                        vec![("chat".to_owned(), portwatch::notify::test_payload(&channel))];
                    drop(writer.event_holding(id, at_ms, change, notify, None));
                    state = next;
                }
                writer.result(
                    result,
                    LastCheck {
                        state,
                        since_ms: at_ms,
                        message: String::new(),
                        details: None,
                    },
                );
            }
        }
        writer.flush().await;
        drop(writer);
        blocking(move || thread.join().unwrap()).await;
    }
    sqlite
        .create_user("ada".into(), "correct horse".into(), Role::Admin)
        .await
        .unwrap();
    let token = sqlite.create_token("ci".into(), Role::Read).await.unwrap();
    let periods = [
        (now - 86_400_000, now),
        (now - 30 * 86_400_000, now),
        (start, now),
    ];
    let reports = |db: Backend| async move {
        let mut all = Vec::new();
        for (from, to) in periods {
            all.push(
                serde_json::to_value(
                    portwatch::store::copy::reports(&db, from, to)
                        .await
                        .unwrap(),
                )
                .unwrap(),
            );
        }
        all
    };
    let before = reports(sqlite.clone()).await;
    assert!(
        before[2].to_string().contains("\"outages\":[{"),
        "the history has outages"
    );

    let url = cluster.url("portwatch");
    let bin = crate::util::bin();
    let copy = |from: String, to: String| {
        blocking(move || {
            std::process::Command::new(bin)
                .args(["store", "copy", "--from", &from, "--to", &to])
                .output()
                .unwrap()
        })
    };
    let out = copy(first.display().to_string(), url.clone()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("events"));
    let pg = daemon::open(&Location::parse(&url).unwrap()).await.unwrap();
    assert_eq!(reports(pg.clone()).await, before, "SQLite → PostgreSQL");
    assert!(
        pg.login("ada".into(), "correct horse".into())
            .await
            .unwrap()
            .is_some()
    );
    assert!(pg.token(token.clone()).await.unwrap().is_some());
    assert_eq!(
        pg.outbox(1000).await.unwrap().len(),
        sqlite.outbox(1000).await.unwrap().len()
    );
    // New rows after the copy get new ids.
    pg.create_token("after".into(), Role::Read).await.unwrap();

    let second = dir.path.join("second.db");
    let out = copy(url.clone(), second.display().to_string()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = Backend::from(portwatch::store::Db::open(&second, 2).unwrap());
    assert_eq!(reports(back.clone()).await, before, "PostgreSQL → SQLite");
    assert_eq!(back.tokens().await.unwrap().len(), 2);

    let out = copy(first.display().to_string(), url).await;
    assert!(!out.status.success(), "a full destination is refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("copy into a new, empty store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// TLS to PostgreSQL by rustls: `require` encrypts, `verify-full` checks
/// the certificate against `sslrootcert` and the host name, and refuses a
/// server it cannot verify; `disable` does not encrypt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let Some(cluster) = cluster("postgres::tls_modes_encrypt_and_verify_as_libpq_does").await
    else {
        return;
    };
    let pki = crate::util::Pki::new();
    let (cert, key) = pki.leaf_files(&["localhost"]);
    let cert = cluster
        .install_file("server.crt", &std::fs::read(cert).unwrap())
        .unwrap();
    let key = cluster
        .install_file("server.key", &std::fs::read(key).unwrap())
        .unwrap();
    cluster
        .configure(&[
            ("ssl_cert_file", &cert.display().to_string()),
            ("ssl_key_file", &key.display().to_string()),
            ("ssl", "on"),
        ])
        .unwrap();
    let cluster = Arc::new(cluster);
    let (port, user) = (cluster.port(), portwatch_testpg::USER);
    let ca = pki.ca_file();
    let url = |host: &str, query: &str| {
        format!("postgres://{user}@{host}:{port}/portwatch?application_name=tls-test&{query}")
    };
    // Whether the connection named tls-test that is open now is encrypted.
    let encrypted = || {
        let cluster = cluster.clone();
        blocking(move || {
            cluster
                .psql(
                    "postgres",
                    "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'tls-test'",
                )
                .unwrap()
        })
    };
    let open = |url: String| async move {
        let location = Location::parse(&url).unwrap();
        Backend::open(&location, 2).await
    };

    let db = open(url("127.0.0.1", "sslmode=require")).await.unwrap();
    assert_eq!(encrypted().await, "t", "require encrypts");
    drop(db);
    let db = open(url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    db.generation().await.unwrap();
    assert_eq!(encrypted().await, "t", "verify-full with the CA");
    drop(db);
    for (host, query, why) in [
        (
            "localhost",
            "sslmode=verify-full".to_owned(),
            "not signed by a system root",
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            "the certificate names localhost, not 127.0.0.1",
        ),
    ] {
        let error = open(url(host, &query)).await.unwrap_err().to_string();
        assert!(
            error.contains("certificate") || error.contains("Certificate"),
            "{why}: {error}"
        );
    }
    let db = open(url("127.0.0.1", "sslmode=disable")).await.unwrap();
    assert_eq!(encrypted().await, "f", "disable does not encrypt");
    drop(db);
}

/// Every command that takes `--db` works on PostgreSQL, by URL and by
/// `PORTWATCH_DB`: `apply` creates the store, `status`, `report`,
/// `pause`, `resume`, `access` and `notify test` use it; the commands
/// that only read refuse a database without a store; a password never
/// appears in a message.
#[test]
fn every_store_command_works_on_postgresql() {
    use crate::util::{outcome, portwatch};
    let Some(cluster) = Cluster::for_test("postgres::every_store_command_works_on_postgresql")
    else {
        return;
    };
    cluster.create_database("portwatch").unwrap();
    let url = cluster.url("portwatch");
    let (code, _, stderr) = outcome(&portwatch(&["status", "--db", &url]));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("holds no portwatch store"), "{stderr}");

    let dir = crate::util::TempDir::new("pg-cli");
    let file = dir.path.join("portwatch.toml");
    std::fs::write(
        &file,
        "[[server]]\nname = \"web\"\nhost = \"127.0.0.1\"\n  [[server.sensor]]\n  port = 80\n  [[server.sensor]]\n  port = 443\n",
    )
    .unwrap();
    let (code, stdout, stderr) =
        outcome(&portwatch(&["apply", file.to_str().unwrap(), "--db", &url]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("2 sensors (2 added, 0 removed)"),
        "{stdout}"
    );
    let (_, stdout, _) = outcome(&portwatch(&["status", "--db", &url]));
    assert!(
        stdout.contains("web/http") && stdout.contains("web/https"),
        "{stdout}"
    );
    let (code, stdout, stderr) = outcome(&portwatch(&["pause", "web", "--db", &url]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("paused 2 sensors"), "{stdout}");
    let (_, stdout, _) = outcome(&portwatch(&["resume", "web/https", "--db", &url]));
    assert!(stdout.contains("resumed 1 sensor"), "{stdout}");
    let (code, stdout, stderr) = outcome(&portwatch(&[
        "report", "web", "--format", "json", "--db", &url,
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(crate::util::json_lines(&stdout).len(), 2, "{stdout}");
    let (code, token, stderr) = outcome(&portwatch(&["access", "token", "ci", "--db", &url]));
    assert_eq!(code, 0, "{stderr}");
    let by_env = std::process::Command::new(crate::util::bin())
        .args(["access", "list"])
        .env("PORTWATCH_DB", &url)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&by_env.stdout);
    assert!(
        list.contains("ci") && !list.contains(token.trim()),
        "{list}"
    );
    let (code, _, stderr) = outcome(&portwatch(&["notify", "test", "ops", "--db", &url]));
    assert_eq!(code, 3);
    assert!(stderr.contains("no channel named 'ops'"), "{stderr}");

    let missing = dir.path.join("no-such-file");
    let (code, _, stderr) = outcome(&portwatch(&[
        "status",
        "--db",
        &url,
        "--db-password-file",
        missing.to_str().unwrap(),
    ]));
    assert_eq!(code, 3);
    assert!(stderr.contains("cannot read the password file"), "{stderr}");
    // Nothing listens on port 1: the error names the database, masked.
    let (code, _, stderr) = outcome(&portwatch(&[
        "status",
        "--db",
        "postgres://portwatch:s3cret@127.0.0.1:1/portwatch",
    ]));
    assert_eq!(code, 3);
    assert!(
        stderr.contains("postgres://portwatch:***@127.0.0.1:1/portwatch")
            && !stderr.contains("s3cret"),
        "{stderr}"
    );
}

/// A database that stops answering without closing its connections (a
/// network cut, a hung host: here the server frozen with SIGSTOP) delays
/// no check: the configuration poll and the writes wait on their own, the
/// schedule keeps its time, and everything is written once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_hangs_delays_no_check() {
    let Some(cluster) = cluster("postgres::a_database_that_hangs_delays_no_check").await else {
        return;
    };
    let cluster = Arc::new(cluster);
    let db = daemon::open(&Location::parse(&cluster.url("portwatch")).unwrap())
        .await
        .unwrap();
    let mut listeners = Vec::new();
    for _ in 0..20 {
        listeners.push(Listener::start("127.0.101.3").await);
    }
    db.apply(from_toml("t.toml", &config("127.0.101.3", &listeners)).unwrap())
        .await
        .unwrap();
    let running = daemon::start(daemon::Options {
        db: db.clone(),
        config: None,
        monitor: MonitorOptions {
            reload_every: Duration::from_secs(1),
            ..MonitorOptions::default()
        },
        web: None,
        deliver: false,
        share: None,
    })
    .unwrap();
    until("20 sensors up", Duration::from_secs(30), || async {
        in_state(&db, State::Up).await == 20
    })
    .await;
    let frozen = cluster.clone();
    blocking(move || frozen.freeze().unwrap()).await;
    let before = running.stats().snapshot();
    let frozen_at = tokio::time::Instant::now();
    // Eight seconds of 20 checks a second, with the database silent.
    tokio::time::sleep_until(frozen_at + Duration::from_secs(8)).await;
    let during = running.stats().snapshot();
    let thawing = cluster.clone();
    blocking(move || thawing.thaw().unwrap()).await;
    assert!(
        during.done >= before.done + 20 * 7,
        "{} checks in 8 s with the database frozen",
        during.done - before.done
    );
    assert_eq!(during.missed, 0, "no check missed");
    assert!(
        during.lateness_quantile(0.99).unwrap_or(0) < 1_000,
        "checks started on time"
    );
    let writer = running.writer_stats().clone();
    until(
        "what waited to be written",
        Duration::from_secs(60),
        || async { writer.pending.load(Ordering::Relaxed) == 0 && writer.failing().is_none() },
    )
    .await;
    running.shutdown().cancel();
    assert_eq!(running.wait().await.unwrap().dropped, 0);
}
