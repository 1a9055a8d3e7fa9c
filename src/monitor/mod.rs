//! The monitor: sensors checked on schedule, each with a state, with
//! dependencies and maintenance windows.
//!
//! - [`state`]: the pure state machine.
//! - [`scheduler`]: pure scheduling decisions (first-run spread, catching up).
//! - [`stats`]: counters of checks due, done, late and missed.
//! - [`daemon`]: the running monitor, which checks, steps the state
//!   machine and hands results and events to the store's writer.

pub mod daemon;

pub use portwatch_core::monitor::{dependency, reload, scheduler, state, stats};

pub use daemon::{Clock, MonitorOptions, run};
