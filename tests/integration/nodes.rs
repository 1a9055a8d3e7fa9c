//! Several `portwatch serve` nodes on one PostgreSQL (a throwaway cluster
//! per test): they split the sensors, take over from a node killed with
//! `kill -9` or cut off from the database, and never record a state change
//! or send an alert twice. Real processes of the binary, real listeners
//! that count who connects, a real webhook receiver; every wait polls for
//! its condition with a deadline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use portwatch::monitor::cluster::owner;
use portwatch::monitor::state::State;
use portwatch::store::location::Location;
use portwatch::store::pg::nodes::NodeRow;
use portwatch::store::{Backend, Storage};
use portwatch_testpg::Cluster;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::postgres::{cluster, until};
use crate::util::{TempDir, bin, sh};

/// Listeners that accept and drop every connection, counting them by port
/// and by the address they came from, and when each port was last reached.
struct Ports {
    ports: Vec<u16>,
    counts: Arc<Vec<AtomicU64>>,
    last: Arc<Vec<Mutex<Option<Instant>>>>,
    sources: Arc<Mutex<HashMap<IpAddr, u64>>>,
    tasks: Vec<Option<JoinHandle<()>>>,
}

impl Ports {
    async fn start(ip: &str, n: usize) -> Ports {
        let counts: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let last: Arc<Vec<Mutex<Option<Instant>>>> =
            Arc::new((0..n).map(|_| Mutex::new(None)).collect());
        let sources = Arc::new(Mutex::new(HashMap::new()));
        let (mut ports, mut tasks) = (Vec::new(), Vec::new());
        for i in 0..n {
            let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
            ports.push(listener.local_addr().unwrap().port());
            let (counts, last, sources) = (counts.clone(), last.clone(), sources.clone());
            tasks.push(Some(tokio::spawn(async move {
                while let Ok((stream, peer)) = listener.accept().await {
                    counts[i].fetch_add(1, Ordering::SeqCst);
                    *last[i].lock().unwrap() = Some(Instant::now());
                    *sources.lock().unwrap().entry(peer.ip()).or_insert(0) += 1;
                    drop(stream);
                }
            })));
        }
        Ports {
            ports,
            counts,
            last,
            sources,
            tasks,
        }
    }

    fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }

    /// Whether every open port was reached after `since`.
    fn all_reached_since(&self, since: Instant) -> bool {
        (0..self.ports.len())
            .filter(|i| self.tasks[*i].is_some())
            .all(|i| self.last[i].lock().unwrap().is_some_and(|at| at > since))
    }

    fn from(&self, ip: &str) -> u64 {
        let ip: IpAddr = ip.parse().unwrap();
        self.sources.lock().unwrap().get(&ip).copied().unwrap_or(0)
    }

    /// Stops listening on port `i`: connects are refused from now on.
    fn close(&mut self, i: usize) {
        if let Some(task) = self.tasks[i].take() {
            task.abort();
        }
    }
}

/// A webhook receiver that records each delivery's sensor, new state and
/// `Idempotency-Key`.
struct Hook {
    port: u16,
    received: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Hook {
    fn start() -> Hook {
        let received = Arc::new(Mutex::new(Vec::new()));
        let r = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let r = r.clone();
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let field = |name: &str| body[name].as_str().unwrap_or("").to_owned();
                    r.lock().unwrap().push((field("sensor"), field("to"), key));
                    "ok"
                }
            }),
        );
        let port = crate::util::serve_in_thread(|listener| async move {
            axum::serve(listener, app).await.unwrap();
        });
        Hook { port, received }
    }

    fn received(&self) -> Vec<(String, String, String)> {
        self.received.lock().unwrap().clone()
    }
}

/// One `portwatch serve` node, its log in a file; killed when dropped.
struct Node {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Node {
    /// Starts node `name` on `url`, run through `prefix` (for example
    /// `ip netns exec NS`), with a heartbeat of `heartbeat`, without its
    /// web interface.
    fn start(url: &str, name: &str, dir: &TempDir, heartbeat: &str, prefix: &[&str]) -> Node {
        Node::start_with(url, name, dir, heartbeat, prefix, &["--no-web"])
    }

