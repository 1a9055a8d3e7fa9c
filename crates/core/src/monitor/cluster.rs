//! Several nodes share the sensors: which node checks which sensor from
//! its location, which node judges it, and from when.
//!
//! - A sensor goes to the live node on which its **share key** weighs most
//!   (rendezvous, or highest-random-weight, hashing): every node computes
//!   the same answer from the same list of nodes, with no traffic per
//!   sensor, and a node joining or leaving moves only its own share.
//! - The share key is the root of the sensor's dependency chain, so a
//!   sensor and what it depends on are decided on one node.
//! - A sensor checked from one location (the only one with live nodes, or
//!   the one it lists) is checked and decided by one node of it, as if
//!   that node were alone. A sensor checked from several is checked by one
//!   node of each of its locations, which stores that location's state,
//!   and judged (k of n, see [`super::verdict`]) by one node of all.
//! - Times come from the database's clock, as offsets from one heartbeat's
//!   query. A node's own times are read late (it starts checking after the
//!   database says it may) and the others' early (it gives a sensor up
//!   before the node taking it starts), so two nodes never check one
//!   sensor at once, at the cost of a gap as long as one round trip.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::model::ResolvedSensor;

/// A live node as one heartbeat's query saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id in the `nodes` table (a node that rejoins has a new one).
    pub id: i64,
    /// Its location.
    pub location: Arc<str>,
    /// Milliseconds from the database's `now()` until its share is its own
    /// (zero or less: it already is).
    pub active_in_ms: i64,
    /// Milliseconds from the database's `now()` until its lease lapses.
    pub expires_in_ms: i64,
}

/// Which sensors a node checks and judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    me: i64,
    /// The active nodes of this node's location, sorted; empty when this
    /// node owns nothing (not active yet, or its lease lapsed).
    nodes: Vec<i64>,
    /// Every active node with its location, sorted by id; empty when this
    /// node owns nothing.
    everywhere: Vec<(i64, Arc<str>)>,
}

/// What a node does with one sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Nothing: other nodes check and judge it.
    None,
    /// It checks the sensor and decides its state, events and
    /// notifications (the sensor has one location: this one).
    Direct,
    /// It checks the sensor for its location and stores that location's
    /// state; another node judges.
    Check,
    /// It judges the sensor from its locations' states.
    Judge,
    /// Both: it checks for its location and judges.
    CheckAndJudge,
}

impl Role {
    /// Whether this node checks the sensor.
    pub fn checks(self) -> bool {
        matches!(self, Role::Direct | Role::Check | Role::CheckAndJudge)
    }

    /// Whether this node judges the sensor from its locations.
    pub fn judges(self) -> bool {
        matches!(self, Role::Judge | Role::CheckAndJudge)
    }
}

impl Share {
    /// The share of node `me` among the active `nodes` of one location;
    /// nothing unless `me` is one of them.
    pub fn new(me: i64, nodes: Vec<i64>) -> Share {
        let here: Arc<str> = Arc::from("");
        Share::located(me, nodes.into_iter().map(|id| (id, here.clone())).collect())
    }

    /// The share of node `me` among the active nodes of every location;
    /// nothing unless `me` is one of them.
    pub fn located(me: i64, mut everywhere: Vec<(i64, Arc<str>)>) -> Share {
        everywhere.sort_unstable();
        everywhere.dedup_by_key(|(id, _)| *id);
        let Some(mine) = everywhere
            .iter()
            .find(|(id, _)| *id == me)
            .map(|(_, l)| l.clone())
        else {
            return Share {
                me,
                nodes: Vec::new(),
                everywhere: Vec::new(),
            };
        };
        let nodes = everywhere
            .iter()
            .filter(|(_, location)| *location == mine)
            .map(|(id, _)| *id)
            .collect();
        Share {
            me,
            nodes,
            everywhere,
        }
    }

    /// Whether this node checks the sensors with share key `key` when they
    /// are checked from its location.
    pub fn owns(&self, key: i64) -> bool {
        owner(key, &self.nodes) == Some(self.me)
    }

