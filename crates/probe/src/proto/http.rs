//! HTTP/1.1: one request (HEAD by default), the status line and headers
//! parsed, the status judged against the expected ones (default 200–399).

use super::session::{Fail, Frame, SHOWN, Session, show};
use super::{Ctx, Details};
use crate::Reason;

/// Checks an HTTP request path before it is sent: it starts with `/` and
/// holds no space or control character (which would end the request line
/// or add a header).
pub fn check_path(path: &str) -> Result<(), String> {
    if path.starts_with('/')
        && path.len() <= 2048
        && !path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a request path: write e.g. \"/health\" (no spaces or control characters; percent-encode them)",
            crate::text::visible(path)
        ))
    }
}

/// The methods a check may send.
pub const METHODS: [&str; 7] = ["HEAD", "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The most redirects a check follows.
pub const MAX_REDIRECTS: usize = 5;

/// A method, upper-cased, or why it is not one a check sends.
pub fn parse_method(text: &str) -> Result<String, String> {
    let upper = text.trim().to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "unknown HTTP method '{}': use {}",
            crate::text::visible(text),
            METHODS.join(", ")
        ))
    }
}

/// Headers portwatch writes itself: a check may not set them.
const OWN_HEADERS: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
];

/// Checks a request header before it is sent: a token for a name, no
/// control character in the value (which would end the header or add
/// another), and none of the headers portwatch writes itself.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!(
            "'{}' is not a header name: use letters, digits and - (e.g. \"X-Api-Key\")",
            crate::text::visible(name)
        ));
    }
    if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "portwatch sets '{name}' itself: remove it from the headers"
        ));
    }
    if value.len() > 8192 || value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "the value of header '{name}' holds a control character or is longer than 8192 bytes"
        ));
    }
    Ok(())
}

/// Where an HTTP check's credential comes from: read at each check, so it
/// never sits in the configuration, the store or a log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Secret {
    /// An environment variable of the monitor's process.
    Env(String),
    /// A file (its first line; trailing whitespace dropped).
    File(std::path::PathBuf),
}

impl Secret {
    /// Reads the secret, or says why it cannot be read.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(name) => std::env::var(name)
                .map_err(|_| format!("the environment variable {name} is not set")),
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|text| text.lines().next().unwrap_or("").trim_end().to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        }
        .and_then(|secret| {
            if secret.chars().any(char::is_control) {
                Err("the secret holds a control character".into())
            } else {
                Ok(secret)
            }
        })
    }
}

/// HTTP authentication.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Auth {
    /// `Authorization: Basic`, the user and the password from `Secret`.
    Basic(String, Secret),
    /// `Authorization: Bearer`, the token from `Secret`.
    Bearer(Secret),
}

impl Auth {
    /// The `Authorization` header's value.
    pub fn header(&self) -> Result<String, String> {
        use base64::Engine;
        match self {
            Auth::Basic(user, secret) => {
                let password = secret.read()?;
                let pair = format!("{user}:{password}");
                Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            Auth::Bearer(secret) => Ok(format!("Bearer {}", secret.read()?)),
        }
    }
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object's member.
    Key(String),
    /// An array's element.
    Index(usize),
}

/// A JSON path: `status`, `$.checks.db.status`, `items[0].name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPath {
    /// As written.
    pub text: String,
    /// Its steps.
    pub segments: Vec<Segment>,
}

impl JsonPath {
    /// Parses dotted keys with `[N]` indexes, an optional leading `$`.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| {
            format!(
                "'{}' is not a JSON path ({why}): write e.g. \"status\" or \"checks.db[0].state\"",
                crate::text::visible(text)
            )
        };
        let body = text.trim();
        let body = body.strip_prefix('$').unwrap_or(body);
        let body = body.strip_prefix('.').unwrap_or(body);
        let mut segments = Vec::new();
        for part in body.split('.') {
            if part.is_empty() {
                return Err(bad("an empty key"));
            }
            let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_owned()));
            }
            while !rest.is_empty() {
                let inner = rest
                    .strip_prefix('[')
                    .ok_or_else(|| bad("text after ']'"))?;
                let close = inner.find(']').ok_or_else(|| bad("a '[' without ']'"))?;
                let index = inner[..close]
                    .parse::<usize>()
                    .map_err(|_| bad("an index is not a number"))?;
                segments.push(Segment::Index(index));
                rest = &inner[close + 1..];
            }
        }
        if segments.is_empty() {
            return Err(bad("no key"));
        }
        Ok(JsonPath {
            text: text.trim().to_owned(),
            segments,
        })
    }

    /// The value at this path.
    pub fn find<'a>(&self, value: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        self.segments
            .iter()
            .try_fold(value, |at, segment| match segment {
                Segment::Key(key) => at.get(key.as_str()),
                Segment::Index(index) => at.get(*index),
            })
    }
}

