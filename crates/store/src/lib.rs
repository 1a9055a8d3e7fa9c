//! The store: one SQLite file in WAL mode ([`Db`], this module), or a
//! PostgreSQL database ([`pg`]), behind the same interface ([`Storage`],
//! [`Writes`]); [`Backend`] is either, as `--db` ([`location`]) names it.
//!
//! It holds the configuration (groups, servers, sensors, maintenance
//! windows), the sensors' current states, state-change events, raw results
//! (packed, see [`pack`]) and hourly rollups. All writes of the running
//! monitor go through one [`writer`] thread; readers use the handle's
//! connections. The web's lists are built as SQL in [`listing`], so a
//! page reads its rows rather than every sensor.

pub mod accounts;
mod backend;
pub mod copy;
pub mod edit;
mod handle;
pub mod listing;
pub mod location;
pub mod outbox;
pub mod pack;
pub mod pg;
mod schema;
mod storage;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};

use portwatch_core::config::{
    Config, GroupDef, Overrides, SensorDef, ServerDef, WindowDef, WindowRule,
};
use portwatch_core::monitor::state::State;
use portwatch_probe::target::parse_bare_host;

pub use backend::Backend;
pub use handle::Db;
pub use listing::{Listed, StatusOrder, StatusQuery, Tally};
pub use pack::StoredResult;
use portwatch_core::monitor::heartbeat::{Push, Pushes};
use portwatch_core::report;
pub use portwatch_core::report::rollup::{self, Rollup};
pub use storage::{Storage, Writes};

/// The default store file, in the current directory.
pub const DEFAULT_PATH: &str = "portwatch.db";

/// The page cache, in KiB, while a configuration file is applied.
const APPLY_CACHE_KIB: i64 = 64 * 1024;

/// How long raw results are kept.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long hourly rollups are kept.
pub const ROLLUP_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// SQL statements run so far by every store connection of this process.
pub fn statements_run() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one statement run (for [`statements_run`]).
pub(crate) fn count_statement() {
    STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// PostgreSQL said no, or could not be reached (the database is named
    /// with its password masked).
    #[error("store {0}: {1}")]
    Postgres(String, String),
    /// The schema could not be brought up to date.
    #[error("store {0}: {1}")]
    Schema(PathBuf, String),
    /// A name that is not in the store.
    #[error("no sensor, server or group named '{0}' (see `portwatch status`)")]
    NotFound(String),
    /// A name that is taken.
    #[error("{0}")]
    Conflict(String),
    /// Stored data that does not parse.
    #[error("store {0}: damaged row: {1}")]
    Damaged(PathBuf, String),
    /// Another process holds the store's monitor lock.
    #[error("another portwatch serve{} is already monitoring the store {}: stop it first, or give another --db", .1.map(|pid| format!(" (pid {pid})")).unwrap_or_default(), .0.display())]
    Locked(PathBuf, Option<u32>),
    /// The handle's work was cancelled: the process is shutting down.
    #[error("store {}: shutting down", .0.display())]
    Closed(PathBuf),
    /// A command that only reads was pointed at a store that does not exist.
    #[error("no store at {}: start the monitor with portwatch serve, or give --db", .0.display())]
    Missing(PathBuf),
}

/// The monitor lock of a store, held while it lives.
pub struct MonitorLock(LockKind);

enum LockKind {
    /// SQLite: `flock` on a file beside the store; the kernel ends it with
    /// the process.
    File(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>),
    /// PostgreSQL: a lease row, renewed while the process lives.
    Lease(pg::Lease),
}

impl MonitorLock {
    /// Gives the lock up at once (a PostgreSQL lease would otherwise last
    /// until it expires, and hold off a restarted monitor meanwhile).
    pub async fn release(self) {
        if let LockKind::Lease(lease) = self.0 {
            lease.release().await;
        }
    }
}

/// The lock file of the store at `path`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Whether users other than the owner may read the store's files; the
/// paths that they may read.
pub fn readable_by_others(path: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .filter(|file| std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o077 != 0))
        .collect()
}

/// The error of a failed SQLite call on the store at `path`. A value
/// that does not convert (a [`Json`] column that does not parse, a blob
/// where text belongs) is a damaged row.
fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
    move |source| match source {
        rusqlite::Error::FromSqlConversionFailure(column, _, error) => {
            StoreError::Damaged(path.to_owned(), format!("column {column}: {error}"))
        }
        source => StoreError::Sqlite {
            path: path.to_owned(),
            source,
        },
    }
}

/// A JSON column, parsed as it is read: a value that does not parse is a
/// damaged row ([`StoreError::Damaged`]), never an empty default.
pub(crate) struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned> rusqlite::types::FromSql for Json<T> {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        serde_json::from_str(value.as_str()?)
            .map(Json)
            .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

/// A sensor's state from its status row: the stored state, or without one
/// (never checked) paused when it is paused by hand, else pending.
pub(crate) fn row_state(stored: Option<String>, paused: bool) -> State {
    match stored.and_then(|s| s.parse().ok()) {
        Some(state) => state,
        None if paused => State::Paused(portwatch_core::monitor::state::PauseCause::Manual),
        None => State::Pending,
    }
}

/// Parses stored JSON text, or says which value is damaged.
fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("{text}: {e}"))
}

/// A connection to the store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// What `apply` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplySummary {
    /// Sensors declared by the file.
    pub sensors: usize,
    /// Sensors that were not in the store (or came back).
    pub added: usize,
    /// File-managed sensors that left the file.
    pub removed: usize,
}

