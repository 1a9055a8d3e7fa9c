//! The sensor lists of the dashboard and the API as SQL: filters, order,
//! paging and a limit per group, so that a page reads its own rows, never
//! every sensor. One builder writes the statement for both stores; they
//! differ only in placeholders, join order hints and collation.

use portwatch_core::monitor::state::State;

/// Which sensors a list shows, in which order, and which part of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusQuery {
    /// One sensor by id.
    pub id: Option<i64>,
    /// One group's sensors: `Some(None)` is the sensors of servers in no
    /// group.
    pub group: Option<Option<String>>,
    /// Text found (case-insensitive) in the path, the host or the group.
    pub text: String,
    /// A tag of the server or the sensor (case-insensitive).
    pub tag: String,
    /// Only DOWN, UNKNOWN and WARNING sensors.
    pub problems: bool,
    /// The order within a group (groups always come in name order).
    pub order: StatusOrder,
    /// The order's key reversed (ties still in path order).
    pub descending: bool,
    /// Rows skipped, then at most `limit` rows.
    pub offset: u64,
    /// At most this many rows (`None`: all).
    pub limit: Option<u64>,
    /// At most this many rows of each group, and each row says how many
    /// of its group match ([`Listed::matching`]).
    pub per_group: Option<u64>,
    /// Each row says how many rows match in all ([`Listed::matching`]).
    pub count: bool,
}

impl StatusQuery {
    /// Whether it narrows the sensors down by text, tag or problems.
    pub fn filters(&self) -> bool {
        !self.text.trim().is_empty() || !self.tag.trim().is_empty() || self.problems
    }
}

/// The order of a list within each group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusOrder {
    /// By server name, then sensor name.
    #[default]
    Path,
    /// Worst state first (down, unknown, warning, up, pending, paused).
    Severity,
    /// Worst state first, then the longest-standing.
    Triage,
    /// By host, then port.
    Target,
    /// By the last check's reason.
    Reason,
    /// By the last connect time.
    Response,
    /// By since when the state holds.
    Since,
}

/// A row of a list, with the count [`StatusQuery::per_group`] or
/// [`StatusQuery::count`] asked for.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The sensor.
    pub row: crate::StatusRow,
    /// How many sensors match: in its group, or in all.
    pub matching: Option<i64>,
}

/// Sensors by group and state.
pub type Tally = Vec<(Option<String>, State, i64)>;

/// The SQL of one of the two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter of a built statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Text(String),
    Int(i64),
}

/// The columns of a status row, in the order [`crate::StatusRow`] reads
/// them, then the count asked for (column 17).
const COLUMNS: &str = "s.id, v.name || '/' || s.name, v.group_path, v.host, s.port,
    st.state, st.since_ms, st.last_check_ms, st.last_rtt_us, st.last_reason, st.last_message, s.paused,
    v.tags, s.tags, s.managed, st.last_details,
    (s.port = 0 AND s.settings LIKE '%\"ping\":%')";

/// The states the dashboard lists as problems (a partial index covers
/// them).
const PROBLEMS: &str = "st.state IN ('down', 'unknown', 'warning')";

/// The rank of a sensor's state for triage, as the web's `severity`: the
/// stored state, or without one paused (by hand) or pending.
const SEVERITY: &str = "CASE WHEN st.state IS NULL THEN (CASE WHEN s.paused THEN 5 ELSE 4 END)
    WHEN st.state = 'down' THEN 0 WHEN st.state = 'unknown' THEN 1
    WHEN st.state = 'warning' THEN 2 WHEN st.state = 'up' THEN 3
    WHEN st.state = 'pending' THEN 4 ELSE 5 END";

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Value::Text(text) => text.to_sql(),
            Value::Int(n) => n.to_sql(),
        }
    }
}

impl Value {
    /// The value as a PostgreSQL parameter.
    pub(crate) fn pg(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Value::Text(text) => text,
            Value::Int(n) => n,
        }
    }
}

