//! portwatch: a self-hosted server monitor built around a precise TCP port
//! sensor.
//!
//! The PORT sensor connects to `host:port`. If the server accepts, it closes
//! the connection and reports the service UP with its connect time. If not,
//! it reports the service DOWN and says exactly why: refused, timed out,
//! unreachable, rejected by a firewall, or a name that does not resolve.
//!
//! # Layout
//!
//! - [`probe`]: one check of one target, with no storage.
//!   - [`probe::target`]: parsing `host:port`, `host:service`, `[v6]:port`
//!     and `tcp://host:port`, host name validation and IDN to punycode.
//!   - [`probe::services`]: the compiled-in well-known port table, with
//!     `/etc/services` layered on top.
//!   - [`probe::resolve`]: the caching async resolver (hickory-resolver).
//!   - [`probe::connect`]: one TCP connect attempt on a raw socket, reading
//!     the socket error queue to tell ICMP reasons apart.
//!   - [`probe::happy`]: RFC 8305 Happy Eyeballs ordering and racing.
//!   - [`probe::verdict`]: turning a reason and a response time into a
//!     status (thresholds, `--expect-closed`).
//!   - [`probe::check`]: the whole PORT check (resolve, race, judge).
//!   - [`probe::portspec`] and [`probe::scan`]: the port range sensor.
//! - [`duration`]: the human duration syntax shared by the CLI and the
//!   configuration (`500ms`, `10s`, `2m`).
//! - [`cli`]: the command line, one file per subcommand, plus output
//!   formatting (human, JSON Lines, Nagios).
//! - `main.rs`: parses arguments, runs the subcommand, and maps errors to
//!   exit codes.

pub mod cli;
pub mod config;
pub mod duration;
pub mod monitor;
pub mod probe;
pub mod report;
pub mod store;
