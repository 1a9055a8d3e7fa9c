//! [`Storage`] on PostgreSQL: the same calls, checks and messages as the
//! SQLite store, in PostgreSQL's SQL. Lists go to the server as arrays
//! (`= ANY($1)`, `unnest`), so applying a large file is a handful of
//! statements, not one per sensor.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use portwatch_core::config::{
    Config, GroupDef, Overrides, SensorDef, ServerDef, WindowDef, WindowRule,
};
use portwatch_core::monitor::state::State;
use portwatch_core::notify::{ChannelDef, Payload, RuleDef};
use portwatch_core::report::SensorReport;
use portwatch_probe::Host;
use portwatch_probe::target::parse_bare_host;
use tokio_postgres::Row;

use super::{Param, Pg, exec, one, opt, rows};
use crate::accounts::{
    Account, Role, SESSION_MS, StatusPage, TokenRow, UserRow, hash_password, random_token,
    token_hash, verify_password,
};
use crate::edit::ConfigItem;
use crate::listing::{self, Listed, StatusQuery, Tally};
use crate::outbox::{OutboxRow, Pending, StoredChannel, StoredRule};
use crate::{
    ApplySummary, EventRow, Loaded, Rollup, StatusRow, Storage, Store, StoreError, StoredResult,
    pack,
};

const BUMP: &str = "UPDATE meta SET value = value + 1 WHERE key = 'config_generation'";

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stored values serialise")
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Pg {
    fn damaged(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres(self.name().to_owned(), format!("damaged row: {what}"))
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, text: &str) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| self.damaged(format!("{text}: {e}")))
    }

    /// An outbox row as the delivery worker takes it.
    fn pending(&self, row: &Row) -> Result<Pending, StoreError> {
        Ok(Pending {
            id: row.get(0),
            channel: row.get(1),
            payload: self.parse(row.get(2))?,
            attempts: row.get::<_, i64>(3) as u32,
        })
    }

    async fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        rows(&client, sql, params).await.map_err(self.fail())
    }

    async fn query_opt(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, StoreError> {
        let client = self.client().await?;
        opt(&client, sql, params).await.map_err(self.fail())
    }

    async fn query_one(&self, sql: &str, params: &[Param<'_>]) -> Result<Row, StoreError> {
        let client = self.client().await?;
        one(&client, sql, params).await.map_err(self.fail())
    }

    async fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        exec(&client, sql, params).await.map_err(self.fail())
    }

    /// Runs `sql` and moves the configuration generation on, in one
    /// transaction; returns the rows `sql` changed.
    async fn edit(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.fail())?;
        let changed = exec(&tx, sql, params).await.map_err(self.fail())?;
        exec(&tx, BUMP, &[]).await.map_err(self.fail())?;
        tx.commit().await.map_err(self.fail())?;
        Ok(changed)
    }

    async fn bump(&self) -> Result<(), StoreError> {
        self.execute(BUMP, &[]).await.map(|_| ())
    }

    fn event_row(&self, row: &Row, at: usize) -> Result<EventRow, StoreError> {
        let state = |i: usize| {
            row.get::<_, String>(i)
                .parse::<State>()
                .map_err(|e| self.damaged(e))
        };
        Ok(EventRow {
            sensor_id: row.get(at),
            at_ms: row.get(at + 1),
            from: state(at + 2)?,
            to: state(at + 3)?,
            reason: row.get(at + 4),
            message: row.get(at + 5),
        })
    }

    async fn status_rows(&self, only: Option<i64>) -> Result<Vec<StatusRow>, StoreError> {
        let query = StatusQuery {
            id: only,
            ..StatusQuery::default()
        };
        Ok(self
            .listed(&query)
            .await?
            .into_iter()
            .map(|l| l.row)
            .collect())
    }

    /// The sensors `query` lists, in its order.
    async fn listed(&self, query: &StatusQuery) -> Result<Vec<Listed>, StoreError> {
        let (sql, values) = listing::status_sql(query, listing::Dialect::Postgres);
        let params: Vec<Param<'_>> = values.iter().map(|v| v.pg()).collect();
        let found = self.query(&sql, &params).await?;
        found
            .iter()
            .map(|r| {
                let state = crate::row_state(r.get(5), r.get(11));
                let mut tags: Vec<String> = self.parse(r.get(12))?;
                tags.extend(self.parse::<Vec<String>>(r.get(13))?);
                Ok(Listed {
                    row: StatusRow {
                        id: r.get(0),
                        path: r.get(1),
                        group: r.get(2),
                        host: r.get(3),
                        port: self.port(r.get(4))?,
                        state,
                        since_ms: r.get(6),
                        last_check_ms: r.get(7),
                        last_rtt_us: r.get(8),
                        last_reason: r.get(9),
                        last_message: r.get(10),
                        last_details: r
                            .get::<_, Option<&str>>(15)
                            .map(|d| self.parse(d))
                            .transpose()?,
                        tags,
                        managed: r.get(14),
                        ping: r.get(16),
                    },
                    matching: r.get(17),
                })
            })
            .collect()
    }

    fn port(&self, stored: i64) -> Result<u16, StoreError> {
        u16::try_from(stored).map_err(|_| self.damaged(format!("port {stored}")))
    }

    /// Refuses a dependency on a sensor that does not exist.
    async fn check_dependency(&self, overrides: &Overrides) -> Result<(), StoreError> {
        if let Some(dep) = &overrides.depends_on {
            let not_a_sensor = || {
                StoreError::Conflict(format!(
                    "depends_on '{dep}' is not a sensor: write server/sensor"
                ))
            };
            let ids = self
                .sensor_ids(dep.clone())
                .await
                .map_err(|_| not_a_sensor())?;
            if !(dep.contains('/') && ids.len() == 1) {
                return Err(not_a_sensor());
            }
        }
        Ok(())
    }

    /// Refuses a change that would close a dependency cycle.
    async fn refuse_cycle(&self, change: impl FnOnce(&mut Config)) -> Result<(), StoreError> {
        let mut loaded = self.load().await?;
        change(&mut loaded.config);
        match portwatch_core::config::model::find_cycle(&loaded.config) {
            Some(at) => Err(StoreError::Conflict(format!(
                "that dependency would close a cycle through '{at}'"
            ))),
            None => Ok(()),
        }
    }

    async fn refuse_managed(&self, table: &str, key: &str, value: &str) -> Result<(), StoreError> {
        let managed = self
            .query_opt(
                &format!("SELECT managed FROM {table} WHERE {key} = $1 AND retired_at IS NULL"),
                &[&value],
            )
            .await?
            .map(|r| r.get::<_, bool>(0));
        if managed == Some(true) {
            return Err(StoreError::Conflict(format!(
                "'{value}' is declared in the configuration file: change it there"
            )));
        }
        Ok(())
    }

    async fn group_exists(&self, path: &str) -> Result<bool, StoreError> {
        Ok(self
            .query_one(
                "SELECT count(*) > 0 FROM groups WHERE path = $1 AND retired_at IS NULL",
                &[&path],
            )
            .await?
            .get(0))
    }

    async fn end_sessions(&self, name: &str, changed: u64) -> Result<(), StoreError> {
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "no user named '{name}' (see portwatch access list)"
            )));
        }
        self.execute(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)",
            &[&name],
        )
        .await?;
        Ok(())
    }
}

