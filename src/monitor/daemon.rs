//! The running monitor.
//!
//! One task owns every sensor's schedule and state. Checks run as their own
//! tasks, bounded by a global cap and a per-host cap, and report back on a
//! channel. Results and events go to the store's writer; an event is
//! announced (logged, and later notified) only once the writer has
//! committed it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;

use super::dependency::{self, is_up};
use super::reload::{self, Changed, ConfigDiff};
use super::scheduler::{first_offset, next_due};
use super::state::{self, Input, State, Tracker};
use super::stats::MonitorStats;
use crate::config::model::{ResolvedSensor, resolve};
use crate::notify::plan::{Current, Outgoing, Planner};
use crate::probe::verdict::Expectation;
use crate::probe::{CheckOptions, CheckResult, Checker, CloseMode, Family, Reason, Status, Target};
use crate::store::writer::{LastCheck, Writer};
use crate::store::{Loaded, Storage, StoreError, StoredResult};

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

struct Sensor {
    spec: ResolvedSensor,
    target: Target,
    options: CheckOptions,
    host: Arc<Semaphore>,
    tracker: Tracker,
    since_ms: i64,
    due: Instant,
    running: bool,
    manual: bool,
    /// The last check's message, for escalations and repeats.
    message: String,
    /// Bumped when the schedule changes, so stale queue entries are skipped.
    epoch: u64,
}

struct Done {
    id: i64,
    due: Instant,
    at_ms: i64,
    started: Instant,
    recheck: bool,
    result: CheckResult,
}

struct Monitor {
    sensors: HashMap<i64, Sensor>,
    ids: HashMap<String, i64>,
    dependants: HashMap<i64, Vec<i64>>,
    /// Sensors with a dependency, a window or a manual pause: re-evaluated
    /// every second.
    watched: Vec<i64>,
    queue: BinaryHeap<Reverse<(Instant, i64, u64)>>,
    hosts: HashMap<String, Arc<Semaphore>>,
    global: Arc<Semaphore>,
    checker: Checker,
    writer: Writer,
    stats: Arc<MonitorStats>,
    options: MonitorOptions,
    done: mpsc::Sender<Done>,
    checks: JoinSet<()>,
    announcer: Announcer,
    planner: Planner,
    /// Sensors whose DOWN notifications are held until their dependency
    /// has been re-checked (usually none).
    held: HashSet<i64>,
    generation: i64,
    missed_logged: Instant,
}

/// What the monitor is wired to: the store (read through `db`, written
/// through `writer`), and the signals it takes.
pub struct Wiring<S> {
    /// The store: configuration loads and generation polls.
    pub db: S,
    /// The store's writer: results, events and notifications.
    pub writer: Writer,
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
}

/// Runs the monitor until `wiring.shutdown` is cancelled, then waits for
/// the writer to commit everything.
pub async fn run<S: Storage>(wiring: Wiring<S>, options: MonitorOptions) -> Result<(), StoreError> {
    let Wiring {
        db,
        writer,
        stats,
        reload,
        notified,
        shutdown,
    } = wiring;
    let (done_sender, mut done) = mpsc::channel(65_536);
    let planner = Planner::new(options.public_url.clone());
    let mut monitor = Monitor {
        sensors: HashMap::new(),
        ids: HashMap::new(),
        dependants: HashMap::new(),
        watched: Vec::new(),
        queue: BinaryHeap::new(),
        hosts: HashMap::new(),
        global: Arc::new(Semaphore::new(options.max_checks.max(1))),
        checker: Checker::from_system(),
        writer,
        stats,
        options,
        done: done_sender,
        checks: JoinSet::new(),
        planner,
        held: HashSet::new(),
        announcer: Announcer::start(notified),
        generation: -1,
        missed_logged: Instant::now(),
    };
    let (loaded, statuses) = load(&db).await?;
    monitor.apply(loaded, &statuses);
    tracing::info!(sensors = monitor.sensors.len(), "monitor started");

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_poll = Instant::now();
    loop {
        let next = monitor.queue.peek().map(|Reverse((due, _, _))| *due);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(finished) = done.recv() => monitor.finish(finished),
            () = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => monitor.start_due(),
            () = reload.notified() => monitor.reload(&db).await,
            _ = tick.tick() => {
                monitor.reap();
                monitor.evaluate_watched();
                monitor.follow_up();
                if last_poll.elapsed() >= monitor.options.reload_every {
                    last_poll = Instant::now();
                    monitor.poll_generation(&db).await;
                }
            }
        }
    }
    // Checks in flight are abandoned; everything already reported is
    // committed before returning.
    monitor.checks.shutdown().await;
    while let Ok(finished) = done.try_recv() {
        monitor.finish(finished);
    }
    monitor.stop_all();
    monitor.writer.flush().await;
    monitor.announcer.finish().await;
    tracing::info!("stopped: everything taken is written to the store");
    let counts = monitor.stats.snapshot();
    tracing::info!(
        due = counts.due,
        done = counts.done,
        missed = counts.missed,
        late = counts.late,
        p50_late_ms = counts.lateness_quantile(0.5),
        p99_late_ms = counts.lateness_quantile(0.99),
        "monitor stopped"
    );
    Ok(())
}

