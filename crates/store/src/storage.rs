//! The storage interface: every read and edit that the monitor, the web,
//! the delivery worker and the command line make of a store, as async
//! methods with owned arguments, so that a backend that speaks to a server
//! (PostgreSQL, next) implements the same calls as the embedded SQLite
//! one. [`Db`] implements it over SQLite. `tests/contract.rs` checks the
//! behaviour through this trait only, so every backend runs the same
//! tests.
//!
//! Results, events and notifications are written through [`Writes`], the
//! write side: one batching writer per process that commits them in
//! order ([`Writer`](crate::writer::Writer) on SQLite).

use std::collections::HashMap;
use std::future::Future;

use portwatch_core::config::{Config, Overrides, WindowDef};
use portwatch_core::monitor::state::State;
use portwatch_core::notify::{ChannelDef, RuleDef};
use portwatch_core::report::SensorReport;
use portwatch_probe::Host;

use crate::accounts::{Account, Role, StatusPage, TokenRow, UserRow};
use crate::edit::ConfigItem;
use crate::listing::{Listed, StatusQuery, Tally};
use crate::outbox::{OutboxRow, Pending, StoredChannel, StoredRule};
use crate::{ApplySummary, Db, EventRow, Loaded, Rollup, StatusRow, StoreError, StoredResult};

/// The write side of a store, one per process: results (queued and
/// committed in batches within a second), and state changes and
/// notifications, each acknowledged once committed, in the order given.
/// The monitor writes through it; a backend provides one.
pub trait Writes: Send + Sync + 'static {
    /// Queues a result without waiting; a full queue drops it and counts it.
    fn result(&self, result: StoredResult, last: crate::writer::LastCheck);

    /// Stores a state change; the receiver fires once it is committed.
    fn event(
        &self,
        sensor: i64,
        at_ms: i64,
        change: portwatch_core::monitor::state::Change,
    ) -> tokio::sync::oneshot::Receiver<()>;

    /// Stores a state change and, in the same transaction, the
    /// notifications it causes (channel, payload), held until
    /// `hold_until_ms` unless [`Writes::settle`] comes first.
    fn event_holding(
        &self,
        sensor: i64,
        at_ms: i64,
        change: portwatch_core::monitor::state::Change,
        notify: Vec<(String, portwatch_core::notify::Payload)>,
        hold_until_ms: Option<i64>,
    ) -> tokio::sync::oneshot::Receiver<()>;

    /// Stores notifications that no state change caused.
    fn notify(
        &self,
        sensor: i64,
        at_ms: i64,
        notify: Vec<(String, portwatch_core::notify::Payload)>,
    ) -> tokio::sync::oneshot::Receiver<()>;

    /// Sends a sensor's held notifications now, or cancels them (`cancel`
    /// says why).
    fn settle(
        &self,
        sensor: i64,
        at_ms: i64,
        cancel: Option<String>,
    ) -> tokio::sync::oneshot::Receiver<()>;

    /// Commits everything queued so far; returns once it is stored.
    fn flush(&self) -> impl Future<Output = ()> + Send;
}

