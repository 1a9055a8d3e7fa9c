//! This process as one node of several sharing a PostgreSQL store: it
//! joins the `nodes` table, renews its lease at every heartbeat, and
//! publishes its share of the sensors (see [`crate::monitor::cluster`]) to
//! the monitor as the heartbeats and the database's clock decide it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::monitor::cluster::{Member, Share, View};
use crate::monitor::daemon::Cluster;
use crate::monitor::stats::MonitorStats;
use crate::monitor::verdict::LocationReport;
use crate::store::StoreError;
use crate::store::pg::Pg;
use crate::store::pg::nodes::{Heartbeat, NodeSpec};
use crate::store::writer::Fence;

/// How a node's lease and hand-over are timed, from its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often the lease is renewed and the other nodes are looked at.
    pub heartbeat: Duration,
}

impl Timing {
    /// The lease lapses after three heartbeats without renewal.
    pub fn lease(self) -> Duration {
        self.heartbeat * 3
    }

    /// A node joining a location with live nodes starts its share two
    /// heartbeats later: every other node has seen it by then, and gives
    /// that share up at the same moment.
    pub fn join_delay(self) -> Duration {
        self.heartbeat * 2
    }
}

/// A joined node, before and while its heartbeats run.
pub struct Node {
    pg: Pg,
    name: String,
    id: Arc<AtomicI64>,
    share: watch::Sender<Share>,
    /// The heartbeats, until they start running on their own.
    beats: Option<Beats>,
    task: Option<JoinHandle<()>>,
    /// The exchange of location reports with the store.
    exchange: Option<JoinHandle<()>>,
}

impl Node {
    /// Joins the store's nodes as `name` in `location`, and renews its
    /// lease once, so that its share is known before the monitor starts.
    pub async fn join(
        pg: Pg,
        name: String,
        location: String,
        timing: Timing,
    ) -> Result<Node, StoreError> {
        let spec = NodeSpec {
            name: name.clone(),
            location,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            lease: timing.lease(),
            join_delay: timing.join_delay(),
        };
        let id = pg.join_node(&spec).await?;
        let (share, _) = watch::channel(Share::new(id, Vec::new()));
        let id = Arc::new(AtomicI64::new(id));
        let mut beats = Beats {
            pg: pg.clone(),
            spec,
            timing,
            id: id.clone(),
            share: share.clone(),
            stats: Arc::new(MonitorStats::default()),
            fence: Arc::default(),
            view: None,
            last: (Instant::now(), 0),
            rate: 0.0,
        };
        let sent = Instant::now();
        let figures = beats.figures(sent);
        let renewal = pg.heartbeat(id.load(Ordering::Relaxed), timing.lease(), figures);
        let outcome = tokio::time::timeout(timing.lease(), renewal).await;
        beats.take(id.load(Ordering::Relaxed), sent, outcome).await;
        beats.publish();
        Ok(Node {
            pg,
            name,
            id,
            share,
            beats: Some(beats),
            task: None,
            exchange: None,
        })
    }

    /// What the monitor needs of the other nodes: its share as the
    /// heartbeats find it, and the exchange of location reports with the
    /// store (started here).
    pub fn cluster(&mut self) -> Cluster {
        let (reports, outgoing) = mpsc::channel(REPORTS_QUEUED);
        let (incoming, heard) = mpsc::channel(16);
        let exchange = Exchange {
            pg: self.pg.clone(),
            id: self.id.clone(),
            outgoing,
            incoming,
        };
        if let Some(old) = self.exchange.replace(tokio::spawn(exchange.run())) {
            old.abort();
        }
        Cluster {
            share: self.share.subscribe(),
            reports,
            heard,
        }
    }

    /// Starts the heartbeats, reporting the monitor's figures, and fences
    /// the store's writer with this node's lease.
    pub fn start(&mut self, stats: Arc<MonitorStats>, fence: Arc<Fence>) {
        if let Some(mut beats) = self.beats.take() {
            fence.set_node(self.id.load(Ordering::Relaxed));
            fence.set_repacker(beats.repacks());
            beats.last = (Instant::now(), stats.snapshot().done);
            beats.stats = stats;
            beats.fence = fence;
            self.task = Some(tokio::spawn(beats.run()));
        }
    }