    /// [`Node::start`] with `extra` arguments instead of `--no-web`.
    fn start_with(
        url: &str,
        name: &str,
        dir: &TempDir,
        heartbeat: &str,
        prefix: &[&str],
        extra: &[&str],
    ) -> Node {
        let log = dir.path.join(format!("{name}-{}.log", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(bin());
                command
            }
            None => Command::new(bin()),
        };
        let child = command
            .args([
                "serve",
                "--db",
                url,
                "--node",
                name,
                "--heartbeat",
                heartbeat,
            ])
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Node {
            name: name.into(),
            child,
            log,
        }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops it with SIGTERM; its exit code.
    fn stop(&mut self) -> i32 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap().code().unwrap_or(-1)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn open(url: &str) -> Backend {
    let location = Location::parse(url).unwrap();
    Backend::open(&location, 2).await.unwrap()
}

/// The sensors' config: `ports` on `ip`, checked every second, alerts on
/// DOWN and on a node's lease lapsing to `hook` (a webhook URL).
fn config(ip: &str, ports: &[u16], hook: &str) -> String {
    let mut text = format!(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\nretries = 0\n\
         [[channel]]\nname = \"hook\"\nwebhook = \"{hook}\"\n\
         [[notify]]\nchannel = \"hook\"\non = [\"down\", \"node\"]\n\
         [[server]]\nname = \"s\"\nhost = \"{ip}\"\n"
    );
    for (i, port) in ports.iter().enumerate() {
        text += &format!("  [[server.sensor]]\n  name = \"p{i}\"\n  port = {port}\n");
    }
    text
}

/// Applies `config` to the store at `url` with `portwatch apply`.
fn apply(url: &str, dir: &TempDir, config: &str) {
    let file = dir.path.join("portwatch.toml");
    std::fs::write(&file, config).unwrap();
    let (code, _, stderr) = crate::util::outcome(&crate::util::portwatch(&[
        "apply",
        file.to_str().unwrap(),
        "--db",
        url,
    ]));
    assert_eq!(code, 0, "{stderr}");
}

async fn live(db: &Backend) -> Vec<NodeRow> {
    db.nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.live)
        .collect()
}

/// The state-change events per sensor path, `(from, to)` in order.
async fn events(db: &Backend) -> BTreeMap<String, Vec<(State, State)>> {
    let mut by_path: BTreeMap<String, Vec<(State, State)>> = BTreeMap::new();
    let mut rows = db.recent_events(100_000, None).await.unwrap();
    rows.reverse();
    for (_, path, event) in rows {
        by_path
            .entry(path)
            .or_default()
            .push((event.from, event.to));
    }
    by_path
}

async fn down(db: &Backend, paths: &[String]) -> usize {
    db.status()
        .await
        .map(|rows| {
            rows.iter()
                .filter(|r| r.state == State::Down && paths.contains(&r.path))
                .count()
        })
        .unwrap_or(0)
}

/// The sensor ids by path.
async fn ids(db: &Backend) -> HashMap<String, i64> {
    db.status()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.path, r.id))
        .collect()
}

/// Every DOWN alert delivered to `hook` for `paths`, once each: one key
/// per sensor (a repeat after a lost acknowledgement keeps its key).
fn one_alert_each(hook: &Hook, paths: &[String]) {
    let received: Vec<_> = hook
        .received()
        .into_iter()
        .filter(|(_, to, _)| to != "lapsed")
        .collect();
    let mut keys: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (sensor, to, key) in &received {
        assert_eq!(to, "down", "{received:?}");
        assert!(key.starts_with("portwatch-"), "{received:?}");
        keys.entry(sensor.as_str())
            .or_default()
            .insert(key.as_str());
    }
    for path in paths {
        let sent = keys.get(path.as_str()).map_or(0, HashSet::len);
        assert_eq!(sent, 1, "{path}: {received:?}");
    }
    assert_eq!(keys.len(), paths.len(), "{received:?}");
}

