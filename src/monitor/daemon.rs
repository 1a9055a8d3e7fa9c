//! The running monitor.
//!
//! One task owns every sensor's schedule and state. Checks run as their own
//! tasks, at most `max_checks` at once (a due check beyond that waits in a
//! line, one entry per sensor, rather than becoming a task) and at most
//! `per_host` at once against one host, and report back on a channel. Results and events go to the store's writer; an event is
//! announced (logged, and later notified) only once the writer has
//! committed it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;

use super::cluster::{Role, Share, share_keys};
use super::decide::{Core, Due, Effect, Outcome, Reload};
use super::reload::Changed;
use super::scheduler::{Slots, first_offset, next_due, resume_offset};
use super::state::{self, State};
use super::stats::{self, MonitorStats, Window};
use super::verdict::{self, LocationReport};
use crate::config::model::{ResolvedSensor, resolve};
use crate::probe::verdict::Expectation;
use crate::probe::{CheckOptions, CheckResult, Checker, CloseMode, Family, Reason, Target};
use crate::store::writer::LastCheck;
use crate::store::{Loaded, Storage, StoreError, Writes};

/// The wall clock the monitor stamps results, events and maintenance
/// windows with.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// `origin` plus the time elapsed on tokio's clock since `start`: follows
    /// `tokio::time::pause()` and `advance()` in tests.
    Virtual {
        /// The wall time at `start`.
        origin: jiff::Timestamp,
        /// tokio's time at `origin`.
        start: Instant,
    },
}

impl Clock {
    /// A virtual clock starting now at `origin`.
    pub fn starting_at(origin: jiff::Timestamp) -> Clock {
        Clock::Virtual {
            origin,
            start: Instant::now(),
        }
    }

    /// The current wall time.
    pub fn now(&self) -> jiff::Timestamp {
        match self {
            Clock::System => jiff::Timestamp::now(),
            Clock::Virtual { origin, start } => {
                let elapsed = jiff::SignedDuration::try_from(start.elapsed()).unwrap_or_default();
                origin.checked_add(elapsed).unwrap_or(*origin)
            }
        }
    }
}

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// The most checks in flight at once.
    pub max_checks: usize,
    /// The most checks in flight against one host.
    pub per_host: usize,
    /// How often to look for configuration changes in the store.
    pub reload_every: Duration,
    /// The wall clock.
    pub clock: Clock,
    /// How established connections are closed.
    pub close: CloseMode,
    /// The web interface's address as users reach it, for the links in
    /// notifications.
    pub public_url: Option<String>,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        MonitorOptions {
            max_checks: 10_000,
            per_host: 256,
            reload_every: Duration::from_secs(2),
            clock: Clock::System,
            close: CloseMode::Graceful,
            public_url: None,
        }
    }
}

/// What the shell keeps of a sensor: when to check it, and its host's
/// limit. (What to check comes from the core's settings at each launch:
/// building it then costs what cloning a stored copy did, and keeping a
/// copy per sensor cost about 10 MB per 100,000 sensors.)
struct Schedule {
    host: Arc<Semaphore>,
    /// The key its node is chosen by (see [`share_keys`]).
    key: i64,
    /// The locations that check it (`None`: every location with a node).
    locations: Option<Arc<[String]>>,
    interval: Duration,
    due: Instant,
    /// Bumped when the schedule changes, so stale queue entries are skipped.
    epoch: u64,
}

struct Done {
    id: i64,
    due: Instant,
    at_ms: i64,
    started: Instant,
    recheck: bool,
    /// `None`: nothing to report yet (a heartbeat sensor whose first push
    /// is not due).
    result: Option<CheckResult>,
}

/// A check as launched: what its [`Done`] reports besides the result.
#[derive(Clone, Copy)]
struct Launched {
    id: i64,
    due: Instant,
    at_ms: i64,
    recheck: bool,
}

impl Launched {
    /// The report of this check, started at `started`.
    fn done(self, started: Instant, result: Option<CheckResult>) -> Done {
        Done {
            id: self.id,
            due: self.due,
            at_ms: self.at_ms,
            started,
            recheck: self.recheck,
            result,
        }
    }
}

/// Reads a heartbeat sensor's pushes from the store (whichever node's web
/// took them).
type PushReader = Arc<
    dyn Fn(
            i64,
        ) -> futures_util::future::BoxFuture<
            'static,
            Result<Option<super::heartbeat::Pushes>, StoreError>,
        > + Send
        + Sync,
>;

/// A heartbeat sensor's verdict as a check's result.
fn heartbeat_result(
    status: crate::probe::Status,
    reason: Reason,
    message: String,
    checked_at: jiff::Timestamp,
) -> CheckResult {
    CheckResult {
        target: String::new(),
        host: String::new(),
        port: 0,
        service: None,
        address: None,
        status,
        reason,
        message,
        response_time: None,
        dns_time: None,
        reported_by: None,
        checked_at,
        protocol: None,
    }
}

