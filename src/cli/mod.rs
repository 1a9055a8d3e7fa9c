//! The command line: argument definitions, one file per subcommand, and the
//! output formats.
//!
//! Arguments are parsed in two steps: clap reads the raw flags (with value
//! parsers that refuse bad targets, durations and port lists before any
//! packet is sent), then each subcommand turns them into validated settings.

mod apply;
mod check;
mod copy;
mod output;
mod pause;
mod ports;
mod report;
mod scan;
mod serve;
mod status;

use std::ffi::OsString;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::probe::{Family, Services, Target};

/// Exit code for UNKNOWN and for usage or input errors (Nagios convention).
pub const EXIT_UNKNOWN: u8 = 3;

const ABOUT: &str = "A server monitor built around a precise TCP port sensor.

portwatch connects to host:port and reports the service UP with its connect
time, or DOWN with the exact reason: refused, timeout, host_unreachable,
network_unreachable, admin_prohibited (a firewall's ICMP reject) or dns_error.";

const EXAMPLES: &str = "Examples:
  portwatch serve --config portwatch.toml
  portwatch status
  portwatch report web1 --since 7d
  portwatch check localhost:ssh
  portwatch check --format json example.com:443 [2001:db8::1]:22
  portwatch check -w 200ms -c 1s --format nagios db.example:postgresql
  portwatch check --expect-closed host.example:telnet
  portwatch scan localhost --ports 1-1024,3306,ssh
  portwatch ports mail";

/// portwatch: check TCP services and say exactly why they are down.
#[derive(Debug, Parser)]
#[command(name = "portwatch", version, about = ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that TCP services accept connections (a drop-in for check_tcp).
    #[command(after_help = check::examples())]
    Check(CheckArgs),
    /// Ping hosts (ICMP echo): loss and round trips, usable as a Nagios
    /// plugin.
    #[command(after_help = check::PING_EXAMPLES)]
    Ping(PingArgs),
    /// Scan a range of ports on one host: open, closed or filtered.
    #[command(after_help = scan::EXAMPLES)]
    Scan(ScanArgs),
    /// Look up the well-known port table by number, name or words.
    #[command(after_help = ports::EXAMPLES)]
    Ports(PortsArgs),
    /// Run the monitor: sensors checked on schedule, stored in the database.
    #[command(after_help = serve::EXAMPLES)]
    Serve(ServeArgs),
    /// Make the store monitor what a portwatch.toml declares.
    #[command(after_help = apply::EXAMPLES)]
    Apply(ApplyArgs),
    /// Show every sensor's state, since when, and its last result.
    #[command(after_help = status::EXAMPLES)]
    Status(StatusArgs),
    /// Uptime by time and by requests, outages and connect times.
    #[command(after_help = report::EXAMPLES)]
    Report(ReportArgs),
    /// Pause sensors (a sensor, a server, or a group): they are not checked.
    #[command(
        after_help = "Examples:\n  portwatch pause web1/https\n  portwatch pause web1\n  portwatch pause Production/Web"
    )]
    Pause(NameArgs),
    /// Resume paused sensors.
    #[command(
        after_help = "Examples:\n  portwatch resume web1/https\n  portwatch resume Production"
    )]
    Resume(NameArgs),
    /// Make a new push URL for a heartbeat sensor (printed once; the old
    /// one stops working).
    #[command(
        name = "push-url",
        after_help = "Examples:\n  portwatch push-url backup/nightly --public-url https://monitor.example.com\n  curl -fsS -m 10 \"$(portwatch push-url backup/nightly)\"   # test it at once"
    )]
    PushUrl(PushUrlArgs),
    /// Send a test notification through a channel and report the result.
    #[command(
        subcommand,
        after_help = "Examples:\n  portwatch notify test ops-webhook"
    )]
    Notify(NotifyCommand),
    /// Move a store: copy everything from one store into a new one
    /// (SQLite or PostgreSQL, either way).
    #[command(
        subcommand,
        after_help = "Examples:\n  portwatch store copy --from portwatch.db --to postgres://portwatch@db.example/portwatch\n  portwatch store copy --from postgres://portwatch@db.example/portwatch --to backup.db"
    )]
    Store(StoreCommand),
    /// Create API tokens and users for the web interface and API.
    #[command(
        subcommand,
        after_help = "Examples:\n  portwatch access token grafana --scope read\n  portwatch access user alice --role read\n  portwatch access list\n  portwatch access revoke grafana\n  PORTWATCH_PASSWORD=… portwatch access passwd alice\n  portwatch access disable alice"
    )]
    Access(AccessCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  portwatch completions bash > /etc/bash_completion.d/portwatch\n  portwatch completions zsh > \"${fpath[1]}/_portwatch\""
    )]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// `portwatch notify …`.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through CHANNEL and say exactly what happened.
    Test {
        /// The channel's name, as in portwatch.toml.
        channel: String,
        /// The store.
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `portwatch store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy configuration, states, events, results, rollups, the outbox,
    /// users and tokens into a new, empty store. Stop `portwatch serve`
    /// first: both stores are locked while the copy runs.
    #[command(
        after_help = "Examples:\n  portwatch store copy --from portwatch.db --to postgres://portwatch@db.example/portwatch\n  portwatch store copy --from 'host=/run/postgresql dbname=portwatch' --to restored.db\n\nThe destination must be new or empty; PostgreSQL passwords come from the URL or PGPASSWORD."
    )]
    Copy {
        /// The store to copy (it must exist).
        #[arg(long, value_name = "PATH|URL", value_parser = crate::store::location::Location::parse)]
        from: crate::store::location::Location,
        /// The new store (created if it does not exist).
        #[arg(long, value_name = "PATH|URL", value_parser = crate::store::location::Location::parse)]
        to: crate::store::location::Location,
    },
}

/// `portwatch access …`.
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Create an API token (printed once; only its hash is stored).
    Token {
        /// A name to recognise it by.
        name: String,
        /// What it may do.
        #[arg(long, value_enum, default_value_t = Scope::Read)]
        scope: Scope,
        /// The store.
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users and API tokens (never the tokens themselves).
    List {
        /// The store.
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke an API token by name: it stops working at once.
    Revoke {
        /// The token's name.
        name: String,
        /// The store.
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set a user's password (PORTWATCH_PASSWORD, or a generated one printed
    /// once) and sign them out everywhere.
    Passwd {
        /// The user name.
        name: String,
        /// The store.
        #[command(flatten)]
        db: DbArgs,
    },
    /// Disable a user: they can no longer sign in, and their sessions end.
    Disable {
        /// The user name.
        name: String,
        /// The store.
        #[command(flatten)]
        db: DbArgs,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user name.
        name: String,
        /// The store.
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create a user with a generated password (printed once), or the one in
    /// PORTWATCH_PASSWORD.
    User {
        /// The user name.
        name: String,
        /// What the user may do.
        #[arg(long, value_enum, default_value_t = Scope::Read)]
        role: Scope,
        /// The store.
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Admin or read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// Read everything, change nothing.
    Read,
    /// Read and change everything.
    Admin,
}

/// The store to use.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The store: a SQLite file, or a PostgreSQL database as a URL
    /// (postgres://user@host:5432/portwatch, postgresql://…, with
    /// sslmode=disable|prefer|require|verify-full and sslrootcert=FILE) or a
    /// key=value string (host=/run/postgresql dbname=portwatch).
    #[arg(long, value_name = "PATH|URL", env = "PORTWATCH_DB", hide_env_values = true, default_value = crate::store::DEFAULT_PATH, value_parser = crate::store::location::Location::parse)]
    pub db: crate::store::location::Location,
    /// A file holding the PostgreSQL password (else the URL's, or
    /// PGPASSWORD).
    #[arg(long, value_name = "FILE", env = "PORTWATCH_DB_PASSWORD_FILE")]
    pub db_password_file: Option<PathBuf>,
}

impl DbArgs {
    /// The store, with the password from `--db-password-file` when one is
    /// given.
    pub fn location(&self) -> anyhow::Result<crate::store::location::Location> {
        use crate::store::location::Location;
        let mut location = self.db.clone();
        match (&mut location, &self.db_password_file) {
            (Location::Postgres(target), Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|error| {
                    anyhow::anyhow!(
                        "cannot read the password file {}: {error}: give a readable file, or the password in PGPASSWORD",
                        file.display()
                    )
                })?;
                target.password = Some(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            (Location::Sqlite(_), Some(file)) => anyhow::bail!(
                "--db-password-file {} is for a PostgreSQL --db (postgres://…), and --db names a SQLite file",
                file.display()
            ),
            (_, None) => {}
        }
        Ok(location)
    }
}

/// Arguments of `portwatch serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Apply this configuration file at start and on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The most checks in flight at once; checks due beyond it wait in line
    /// (one per sensor) and the node reports itself over capacity.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_checks: u32,
    /// The most checks in flight against one host.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub per_host: u32,
    /// Close established connections with RST (no TIME_WAIT; for high check rates).
    #[arg(long)]
    pub abort: bool,
    /// Where the web interface, API and metrics listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Do not serve the web interface.
    #[arg(long)]
    pub no_web: bool,
    /// The web interface's address as users reach it (for example behind a
    /// reverse proxy), used for the links in notifications. Default: the
    /// --listen address.
    #[arg(long, value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// Who may read /metrics: loopback clients freely (others with a
    /// token), only token holders, or anyone.
    #[arg(long, value_enum, default_value_t = crate::web::MetricsAccess::Loopback)]
    pub metrics_access: crate::web::MetricsAccess,
    /// A reverse proxy whose X-Forwarded-For and Forwarded headers are
    /// believed (an address or block, e.g. 127.0.0.1/32; repeat for more).
    /// Without it every client is the address that connected.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<crate::web::Cidr>,
    /// This node's name among the nodes sharing a PostgreSQL store (default:
    /// the host name). The live nodes of one location split its sensors
    /// and take over from a node that stops or dies.
    #[arg(long, value_name = "NAME", value_parser = parse_node_name)]
    pub node: Option<String>,
    /// Where this node checks from: sensors checked from several locations
    /// are checked by one node of each, and judged from k of n.
    #[arg(long, value_name = "LOCATION", default_value = "default", value_parser = parse_node_name)]
    pub location: String,
    /// How often a node renews its lease and looks at the other nodes; a
    /// node that misses three heartbeats is dead for the others, who take
    /// its sensors. Between 200ms and 60s.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_heartbeat)]
    pub heartbeat: Duration,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Arguments of `portwatch apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The configuration file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Only validate the file; change nothing.
    #[arg(long)]
    pub check: bool,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Arguments of `portwatch status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ScanFormat::Human)]
    pub format: ScanFormat,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Arguments of `portwatch report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A sensor (server/sensor), a server, or a group [default: everything].
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The period, back from now: 24h, 7d, 30d (at most 400d).
    #[arg(long, default_value = "30d", value_name = "DURATION", value_parser = parse_period)]
    pub since: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ScanFormat::Human)]
    pub format: ScanFormat,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// A sensor, server or group name.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// A sensor (server/sensor), a server, or a group.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `portwatch ping HOST…`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// Hosts: names, IPv4 or IPv6 addresses.
    #[arg(required = true, value_name = "HOST", value_parser = parse_ping_host)]
    pub hosts: Vec<Target>,
    /// Echo requests per host.
    #[arg(short = 'n', long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=20))]
    pub count: u8,
    /// WARNING at or above this loss (percent; all lost is DOWN).
    #[arg(long, default_value_t = 20, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub loss_warning: u8,
    /// Give up on a host after this long, name resolution included.
    #[arg(short, long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Report WARNING when the average round trip is above this.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub warning: Option<Duration>,
    /// Report DOWN (CRITICAL) when the average round trip is above this.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub critical: Option<Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
    pub format: CheckFormat,
    /// Address selection.
    #[command(flatten)]
    pub address: AddressArgs,
}

fn parse_ping_host(text: &str) -> Result<Target, String> {
    crate::probe::target::parse_bare_host(text)
        .map(|host| Target {
            input: text.to_owned(),
            host,
            port: 0,
        })
        .map_err(|e| e.to_string())
}

/// `portwatch push-url SENSOR`.
#[derive(Debug, Args)]
pub struct PushUrlArgs {
    /// The heartbeat sensor: server/sensor.
    #[arg(value_name = "SENSOR")]
    pub sensor: String,
    /// The web interface's address as jobs reach it (as given to `serve
    /// --public-url`); default http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