/// Loads the configuration and the last known states, off the async threads.
async fn load<S: Storage>(db: &S) -> Result<(Loaded, HashMap<i64, (State, i64)>), StoreError> {
    Ok((db.load().await?, db.states().await?))
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
    }
}

impl Monitor {
    fn now_ms(&self) -> i64 {
        self.options.clock.now().as_millisecond()
    }

    /// Makes the running sensors match `loaded`, keeping the state and
    /// schedule of sensors that stay.
    fn apply(&mut self, loaded: Loaded, statuses: &HashMap<i64, (State, i64)>) {
        let Loaded {
            config,
            ids,
            paused,
            generation,
        } = loaded;
        self.generation = generation;
        self.planner
            .configure(config.rules.clone(), &config.channels);
        let now = Instant::now();
        let now_ms = self.now_ms();
        // The declared configuration is dropped as soon as it is resolved:
        // with 100,000 sensors, holding both doubles the start-up peak.
        let specs = resolve(&config);
        let dependencies: HashSet<String> =
            specs.iter().filter_map(|s| s.depends_on.clone()).collect();
        drop(config);
        let running: HashMap<i64, Duration> = self
            .sensors
            .iter()
            .map(|(id, sensor)| (*id, sensor.spec.settings.interval))
            .collect();
        let ConfigDiff {
            to_add,
            to_change,
            to_remove,
        } = reload::diff(&running, specs, &ids);
        drop(running);
        for id in &to_remove {
            self.sensors.remove(id);
            self.held.remove(id);
        }
        for Changed {
            id,
            spec,
            reschedule,
        } in to_change
        {
            let (target, options, host) = self.check_parts(&spec);
            let manual = paused.contains(&id);
            let sensor = self.sensors.get_mut(&id).expect("a running sensor");
            sensor.spec = spec;
            sensor.target = target;
            sensor.options = options;
            sensor.host = host;
            sensor.manual = manual;
            if reschedule {
                sensor.epoch += 1;
                sensor.due = now + first_offset(&sensor.spec.path, sensor.spec.settings.interval);
                self.queue.push(Reverse((sensor.due, id, sensor.epoch)));
            }
        }
        for (id, spec) in to_add {
            let (target, options, host) = self.check_parts(&spec);
            let (tracker, since_ms) = match statuses.get(&id) {
                Some(&(state, since)) => (Tracker { state, failures: 0 }, since),
                None => (Tracker::PENDING, now_ms),
            };
            let due = now + first_offset(&spec.path, spec.settings.interval);
            self.queue.push(Reverse((due, id, 0)));
            self.sensors.insert(
                id,
                Sensor {
                    manual: paused.contains(&id),
                    spec,
                    target,
                    options,
                    host,
                    tracker,
                    since_ms,
                    due,
                    running: false,
                    message: String::new(),
                    epoch: 0,
                },
            );
        }
        // Only the paths that something depends on need looking up by name.
        self.ids = ids
            .into_iter()
            .filter(|(path, id)| self.sensors.contains_key(id) && dependencies.contains(path))
            .collect();
        self.dependants = reload::dependants(
            self.sensors
                .iter()
                .map(|(id, sensor)| (*id, sensor.spec.depends_on.as_deref())),
            &self.ids,
        );
        self.watched = self
            .sensors
            .iter()
            .filter(|(_, sensor)| {
                sensor.spec.depends_on.is_some()
                    || !sensor.spec.windows.is_empty()
                    || sensor.manual
                    || matches!(sensor.tracker.state, State::Paused(_))
            })
            .map(|(id, _)| *id)
            .collect();
        self.watched.sort_unstable();
        // Outages that were under way before this load (a restart after a
        // crash, or new escalation rules) still escalate and repeat.
        if self.planner.has_rules() {
            let now_ms = self.now_ms();
            for (id, sensor) in &self.sensors {
                if sensor.tracker.state == State::Down {
                    self.planner
                        .resume_outage(*id, &sensor.spec, sensor.since_ms, now_ms);
                }
            }
        }
        self.evaluate_watched();
    }

