//! The well-known TCP port table.
//!
//! A compiled-in table of the classic well-known ports and the ones people
//! run today, with IANA's service names and descriptions. `/etc/services`,
//! where it exists, adds the ports the table lacks and extra names for
//! lookups; the compiled-in entries win where both name a port, because the
//! classic printed lists (and some copies of `/etc/services`) carry errors.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One TCP service: a port, its IANA name, other names it is known by, and a
/// description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The TCP port.
    pub port: u16,
    /// The IANA service name.
    pub name: String,
    /// Other names accepted in `host:service` (e.g. `smtps` for 465).
    pub aliases: Vec<String>,
    /// What the service is.
    pub description: String,
    /// Where the entry comes from.
    pub source: Source,
}

/// Where a [`Service`] entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The compiled-in table.
    Builtin,
    /// The system's `/etc/services`.
    System,
}

/// (port, IANA name, aliases, description).
const BUILTIN: &[(u16, &str, &[&str], &str)] = &[
    (1, "tcpmux", &[], "TCP Port Service Multiplexer"),
    (
        7,
        "echo",
        &[],
        "Echo (RFC 862; a TCP service, not ICMP ping)",
    ),
    (9, "discard", &[], "Discard"),
    (11, "systat", &[], "Active Users"),
    (13, "daytime", &[], "Daytime"),
    (17, "qotd", &[], "Quote of the Day"),
    (19, "chargen", &[], "Character Generator"),
    (20, "ftp-data", &[], "File Transfer [Default Data]"),
    (21, "ftp", &[], "File Transfer Protocol [Control]"),
    (22, "ssh", &[], "The Secure Shell (SSH) Protocol"),
    (23, "telnet", &[], "Telnet"),
    (25, "smtp", &[], "Simple Mail Transfer"),
    (37, "time", &[], "Time (RFC 868)"),
    (42, "nameserver", &["name"], "Host Name Server"),
    (43, "whois", &["nicname"], "Who Is"),
    (49, "tacacs", &[], "Login Host Protocol (TACACS)"),
    (53, "domain", &["dns"], "Domain Name Server"),
    (69, "tftp", &[], "Trivial File Transfer"),
    (70, "gopher", &[], "Gopher"),
    (79, "finger", &[], "Finger"),
    (80, "http", &["www"], "World Wide Web HTTP"),
    (88, "kerberos", &["kerberos5"], "Kerberos"),
    (102, "iso-tsap", &[], "ISO-TSAP Class 0"),
    (103, "gppitnp", &[], "Genesis Point-to-Point Trans Net"),
    (
        104,
        "acr-nema",
        &[],
        "ACR-NEMA Digital Imaging and Communications 300",
    ),
    (108, "snagas", &[], "SNA Gateway Access Server"),
    (109, "pop2", &[], "Post Office Protocol - Version 2"),
    (110, "pop3", &[], "Post Office Protocol - Version 3"),
    (111, "sunrpc", &["rpcbind"], "SUN Remote Procedure Call"),
    (113, "auth", &["ident"], "Authentication Service"),
    (115, "sftp", &[], "Simple File Transfer Protocol"),
    (117, "uucp-path", &[], "UUCP Path Service"),
    (118, "sqlserv", &[], "SQL Services"),
    (119, "nntp", &[], "Network News Transfer Protocol"),
    (123, "ntp", &[], "Network Time Protocol"),
    (135, "epmap", &["msrpc"], "DCE endpoint resolution"),
    (137, "netbios-ns", &[], "NETBIOS Name Service"),
    (138, "netbios-dgm", &[], "NETBIOS Datagram Service"),
    (139, "netbios-ssn", &[], "NETBIOS Session Service"),
    (143, "imap", &["imap2"], "Internet Message Access Protocol"),
    (150, "sql-net", &[], "SQL-NET"),
    (156, "sqlsrv", &[], "SQL Service"),
    (161, "snmp", &[], "SNMP"),
    (162, "snmptrap", &[], "SNMPTRAP"),
    (179, "bgp", &[], "Border Gateway Protocol"),
    (194, "irc", &[], "Internet Relay Chat Protocol"),
    (197, "dls", &[], "Directory Location Service"),
    (389, "ldap", &[], "Lightweight Directory Access Protocol"),
    (396, "netware-ip", &[], "Novell Netware over IP"),
    (427, "svrloc", &[], "Server Location"),
    (443, "https", &[], "http protocol over TLS/SSL"),
    (444, "snpp", &[], "Simple Network Paging Protocol"),
    (445, "microsoft-ds", &[], "Microsoft-DS (SMB over TCP)"),
    (458, "appleqtc", &[], "apple quick time"),
    (
        465,
        "submissions",
        &["smtps", "urd"],
        "Message Submission over TLS protocol",
    ),
    (512, "exec", &[], "remote process execution"),
    (513, "login", &[], "remote login a la telnet"),
    (514, "shell", &["cmd"], "remote shell"),
    (515, "printer", &["spooler"], "spooler"),
    (
        546,
        "dhcpv6-client",
        &[],
        "DHCPv6 Client (a UDP service in practice)",
    ),
    (
        547,
        "dhcpv6-server",
        &[],
        "DHCPv6 Server (a UDP service in practice)",
    ),
    (548, "afpovertcp", &["afp"], "AFP over TCP"),
    (554, "rtsp", &[], "Real Time Streaming Protocol (RTSP)"),
    (587, "submission", &[], "Message Submission"),
    (631, "ipp", &[], "IPP (Internet Printing Protocol)"),
    (636, "ldaps", &[], "ldap protocol over TLS/SSL"),
    (873, "rsync", &[], "rsync"),
    (989, "ftps-data", &[], "ftp protocol, data, over TLS/SSL"),
    (990, "ftps", &[], "ftp protocol, control, over TLS/SSL"),
    (993, "imaps", &[], "IMAP over TLS protocol"),
    (995, "pop3s", &[], "POP3 over TLS protocol"),
    (1080, "socks", &[], "Socks"),
    (1194, "openvpn", &[], "OpenVPN"),
    (1433, "ms-sql-s", &["mssql"], "Microsoft-SQL-Server"),
    (
        1883,
        "mqtt",
        &[],
        "Message Queuing Telemetry Transport Protocol",
    ),
    (2049, "nfs", &[], "Network File System"),
    (3306, "mysql", &["mariadb"], "MySQL"),
    (
        3389,
        "ms-wbt-server",
        &["rdp"],
        "MS WBT Server (Remote Desktop)",
    ),
    (5060, "sip", &[], "SIP"),
    (5061, "sips", &[], "SIP-TLS"),
    (5222, "xmpp-client", &[], "XMPP Client Connection"),
    (5269, "xmpp-server", &[], "XMPP Server Connection"),
    (5432, "postgresql", &["postgres"], "PostgreSQL Database"),
    (5672, "amqp", &[], "AMQP"),
    (5900, "rfb", &["vnc"], "Remote Framebuffer (VNC)"),
    (6379, "redis", &[], "An advanced key-value cache and store"),
    (8080, "http-alt", &[], "HTTP Alternate (see port 80)"),
    (
        8443,
        "pcsync-https",
        &["https-alt"],
        "PCsync HTTPS (commonly HTTPS alternate)",
    ),
    (
        9100,
        "hp-pdl-datastr",
        &["jetdirect"],
        "PDL Data Streaming Port",
    ),
    (9418, "git", &[], "git pack transfer service"),
    (11211, "memcache", &["memcached"], "Memory cache service"),
    (27017, "mongodb", &[], "Mongo database system"),
];

