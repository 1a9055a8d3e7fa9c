//! [`Backend`]: the store `--db` names, SQLite or PostgreSQL, behind one
//! type. The app holds a `Backend` and calls the storage interface on it;
//! each call goes to the backend's own implementation.

use std::collections::HashMap;

use portwatch_core::config::{Config, Overrides, WindowDef};
use portwatch_core::monitor::state::State;
use portwatch_core::notify::{ChannelDef, RuleDef};
use portwatch_core::report::SensorReport;
use portwatch_probe::Host;

use crate::accounts::{Account, Role, StatusPage, TokenRow, UserRow};
use crate::edit::ConfigItem;
use crate::listing::{Listed, StatusQuery, Tally};
use crate::location::Location;
use crate::outbox::{OutboxRow, Pending, StoredChannel, StoredRule};
use crate::pg::Pg;
use crate::writer::Writer;
use crate::{
    ApplySummary, Db, EventRow, Loaded, Rollup, StatusRow, Storage, StoreError, StoredResult,
};

/// An open store of either kind. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite(Db),
    /// A PostgreSQL database.
    Postgres(Pg),
}

impl From<Db> for Backend {
    fn from(db: Db) -> Backend {
        Backend::Sqlite(db)
    }
}

impl From<Pg> for Backend {
    fn from(pg: Pg) -> Backend {
        Backend::Postgres(pg)
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({})", self.path().display())
    }
}

impl Backend {
    /// Opens the store at `location`, creating it (and its schema) if
    /// needed, with at most `connections` connections open at once.
    pub async fn open(location: &Location, connections: usize) -> Result<Backend, StoreError> {
        match location {
            Location::Sqlite(path) => Ok(Backend::Sqlite(Db::open(path, connections)?)),
            Location::Postgres(target) => {
                Ok(Backend::Postgres(Pg::connect(target, connections).await?))
            }
        }
    }

    /// [`Backend::open`] of a store that must exist already: the commands
    /// that read or edit a store never create one at a mistyped `--db`.
    pub async fn open_existing(
        location: &Location,
        connections: usize,
    ) -> Result<Backend, StoreError> {
        match location {
            Location::Sqlite(path) => Ok(Backend::Sqlite(Db::open_existing(path, connections)?)),
            Location::Postgres(target) => Ok(Backend::Postgres(
                Pg::connect_existing(target, connections).await?,
            )),
        }
    }

    /// The store for messages: the file, or the database with its
    /// password masked.
    pub fn name(&self) -> String {
        match self {
            Backend::Sqlite(db) => db.path().display().to_string(),
            Backend::Postgres(pg) => pg.name().to_owned(),
        }
    }

    /// Takes the store's monitor lock: one `serve` per store. SQLite: a
    /// `flock` on `PATH.lock`; PostgreSQL: a lease row that the process
    /// renews, judged by the database's clock.
    pub async fn lock_monitor(&self) -> Result<crate::MonitorLock, StoreError> {
        match self {
            Backend::Sqlite(db) => crate::Store::lock_monitor(db.path()),
            Backend::Postgres(pg) => Ok(crate::MonitorLock(crate::LockKind::Lease(
                pg.take_lease().await?,
            ))),
        }
    }

    /// The nodes sharing the store, live ones first (none on SQLite: its
    /// one monitor is not a node).
    pub async fn nodes(&self) -> Result<Vec<crate::pg::nodes::NodeRow>, StoreError> {
        match self {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(pg) => pg.nodes().await,
        }
    }

    /// Each location's latest report of sensor `sensor` (or of every
    /// sensor), by sensor and location: only sensors checked from several
    /// locations have any (none on SQLite: one monitor, one place).
    pub async fn location_reports(
        &self,
        sensor: Option<i64>,
    ) -> Result<Vec<portwatch_core::monitor::verdict::LocationReport>, StoreError> {
        match self {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(pg) => pg.location_reports(sensor).await,
        }
    }

    /// Each location's latest report of the sensors `sensors` (none on
    /// SQLite).
    pub async fn location_reports_of(
        &self,
        sensors: Vec<i64>,
    ) -> Result<Vec<portwatch_core::monitor::verdict::LocationReport>, StoreError> {
        match self {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(pg) => pg.location_reports_of(&sensors).await,
        }
    }

    /// Starts the process's one writer on this store (call it on the
    /// Tokio runtime that will run the process).
    pub fn writer(&self) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
        match self {
            Backend::Sqlite(db) => crate::writer::start(db.path()),
            Backend::Postgres(pg) => Ok(pg.writer()),
        }
    }
}

/// Calls the same method on whichever backend this is.
macro_rules! delegate {
    ($self:ident, $method:ident($($arg:ident),*)) => {
        match $self {
            Backend::Sqlite(db) => db.$method($($arg),*).await,
            Backend::Postgres(pg) => pg.$method($($arg),*).await,
        }
    };
}

