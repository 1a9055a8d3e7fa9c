//! A throwaway PostgreSQL cluster for tests, started with the server's own
//! tools (`initdb`, `pg_ctl`) from the system's PostgreSQL (Debian's
//! `postgresql` package), in a temporary directory, listening on a Unix
//! socket in that directory and on a free loopback port. Dropping the
//! [`Cluster`] stops the server and removes the directory.
//!
//! PostgreSQL refuses to run as root: as root, the cluster belongs to
//! `nobody` and every tool runs through `runuser`.
//!
//! It also holds [`skip`], the suite's rule for a test that cannot run
//! here. This crate names no other portwatch crate; any layer's tests may
//! use it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Records that `test` cannot run here, and why, by the test suite's rule
/// (shared by every portwatch test that needs something from the
/// machine). A skip is never silent:
///
/// - in CI (`CI` set) it fails the test, since CI installs everything;
/// - under `scripts/test` (which sets `PORTWATCH_SKIP_LOG`) it is written
///   to that file, and the script lists every skip at the end with the
///   command that enables it;
/// - anywhere else it fails the test, saying to run `scripts/test`.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}, and CI must provide it (.ci/run installs it)");
    }
    match std::env::var_os("PORTWATCH_SKIP_LOG") {
        Some(log) => {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("open the skip log");
            writeln!(file, "{test}: {why}").expect("write the skip log");
            eprintln!("skip {test}: {why}");
        }
        None => panic!(
            "{test}: {why}. Run the tests with scripts/test: as root it installs what every test needs; without root it runs the rest and lists what it skipped"
        ),
    }
}

