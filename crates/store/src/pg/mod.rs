//! The PostgreSQL store: the same logical schema and behaviour as the
//! SQLite one, for installations that keep their data in a database
//! server they already run, back up and replicate.
//!
//! - [`Pg`] is the handle (a pool of connections, deadpool-postgres over
//!   tokio-postgres, TLS by rustls); it implements
//!   [`Storage`](crate::Storage).
//! - [`Pg::writer`] starts the process's one batching writer on it: the
//!   same writer as SQLite's ([`writer`](crate::writer)), with this
//!   module's SQL ([`PgWrites`]). While the server is away, results and
//!   events wait in memory and are written when it is back.
//! - The schema is migrated under a lock **row** (`portwatch_schema`),
//!   taken with `SELECT … FOR UPDATE` in the migration's transaction, so
//!   that two processes starting together migrate once, without advisory
//!   locks (which some PostgreSQL-compatible engines lack).

pub mod locations;
pub mod nodes;
mod schema;
mod storage;

/// The schema version this build migrates a PostgreSQL store to.
pub use schema::CURRENT_VERSION as SCHEMA_VERSION;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::StoreError;
use crate::location::{PgTarget, TlsMode};
use crate::writer::{
    Batch, Compact, JournalRow, Ordered, PackedWindow, Repack, Target, WriteError, Writer,
};

/// A statement parameter.
pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

/// The handle to a PostgreSQL store. Clone it freely.
#[derive(Clone)]
pub struct Pg {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    name: String,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pg({})", self.inner.name)
    }
}

/// How long a new connection may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Pg {
    /// Connects to `target`, creating the schema if the database has none
    /// and migrating it if it is older, with at most `connections`
    /// connections open at once (at least two: the writer keeps one).
    pub async fn connect(target: &PgTarget, connections: usize) -> Result<Pg, StoreError> {
        let pg = Pg::pool(target, connections)?;
        let mut client = pg.client().await?;
        schema::migrate(&mut client)
            .await
            .map_err(|e| StoreError::Postgres(pg.inner.name.clone(), e))?;
        Ok(pg)
    }

    /// [`Pg::connect`] to a database that must hold a portwatch store
    /// already: the commands that read or edit a store never create one in
    /// a mistyped database.
    pub async fn connect_existing(target: &PgTarget, connections: usize) -> Result<Pg, StoreError> {
        let pg = Pg::pool(target, connections)?;
        let mut client = pg.client().await?;
        if !schema::exists(&client).await.map_err(pg.fail())? {
            return Err(StoreError::Postgres(
                pg.inner.name.clone(),
                "the database holds no portwatch store: start the monitor with portwatch serve --db URL, or give another --db".into(),
            ));
        }
        schema::migrate(&mut client)
            .await
            .map_err(|e| StoreError::Postgres(pg.inner.name.clone(), e))?;
        Ok(pg)
    }

    fn pool(target: &PgTarget, connections: usize) -> Result<Pg, StoreError> {
        let name = target.display().to_owned();
        let fail = |message: String| StoreError::Postgres(name.clone(), message);
        let config = client_config(target).map_err(&fail)?;
        let tls = tls_config(target).map_err(&fail)?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections.max(2))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        Ok(Pg {
            inner: Arc::new(Inner { pool, name }),
        })
    }

    /// The database, its password masked.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(|error| {
            let message = match error {
                deadpool_postgres::PoolError::Backend(error) => describe(&error),
                deadpool_postgres::PoolError::Timeout(_) => {
                    "no connection within the time allowed (is the server up?)".into()
                }
                other => other.to_string(),
            };
            StoreError::Postgres(self.inner.name.clone(), message)
        })
    }

    /// The error of a failed statement.
    pub(crate) fn fail(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |error| StoreError::Postgres(self.inner.name.clone(), describe(&error))
    }

    /// Starts the process's writer on this database. Its thread runs the
    /// statements on the current Tokio runtime, which must outlive it.
    pub fn writer(&self) -> (Writer, std::thread::JoinHandle<()>) {
        crate::writer::start_on(
            PgWrites {
                pg: self.clone(),
                runtime: tokio::runtime::Handle::current(),
            },
            crate::writer::QUEUE,
        )
    }
}