impl Storage for Backend {
    async fn generation(&self) -> Result<i64, StoreError> {
        delegate!(self, generation())
    }

    async fn apply(&self, config: Config) -> Result<ApplySummary, StoreError> {
        delegate!(self, apply(config))
    }

    async fn load(&self) -> Result<Loaded, StoreError> {
        delegate!(self, load())
    }

    async fn set_paused(&self, name: String, paused: bool) -> Result<usize, StoreError> {
        delegate!(self, set_paused(name, paused))
    }

    async fn sensor_ids(&self, name: String) -> Result<Vec<i64>, StoreError> {
        delegate!(self, sensor_ids(name))
    }

    async fn status(&self) -> Result<Vec<StatusRow>, StoreError> {
        delegate!(self, status())
    }

    async fn list(&self, query: StatusQuery) -> Result<Vec<Listed>, StoreError> {
        delegate!(self, list(query))
    }

    async fn first_found(&self, query: StatusQuery) -> Result<Vec<i64>, StoreError> {
        delegate!(self, first_found(query))
    }

    async fn tally(&self, query: StatusQuery) -> Result<Tally, StoreError> {
        delegate!(self, tally(query))
    }

    async fn status_of(&self, id: i64) -> Result<StatusRow, StoreError> {
        delegate!(self, status_of(id))
    }

    async fn states(&self) -> Result<HashMap<i64, (State, i64)>, StoreError> {
        delegate!(self, states())
    }

    async fn last_checked(&self) -> Result<HashMap<i64, i64>, StoreError> {
        delegate!(self, last_checked())
    }

    async fn sensor_count(&self) -> Result<usize, StoreError> {
        delegate!(self, sensor_count())
    }

    async fn events(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        delegate!(self, events(sensor_id, from_ms, to_ms))
    }

    async fn recent_events(
        &self,
        limit: usize,
        before_id: Option<i64>,
    ) -> Result<Vec<(i64, String, EventRow)>, StoreError> {
        delegate!(self, recent_events(limit, before_id))
    }

    async fn sensor_path(&self, id: i64) -> Result<String, StoreError> {
        delegate!(self, sensor_path(id))
    }

    async fn state_at(&self, sensor_id: i64, at_ms: i64) -> Result<Option<State>, StoreError> {
        delegate!(self, state_at(sensor_id, at_ms))
    }

