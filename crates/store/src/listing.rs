//! The sensor lists of the dashboard and the API as SQL: filters, order,
//! paging and a limit per group, so that a page reads its own rows, never
//! every sensor. One builder writes the statement for both stores; they
//! differ only in placeholders, join order hints and collation.

use std::sync::Arc;

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
    /// Reads at most this many matching sensors, the first ones found, so
    /// that a search matching most of a large installation costs no more
    /// than this many rows: the list, its counts and the tally then hold
    /// these sensors only (`None`: all that match).
    pub at_most: Option<u64>,
    /// Only these sensors: the ids [`crate::Storage::first_found`] read
    /// once, so that a list and a tally of the same search do not each
    /// search again (`None`: every sensor).
    pub among: Option<Arc<[i64]>>,
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
    /// Sensor ids: a JSON array on SQLite, an array on PostgreSQL.
    Ids(Vec<i64>),
}

/// The columns of a status row, in the order [`crate::StatusRow`] reads
/// them, then the count asked for (column 17).
const COLUMNS: &str = "s.id, v.name || '/' || s.name, v.group_path, v.host, s.port,
    st.state, st.since_ms, st.last_check_ms, st.last_rtt_us, st.last_reason, st.last_message, s.paused,
    v.tags, s.tags, s.managed, st.last_details,
    (s.port = 0 AND s.settings LIKE '%\"ping\":%')";

/// How many sensors' texts a search of one or two characters reads through
/// before it looks up the rest in the trigram index (a few milliseconds'
/// reading). Unit tests read a few, so that stores of a few sensors take
/// both ways.
const SHORT_SCAN: i64 = if cfg!(test) { 3 } else { 50_000 };

/// How many trigrams may begin with a text of one or two characters for
/// the sensors after the first [`SHORT_SCAN`] to be looked up by them
/// rather than read through: a `MATCH` of a hundred trigrams that every
/// text holds took 0.2–0.6 s at a million sensors, reading them 0.1 s.
/// Unit tests allow two, so that their few texts take both ways.
const SHORT_TRIGRAMS: i64 = if cfg!(test) { 2 } else { 32 };

/// The trigram index's query (an SQL expression) for the texts that hold
/// a text of one or two characters, given the condition on the
/// vocabulary ([`Builder::vocabulary`]) for the trigrams that begin with
/// it: any of them; with none, an empty phrase, which matches nothing.
fn trigrams_in(beginning: &str) -> String {
    format!(
        "(SELECT 'text : (' || coalesce(group_concat('\"' || replace(term, '\"', '\"\"') || '\"', ' OR '), '\"\"') || ')' \
          FROM sensor_search_vocab WHERE {beginning})"
    )
}

/// Sensors with their servers and states, from the sensors' primary key.
const BY_ID: &str = "sensors s JOIN servers v ON v.id = s.server_id LEFT JOIN sensor_status st ON st.sensor_id = s.id";

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
            Value::Ids(ids) => Ok(rusqlite::types::ToSqlOutput::Owned(
                rusqlite::types::Value::Text(
                    serde_json::to_string(ids).expect("integers serialise"),
                ),
            )),
        }
    }
}

