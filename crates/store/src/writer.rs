//! The store's one writer: a thread that owns the write connection and
//! batches everything the monitor produces.
//!
//! - Results are committed at least once a second, as one packed journal
//!   batch: a `kill -9` loses at most the last second of them.
//! - An event is committed at once, before its acknowledgement is sent, so
//!   nobody is told of a state change that is not stored.
//! - Every minute, journal batches of closed windows are repacked into one
//!   row per sensor and window, and hourly rollups are written when an hour
//!   closes.
//! - When SQLite fails (database locked, disk full), the error is logged and
//!   counted, nothing is dropped, and the write is retried with backoff.
//!   Monitoring never waits for the store.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::pack::{self, StoredResult};
use super::rollup::{Accumulator, HOUR_MS, hour_of};
use super::{RETENTION, ROLLUP_RETENTION, Store, StoreError, Writes};
use portwatch_core::monitor::state::{Change, State};

/// How often results are committed.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The span of one packed per-sensor row.
pub const WINDOW_MS: i64 = 120_000;
/// How often closed windows are repacked.
const REPACK_EVERY: Duration = Duration::from_secs(60);
/// Sensors whose windows of a closed hour are merged in one step.
const COMPACT_SENSORS: usize = 2_000;
/// How often a step of merging runs: 1,000,000 sensors take 500 steps,
/// about 8 minutes of each hour.
const COMPACT_EVERY: Duration = Duration::from_secs(1);
/// Stored windows read at once while repacking.
const REPACK_READ: usize = 10_000;

/// A writer step that takes longer than this is logged.
const LONG_STEP: Duration = Duration::from_secs(2);

/// The windows a repack writes between two looks at the result queue.
pub(crate) const REPACK_WRITE: usize = 10_000;
/// The longest wait between two attempts at a failed commit: short enough
/// that a database back from a restart or a failover is written to within
/// seconds, long enough that retries cost nothing.
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// Queue between the monitor and the writer.
pub(crate) const QUEUE: usize = 200_000;

/// Rows a commit writes between two takings of the results queued
/// meanwhile (see [`Target::commit`]).
pub(crate) const COMMIT_SLICE: usize = 10_000;
/// Results taken from the queue before a commit is considered.
const MAX_BATCH: usize = 100_000;
/// Results held in memory while the store refuses writes, before the oldest
/// are dropped (and counted).
const MAX_BACKLOG: usize = 5_000_000;

/// The latest result of a sensor, for `portwatch status`.
#[derive(Debug, Clone)]
pub struct LastCheck {
    /// The sensor's state after this result.
    pub state: State,
    /// Since when it is in that state (ms).
    pub since_ms: i64,
    /// Its message.
    pub message: String,
    /// A protocol check's phases, details and certificate.
    pub details: Option<Box<portwatch_probe::proto::CheckDetails>>,
}

enum Write {
    /// A result, its sensor's state after it, and the [`Fence`] epoch it
    /// was decided in.
    Result(StoredResult, LastCheck, u64),
    /// Ordered writes are waiting in [`OrderedQueue`].
    Wake,
    Flush(oneshot::Sender<()>),
}

/// Ordered writes waiting for the writer, oldest first, each with the
/// acknowledgement it fires once committed. Never bounded and never
/// dropped (events are rare and must not be lost), and appended under one
/// lock, so they are committed in the order they were made even when the
/// result queue is full.
type OrderedQueue = Arc<Mutex<VecDeque<PendingEvent>>>;

/// Writes committed at once and in order: events and the outbox.
#[derive(Debug)]
pub(crate) enum Ordered {
    /// A state change and the notifications it causes. Held notifications
    /// wait until `hold_until_ms` unless released or cancelled first.
    Event {
        sensor: i64,
        at_ms: i64,
        change: Change,
        notify: Vec<(String, portwatch_core::notify::Payload)>,
        hold_until_ms: Option<i64>,
    },
    /// Notifications without a state change (escalations, repeats,
    /// flapping summaries).
    Notify {
        sensor: i64,
        at_ms: i64,
        notify: Vec<(String, portwatch_core::notify::Payload)>,
    },
    /// A sensor's held notifications: sent now, or cancelled with a reason.
    Settle {
        sensor: i64,
        at_ms: i64,
        cancel: Option<String>,
    },
}

/// Fencing for a node sharing the store with others: a state change (a
/// sensor's latest state, an event, a notification) is written only while
/// the node that decided it still holds its lease. A node cut off from the
/// database stops checking when its lease may have lapsed, and another
/// node takes its sensors; what the cut-off node decided before is stale
/// once it is back, and is dropped rather than written over the new
/// node's decisions. (Its results are kept: they are what it saw, before
/// the hand-over.)
///
/// - Each write carries the epoch it was made in; the node raises the
///   epoch when it finds its lease lapsed, so what was decided before is
///   dropped however late the writer gets to it.
/// - Each commit names the node it writes for, and the backend checks in
///   the commit's transaction that the node's lease holds (a commit that
///   was under way across the lapse).
#[derive(Debug, Default)]
pub struct Fence {
    /// The epoch, read for each write without a lock.
    epoch: AtomicU64,
    /// The epoch and the node (0: not a node), changed together.
    node: Mutex<(u64, i64)>,
    /// State changes dropped by the fence.
    pub dropped: AtomicU64,
    /// Whether this process repacks the journal into windows and writes
    /// the rollups. One node of several does (they share the journal, and
    /// two repacking the same rows would count them twice): the live node
    /// with the lowest id. Default: yes.
    not_repacker: std::sync::atomic::AtomicBool,
}

impl Fence {
    /// This process writes as node `id` from now on.
    pub fn set_node(&self, id: i64) {
        self.node.lock().expect("fence lock").1 = id;
    }

    /// The node's lease lapsed: what it decided until now is stale.
    pub fn lapsed(&self) {
        let mut node = self.node.lock().expect("fence lock");
        node.0 += 1;
        self.epoch.store(node.0, Ordering::SeqCst);
    }

    /// The node this process writes as, if it is one.
    pub fn node(&self) -> Option<i64> {
        self.current().1
    }

    /// Whether this process is the one that repacks (see the field).
    pub fn set_repacker(&self, repacks: bool) {
        self.not_repacker.store(!repacks, Ordering::SeqCst);
    }

    fn repacks(&self) -> bool {
        !self.not_repacker.load(Ordering::SeqCst)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The epoch and the node, as one reading.
    fn current(&self) -> (u64, Option<i64>) {
        let node = self.node.lock().expect("fence lock");
        (node.0, (node.1 != 0).then_some(node.1))
    }
}

/// Counters a user would graph.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Results committed.
    pub results_stored: AtomicU64,
    /// Results lost: the queue was full, or the backlog overflowed.
    pub results_dropped: AtomicU64,
    /// Events committed.
    pub events_stored: AtomicU64,
    /// Failed commits (each retried).
    pub write_errors: AtomicU64,
    /// Results queued or held, not yet committed.
    pub pending: AtomicU64,
    /// State changes and notifications waiting to be committed.
    pub events_pending: AtomicU64,
    /// While commits fail: since when (ms) and the last error.
    pub failing: Mutex<Option<(i64, String)>>,
    /// The longest one commit, repack or merge step took (ms) since the
    /// writer started. Meanwhile results wait in the queue, which holds
    /// [`QUEUE`] of them: longer than that at the check rate, and results
    /// are lost.
    pub longest_step_ms: AtomicU64,
}

impl WriterStats {
    /// While commits fail: since when (ms since the epoch) and why.
    pub fn failing(&self) -> Option<(i64, String)> {
        self.failing.lock().ok().and_then(|f| f.clone())
    }
}

/// The monitor's side of the writer. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: SyncSender<Write>,
    ordered: OrderedQueue,
    /// Counters.
    pub stats: Arc<WriterStats>,
    /// The fence of a node sharing the store (unused otherwise).
    pub fence: Arc<Fence>,
}

/// Starts the writer thread on the store at `path`.
pub fn start(path: &Path) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
    start_with_queue(path, QUEUE)
}

/// [`start`] with a result queue of `capacity` slots.
pub(super) fn start_with_queue(
    path: &Path,
    capacity: usize,
) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
    let store = Store::open(path)?;
    Ok(start_on(
        SqliteTarget {
            conn: store.conn,
            path: store.path,
        },
        capacity,
    ))
}

/// Starts the writer thread on `target`, with a result queue of
/// `capacity` slots.
pub(crate) fn start_on<T: Target>(
    target: T,
    capacity: usize,
) -> (Writer, std::thread::JoinHandle<()>) {
    let (queue, receiver) = sync_channel(capacity);
    let ordered = OrderedQueue::default();
    let stats = Arc::new(WriterStats::default());
    let fence = Arc::new(Fence::default());
    let (thread_stats, thread_ordered, thread_fence) =
        (stats.clone(), ordered.clone(), fence.clone());
    // Built on its own thread: it reads the store (this hour's rollups),
    // which a backend on the async runtime cannot do from an async thread.
    let handle = std::thread::Builder::new()
        .name("portwatch-store".into())
        .spawn(move || {
            yield_to_checks();
            WriterThread::new(target, thread_stats, thread_ordered, thread_fence).run(receiver)
        })
        .expect("start the store writer thread");
    (
        Writer {
            queue,
            ordered,
            stats,
            fence,
        },
        handle,
    )
}

