//! `portwatch serve`: run the monitor until SIGTERM or Ctrl-C.

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, Signal};

use super::ServeArgs;
use crate::daemon;
use crate::monitor::{Clock, MonitorOptions};
use crate::node::{Node, Timing};
use crate::probe::CloseMode;
use crate::store::location::Location;
use crate::store::{Backend, Storage};

pub(super) const EXAMPLES: &str = "Examples:
  portwatch serve                               the store ./portwatch.db
  portwatch serve --config portwatch.toml       apply the file first, and on SIGHUP
  portwatch serve --db /var/lib/portwatch/portwatch.db
  portwatch serve --db postgres://portwatch@db.example/portwatch   on PostgreSQL

Stop it with Ctrl-C or SIGTERM: every result already taken is written first.
After a crash or `kill -9` at most the last second of raw results is lost,
and no state change.";

pub(super) fn run(args: ServeArgs) -> anyhow::Result<u8> {
    // First, before any thread starts, so that every thread inherits the
    // blocked signals.
    let signals = Signals::start()?;
    // Descriptors: the soft limit raised to the hard one, a share kept for
    // the web's connections, 128 for the store, resolver and deliveries,
    // and the rest for checks, so no client load can starve them.
    let fd_limit = crate::probe::scan::raise_fd_limit();
    let web_limits = crate::web::WebLimits::for_fd_limit(fd_limit);
    let max_checks = (args.max_checks as usize).min(
        fd_limit
            .saturating_sub(web_limits.max_connections as u64 + 128)
            .max(16) as usize,
    );
    let location = args.db.location()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (db, mut lock, sensors) = runtime.block_on(async {
        let existed = match &location {
            Location::Sqlite(path) => path.exists(),
            Location::Postgres(_) => true,
        };
        let db = daemon::open(&location).await?;
        let lock = hold(&db, &args).await?;
        if let Location::Sqlite(path) = &location {
            for file in crate::store::readable_by_others(path) {
                tracing::warn!(file = %file.display(), "the store is readable by other users (it holds password hashes and webhook secrets): chmod 600 it");
            }
        }
        let applied = match &args.config {
            Some(file) => Some(daemon::apply_file(&db, file).await?),
            None => None,
        };
        let sensors = db.sensor_count().await?;
        first_screen(&location, existed, args.config.as_deref(), applied, sensors)?;
        anyhow::Ok((db, lock, sensors))
    })?;

    let mut monitor = MonitorOptions {
        max_checks,
        per_host: args.per_host as usize,
        clock: Clock::System,
        close: if args.abort {
            CloseMode::Abort
        } else {
            CloseMode::Graceful
        },
        ..MonitorOptions::default()
    };
    let summary = runtime.block_on(async {
        // Whatever ends the run (also a failure to start the web), the
        // monitor lock is given up, so a restart need not wait for a
        // PostgreSQL lease to lapse.
        let run = async {
            let web = if args.no_web {
                None
            } else {
                let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|error| {
                    anyhow::anyhow!("cannot listen on {}: {error}: choose another address with --listen, or --no-web", args.listen)
                })?;
                // The admin is created only once the address is ours, so that its
                // generated password is always printed.
                let chosen = std::env::var("PORTWATCH_ADMIN_PASSWORD").ok();
                let password = crate::web::ensure_admin(&db, chosen).await?;
                let address = listener.local_addr()?;
                monitor.public_url = Some(match &args.public_url {
                    Some(url) => url.clone(),
                    None => format!("http://{address}"),
                });
                let (access, proxies, public_url) = (
                    args.metrics_access,
                    args.trusted_proxies.clone(),
                    args.public_url.clone(),
                );
                Some((address, password, daemon::Web {
                    listener,
                    limits: web_limits,
                    configure: Box::new(move |state| {
                        state
                            .with_metrics_access(access)
                            .with_trusted_proxies(proxies)
                            .with_public_url(public_url)
                    }),
                }))
            };
            let (shown, web) = match web {
                Some((address, password, web)) => (Some((address, password)), Some(web)),
                None => (None, None),
            };
            let share = match &mut lock {
                Hold::Node(node) => Some(node.cluster()),
                Hold::Lock(_) => None,
            };
            let running = daemon::start(daemon::Options {
                share,
                db: db.clone(),
                config: args.config.clone(),
                monitor,
                web,
                deliver: true,
            })?;
            if let Hold::Node(node) = &mut lock {
                node.start(running.stats().clone(), running.fence().clone());
            }
            // Shown once everything runs: the address answers, and the store's
            // files are all there.
            if let Some((address, password)) = shown {
                web_screen(address, password.as_deref())?;
            }
            hints(sensors)?;
            // SIGTERM or SIGINT stops the daemon; SIGHUP re-applies the
            // configuration file (if one was given) and reloads.
            let shutdown = running.shutdown();
            let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
            let signals = tokio::spawn(async move {
                let mut signals = signals;
                while let Some(signal) = signals.received.recv().await {
                    if signal != Signal::SIGHUP {
                        tracing::info!("stopping: writing what is left to the store");
                        shutdown.cancel();
                        return;
                    }
                    let _ = reload_tx.send(());
                }
            });
            let mut reloads = reload_rx;
            let stopped = running.shutdown();
            loop {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    Some(()) = reloads.recv() => {
                        if let Err(error) = running.reload().await {
                            tracing::error!("{error:#}; keeping the running configuration");
                        }
                    }
                }
            }
            signals.abort();
            running.wait().await
        };
        let outcome = run.await;
        lock.release().await;
        outcome
    })?;
    let counts = summary.checks;
    writeln!(
        anstream::stderr(),
        "portwatch: stopped after {} checks ({} due, {} missed, {} in flight at the stop, {} late; start lateness p50 {} ms, p99 {} ms); {} results stored, {} lost, {} write errors, in {}",
        counts.done,
        counts.due,
        counts.missed,
        counts.in_flight,
        counts.late,
        counts.lateness_quantile(0.5).unwrap_or(0),
        counts.lateness_quantile(0.99).unwrap_or(0),
        summary.stored,
        summary.dropped,
        summary.write_errors,
        location
    )?;
    Ok(0)
}