/// Three nodes (`a`, `b`, `c`, heartbeat 500 ms) on a new cluster,
/// sharing `n` sensors on loopback address `ip` that alert `hook`, every
/// sensor up. Each test has an address of its own, never 127.0.0.1: a port
/// another test closed may be ours now, and its monitor still checking it
/// would count as ours.
struct Three {
    _cluster: Cluster,
    _dir: TempDir,
    ports: Ports,
    hook: Hook,
    nodes: Vec<Node>,
    db: Backend,
}

async fn three_nodes(test: &'static str, ip: &str, n: usize) -> Option<Three> {
    let cluster = cluster(test).await?;
    let url = cluster.url("portwatch");
    let ports = Ports::start(ip, n).await;
    let hook = Hook::start();
    let dir = TempDir::new("nodes");
    let hook_url = format!("http://127.0.0.1:{}/hook", hook.port);
    apply(&url, &dir, &config(ip, &ports.ports, &hook_url));
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|name| Node::start(&url, name, &dir, "500ms", &[]))
        .collect();
    let db = open(&url).await;
    until(
        &format!("three nodes share the {n} sensors"),
        Duration::from_secs(30),
        || async {
            let live = live(&db).await;
            live.len() == 3
                && live.iter().all(|n| n.heartbeat.sensors > 0)
                && live.iter().map(|n| n.heartbeat.sensors).sum::<i64>() == n as i64
        },
    )
    .await;
    until("every sensor is up", Duration::from_secs(30), || async {
        db.status()
            .await
            .is_ok_and(|rows| rows.iter().all(|r| r.state == State::Up))
    })
    .await;
    Some(Three {
        _cluster: cluster,
        _dir: dir,
        ports,
        hook,
        nodes,
        db,
    })
}

/// Every one of `paths` goes DOWN, is recorded DOWN once and alerted once.
async fn down_and_alerted_once(db: &Backend, hook: &Hook, paths: &[String]) {
    until(
        &format!("{} sensors are down", paths.len()),
        Duration::from_secs(15),
        || async { down(db, paths).await == paths.len() },
    )
    .await;
    until(
        "every alert is delivered",
        Duration::from_secs(30),
        || async {
            db.undelivered().await.is_ok_and(|n| n == 0) && hook.received().len() >= paths.len()
        },
    )
    .await;
    down_once(db, paths).await;
    one_alert_each(hook, paths);
}

/// Each of `paths` went DOWN once, after its first UP.
async fn down_once(db: &Backend, paths: &[String]) {
    let changes = events(db).await;
    for path in paths {
        assert_eq!(
            changes[path],
            [(State::Pending, State::Up), (State::Up, State::Down)],
            "{path}"
        );
    }
}