/// The writer's nice value (Linux keeps one per thread): what
/// [`yield_to_checks`] sets.
const WRITER_NICE: i32 = 10;

/// Lowers the calling thread (the writer) to [`WRITER_NICE`], so that
/// when the cores are busy the checks start first: what the writer has
/// not written waits in its queue, while a check that starts late stays
/// late. At 1,000,000 sensors on 2 cores the writer then still took the
/// CPU it needed (0.38 cores against 0.40), and the share of checks that
/// started within 100 ms of their time went from 87 % to 99 %. A
/// thread's priority is the crate's `Crossplatform` value, 0 to 99,
/// which it maps onto the nice values from 19 down to -20: 22 is nice 10.
fn yield_to_checks() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    let nice_10 = ThreadPriorityValue::try_from(22u8).expect("within 0 to 99");
    if let Err(error) = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Crossplatform(nice_10),
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
    ) {
        tracing::debug!(
            ?error,
            nice = WRITER_NICE,
            "the store writer keeps its priority"
        );
    }
}

impl Writer {
    /// Stores an event and, in the same transaction, the notifications it
    /// causes (channel name, payload) in the outbox.
    pub fn event_notifying(
        &self,
        sensor: i64,
        at_ms: i64,
        change: Change,
        notify: Vec<(String, portwatch_core::notify::Payload)>,
    ) -> oneshot::Receiver<()> {
        self.event_holding(sensor, at_ms, change, notify, None)
    }

    fn ordered(&self, op: Ordered) -> oneshot::Receiver<()> {
        let (ack, committed) = oneshot::channel();
        self.stats.events_pending.fetch_add(1, Ordering::Relaxed);
        self.ordered
            .lock()
            .expect("ordered writes lock")
            .push_back(PendingEvent {
                op,
                ack,
                epoch: self.fence.epoch(),
            });
        match self.queue.try_send(Write::Wake) {
            // A full queue needs no wake-up: the writer is busy with it, and
            // takes the ordered writes before its next commit.
            Ok(()) | Err(TrySendError::Full(_)) => {}
            // No writer: drop the acknowledgements, so nobody waits forever.
            Err(TrySendError::Disconnected(_)) => {
                self.ordered.lock().expect("ordered writes lock").clear();
            }
        }
        committed
    }
}

/// The SQLite write side: results go to the writer thread's queue, ordered
/// writes (events, notifications, settlements) to its FIFO; each ordered
/// write is acknowledged once its transaction commits.
impl Writes for Writer {
    /// Queues a result without waiting. A full queue drops it and counts it.
    fn result(&self, result: StoredResult, last: LastCheck) {
        match self
            .queue
            .try_send(Write::Result(result, last, self.fence.epoch()))
        {
            Ok(()) => {
                self.stats.pending.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.results_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn event(&self, sensor: i64, at_ms: i64, change: Change) -> oneshot::Receiver<()> {
        self.event_notifying(sensor, at_ms, change, Vec::new())
    }

    /// A held notification is in the outbox all the same: if the monitor
    /// dies, it is sent when the hold ends.
    fn event_holding(
        &self,
        sensor: i64,
        at_ms: i64,
        change: Change,
        notify: Vec<(String, portwatch_core::notify::Payload)>,
        hold_until_ms: Option<i64>,
    ) -> oneshot::Receiver<()> {
        self.ordered(Ordered::Event {
            sensor,
            at_ms,
            change,
            notify,
            hold_until_ms,
        })
    }

    fn notify(
        &self,
        sensor: i64,
        at_ms: i64,
        notify: Vec<(String, portwatch_core::notify::Payload)>,
    ) -> oneshot::Receiver<()> {
        self.ordered(Ordered::Notify {
            sensor,
            at_ms,
            notify,
        })
    }

    fn settle(&self, sensor: i64, at_ms: i64, cancel: Option<String>) -> oneshot::Receiver<()> {
        self.ordered(Ordered::Settle {
            sensor,
            at_ms,
            cancel,
        })
    }

    async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        let queue = self.queue.clone();
        // `send` may wait for room; keep that off the async threads.
        let _ = tokio::task::spawn_blocking(move || queue.send(Write::Flush(ack))).await;
        let _ = done.await;
    }
}

pub(crate) struct PendingEvent {
    pub(crate) op: Ordered,
    ack: oneshot::Sender<()>,
    /// The [`Fence`] epoch it was decided in.
    epoch: u64,
}

/// An error of a backend's write.
pub(crate) type WriteError = Box<dyn std::error::Error + Send + Sync>;

/// One commit: a journal batch of results (packed), the latest result of
/// each sensor in it, and the ordered writes, in one transaction.
pub(crate) struct Batch<'a> {
    /// The results in journal parts (none when there are no results).
    pub(crate) journal: Vec<pack::JournalPart>,
    /// Each sensor's latest result and state, and all its results in the
    /// batch as ticks (see [`pack::put_tick`]).
    pub(crate) last: &'a HashMap<i64, (StoredResult, LastCheck, Vec<u8>)>,
    pub(crate) ordered: &'a [PendingEvent],
    /// The node the batch is written for (see [`Fence`]): its latest
    /// states and ordered writes are written only while that node's lease
    /// holds. `None`: not a node.
    pub(crate) node: Option<i64>,
}

/// One repack, written in one transaction: the merged windows, the
/// journal rows they replace, the rollups of closed hours, and, when
/// hours closed, the retention cut-offs (`results_before`,
/// `rollups_before`).
pub(crate) struct Repack {
    pub(crate) journal_ids: Vec<i64>,
    pub(crate) windows: Vec<PackedWindow>,
    pub(crate) rollups: Vec<((i64, i64), crate::Rollup)>,
    pub(crate) prune: Option<(i64, i64)>,
    /// The node repacking (see [`Fence`]): written only while its lease
    /// holds. `None`: not a node.
    pub(crate) node: Option<i64>,
}

impl Repack {
    /// The days (sensor, midnight UTC in ms) whose daily rollups the
    /// repack's hourly ones change, each once.
    pub(crate) fn days(&self) -> std::collections::BTreeSet<(i64, i64)> {
        self.rollups
            .iter()
            .map(|((sensor, hour), _)| (*sensor, hour - hour.rem_euclid(DAY_MS)))
            .collect()
    }
}

/// A day in milliseconds.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The rows of one step of merging an hour ([`WriterThread::compact_step`]):
/// the rows of `sensors` that start in `from_ms..to_ms` are replaced by
/// `rows`, in one transaction.
pub(crate) struct Compact {
    pub(crate) sensors: Vec<i64>,
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    pub(crate) rows: Vec<PackedWindow>,
    /// The node merging (see [`Fence`]): written only while its lease
    /// holds. `None`: not a node.
    pub(crate) node: Option<i64>,
}

/// A journal row: `(id, first_ms, last_ms, packed)`.
pub(crate) type JournalRow = (i64, i64, i64, Vec<u8>);

/// A stored row of one sensor's results, to write.
pub(crate) struct PackedWindow {
    pub(crate) sensor: i64,
    pub(crate) row: pack::Row,
}

/// What the writer needs of a database: the batching, retries, backlog
/// and rollups are the writer's; the SQL is the backend's.
pub(crate) trait Target: Send + 'static {
    /// For log lines: the file, or the URL with its password masked.
    fn name(&self) -> String;
    /// Commits a batch in one transaction, calling `between` after each
    /// slice of [`COMMIT_SLICE`] rows and before it commits (the first
    /// interval's commits take seconds at a million sensors; the writer
    /// takes the results queued meanwhile).
    fn commit(&mut self, batch: &Batch<'_>, between: &mut dyn FnMut()) -> Result<(), WriteError>;
    /// Journal rows that end before `before_ms`, oldest first:
    /// `(id, first_ms, last_ms, packed)`.
    fn journal_before(&mut self, before_ms: i64) -> Result<Vec<JournalRow>, WriteError>;
    /// The stored windows among `keys` (sensor, start_ms).
    fn windows(&mut self, keys: &[(i64, i64)]) -> Result<HashMap<(i64, i64), Vec<u8>>, WriteError>;
    /// Writes a repack in one transaction, calling `between` after each
    /// slice of [`REPACK_WRITE`] windows (a million sensors' repack takes
    /// seconds; the writer takes the results queued meanwhile).
    fn store_repack(
        &mut self,
        repack: &Repack,
        between: &mut dyn FnMut(),
    ) -> Result<(), WriteError>;
    /// Windows that start at or after `from_ms`: `(sensor, start_ms, packed)`.
    fn windows_since(&mut self, from_ms: i64) -> Result<Vec<(i64, i64, Vec<u8>)>, WriteError>;
    /// Up to `limit` sensor ids greater than `after`, in order.
    fn sensors_after(&mut self, after: i64, limit: usize) -> Result<Vec<i64>, WriteError>;
    /// The stored rows of `sensors` (in order) that start in
    /// `from_ms..to_ms`, by sensor and start.
    fn rows_between(
        &mut self,
        sensors: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, pack::Row)>, WriteError>;
    /// Writes one step of merging an hour in one transaction.
    fn store_compact(&mut self, compact: &Compact) -> Result<(), WriteError>;
}

struct WriterThread<T: Target> {
    target: T,
    stats: Arc<WriterStats>,
    ordered: OrderedQueue,
    fence: Arc<Fence>,
    /// The fence epoch of what `last` and `events` hold.
    epoch: u64,
    /// Whether this writer repacked last time it could (its hour
    /// accumulators are current only then).
    repacked: bool,
    /// Results not committed yet, oldest first.
    results: VecDeque<StoredResult>,
    last: HashMap<i64, (StoredResult, LastCheck, Vec<u8>)>,
    events: Vec<PendingEvent>,
    acks: Vec<oneshot::Sender<()>>,
    /// Rollup accumulators by (sensor, hour). Boxed: the table has a slot
    /// per sensor (two around the hour), up to half of them spare.
    hours: HashMap<(i64, i64), Box<Accumulator>>,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// [`MAX_BACKLOG`], smaller in tests.
    max_backlog: usize,
    last_flush: Instant,
    last_repack: Instant,
    /// Closed hours whose windows are still to be merged into rows of up
    /// to an hour ([`Self::compact_step`]), and the last sensor done in
    /// the first of them.
    compacting: std::collections::BTreeSet<i64>,
    compacted_to: i64,
    last_compact: Instant,
    /// Results before this time are repacked: an hour is merged only once
    /// it is all repacked.
    repacked_until: i64,
}

/// However the thread ends (its loop returns, or it panics), the ordered
/// writes still waiting are dropped with their acknowledgements, so that
/// nobody waits for a commit that will never come.
impl<T: Target> Drop for WriterThread<T> {
    fn drop(&mut self) {
        if let Ok(mut ordered) = self.ordered.lock() {
            ordered.clear();
        }
    }
}

impl<T: Target> WriterThread<T> {
    fn new(
        target: T,
        stats: Arc<WriterStats>,
        ordered: OrderedQueue,
        fence: Arc<Fence>,
    ) -> WriterThread<T> {
        let mut thread = WriterThread {
            target,
            stats,
            ordered,
            epoch: fence.epoch(),
            repacked: fence.repacks(),
            fence,
            results: VecDeque::new(),
            last: HashMap::new(),
            events: Vec::new(),
            acks: Vec::new(),
            hours: HashMap::new(),
            retry_at: None,
            backoff: Duration::from_millis(250),
            max_backlog: MAX_BACKLOG,
            last_flush: Instant::now(),
            last_repack: Instant::now(),
            // The hour before the start may have been left half merged.
            compacting: [hour_of(jiff::Timestamp::now().as_millisecond()) - HOUR_MS].into(),
            compacted_to: 0,
            last_compact: Instant::now(),
            repacked_until: i64::MIN,
        };
        if let Err(error) = thread.rebuild_open_hours() {
            tracing::warn!(%error, store = %thread.target.name(), "cannot rebuild this hour's rollups; they will miss results before the restart");
        }
        thread
    }