fn parse_period(text: &str) -> Result<Duration, String> {
    crate::duration::parse_at_most(text, 400 * 86_400, "400 days").map_err(|e| e.to_string())
}

/// Options shared by `check` and `scan` for choosing addresses.
#[derive(Debug, Args)]
pub struct AddressArgs {
    /// Use IPv4 addresses only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 addresses only.
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Connect from this local address.
    #[arg(long, value_name = "ADDR", value_parser = parse_source)]
    pub source: Option<IpAddr>,
}

impl AddressArgs {
    /// The address family the flags allow.
    pub fn family(&self) -> Family {
        match (self.ipv4, self.ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        }
    }
}

/// Arguments of `portwatch check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Targets: host:port, host:service, [v6addr]:port or tcp://host:port.
    #[arg(required = true, value_name = "TARGET", value_parser = parse_target)]
    pub targets: Vec<Target>,
    /// Give up on a target after this long, name resolution included.
    #[arg(short, long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Report WARNING when the connect time is above this.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub warning: Option<Duration>,
    /// Report DOWN (CRITICAL) when the connect time is above this.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub critical: Option<Duration>,
    /// The port must be closed: UP when refused, timed out or prohibited,
    /// DOWN when it accepts a connection.
    #[arg(long)]
    pub expect_closed: bool,
    /// Close connections with RST instead of FIN (leaves no TIME_WAIT).
    #[arg(long)]
    pub abort: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
    pub format: CheckFormat,
    /// Address selection.
    #[command(flatten)]
    pub address: AddressArgs,
    /// Protocol checks.
    #[command(flatten)]
    pub proto: Box<ProtoArgs>,
    /// DNS queries.
    #[command(flatten)]
    pub dns: Box<DnsArgs>,
    /// UDP services.
    #[command(flatten)]
    pub udp: Box<UdpArgs>,
}