/// The async shell around [`Core`]: it owns the schedule, the checks in
/// flight, the store's writer and the announcer, and carries out the
/// effects the core decides.
struct Monitor<W> {
    core: Core,
    /// Boxed, as the core's sensors are: 16 bytes per slot of the table,
    /// which can be half empty.
    schedules: HashMap<i64, Box<Schedule>>,
    queue: BinaryHeap<Reverse<(Instant, i64, u64)>>,
    hosts: HashMap<String, Arc<Semaphore>>,
    /// The cap on checks in flight, and the line of due checks waiting
    /// for a slot (with their due time, and whether each is a re-check).
    slots: Slots<(Instant, bool)>,
    checker: Checker,
    pushes: PushReader,
    writer: W,
    stats: Arc<MonitorStats>,
    options: MonitorOptions,
    done: mpsc::Sender<Done>,
    checks: JoinSet<()>,
    announcer: Announcer,
    generation: i64,
    /// The counters at the start of the current overload window.
    window: Window,
    window_started: Instant,
    /// On a node sharing the store: which sensors are this node's. `None`:
    /// the monitor checks every sensor.
    share: Option<Share>,
    /// The sensors it checks for its location only (another node, or its
    /// own judge, decides them): their results go out as location reports.
    located: HashSet<i64>,
    /// Where location reports go (on a node).
    reports: Option<mpsc::Sender<LocationReport>>,
    /// The sensors it judges from their locations' reports: their state
    /// machines, fed with verdicts rather than checks.
    verdict: Core,
    /// When each judged sensor is judged next, and its share key.
    judged: HashMap<i64, Judged>,
    /// The latest report of each location, by sensor (only sensors checked
    /// from several locations have any).
    heard: HashMap<i64, Vec<LocationReport>>,
}

/// A sensor this node judges.
struct Judged {
    key: i64,
    /// When it is next judged on schedule.
    next: Instant,
    /// Until then its locations may not have reported yet: a verdict of
    /// "too few locations" waits for it.
    ready: Instant,
}

/// Which state machine an effect comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The checks' (sensors this node checks).
    Checks,
    /// The verdicts' (sensors this node judges from their locations).
    Verdicts,
}

/// A node's link to the others: its share of the sensors, and the
/// location reports it sends and hears (see `crate::node`).
pub struct Cluster {
    /// Its share, as its heartbeats find it.
    pub share: watch::Receiver<Share>,
    /// Where this node's location reports go.
    pub reports: mpsc::Sender<LocationReport>,
    /// Every node's reports, as the store has them.
    pub heard: mpsc::Receiver<Vec<LocationReport>>,
}

/// How often the monitor judges whether it keeps up.
const OVERLOAD_WINDOW: Duration = Duration::from_secs(10);

/// The sensors a stop marks pending in one go (and writes before the
/// next).
const STOP_SLICE: usize = 10_000;

/// The most finished checks the monitor takes from their channel at once.
const FINISHED_AT_ONCE: usize = 256;

/// What the monitor is wired to: the store (read through `db`, written
/// through `writer`), and the signals it takes.
pub struct Wiring<S, W> {
    /// The store: configuration loads and generation polls.
    pub db: S,
    /// The store's writer: results, events and notifications.
    pub writer: W,
    /// Counters of checks due, done, late and missed.
    pub stats: Arc<MonitorStats>,
    /// Asks for an immediate configuration reload (SIGHUP); changes are
    /// also noticed by polling the configuration generation.
    pub reload: Arc<Notify>,
    /// Woken whenever notifications were committed to the outbox (for the
    /// delivery worker).
    pub notified: Arc<Notify>,
    /// Cancelled to stop.
    pub shutdown: CancellationToken,
    /// On a node sharing the store with others: its share, as its
    /// heartbeats find it, and the location reports. `None`: this monitor
    /// checks every sensor.
    pub share: Option<Cluster>,
}