/// Runs argon2 off the async threads: it takes tens of milliseconds.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("password hashing does not panic")
}

impl Storage for Pg {
    async fn generation(&self) -> Result<i64, StoreError> {
        Ok(self
            .query_one(
                "SELECT value FROM meta WHERE key = 'config_generation'",
                &[],
            )
            .await?
            .get(0))
    }

    async fn apply(&self, config: Config) -> Result<ApplySummary, StoreError> {
        let now = now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.fail())?;
        let fail = self.fail();
        let mut summary = ApplySummary::default();
        exec(
            &tx,
            "UPDATE defaults SET settings = $1 WHERE id = 1",
            &[&to_json(&config.defaults)],
        )
        .await
        .map_err(&fail)?;
        let group_paths: Vec<String> = config.groups.iter().map(|g| g.path.clone()).collect();
        let group_settings: Vec<String> = config
            .groups
            .iter()
            .map(|g| to_json(&g.overrides))
            .collect();
        exec(
            &tx,
            "INSERT INTO groups (path, settings, managed) SELECT p, s, true FROM unnest($1::text[], $2::text[]) AS x (p, s)
             ON CONFLICT (path) DO UPDATE SET settings = excluded.settings, managed = true, retired_at = NULL",
            &[&group_paths, &group_settings],
        )
        .await
        .map_err(&fail)?;
        let servers = &config.servers;
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        let hosts: Vec<String> = servers.iter().map(|s| s.host.to_string()).collect();
        let groups: Vec<Option<&str>> = servers.iter().map(|s| s.group.as_deref()).collect();
        let settings: Vec<String> = servers.iter().map(|s| to_json(&s.overrides)).collect();
        let tags: Vec<String> = servers.iter().map(|s| to_json(&s.tags)).collect();
        let server_ids: HashMap<String, i64> = rows(
            &tx,
            "INSERT INTO servers (name, host, group_path, settings, tags, managed)
             SELECT n, h, g, s, t, true FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS x (n, h, g, s, t)
             ON CONFLICT (name) DO UPDATE SET host = excluded.host, group_path = excluded.group_path, settings = excluded.settings,
                 tags = excluded.tags, managed = true, retired_at = NULL
             RETURNING name, id",
            &[&names, &hosts, &groups, &settings, &tags],
        )
        .await
        .map_err(&fail)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let mut sensor_server = Vec::new();
        let mut sensor_names = Vec::new();
        let mut ports = Vec::new();
        let mut closed = Vec::new();
        let mut sensor_settings = Vec::new();
        let mut sensor_tags = Vec::new();
        for server in servers {
            let server_id = server_ids[&server.name];
            for sensor in &server.sensors {
                sensor_server.push(server_id);
                sensor_names.push(sensor.name.as_str());
                ports.push(i64::from(sensor.port));
                closed.push(sensor.expect_closed);
                sensor_settings.push(to_json(&sensor.overrides));
                sensor_tags.push(to_json(&sensor.tags));
            }
        }
        let active: i64 = one(
            &tx,
            "SELECT count(*) FROM sensors s JOIN unnest($1::bigint[], $2::text[]) AS x (server_id, name)
               ON s.server_id = x.server_id AND s.name = x.name
             WHERE s.retired_at IS NULL",
            &[&sensor_server, &sensor_names],
        )
        .await
        .map_err(&fail)?
        .get(0);
        let kept_sensors: Vec<i64> = rows(
            &tx,
            "INSERT INTO sensors (server_id, name, port, expect_closed, settings, tags, managed)
             SELECT v, n, p, c, s, t, true FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::boolean[], $5::text[], $6::text[]) AS x (v, n, p, c, s, t)
             ON CONFLICT (server_id, name) DO UPDATE SET port = excluded.port, expect_closed = excluded.expect_closed,
                 settings = excluded.settings, tags = excluded.tags, managed = true, retired_at = NULL
             RETURNING id",
            &[&sensor_server, &sensor_names, &ports, &closed, &sensor_settings, &sensor_tags],
        )
        .await
        .map_err(&fail)?
        .iter()
        .map(|r| r.get(0))
        .collect();
        summary.sensors = kept_sensors.len();
        summary.added = kept_sensors.len() - active as usize;
        let kept_servers: Vec<i64> = server_ids.values().copied().collect();
        summary.removed = exec(
            &tx,
            "UPDATE sensors SET retired_at = $1 WHERE managed AND retired_at IS NULL AND id <> ALL($2)",
            &[&now, &kept_sensors],
        )
        .await
        .map_err(&fail)? as usize;
        exec(
            &tx,
            "UPDATE servers SET retired_at = $1 WHERE managed AND retired_at IS NULL AND id <> ALL($2)",
            &[&now, &kept_servers],
        )
        .await
        .map_err(&fail)?;
        // Sensors of retired servers retire with them.
        summary.removed += exec(
            &tx,
            "UPDATE sensors SET retired_at = $1 WHERE retired_at IS NULL AND server_id IN (SELECT id FROM servers WHERE retired_at IS NOT NULL)",
            &[&now],
        )
        .await
        .map_err(&fail)? as usize;
        exec(
            &tx,
            "UPDATE groups SET retired_at = $1 WHERE managed AND retired_at IS NULL AND path <> ALL($2)",
            &[&now, &group_paths],
        )
        .await
        .map_err(&fail)?;
        exec(&tx, "DELETE FROM maintenance WHERE managed", &[])
            .await
            .map_err(&fail)?;
        for window in &config.maintenance {
            exec(
                &tx,
                "INSERT INTO maintenance (name, rule, groups, servers, sensors, managed) VALUES ($1, $2, $3, $4, $5, true)",
                &[
                    &window.name,
                    &to_json(&window.rule),
                    &to_json(&window.groups),
                    &to_json(&window.servers),
                    &to_json(&window.sensors),
                ],
            )
            .await
            .map_err(&fail)?;
        }
        exec(&tx, "DELETE FROM channels WHERE managed", &[])
            .await
            .map_err(&fail)?;
        exec(&tx, "DELETE FROM rules WHERE managed", &[])
            .await
            .map_err(&fail)?;
        for channel in &config.channels {
            exec(
                &tx,
                "INSERT INTO channels (name, definition, managed) VALUES ($1, $2, true)
                 ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, managed = true",
                &[&channel.name, &to_json(channel)],
            )
            .await
            .map_err(&fail)?;
        }
        for rule in &config.rules {
            exec(
                &tx,
                "INSERT INTO rules (definition, managed) VALUES ($1, true)",
                &[&to_json(rule)],
            )
            .await
            .map_err(&fail)?;
        }
        exec(&tx, BUMP, &[]).await.map_err(&fail)?;
        tx.commit().await.map_err(&fail)?;
        Ok(summary)
    }

    async fn load(&self) -> Result<Loaded, StoreError> {
        let generation = self.generation().await?;
        let defaults: String = self
            .query_one("SELECT settings FROM defaults WHERE id = 1", &[])
            .await?
            .get(0);
        let mut groups = Vec::new();
        for r in self
            .query(
                "SELECT path, settings FROM groups WHERE retired_at IS NULL ORDER BY path COLLATE \"C\"",
                &[],
            )
            .await?
        {
            groups.push(GroupDef {
                path: r.get(0),
                overrides: self.parse(r.get(1))?,
            });
        }
        let mut servers: Vec<ServerDef> = Vec::new();
        let mut server_index = HashMap::new();
        for r in self
            .query(
                "SELECT id, name, host, group_path, settings, tags FROM servers WHERE retired_at IS NULL ORDER BY id",
                &[],
            )
            .await?
        {
            let host = parse_bare_host(r.get(2)).map_err(|e| self.damaged(e))?;
            server_index.insert(r.get::<_, i64>(0), servers.len());
            servers.push(ServerDef {
                name: r.get(1),
                host,
                group: r.get(3),
                overrides: self.parse(r.get(4))?,
                tags: self.parse(r.get(5))?,
                sensors: Vec::new(),
            });
        }
        let mut ids = HashMap::new();
        let mut paused = HashSet::new();
        for r in self
            .query(
                "SELECT id, server_id, name, port, expect_closed, settings, tags, paused FROM sensors WHERE retired_at IS NULL ORDER BY id",
                &[],
            )
            .await?
        {
            let Some(&index) = server_index.get(&r.get::<_, i64>(1)) else {
                continue;
            };
            let id: i64 = r.get(0);
            let name: String = r.get(2);
            let server = &mut servers[index];
            ids.insert(format!("{}/{name}", server.name), id);
            if r.get::<_, bool>(7) {
                paused.insert(id);
            }
            server.sensors.push(SensorDef {
                name,
                port: self.port(r.get(3))?,
                expect_closed: r.get(4),
                overrides: self.parse(r.get(5))?,
                tags: self.parse(r.get(6))?,
            });
        }
        let maintenance = self
            .windows()
            .await?
            .into_iter()
            .map(|(_, _, window)| window)
            .collect();
        let (channels, rules) = self.notifications().await?;
        Ok(Loaded {
            config: Config {
                defaults: self.parse(&defaults)?,
                groups,
                servers,
                maintenance,
                channels,
                rules,
            },
            ids,
            paused,
            generation,
        })
    }

    async fn set_paused(&self, name: String, paused: bool) -> Result<usize, StoreError> {
        let ids = self.sensor_ids(name).await?;
        let changed = self
            .edit(
                "UPDATE sensors SET paused = $1 WHERE id = ANY($2) AND paused <> $1",
                &[&paused, &ids],
            )
            .await?;
        Ok(changed as usize)
    }

    async fn sensor_ids(&self, name: String) -> Result<Vec<i64>, StoreError> {
        let name = name.trim_matches('/');
        let prefix = crate::below(name);
        let ids: Vec<i64> = self
            .query(
                "SELECT s.id FROM sensors s JOIN servers v ON v.id = s.server_id
                 WHERE s.retired_at IS NULL AND v.retired_at IS NULL
                   AND (v.name || '/' || s.name = $1 OR v.name = $1 OR v.group_path = $1 OR v.group_path LIKE $2 ESCAPE '\\')
                 ORDER BY s.id",
                &[&name, &prefix],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            return Err(StoreError::NotFound(name.to_owned()));
        }
        Ok(ids)
    }

    async fn status(&self) -> Result<Vec<StatusRow>, StoreError> {
        self.status_rows(None).await
    }

    async fn list(&self, query: StatusQuery) -> Result<Vec<Listed>, StoreError> {
        self.listed(&query).await
    }

    async fn first_found(&self, query: StatusQuery) -> Result<Vec<i64>, StoreError> {
        let (sql, values) = listing::found_sql(&query, listing::Dialect::Postgres);
        let params: Vec<Param<'_>> = values.iter().map(|v| v.pg()).collect();
        Ok(self
            .query(&sql, &params)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn tally(&self, query: StatusQuery) -> Result<Tally, StoreError> {
        let (sql, values) = listing::tally_sql(&query, listing::Dialect::Postgres);
        let params: Vec<Param<'_>> = values.iter().map(|v| v.pg()).collect();
        Ok(self
            .query(&sql, &params)
            .await?
            .iter()
            .map(|r| (r.get(0), crate::row_state(r.get(1), r.get(2)), r.get(3)))
            .collect())
    }

    async fn status_of(&self, id: i64) -> Result<StatusRow, StoreError> {
        self.status_rows(Some(id))
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn states(&self) -> Result<HashMap<i64, (State, i64)>, StoreError> {
        Ok(self
            .query("SELECT sensor_id, state, since_ms FROM sensor_status", &[])
            .await?
            .iter()
            .filter_map(|r| {
                let state = r.get::<_, &str>(1).parse().ok()?;
                Some((r.get(0), (state, r.get(2))))
            })
            .collect())
    }

    async fn last_checked(&self) -> Result<HashMap<i64, i64>, StoreError> {
        Ok(self
            .query(
                "SELECT sensor_id, last_check_ms FROM sensor_status WHERE last_check_ms IS NOT NULL",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    async fn sensor_count(&self) -> Result<usize, StoreError> {
        let count: i64 = self
            .query_one(
                "SELECT count(*) FROM sensors s JOIN servers v ON v.id = s.server_id WHERE s.retired_at IS NULL AND v.retired_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        Ok(count as usize)
    }

    async fn events(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.query(
            "SELECT sensor_id, at_ms, from_state, to_state, reason, message FROM events
             WHERE sensor_id = $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms, id",
            &[&sensor_id, &from_ms, &to_ms],
        )
        .await?
        .iter()
        .map(|r| self.event_row(r, 0))
        .collect()
    }

    async fn recent_events(
        &self,
        limit: usize,
        before_id: Option<i64>,
    ) -> Result<Vec<(i64, String, EventRow)>, StoreError> {
        self.query(
            "SELECT e.id, v.name || '/' || s.name, e.sensor_id, e.at_ms, e.from_state, e.to_state, e.reason, e.message
             FROM events e JOIN sensors s ON s.id = e.sensor_id JOIN servers v ON v.id = s.server_id
             WHERE e.id < $1 ORDER BY e.id DESC LIMIT $2",
            &[&before_id.unwrap_or(i64::MAX), &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| Ok((r.get(0), r.get(1), self.event_row(r, 2)?)))
        .collect()
    }

    async fn sensor_path(&self, id: i64) -> Result<String, StoreError> {
        self.query_opt(
            "SELECT v.name || '/' || s.name FROM sensors s JOIN servers v ON v.id = s.server_id WHERE s.id = $1 AND s.retired_at IS NULL",
            &[&id],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn state_at(&self, sensor_id: i64, at_ms: i64) -> Result<Option<State>, StoreError> {
        Ok(self
            .query_opt(
                "SELECT to_state FROM events WHERE sensor_id = $1 AND at_ms < $2 ORDER BY at_ms DESC, id DESC LIMIT 1",
                &[&sensor_id, &at_ms],
            )
            .await?
            .and_then(|r| r.get::<_, &str>(0).parse().ok()))
    }

    async fn results(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredResult>, StoreError> {
        let windows = self
            .query(
                // A row holds results of less than ROW_MS from its start:
                // the lower bound on the start lets the key skip older rows.
                "SELECT start_ms, data FROM results
                 WHERE sensor_id = $1 AND start_ms > $4 AND end_ms >= $2 AND start_ms < $3",
                &[
                    &sensor_id,
                    &from_ms,
                    &to_ms,
                    &from_ms.saturating_sub(crate::pack::ROW_MS),
                ],
            )
            .await?;
        let journal = self
            .query(
                "SELECT first_ms, data FROM journal
                 WHERE last_sensor >= $1 AND first_sensor <= $1 AND last_ms >= $2 AND first_ms < $3",
                &[&sensor_id, &from_ms, &to_ms],
            )
            .await?;
        pack::merge(
            sensor_id,
            windows.iter().map(|r| (r.get(0), r.get(1))),
            journal.iter().map(|r| (r.get(0), r.get(1))),
            from_ms..to_ms,
        )
        .map_err(|e| self.damaged(e))
    }

    async fn new_push_token(&self, sensor_id: i64, now_ms: i64) -> Result<String, StoreError> {
        let token = crate::accounts::random_token();
        self.execute(
            "INSERT INTO pushes (sensor_id, token_hash, since_ms) VALUES ($1, $2, $3)
             ON CONFLICT (sensor_id) DO UPDATE SET token_hash = excluded.token_hash, since_ms = excluded.since_ms",
            &[&sensor_id, &crate::accounts::token_hash(&token), &now_ms],
        )
        .await?;
        Ok(token)
    }

    async fn push(
        &self,
        token: String,
        push: portwatch_core::monitor::heartbeat::Push,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .query_opt(
                "UPDATE pushes SET at_ms = $2, down = $3, message = $4, duration_ms = $5
                 WHERE token_hash = $1 RETURNING sensor_id",
                &[
                    &crate::accounts::token_hash(&token),
                    &push.at_ms,
                    &push.down,
                    &push.message,
                    &push.duration_ms,
                ],
            )
            .await?
            .map(|row| row.get(0)))
    }

    async fn pushes(
        &self,
        sensor_id: i64,
    ) -> Result<Option<portwatch_core::monitor::heartbeat::Pushes>, StoreError> {
        use portwatch_core::monitor::heartbeat::{Push, Pushes};
        Ok(self
            .query_opt(
                "SELECT since_ms, at_ms, down, message, duration_ms FROM pushes WHERE sensor_id = $1",
                &[&sensor_id],
            )
            .await?
            .map(|row| Pushes {
                since_ms: row.get(0),
                last: row.get::<_, Option<i64>>(1).map(|at_ms| Push {
                    at_ms,
                    down: row.get(2),
                    message: row.get(3),
                    duration_ms: row.get(4),
                }),
            }))
    }

    async fn glances(
        &self,
        ids: Vec<i64>,
        now_ms: i64,
    ) -> Result<HashMap<i64, crate::Glance>, StoreError> {
        let (hour, day) = crate::glance_from(now_ms);
        let mut glances = HashMap::new();
        for row in self
            .query(
                "SELECT 0::bigint, sensor_id, ticks, 0::bigint, 0::bigint FROM sensor_status
                 WHERE sensor_id = ANY($1) AND ticks IS NOT NULL
                 UNION ALL
                 SELECT 1, sensor_id, NULL, sum(count)::bigint, sum(ups)::bigint FROM rollups
                 WHERE sensor_id = ANY($1) AND hour_ms >= $2 GROUP BY sensor_id
                 UNION ALL
                 SELECT 2, sensor_id, NULL, sum(count)::bigint, sum(ups)::bigint FROM daily_rollups
                 WHERE sensor_id = ANY($1) AND day_ms >= $3 GROUP BY sensor_id",
                &[&ids, &hour, &day],
            )
            .await?
        {
            crate::GlancePart {
                kind: row.get(0),
                sensor: row.get(1),
                ticks: row.get(2),
                count: row.get(3),
                ups: row.get(4),
            }
            .add_to(&mut glances);
        }
        Ok(glances)
    }

    async fn rollups(
        &self,
        sensor_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Rollup)>, StoreError> {
        let u32_of = |value: i64| u32::try_from(value).map_err(|_| self.damaged(value));
        let optional = |value: Option<i64>| value.map(u32_of).transpose();
        self.query(
            "SELECT hour_ms, count, ups, min_us, avg_us, max_us, p95_us FROM rollups
             WHERE sensor_id = $1 AND hour_ms >= $2 AND hour_ms < $3 ORDER BY hour_ms",
            &[&sensor_id, &from_ms, &to_ms],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.get(0),
                Rollup {
                    count: u32_of(r.get(1))?,
                    ups: u32_of(r.get(2))?,
                    min_us: optional(r.get(3))?,
                    avg_us: optional(r.get(4))?,
                    max_us: optional(r.get(5))?,
                    p95_us: optional(r.get(6))?,
                },
            ))
        })
        .collect()
    }

    async fn sensor_report(
        &self,
        id: i64,
        path: String,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<SensorReport, StoreError> {
        crate::storage::report_of(self, id, path, from_ms, to_ms, crate::Detail::Raw).await
    }

    async fn sensor_reports(
        &self,
        ids: Vec<i64>,
        from_ms: i64,
        to_ms: i64,
        detail: crate::Detail,
    ) -> Result<Vec<SensorReport>, StoreError> {
        let mut reports = Vec::with_capacity(ids.len());
        for id in ids {
            let path = self.sensor_path(id).await?;
            reports.push(crate::storage::report_of(self, id, path, from_ms, to_ms, detail).await?);
        }
        Ok(reports)
    }

    async fn result_footprint(&self) -> Result<(i64, i64), StoreError> {
        let r = self
            .query_one(
                "SELECT (SELECT coalesce(sum(count), 0) FROM results)::bigint + (SELECT coalesce(sum(count), 0) FROM journal)::bigint,
                        (SELECT coalesce(sum(octet_length(data)), 0) FROM results)::bigint + (SELECT coalesce(sum(octet_length(data)), 0) FROM journal)::bigint",
                &[],
            )
            .await?;
        Ok((r.get(0), r.get(1)))
    }

    async fn user_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .query_one("SELECT count(*) FROM users", &[])
            .await?
            .get(0))
    }

    async fn create_user(
        &self,
        name: String,
        password: String,
        role: Role,
    ) -> Result<(), StoreError> {
        Store::check_names("the user name", [name.as_str()])?;
        let taken: bool = self
            .query_one("SELECT count(*) > 0 FROM users WHERE name = $1", &[&name])
            .await?
            .get(0);
        if taken {
            return Err(StoreError::Conflict(format!(
                "a user named '{name}' already exists: choose another name"
            )));
        }
        let hash = blocking(move || hash_password(&password)).await;
        // Two processes creating one name at once: one of them is told.
        let inserted = self
            .execute(
                "INSERT INTO users (name, password_hash, role, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &hash, &role.as_str(), &now_ms()],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "a user named '{name}' already exists: choose another name"
            )));
        }
        Ok(())
    }

    async fn login(&self, name: String, password: String) -> Result<Option<String>, StoreError> {
        let user = self
            .query_opt(
                "SELECT id, password_hash FROM users WHERE name = $1 AND disabled_ms IS NULL",
                &[&name],
            )
            .await?
            .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)));
        // An unknown name costs the same time as a wrong password, so
        // timing does not tell which names exist.
        let (id, stored) = match user {
            Some((id, stored)) => (Some(id), Some(stored)),
            None => (None, None),
        };
        let matches = blocking(move || match stored {
            Some(stored) => verify_password(&password, &stored),
            None => {
                let _ = verify_password(&password, crate::accounts::dummy_hash());
                false
            }
        })
        .await;
        let Some(id) = id.filter(|_| matches) else {
            return Ok(None);
        };
        let token = random_token();
        let now = now_ms();
        self.execute("DELETE FROM sessions WHERE expires_ms < $1", &[&now])
            .await?;
        self.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, expires_ms) VALUES ($1, $2, $3, $4)",
            &[
                &token_hash(&token),
                &id,
                &random_token(),
                &(now + SESSION_MS),
            ],
        )
        .await?;
        Ok(Some(token))
    }

    async fn session(&self, token: String) -> Result<Option<Account>, StoreError> {
        Ok(self
            .query_opt(
                "SELECT u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = $1 AND s.expires_ms > $2 AND u.disabled_ms IS NULL",
                &[&token_hash(&token), &now_ms()],
            )
            .await?
            .map(|r| Account {
                name: r.get(0),
                role: Role::parse(r.get(1)),
                csrf: r.get(2),
            }))
    }

    async fn logout(&self, token: String) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM sessions WHERE token_hash = $1",
            &[&token_hash(&token)],
        )
        .await?;
        Ok(())
    }

    async fn create_token(&self, name: String, scope: Role) -> Result<String, StoreError> {
        Store::check_names("the token name", [name.as_str()])?;
        let taken: bool = self
            .query_one(
                "SELECT count(*) > 0 FROM api_tokens WHERE name = $1",
                &[&name],
            )
            .await?
            .get(0);
        if taken {
            return Err(StoreError::Conflict(format!(
                "an API token named '{name}' already exists: choose another name, or revoke it first (portwatch access revoke {name})"
            )));
        }
        let token = format!("pw_{}", random_token());
        self.execute(
            "INSERT INTO api_tokens (name, token_hash, scope, created_ms) VALUES ($1, $2, $3, $4)",
            &[&name, &token_hash(&token), &scope.as_str(), &now_ms()],
        )
        .await?;
        Ok(token)
    }

    async fn token(&self, token: String) -> Result<Option<Account>, StoreError> {
        Ok(self
            .query_opt(
                "SELECT name, scope FROM api_tokens WHERE token_hash = $1",
                &[&token_hash(&token)],
            )
            .await?
            .map(|r| Account {
                name: r.get(0),
                role: Role::parse(r.get(1)),
                csrf: String::new(),
            }))
    }

    async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        Ok(self
            .query(
                "SELECT name, role, created_ms, disabled_ms FROM users ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await?
            .iter()
            .map(|r| UserRow {
                name: r.get(0),
                role: Role::parse(r.get(1)),
                created_ms: r.get(2),
                disabled_ms: r.get(3),
            })
            .collect())
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        Ok(self
            .query(
                "SELECT name, scope, created_ms FROM api_tokens ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await?
            .iter()
            .map(|r| TokenRow {
                name: r.get(0),
                scope: Role::parse(r.get(1)),
                created_ms: r.get(2),
            })
            .collect())
    }

    async fn revoke_token(&self, name: String) -> Result<(), StoreError> {
        let removed = self
            .execute("DELETE FROM api_tokens WHERE name = $1", &[&name])
            .await?;
        if removed == 0 {
            return Err(StoreError::Conflict(format!(
                "no API token named '{name}' (see portwatch access list)"
            )));
        }
        Ok(())
    }

    async fn set_password(&self, name: String, password: String) -> Result<(), StoreError> {
        let hash = blocking(move || hash_password(&password)).await;
        let changed = self
            .execute(
                "UPDATE users SET password_hash = $2 WHERE name = $1",
                &[&name, &hash],
            )
            .await?;
        self.end_sessions(&name, changed).await
    }

    async fn set_disabled(&self, name: String, disabled: bool) -> Result<(), StoreError> {
        let at = disabled.then(now_ms);
        let changed = self
            .execute(
                "UPDATE users SET disabled_ms = $2 WHERE name = $1",
                &[&name, &at],
            )
            .await?;
        self.end_sessions(&name, changed).await
    }

    async fn save_status_page(&self, page: StatusPage) -> Result<(), StoreError> {
        crate::accounts::check_status_page(&page)?;
        for name in &page.names {
            self.sensor_ids(name.clone()).await?;
        }
        self.execute(
            "INSERT INTO status_pages (slug, title, sensors, logo, link) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (slug) DO UPDATE SET title = excluded.title, sensors = excluded.sensors,
                 logo = excluded.logo, link = excluded.link",
            &[&page.slug, &page.title, &to_json(&page.names), &page.logo, &page.link],
        )
        .await?;
        Ok(())
    }

    async fn status_pages(&self) -> Result<Vec<StatusPage>, StoreError> {
        self.query(
            "SELECT slug, title, sensors, logo, link FROM status_pages ORDER BY slug COLLATE \"C\"",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(StatusPage {
                slug: r.get(0),
                title: r.get(1),
                names: self.parse(r.get(2))?,
                logo: r.get(3),
                link: r.get(4),
            })
        })
        .collect()
    }

    async fn delete_status_page(&self, slug: String) -> Result<(), StoreError> {
        self.execute("DELETE FROM status_pages WHERE slug = $1", &[&slug])
            .await?;
        Ok(())
    }

    async fn add_sensor(
        &self,
        server: String,
        host: Host,
        port: u16,
        name: String,
        overrides: Overrides,
    ) -> Result<i64, StoreError> {
        Store::check_names("the server name", [server.as_str()])?;
        Store::check_names("the sensor name", [name.as_str()])?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.fail())?;
        let existing: Option<String> = opt(
            &tx,
            "SELECT host FROM servers WHERE name = $1 AND retired_at IS NULL",
            &[&server],
        )
        .await
        .map_err(self.fail())?
        .map(|r| r.get(0));
        if let Some(existing) = existing.filter(|h| *h != host.to_string()) {
            return Err(StoreError::Conflict(format!(
                "the server '{server}' has the host {existing}, not {host}: leave the host out, give {existing}, or change the server's host first"
            )));
        }
        let server_id: i64 = one(
            &tx,
            "INSERT INTO servers (name, host) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET retired_at = NULL RETURNING id",
            &[&server, &host.to_string()],
        )
        .await
        .map_err(self.fail())?
        .get(0);
        let id: i64 = one(
            &tx,
            "INSERT INTO sensors (server_id, name, port, settings) VALUES ($1, $2, $3, $4)
             ON CONFLICT (server_id, name) DO UPDATE SET port = excluded.port, settings = excluded.settings, retired_at = NULL RETURNING id",
            &[&server_id, &name, &i64::from(port), &to_json(&overrides)],
        )
        .await
        .map_err(self.fail())?
        .get(0);
        exec(&tx, BUMP, &[]).await.map_err(self.fail())?;
        tx.commit().await.map_err(self.fail())?;
        Ok(id)
    }

    async fn sensor_settings(&self, id: i64) -> Result<(u16, bool, Overrides, bool), StoreError> {
        let r = self
            .query_opt(
                "SELECT port, expect_closed, settings, managed FROM sensors WHERE id = $1 AND retired_at IS NULL",
                &[&id],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        Ok((
            self.port(r.get(0))?,
            r.get(1),
            self.parse(r.get(2))?,
            r.get(3),
        ))
    }

    async fn update_sensor(
        &self,
        id: i64,
        port: u16,
        expect_closed: bool,
        overrides: Overrides,
    ) -> Result<(), StoreError> {
        let (_, _, _, managed) = self.sensor_settings(id).await?;
        if managed {
            return Err(StoreError::Conflict(
                "this sensor is declared in the configuration file: change it there".into(),
            ));
        }
        self.check_dependency(&overrides).await?;
        let sensor_path = self.sensor_path(id).await?;
        self.refuse_cycle(|config| {
            crate::edit::set_sensor_overrides(config, &sensor_path, &overrides)
        })
        .await?;
        self.edit(
            "UPDATE sensors SET port = $2, expect_closed = $3, settings = $4 WHERE id = $1",
            &[&id, &i64::from(port), &expect_closed, &to_json(&overrides)],
        )
        .await?;
        Ok(())
    }

    async fn retire_sensor(&self, id: i64) -> Result<(), StoreError> {
        let (_, _, _, managed) = self.sensor_settings(id).await?;
        if managed {
            return Err(StoreError::Conflict(
                "this sensor is declared in the configuration file: remove it there".into(),
            ));
        }
        self.edit(
            "UPDATE sensors SET retired_at = $2 WHERE id = $1",
            &[&id, &now_ms()],
        )
        .await?;
        Ok(())
    }

    async fn save_group(&self, path: String, overrides: Overrides) -> Result<(), StoreError> {
        let path = crate::edit::group_path(&path)?;
        if let Some((parent, _)) = path.rsplit_once('/')
            && !self.group_exists(parent).await?
        {
            return Err(StoreError::Conflict(format!(
                "create the parent group '{parent}' first"
            )));
        }
        self.check_dependency(&overrides).await?;
        self.refuse_managed("groups", "path", path).await?;
        self.refuse_cycle(
            |config| match config.groups.iter_mut().find(|g| g.path == path) {
                Some(group) => group.overrides = overrides.clone(),
                None => config.groups.push(GroupDef {
                    path: path.to_owned(),
                    overrides: overrides.clone(),
                }),
            },
        )
        .await?;
        self.edit(
            "INSERT INTO groups (path, settings) VALUES ($1, $2)
             ON CONFLICT (path) DO UPDATE SET settings = excluded.settings, retired_at = NULL",
            &[&path, &to_json(&overrides)],
        )
        .await?;
        Ok(())
    }

    async fn save_server(
        &self,
        name: String,
        host: Host,
        group: Option<String>,
        overrides: Overrides,
        tags: Vec<String>,
    ) -> Result<(), StoreError> {
        let name = crate::edit::server_name(&name, group.as_deref(), &tags)?;
        if let Some(group) = &group
            && !self.group_exists(group).await?
        {
            return Err(StoreError::Conflict(format!("there is no group '{group}'")));
        }
        self.check_dependency(&overrides).await?;
        self.refuse_managed("servers", "name", name).await?;
        self.refuse_cycle(|config| {
            if let Some(server) = config.servers.iter_mut().find(|s| s.name == name) {
                server.overrides = overrides.clone();
                server.group = group.clone();
            }
        })
        .await?;
        self.edit(
            "INSERT INTO servers (name, host, group_path, settings, tags) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET host = excluded.host, group_path = excluded.group_path,
                 settings = excluded.settings, tags = excluded.tags, retired_at = NULL",
            &[&name, &host.to_string(), &group, &to_json(&overrides), &to_json(&tags)],
        )
        .await?;
        Ok(())
    }

    async fn retire(&self, kind: String, name: String) -> Result<(), StoreError> {
        let now = now_ms();
        let changed = if kind == "group" {
            self.refuse_managed("groups", "path", &name).await?;
            let used: bool = self
                .query_one(
                    "SELECT count(*) > 0 FROM servers WHERE retired_at IS NULL AND (group_path = $1 OR group_path LIKE $1 || '/%')",
                    &[&name],
                )
                .await?
                .get(0);
            if used {
                return Err(StoreError::Conflict(format!(
                    "group '{name}' still holds servers: move or delete them first"
                )));
            }
            self.edit(
                "UPDATE groups SET retired_at = $2 WHERE path = $1 AND retired_at IS NULL",
                &[&name, &now],
            )
            .await?
        } else {
            self.refuse_managed("servers", "name", &name).await?;
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(self.fail())?;
            exec(
                &tx,
                "UPDATE sensors SET retired_at = $2 WHERE retired_at IS NULL AND server_id = (SELECT id FROM servers WHERE name = $1)",
                &[&name, &now],
            )
            .await
            .map_err(self.fail())?;
            let changed = exec(
                &tx,
                "UPDATE servers SET retired_at = $2 WHERE name = $1 AND retired_at IS NULL",
                &[&name, &now],
            )
            .await
            .map_err(self.fail())?;
            exec(&tx, BUMP, &[]).await.map_err(self.fail())?;
            tx.commit().await.map_err(self.fail())?;
            changed
        };
        if changed == 0 {
            return Err(StoreError::NotFound(name));
        }
        Ok(())
    }

    async fn add_window(&self, window: WindowDef) -> Result<(), StoreError> {
        for name in window
            .groups
            .iter()
            .chain(&window.servers)
            .chain(&window.sensors)
        {
            self.sensor_ids(name.clone()).await?;
        }
        self.edit(
            "INSERT INTO maintenance (name, rule, groups, servers, sensors) VALUES ($1, $2, $3, $4, $5)",
            &[
                &window.name,
                &to_json(&window.rule),
                &to_json(&window.groups),
                &to_json(&window.servers),
                &to_json(&window.sensors),
            ],
        )
        .await?;
        Ok(())
    }

    async fn windows(&self) -> Result<Vec<(i64, bool, WindowDef)>, StoreError> {
        self.query(
            "SELECT id, managed, name, rule, groups, servers, sensors FROM maintenance ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            let name: String = r.get(2);
            let rule: WindowRule = serde_json::from_str(r.get(3))
                .map_err(|e| self.damaged(format!("window {name}: {e}")))?;
            Ok((
                r.get(0),
                r.get(1),
                WindowDef {
                    name,
                    rule,
                    groups: self.parse(r.get(4))?,
                    servers: self.parse(r.get(5))?,
                    sensors: self.parse(r.get(6))?,
                },
            ))
        })
        .collect()
    }

    async fn delete_window(&self, id: i64) -> Result<(), StoreError> {
        let changed = self
            .edit(
                "DELETE FROM maintenance WHERE id = $1 AND NOT managed",
                &[&id],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Conflict(
                "no such window, or it is declared in the configuration file".into(),
            ));
        }
        Ok(())
    }

    async fn config_items(&self, servers: bool) -> Result<Vec<ConfigItem>, StoreError> {
        let sql = if servers {
            "SELECT name, host, coalesce(group_path, ''), settings, managed FROM servers WHERE retired_at IS NULL ORDER BY name COLLATE \"C\""
        } else {
            "SELECT path, '', '', settings, managed FROM groups WHERE retired_at IS NULL ORDER BY path COLLATE \"C\""
        };
        self.query(sql, &[])
            .await?
            .iter()
            .map(|r| {
                Ok(ConfigItem {
                    name: r.get(0),
                    host: r.get(1),
                    group: r.get(2),
                    overrides: self.parse(r.get(3))?,
                    managed: r.get(4),
                })
            })
            .collect()
    }

    async fn notifications(&self) -> Result<(Vec<ChannelDef>, Vec<RuleDef>), StoreError> {
        Ok((
            self.channels().await?.into_iter().map(|c| c.def).collect(),
            self.rules().await?.into_iter().map(|r| r.def).collect(),
        ))
    }

    async fn due_notifications(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        self.query(
            "SELECT id, channel, payload, attempts FROM outbox
             WHERE delivered_ms IS NULL AND cancelled_ms IS NULL AND next_ms <= $1
             ORDER BY id LIMIT $2",
            &[&now_ms, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| self.pending(r))
        .collect()
    }

    async fn claim_notifications(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: usize,
        busy: Vec<String>,
        node: Option<i64>,
    ) -> Result<Vec<Pending>, StoreError> {
        // Claimable: due, and not claimed, or claimed by a claim that
        // ended, or by a node whose lease lapsed. A row another process
        // claimed meanwhile is re-read after its lock is released, and is
        // then no longer claimable: each row goes to one claimer.
        macro_rules! claimable {
            () => {
                "delivered_ms IS NULL AND cancelled_ms IS NULL AND next_ms <= $1
                 AND (claimed_by IS NULL AND coalesce(claim_until_ms, 0) <= $1
                      OR claimed_by IS NOT NULL AND (claim_until_ms <= $1
                          OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = o.claimed_by AND n.expires_at > now())))"
            };
        }
        let mut due = self
            .query(
                concat!(
                    "UPDATE outbox o SET claimed_by = $5, claim_until_ms = $4
                     WHERE id IN (SELECT id FROM outbox o WHERE ",
                    claimable!(),
                    " AND channel <> ALL($3) ORDER BY id LIMIT $2) AND ",
                    claimable!(),
                    " RETURNING id, channel, payload, attempts"
                ),
                &[&now_ms, &(limit as i64), &busy, &until_ms, &node],
            )
            .await?
            .iter()
            .map(|r| self.pending(r))
            .collect::<Result<Vec<_>, _>>()?;
        due.sort_unstable_by_key(|p| p.id);
        Ok(due)
    }

    async fn release_notifications(&self, ids: Vec<i64>, next_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET next_ms = $2, claimed_by = NULL, claim_until_ms = NULL WHERE id = ANY($1) AND delivered_ms IS NULL AND cancelled_ms IS NULL",
            &[&ids, &next_ms],
        )
        .await?;
        Ok(())
    }

    async fn delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET delivered_ms = $2, attempts = attempts + 1, last_error = NULL WHERE id = $1",
            &[&id, &now_ms],
        )
        .await?;
        Ok(())
    }

    async fn delivery_abandoned(
        &self,
        id: i64,
        error: String,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, failed_ms = $3, cancelled_ms = $3 WHERE id = $1",
            &[&id, &error, &now_ms],
        )
        .await?;
        Ok(())
    }

    async fn delivery_failed(
        &self,
        id: i64,
        error: String,
        next_ms: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_ms = $3, claimed_by = NULL, claim_until_ms = NULL WHERE id = $1",
            &[&id, &error, &next_ms],
        )
        .await?;
        Ok(())
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.query(
            "SELECT id, channel, payload, attempts, delivered_ms, last_error, created_ms, held, cancelled_ms, failed_ms
             FROM outbox ORDER BY id DESC LIMIT $1",
            &[&(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| {
            let payload: Payload = self.parse(r.get(2))?;
            Ok(OutboxRow {
                id: r.get(0),
                channel: r.get(1),
                sensor: payload.sensor,
                to: payload.to,
                kind: payload.kind,
                text: payload.text,
                created_ms: r.get(6),
                held: r.get(7),
                cancelled_ms: r.get(8),
                failed_ms: r.get(9),
                attempts: r.get::<_, i64>(3) as u32,
                delivered_ms: r.get(4),
                last_error: r.get(5),
            })
        })
        .collect()
    }

    async fn undelivered(&self) -> Result<i64, StoreError> {
        Ok(self
            .query_one(
                "SELECT count(*) FROM outbox WHERE delivered_ms IS NULL AND cancelled_ms IS NULL",
                &[],
            )
            .await?
            .get(0))
    }

    async fn channel(&self, name: String) -> Result<Option<ChannelDef>, StoreError> {
        self.query_opt("SELECT definition FROM channels WHERE name = $1", &[&name])
            .await?
            .map(|r| self.parse(r.get(0)))
            .transpose()
    }

    async fn channels(&self) -> Result<Vec<StoredChannel>, StoreError> {
        self.query(
            "SELECT definition, managed FROM channels ORDER BY name COLLATE \"C\"",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(StoredChannel {
                def: self.parse(r.get(0))?,
                managed: r.get(1),
            })
        })
        .collect()
    }

    async fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        self.query("SELECT id, definition, managed FROM rules ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| {
                Ok(StoredRule {
                    id: r.get(0),
                    def: self.parse(r.get(1))?,
                    managed: r.get(2),
                })
            })
            .collect()
    }

    async fn save_channel(&self, def: ChannelDef) -> Result<(), StoreError> {
        Store::check_names("the channel name", [def.name.as_str()])?;
        let managed = self
            .query_opt("SELECT managed FROM channels WHERE name = $1", &[&def.name])
            .await?
            .map(|r| r.get::<_, bool>(0));
        if managed == Some(true) {
            return Err(StoreError::Conflict(format!(
                "the channel '{}' is declared in portwatch.toml: change it there and apply",
                def.name
            )));
        }
        self.edit(
            "INSERT INTO channels (name, definition, managed) VALUES ($1, $2, false)
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, managed = false",
            &[&def.name, &to_json(&def)],
        )
        .await?;
        Ok(())
    }

    async fn delete_channel(&self, name: String) -> Result<(), StoreError> {
        let Some(channel) = self
            .channels()
            .await?
            .into_iter()
            .find(|c| c.def.name == name)
        else {
            return Err(StoreError::NotFound(name));
        };
        if channel.managed {
            return Err(StoreError::Conflict(format!(
                "the channel '{name}' is declared in portwatch.toml: remove it there and apply"
            )));
        }
        if self.rules().await?.iter().any(|r| r.def.channel == name) {
            return Err(StoreError::Conflict(format!(
                "rules still send to '{name}': delete them first"
            )));
        }
        self.edit("DELETE FROM channels WHERE name = $1", &[&name])
            .await?;
        Ok(())
    }

    async fn add_rule(&self, def: RuleDef) -> Result<i64, StoreError> {
        let id: i64 = self
            .query_one(
                "INSERT INTO rules (definition, managed) VALUES ($1, false) RETURNING id",
                &[&to_json(&def)],
            )
            .await?
            .get(0);
        self.bump().await?;
        Ok(id)
    }

    async fn delete_rule(&self, id: i64) -> Result<(), StoreError> {
        let Some(rule) = self.rules().await?.into_iter().find(|r| r.id == id) else {
            return Err(StoreError::NotFound(format!("rule {id}")));
        };
        if rule.managed {
            return Err(StoreError::Conflict(format!(
                "rule {id} is declared in portwatch.toml: remove it there and apply"
            )));
        }
        self.edit("DELETE FROM rules WHERE id = $1", &[&id]).await?;
        Ok(())
    }
}
