//! `portwatch check --mode auto` against real daemons (inetd's echo and
//! time, vsftpd, sshd, dnsmasq, nginx over HTTP and HTTPS, dovecot's IMAP
//! and POP3, PostgreSQL, Redis, memcached from Debian's packages; the SMTP
//! server is aiosmtpd, Debian's python3-aiosmtpd, or pip's for a python3
//! that is not Debian's), each on its well-known port inside a network
//! namespace of its own, with test-only configuration. Each daemon runs in
//! a process group of its own, killed whole at the end, so that no worker
//! (nginx's, dovecot's) outlives the test.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Pki, TempDir, bin, json_lines, outcome};

/// A network namespace with loopback up, and the daemons started in it.
struct Host {
    ns: String,
    children: Vec<(String, Child)>,
    dir: TempDir,
}

impl Host {
    fn new() -> Host {
        let ns = format!("pwd{}", std::process::id() % 100_000);
        crate::util::remove_namespace(&ns);
        run(&["ip", "netns", "add", &ns]);
        run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        Host {
            ns,
            children: Vec::new(),
            dir: TempDir::new("daemons"),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path.join(name).display().to_string()
    }

    /// Starts a daemon in the namespace (in the foreground, logging to a
    /// file in the test's directory).
    fn start(&mut self, name: &str, argv: &[&str]) {
        let log = std::fs::File::create(self.dir.path.join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.push((name.to_owned(), child));
    }

    /// portwatch inside the namespace.
    fn portwatch(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.ns, bin()])
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        outcome(&output)
    }

    /// Waits until `port` accepts connections, at most 30 seconds.
    fn wait(&self, name: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, _, _) = self.portwatch(&["check", "-t", "1s", &format!("127.0.0.1:{port}")]);
            if code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {port}: {}",
                std::fs::read_to_string(self.dir.path.join(format!("{name}.log")))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // The whole group: a master and the workers it forked.
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        crate::util::remove_namespace(&self.ns);
    }
}

fn run(argv: &[&str]) {
    let output = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        output.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The first existing path among `candidates` (a glob's first match for
/// the PostgreSQL server, whose path carries its version).
fn find(candidates: &[&str]) -> Option<String> {
    for candidate in candidates {
        if let Some(dir) = candidate.strip_suffix("/*/bin/postgres") {
            let mut versions: Vec<_> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin/postgres"))
                .filter(|p| p.exists())
                .collect();
            versions.sort();
            if let Some(path) = versions.pop() {
                return Some(path.display().to_string());
            }
        } else if std::path::Path::new(candidate).exists() {
            return Some((*candidate).to_owned());
        }
    }
    None
}

/// Whether this machine can run the daemons: root and `ip`; in CI they
/// must all be installed.
fn available(needed: &[(&str, Option<String>)]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, path)| path.is_none())
        .map(|(name, _)| *name)
        .collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root {
        format!("missing {}", missing.join(", "))
    } else {
        "needs root for a network namespace".to_owned()
    };
    crate::util::skip("real_daemons_answer_their_protocols", &why);
    false
}