/// Runs the monitor until `wiring.shutdown` is cancelled, then waits for
/// the writer to commit everything.
pub async fn run<S: Storage, W: Writes>(
    wiring: Wiring<S, W>,
    options: MonitorOptions,
) -> Result<(), StoreError> {
    let Wiring {
        db,
        writer,
        stats,
        reload,
        notified,
        shutdown,
        share: cluster,
    } = wiring;
    let (mut share, reports, mut heard) = match cluster {
        Some(Cluster {
            share,
            reports,
            heard,
        }) => (Some(share), Some(reports), Some(heard)),
        None => (None, None, None),
    };
    let (done_sender, mut done) = mpsc::channel(65_536);
    let verdict = Core::new(options.public_url.clone());
    let mut monitor = Monitor {
        core: Core::new(options.public_url.clone()),
        schedules: HashMap::new(),
        queue: BinaryHeap::new(),
        hosts: HashMap::new(),
        slots: Slots::new(options.max_checks),
        checker: Checker::from_system(),
        pushes: {
            let db = db.clone();
            Arc::new(move |id| {
                let db = db.clone();
                Box::pin(async move { db.pushes(id).await })
            })
        },
        writer,
        stats,
        options,
        done: done_sender,
        checks: JoinSet::new(),
        announcer: Announcer::start(notified),
        generation: -1,
        window: Window::default(),
        window_started: Instant::now(),
        share: share.as_mut().map(|s| s.borrow_and_update().clone()),
        located: HashSet::new(),
        reports,
        verdict,
        judged: HashMap::new(),
        heard: HashMap::new(),
    };
    let (loaded, states, last) = load(&db, monitor.share.is_some()).await?;
    monitor.apply(loaded, states, last);
    tracing::info!(sensors = monitor.core.len(), "monitor started");

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_poll = Instant::now();
    // The configuration is read by a task of its own, never in this loop:
    // a database that hangs (a network cut) delays a reload, not the
    // checks. One read at a time; a reload asked for meanwhile follows it.
    let mut reading: Option<JoinHandle<ConfigRead>> = None;
    let mut reload_asked = false;
    let mut batch = Vec::with_capacity(FINISHED_AT_ONCE);
    loop {
        let next = monitor.queue.peek().map(|Reverse((due, _, _))| *due);
        // In order, and the finished checks last: under overload one
        // finishes every few microseconds, so a branch after them would
        // never run (no due check started, no overload judged, no share
        // change heard). Every other branch is ready now and then only.
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                monitor.reap();
                let effects = monitor.core.tick(monitor.options.clock.now());
                monitor.carry_out(effects);
                if !monitor.verdict.is_empty() {
                    let effects = monitor.verdict.tick(monitor.options.clock.now());
                    monitor.carry_out_from(Source::Verdicts, effects);
                    monitor.judge_due();
                }
                monitor.publish_slots();
                monitor.judge_load();
                if last_poll.elapsed() >= monitor.options.reload_every && reading.is_none() {
                    last_poll = Instant::now();
                    reading = Some(tokio::spawn(read_config(db.clone(), Some(monitor.generation), share.is_some())));
                }
            }
            () = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => monitor.start_due(),
            read = async { reading.as_mut().expect("a read in flight").await }, if reading.is_some() => {
                reading = None;
                match read {
                    Ok(read) => monitor.take_read(read),
                    Err(error) => tracing::error!(%error, "the configuration read failed"),
                }
                if std::mem::take(&mut reload_asked) {
                    reading = Some(tokio::spawn(read_config(db.clone(), None, share.is_some())));
                }
            }
            reports = async { heard.as_mut().expect("a node").recv().await }, if heard.is_some() => {
                match reports {
                    Some(reports) => monitor.hear(reports),
                    None => heard = None,
                }
            }
            changed = async { share.as_mut().expect("a node").changed().await }, if share.is_some() => {
                if changed.is_err() {
                    // The node's heartbeats ended: the process is stopping.
                    share = None;
                    continue;
                }
                let now = share.as_mut().expect("a node").borrow_and_update().clone();
                if monitor.share.as_ref() != Some(&now) {
                    tracing::info!(nodes = now.nodes().len(), owns_nothing = now.is_empty(), "this node's share of the sensors changed");
                    monitor.share = Some(now);
                    // Sensors given up stop at once (see `owns`); sensors
                    // taken come with the last state their node stored.
                    if reading.is_some() {
                        reload_asked = true;
                    } else {
                        reading = Some(tokio::spawn(read_config(db.clone(), None, share.is_some())));
                    }
                }
            }
            () = reload.notified() => {
                if reading.is_some() {
                    reload_asked = true;
                } else {
                    reading = Some(tokio::spawn(read_config(db.clone(), None, share.is_some())));
                }
            }
            n = done.recv_many(&mut batch, FINISHED_AT_ONCE) => {
                if n == 0 {
                    // Never: the monitor holds a sender itself.
                    break;
                }
                for finished in batch.drain(..) {
                    monitor.finish(finished);
                }
            }
        }
    }
    if let Some(reading) = reading {
        reading.abort();
    }
    // Checks in flight are abandoned; everything already reported is
    // committed before returning.
    // Checks still waiting for a slot will not run: they are missed (and
    // the results taken below free no slot for them).
    let abandoned = monitor.slots.abandon_waiting() as u64;
    monitor.stats.update(|c| {
        c.missed += abandoned;
        c.waiting = 0;
    });
    monitor.checks.shutdown().await;
    while let Ok(finished) = done.try_recv() {
        monitor.finish(finished);
    }
    // Sensors another node goes on checking are not "stopped": only a
    // monitor alone in its location marks its sensors pending.
    // A slice at a time, each written before the next: a million changes
    // held at once would take a few hundred megabytes.
    if monitor.share.as_ref().is_none_or(Share::alone) {
        let now = monitor.options.clock.now();
        for ids in monitor.core.checked().chunks(STOP_SLICE) {
            let effects = monitor.core.stop(ids, now);
            monitor.carry_out(effects);
            monitor.writer.flush().await;
        }
    }
    // Judged sensors, likewise, only by the last node of all.
    if monitor.share.as_ref().is_none_or(Share::alone_everywhere) {
        let judged = monitor.verdict.checked();
        let effects = monitor.verdict.stop(&judged, monitor.options.clock.now());
        monitor.carry_out_from(Source::Verdicts, effects);
    }
    monitor.writer.flush().await;
    monitor.announcer.finish().await;
    tracing::info!("stopped: everything taken is written to the store");
    let counts = monitor.stats.snapshot();
    tracing::info!(
        due = counts.due,
        done = counts.done,
        missed = counts.missed,
        abandoned_in_flight = counts.in_flight,
        late = counts.late,
        p50_late_ms = counts.lateness_quantile(0.5),
        p99_late_ms = counts.lateness_quantile(0.99),
        "monitor stopped"
    );
    Ok(())
}

/// Loads the configuration and the last known states, off the async
/// threads; on a node (`node`), also when each sensor was last checked,
/// for the sensors it takes over.
async fn load<S: Storage>(db: &S, node: bool) -> Result<(Loaded, States, LastChecked), StoreError> {
    let last = if node {
        Some(db.last_checked().await?)
    } else {
        None
    };
    Ok((db.load().await?, db.states().await?, last))
}

