//! What a configuration reload changes, decided without touching the
//! running monitor: a [`ConfigDiff`] from the sensors that run and the new
//! resolved configuration, and the dependency graph of the result.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::config::model::ResolvedSensor;

/// What a reload does to the running sensors.
#[derive(Debug, Default)]
pub struct ConfigDiff {
    /// New sensors (by store id), with their settings.
    pub to_add: Vec<(i64, ResolvedSensor)>,
    /// Sensors that stay, with their new settings; `reschedule` when their
    /// interval changed (their next check moves to the new schedule).
    pub to_change: Vec<Changed>,
    /// Sensors no longer in the configuration.
    pub to_remove: Vec<i64>,
}

/// A sensor that stays, with its new settings.
#[derive(Debug)]
pub struct Changed {
    /// Its store id.
    pub id: i64,
    /// Its settings now.
    pub spec: ResolvedSensor,
    /// Its interval changed.
    pub reschedule: bool,
}

/// The reload from the running sensors (id → interval) to `specs`. A
/// sensor of `specs` without an id in `ids` (not in the store) is skipped.
pub fn diff(
    running: &HashMap<i64, Duration>,
    specs: Vec<ResolvedSensor>,
    ids: &HashMap<String, i64>,
) -> ConfigDiff {
    let mut diff = ConfigDiff::default();
    let mut seen = HashSet::new();
    for spec in drain_releasing(specs) {
        let Some(&id) = ids.get(&spec.path) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        match running.get(&id) {
            Some(interval) => diff.to_change.push(Changed {
                id,
                reschedule: *interval != spec.settings.interval,
                spec,
            }),
            None => diff.to_add.push((id, spec)),
        }
    }
    diff.to_remove = running
        .keys()
        .filter(|id| !seen.contains(id))
        .copied()
        .collect();
    diff.to_remove.sort_unstable();
    diff
}

/// The items of `items` in order, giving their memory back as they are
/// taken: the list shrinks whenever it is less than half full. A list of
/// 1,000,000 sensors' settings (about 300 MB) and what they move into are
/// then never held whole side by side.
pub fn drain_releasing<T>(mut items: Vec<T>) -> impl Iterator<Item = T> {
    items.reverse();
    std::iter::from_fn(move || {
        let item = items.pop()?;
        if worth_shrinking(items.len(), items.capacity()) {
            items.shrink_to_fit();
        }
        Some(item)
    })
}

/// Whether a list of `len` items in room for `capacity` gives its room
/// back: when it is less than half full, so that shrinking copies each
/// item a bounded number of times in all.
fn worth_shrinking(len: usize, capacity: usize) -> bool {
    len < capacity / 2
}

/// The running sensor that `depends_on` names, if any.
pub fn dependency(depends_on: Option<&str>, ids: &HashMap<String, i64>) -> Option<i64> {
    depends_on.and_then(|path| ids.get(path)).copied()
}

/// Who depends on whom: for each sensor that something depends on, its
/// dependants, in id order. `depends_on` paths are resolved through `ids`;
/// a path that is not running is no dependency.
pub fn dependants<'a>(
    sensors: impl IntoIterator<Item = (i64, Option<&'a str>)>,
    ids: &HashMap<String, i64>,
) -> HashMap<i64, Vec<i64>> {
    let mut graph: HashMap<i64, Vec<i64>> = HashMap::new();
    for (id, depends_on) in sensors {
        if let Some(dependency) = dependency(depends_on, ids) {
            graph.entry(dependency).or_default().push(id);
        }
    }
    for dependants in graph.values_mut() {
        dependants.sort_unstable();
    }
    graph
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml;
    use crate::config::model::resolve;

    #[test]
    fn a_list_gives_its_room_back_when_less_than_half_full() {
        assert!(!worth_shrinking(50, 100));
        assert!(worth_shrinking(49, 100));
        assert!(!worth_shrinking(0, 1));
        assert!(worth_shrinking(0, 2));
        assert!(!worth_shrinking(0, 0));
    }

    #[test]
    fn draining_releasing_keeps_the_order() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(drain_releasing(items.clone()).collect::<Vec<_>>(), items);
        assert_eq!(drain_releasing(Vec::<u32>::new()).count(), 0);
    }

    fn specs(config: &str) -> Vec<ResolvedSensor> {
        resolve(&from_toml("t.toml", config).unwrap())
    }

    const BEFORE: &str = "
[[server]]
name = \"gw\"
host = \"192.0.2.1\"
  [[server.sensor]]
  name = \"ping\"
  port = 22
  interval = \"30s\"
[[server]]
name = \"app\"
host = \"192.0.2.2\"
  [[server.sensor]]
  name = \"web\"
  port = 80
  interval = \"30s\"
  depends_on = \"gw/ping\"
  [[server.sensor]]
  name = \"db\"
  port = 5432
  interval = \"30s\"
  depends_on = \"gw/ping\"
";

    fn ids() -> HashMap<String, i64> {
        [
            ("gw/ping", 1),
            ("app/web", 2),
            ("app/db", 3),
            ("app/cache", 4),
        ]
        .into_iter()
        .map(|(p, id)| (p.to_owned(), id))
        .collect()
    }

    #[test]
    fn a_first_load_adds_every_sensor_with_an_id() {
        let diff = diff(&HashMap::new(), specs(BEFORE), &ids());
        let added: Vec<i64> = diff.to_add.iter().map(|(id, _)| *id).collect();
        assert_eq!(added, [1, 2, 3]);
        assert!(diff.to_change.is_empty() && diff.to_remove.is_empty());
        let unknown = diff_of_unknown();
        assert!(
            unknown.to_add.is_empty(),
            "a path the store does not know is skipped"
        );
    }

    fn diff_of_unknown() -> ConfigDiff {
        diff(&HashMap::new(), specs(BEFORE), &HashMap::new())
    }

    #[test]
    fn a_reload_adds_changes_reschedules_and_removes() {
        let running: HashMap<i64, Duration> = [1, 2, 3]
            .into_iter()
            .map(|id| (id, Duration::from_secs(30)))
            .collect();
        // app/db leaves, app/cache arrives, app/web's interval changes, gw
        // keeps its interval but changes its port.
        let after = BEFORE
            .replace(
                "  name = \"db\"\n  port = 5432\n  interval = \"30s\"\n  depends_on = \"gw/ping\"\n",
                "  name = \"cache\"\n  port = 6379\n",
            )
            .replace(
                "name = \"web\"\n  port = 80\n  interval = \"30s\"",
                "name = \"web\"\n  port = 80\n  interval = \"10s\"",
            )
            .replace("port = 22", "port = 2222");
        let diff = diff(&running, specs(&after), &ids());
        assert_eq!(
            diff.to_add
                .iter()
                .map(|(id, s)| (*id, s.port))
                .collect::<Vec<_>>(),
            [(4, 6379)]
        );
        let changed: Vec<(i64, u16, bool)> = diff
            .to_change
            .iter()
            .map(|c| (c.id, c.spec.port, c.reschedule))
            .collect();
        assert_eq!(changed, [(1, 2222, false), (2, 80, true)]);
        assert_eq!(diff.to_remove, [3]);
    }

    #[test]
    fn dependants_are_found_through_their_dependency_path() {
        let ids = ids();
        let graph = dependants(
            [
                (3, Some("gw/ping")),
                (2, Some("gw/ping")),
                (1, None),
                (4, Some("gone/sensor")),
            ],
            &ids,
        );
        assert_eq!(graph.len(), 1, "{graph:?}");
        assert_eq!(graph[&1], [2, 3]);
    }
}