/// The configuration in the store, ready for the monitor.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Sensor ids by path.
    pub ids: HashMap<String, i64>,
    /// Sensors paused by hand.
    pub paused: HashSet<i64>,
    /// Changes whenever the configuration changes.
    pub generation: i64,
}

/// What the dashboard shows of a sensor's recent past, read from what the
/// writer maintains (the status row's ticks, hourly and daily rollups),
/// never from raw results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Glance {
    /// Its last checks, oldest first: `(at_ms, status, reason)`.
    pub ticks: Vec<(i64, portwatch_probe::Status, portwatch_probe::Reason)>,
    /// Uptime by requests over the hours of the last 24, in percent (the
    /// rollups trail the checks by up to a few minutes).
    pub uptime_24h: Option<f64>,
    /// Uptime by requests over the last 30 days (today included).
    pub uptime_30d: Option<f64>,
}

/// The hour and the day (ms) from which a glance at `now_ms` sums its
/// rollups: the 24 hours up to this one, and the 30 days up to today.
pub(crate) fn glance_from(now_ms: i64) -> (i64, i64) {
    let hour = rollup::hour_of(now_ms) - 23 * rollup::HOUR_MS;
    let day = now_ms - now_ms.rem_euclid(writer::DAY_MS) - 29 * writer::DAY_MS;
    (hour, day)
}

/// One row of the glance query: a sensor's ticks (kind 0), or its count
/// and ups over 24 hours (1) or 30 days (2).
pub(crate) struct GlancePart {
    pub(crate) kind: i64,
    pub(crate) sensor: i64,
    pub(crate) ticks: Option<Vec<u8>>,
    pub(crate) count: i64,
    pub(crate) ups: i64,
}

impl GlancePart {
    pub(crate) fn add_to(self, glances: &mut HashMap<i64, Glance>) {
        let glance = glances.entry(self.sensor).or_default();
        let uptime = (self.count > 0).then(|| self.ups as f64 * 100.0 / self.count as f64);
        match self.kind {
            0 => glance.ticks = pack::ticks(self.ticks.as_deref().unwrap_or_default()),
            1 => glance.uptime_24h = uptime,
            _ => glance.uptime_30d = uptime,
        }
    }
}

/// One sensor in `portwatch status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    /// Sensor id.
    pub id: i64,
    /// `server/sensor`.
    pub path: String,
    /// The server's group.
    pub group: Option<String>,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Current state.
    pub state: State,
    /// Since when (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Last check time.
    pub last_check_ms: Option<i64>,
    /// Last connect time.
    pub last_rtt_us: Option<i64>,
    /// Last reason.
    pub last_reason: Option<String>,
    /// Last message.
    pub last_message: Option<String>,
    /// The last protocol check's phases, details and certificate (JSON).
    pub last_details: Option<portwatch_probe::proto::CheckDetails>,
    /// The server's and the sensor's tags.
    pub tags: Vec<String>,
    /// Declared by a configuration file (read-only in the web interface).
    pub managed: bool,
    /// A PING sensor (port 0, like a heartbeat sensor, but checked).
    pub ping: bool,
}

pub use portwatch_core::report::EventRow;