/// When each sensor was last checked (ms), on a node.
type LastChecked = Option<HashMap<i64, i64>>;

/// Every sensor's last known state and since when.
type States = HashMap<i64, (State, i64)>;

/// What a read of the configuration found.
enum ConfigRead {
    /// The generation is the one running: nothing to do.
    Unchanged,
    /// A new configuration, the last known states, and on a node when
    /// each sensor was last checked.
    Loaded(Box<(Loaded, States, LastChecked)>),
    /// The store did not answer (a reload asked for by a poll is tried
    /// again at the next poll).
    Failed(StoreError, bool),
}

/// Reads the configuration if its generation differs from `running`
/// (always, without one: a reload was asked for).
async fn read_config<S: Storage>(db: S, running: Option<i64>, node: bool) -> ConfigRead {
    if let Some(running) = running {
        match db.generation().await {
            Ok(generation) if generation == running => return ConfigRead::Unchanged,
            Ok(_) => {}
            Err(error) => return ConfigRead::Failed(error, true),
        }
    }
    match load(&db, node).await {
        Ok(loaded) => ConfigRead::Loaded(Box::new(loaded)),
        Err(error) => ConfigRead::Failed(error, running.is_some()),
    }
}

fn check_options(spec: &ResolvedSensor, close: CloseMode) -> CheckOptions {
    CheckOptions {
        timeout: spec.settings.timeout,
        expect: Expectation {
            warning: spec.settings.warning,
            critical: spec.settings.critical,
            expect_closed: spec.expect_closed,
        },
        family: Family::Any,
        source: None,
        close,
        proto: spec.probe.clone(),
        dns: spec.dns().cloned(),
        udp: spec.udp().cloned(),
        ping: spec.ping(),
    }
}

impl<W: Writes> Monitor<W> {
    /// Makes the running sensors match `loaded`, keeping the state and
    /// schedule of sensors that stay.
    fn apply(&mut self, loaded: Loaded, states: HashMap<i64, (State, i64)>, last: LastChecked) {
        let Loaded {
            mut config,
            ids,
            paused,
            generation,
        } = loaded;
        self.generation = generation;
        let now = Instant::now();
        // The declared configuration is dropped as soon as it is resolved:
        // with 100,000 sensors, holding both doubles the start-up peak.
        let mut specs = resolve(&config);
        let mut keys = share_keys(&specs, &ids);
        let mut judged = Vec::new();
        let mut located = HashSet::new();
        if let Some(share) = &self.share {
            let roles: Vec<Role> = specs
                .iter()
                .zip(&keys)
                .map(|(spec, key)| {
                    key.map_or(Role::None, |k| share.role(k, spec.locations.as_deref()))
                })
                .collect();
            for ((spec, key), role) in specs.iter().zip(&keys).zip(&roles) {
                if let (true, Some(key)) = (role.judges(), key) {
                    // Its locations confirm their failures themselves: a
                    // verdict needs no re-check.
                    let mut spec = spec.clone();
                    std::sync::Arc::make_mut(&mut spec.settings).retries = 0;
                    judged.push((spec, *key));
                }
                if matches!(role, Role::Check | Role::CheckAndJudge)
                    && let Some(id) = ids.get(&spec.path)
                {
                    located.insert(*id);
                }
            }
            let mut checks = roles.iter().map(|r| r.checks());
            specs.retain(|_| checks.next().unwrap_or(false));
            let mut checks = roles.iter().map(|r| r.checks());
            keys.retain(|_| checks.next().unwrap_or(false));
        }
        // A location's state starts afresh (the sensor's stored state is the
        // verdict, not this location's).
        let mut states = states;
        let verdict_states = if judged.is_empty() && self.verdict.is_empty() {
            HashMap::new()
        } else {
            judged
                .iter()
                .filter_map(|(spec, _)| {
                    let id = ids.get(&spec.path)?;
                    Some((*id, *states.get(id)?))
                })
                .collect()
        };
        // A sensor that was checked here for this location and is now
        // decided here goes on from its own stored state (the verdict's).
        for id in self.located.difference(&located) {
            if let (Some(&(state, since_ms)), true) =
                (states.get(id), self.schedules.contains_key(id))
            {
                self.core.resume_state(*id, state, since_ms);
            }
        }
        for id in &located {
            states.remove(id);
        }
        self.located = located;
        let keys: HashMap<i64, i64> = specs
            .iter()
            .zip(keys)
            .filter_map(|(spec, key)| Some((*ids.get(&spec.path)?, key?)))
            .collect();
        let rules = std::mem::take(&mut config.rules);
        let channels = std::mem::take(&mut config.channels);
        drop(config);
        if !judged.is_empty() || !self.verdict.is_empty() {
            self.apply_judged(
                judged,
                Reload {
                    diff: Default::default(),
                    ids: ids.clone(),
                    paused: paused.clone(),
                    states: verdict_states,
                    rules: rules.clone(),
                    channels: channels.clone(),
                },
            );
        }
        if !self.heard.is_empty() {
            let known: HashSet<i64> = ids.values().copied().collect();
            self.heard.retain(|id, _| known.contains(id));
        }
        let diff = self.core.diff(specs, &ids);
        for id in &diff.to_remove {
            self.schedules.remove(id);
        }
        for Changed {
            id,
            spec,
            reschedule,
        } in &diff.to_change
        {
            let host = self.host_limit(spec);
            let schedule = self.schedules.get_mut(id).expect("a running sensor");
            schedule.host = host;
            schedule.key = keys.get(id).copied().unwrap_or(*id);
            schedule.locations = spec.locations.clone();
            schedule.interval = spec.settings.interval;
            if *reschedule {
                schedule.epoch += 1;
                schedule.due = now + first_offset(&spec.path, spec.settings.interval);
                self.queue
                    .push(Reverse((schedule.due, *id, schedule.epoch)));
            }
        }
        let now_ms = self.options.clock.now().as_millisecond();
        self.schedules.reserve(diff.to_add.len());
        self.queue.reserve(diff.to_add.len());
        for (id, spec) in &diff.to_add {
            let host = self.host_limit(spec);
            // A sensor taken over from another node goes on at its cadence.
            let offset = match last.as_ref().and_then(|last| last.get(id)) {
                Some(&last_ms) => {
                    resume_offset(&spec.path, spec.settings.interval, last_ms, now_ms)
                }
                None => first_offset(&spec.path, spec.settings.interval),
            };
            let due = now + offset;
            self.queue.push(Reverse((due, *id, 0)));
            self.schedules.insert(
                *id,
                Box::new(Schedule {
                    host,
                    key: keys.get(id).copied().unwrap_or(*id),
                    locations: spec.locations.clone(),
                    interval: spec.settings.interval,
                    due,
                    epoch: 0,
                }),
            );
        }
        // A host whose sensors are all gone keeps no limit: only the map
        // holds its semaphore then.
        self.hosts.retain(|_, limit| Arc::strong_count(limit) > 1);
        let reload = Reload {
            diff,
            ids,
            paused,
            states,
            rules,
            channels,
        };
        let effects = self.core.on_config(reload, self.options.clock.now());
        self.carry_out(effects);
        self.publish_slots();
        let sensors = self.core.len() as u64;
        self.stats.update(|c| c.sensors = sensors);
    }