/// The port table: the compiled-in entries plus `/etc/services`.
#[derive(Debug, Clone)]
pub struct Services {
    by_port: BTreeMap<u16, Service>,
}

impl Services {
    /// The process-wide table, read once: built-ins plus `/etc/services`.
    pub fn global() -> &'static Services {
        static TABLE: OnceLock<Services> = OnceLock::new();
        TABLE.get_or_init(|| {
            let system = std::fs::read_to_string("/etc/services").unwrap_or_default();
            Services::with_system(&system)
        })
    }

    /// Only the compiled-in entries.
    pub fn builtin() -> Services {
        let by_port = BUILTIN
            .iter()
            .map(|&(port, name, aliases, description)| {
                let service = Service {
                    port,
                    name: name.to_owned(),
                    aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
                    description: description.to_owned(),
                    source: Source::Builtin,
                };
                (port, service)
            })
            .collect();
        Services { by_port }
    }

    /// The compiled-in entries with the text of an `/etc/services` file
    /// layered on top: its TCP ports that the table lacks are added, and its
    /// names become extra aliases of ports the table has.
    pub fn with_system(etc_services: &str) -> Services {
        let mut table = Services::builtin();
        // A name the compiled-in table uses never moves to a second port.
        let builtin_names: std::collections::HashSet<String> = table
            .iter()
            .flat_map(|s| std::iter::once(&s.name).chain(&s.aliases).cloned())
            .collect();
        for (port, names, comment) in parse_etc_services(etc_services) {
            match table.by_port.get_mut(&port) {
                Some(known) => {
                    for name in names {
                        let new = name != known.name && !known.aliases.contains(&name);
                        if new && !builtin_names.contains(&name) {
                            known.aliases.push(name);
                        }
                    }
                }
                None => {
                    let mut names = names.into_iter();
                    let Some(name) = names.next() else { continue };
                    let description = comment.unwrap_or_else(|| name.clone());
                    table.by_port.insert(
                        port,
                        Service {
                            port,
                            name,
                            aliases: names.collect(),
                            description,
                            source: Source::System,
                        },
                    );
                }
            }
        }
        table
    }

    /// The service on `port`, if the table knows one.
    pub fn by_port(&self, port: u16) -> Option<&Service> {
        self.by_port.get(&port)
    }

    /// The service called `name` (its IANA name or an alias), ignoring case.
    /// The compiled-in entries are preferred when two ports share a name.
    pub fn by_name(&self, name: &str) -> Option<&Service> {
        let name = name.to_ascii_lowercase();
        let matches = |s: &&Service| s.name == name || s.aliases.contains(&name);
        let mut found = self.by_port.values().filter(matches);
        let first = found.next()?;
        if first.source == Source::Builtin {
            return Some(first);
        }
        Some(found.find(|s| s.source == Source::Builtin).unwrap_or(first))
    }

    /// The ports of the compiled-in table, the default set for `scan`.
    pub fn builtin_ports() -> Vec<u16> {
        BUILTIN.iter().map(|entry| entry.0).collect()
    }

    /// All services, in port order.
    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        self.by_port.values()
    }

    /// Services matching a query: a port number, or words that all appear in
    /// the name, an alias or the description (ignoring case).
    pub fn search(&self, query: &str) -> Vec<&Service> {
        if let Ok(port) = query.trim().parse::<u16>() {
            return self.by_port(port).into_iter().collect();
        }
        let words: Vec<String> = query
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        self.iter()
            .filter(|s| {
                let haystack = format!(
                    "{} {} {}",
                    s.name,
                    s.aliases.join(" "),
                    s.description.to_ascii_lowercase()
                );
                words.iter().all(|w| haystack.contains(w.as_str()))
            })
            .collect()
    }

    /// The names closest to `name`, best first, for "did you mean" hints.
    pub fn suggest(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        let mut scored: Vec<(f64, &str)> = self
            .iter()
            .flat_map(|s| std::iter::once(&s.name).chain(&s.aliases))
            .map(|candidate| {
                let mut score = strsim::jaro_winkler(&name, candidate);
                if candidate.starts_with(&name) || name.starts_with(candidate.as_str()) {
                    score += 0.1;
                }
                (score, candidate.as_str())
            })
            .filter(|(score, _)| *score >= 0.75)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        scored.dedup_by(|a, b| a.1 == b.1);
        scored.into_iter().take(3).map(|(_, n)| n).collect()
    }
}