impl Store {
    /// Opens (creating if needed) the store at `path`, in WAL mode, with the
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let sqlite = sqlite_error(path);
        let mut conn = Connection::open(path).map_err(&sqlite)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        // Switching a new file to WAL needs an exclusive lock, and SQLite
        // reports a competing opener as busy without waiting: retry briefly.
        let mut attempts = 0;
        while let Err(error) = conn.pragma_update(None, "journal_mode", "WAL") {
            attempts += 1;
            if attempts >= 100 || !is_busy(&error) {
                return Err(sqlite(error));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        // Plans that do not depend on the values bound. Otherwise SQLite
        // marks a statement with a `= ?` term as "re-plan when the value
        // changes", and clearing its bindings (as the statement cache does
        // after each use) has it parsed and planned again at its next run:
        // a third of a group report's time went to that.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(&sqlite)?;
        schema::schema_up(&mut conn).map_err(|e| StoreError::Schema(path.to_owned(), e))?;
        // Every statement run from here on is counted (see
        // `statements_run`): opening a connection is not, nor what SQLite
        // runs of its own: the statements inside a statement (a trigger's,
        // the search index's), traced as comments ("-- ..."), and the
        // search index's reads of its settings, which name its tables as
        // 'main'.'...'. Their number follows the index's layout and which
        // connection reads, not the code.
        conn.trace_v2(
            rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
            Some(|event: rusqlite::trace::TraceEvent<'_>| {
                if let rusqlite::trace::TraceEvent::Stmt(_, sql) = event
                    && !sql.starts_with("--")
                    && !sql.contains("'main'.")
                {
                    count_statement();
                }
            }),
        )
        .map_err(sqlite)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
        })
    }

    /// Opens the store at `path` only if it exists: the commands that work
    /// on a store (`status`, `report`, `pause`, …) never create an empty one
    /// at a mistyped path.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        Store::open(path)
    }

    /// Takes the store's monitor lock: a lock file beside it (`PATH.lock`,
    /// holding the owner's pid), locked with `flock`. One `serve` per store;
    /// the lock ends with the process, also after `kill -9`. Commands that
    /// only read or edit the store do not take it.
    pub fn lock_monitor(path: &Path) -> Result<MonitorLock, StoreError> {
        use std::io::{Read, Seek, Write};
        let lock_path = lock_path(path);
        let io = |e: std::io::Error| StoreError::Damaged(lock_path.clone(), e.to_string());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io)?;
        let mut locked =
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((mut file, _)) => {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    return Err(StoreError::Locked(path.to_owned(), pid.trim().parse().ok()));
                }
            };
        locked.set_len(0).map_err(io)?;
        locked.rewind().map_err(io)?;
        writeln!(locked, "{}", std::process::id()).map_err(io)?;
        Ok(MonitorLock(LockKind::File(locked)))
    }

    /// Refuses a name (of a sensor, server, group, tag, channel, user,
    /// token or status page) with control, invisible or text-direction
    /// characters. The configuration file is checked the same way when it
    /// is read; this guards what the web interface, API and CLI write.
    pub(crate) fn check_names<'a>(
        what: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        for name in names {
            if let Some(problem) = portwatch_probe::text::name_problem(name) {
                return Err(StoreError::Conflict(format!(
                    "{what} '{}' {problem}",
                    portwatch_probe::text::visible(name)
                )));
            }
        }
        Ok(())
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sqlite_error(&self.path)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration generation: it changes on every configuration
    /// change, so the monitor knows when to reload.
    pub fn generation(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'config_generation'",
                [],
                |r| r.get(0),
            )
            .map_err(self.sqlite())
    }

    /// Makes the store hold what `config` declares: upserts its groups,
    /// servers, sensors and windows (marked file-managed), and retires the
    /// file-managed items that left it. A retired item that comes back under
    /// the same name gets its old id, and so its history, back.
    pub fn apply(&mut self, config: &Config) -> Result<ApplySummary, StoreError> {
        // A larger page cache while a file is applied: a million sensors'
        // rows and indexes through SQLite's default 2 MB took a quarter
        // longer. The usual size comes back afterwards.
        let path = self.path.clone();
        let sqlite = sqlite_error(&path);
        let usual: i64 = self
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .map_err(sqlite)?;
        self.conn
            .pragma_update(None, "cache_size", -APPLY_CACHE_KIB)
            .map_err(sqlite)?;
        let applied = self.apply_all(config);
        let restored = self.conn.pragma_update(None, "cache_size", usual);
        // An apply's own error comes first.
        let summary = applied?;
        restored.map_err(sqlite)?;
        Ok(summary)
    }

    /// [`Store::apply`] in one transaction.
    fn apply_all(&mut self, config: &Config) -> Result<ApplySummary, StoreError> {
        let path = self.path.clone();
        let sqlite = sqlite_error(&path);
        let now = jiff::Timestamp::now().as_millisecond();
        let tx = self.conn.transaction().map_err(sqlite)?;
        let mut summary = ApplySummary::default();
        let json = |o: &Overrides| serde_json::to_string(o).expect("settings serialise");
        // The search index takes the added sensors in one statement at the
        // end (see the schema's migration 10).
        tx.execute_batch(
            "INSERT INTO meta (key, value) VALUES ('search_deferred', 1);
             CREATE TEMP TABLE IF NOT EXISTS added (id INTEGER PRIMARY KEY);
             DELETE FROM temp.added;",
        )
        .map_err(sqlite)?;
        tx.execute(
            "UPDATE defaults SET settings = ?1 WHERE id = 1",
            [json(&config.defaults)],
        )
        .map_err(sqlite)?;
        for group in &config.groups {
            tx.execute(
                "INSERT INTO groups (path, settings, managed) VALUES (?1, ?2, 1)
                 ON CONFLICT (path) DO UPDATE SET settings = ?2, managed = 1, retired_at = NULL",
                params![group.path, json(&group.overrides)],
            )
            .map_err(sqlite)?;
        }
        let mut kept_servers = Vec::new();
        let mut kept_sensors = Vec::new();
        for server in &config.servers {
            // Cached statements: compiling one (and the search index's
            // triggers it fires) for each of a million sensors would take
            // most of the time.
            let server_id: i64 = tx
                .prepare_cached(
                    "INSERT INTO servers (name, host, group_path, settings, tags, managed) VALUES (?1, ?2, ?3, ?4, ?5, 1)
                     ON CONFLICT (name) DO UPDATE SET host = ?2, group_path = ?3, settings = ?4, tags = ?5, managed = 1, retired_at = NULL
                     RETURNING id",
                )
                .and_then(|mut upsert| {
                    upsert.query_row(
                        params![server.name, server.host.to_string(), server.group, json(&server.overrides), serde_json::to_string(&server.tags).unwrap()],
                        |r| r.get(0),
                    )
                })
                .map_err(sqlite)?;
            kept_servers.push(server_id);
            for sensor in &server.sensors {
                let existed: Option<Option<i64>> = tx
                    .prepare_cached(
                        "SELECT retired_at FROM sensors WHERE server_id = ?1 AND name = ?2",
                    )
                    .and_then(|mut select| {
                        select
                            .query_row(params![server_id, sensor.name], |r| r.get(0))
                            .optional()
                    })
                    .map_err(sqlite)?;
                if !matches!(existed, Some(None)) {
                    summary.added += 1;
                }
                let id: i64 = tx
                    .prepare_cached(
                        "INSERT INTO sensors (server_id, name, port, expect_closed, settings, tags, managed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)
                         ON CONFLICT (server_id, name) DO UPDATE SET port = ?3, expect_closed = ?4, settings = ?5, tags = ?6, managed = 1, retired_at = NULL
                         RETURNING id",
                    )
                    .and_then(|mut upsert| {
                        upsert.query_row(
                            params![server_id, sensor.name, sensor.port, sensor.expect_closed, json(&sensor.overrides), serde_json::to_string(&sensor.tags).unwrap()],
                            |r| r.get(0),
                        )
                    })
                    .map_err(sqlite)?;
                if existed.is_none() {
                    tx.prepare_cached("INSERT INTO temp.added (id) VALUES (?1)")
                        .and_then(|mut added| added.execute([id]))
                        .map_err(sqlite)?;
                }
                kept_sensors.push(id);
                summary.sensors += 1;
            }
        }
        let retire = |table: &str, kept: &[i64]| -> Result<usize, rusqlite::Error> {
            let list = kept
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            tx.execute(
                &format!("UPDATE {table} SET retired_at = ?1 WHERE managed = 1 AND retired_at IS NULL AND id NOT IN ({list})"),
                [now],
            )
        };
        summary.removed = retire("sensors", &kept_sensors).map_err(sqlite)?;
        retire("servers", &kept_servers).map_err(sqlite)?;
        // Sensors of retired servers retire with them.
        summary.removed += tx
            .execute(
                "UPDATE sensors SET retired_at = ?1 WHERE retired_at IS NULL AND server_id IN (SELECT id FROM servers WHERE retired_at IS NOT NULL)",
                [now],
            )
            .map_err(sqlite)?;
        tx.execute_batch(
            "INSERT INTO sensor_search (rowid, text, tags)
                 SELECT id, text, tags FROM sensor_text WHERE id IN (SELECT id FROM temp.added);
             DELETE FROM temp.added;
             DELETE FROM meta WHERE key = 'search_deferred';",
        )
        .map_err(sqlite)?;
        let paths: Vec<String> = config.groups.iter().map(|g| g.path.clone()).collect();
        tx.execute(
            "UPDATE groups SET retired_at = ?1 WHERE managed = 1 AND retired_at IS NULL AND path NOT IN (SELECT value FROM json_each(?2))",
            params![now, serde_json::to_string(&paths).unwrap()],
        )
        .map_err(sqlite)?;
        tx.execute("DELETE FROM maintenance WHERE managed = 1", [])
            .map_err(sqlite)?;
        for window in &config.maintenance {
            tx.execute(
                "INSERT INTO maintenance (name, rule, groups, servers, sensors, managed) VALUES (?1, ?2, ?3, ?4, ?5, 1)",
                params![
                    window.name,
                    serde_json::to_string(&window.rule).unwrap(),
                    serde_json::to_string(&window.groups).unwrap(),
                    serde_json::to_string(&window.servers).unwrap(),
                    serde_json::to_string(&window.sensors).unwrap()
                ],
            )
            .map_err(sqlite)?;
        }
        Store::apply_notifications(&tx, &config.channels, &config.rules).map_err(sqlite)?;
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'config_generation'",
            [],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(summary)
    }

    /// Loads the active configuration.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let damaged = |what: String| StoreError::Damaged(self.path.clone(), what);
        let overrides = |text: String| -> Result<Overrides, StoreError> {
            serde_json::from_str(&text).map_err(|e| damaged(format!("settings {text}: {e}")))
        };
        let generation = self.generation()?;
        let defaults: String = self
            .conn
            .query_row("SELECT settings FROM defaults WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(self.sqlite())?;
        let mut groups = Vec::new();
        let mut statement = self
            .conn
            .prepare("SELECT path, settings FROM groups WHERE retired_at IS NULL ORDER BY path")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.sqlite())?;
        for row in rows {
            let (path, settings) = row.map_err(self.sqlite())?;
            groups.push(GroupDef {
                path,
                overrides: overrides(settings)?,
            });
        }
        let mut servers: Vec<ServerDef> = Vec::new();
        let mut server_index = HashMap::new();
        let mut statement = self
            .conn
            .prepare("SELECT id, name, host, group_path, settings, tags FROM servers WHERE retired_at IS NULL ORDER BY id")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(self.sqlite())?;
        for row in rows {
            let (id, name, host, group, settings, tags) = row.map_err(self.sqlite())?;
            let host = parse_bare_host(&host).map_err(|e| damaged(e.to_string()))?;
            server_index.insert(id, servers.len());
            servers.push(ServerDef {
                name,
                host,
                group,
                overrides: overrides(settings)?,
                tags: json(&tags).map_err(damaged)?,
                sensors: Vec::new(),
            });
        }
        let mut ids = HashMap::new();
        let mut paused = HashSet::new();
        let mut statement = self
            .conn
            .prepare("SELECT id, server_id, name, port, expect_closed, settings, tags, paused FROM sensors WHERE retired_at IS NULL ORDER BY id")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u16>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, bool>(7)?,
                ))
            })
            .map_err(self.sqlite())?;
        for row in rows {
            let (id, server_id, name, port, expect_closed, settings, tags, is_paused) =
                row.map_err(self.sqlite())?;
            let Some(&index) = server_index.get(&server_id) else {
                continue;
            };
            let server = &mut servers[index];
            ids.insert(format!("{}/{name}", server.name), id);
            if is_paused {
                paused.insert(id);
            }
            server.sensors.push(SensorDef {
                name,
                port,
                expect_closed,
                overrides: overrides(settings)?,
                tags: json(&tags).map_err(damaged)?,
            });
        }
        let mut maintenance = Vec::new();
        let mut statement = self
            .conn
            .prepare("SELECT name, rule, groups, servers, sensors FROM maintenance ORDER BY id")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(self.sqlite())?;
        for row in rows {
            let (name, rule, groups, servers, sensors) = row.map_err(self.sqlite())?;
            let rule: WindowRule =
                serde_json::from_str(&rule).map_err(|e| damaged(format!("window {name}: {e}")))?;
            maintenance.push(WindowDef {
                name,
                rule,
                groups: json(&groups).map_err(damaged)?,
                servers: json(&servers).map_err(damaged)?,
                sensors: json(&sensors).map_err(damaged)?,
            });
        }
        let (channels, rules) = self.notifications()?;
        let config = Config {
            defaults: overrides(defaults)?,
            groups,
            servers,
            maintenance,
            channels,
            rules,
        };
        Ok(Loaded {
            config,
            ids,
            paused,
            generation,
        })
    }

    /// Pauses or resumes sensors by path: a sensor (`server/sensor`), a
    /// server, or a group with everything below it. Returns how many
    /// sensors changed.
    pub fn set_paused(&mut self, name: &str, paused: bool) -> Result<usize, StoreError> {
        let ids = self.sensor_ids(name)?;
        let tx = self.conn.transaction().map_err(sqlite_error(&self.path))?;
        let mut changed = 0;
        for id in &ids {
            changed += tx
                .execute(
                    "UPDATE sensors SET paused = ?1 WHERE id = ?2 AND paused != ?1",
                    params![paused, id],
                )
                .map_err(sqlite_error(&self.path))?;
        }
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'config_generation'",
            [],
        )
        .map_err(sqlite_error(&self.path))?;
        tx.commit().map_err(sqlite_error(&self.path))?;
        Ok(changed)
    }

    /// The ids of the active sensors a name covers: a sensor path, a server
    /// name, or a group path (with its subgroups).
    pub fn sensor_ids(&self, name: &str) -> Result<Vec<i64>, StoreError> {
        let name = name.trim_matches('/');
        let mut statement = self
            .conn
            .prepare(
                "SELECT s.id FROM sensors s JOIN servers v ON v.id = s.server_id
                 WHERE s.retired_at IS NULL AND v.retired_at IS NULL
                   AND (v.name || '/' || s.name = ?1 OR v.name = ?1 OR v.group_path = ?1 OR v.group_path LIKE ?2 ESCAPE '\\')
                 ORDER BY s.id",
            )
            .map_err(self.sqlite())?;
        let prefix = below(name);
        let ids: Vec<i64> = statement
            .query_map(params![name, prefix], |r| r.get(0))
            .map_err(self.sqlite())?
            .collect::<Result<_, _>>()
            .map_err(self.sqlite())?;
        if ids.is_empty() {
            return Err(StoreError::NotFound(name.to_owned()));
        }
        Ok(ids)
    }

    /// Every active sensor with its current state and last result.
    pub fn status(&self) -> Result<Vec<StatusRow>, StoreError> {
        self.status_rows(None)
    }

    /// One active sensor's state and last result (one indexed lookup, not
    /// a scan of every sensor).
    pub fn status_of(&self, id: i64) -> Result<StatusRow, StoreError> {
        self.status_rows(Some(id))?
            .pop()
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn status_rows(&self, only: Option<i64>) -> Result<Vec<StatusRow>, StoreError> {
        let query = StatusQuery {
            id: only,
            ..StatusQuery::default()
        };
        Ok(self.list(&query)?.into_iter().map(|l| l.row).collect())
    }

    /// The sensors `query` lists, in its order.
    pub fn list(&self, query: &StatusQuery) -> Result<Vec<Listed>, StoreError> {
        let (sql, values) = listing::status_sql(query, listing::Dialect::Sqlite);
        let mut statement = self.conn.prepare_cached(&sql).map_err(self.sqlite())?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(values.iter()), |r| {
                let state = row_state(r.get(5)?, r.get(11)?);
                Ok(Listed {
                    row: StatusRow {
                        id: r.get(0)?,
                        path: r.get(1)?,
                        group: r.get(2)?,
                        host: r.get(3)?,
                        port: r.get(4)?,
                        state,
                        since_ms: r.get(6)?,
                        last_check_ms: r.get(7)?,
                        last_rtt_us: r.get(8)?,
                        last_reason: r.get(9)?,
                        last_message: r.get(10)?,
                        tags: {
                            let mut tags: Vec<String> = r.get::<_, Json<_>>(12)?.0;
                            tags.extend(r.get::<_, Json<Vec<String>>>(13)?.0);
                            tags
                        },
                        managed: r.get(14)?,
                        last_details: r.get::<_, Option<Json<_>>>(15)?.map(|d| d.0),
                        ping: r.get(16)?,
                    },
                    matching: r.get(17)?,
                })
            })
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// The ids of the sensors `query` matches, as they are found: with
    /// [`StatusQuery::at_most`], the first that many.
    pub fn first_found(&self, query: &StatusQuery) -> Result<Vec<i64>, StoreError> {
        let (sql, values) = listing::found_sql(query, listing::Dialect::Sqlite);
        let mut statement = self.conn.prepare_cached(&sql).map_err(self.sqlite())?;
        let ids = statement
            .query_map(rusqlite::params_from_iter(values.iter()), |r| r.get(0))
            .map_err(self.sqlite())?;
        ids.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// How many of the sensors `query` lists are in each group and state:
    /// one grouped count in the database.
    pub fn tally(&self, query: &StatusQuery) -> Result<Tally, StoreError> {
        let (sql, values) = listing::tally_sql(query, listing::Dialect::Sqlite);
        let mut statement = self.conn.prepare_cached(&sql).map_err(self.sqlite())?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(values.iter()), |r| {
                Ok((r.get(0)?, row_state(r.get(1)?, r.get(2)?), r.get(3)?))
            })
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// When each sensor was last checked (ms).
    pub fn last_checked(&self) -> Result<HashMap<i64, i64>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT sensor_id, last_check_ms FROM sensor_status WHERE last_check_ms IS NOT NULL")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// Every sensor's last known state and since when, for a restart.
    pub fn states(&self) -> Result<HashMap<i64, (State, i64)>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT sensor_id, state, since_ms FROM sensor_status")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(self.sqlite())?;
        let mut states = HashMap::new();
        for row in rows {
            let (id, state, since) = row.map_err(self.sqlite())?;
            if let Ok(state) = state.parse() {
                states.insert(id, (state, since));
            }
        }
        Ok(states)
    }

    /// How many active sensors the store holds.
    pub fn sensor_count(&self) -> Result<usize, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sensors s JOIN servers v ON v.id = s.server_id WHERE s.retired_at IS NULL AND v.retired_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(self.sqlite())
    }

    /// The events of a sensor from `from_ms` (inclusive) to `to_ms`
    /// (exclusive), in time order.
    pub fn events(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT sensor_id, at_ms, from_state, to_state, reason, message FROM events
                 WHERE sensor_id = ?1 AND at_ms >= ?2 AND at_ms < ?3 ORDER BY at_ms, id",
            )
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map(params![sensor_id, from_ms, to_ms], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(self.sqlite())?;
        let mut events = Vec::new();
        for row in rows {
            let (sensor_id, at_ms, from, to, reason, message) = row.map_err(self.sqlite())?;
            let parse = |s: String| {
                s.parse::<State>()
                    .map_err(|e| StoreError::Damaged(self.path.clone(), e))
            };
            events.push(EventRow {
                sensor_id,
                at_ms,
                from: parse(from)?,
                to: parse(to)?,
                reason,
                message,
            });
        }
        Ok(events)
    }

    /// The latest events across all sensors, newest first, with the
    /// sensor's path.
    pub fn recent_events(
        &self,
        limit: usize,
        before_id: Option<i64>,
    ) -> Result<Vec<(i64, String, EventRow)>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT e.id, v.name || '/' || s.name, e.sensor_id, e.at_ms, e.from_state, e.to_state, e.reason, e.message
                 FROM events e JOIN sensors s ON s.id = e.sensor_id JOIN servers v ON v.id = s.server_id
                 WHERE e.id < ?1 ORDER BY e.id DESC LIMIT ?2",
            )
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map(params![before_id.unwrap_or(i64::MAX), limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })
            .map_err(self.sqlite())?;
        let mut events = Vec::new();
        for row in rows {
            let (id, path, sensor_id, at_ms, from, to, reason, message) =
                row.map_err(self.sqlite())?;
            let parse = |s: String| {
                s.parse::<State>()
                    .map_err(|e| StoreError::Damaged(self.path.clone(), e))
            };
            events.push((
                id,
                path,
                EventRow {
                    sensor_id,
                    at_ms,
                    from: parse(from)?,
                    to: parse(to)?,
                    reason,
                    message,
                },
            ));
        }
        Ok(events)
    }

    /// The path (`server/sensor`) of an active sensor id.
    pub fn sensor_path(&self, id: i64) -> Result<String, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT v.name || '/' || s.name FROM sensors s JOIN servers v ON v.id = s.server_id WHERE s.id = ?1 AND s.retired_at IS NULL",
            )
            .and_then(|mut select| select.query_row([id], |r| r.get(0)).optional())
            .map_err(self.sqlite())?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// The state a sensor was in at `at_ms` (from the last event before).
    pub fn state_at(&self, sensor_id: i64, at_ms: i64) -> Result<Option<State>, StoreError> {
        let state: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT to_state FROM events WHERE sensor_id = ?1 AND at_ms < ?2 ORDER BY at_ms DESC, id DESC LIMIT 1",
            )
            .and_then(|mut select| {
                select
                    .query_row(params![sensor_id, at_ms], |r| r.get(0))
                    .optional()
            })
            .map_err(self.sqlite())?;
        Ok(state.and_then(|s| s.parse().ok()))
    }

    /// A sensor's raw results from `from_ms` to `to_ms`, packed windows and
    /// the not yet repacked journal together, in time order.
    pub fn results(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredResult>, StoreError> {
        let rows = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
            let mut statement = self.conn.prepare_cached(sql).map_err(self.sqlite())?;
            let rows = statement
                .query_map(params, |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(self.sqlite())?;
            rows.collect::<Result<Vec<_>, _>>().map_err(self.sqlite())
        };
        // A row holds results of less than ROW_MS from its start: the lower
        // bound on the start lets the key skip the sensor's older rows.
        let windows = rows(
            "SELECT start_ms, data FROM results
             WHERE sensor_id = ?1 AND start_ms > ?4 AND end_ms >= ?2 AND start_ms < ?3",
            &[
                &sensor_id,
                &from_ms,
                &to_ms,
                &from_ms.saturating_sub(pack::ROW_MS),
            ],
        )?;
        let journal = rows(
            "SELECT first_ms, data FROM journal
             WHERE last_sensor >= ?1 AND first_sensor <= ?1 AND last_ms >= ?2 AND first_ms < ?3",
            &[&sensor_id, &from_ms, &to_ms],
        )?;
        pack::merge(
            sensor_id,
            windows
                .iter()
                .map(|(start, data)| (*start, data.as_slice())),
            journal
                .iter()
                .map(|(first, data)| (*first, data.as_slice())),
            from_ms..to_ms,
        )
        .map_err(|e| StoreError::Damaged(self.path.clone(), e.to_string()))
    }

    /// Builds the report of one sensor. Requests and connect times come from
    /// raw results where the period is within their retention, else from the
    /// hourly rollups plus the raw results of the hours not rolled up yet.
    pub fn sensor_report(
        &self,
        id: i64,
        path: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<report::SensorReport, StoreError> {
        self.report_in(id, path, from_ms, to_ms, Detail::Raw)
    }

    /// The reports of several active sensors, in their order (see
    /// [`Detail`]).
    pub fn sensor_reports(
        &self,
        ids: &[i64],
        from_ms: i64,
        to_ms: i64,
        detail: Detail,
    ) -> Result<Vec<report::SensorReport>, StoreError> {
        // One read transaction for them all: a statement outside one takes
        // and drops the file's lock, and a group's reports run tens of
        // thousands of statements.
        let read = self.conn.unchecked_transaction().map_err(self.sqlite())?;
        let reports = ids
            .iter()
            .map(|&id| self.report_in(id, &self.sensor_path(id)?, from_ms, to_ms, detail))
            .collect();
        read.rollback().map_err(self.sqlite())?;
        reports
    }

    fn report_in(
        &self,
        id: i64,
        path: &str,
        from_ms: i64,
        to_ms: i64,
        detail: Detail,
    ) -> Result<report::SensorReport, StoreError> {
        let initial = self.state_at(id, from_ms)?;
        let events = self.events(id, from_ms, to_ms)?;
        let from_ms = report_start(initial, &events, from_ms);
        let stats = if reads_raw(detail, from_ms, to_ms) {
            report::summarize(&self.results(id, from_ms, to_ms)?)
        } else {
            let rollups = self.rollups(id, rollup::hour_of(from_ms), to_ms)?;
            let until = rolled_until(&rollups, from_ms);
            with_rollups(rollups, &self.results(id, until, to_ms)?)
        };
        Ok(assemble_report(
            path, from_ms, to_ms, initial, &events, &stats,
        ))
    }

    /// A sensor's hourly rollups for hours starting in `from_ms..to_ms`.
    pub fn rollups(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Rollup)>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT hour_ms, count, ups, min_us, avg_us, max_us, p95_us FROM rollups
                 WHERE sensor_id = ?1 AND hour_ms >= ?2 AND hour_ms < ?3 ORDER BY hour_ms",
            )
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map(params![sensor_id, from_ms, to_ms], |r| {
                Ok((
                    r.get(0)?,
                    Rollup {
                        count: r.get(1)?,
                        ups: r.get(2)?,
                        min_us: r.get(3)?,
                        avg_us: r.get(4)?,
                        max_us: r.get(5)?,
                        p95_us: r.get(6)?,
                    },
                ))
            })
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// Makes a new push URL token for heartbeat sensor `sensor_id` (the
    /// old one stops working), expected to push from `now_ms` on. Only its
    /// hash is kept: the token is returned once.
    pub fn new_push_token(&self, sensor_id: i64, now_ms: i64) -> Result<String, StoreError> {
        let token = accounts::random_token();
        self.conn
            .execute(
                "INSERT INTO pushes (sensor_id, token_hash, since_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sensor_id) DO UPDATE SET token_hash = ?2, since_ms = ?3",
                params![sensor_id, accounts::token_hash(&token), now_ms],
            )
            .map_err(self.sqlite())?;
        Ok(token)
    }

    /// Records a push with `token`; the sensor's id, or `None` for a token
    /// that is no push URL's.
    pub fn push(&self, token: &str, push: &Push) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "UPDATE pushes SET at_ms = ?2, down = ?3, message = ?4, duration_ms = ?5
                 WHERE token_hash = ?1 RETURNING sensor_id",
                params![
                    accounts::token_hash(token),
                    push.at_ms,
                    push.down,
                    push.message,
                    push.duration_ms
                ],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sqlite())
    }

    /// A heartbeat sensor's push URL's age and last push (`None`: it has
    /// no push URL).
    pub fn pushes(&self, sensor_id: i64) -> Result<Option<Pushes>, StoreError> {
        self.conn
            .query_row(
                "SELECT since_ms, at_ms, down, message, duration_ms FROM pushes WHERE sensor_id = ?1",
                [sensor_id],
                |row| {
                    Ok(Pushes {
                        since_ms: row.get(0)?,
                        last: row.get::<_, Option<i64>>(1)?.map(|at_ms| Push {
                            at_ms,
                            down: row.get(2).unwrap_or(false),
                            message: row.get(3).unwrap_or_default(),
                            duration_ms: row.get(4).unwrap_or(None),
                        }),
                    })
                },
            )
            .optional()
            .map_err(self.sqlite())
    }

    /// The dashboard's glance at sensors `ids` (those with nothing stored
    /// are left out), in one statement however many sensors.
    pub fn glances(&self, ids: &[i64], now_ms: i64) -> Result<HashMap<i64, Glance>, StoreError> {
        let ids_json = serde_json::to_string(ids).expect("ids serialise");
        let (hour, day) = glance_from(now_ms);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT 0, sensor_id, ticks, 0, 0 FROM sensor_status
                 WHERE sensor_id IN (SELECT value FROM json_each(?1)) AND ticks IS NOT NULL
                 UNION ALL
                 SELECT 1, sensor_id, NULL, sum(count), sum(ups) FROM rollups
                 WHERE sensor_id IN (SELECT value FROM json_each(?1)) AND hour_ms >= ?2 GROUP BY sensor_id
                 UNION ALL
                 SELECT 2, sensor_id, NULL, sum(count), sum(ups) FROM daily_rollups
                 WHERE sensor_id IN (SELECT value FROM json_each(?1)) AND day_ms >= ?3 GROUP BY sensor_id",
            )
            .map_err(self.sqlite())?;
        let mut glances = HashMap::new();
        let mut found = statement
            .query(params![ids_json, hour, day])
            .map_err(self.sqlite())?;
        while let Some(row) = found.next().map_err(self.sqlite())? {
            let part = (|| {
                Ok::<_, rusqlite::Error>(GlancePart {
                    kind: row.get(0)?,
                    sensor: row.get(1)?,
                    ticks: row.get(2)?,
                    count: row.get(3)?,
                    ups: row.get(4)?,
                })
            })()
            .map_err(self.sqlite())?;
            part.add_to(&mut glances);
        }
        Ok(glances)
    }

    /// Raw results stored and the bytes they take (packed windows and
    /// journal), for the benchmark's bytes-per-result figure.
    pub fn result_footprint(&self) -> Result<(i64, i64), StoreError> {
        self.conn
            .query_row(
                "SELECT (SELECT coalesce(sum(count), 0) FROM results) + (SELECT coalesce(sum(count), 0) FROM journal),
                        (SELECT coalesce(sum(length(data)), 0) FROM results) + (SELECT coalesce(sum(length(data)), 0) FROM journal)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sqlite())
    }
}