impl Value {
    /// The value as a PostgreSQL parameter.
    pub(crate) fn pg(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Value::Text(text) => text,
            Value::Int(n) => n,
            Value::Ids(ids) => ids,
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

    /// The condition that a sensor is one of `ids`.
    fn among(&mut self, ids: &[i64]) -> String {
        let ids = self.bind(Value::Ids(ids.to_vec()));
        match self.dialect {
            Dialect::Sqlite => format!("s.id IN (SELECT value FROM json_each({ids}))"),
            Dialect::Postgres => format!("s.id = ANY({ids})"),
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

    /// The trigram index's query for the sensors a search may match
    /// (SQLite's `sensor_search`), as an SQL expression: the text as a
    /// phrase in the path, host and group, the tag as one in the tags.
    /// A text of two characters has no trigram of its own, but every
    /// indexed text ends with two newlines, so each place it occurs
    /// begins a trigram: the query is any trigram of the index's
    /// vocabulary that begins with it (none, and the query is an empty
    /// phrase, which matches nothing). A tag of one or two characters is
    /// found as the JSON string it is stored as, quotes included. A text
    /// of one character and no tag: `None`.
    fn search_match(&mut self, query: &StatusQuery) -> Option<String> {
        // A phrase: the trigrams of the text, in order.
        let phrase = |column: &str, text: &str| {
            Value::Text(format!("{column} : \"{}\"", text.replace('"', "\"\"")))
        };
        let mut parts = Vec::new();
        let text = query.text.trim().to_lowercase();
        match text.chars().count() {
            0 | 1 => {}
            2 => {
                let beginning = self.vocabulary(&text);
                parts.push(trigrams_in(&beginning));
            }
            _ => parts.push(self.bind(phrase("text", &text))),
        }
        let tag = query.tag.trim().to_lowercase();
        match tag.chars().count() {
            0 => {}
            1 | 2 => {
                let stored = serde_json::to_string(&tag).expect("a string serialises");
                parts.push(self.bind(phrase("tags", &stored)));
            }
            _ => parts.push(self.bind(phrase("tags", &tag))),
        }
        (!parts.is_empty()).then(|| parts.join(" || ' AND ' || "))
    }

    /// The sensors a text of one or two characters may match, outside a
    /// group and without a tag, on SQLite: the tables to read. It begins
    /// no trigram of its own, and the index's own copy of each sensor's
    /// text (FTS5's `sensor_search_content`, `c0`) is narrow: reading it
    /// through with `LIKE` is several times quicker than joining every
    /// sensor to its server, and stops early when the text is common.
    /// `LIKE` ignores ASCII case, as `lower` does, so it keeps every
    /// sensor that may match.
    ///
    /// Every place a text occurs begins a trigram of the index's
    /// vocabulary (each indexed text ends with two newlines), so when no
    /// trigram begins with it, nothing is read. Otherwise the first
    /// [`SHORT_SCAN`] texts are read through, where a common text fills a
    /// page. The sensors after them are those the trigrams beginning with
    /// it find, which is quick when it is rare, when at most
    /// [`SHORT_TRIGRAMS`] trigrams begin with it; when more do (a common
    /// character), their texts are read through too, which costs less
    /// than looking up so many trigrams. Each part comes in id order, so
    /// a list that stops at the first n ([`StatusQuery::at_most`]) stops
    /// at the same ones whichever way. Which parts read is each part's
    /// limit: SQLite computes a limit once, before the part reads, and a
    /// limit of 0 reads nothing (a condition that names no table is
    /// tested row by row instead: the parts that read nothing took 40 ms
    /// at a million sensors that way).
    fn short_search(&mut self, text: &str) -> String {
        let pattern = self.bind(Value::Text(format!("%{}%", crate::like_literal(text))));
        let holds = format!("c.c0 LIKE {pattern} ESCAPE '\\'");
        let beginning = self.vocabulary(text);
        let trigrams = trigrams_in(&beginning);
        let scanned = self.bind(Value::Int(SHORT_SCAN));
        let last_scanned = self.bind(Value::Int(SHORT_SCAN - 1));
        let over = self.bind(Value::Int(SHORT_TRIGRAMS + 1));
        let few = format!(
            "(SELECT count(*) FROM (SELECT 1 FROM sensor_search_vocab WHERE {beginning} LIMIT {over})) < {over}"
        );
        let after = format!(
            "(SELECT id FROM sensor_search_content ORDER BY id LIMIT 1 OFFSET {last_scanned})"
        );
        format!(
            "(SELECT c.id FROM (SELECT id, c0 FROM sensor_search_content ORDER BY id \
               LIMIT CASE WHEN EXISTS (SELECT 1 FROM sensor_search_vocab WHERE {beginning}) THEN {scanned} ELSE 0 END) c \
               WHERE {holds} \
             UNION ALL SELECT * FROM (SELECT f.rowid FROM sensor_search f \
               WHERE f.sensor_search MATCH {trigrams} AND f.rowid > {after} \
               LIMIT CASE WHEN {few} THEN -1 ELSE 0 END) \
             UNION ALL SELECT * FROM (SELECT c.id FROM sensor_search_content c \
               WHERE c.id > {after} AND {holds} \
               LIMIT CASE WHEN {few} THEN 0 ELSE -1 END)) c \
             CROSS JOIN sensors s ON s.id = c.id JOIN servers v ON v.id = s.server_id \
             LEFT JOIN sensor_status st ON st.sensor_id = s.id"
        )
    }

    /// The condition on the search index's vocabulary (the trigrams it
    /// holds, folded to lower case) for the trigrams that begin with
    /// `prefix`.
    fn vocabulary(&mut self, prefix: &str) -> String {
        let first = self.bind(Value::Text(prefix.to_owned()));
        let last = self.bind(Value::Text(format!("{prefix}{}", char::MAX)));
        format!("term BETWEEN {first} AND {last}")
    }

    /// The tables and the condition of the sensors `query` lists, joined
    /// so that the indexes serve it: one sensor by its id, or those of
    /// [`StatusQuery::among`]; the problems
    /// from their partial index when problems are asked for outside a
    /// group (there are few of them, as a rule, however many sensors a
    /// text matches); on SQLite the sensors the search index finds, or
    /// for a short search outside a group those whose indexed text holds
    /// it; else from the servers in group and name order. With
    /// [`StatusQuery::at_most`], the first sensors found that match, read
    /// again by id.
    fn source(&mut self, query: &StatusQuery) -> (String, String) {
        let (from, condition) = self.found(query);
        match query.at_most {
            Some(n) if query.id.is_none() => {
                let n = self.bind(Value::Int(n as i64));
                (
                    BY_ID.to_owned(),
                    format!("s.id IN (SELECT s.id FROM {from} WHERE {condition} LIMIT {n})"),
                )
            }
            _ => (from, condition),
        }
    }

    /// The tables and the condition of every sensor `query` matches, as
    /// [`Builder::source`] reads them, without its limit.
    fn found(&mut self, query: &StatusQuery) -> (String, String) {
        let mut conditions = Vec::new();
        let sqlite = self.dialect == Dialect::Sqlite;
        let text = query.text.trim().to_lowercase();
        let short_text = (query.group.is_none()
            && query.tag.trim().is_empty()
            && (1..=2).contains(&text.chars().count()))
        .then_some(text);
        let from = if query.id.is_some() {
            BY_ID.to_owned()
        } else if let Some(ids) = &query.among {
            conditions.push(self.among(ids));
            BY_ID.to_owned()
        } else if query.problems && query.group.is_none() {
            "sensor_status st JOIN sensors s ON s.id = st.sensor_id JOIN servers v ON v.id = s.server_id".to_owned()
        } else if let Some(text) = short_text.filter(|_| sqlite) {
            self.short_search(&text)
        } else if let Some(search) = sqlite.then(|| self.search_match(query)).flatten() {
            conditions.push(format!("f.sensor_search MATCH {search}"));
            // SQLite keeps the order of a CROSS JOIN's tables: the index
            // first, so that a limit stops reading it.
            "sensor_search f CROSS JOIN sensors s ON s.id = f.rowid JOIN servers v ON v.id = s.server_id LEFT JOIN sensor_status st ON st.sensor_id = s.id".to_owned()
        } else if sqlite {
            "servers v CROSS JOIN sensors s ON v.id = s.server_id LEFT JOIN sensor_status st ON st.sensor_id = s.id".to_owned()
        } else {
            "servers v JOIN sensors s ON v.id = s.server_id LEFT JOIN sensor_status st ON st.sensor_id = s.id".to_owned()
        };
        conditions.push(self.filters(query));
        (from, conditions.join(" AND "))
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

/// Whether `query` is a page of one group in severity order and nothing
/// more, which SQLite reads rank by rank ([`ranked_page_sql`]).
fn ranked_page(query: &StatusQuery, dialect: Dialect) -> bool {
    dialect == Dialect::Sqlite
        && query.group.is_some()
        && query.order == StatusOrder::Severity
        && !query.descending
        && !query.filters()
        && query.id.is_none()
        && query.per_group.is_none()
        && query.at_most.is_none()
        && query.among.is_none()
        && !query.count
        && query.limit.is_some()
}

/// A page of one group in severity order, on SQLite: the group's problems
/// (worst first), then its sensors of each other rank (up, pending,
/// paused) in path order, one part after the other. Only the problems
/// are sorted; the other parts follow the servers' and sensors' indexes,
/// so the page stops at its last row instead of sorting the whole group
/// (a group of 100,000 sensors took 0.2–0.6 s whatever the page). Each
/// part reads the group, not the whole store's problems, so a large
/// outage elsewhere costs it nothing. A part reads at most the rows up
/// to the page's end; SQLite runs the parts of a `UNION ALL` in order
/// and stops at the limit.
fn ranked_page_sql(query: &StatusQuery) -> (String, Vec<Value>) {
    let mut builder = Builder::new(Dialect::Sqlite);
    let limit = query.limit.unwrap_or(u64::MAX);
    let upto = builder.bind(Value::Int(query.offset.saturating_add(limit) as i64));
    let path_order = builder.order(&StatusQuery {
        order: StatusOrder::Path,
        ..StatusQuery::default()
    });
    let severity_order = builder.order(query);
    let mut parts = vec![(PROBLEMS.to_owned(), severity_order)];
    for rank in 3..=5 {
        parts.push((format!("({SEVERITY}) = {rank}"), path_order.clone()));
    }
    let parts: Vec<String> = parts
        .into_iter()
        .map(|(rank, order)| {
            let filters = builder.filters(query);
            format!(
                "SELECT * FROM (SELECT {COLUMNS}, CAST(NULL AS bigint)
                 FROM servers v CROSS JOIN sensors s ON v.id = s.server_id LEFT JOIN sensor_status st ON st.sensor_id = s.id
                 WHERE {rank} AND {filters} ORDER BY {order} LIMIT {upto})"
            )
        })
        .collect();
    let limit = builder.bind(Value::Int(limit as i64));
    let offset = builder.bind(Value::Int(query.offset as i64));
    (
        format!(
            "{} LIMIT {limit} OFFSET {offset}",
            parts.join(" UNION ALL ")
        ),
        builder.values,
    )
}

/// The statement and parameters that list `query`'s rows: the status
/// row's columns, then the count asked for.
pub(crate) fn status_sql(query: &StatusQuery, dialect: Dialect) -> (String, Vec<Value>) {
    if ranked_page(query, dialect) {
        return ranked_page_sql(query);
    }
    let mut builder = Builder::new(dialect);
    let (from, filters) = builder.source(query);
    let order = builder.order(query);
    let groups = builder.group_order();
    let paging = |builder: &mut Builder| match query.limit {
        Some(limit) => {
            let limit = builder.bind(Value::Int(limit as i64));
            let offset = builder.bind(Value::Int(query.offset as i64));
            format!(" LIMIT {limit} OFFSET {offset}")
        }
        None => String::new(),
    };
    let sql = match query.per_group {
        // Each group's first rows: numbered within the group, in order, by
        // id and the keys of the order only; the columns of the rows kept
        // are read afterwards, so that a search of thousands of sensors
        // sorts narrow rows and reads wide ones for the page alone.
        Some(per_group) => {
            let per_group = builder.bind(Value::Int(per_group as i64));
            let paging = paging(&mut builder);
            let first = builder.direction(false);
            let (grp, listed_grp) = (builder.text("grp"), builder.text("listed.grp"));
            // SQLite keeps the order of a CROSS JOIN's tables: the rows
            // kept first.
            let join = match dialect {
                Dialect::Sqlite => "CROSS JOIN",
                Dialect::Postgres => "JOIN",
            };
            format!(
                "SELECT {COLUMNS}, listed.matching FROM (
                     SELECT id, grp, matching, place FROM (SELECT s.id AS id, v.group_path AS grp,
                         count(*) OVER (PARTITION BY v.group_path) AS matching,
                         row_number() OVER (PARTITION BY v.group_path ORDER BY {order}) AS place
                     FROM {from} WHERE {filters}) numbered
                     WHERE place <= {per_group} ORDER BY {grp}{first}, place{paging}) listed
                 {join} sensors s ON s.id = listed.id JOIN servers v ON v.id = s.server_id
                 LEFT JOIN sensor_status st ON st.sensor_id = s.id
                 ORDER BY {listed_grp}{first}, listed.place"
            )
        }
        None => {
            let count = if query.count {
                "count(*) OVER ()"
            } else {
                "CAST(NULL AS bigint)"
            };
            let paging = paging(&mut builder);
            format!(
                "SELECT {COLUMNS}, {count} FROM {from} WHERE {filters} ORDER BY {groups}, {order}{paging}"
            )
        }
    };
    (sql, builder.values)
}

/// The statement and parameters that read the ids of the sensors `query`
/// matches, in the order they are found (not the list's order): with
/// [`StatusQuery::at_most`], the first that many.
pub(crate) fn found_sql(query: &StatusQuery, dialect: Dialect) -> (String, Vec<Value>) {
    let mut builder = Builder::new(dialect);
    let (from, condition) = builder.found(query);
    let mut sql = format!("SELECT s.id FROM {from} WHERE {condition}");
    if let Some(n) = query.at_most {
        sql += &format!(" LIMIT {}", builder.bind(Value::Int(n as i64)));
    }
    (sql, builder.values)
}

/// The statement and parameters that count `query`'s sensors by group and
/// state (its order and paging do not apply).
pub(crate) fn tally_sql(query: &StatusQuery, dialect: Dialect) -> (String, Vec<Value>) {
    let mut builder = Builder::new(dialect);
    let (from, filters) = builder.source(query);
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
                Value::Text("text : \"shop\"".into()),
                Value::Text("tags : \"prod\"".into()),
                Value::Text("Web".into()),
                Value::Text("shop".into()),
                Value::Text("prod".into()),
                Value::Int(100),
                Value::Int(200)
            ]
        );
        assert!(
            sql.contains("f.sensor_search MATCH ?1 || ' AND ' || ?2"),
            "{sql}"
        );
        assert!(sql.contains("v.group_path = ?3"), "{sql}");
        assert!(sql.contains("instr(lower(v.host), ?4)"), "{sql}");
        assert!(sql.contains("lower(value) = ?5"), "{sql}");
        assert!(sql.ends_with("LIMIT ?6 OFFSET ?7"), "{sql}");
        let (sql, values) = status_sql(&query, Dialect::Postgres);
        assert_eq!(values.len(), 5, "no trigram index: {values:?}");
        assert!(sql.contains("v.group_path = $1"), "{sql}");
        assert!(sql.contains("strpos(lower(v.host), $2)"), "{sql}");
        assert!(sql.ends_with("LIMIT $4 OFFSET $5"), "{sql}");
    }