/// UDP options of `check`: send the target a UDP service's request.
#[derive(Debug, Args)]
#[command(next_help_heading = "UDP services")]
pub struct UdpArgs {
    /// Ask a UDP service: dns, ntp (reports the clock's offset), snmp,
    /// tftp or netbios-ns. UP `answered`; silence is DOWN `no_response`.
    #[arg(long, value_name = "PROTOCOL")]
    pub udp: Option<String>,
    /// SNMP v2c: the community [default: public].
    #[arg(long, value_name = "NAME")]
    pub snmp_community: Option<String>,
    /// SNMP: v3 engine discovery instead of a v2c get (no credentials).
    #[arg(long)]
    pub snmp_v3: bool,
    /// TFTP: a file that must exist [default: any answer, even "not found"].
    #[arg(long, value_name = "FILE")]
    pub tftp_file: Option<String>,
    /// Send these bytes over UDP (escapes: \r \n \t \0 \\ \xNN).
    #[arg(long, value_name = "TEXT")]
    pub udp_send: Option<String>,
    /// The UDP answer must contain these bytes.
    #[arg(long, value_name = "TEXT", requires = "udp_send")]
    pub udp_expect: Option<String>,
}

impl UdpArgs {
    /// The request, validated as portwatch.toml's is; `None` without
    /// --udp or --udp-send.
    pub fn protocol(&self) -> Result<Option<crate::probe::udp::UdpProtocol>, String> {
        let asked = self.udp.is_some()
            || self.udp_send.is_some()
            || self.snmp_community.is_some()
            || self.snmp_v3
            || self.tftp_file.is_some();
        if !asked {
            return Ok(None);
        }
        let spec = crate::config::udp::UdpSpec {
            protocol: self.udp.clone(),
            community: self.snmp_community.clone(),
            snmp_version: self.snmp_v3.then(|| "3".to_owned()),
            file: self.tftp_file.clone(),
            send: self.udp_send.clone(),
            expect: self.udp_expect.clone(),
        };
        spec.protocol().map(Some).map_err(|(key, message)| {
            let flag = match key {
                "community" => "--snmp-community",
                "snmp_version" => "--snmp-v3",
                "file" => "--tftp-file",
                "send" => "--udp-send",
                "expect" => "--udp-expect",
                _ => "--udp",
            };
            format!("{flag}: {message}")
        })
    }
}