/// Three nodes in one location share 300 sensors checked every second:
/// each sensor is checked by exactly one node; `kill -9` of one gives its
/// sensors to the others within two intervals of its lease lapsing, none
/// of them DOWN for it; then ten services fail and each is recorded and
/// alerted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_split_the_sensors_and_take_over_from_a_killed_one() {
    let Some(Three {
        mut ports,
        hook,
        mut nodes,
        db,
        // Bound, not `..`: the cluster and the directory live until the
        // test ends.
        _cluster,
        _dir,
    }) = three_nodes(
        "nodes::three_nodes_split_the_sensors_and_take_over_from_a_killed_one",
        "127.0.100.1",
        300,
    )
    .await
    else {
        return;
    };

    // Steady state: over 5 s each port is reached about 5 times, once a
    // second by one node (two nodes would make it about 10).
    let before = ports.counts();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = ports.counts();
    let logs = || {
        nodes
            .iter()
            .map(|n| format!("--- {}:\n{}", n.name, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            (3..=7).contains(&(a - b)),
            "port {i} was checked {} times in 5 s\n{}",
            a - b,
            logs()
        );
    }

    // kill -9 of the node with the most sensors.
    let rows = live(&db).await;
    let victim = rows.iter().max_by_key(|n| n.heartbeat.sensors).unwrap();
    let index = nodes.iter().position(|n| n.name == victim.name).unwrap();
    nodes[index].kill9();
    until(
        "the killed node's lease lapses",
        Duration::from_secs(10),
        || async { live(&db).await.len() == 2 },
    )
    .await;
    let lapsed = Instant::now();
    until(
        "every sensor is checked again within two intervals of the lapse",
        Duration::from_secs(2),
        || async { ports.all_reached_since(lapsed) },
    )
    .await;
    let node_alert = (format!("node/{}", victim.name), "lapsed".to_owned());
    until("the lapse is alerted", Duration::from_secs(10), || async {
        hook.received()
            .iter()
            .any(|(sensor, to, _)| (sensor, to) == (&node_alert.0, &node_alert.1))
    })
    .await;
    until(
        "the two nodes hold all 300 sensors",
        Duration::from_secs(5),
        || async {
            live(&db)
                .await
                .iter()
                .map(|n| n.heartbeat.sensors)
                .sum::<i64>()
                == 300
        },
    )
    .await;
    let changes = events(&db).await;
    assert_eq!(changes.len(), 300);
    assert!(
        changes
            .values()
            .all(|e| e == &[(State::Pending, State::Up)]),
        "a dead node changes no sensor's state: {changes:?}"
    );

    // Ten services fail: each recorded DOWN once, alerted once.
    let failing: Vec<String> = (0..10).map(|i| format!("s/p{i}")).collect();
    for i in 0..10 {
        ports.close(i);
    }
    down_and_alerted_once(&db, &hook, &failing).await;
    assert_eq!(
        hook.received().len(),
        11,
        "ten DOWN alerts and the node's: {:?}",
        hook.received()
    );
    for node in nodes.iter_mut().filter(|n| n.name != victim.name) {
        assert_eq!(node.stop(), 0, "{}", node.log());
    }
    assert!(live(&db).await.is_empty(), "stopped nodes leave");
}

/// The node deciding some sensors is killed while they go down: each DOWN
/// is recorded and alerted once, whichever node decided it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_its_sensors_go_down_alerts_each_once() {
    let Some(Three {
        mut ports,
        hook,
        mut nodes,
        db,
        // Bound, not `..`: the cluster and the directory live until the
        // test ends.
        _cluster,
        _dir,
    }) = three_nodes(
        "nodes::a_node_killed_while_its_sensors_go_down_alerts_each_once",
        "127.0.100.2",
        60,
    )
    .await
    else {
        return;
    };
    // Five sensors of node a, by the nodes' own rendezvous hashing.
    let rows = live(&db).await;
    let node_ids: Vec<i64> = rows.iter().map(|n| n.id).collect();
    let a = rows.iter().find(|n| n.name == "a").unwrap().id;
    let ids = ids(&db).await;
    let mut of_a: Vec<(usize, String)> = (0..60)
        .map(|i| (i, format!("s/p{i}")))
        .filter(|(_, path)| owner(ids[path], &node_ids) == Some(a))
        .take(5)
        .collect();
    assert_eq!(of_a.len(), 5, "node a holds at least five sensors");
    of_a.sort();
    for (i, _) in &of_a {
        ports.close(*i);
    }
    let failing: Vec<String> = of_a.into_iter().map(|(_, path)| path).collect();
    until(
        "node a finds one of them down",
        Duration::from_secs(10),
        || async { down(&db, &failing).await >= 1 },
    )
    .await;
    nodes[0].kill9();
    down_and_alerted_once(&db, &hook, &failing).await;
}