/// What a store does. Cheap to clone; every method may run concurrently
/// with the others.
pub trait Storage: Clone + Send + Sync + 'static {
    /// The configuration generation: it changes on every configuration
    /// change, so the monitor knows when to reload.
    fn generation(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Makes the store hold what `config` declares: upserts its groups,
    /// servers, sensors and windows (marked file-managed), and retires the
    /// file-managed items that left it. A retired item that comes back under
    /// the same name gets its old id, and so its history, back.
    fn apply(
        &self,
        config: Config,
    ) -> impl Future<Output = Result<ApplySummary, StoreError>> + Send;

    /// Loads the active configuration.
    fn load(&self) -> impl Future<Output = Result<Loaded, StoreError>> + Send;

    /// Pauses or resumes sensors by path: a sensor (`server/sensor`), a
    /// server, or a group with everything below it. Returns how many
    /// sensors changed.
    fn set_paused(
        &self,
        name: String,
        paused: bool,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// The ids of the active sensors a name covers: a sensor path, a server
    /// name, or a group path (with its subgroups).
    fn sensor_ids(&self, name: String)
    -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    /// Every active sensor with its current state and last result.
    fn status(&self) -> impl Future<Output = Result<Vec<StatusRow>, StoreError>> + Send;

    /// The sensors `query` lists, in its order: only the rows asked for
    /// are read.
    fn list(
        &self,
        query: StatusQuery,
    ) -> impl Future<Output = Result<Vec<Listed>, StoreError>> + Send;

    /// The ids of the sensors `query` matches, in the order the store
    /// finds them (not the list's): with [`StatusQuery::at_most`], the
    /// first that many. A page that lists and counts the same search
    /// reads them once and passes them as [`StatusQuery::among`].
    fn first_found(
        &self,
        query: StatusQuery,
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    /// How many of the sensors `query` lists are in each group and state:
    /// one grouped count.
    fn tally(&self, query: StatusQuery) -> impl Future<Output = Result<Tally, StoreError>> + Send;

    /// One active sensor's state and last result (one indexed lookup, not
    /// a scan of every sensor).
    fn status_of(&self, id: i64) -> impl Future<Output = Result<StatusRow, StoreError>> + Send;

    /// Every sensor's last known state and since when, for a restart.
    fn states(&self)
    -> impl Future<Output = Result<HashMap<i64, (State, i64)>, StoreError>> + Send;

    /// When each sensor was last checked (ms), by whichever process: where
    /// a node taking sensors over from another picks their cadence up.
    fn last_checked(&self) -> impl Future<Output = Result<HashMap<i64, i64>, StoreError>> + Send;

    /// How many active sensors the store holds.
    fn sensor_count(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// The events of a sensor from `from_ms` (inclusive) to `to_ms`
    /// (exclusive), in time order.
    fn events(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<EventRow>, StoreError>> + Send;

    /// The latest events across all sensors, newest first, with the
    /// sensor's path.
    fn recent_events(
        &self,
        limit: usize,
        before_id: Option<i64>,
    ) -> impl Future<Output = Result<Vec<(i64, String, EventRow)>, StoreError>> + Send;

    /// The path (`server/sensor`) of an active sensor id.
    fn sensor_path(&self, id: i64) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// The state a sensor was in at `at_ms` (from the last event before).
    fn state_at(
        &self,
        sensor_id: i64,
        at_ms: i64,
    ) -> impl Future<Output = Result<Option<State>, StoreError>> + Send;

    /// A sensor's raw results from `from_ms` to `to_ms`, packed windows and
    /// the not yet repacked journal together, in time order.
    fn results(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<StoredResult>, StoreError>> + Send;

    /// A new push URL token for heartbeat sensor `sensor_id` (the old one
    /// stops working), returned once.
    fn new_push_token(
        &self,
        sensor_id: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Records a push; the sensor's id, `None` for an unknown token.
    fn push(
        &self,
        token: String,
        push: portwatch_core::monitor::heartbeat::Push,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// A heartbeat sensor's push URL's age and last push.
    fn pushes(
        &self,
        sensor_id: i64,
    ) -> impl Future<Output = Result<Option<portwatch_core::monitor::heartbeat::Pushes>, StoreError>>
    + Send;

    /// The dashboard's glance at sensors `ids`: last checks and uptime
    /// over 24 hours and 30 days, from maintained aggregates, in a number
    /// of statements that does not grow with `ids`.
    fn glances(
        &self,
        ids: Vec<i64>,
        now_ms: i64,
    ) -> impl Future<Output = Result<HashMap<i64, crate::Glance>, StoreError>> + Send;

    /// A sensor's hourly rollups for hours starting in `from_ms..to_ms`.
    fn rollups(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<(i64, Rollup)>, StoreError>> + Send;

    /// A sensor's report over `from_ms..to_ms`: uptime by time and by
    /// requests, outages and connect times.
    fn sensor_report(
        &self,
        id: i64,
        path: String,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<SensorReport, StoreError>> + Send;

    /// The reports of several active sensors over `from_ms..to_ms`, in
    /// their order, read as `detail` says.
    fn sensor_reports(
        &self,
        ids: Vec<i64>,
        from_ms: i64,
        to_ms: i64,
        detail: crate::Detail,
    ) -> impl Future<Output = Result<Vec<SensorReport>, StoreError>> + Send;

    /// Raw results stored and the bytes they take (packed windows and
    /// journal), for the benchmark's bytes-per-result figure.
    fn result_footprint(&self) -> impl Future<Output = Result<(i64, i64), StoreError>> + Send;

    /// How many users exist.
    fn user_count(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Creates a user with a password (hashed here).
    fn create_user(
        &self,
        name: String,
        password: String,
        role: Role,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Checks a name and password; on success opens a session and returns
    /// its token (for the cookie).
    fn login(
        &self,
        name: String,
        password: String,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The account behind a session token, if the session is valid.
    fn session(
        &self,
        token: String,
    ) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// Ends a session.
    fn logout(&self, token: String) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Creates an API token; returns the token, which is shown once.
    fn create_token(
        &self,
        name: String,
        scope: Role,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// The account behind an API token.
    fn token(
        &self,
        token: String,
    ) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// Every user, by name.
    fn users(&self) -> impl Future<Output = Result<Vec<UserRow>, StoreError>> + Send;

    /// Every API token, by name.
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRow>, StoreError>> + Send;

    /// Revokes the API token named `name`: it stops working at once.
    fn revoke_token(&self, name: String) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets a user's password and ends their sessions.
    fn set_password(
        &self,
        name: String,
        password: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Disables (or enables again) a user; disabling ends their sessions.
    fn set_disabled(
        &self,
        name: String,
        disabled: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Creates or replaces a status page. Every name must select sensors.
    fn save_status_page(
        &self,
        page: StatusPage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// All status pages.
    fn status_pages(&self) -> impl Future<Output = Result<Vec<StatusPage>, StoreError>> + Send;

    /// Deletes a status page.
    fn delete_status_page(
        &self,
        slug: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a sensor from the web interface or the API (not file-managed):
    /// the server is created if it does not exist. Returns the sensor's id.
    fn add_sensor(
        &self,
        server: String,
        host: Host,
        port: u16,
        name: String,
        overrides: Overrides,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// The settings of a sensor as stored (its own overrides, not what it
    /// inherits), its port, `expect_closed`, and whether a file manages it.
    fn sensor_settings(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<(u16, bool, Overrides, bool), StoreError>> + Send;

    /// Changes a sensor made in the web interface or the API. File-managed
    /// sensors are changed in their file. A dependency must name an active
    /// sensor and must not close a cycle.
    fn update_sensor(
        &self,
        id: i64,
        port: u16,
        expect_closed: bool,
        overrides: Overrides,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a sensor made in the web interface or the API from
    /// monitoring (its history is kept).
    fn retire_sensor(&self, id: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Creates or changes a group (its parent must exist).
    fn save_group(
        &self,
        path: String,
        overrides: Overrides,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Creates or changes a server.
    fn save_server(
        &self,
        name: String,
        host: Host,
        group: Option<String>,
        overrides: Overrides,
        tags: Vec<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a group or server made here (and a server's sensors) from
    /// monitoring; history is kept.
    fn retire(
        &self,
        kind: String,
        name: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a maintenance window; every name it covers must exist.
    fn add_window(&self, window: WindowDef) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Maintenance windows with their ids and whether a file manages them.
    fn windows(
        &self,
    ) -> impl Future<Output = Result<Vec<(i64, bool, WindowDef)>, StoreError>> + Send;

    /// Deletes a maintenance window made here.
    fn delete_window(&self, id: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Active groups (`servers == false`) or servers.
    fn config_items(
        &self,
        servers: bool,
    ) -> impl Future<Output = Result<Vec<ConfigItem>, StoreError>> + Send;

    /// The channels and rules, without where they were declared.
    fn notifications(
        &self,
    ) -> impl Future<Output = Result<(Vec<ChannelDef>, Vec<RuleDef>), StoreError>> + Send;

    /// Notifications due for an attempt at `now_ms`, oldest first.
    fn due_notifications(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Pending>, StoreError>> + Send;

    /// Claims the notifications due for an attempt at `now_ms`, oldest
    /// first, leaving out the channels in `busy` (their deliveries are
    /// under way). On a store several processes share (PostgreSQL) each is
    /// another's to claim again only at `until_ms`, unless its attempt is
    /// recorded first, so that nodes never attempt one notification at
    /// once; on SQLite, which one process has, nothing is held back. On a node (`node`, its id), a claim also ends
    /// when the node's lease lapses: another node takes over its
    /// deliveries within seconds of its death.
    fn claim_notifications(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: usize,
        busy: Vec<String>,
        node: Option<i64>,
    ) -> impl Future<Output = Result<Vec<Pending>, StoreError>> + Send;

    /// Gives claimed notifications that were not attempted back, due at
    /// `next_ms` (after a failed attempt of their channel, with its retry).
    fn release_notifications(
        &self,
        ids: Vec<i64>,
        next_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a delivery.
    fn delivered(
        &self,
        id: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records an attempt that failed for good: the notification leaves the
    /// queue (it is never retried) and keeps the reason.
    fn delivery_abandoned(
        &self,
        id: i64,
        error: String,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a failed attempt and when to try again.
    fn delivery_failed(
        &self,
        id: i64,
        error: String,
        next_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The latest outbox rows, newest first.
    fn outbox(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRow>, StoreError>> + Send;

    /// How many notifications wait for delivery.
    fn undelivered(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// A channel by name.
    fn channel(
        &self,
        name: String,
    ) -> impl Future<Output = Result<Option<ChannelDef>, StoreError>> + Send;

    /// Every channel, with where it was declared.
    fn channels(&self) -> impl Future<Output = Result<Vec<StoredChannel>, StoreError>> + Send;

    /// Every rule, with its id and where it was declared.
    fn rules(&self) -> impl Future<Output = Result<Vec<StoredRule>, StoreError>> + Send;

    /// Adds or replaces a channel made in the web interface or API. One
    /// declared in portwatch.toml is edited there.
    fn save_channel(&self, def: ChannelDef) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes a channel made in the web interface or API, unless a rule
    /// still uses it.
    fn delete_channel(&self, name: String) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a rule made in the web interface or API; returns its id.
    fn add_rule(&self, def: RuleDef) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Deletes a rule made in the web interface or API.
    fn delete_rule(&self, id: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl Storage for Db {
    async fn generation(&self) -> Result<i64, StoreError> {
        self.call(move |store| store.generation()).await
    }

    async fn apply(&self, config: Config) -> Result<ApplySummary, StoreError> {
        self.call(move |store| store.apply(&config)).await
    }

    async fn load(&self) -> Result<Loaded, StoreError> {
        self.call(move |store| store.load()).await
    }

    async fn set_paused(&self, name: String, paused: bool) -> Result<usize, StoreError> {
        self.call(move |store| store.set_paused(&name, paused))
            .await
    }

    async fn sensor_ids(&self, name: String) -> Result<Vec<i64>, StoreError> {
        self.call(move |store| store.sensor_ids(&name)).await
    }

    async fn status(&self) -> Result<Vec<StatusRow>, StoreError> {
        self.call(move |store| store.status()).await
    }

    async fn list(&self, query: StatusQuery) -> Result<Vec<Listed>, StoreError> {
        self.call(move |store| store.list(&query)).await
    }

    async fn first_found(&self, query: StatusQuery) -> Result<Vec<i64>, StoreError> {
        self.call(move |store| store.first_found(&query)).await
    }

    async fn tally(&self, query: StatusQuery) -> Result<Tally, StoreError> {
        self.call(move |store| store.tally(&query)).await
    }

    async fn status_of(&self, id: i64) -> Result<StatusRow, StoreError> {
        self.call(move |store| store.status_of(id)).await
    }

    async fn states(&self) -> Result<HashMap<i64, (State, i64)>, StoreError> {
        self.call(move |store| store.states()).await
    }

    async fn last_checked(&self) -> Result<HashMap<i64, i64>, StoreError> {
        self.call(move |store| store.last_checked()).await
    }

    async fn sensor_count(&self) -> Result<usize, StoreError> {
        self.call(move |store| store.sensor_count()).await
    }

    async fn events(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.call(move |store| store.events(sensor_id, from_ms, to_ms))
            .await
    }

    async fn recent_events(
        &self,
        limit: usize,
        before_id: Option<i64>,
    ) -> Result<Vec<(i64, String, EventRow)>, StoreError> {
        self.call(move |store| store.recent_events(limit, before_id))
            .await
    }

    async fn sensor_path(&self, id: i64) -> Result<String, StoreError> {
        self.call(move |store| store.sensor_path(id)).await
    }

    async fn state_at(&self, sensor_id: i64, at_ms: i64) -> Result<Option<State>, StoreError> {
        self.call(move |store| store.state_at(sensor_id, at_ms))
            .await
    }

    async fn results(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredResult>, StoreError> {
        self.call(move |store| store.results(sensor_id, from_ms, to_ms))
            .await
    }

    async fn rollups(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Rollup)>, StoreError> {
        self.call(move |store| store.rollups(sensor_id, from_ms, to_ms))
            .await
    }

    async fn glances(
        &self,
        ids: Vec<i64>,
        now_ms: i64,
    ) -> Result<HashMap<i64, crate::Glance>, StoreError> {
        self.call(move |store| store.glances(&ids, now_ms)).await
    }

    async fn new_push_token(&self, sensor_id: i64, now_ms: i64) -> Result<String, StoreError> {
        self.call(move |store| store.new_push_token(sensor_id, now_ms))
            .await
    }

    async fn push(
        &self,
        token: String,
        push: portwatch_core::monitor::heartbeat::Push,
    ) -> Result<Option<i64>, StoreError> {
        self.call(move |store| store.push(&token, &push)).await
    }

    async fn pushes(
        &self,
        sensor_id: i64,
    ) -> Result<Option<portwatch_core::monitor::heartbeat::Pushes>, StoreError> {
        self.call(move |store| store.pushes(sensor_id)).await
    }

    async fn sensor_report(
        &self,
        id: i64,
        path: String,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<SensorReport, StoreError> {
        self.call(move |store| store.sensor_report(id, &path, from_ms, to_ms))
            .await
    }

    async fn sensor_reports(
        &self,
        ids: Vec<i64>,
        from_ms: i64,
        to_ms: i64,
        detail: crate::Detail,
    ) -> Result<Vec<SensorReport>, StoreError> {
        // One call for them all: a call per sensor would spend more time
        // handing the work to the store's thread than reading.
        self.call(move |store| store.sensor_reports(&ids, from_ms, to_ms, detail))
            .await
    }

    async fn result_footprint(&self) -> Result<(i64, i64), StoreError> {
        self.call(move |store| store.result_footprint()).await
    }

    async fn user_count(&self) -> Result<i64, StoreError> {
        self.call(move |store| store.user_count()).await
    }

    async fn create_user(
        &self,
        name: String,
        password: String,
        role: Role,
    ) -> Result<(), StoreError> {
        self.call(move |store| store.create_user(&name, &password, role))
            .await
    }

    async fn login(&self, name: String, password: String) -> Result<Option<String>, StoreError> {
        self.call(move |store| store.login(&name, &password)).await
    }

    async fn session(&self, token: String) -> Result<Option<Account>, StoreError> {
        self.call(move |store| store.session(&token)).await
    }

    async fn logout(&self, token: String) -> Result<(), StoreError> {
        self.call(move |store| store.logout(&token)).await
    }

    async fn create_token(&self, name: String, scope: Role) -> Result<String, StoreError> {
        self.call(move |store| store.create_token(&name, scope))
            .await
    }

    async fn token(&self, token: String) -> Result<Option<Account>, StoreError> {
        self.call(move |store| store.token(&token)).await
    }

    async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        self.call(move |store| store.users()).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.call(move |store| store.tokens()).await
    }

    async fn revoke_token(&self, name: String) -> Result<(), StoreError> {
        self.call(move |store| store.revoke_token(&name)).await
    }

    async fn set_password(&self, name: String, password: String) -> Result<(), StoreError> {
        self.call(move |store| store.set_password(&name, &password))
            .await
    }

    async fn set_disabled(&self, name: String, disabled: bool) -> Result<(), StoreError> {
        self.call(move |store| store.set_disabled(&name, disabled))
            .await
    }

    async fn save_status_page(&self, page: StatusPage) -> Result<(), StoreError> {
        self.call(move |store| store.save_status_page(&page)).await
    }

    async fn status_pages(&self) -> Result<Vec<StatusPage>, StoreError> {
        self.call(move |store| store.status_pages()).await
    }

    async fn delete_status_page(&self, slug: String) -> Result<(), StoreError> {
        self.call(move |store| store.delete_status_page(&slug))
            .await
    }

    async fn add_sensor(
        &self,
        server: String,
        host: Host,
        port: u16,
        name: String,
        overrides: Overrides,
    ) -> Result<i64, StoreError> {
        self.call(move |store| store.add_sensor(&server, &host, port, &name, &overrides))
            .await
    }

    async fn sensor_settings(&self, id: i64) -> Result<(u16, bool, Overrides, bool), StoreError> {
        self.call(move |store| store.sensor_settings(id)).await
    }

    async fn update_sensor(
        &self,
        id: i64,
        port: u16,
        expect_closed: bool,
        overrides: Overrides,
    ) -> Result<(), StoreError> {
        self.call(move |store| store.update_sensor(id, port, expect_closed, &overrides))
            .await
    }

    async fn retire_sensor(&self, id: i64) -> Result<(), StoreError> {
        self.call(move |store| store.retire_sensor(id)).await
    }

    async fn save_group(&self, path: String, overrides: Overrides) -> Result<(), StoreError> {
        self.call(move |store| store.save_group(&path, &overrides))
            .await
    }

    async fn save_server(
        &self,
        name: String,
        host: Host,
        group: Option<String>,
        overrides: Overrides,
        tags: Vec<String>,
    ) -> Result<(), StoreError> {
        self.call(move |store| store.save_server(&name, &host, group.as_deref(), &overrides, &tags))
            .await
    }

    async fn retire(&self, kind: String, name: String) -> Result<(), StoreError> {
        self.call(move |store| store.retire(&kind, &name)).await
    }

    async fn add_window(&self, window: WindowDef) -> Result<(), StoreError> {
        self.call(move |store| store.add_window(&window)).await
    }

    async fn windows(&self) -> Result<Vec<(i64, bool, WindowDef)>, StoreError> {
        self.call(move |store| store.windows()).await
    }

    async fn delete_window(&self, id: i64) -> Result<(), StoreError> {
        self.call(move |store| store.delete_window(id)).await
    }

    async fn config_items(&self, servers: bool) -> Result<Vec<ConfigItem>, StoreError> {
        self.call(move |store| store.config_items(servers)).await
    }

    async fn notifications(&self) -> Result<(Vec<ChannelDef>, Vec<RuleDef>), StoreError> {
        self.call(move |store| store.notifications()).await
    }

    async fn due_notifications(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        self.call(move |store| store.due_notifications(now_ms, limit))
            .await
    }

    async fn claim_notifications(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: usize,
        busy: Vec<String>,
        _node: Option<i64>,
    ) -> Result<Vec<Pending>, StoreError> {
        // One process has a SQLite store: its claims hold nothing back.
        self.call(move |store| store.claim_notifications(now_ms, until_ms, limit, &busy))
            .await
    }

    async fn release_notifications(&self, ids: Vec<i64>, next_ms: i64) -> Result<(), StoreError> {
        self.call(move |store| store.release_notifications(&ids, next_ms))
            .await
    }

    async fn delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.call(move |store| store.delivered(id, now_ms)).await
    }

    async fn delivery_abandoned(
        &self,
        id: i64,
        error: String,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.call(move |store| store.delivery_abandoned(id, &error, now_ms))
            .await
    }

    async fn delivery_failed(
        &self,
        id: i64,
        error: String,
        next_ms: i64,
    ) -> Result<(), StoreError> {
        self.call(move |store| store.delivery_failed(id, &error, next_ms))
            .await
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.call(move |store| store.outbox(limit)).await
    }

    async fn undelivered(&self) -> Result<i64, StoreError> {
        self.call(move |store| store.undelivered()).await
    }

    async fn channel(&self, name: String) -> Result<Option<ChannelDef>, StoreError> {
        self.call(move |store| store.channel(&name)).await
    }

    async fn channels(&self) -> Result<Vec<StoredChannel>, StoreError> {
        self.call(move |store| store.channels()).await
    }

    async fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        self.call(move |store| store.rules()).await
    }

    async fn save_channel(&self, def: ChannelDef) -> Result<(), StoreError> {
        self.call(move |store| store.save_channel(&def)).await
    }

    async fn delete_channel(&self, name: String) -> Result<(), StoreError> {
        self.call(move |store| store.delete_channel(&name)).await
    }

    async fn add_rule(&self, def: RuleDef) -> Result<i64, StoreError> {
        self.call(move |store| store.add_rule(&def)).await
    }

    async fn delete_rule(&self, id: i64) -> Result<(), StoreError> {
        self.call(move |store| store.delete_rule(id)).await
    }
}

/// A sensor's report through the storage interface, for backends whose
/// reads are separate calls: the same steps as the SQLite store's
/// [`Store::sensor_report`](crate::Store::sensor_report).
pub(crate) async fn report_of<S: Storage>(
    db: &S,
    id: i64,
    path: String,
    from_ms: i64,
    to_ms: i64,
    detail: crate::Detail,
) -> Result<SensorReport, StoreError> {
    let initial = db.state_at(id, from_ms).await?;
    let events = db.events(id, from_ms, to_ms).await?;
    let from_ms = crate::report_start(initial, &events, from_ms);
    let stats = if crate::reads_raw(detail, from_ms, to_ms) {
        portwatch_core::report::summarize(&db.results(id, from_ms, to_ms).await?)
    } else {
        let rollups = db
            .rollups(id, crate::rollup::hour_of(from_ms), to_ms)
            .await?;
        let until = crate::rolled_until(&rollups, from_ms);
        crate::with_rollups(rollups, &db.results(id, until, to_ms).await?)
    };
    Ok(crate::assemble_report(
        &path, from_ms, to_ms, initial, &events, &stats,
    ))
}