    /// What this node does with a sensor of share key `key` checked from
    /// `locations` (`None`: every location with an active node).
    pub fn role(&self, key: i64, locations: Option<&[String]>) -> Role {
        let Some(mine) = self.location() else {
            return Role::None;
        };
        // The usual case, first and without allocating: one location.
        if locations.is_none_or(<[String]>::is_empty) && self.nodes.len() == self.everywhere.len() {
            return if self.owns(key) {
                Role::Direct
            } else {
                Role::None
            };
        }
        let live = self.locations();
        let wanted: Vec<&str> = match locations {
            Some(list) if !list.is_empty() => list.iter().map(String::as_str).collect(),
            _ => live.clone(),
        };
        if let [only] = wanted.as_slice() {
            let there: Vec<i64> = self
                .everywhere
                .iter()
                .filter(|(_, location)| &**location == *only)
                .map(|(id, _)| *id)
                .collect();
            // One location with a node: that node decides alone. (One with
            // none is judged, and judged unknown.)
            if !there.is_empty() {
                return if owner(key, &there) == Some(self.me) {
                    Role::Direct
                } else {
                    Role::None
                };
            }
        }
        let checks = wanted.contains(&mine) && self.owns(key);
        let all: Vec<i64> = self.everywhere.iter().map(|(id, _)| *id).collect();
        let judges = owner(key, &all) == Some(self.me);
        match (checks, judges) {
            (true, true) => Role::CheckAndJudge,
            (true, false) => Role::Check,
            (false, true) => Role::Judge,
            (false, false) => Role::None,
        }
    }

    /// This node's location, while it owns anything.
    pub fn location(&self) -> Option<&str> {
        self.everywhere
            .iter()
            .find(|(id, _)| *id == self.me)
            .map(|(_, location)| &**location)
    }

    /// The locations with an active node, sorted.
    pub fn locations(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.everywhere.iter().map(|(_, l)| &**l).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether this node is the only active one anywhere (it judges
    /// everything).
    pub fn alone_everywhere(&self) -> bool {
        self.everywhere.len() == 1
    }

    /// Whether this node owns nothing.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether this node is the only active one (it owns everything).
    pub fn alone(&self) -> bool {
        self.nodes == [self.me]
    }

    /// The active nodes of its location, this one among them (empty when
    /// it owns nothing).
    pub fn nodes(&self) -> &[i64] {
        &self.nodes
    }
}

/// The weight of `node` for `key`: a 64-bit mix of both, so that every
/// node wins an equal share of keys and the order of the nodes for one key
/// has nothing to do with their order for another.
pub fn weight(key: i64, node: i64) -> u64 {
    mix(key as u64 ^ mix(node as u64))
}

/// splitmix64's finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The node that checks `key`: the heaviest, ties to the higher id.
pub fn owner(key: i64, nodes: &[i64]) -> Option<i64> {
    nodes
        .iter()
        .copied()
        .max_by_key(|node| (weight(key, *node), *node))
}

/// Each sensor's share key (in `specs`' order): the id of the root of its
/// dependency chain, or its own id. A dependency that is not a known
/// sensor ends the chain; a cycle (refused by the configuration's checks)
/// cannot loop here.
pub fn share_keys(specs: &[ResolvedSensor], ids: &HashMap<String, i64>) -> Vec<Option<i64>> {
    let depends: HashMap<&str, &str> = specs
        .iter()
        .filter_map(|s| Some((s.path.as_str(), s.depends_on.as_deref()?)))
        .collect();
    specs
        .iter()
        .map(|spec| {
            let mut root = spec.path.as_str();
            for _ in 0..=depends.len() {
                match depends.get(root) {
                    Some(next) if ids.contains_key(*next) => root = next,
                    _ => break,
                }
            }
            ids.get(root).copied()
        })
        .collect()
}

/// How long after its share is its own by the database's clock a node
/// starts on it: the nodes that gave those sensors up at that moment may
/// have decided a state change just before, and their writers commit it
/// within this time (a node that read the sensors' states sooner would
/// record the same change again).
pub const SETTLE_MS: i64 = 500;

/// One heartbeat's view of the live nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// This node.
    pub me: i64,
    /// The live nodes, this one among them while its lease holds.
    pub members: Vec<Member>,
    /// How long the query took to answer (ms): the database's `now()` lies
    /// somewhere in it.
    pub round_trip_ms: i64,
    /// How long the view holds (ms after the query was sent): a node that
    /// joins after the query starts its share at least this much after it
    /// joined (its join delay), so until then this view misses no active
    /// node. A node whose next view is late owns nothing meanwhile, rather
    /// than check a share a newcomer may have started on.
    pub valid_ms: i64,
}

impl View {
    /// The share `elapsed_ms` after the query was sent.
    pub fn share(&self, elapsed_ms: i64) -> Share {
        let Some(me) = self.members.iter().find(|m| m.id == self.me) else {
            return Share::new(self.me, Vec::new());
        };
        // Mine: active only once the answer's latest reading says so (and
        // what the nodes giving way decided last is committed), and over at
        // the earliest reading of the lease's end.
        if elapsed_ms < me.active_in_ms + self.round_trip_ms + SETTLE_MS
            || elapsed_ms >= me.expires_in_ms
            || elapsed_ms >= self.valid_ms
        {
            return Share::new(self.me, Vec::new());
        }
        // The others': active at the earliest reading.
        let nodes = self
            .members
            .iter()
            .filter(|m| m.id == self.me || elapsed_ms >= m.active_in_ms)
            .map(|m| (m.id, m.location.clone()))
            .collect();
        Share::located(self.me, nodes)
    }