/// A network namespace joined to this one by a veth pair: this side
/// 198.51.(100 + k).1/24, the namespace's side .2, its default route
/// through this side (so it reaches this namespace's other addresses).
/// Each test that runs at once with another has its own `k`. Removed on
/// drop.
struct Namespace {
    name: String,
}

impl Namespace {
    fn new(k: u8) -> Namespace {
        let id = std::process::id() % 10_000;
        let name = format!("pwn{id}k{k}");
        crate::util::remove_namespace(&name);
        let (inside, outside) = (format!("vn{id}k{k}"), format!("vr{id}k{k}"));
        let net = format!("198.51.{}", 100 + u16::from(k));
        sh(&format!("ip netns add {name}"));
        sh(&format!(
            "ip link add {outside} type veth peer name {inside} netns {name}"
        ));
        sh(&format!("ip addr add {net}.1/24 dev {outside}"));
        sh(&format!("ip link set {outside} up"));
        sh(&format!("ip -n {name} addr add {net}.2/24 dev {inside}"));
        sh(&format!("ip -n {name} link set {inside} up"));
        sh(&format!("ip -n {name} link set lo up"));
        sh(&format!("ip -n {name} route add default via {net}.1"));
        Namespace { name }
    }

    fn iptables(&self, rule: &str) {
        sh(&format!("ip netns exec {} iptables {rule}", self.name));
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        crate::util::remove_namespace(&self.name);
    }
}

/// Forwards connections to `address` (in this namespace) to 127.0.0.1's
/// `port`: the way into the test cluster for a node in a namespace.
async fn forward(address: &str, port: u16) -> (u16, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind((address, 0)).await.unwrap();
    let local = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (local, task)
}

/// A node cut off from PostgreSQL (iptables in its namespace) stops
/// checking once its lease may have lapsed, and the other node takes its
/// sensors; the state changes it decided meanwhile are dropped when it is
/// back, so each DOWN is recorded once, and it rejoins as a new node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_and_nothing_is_duplicated() {
    const TEST: &str = "nodes::a_node_cut_off_from_the_database_stops_and_nothing_is_duplicated";
    if !crate::util::lab_available(TEST) {
        return;
    }
    let Some(cluster) = cluster(TEST).await else {
        return;
    };
    let namespace = Namespace::new(0);
    let url = cluster.url("portwatch");
    let (proxy, _forward) = forward("198.51.100.1", cluster.port()).await;
    let inner_url = format!("postgres://portwatch@198.51.100.1:{proxy}/portwatch");
    let mut ports = Ports::start("198.51.100.1", 40).await;
    let dir = TempDir::new("nodes-cut");
    // Alerts go nowhere: the outbox rows are what is counted.
    apply(
        &url,
        &dir,
        &config("198.51.100.1", &ports.ports, "http://192.0.2.1:9/hook"),
    );
    let inside = ["ip", "netns", "exec", namespace.name.as_str()];
    let mut cut_off = Node::start(&inner_url, "x", &dir, "1s", &inside);
    let _other = Node::start(&url, "y", &dir, "1s", &[]);
    let db = open(&url).await;
    until(
        "two nodes share the 40 sensors",
        Duration::from_secs(30),
        || async {
            let live = live(&db).await;
            live.len() == 2 && live.iter().map(|n| n.heartbeat.sensors).sum::<i64>() == 40
        },
    )
    .await;
    until("both nodes check", Duration::from_secs(10), || async {
        ports.from("198.51.100.2") > 0 && ports.from("198.51.100.1") > 0
    })
    .await;
    let rows = live(&db).await;
    let node_ids: Vec<i64> = rows.iter().map(|n| n.id).collect();
    let x = rows.iter().find(|n| n.name == "x").unwrap().id;
    let ids = ids(&db).await;
    let of_x: Vec<usize> = (0..40)
        .filter(|i| owner(ids[&format!("s/p{i}")], &node_ids) == Some(x))
        .take(5)
        .collect();
    assert_eq!(of_x.len(), 5, "node x holds at least five sensors");
    let failing: Vec<String> = of_x.iter().map(|i| format!("s/p{i}")).collect();

    // Cut x off from the database, then fail five of its services: x
    // still checks them until its lease may have lapsed, and finds them
    // down, but cannot write it.
    namespace.iptables(&format!(
        "-A OUTPUT -p tcp -d 198.51.100.1 --dport {proxy} -j DROP"
    ));
    for i in &of_x {
        ports.close(*i);
    }
    until("x's lease lapses", Duration::from_secs(15), || async {
        live(&db).await.iter().all(|n| n.name != "x")
    })
    .await;
    // x stopped at the latest when its lease lapsed; a check it had in
    // flight then ends within its 500 ms timeout.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let from_x = ports.from("198.51.100.2");
    until("y takes the five down", Duration::from_secs(10), || async {
        down(&db, &failing).await == 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ports.from("198.51.100.2"),
        from_x,
        "a node whose lease lapsed checks nothing"
    );

    // Back: x rejoins as a new node, and what it decided while cut off is
    // dropped, not written over y's decisions.
    namespace.iptables(&format!(
        "-D OUTPUT -p tcp -d 198.51.100.1 --dport {proxy} -j DROP"
    ));
    until("x rejoins", Duration::from_secs(60), || async {
        live(&db).await.iter().any(|n| n.name == "x" && n.id != x)
    })
    .await;
    until(
        "x drops what it decided before its lease lapsed",
        Duration::from_secs(60),
        || async {
            let log = cut_off.log();
            log.contains("dropped state changes decided before this node's lease lapsed")
                || log.contains(
                    "this node's lease has lapsed: its latest states and events are not written",
                )
        },
    )
    .await;
    until("x checks again", Duration::from_secs(15), || async {
        ports.from("198.51.100.2") > from_x
    })
    .await;
    down_once(&db, &failing).await;
    let outbox = db.outbox(1_000).await.unwrap();
    for path in &failing {
        assert_eq!(
            outbox.iter().filter(|r| &r.sensor == path).count(),
            1,
            "{path}: {outbox:?}"
        );
    }
    assert_eq!(cut_off.stop(), 0, "{}", cut_off.log());
}

