//! portwatch's model and pure decisions: configuration, sensor states,
//! scheduling, notification planning. No sockets, no SQLite, no HTTP: every
//! decision here is tested without a runtime.
//!
//! - [`config`]: `portwatch.toml` with file:line:column errors; settings
//!   inheritance, maintenance window rules and dependency cycles
//!   ([`config::model`]); protocol-check settings ([`config::probe`]).
//! - [`monitor`]: the state machine, scheduling decisions and accounting.
//! - [`notify`]: channel and rule definitions, payloads, the planner and
//!   templates.
//! - [`report`]: uptime by time and by requests, outages, connect-time
//!   statistics and hourly rollups, from stored results and events.

pub mod config;
pub mod monitor;
pub mod notify;
pub mod report;