    /// Whether this monitor checks sensor `id` now: on a node, a sensor
    /// whose share went to another node stops at once, before the reload
    /// that drops it; so does any late word about a sensor no longer
    /// running here (its new node decides about it).
    fn owns(&self, id: i64) -> bool {
        self.schedules
            .get(&id)
            .is_some_and(|schedule| self.checks(schedule))
    }

    /// Whether this node checks a sensor with this schedule now.
    fn checks(&self, schedule: &Schedule) -> bool {
        self.share.as_ref().is_none_or(|share| {
            share
                .role(schedule.key, schedule.locations.as_deref())
                .checks()
        })
    }

    /// Whether this node judges sensor `id` now.
    fn judges(&self, id: i64) -> bool {
        let (Some(share), Some(judged), Some(spec)) =
            (&self.share, self.judged.get(&id), self.verdict.spec(id))
        else {
            return false;
        };
        share.role(judged.key, spec.locations.as_deref()).judges()
    }

    /// Makes the judged sensors match `judged` (specs with their share
    /// keys); `reload` carries everything but the diff.
    fn apply_judged(&mut self, judged: Vec<(ResolvedSensor, i64)>, mut reload: Reload) {
        let now = Instant::now();
        let keys: HashMap<String, i64> = judged
            .iter()
            .map(|(spec, key)| (spec.path.clone(), *key))
            .collect();
        let specs = judged.into_iter().map(|(spec, _)| spec).collect();
        let diff = self.verdict.diff(specs, &reload.ids);
        for id in &diff.to_remove {
            self.judged.remove(id);
        }
        for Changed { id, spec, .. } in &diff.to_change {
            if let (Some(judged), Some(key)) = (self.judged.get_mut(id), keys.get(&spec.path)) {
                judged.key = *key;
            }
        }
        for (id, spec) in &diff.to_add {
            // The first verdict waits a round for every location's report
            // (a node taking over also hears the reports stored before).
            let round = spec.settings.interval + spec.settings.timeout + JUDGE_MARGIN;
            self.judged.insert(
                *id,
                Judged {
                    key: keys.get(&spec.path).copied().unwrap_or(*id),
                    next: now + round,
                    ready: now + round,
                },
            );
        }
        reload.diff = diff;
        let effects = self.verdict.on_config(reload, self.options.clock.now());
        self.carry_out_from(Source::Verdicts, effects);
    }

    /// Takes every node's latest location reports; a judged sensor whose
    /// verdict changes with them is judged at once.
    fn hear(&mut self, reports: Vec<LocationReport>) {
        let mut changed = HashSet::new();
        for report in reports {
            let sensor = report.sensor;
            let heard = self.heard.entry(sensor).or_default();
            match heard.iter_mut().find(|r| r.location == report.location) {
                Some(old) if old.checked_ms > report.checked_ms => continue,
                Some(old) => *old = report,
                None => heard.push(report),
            }
            if self.judged.contains_key(&sensor) {
                changed.insert(sensor);
            }
        }
        let now = Instant::now();
        for id in changed {
            let Some((verdict, _)) = self.combined(id) else {
                continue;
            };
            let ready = self.judged.get(&id).is_some_and(|j| now >= j.ready);
            let worth = ready || verdict.reason != Some("too_few_locations");
            if worth && self.verdict.state(id) != Some(verdict.state) {
                self.judge(id);
            }
        }
    }

