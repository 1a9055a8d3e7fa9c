//! Where the store is: `--db` (or `PORTWATCH_DB`) names a SQLite file by
//! its path, or a PostgreSQL database by a `postgres://` (or
//! `postgresql://`) URL or a libpq key=value string
//! (`host=/run/postgresql dbname=portwatch`).
//!
//! PostgreSQL's TLS settings (`sslmode`, `sslrootcert`) are taken out here,
//! since the client library knows only some of their values; the rest of
//! the string goes to it as it is. Passwords never reach a log: every
//! message shows [`PgTarget::display`], with the password masked.

use std::fmt;
use std::path::PathBuf;

/// The store `--db` names.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgTarget),
}

/// How a PostgreSQL connection uses TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never.
    Disable,
    /// When the server offers it, without checking its certificate (libpq's
    /// default).
    Prefer,
    /// Always, without checking the certificate.
    Require,
    /// Always, with the certificate checked against the trusted roots and
    /// the host name.
    VerifyFull,
}

/// A PostgreSQL database to connect to.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// The connection string without `sslmode` and `sslrootcert`.
    pub conninfo: String,
    /// TLS.
    pub tls: TlsMode,
    /// Trusted roots for `verify-full` (else the system's).
    pub root_cert: Option<PathBuf>,
    /// A password from outside the string (`PGPASSWORD`, a password file).
    pub password: Option<String>,
    display: String,
}

impl PgTarget {
    /// The connection string with its password masked, for messages.
    pub fn display(&self) -> &str {
        &self.display
    }
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("conninfo", &self.display)
            .field("tls", &self.tls)
            .field("root_cert", &self.root_cert)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            Location::Postgres(target) => write!(f, "Postgres({target:?})"),
        }
    }
}

/// Shown in messages: the path, or the URL with its password masked.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(target) => f.write_str(&target.display),
        }
    }
}

/// libpq's connection keywords: a string whose first word is one of these
/// (`host=…`) is a key=value connection string, not a file name.
const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "channel_binding",
    "load_balance_hosts",
    "tcp_user_timeout",
];

impl Location {
    /// Reads `--db`. Only a PostgreSQL string can be wrong: an unknown
    /// `sslmode`, or a quote that is never closed.
    pub fn parse(text: &str) -> Result<Location, String> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return parse_url(trimmed).map(Location::Postgres);
        }
        let first_key = trimmed
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| KEYWORDS.contains(key));
        if first_key.is_some() {
            return parse_keywords(trimmed).map(Location::Postgres);
        }
        Ok(Location::Sqlite(PathBuf::from(text)))
    }
}

fn tls_mode(value: &str) -> Result<TlsMode, String> {
    match value {
        "disable" => Ok(TlsMode::Disable),
        "allow" | "prefer" => Ok(TlsMode::Prefer),
        "require" => Ok(TlsMode::Require),
        "verify-full" => Ok(TlsMode::VerifyFull),
        "verify-ca" => Err(
            "sslmode=verify-ca is not supported: use verify-full (the certificate and the host name are checked)".into(),
        ),
        other => Err(format!(
            "sslmode={other} is not a TLS mode: use disable, prefer, require or verify-full"
        )),
    }
}

/// `postgres://user:password@host:port/db?key=value&…`
fn parse_url(url: &str) -> Result<PgTarget, String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut tls = TlsMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    let mut shown = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => tls = tls_mode(&percent_decode(value))?,
            "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value))),
            "password" => {
                kept.push(pair.to_owned());
                shown.push("password=***".to_owned());
            }
            _ => {
                kept.push(pair.to_owned());
                shown.push(pair.to_owned());
            }
        }
    }
    let join = |base: String, pairs: &[String]| {
        if pairs.is_empty() {
            base
        } else {
            format!("{base}?{}", pairs.join("&"))
        }
    };
    Ok(PgTarget {
        conninfo: join(base.to_owned(), &kept),
        tls,
        root_cert,
        password: None,
        display: join(mask_url_password(base), &shown),
    })
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn mask_url_password(base: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{hosts}{path}"),
            None => base.to_owned(),
        },
        None => base.to_owned(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One `key=value` of a key=value string: where it is in the text, and
/// its value unquoted.
struct Pair<'a> {
    key: &'a str,
    value: String,
    text: &'a str,
}

/// Splits `host=/run/postgresql dbname='my db'` into its pairs (values may
/// be single-quoted, with `\'` and `\\` inside, as libpq reads them).
fn keyword_pairs(text: &str) -> Result<Vec<Pair<'_>>, String> {
    let mut pairs = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &text[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            return Err(format!(
                "'{key}' in the connection string has no value: write {key}=VALUE"
            ));
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if bytes.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(format!(
                            "the value of '{key}' in the connection string opens a quote that is never closed"
                        ));
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        value.push(bytes[i + 1] as char);
                        i += 2;
                    }
                    Some(_) => {
                        let ch = text[i..].chars().next().unwrap_or('?');
                        value.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
        } else {
            let from = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            value.push_str(&text[from..i]);
        }
        pairs.push(Pair {
            key,
            value,
            text: &text[start..i],
        });
    }
    Ok(pairs)
}