/// How long the monitor lease lasts without renewal, and how often it is
/// renewed.
const LEASE: Duration = Duration::from_secs(30);
const LEASE_RENEW: Duration = Duration::from_secs(10);

/// The monitor lease of a PostgreSQL store: one `portwatch serve` per
/// database. It is renewed every 10 s and lapses 30 s after the last
/// renewal, by the database's clock, so a monitor that died without
/// releasing it holds off another for at most 30 s.
pub struct Lease {
    pg: Pg,
    holder: String,
    renew: tokio::task::JoinHandle<()>,
}

impl Pg {
    /// Takes the monitor lease, or says who holds it.
    pub(crate) async fn take_lease(&self) -> Result<Lease, StoreError> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let holder = format!(
            "{host} pid {} ({})",
            std::process::id(),
            &crate::accounts::random_token()[..8]
        );
        let seconds = LEASE.as_secs() as f64;
        // A node (portwatch serve) monitoring the store holds it too.
        let node = self
            .client()
            .await?
            .query_opt(
                "SELECT name FROM nodes WHERE expires_at > now() AND left_at IS NULL LIMIT 1",
                &[],
            )
            .await
            .map_err(self.fail())?;
        if let Some(node) = node {
            let name: String = node.get(0);
            return Err(StoreError::Conflict(format!(
                "portwatch serve (node '{name}') is monitoring {}: stop it first, or give another --db",
                self.name()
            )));
        }
        let taken = self
            .client()
            .await?
            .query_opt(
                "INSERT INTO monitor_lease (id, holder, expires_at) VALUES (1, $1, now() + make_interval(secs => $2))
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                   WHERE monitor_lease.expires_at < now()
                 RETURNING holder",
                &[&holder, &seconds],
            )
            .await
            .map_err(self.fail())?;
        if taken.is_none() {
            let other: String = self
                .client()
                .await?
                .query_one("SELECT holder FROM monitor_lease WHERE id = 1", &[])
                .await
                .map_err(self.fail())?
                .get(0);
            return Err(StoreError::Conflict(format!(
                "another portwatch serve ({other}) is already monitoring {}: stop it first, or give another --db (a monitor that died frees it within {} s)",
                self.name(),
                LEASE.as_secs()
            )));
        }
        let pg = self.clone();
        let renewing = holder.clone();
        let renew = tokio::spawn(async move {
            let mut every = tokio::time::interval(LEASE_RENEW);
            every.tick().await;
            loop {
                every.tick().await;
                let renewed = match pg.client().await {
                    Ok(client) => client
                        .execute(
                            "UPDATE monitor_lease SET expires_at = now() + make_interval(secs => $2) WHERE id = 1 AND holder = $1",
                            &[&renewing, &seconds],
                        )
                        .await
                        .map_err(|e| describe(&e)),
                    Err(error) => Err(error.to_string()),
                };
                match renewed {
                    Ok(1) => {}
                    Ok(_) => {
                        tracing::error!(store = %pg.name(), "the monitor lease was taken by another portwatch serve after it lapsed: two monitors now check the same sensors; stop one")
                    }
                    Err(error) => {
                        tracing::warn!(store = %pg.name(), %error, "cannot renew the monitor lease; retrying")
                    }
                }
            }
        });
        Ok(Lease {
            pg: self.clone(),
            holder,
            renew,
        })
    }
}