    /// The verdict on judged sensor `id` from what its locations reported.
    fn combined(&self, id: i64) -> Option<(verdict::Verdict, Outcome)> {
        let spec = self.verdict.spec(id)?;
        let wanted: Vec<&str> = match (&spec.locations, &self.share) {
            (Some(listed), _) => listed.iter().map(String::as_str).collect(),
            (None, Some(share)) => share.locations(),
            (None, None) => Vec::new(),
        };
        let settings = &spec.settings;
        let fresh = settings.interval * 2 + settings.timeout + JUDGE_MARGIN;
        let reports = self.heard.get(&id).map_or(&[][..], Vec::as_slice);
        Some(verdict::combine(
            reports,
            &wanted,
            spec.down_when,
            self.options.clock.now().as_millisecond(),
            fresh.as_millis() as i64,
        ))
    }

    /// Judges sensor `id` now: its verdict goes to its state machine as a
    /// check's outcome would.
    fn judge(&mut self, id: i64) {
        if !self.judges(id) {
            return;
        }
        if matches!(self.verdict.due(id), None | Some(Due::Paused)) {
            return;
        }
        let Some((_, outcome)) = self.combined(id) else {
            return;
        };
        let effects = self
            .verdict
            .on_result(id, outcome, self.options.clock.now());
        self.carry_out_from(Source::Verdicts, effects);
    }

    /// Judges the sensors whose time has come (every interval).
    fn judge_due(&mut self) {
        let now = Instant::now();
        let due: Vec<i64> = self
            .judged
            .iter()
            .filter(|(_, j)| j.next <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let interval = self
                .verdict
                .spec(id)
                .map_or(Duration::from_secs(60), |s| s.settings.interval);
            if let Some(judged) = self.judged.get_mut(&id) {
                let (next, _) = next_due(
                    Duration::ZERO,
                    interval,
                    now.saturating_duration_since(judged.next),
                );
                judged.next += next;
            }
            self.judge(id);
        }
    }