/// DNS options of `check`: ask the target (a name server) a question.
#[derive(Debug, Args)]
#[command(next_help_heading = "DNS queries (the target is the name server)")]
pub struct DnsArgs {
    /// Ask the target for this name (an address for --dns-type PTR);
    /// UP `answered`, or DOWN `unexpected_answer` with what came back.
    #[arg(long, value_name = "NAME")]
    pub dns_query: Option<String>,
    /// The record type: A, AAAA, CNAME, MX, TXT, NS, SOA, SRV, CAA, PTR.
    #[arg(long, value_name = "TYPE", requires = "dns_query")]
    pub dns_type: Option<String>,
    /// A value that must come back (repeatable: any one of them).
    #[arg(long, value_name = "VALUE", requires = "dns_query")]
    pub dns_expect: Vec<String>,
    /// Every --dns-expect value must come back.
    #[arg(long, requires = "dns_query")]
    pub dns_expect_all: bool,
    /// The RCODE that must come back [default: NOERROR].
    #[arg(long, value_name = "RCODE", requires = "dns_query")]
    pub dns_rcode: Option<String>,
    /// udp (TCP when truncated), tcp, or tls (DNS over TLS; --ca-file,
    /// --sni and --insecure apply).
    #[arg(long, value_name = "TRANSPORT", requires = "dns_query")]
    pub dns_transport: Option<String>,
    /// Do not ask for recursion (ask an authoritative server about its zone).
    #[arg(long, requires = "dns_query")]
    pub dns_no_recursion: bool,
    /// Ask the system's resolver (the first nameserver of
    /// /etc/resolv.conf) instead of the target, whose host then only names
    /// the result.
    #[arg(long, requires = "dns_query")]
    pub dns_system: bool,
}

