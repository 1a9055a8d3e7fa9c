//! The test harness: running the binary, loopback listeners, and the
//! network-namespace lab.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// The portwatch binary built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portwatch")
}

/// Runs portwatch with `args`.
pub fn portwatch(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run portwatch")
}

/// The exit code, stdout and stderr of a run.
pub fn outcome(output: &Output) -> (i32, String, String) {
    (
        output.status.code().expect("portwatch exited normally"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `portwatch check --format json` with `args` against `target`, with a
/// `--timeout` of `timeout` unless `args` gives one: the exit code and the
/// one result.
pub fn check_one(target: &str, args: &[&str], timeout: &str) -> (i32, serde_json::Value) {
    let mut all = vec!["check", "--format", "json"];
    if !args.contains(&"--timeout") {
        all.extend(["--timeout", timeout]);
    }
    all.extend_from_slice(args);
    all.push(target);
    let (code, stdout, stderr) = outcome(&portwatch(&all));
    let mut results = json_lines(&stdout);
    assert_eq!(
        results.len(),
        1,
        "{args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    (code, results.remove(0))
}

/// A result's message.
pub fn said(result: &serde_json::Value) -> &str {
    result["message"].as_str().unwrap_or("")
}

/// Each of `cases` (`check` options, and what the error says) is refused
/// before any packet: exit 3 and one line on stderr that says it.
pub fn assert_refused(cases: &[(&[&str], &str)]) {
    for (args, says) in cases {
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        all.push("127.0.0.1:9");
        let (code, _, stderr) = outcome(&portwatch(&all));
        assert_eq!(code, 3, "bad input: {args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

/// A child process, killed (and reaped) when dropped, also when a test
/// panics.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Parses JSON Lines output.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
        })
        .collect()
}

/// A listening socket on an ephemeral loopback port.
pub fn listener(ip: &str) -> TcpListener {
    TcpListener::bind((ip, 0)).expect("bind a loopback listener")
}

/// A loopback port that refuses connections: bound (so nothing else takes
/// it) but not listening, so a SYN gets RST.
pub fn closed_port(ip: &str) -> (socket2::Socket, SocketAddr) {
    let address: SocketAddr = format!(
        "{}:0",
        if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_owned()
        }
    )
    .parse()
    .unwrap();
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.bind(&address.into()).unwrap();
    let bound = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, bound)
}

/// Stops `listener` but keeps its port bound (not listening): connects to
/// it are refused, and no other program can take the port meanwhile.
pub fn close_listener(listener: TcpListener) -> socket2::Socket {
    let address = listener.local_addr().unwrap();
    drop(listener);
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&address.into()).unwrap();
    socket
}

/// Whether the machine can host the lab: root, `ip` and `iptables`.
/// In CI the lab must run, so a missing piece fails instead of skipping.
pub fn lab_available(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tools = ["ip", "iptables", "ip6tables", "python3"]
        .iter()
        .all(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if root && tools {
        return true;
    }
    skip(
        test,
        "the network lab needs root, ip, iptables, ip6tables and python3",
    );
    false
}

/// Records that `test` cannot run here, and why: the suite's one rule
/// (fails in CI, logged under `scripts/test`, fails elsewhere naming it).
pub fn skip(test: &str, why: &str) {
    portwatch_testpg::skip(test, why);
}

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Two network namespaces joined by a veth pair, using documentation
/// addresses only:
///
/// - client: 192.0.2.1/24 and 2001:db8::1/64, no default route;
/// - server: 192.0.2.2/24 and 2001:db8::2/64, where iptables rules make the
///   faults, one TCP port each:
///   80 and 87 listen; 81 DROP; 82 REJECT tcp-reset; 83 host unreachable;
///   84 network unreachable; 85 admin prohibited; 86 nothing (RST);
///   over IPv6, port 87 is also dropped (for Happy Eyeballs);
/// - the server also holds .3 to .6 (and ::3 to ::6), where echo requests
///   meet the faults: .3 DROP, .4 host unreachable, .5 network
///   unreachable, .6 admin prohibited (.2 answers them);
///
/// 192.0.2.99 and 2001:db8::99 are on-link with no host behind them;
/// 198.51.100.0/24 and 2001:db8:ffff::/48 have no route.
///
/// Everything is removed on drop, also when a test panics.
pub struct Lab {
    pub client: String,
    pub server: String,
    listener: Option<Child>,
    etc: PathBuf,
}

impl Lab {
    /// Builds the lab.
    pub fn new() -> Lab {
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let mut lab = Lab {
            client: format!("pwc{id}"),
            server: format!("pws{id}"),
            listener: None,
            etc: PathBuf::from(format!("/etc/netns/pwc{id}")),
        };
        let (c, s) = (lab.client.clone(), lab.server.clone());
        let (vc, vs) = (format!("vc{id}"), format!("vs{id}"));
        sh(&format!("ip netns add {c}"));
        sh(&format!("ip netns add {s}"));
        sh(&format!(
            "ip link add {vc} netns {c} type veth peer name {vs} netns {s}"
        ));
        for (ns, dev, v4, v6) in [
            (&c, &vc, "192.0.2.1/24", "2001:db8::1/64"),
            (&s, &vs, "192.0.2.2/24", "2001:db8::2/64"),
        ] {
            sh(&format!("ip -n {ns} addr add {v4} dev {dev}"));
            sh(&format!("ip -n {ns} addr add {v6} dev {dev} nodad"));
            sh(&format!("ip -n {ns} link set {dev} up"));
            sh(&format!("ip -n {ns} link set lo up"));
        }
        // The server answers every rejected SYN with ICMP at once: the
        // kernel's ICMP rate limit would otherwise delay the answers after a
        // burst of six, which is the kernel's behaviour, not portwatch's.
        sh(&format!(
            "ip netns exec {s} sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0"
        ));
        // Give up on ARP/ND for an absent host after 0.3 s instead of 3 s.
        for family in ["ipv4", "ipv6"] {
            sh(&format!(
                "ip netns exec {c} sysctl -qw net.{family}.neigh.{vc}.mcast_solicit=3 net.{family}.neigh.{vc}.retrans_time_ms=100"
            ));
        }
        let rules4 = [
            ("81", "DROP", ""),
            ("82", "REJECT", "--reject-with tcp-reset"),
            ("83", "REJECT", "--reject-with icmp-host-unreachable"),
            ("84", "REJECT", "--reject-with icmp-net-unreachable"),
            ("85", "REJECT", "--reject-with icmp-admin-prohibited"),
        ];
        let rules6 = [
            ("81", "DROP", ""),
            ("82", "REJECT", "--reject-with tcp-reset"),
            ("83", "REJECT", "--reject-with icmp6-addr-unreachable"),
            ("84", "REJECT", "--reject-with icmp6-no-route"),
            ("85", "REJECT", "--reject-with icmp6-adm-prohibited"),
            ("87", "DROP", ""),
        ];
        for (tool, rules) in [("iptables", &rules4[..]), ("ip6tables", &rules6[..])] {
            for (port, action, extra) in rules {
                sh(&format!(
                    "ip netns exec {s} {tool} -A INPUT -p tcp --dport {port} -j {action} {extra}"
                ));
            }
        }
        // Echo requests to .3 to .6 meet the faults.
        let pings = [
            ("3", "DROP", "", ""),
            (
                "4",
                "REJECT",
                "--reject-with icmp-host-unreachable",
                "--reject-with icmp6-addr-unreachable",
            ),
            (
                "5",
                "REJECT",
                "--reject-with icmp-net-unreachable",
                "--reject-with icmp6-no-route",
            ),
            (
                "6",
                "REJECT",
                "--reject-with icmp-admin-prohibited",
                "--reject-with icmp6-adm-prohibited",
            ),
        ];
        for (last, action, reject4, reject6) in pings {
            sh(&format!("ip -n {s} addr add 192.0.2.{last}/32 dev {vs}"));
            sh(&format!(
                "ip -n {s} addr add 2001:db8::{last}/128 dev {vs} nodad"
            ));
            sh(&format!(
                "ip netns exec {s} iptables -A INPUT -d 192.0.2.{last} -p icmp --icmp-type echo-request -j {action} {reject4}"
            ));
            sh(&format!(
                "ip netns exec {s} ip6tables -A INPUT -d 2001:db8::{last} -p icmpv6 --icmpv6-type echo-request -j {action} {reject6}"
            ));
        }
        // Names resolve from the client's own /etc/hosts (ip netns exec
        // bind-mounts /etc/netns/NAME/*), and its resolver asks the server,
        // where no DNS server runs.
        std::fs::create_dir_all(&lab.etc).unwrap();
        std::fs::write(
            lab.etc.join("hosts"),
            "127.0.0.1 localhost\n192.0.2.2 server.test\n2001:db8::2 server.test dual.test\n192.0.2.2 dual.test\n2001:db8::2 v6only.test\n",
        )
        .unwrap();
        std::fs::write(
            lab.etc.join("resolv.conf"),
            "nameserver 192.0.2.2\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        lab.listener = Some(listen(&s, &[80, 87]));
        wait_for_link(&c);
        lab
    }

    /// Runs portwatch inside the client namespace.
    pub fn portwatch(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.client, bin()])
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run portwatch in the client namespace")
    }

    /// Runs `portwatch check --format json` in the client namespace and
    /// returns the exit code and the results by target.
    pub fn check_json(&self, extra: &[&str], targets: &[&str]) -> (i32, Vec<Value>) {
        let mut args = vec!["check", "--format", "json"];
        args.extend_from_slice(extra);
        args.extend_from_slice(targets);
        let output = self.portwatch(&args);
        let (code, stdout, stderr) = outcome(&output);
        let results = json_lines(&stdout);
        assert_eq!(
            results.len(),
            targets.len(),
            "one line per target; stderr: {stderr}"
        );
        (code, results)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.listener.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.client, &self.server] {
            remove_namespace(ns);
        }
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// Runs `work` with a listener on 127.0.0.1 on a runtime of its own, in a
/// thread of its own (a test's receiver or scripted server); returns the
/// port.
pub fn serve_in_thread<F, Fut>(work: F) -> u16
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            work(tokio::net::TcpListener::from_std(listener).unwrap()).await;
        });
    });
    port
}