/// What the body of the answer must show.
#[derive(Debug, Clone)]
pub enum ContentRule {
    /// This text appears.
    Contains(String),
    /// This text does not appear.
    Absent(String),
    /// This expression matches.
    Regex(regex::bytes::Regex),
    /// The body is JSON with a value at this path (equal to this text,
    /// when one is given: strings as they are, other values as JSON).
    Json(JsonPath, Option<String>),
}

impl PartialEq for ContentRule {
    fn eq(&self, other: &ContentRule) -> bool {
        match (self, other) {
            (ContentRule::Contains(a), ContentRule::Contains(b))
            | (ContentRule::Absent(a), ContentRule::Absent(b)) => a == b,
            (ContentRule::Regex(a), ContentRule::Regex(b)) => a.as_str() == b.as_str(),
            (ContentRule::Json(a, x), ContentRule::Json(b, y)) => a == b && x == y,
            _ => false,
        }
    }
}

impl Eq for ContentRule {}

/// What an HTTP check sends and accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// One of [`METHODS`].
    pub method: String,
    /// The request path.
    pub path: String,
    /// Accepted statuses; empty: 200–399 (200–299 when redirects are
    /// followed).
    pub expect_status: Vec<u16>,
    /// Extra request headers (a `Host` here replaces the target's).
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Option<String>,
    /// Authentication.
    pub auth: Option<Auth>,
    /// Follow redirects (up to [`MAX_REDIRECTS`]).
    pub follow: bool,
    /// What the body must show (read up to `max_bytes`).
    pub content: Vec<ContentRule>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            method: "HEAD".into(),
            path: "/".into(),
            expect_status: Vec::new(),
            headers: Vec::new(),
            body: None,
            auth: None,
            follow: false,
            content: Vec::new(),
        }
    }
}

impl HttpOptions {
    /// Whether settings that only make sense for HTTP are set, so the
    /// check speaks HTTP on any port: content rules, a body,
    /// authentication or following redirects. (Headers alone do not: they
    /// may be set for every sensor.)
    pub fn asks_for_http(&self) -> bool {
        !self.content.is_empty() || self.follow || self.body.is_some() || self.auth.is_some()
    }

    /// A contradiction in these options, worded for the user.
    pub fn conflict(&self) -> Option<String> {
        if self.method == "HEAD" && !self.content.is_empty() {
            return Some(
                "a HEAD request has no body to check: use method GET (or drop the content checks)"
                    .into(),
            );
        }
        if self.method == "HEAD" && self.body.is_some() {
            return Some("a HEAD request sends no body: use method POST or PUT".into());
        }
        None
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `HTTP/1.1`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The `Server` header.
    pub server: Option<String>,
    /// The `Location` header.
    pub location: Option<String>,
    /// How the body ends.
    pub framing: Framing,
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// After this many bytes.
    Length(u64),
    /// At the zero-length chunk.
    Chunked,
    /// When the server closes.
    Close,
}

/// Parses a response head (status line and headers, up to the blank line).
pub fn parse_head(bytes: &[u8]) -> Frame<Head> {
    // As soon as the first bytes cannot begin "HTTP/".
    let start = bytes.len().min(5);
    if bytes[..start] != b"HTTP/"[..start] {
        return Frame::Bad(format!(
            "expected an HTTP status line, got '{}'",
            show(bytes, SHOWN)
        ));
    }
    let end = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => at + 4,
        None => match bytes.windows(2).position(|w| w == b"\n\n") {
            Some(at) => at + 2,
            None if bytes.len() > 64 * 1024 => {
                return Frame::Bad("response headers longer than 64 KiB".into());
            }
            None => return Frame::Need,
        },
    };
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_owned();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s));
    let Some(status) = status else {
        return Frame::Bad(format!(
            "expected a status code, got '{}'",
            show(status_line.as_bytes(), SHOWN)
        ));
    };
    let reason = parts.next().unwrap_or("").trim().to_owned();
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let header = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| (*value).to_owned())
    };
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let framing = match header("content-length").map(|v| v.parse::<u64>()) {
        _ if chunked => Framing::Chunked,
        Some(Ok(length)) => Framing::Length(length),
        Some(Err(_)) => {
            return Frame::Bad(format!(
                "a Content-Length that is not a number: '{}'",
                show(
                    header("content-length").unwrap_or_default().as_bytes(),
                    SHOWN
                )
            ));
        }
        None => Framing::Close,
    };
    Frame::Got(
        Head {
            version,
            status,
            reason,
            server: header("server"),
            location: header("location"),
            framing,
        },
        end,
    )
}

