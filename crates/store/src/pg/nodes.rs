//! Nodes sharing a PostgreSQL store: each `serve` registers a row in
//! `nodes` and renews its lease there, by the database's clock.
//!
//! Plain SQL only (`INSERT … SELECT … WHERE NOT EXISTS`, `UPDATE …
//! RETURNING`, a CTE): no advisory locks and no session state, so the same
//! statements work through a pooler in transaction mode and on engines
//! that speak PostgreSQL's protocol without its locking functions.

use std::time::Duration;

use portwatch_core::monitor::cluster::Member;
use portwatch_core::notify::{ChannelDef, LapsedNode, Payload, RuleDef};

use super::Pg;
use crate::StoreError;

/// What a node says about itself when it joins.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Unique among the live nodes.
    pub name: String,
    /// Where it checks from.
    pub location: String,
    /// portwatch's version.
    pub version: String,
    /// How long its lease lasts without renewal.
    pub lease: Duration,
    /// How long a node joining a location that has live nodes waits before
    /// its share is its own: long enough for every other node to have seen
    /// it by then (two heartbeats), so that the hand-over is exact. A node
    /// joins after the longest delay of the live nodes and its own: each
    /// node's view holds for its own delay (see `cluster::View`).
    pub join_delay: Duration,
}

/// What a node reports at each heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Heartbeat {
    /// The sensors it checks.
    pub sensors: i64,
    /// Checks per second since the last heartbeat.
    pub checks_per_s: f64,
    /// Checks started late, since it started.
    pub late: i64,
    /// Checks missed, since it started.
    pub missed: i64,
}

/// A node as the Nodes page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRow {
    /// Its id (a node that rejoins gets a new one).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its location.
    pub location: String,
    /// portwatch's version.
    pub version: String,
    /// When it joined (ms).
    pub started_ms: i64,
    /// Its last heartbeat (ms).
    pub heartbeat_ms: i64,
    /// When its lease ends or ended (ms).
    pub expires_ms: i64,
    /// Whether its lease holds.
    pub live: bool,
    /// Whether it left by stopping (rather than by its lease lapsing).
    pub left: bool,
    /// Its last heartbeat's figures.
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
}

/// Milliseconds since the epoch of a `timestamptz` expression.
macro_rules! ms {
    ($e:literal) => {
        concat!("(extract(epoch FROM ", $e, ") * 1000)::bigint")
    };
}

/// How long nodes that are gone stay listed.
const LISTED: Duration = Duration::from_secs(24 * 3600);

impl Pg {
    /// Registers a node; returns its id. Refused while a live node has the
    /// same name, or while `store copy` holds the store.
    pub async fn join_node(&self, spec: &NodeSpec) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        // Joins one at a time (a row lock held to the commit): two nodes
        // joining an empty store at once would otherwise both find no live
        // node, and both start at once. A node starts late whenever any
        // node is live, in whatever location: the judges of sensors checked
        // from several locations are chosen among all of them.
        let client = client.transaction().await.map_err(self.fail())?;
        client
            .execute(
                "SELECT 1 FROM portwatch_schema WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await
            .map_err(self.fail())?;
        let busy = client
            .query_opt(
                "SELECT 'name', location FROM nodes WHERE name = $1 AND expires_at > now() AND left_at IS NULL
                 UNION ALL
                 SELECT 'lease', holder FROM monitor_lease WHERE expires_at > now()
                 LIMIT 1",
                &[&spec.name],
            )
            .await
            .map_err(self.fail())?;
        if let Some(row) = busy {
            let (what, other): (&str, String) = (row.get(0), row.get(1));
            return Err(StoreError::Conflict(match what {
                "name" => format!(
                    "a live node named '{}' (location {other}) already monitors {}: give this one another --node NAME, or stop the other (a node that died is forgotten within {} s)",
                    spec.name,
                    self.name(),
                    spec.lease.as_secs()
                ),
                _ => format!(
                    "{other} holds {} (portwatch store copy): wait until it ends",
                    self.name()
                ),
            }));
        }
        let row = client
            .query_one(
                "INSERT INTO nodes (name, location, version, started_at, active_at, heartbeat_at, expires_at, join_delay_ms)
                 SELECT $1, $2, $3, now(),
                        CASE WHEN live.n > 0
                             THEN now() + make_interval(secs => greatest($5::float8, live.delay_ms / 1000.0::float8)) ELSE now() END,
                        now(), now() + make_interval(secs => $4), ($5::float8 * 1000)::bigint
                 FROM (SELECT count(*) AS n, coalesce(max(join_delay_ms), 0) AS delay_ms
                       FROM nodes WHERE expires_at > now() AND left_at IS NULL) AS live
                 RETURNING id",
                &[
                    &spec.name,
                    &spec.location,
                    &spec.version,
                    &spec.lease.as_secs_f64(),
                    &spec.join_delay.as_secs_f64(),
                ],
            )
            .await
            .map_err(self.fail())?;
        // Rows of nodes long gone are dropped by whoever joins.
        client
            .execute(
                "DELETE FROM nodes WHERE expires_at < now() - make_interval(secs => $1)",
                &[&LISTED.as_secs_f64()],
            )
            .await
            .map_err(self.fail())?;
        client.commit().await.map_err(self.fail())?;
        Ok(row.get(0))
    }