struct Builder {
    dialect: Dialect,
    values: Vec<Value>,
}

impl Builder {
    fn new(dialect: Dialect) -> Builder {
        Builder {
            dialect,
            values: Vec::new(),
        }
    }

    /// A placeholder for `value`.
    fn bind(&mut self, value: Value) -> String {
        self.values.push(value);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.values.len()),
            Dialect::Postgres => format!("${}", self.values.len()),
        }
    }

    /// A text column in byte order on both stores.
    fn text(&self, column: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => column.to_owned(),
            Dialect::Postgres => format!("{column} COLLATE \"C\""),
        }
    }

    fn contains(&self, column: &str, placeholder: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("instr(lower({column}), {placeholder}) > 0"),
            Dialect::Postgres => format!("strpos(lower({column}), {placeholder}) > 0"),
        }
    }

    fn has_tag(&self, column: &str, placeholder: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                format!(
                    "EXISTS (SELECT 1 FROM json_each({column}) WHERE lower(value) = {placeholder})"
                )
            }
            Dialect::Postgres => format!(
                "EXISTS (SELECT 1 FROM json_array_elements_text({column}::json) t WHERE lower(t) = {placeholder})"
            ),
        }
    }

    /// Whether the trigram index finds the sensors a text search may
    /// match (SQLite's `sensor_search`; it needs three characters).
    fn indexed_search(&self, query: &StatusQuery) -> bool {
        self.dialect == Dialect::Sqlite && query.text.trim().chars().count() >= 3
    }

    /// The tables, joined so that the indexes serve the list: one sensor
    /// by its id, or the sensors a search's index finds; the problems from
    /// their partial index when only problems are asked for; else from the
    /// servers in group and name order.
    fn from(&self, query: &StatusQuery) -> &'static str {
        if query.id.is_some() || self.indexed_search(query) {
            return "sensors s JOIN servers v ON v.id = s.server_id LEFT JOIN sensor_status st ON st.sensor_id = s.id";
        }
        match (query.problems && query.group.is_none(), self.dialect) {
            (true, _) => {
                "sensor_status st JOIN sensors s ON s.id = st.sensor_id JOIN servers v ON v.id = s.server_id"
            }
            // SQLite keeps the order of a CROSS JOIN's tables.
            (false, Dialect::Sqlite) => {
                "servers v CROSS JOIN sensors s ON v.id = s.server_id LEFT JOIN sensor_status st ON st.sensor_id = s.id"
            }
            (false, Dialect::Postgres) => {
                "servers v JOIN sensors s ON v.id = s.server_id LEFT JOIN sensor_status st ON st.sensor_id = s.id"
            }
        }
    }

    fn filters(&mut self, query: &StatusQuery) -> String {
        let mut conditions = vec!["s.retired_at IS NULL AND v.retired_at IS NULL".to_owned()];
        if let Some(id) = query.id {
            conditions.push(format!("s.id = {}", self.bind(Value::Int(id))));
        }
        match &query.group {
            Some(Some(group)) => {
                let group = self.bind(Value::Text(group.clone()));
                conditions.push(format!("v.group_path = {group}"));
            }
            Some(None) => conditions.push("v.group_path IS NULL".to_owned()),
            None => {}
        }
        let text = query.text.trim().to_lowercase();
        if self.indexed_search(query) {
            // A phrase: the trigrams of the text, in order.
            let phrase = self.bind(Value::Text(format!("\"{}\"", text.replace('"', "\"\""))));
            conditions.push(format!(
                "s.id IN (SELECT rowid FROM sensor_search WHERE sensor_search MATCH {phrase})"
            ));
        }
        if !text.is_empty() {
            let text = self.bind(Value::Text(text));
            conditions.push(format!(
                "({} OR {} OR {})",
                self.contains("v.name || '/' || s.name", &text),
                self.contains("v.host", &text),
                self.contains("coalesce(v.group_path, '')", &text)
            ));
        }
        let tag = query.tag.trim().to_lowercase();
        if !tag.is_empty() {
            let tag = self.bind(Value::Text(tag));
            conditions.push(format!(
                "({} OR {})",
                self.has_tag("v.tags", &tag),
                self.has_tag("s.tags", &tag)
            ));
        }
        if query.problems {
            conditions.push(PROBLEMS.to_owned());
        }
        conditions.join(" AND ")
    }

    /// `ASC` or `DESC`, with NULL before any value as in Rust's `Option`
    /// order (SQLite's default; PostgreSQL's is the opposite).
    fn direction(&self, descending: bool) -> &'static str {
        match (self.dialect, descending) {
            (Dialect::Sqlite, false) => "",
            (Dialect::Sqlite, true) => " DESC",
            (Dialect::Postgres, false) => " ASC NULLS FIRST",
            (Dialect::Postgres, true) => " DESC NULLS LAST",
        }
    }

    /// The order within a group: the key, then the path.
    fn order(&self, query: &StatusQuery) -> String {
        let direction = self.direction(query.descending);
        let (server, sensor) = (self.text("v.name"), self.text("s.name"));
        let severity = format!("({SEVERITY}){direction}");
        let keys = match query.order {
            StatusOrder::Path => return format!("{server}{direction}, {sensor}{direction}"),
            StatusOrder::Severity => vec![severity],
            // The longest-standing first, whichever way the states go.
            StatusOrder::Triage => vec![severity, format!("st.since_ms{}", self.direction(false))],
            StatusOrder::Target => vec![
                format!("{}{direction}", self.text("v.host")),
                format!("s.port{direction}"),
            ],
            StatusOrder::Reason => vec![format!("{}{direction}", self.text("st.last_reason"))],
            StatusOrder::Response => vec![format!("st.last_rtt_us{direction}")],
            StatusOrder::Since => vec![format!("st.since_ms{direction}")],
        };
        format!("{}, {server}, {sensor}", keys.join(", "))
    }

    fn group_order(&self) -> String {
        format!("{}{}", self.text("v.group_path"), self.direction(false))
    }
}