/// Whether `status` is accepted.
pub fn accepted(status: u16, expect: &[u16]) -> bool {
    if expect.is_empty() {
        (200..400).contains(&status)
    } else {
        expect.contains(&status)
    }
}

/// Decodes a chunked body as far as it has arrived: the bytes so far and
/// whether the last (zero-length) chunk was seen.
pub fn dechunk(bytes: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            if rest.len() > 1024 {
                return Err(format!(
                    "a chunk size line longer than 1 KiB: '{}'",
                    show(rest, SHOWN)
                ));
            }
            return Ok((out, false));
        };
        let line = &rest[..eol];
        let digits = line.split(|b| *b == b';').next().unwrap_or(b"");
        let digits = std::str::from_utf8(digits).unwrap_or("").trim();
        let size = (!digits.is_empty() && digits.len() <= 15)
            .then(|| usize::from_str_radix(digits, 16).ok())
            .flatten()
            .ok_or_else(|| format!("a chunk size that is not hex: '{}'", show(line, SHOWN)))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok((out, true));
        }
        if rest.len() < size {
            out.extend_from_slice(rest);
            return Ok((out, false));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        match rest {
            [b'\r', b'\n', tail @ ..] => rest = tail,
            [] | [b'\r'] => return Ok((out, false)),
            _ => {
                return Err(format!(
                    "chunk data not followed by CRLF: '{}'",
                    show(rest, SHOWN)
                ));
            }
        }
    }
}

/// Judges the body against the rules; what matched, or why not.
pub fn judge_content(
    rules: &[ContentRule],
    body: &[u8],
    complete: bool,
) -> Result<Details, String> {
    let scope = if complete {
        format!("the body ({} bytes)", body.len())
    } else {
        format!("the first {} bytes of the body", body.len())
    };
    let mut details = Vec::new();
    for rule in rules {
        match rule {
            ContentRule::Contains(text) => {
                if !matches!(super::expect::find(body, text.as_bytes()), Frame::Got(..)) {
                    return Err(format!(
                        "'{}' not found in {scope}: '{}'",
                        show(text.as_bytes(), SHOWN),
                        show(body, SHOWN)
                    ));
                }
                details.push(("contains", show(text.as_bytes(), SHOWN)));
            }
            ContentRule::Absent(text) => {
                if let Frame::Got(at, _) = super::expect::find(body, text.as_bytes()) {
                    let from = at.saturating_sub(16);
                    return Err(format!(
                        "'{}' found in the body at byte {at}: '{}'",
                        show(text.as_bytes(), SHOWN),
                        show(&body[from..], SHOWN)
                    ));
                }
            }
            ContentRule::Regex(regex) => match regex.find(body) {
                Some(found) => details.push(("matched", show(found.as_bytes(), SHOWN))),
                None => {
                    return Err(format!(
                        "no match for /{}/ in {scope}: '{}'",
                        show(regex.as_str().as_bytes(), SHOWN),
                        show(body, SHOWN)
                    ));
                }
            },
            ContentRule::Json(path, expected) => {
                let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                    if complete {
                        format!("the body is not JSON ({e}): '{}'", show(body, SHOWN))
                    } else {
                        format!(
                            "the body was cut at {} bytes, before its JSON ended: raise max_bytes",
                            body.len()
                        )
                    }
                })?;
                let found = path
                    .find(&value)
                    .ok_or_else(|| format!("no {} in the JSON body", path.text))?;
                let text = match found {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                if let Some(expected) = expected
                    && text != *expected
                {
                    return Err(format!(
                        "{} is '{}', expected '{}'",
                        path.text,
                        show(text.as_bytes(), SHOWN),
                        show(expected.as_bytes(), SHOWN)
                    ));
                }
                details.push((
                    "json",
                    format!("{} = {}", path.text, show(text.as_bytes(), SHOWN)),
                ));
            }
        }
    }
    Ok(details)
}