    /// Stops the heartbeats and leaves: the other nodes take this node's
    /// share at their next heartbeat. Call it once the monitor stopped.
    pub async fn leave(mut self) {
        for task in [self.task.take(), self.exchange.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        let id = self.id.load(Ordering::Relaxed);
        match self.pg.leave_node(id).await {
            Ok(()) => tracing::info!(node = %self.name, "left the nodes"),
            Err(error) => {
                tracing::warn!(node = %self.name, %error, "cannot leave the nodes; its lease lapses by itself")
            }
        }
    }
}

/// Location reports waiting to be written, at most (a report dropped is
/// replaced by the sensor's next check).
const REPORTS_QUEUED: usize = 65_536;

/// How often location reports are written, and read back.
const EXCHANGE_EVERY: Duration = Duration::from_millis(500);

/// A location report not renewed for this long is deleted (its sensor was
/// retired, or is no longer checked from there), by each node once an hour.
const REPORTS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Writes the monitor's location reports to the store, and reads every
/// node's back for the sensors this node judges.
struct Exchange {
    pg: Pg,
    id: Arc<AtomicI64>,
    outgoing: mpsc::Receiver<LocationReport>,
    incoming: mpsc::Sender<Vec<LocationReport>>,
}

impl Exchange {
    async fn run(mut self) {
        let mut cursor = 0;
        let mut pruned = Instant::now();
        let mut every = tokio::time::interval(EXCHANGE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let mut batch = Vec::new();
            while let Ok(report) = self.outgoing.try_recv() {
                batch.push(report);
            }
            // A sensor checked twice since the last write: the later wins.
            batch.reverse();
            let mut seen = std::collections::HashSet::new();
            batch.retain(|r| seen.insert((r.sensor, r.location.clone())));
            let id = self.id.load(Ordering::Relaxed);
            match self.pg.put_location_reports(id, &batch).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        reports = batch.len(),
                        "location reports not stored: this node's lease lapsed"
                    )
                }
                Err(error) => {
                    tracing::warn!(%error, reports = batch.len(), "cannot store location reports; the next checks report again")
                }
            }
            match self.pg.location_reports_since(cursor).await {
                Ok(read) if !read.is_empty() => {
                    cursor = read.iter().map(|(seq, _)| *seq).max().unwrap_or(cursor);
                    let reports = read.into_iter().map(|(_, report)| report).collect();
                    if self.incoming.send(reports).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot read location reports; retrying")
                }
            }
            if pruned.elapsed() >= Duration::from_secs(3600) {
                pruned = Instant::now();
                if let Err(error) = self.pg.prune_location_reports(REPORTS_KEPT).await {
                    tracing::warn!(%error, "cannot delete old location reports");
                }
            }
        }
    }
}

struct Beats {
    pg: Pg,
    spec: NodeSpec,
    timing: Timing,
    id: Arc<AtomicI64>,
    share: watch::Sender<Share>,
    stats: Arc<MonitorStats>,
    fence: Arc<Fence>,
    /// The last heartbeat's view, and when its query was sent.
    view: Option<(View, Instant)>,
    /// When the rate's window started, with the checks done then.
    last: (Instant, u64),
    /// Checks per second over the last window.
    rate: f64,
}

