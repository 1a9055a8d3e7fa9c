//! `portwatch store copy`: everything in one store, copied into another
//! of either kind, ids and all, so that the history, the outbox and the
//! accounts carry on where they were.
//!
//! Both backends hold the same logical schema under the same table and
//! column names ([`TABLES`]); rows stream from the source in chunks (a
//! store of any size copies in bounded memory) and are written with
//! PostgreSQL's binary `COPY`, or one SQLite transaction per table.

use std::pin::pin;

use futures_util::StreamExt;
use rusqlite::types::ValueRef;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::{Backend, Storage, StoreError};

/// Every table of a store with its columns, in an order where a row never
/// refers to one not copied yet.
pub const TABLES: &[(&str, &[&str])] = &[
    ("meta", &["key", "value"]),
    ("defaults", &["id", "settings"]),
    (
        "groups",
        &["id", "path", "settings", "managed", "retired_at"],
    ),
    (
        "servers",
        &[
            "id",
            "name",
            "host",
            "group_path",
            "settings",
            "tags",
            "managed",
            "retired_at",
        ],
    ),
    (
        "sensors",
        &[
            "id",
            "server_id",
            "name",
            "port",
            "expect_closed",
            "settings",
            "tags",
            "paused",
            "managed",
            "retired_at",
        ],
    ),
    (
        "maintenance",
        &[
            "id", "name", "rule", "groups", "servers", "sensors", "managed",
        ],
    ),
    (
        "events",
        &[
            "id",
            "sensor_id",
            "at_ms",
            "from_state",
            "to_state",
            "reason",
            "message",
        ],
    ),
    (
        "sensor_status",
        &[
            "sensor_id",
            "state",
            "since_ms",
            "last_check_ms",
            "last_status",
            "last_reason",
            "last_rtt_us",
            "last_message",
            "last_details",
            "ticks",
        ],
    ),
    (
        "journal",
        &[
            "id",
            "first_ms",
            "last_ms",
            "count",
            "first_sensor",
            "last_sensor",
            "data",
        ],
    ),
    (
        "results",
        &["sensor_id", "start_ms", "end_ms", "count", "data"],
    ),
    (
        "rollups",
        &[
            "sensor_id",
            "hour_ms",
            "count",
            "ups",
            "min_us",
            "avg_us",
            "max_us",
            "p95_us",
        ],
    ),
    ("daily_rollups", &["sensor_id", "day_ms", "count", "ups"]),
    (
        "pushes",
        &[
            "sensor_id",
            "token_hash",
            "since_ms",
            "at_ms",
            "down",
            "message",
            "duration_ms",
        ],
    ),
    (
        "users",
        &[
            "id",
            "name",
            "password_hash",
            "role",
            "created_ms",
            "disabled_ms",
        ],
    ),
    ("sessions", &["token_hash", "user_id", "csrf", "expires_ms"]),
    (
        "api_tokens",
        &["id", "name", "token_hash", "scope", "created_ms"],
    ),
    (
        "status_pages",
        &["id", "slug", "title", "sensors", "logo", "link"],
    ),
    ("channels", &["name", "definition", "managed"]),
    ("rules", &["id", "definition", "managed"]),
    (
        "outbox",
        &[
            "id",
            "event_id",
            "sensor_id",
            "channel",
            "payload",
            "created_ms",
            "next_ms",
            "attempts",
            "delivered_ms",
            "last_error",
            "held",
            "cancelled_ms",
            "failed_ms",
        ],
    ),
];

/// Tables whose rows the new store's schema made already: replaced.
const SEEDED: &[&str] = &["meta", "defaults"];

/// Rows per chunk between the reader and the writer.
const CHUNK: usize = 5_000;

/// One value, as either backend stores it.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
}

type Row = Vec<Value>;

/// What a copy did: rows per table, in [`TABLES`] order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySummary {
    /// `(table, rows)`.
    pub tables: Vec<(&'static str, u64)>,
}