    /// When the share next changes by this view (ms after the query was
    /// sent): a node becoming active, this node's lease ending, or the view
    /// running out.
    pub fn next_change(&self, elapsed_ms: i64) -> Option<i64> {
        self.members
            .iter()
            .flat_map(|m| {
                if m.id == self.me {
                    vec![
                        m.active_in_ms + self.round_trip_ms + SETTLE_MS,
                        m.expires_in_ms,
                    ]
                } else {
                    vec![m.active_in_ms]
                }
            })
            .chain([self.valid_ms])
            .filter(|at| *at > elapsed_ms)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml;
    use crate::config::model::resolve;

    fn member(id: i64, active_in_ms: i64, expires_in_ms: i64) -> Member {
        Member {
            id,
            location: Arc::from("here"),
            active_in_ms,
            expires_in_ms,
        }
    }

    #[test]
    fn every_key_has_exactly_one_owner_and_the_shares_are_even() {
        let nodes = [3, 8, 21];
        let shares: Vec<Share> = nodes
            .iter()
            .map(|me| Share::new(*me, nodes.to_vec()))
            .collect();
        let mut counts = [0usize; 3];
        for key in 0..30_000 {
            let owners: Vec<usize> = (0..3).filter(|i| shares[*i].owns(key)).collect();
            assert_eq!(owners.len(), 1, "key {key}: {owners:?}");
            counts[owners[0]] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_own_keys() {
        let before = [1, 2, 3];
        let after = [1, 3];
        for key in 0..10_000 {
            let (was, is) = (owner(key, &before), owner(key, &after));
            if was != Some(2) {
                assert_eq!(was, is, "key {key} moved between nodes that stayed");
            } else {
                assert_ne!(is, Some(2));
            }
        }
    }

    /// Nodes of different versions share one store during an upgrade:
    /// they must agree on every owner, so the weights never change. (These
    /// are splitmix64's values; `bench/cluster` computes the same.)
    #[test]
    fn the_weights_are_fixed_across_versions() {
        assert_eq!(weight(1, 2), 16_171_810_823_986_729_605);
        assert_eq!(weight(100_000, 3), 3_176_617_403_609_877_172);
        assert_eq!(weight(-5, 7), 4_987_556_750_520_886_852);
    }

    #[test]
    fn a_node_not_among_the_active_owns_nothing() {
        let share = Share::new(4, vec![1, 2]);
        assert!(share.is_empty());
        assert!((0..1000).all(|key| !share.owns(key)));
        assert!(!share.alone());
        let alone = Share::new(4, vec![4]);
        assert!(alone.alone() && !alone.is_empty());
        assert!((0..1000).all(|key| alone.owns(key)));
    }

    #[test]
    fn the_weight_depends_on_both_key_and_node() {
        assert_ne!(weight(1, 2), weight(2, 1));
        assert_ne!(weight(1, 2), weight(1, 3));
        assert_ne!(weight(5, 2), weight(6, 2));
        // Equal weights: the higher id wins, whatever the order given.
        assert_eq!(owner(7, &[]), None);
        assert_eq!(owner(7, &[9]), Some(9));
    }

    #[test]
    fn a_sensor_is_shared_by_the_root_of_its_dependency_chain() {
        let config = from_toml(
            "t.toml",
            r#"
            [[server]]
            name = "gw"
            host = "192.0.2.1"
            sensor = [{ name = "ssh", port = 22 }]
            [[server]]
            name = "web"
            host = "192.0.2.2"
            depends_on = "gw/ssh"
            sensor = [{ name = "http", port = 80 }]
            [[server]]
            name = "app"
            host = "192.0.2.3"
            sensor = [{ name = "api", port = 443, depends_on = "web/http" }]
            "#,
        )
        .unwrap();
        let specs = resolve(&config);
        let ids: HashMap<String, i64> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.path.clone(), 10 + i as i64))
            .collect();
        let keys: HashMap<&str, Option<i64>> = specs
            .iter()
            .map(|s| s.path.as_str())
            .zip(share_keys(&specs, &ids))
            .collect();
        let gw = ids["gw/ssh"];
        assert_eq!(keys["gw/ssh"], Some(gw));
        assert_eq!(keys["web/http"], Some(gw));
        assert_eq!(keys["app/api"], Some(gw), "two steps up");
        // A dependency without an id (not stored yet) ends the chain.
        let mut partial = ids.clone();
        partial.remove("gw/ssh");
        let keys = share_keys(&specs, &partial);
        let web = specs.iter().position(|s| s.path == "web/http").unwrap();
        let gw_index = specs.iter().position(|s| s.path == "gw/ssh").unwrap();
        assert_eq!(keys[web], Some(ids["web/http"]));
        assert_eq!(keys[gw_index], None);
    }

    #[test]
    fn a_new_node_starts_late_and_the_others_give_way_early() {
        // Node 2 joins: active 4 s after the database's now. Node 1's view
        // (sent at 0, answered in 30 ms) gives node 2's keys up at 4,000;
        // node 2's own view of the same moment starts them at 4,530, once
        // what node 1 decided last is committed.
        let members = vec![member(1, -60_000, 6_000), member(2, 4_000, 6_000)];
        let old = View {
            me: 1,
            members: members.clone(),
            round_trip_ms: 30,
            valid_ms: 60_000,
        };
        let new = View {
            me: 2,
            members,
            round_trip_ms: 30,
            valid_ms: 60_000,
        };
        assert!(old.share(3_999).alone());
        assert_eq!(old.share(4_000).nodes(), &[1, 2]);
        assert_eq!(old.next_change(0), Some(4_000));
        assert!(new.share(4_529).is_empty());
        assert_eq!(new.share(4_530).nodes(), &[1, 2]);
        assert_eq!(new.next_change(0), Some(4_530));
    }

    #[test]
    fn a_node_owns_nothing_once_its_view_is_too_old_to_know_every_active_node() {
        let view = View {
            me: 1,
            members: vec![member(1, -60_000, 6_000)],
            round_trip_ms: 10,
            valid_ms: 4_000,
        };
        assert!(view.share(3_999).alone());
        assert!(view.share(4_000).is_empty(), "a newcomer may be active now");
        assert_eq!(view.next_change(10), Some(4_000));
    }

    #[test]
    fn a_node_owns_nothing_once_its_lease_may_have_ended() {
        let view = View {
            me: 1,
            members: vec![member(1, -60_000, 6_000), member(2, 0, 6_000)],
            round_trip_ms: 10,
            valid_ms: 60_000,
        };
        assert_eq!(view.share(5_999).nodes(), &[1, 2]);
        assert!(view.share(6_000).is_empty());
        assert_eq!(view.next_change(10), Some(6_000));
        assert_eq!(view.next_change(6_000), Some(60_000), "then the view ends");
        assert_eq!(view.next_change(60_000), None);
        let gone = View {
            me: 1,
            members: vec![member(2, 0, 6_000)],
            round_trip_ms: 10,
            valid_ms: 60_000,
        };
        assert!(gone.share(0).is_empty(), "not listed: lapsed");
    }

    fn located(nodes: &[(i64, &str)]) -> Vec<Share> {
        let everywhere: Vec<(i64, Arc<str>)> =
            nodes.iter().map(|(id, l)| (*id, Arc::from(*l))).collect();
        nodes
            .iter()
            .map(|(me, _)| Share::located(*me, everywhere.clone()))
            .collect()
    }

    fn roles(shares: &[Share], key: i64, locations: Option<&[String]>) -> Vec<Role> {
        shares.iter().map(|s| s.role(key, locations)).collect()
    }

    #[test]
    fn in_one_location_the_owner_checks_and_decides_alone() {
        let shares = located(&[(1, "eu"), (2, "eu"), (3, "eu")]);
        for key in 0..2_000 {
            let roles = roles(&shares, key, None);
            let direct: Vec<usize> = (0..3).filter(|i| roles[*i] == Role::Direct).collect();
            assert_eq!(direct.len(), 1, "key {key}: {roles:?}");
            assert!(
                shares[direct[0]].owns(key),
                "the same owner as one location's share"
            );
            assert_eq!(roles.iter().filter(|r| **r == Role::None).count(), 2);
        }
        assert_eq!(shares[0].locations(), ["eu"]);
        assert_eq!(shares[0].location(), Some("eu"));
        assert!(!shares[0].alone_everywhere());
    }

    #[test]
    fn several_locations_check_once_each_and_one_node_judges() {
        let shares = located(&[(1, "eu"), (2, "eu"), (3, "us"), (4, "ap")]);
        let listed = ["eu".to_string(), "us".to_string()];
        for key in 0..2_000 {
            // By default: every location with a node.
            let all = roles(&shares, key, None);
            let checkers: Vec<usize> = (0..4).filter(|i| all[*i].checks()).collect();
            assert!(all.iter().all(|r| *r != Role::Direct), "{all:?}");
            assert_eq!(
                checkers.iter().filter(|i| **i < 2).count(),
                1,
                "one of eu: {all:?}"
            );
            assert!(
                checkers.contains(&2) && checkers.contains(&3),
                "us and ap: {all:?}"
            );
            assert_eq!(all.iter().filter(|r| r.judges()).count(), 1, "{all:?}");
            assert_eq!(
                roles(&shares, key, Some(&[])),
                all,
                "an empty list is every location"
            );
            // Listed: ap's node only judges, if anything.
            let some = roles(&shares, key, Some(&listed));
            assert!(!some[3].checks(), "{some:?}");
            assert_eq!(some.iter().filter(|r| r.checks()).count(), 2, "{some:?}");
            assert_eq!(some.iter().filter(|r| r.judges()).count(), 1, "{some:?}");
        }
    }

    #[test]
    fn one_listed_location_is_decided_there_and_one_without_nodes_is_judged() {
        let shares = located(&[(1, "eu"), (2, "us"), (3, "us")]);
        let us = ["us".to_string()];
        let mars = ["mars".to_string()];
        for key in 0..1_000 {
            let roles_us = roles(&shares, key, Some(&us));
            assert_eq!(roles_us[0], Role::None);
            assert_eq!(
                roles_us.iter().filter(|r| **r == Role::Direct).count(),
                1,
                "{roles_us:?}"
            );
            let roles_mars = roles(&shares, key, Some(&mars));
            assert!(roles_mars.iter().all(|r| !r.checks()), "{roles_mars:?}");
            assert_eq!(
                roles_mars.iter().filter(|r| **r == Role::Judge).count(),
                1,
                "{roles_mars:?}"
            );
        }
    }

    #[test]
    fn a_node_that_owns_nothing_has_no_role() {
        let share = Share::located(9, vec![(1, Arc::from("eu"))]);
        assert!(share.is_empty() && share.location().is_none());
        assert_eq!(share.role(5, None), Role::None);
        let alone = Share::located(1, vec![(1, Arc::from("eu"))]);
        assert!(alone.alone_everywhere());
        assert_eq!(alone.role(5, None), Role::Direct);
        assert!(!Role::Direct.judges() && Role::Direct.checks());
        assert!(Role::CheckAndJudge.checks() && Role::CheckAndJudge.judges());
        assert!(!Role::Judge.checks() && !Role::Check.judges());
    }
}