    fn run(mut self, receiver: Receiver<Write>) {
        loop {
            let wait = FLUSH_EVERY
                .saturating_sub(self.last_flush.elapsed())
                .max(Duration::from_millis(1));
            match receiver.recv_timeout(wait) {
                Ok(write) => self.take(write),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.take_ordered();
                    self.flush_until_done();
                    self.repack(i64::MAX, None);
                    return;
                }
            }
            self.take_queued(&receiver);
            let now = Instant::now();
            let next = next_steps(&Timing {
                events: self.events.len(),
                flushes: self.acks.len(),
                since_flush: now.duration_since(self.last_flush),
                since_repack: now.duration_since(self.last_repack),
                since_compact: now.duration_since(self.last_compact),
                retry_at: self.retry_at,
                now,
            });
            if next.flush {
                let started = Instant::now();
                let writes = self.results.len() + self.events.len();
                self.flush_holding(Some(&receiver));
                self.stepped(started, "commit", writes);
            }
            if next.compact {
                let started = Instant::now();
                let read = self.compact_step();
                self.stepped(started, "merge", read);
                self.last_compact = Instant::now();
            }
            if next.repack {
                let started = Instant::now();
                let now_ms = jiff::Timestamp::now().as_millisecond();
                let written = self.repack(window_start(now_ms), Some(&receiver));
                self.stepped(started, "repack", written);
                self.last_repack = Instant::now();
            }
        }
    }

    /// Counts a step that began at `started` towards
    /// [`WriterStats::longest_step_ms`], and logs it when it took longer
    /// than [`LONG_STEP`]: `size` is what it wrote (results and state
    /// changes of a commit, windows of a repack, sensors of a merge).
    fn stepped(&self, started: Instant, step: &str, size: usize) {
        let took = started.elapsed();
        let took_ms = took.as_millis() as u64;
        self.stats
            .longest_step_ms
            .fetch_max(took_ms, Ordering::Relaxed);
        if took >= LONG_STEP {
            tracing::info!(store = %self.target.name(), step, size, took_ms, "the store writer took long over one step; results wait in its queue meanwhile");
        }
    }