impl DnsArgs {
    /// The DNS options, validated as portwatch.toml's are; `None` without
    /// --dns-query.
    pub fn options(
        &self,
        proto: &ProtoArgs,
    ) -> Result<Option<crate::probe::dns::DnsOptions>, String> {
        let Some(query) = &self.dns_query else {
            return Ok(None);
        };
        let spec = crate::config::dns::DnsSpec {
            query: query.clone(),
            record: self.dns_type.clone(),
            expect: self.dns_expect.clone(),
            expect_all: self.dns_expect_all,
            rcode: self.dns_rcode.clone(),
            transport: self.dns_transport.clone(),
            recursion: Some(!self.dns_no_recursion),
            resolver: self.dns_system.then(|| "system".to_owned()),
        };
        let tls = crate::probe::proto::TlsSettings {
            verify: !proto.insecure,
            sni: proto.sni.clone(),
            ca_file: proto.ca_file.clone(),
            warn_days: proto.cert_warn_days,
        };
        spec.options(tls).map(Some).map_err(|(key, message)| {
            let flag = match key {
                "record" => "--dns-type",
                "expect" => "--dns-expect",
                "rcode" => "--dns-rcode",
                "transport" => "--dns-transport",
                _ => "--dns-query",
            };
            format!("{flag}: {message}")
        })
    }
}

/// `check --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Connect and close (the PORT check).
    Connect,
    /// Speak the protocol of the well-known port (ssh on 22, https on 443,
    /// …); ports without one are connect checks.
    Auto,
}

/// `check --tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsArg {
    /// No TLS.
    None,
    /// TLS from the first byte.
    Implicit,
    /// The protocol's STARTTLS (smtp, imap, pop3, ftp, ldap, xmpp, postgresql).
    Starttls,
}

/// Protocol-check options of `check`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Protocol checks")]
pub struct ProtoArgs {
    /// connect: the PORT check; auto: speak the well-known port's protocol.
    #[arg(long, value_enum, default_value_t = ModeArg::Connect)]
    pub mode: ModeArg,
    /// Speak this protocol on any port (see "Protocols" below).
    #[arg(long, value_name = "NAME", value_parser = parse_protocol)]
    pub protocol: Option<(crate::probe::proto::Protocol, crate::probe::proto::TlsMode)>,
    /// TLS: none, implicit (TLS from the first byte) or starttls.
    #[arg(long, value_enum)]
    pub tls: Option<TlsArg>,
    /// Do not verify the certificate (it is still reported).
    #[arg(long)]
    pub insecure: bool,
    /// The TLS server name to send and verify [default: the host].
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// Trust the CA certificates in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// WARNING this many days before the certificate expires.
    #[arg(long, default_value_t = 14, value_name = "DAYS")]
    pub cert_warn_days: u32,
    /// HTTP: the request method (HEAD, GET, POST, PUT, PATCH, DELETE,
    /// OPTIONS) [default: HEAD; GET with content checks; POST with a body].
    #[arg(long, value_name = "METHOD")]
    pub http_method: Option<String>,
    /// HTTP: the request path.
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub http_path: String,
    /// HTTP: accepted statuses, e.g. 200,301 [default: 200-399; 200-299
    /// with --http-follow].
    #[arg(long, value_name = "CODES", value_delimiter = ',')]
    pub http_status: Vec<u16>,
    /// HTTP: a request header, e.g. 'X-Api-Key: abc' (repeatable).
    #[arg(long = "http-header", value_name = "NAME: VALUE")]
    pub http_headers: Vec<String>,
    /// HTTP: the request body.
    #[arg(long, value_name = "TEXT")]
    pub http_body: Option<String>,
    /// HTTP: authentication, basic or bearer; the secret comes from
    /// --http-secret-env or --http-secret-file.
    #[arg(long, value_name = "SCHEME", requires = "secret")]
    pub http_auth: Option<String>,
    /// HTTP: the user of basic authentication.
    #[arg(long, value_name = "NAME")]
    pub http_user: Option<String>,
    /// HTTP: the environment variable holding the password or token.
    #[arg(long, value_name = "VARIABLE", group = "secret")]
    pub http_secret_env: Option<String>,
    /// HTTP: the file holding the password or token (its first line).
    #[arg(long, value_name = "FILE", group = "secret")]
    pub http_secret_file: Option<String>,
    /// HTTP: follow redirects (up to 5; credentials go to the same host only).
    #[arg(long)]
    pub http_follow: bool,
    /// HTTP: the body must contain this text (DOWN content_mismatch if not).
    #[arg(long, value_name = "TEXT")]
    pub http_contains: Option<String>,
    /// HTTP: the body must not contain this text.
    #[arg(long, value_name = "TEXT")]
    pub http_absent: Option<String>,
    /// HTTP: the body must match this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub http_regex: Option<String>,
    /// HTTP: the body is JSON with a value at PATH (equal to VALUE, if
    /// given), e.g. status=ok or checks.db[0].up=true.
    #[arg(long, value_name = "PATH[=VALUE]")]
    pub http_json: Option<String>,
    /// Send this first (escapes: \r \n \t \0 \\ \xNN); then the --expect strings
    /// are awaited in order.
    #[arg(long, value_name = "TEXT")]
    pub send: Option<String>,
    /// Wait for this text to arrive (repeatable, in order).
    #[arg(long, value_name = "TEXT")]
    pub expect: Vec<String>,
    /// Wait for a match of this regular expression (after the --expect texts).
    #[arg(long, value_name = "REGEX")]
    pub expect_regex: Vec<String>,
    /// Send this before closing.
    #[arg(long, value_name = "TEXT")]
    pub quit: Option<String>,
    /// Read at most this many bytes.
    #[arg(long, default_value_t = 65536, value_name = "BYTES")]
    pub max_bytes: usize,
    /// WARNING when a phase takes longer: dns, connect, tls, first_byte or
    /// total, e.g. first_byte=500ms (repeatable).
    #[arg(long, value_name = "PHASE=DURATION")]
    pub phase_warning: Vec<String>,
    /// DOWN (CRITICAL) when a phase takes longer, e.g. total=2s (repeatable).
    #[arg(long, value_name = "PHASE=DURATION")]
    pub phase_critical: Vec<String>,
}