/// Parses `/etc/services` text into (port, names, comment) for TCP entries.
/// Malformed lines are skipped: the file is a hint, never a reason to fail.
fn parse_etc_services(text: &str) -> Vec<(u16, Vec<String>, Option<String>)> {
    text.lines()
        .filter_map(|line| {
            let (entry, comment) = match line.split_once('#') {
                Some((entry, comment)) => (entry, Some(comment.trim())),
                None => (line, None),
            };
            let mut fields = entry.split_whitespace();
            let name = fields.next()?;
            let (port, protocol) = fields.next()?.split_once('/')?;
            if protocol != "tcp" {
                return None;
            }
            let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
            let names = std::iter::once(name)
                .chain(fields)
                .map(str::to_ascii_lowercase)
                .collect();
            let comment = comment.filter(|c| !c.is_empty()).map(str::to_owned);
            Some((port, names, comment))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_ports_carry_iana_names() {
        let table = Services::builtin();
        let name = |port| table.by_port(port).unwrap().name.as_str();
        assert_eq!(name(7), "echo");
        assert_eq!(name(137), "netbios-ns");
        assert_eq!(name(138), "netbios-dgm");
        assert_eq!(name(139), "netbios-ssn");
        assert_eq!(name(150), "sql-net");
        assert_eq!(name(546), "dhcpv6-client");
        assert_eq!(name(547), "dhcpv6-server");
        assert_eq!(name(22), "ssh");
        assert_eq!(name(5432), "postgresql");
        assert!(table.by_port(7).unwrap().description.contains("not ICMP"));
    }

    #[test]
    fn table_has_no_duplicate_ports_or_names() {
        let mut ports: Vec<u16> = BUILTIN.iter().map(|e| e.0).collect();
        ports.dedup();
        assert_eq!(
            ports.len(),
            BUILTIN.len(),
            "ports must be sorted and unique"
        );
        let mut names: Vec<&str> = BUILTIN
            .iter()
            .flat_map(|&(_, n, a, _)| std::iter::once(n).chain(a.iter().copied()))
            .collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a name must belong to one port");
    }

    #[test]
    fn names_and_aliases_resolve_ignoring_case() {
        let table = Services::builtin();
        assert_eq!(table.by_name("SSH").unwrap().port, 22);
        assert_eq!(table.by_name("smtps").unwrap().port, 465);
        assert_eq!(table.by_name("postgres").unwrap().port, 5432);
        assert!(table.by_name("nosuchservice").is_none());
    }

    #[test]
    fn etc_services_adds_missing_ports_but_never_overrides() {
        let text = "\
# comment line
ssh             22/tcp          secure-shell    # SSH Remote Login Protocol
http            80/udp
myapp           4711/tcp        myapp-alt       # In-house application
netbios-ssn     137/tcp         # a wrong copy of a classic list
garbage line
bad             0/tcp
";
        let table = Services::with_system(text);
        assert_eq!(table.by_port(137).unwrap().name, "netbios-ns");
        assert_eq!(table.by_name("netbios-ssn").unwrap().port, 139);
        assert_eq!(table.by_name("secure-shell").unwrap().port, 22);
        let myapp = table.by_port(4711).unwrap();
        assert_eq!(myapp.name, "myapp");
        assert_eq!(myapp.source, Source::System);
        assert_eq!(myapp.description, "In-house application");
        assert_eq!(table.by_name("myapp-alt").unwrap().port, 4711);
        assert!(table.by_port(0).is_none());
    }

    #[test]
    fn search_by_number_name_and_words() {
        let table = Services::builtin();
        assert_eq!(table.search("443")[0].name, "https");
        let mail: Vec<u16> = table.search("mail").iter().map(|s| s.port).collect();
        assert!(mail.contains(&25), "{mail:?}");
        let netbios: Vec<u16> = table.search("netbios").iter().map(|s| s.port).collect();
        assert_eq!(netbios, [137, 138, 139]);
        let both: Vec<u16> = table.search("over tls").iter().map(|s| s.port).collect();
        assert!(both.contains(&993) && both.contains(&995) && !both.contains(&143));
        assert!(table.search("12345").is_empty());
    }

    #[test]
    fn suggests_close_names() {
        let table = Services::builtin();
        assert_eq!(table.suggest("shh").first(), Some(&"ssh"));
        assert!(table.suggest("postgress").contains(&"postgres"));
        assert!(table.suggest("zzzzzzzz").is_empty());
    }
}