/// The statement and parameters that list `query`'s rows: the status
/// row's columns, then the count asked for.
pub(crate) fn status_sql(query: &StatusQuery, dialect: Dialect) -> (String, Vec<Value>) {
    let mut builder = Builder::new(dialect);
    let from = builder.from(query);
    let filters = builder.filters(query);
    let order = builder.order(query);
    let groups = builder.group_order();
    let mut sql = match query.per_group {
        // Each group's first rows: numbered within the group, in order.
        Some(per_group) => {
            let per_group = builder.bind(Value::Int(per_group as i64));
            format!(
                "SELECT * FROM (SELECT {COLUMNS},
                     count(*) OVER (PARTITION BY v.group_path) AS matching,
                     row_number() OVER (PARTITION BY v.group_path ORDER BY {order}) AS place,
                     v.group_path AS grp
                 FROM {from} WHERE {filters}) listed
                 WHERE place <= {per_group}
                 ORDER BY {}{}, place",
                builder.text("grp"),
                builder.direction(false)
            )
        }
        None => format!(
            "SELECT {COLUMNS}, {} FROM {from} WHERE {filters} ORDER BY {groups}, {order}",
            if query.count {
                "count(*) OVER ()"
            } else {
                "CAST(NULL AS bigint)"
            }
        ),
    };
    if let Some(limit) = query.limit {
        let limit = builder.bind(Value::Int(limit as i64));
        let offset = builder.bind(Value::Int(query.offset as i64));
        sql += &format!(" LIMIT {limit} OFFSET {offset}");
    }
    (sql, builder.values)
}