/// What keeps other monitors off this one's sensors: SQLite's monitor
/// lock (one `serve` per store), or on PostgreSQL this process's place
/// among the nodes that share the store.
enum Hold {
    Lock(crate::store::MonitorLock),
    Node(Box<Node>),
}

impl Hold {
    /// Gives it up (a node leaves: the others take its sensors at once).
    async fn release(self) {
        match self {
            Hold::Lock(lock) => lock.release().await,
            Hold::Node(node) => node.leave().await,
        }
    }
}

async fn hold(db: &Backend, args: &ServeArgs) -> anyhow::Result<Hold> {
    match db {
        Backend::Postgres(pg) => {
            let name = match &args.node {
                Some(name) => name.clone(),
                None => host_name(),
            };
            let timing = Timing {
                heartbeat: args.heartbeat,
            };
            let node = Node::join(pg.clone(), name.clone(), args.location.clone(), timing).await?;
            tracing::info!(node = %name, location = %args.location, "joined the nodes of the store");
            Ok(Hold::Node(Box::new(node)))
        }
        Backend::Sqlite(_) => {
            if args.node.is_some() {
                anyhow::bail!(
                    "--node needs a PostgreSQL store (--db postgres://…): nodes share one database; a SQLite store has one monitor"
                );
            }
            Ok(Hold::Lock(db.lock_monitor().await?))
        }
    }
}

/// This machine's name, for a node that was given none.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if name.is_empty() { "node".into() } else { name }
}

/// SIGTERM, SIGINT and SIGHUP, taken by a thread of their own with
/// `sigwait`. They are blocked in every other thread (the mask is set before
/// the runtime's threads start, and they inherit it).
struct Signals {
    received: tokio::sync::mpsc::UnboundedReceiver<Signal>,
}

impl Signals {
    fn start() -> anyhow::Result<Signals> {
        let mut set = SigSet::empty();
        for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            set.add(signal);
        }
        set.thread_block()?;
        let (sender, received) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("portwatch-signals".into())
            .spawn(move || {
                while let Ok(signal) = set.wait() {
                    if sender.send(signal).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Signals { received })
    }
}

/// Where the web interface is, and the admin password when it was just
/// generated (printed this once).
fn web_screen(address: std::net::SocketAddr, password: Option<&str>) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    writeln!(
        out,
        "  web       http://{address}/  (API: /api/openapi.json, metrics: /metrics)"
    )?;
    if let Some(password) = password {
        writeln!(
            out,
            "  sign in   user admin, password {password}  (shown once: note it now)"
        )?;
    }
    out.flush()
}

/// What a newcomer sees first: what runs, where things are, what to do next.
fn first_screen(
    db: &Location,
    existed: bool,
    config: Option<&Path>,
    applied: Option<usize>,
    sensors: usize,
) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    let db_note = if existed { "" } else { " (new)" };
    let shown = match db {
        Location::Sqlite(path) => {
            let full: PathBuf = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
            full.display().to_string()
        }
        Location::Postgres(target) => format!("PostgreSQL {}", target.display()),
    };
    writeln!(
        out,
        "portwatch {} is monitoring {sensors} sensors.",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(out, "  store     {shown}{db_note}")?;
    match (config, applied) {
        (Some(file), Some(n)) => writeln!(
            out,
            "  config    {} ({n} sensors applied; re-read on SIGHUP)",
            file.display()
        )?,
        _ => writeln!(
            out,
            "  config    none given (use --config portwatch.toml, or `portwatch apply FILE` at any time)"
        )?,
    }
    out.flush()
}

/// The commands to try next, after the addresses; on an empty store, how
/// to declare the first sensor.
fn hints(sensors: usize) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    if sensors == 0 {
        writeln!(out)?;
        writeln!(
            out,
            "There is nothing to check yet. Write a portwatch.toml, for example:"
        )?;
        writeln!(out)?;
        writeln!(out, "    [[server]]")?;
        writeln!(out, "    name = \"myhost\"")?;
        writeln!(out, "    host = \"localhost\"")?;
        writeln!(out, "      [[server.sensor]]")?;
        writeln!(out, "      port = \"ssh\"")?;
        writeln!(out)?;
        writeln!(
            out,
            "then run `portwatch apply portwatch.toml` in another terminal: this monitor picks it"
        )?;
        writeln!(
            out,
            "up within two seconds. The repository's examples/portwatch.toml explains every key."
        )?;
    }

    writeln!(out)?;
    writeln!(out, "  portwatch status              every sensor's state")?;
    writeln!(
        out,
        "  portwatch report --since 7d   uptime, outages, connect times"
    )?;
    writeln!(
        out,
        "  Ctrl-C                        stop (everything is written first)"
    )?;
    out.flush()
}