    async fn results(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredResult>, StoreError> {
        delegate!(self, results(sensor_id, from_ms, to_ms))
    }

    async fn new_push_token(&self, sensor_id: i64, now_ms: i64) -> Result<String, StoreError> {
        delegate!(self, new_push_token(sensor_id, now_ms))
    }

    async fn push(
        &self,
        token: String,
        push: portwatch_core::monitor::heartbeat::Push,
    ) -> Result<Option<i64>, StoreError> {
        delegate!(self, push(token, push))
    }

    async fn pushes(
        &self,
        sensor_id: i64,
    ) -> Result<Option<portwatch_core::monitor::heartbeat::Pushes>, StoreError> {
        delegate!(self, pushes(sensor_id))
    }

    async fn glances(
        &self,
        ids: Vec<i64>,
        now_ms: i64,
    ) -> Result<HashMap<i64, crate::Glance>, StoreError> {
        delegate!(self, glances(ids, now_ms))
    }

    async fn rollups(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Rollup)>, StoreError> {
        delegate!(self, rollups(sensor_id, from_ms, to_ms))
    }

    async fn sensor_report(
        &self,
        id: i64,
        path: String,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<SensorReport, StoreError> {
        delegate!(self, sensor_report(id, path, from_ms, to_ms))
    }

    async fn sensor_reports(
        &self,
        ids: Vec<i64>,
        from_ms: i64,
        to_ms: i64,
        detail: crate::Detail,
    ) -> Result<Vec<SensorReport>, StoreError> {
        delegate!(self, sensor_reports(ids, from_ms, to_ms, detail))
    }

    async fn result_footprint(&self) -> Result<(i64, i64), StoreError> {
        delegate!(self, result_footprint())
    }

    async fn user_count(&self) -> Result<i64, StoreError> {
        delegate!(self, user_count())
    }

    async fn create_user(
        &self,
        name: String,
        password: String,
        role: Role,
    ) -> Result<(), StoreError> {
        delegate!(self, create_user(name, password, role))
    }

    async fn login(&self, name: String, password: String) -> Result<Option<String>, StoreError> {
        delegate!(self, login(name, password))
    }

    async fn session(&self, token: String) -> Result<Option<Account>, StoreError> {
        delegate!(self, session(token))
    }

    async fn logout(&self, token: String) -> Result<(), StoreError> {
        delegate!(self, logout(token))
    }

    async fn create_token(&self, name: String, scope: Role) -> Result<String, StoreError> {
        delegate!(self, create_token(name, scope))
    }

    async fn token(&self, token: String) -> Result<Option<Account>, StoreError> {
        delegate!(self, token(token))
    }

    async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        delegate!(self, users())
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        delegate!(self, tokens())
    }

    async fn revoke_token(&self, name: String) -> Result<(), StoreError> {
        delegate!(self, revoke_token(name))
    }

    async fn set_password(&self, name: String, password: String) -> Result<(), StoreError> {
        delegate!(self, set_password(name, password))
    }

    async fn set_disabled(&self, name: String, disabled: bool) -> Result<(), StoreError> {
        delegate!(self, set_disabled(name, disabled))
    }

    async fn save_status_page(&self, page: StatusPage) -> Result<(), StoreError> {
        delegate!(self, save_status_page(page))
    }

    async fn status_pages(&self) -> Result<Vec<StatusPage>, StoreError> {
        delegate!(self, status_pages())
    }

    async fn delete_status_page(&self, slug: String) -> Result<(), StoreError> {
        delegate!(self, delete_status_page(slug))
    }

    async fn add_sensor(
        &self,
        server: String,
        host: Host,
        port: u16,
        name: String,
        overrides: Overrides,
    ) -> Result<i64, StoreError> {
        delegate!(self, add_sensor(server, host, port, name, overrides))
    }

    async fn sensor_settings(&self, id: i64) -> Result<(u16, bool, Overrides, bool), StoreError> {
        delegate!(self, sensor_settings(id))
    }

    async fn update_sensor(
        &self,
        id: i64,
        port: u16,
        expect_closed: bool,
        overrides: Overrides,
    ) -> Result<(), StoreError> {
        delegate!(self, update_sensor(id, port, expect_closed, overrides))
    }

    async fn retire_sensor(&self, id: i64) -> Result<(), StoreError> {
        delegate!(self, retire_sensor(id))
    }

    async fn save_group(&self, path: String, overrides: Overrides) -> Result<(), StoreError> {
        delegate!(self, save_group(path, overrides))
    }

    async fn save_server(
        &self,
        name: String,
        host: Host,
        group: Option<String>,
        overrides: Overrides,
        tags: Vec<String>,
    ) -> Result<(), StoreError> {
        delegate!(self, save_server(name, host, group, overrides, tags))
    }

    async fn retire(&self, kind: String, name: String) -> Result<(), StoreError> {
        delegate!(self, retire(kind, name))
    }

    async fn add_window(&self, window: WindowDef) -> Result<(), StoreError> {
        delegate!(self, add_window(window))
    }

    async fn windows(&self) -> Result<Vec<(i64, bool, WindowDef)>, StoreError> {
        delegate!(self, windows())
    }

    async fn delete_window(&self, id: i64) -> Result<(), StoreError> {
        delegate!(self, delete_window(id))
    }

    async fn config_items(&self, servers: bool) -> Result<Vec<ConfigItem>, StoreError> {
        delegate!(self, config_items(servers))
    }

    async fn notifications(&self) -> Result<(Vec<ChannelDef>, Vec<RuleDef>), StoreError> {
        delegate!(self, notifications())
    }

    async fn due_notifications(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        delegate!(self, due_notifications(now_ms, limit))
    }

    async fn claim_notifications(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: usize,
        busy: Vec<String>,
        node: Option<i64>,
    ) -> Result<Vec<Pending>, StoreError> {
        delegate!(
            self,
            claim_notifications(now_ms, until_ms, limit, busy, node)
        )
    }

    async fn release_notifications(&self, ids: Vec<i64>, next_ms: i64) -> Result<(), StoreError> {
        delegate!(self, release_notifications(ids, next_ms))
    }

    async fn delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        delegate!(self, delivered(id, now_ms))
    }

    async fn delivery_abandoned(
        &self,
        id: i64,
        error: String,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        delegate!(self, delivery_abandoned(id, error, now_ms))
    }

    async fn delivery_failed(
        &self,
        id: i64,
        error: String,
        next_ms: i64,
    ) -> Result<(), StoreError> {
        delegate!(self, delivery_failed(id, error, next_ms))
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        delegate!(self, outbox(limit))
    }

    async fn undelivered(&self) -> Result<i64, StoreError> {
        delegate!(self, undelivered())
    }

    async fn channel(&self, name: String) -> Result<Option<ChannelDef>, StoreError> {
        delegate!(self, channel(name))
    }

    async fn channels(&self) -> Result<Vec<StoredChannel>, StoreError> {
        delegate!(self, channels())
    }

    async fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        delegate!(self, rules())
    }

    async fn save_channel(&self, def: ChannelDef) -> Result<(), StoreError> {
        delegate!(self, save_channel(def))
    }

    async fn delete_channel(&self, name: String) -> Result<(), StoreError> {
        delegate!(self, delete_channel(name))
    }

    async fn add_rule(&self, def: RuleDef) -> Result<i64, StoreError> {
        delegate!(self, add_rule(def))
    }

    async fn delete_rule(&self, id: i64) -> Result<(), StoreError> {
        delegate!(self, delete_rule(id))
    }
}
