//! portwatch: a self-hosted server monitor built around a precise TCP port
//! sensor.
//!
//! The PORT sensor connects to `host:port`. If the server accepts, it closes
//! the connection and reports the service UP with its connect time. If not,
//! it reports the service DOWN and says exactly why: refused, timed out,
//! unreachable, rejected by a firewall, or a name that does not resolve.
//! A protocol check then speaks the service's protocol over the same
//! connection, because accepting is not answering.
//!
//! # Layout
//!
//! A Cargo workspace in four layers; each names only the layers below it
//! (`tests/integration/layering.rs` fails otherwise):
//!
//! 1. `crates/probe` (`portwatch-probe`, re-exported as [`probe`]): one
//!    check of one target, with no storage.
//!    - [`probe::target`]: parsing `host:port`, `host:service`, `[v6]:port`
//!      and `tcp://host:port`, host name validation and IDN to punycode.
//!    - [`probe::services`]: the compiled-in well-known port table, with
//!      `/etc/services` layered on top.
//!    - [`probe::resolve`]: the caching async resolver (hickory-resolver).
//!    - [`probe::connect`]: one TCP connect attempt on a raw socket, reading
//!      the socket error queue to tell ICMP reasons apart.
//!    - [`probe::happy`]: RFC 8305 Happy Eyeballs ordering and racing.
//!    - [`probe::verdict`]: turning a reason and a response time into a
//!      status (thresholds, `--expect-closed`).
//!    - [`probe::check`]: the whole PORT check (resolve, race, judge).
//!    - [`probe::portspec`] and [`probe::scan`]: the port range sensor.
//!    - [`probe::proto`]: protocol checks over the connection the PORT check
//!      made: the bounded [`probe::proto::session`], TLS and STARTTLS
//!      ([`probe::proto::tls`]), send/expect ([`probe::proto::expect`]) and
//!      the built-in protocols, each a pure parser plus a short
//!      conversation ([`probe::proto::text`], [`probe::proto::http`],
//!      [`probe::proto::wire`], [`probe::proto::simple`]).
//!    - [`text`]: names and replies that cross a trust boundary: hidden
//!      characters refused in names, stripped before headers, shown escaped.
//!    - [`duration`]: the human duration syntax shared by the CLI and the
//!      configuration (`500ms`, `10s`, `2m`).
//!
//!    `fuzz/` (cargo-fuzz targets for every protocol parser, `fuzz/run`)
//!    depends on this crate only.
//! 2. `crates/core` (`portwatch-core`): the model and the pure decisions,
//!    with no sockets, SQLite or HTTP.
//!    - [`config`]: `portwatch.toml` (configuration as code) with
//!      file:line:column errors; [`config::model`] holds settings
//!      inheritance, maintenance window rules and dependency cycle
//!      detection; [`config::probe`] the protocol-check settings.
//!    - [`monitor::decide`]: every decision the monitor makes about its
//!      sensors, as one plain struct ([`monitor::decide::Core`]) that takes
//!      events (a result, a reload, a second passing, the stop) and returns
//!      [`monitor::decide::Effect`]s; built on [`monitor::state`] (the
//!      sensor state machine), [`monitor::dependency`] (pauses and held
//!      alerts) and [`monitor::reload`] (the reload diff and the dependency
//!      graph). Also [`monitor::scheduler`] (scheduling decisions) and
//!      [`monitor::stats`] (checks due, done, late and missed), and
//!      [`monitor::cluster`] (which node of several checks which sensor:
//!      rendezvous hashing, and when a share starts and ends by the
//!      database's clock).
//!    - [`notify`]'s definitions and payloads, [`notify::plan`] (what a
//!      change, an escalation, a repeat or a flapping sensor sends) and
//!      [`notify::template`] (how it is worded).
//! 3. `crates/store` (`portwatch-store`, re-exported as [`store`]): the
//!    store, on SQLite (WAL, versioned migrations) or PostgreSQL.
//!    - [`store::Storage`]: the storage interface (every read and edit),
//!      implemented by [`store::Db`] (SQLite: the shared handle with its
//!      connection pool), [`store::pg::Pg`] (PostgreSQL: a deadpool of
//!      tokio-postgres connections, TLS by rustls, schema migrated under a
//!      lock row) and [`store::Backend`] (either, as `--db`
//!      ([`store::location::Location`]) names it; what the app holds).
//!      `crates/store/tests/contract.rs` runs the same tests on both.
//!      [`store::Writes`]: the write side (results, state changes and
//!      notifications, committed in order), implemented by
//!      [`store::writer::Writer`], whose thread batches, retries and rolls
//!      up for either backend (its SQL is a `Target` per backend); the
//!      monitor is generic over both traits.
//!    - [`store::copy`]: `portwatch store copy`, every table from one
//!      store into another.
//!    - [`store::pack`]: compact encoding of raw results: the journal's
//!      parts (a flush's results by sensor range) and each sensor's
//!      windows.
//!    - [`store::listing`]: the dashboard's and the API's lists as SQL;
//!      on SQLite a search or tag reads the sensors its trigram index
//!      (`sensor_search`, kept by triggers) finds, a tag of one or two
//!      characters as its JSON string; a text of one or two characters
//!      reads the index's narrow copy of the text, after the first 50,000
//!      sensors only those that the trigrams beginning with it find (the
//!      index's vocabulary, `sensor_search_vocab`) when at most 32 do, and
//!      nothing when none does; a list may stop at
//!      the first n matching sensors (`at_most`), or list and count the
//!      sensors such a search found once (`first_found`, then `among`);
//!      a page of each group's first rows sorts ids and keys, then reads
//!      the columns of the rows kept.
//!    - [`store::rollup`]: hourly rollups.
//!    - [`store::writer`]: the one writer thread that batches all writes.
//!    - [`store::outbox`]: notifications waiting for delivery.
//!    - [`store::accounts`]: users, sessions and API tokens.
//!    - [`store::pg::nodes`]: the nodes sharing a PostgreSQL store (join,
//!      heartbeat, leave, by the database's clock); the writer's
//!      [`store::writer::Fence`] keeps a node whose lease lapsed from
//!      writing state changes.
//! 4. This crate, `portwatch`: the running application.
//!    - [`daemon`]: starts and stops everything below with one
//!      cancellation token; inside it, `monitor::daemon` is the async shell
//!      around [`monitor::decide::Core`]: the schedule, the checks in
//!      flight, and the effects carried out.
//!    - [`node`]: this process as one node of several: it joins, renews
//!      its lease, and hands the monitor its share of the sensors.
//!    - `notify::deliver` (the channels: webhook, mail, command) and
//!      `notify::worker` (delivery from the outbox with retries).
//!    - [`report`]: uptime by time and by requests, outages, connect times.
//!    - [`web`]: the web interface, JSON API and `/metrics` (axum; askama
//!      templates in `templates/`, embedded assets in `assets/`), with sign-in,
//!      sessions, CSRF tokens and API tokens ([`store::accounts`]). Inside it,
//!      `guard` is the layer every request passes (cross-origin changes,
//!      CSRF, read-only accounts, `no-store`), `signin` the sign-in throttle,
//!      and `listen` the HTTP listener with its header timeout and connection
//!      cap; `live` streams state changes to open dashboards (Server-Sent
//!      Events) and `push` takes heartbeat sensors' pushes;
//!      [`web::route_table`] lists every route for tests to walk.
//!    - [`cli`]: the command line, one file per subcommand (`check`, `scan`,
//!      `ports`, `serve`, `apply`, `status`, `report`, `pause`/`resume`,
//!      `access`, `push-url`, `store copy`), plus
//!      output formatting (human, JSON Lines, Nagios).
//!    - `main.rs`: parses arguments, runs the subcommand, and maps errors to
//!      exit codes.
//!
//! # One check, end to end
//!
//! 1. [`daemon::start`] takes the store ([`store::Backend`], opened by
//!    [`daemon::open`]), starts its writer thread
//!    ([`store::Backend::writer`]), and runs the monitor
//!    (`monitor::daemon`), which loads the configuration and hands it to
//!    [`monitor::decide::Core::on_config`] as a
//!    [`monitor::reload::ConfigDiff`].
//! 2. The monitor keeps a queue of due times. When a sensor is due
//!    ([`monitor::scheduler`] spreads first runs and skips missed slots),
//!    it takes a permit (global and per host) and spawns
//!    [`probe::Checker::check`]: resolve, Happy Eyeballs connect
//!    ([`probe::happy`], [`probe::connect`]), and, for a protocol check,
//!    the protocol's conversation from [`probe::proto::PROTOCOLS`]. The
//!    outcome is a [`probe::CheckResult`] with a [`probe::Reason`].
//! 3. The result comes back to the monitor, which passes it to
//!    [`monitor::decide::Core::on_result`]: it steps the sensor's state
//!    machine ([`monitor::state::step`]) and answers with effects: store
//!    the result, store the state change with the notifications the
//!    planner ([`notify::plan`]) says it causes, re-check at once before a
//!    DOWN, pause the dependants of a sensor that went down, re-check a
//!    dependency before its dependant alerts. The monitor carries them out.
//! 4. The result goes to the writer's queue ([`store::writer::Writer`]):
//!    packed ([`store::pack`]) and committed within a second. A state
//!    change is committed at once with its notifications, before it is
//!    announced; the delivery worker (`notify::worker`) then sends them.
//!    A heartbeat sensor has no check: at its interval the monitor reads
//!    its pushes from the store and [`monitor::heartbeat::judge`] gives
//!    the result.
//! 5. The web ([`web`]) reads the sensor's state, its last result and its
//!    [`probe::proto::CheckDetails`] through the same store handle, and
//!    renders the dashboard (each row's last checks and uptimes from
//!    [`store::Glance`], maintained by the writer) and the sensor page;
//!    `/metrics` and the API read the same rows.
//!
//! Around them:
//!
//! - `bench/`: benchmarks against peer tools (`bench/scan`, `bench/monitor`).
//! - `tests/integration/`: the real binary against real listeners, the
//!   network-namespace lab, and the monitor with a real store; `security.rs`
//!   tries a running `serve` as an attacker would. `scripts/test` sets up a
//!   machine for them and runs them.
pub mod cli;
pub mod daemon;
pub mod monitor;
pub mod node;
pub mod notify;
pub mod web;

pub use portwatch_core::{config, report};
pub use portwatch_probe as probe;
pub use portwatch_probe::{duration, text};
pub use portwatch_store as store;