    /// Takes whatever is already queued, up to [`MAX_BATCH`] results, then
    /// the ordered writes: an ordered write made before anything just taken
    /// from the queue is in this batch too.
    fn take_queued(&mut self, receiver: &Receiver<Write>) {
        while self.results.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(write) => self.take(write),
                Err(_) => break,
            }
        }
        self.take_ordered();
    }

    fn take(&mut self, write: Write) {
        match write {
            Write::Result(result, last, epoch) => {
                self.results.push_back(result);
                if epoch == self.fence.epoch() {
                    use std::collections::hash_map::Entry;
                    match self.last.entry(result.sensor) {
                        Entry::Vacant(entry) => {
                            let mut ticks = Vec::with_capacity(pack::TICK_BYTES);
                            pack::put_tick(&mut ticks, &result);
                            entry.insert((result, last, ticks));
                        }
                        Entry::Occupied(mut entry) => {
                            let entry = entry.get_mut();
                            pack::put_tick(&mut entry.2, &result);
                            (entry.0, entry.1) = (result, last);
                        }
                    }
                } else {
                    self.fence.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // One in, one out: the oldest is dropped, in constant time.
                if self.results.len() > self.max_backlog {
                    self.results.pop_front();
                    self.stats.results_dropped.fetch_add(1, Ordering::Relaxed);
                    self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Write::Wake => {}
            Write::Flush(ack) => self.acks.push(ack),
        }
    }

    /// After a failed commit: the next try waits for the backoff, which
    /// doubles each time up to [`MAX_BACKOFF`] (a commit that succeeds
    /// resets it).
    fn back_off(&mut self, now: Instant) {
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Moves the waiting ordered writes into the next commit, in order.
    fn take_ordered(&mut self) {
        let mut ordered = self.ordered.lock().expect("ordered writes lock");
        self.events.extend(ordered.drain(..));
    }

    /// Drops the state changes decided before the fence's epoch moved
    /// (their acknowledgements with them: nobody is told they are stored).
    /// Returns the node to write for.
    fn fenced(&mut self) -> Option<i64> {
        let (epoch, node) = self.fence.current();
        if epoch != self.epoch {
            self.epoch = epoch;
            let before = self.last.len() + self.events.len();
            self.last.clear();
            self.events.retain(|e| e.epoch == epoch);
            let dropped = (before - self.events.len()) as u64;
            self.fence.dropped.fetch_add(dropped, Ordering::Relaxed);
            self.stats
                .events_pending
                .store(self.events.len() as u64, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(store = %self.target.name(), dropped, "dropped state changes decided before this node's lease lapsed: the node that took its sensors decides them now");
            }
        }
        node
    }

    fn flush_until_done(&mut self) {
        for _ in 0..20 {
            if self.flush() {
                return;
            }
            std::thread::sleep(self.backoff);
        }
        tracing::error!(store = %self.target.name(), lost = self.results.len(), "giving up on writing the last results at shutdown");
    }

    /// Commits the pending events, results and latest states. Returns
    /// whether it succeeded.
    fn flush(&mut self) -> bool {
        self.flush_holding(None)
    }

    /// [`WriterThread::flush`], taking the results queued on `incoming`
    /// while it commits into the backlog once the commit is counted, so
    /// that the queue does not fill during a long commit.
    fn flush_holding(&mut self, incoming: Option<&Receiver<Write>>) -> bool {
        self.last_flush = Instant::now();
        let mut held = Vec::new();
        let committed =
            self.commit(&mut || held.extend(incoming.into_iter().flat_map(Receiver::try_iter)));
        let flushed = self.counted(committed);
        for write in held {
            self.take(write);
        }
        flushed
    }

    /// Counts a commit's outcome: on success what it wrote is stored and
    /// acknowledged; on failure it is kept and retried later.
    fn counted(&mut self, committed: Result<(), WriteError>) -> bool {
        match committed {
            Ok(()) => {
                self.stats
                    .results_stored
                    .fetch_add(self.results.len() as u64, Ordering::Relaxed);
                self.stats
                    .pending
                    .fetch_sub(self.results.len() as u64, Ordering::Relaxed);
                self.stats
                    .events_stored
                    .fetch_add(self.events.len() as u64, Ordering::Relaxed);
                self.stats
                    .events_pending
                    .fetch_sub(self.events.len() as u64, Ordering::Relaxed);
                if let Ok(mut failing) = self.stats.failing.lock()
                    && failing.take().is_some()
                {
                    tracing::info!(store = %self.target.name(), "the store takes writes again; what waited is written");
                }
                self.results.clear();
                self.last.clear();
                for event in self.events.drain(..) {
                    let _ = event.ack.send(());
                }
                for ack in self.acks.drain(..) {
                    let _ = ack.send(());
                }
                self.retry_at = None;
                self.backoff = Duration::from_millis(250);
                true
            }
            Err(error) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut failing) = self.stats.failing.lock() {
                    let since = failing
                        .as_ref()
                        .map_or_else(|| jiff::Timestamp::now().as_millisecond(), |f| f.0);
                    *failing = Some((since, error.to_string()));
                }
                tracing::error!(%error, store = %self.target.name(), pending = self.results.len(), retry_in = ?self.backoff, "cannot write to the store; monitoring goes on and the write is retried");
                self.back_off(Instant::now());
                false
            }
        }
    }

    fn commit(&mut self, between: &mut dyn FnMut()) -> Result<(), WriteError> {
        let node = self.fenced();
        let mut results: Vec<StoredResult> = self.results.iter().copied().collect();
        let journal = pack::pack_journal(&mut results, pack::PART_RESULTS);
        self.target.commit(
            &Batch {
                journal,
                last: &self.last,
                ordered: &self.events,
                node,
            },
            between,
        )
    }

    /// Moves journal batches that end before `before_ms` into per-sensor
    /// windows, feeds the rollup accumulators, and writes the rollups of
    /// hours that are over. Results that come meanwhile are taken off
    /// `incoming` between its slices, so that the queue never fills
    /// during a long repack, and into the backlog once it is done.
    /// Returns how many windows it wrote.
    fn repack(&mut self, before_ms: i64, incoming: Option<&Receiver<Write>>) -> usize {
        if !self.fence.repacks() {
            // Another node repacks; its accumulators count these results.
            self.hours.clear();
            self.repacked = false;
            return 0;
        }
        if !self.repacked {
            // Taking the repacking over: this hour's rollups start from
            // what the previous repacker stored.
            self.hours.clear();
            if let Err(error) = self.rebuild_open_hours() {
                tracing::warn!(%error, store = %self.target.name(), "cannot rebuild this hour's rollups; they will miss results repacked before");
            }
            self.repacked = true;
        }
        let mut held = Vec::new();
        let mut hold = || held.extend(incoming.into_iter().flat_map(Receiver::try_iter));
        let repacked = self.try_repack(before_ms, &mut hold);
        for write in held {
            self.take(write);
        }
        repacked.unwrap_or_else(|error| {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, store = %self.target.name(), "cannot repack results; retrying later");
            0
        })
    }

    fn try_repack(&mut self, before_ms: i64, hold: &mut dyn FnMut()) -> Result<usize, WriteError> {
        // One flat list sorted by window rather than a list per window: with
        // 1,000,000 sensors a repack holds about 2,000,000 results, and a
        // map of a million small lists would cost ten times their size.
        let mut results = Vec::new();
        let mut ids = Vec::new();
        let mut latest = i64::MIN;
        for (id, first_ms, last_ms, data) in self.target.journal_before(before_ms)? {
            ids.push(id);
            latest = latest.max(last_ms);
            results.extend(pack::unpack_batch(first_ms, &data)?);
        }
        hold();
        if ids.is_empty() {
            self.repacked_until = self.repacked_until.max(before_ms);
            return Ok(0);
        }
        let window_of = |r: &StoredResult| (r.sensor, window_start(r.at_ms));
        results.sort_unstable_by_key(|r| (window_of(r), r.at_ms));
        let runs: Vec<&[StoredResult]> = results
            .chunk_by(|a, b| window_of(a) == window_of(b))
            .collect();
        let mut windows = Vec::with_capacity(runs.len());
        let mut merged = Vec::new();
        // The stored windows are read a slice of windows at a time.
        for slice in runs.chunks(REPACK_READ) {
            let keys: Vec<(i64, i64)> = slice.iter().map(|run| window_of(&run[0])).collect();
            // An error here must not read as "no window yet": that would
            // replace the stored window with only the new results.
            let existing = self.target.windows(&keys)?;
            hold();
            for (run, (sensor, start)) in slice.iter().zip(keys) {
                merged.clear();
                merged.extend_from_slice(run);
                if let Some(existing) = existing.get(&(sensor, start)) {
                    merged.extend(pack::unpack_window(sensor, start, existing)?);
                    merged.sort_unstable_by_key(|r| r.at_ms);
                }
                windows.push(PackedWindow {
                    sensor,
                    row: pack::Row {
                        start_ms: start,
                        end_ms: merged.last().map_or(start, |r| r.at_ms),
                        count: merged.len() as i64,
                        data: pack::pack_window(start, &merged),
                    },
                });
            }
        }
        drop(runs);
        // Hours that ended before everything repacked so far are complete.
        let closed_before = hour_of(latest.min(before_ms));
        let hour_key = |r: &StoredResult| (r.sensor, hour_of(r.at_ms));
        // The accumulators take these results only once they are stored:
        // a repack that fails is read again from the journal, and would
        // count them twice. The closed hours' rollups count them on copies.
        let mut closing: HashMap<(i64, i64), Accumulator> = HashMap::new();
        for result in results.iter().filter(|r| hour_of(r.at_ms) < closed_before) {
            closing
                .entry(hour_key(result))
                .or_insert_with(|| {
                    self.hours
                        .get(&hour_key(result))
                        .map_or_else(Accumulator::default, |acc| (**acc).clone())
                })
                .add(result);
        }
        let rollups: Vec<((i64, i64), crate::Rollup)> = self
            .hours
            .iter()
            .filter(|(key, _)| key.1 < closed_before && !closing.contains_key(key))
            .map(|(key, acc)| (*key, acc.finish()))
            .chain(closing.iter().map(|(key, acc)| (*key, acc.finish())))
            .collect();
        drop(closing);
        let now = jiff::Timestamp::now().as_millisecond();
        let prune = (!rollups.is_empty()).then(|| {
            (
                now - RETENTION.as_millis() as i64,
                now - ROLLUP_RETENTION.as_millis() as i64,
            )
        });
        let written = windows.len();
        self.target.store_repack(
            &Repack {
                journal_ids: ids,
                windows,
                rollups: rollups.clone(),
                prune,
                node: self.fence.current().1,
            },
            hold,
        )?;
        for result in results.iter().filter(|r| hour_of(r.at_ms) >= closed_before) {
            self.hours.entry(hour_key(result)).or_default().add(result);
        }
        for (key, _) in rollups {
            self.hours.remove(&key);
            self.compacting.insert(key.1);
        }
        self.repacked_until = self.repacked_until.max(before_ms);
        Ok(written)
    }

    /// Merges the 2-minute windows of a closed hour into rows of up to an
    /// hour ([`pack::extend_rows`]), for [`COMPACT_SENSORS`] sensors at a
    /// time, one step a second after a commit, so that the writer is never
    /// held for long. A sensor checked every minute then takes about 8 bytes a
    /// result instead of 21: a window holds two results, so its key and
    /// header weigh most. Returns how many sensors it read.
    fn compact_step(&mut self) -> usize {
        if !self.fence.repacks() {
            return 0;
        }
        let Some(&hour) = self
            .compacting
            .first()
            .filter(|hour| **hour + HOUR_MS + WINDOW_MS <= self.repacked_until)
        else {
            return 0;
        };
        match self.try_compact(hour, self.compacted_to) {
            Ok(Some((last, read))) => {
                self.compacted_to = last;
                read
            }
            Ok(None) => {
                self.compacting.remove(&hour);
                self.compacted_to = 0;
                0
            }
            Err(error) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, store = %self.target.name(), "cannot merge an hour's results; retrying later");
                0
            }
        }
    }

    /// Merges the rows of the sensors after `after` that start in `hour`;
    /// returns the last sensor done and how many it read, or `None` when
    /// none is left.
    fn try_compact(&mut self, hour: i64, after: i64) -> Result<Option<(i64, usize)>, WriteError> {
        let sensors = self.target.sensors_after(after, COMPACT_SENSORS)?;
        let Some(&last) = sensors.last() else {
            return Ok(None);
        };
        let (from_ms, to_ms) = (hour, hour + HOUR_MS);
        let stored = self.target.rows_between(&sensors, from_ms, to_ms)?;
        let mut merged = Vec::new();
        let mut rows = Vec::new();
        for run in stored.chunk_by(|a, b| a.0 == b.0) {
            let sensor = run[0].0;
            if run.len() < 2 {
                continue;
            }
            let mut results = Vec::new();
            for (_, row) in run {
                results.extend(pack::unpack_window(sensor, row.start_ms, &row.data)?);
            }
            results.sort_by_key(|r| r.at_ms);
            let fewer = pack::extend_rows(sensor, None, &results)?;
            // Already merged (a restart goes over the hour again).
            if fewer.len() < run.len() {
                merged.push(sensor);
                rows.extend(fewer.into_iter().map(|row| PackedWindow { sensor, row }));
            }
        }
        if !merged.is_empty() {
            self.target.store_compact(&Compact {
                sensors: merged,
                from_ms,
                to_ms,
                rows,
                node: self.fence.current().1,
            })?;
        }
        Ok(Some((last, sensors.len())))
    }

    /// After a restart, the current hour's accumulators start again from the
    /// results already repacked in that hour.
    fn rebuild_open_hours(&mut self) -> Result<(), WriteError> {
        let hour = hour_of(jiff::Timestamp::now().as_millisecond()) - HOUR_MS;
        // A row that starts up to ROW_MS before the hour may hold some of it.
        let rows = self.target.windows_since(hour - pack::ROW_MS + 1)?;
        for (sensor, start, data) in rows {
            let results = pack::unpack_window(sensor, start, &data)?;
            for result in results.into_iter().filter(|r| r.at_ms >= hour) {
                self.hours
                    .entry((result.sensor, hour_of(result.at_ms)))
                    .or_default()
                    .add(&result);
            }
        }
        Ok(())
    }
}