/// The role every test database belongs to (trust authentication).
pub const USER: &str = "portwatch";

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_nobody: bool,
}

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// Starts a new cluster, or says why it cannot (no PostgreSQL server
    /// installed, or a tool failed, with its output).
    pub fn start() -> Result<Cluster, String> {
        let bin = server_bin().ok_or_else(|| {
            "no PostgreSQL server found (initdb and pg_ctl under /usr/lib/postgresql/*/bin, or pg_config --bindir); install Debian's postgresql package".to_owned()
        })?;
        let mut cluster = Cluster::in_new_dir(bin, nix_is_root())?;
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            true,
        )?;
        cluster.port = free_port()?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    /// A cluster not started yet, in a new directory of its own (owned by
    /// `nobody` when `as_nobody`).
    fn in_new_dir(bin: PathBuf, as_nobody: bool) -> Result<Cluster, String> {
        let dir = std::env::temp_dir().join(format!(
            "portwatch-pg-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cluster = Cluster {
            dir,
            bin,
            port: 0,
            as_nobody,
        };
        if as_nobody {
            cluster.run("chown", &["-R", "nobody", &cluster.dir_str()], false)?;
        }
        Ok(cluster)
    }

    /// [`Cluster::start`] for the test named `test`; when it cannot start,
    /// the suite's rule ([`skip`]) applies and, where that lets the test
    /// go on, `None` is returned.
    pub fn for_test(test: &str) -> Option<Cluster> {
        let why = match Cluster::start() {
            Ok(cluster) => return Some(cluster),
            Err(why) => why,
        };
        skip(test, &why);
        None
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// A URL for `database` over TCP on loopback, as user [`USER`].
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database (owned by [`USER`]).
    pub fn create_database(&self, name: &str) -> Result<(), String> {
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", &self.dir_str(), "-p", &port, "-U", USER, name],
            true,
        )
    }

    /// Runs SQL with psql on `database`, returning what it printed
    /// (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        self.output(
            "psql",
            &[
                "-h",
                &self.dir_str(),
                "-p",
                &port,
                "-U",
                USER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        )
    }

    /// Stops the server (fast shutdown); [`Cluster::restart`] starts it again
    /// on the same port.
    pub fn stop(&self) -> Result<(), String> {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"], true)
    }

    /// Writes a file into the cluster's directory, owned by the server's
    /// user and readable by it only (as PostgreSQL wants a TLS key), and
    /// returns its path.
    pub fn install_file(&self, name: &str, contents: &[u8]) -> Result<PathBuf, String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if self.as_nobody {
            self.run("chown", &["nobody", &path.display().to_string()], false)?;
        }
        Ok(path)
    }

    /// Changes server settings (`ALTER SYSTEM`) and reloads them.
    pub fn configure(&self, settings: &[(&str, &str)]) -> Result<(), String> {
        for (name, value) in settings {
            self.psql(
                "postgres",
                &format!("ALTER SYSTEM SET {name} = '{}'", value.replace('\'', "''")),
            )?;
        }
        self.psql("postgres", "SELECT pg_reload_conf()").map(drop)
    }

    /// Freezes the server and its backends (SIGSTOP), as a network cut
    /// or a hung host looks to a client: connections stay open, nothing
    /// answers. [`Cluster::thaw`] lets them go on.
    pub fn freeze(&self) -> Result<(), String> {
        self.signal("-STOP")
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) -> Result<(), String> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), String> {
        let pid_file = self.dir.join("data/postmaster.pid");
        let main = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("{}: {e}", pid_file.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let mut pids = vec![main.clone()];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid …: the parent is the fourth field, after
            // the command's closing parenthesis.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if parent == Some(main.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let mut args = vec![signal];
        args.extend(pids.iter().map(String::as_str));
        self.run("kill", &args, false)
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// Kills the server as a crash would (`pg_ctl stop -m immediate`: no
    /// checkpoint, clients cut off at once).
    pub fn kill(&self) -> Result<(), String> {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "stop"],
            true,
        )
    }

    /// A streaming-replication standby of this cluster, made with
    /// `pg_basebackup -R` and started on a loopback port of its own. It is
    /// read-only until [`Cluster::promote`].
    pub fn standby(&self) -> Result<Cluster, String> {
        let mut standby = Cluster::in_new_dir(self.bin.clone(), self.as_nobody)?;
        let port = self.port.to_string();
        let data = standby.data();
        standby.run(
            "pg_basebackup",
            &[
                "-h",
                &self.dir_str(),
                "-p",
                &port,
                "-U",
                USER,
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            true,
        )?;
        standby.port = free_port()?;
        standby.pg_ctl_start()?;
        Ok(standby)
    }

    /// Promotes a standby to a primary that takes writes, and waits until
    /// it does.
    pub fn promote(&self) -> Result<(), String> {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-w", "-t", "60", "promote"], true)
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.join("server.log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c logging_collector=off",
            self.port,
            self.dir_str()
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
            true,
        )
        .map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn dir_str(&self) -> String {
        self.dir.display().to_string()
    }

    fn command(&self, tool: &str, server_tool: bool) -> Command {
        let program = if server_tool {
            self.bin.join(tool).display().to_string()
        } else {
            tool.to_owned()
        };
        if self.as_nobody && server_tool {
            let mut command = Command::new("runuser");
            command.args(["-u", "nobody", "--", &program]);
            command
        } else {
            Command::new(program)
        }
    }

    fn output(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let output = self
            .command(tool, true)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_owned())
        } else {
            Err(format!(
                "{tool} {}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn run(&self, tool: &str, args: &[&str], server_tool: bool) -> Result<(), String> {
        if server_tool {
            return self.output(tool, args).map(drop);
        }
        let status = self
            .command(tool, false)
            .args(args)
            .status()
            .map_err(|e| format!("{tool}: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("{tool} {status}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run(
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "stop"],
            true,
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of the newest installed PostgreSQL server's tools.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    bin.join("pg_ctl").exists().then_some(bin)
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

fn nix_is_root() -> bool {
    // The effective user id, from /proc (no libc binding needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_answers_restarts_and_is_removed() {
        let Some(cluster) = Cluster::for_test("testpg::a_cluster_starts") else {
            return;
        };
        cluster.create_database("t").unwrap();
        assert_eq!(cluster.psql("t", "select 1 + 1").unwrap(), "2");
        cluster.stop().unwrap();
        assert!(cluster.psql("t", "select 1").is_err(), "stopped");
        cluster.restart().unwrap();
        assert_eq!(cluster.psql("t", "select current_user").unwrap(), USER);
        let dir = cluster.socket_dir().to_owned();
        drop(cluster);
        assert!(!dir.exists());
    }
}