/// Removes network namespace `ns` if it exists (a namespace left by an
/// earlier run, or this test's own), without noise when it does not.
pub fn remove_namespace(ns: &str) {
    if std::path::Path::new("/run/netns").join(ns).exists() {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
}

/// Starts a listener on `ports` (IPv4 and IPv6) inside namespace `ns`, and
/// waits until it says it is listening.
fn listen(ns: &str, ports: &[u16]) -> Child {
    let script = format!(
        "import socket, sys\n\
         socks = []\n\
         for port in {ports:?}:\n\
         \x20   s = socket.socket(socket.AF_INET6)\n\
         \x20   s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
         \x20   s.bind(('::', port))\n\
         \x20   s.listen(128)\n\
         \x20   socks.append(s)\n\
         print('ready', flush=True)\n\
         sys.stdin.read()\n"
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the lab listener");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the lab listener did not start");
    child
}

/// Waits until the client reaches the server's listener over IPv4 and
/// IPv6: a new veth link (and IPv6 on it) needs a moment before neighbour
/// discovery answers. Polls a real connection, for at most 10 seconds.
fn wait_for_link(client: &str) {
    let script = "import socket, sys, time\n\
                  deadline = time.monotonic() + 10\n\
                  for address in (('192.0.2.2', 80), ('2001:db8::2', 80)):\n\
                  \x20   while True:\n\
                  \x20       try:\n\
                  \x20           socket.create_connection(address, timeout=0.5).close()\n\
                  \x20           break\n\
                  \x20       except OSError as error:\n\
                  \x20           if time.monotonic() > deadline:\n\
                  \x20               sys.exit(f'{address} unreachable: {error}')\n\
                  \x20           time.sleep(0.05)\n";
    sh(&format!("ip netns exec {client} python3 -c \"{script}\""));
}

pub fn sh(command: &str) {
    let output = Command::new("sh")
        .args(["-c", command])
        .output()
        .expect("run sh");
    assert!(
        output.status.success(),
        "lab setup failed: {command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The field `key` of a JSON result as a string ("" for null).
pub fn field(result: &Value, key: &str) -> String {
    match &result[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("portwatch-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A calendar date: year, month, day.
pub type Date = (i32, u8, u8);

/// A CA and leaf certificates for the TLS tests.
pub struct Pki {
    dir: TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portwatch test CA");
        let ca = params.self_signed(&key).unwrap();
        std::fs::write(dir.path.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    pub fn ca_file(&self) -> String {
        self.dir.path.join("ca.pem").display().to_string()
    }

    /// A leaf certificate for `names` (the first is also the subject's
    /// common name), signed by the CA, valid in `[from, until]` or, without
    /// them, in rcgen's default span (1975 to 4096).
    fn leaf(
        &self,
        names: &[&str],
        validity: Option<(Date, Date)>,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        if let Some((from, until)) = validity {
            params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
            params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        }
        (params.signed_by(&key, &self.issuer).unwrap(), key)
    }

    /// A leaf certificate for `names` written as PEM files (readable by
    /// daemons that drop privileges); their paths.
    pub fn leaf_files(&self, names: &[&str]) -> (String, String) {
        let (cert, key) = self.leaf(names, None);
        let (cert_path, key_path) = (
            self.dir.path.join("leaf.pem"),
            self.dir.path.join("leaf.key"),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (
            cert_path.display().to_string(),
            key_path.display().to_string(),
        )
    }

    /// A server config with a leaf for `names`, valid in `[from, until]`.
    pub fn server(
        &self,
        names: &[&str],
        from: Date,
        until: Date,
    ) -> Arc<tokio_rustls::rustls::ServerConfig> {
        use tokio_rustls::rustls;
        let (cert, key) = self.leaf(names, Some((from, until)));
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
        Arc::new(config)
    }
}

/// The store a test runs the real binary on: the SQLite file in the test's
/// directory, or a database on a PostgreSQL cluster of the test's own.
/// Tests that take one run the same steps on both backends.
pub enum TestStore {
    Sqlite(PathBuf),
    /// The cluster (held until the test ends) and the database's URL.
    Postgres(#[allow(dead_code)] portwatch_testpg::Cluster, String),
}

impl TestStore {
    /// `portwatch.db` in `dir`.
    pub fn sqlite(dir: &std::path::Path) -> TestStore {
        TestStore::Sqlite(dir.join("portwatch.db"))
    }

    /// A new cluster with an empty database; `None` where the suite's rule
    /// lets a test without PostgreSQL go.
    pub fn postgres(test: &str) -> Option<TestStore> {
        let cluster = portwatch_testpg::Cluster::for_test(test)?;
        cluster.create_database("portwatch").unwrap();
        let url = cluster.url("portwatch");
        Some(TestStore::Postgres(cluster, url))
    }

    /// The value of `--db`.
    pub fn arg(&self) -> String {
        match self {
            TestStore::Sqlite(path) => path.display().to_string(),
            TestStore::Postgres(_, url) => url.clone(),
        }
    }

    /// Runs `read` on the store (which must exist) on a runtime of its
    /// own; `None` while it cannot be opened.
    pub fn read<T, F, Fut>(&self, read: F) -> Option<T>
    where
        F: FnOnce(portwatch::store::Backend) -> Fut,
        Fut: std::future::Future<Output = Result<T, portwatch::store::StoreError>>,
    {
        let location = portwatch::store::location::Location::parse(&self.arg()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let db = portwatch::store::Backend::open_existing(&location, 2)
                .await
                .ok()?;
            read(db).await.ok()
        })
    }
}
