//! The storage contract: what every backend of [`Storage`] and [`Writes`]
//! must do, checked through the traits only. Each test is a function
//! generic over the backend; the `sqlite` module at the end runs them on
//! the embedded store, the `postgres` module on a throwaway PostgreSQL
//! cluster of its own (one per test). A new backend adds a module that
//! runs the same functions.

use std::time::Duration;

use portwatch_core::config::{Overrides, from_toml};
use portwatch_store::accounts::{Role, StatusPage};
use portwatch_store::{Storage, StoreError, Writes};

const CONFIG: &str = r#"
[defaults]
interval = "30s"
[[group]]
name = "Site"
[[server]]
name = "web"
host = "127.0.0.1"
group = "Site"
tags = ["eu"]
  [[server.sensor]]
  port = 80
  [[server.sensor]]
  port = 443
  depends_on = "db/postgresql"
[[server]]
name = "db"
host = "2001:db8::5"
  [[server.sensor]]
  port = "postgresql"
[[maintenance]]
name = "nightly"
every = "day"
start = "03:00"
duration = "30m"
servers = ["db"]
[[channel]]
name = "chat"
webhook = "http://127.0.0.1:9/hook"
[[notify]]
channel = "chat"
on = ["down", "up"]
"#;

/// Applying a configuration stores it: loading gives it back, the
/// generation moves, names select sensors, and a second apply of the same
/// file changes nothing but the generation.
async fn configuration_round_trips<S: Storage>(db: S) {
    let before = db.generation().await.unwrap();
    let config = from_toml("t.toml", CONFIG).unwrap();
    let summary = db.apply(config.clone()).await.unwrap();
    assert_eq!((summary.sensors, summary.added, summary.removed), (3, 3, 0));
    assert!(db.generation().await.unwrap() > before);
    let loaded = db.load().await.unwrap();
    assert_eq!(loaded.config.servers.len(), 2);
    assert_eq!(loaded.config.servers[0].tags, ["eu"]);
    assert_eq!(loaded.config.maintenance.len(), 1);
    assert_eq!(loaded.ids.len(), 3);
    assert_eq!(db.sensor_count().await.unwrap(), 3);
    let web = db.sensor_ids("web".into()).await.unwrap();
    assert_eq!(web.len(), 2);
    assert_eq!(
        db.sensor_ids("Site".into()).await.unwrap(),
        web,
        "a group selects its servers' sensors"
    );
    let id = db.sensor_ids("db/postgresql".into()).await.unwrap()[0];
    assert_eq!(db.sensor_path(id).await.unwrap(), "db/postgresql");
    assert!(matches!(
        db.sensor_ids("nothing".into()).await,
        Err(StoreError::NotFound(_))
    ));
    let again = db.apply(config).await.unwrap();
    assert_eq!((again.added, again.removed), (0, 0));
    let (channels, rules) = db.notifications().await.unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].channel, "chat");
}

/// The grouped count of sensors by state, by state name.
async fn by_state<S: Storage>(db: &S) -> std::collections::BTreeMap<String, i64> {
    let mut counts = std::collections::BTreeMap::new();
    let everything = portwatch_store::StatusQuery::default();
    for (_, state, n) in db.tally(everything).await.unwrap() {
        *counts
            .entry(state.to_string().split('(').next().unwrap().to_owned())
            .or_default() += n;
    }
    counts
}