impl ProtoArgs {
    /// The protocol options, `None` for a plain connect check.
    pub fn options(&self) -> Result<Option<crate::probe::proto::ProtoOptions>, String> {
        use crate::probe::proto::{Conflict, Mode, ProtoOptions, TlsMode, expect, starttls_names};
        let mut steps = Vec::new();
        if let Some(send) = &self.send {
            steps.push(expect::Step::Send(
                expect::unescape(send).map_err(|e| format!("--send: {e}"))?,
            ));
        }
        for text in &self.expect {
            steps.push(expect::Step::Expect(
                expect::unescape(text).map_err(|e| format!("--expect: {e}"))?,
            ));
        }
        for text in &self.expect_regex {
            steps.push(expect::Step::ExpectRegex(
                expect::regex(text).map_err(|e| format!("--expect-regex: {e}"))?,
            ));
        }
        let tls = self.tls.map(|t| match t {
            TlsArg::None => TlsMode::None,
            TlsArg::Implicit => TlsMode::Implicit,
            TlsArg::Starttls => TlsMode::Starttls,
        });
        if tls == Some(TlsMode::Starttls)
            && self.protocol.is_none()
            && self.mode == ModeArg::Connect
        {
            return Err(
                "--tls starttls needs a protocol: add --protocol NAME or --mode auto".into(),
            );
        }
        if let Some(sni) = &self.sni {
            crate::probe::proto::tls::check_sni(sni).map_err(|e| format!("--sni: {e}"))?;
        }
        let http = self.http()?;
        let options = ProtoOptions {
            mode: match self.mode {
                ModeArg::Connect => Mode::Connect,
                ModeArg::Auto => Mode::Auto,
            },
            protocol: self.protocol,
            tls,
            tls_settings: crate::probe::proto::TlsSettings {
                verify: !self.insecure,
                sni: self.sni.clone(),
                ca_file: self.ca_file.clone(),
                warn_days: self.cert_warn_days,
            },
            http,
            quit: self
                .quit
                .as_deref()
                .map(expect::unescape)
                .transpose()
                .map_err(|e| format!("--quit: {e}"))?,
            steps,
            max_bytes: self.max_bytes,
            phases: self.phases()?,
        };
        match options.conflict() {
            Some(Conflict::StepsAndProtocol) => Err(
                "--send/--expect define a conversation of their own: drop --protocol, or drop them"
                    .into(),
            ),
            Some(Conflict::NoStarttls(protocol)) => Err(format!(
                "{} has no STARTTLS: use --tls implicit, or a protocol with STARTTLS ({})",
                protocol.as_str(),
                starttls_names()
            )),
            Some(Conflict::NotHttp(protocol)) => Err(format!(
                "--http-* options are for HTTP, not {}: use --protocol http or https",
                protocol.as_str()
            )),
            Some(Conflict::Http(message)) => Err(format!("--http-method: {message}")),
            None if options.connect_only() && !options.phases.is_empty() => Err(
                "--phase-warning and --phase-critical judge a protocol check: add --mode auto or --protocol NAME (-w and -c judge the connect time)"
                    .into(),
            ),
            None => Ok((!options.connect_only()).then_some(options)),
        }
    }
}

impl ProtoArgs {
    /// The phase thresholds, validated as portwatch.toml's are.
    fn phases(&self) -> Result<crate::probe::verdict::PhaseLimits, String> {
        let table = |flag: &str, list: &[String]| {
            list.iter()
                .map(|item| {
                    item.split_once('=')
                        .map(|(p, d)| (p.trim().to_owned(), d.trim().to_owned()))
                        .ok_or_else(|| {
                            format!("{flag}: '{item}' is not PHASE=DURATION, e.g. first_byte=500ms")
                        })
                })
                .collect::<Result<std::collections::BTreeMap<_, _>, _>>()
        };
        let settings = crate::config::probe::ProbeOverrides {
            phase_warning: Some(table("--phase-warning", &self.phase_warning)?),
            phase_critical: Some(table("--phase-critical", &self.phase_critical)?),
            ..crate::config::probe::ProbeOverrides::default()
        };
        settings
            .phases()
            .map_err(|(key, message)| format!("--{}: {message}", key.replace('_', "-")))
    }

