//! Notification channels and rules as stored, and the outbox: every
//! notification waiting for delivery, written in the same transaction as
//! the event that caused it.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use portwatch_core::notify::{ChannelDef, Payload, RuleDef};

/// A notification waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Outbox row id.
    pub id: i64,
    /// The channel's name.
    pub channel: String,
    /// What to send.
    pub payload: Payload,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// One outbox row, for the API and tests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// The channel.
    pub channel: String,
    /// The sensor.
    pub sensor: String,
    /// The new state.
    pub to: String,
    /// Why it was sent: change, escalation, repeat, flapping, summary.
    pub kind: portwatch_core::notify::Kind,
    /// The one-line text sent.
    pub text: String,
    /// When it was written.
    pub created_ms: i64,
    /// Held until the sensor's dependency has been re-checked.
    pub held: bool,
    /// When it was cancelled (its dependency turned out to be down).
    pub cancelled_ms: Option<i64>,
    /// When it failed for good (an error that no retry can mend).
    pub failed_ms: Option<i64>,
    /// Attempts so far (failed ones, plus the delivering one).
    pub attempts: u32,
    /// When it was delivered.
    pub delivered_ms: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
}

impl Store {
    /// Replaces the file-managed channels and rules (called by `apply`).
    pub(super) fn apply_notifications(
        tx: &rusqlite::Transaction<'_>,
        channels: &[ChannelDef],
        rules: &[RuleDef],
    ) -> Result<(), rusqlite::Error> {
        tx.execute("DELETE FROM channels WHERE managed = 1", [])?;
        tx.execute("DELETE FROM rules WHERE managed = 1", [])?;
        for channel in channels {
            tx.execute(
                "INSERT OR REPLACE INTO channels (name, definition, managed) VALUES (?1, ?2, 1)",
                params![
                    channel.name,
                    serde_json::to_string(channel).expect("a channel serialises")
                ],
            )?;
        }
        for rule in rules {
            tx.execute(
                "INSERT INTO rules (definition, managed) VALUES (?1, 1)",
                [serde_json::to_string(rule).expect("a rule serialises")],
            )?;
        }
        Ok(())
    }

    /// The channels and rules, without where they were declared.
    pub fn notifications(&self) -> Result<(Vec<ChannelDef>, Vec<RuleDef>), StoreError> {
        Ok((
            self.channels()?.into_iter().map(|c| c.def).collect(),
            self.rules()?.into_iter().map(|r| r.def).collect(),
        ))
    }

    /// Notifications due for an attempt at `now_ms`, oldest first.
    pub fn due_notifications(&self, now_ms: i64, limit: usize) -> Result<Vec<Pending>, StoreError> {
        self.due_notifications_except(now_ms, limit, &[])
    }

    /// Notifications due for an attempt at `now_ms`, oldest first, leaving
    /// out the channels in `busy` (their deliveries are under way).
    pub fn due_notifications_except(
        &self,
        now_ms: i64,
        limit: usize,
        busy: &[String],
    ) -> Result<Vec<Pending>, StoreError> {
        let busy = serde_json::to_string(busy).expect("names serialise");
        let mut statement = self
            .conn
            .prepare("SELECT id, channel, payload, attempts FROM outbox WHERE delivered_ms IS NULL AND cancelled_ms IS NULL AND next_ms <= ?1 AND channel NOT IN (SELECT value FROM json_each(?3)) ORDER BY id LIMIT ?2")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map(params![now_ms, limit as i64, busy], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                ))
            })
            .map_err(self.sqlite())?;
        let mut due = Vec::new();
        for row in rows {
            let (id, channel, payload, attempts) = row.map_err(self.sqlite())?;
            let payload = serde_json::from_str(&payload)
                .map_err(|e| StoreError::Damaged(self.path.clone(), e.to_string()))?;
            due.push(Pending {
                id,
                channel,
                payload,
                attempts,
            });
        }
        Ok(due)
    }

    /// The notifications due at `now_ms` for the delivery worker (see
    /// [`Storage::claim_notifications`](crate::Storage::claim_notifications)):
    /// one process has a SQLite store, and its worker keeps its channels
    /// apart by itself, so nothing is held back; after a crash, what was
    /// being sent is due at once.
    pub fn claim_notifications(
        &self,
        now_ms: i64,
        _until_ms: i64,
        limit: usize,
        busy: &[String],
    ) -> Result<Vec<Pending>, StoreError> {
        self.due_notifications_except(now_ms, limit, busy)
    }

    /// Sets undelivered notifications due at `next_ms`.
    pub fn release_notifications(&self, ids: &[i64], next_ms: i64) -> Result<(), StoreError> {
        let ids = serde_json::to_string(ids).expect("ids serialise");
        self.conn
            .execute(
                "UPDATE outbox SET next_ms = ?2 WHERE id IN (SELECT value FROM json_each(?1)) AND delivered_ms IS NULL AND cancelled_ms IS NULL",
                params![ids, next_ms],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// Records a delivery.
    pub fn delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE outbox SET delivered_ms = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1", params![id, now_ms])
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// Records an attempt that failed for good: the notification leaves the
    /// queue (it is never retried) and keeps the reason.
    pub fn delivery_abandoned(&self, id: i64, error: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?2, failed_ms = ?3, cancelled_ms = ?3 WHERE id = ?1", params![id, error, now_ms])
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn delivery_failed(&self, id: i64, error: &str, next_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_ms = ?3 WHERE id = ?1", params![id, error, next_ms])
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// The latest outbox rows, newest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, channel, payload, attempts, delivered_ms, last_error, created_ms, held, cancelled_ms, failed_ms FROM outbox ORDER BY id DESC LIMIT ?1")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, bool>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                ))
            })
            .map_err(self.sqlite())?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                channel,
                payload,
                attempts,
                delivered_ms,
                last_error,
                created_ms,
                held,
                cancelled_ms,
                failed_ms,
            ) = row.map_err(self.sqlite())?;
            let payload: Payload = serde_json::from_str(&payload)
                .map_err(|e| StoreError::Damaged(self.path.clone(), e.to_string()))?;
            out.push(OutboxRow {
                id,
                channel,
                sensor: payload.sensor,
                to: payload.to,
                kind: payload.kind,
                text: payload.text,
                created_ms,
                held,
                cancelled_ms,
                failed_ms,
                attempts,
                delivered_ms,
                last_error,
            });
        }
        Ok(out)
    }

    /// How many notifications wait for delivery.
    pub fn undelivered(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM outbox WHERE delivered_ms IS NULL AND cancelled_ms IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(self.sqlite())
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Result<Option<ChannelDef>, StoreError> {
        let definition: Option<String> = self
            .conn
            .query_row(
                "SELECT definition FROM channels WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sqlite())?;
        definition
            .map(|d| {
                serde_json::from_str(&d)
                    .map_err(|e| StoreError::Damaged(self.path.clone(), e.to_string()))
            })
            .transpose()
    }
}

/// A channel as listed: where it was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChannel {
    /// Declared in portwatch.toml (edited there, not in the web interface).
    pub managed: bool,
    /// The channel.
    pub def: ChannelDef,
}