/// The same count from every sensor's status row.
async fn counted_from_rows<S: Storage>(db: &S) -> std::collections::BTreeMap<String, i64> {
    let mut counts = std::collections::BTreeMap::new();
    for row in db.status().await.unwrap() {
        *counts
            .entry(row.state.to_string().split('(').next().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

/// Pausing by name marks the sensors, once; resuming clears them.
async fn pausing_by_name<S: Storage>(db: S) {
    db.apply(from_toml("t.toml", CONFIG).unwrap())
        .await
        .unwrap();
    assert_eq!(db.set_paused("web".into(), true).await.unwrap(), 2);
    assert_eq!(
        db.set_paused("web".into(), true).await.unwrap(),
        0,
        "already paused"
    );
    assert_eq!(db.load().await.unwrap().paused.len(), 2);
    assert_eq!(by_state(&db).await, counted_from_rows(&db).await);
    assert_eq!(
        by_state(&db).await["paused"],
        2,
        "never checked, paused by hand"
    );
    assert_eq!(db.set_paused("web/http".into(), false).await.unwrap(), 1);
    assert_eq!(db.load().await.unwrap().paused.len(), 1);
}

/// Users sign in with their password only, sessions end on sign-out, a
/// disabled user cannot sign in, and tokens are verified, listed without
/// their secret, and revoked.
async fn accounts<S: Storage>(db: S) {
    assert_eq!(db.user_count().await.unwrap(), 0);
    db.create_user("ada".into(), "correct horse".into(), Role::Admin)
        .await
        .unwrap();
    db.create_user("bob".into(), "battery staple".into(), Role::Read)
        .await
        .unwrap();
    assert_eq!(db.user_count().await.unwrap(), 2);
    assert_eq!(db.login("ada".into(), "wrong".into()).await.unwrap(), None);
    assert_eq!(db.login("nobody".into(), "x".into()).await.unwrap(), None);
    let session = db
        .login("bob".into(), "battery staple".into())
        .await
        .unwrap()
        .expect("signed in");
    let account = db
        .session(session.clone())
        .await
        .unwrap()
        .expect("a session");
    assert_eq!((account.name.as_str(), account.role), ("bob", Role::Read));
    assert!(!account.csrf.is_empty());
    db.logout(session.clone()).await.unwrap();
    assert_eq!(db.session(session).await.unwrap(), None);
    db.set_disabled("bob".into(), true).await.unwrap();
    assert_eq!(
        db.login("bob".into(), "battery staple".into())
            .await
            .unwrap(),
        None
    );
    db.set_password("ada".into(), "new password".into())
        .await
        .unwrap();
    assert_eq!(
        db.login("ada".into(), "correct horse".into())
            .await
            .unwrap(),
        None
    );
    assert!(
        db.login("ada".into(), "new password".into())
            .await
            .unwrap()
            .is_some()
    );
    let users = db.users().await.unwrap();
    assert_eq!(
        users
            .iter()
            .map(|u| (u.name.as_str(), u.disabled_ms.is_some()))
            .collect::<Vec<_>>(),
        [("ada", false), ("bob", true)]
    );

    let secret = db.create_token("ci".into(), Role::Admin).await.unwrap();
    let by_token = db
        .token(secret.clone())
        .await
        .unwrap()
        .expect("a valid token");
    assert_eq!((by_token.name.as_str(), by_token.role), ("ci", Role::Admin));
    assert_eq!(db.token("not-a-token".into()).await.unwrap(), None);
    let tokens = db.tokens().await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].name, "ci");
    assert!(
        db.create_token("ci".into(), Role::Read).await.is_err(),
        "token names are unique"
    );
    db.revoke_token("ci".into()).await.unwrap();
    assert_eq!(db.token(secret).await.unwrap(), None);
}

/// Status pages are saved, listed and deleted; a name that selects nothing
/// is refused.
/// A heartbeat sensor's push URL: made, pushed to, rotated (the old token
/// stops working and pushes are awaited afresh).
async fn push_urls<S: Storage>(db: S) {
    use portwatch_core::monitor::heartbeat::{Push, Pushes};
    db.apply(
        from_toml(
            "t.toml",
            "[[server]]\nname = \"backup\"\nhost = \"localhost\"\n[[server.sensor]]\nname = \"nightly\"\nkind = \"heartbeat\"\nevery = \"1d\"\n",
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let id = db.sensor_ids("backup/nightly".into()).await.unwrap()[0];
    let loaded = db.load().await.unwrap();
    let sensor = &loaded.config.servers[0].sensors[0];
    assert_eq!(sensor.port, 0);
    assert_eq!(
        sensor
            .overrides
            .heartbeat
            .as_ref()
            .map(|h| h.every.as_secs()),
        Some(86_400),
        "the heartbeat settings are stored"
    );
    assert_eq!(db.pushes(id).await.unwrap(), None);
    let token = db.new_push_token(id, 1_000).await.unwrap();
    assert_eq!(
        db.pushes(id).await.unwrap(),
        Some(Pushes {
            since_ms: 1_000,
            last: None
        })
    );
    let push = Push {
        at_ms: 2_000,
        down: true,
        message: "disk full".into(),
        duration_ms: Some(1_500),
    };
    assert_eq!(
        db.push(token.clone(), push.clone()).await.unwrap(),
        Some(id)
    );
    assert_eq!(db.push("nope".into(), push.clone()).await.unwrap(), None);
    assert_eq!(
        db.pushes(id).await.unwrap().unwrap().last,
        Some(push.clone())
    );
    let rotated = db.new_push_token(id, 3_000).await.unwrap();
    assert_ne!(rotated, token);
    assert_eq!(
        db.push(token, push.clone()).await.unwrap(),
        None,
        "the old URL is dead"
    );
    assert_eq!(db.pushes(id).await.unwrap().unwrap().since_ms, 3_000);
    assert_eq!(db.push(rotated, push).await.unwrap(), Some(id));
}

async fn status_pages<S: Storage>(db: S) {
    db.apply(from_toml("t.toml", CONFIG).unwrap())
        .await
        .unwrap();
    let page = StatusPage {
        slug: "public".into(),
        title: "Our services".into(),
        names: vec!["web".into(), "db/postgresql".into()],
        logo: Some("https://example.com/logo.png".into()),
        link: Some("https://example.com/".into()),
    };
    db.save_status_page(page.clone()).await.unwrap();
    assert_eq!(
        db.status_pages().await.unwrap(),
        std::slice::from_ref(&page)
    );
    let bad = StatusPage {
        slug: "bad".into(),
        title: "Bad".into(),
        names: vec!["missing".into()],
        logo: None,
        link: None,
    };
    assert!(db.save_status_page(bad).await.is_err());
    for (logo, link) in [
        (Some("javascript:alert(1)"), None),
        (None, Some("https://example.com/\"onmouseover=\"x")),
        (Some("/logo.png"), None),
    ] {
        let error = db
            .save_status_page(StatusPage {
                logo: logo.map(Into::into),
                link: link.map(Into::into),
                ..page.clone()
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a web address"), "{error}");
    }
    db.delete_status_page("public".into()).await.unwrap();
    assert!(db.status_pages().await.unwrap().is_empty());
}

/// Sensors added, changed and retired through the interface (the web's
/// and the API's edits), and groups, servers and windows likewise.
async fn edits<S: Storage>(db: S) {
    db.apply(from_toml("t.toml", CONFIG).unwrap())
        .await
        .unwrap();
    let host = portwatch_probe::target::parse_bare_host("192.0.2.9").unwrap();
    let overrides = Overrides {
        interval: Some(Duration::from_secs(15)),
        ..Overrides::default()
    };
    let id = db
        .add_sensor(
            "cache".into(),
            host.clone(),
            6379,
            "redis".into(),
            overrides.clone(),
        )
        .await
        .unwrap();
    assert_eq!(db.sensor_path(id).await.unwrap(), "cache/redis");
    let (port, expect_closed, stored, managed) = db.sensor_settings(id).await.unwrap();
    assert_eq!((port, expect_closed, managed), (6379, false, false));
    assert_eq!(stored.interval, Some(Duration::from_secs(15)));
    db.update_sensor(id, 6380, true, Overrides::default())
        .await
        .unwrap();
    let (port, expect_closed, stored, _) = db.sensor_settings(id).await.unwrap();
    assert_eq!((port, expect_closed, stored.interval), (6380, true, None));
    db.retire_sensor(id).await.unwrap();
    assert!(matches!(
        db.sensor_ids("cache/redis".into()).await,
        Err(StoreError::NotFound(_))
    ));

    db.save_group("Lab".into(), overrides.clone())
        .await
        .unwrap();
    db.save_server(
        "lab1".into(),
        host,
        Some("Lab".into()),
        Overrides::default(),
        vec!["x".into()],
    )
    .await
    .unwrap();
    let groups = db.config_items(false).await.unwrap();
    let lab = groups
        .iter()
        .find(|g| g.name == "Lab")
        .expect("the new group");
    assert_eq!(
        (lab.managed, lab.overrides.interval),
        (false, Some(Duration::from_secs(15)))
    );
    let servers = db.config_items(true).await.unwrap();
    let lab1 = servers
        .iter()
        .find(|s| s.name == "lab1")
        .expect("the new server");
    assert_eq!(
        (lab1.host.as_str(), lab1.group.as_str()),
        ("192.0.2.9", "Lab")
    );
    db.retire("server".into(), "lab1".into()).await.unwrap();
    assert!(
        !db.config_items(true)
            .await
            .unwrap()
            .iter()
            .any(|s| s.name == "lab1")
    );

    let windows = db.windows().await.unwrap();
    assert_eq!(windows.len(), 1);
    let (window_id, managed, def) = windows[0].clone();
    assert!(managed, "from the file");
    assert_eq!(def.name, "nightly");
    let mut copy = def.clone();
    copy.name = "weekly".into();
    db.add_window(copy).await.unwrap();
    assert_eq!(db.windows().await.unwrap().len(), 2);
    assert!(
        matches!(
            db.delete_window(window_id).await,
            Err(StoreError::Conflict(_))
        ),
        "a window from the file is edited in the file"
    );
    let added = db
        .windows()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.2.name == "weekly")
        .expect("the added window");
    assert!(!added.1, "not from the file");
    db.delete_window(added.0).await.unwrap();
    let left: Vec<String> = db
        .windows()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.2.name)
        .collect();
    assert_eq!(left, ["nightly"]);
}

/// Channels and rules made through the interface are listed apart from
/// the file's, and deleted.
async fn notification_definitions<S: Storage>(db: S) {
    db.apply(from_toml("t.toml", CONFIG).unwrap())
        .await
        .unwrap();
    let def = portwatch_core::config::channel_from_json(&serde_json::json!({
        "name": "ops",
        "webhook": "http://127.0.0.1:9/ops",
    }))
    .unwrap();
    let chat = db
        .channel("chat".into())
        .await
        .unwrap()
        .expect("the file's channel");
    assert!(
        matches!(db.save_channel(chat).await, Err(StoreError::Conflict(_))),
        "a channel from the file is edited in the file"
    );
    db.save_channel(def.clone()).await.unwrap();
    assert_eq!(db.channel("ops".into()).await.unwrap(), Some(def));
    let channels = db.channels().await.unwrap();
    let managed: Vec<(&str, bool)> = channels
        .iter()
        .map(|c| (c.def.name.as_str(), c.managed))
        .collect();
    assert_eq!(managed, [("chat", true), ("ops", false)]);
    let mut rule = db.notifications().await.unwrap().1[0].clone();
    rule.channel = "ops".into();
    let rule_id = db.add_rule(rule).await.unwrap();
    assert_eq!(db.rules().await.unwrap().len(), 2);
    db.delete_rule(rule_id).await.unwrap();
    assert_eq!(db.rules().await.unwrap().len(), 1);
    db.delete_channel("ops".into()).await.unwrap();
    assert_eq!(db.channel("ops".into()).await.unwrap(), None);
    assert_eq!(db.undelivered().await.unwrap(), 0);
    assert!(db.outbox(10).await.unwrap().is_empty());
}

/// Servers in two groups and none, with tags, for the lists.
const LISTED: &str = r#"
[[group]]
name = "Beta"
[[group]]
name = "Alpha"
[[server]]
name = "web-2"
host = "10.0.0.2"
group = "Alpha"
  [[server.sensor]]
  port = 80
  [[server.sensor]]
  port = 443
  tags = ["TLS"]
  [[server.sensor]]
  name = "queue"
  port = 5672
[[server]]
name = "web"
host = "10.0.0.1"
group = "Alpha"
tags = ["prod"]
  [[server.sensor]]
  port = 80
  [[server.sensor]]
  port = 443
  [[server.sensor]]
  port = 22
[[server]]
name = "db"
host = "shop-db.internal"
group = "Beta"
  [[server.sensor]]
  port = 5432
  [[server.sensor]]
  port = 6432
[[server]]
name = "lone"
host = "192.0.2.7"
  [[server.sensor]]
  port = 25
  [[server.sensor]]
  port = 587
"#;

/// What a list shows, computed here from every status row: the rows'
/// ids with their counts.
fn listed_here(
    rows: &[portwatch_store::StatusRow],
    query: &portwatch_store::StatusQuery,
) -> Vec<(i64, Option<i64>)> {
    use portwatch_core::monitor::state::State;
    use portwatch_store::StatusOrder;
    let severity = |state: State| match state {
        State::Down => 0,
        State::Unknown => 1,
        State::Warning => 2,
        State::Up => 3,
        State::Pending => 4,
        State::Paused(_) => 5,
    };
    let text = query.text.trim().to_lowercase();
    let tag = query.tag.trim().to_lowercase();
    let mut shown: Vec<&portwatch_store::StatusRow> = rows
        .iter()
        .filter(|r| query.id.is_none_or(|id| r.id == id))
        .filter(|r| query.group.as_ref().is_none_or(|g| *g == r.group))
        .filter(|r| {
            text.is_empty()
                || r.path.to_lowercase().contains(&text)
                || r.host.to_lowercase().contains(&text)
                || r.group
                    .as_deref()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(&text)
        })
        .filter(|r| tag.is_empty() || r.tags.iter().any(|t| t.to_lowercase() == tag))
        .filter(|r| !query.problems || severity(r.state) < 3)
        .collect();
    let path = |r: &portwatch_store::StatusRow| {
        let (server, sensor) = r.path.split_once('/').unwrap();
        (server.to_owned(), sensor.to_owned())
    };
    shown.sort_by(|a, b| {
        let key = match query.order {
            StatusOrder::Path => path(a).cmp(&path(b)),
            StatusOrder::Severity | StatusOrder::Triage => {
                severity(a.state).cmp(&severity(b.state))
            }
            StatusOrder::Target => (&a.host, a.port).cmp(&(&b.host, b.port)),
            StatusOrder::Reason => a.last_reason.cmp(&b.last_reason),
            StatusOrder::Response => a.last_rtt_us.cmp(&b.last_rtt_us),
            StatusOrder::Since => a.since_ms.cmp(&b.since_ms),
        };
        let key = if query.descending { key.reverse() } else { key };
        let since = if query.order == StatusOrder::Triage {
            a.since_ms.cmp(&b.since_ms)
        } else {
            std::cmp::Ordering::Equal
        };
        a.group
            .cmp(&b.group)
            .then(key)
            .then(since)
            .then_with(|| path(a).cmp(&path(b)))
    });
    let total = shown.len() as i64;
    let mut listed = Vec::new();
    for row in &shown {
        let in_group: Vec<_> = shown.iter().filter(|r| r.group == row.group).collect();
        let place = in_group.iter().position(|r| r.id == row.id).unwrap() as u64;
        match query.per_group {
            Some(n) if place >= n => {}
            Some(_) => listed.push((row.id, Some(in_group.len() as i64))),
            None => listed.push((row.id, query.count.then_some(total))),
        }
    }
    let limit = query.limit.map_or(usize::MAX, |l| l as usize);
    listed
        .into_iter()
        .skip(query.offset as usize)
        .take(limit)
        .collect()
}

/// A list's sensors and counts, as the store lists them.
/// The ids of the sensors `query` lists, in its order.
async fn ids_listed_by<S: Storage>(db: &S, query: &portwatch_store::StatusQuery) -> Vec<i64> {
    listed_by(db, query)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// A tally as a set: its rows come in no particular order.
fn tally_set(
    tally: portwatch_store::Tally,
) -> std::collections::HashSet<(Option<String>, portwatch_core::monitor::state::State, i64)> {
    tally.into_iter().collect()
}

async fn listed_by<S: Storage>(
    db: &S,
    query: &portwatch_store::StatusQuery,
) -> Vec<(i64, Option<i64>)> {
    db.list(query.clone())
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.row.id, l.matching))
        .collect()
}

/// The dashboard's and the API's lists, read in SQL, show what filtering
/// and sorting every status row shows, and the tally counts them; a
/// search follows renames.
async fn lists<S: Storage, W: Writes>(db: S, writer: W) {
    use portwatch_core::monitor::state::State;
    use portwatch_probe::{Reason, Status};
    use portwatch_store::writer::LastCheck;
    use portwatch_store::{StatusOrder, StatusQuery, StoredResult};

    db.apply(from_toml("t.toml", LISTED).unwrap())
        .await
        .unwrap();
    let at = 1_790_000_000_000;
    let states = [
        ("web/http", State::Down, Reason::Refused, None, 5),
        ("web/https", State::Up, Reason::Connected, Some(900), 1),
        (
            "web/ssh",
            State::Warning,
            Reason::Connected,
            Some(40_000),
            3,
        ),
        ("web-2/https", State::Down, Reason::Timeout, None, 2),
        ("db/postgresql", State::Unknown, Reason::DnsError, None, 4),
        ("db/6432", State::Warning, Reason::Connected, Some(300), 6),
        ("lone/smtp", State::Up, Reason::Connected, Some(300), 7),
    ];
    for (path, state, reason, rtt_us, minutes) in states {
        let id = db.sensor_ids(path.into()).await.unwrap()[0];
        let since_ms = at - minutes * 60_000;
        writer.result(
            StoredResult {
                sensor: id,
                at_ms: at,
                status: if state == State::Up {
                    Status::Up
                } else {
                    Status::Down
                },
                reason,
                rtt_us,
            },
            LastCheck {
                state,
                since_ms,
                message: reason.as_str().into(),
                details: None,
            },
        );
    }
    writer.flush().await;
    // web-2/http never checked and paused by hand; web-2/queue and
    // lone/submission pending.
    db.set_paused("web-2/http".into(), true).await.unwrap();
    let rows = db.status().await.unwrap();
    assert_eq!(rows.len(), 10);

    let mut queries = vec![StatusQuery::default()];
    for order in [
        StatusOrder::Path,
        StatusOrder::Severity,
        StatusOrder::Triage,
        StatusOrder::Target,
        StatusOrder::Reason,
        StatusOrder::Response,
        StatusOrder::Since,
    ] {
        for descending in [false, true] {
            queries.push(StatusQuery {
                order,
                descending,
                ..StatusQuery::default()
            });
        }
    }
    let some = |q: StatusQuery| q;
    queries.extend([
        some(StatusQuery {
            problems: true,
            order: StatusOrder::Triage,
            ..Default::default()
        }),
        some(StatusQuery {
            problems: true,
            text: "WEB".into(),
            ..Default::default()
        }),
        some(StatusQuery {
            group: Some(Some("Alpha".into())),
            order: StatusOrder::Severity,
            limit: Some(2),
            offset: 1,
            ..Default::default()
        }),
        some(StatusQuery {
            group: Some(None),
            count: true,
            ..Default::default()
        }),
        some(StatusQuery {
            group: Some(Some("Beta".into())),
            problems: true,
            ..Default::default()
        }),
        some(StatusQuery {
            text: "shop".into(),
            ..Default::default()
        }),
        some(StatusQuery {
            text: "alp".into(),
            count: true,
            limit: Some(3),
            ..Default::default()
        }),
        some(StatusQuery {
            text: "b/h".into(),
            ..Default::default()
        }),
        some(StatusQuery {
            tag: "Prod".into(),
            ..Default::default()
        }),
        some(StatusQuery {
            tag: "tls".into(),
            ..Default::default()
        }),
        some(StatusQuery {
            per_group: Some(2),
            order: StatusOrder::Severity,
            ..Default::default()
        }),
        some(StatusQuery {
            per_group: Some(1),
            text: "web".into(),
            order: StatusOrder::Response,
            descending: true,
            ..Default::default()
        }),
        some(StatusQuery {
            limit: Some(4),
            offset: 8,
            ..Default::default()
        }),
        some(StatusQuery {
            id: Some(rows[3].id),
            ..Default::default()
        }),
    ]);
    // A group's pages in severity order, which SQLite reads rank by rank:
    // pages that start, end and span each rank's part.
    for group in [Some("Alpha"), Some("Beta"), None] {
        for (offset, limit) in [(0, 1), (0, 2), (1, 2), (2, 3), (0, 10), (3, 1), (1, 1)] {
            queries.push(StatusQuery {
                group: Some(group.map(str::to_owned)),
                order: StatusOrder::Severity,
                offset,
                limit: Some(limit),
                ..Default::default()
            });
        }
    }
    for query in queries {
        let listed = listed_by(&db, &query).await;
        assert_eq!(listed, listed_here(&rows, &query), "{query:?}");
        // Something, unless the page starts past the end.
        let all = StatusQuery {
            offset: 0,
            limit: None,
            ..query.clone()
        };
        assert!(
            !listed.is_empty() || listed_here(&rows, &all).len() <= query.offset as usize,
            "{query:?} lists something"
        );
        // The tally counts the same sensors, by group and state.
        let mut tallied: Vec<(Option<String>, String, i64)> = db
            .tally(query.clone())
            .await
            .unwrap()
            .into_iter()
            .map(|(g, s, n)| (g, s.to_string(), n))
            .collect();
        tallied.sort();
        let everything = StatusQuery {
            order: StatusOrder::Path,
            descending: false,
            offset: 0,
            limit: None,
            per_group: None,
            count: false,
            ..query.clone()
        };
        let mut counted: Vec<(Option<String>, String, i64)> = Vec::new();
        for (id, _) in listed_here(&rows, &everything) {
            let row = rows.iter().find(|r| r.id == id).unwrap();
            let key = (row.group.clone(), row.state.to_string());
            match counted
                .iter_mut()
                .find(|c| (&c.0, &c.1) == (&key.0, &key.1))
            {
                Some(c) => c.2 += 1,
                None => counted.push((key.0, key.1, 1)),
            }
        }
        counted.sort();
        assert_eq!(tallied, counted, "{query:?}");
    }

    // Searches follow a new host, a new group and new tags (SQLite's index
    // is kept by triggers), and a text or tag of one or two characters
    // is still found.
    let moved = LISTED
        .replace("shop-db.internal", "store-db.internal")
        .replace(
            "host = \"192.0.2.7\"",
            "host = \"192.0.2.7\"\ngroup = \"Beta\"",
        )
        .replace("tags = [\"prod\"]", "tags = [\"staging\", \"db\"]")
        .replace("tags = [\"TLS\"]", "tags = [\"TLS\", \"Prod\"]");
    db.apply(from_toml("t.toml", &moved).unwrap())
        .await
        .unwrap();
    let rows = db.status().await.unwrap();
    for (text, tag, found) in [
        ("shop", "", 0),
        ("STORE-", "", 2),
        ("beta", "", 4),
        ("2/q", "", 1),
        ("db", "", 2),
        ("7\nb", "", 0),
        ("Q", "", 2),
        ("_", "", 0),
        ("", "prod", 1),
        ("", "STAGING", 3),
        ("", "stag", 0),
        ("", "db", 3),
        ("web", "tls", 1),
        ("web/", "tls", 0),
        // Two characters at the end of a group's name, in a group's name
        // only, in no text, and beside a tag.
        ("ta", "", 4),
        ("HA", "", 6),
        ("zq", "", 0),
        ("we", "tls", 1),
        ("z", "", 0),
    ] {
        let query = StatusQuery {
            text: text.into(),
            tag: tag.into(),
            ..Default::default()
        };
        let listed = listed_by(&db, &query).await;
        assert_eq!(listed, listed_here(&rows, &query), "{query:?}");
        assert_eq!(listed.len(), found, "{query:?}");
    }

    // At most n sensors read: a list, and the tally, of n of those that
    // match (or all of them, when fewer match).
    for (query, matching) in [
        (
            StatusQuery {
                text: "web".into(),
                ..Default::default()
            },
            6,
        ),
        (
            StatusQuery {
                text: "we".into(),
                ..Default::default()
            },
            6,
        ),
        (
            StatusQuery {
                tag: "staging".into(),
                ..Default::default()
            },
            3,
        ),
        (StatusQuery::default(), 10),
    ] {
        let every: Vec<i64> = listed_here(&rows, &query)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(every.len(), matching, "{query:?}");
        for n in [1, 4, 20] {
            let bounded = StatusQuery {
                at_most: Some(n),
                ..query.clone()
            };
            let listed: Vec<i64> = ids_listed_by(&db, &bounded).await;
            assert_eq!(listed.len(), matching.min(n as usize), "{bounded:?}");
            assert!(listed.iter().all(|id| every.contains(id)), "{bounded:?}");
            // In the list's order, as every matching sensor is.
            let in_order: Vec<i64> = every
                .iter()
                .copied()
                .filter(|id| listed.contains(id))
                .collect();
            assert_eq!(listed, in_order, "{bounded:?}");
            let tallied: i64 = db
                .tally(bounded.clone())
                .await
                .unwrap()
                .iter()
                .map(|(_, _, n)| n)
                .sum();
            assert_eq!(tallied, listed.len() as i64, "{bounded:?}");
            // Each group's count is of the sensors read.
            let per_group = StatusQuery {
                per_group: Some(1),
                ..bounded.clone()
            };
            let counted: i64 = listed_by(&db, &per_group)
                .await
                .iter()
                .map(|(_, n)| n.unwrap())
                .sum();
            assert_eq!(counted, listed.len() as i64, "{per_group:?}");
            // The same sensors, read once and then listed, counted and
            // numbered by their ids.
            let mut found = db.first_found(bounded.clone()).await.unwrap();
            found.sort();
            let mut sorted = listed.clone();
            sorted.sort();
            assert_eq!(found, sorted, "{bounded:?}");
            let among = StatusQuery {
                among: Some(found.into()),
                ..query.clone()
            };
            let by_ids: Vec<i64> = ids_listed_by(&db, &among).await;
            assert_eq!(by_ids, listed, "{among:?}");
            assert_eq!(
                tally_set(db.tally(among.clone()).await.unwrap()),
                tally_set(db.tally(bounded.clone()).await.unwrap()),
                "{among:?}"
            );
            let per_group = StatusQuery {
                per_group: Some(1),
                ..among
            };
            assert_eq!(
                listed_by(&db, &per_group).await,
                listed_by(
                    &db,
                    &StatusQuery {
                        per_group: Some(1),
                        ..bounded.clone()
                    }
                )
                .await,
                "{per_group:?}"
            );
        }
        // Among given sensors, only those that match.
        let others: Vec<i64> = rows
            .iter()
            .map(|r| r.id)
            .filter(|id| !every.contains(id))
            .take(2)
            .collect();
        let among = StatusQuery {
            among: Some(every.iter().skip(1).chain(&others).copied().collect()),
            ..query.clone()
        };
        let by_ids: Vec<i64> = ids_listed_by(&db, &among).await;
        assert_eq!(by_ids, every[1..], "{among:?}");
    }
}

/// The embedded SQLite store.
/// What goes in through the write side comes back through the read side:
/// a result and a state change with its notification, committed before
/// they are acknowledged; the notification is due, retried when it fails,
/// and gone once delivered; a held one waits for its settlement, and a
/// cancelled one is never sent.
/// `shared`: several processes may use the store (PostgreSQL), so claims
/// keep them off each other's notifications; one process alone (SQLite)
/// keeps its channels apart by itself, and a claim holds nothing back
/// (after a crash, nothing waits for a claim to end).
async fn writes_are_read_back<S: Storage, W: Writes>(db: S, writer: W, shared: bool) {
    use portwatch_core::monitor::state::{Change, State};
    use portwatch_probe::{Reason, Status};
    use portwatch_store::StoredResult;
    use portwatch_store::writer::LastCheck;

    db.apply(from_toml("t.toml", CONFIG).unwrap())
        .await
        .unwrap();
    let id = db.sensor_ids("web/http".into()).await.unwrap()[0];
    let at = 1_790_000_000_000;
    let result = StoredResult {
        sensor: id,
        at_ms: at,
        status: Status::Up,
        reason: Reason::Connected,
        rtt_us: Some(250),
    };
    let last = LastCheck {
        state: State::Up,
        since_ms: at,
        message: "connected".into(),
        details: None,
    };
    writer.result(result, last.clone());
    let channel = portwatch_core::config::channel_from_json(&serde_json::json!({
        "name": "chat", "webhook": "http://127.0.0.1:9/hook"
    }))
    .unwrap();
    let payload = portwatch_core::notify::test_payload(&channel);
    let change = |from, to| Change {
        from,
        to,
        reason: Some(Reason::Connected),
        message: "connected".into(),
    };
    let notify = vec![("chat".to_owned(), payload.clone())];
    writer
        .event_holding(
            id,
            at,
            change(State::Pending, State::Up),
            notify.clone(),
            None,
        )
        .await
        .expect("acknowledged once committed");
    // Acknowledged: readable at once, before any flush.
    let events = db.events(id, 0, i64::MAX).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.from, e.to, e.at_ms))
            .collect::<Vec<_>>(),
        [(State::Pending, State::Up, at)]
    );
    writer.flush().await;
    assert_eq!(db.results(id, 0, i64::MAX).await.unwrap(), [result]);
    let counts = by_state(&db).await;
    assert_eq!(counts, counted_from_rows(&db).await);
    assert_eq!(counts["up"], 1);
    assert_eq!(db.states().await.unwrap()[&id], (State::Up, at));
    assert_eq!(db.last_checked().await.unwrap()[&id], at);
    assert_eq!(db.status_of(id).await.unwrap().last_rtt_us, Some(250));
    // The dashboard's glance keeps the last checks across commits.
    assert_eq!(
        db.glances(vec![id], at).await.unwrap()[&id].ticks,
        [(at, Status::Up, Reason::Connected)]
    );
    let down = StoredResult {
        at_ms: at + 1000,
        status: Status::Down,
        reason: Reason::Refused,
        rtt_us: None,
        ..result
    };
    for n in 0..25 {
        writer.result(
            StoredResult {
                at_ms: down.at_ms + n * 1000,
                ..down
            },
            last.clone(),
        );
    }
    writer.flush().await;
    let ticks = db.glances(vec![id], at).await.unwrap()[&id].ticks.clone();
    assert_eq!(ticks.len(), 20, "the last twenty: {ticks:?}");
    assert_eq!(ticks[19], (at + 25_000, Status::Down, Reason::Refused));
    // One flush of several sensors: each reads back its own results only
    // (a journal part holds a range of sensors).
    let mut others = Vec::new();
    for name in ["web/http", "web/https", "db/postgresql"] {
        others.extend(db.sensor_ids(name.into()).await.unwrap());
    }
    others.sort_unstable();
    assert_eq!(others.len(), 3);
    let later = at + 60_000;
    for (n, sensor) in others.iter().enumerate() {
        for k in 0..2 {
            writer.result(
                StoredResult {
                    sensor: *sensor,
                    at_ms: later + k * 1000,
                    rtt_us: Some(n as u32 * 10 + k as u32),
                    ..result
                },
                last.clone(),
            );
        }
    }
    writer.flush().await;
    for (n, sensor) in others.iter().enumerate() {
        let read = db.results(*sensor, later, i64::MAX).await.unwrap();
        assert_eq!(
            read.iter()
                .map(|r| (r.sensor, r.at_ms, r.rtt_us))
                .collect::<Vec<_>>(),
            [
                (*sensor, later, Some(n as u32 * 10)),
                (*sensor, later + 1000, Some(n as u32 * 10 + 1))
            ],
            "sensor {sensor} of {others:?}"
        );
    }

    let due = db.due_notifications(at, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].channel.as_str(), due[0].attempts, &due[0].payload),
        ("chat", 0, &payload)
    );
    assert_eq!(db.undelivered().await.unwrap(), 1);
    db.delivery_failed(due[0].id, "HTTP 503".into(), at + 1_000)
        .await
        .unwrap();
    assert!(
        db.due_notifications(at + 999, 10).await.unwrap().is_empty(),
        "not before its retry time"
    );
    let retry = db.due_notifications(at + 1_000, 10).await.unwrap();
    assert_eq!((retry[0].id, retry[0].attempts), (due[0].id, 1));
    db.delivered(retry[0].id, at + 1_100).await.unwrap();
    assert_eq!(db.undelivered().await.unwrap(), 0);
    assert!(db.due_notifications(i64::MAX, 10).await.unwrap().is_empty());

    // Held until settled: released by one settlement, cancelled by another.
    writer
        .event_holding(
            id,
            at + 2_000,
            change(State::Up, State::Down),
            notify.clone(),
            Some(at + 32_000),
        )
        .await
        .unwrap();
    assert!(
        db.due_notifications(at + 2_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "held"
    );
    writer.settle(id, at + 2_500, None).await.unwrap();
    let released = db.due_notifications(at + 2_500, 10).await.unwrap();
    assert_eq!(released.len(), 1, "released by the settlement");
    db.delivered(released[0].id, at + 2_600).await.unwrap();
    writer
        .event_holding(
            id,
            at + 3_000,
            change(State::Down, State::Up),
            notify,
            Some(at + 33_000),
        )
        .await
        .unwrap();
    writer
        .settle(
            id,
            at + 3_500,
            Some("cancelled: its dependency is down".into()),
        )
        .await
        .unwrap();
    assert!(
        db.due_notifications(i64::MAX, 10).await.unwrap().is_empty(),
        "a cancelled notification is never sent"
    );
    assert_eq!(db.events(id, 0, i64::MAX).await.unwrap().len(), 3);

    // Claims: each due notification goes to one claimer until its claim
    // ends or its attempt is recorded; one not attempted is given back.
    let notify = vec![("chat".to_owned(), payload.clone())];
    for (n, (from, to)) in [(State::Up, State::Down), (State::Down, State::Up)]
        .into_iter()
        .enumerate()
    {
        writer
            .event_holding(
                id,
                at + 4_000 + n as i64,
                change(from, to),
                notify.clone(),
                None,
            )
            .await
            .unwrap();
    }
    let claim =
        |now: i64, busy: Vec<String>| db.claim_notifications(now, now + 60_000, 10, busy, None);
    assert!(
        claim(at + 4_001, vec!["chat".into()])
            .await
            .unwrap()
            .is_empty(),
        "busy"
    );
    let first = claim(at + 4_001, Vec::new()).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first[0].id < first[1].id, "oldest first");
    if !shared {
        assert_eq!(
            claim(at + 4_002, Vec::new()).await.unwrap().len(),
            2,
            "one process: a claim holds nothing back"
        );
        return;
    }
    assert!(
        claim(at + 4_002, Vec::new()).await.unwrap().is_empty(),
        "claimed once"
    );
    db.delivered(first[0].id, at + 4_100).await.unwrap();
    db.release_notifications(vec![first[0].id, first[1].id], at + 5_000)
        .await
        .unwrap();
    assert!(claim(at + 4_999, Vec::new()).await.unwrap().is_empty());
    let again = claim(at + 5_000, Vec::new()).await.unwrap();
    assert_eq!(
        again.iter().map(|p| p.id).collect::<Vec<_>>(),
        [first[1].id],
        "given back; the delivered one stays delivered"
    );
    assert!(claim(at + 65_000 - 1, Vec::new()).await.unwrap().is_empty());
    let lapsed = claim(at + 65_000, Vec::new()).await.unwrap();
    assert_eq!(lapsed.len(), 1, "due again once the claim ends");
}

