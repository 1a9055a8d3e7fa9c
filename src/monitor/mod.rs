//! The monitor: sensors checked on schedule, each with a state, with
//! dependencies and maintenance windows.
//!
//! - [`decide`]: every decision about the sensors (results to states,
//!   re-checks, dependency pauses, held alerts, reloads), as effects.
//! - [`state`]: the pure state machine.
//! - [`scheduler`]: pure scheduling decisions (first-run spread, catching up).
//! - [`stats`]: counters of checks due, done, late and missed.
//! - `daemon`: the running monitor, the async shell around
//!   [`decide::Core`]: it keeps the schedule, runs the checks, and carries
//!   out the core's effects (checks to start, results, events and
//!   notifications to hand to the store's writer).

pub(crate) mod daemon;

pub use portwatch_core::monitor::{
    cluster, decide, dependency, heartbeat, reload, scheduler, state, stats, verdict,
};

pub use daemon::{Clock, MonitorOptions, run};
