//! `portwatch serve`: run the monitor until SIGTERM or Ctrl-C.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};
use tokio::sync::Notify;

use super::ServeArgs;
use crate::config::read_config;
use crate::monitor::stats::MonitorStats;
use crate::monitor::{Clock, MonitorOptions};
use crate::probe::CloseMode;
use crate::store::{Store, writer};

pub(super) const EXAMPLES: &str = "Examples:
  portwatch serve                               the store ./portwatch.db
  portwatch serve --config portwatch.toml       apply the file first, and on SIGHUP
  portwatch serve --db /var/lib/portwatch/portwatch.db

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
    let db = args.db.db.clone();
    let existed = db.exists();
    let _lock = Store::lock_monitor(&db)?;
    for file in crate::store::readable_by_others(&db) {
        tracing::warn!(file = %file.display(), "the store is readable by other users (it holds password hashes and webhook secrets): chmod 600 it");
    }
    let mut store = Store::open(&db)?;
    let applied = match &args.config {
        Some(file) => Some(apply(&mut store, file)?),
        None => None,
    };
    let sensors = store.sensor_count()?;
    drop(store);
    first_screen(&db, existed, args.config.as_deref(), applied, sensors)?;

    let (writer, writer_thread) = writer::start(&db)?;
    let written = writer.stats.clone();
    let stats = Arc::new(MonitorStats::default());
    let mut options = MonitorOptions {
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let delivery_stats = Arc::new(crate::notify::worker::DeliveryStats::default());
    let web_state =
        crate::web::AppState::new(db.clone(), Some(stats.clone()), Some(written.clone()))
            .with_metrics_access(args.metrics_access)
            .with_delivery_stats(delivery_stats.clone())
            .with_trusted_proxies(args.trusted_proxies.clone())
            .with_public_url(args.public_url.clone());
    let outcome = runtime.block_on(async {
        let listener = if args.no_web {
            None
        } else {
            let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|error| {
                anyhow::anyhow!("cannot listen on {}: {error}: choose another address with --listen, or --no-web", args.listen)
            })?;
            // The admin is created only once the address is ours, so that its
            // generated password is always printed.
            let password = crate::web::ensure_admin(&Store::open(&db)?)?;
            web_screen(&listener, password.as_deref())?;
            options.public_url = Some(match &args.public_url {
                Some(url) => url.clone(),
                None => format!("http://{}", listener.local_addr()?),
            });
            Some(listener)
        };
        hints(sensors)?;
        let reload = Arc::new(Notify::new());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (config, db_for_hup, notify) = (args.config.clone(), db.clone(), reload.clone());
        let handler = tokio::spawn(handle_signals(signals, stop, config, db_for_hup, notify));
        let web = listener.map(|listener| {
            let mut stopped = stopped.clone();
            let app = crate::web::app(web_state);
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                crate::web::serve(listener, app, web_limits, shutdown).await;
            })
        });
        let mut monitor_stopped = stopped.clone();
        let shutdown = async move {
            let _ = monitor_stopped.wait_for(|stop| *stop).await;
            tracing::info!("stopping: writing what is left to the store");
        };
        let (wake, stop_delivery) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let delivery = tokio::spawn(crate::notify::worker::run(db.clone(), wake.clone(), stop_delivery.clone(), delivery_stats.clone()));
        let result = crate::monitor::daemon::run_notifying(db.clone(), writer, options, stats.clone(), reload, wake, shutdown).await;
        stop_delivery.notify_one();
        let _ = delivery.await;
        handler.abort();
        if let Some(web) = web {
            let _ = web.await;
        }
        result.map_err(anyhow::Error::from)
    });
    // The monitor has dropped its writer handle: the thread commits what is
    // left, repacks, and ends.
    let _ = writer_thread.join();
    outcome?;
    let counts = stats.snapshot();
    let stored = written
        .results_stored
        .load(std::sync::atomic::Ordering::Relaxed);
    let dropped = written
        .results_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    let errors = written
        .write_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    writeln!(
        anstream::stderr(),
        "portwatch: stopped after {} checks ({} due, {} missed, {} late; start lateness p50 {} ms, p99 {} ms); {stored} results stored, {dropped} lost, {errors} write errors, in {}",
        counts.done,
        counts.due,
        counts.missed,
        counts.late,
        counts.lateness_quantile(0.5).unwrap_or(0),
        counts.lateness_quantile(0.99).unwrap_or(0),
        db.display()
    )?;
    Ok(0)
}

fn apply(store: &mut Store, file: &Path) -> anyhow::Result<usize> {
    let config = read_config(file)?;
    let summary = store.apply(&config)?;
    tracing::info!(file = %file.display(), sensors = summary.sensors, added = summary.added, removed = summary.removed, "configuration applied");
    Ok(summary.sensors)
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

/// SIGTERM or SIGINT stops the monitor; SIGHUP re-applies the configuration
/// file (if one was given) and reloads.
async fn handle_signals(
    mut signals: Signals,
    stop: tokio::sync::watch::Sender<bool>,
    config: Option<PathBuf>,
    db: PathBuf,
    reload: Arc<Notify>,
) {
    while let Some(signal) = signals.received.recv().await {
        if signal != Signal::SIGHUP {
            let _ = stop.send(true);
            return;
        }
        let Some(file) = config.clone() else {
            reload.notify_one();
            continue;
        };
        let db = db.clone();
        let applied = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let mut store = Store::open(&db)?;
            apply(&mut store, &file)
        })
        .await;
        match applied {
            Ok(Ok(_)) => reload.notify_one(),
            Ok(Err(error)) => tracing::error!("{error:#}; keeping the running configuration"),
            Err(error) => tracing::error!(%error, "reloading the configuration failed"),
        }
    }
}

/// Where the web interface is, and the admin password when it was just
/// generated (printed this once).
fn web_screen(listener: &tokio::net::TcpListener, password: Option<&str>) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    let address = listener.local_addr()?;
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
    db: &Path,
    existed: bool,
    config: Option<&Path>,
    applied: Option<usize>,
    sensors: usize,
) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    let db_note = if existed { "" } else { " (new)" };
    let full: PathBuf = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_owned());
    writeln!(
        out,
        "portwatch {} is monitoring {sensors} sensors.",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(out, "  store     {}{db_note}", full.display())?;
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