    /// What a sensor's checks need: its target, check options and the
    /// limit of checks at once on its host.
    fn check_parts(&mut self, spec: &ResolvedSensor) -> (Target, CheckOptions, Arc<Semaphore>) {
        let target = Target {
            // The target's text is only for one-shot reports.
            input: String::new(),
            host: spec.host.clone(),
            port: spec.port,
        };
        let per_host = self.options.per_host.max(1);
        let host = self
            .hosts
            .entry(spec.host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(per_host)))
            .clone();
        (target, check_options(spec, self.options.close), host)
    }

    async fn poll_generation<S: Storage>(&mut self, db: &S) {
        match db.generation().await {
            Ok(generation) if generation != self.generation => self.reload(db).await,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read the configuration generation; retrying")
            }
        }
    }

    async fn reload<S: Storage>(&mut self, db: &S) {
        match load(db).await {
            Ok((loaded, statuses)) => {
                self.apply(loaded, &statuses);
                tracing::info!(
                    sensors = self.sensors.len(),
                    generation = self.generation,
                    "configuration reloaded"
                );
            }
            Err(error) => {
                tracing::error!(%error, "cannot reload the configuration; keeping the current one")
            }
        }
    }

    /// Starts every check whose time has come.
    fn start_due(&mut self) {
        let now = Instant::now();
        let mut launch = Vec::new();
        while let Some(&Reverse((due, id, epoch))) = self.queue.peek() {
            if due > now {
                break;
            }
            self.queue.pop();
            let Some(sensor) = self.sensors.get_mut(&id) else {
                continue;
            };
            if sensor.epoch != epoch {
                continue;
            }
            let interval = sensor.spec.settings.interval;
            let (next, skipped) =
                next_due(Duration::ZERO, interval, now.saturating_duration_since(due));
            sensor.due = due + next;
            self.queue.push(Reverse((sensor.due, id, epoch)));
            if matches!(sensor.tracker.state, State::Paused(_)) {
                continue;
            }
            let running = sensor.running;
            self.stats.update(|c| {
                c.due += 1 + skipped;
                c.missed += skipped + u64::from(running);
            });
            if running || skipped > 0 {
                if self.missed_logged.elapsed() >= Duration::from_secs(10) {
                    self.missed_logged = Instant::now();
                    tracing::warn!(sensor = %sensor.spec.path, skipped, still_running = running, "checks missed: the monitor is behind (see the missed counter)");
                }
                if running {
                    continue;
                }
            }
            launch.push((id, due));
        }
        for (id, due) in launch {
            self.launch(id, due, false);
        }
    }

    fn launch(&mut self, id: i64, due: Instant, recheck: bool) {
        let at_ms = self.now_ms();
        let Some(sensor) = self.sensors.get_mut(&id) else {
            return;
        };
        sensor.running = true;
        self.stats.update(|c| c.in_flight += 1);
        let (target, options, host) = (
            sensor.target.clone(),
            sensor.options.clone(),
            sensor.host.clone(),
        );
        let (global, checker, done) =
            (self.global.clone(), self.checker.clone(), self.done.clone());
        self.checks.spawn(async move {
            let Ok(_global) = global.acquire_owned().await else {
                return;
            };
            let Ok(_host) = host.acquire_owned().await else {
                return;
            };
            let started = Instant::now();
            let result = checker.check(&target, &options).await;
            let _ = done
                .send(Done {
                    id,
                    due,
                    at_ms,
                    started,
                    recheck,
                    result,
                })
                .await;
        });
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
        let status_index = result.status.nagios_code() as usize;
        self.stats.update(|c| {
            c.done += 1;
            c.by_status[status_index.min(3)] += 1;
            c.in_flight = c.in_flight.saturating_sub(1);
            if let Some(index) = Reason::ALL.iter().position(|r| *r == result.reason) {
                c.by_reason[index] += 1;
            }
            if recheck {
                c.rechecks += 1;
            } else {
                c.started_late_by(started.saturating_duration_since(due).as_millis() as u64);
            }
        });
        let stored = StoredResult {
            sensor: id,
            at_ms,
            status: result.status,
            reason: result.reason,
            rtt_us: result
                .response_time
                .map(|t| t.as_micros().min(u128::from(u32::MAX)) as u32),
        };
        let Some(sensor) = self.sensors.get_mut(&id) else {
            // Removed while its check ran: the result is still history.
            self.writer.result(
                stored,
                LastCheck {
                    state: State::Pending,
                    since_ms: at_ms,
                    message: result.message,
                    details: None,
                },
            );
            return;
        };
        sensor.running = false;
        // Kept only while failing (escalations and repeats quote it): an
        // UP message per sensor would cost megabytes at 100,000 sensors.
        if result.status == Status::Up {
            sensor.message = String::new();
        } else {
            sensor.message.clone_from(&result.message);
        }
        let slow = result.status == Status::Down
            && result.reason == Reason::Connected
            && !sensor.spec.expect_closed;
        let input = Input::Checked {
            status: result.status,
            reason: result.reason,
            slow,
            message: result.message.clone(),
        };
        let was_up = is_up(sensor.tracker.state);
        let step = state::step(sensor.tracker, &input, sensor.spec.settings.retries);
        sensor.tracker = step.tracker;
        let mut recheck_dependency = None;
        if let Some(change) = step.change.clone() {
            sensor.since_ms = self.options.clock.now().as_millisecond();
            let response_ms = result.response_time.map(|t| t.as_secs_f64() * 1000.0);
            let notify =
                self.planner
                    .on_change(id, &sensor.spec, &change, sensor.since_ms, response_ms);
            // A dependant going down while its dependency still looks up:
            // its alert waits for a fresh check of the dependency, so that
            // when the dependency is what failed, only the dependency alerts.
            let dependency = dependency::hold(
                &change,
                !notify.is_empty(),
                reload::dependency(sensor.spec.depends_on.as_deref(), &self.ids),
            );
            let hold_until_ms = dependency.map(|_| sensor.since_ms + HOLD_MS);
            if dependency.is_some() {
                self.held.insert(id);
            } else {
                self.held.remove(&id);
            }
            recheck_dependency = dependency;
            self.announcer.announce(
                &self.writer,
                id,
                &sensor.spec.path,
                sensor.since_ms,
                change,
                notify,
                hold_until_ms,
            );
        }
        let last = LastCheck {
            state: sensor.tracker.state,
            since_ms: sensor.since_ms,
            details: result.protocol.as_ref().map(|p| Box::new(p.into())),
            message: result.message,
        };
        self.writer.result(stored, last);
        let now_up = is_up(sensor.tracker.state);
        if step.recheck {
            self.launch(id, Instant::now(), true);
        }
        if was_up != now_up {
            self.evaluate_dependants(id);
        }
        // A check of a sensor with held dependants settles them: released
        // if it is still up, cancelled by the pause if it is not.
        self.settle_dependants(id);
        if let Some(dependency) = recheck_dependency
            && self.sensors.get(&dependency).is_some_and(|d| !d.running)
        {
            self.launch(dependency, Instant::now(), true);
        }
    }

    /// Releases the held notifications of `id`'s dependants whose
    /// dependency is still up after its latest check. (Dependants it took
    /// down with it were paused, and their held notifications cancelled.)
    fn settle_dependants(&mut self, id: i64) {
        if self.held.is_empty() {
            return;
        }
        let Some(dependants) = self.dependants.get(&id) else {
            return;
        };
        let dependency_up = self
            .sensors
            .get(&id)
            .is_some_and(|d| is_up(d.tracker.state));
        let at_ms = self.now_ms();
        for dependant in dependency::to_release(dependency_up, &self.held, dependants) {
            self.held.remove(&dependant);
            self.announcer
                .settled(self.writer.settle(dependant, at_ms, None));
        }
    }

    /// Sends the escalations, repeats and flapping summaries that are due.
    fn follow_up(&mut self) {
        if !self.planner.has_rules() {
            return;
        }
        let now_ms = self.now_ms();
        let sensors = &self.sensors;
        let due = self.planner.due(now_ms, |id| {
            sensors.get(&id).map(|s| Current {
                spec: &s.spec,
                state: s.tracker.state,
                since_ms: s.since_ms,
                message: &s.message,
            })
        });
        let mut by_sensor: HashMap<i64, Vec<(String, crate::notify::Payload)>> = HashMap::new();
        for outgoing in due {
            by_sensor
                .entry(outgoing.sensor)
                .or_default()
                .push((outgoing.channel, outgoing.payload));
        }
        for (id, notify) in by_sensor {
            self.announcer
                .settled(self.writer.notify(id, now_ms, notify));
        }
    }

    /// Marks every checked sensor `pending` with a "monitor stopped" event,
    /// so that reports do not count the time the monitor is off as uptime
    /// or downtime.
    fn stop_all(&mut self) {
        let at_ms = self.now_ms();
        for (id, sensor) in &mut self.sensors {
            if matches!(sensor.tracker.state, State::Pending | State::Paused(_)) {
                continue;
            }
            let change = state::Change {
                from: sensor.tracker.state,
                to: State::Pending,
                reason: None,
                message: "the monitor stopped".to_owned(),
            };
            sensor.tracker = Tracker::PENDING;
            // Committed by the flush that follows; nobody waits for this one.
            drop(self.writer.event(*id, at_ms, change));
        }
    }

    fn evaluate_watched(&mut self) {
        for id in self.watched.clone() {
            self.evaluate(id);
        }
    }

    fn evaluate_dependants(&mut self, id: i64) {
        let mut pending = self.dependants.get(&id).cloned().unwrap_or_default();
        let mut seen = HashSet::new();
        while let Some(next) = pending.pop() {
            if seen.insert(next) && self.evaluate(next) {
                pending.extend(self.dependants.get(&next).cloned().unwrap_or_default());
            }
        }
    }

    /// Pauses or resumes a sensor as its manual flag, windows and dependency
    /// want. Returns whether its up-ness changed.
    fn evaluate(&mut self, id: i64) -> bool {
        let now = self.options.clock.now();
        let dependency_up = {
            let Some(sensor) = self.sensors.get(&id) else {
                return false;
            };
            reload::dependency(sensor.spec.depends_on.as_deref(), &self.ids)
                .and_then(|dep| self.sensors.get(&dep))
                .is_none_or(|dep| is_up(dep.tracker.state))
        };
        let Some(sensor) = self.sensors.get_mut(&id) else {
            return false;
        };
        let in_window = sensor
            .spec
            .windows
            .iter()
            .any(|(_, rule)| rule.contains(now));
        let Some(input) = dependency::pause_input(
            sensor.tracker.state,
            sensor.manual,
            in_window,
            dependency_up,
        ) else {
            return false;
        };
        let was_up = is_up(sensor.tracker.state);
        let step = state::step(sensor.tracker, &input, sensor.spec.settings.retries);
        sensor.tracker = step.tracker;
        let Some(change) = step.change else {
            return false;
        };
        sensor.since_ms = now.as_millisecond();
        if self.held.remove(&id) && matches!(change.to, State::Paused(_)) {
            // Its dependency went down: only the dependency alerts.
            let why = dependency::cancel_reason(
                change.to,
                sensor.spec.depends_on.as_deref(),
                &change.message,
            );
            self.announcer
                .settled(self.writer.settle(id, sensor.since_ms, Some(why)));
        }
        let notify = self
            .planner
            .on_change(id, &sensor.spec, &change, sensor.since_ms, None);
        self.announcer.announce(
            &self.writer,
            id,
            &sensor.spec.path,
            sensor.since_ms,
            change,
            notify,
            None,
        );
        let resumed = input == Input::Resume;
        let running = sensor.running;
        if resumed && !running {
            self.launch(id, Instant::now(), false);
        }
        was_up != is_up(step.tracker.state)
    }
}