/// The statement and parameters that count `query`'s sensors by group and
/// state (its order and paging do not apply).
pub(crate) fn tally_sql(query: &StatusQuery, dialect: Dialect) -> (String, Vec<Value>) {
    let mut builder = Builder::new(dialect);
    let from = builder.from(query);
    let filters = builder.filters(query);
    (
        format!(
            "SELECT v.group_path, st.state, s.paused, count(*) FROM {from} WHERE {filters}
             GROUP BY v.group_path, st.state, s.paused"
        ),
        builder.values,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_bind_their_values_in_order() {
        let query = StatusQuery {
            group: Some(Some("Web".into())),
            text: "  Shop ".into(),
            tag: "Prod".into(),
            limit: Some(100),
            offset: 200,
            ..StatusQuery::default()
        };
        let (sql, values) = status_sql(&query, Dialect::Sqlite);
        assert_eq!(
            values,
            [
                Value::Text("Web".into()),
                Value::Text("\"shop\"".into()),
                Value::Text("shop".into()),
                Value::Text("prod".into()),
                Value::Int(100),
                Value::Int(200)
            ]
        );
        assert!(sql.contains("v.group_path = ?1"), "{sql}");
        assert!(sql.contains("sensor_search MATCH ?2"), "{sql}");
        assert!(sql.contains("instr(lower(v.host), ?3)"), "{sql}");
        assert!(sql.contains("lower(value) = ?4"), "{sql}");
        assert!(sql.ends_with("LIMIT ?5 OFFSET ?6"), "{sql}");
        let (sql, values) = status_sql(&query, Dialect::Postgres);
        assert_eq!(values.len(), 5, "no trigram index: {values:?}");
        assert!(sql.contains("v.group_path = $1"), "{sql}");
        assert!(sql.contains("strpos(lower(v.host), $2)"), "{sql}");
        assert!(sql.ends_with("LIMIT $4 OFFSET $5"), "{sql}");
    }

    #[test]
    fn a_search_of_three_characters_reads_the_sensors_its_index_finds() {
        let search = |text: &str| {
            status_sql(
                &StatusQuery {
                    text: text.into(),
                    ..StatusQuery::default()
                },
                Dialect::Sqlite,
            )
        };
        let (sql, values) = search("ab\"c");
        assert!(sql.contains("FROM sensors s JOIN servers v"), "{sql}");
        assert_eq!(
            values[0],
            Value::Text("\"ab\"\"c\"".into()),
            "quotes doubled"
        );
        // Two characters have no trigram: every sensor is tested.
        let (sql, values) = search(" ab ");
        assert!(!sql.contains("sensor_search"), "{sql}");
        assert!(sql.contains("FROM servers v CROSS JOIN"), "{sql}");
        assert_eq!(values, [Value::Text("ab".into())]);
    }

    #[test]
    fn problems_alone_read_from_the_status_rows() {
        let problems = StatusQuery {
            problems: true,
            ..StatusQuery::default()
        };
        let (sql, values) = status_sql(&problems, Dialect::Sqlite);
        assert!(sql.contains("FROM sensor_status st JOIN"), "{sql}");
        assert!(sql.contains(PROBLEMS), "{sql}");
        assert!(values.is_empty());
        // Within a group, from the group's servers.
        let in_group = StatusQuery {
            group: Some(None),
            ..problems
        };
        let (sql, _) = status_sql(&in_group, Dialect::Sqlite);
        assert!(sql.contains("FROM servers v CROSS JOIN"), "{sql}");
        assert!(sql.contains("v.group_path IS NULL"), "{sql}");
    }

    #[test]
    fn descending_reverses_the_key_and_keeps_paths_as_ties() {
        let query = StatusQuery {
            order: StatusOrder::Response,
            descending: true,
            ..StatusQuery::default()
        };
        let (sql, _) = status_sql(&query, Dialect::Sqlite);
        assert!(
            sql.ends_with("st.last_rtt_us DESC, v.name, s.name"),
            "{sql}"
        );
        let path = StatusQuery {
            descending: true,
            ..StatusQuery::default()
        };
        let (sql, _) = status_sql(&path, Dialect::Postgres);
        assert!(
            sql.ends_with(
                "v.name COLLATE \"C\" DESC NULLS LAST, s.name COLLATE \"C\" DESC NULLS LAST"
            ),
            "{sql}"
        );
    }
}