mod sqlite {
    use portwatch_store::Db;

    /// A new store in a directory removed on drop.
    struct Fresh {
        dir: std::path::PathBuf,
        db: Db,
    }

    impl Drop for Fresh {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fresh() -> Fresh {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("portwatch-contract-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(&dir.join("contract.db"), 4).unwrap();
        Fresh { dir, db }
    }

    macro_rules! contract {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = fresh();
                super::$name(store.db.clone()).await;
            }
        )*};
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_are_read_back() {
        let store = fresh();
        let (writer, thread) =
            portwatch_store::writer::start(&store.dir.join("contract.db")).unwrap();
        super::writes_are_read_back(store.db.clone(), writer, false).await;
        // Dropping the writer's last handle ends its thread.
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists() {
        let store = fresh();
        let (writer, thread) =
            portwatch_store::writer::start(&store.dir.join("contract.db")).unwrap();
        super::lists(store.db.clone(), writer).await;
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }

    contract!(
        configuration_round_trips,
        pausing_by_name,
        accounts,
        status_pages,
        push_urls,
        edits,
        notification_definitions,
    );
}

mod postgres {
    use portwatch_store::location::{Location, PgTarget};
    use portwatch_store::pg::Pg;
    use portwatch_testpg::Cluster;

    /// A new cluster with an empty database `portwatch`, and where it is;
    /// `None` where the suite's rule lets a test without PostgreSQL go.
    async fn empty(test: &'static str) -> Option<(Cluster, PgTarget)> {
        let cluster = tokio::task::spawn_blocking(move || {
            let cluster = Cluster::for_test(test)?;
            cluster.create_database("portwatch").unwrap();
            Some(cluster)
        })
        .await
        .unwrap()?;
        let Location::Postgres(target) = Location::parse(&cluster.url("portwatch")).unwrap() else {
            panic!("a postgres:// URL is PostgreSQL");
        };
        Some((cluster, target))
    }