/// `host=… dbname=… sslmode=…`
fn parse_keywords(text: &str) -> Result<PgTarget, String> {
    let mut tls = TlsMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    let mut shown = Vec::new();
    for pair in keyword_pairs(text)? {
        match pair.key {
            "sslmode" => tls = tls_mode(&pair.value)?,
            "sslrootcert" => root_cert = Some(PathBuf::from(pair.value)),
            "password" => {
                kept.push(pair.text);
                shown.push("password=***");
            }
            _ => {
                kept.push(pair.text);
                shown.push(pair.text);
            }
        }
    }
    Ok(PgTarget {
        conninfo: kept.join(" "),
        tls,
        root_cert,
        password: None,
        display: shown.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(text: &str) -> PgTarget {
        match Location::parse(text).unwrap() {
            Location::Postgres(target) => target,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn paths_are_sqlite() {
        for path in [
            "portwatch.db",
            "/var/lib/portwatch/portwatch.db",
            "./a=b.db",
            "postgres.db",
        ] {
            assert_eq!(
                Location::parse(path).unwrap(),
                Location::Sqlite(PathBuf::from(path)),
                "{path}"
            );
        }
    }

    #[test]
    fn urls_are_postgres_with_the_password_masked() {
        for scheme in ["postgres", "postgresql", "POSTGRES"] {
            let target = pg(&format!(
                "{scheme}://pw:s3cret@db.example:5432/portwatch?sslmode=require&application_name=x"
            ));
            assert_eq!(
                target.conninfo,
                format!("{scheme}://pw:s3cret@db.example:5432/portwatch?application_name=x")
            );
            assert_eq!(target.tls, TlsMode::Require);
            assert_eq!(
                target.display(),
                format!("{scheme}://pw:***@db.example:5432/portwatch?application_name=x")
            );
            assert!(!format!("{target:?}").contains("s3cret"));
        }
        let plain = pg("postgres://pw@localhost/portwatch");
        assert_eq!(plain.display(), "postgres://pw@localhost/portwatch");
        assert_eq!(plain.tls, TlsMode::Prefer, "libpq's default");
        let query = pg("postgres://localhost/db?password=s3cret");
        assert_eq!(query.display(), "postgres://localhost/db?password=***");
        assert_eq!(query.conninfo, "postgres://localhost/db?password=s3cret");
    }

    #[test]
    fn failover_urls_keep_every_host() {
        let target = pg("postgres://pw@a:5432,b:5433/portwatch?target_session_attrs=read-write");
        assert_eq!(
            target.conninfo,
            "postgres://pw@a:5432,b:5433/portwatch?target_session_attrs=read-write"
        );
    }

    #[test]
    fn tls_settings_are_taken_out() {
        let target =
            pg("postgres://pw@db/portwatch?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(target.tls, TlsMode::VerifyFull);
        assert_eq!(target.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(target.conninfo, "postgres://pw@db/portwatch");
        let error = Location::parse("postgres://db/x?sslmode=sometimes").unwrap_err();
        assert!(error.contains("sslmode=sometimes"), "{error}");
        assert!(error.contains("verify-full"), "{error}");
    }

    #[test]
    fn messages_show_the_store_with_its_password_masked() {
        let url = Location::parse("postgres://pw:s3cret@db/portwatch").unwrap();
        assert_eq!(url.to_string(), "postgres://pw:***@db/portwatch");
        let debug = format!("{url:?}");
        assert!(
            debug.contains("postgres://pw:***@db/portwatch") && !debug.contains("s3cret"),
            "{debug}"
        );
        let with_password = match Location::parse("host=db").unwrap() {
            Location::Postgres(mut target) => {
                target.password = Some("s3cret".into());
                target
            }
            other => panic!("{other:?}"),
        };
        let debug = format!("{with_password:?}");
        assert!(
            debug.contains("\"***\"") && !debug.contains("s3cret"),
            "{debug}"
        );
        let path = Location::parse("/var/lib/portwatch/portwatch.db").unwrap();
        assert_eq!(path.to_string(), "/var/lib/portwatch/portwatch.db");
        assert_eq!(
            format!("{path:?}"),
            "Sqlite(/var/lib/portwatch/portwatch.db)"
        );
    }

    #[test]
    fn percent_escapes_are_decoded_and_broken_ones_kept() {
        assert_eq!(percent_decode("%2Fetc%2fca.pem"), "/etc/ca.pem");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
        assert_eq!(
            percent_decode("%2z%z2"),
            "%2z%z2",
            "both digits must be hex"
        );
    }

    #[test]
    fn key_value_strings_allow_spaces_around_the_equals_sign_and_at_the_end() {
        let target = pg("  host = /run/postgresql   dbname=portwatch  ");
        assert_eq!(target.conninfo, "host = /run/postgresql dbname=portwatch");
        // An empty value is a value, as libpq reads it.
        assert_eq!(pg("host=x dbname= ").conninfo, "host=x dbname=");
        let config: tokio_postgres::Config = target.conninfo.parse().unwrap();
        assert_eq!(config.get_dbname(), Some("portwatch"));
    }

    #[test]
    fn key_value_strings_are_postgres() {
        let target =
            pg("host=/run/postgresql dbname='my db' password='it\\'s' sslmode=disable user=pw");
        assert_eq!(
            target.conninfo,
            "host=/run/postgresql dbname='my db' password='it\\'s' user=pw"
        );
        assert_eq!(target.tls, TlsMode::Disable);
        assert_eq!(
            target.display(),
            "host=/run/postgresql dbname='my db' password=*** user=pw"
        );
        let error = Location::parse("host=x dbname='open").unwrap_err();
        assert!(error.contains("never closed"), "{error}");
        let quoted = pg("host=x sslrootcert='/etc/a ca\\'s.pem' sslmode=verify-full");
        assert_eq!(quoted.root_cert, Some(PathBuf::from("/etc/a ca's.pem")));
        let error = Location::parse("host=x dbname='ends in \\").unwrap_err();
        assert!(error.contains("never closed"), "{error}");
        let error = Location::parse("host=x dbname").unwrap_err();
        assert!(error.contains("dbname=VALUE"), "{error}");
    }
}