/// The request a check sends.
pub fn request(host: &str, http: &HttpOptions, authorization: Option<&str>) -> Vec<u8> {
    let host_header = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let mut out = format!("{} {} HTTP/1.1\r\n", http.method, http.path);
    let has = |name: &str| {
        http.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        out += &format!("Host: {host_header}\r\n");
    }
    if !has("user-agent") {
        out += &format!("User-Agent: portwatch/{}\r\n", env!("CARGO_PKG_VERSION"));
    }
    if !has("accept") {
        out += "Accept: */*\r\n";
    }
    if !has("accept-encoding") {
        // The body is judged as it comes: no compression.
        out += "Accept-Encoding: identity\r\n";
    }
    if let Some(authorization) = authorization
        && !has("authorization")
    {
        out += &format!("Authorization: {authorization}\r\n");
    }
    for (name, value) in &http.headers {
        out += &format!("{name}: {value}\r\n");
    }
    if let Some(body) = &http.body {
        out += &format!("Content-Length: {}\r\n", body.len());
    }
    out += "Connection: close\r\n\r\n";
    let mut bytes = out.into_bytes();
    if let Some(body) = &http.body {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

/// Reads the body as far as `max_bytes`: the bytes and whether they are all.
async fn read_body(session: &mut Session, head: &Head) -> Result<(Vec<u8>, bool), Fail> {
    const WHAT: &str = "the response body";
    loop {
        let pending = session.pending();
        let (body, complete) = match head.framing {
            Framing::Length(length) => {
                let have = pending.len() as u64;
                (
                    pending[..have.min(length) as usize].to_vec(),
                    have >= length,
                )
            }
            Framing::Chunked => dechunk(pending).map_err(Fail::mismatch)?,
            Framing::Close => (pending.to_vec(), false),
        };
        if complete || session.full() {
            return Ok((body, complete));
        }
        match session.more(WHAT).await {
            Ok(()) => {}
            Err(fail) if fail.reason == Reason::ClosedByPeer && head.framing == Framing::Close => {
                return Ok((session.take_pending(), true));
            }
            Err(fail) => return Err(fail),
        }
    }
}

/// HTTP or HTTPS (the TLS is already on for HTTPS).
pub async fn http(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    let host = ctx.tls.sni.as_deref().unwrap_or(ctx.host);
    let authorization = match &ctx.http.auth {
        None => None,
        Some(auth) => Some(auth.header().map_err(|e| Fail {
            reason: Reason::LocalError,
            message: format!("no credential for the request: {e}"),
        })?),
    };
    session
        .send(&request(host, ctx.http, authorization.as_deref()))
        .await?;
    let head = session.frame("an HTTP response", parse_head).await?;
    let mut details = vec![
        ("status", format!("{} {}", head.status, head.reason)),
        ("version", head.version.clone()),
    ];
    if let Some(server) = &head.server {
        details.push(("server", server.clone()));
    }
    if ctx.http.follow
        && (300..400).contains(&head.status)
        && let Some(location) = &head.location
    {
        details.push(("location", show(location.as_bytes(), SHOWN)));
        *ctx.redirect.lock().expect("not poisoned") = Some(location.clone());
        return Ok(details);
    }
    let wanted: &[u16] = if ctx.http.expect_status.is_empty() && ctx.http.follow {
        &[200, 201, 202, 203, 204, 205, 206]
    } else {
        &ctx.http.expect_status
    };
    if !accepted(head.status, wanted) {
        let wanted = if wanted.is_empty() {
            "200-399".to_owned()
        } else if ctx.http.expect_status.is_empty() {
            "200-299".to_owned()
        } else {
            wanted
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Fail::mismatch(format!(
            "HTTP {} {}, expected {wanted}",
            head.status,
            show(head.reason.as_bytes(), SHOWN)
        )));
    }
    if !ctx.http.content.is_empty() {
        let no_body = ctx.http.method == "HEAD" || matches!(head.status, 100..200 | 204 | 304);
        let (body, complete) = if no_body {
            (Vec::new(), true)
        } else {
            read_body(session, &head).await?
        };
        details.push((
            "body",
            format!(
                "{} bytes{}",
                body.len(),
                if complete { "" } else { " (cut)" }
            ),
        ));
        let found = judge_content(&ctx.http.content, &body, complete).map_err(|message| Fail {
            reason: Reason::ContentMismatch,
            message,
        })?;
        details.extend(found);
    }
    Ok(details)
}

/// Runs every parser of untrusted HTTP bytes: the property tests and the
/// `protocol_replies` fuzz target call it with arbitrary input.
pub fn parse_untrusted(data: &[u8]) {
    drop(parse_head(data));
    drop(dechunk(data));
    let text = String::from_utf8_lossy(data);
    drop(resolve_location((true, "example.com", 443, "/a/b"), &text));
    drop(JsonPath::parse(&text));
    let rules = [
        ContentRule::Absent("x".into()),
        ContentRule::Json(
            JsonPath {
                text: "a.b[0]".into(),
                segments: vec![
                    Segment::Key("a".into()),
                    Segment::Key("b".into()),
                    Segment::Index(0),
                ],
            },
            Some("x".into()),
        ),
    ];
    drop(judge_content(&rules, data, data.len().is_multiple_of(2)));
}

/// Where a redirect leads, from the URL it was read at: scheme
/// (`https` or `http`), host, port and path; or why it cannot be
/// followed.
pub fn resolve_location(
    from: (bool, &str, u16, &str),
    location: &str,
) -> Result<(bool, String, u16, String), String> {
    let (tls, host, port, path) = from;
    let location = location.trim();
    let bad = || {
        format!(
            "cannot follow the redirect to '{}'",
            show(location.as_bytes(), SHOWN)
        )
    };
    let (tls, rest) = if let Some(rest) = location.strip_prefix("https://") {
        (true, Some(rest))
    } else if let Some(rest) = location.strip_prefix("http://") {
        (false, Some(rest))
    } else if let Some(rest) = location.strip_prefix("//") {
        (tls, Some(rest))
    } else {
        (tls, None)
    };
    let (host, port, path) = match rest {
        Some(rest) => {
            let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(cut);
            let authority = authority.rsplit('@').next().unwrap_or(authority);
            let default_port = if tls { 443 } else { 80 };
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) if !port.contains(']') => {
                    (host, port.parse::<u16>().map_err(|_| bad())?)
                }
                _ => (authority, default_port),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad());
            }
            let path = if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            };
            (host.to_owned(), port, path)
        }
        None if location.starts_with('/') => (host.to_owned(), port, location.to_owned()),
        None if !location.is_empty() && !location.contains("://") => {
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            (host.to_owned(), port, format!("{dir}{location}"))
        }
        None => return Err(bad()),
    };
    let path = path.split('#').next().unwrap_or("/").to_owned();
    check_path(&path).map_err(|_| bad())?;
    Ok((tls, host, port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_cannot_smuggle_headers() {
        assert!(check_path("/health?x=1").is_ok());
        for bad in ["health", "/a b", "/a\r\nX-Injected: yes", "/\0", ""] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn heads() {
        let response =
            b"HTTP/1.1 301 Moved Permanently\r\nServer: nginx/1.22.1\r\nLocation: /x\r\n\r\nbody";
        assert_eq!(
            parse_head(response),
            Frame::Got(
                Head {
                    version: "HTTP/1.1".into(),
                    status: 301,
                    reason: "Moved Permanently".into(),
                    server: Some("nginx/1.22.1".into()),
                    location: Some("/x".into()),
                    framing: Framing::Close,
                },
                response.len() - 4
            )
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), Frame::Need);
        assert_eq!(parse_head(b"HT"), Frame::Need);
        assert!(matches!(parse_head(b"SSH-2.0-x\r\n"), Frame::Bad(_)));
        assert!(matches!(parse_head(b"HTTP/1.1 abc\r\n\r\n"), Frame::Bad(_)));
        assert!(accepted(302, &[]) && !accepted(404, &[]) && accepted(404, &[404]));
    }

    fn head(bytes: &[u8]) -> Head {
        match parse_head(bytes) {
            Frame::Got(head, _) => head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn heads_say_how_the_body_ends_and_where_it_redirects() {
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(12));
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head(b"HTTP/1.0 302 Found\r\nlocation:  /next \r\n\r\n");
        assert_eq!(
            (h.framing, h.location.as_deref()),
            (Framing::Close, Some("/next"))
        );
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n"),
            Frame::Bad(m) if m.contains("'many'")
        ));
    }

    #[test]
    fn chunked_bodies_decode_as_far_as_they_arrived() {
        let full = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
        assert_eq!(
            dechunk(full),
            Ok((b"Wikipedia in \r\n\r\nchunks.".to_vec(), true))
        );
        assert_eq!(dechunk(b"4\r\nWi"), Ok((b"Wi".to_vec(), false)));
        assert_eq!(dechunk(b"4\r\nWiki\r\n6"), Ok((b"Wiki".to_vec(), false)));
        assert_eq!(dechunk(b"4\r\nWiki\r"), Ok((b"Wiki".to_vec(), false)));
        assert!(dechunk(b"zz\r\nWiki\r\n").is_err());
        assert!(dechunk(b"4\r\nWikiXX").is_err());
        assert!(dechunk(b"fffffffffffffffff\r\n").is_err());
        assert!(dechunk(&[b'1'; 2000]).is_err());
    }

    #[test]
    fn content_rules_say_what_was_found() {
        let body = br#"{"status":"ok","checks":{"db":[{"up":true,"ms":3}]},"note":"<b>\u0007"}"#;
        let path = |p: &str| JsonPath::parse(p).unwrap();
        let rules = [
            ContentRule::Contains("\"ok\"".into()),
            ContentRule::Absent("error".into()),
            ContentRule::Regex(regex::bytes::Regex::new(r"ms.:(\d+)").unwrap()),
            ContentRule::Json(path("$.checks.db[0].up"), Some("true".into())),
            ContentRule::Json(path("status"), Some("ok".into())),
            ContentRule::Json(path("checks.db[0].ms"), None),
        ];
        let details = judge_content(&rules, body, true).unwrap();
        assert!(
            details.contains(&("matched", "ms\":3".into())),
            "{details:?}"
        );
        assert!(
            details.contains(&("json", "status = ok".into())),
            "{details:?}"
        );
        let fails =
            |rule: ContentRule, complete: bool| judge_content(&[rule], body, complete).unwrap_err();
        assert_eq!(
            fails(ContentRule::Contains("healthy".into()), true),
            format!(
                "'healthy' not found in the body ({} bytes): '{}'",
                body.len(),
                show(body, SHOWN)
            )
        );
        assert!(
            fails(ContentRule::Contains("healthy".into()), false).starts_with(&format!(
                "'healthy' not found in the first {} bytes",
                body.len()
            ))
        );
        assert_eq!(
            fails(ContentRule::Absent("checks".into()), true),
            format!(
                "'checks' found in the body at byte 16: '{}'",
                show(&body[0..], SHOWN)
            )
        );
        assert_eq!(
            fails(ContentRule::Json(path("status"), Some("fine".into())), true),
            "status is 'ok', expected 'fine'"
        );
        assert_eq!(
            fails(ContentRule::Json(path("checks.db[1]"), None), true),
            "no checks.db[1] in the JSON body"
        );
        assert!(
            judge_content(&[ContentRule::Json(path("a"), None)], b"{\"a\":", false)
                .unwrap_err()
                .contains("raise max_bytes")
        );
        assert!(
            judge_content(&[ContentRule::Json(path("a"), None)], b"<html>", true)
                .unwrap_err()
                .starts_with("the body is not JSON")
        );
        // Untrusted bytes come back escaped.
        let shown =
            judge_content(&[ContentRule::Contains("x".into())], b"\x1b[31m\n", true).unwrap_err();
        assert!(!shown.contains('\x1b') && !shown.contains('\n'), "{shown}");
    }

    #[test]
    fn json_paths() {
        let parsed = JsonPath::parse("$.items[2][0].name").unwrap();
        assert_eq!(
            parsed.segments,
            vec![
                Segment::Key("items".into()),
                Segment::Index(2),
                Segment::Index(0),
                Segment::Key("name".into())
            ]
        );
        assert_eq!(JsonPath::parse("status").unwrap().segments.len(), 1);
        for bad in ["", "$", "a..b", "a[x]", "a[1", "a[1]b", "a."] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requests_carry_method_headers_auth_and_body() {
        let http = HttpOptions {
            method: "POST".into(),
            path: "/api".into(),
            headers: vec![
                ("X-Key".into(), "k".into()),
                ("Accept".into(), "application/json".into()),
            ],
            body: Some("{\"q\":1}".into()),
            ..HttpOptions::default()
        };
        let text = String::from_utf8(request("::1", &http, Some("Bearer t"))).unwrap();
        assert!(
            text.starts_with("POST /api HTTP/1.1\r\nHost: [::1]\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAuthorization: Bearer t\r\n"), "{text}");
        assert!(
            text.contains("\r\nX-Key: k\r\n") && !text.contains("Accept: */*"),
            "{text}"
        );
        assert!(
            text.ends_with("Content-Length: 7\r\nConnection: close\r\n\r\n{\"q\":1}"),
            "{text}"
        );
        let host = HttpOptions {
            headers: vec![("Host".into(), "site.example".into())],
            ..HttpOptions::default()
        };
        let text = String::from_utf8(request("10.0.0.1", &host, None)).unwrap();
        assert_eq!(text.matches("Host:").count(), 1, "{text}");
        assert!(text.contains("Host: site.example\r\n") && !text.contains("Authorization"));
    }

    #[test]
    fn bad_methods_and_headers_are_refused_before_sending() {
        assert_eq!(parse_method("post").as_deref(), Ok("POST"));
        assert!(parse_method("BREW").unwrap_err().contains("use HEAD, GET"));
        assert!(check_header("X-Api-Key", "abc\tdef").is_ok());
        for (name, value) in [
            ("X Key", "v"),
            ("", "v"),
            ("X-A", "a\r\nX-B: b"),
            ("Content-Length", "3"),
            ("connection", "keep-alive"),
        ] {
            assert!(check_header(name, value).is_err(), "{name:?} {value:?}");
        }
        let head_with_rules = HttpOptions {
            content: vec![ContentRule::Contains("x".into())],
            ..HttpOptions::default()
        };
        assert!(
            head_with_rules
                .conflict()
                .unwrap()
                .contains("use method GET")
        );
    }

    #[test]
    fn credentials_come_from_the_environment_or_a_file() {
        let dir = std::env::temp_dir().join(format!("portwatch-auth-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\nignored\n").unwrap();
        let basic = Auth::Basic("monitor".into(), Secret::File(dir.clone()));
        // "monitor:s3cret" in base64.
        assert_eq!(basic.header().unwrap(), "Basic bW9uaXRvcjpzM2NyZXQ=");
        std::fs::remove_file(&dir).unwrap();
        assert!(basic.header().unwrap_err().starts_with("cannot read "));
        let missing = Auth::Bearer(Secret::Env("PORTWATCH_TEST_NO_SUCH_VARIABLE".into()));
        assert_eq!(
            missing.header().unwrap_err(),
            "the environment variable PORTWATCH_TEST_NO_SUCH_VARIABLE is not set"
        );
    }

    #[test]
    fn redirects_resolve_against_where_they_were_read() {
        let from = (false, "site.example", 8080, "/a/b?x");
        let go = |l: &str| resolve_location(from, l);
        assert_eq!(
            go("/next"),
            Ok((false, "site.example".into(), 8080, "/next".into()))
        );
        assert_eq!(
            go("c"),
            Ok((false, "site.example".into(), 8080, "/a/c".into()))
        );
        assert_eq!(
            go("https://other.example/x#frag"),
            Ok((true, "other.example".into(), 443, "/x".into()))
        );
        assert_eq!(
            go("http://[::1]:81"),
            Ok((false, "::1".into(), 81, "/".into()))
        );
        assert_eq!(
            go("//cdn.example:444/y"),
            Ok((false, "cdn.example".into(), 444, "/y".into()))
        );
        for bad in ["ftp://x/", "http://:80/", "http://h:99999/", "", "/a b"] {
            assert!(go(bad).is_err(), "{bad:?}");
        }
    }
}