#[test]
fn real_daemons_answer_their_protocols() {
    let sshd = find(&["/usr/sbin/sshd"]);
    let redis = find(&["/usr/bin/redis-server"]);
    let nginx = find(&["/usr/sbin/nginx"]);
    let memcached = find(&["/usr/bin/memcached"]);
    let dnsmasq = find(&["/usr/sbin/dnsmasq"]);
    let inetd = find(&["/usr/sbin/inetutils-inetd"]);
    let vsftpd = find(&["/usr/sbin/vsftpd"]);
    let dovecot = find(&["/usr/sbin/dovecot"])
        .filter(|_| std::path::Path::new("/usr/lib/dovecot/imap").exists())
        .filter(|_| std::path::Path::new("/usr/lib/dovecot/pop3").exists());
    let postgres = find(&["/usr/lib/postgresql/*/bin/postgres"]);
    let aiosmtpd = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success())
        .then(|| "python3".to_owned());
    let needed = [
        ("sshd (openssh-server)", sshd.clone()),
        ("redis-server", redis.clone()),
        ("nginx", nginx.clone()),
        ("memcached", memcached.clone()),
        ("dnsmasq", dnsmasq.clone()),
        ("inetutils-inetd", inetd.clone()),
        ("vsftpd", vsftpd.clone()),
        ("dovecot (dovecot-imapd, dovecot-pop3d)", dovecot.clone()),
        ("postgres (postgresql)", postgres.clone()),
        ("aiosmtpd (pip)", aiosmtpd),
    ];
    if !available(&needed) {
        return;
    }
    let mut host = Host::new();
    let pki = Pki::new();
    let (cert, key) = pki.leaf_files(&["localhost", "127.0.0.1"]);
    let ca = pki.ca_file();
    // Daemons that drop privileges read these as another user.
    for path in [&cert, &key, &ca] {
        run(&["chmod", "a+r", path]);
    }
    run(&["chmod", "a+rx", &pki_dir(&ca)]);

    let hostkey = host.path("ssh_host_ed25519_key");
    run(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        &hostkey,
    ]);
    std::fs::create_dir_all("/run/sshd").unwrap();
    let sshd = sshd.unwrap();
    host.start(
        "sshd",
        &[
            &sshd,
            "-D",
            "-e",
            "-f",
            "/dev/null",
            "-h",
            &hostkey,
            "-p",
            "22",
            "-o",
            "ListenAddress=127.0.0.1",
            "-o",
            "PidFile=none",
        ],
    );
    host.start(
        "smtp",
        &["python3", "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:25"],
    );
    host.start(
        "submission",
        &[
            "python3",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            "127.0.0.1:587",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--no-requiretls",
        ],
    );
    host.start(
        "smtps",
        &[
            "python3",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            "127.0.0.1:465",
            "--smtpscert",
            &cert,
            "--smtpskey",
            &key,
        ],
    );
    host.start(
        "redis",
        &[
            &redis.unwrap(),
            "--port",
            "6379",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
    );
    host.start(
        "memcached",
        &[
            &memcached.unwrap(),
            "-u",
            "nobody",
            "-l",
            "127.0.0.1",
            "-p",
            "11211",
        ],
    );
    let dns_pid = format!("--pid-file={}", host.path("dnsmasq.pid"));
    host.start(
        "dnsmasq",
        &[
            &dnsmasq.unwrap(),
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "-C",
            "/dev/null",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            &dns_pid,
            "--address=/example.test/192.0.2.1",
        ],
    );
    let root = host.dir.path.display().to_string();
    let inetd_conf = host.path("inetd.conf");
    std::fs::write(
        &inetd_conf,
        "127.0.0.1:echo stream tcp nowait root internal\n127.0.0.1:time stream tcp nowait root internal\n",
    )
    .unwrap();
    host.start("inetd", &[&inetd.unwrap(), "-d", &inetd_conf]);
    std::fs::create_dir_all("/var/run/vsftpd/empty").unwrap();
    let vsftpd_conf = host.path("vsftpd.conf");
    std::fs::write(
        &vsftpd_conf,
        format!(
            "listen=YES\nlisten_address=127.0.0.1\nlisten_port=21\nanonymous_enable=YES\nlocal_enable=NO\nbackground=NO\nseccomp_sandbox=NO\nssl_enable=YES\nallow_anon_ssl=YES\nforce_local_data_ssl=NO\nforce_local_logins_ssl=NO\nrsa_cert_file={cert}\nrsa_private_key_file={key}\n"
        ),
    )
    .unwrap();
    host.start("vsftpd", &[&vsftpd.unwrap(), &vsftpd_conf]);
    let dovecot_conf = host.path("dovecot.conf");
    std::fs::create_dir_all(host.dir.path.join("dovecot-run")).unwrap();
    std::fs::write(
        &dovecot_conf,
        format!(
            "base_dir = {root}/dovecot-run\nlog_path = {root}/dovecot.log\nprotocols = imap pop3\nlisten = 127.0.0.1\nssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\ndisable_plaintext_auth = no\nmail_location = maildir:{root}/mail\npassdb {{\n  driver = static\n  args = nopassword=y\n}}\nuserdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={root}/mail\n}}\n"
        ),
    )
    .unwrap();
    host.start("dovecot", &[&dovecot.unwrap(), "-F", "-c", &dovecot_conf]);
    let conf = host.path("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\npid {root}/nginx.pid;\nerror_log {root}/nginx-error.log;\nevents {{}}\nhttp {{\n access_log off;\n client_body_temp_path {root};\n proxy_temp_path {root};\n fastcgi_temp_path {root};\n uwsgi_temp_path {root};\n scgi_temp_path {root};\n server {{ listen 127.0.0.1:80; location / {{ return 200 \"ok\\n\"; }} }}\n server {{ listen 127.0.0.1:443 ssl; ssl_certificate {cert}; ssl_certificate_key {key}; location / {{ return 200 \"ok\\n\"; }} location /health {{ default_type application/json; return 200 '{{\"status\":\"ok\",\"db\":{{\"up\":true}}}}'; }} location /old {{ return 301 /health; }} location /private {{ auth_basic \"members\"; auth_basic_user_file {root}/htpasswd; default_type text/plain; alias {root}/private.txt; }} }}\n}}\n"
        ),
    )
    .unwrap();
    // nginx reads {PLAIN} passwords as they are; `return` would answer
    // before the password is asked for, so the page is a file.
    std::fs::write(host.path("htpasswd"), "mon:{PLAIN}s3cret\n").unwrap();
    std::fs::write(host.path("private.txt"), "members only\n").unwrap();
    run(&[
        "chmod",
        "a+r",
        &host.path("htpasswd"),
        &host.path("private.txt"),
    ]);
    host.start(
        "nginx",
        &[
            &nginx.unwrap(),
            "-c",
            &conf,
            "-p",
            &root,
            "-e",
            &format!("{root}/nginx-error.log"),
        ],
    );
    // PostgreSQL refuses to run as root: its cluster belongs to nobody.
    let pgdata = host.path("pg");
    let postgres = postgres.unwrap();
    let initdb = postgres.replace("/bin/postgres", "/bin/initdb");
    run(&["chmod", "a+rwx", &root]);
    run(&[
        "runuser", "-u", "nobody", "--", &initdb, "-D", &pgdata, "-A", "trust", "-U", "postgres",
    ]);
    host.start(
        "postgres",
        &[
            "runuser",
            "-u",
            "nobody",
            "--",
            &postgres,
            "-D",
            &pgdata,
            "-k",
            &root,
            "-p",
            "5432",
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "ssl=on",
            "-c",
            &format!("ssl_cert_file={cert}"),
            "-c",
            &format!("ssl_key_file={}", copy_key_for(&key, &root)),
            "-c",
            "logging_collector=off",
        ],
    );
    for (name, port) in [
        ("inetd", 7),
        ("inetd", 37),
        ("vsftpd", 21),
        ("dovecot", 110),
        ("dovecot", 143),
        ("dovecot", 993),
        ("dovecot", 995),
        ("sshd", 22),
        ("smtp", 25),
        ("submission", 587),
        ("smtps", 465),
        ("redis", 6379),
        ("memcached", 11211),
        ("dnsmasq", 53),
        ("nginx", 80),
        ("nginx", 443),
        ("postgres", 5432),
    ] {
        host.wait(name, port);
    }

    let targets = [
        "7", "21", "22", "25", "37", "465", "53", "80", "110", "143", "443", "993", "995", "5432",
        "6379", "11211",
    ]
    .map(|p| format!("127.0.0.1:{p}"));
    let mut args = vec![
        "check",
        "--mode",
        "auto",
        "--format",
        "json",
        "--ca-file",
        &ca,
    ];
    args.extend(targets.iter().map(String::as_str));
    let (code, stdout, stderr) = host.portwatch(&args);
    let results = json_lines(&stdout);
    let by_port = |port: u64| -> &Value {
        results
            .iter()
            .find(|r| r["port"] == port)
            .unwrap_or_else(|| panic!("no result for {port}: {stdout} {stderr}"))
    };
    for result in &results {
        assert_eq!(result["status"], "up", "{result}");
    }
    assert_eq!(code, 0, "{stdout}");
    let detail = |port: u64, key: &str| {
        by_port(port)["details"][key]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(by_port(7)["protocol"], "echo");
    assert_eq!(by_port(37)["protocol"], "time");
    let offset: i64 = detail(37, "offset_s").parse().unwrap();
    assert!(offset.abs() <= 5, "{}", by_port(37));
    assert_eq!(by_port(21)["protocol"], "ftp");
    assert!(detail(21, "greeting").contains("vsFTPd"), "{}", by_port(21));
    assert!(
        detail(143, "greeting").contains("Dovecot"),
        "{}",
        by_port(143)
    );
    assert!(
        detail(110, "greeting").contains("Dovecot"),
        "{}",
        by_port(110)
    );
    assert_eq!(by_port(993)["protocol"], "imap+tls");
    assert_eq!(by_port(995)["protocol"], "pop3+tls");
    assert_eq!(by_port(995)["tls"]["cert"]["subject"], "CN=localhost");
    assert_eq!(by_port(22)["protocol"], "ssh");
    assert!(
        detail(22, "software").starts_with("OpenSSH_"),
        "{}",
        by_port(22)
    );
    assert_eq!(by_port(25)["protocol"], "smtp");
    assert!(
        detail(25, "extensions").contains("8BITMIME"),
        "{}",
        by_port(25)
    );
    assert_eq!(by_port(465)["protocol"], "smtp+tls");
    assert_eq!(by_port(465)["tls"]["cert"]["subject"], "CN=localhost");
    assert_eq!(by_port(53)["protocol"], "domain");
    // dnsmasq without upstream servers refuses recursion for the root: any
    // well-formed answer proves a DNS server, and this is the one it gives.
    assert_eq!(detail(53, "rcode"), "REFUSED", "{}", by_port(53));
    assert_eq!(detail(53, "answers"), "0", "{}", by_port(53));
    assert_eq!(by_port(80)["protocol"], "http");
    assert_eq!(detail(80, "status"), "200 OK");
    assert!(detail(80, "server").starts_with("nginx"), "{}", by_port(80));
    assert_eq!(by_port(443)["protocol"], "https");
    assert!(
        detail(443, "server").starts_with("nginx"),
        "{}",
        by_port(443)
    );
    assert_eq!(
        by_port(443)["tls"]["cert"]["issuer"],
        "CN=portwatch test CA"
    );
    assert!(by_port(443)["tls_time_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(by_port(5432)["protocol"], "postgresql");
    assert_eq!(detail(5432, "tls"), "offered");
    assert_eq!(by_port(6379)["protocol"], "redis");
    assert_eq!(detail(6379, "answer"), "+PONG");
    assert_eq!(by_port(11211)["protocol"], "memcached");
    assert!(!detail(11211, "version").is_empty());

    // STARTTLS: SMTP submission and PostgreSQL upgrade and show their
    // certificate.
    for target in [
        "127.0.0.1:21",
        "127.0.0.1:110",
        "127.0.0.1:143",
        "127.0.0.1:587",
        "127.0.0.1:5432",
    ] {
        let (code, stdout, _) = host.portwatch(&[
            "check",
            "--mode",
            "auto",
            "--tls",
            "starttls",
            "--format",
            "json",
            "--ca-file",
            &ca,
            target,
        ]);
        let result = &json_lines(&stdout)[0];
        assert_eq!(code, 0, "{result}");
        assert!(
            result["protocol"].as_str().unwrap().ends_with("+starttls"),
            "{result}"
        );
        assert_eq!(result["tls"]["cert"]["subject"], "CN=localhost", "{result}");
    }
    // nginx over HTTPS: content, JSON, a redirect followed, basic auth.
    let secret = host.path("site.pw");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let https = |args: &[&str]| {
        let mut all = vec!["check", "--format", "json", "--ca-file", &ca];
        all.extend_from_slice(args);
        all.push("localhost:443");
        let (code, stdout, stderr) = host.portwatch(&all);
        let result = json_lines(&stdout)
            .pop()
            .unwrap_or_else(|| panic!("{stderr}"));
        (code, result)
    };
    let (code, health) = https(&["--http-path", "/health", "--http-json", "db.up=true"]);
    assert_eq!(
        (code, health["protocol"].as_str()),
        (0, Some("https")),
        "{health}"
    );
    let (code, followed) = https(&[
        "--http-path",
        "/old",
        "--http-follow",
        "--http-json",
        "status=ok",
    ]);
    assert_eq!(code, 0, "{followed}");
    assert!(
        followed["message"]
            .as_str()
            .unwrap()
            .starts_with("after 1 redirect to https://localhost:443/health"),
        "{followed}"
    );
    let (code, wrong) = https(&["--http-path", "/health", "--http-contains", "degraded"]);
    assert_eq!(
        (code, wrong["reason"].as_str()),
        (2, Some("content_mismatch")),
        "{wrong}"
    );
    let (code, denied) = https(&["--http-path", "/private", "--http-contains", "members"]);
    assert_eq!(code, 2, "{denied}");
    assert!(
        denied["message"].as_str().unwrap().contains("HTTP 401"),
        "{denied}"
    );
    let (code, member) = https(&[
        "--http-path",
        "/private",
        "--http-contains",
        "members only",
        "--http-auth",
        "basic",
        "--http-user",
        "mon",
        "--http-secret-file",
        &secret,
    ]);
    assert_eq!(code, 0, "{member}");

    // A stopped service is DOWN, refused: the check is not fooled.
    let (_, child) = host
        .children
        .iter_mut()
        .find(|(n, _)| n == "redis")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let (code, stdout, _) = host.portwatch(&[
        "check",
        "--mode",
        "auto",
        "--format",
        "json",
        "127.0.0.1:6379",
    ]);
    assert_eq!(code, 2);
    assert_eq!(json_lines(&stdout)[0]["reason"], "refused");
}

fn pki_dir(ca: &str) -> String {
    std::path::Path::new(ca)
        .parent()
        .unwrap()
        .display()
        .to_string()
}

/// PostgreSQL wants its key owned by its user and private.
fn copy_key_for(key: &str, root: &str) -> String {
    let copy = format!("{root}/pg-server.key");
    std::fs::copy(key, &copy).unwrap();
    run(&["chown", "nobody", &copy]);
    run(&["chmod", "600", &copy]);
    copy
}