    /// Renews node `id`'s lease and reports its figures; returns the live
    /// nodes of every location, itself among them, with their times as
    /// offsets from the database's clock. `None`: its lease had lapsed, and
    /// it is dead for everyone (it must join again, as a new node).
    pub async fn heartbeat(
        &self,
        id: i64,
        lease: Duration,
        figures: Heartbeat,
    ) -> Result<Option<Vec<Member>>, StoreError> {
        let client = self.client().await?;
        // The CTE's update is invisible to the outer query (one snapshot):
        // the node's own new expiry is computed there again.
        let rows = client
            .query(
                concat!(
                    "WITH renewed AS (
                       UPDATE nodes SET heartbeat_at = now(), expires_at = now() + make_interval(secs => $2),
                              sensors = $3, checks_per_s = $4, late = $5, missed = $6
                       WHERE id = $1 AND expires_at > now() AND left_at IS NULL
                       RETURNING id)
                     SELECT n.id, n.location, ",
                    ms!("n.active_at - now()"),
                    ", CASE WHEN n.id = $1 THEN ($2 * 1000)::bigint ELSE ",
                    ms!("n.expires_at - now()"),
                    " END
                     FROM nodes n
                     WHERE EXISTS (SELECT 1 FROM renewed)
                       AND (n.id = $1 OR (n.expires_at > now() AND n.left_at IS NULL))"
                ),
                &[
                    &id,
                    &lease.as_secs_f64(),
                    &figures.sensors,
                    &figures.checks_per_s,
                    &figures.late,
                    &figures.missed,
                ],
            )
            .await
            .map_err(self.fail())?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .map(|r| Member {
                    id: r.get(0),
                    location: r.get::<_, String>(1).into(),
                    active_in_ms: r.get(2),
                    expires_in_ms: r.get(3),
                })
                .collect(),
        ))
    }

    /// Node `id` stops: its lease ends now, and the others take its share
    /// at their next heartbeat.
    pub async fn leave_node(&self, id: i64) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE nodes SET expires_at = least(expires_at, now()), left_at = now() WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(self.fail())?;
        Ok(())
    }

    /// Reports the nodes whose lease lapsed (they stopped renewing it
    /// without leaving) that nobody has reported yet: each is claimed by
    /// one caller (the update's row lock and re-check), and the
    /// notifications `notify` makes for it are written to the outbox in
    /// the same transaction. Returns what this caller reported.
    pub async fn report_lapsed_nodes(
        &self,
        notify: impl Fn(&LapsedNode, &[ChannelDef], &[RuleDef]) -> Vec<(String, Payload)>,
    ) -> Result<Vec<LapsedNode>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.fail())?;
        let rows = tx
            .query(
                concat!(
                    "UPDATE nodes SET lapse_reported = true
                     WHERE expires_at <= now() AND left_at IS NULL AND NOT lapse_reported
                     RETURNING name, location, sensors, ",
                    ms!("heartbeat_at"),
                    ", ",
                    ms!("expires_at")
                ),
                &[],
            )
            .await
            .map_err(self.fail())?;
        let lapsed: Vec<LapsedNode> = rows
            .iter()
            .map(|r| LapsedNode {
                name: r.get(0),
                location: r.get(1),
                sensors: r.get(2),
                heartbeat_ms: r.get(3),
                expired_ms: r.get(4),
            })
            .collect();
        if !lapsed.is_empty() {
            let (channels, rules) = crate::Storage::notifications(self).await?;
            let mut outbox = super::Outbox::default();
            for node in &lapsed {
                outbox.add(
                    None,
                    None,
                    node.expired_ms,
                    &notify(node, &channels, &rules),
                    None,
                );
            }
            outbox.insert(&tx).await.map_err(self.fail())?;
        }
        tx.commit().await.map_err(self.fail())?;
        Ok(lapsed)
    }

    /// The nodes, live ones first, then those gone in the last day.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                concat!(
                    "SELECT id, name, location, version, ",
                    ms!("started_at"),
                    ", ",
                    ms!("heartbeat_at"),
                    ", ",
                    ms!("expires_at"),
                    ", expires_at > now() AND left_at IS NULL, left_at IS NOT NULL,
                     sensors, checks_per_s, late, missed
                     FROM nodes
                     ORDER BY expires_at > now() AND left_at IS NULL DESC, location, name, id DESC"
                ),
                &[],
            )
            .await
            .map_err(self.fail())?;
        Ok(rows
            .iter()
            .map(|r| NodeRow {
                id: r.get(0),
                name: r.get(1),
                location: r.get(2),
                version: r.get(3),
                started_ms: r.get(4),
                heartbeat_ms: r.get(5),
                expires_ms: r.get(6),
                live: r.get(7),
                left: r.get(8),
                heartbeat: Heartbeat {
                    sensors: r.get(9),
                    checks_per_s: r.get(10),
                    late: r.get(11),
                    missed: r.get(12),
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, location: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            location: location.into(),
            version: "test".into(),
            lease: Duration::from_secs(3),
            join_delay: Duration::from_secs(2),
        }
    }

    async fn store() -> Option<(portwatch_testpg::Cluster, Pg)> {
        let cluster = tokio::task::spawn_blocking(|| {
            let cluster = portwatch_testpg::Cluster::for_test("store::pg::nodes")?;
            cluster.create_database("portwatch").unwrap();
            Some(cluster)
        })
        .await
        .unwrap()?;
        let crate::location::Location::Postgres(target) =
            crate::location::Location::parse(&cluster.url("portwatch")).unwrap()
        else {
            panic!("a postgres:// URL is PostgreSQL");
        };
        let pg = Pg::connect(&target, 4).await.unwrap();
        Some((cluster, pg))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_join_renew_lapse_and_leave_by_the_database_clock() {
        let Some((_cluster, pg)) = store().await else {
            return;
        };
        let lease = Duration::from_secs(3);
        let a = pg.join_node(&spec("a", "eu")).await.unwrap();
        let members = pg
            .heartbeat(a, lease, Heartbeat::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(members.len(), 1);
        assert!(
            members[0].active_in_ms <= 0,
            "the first node is active at once"
        );
        assert_eq!(members[0].expires_in_ms, 3_000);

        let refused = pg
            .join_node(&spec("a", "eu"))
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("a live node named 'a'"), "{refused}");
        // A node of another location joins the same store, late like any
        // newcomer (judges are chosen among all nodes), and every node sees
        // every location's nodes.
        let c = pg.join_node(&spec("c", "us")).await.unwrap();
        let seen = pg
            .heartbeat(a, lease, Heartbeat::default())
            .await
            .unwrap()
            .unwrap();
        let us = seen
            .iter()
            .find(|m| m.id == c)
            .expect("us's node seen from eu");
        assert_eq!(&*us.location, "us");
        assert!(us.active_in_ms > 1_000, "{us:?}");
        assert_eq!(&*seen.iter().find(|m| m.id == a).unwrap().location, "eu");
        pg.leave_node(c).await.unwrap();

        let b = pg.join_node(&spec("b", "eu")).await.unwrap();
        let figures = Heartbeat {
            sensors: 7,
            checks_per_s: 1.5,
            late: 2,
            missed: 1,
        };
        let seen = pg.heartbeat(b, lease, figures).await.unwrap().unwrap();
        let joined = seen.iter().find(|m| m.id == b).unwrap();
        assert!(
            (1_000..=2_000).contains(&joined.active_in_ms),
            "a later node waits for the others to see it: {joined:?}"
        );
        let rows = pg.nodes().await.unwrap();
        let row = rows.iter().find(|r| r.id == b).unwrap();
        assert_eq!((row.live, row.heartbeat), (true, figures));
        // A node with a shorter delay waits as long as the longest live one:
        // their views hold that long.
        let quick = pg
            .join_node(&NodeSpec {
                join_delay: Duration::from_millis(200),
                ..spec("q", "eu")
            })
            .await
            .unwrap();
        let seen = pg
            .heartbeat(quick, lease, Heartbeat::default())
            .await
            .unwrap()
            .unwrap();
        let joined = seen.iter().find(|m| m.id == quick).unwrap();
        assert!(joined.active_in_ms > 1_000, "{joined:?}");
        pg.leave_node(quick).await.unwrap();

        // b stops renewing: after its lease, a no longer sees it, and b's
        // own renewal says it is dead.
        pg.client()
            .await
            .unwrap()
            .execute(
                "UPDATE nodes SET expires_at = now() - interval '1 ms' WHERE id = $1",
                &[&b],
            )
            .await
            .unwrap();
        let members = pg
            .heartbeat(a, lease, Heartbeat::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), [a]);
        assert_eq!(
            pg.heartbeat(b, lease, Heartbeat::default()).await.unwrap(),
            None
        );
        // A node that left is gone at once, and its name is free again.
        pg.leave_node(a).await.unwrap();
        assert_eq!(
            pg.heartbeat(a, lease, Heartbeat::default()).await.unwrap(),
            None
        );
        let again = pg.join_node(&spec("a", "us")).await.unwrap();
        assert_ne!(again, a, "rejoins as a new node");
        let rows = pg.nodes().await.unwrap();
        assert!(rows[0].live && rows[0].id == again, "live first: {rows:?}");
        assert!(rows.iter().any(|r| r.id == a && r.left && !r.live));
    }

    /// Nodes joining an empty location at the same moment: one starts at
    /// once, the others after the join delay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_joining_together_start_one_at_a_time() {
        let Some((_cluster, pg)) = store().await else {
            return;
        };
        let names = ["a", "b", "c", "d"];
        let joined = futures_util::future::join_all(names.iter().map(|n| {
            let pg = pg.clone();
            async move { pg.join_node(&spec(n, "eu")).await.unwrap() }
        }))
        .await;
        let members = pg
            .heartbeat(joined[0], Duration::from_secs(3), Heartbeat::default())
            .await
            .unwrap()
            .unwrap();
        let at_once = members.iter().filter(|m| m.active_in_ms <= 0).count();
        assert_eq!(at_once, 1, "{members:?}");
    }

    /// A commit for a node whose lease lapsed keeps the results and writes
    /// no state change; one for a live node writes both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lapsed_node_writes_results_but_no_state_change() {
        use crate::Writes;
        use crate::pack::StoredResult;
        use crate::writer::LastCheck;
        use portwatch_core::monitor::state::{Change, State};
        use portwatch_probe::{Reason, Status};

        let Some((_cluster, pg)) = store().await else {
            return;
        };
        let lease = Duration::from_secs(3);
        let node = pg.join_node(&spec("a", "eu")).await.unwrap();
        let (writer, thread) = pg.writer();
        writer.fence.set_node(node);
        let write = |at_ms: i64| {
            let result = StoredResult {
                sensor: 7,
                at_ms,
                status: Status::Up,
                reason: Reason::Connected,
                rtt_us: Some(10),
            };
            let last = LastCheck {
                state: State::Up,
                since_ms: at_ms,
                message: "connected".into(),
                details: None,
            };
            writer.result(result, last);
            let change = Change {
                from: State::Pending,
                to: State::Up,
                reason: Some(Reason::Connected),
                message: "connected".into(),
            };
            writer.event(7, at_ms, change)
        };
        let count = |sql: &'static str| {
            let pg = pg.clone();
            async move {
                let n: i64 = pg
                    .client()
                    .await
                    .unwrap()
                    .query_one(sql, &[])
                    .await
                    .unwrap()
                    .get(0);
                n
            }
        };
        // Lapsed in the database, though the process has not noticed yet.
        pg.client()
            .await
            .unwrap()
            .execute(
                "UPDATE nodes SET expires_at = now() - interval '1 ms' WHERE id = $1",
                &[&node],
            )
            .await
            .unwrap();
        let stale = write(1_000);
        writer.flush().await;
        assert_eq!(
            count("SELECT coalesce(sum(count), 0)::bigint FROM journal").await,
            1
        );
        assert_eq!(count("SELECT count(*) FROM sensor_status").await, 0);
        assert_eq!(count("SELECT count(*) FROM events").await, 0);
        drop(stale);
        // Joined again: written.
        let again = pg.join_node(&spec("a", "eu")).await.unwrap();
        writer.fence.set_node(again);
        pg.heartbeat(again, lease, Heartbeat::default())
            .await
            .unwrap()
            .unwrap();
        write(2_000).await.unwrap();
        writer.flush().await;
        assert_eq!(count("SELECT count(*) FROM sensor_status").await, 1);
        assert_eq!(count("SELECT count(*) FROM events").await, 1);
        drop(writer);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap()
            .unwrap();
    }

    /// A notification claimed by a node is another node's to claim once
    /// that node's lease lapses, however long its claim was meant to last.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_node_s_claims_end_with_its_lease() {
        use crate::Storage;
        let Some((_cluster, pg)) = store().await else {
            return;
        };
        let (a, b) = (
            pg.join_node(&spec("a", "eu")).await.unwrap(),
            pg.join_node(&spec("b", "eu")).await.unwrap(),
        );
        let payload = portwatch_core::notify::test_payload(
            &portwatch_core::config::channel_from_json(&serde_json::json!({
                "name": "chat", "webhook": "http://127.0.0.1:9/hook"
            }))
            .unwrap(),
        );
        let mut outbox = super::super::Outbox::default();
        outbox.add(None, None, 1_000, &[("chat".to_owned(), payload)], None);
        outbox.insert(&pg.client().await.unwrap()).await.unwrap();
        let claim = |node: i64| pg.claim_notifications(2_000, 600_000, 10, Vec::new(), Some(node));
        assert_eq!(claim(a).await.unwrap().len(), 1);
        assert!(claim(b).await.unwrap().is_empty(), "a's while a lives");
        pg.client()
            .await
            .unwrap()
            .execute(
                "UPDATE nodes SET expires_at = now() - interval '1 ms' WHERE id = $1",
                &[&a],
            )
            .await
            .unwrap();
        assert_eq!(claim(b).await.unwrap().len(), 1, "a's lease lapsed");
        assert!(claim(a).await.unwrap().is_empty(), "b's now");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn location_reports_are_kept_per_location_newest_first_and_only_from_live_nodes() {
        use portwatch_core::monitor::state::State;
        use portwatch_core::monitor::verdict::LocationReport;
        use portwatch_probe::Reason;
        let Some((_cluster, pg)) = store().await else {
            return;
        };
        let lease = Duration::from_secs(3);
        let eu = pg.join_node(&spec("eu1", "eu")).await.unwrap();
        let report = |location: &str, state, checked_ms, reason| LocationReport {
            sensor: 7,
            location: location.into(),
            state,
            since_ms: 1_000,
            checked_ms,
            reason,
            rtt_us: (state == State::Up).then_some(250),
            message: format!("{location} at {checked_ms}"),
        };
        let first = [
            report("eu", State::Up, 5_000, Reason::Connected),
            report("us", State::Down, 5_100, Reason::Timeout),
        ];
        assert!(pg.put_location_reports(eu, &first).await.unwrap());
        let read = pg.location_reports_since(0).await.unwrap();
        assert_eq!(
            read.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            first,
            "read back as written"
        );
        let cursor = read.iter().map(|(seq, _)| *seq).max().unwrap();
        assert!(pg.location_reports_since(cursor).await.unwrap().is_empty());
        // A newer report replaces a location's row; an older one (a node
        // that checked before a hand-over, writing late) does not.
        let newer = report("eu", State::Down, 6_000, Reason::Refused);
        let older = report("us", State::Up, 4_000, Reason::Connected);
        pg.put_location_reports(eu, &[newer.clone(), older])
            .await
            .unwrap();
        let since = pg.location_reports_since(cursor).await.unwrap();
        assert_eq!(since.iter().map(|(_, r)| r).collect::<Vec<_>>(), [&newer]);
        assert_eq!(
            pg.location_reports(Some(7)).await.unwrap(),
            [newer, first[1].clone()]
        );
        assert!(pg.location_reports(Some(8)).await.unwrap().is_empty());
        assert_eq!(pg.location_reports_of(&[7, 8]).await.unwrap().len(), 2);
        assert!(pg.location_reports_of(&[8]).await.unwrap().is_empty());
        // A node whose lease lapsed stores nothing.
        pg.client()
            .await
            .unwrap()
            .execute(
                "UPDATE nodes SET expires_at = now() - interval '1 ms' WHERE id = $1",
                &[&eu],
            )
            .await
            .unwrap();
        let late = report("eu", State::Up, 9_000, Reason::Connected);
        assert!(!pg.put_location_reports(eu, &[late]).await.unwrap());
        assert_eq!(
            pg.heartbeat(eu, lease, Heartbeat::default()).await.unwrap(),
            None
        );
        assert_eq!(
            pg.location_reports(Some(7)).await.unwrap()[0].checked_ms,
            6_000
        );
        // Reports not renewed for a day go (these are from 1970).
        assert_eq!(
            pg.prune_location_reports(Duration::from_secs(86_400))
                .await
                .unwrap(),
            2
        );
        assert!(pg.location_reports(None).await.unwrap().is_empty());
    }
}