/// A `LIKE … ESCAPE '\\'` pattern for the group paths below `name`
/// (`name/…`), with `name`'s own `%`, `_` and `\\` taken literally.
pub(crate) fn below(name: &str) -> String {
    format!("{}/%", like_literal(name))
}

/// `text` in a `LIKE … ESCAPE '\\'` pattern, its `%`, `_` and `\\` taken
/// literally.
pub(crate) fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Where a report starts: a sensor added during the period is reported
/// from its first event.
pub(crate) fn report_start(initial: Option<State>, events: &[EventRow], from_ms: i64) -> i64 {
    match (initial, events.first()) {
        (None, Some(first)) => first.at_ms.max(from_ms),
        _ => from_ms,
    }
}

/// Where a report takes requests and connect times from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Raw results while they are kept, for an exact p95: 1,440 results
    /// a day for a sensor checked every minute.
    Raw,
    /// Hourly rollups for the hours they cover, raw results after them:
    /// 24 rows a day, for reports of many sensors. The p95 is then the
    /// highest hourly p95, an upper bound; the rest is exact.
    Hourly,
}

impl Detail {
    /// How a report of `sensors` sensors reads: raw results for one, an
    /// exact p95; hourly rollups for several.
    pub fn for_sensors(sensors: usize) -> Detail {
        if sensors == 1 {
            Detail::Raw
        } else {
            Detail::Hourly
        }
    }
}