impl Lease {
    /// Stops renewing and gives the lease up.
    pub async fn release(self) {
        self.renew.abort();
        if let Ok(client) = self.pg.client().await {
            let _ = client
                .execute(
                    "DELETE FROM monitor_lease WHERE holder = $1",
                    &[&self.holder],
                )
                .await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

/// A server's error as it said it (`ERROR: …`), else the client's.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    // The client's errors keep their cause (a TLS or socket error) apart.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// The client library's settings: the string as given, with a password
/// from outside it, the user and host libpq would default to, and timeouts
/// so that a dead server is noticed within a minute.
fn client_config(target: &PgTarget) -> Result<tokio_postgres::Config, String> {
    let mut config: tokio_postgres::Config = target
        .conninfo
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
    if config.get_password().is_none()
        && let Some(password) = target
            .password
            .clone()
            .or_else(|| std::env::var("PGPASSWORD").ok())
    {
        config.password(password);
    }
    if config.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "postgres".into());
        config.user(user);
    }
    if config.get_hosts().is_empty() {
        let host = std::env::var("PGHOST").unwrap_or_else(|_| "/run/postgresql".into());
        config.host(&host);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("portwatch");
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 3600) {
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(15));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
    config.ssl_mode(match target.tls {
        TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
        TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    Ok(config)
}

fn tls_config(target: &PgTarget) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let verify = target.tls == TlsMode::VerifyFull;
    let config = portwatch_probe::proto::tls::client_config(verify, target.root_cert.as_deref())?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Runs a statement that returns rows (prepared once per connection).
pub(crate) async fn rows<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    crate::count_statement();
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, params).await
}

/// Runs a statement that returns at most one row.
pub(crate) async fn opt<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Option<Row>, tokio_postgres::Error> {
    crate::count_statement();
    let statement = client.prepare_cached(sql).await?;
    client.query_opt(&statement, params).await
}

/// Runs a statement that returns exactly one row.
pub(crate) async fn one<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Row, tokio_postgres::Error> {
    crate::count_statement();
    let statement = client.prepare_cached(sql).await?;
    client.query_one(&statement, params).await
}

/// Runs a statement; returns the rows it changed.
pub(crate) async fn exec<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[Param<'_>],
) -> Result<u64, tokio_postgres::Error> {
    crate::count_statement();
    let statement = client.prepare_cached(sql).await?;
    client.execute(&statement, params).await
}

/// The PostgreSQL side of the writer: the handle's pool, used from the
/// writer's thread through the runtime that made it.
pub(crate) struct PgWrites {
    pg: Pg,
    runtime: tokio::runtime::Handle,
}

impl PgWrites {
    fn run<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, WriteError>>,
    ) -> Result<T, WriteError> {
        self.runtime.block_on(work)
    }
}

impl Target for PgWrites {
    fn name(&self) -> String {
        self.pg.inner.name.clone()
    }