/// What the writer loop knows when it decides what to do next.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Events waiting: they are committed at once.
    events: usize,
    /// Flush requests waiting: they are answered at once.
    flushes: usize,
    /// Time since the last commit (or failed attempt).
    since_flush: Duration,
    /// Time since the last repack.
    since_repack: Duration,
    /// Time since the last step of merging closed hours.
    since_compact: Duration,
    /// While the store refuses writes, when to try again.
    retry_at: Option<Instant>,
    /// Now.
    now: Instant,
}

/// What the writer loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NextSteps {
    /// Commit what is pending.
    flush: bool,
    /// Repack closed windows.
    repack: bool,
    /// Merge a slice of a closed hour's windows.
    compact: bool,
}

/// Commit when something is urgent or a second has passed, unless a failed
/// commit's backoff still runs; repack once a minute; merge a slice of a
/// closed hour once a second, however often commits come (every sensor's
/// first check is a state change, committed at once); never repack or
/// merge while the store refuses writes.
fn next_steps(timing: &Timing) -> NextSteps {
    let retry_ok = timing.retry_at.is_none_or(|at| timing.now >= at);
    let urgent = timing.events > 0 || timing.flushes > 0;
    NextSteps {
        flush: (urgent || timing.since_flush >= FLUSH_EVERY) && retry_ok,
        repack: timing.since_repack >= REPACK_EVERY && timing.retry_at.is_none(),
        compact: timing.since_compact >= COMPACT_EVERY && timing.retry_at.is_none(),
    }
}

/// The start of the window that holds `at_ms`: windows before it are
/// closed.
fn window_start(at_ms: i64) -> i64 {
    at_ms.div_euclid(WINDOW_MS) * WINDOW_MS
}

/// Writes rows of results, replacing those with the same keys.
fn write_rows(tx: &rusqlite::Transaction<'_>, rows: &[PackedWindow]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO results (sensor_id, start_ms, end_ms, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for PackedWindow { sensor, row } in rows {
        insert.execute(params![
            sensor,
            row.start_ms,
            row.end_ms,
            row.count,
            row.data
        ])?;
    }
    Ok(())
}

/// Adds notifications to the outbox, due at `at_ms` or held until
/// `hold_until_ms`.
fn insert_outbox(
    tx: &rusqlite::Transaction<'_>,
    event_id: Option<i64>,
    sensor: i64,
    at_ms: i64,
    notify: &[(String, portwatch_core::notify::Payload)],
    hold_until_ms: Option<i64>,
) -> Result<(), rusqlite::Error> {
    if notify.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO outbox (event_id, sensor_id, channel, payload, created_ms, next_ms, held) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (channel, payload) in notify {
        insert.execute(params![
            event_id,
            sensor,
            channel,
            serde_json::to_string(payload).expect("a payload serialises"),
            at_ms,
            hold_until_ms.unwrap_or(at_ms),
            hold_until_ms.is_some()
        ])?;
    }
    Ok(())
}

/// The SQLite side of the writer: its own connection to the file.
pub(crate) struct SqliteTarget {
    conn: Connection,
    path: PathBuf,
}

