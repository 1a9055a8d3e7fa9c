//! Versioned schema migrations, driven by SQLite's `user_version`.

use rusqlite::Connection;

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = 12;

/// Migrations, in order; migration `i` takes the schema from version `i` to
/// `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: configuration, states, events, raw results and rollups.
    "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta VALUES ('config_generation', 0);

    CREATE TABLE groups (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        settings TEXT NOT NULL DEFAULT '{}',
        managed INTEGER NOT NULL DEFAULT 0,
        retired_at INTEGER
    );
    CREATE TABLE servers (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        host TEXT NOT NULL,
        group_path TEXT,
        settings TEXT NOT NULL DEFAULT '{}',
        tags TEXT NOT NULL DEFAULT '[]',
        managed INTEGER NOT NULL DEFAULT 0,
        retired_at INTEGER
    );
    CREATE TABLE sensors (
        id INTEGER PRIMARY KEY,
        server_id INTEGER NOT NULL REFERENCES servers(id),
        name TEXT NOT NULL,
        port INTEGER NOT NULL,
        expect_closed INTEGER NOT NULL DEFAULT 0,
        settings TEXT NOT NULL DEFAULT '{}',
        tags TEXT NOT NULL DEFAULT '[]',
        paused INTEGER NOT NULL DEFAULT 0,
        managed INTEGER NOT NULL DEFAULT 0,
        retired_at INTEGER,
        UNIQUE (server_id, name)
    );
    CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        rule TEXT NOT NULL,
        groups TEXT NOT NULL DEFAULT '[]',
        servers TEXT NOT NULL DEFAULT '[]',
        sensors TEXT NOT NULL DEFAULT '[]',
        managed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE defaults (id INTEGER PRIMARY KEY CHECK (id = 1), settings TEXT NOT NULL);
    INSERT INTO defaults VALUES (1, '{}');

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        sensor_id INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        reason TEXT,
        message TEXT NOT NULL
    );
    CREATE INDEX events_by_sensor ON events (sensor_id, at_ms);

    CREATE TABLE sensor_status (
        sensor_id INTEGER PRIMARY KEY,
        state TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        last_check_ms INTEGER,
        last_status TEXT,
        last_reason TEXT,
        last_rtt_us INTEGER,
        last_message TEXT
    );

    CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        count INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE results (
        sensor_id INTEGER NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        count INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (sensor_id, start_ms)
    ) WITHOUT ROWID;
    CREATE TABLE rollups (
        sensor_id INTEGER NOT NULL,
        hour_ms INTEGER NOT NULL,
        count INTEGER NOT NULL,
        ups INTEGER NOT NULL,
        min_us INTEGER,
        avg_us INTEGER,
        max_us INTEGER,
        p95_us INTEGER,
        PRIMARY KEY (sensor_id, hour_ms)
    ) WITHOUT ROWID;
    ",
    // 1 → 2: accounts, sessions, API tokens and public status pages.
    "
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'read')),
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        scope TEXT NOT NULL CHECK (scope IN ('admin', 'read')),
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE status_pages (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        sensors TEXT NOT NULL DEFAULT '[]'
    );
    ",
    // 2 → 3: notification channels, rules and the outbox.
    "
    CREATE TABLE channels (name TEXT PRIMARY KEY, definition TEXT NOT NULL, managed INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
    CREATE TABLE rules (id INTEGER PRIMARY KEY, definition TEXT NOT NULL, managed INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        event_id INTEGER NOT NULL,
        channel TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        next_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_ms INTEGER,
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox (next_ms) WHERE delivered_ms IS NULL;
    ",
    // 3 → 4: notifications without an event (escalations, repeats,
    // flapping summaries), held notifications of dependants, cancellation.
    "
    CREATE TABLE outbox_new (
        id INTEGER PRIMARY KEY,
        event_id INTEGER,
        sensor_id INTEGER,
        channel TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        next_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_ms INTEGER,
        last_error TEXT,
        held INTEGER NOT NULL DEFAULT 0,
        cancelled_ms INTEGER
    );
    INSERT INTO outbox_new (id, event_id, sensor_id, channel, payload, created_ms, next_ms, attempts, delivered_ms, last_error)
        SELECT o.id, o.event_id, e.sensor_id, o.channel, o.payload, o.created_ms, o.next_ms, o.attempts, o.delivered_ms, o.last_error
        FROM outbox o LEFT JOIN events e ON e.id = o.event_id;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (next_ms) WHERE delivered_ms IS NULL AND cancelled_ms IS NULL;
    CREATE INDEX outbox_held ON outbox (sensor_id) WHERE held = 1;
    ",
    // 4 → 5: the last protocol check's phases, details and certificate.
    "
    ALTER TABLE sensor_status ADD COLUMN last_details TEXT;
    ",
    // 5 → 6: notifications that failed for good (never retried), disabled
    // users, and unique API token names (older duplicates get their id
    // appended, so `access revoke NAME` names one token).
    "
    ALTER TABLE outbox ADD COLUMN failed_ms INTEGER;
    ALTER TABLE users ADD COLUMN disabled_ms INTEGER;
    UPDATE api_tokens SET name = name || '-' || id
        WHERE id NOT IN (SELECT min(id) FROM api_tokens GROUP BY name);
    CREATE UNIQUE INDEX api_tokens_name ON api_tokens (name);
    ",
    // 6 → 7: each sensor's last checks as ticks in its status row, daily
    // rollups (sums of the hourly ones) for the dashboard's uptime
    // columns, a status page's logo and link, and heartbeat sensors' push
    // URLs (hashed) with their last push.
    "
    ALTER TABLE sensor_status ADD COLUMN ticks BLOB;
    ALTER TABLE status_pages ADD COLUMN logo TEXT;
    ALTER TABLE status_pages ADD COLUMN link TEXT;
    CREATE TABLE pushes (
        sensor_id INTEGER PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        since_ms INTEGER NOT NULL,
        at_ms INTEGER,
        down INTEGER NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT '',
        duration_ms INTEGER
    );
    CREATE TABLE daily_rollups (
        sensor_id INTEGER NOT NULL,
        day_ms INTEGER NOT NULL,
        count INTEGER NOT NULL,
        ups INTEGER NOT NULL,
        PRIMARY KEY (sensor_id, day_ms)
    ) WITHOUT ROWID;
    INSERT INTO daily_rollups (sensor_id, day_ms, count, ups)
        SELECT sensor_id, hour_ms - hour_ms % 86400000, sum(count), sum(ups) FROM rollups
        GROUP BY sensor_id, hour_ms - hour_ms % 86400000;
    ",
    // 7 → 8: the dashboard's and the API's lists read a page, not every
    // sensor: servers in list order, and the problems by state.
    "
    CREATE INDEX servers_in_order ON servers (group_path, name);
    CREATE INDEX sensor_status_problems ON sensor_status (state)
        WHERE state IN ('down', 'unknown', 'warning');
    ",
    // 8 → 9: a flush's results are journal parts by sensor range, so that
    // one sensor's recent results are read from its parts only. Rows
    // written before cover every sensor.
    "
    ALTER TABLE journal ADD COLUMN first_sensor INTEGER NOT NULL DEFAULT -9223372036854775808;
    ALTER TABLE journal ADD COLUMN last_sensor INTEGER NOT NULL DEFAULT 9223372036854775807;
    CREATE INDEX journal_by_sensor ON journal (last_sensor, first_sensor);
    ",
    // 9 → 10: a trigram index of each sensor's path, host and group, so
    // that a search of three characters or more reads the sensors it
    // finds, not all of them. Triggers keep it in step with renames; the
    // lists still test each row found, so the index only narrows. `apply`
    // defers the sensors it adds (the `search_deferred` row of `meta`) and
    // indexes them in one statement: FTS5 writes its pending index at
    // every statement, and a million one-row statements took a minute.
    "
    CREATE VIEW sensor_text AS
        SELECT s.id, v.name || '/' || s.name || char(10) || v.host || char(10) || coalesce(v.group_path, '') AS text
        FROM sensors s JOIN servers v ON v.id = s.server_id;
    CREATE VIRTUAL TABLE sensor_search USING fts5(text, tokenize = 'trigram');
    INSERT INTO sensor_search (rowid, text) SELECT id, text FROM sensor_text;
    CREATE TRIGGER sensor_search_add AFTER INSERT ON sensors
        WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'search_deferred') BEGIN
        INSERT INTO sensor_search (rowid, text) SELECT id, text FROM sensor_text WHERE id = new.id;
    END;
    CREATE TRIGGER sensor_search_rename AFTER UPDATE OF name, server_id ON sensors
        WHEN old.name IS NOT new.name OR old.server_id IS NOT new.server_id BEGIN
        DELETE FROM sensor_search WHERE rowid = old.id;
        INSERT INTO sensor_search (rowid, text) SELECT id, text FROM sensor_text WHERE id = new.id;
    END;
    CREATE TRIGGER sensor_search_remove AFTER DELETE ON sensors BEGIN
        DELETE FROM sensor_search WHERE rowid = old.id;
    END;
    CREATE TRIGGER sensor_search_server AFTER UPDATE OF name, host, group_path ON servers
        WHEN old.name IS NOT new.name OR old.host IS NOT new.host OR old.group_path IS NOT new.group_path BEGIN
        DELETE FROM sensor_search WHERE rowid IN (SELECT id FROM sensors WHERE server_id = new.id);
        INSERT INTO sensor_search (rowid, text)
            SELECT id, text FROM sensor_text WHERE id IN (SELECT id FROM sensors WHERE server_id = new.id);
    END;
    ",
    // 10 → 11: the index holds the server's and the sensor's tags too (a
    // column of their own), so that a tag of three characters or more
    // reads the sensors that may carry it, not all of them.
    "
    DROP TRIGGER sensor_search_add;
    DROP TRIGGER sensor_search_rename;
    DROP TRIGGER sensor_search_remove;
    DROP TRIGGER sensor_search_server;
    DROP TABLE sensor_search;
    DROP VIEW sensor_text;
    CREATE VIEW sensor_text AS
        SELECT s.id, v.name || '/' || s.name || char(10) || v.host || char(10) || coalesce(v.group_path, '') AS text,
            v.tags || char(10) || s.tags AS tags
        FROM sensors s JOIN servers v ON v.id = s.server_id;
    CREATE VIRTUAL TABLE sensor_search USING fts5(text, tags, tokenize = 'trigram');
    INSERT INTO sensor_search (rowid, text, tags) SELECT id, text, tags FROM sensor_text;
    CREATE TRIGGER sensor_search_add AFTER INSERT ON sensors
        WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'search_deferred') BEGIN
        INSERT INTO sensor_search (rowid, text, tags) SELECT id, text, tags FROM sensor_text WHERE id = new.id;
    END;
    CREATE TRIGGER sensor_search_rename AFTER UPDATE OF name, server_id, tags ON sensors
        WHEN old.name IS NOT new.name OR old.server_id IS NOT new.server_id OR old.tags IS NOT new.tags BEGIN
        DELETE FROM sensor_search WHERE rowid = old.id;
        INSERT INTO sensor_search (rowid, text, tags) SELECT id, text, tags FROM sensor_text WHERE id = new.id;
    END;
    CREATE TRIGGER sensor_search_remove AFTER DELETE ON sensors BEGIN
        DELETE FROM sensor_search WHERE rowid = old.id;
    END;
    CREATE TRIGGER sensor_search_server AFTER UPDATE OF name, host, group_path, tags ON servers
        WHEN old.name IS NOT new.name OR old.host IS NOT new.host OR old.group_path IS NOT new.group_path
            OR old.tags IS NOT new.tags BEGIN
        DELETE FROM sensor_search WHERE rowid IN (SELECT id FROM sensors WHERE server_id = new.id);
        INSERT INTO sensor_search (rowid, text, tags)
            SELECT id, text, tags FROM sensor_text WHERE id IN (SELECT id FROM sensors WHERE server_id = new.id);
    END;
    ",
    // 11 → 12: each indexed text ends with two newlines, so that each
    // of its characters, and each two, begin a trigram, and the index's
    // vocabulary is a table: a search of two characters reads the
    // trigrams that begin with it, then the sensors those find, instead
    // of every sensor's text, and one of a character no trigram begins
    // with reads nothing. The triggers name the view and the table, and
    // find the new ones.
    "
    DROP VIEW sensor_text;
    CREATE VIEW sensor_text AS
        SELECT s.id, v.name || '/' || s.name || char(10) || v.host || char(10) || coalesce(v.group_path, '') || char(10) || char(10) AS text,
            v.tags || char(10) || s.tags AS tags
        FROM sensors s JOIN servers v ON v.id = s.server_id;
    DROP TABLE sensor_search;
    CREATE VIRTUAL TABLE sensor_search USING fts5(text, tags, tokenize = 'trigram');
    INSERT INTO sensor_search (rowid, text, tags) SELECT id, text, tags FROM sensor_text;
    CREATE VIRTUAL TABLE sensor_search_vocab USING fts5vocab(sensor_search, 'row');
    ",
];