/// A rule as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    /// Row id.
    pub id: i64,
    /// Declared in portwatch.toml.
    pub managed: bool,
    /// The rule.
    pub def: RuleDef,
}

impl Store {
    /// Every channel, with where it was declared.
    pub fn channels(&self) -> Result<Vec<StoredChannel>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT definition, managed FROM channels ORDER BY name")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))
            .map_err(self.sqlite())?;
        let mut out = Vec::new();
        for row in rows {
            let (definition, managed) = row.map_err(self.sqlite())?;
            let def = serde_json::from_str(&definition)
                .map_err(|e| StoreError::Damaged(self.path.clone(), e.to_string()))?;
            out.push(StoredChannel { managed, def });
        }
        Ok(out)
    }

    /// Every rule, with its id and where it was declared.
    pub fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, definition, managed FROM rules ORDER BY id")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })
            .map_err(self.sqlite())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, definition, managed) = row.map_err(self.sqlite())?;
            let def = serde_json::from_str(&definition)
                .map_err(|e| StoreError::Damaged(self.path.clone(), e.to_string()))?;
            out.push(StoredRule { id, managed, def });
        }
        Ok(out)
    }

    /// Adds or replaces a channel made in the web interface or API. One
    /// declared in portwatch.toml is edited there.
    pub fn save_channel(&self, def: &ChannelDef) -> Result<(), StoreError> {
        Store::check_names("the channel name", [def.name.as_str()])?;
        let managed: Option<bool> = self
            .conn
            .query_row(
                "SELECT managed FROM channels WHERE name = ?1",
                [&def.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sqlite())?;
        if managed == Some(true) {
            return Err(StoreError::Conflict(format!(
                "the channel '{}' is declared in portwatch.toml: change it there and apply",
                def.name
            )));
        }
        self.conn
            .execute(
                "INSERT OR REPLACE INTO channels (name, definition, managed) VALUES (?1, ?2, 0)",
                params![
                    def.name,
                    serde_json::to_string(def).expect("a channel serialises")
                ],
            )
            .map_err(self.sqlite())?;
        self.bump_generation()
    }

    /// Deletes a channel made in the web interface or API, unless a rule
    /// still uses it.
    pub fn delete_channel(&self, name: &str) -> Result<(), StoreError> {
        let Some(channel) = self.channels()?.into_iter().find(|c| c.def.name == name) else {
            return Err(StoreError::NotFound(name.to_owned()));
        };
        if channel.managed {
            return Err(StoreError::Conflict(format!(
                "the channel '{name}' is declared in portwatch.toml: remove it there and apply"
            )));
        }
        if self.rules()?.iter().any(|r| r.def.channel == name) {
            return Err(StoreError::Conflict(format!(
                "rules still send to '{name}': delete them first"
            )));
        }
        self.conn
            .execute("DELETE FROM channels WHERE name = ?1", [name])
            .map_err(self.sqlite())?;
        self.bump_generation()
    }

    /// Adds a rule made in the web interface or API; returns its id.
    pub fn add_rule(&self, def: &RuleDef) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO rules (definition, managed) VALUES (?1, 0)",
                [serde_json::to_string(def).expect("a rule serialises")],
            )
            .map_err(self.sqlite())?;
        let id = self.conn.last_insert_rowid();
        self.bump_generation()?;
        Ok(id)
    }

    /// Deletes a rule made in the web interface or API.
    pub fn delete_rule(&self, id: i64) -> Result<(), StoreError> {
        let Some(rule) = self.rules()?.into_iter().find(|r| r.id == id) else {
            return Err(StoreError::NotFound(format!("rule {id}")));
        };
        if rule.managed {
            return Err(StoreError::Conflict(format!(
                "rule {id} is declared in portwatch.toml: remove it there and apply"
            )));
        }
        self.conn
            .execute("DELETE FROM rules WHERE id = ?1", [id])
            .map_err(self.sqlite())?;
        self.bump_generation()
    }
}