/// Whether a report reads raw results over `from_ms..to_ms` (else hourly
/// rollups, then raw results): raw results when asked for and still kept.
pub(crate) fn reads_raw(detail: Detail, from_ms: i64, to_ms: i64) -> bool {
    detail == Detail::Raw && from_ms >= to_ms - RETENTION.as_millis() as i64
}

/// The end of the hours the rollups cover (from there on, raw results).
pub(crate) fn rolled_until(rollups: &[(i64, Rollup)], from_ms: i64) -> i64 {
    rollups
        .last()
        .map_or(from_ms, |(hour, _)| hour + rollup::HOUR_MS)
}

/// Rollups and the raw results after them, summed.
pub(crate) fn with_rollups(rollups: Vec<(i64, Rollup)>, raw: &[StoredResult]) -> Rollup {
    let mut parts: Vec<Rollup> = rollups.into_iter().map(|(_, r)| r).collect();
    parts.push(report::summarize(raw));
    report::combine(&parts)
}

/// A report from its events and its request statistics.
pub(crate) fn assemble_report(
    path: &str,
    from_ms: i64,
    to_ms: i64,
    initial: Option<State>,
    events: &[EventRow],
    stats: &Rollup,
) -> report::SensorReport {
    let (time, outages) = report::timeline(initial, events, from_ms, to_ms);
    report::SensorReport {
        sensor: path.to_owned(),
        from_ms,
        to_ms,
        uptime_by_time: time.uptime_percent(),
        time,
        uptime_by_requests: (stats.count > 0)
            .then(|| f64::from(stats.ups) * 100.0 / f64::from(stats.count)),
        checks: stats.count,
        checks_up: stats.ups,
        min_us: stats.min_us,
        avg_us: stats.avg_us,
        max_us: stats.max_us,
        p95_us: stats.p95_us,
        outages,
    }
}

#[cfg(test)]
mod tests;
