//! The monitor's pure decisions; the application runs them.
//!
//! - [`cluster`]: which node checks which sensor from its location, and
//!   which node judges a sensor checked from several.
//! - [`decide`]: every decision about the sensors, as effects to carry out.
//! - [`state`]: the sensor state machine.
//! - [`dependency`]: pauses for dependencies and windows, held alerts.
//! - [`heartbeat`]: the verdict on a heartbeat (push) sensor.
//! - [`reload`]: what a configuration reload changes, and the dependency
//!   graph.
//! - [`scheduler`]: scheduling decisions (first-run spread, catching up).
//! - [`stats`]: counters of checks due, done, late and missed.
//! - [`verdict`]: a sensor judged from k of n locations.

pub mod cluster;
pub mod decide;
pub mod dependency;
pub mod heartbeat;
pub mod reload;
pub mod scheduler;
pub mod state;
pub mod stats;
pub mod verdict;