/// Sensors checked from two locations, each a node in a namespace of its
/// own, judged 2 of 2: a firewall dropping one location's packets to a
/// service makes it WARNING `partial` naming that location; dropping both
/// makes it DOWN; once one location's node is killed, no sensor can be
/// judged (one fresh location of the two needed) and each is UNKNOWN, never
/// DOWN. Each location's own state is kept and shown side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_locations_judge_a_sensor_together() {
    const TEST: &str = "nodes::two_locations_judge_a_sensor_together";
    if !crate::util::lab_available(TEST) {
        return;
    }
    let Some(cluster) = cluster(TEST).await else {
        return;
    };
    let (eu, us) = (Namespace::new(1), Namespace::new(2));
    let url = cluster.url("portwatch");
    // The services and the way to the database, on this namespace's side of
    // eu's link: both namespaces reach it by their default route.
    let target = "198.51.101.1";
    let (proxy, _forward) = forward(target, cluster.port()).await;
    let inner_url = format!("postgres://portwatch@{target}:{proxy}/portwatch");
    let ports = Ports::start(target, 3).await;
    let dir = TempDir::new("nodes-locations");
    // The settings go on the server: every sensor inherits them.
    let config = config(target, &ports.ports[..2], "http://192.0.2.1:9/hook").replacen(
        &format!("host = \"{target}\"\n"),
        &format!("host = \"{target}\"\nlocations = [\"eu\", \"us\"]\ndown_when = 2\n"),
        1,
    );
    // t/q lists no locations: it is checked from every location with a
    // live node, and judged by a majority of them.
    let config = format!(
        "{config}[[server]]\nname = \"t\"\nhost = \"{target}\"\n  [[server.sensor]]\n  name = \"q\"\n  port = {}\n",
        ports.ports[2]
    );
    apply(&url, &dir, &config);
    let in_eu = ["ip", "netns", "exec", eu.name.as_str()];
    let in_us = ["ip", "netns", "exec", us.name.as_str()];
    let _eu1 = Node::start_with(
        &inner_url,
        "eu1",
        &dir,
        "500ms",
        &in_eu,
        &["--no-web", "--location", "eu"],
    );
    let mut us1 = Node::start_with(
        &inner_url,
        "us1",
        &dir,
        "500ms",
        &in_us,
        &["--no-web", "--location", "us"],
    );
    let db = open(&url).await;
    let ids = {
        until(
            "the sensors are stored",
            Duration::from_secs(10),
            || async { db.status().await.is_ok_and(|rows| rows.len() == 3) },
        )
        .await;
        ids(&db).await
    };
    let (p0, p1, q) = (ids["s/p0"], ids["s/p1"], ids["t/q"]);
    let state = |id: i64| {
        let db = db.clone();
        async move { db.status_of(id).await.unwrap() }
    };
    until(
        "both locations check and every sensor is up",
        Duration::from_secs(30),
        || async {
            let reports = db.location_reports(None).await.unwrap_or_default();
            reports.len() == 6
                && reports.iter().all(|r| r.state == State::Up)
                && state(p0).await.state == State::Up
                && state(p1).await.state == State::Up
                && state(q).await.state == State::Up
        },
    )
    .await;
    assert!(
        ports.from("198.51.101.2") > 0 && ports.from("198.51.102.2") > 0,
        "both locations connect"
    );

    // eu's packets to p0 and q dropped: eu sees them down, us up; 1 of 2
    // is partial (q's default: a majority of its two locations).
    for port in [ports.ports[0], ports.ports[2]] {
        eu.iptables(&format!(
            "-A OUTPUT -p tcp -d {target} --dport {port} -j DROP"
        ));
    }
    until(
        "p0 and q are WARNING partial",
        Duration::from_secs(20),
        || async {
            let (a, b) = (state(p0).await, state(q).await);
            [a, b].iter().all(|row| {
                row.state == State::Warning && row.last_reason.as_deref() == Some("partial")
            })
        },
    )
    .await;
    let row = state(p0).await;
    let message = row.last_message.unwrap_or_default();
    assert!(message.contains("down at eu only"), "{message}");
    let at = db.location_reports(Some(p0)).await.unwrap();
    let by_location: HashMap<&str, (State, &str)> = at
        .iter()
        .map(|r| (r.location.as_str(), (r.state, r.reason.as_str())))
        .collect();
    assert_eq!(by_location["eu"], (State::Down, "timeout"), "{at:?}");
    assert_eq!(by_location["us"], (State::Up, "connected"), "{at:?}");
    assert_eq!(state(p1).await.state, State::Up, "p1 is reached from both");

    // `status` shows the locations under the verdict.
    let (code, stdout, stderr) = crate::util::outcome(&crate::util::portwatch(&[
        "status", "--db", &url, "--format", "json",
    ]));
    assert_eq!(code, 1, "a WARNING: {stderr}");
    let p0_json: Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["sensor"] == "s/p0")
        .unwrap();
    assert_eq!(p0_json["reason"], "partial", "{p0_json}");
    let locations: Vec<(String, String)> = p0_json["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["location"].as_str().unwrap().to_owned(),
                l["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        locations,
        [("eu".into(), "down".into()), ("us".into(), "up".into())]
    );

    // Both locations cut off from p0: DOWN, once.
    us.iptables(&format!(
        "-A OUTPUT -p tcp -d {target} --dport {} -j DROP",
        ports.ports[0]
    ));
    until("p0 is DOWN", Duration::from_secs(20), || async {
        state(p0).await.state == State::Down
    })
    .await;
    let changes = events(&db).await;
    assert_eq!(
        changes["s/p0"],
        [
            (State::Pending, State::Up),
            (State::Up, State::Warning),
            (State::Warning, State::Down)
        ]
    );
    assert_eq!(changes["s/p1"], [(State::Pending, State::Up)]);

    // us's node dies: one fresh location of two needed, so neither sensor
    // can be judged: UNKNOWN, never DOWN (p1 is up wherever it is seen).
    us1.kill9();
    until(
        "both sensors are UNKNOWN",
        Duration::from_secs(30),
        || async {
            // The state commits with its event, the reason with the
            // verdict's result within a second.
            [state(p0).await, state(p1).await].iter().all(|row| {
                row.state == State::Unknown
                    && row.last_reason.as_deref() == Some("too_few_locations")
            })
        },
    )
    .await;
    // q lists no locations: with eu the only one left, eu decides it alone,
    // and goes on from its verdict (WARNING) to what eu sees (DOWN).
    until("q is DOWN", Duration::from_secs(30), || async {
        state(q).await.state == State::Down
    })
    .await;
    let changes = events(&db).await;
    assert!(
        !changes["s/p1"].iter().any(|(_, to)| *to == State::Down),
        "{changes:?}"
    );
    assert_eq!(
        changes["t/q"],
        [
            (State::Pending, State::Up),
            (State::Up, State::Warning),
            (State::Warning, State::Down)
        ]
    );
}