/// Copies everything in `from` into `to`, which must hold no sensors,
/// events, results or users yet. `progress(table, rows_done, rows_total)`
/// is called as rows arrive.
pub async fn copy(
    from: &Backend,
    to: &Backend,
    mut progress: impl FnMut(&str, u64, u64),
) -> Result<CopySummary, StoreError> {
    refuse_full(to).await?;
    let mut summary = CopySummary::default();
    for &(table, columns) in TABLES {
        let total = count(from, table).await?;
        progress(table, 0, total);
        let (sender, mut chunks) = mpsc::channel::<Row>(CHUNK);
        let reading = read(from.clone(), table, columns, sender);
        let writing = write(to, table, columns, &mut chunks, |done| {
            progress(table, done, total)
        });
        let (read, written) = tokio::join!(reading, writing);
        read?;
        summary.tables.push((table, written?));
    }
    if let Backend::Postgres(pg) = to {
        // Ids were copied as they were: the identity sequences go on after
        // the largest.
        let client = pg.client().await?;
        for &(table, columns) in TABLES {
            if columns[0] == "id" && !SEEDED.contains(&table) {
                client
                    .batch_execute(&format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
                    ))
                    .await
                    .map_err(pg.fail())?;
            }
        }
    }
    Ok(summary)
}

/// Refuses a destination that holds monitoring data already.
async fn refuse_full(to: &Backend) -> Result<(), StoreError> {
    for table in ["sensors", "events", "results", "journal", "users"] {
        if count(to, table).await? > 0 {
            return Err(StoreError::Conflict(format!(
                "{} holds a portwatch store already ({table} has rows): copy into a new, empty store",
                to.name()
            )));
        }
    }
    Ok(())
}

async fn count(db: &Backend, table: &str) -> Result<u64, StoreError> {
    let sql = format!("SELECT count(*) FROM {table}");
    match db {
        Backend::Sqlite(db) => db
            .call(move |store| {
                store
                    .conn
                    .query_row(&sql, [], |r| r.get::<_, i64>(0))
                    .map_err(store.sqlite())
            })
            .await
            .map(|n| n as u64),
        Backend::Postgres(pg) => {
            let client = pg.client().await?;
            let n: i64 = client.query_one(&sql, &[]).await.map_err(pg.fail())?.get(0);
            Ok(n as u64)
        }
    }
}

/// Streams every row of `table` into `sender`.
async fn read(
    from: Backend,
    table: &'static str,
    columns: &'static [&'static str],
    sender: mpsc::Sender<Row>,
) -> Result<(), StoreError> {
    let sql = format!("SELECT {} FROM {table}", columns.join(", "));
    match from {
        Backend::Sqlite(db) => {
            db.call(move |store| {
                let sqlite = store.sqlite();
                let mut statement = store.conn.prepare(&sql).map_err(&sqlite)?;
                let mut rows = statement.query([]).map_err(&sqlite)?;
                while let Some(row) = rows.next().map_err(&sqlite)? {
                    let mut values = Vec::with_capacity(columns.len());
                    for i in 0..columns.len() {
                        values.push(match row.get_ref(i).map_err(&sqlite)? {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(n) => Value::Int(n),
                            ValueRef::Real(x) => Value::Int(x as i64),
                            ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        });
                    }
                    if sender.blocking_send(values).is_err() {
                        break;
                    }
                }
                Ok(())
            })
            .await
        }
        Backend::Postgres(pg) => {
            let client = pg.client().await?;
            let no_params: [&(dyn ToSql + Sync); 0] = [];
            let stream = client.query_raw(&sql, no_params).await.map_err(pg.fail())?;
            let mut stream = pin!(stream);
            while let Some(row) = stream.next().await {
                let row = row.map_err(pg.fail())?;
                let mut values = Vec::with_capacity(columns.len());
                for (i, column) in row.columns().iter().enumerate() {
                    let ty = column.type_();
                    let value = if *ty == Type::BOOL {
                        row.get::<_, Option<bool>>(i).map(Value::Bool)
                    } else if *ty == Type::INT8 {
                        row.get::<_, Option<i64>>(i).map(Value::Int)
                    } else if *ty == Type::INT4 {
                        row.get::<_, Option<i32>>(i).map(|n| Value::Int(n.into()))
                    } else if *ty == Type::BYTEA {
                        row.get::<_, Option<Vec<u8>>>(i).map(Value::Blob)
                    } else {
                        row.get::<_, Option<String>>(i).map(Value::Text)
                    };
                    values.push(value.unwrap_or(Value::Null));
                }
                if sender.send(values).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
    }
}

/// Writes the rows arriving on `chunks` into `table`; returns how many.
async fn write(
    to: &Backend,
    table: &'static str,
    columns: &'static [&'static str],
    rows: &mut mpsc::Receiver<Row>,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let mut done = 0u64;
    match to {
        Backend::Sqlite(db) => {
            let insert = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                columns.join(", "),
                vec!["?"; columns.len()].join(", ")
            );
            let seeded = SEEDED.contains(&table);
            let mut first = true;
            loop {
                let mut chunk = Vec::with_capacity(CHUNK);
                if rows.recv_many(&mut chunk, CHUNK).await == 0 {
                    break;
                }
                let (insert, clear) = (insert.clone(), seeded && first);
                first = false;
                let n = chunk.len() as u64;
                db.call(move |store| {
                    let path = store.path().to_owned();
                    let tx = store
                        .conn
                        .transaction()
                        .map_err(crate::sqlite_error(&path))?;
                    if clear {
                        tx.execute(&format!("DELETE FROM {table}"), [])
                            .map_err(crate::sqlite_error(&path))?;
                    }
                    {
                        let mut statement =
                            tx.prepare(&insert).map_err(crate::sqlite_error(&path))?;
                        for row in &chunk {
                            let params: Vec<rusqlite::types::Value> =
                                row.iter().map(sqlite_value).collect();
                            statement
                                .execute(rusqlite::params_from_iter(params))
                                .map_err(crate::sqlite_error(&path))?;
                        }
                    }
                    tx.commit().map_err(crate::sqlite_error(&path))
                })
                .await?;
                done += n;
                progress(done);
            }
        }
        Backend::Postgres(pg) => {
            let mut client = pg.client().await?;
            let tx = client.transaction().await.map_err(pg.fail())?;
            if SEEDED.contains(&table) {
                tx.batch_execute(&format!("DELETE FROM {table}"))
                    .await
                    .map_err(pg.fail())?;
            }
            let names = columns.join(", ");
            let types: Vec<Type> = tx
                .prepare(&format!("SELECT {names} FROM {table} LIMIT 0"))
                .await
                .map_err(pg.fail())?
                .columns()
                .iter()
                .map(|c| c.type_().clone())
                .collect();
            let sink = tx
                .copy_in(&format!("COPY {table} ({names}) FROM STDIN BINARY"))
                .await
                .map_err(pg.fail())?;
            let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
            while let Some(row) = rows.recv().await {
                let values: Vec<Box<dyn ToSql + Sync + Send>> = row
                    .into_iter()
                    .zip(&types)
                    .map(|(value, ty)| pg_value(value, ty))
                    .collect::<Result<_, _>>()
                    .map_err(|e| StoreError::Postgres(pg.name().to_owned(), e))?;
                let refs: Vec<&(dyn ToSql + Sync)> = values
                    .iter()
                    .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                writer.as_mut().write(&refs).await.map_err(pg.fail())?;
                done += 1;
                if done.is_multiple_of(CHUNK as u64) {
                    progress(done);
                }
            }
            writer.as_mut().finish().await.map_err(pg.fail())?;
            tx.commit().await.map_err(pg.fail())?;
            progress(done);
        }
    }
    Ok(done)
}

