//! Notifications: rules say which state changes go to which channel.
//!
//! A notification is written to the store's outbox in the same transaction
//! as the state-change event that caused it, then delivered by the
//! `worker` with retries and exponential backoff until it succeeds
//! (at-least-once), across restarts and `kill -9`. Paused sensors never
//! notify, so while a dependency is down only that dependency alerts.
//!
//! The definitions, payloads, planner and templates are pure and live in
//! `portwatch-core` (re-exported here); this module delivers.
//!
//! - `deliver`: the channels (an HTTP webhook, mail, a local command).
//! - [`plan`]: which notifications a change causes, escalations and
//!   repeats while a sensor stays down, and the per-channel flapping limit.
//! - [`template`]: the message and title templates.
//! - `worker`: the delivery loop over the outbox.

pub(crate) mod deliver;
pub(crate) mod worker;

pub use portwatch_core::notify::*;