    /// The HTTP options, validated as portwatch.toml's are; errors name the
    /// option.
    fn http(&self) -> Result<crate::probe::proto::HttpOptions, String> {
        use crate::config::probe::{AuthSpec, JsonSpec, ProbeOverrides};
        let mut headers = std::collections::BTreeMap::new();
        for header in &self.http_headers {
            let (name, value) = header.split_once(':').ok_or_else(|| {
                format!("--http-header: '{header}' has no ':': write 'Name: value'")
            })?;
            headers.insert(name.trim().to_owned(), value.trim().to_owned());
        }
        let settings = ProbeOverrides {
            http_method: self.http_method.clone(),
            http_path: Some(self.http_path.clone()),
            http_status: Some(self.http_status.clone()),
            http_headers: (!headers.is_empty()).then_some(headers),
            http_body: self.http_body.clone(),
            http_auth: self.http_auth.as_ref().map(|scheme| AuthSpec {
                scheme: scheme.clone(),
                user: self.http_user.clone(),
                env: self.http_secret_env.clone(),
                file: self.http_secret_file.clone(),
            }),
            http_follow: Some(self.http_follow),
            http_contains: self.http_contains.clone(),
            http_absent: self.http_absent.clone(),
            http_regex: self.http_regex.clone(),
            http_json: self
                .http_json
                .as_ref()
                .map(|text| match text.split_once('=') {
                    Some((path, value)) => JsonSpec {
                        path: path.to_owned(),
                        equals: Some(value.to_owned()),
                    },
                    None => JsonSpec {
                        path: text.clone(),
                        equals: None,
                    },
                }),
            ..ProbeOverrides::default()
        };
        settings.http().map_err(|(key, message)| {
            let flag = match key {
                "http_headers" => "--http-header".to_owned(),
                key => format!("--{}", key.replace('_', "-")),
            };
            format!("{flag}: {message}")
        })
    }
}

fn parse_protocol(
    text: &str,
) -> Result<(crate::probe::proto::Protocol, crate::probe::proto::TlsMode), String> {
    crate::probe::proto::Protocol::parse(text).ok_or_else(|| {
        format!(
            "unknown protocol '{text}': use one of {}",
            crate::probe::proto::names()
        )
    })
}

/// Output formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// One aligned, coloured line per target.
    Human,
    /// JSON Lines: one object per target.
    Json,
    /// check_tcp-compatible plugin output with perfdata.
    Nagios,
}

/// Arguments of `portwatch scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The host to scan: a name, an IPv4 address or an IPv6 address.
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Ports to scan, e.g. 1-1024,3306,ssh [default: the well-known table].
    #[arg(short, long, value_name = "SPEC", value_parser = parse_port_spec)]
    pub ports: Option<PortList>,
    /// Call a port filtered when it does not answer within this.
    #[arg(short, long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The most connection attempts in flight at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// The most new connection attempts per second [default: unlimited].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
    /// List closed ports too (they are hidden when more than 25 ports are scanned).
    #[arg(long)]
    pub all: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ScanFormat::Human)]
    pub format: ScanFormat,
    /// Address selection.
    #[command(flatten)]
    pub address: AddressArgs,
}

/// Output formats of `scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    /// A table of ports and a summary.
    Human,
    /// JSON Lines: one object per port.
    Json,
}

/// Arguments of `portwatch ports`.
#[derive(Debug, Args)]
pub struct PortsArgs {
    /// A port number, a service name, or words from the description.
    #[arg(value_name = "QUERY", num_args = 0..)]
    pub query: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ScanFormat::Human)]
    pub format: ScanFormat,
}

fn parse_target(text: &str) -> Result<Target, String> {
    Target::parse(text, Services::global()).map_err(|e| e.to_string())
}

/// A node's or location's name: letters, digits, `.`, `_` and `-`.
fn parse_node_name(text: &str) -> Result<String, String> {
    let fine = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fine {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "'{text}' is not a name: use 1 to 63 letters, digits, '.', '_' or '-' (for example eu-west-1)"
        ))
    }
}

fn parse_heartbeat(text: &str) -> Result<Duration, String> {
    let every = parse_duration(text)?;
    if (Duration::from_millis(200)..=Duration::from_secs(60)).contains(&every) {
        Ok(every)
    } else {
        Err(format!(
            "a heartbeat of {text} is out of range: give 200ms to 60s (the default, 2s, suits most)"
        ))
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text).map_err(|e| e.to_string())
}