    fn commit(&mut self, batch: &Batch<'_>, between: &mut dyn FnMut()) -> Result<(), WriteError> {
        self.run(async {
            let mut client = self.pg.client().await?;
            let tx = client.transaction().await?;
            // A node writes state changes only while its lease holds (see
            // `writer::Fence`): after a lapse, another node decides them.
            let fenced = match batch.node {
                Some(node) => !node_live(&tx, node).await?,
                None => false,
            };
            if fenced && (!batch.last.is_empty() || !batch.ordered.is_empty()) {
                tracing::warn!(store = %self.pg.name(), node = batch.node, states = batch.last.len(), events = batch.ordered.len(), "this node's lease has lapsed: its latest states and events are not written (the node that took its sensors decides them); its results are");
            }
            for part in &batch.journal {
                exec(
                    &tx,
                    "INSERT INTO journal (first_ms, last_ms, count, first_sensor, last_sensor, data) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &part.first_ms,
                        &part.last_ms,
                        &part.count,
                        &part.first_sensor,
                        &part.last_sensor,
                        &part.data,
                    ],
                )
                .await?;
            }
            if !fenced && !batch.journal.is_empty() {
                let mut ids = Vec::with_capacity(batch.last.len());
                let mut states = Vec::with_capacity(batch.last.len());
                let mut since = Vec::with_capacity(batch.last.len());
                let mut checked = Vec::with_capacity(batch.last.len());
                let mut statuses = Vec::with_capacity(batch.last.len());
                let mut reasons = Vec::with_capacity(batch.last.len());
                let mut rtts = Vec::with_capacity(batch.last.len());
                let mut messages = Vec::with_capacity(batch.last.len());
                let mut details = Vec::with_capacity(batch.last.len());
                let mut ticks = Vec::with_capacity(batch.last.len());
                for (result, last, new_ticks) in batch.last.values() {
                    // The newest ticks only; the update trims what it joins.
                    let keep = crate::pack::TICKS_KEPT * crate::pack::TICK_BYTES;
                    ticks.push(&new_ticks[new_ticks.len().saturating_sub(keep)..]);
                    ids.push(result.sensor);
                    states.push(last.state.as_str());
                    since.push(last.since_ms);
                    checked.push(result.at_ms);
                    statuses.push(result.status.as_str());
                    reasons.push(result.reason.as_str());
                    rtts.push(result.rtt_us.map(i64::from));
                    messages.push(last.message.as_str());
                    details.push(
                        last.details
                            .as_ref()
                            .map(|d| serde_json::to_string(d).expect("details serialise")),
                    );
                }
                exec(
                    &tx,
                    "INSERT INTO sensor_status (sensor_id, state, since_ms, last_check_ms, last_status, last_reason, last_rtt_us, last_message, last_details, ticks)
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::bytea[])
                     ON CONFLICT (sensor_id) DO UPDATE SET state = excluded.state, since_ms = excluded.since_ms,
                         last_check_ms = excluded.last_check_ms, last_status = excluded.last_status, last_reason = excluded.last_reason,
                         last_rtt_us = excluded.last_rtt_us, last_message = excluded.last_message, last_details = excluded.last_details,
                         ticks = substring(coalesce(sensor_status.ticks, ''::bytea) || excluded.ticks
                             from greatest(octet_length(coalesce(sensor_status.ticks, ''::bytea)) + octet_length(excluded.ticks) - $11 + 1, 1))",
                    &[&ids, &states, &since, &checked, &statuses, &reasons, &rtts, &messages, &details, &ticks, &((crate::pack::TICKS_KEPT * crate::pack::TICK_BYTES) as i32)],
                )
                .await?;
                between();
            }
            // Events last: a result queued before a state change carries the
            // old state, and must not overwrite the new one in sensor_status.
            // A run of state changes is written with one statement per
            // table, not a round trip per change.
            let ordered = if fenced { &[][..] } else { batch.ordered };
            let mut at = 0;
            while at < ordered.len() {
                let run = ordered[at..]
                    .iter()
                    .take_while(|e| matches!(e.op, Ordered::Event { .. }))
                    .count();
                if run > 0 {
                    insert_events(&tx, &ordered[at..at + run]).await?;
                    at += run;
                    continue;
                }
                match &ordered[at].op {
                    Ordered::Event { .. } => unreachable!("runs of events are taken above"),
                    Ordered::Notify {
                        sensor,
                        at_ms,
                        notify,
                    } => {
                        let mut outbox = Outbox::default();
                        outbox.add(None, Some(*sensor), *at_ms, notify, None);
                        outbox.insert(&tx).await?;
                    }
                    Ordered::Settle {
                        sensor,
                        at_ms,
                        cancel: None,
                    } => {
                        exec(
                            &tx,
                            "UPDATE outbox SET next_ms = $2, held = false WHERE sensor_id = $1 AND held AND delivered_ms IS NULL AND cancelled_ms IS NULL",
                            &[sensor, at_ms],
                        )
                        .await?;
                    }
                    Ordered::Settle {
                        sensor,
                        at_ms,
                        cancel: Some(why),
                    } => {
                        exec(
                            &tx,
                            "UPDATE outbox SET cancelled_ms = $2, held = false, last_error = $3 WHERE sensor_id = $1 AND held AND delivered_ms IS NULL AND cancelled_ms IS NULL",
                            &[sensor, at_ms, why],
                        )
                        .await?;
                    }
                }
                at += 1;
            }
            between();
            tx.commit().await?;
            Ok(())
        })
    }

    fn journal_before(&mut self, before_ms: i64) -> Result<Vec<JournalRow>, WriteError> {
        self.run(async {
            let client = self.pg.client().await?;
            let found = rows(
                &client,
                "SELECT id, first_ms, last_ms, data FROM journal WHERE last_ms < $1 ORDER BY id",
                &[&before_ms],
            )
            .await?;
            Ok(found
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect())
        })
    }

    fn windows(&mut self, keys: &[(i64, i64)]) -> Result<HashMap<(i64, i64), Vec<u8>>, WriteError> {
        self.run(async {
            let client = self.pg.client().await?;
            let sensors: Vec<i64> = keys.iter().map(|k| k.0).collect();
            let starts: Vec<i64> = keys.iter().map(|k| k.1).collect();
            let found = rows(
                &client,
                "SELECT r.sensor_id, r.start_ms, r.data FROM results r
                 JOIN unnest($1::bigint[], $2::bigint[]) AS k (sensor_id, start_ms)
                   ON r.sensor_id = k.sensor_id AND r.start_ms = k.start_ms",
                &[&sensors, &starts],
            )
            .await?;
            Ok(found
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect())
        })
    }

    fn store_repack(
        &mut self,
        repack: &Repack,
        between: &mut dyn FnMut(),
    ) -> Result<(), WriteError> {
        self.run(async {
            let mut client = self.pg.client().await?;
            let tx = client.transaction().await?;
            still_repacker(&tx, repack.node).await?;
            for slice in repack.windows.chunks(crate::writer::REPACK_WRITE) {
                write_rows(&tx, slice).await?;
                between();
            }
            let keys = |f: fn(&(i64, i64)) -> i64| -> Vec<i64> {
                repack.rollups.iter().map(|(k, _)| f(k)).collect()
            };
            let counts = |f: fn(&crate::Rollup) -> Option<u32>| -> Vec<Option<i64>> {
                repack
                    .rollups
                    .iter()
                    .map(|(_, r)| f(r).map(i64::from))
                    .collect()
            };
            exec(
                &tx,
                "INSERT INTO rollups (sensor_id, hour_ms, count, ups, min_us, avg_us, max_us, p95_us)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
                 ON CONFLICT (sensor_id, hour_ms) DO UPDATE SET count = excluded.count, ups = excluded.ups, min_us = excluded.min_us,
                     avg_us = excluded.avg_us, max_us = excluded.max_us, p95_us = excluded.p95_us",
                &[
                    &keys(|k| k.0),
                    &keys(|k| k.1),
                    &counts(|r| Some(r.count)),
                    &counts(|r| Some(r.ups)),
                    &counts(|r| r.min_us),
                    &counts(|r| r.avg_us),
                    &counts(|r| r.max_us),
                    &counts(|r| r.p95_us),
                ],
            )
            .await?;
            let (sensors, days): (Vec<i64>, Vec<i64>) = repack.days().into_iter().unzip();
            exec(
                &tx,
                "INSERT INTO daily_rollups (sensor_id, day_ms, count, ups)
                 SELECT d.sensor_id, d.day_ms, coalesce(sum(r.count), 0), coalesce(sum(r.ups), 0)
                 FROM unnest($1::bigint[], $2::bigint[]) AS d (sensor_id, day_ms)
                 LEFT JOIN rollups r ON r.sensor_id = d.sensor_id AND r.hour_ms >= d.day_ms AND r.hour_ms < d.day_ms + 86400000
                 GROUP BY d.sensor_id, d.day_ms
                 ON CONFLICT (sensor_id, day_ms) DO UPDATE SET count = excluded.count, ups = excluded.ups",
                &[&sensors, &days],
            )
            .await?;
            exec(
                &tx,
                "DELETE FROM journal WHERE id = ANY($1)",
                &[&repack.journal_ids],
            )
            .await?;
            if let Some((results_before, rollups_before)) = repack.prune {
                exec(&tx, "DELETE FROM results WHERE end_ms < $1", &[&results_before]).await?;
                exec(&tx, "DELETE FROM rollups WHERE hour_ms < $1", &[&rollups_before]).await?;
                exec(&tx, "DELETE FROM daily_rollups WHERE day_ms < $1", &[&rollups_before]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn windows_since(&mut self, from_ms: i64) -> Result<Vec<(i64, i64, Vec<u8>)>, WriteError> {
        self.run(async {
            let client = self.pg.client().await?;
            let found = rows(
                &client,
                "SELECT sensor_id, start_ms, data FROM results WHERE start_ms >= $1",
                &[&from_ms],
            )
            .await?;
            Ok(found
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })
    }

    fn sensors_after(&mut self, after: i64, limit: usize) -> Result<Vec<i64>, WriteError> {
        self.run(async {
            let client = self.pg.client().await?;
            let found = rows(
                &client,
                "SELECT id FROM sensors WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &(limit as i64)],
            )
            .await?;
            Ok(found.iter().map(|r| r.get(0)).collect())
        })
    }

    fn rows_between(
        &mut self,
        sensors: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, crate::pack::Row)>, WriteError> {
        self.run(async {
            let client = self.pg.client().await?;
            let found = rows(
                &client,
                "SELECT r.sensor_id, r.start_ms, r.end_ms, r.count, r.data
                 FROM unnest($1::bigint[]) AS s (id)
                 JOIN results r ON r.sensor_id = s.id AND r.start_ms >= $2 AND r.start_ms < $3
                 ORDER BY r.sensor_id, r.start_ms",
                &[&sensors, &from_ms, &to_ms],
            )
            .await?;
            Ok(found
                .iter()
                .map(|r| {
                    let row = crate::pack::Row {
                        start_ms: r.get(1),
                        end_ms: r.get(2),
                        count: r.get(3),
                        data: r.get(4),
                    };
                    (r.get(0), row)
                })
                .collect())
        })
    }

    fn store_compact(&mut self, compact: &Compact) -> Result<(), WriteError> {
        self.run(async {
            let mut client = self.pg.client().await?;
            let tx = client.transaction().await?;
            still_repacker(&tx, compact.node).await?;
            exec(
                &tx,
                "DELETE FROM results WHERE sensor_id = ANY($1) AND start_ms >= $2 AND start_ms < $3",
                &[&compact.sensors, &compact.from_ms, &compact.to_ms],
            )
            .await?;
            write_rows(&tx, &compact.rows).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

/// Refuses a repack's or a merge's writes once the node making them
/// (`None`: not a node) has lost its lease: another node repacks now.
async fn still_repacker<C: GenericClient>(tx: &C, node: Option<i64>) -> Result<(), WriteError> {
    if let Some(node) = node
        && !node_live(tx, node).await?
    {
        return Err("this node's lease has lapsed: another node repacks now".into());
    }
    Ok(())
}

/// Writes rows of results, replacing those with the same keys.
async fn write_rows<C: GenericClient>(tx: &C, rows: &[PackedWindow]) -> Result<(), WriteError> {
    let column = |f: fn(&PackedWindow) -> i64| -> Vec<i64> { rows.iter().map(f).collect() };
    let data: Vec<&[u8]> = rows.iter().map(|w| w.row.data.as_slice()).collect();
    exec(
        tx,
        "INSERT INTO results (sensor_id, start_ms, end_ms, count, data)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[])
         ON CONFLICT (sensor_id, start_ms) DO UPDATE SET end_ms = excluded.end_ms, count = excluded.count, data = excluded.data",
        &[
            &column(|w| w.sensor),
            &column(|w| w.row.start_ms),
            &column(|w| w.row.end_ms),
            &column(|w| w.row.count),
            &data,
        ],
    )
    .await?;
    Ok(())
}

/// Whether node `id`'s lease holds, by the database's clock (the fence
/// of its writes: see `writer::Fence`).
async fn node_live<C: GenericClient>(tx: &C, id: i64) -> Result<bool, tokio_postgres::Error> {
    Ok(one(
        tx,
        "SELECT EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND expires_at > now())",
        &[&id],
    )
    .await?
    .get(0))
}

/// Writes a run of state changes: their events (ids taken from the
/// sequence first, so each notification names its event), the
/// notifications they cause, and each sensor's latest state.
async fn insert_events<C: GenericClient>(
    tx: &C,
    run: &[crate::writer::PendingEvent],
) -> Result<(), tokio_postgres::Error> {
    let mut ids: Vec<i64> = rows(
        tx,
        "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, $1::bigint)",
        &[&(run.len() as i64)],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    ids.sort_unstable();
    let mut sensors = Vec::with_capacity(run.len());
    let mut times = Vec::with_capacity(run.len());
    let mut from = Vec::with_capacity(run.len());
    let mut to = Vec::with_capacity(run.len());
    let mut reasons = Vec::with_capacity(run.len());
    let mut messages = Vec::with_capacity(run.len());
    let mut outbox = Outbox::default();
    // The last state of each sensor in the run, in the order first seen.
    let mut latest: HashMap<i64, (&str, i64)> = HashMap::new();
    for (event, &id) in run.iter().zip(&ids) {
        let Ordered::Event {
            sensor,
            at_ms,
            change,
            notify,
            hold_until_ms,
        } = &event.op
        else {
            continue;
        };
        sensors.push(*sensor);
        times.push(*at_ms);
        from.push(change.from.as_str());
        to.push(change.to.as_str());
        reasons.push(change.reason.map(|r| r.as_str()));
        messages.push(change.message.as_str());
        // The notifications commit with their event, or not at all.
        outbox.add(Some(id), Some(*sensor), *at_ms, notify, *hold_until_ms);
        latest.insert(*sensor, (change.to.as_str(), *at_ms));
    }
    exec(
        tx,
        "INSERT INTO events (id, sensor_id, at_ms, from_state, to_state, reason, message)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])",
        &[&ids, &sensors, &times, &from, &to, &reasons, &messages],
    )
    .await?;
    outbox.insert(tx).await?;
    let (state_ids, (states, since)): (Vec<i64>, (Vec<&str>, Vec<i64>)) =
        latest.into_iter().unzip();
    exec(
        tx,
        "INSERT INTO sensor_status (sensor_id, state, since_ms)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
         ON CONFLICT (sensor_id) DO UPDATE SET state = excluded.state, since_ms = excluded.since_ms",
        &[&state_ids, &states, &since],
    )
    .await?;
    Ok(())
}

/// Notifications to add to the outbox, as columns, written with one
/// statement.
#[derive(Default)]
pub(crate) struct Outbox {
    events: Vec<Option<i64>>,
    /// `None`: not about a sensor (a node's lease lapsed).
    sensors: Vec<Option<i64>>,
    channels: Vec<String>,
    payloads: Vec<String>,
    created: Vec<i64>,
    next: Vec<i64>,
    held: Vec<bool>,
}

impl Outbox {
    /// Notifications due at `at_ms`, or held until `hold_until_ms`.
    pub(crate) fn add(
        &mut self,
        event_id: Option<i64>,
        sensor: Option<i64>,
        at_ms: i64,
        notify: &[(String, portwatch_core::notify::Payload)],
        hold_until_ms: Option<i64>,
    ) {
        for (channel, payload) in notify {
            self.events.push(event_id);
            self.sensors.push(sensor);
            self.channels.push(channel.clone());
            self.payloads
                .push(serde_json::to_string(payload).expect("a payload serialises"));
            self.created.push(at_ms);
            self.next.push(hold_until_ms.unwrap_or(at_ms));
            self.held.push(hold_until_ms.is_some());
        }
    }

    pub(crate) async fn insert<C: GenericClient>(
        &self,
        tx: &C,
    ) -> Result<(), tokio_postgres::Error> {
        if self.sensors.is_empty() {
            return Ok(());
        }
        exec(
            tx,
            "INSERT INTO outbox (event_id, sensor_id, channel, payload, created_ms, next_ms, held)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::boolean[])",
            &[
                &self.events,
                &self.sensors,
                &self.channels,
                &self.payloads,
                &self.created,
                &self.next,
                &self.held,
            ],
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PostgreSQL writer merges closed hours as the SQLite one does
    /// (`writer::check_compaction`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_hours_windows_are_merged_into_rows() {
        let Some(cluster) = tokio::task::spawn_blocking(|| {
            let cluster = portwatch_testpg::Cluster::for_test("store::pg::compaction")?;
            cluster.create_database("portwatch").unwrap();
            Some(cluster)
        })
        .await
        .unwrap() else {
            return;
        };
        let crate::location::Location::Postgres(target) =
            crate::location::Location::parse(&cluster.url("portwatch")).unwrap()
        else {
            panic!("a postgres:// URL is PostgreSQL");
        };
        let pg = Pg::connect(&target, 2).await.unwrap();
        let client = pg.client().await.unwrap();
        client
            .batch_execute(
                "INSERT INTO servers (id, name, host) VALUES (1, 's', 'h');
                 INSERT INTO sensors (id, server_id, name, port) VALUES (4, 1, 'a', 1), (5, 1, 'b', 2), (9, 1, 'c', 3);",
            )
            .await
            .unwrap();
        drop(client);
        let writes = PgWrites {
            pg,
            runtime: tokio::runtime::Handle::current(),
        };
        tokio::task::spawn_blocking(move || crate::writer::check_compaction(writes, &[4, 5, 9]))
            .await
            .unwrap();
        drop(cluster);
    }
}