    #[test]
    fn a_search_of_three_characters_reads_the_sensors_its_index_finds() {
        let search = |text: &str, tag: &str| {
            status_sql(
                &StatusQuery {
                    text: text.into(),
                    tag: tag.into(),
                    ..StatusQuery::default()
                },
                Dialect::Sqlite,
            )
        };
        let (sql, values) = search("ab\"C", "");
        assert!(
            sql.contains("FROM sensor_search f CROSS JOIN sensors s"),
            "{sql}"
        );
        assert_eq!(
            values[0],
            Value::Text("text : \"ab\"\"c\"".into()),
            "quotes doubled, lower case"
        );
        // A tag of three characters or more narrows by the tags' column.
        let (_, values) = search("abc", " Prod ");
        assert_eq!(values[1], Value::Text("tags : \"prod\"".into()));
        // Two characters: the trigrams that begin with them, from the
        // vocabulary; a shorter tag as its stored JSON string.
        let (sql, values) = search(" a\" ", "D_");
        assert!(
            sql.contains("FROM sensor_search f CROSS JOIN sensors s"),
            "{sql}"
        );
        assert!(
            sql.contains("FROM sensor_search_vocab WHERE term BETWEEN ?1 AND ?2"),
            "{sql}"
        );
        assert!(sql.contains("replace(term, '\"', '\"\"')"), "{sql}");
        assert_eq!(
            values[..3],
            [
                Value::Text("a\"".into()),
                Value::Text("a\"\u{10FFFF}".into()),
                Value::Text("tags : \"\"\"d_\"\"\"".into()),
            ]
        );
        // One or two characters and no tag: the first texts read through
        // when a trigram begins with the text, then the sensors after them
        // that its trigrams find when few begin with it, else their texts
        // read through; `%` and `_` taken as they are.
        for text in [" % ", "Q_"] {
            let (sql, values) = search(text, "");
            let folded = text.trim().to_lowercase();
            let present = "EXISTS (SELECT 1 FROM sensor_search_vocab WHERE term BETWEEN ?2 AND ?3)";
            let few = "(SELECT count(*) FROM (SELECT 1 FROM sensor_search_vocab WHERE term BETWEEN ?2 AND ?3 LIMIT ?6)) < ?6";
            let after = "(SELECT id FROM sensor_search_content ORDER BY id LIMIT 1 OFFSET ?5)";
            for part in [
                format!(
                    "ORDER BY id LIMIT CASE WHEN {present} THEN ?4 ELSE 0 END) c WHERE c.c0 LIKE ?1 ESCAPE '\\'"
                ),
                "SELECT f.rowid FROM sensor_search f WHERE f.sensor_search MATCH (SELECT"
                    .to_owned(),
                format!("AND f.rowid > {after} LIMIT CASE WHEN {few} THEN -1 ELSE 0 END)"),
                format!(
                    "SELECT c.id FROM sensor_search_content c WHERE c.id > {after} AND c.c0 LIKE ?1 ESCAPE '\\' \
                         LIMIT CASE WHEN {few} THEN 0 ELSE -1 END)) c CROSS JOIN sensors s"
                ),
            ] {
                assert!(sql.contains(&part), "{part}\n{sql}");
            }
            assert_eq!(
                values[..6],
                [
                    Value::Text(format!("%{}%", crate::like_literal(&folded))),
                    Value::Text(folded.clone()),
                    Value::Text(format!("{folded}\u{10FFFF}")),
                    Value::Int(SHORT_SCAN),
                    Value::Int(SHORT_SCAN - 1),
                    Value::Int(SHORT_TRIGRAMS + 1),
                ]
            );
        }
        // Within a group, the group's servers are read.
        let (sql, _) = status_sql(
            &StatusQuery {
                text: "a".into(),
                group: Some(None),
                ..StatusQuery::default()
            },
            Dialect::Sqlite,
        );
        assert!(sql.contains("FROM servers v CROSS JOIN"), "{sql}");
        // PostgreSQL has no such index.
        let (sql, _) = status_sql(
            &StatusQuery {
                text: "abc".into(),
                ..StatusQuery::default()
            },
            Dialect::Postgres,
        );
        assert!(!sql.contains("sensor_search"), "{sql}");
    }