    /// The limit of checks at once on a sensor's host, shared by every
    /// sensor of that host.
    fn host_limit(&mut self, spec: &ResolvedSensor) -> Arc<Semaphore> {
        let per_host = self.options.per_host.max(1);
        self.hosts
            .entry(spec.host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(per_host)))
            .clone()
    }

    /// Applies what a configuration read found.
    fn take_read(&mut self, read: ConfigRead) {
        match read {
            ConfigRead::Unchanged => {}
            ConfigRead::Loaded(loaded) => {
                let (loaded, states, last) = *loaded;
                self.apply(loaded, states, last);
                tracing::info!(
                    sensors = self.core.len(),
                    generation = self.generation,
                    "configuration reloaded"
                );
            }
            ConfigRead::Failed(error, true) => {
                tracing::warn!(%error, "cannot read the configuration generation; retrying")
            }
            ConfigRead::Failed(error, false) => {
                tracing::error!(%error, "cannot reload the configuration; keeping the current one")
            }
        }
    }

    /// Starts every check whose time has come.
    fn start_due(&mut self) {
        let now = Instant::now();
        let mut launch = Vec::new();
        let (mut due_now, mut missed_now) = (0, 0);
        while let Some(&Reverse((due, id, epoch))) = self.queue.peek() {
            if due > now {
                break;
            }
            self.queue.pop();
            let Some(schedule) = self.schedules.get_mut(&id) else {
                continue;
            };
            if schedule.epoch != epoch {
                continue;
            }
            let (next, skipped) = next_due(
                Duration::ZERO,
                schedule.interval,
                now.saturating_duration_since(due),
            );
            schedule.due = due + next;
            self.queue.push(Reverse((schedule.due, id, epoch)));
            if !self.checks(&self.schedules[&id]) {
                // Another node's now; dropped at the reload under way (it stays
                // in the queue, should the share come back first).
                continue;
            }
            let running = match self.core.due(id) {
                None | Some(Due::Paused) => continue,
                Some(Due::Running) => true,
                Some(Due::Start) => false,
            };
            // A sensor whose previous check still runs or waits for a slot
            // is not queued twice: this check is missed.
            due_now += 1 + skipped;
            missed_now += skipped + u64::from(running);
            if !running {
                launch.push((id, due));
            }
        }
        self.stats.update(|c| {
            c.due += due_now;
            c.missed += missed_now;
        });
        for (id, due) in launch {
            self.start_check(id, due, false);
        }
        self.publish_slots();
    }

    /// Starts a check now if a slot is free, or puts it in line (a
    /// re-check at the front). The caller publishes the slots' counts once
    /// it is done starting checks.
    fn start_check(&mut self, id: i64, due: Instant, recheck: bool) {
        let admitted = if recheck {
            self.slots.offer_first(id, (due, recheck))
        } else {
            self.slots.offer(id, (due, recheck))
        };
        if let Some((id, (due, recheck))) = admitted
            && !self.launch(id, due, recheck)
        {
            self.release_slot();
        }
    }

    /// A check's slot is free: the first in line takes it.
    fn release_slot(&mut self) {
        while let Some((id, (due, recheck))) = self.slots.release() {
            if self.launch(id, due, recheck) {
                break;
            }
        }
    }

    fn publish_slots(&self) {
        let (in_flight, waiting) = (self.slots.in_flight() as u64, self.slots.waiting() as u64);
        self.stats.update(|c| {
            c.in_flight = in_flight;
            c.waiting = waiting;
        });
    }

    /// Every ten seconds: whether the monitor kept up (nothing missed, no
    /// line of checks waiting for a slot), published as the overload
    /// counter (`/metrics`, `/healthz`) and logged when it did not.
    fn judge_load(&mut self) {
        if self.window_started.elapsed() < OVERLOAD_WINDOW {
            return;
        }
        self.window_started = Instant::now();
        let now = self.stats.window();
        let overload = stats::overload(self.window, now);
        self.window = now;
        let percent = overload.map_or(0, |o| o.percent());
        self.stats.update(|c| c.overload_percent = percent);
        if let Some(o) = overload {
            tracing::warn!(
                due = o.due,
                done = o.done,
                missed = o.missed,
                waiting = o.waiting,
                max_checks = self.options.max_checks,
                "the monitor is over capacity: {percent}% more checks came due in the last {} s than it could do ({} missed, {} waiting for a free slot); lengthen intervals, raise --max-checks if the machine has room, or spread the sensors over more nodes",
                OVERLOAD_WINDOW.as_secs(),
                o.missed,
                o.waiting
            );
        }
    }

    /// Spawns a check that holds a slot; false when the sensor is gone.
    fn launch(&mut self, id: i64, due: Instant, recheck: bool) -> bool {
        let at_ms = self.options.clock.now().as_millisecond();
        let (Some(schedule), Some(spec)) = (self.schedules.get(&id), self.core.spec(id)) else {
            return false;
        };
        let target = Target {
            // The target's text is only for one-shot reports.
            input: String::new(),
            host: spec.host.clone(),
            port: spec.port,
        };
        let launched = Launched {
            id,
            due,
            at_ms,
            recheck,
        };
        if let Some(heartbeat) = spec.heartbeat.as_deref().copied() {
            // Nothing to check: the verdict comes from the pushes stored.
            let (pushes, done) = (self.pushes.clone(), self.done.clone());
            let clock = self.options.clock.clone();
            self.checks.spawn(async move {
                let started = Instant::now();
                let result = match pushes(id).await {
                    Ok(found) => {
                        let now = clock.now();
                        super::heartbeat::judge(found.as_ref(), &heartbeat, now.as_millisecond())
                            .map(|(status, reason, message)| {
                                heartbeat_result(status, reason, message, now)
                            })
                    }
                    // The store did not answer: unknown, never a false DOWN.
                    Err(error) => Some(heartbeat_result(
                        crate::probe::Status::Unknown,
                        Reason::LocalError,
                        format!("cannot read the pushes from the store: {error}"),
                        clock.now(),
                    )),
                };
                let _ = done.send(launched.done(started, result)).await;
            });
            return true;
        }
        let options = check_options(spec, self.options.close);
        let host = schedule.host.clone();
        let (checker, done) = (self.checker.clone(), self.done.clone());
        self.checks.spawn(async move {
            let Ok(_host) = host.acquire_owned().await else {
                return;
            };
            let started = Instant::now();
            let result = Some(checker.check(&target, &options).await);
            let _ = done.send(launched.done(started, result)).await;
        });
        true
    }

    /// Drops the handles of finished check tasks.
    fn reap(&mut self) {
        while self.checks.try_join_next().is_some() {}
    }

    fn finish(&mut self, done: Done) {
        // Free finished tasks as they report: a finished task keeps its
        // memory until its handle is dropped.
        self.reap();
        let Done {
            id,
            due,
            at_ms,
            started,
            recheck,
            result,
        } = done;
        let Some(result) = result else {
            self.core.on_nothing(id);
            self.release_slot();
            self.publish_slots();
            return;
        };
        let status_index = result.status.nagios_code() as usize;
        self.stats.update(|c| {
            c.done += 1;
            c.by_status[status_index.min(3)] += 1;
            if let Some(index) = Reason::ALL.iter().position(|r| *r == result.reason) {
                c.by_reason[index] += 1;
            }
            if recheck {
                c.rechecks += 1;
            } else {
                c.started_late_by(started.saturating_duration_since(due).as_millis() as u64);
            }
        });
        let outcome = Outcome {
            at_ms,
            status: result.status,
            reason: result.reason,
            details: result.protocol.as_ref().map(|p| {
                let mut details = crate::probe::proto::CheckDetails::from(p);
                details.dns_ms = result.dns_time.map(|d| d.as_secs_f64() * 1e3);
                Box::new(details)
            }),
            message: result.message,
            response_time: result.response_time,
        };
        let effects = self.core.on_result(id, outcome, self.options.clock.now());
        // A re-check among the effects waits at the front of the line, so
        // the slot this check frees goes to it.
        self.carry_out(effects);
        self.release_slot();
        self.publish_slots();
    }

    /// Carries out what the checks' state machines decided, in their order.
    fn carry_out(&mut self, effects: Vec<Effect>) {
        self.carry_out_from(Source::Checks, effects);
    }

    /// Carries out what a core decided, in its order. A sensor checked for
    /// this location only reports its location's state; nothing else of
    /// it is stored or announced.
    fn carry_out_from(&mut self, source: Source, effects: Vec<Effect>) {
        for effect in effects {
            let id = effect.sensor();
            match source {
                Source::Checks if !self.owns(id) => continue,
                Source::Verdicts if !self.judges(id) => continue,
                Source::Checks if self.located.contains(&id) => {
                    self.report(effect);
                    continue;
                }
                _ => {}
            }
            match effect {
                // A verdict's "check" (after a pause, or for a dependant) is
                // a verdict now.
                Effect::Check { id, .. } if source == Source::Verdicts => {
                    if let Some(judged) = self.judged.get_mut(&id) {
                        judged.next = Instant::now();
                    }
                }
                Effect::Check { id, recheck } => self.start_check(id, Instant::now(), recheck),
                Effect::Result {
                    result,
                    state,
                    since_ms,
                    message,
                    details,
                } => self.writer.result(
                    result,
                    LastCheck {
                        state,
                        since_ms,
                        message,
                        details,
                    },
                ),
                Effect::Event {
                    id,
                    path,
                    at_ms,
                    change,
                    notify,
                    hold_until_ms,
                } => {
                    let notify = notify.into_iter().map(|o| (o.channel, o.payload)).collect();
                    let committed =
                        self.writer
                            .event_holding(id, at_ms, change.clone(), notify, hold_until_ms);
                    self.announcer.announce(committed, path, change);
                }
                Effect::Settle { id, at_ms, cancel } => {
                    self.announcer
                        .settled(self.writer.settle(id, at_ms, cancel));
                }
                Effect::Notify { id, at_ms, notify } => {
                    let notify = notify.into_iter().map(|o| (o.channel, o.payload)).collect();
                    self.announcer
                        .settled(self.writer.notify(id, at_ms, notify));
                }
                // Committed by the flush that follows; nobody waits for it.
                Effect::Stop { id, at_ms, change } => drop(self.writer.event(id, at_ms, change)),
            }
        }
    }
}