/// Brings the schema up to [`CURRENT_VERSION`], one migration per
/// transaction. Refuses a store written by a newer portwatch.
pub fn schema_up(conn: &mut Connection) -> Result<(), String> {
    let version = |conn: &Connection| -> Result<i64, String> {
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| e.to_string())
    };
    if version(conn)? > CURRENT_VERSION {
        return Err(format!(
            "the store has schema version {}, newer than this portwatch understands ({CURRENT_VERSION}): upgrade portwatch",
            version(conn)?
        ));
    }
    if version(conn)? == CURRENT_VERSION {
        return Ok(());
    }
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        // Take the write lock before reading the version, so that two
        // processes opening a new store at once do not both migrate it.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        if version(&tx)? > index as i64 {
            continue;
        }
        tx.execute_batch(migration)
            .map_err(|e| format!("migration {index}: {e}"))?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journal rows written before schema 9 hold every sensor, so they
    /// are read for any sensor after the upgrade.
    #[test]
    fn journal_rows_of_an_older_schema_cover_every_sensor() {
        let mut conn = Connection::open_in_memory().unwrap();
        for migration in &MIGRATIONS[..8] {
            conn.execute_batch(migration).unwrap();
        }
        conn.pragma_update(None, "user_version", 8).unwrap();
        conn.execute(
            "INSERT INTO journal (first_ms, last_ms, count, data) VALUES (1, 2, 1, x'00')",
            [],
        )
        .unwrap();
        schema_up(&mut conn).unwrap();
        let covered: i64 = conn
            .query_row(
                "SELECT count(*) FROM journal WHERE last_sensor >= ?1 AND first_sensor <= ?1",
                [123_456_789],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(covered, 1);
    }

    /// Each character of a sensor's indexed text, and each two, begin a
    /// trigram of the vocabulary, the last ones too, so that a search of
    /// one or two characters may look there first.
    #[test]
    fn each_character_of_a_text_begins_a_trigram() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema_up(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO servers (id, name, host, group_path) VALUES (1, 'web', 'h', 'Beta');
             INSERT INTO sensors (id, server_id, name, port) VALUES (7, 1, 'https', 443);",
        )
        .unwrap();
        let text: Vec<char> = "web/https\nh\nbeta".chars().collect();
        for start in 0..text.len() {
            for end in [start + 1, start + 2]
                .into_iter()
                .filter(|&e| e <= text.len())
            {
                let prefix: String = text[start..end].iter().collect();
                let beginning: i64 = conn
                    .query_row(
                        "SELECT count(*) FROM sensor_search_vocab WHERE term BETWEEN ?1 AND ?1 || char(1114111)",
                        [&prefix],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert!(beginning > 0, "{prefix:?}");
            }
        }
    }

    /// A store of schema 10 has its sensors' tags indexed by the upgrade,
    /// and the index follows them afterwards.
    #[test]
    fn the_upgrade_indexes_the_tags_of_sensors_already_there() {
        let mut conn = Connection::open_in_memory().unwrap();
        for migration in &MIGRATIONS[..10] {
            conn.execute_batch(migration).unwrap();
        }
        conn.pragma_update(None, "user_version", 10).unwrap();
        conn.execute_batch(
            "INSERT INTO servers (id, name, host, tags) VALUES (1, 'web', 'h', '[\"Prod\"]');
             INSERT INTO sensors (id, server_id, name, port, tags) VALUES (7, 1, 'https', 443, '[\"tls\"]');",
        )
        .unwrap();
        schema_up(&mut conn).unwrap();
        let found = |conn: &Connection, tag: &str| -> Vec<i64> {
            let mut statement = conn
                .prepare("SELECT rowid FROM sensor_search WHERE sensor_search MATCH ?1")
                .unwrap();
            statement
                .query_map([format!("tags : \"{tag}\"")], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(found(&conn, "prod"), [7]);
        assert_eq!(found(&conn, "tls"), [7]);
        conn.execute("UPDATE sensors SET tags = '[]' WHERE id = 7", [])
            .unwrap();
        assert_eq!(found(&conn, "tls"), Vec::<i64>::new());
        assert_eq!(found(&conn, "prod"), [7], "the server's tags stay");
    }
}