impl Target for SqliteTarget {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn commit(&mut self, batch: &Batch<'_>, between: &mut dyn FnMut()) -> Result<(), WriteError> {
        let tx = self.conn.transaction()?;
        if !batch.journal.is_empty() {
            let mut insert = tx.prepare_cached(
                "INSERT INTO journal (first_ms, last_ms, count, first_sensor, last_sensor, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for part in &batch.journal {
                insert.execute(params![
                    part.first_ms,
                    part.last_ms,
                    part.count,
                    part.first_sensor,
                    part.last_sensor,
                    part.data
                ])?;
            }
            drop(insert);
            let mut upsert = tx.prepare_cached(
                "INSERT INTO sensor_status (sensor_id, state, since_ms, last_check_ms, last_status, last_reason, last_rtt_us, last_message, last_details, ticks)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, substr(?10, ?11))
                 ON CONFLICT (sensor_id) DO UPDATE SET state = ?2, since_ms = ?3, last_check_ms = ?4, last_status = ?5,
                     last_reason = ?6, last_rtt_us = ?7, last_message = ?8, last_details = ?9,
                     ticks = substr(unhex(hex(coalesce(ticks, x'')) || hex(?10)), ?11)",
            )?;
            // The last TICKS_KEPT ticks: substr from the end, in bytes (`||`
            // would make text of the blobs; hex and unhex keep them bytes).
            let keep = -((pack::TICKS_KEPT * pack::TICK_BYTES) as i64);
            for (index, (result, last, ticks)) in batch.last.values().enumerate() {
                if index % COMMIT_SLICE == COMMIT_SLICE - 1 {
                    between();
                }
                upsert.execute(params![
                    result.sensor,
                    last.state.as_str(),
                    last.since_ms,
                    result.at_ms,
                    result.status.as_str(),
                    result.reason.as_str(),
                    result.rtt_us,
                    last.message,
                    last.details
                        .as_ref()
                        .map(|d| serde_json::to_string(d).expect("details serialise")),
                    ticks,
                    keep
                ])?;
            }
        }
        // Events last: a result queued before a state change carries the
        // old state, and must not overwrite the new one in sensor_status.
        for (index, event) in batch.ordered.iter().enumerate() {
            if index % COMMIT_SLICE == COMMIT_SLICE - 1 {
                between();
            }
            match &event.op {
                Ordered::Event {
                    sensor,
                    at_ms,
                    change,
                    notify,
                    hold_until_ms,
                } => {
                    // Cached: the first interval after a start is a state
                    // change for every sensor, a million statements.
                    tx.prepare_cached(
                        "INSERT INTO events (sensor_id, at_ms, from_state, to_state, reason, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![sensor, at_ms, change.from.as_str(), change.to.as_str(), change.reason.map(|r| r.as_str()), change.message])?;
                    // The notifications commit with their event, or not at all.
                    let event_id = tx.last_insert_rowid();
                    insert_outbox(&tx, Some(event_id), *sensor, *at_ms, notify, *hold_until_ms)?;
                    tx.prepare_cached(
                        "INSERT INTO sensor_status (sensor_id, state, since_ms) VALUES (?1, ?2, ?3)
                         ON CONFLICT (sensor_id) DO UPDATE SET state = ?2, since_ms = ?3",
                    )?
                    .execute(params![sensor, change.to.as_str(), at_ms])?;
                }
                Ordered::Notify {
                    sensor,
                    at_ms,
                    notify,
                } => insert_outbox(&tx, None, *sensor, *at_ms, notify, None)?,
                Ordered::Settle {
                    sensor,
                    at_ms,
                    cancel: None,
                } => {
                    tx.execute(
                        "UPDATE outbox SET next_ms = ?2, held = 0 WHERE sensor_id = ?1 AND held = 1 AND delivered_ms IS NULL AND cancelled_ms IS NULL",
                        params![sensor, at_ms],
                    )?;
                }
                Ordered::Settle {
                    sensor,
                    at_ms,
                    cancel: Some(why),
                } => {
                    tx.execute(
                        "UPDATE outbox SET cancelled_ms = ?2, held = 0, last_error = ?3 WHERE sensor_id = ?1 AND held = 1 AND delivered_ms IS NULL AND cancelled_ms IS NULL",
                        params![sensor, at_ms, why],
                    )?;
                }
            }
        }
        between();
        tx.commit()?;
        Ok(())
    }

    fn journal_before(&mut self, before_ms: i64) -> Result<Vec<JournalRow>, WriteError> {
        let mut statement = self.conn.prepare(
            "SELECT id, first_ms, last_ms, data FROM journal WHERE last_ms < ?1 ORDER BY id",
        )?;
        let rows = statement
            .query_map([before_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn windows(&mut self, keys: &[(i64, i64)]) -> Result<HashMap<(i64, i64), Vec<u8>>, WriteError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT data FROM results WHERE sensor_id = ?1 AND start_ms = ?2")?;
        let mut found = HashMap::new();
        for &(sensor, start) in keys {
            if let Some(data) = statement
                .query_row(params![sensor, start], |r| r.get::<_, Vec<u8>>(0))
                .optional()?
            {
                found.insert((sensor, start), data);
            }
        }
        Ok(found)
    }

    fn store_repack(
        &mut self,
        repack: &Repack,
        between: &mut dyn FnMut(),
    ) -> Result<(), WriteError> {
        let tx = self.conn.transaction()?;
        {
            for slice in repack.windows.chunks(REPACK_WRITE) {
                write_rows(&tx, slice)?;
                between();
            }
            let mut rollup = tx.prepare_cached(
                "INSERT OR REPLACE INTO rollups (sensor_id, hour_ms, count, ups, min_us, avg_us, max_us, p95_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for ((sensor, hour), r) in &repack.rollups {
                rollup.execute(params![
                    sensor, hour, r.count, r.ups, r.min_us, r.avg_us, r.max_us, r.p95_us
                ])?;
            }
            let mut daily = tx.prepare_cached(
                "INSERT OR REPLACE INTO daily_rollups (sensor_id, day_ms, count, ups)
                 SELECT ?1, ?2, coalesce(sum(count), 0), coalesce(sum(ups), 0) FROM rollups
                 WHERE sensor_id = ?1 AND hour_ms >= ?2 AND hour_ms < ?2 + 86400000",
            )?;
            for (sensor, day) in repack.days() {
                daily.execute(params![sensor, day])?;
            }
        }
        let list = repack
            .journal_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        tx.execute(&format!("DELETE FROM journal WHERE id IN ({list})"), [])?;
        if let Some((results_before, rollups_before)) = repack.prune {
            tx.execute("DELETE FROM results WHERE end_ms < ?1", [results_before])?;
            tx.execute("DELETE FROM rollups WHERE hour_ms < ?1", [rollups_before])?;
            tx.execute(
                "DELETE FROM daily_rollups WHERE day_ms < ?1",
                [rollups_before],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn windows_since(&mut self, from_ms: i64) -> Result<Vec<(i64, i64, Vec<u8>)>, WriteError> {
        let mut statement = self
            .conn
            .prepare("SELECT sensor_id, start_ms, data FROM results WHERE start_ms >= ?1")?;
        let rows = statement
            .query_map([from_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn sensors_after(&mut self, after: i64, limit: usize) -> Result<Vec<i64>, WriteError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT id FROM sensors WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        let ids = statement
            .query_map(params![after, limit as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    fn rows_between(
        &mut self,
        sensors: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, pack::Row)>, WriteError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT start_ms, end_ms, count, data FROM results
             WHERE sensor_id = ?1 AND start_ms >= ?2 AND start_ms < ?3 ORDER BY start_ms",
        )?;
        let mut found = Vec::new();
        for &sensor in sensors {
            let rows = statement.query_map(params![sensor, from_ms, to_ms], |r| {
                Ok((
                    sensor,
                    pack::Row {
                        start_ms: r.get(0)?,
                        end_ms: r.get(1)?,
                        count: r.get(2)?,
                        data: r.get(3)?,
                    },
                ))
            })?;
            for row in rows {
                found.push(row?);
            }
        }
        Ok(found)
    }

    fn store_compact(&mut self, compact: &Compact) -> Result<(), WriteError> {
        let tx = self.conn.transaction()?;
        {
            let mut delete = tx.prepare_cached(
                "DELETE FROM results WHERE sensor_id = ?1 AND start_ms >= ?2 AND start_ms < ?3",
            )?;
            for sensor in &compact.sensors {
                delete.execute(params![sensor, compact.from_ms, compact.to_ms])?;
            }
        }
        write_rows(&tx, &compact.rows)?;
        tx.commit()?;
        Ok(())
    }
}

/// Checks the merging of closed hours on any target whose store holds
/// the sensors `ids` (at least three, in order): the SQLite writer's
/// tests and the PostgreSQL writer's run it.
#[cfg(test)]
pub(crate) fn check_compaction<T: Target>(target: T, ids: &[i64]) {
    use portwatch_probe::{Reason, Status};
    let mut thread = WriterThread::new(
        target,
        Arc::default(),
        OrderedQueue::default(),
        Arc::default(),
    );
    let hour = hour_of(jiff::Timestamp::now().as_millisecond()) - 3 * HOUR_MS;
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    // An hour of results every minute (30 windows of two), from `from`.
    let hour_of_results = |sensor: i64, from: i64, n: i64| -> Vec<StoredResult> {
        (0..n)
            .map(|i| StoredResult {
                sensor,
                at_ms: from + i * 60_000 + 7,
                status: if i % 7 == 3 { Status::Down } else { Status::Up },
                reason: if i % 7 == 3 {
                    Reason::Refused
                } else {
                    Reason::Connected
                },
                rtt_us: (i % 7 != 3).then_some(300 + i as u32),
            })
            .collect()
    };
    let windows = |results: &[StoredResult]| -> Vec<PackedWindow> {
        results
            .chunk_by(|x, y| window_start(x.at_ms) == window_start(y.at_ms))
            .map(|run| {
                let start = window_start(run[0].at_ms);
                PackedWindow {
                    sensor: run[0].sensor,
                    row: pack::Row {
                        start_ms: start,
                        end_ms: run[run.len() - 1].at_ms,
                        count: run.len() as i64,
                        data: pack::pack_window(start, run),
                    },
                }
            })
            .collect()
    };
    let of_a = hour_of_results(a, hour, 60);
    let of_b = hour_of_results(b, hour, 2);
    let of_c = hour_of_results(c, hour + HOUR_MS, 60);
    let mut stored = windows(&of_a);
    stored.extend(windows(&of_b));
    stored.extend(windows(&of_c));
    thread
        .target
        .store_repack(
            &Repack {
                journal_ids: Vec::new(),
                windows: stored,
                rollups: Vec::new(),
                prune: None,
                node: None,
            },
            &mut || {},
        )
        .unwrap();
    let rows = |thread: &mut WriterThread<T>, sensor: i64, from: i64| {
        thread
            .target
            .rows_between(&[sensor], from, from + HOUR_MS)
            .unwrap()
    };
    let read = |rows: &[(i64, pack::Row)]| -> Vec<StoredResult> {
        rows.iter()
            .flat_map(|(sensor, row)| {
                pack::unpack_window(*sensor, row.start_ms, &row.data).unwrap()
            })
            .collect()
    };
    let merge = |thread: &mut WriterThread<T>| {
        thread.compacting = [hour].into();
        for _ in 0..10 {
            thread.compact_step();
        }
    };

    // Not while results of the hour may still be in the journal.
    thread.repacked_until = hour + HOUR_MS;
    merge(&mut thread);
    assert_eq!(
        rows(&mut thread, a, hour).len(),
        30,
        "an hour not all repacked is left"
    );

    thread.repacked_until = i64::MAX;
    merge(&mut thread);
    assert!(thread.compacting.is_empty(), "the hour is done");
    let merged = rows(&mut thread, a, hour);
    assert_eq!(merged.len(), 1, "one row for the hour");
    assert_eq!(merged[0].1.count, 60);
    assert_eq!(read(&merged), of_a, "every result, in order");
    assert_eq!(
        read(&rows(&mut thread, b, hour)),
        of_b,
        "one window is left as it is"
    );
    assert_eq!(rows(&mut thread, b, hour).len(), 1);
    let next = rows(&mut thread, c, hour + HOUR_MS);
    assert_eq!(next.len(), 30, "another hour is left");
    assert_eq!(read(&next), of_c);

    // Merging again changes nothing.
    merge(&mut thread);
    assert_eq!(rows(&mut thread, a, hour), merged);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(events: usize, since_flush_ms: u64, since_repack_s: u64) -> Timing {
        Timing {
            events,
            flushes: 0,
            since_flush: Duration::from_millis(since_flush_ms),
            since_repack: Duration::from_secs(since_repack_s),
            since_compact: Duration::from_millis(since_flush_ms),
            retry_at: None,
            now: Instant::now(),
        }
    }

    #[test]
    fn events_commit_at_once_and_results_within_a_second() {
        let next = |t: Timing| next_steps(&t).flush;
        assert!(next(timing(1, 0, 0)), "an event waits for nothing");
        let flush_asked = Timing {
            flushes: 1,
            ..timing(0, 0, 0)
        };
        assert!(next(flush_asked), "nor does a flush request");
        assert!(!next(timing(0, 999, 0)), "results wait for the second");
        assert!(next(timing(0, 1000, 0)), "a second on, results commit");
    }

    #[test]
    fn a_failed_commit_waits_for_its_backoff_and_holds_repacking() {
        let now = Instant::now();
        let backing_off = Timing {
            retry_at: Some(now + Duration::from_millis(1)),
            now,
            ..timing(1, 5000, 600)
        };
        assert_eq!(
            next_steps(&backing_off),
            NextSteps {
                flush: false,
                repack: false,
                compact: false
            }
        );
        let retry_now = Timing {
            retry_at: Some(now),
            ..backing_off
        };
        assert_eq!(
            next_steps(&retry_now),
            NextSteps {
                flush: true,
                repack: false,
                compact: false
            },
            "the retry is due; repacking and merging wait until a commit succeeds"
        );
    }

    /// The writer's thread runs at nice 10, and only that thread: Linux
    /// keeps a nice value per thread.
    #[test]
    fn the_writer_thread_yields_to_the_checks() {
        // Field 19 of a thread's stat, counted after the name in
        // parentheses (which may hold spaces).
        let nice = || -> i32 {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let after_name = stat.rsplit_once(") ").unwrap().1;
            after_name.split(' ').nth(16).unwrap().parse().unwrap()
        };
        let before = nice();
        let lowered = std::thread::spawn(move || {
            yield_to_checks();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, WRITER_NICE);
        assert_eq!(nice(), before, "the calling thread keeps its own");
    }

    #[test]
    fn closed_hours_are_merged_a_step_a_second_whatever_the_commits() {
        let events = timing(3, 10, 0);
        assert!(next_steps(&events).flush && !next_steps(&events).compact);
        assert!(next_steps(&timing(3, 1000, 0)).compact);
        let refused = Timing {
            retry_at: Some(Instant::now() + Duration::from_secs(1)),
            ..timing(0, 5000, 0)
        };
        assert!(!next_steps(&refused).compact);
    }

    #[test]
    fn closed_windows_are_repacked_once_a_minute() {
        assert!(!next_steps(&timing(0, 0, 59)).repack);
        assert!(next_steps(&timing(0, 0, 60)).repack);
        assert_eq!(window_start(WINDOW_MS * 7 + 1), WINDOW_MS * 7);
        assert_eq!(window_start(WINDOW_MS * 7 - 1), WINDOW_MS * 6);
        assert_eq!(window_start(-1), -WINDOW_MS, "before the epoch too");
    }

    fn temp_thread() -> (std::path::PathBuf, WriterThread<SqliteTarget>) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portwatch-writer-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("t.db")).unwrap();
        let thread = WriterThread::new(
            SqliteTarget {
                conn: store.conn,
                path: store.path,
            },
            Arc::default(),
            OrderedQueue::default(),
            Arc::default(),
        );
        (dir, thread)
    }

    fn result(n: usize) -> Write {
        Write::Result(
            StoredResult {
                sensor: 1,
                at_ms: n as i64,
                status: portwatch_probe::Status::Up,
                reason: portwatch_probe::Reason::Connected,
                rtt_us: None,
            },
            LastCheck {
                state: State::Up,
                since_ms: 0,
                message: String::new(),
                details: None,
            },
            0,
        )
    }

    /// Everything queued is taken into one batch, up to MAX_BATCH results.
    #[test]
    fn a_batch_takes_everything_queued_up_to_its_bound() {
        let (dir, mut thread) = temp_thread();
        let (queue, receiver) = sync_channel(MAX_BATCH + 10);
        for n in 0..10 {
            queue.send(result(n)).unwrap();
        }
        thread.take_queued(&receiver);
        assert_eq!(thread.results.len(), 10);
        thread.results.clear();
        for n in 0..MAX_BATCH + 10 {
            queue.send(result(n)).unwrap();
        }
        thread.take_queued(&receiver);
        assert_eq!(thread.results.len(), MAX_BATCH, "bounded");
        assert_eq!(receiver.try_iter().count(), 10, "the rest waits");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A repack takes the results queued while it runs, so that a long
    /// one (seconds with a million sensors) leaves room in the queue: they
    /// wait in the backlog for the next commit, none lost.
    #[test]
    fn a_repack_takes_the_results_queued_meanwhile() {
        let (dir, mut thread) = temp_thread();
        let (queue, receiver) = sync_channel(10);
        queue.send(result(1)).unwrap();
        thread.take_queued(&receiver);
        assert!(thread.flush());
        for n in 2..7 {
            queue.send(result(n)).unwrap();
        }
        thread.repack(i64::MAX, Some(&receiver));
        let journal: i64 = thread
            .target
            .conn
            .query_row("SELECT count(*) FROM journal", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, 0, "repacked");
        assert_eq!(receiver.try_iter().count(), 0, "the queue is empty");
        let waiting: Vec<i64> = thread.results.iter().map(|r| r.at_ms).collect();
        assert_eq!(waiting, [2, 3, 4, 5, 6]);
        assert_eq!(thread.last[&1].0.at_ms, 6, "the latest state too");
        assert!(thread.flush());
        assert_eq!(thread.stats.results_dropped.load(Ordering::Relaxed), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A commit takes the results queued while it runs into the backlog
    /// (the first interval's commits take seconds at a million sensors),
    /// after it has counted what it wrote: they wait for the next
    /// commit, none lost and none counted twice.
    #[test]
    fn a_commit_takes_the_results_queued_meanwhile() {
        let (dir, mut thread) = temp_thread();
        let (queue, receiver) = sync_channel(10);
        queue.send(result(1)).unwrap();
        thread.take_queued(&receiver);
        for n in 2..7 {
            queue.send(result(n)).unwrap();
        }
        assert!(thread.flush_holding(Some(&receiver)));
        let stored = |thread: &WriterThread<SqliteTarget>| -> i64 {
            thread
                .target
                .conn
                .query_row("SELECT coalesce(sum(count), 0) FROM journal", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        assert_eq!(stored(&thread), 1);
        assert_eq!(thread.stats.results_stored.load(Ordering::Relaxed), 1);
        assert_eq!(receiver.try_iter().count(), 0, "the queue is empty");
        let waiting: Vec<i64> = thread.results.iter().map(|r| r.at_ms).collect();
        assert_eq!(waiting, [2, 3, 4, 5, 6]);
        assert!(thread.flush());
        assert_eq!(stored(&thread), 6);
        assert_eq!(thread.stats.results_stored.load(Ordering::Relaxed), 6);
        assert_eq!(thread.stats.results_dropped.load(Ordering::Relaxed), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// While the store refuses writes, the backlog keeps the newest
    /// results up to its bound and counts the oldest as lost.
    #[test]
    fn a_full_backlog_drops_its_oldest_results_and_counts_them() {
        let (dir, mut thread) = temp_thread();
        thread.max_backlog = 10;
        for n in 0..15 {
            thread.take(result(n));
        }
        let kept: Vec<i64> = thread.results.iter().map(|r| r.at_ms).collect();
        assert_eq!(kept, (5..15).collect::<Vec<i64>>());
        assert_eq!(thread.stats.results_dropped.load(Ordering::Relaxed), 5);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// One node of several repacks the shared journal: another leaves it,
    /// and keeps no rollup accumulators; taking the repacking over, it
    /// starts the hour's accumulators from what is stored.
    #[test]
    fn only_the_repacker_repacks_and_a_new_one_starts_from_the_store() {
        let (dir, mut thread) = temp_thread();
        let (queue, receiver) = sync_channel(10);
        let now = jiff::Timestamp::now().as_millisecond();
        let count = |thread: &WriterThread<SqliteTarget>, sql: &str| -> i64 {
            thread.target.conn.query_row(sql, [], |r| r.get(0)).unwrap()
        };
        let send = |at_ms: i64| match result(0) {
            Write::Result(r, last, epoch) => {
                Write::Result(StoredResult { at_ms, ..r }, last, epoch)
            }
            _ => unreachable!(),
        };
        queue.send(send(now - 1_000)).unwrap();
        thread.take_queued(&receiver);
        assert!(thread.flush());
        thread.fence.set_repacker(false);
        thread.repack(i64::MAX, None);
        assert_eq!(
            count(&thread, "SELECT count(*) FROM journal"),
            1,
            "left alone"
        );
        assert!(thread.hours.is_empty());
        thread.fence.set_repacker(true);
        thread.repack(i64::MAX, None);
        assert_eq!(count(&thread, "SELECT count(*) FROM journal"), 0);
        assert_eq!(count(&thread, "SELECT sum(count) FROM results"), 1);
        // Another node repacks for a while: this one drops its
        // accumulators, and rebuilds them from the store when it takes
        // the repacking back.
        thread.fence.set_repacker(false);
        thread.repack(i64::MAX, None);
        assert!(thread.hours.is_empty());
        queue.send(send(now - 500)).unwrap();
        thread.take_queued(&receiver);
        assert!(thread.flush());
        thread.fence.set_repacker(true);
        thread.repack(i64::MAX, None);
        let counted: u32 = thread.hours.values().map(|a| a.finish().count).sum();
        assert_eq!(counted, 2, "the stored result and the new one");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// After a node's lease lapses, what it decided before is dropped
    /// however late the writer takes it; its results are kept, and what it
    /// decides afterwards is written.
    #[test]
    fn state_changes_decided_before_a_lapse_are_dropped_and_results_kept() {
        let (dir, mut thread) = temp_thread();
        let fence = thread.fence.clone();
        let (queue, receiver) = sync_channel(10);
        let stamped = |n: usize, epoch: u64| match result(n) {
            Write::Result(r, last, _) => Write::Result(r, last, epoch),
            _ => unreachable!(),
        };
        let settle = |epoch| {
            let (ack, committed) = oneshot::channel();
            let event = PendingEvent {
                op: Ordered::Notify {
                    sensor: 1,
                    at_ms: 0,
                    notify: Vec::new(),
                },
                ack,
                epoch,
            };
            (event, committed)
        };
        let count = |thread: &WriterThread<SqliteTarget>, sql: &str| -> i64 {
            thread.target.conn.query_row(sql, [], |r| r.get(0)).unwrap()
        };
        // Taken before the lapse, and produced before it but taken after.
        queue.send(stamped(1, 0)).unwrap();
        thread.take_queued(&receiver);
        let (event, before) = settle(0);
        thread.events.push(event);
        fence.lapsed();
        queue.send(stamped(2, 0)).unwrap();
        thread.take_queued(&receiver);
        assert!(thread.flush());
        assert_eq!(
            count(&thread, "SELECT sum(count) FROM journal"),
            2,
            "results kept"
        );
        assert_eq!(count(&thread, "SELECT count(*) FROM sensor_status"), 0);
        assert!(
            before.blocking_recv().is_err(),
            "not acknowledged as stored"
        );
        assert_eq!(fence.dropped.load(Ordering::Relaxed), 3);
        // Decided after the lapse: written.
        queue.send(stamped(3, 1)).unwrap();
        thread.take_queued(&receiver);
        let (event, after) = settle(1);
        thread.events.push(event);
        assert!(thread.flush());
        assert_eq!(count(&thread, "SELECT count(*) FROM sensor_status"), 1);
        assert!(after.blocking_recv().is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A writer thread that ends leaves no acknowledgement waiting.
    #[test]
    fn acknowledgements_are_dropped_when_the_thread_ends() {
        let (dir, thread) = temp_thread();
        let ordered = thread.ordered.clone();
        let (ack, committed) = oneshot::channel();
        ordered.lock().unwrap().push_back(PendingEvent {
            op: Ordered::Settle {
                sensor: 1,
                at_ms: 0,
                cancel: None,
            },
            ack,
            epoch: 0,
        });
        drop(thread);
        assert!(ordered.lock().unwrap().is_empty());
        assert!(committed.blocking_recv().is_err(), "told, not left waiting");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Failed commits are retried after 250 ms, then twice as long each
    /// time, never more than 4 s apart.
    #[test]
    fn failed_commits_back_off_exponentially_up_to_four_seconds() {
        let (dir, mut thread) = temp_thread();
        let now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..9 {
            thread.back_off(now);
            waits.push(thread.retry_at.unwrap() - now);
        }
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(
            waits,
            [
                ms(250),
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(4000),
                ms(4000),
                ms(4000),
                ms(4000)
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Stores one window of `results` for sensor 1 starting at `start`.
    fn store_window(thread: &WriterThread<SqliteTarget>, start: i64, results: &[StoredResult]) {
        let end = results.last().map_or(start, |r| r.at_ms);
        thread
            .target
            .conn
            .execute(
                "INSERT INTO results (sensor_id, start_ms, end_ms, count, data) VALUES (1, ?1, ?2, ?3, ?4)",
                params![start, end, results.len() as i64, pack::pack_window(start, results)],
            )
            .unwrap();
    }

    fn at(at_ms: i64) -> StoredResult {
        match result(0) {
            Write::Result(r, _, _) => StoredResult { at_ms, ..r },
            _ => unreachable!(),
        }
    }

    /// A repack merges each sensor's new results into its stored window, in
    /// time order, and keeps sensors and windows apart.
    #[test]
    fn a_repack_merges_new_results_into_each_sensors_stored_window() {
        let (dir, mut thread) = temp_thread();
        let w = window_start(jiff::Timestamp::now().as_millisecond()) - 10 * WINDOW_MS;
        store_window(&thread, w, &[at(w + 10), at(w + 30)]);
        let of = |sensor: i64, at_ms: i64| match result(0) {
            Write::Result(r, last, epoch) => {
                Write::Result(StoredResult { sensor, at_ms, ..r }, last, epoch)
            }
            _ => unreachable!(),
        };
        for write in [of(1, w + WINDOW_MS + 1), of(2, w + 5), of(1, w + 20)] {
            thread.take(write);
        }
        thread.flush();
        thread.repack(i64::MAX, None);
        let window = |thread: &mut WriterThread<SqliteTarget>, sensor: i64, start: i64| {
            let stored = thread.target.windows(&[(sensor, start)]).unwrap();
            pack::unpack_window(sensor, start, &stored[&(sensor, start)])
                .unwrap()
                .iter()
                .map(|r| r.at_ms - start)
                .collect::<Vec<_>>()
        };
        assert_eq!(window(&mut thread, 1, w), [10, 20, 30], "merged, in order");
        assert_eq!(window(&mut thread, 2, w), [5]);
        assert_eq!(window(&mut thread, 1, w + WINDOW_MS), [1]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A closed hour's windows are merged into one row per sensor, once
    /// the hour is all repacked, and only that hour's.
    #[test]
    fn a_closed_hours_windows_are_merged_into_rows() {
        let (dir, thread) = temp_thread();
        drop(thread);
        let store = Store::open(&dir.join("t.db")).unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO servers (id, name, host) VALUES (1, 's', 'h');
                 INSERT INTO sensors (id, server_id, name, port) VALUES (4, 1, 'a', 1), (5, 1, 'b', 2), (9, 1, 'c', 3);",
            )
            .unwrap();
        let target = SqliteTarget {
            conn: store.conn,
            path: store.path,
        };
        super::check_compaction(target, &[4, 5, 9]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The longest step is kept, not the last.
    #[test]
    fn the_longest_step_is_kept() {
        let (dir, thread) = temp_thread();
        thread.stepped(Instant::now() - Duration::from_millis(40), "commit", 1);
        thread.stepped(Instant::now(), "commit", 1);
        let longest = thread.stats.longest_step_ms.load(Ordering::Relaxed);
        assert!((40..1_000).contains(&longest), "{longest}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A repack that fails counts nothing: read again from the journal, its
    /// results are counted once in the closed hour's rollup and in this
    /// hour's accumulator.
    #[test]
    fn a_failed_repack_is_counted_once_when_it_is_done_again() {
        let (dir, mut thread) = temp_thread();
        let hour = hour_of(jiff::Timestamp::now().as_millisecond());
        for at_ms in [hour - HOUR_MS + 1_000, hour - HOUR_MS + 2_000, hour] {
            thread.take(match result(0) {
                Write::Result(r, last, epoch) => {
                    Write::Result(StoredResult { at_ms, ..r }, last, epoch)
                }
                _ => unreachable!(),
            });
        }
        assert!(thread.flush());
        thread
            .target
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON rollups BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();
        thread.repack(i64::MAX, None);
        assert_eq!(thread.stats.write_errors.load(Ordering::Relaxed), 1);
        thread
            .target
            .conn
            .execute_batch("DROP TRIGGER temp.refuse")
            .unwrap();
        thread.repack(i64::MAX, None);
        let closed: i64 = thread
            .target
            .conn
            .query_row(
                "SELECT count FROM rollups WHERE sensor_id = 1 AND hour_ms = ?1",
                [hour - HOUR_MS],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(closed, 2, "the closed hour's rollup");
        let open: Vec<u32> = thread.hours.values().map(|a| a.count).collect();
        assert_eq!(open, [1], "this hour's accumulator");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// After a restart the accumulators of the hour before and of this hour
    /// are rebuilt from what is stored, and nothing older.
    #[test]
    fn a_restart_rebuilds_this_hours_and_the_last_hours_rollups() {
        let (dir, mut thread) = temp_thread();
        let hour = hour_of(jiff::Timestamp::now().as_millisecond());
        for (start, n) in [(hour - 2 * HOUR_MS, 3), (hour - HOUR_MS, 2), (hour, 1)] {
            let results: Vec<StoredResult> = (0..n).map(|i| at(start + i)).collect();
            store_window(&thread, start, &results);
        }
        // A row that starts before the last hour and goes on into it.
        let across = hour - HOUR_MS - 10;
        store_window(&thread, across, &[at(across), at(hour - HOUR_MS + 7)]);
        thread.hours.clear();
        thread.rebuild_open_hours().unwrap();
        let mut counts: Vec<(i64, u32)> = thread
            .hours
            .iter()
            .map(|((_, h), acc)| (*h, acc.count))
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, [(hour - HOUR_MS, 3), (hour, 1)]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The integers of a one-column query.
    fn column(conn: &Connection, sql: &str) -> Vec<i64> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// When an hour's rollups are written, raw results past their
    /// retention and rollups past theirs are deleted; newer ones stay.
    #[test]
    fn closing_an_hour_deletes_what_is_past_retention() {
        let (dir, mut thread) = temp_thread();
        let now = jiff::Timestamp::now().as_millisecond();
        let day = 24 * HOUR_MS;
        let old_window = window_start(now - RETENTION.as_millis() as i64 - day);
        let kept_window = window_start(now - RETENTION.as_millis() as i64 + day);
        store_window(&thread, old_window, &[at(old_window)]);
        store_window(&thread, kept_window, &[at(kept_window)]);
        for hour_ms in [
            hour_of(now - ROLLUP_RETENTION.as_millis() as i64 - day),
            hour_of(now - ROLLUP_RETENTION.as_millis() as i64 + day),
        ] {
            thread
                .target
                .conn
                .execute(
                    "INSERT INTO rollups (sensor_id, hour_ms, count, ups) VALUES (1, ?1, 1, 1)",
                    [hour_ms],
                )
                .unwrap();
        }
        // Results two hours and one hour ago: the next repack closes the
        // first hour (a later one has been seen).
        thread.results.push_back(at(hour_of(now) - 2 * HOUR_MS));
        thread.results.push_back(at(hour_of(now) - HOUR_MS));
        assert!(thread.flush());
        thread.repack(i64::MAX, None);
        let starts = column(
            &thread.target.conn,
            "SELECT start_ms FROM results ORDER BY start_ms",
        );
        assert_eq!(
            starts,
            [
                kept_window,
                window_start(hour_of(now) - 2 * HOUR_MS),
                window_start(hour_of(now) - HOUR_MS)
            ]
        );
        let hours = column(
            &thread.target.conn,
            "SELECT hour_ms FROM rollups ORDER BY hour_ms",
        );
        assert_eq!(
            hours,
            [
                hour_of(now - ROLLUP_RETENTION.as_millis() as i64 + day),
                hour_of(now) - 2 * HOUR_MS
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