/// The span checks per second are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl Beats {
    async fn run(mut self) {
        loop {
            let sent = Instant::now();
            let id = self.id.load(Ordering::Relaxed);
            let figures = self.figures(sent);
            let (pg, lease) = (self.pg.clone(), self.timing.lease());
            // A renewal that hangs (a network cut) takes no longer than the
            // lease, and meanwhile the share still ends on time: a node cut
            // off stops checking when its lease may have lapsed, whatever
            // its connections do.
            let renewal =
                tokio::time::timeout(lease, async move { pg.heartbeat(id, lease, figures).await });
            tokio::pin!(renewal);
            let outcome = loop {
                let wake = self.publish().unwrap_or(sent + lease);
                tokio::select! {
                    outcome = &mut renewal => break outcome,
                    () = tokio::time::sleep_until(wake) => {}
                }
            };
            let renewed = matches!(outcome, Ok(Ok(Some(_))));
            self.take(id, sent, outcome).await;
            if renewed {
                self.report_lapsed().await;
            }
            // Until the next heartbeat: the share as this view has it, at
            // each moment it changes.
            let next_beat = sent + self.timing.heartbeat;
            loop {
                match self.publish().filter(|at| *at < next_beat) {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => {
                        tokio::time::sleep_until(next_beat).await;
                        break;
                    }
                }
            }
        }
    }

    /// The figures a heartbeat reports: checks per second over at least
    /// [`RATE_WINDOW`] (checks come in bursts, and a heartbeat's span alone
    /// would read them unevenly).
    fn figures(&mut self, now: Instant) -> Heartbeat {
        let counts = self.stats.snapshot();
        let seconds = now.duration_since(self.last.0).as_secs_f64();
        if seconds >= RATE_WINDOW.as_secs_f64() {
            self.rate = counts.done.saturating_sub(self.last.1) as f64 / seconds;
            self.last = (now, counts.done);
        }
        Heartbeat {
            sensors: counts.sensors as i64,
            checks_per_s: self.rate,
            late: counts.late as i64,
            missed: counts.missed as i64,
        }
    }

    /// One heartbeat's outcome: the new view of the live nodes, or, when
    /// the lease had lapsed, a new start as a new node.
    async fn take(
        &mut self,
        id: i64,
        sent: Instant,
        outcome: Result<Result<Option<Vec<Member>>, StoreError>, tokio::time::error::Elapsed>,
    ) {
        match outcome {
            Ok(Ok(Some(members))) => {
                let round_trip_ms = sent.elapsed().as_millis() as i64;
                let view = View {
                    me: id,
                    members,
                    round_trip_ms,
                    valid_ms: self.timing.join_delay().as_millis() as i64,
                };
                self.view = Some((view, sent));
                self.fence.set_repacker(self.repacks());
            }
            Ok(Ok(None)) => {
                tracing::error!(node = %self.spec.name, "this node's lease lapsed (it could not renew it in time): the other nodes have taken its sensors; joining again as a new node");
                self.view = None;
                self.share.send_replace(Share::new(id, Vec::new()));
                // What it decided before is stale: the node that took its
                // sensors decides them now.
                self.fence.lapsed();
                self.fence.set_repacker(false);
                match tokio::time::timeout(self.timing.lease(), self.pg.join_node(&self.spec)).await
                {
                    Ok(Ok(new)) => {
                        self.id.store(new, Ordering::Relaxed);
                        self.fence.set_node(new);
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(node = %self.spec.name, %error, "cannot join again; retrying")
                    }
                    Err(_) => {
                        tracing::warn!(node = %self.spec.name, "cannot join again: no answer in time; retrying")
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(node = %self.spec.name, %error, "cannot renew this node's lease; retrying (its sensors stop when the lease may have lapsed)")
            }
            Err(_) => {
                tracing::warn!(node = %self.spec.name, "cannot renew this node's lease: no answer in time; retrying (its sensors stop when the lease may have lapsed)")
            }
        }
    }

    /// Whether this node repacks the shared journal: the live node with
    /// the lowest id does (ids only grow, so the repacker changes only
    /// when it leaves or its lease lapses).
    fn repacks(&self) -> bool {
        self.view
            .as_ref()
            .is_some_and(|(view, _)| view.members.iter().map(|m| m.id).min() == Some(view.me))
    }

    /// Reports the nodes whose lease lapsed, once across all nodes: a log
    /// line here, and the notifications of rules with `on = ["node"]`.
    async fn report_lapsed(&self) {
        let report = self.pg.report_lapsed_nodes(|node, channels, rules| {
            crate::notify::node_lapsed(rules, channels, node)
        });
        match tokio::time::timeout(self.timing.lease(), report).await {
            Ok(Ok(lapsed)) => {
                for node in lapsed {
                    tracing::warn!(node = %node.name, location = %node.location, sensors = node.sensors, "node {} stopped renewing its lease; its sensors went to the other nodes", node.name);
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot look for lapsed nodes; trying at the next heartbeat")
            }
            Err(_) => tracing::warn!("cannot look for lapsed nodes: no answer in time"),
        }
    }

    /// Publishes the share the last view gives now; returns when it next
    /// changes by that view.
    fn publish(&self) -> Option<Instant> {
        let (view, sent) = self.view.as_ref()?;
        let elapsed = sent.elapsed().as_millis() as i64;
        let now = view.share(elapsed);
        self.share.send_if_modified(|share| {
            let changed = *share != now;
            *share = now;
            changed
        });
        view.next_change(elapsed)
            .map(|ms| *sent + Duration::from_millis(ms.max(0) as u64))
    }
}