impl<W: Writes> Monitor<W> {
    /// What a sensor checked for this location only does with an effect:
    /// a check starts, a result goes out as this location's report, the
    /// rest is for the judge to decide.
    fn report(&mut self, effect: Effect) {
        match effect {
            Effect::Check { id, recheck } => self.start_check(id, Instant::now(), recheck),
            Effect::Result {
                result,
                state,
                since_ms,
                message,
                ..
            } => {
                let (Some(reports), Some(location)) =
                    (&self.reports, self.share.as_ref().and_then(Share::location))
                else {
                    return;
                };
                let report = LocationReport {
                    sensor: result.sensor,
                    location: location.to_owned(),
                    state,
                    since_ms,
                    checked_ms: result.at_ms,
                    reason: result.reason,
                    rtt_us: result.rtt_us,
                    message,
                };
                // A full queue drops this report: the next check sends the
                // sensor's state again.
                let _ = reports.try_send(report);
            }
            Effect::Event { .. }
            | Effect::Settle { .. }
            | Effect::Notify { .. }
            | Effect::Stop { .. } => {}
        }
    }
}

/// How long after a round of checks a verdict waits for the locations'
/// reports (they are written and read every half second).
const JUDGE_MARGIN: Duration = Duration::from_secs(2);

/// A commit to wait for, and the state change to log once it is stored.
type Announcement = (
    tokio::sync::oneshot::Receiver<()>,
    Option<(String, state::Change)>,
);

/// Announces state changes once the store has committed them, in the order
/// they happened, and wakes the delivery worker.
struct Announcer {
    /// Unbounded on purpose: an entry per state change, never per check,
    /// and dropping one would lose an announcement.
    queue: mpsc::UnboundedSender<Announcement>,
    task: JoinHandle<()>,
}

impl Announcer {
    fn start(notified: Arc<Notify>) -> Announcer {
        let (queue, mut changes) = mpsc::unbounded_channel::<Announcement>();
        let task = tokio::spawn(async move {
            while let Some((committed, change)) = changes.recv().await {
                if committed.await.is_err() {
                    continue;
                }
                // The outbox may have something new: wake the delivery worker.
                notified.notify_one();
                let Some((path, change)) = change else {
                    continue;
                };
                // A sensor's first check finding it UP is no news: at
                // 1,000,000 sensors it would be a million lines a start.
                if change.from == state::State::Pending && change.to == state::State::Up {
                    tracing::debug!(sensor = %path, "{}", change.message);
                } else {
                    tracing::info!(
                        sensor = %path,
                        from = %change.from,
                        to = %change.to,
                        reason = change.reason.map(|r| r.as_str()).unwrap_or("-"),
                        "{}",
                        change.message
                    );
                }
            }
        });
        Announcer { queue, task }
    }

    /// Announces a stored state change once `committed`.
    fn announce(
        &self,
        committed: tokio::sync::oneshot::Receiver<()>,
        path: String,
        change: state::Change,
    ) {
        let _ = self.queue.send((committed, Some((path, change))));
    }

    /// Wakes the delivery worker once an outbox write is committed.
    fn settled(&self, committed: tokio::sync::oneshot::Receiver<()>) {
        let _ = self.queue.send((committed, None));
    }

    /// Waits until every queued change has been announced.
    async fn finish(self) {
        drop(self.queue);
        let _ = self.task.await;
    }
}