/// A free port on 127.0.0.1 (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Any node serves the web interface and the API: a sensor added through
/// one node's API is listed by the other's within seconds, and checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_through_one_node_reaches_the_other() {
    let Some(cluster) = cluster("nodes::a_change_made_through_one_node_reaches_the_other").await
    else {
        return;
    };
    let url = cluster.url("portwatch");
    let dir = TempDir::new("nodes-web");
    let ports = Ports::start("127.0.100.3", 1).await;
    apply(
        &url,
        &dir,
        &config("127.0.100.3", &[], "http://192.0.2.1:9/hook"),
    );
    let (code, token, stderr) = crate::util::outcome(&crate::util::portwatch(&[
        "access", "token", "ci", "--scope", "admin", "--db", &url,
    ]));
    assert_eq!(code, 0, "{stderr}");
    let token = token.trim().to_owned();
    let web: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let _nodes: Vec<Node> = ["a", "b"]
        .iter()
        .zip(&web)
        .map(|(name, listen)| {
            Node::start_with(&url, name, &dir, "500ms", &[], &["--listen", listen])
        })
        .collect();
    let db = open(&url).await;
    until("both nodes are live", Duration::from_secs(30), || async {
        live(&db).await.len() == 2
    })
    .await;
    let client = reqwest::Client::new();
    let listed = |address: String| {
        let (client, token) = (client.clone(), token.clone());
        async move {
            let Ok(response) = client
                .get(format!("http://{address}/api/sensors"))
                .bearer_auth(&token)
                .send()
                .await
            else {
                return Vec::new();
            };
            let body: Value = response.json().await.unwrap_or_default();
            body["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| {
                            (
                                i["sensor"].as_str().unwrap_or("").to_owned(),
                                i["state"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    until("node a's API answers", Duration::from_secs(30), || async {
        client
            .get(format!("http://{}/api/sensors", web[0]))
            .bearer_auth(&token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let created = client
        .post(format!("http://{}/api/sensors", web[0]))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "server": "web", "host": "127.0.100.3", "port": ports.ports[0], "interval": "1s"
        }))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    until(
        "node b lists the sensor added through node a",
        Duration::from_secs(15),
        || async {
            listed(web[1].clone())
                .await
                .iter()
                .any(|(sensor, _)| sensor.starts_with("web/"))
        },
    )
    .await;
    until(
        "one of the nodes checks it: it is up",
        Duration::from_secs(15),
        || async {
            listed(web[1].clone())
                .await
                .iter()
                .any(|(sensor, state)| sensor.starts_with("web/") && state == "up")
        },
    )
    .await;
    assert!(ports.counts()[0] > 0);
}