    #[test]
    fn at_most_reads_the_first_matching_sensors_then_lists_those() {
        let query = StatusQuery {
            text: "web".into(),
            per_group: Some(10),
            at_most: Some(500),
            ..StatusQuery::default()
        };
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let (sql, values) = status_sql(&query, dialect);
            let inner = sql
                .split_once("s.id IN (SELECT s.id FROM ")
                .unwrap_or_else(|| panic!("{sql}"))
                .1;
            assert!(
                inner.contains("lower(v.host)"),
                "the filter is inside: {sql}"
            );
            assert!(values.contains(&Value::Int(500)), "{values:?}");
            let (tally, values) = tally_sql(&query, dialect);
            assert!(tally.contains("s.id IN (SELECT s.id FROM "), "{tally}");
            assert!(values.contains(&Value::Int(500)), "{values:?}");
        }
        // One sensor by id needs no bound.
        let (sql, _) = status_sql(
            &StatusQuery {
                id: Some(7),
                ..query
            },
            Dialect::Sqlite,
        );
        assert!(!sql.contains("IN (SELECT"), "{sql}");
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
        // So do the problems a search matches: they are few, as a rule,
        // however many sensors the text finds.
        let searched = StatusQuery {
            text: "127.0".into(),
            ..problems.clone()
        };
        let (sql, _) = status_sql(&searched, Dialect::Sqlite);
        assert!(sql.contains("FROM sensor_status st JOIN"), "{sql}");
        assert!(!sql.contains("sensor_search"), "{sql}");
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