/// A commit to wait for, and the state change to log once it is stored.
type Announcement = (
    tokio::sync::oneshot::Receiver<()>,
    Option<(String, state::Change)>,
);

/// How long a dependant's DOWN alert waits for its dependency's re-check
/// at most; if the monitor dies meanwhile, it is sent when this ends.
const HOLD_MS: i64 = 30_000;

/// Announces state changes once the store has committed them, in the order
/// they happened, and wakes the delivery worker.
struct Announcer {
    /// Unbounded on purpose: an entry per state change, never per check,
    /// and dropping one would lose an announcement.
    queue: mpsc::UnboundedSender<Announcement>,
    task: tokio::task::JoinHandle<()>,
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
                tracing::info!(
                    sensor = %path,
                    from = %change.from,
                    to = %change.to,
                    reason = change.reason.map(|r| r.as_str()).unwrap_or("-"),
                    "{}",
                    change.message
                );
            }
        });
        Announcer { queue, task }
    }

    /// Stores a state change with its notifications; it is announced once
    /// committed.
    #[allow(clippy::too_many_arguments)]
    fn announce(
        &self,
        writer: &Writer,
        id: i64,
        path: &str,
        at_ms: i64,
        change: state::Change,
        notify: Vec<Outgoing>,
        hold_until_ms: Option<i64>,
    ) {
        let notify = notify.into_iter().map(|o| (o.channel, o.payload)).collect();
        let committed = writer.event_holding(id, at_ms, change.clone(), notify, hold_until_ms);
        let _ = self
            .queue
            .send((committed, Some((path.to_owned(), change))));
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