/// A parsed `--ports` list (a newtype, so that clap treats it as one value).
#[derive(Debug, Clone)]
pub struct PortList(pub Vec<u16>);

fn parse_port_spec(text: &str) -> Result<PortList, String> {
    crate::probe::portspec::parse(text, Services::global())
        .map(PortList)
        .map_err(|e| e.to_string())
}

fn parse_source(text: &str) -> Result<IpAddr, String> {
    let trimmed = text.trim_start_matches('[').trim_end_matches(']');
    trimmed.parse().map_err(|_| {
        format!(
            "'{text}' is not an IP address: give a local address such as 192.0.2.10 or 2001:db8::10"
        )
    })
}

/// Runs the program with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    run(std::env::args_os())
}

/// Runs the program with `args` and returns its exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    init_logging(matches!(cli.command, Command::Serve(_)));
    // The store holds password hashes and webhook secrets: every file this
    // process creates (the database, its -wal and -shm) is for its owner
    // only.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let outcome = match cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "portwatch", &mut std::io::stdout());
            Ok(0)
        }
        Command::Ports(args) => ports::run(&args),
        Command::Check(args) => runtime().and_then(|rt| rt.block_on(check::run(args))),
        Command::Ping(args) => runtime().and_then(|rt| rt.block_on(check::ping(args))),
        Command::Scan(args) => runtime().and_then(|rt| rt.block_on(scan::run(args))),
        Command::Serve(args) => serve::run(args),
        Command::Apply(args) => apply::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Access(command) => pause::access(&command),
        Command::Notify(NotifyCommand::Test { channel, db }) => {
            runtime().and_then(|rt| rt.block_on(pause::notify_test(&channel, &db)))
        }
        Command::Store(StoreCommand::Copy { from, to }) => {
            runtime().and_then(|rt| rt.block_on(copy::run(&from, &to)))
        }
        Command::Pause(args) => pause::run(&args, true),
        Command::PushUrl(args) => pause::push_url(&args),
        Command::Resume(args) => pause::run(&args, false),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        // `portwatch ports | head -3`: the reader has what it wanted.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(anstream::stderr(), "portwatch: {error:#}");
            ExitCode::from(EXIT_UNKNOWN)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Prints a usage error as one line (help and version go to stdout as usual)
/// and returns the Nagios UNKNOWN code.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = error.print();
        return ExitCode::from(EXIT_UNKNOWN);
    }
    let text = error.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // clap lists the valid values on a later line: keep them on this one.
    let valid = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("[possible values: "))
        .map(|values| format!(": use one of {}", values.trim_end_matches(']')))
        .unwrap_or_default();
    let _ = writeln!(
        anstream::stderr(),
        "portwatch: {first}{valid} (see portwatch --help)"
    );
    ExitCode::from(EXIT_UNKNOWN)
}

/// The runtime of the one-shot commands: no signal handling, so that it
/// starts even when file descriptors are nearly exhausted.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|error| anyhow::anyhow!("cannot start the async runtime: {error}"))
}

/// The store behind `--db` for a command that reads or edits it: the
/// storage interface, called on a runtime of its own.
struct StoreClient {
    db: crate::store::Backend,
    runtime: tokio::runtime::Runtime,
}

impl StoreClient {
    /// The store `--db` names; `existing`: it must exist already (commands
    /// that only read or edit it), else it is created (`apply`).
    fn open(args: &DbArgs, existing: bool) -> anyhow::Result<StoreClient> {
        let location = args.location()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|error| anyhow::anyhow!("cannot start the async runtime: {error}"))?;
        let db = runtime.block_on(async {
            if existing {
                crate::store::Backend::open_existing(&location, 2).await
            } else {
                crate::store::Backend::open(&location, 2).await
            }
        })?;
        Ok(StoreClient { db, runtime })
    }

    /// Waits for one call of the storage interface on `self.db`.
    fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Result<T, crate::store::StoreError> {
        self.runtime.block_on(call)
    }
}

/// Logs go to stderr; `PORTWATCH_LOG` sets the filter. The monitor logs
/// state changes at info, the one-shot commands only warnings.
fn init_logging(daemon: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if daemon {
        "portwatch=info"
    } else {
        "portwatch=warn"
    };
    let filter =
        EnvFilter::try_from_env("PORTWATCH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never)
        .try_init();
}

/// `--public-url`: an http(s) URL, without a trailing slash.
fn parse_public_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    if (url.starts_with("http://") || url.starts_with("https://")) && url.len() > 8 {
        Ok(url.to_owned())
    } else {
        Err(format!(
            "'{text}' is not an http:// or https:// URL: write e.g. https://monitor.example.com"
        ))
    }
}
