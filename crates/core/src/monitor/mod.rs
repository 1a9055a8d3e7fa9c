//! The monitor's pure decisions; the application runs them.
//!
//! - [`state`]: the sensor state machine.
//! - [`scheduler`]: scheduling decisions (first-run spread, catching up).
//! - [`stats`]: counters of checks due, done, late and missed.

pub mod scheduler;
pub mod state;
pub mod stats;
