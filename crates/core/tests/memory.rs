//! What the monitor's decisions hold per sensor, counted by an
//! instrumented allocator on 100,000 sensors: the resolved settings and
//! the state of each sensor in [`Core`], and the dependency lookups. A
//! change that makes every sensor bigger fails here, in CI, rather than in
//! the next run of `bench/monitor` (whose peak RSS also counts the
//! runtime, the store and the checks in flight).

use std::alloc::System;
use std::collections::HashMap;

use portwatch_core::config::from_toml;
use portwatch_core::config::model::resolve;
use portwatch_core::monitor::decide::{Core, Reload};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SERVERS: usize = 100;
const PORTS: usize = 1_000;
const SENSORS: usize = SERVERS * PORTS;

/// The most the core may hold per sensor. Measured at 438 bytes on
/// 2026-12-01: the map entry (the resolved settings, 264 bytes, and the
/// sensor's state), the map's spare capacity, and the path and server
/// name. 480 on 2026-12-02: a sensor's locations and `down_when` (34
/// bytes), and a heartbeat sensor's settings, boxed so that the others
/// pay 8 bytes for them (unboxed, 40: 512 in all). The limit leaves about
/// 4 % for growth that is meant; a deliberate increase changes it here,
/// with the reason.
const LIMIT: usize = 500;

#[test]
fn the_monitor_core_holds_a_bounded_number_of_bytes_per_sensor() {
    let mut text = String::from("[defaults]\ninterval = \"10s\"\n");
    for server in 0..SERVERS {
        text.push_str(&format!(
            "[[server]]\nname = \"s{server}\"\nhost = \"127.0.0.1\"\n"
        ));
        for port in 0..PORTS {
            text.push_str(&format!(
                "  [[server.sensor]]\n  port = {}\n",
                20_000 + port
            ));
        }
    }
    let config = from_toml("memory.toml", &text).unwrap();
    drop(text);

    let region = Region::new(GLOBAL);
    let specs = resolve(&config);
    let ids: HashMap<String, i64> = specs
        .iter()
        .zip(1..)
        .map(|(spec, id)| (spec.path.clone(), id))
        .collect();
    let mut core = Core::new(None);
    let diff = core.diff(specs, &ids);
    let reload = Reload {
        diff,
        ids,
        ..Reload::default()
    };
    core.on_config(reload, jiff::Timestamp::UNIX_EPOCH);
    let change = region.change();
    assert_eq!(core.len(), SENSORS);
    // stats_alloc counts a reallocation's growth in bytes_allocated (and
    // its shrinking in bytes_deallocated) as well as in bytes_reallocated.
    let held = change.bytes_allocated - change.bytes_deallocated;
    let per_sensor = held / SENSORS;
    eprintln!("the monitor core holds {per_sensor} bytes per sensor ({held} for {SENSORS})");
    assert!(
        per_sensor <= LIMIT,
        "the monitor core holds {per_sensor} bytes per sensor, more than {LIMIT}"
    );
    drop(core);
    drop(config);
}