    /// [`empty`], with the store on it.
    async fn fresh(test: &'static str) -> Option<(Cluster, Pg)> {
        let (cluster, target) = empty(test).await?;
        let pg = Pg::connect(&target, 4).await.unwrap();
        Some((cluster, pg))
    }

    macro_rules! contract {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((_cluster, pg)) = fresh(concat!("contract::postgres::", stringify!($name))).await else {
                    return;
                };
                super::$name(pg).await;
            }
        )*};
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_are_read_back() {
        let Some((_cluster, pg)) = fresh("contract::postgres::writes_are_read_back").await else {
            return;
        };
        let (writer, thread) = pg.writer();
        super::writes_are_read_back(pg.clone(), writer, true).await;
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists() {
        let Some((_cluster, pg)) = fresh("contract::postgres::lists").await else {
            return;
        };
        let (writer, thread) = pg.writer();
        super::lists(pg.clone(), writer).await;
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }

    contract!(
        configuration_round_trips,
        pausing_by_name,
        accounts,
        status_pages,
        push_urls,
        edits,
        notification_definitions,
    );

    /// Four processes opening a new database at once: the schema is made
    /// once (under the lock row), and every one of them gets a working
    /// store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_starting_together_migrate_once() {
        let Some((cluster, target)) =
            empty("contract::postgres::processes_starting_together_migrate_once").await
        else {
            return;
        };
        let opened = futures_util::future::join_all((0..4).map(|_| Pg::connect(&target, 2))).await;
        for pg in opened {
            let pg = pg.expect("every process opens the store");
            assert_eq!(portwatch_store::Storage::generation(&pg).await.unwrap(), 0);
        }
        let cluster = std::sync::Arc::new(cluster);
        let version = tokio::task::spawn_blocking(move || {
            cluster
                .psql("portwatch", "SELECT version FROM portwatch_schema")
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(version, portwatch_store::pg::SCHEMA_VERSION.to_string());
    }
}