fn sqlite_value(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match value {
        Value::Null => V::Null,
        Value::Int(n) => V::Integer(*n),
        Value::Bool(b) => V::Integer(i64::from(*b)),
        Value::Text(t) => V::Text(t.clone()),
        Value::Blob(b) => V::Blob(b.clone()),
    }
}

/// A value in the destination column's type.
fn pg_value(value: Value, ty: &Type) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    let mismatch = |value: &Value| format!("cannot store {value:?} in a {ty} column");
    Ok(match value {
        Value::Null if *ty == Type::BOOL => Box::new(None::<bool>),
        Value::Null if *ty == Type::INT8 => Box::new(None::<i64>),
        Value::Null if *ty == Type::INT4 => Box::new(None::<i32>),
        Value::Null if *ty == Type::BYTEA => Box::new(None::<Vec<u8>>),
        Value::Null => Box::new(None::<String>),
        Value::Int(n) if *ty == Type::BOOL => Box::new(n != 0),
        Value::Int(n) if *ty == Type::INT8 => Box::new(n),
        Value::Int(n) if *ty == Type::INT4 => {
            Box::new(i32::try_from(n).map_err(|_| mismatch(&Value::Int(n)))?)
        }
        Value::Bool(b) if *ty == Type::BOOL => Box::new(b),
        Value::Text(t) if *ty == Type::TEXT => Box::new(t),
        Value::Blob(b) if *ty == Type::BYTEA => Box::new(b),
        other => return Err(mismatch(&other)),
    })
}

/// The sensors' reports over `from_ms..to_ms`, for comparing two stores.
pub async fn reports<S: Storage>(
    db: &S,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<portwatch_core::report::SensorReport>, StoreError> {
    let mut reports = Vec::new();
    for row in db.status().await? {
        reports.push(db.sensor_report(row.id, row.path, from_ms, to_ms).await?);
    }
    Ok(reports)
}
