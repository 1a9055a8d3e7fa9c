//! The workspace's layers point down only: `portwatch-testpg` (the tests'
//! throwaway PostgreSQL) and `portwatch-probe` name no other portwatch
//! crate, `portwatch-core` only the probe, `portwatch-store` the
//! two below it, and the `portwatch` application any of them. Read from
//! `cargo metadata`, so a new dependency that points up fails here.

use std::process::Command;

/// The layers, lowest first.
const LAYERS: [&str; 5] = [
    "portwatch-testpg",
    "portwatch-probe",
    "portwatch-core",
    "portwatch-store",
    "portwatch",
];

fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == name)
}

#[test]
fn every_crate_depends_only_on_crates_below_it() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let mut seen = Vec::new();
    let mut upward = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let own = layer(name).unwrap_or_else(|| panic!("{name} is in no layer: add it to LAYERS"));
        seen.push(name);
        for dependency in package["dependencies"].as_array().unwrap() {
            let target = dependency["name"].as_str().unwrap();
            if let Some(below) = layer(target)
                && below >= own
            {
                upward.push(format!("{name} -> {target}"));
            }
        }
    }
    seen.sort_unstable();
    let mut all = LAYERS.to_vec();
    all.sort_unstable();
    assert_eq!(seen, all, "the workspace's crates");
    assert!(upward.is_empty(), "dependencies that point up: {upward:?}");
}
