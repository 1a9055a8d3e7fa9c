//! HTTP/1.1: one request (HEAD by default), the status line and headers
//! parsed, the status judged against the expected ones (default 200–399).

use super::session::{Fail, Frame, SHOWN, Session, show};
use super::{Ctx, Details};

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

/// What an HTTP check sends and accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// HEAD or GET.
    pub method: String,
    /// The request path.
    pub path: String,
    /// Accepted statuses; empty: 200–399.
    pub expect_status: Vec<u16>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            method: "HEAD".into(),
            path: "/".into(),
            expect_status: Vec::new(),
        }
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
    let server = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("server"))
        .map(|(_, value)| value.trim().to_owned());
    Frame::Got(
        Head {
            version,
            status,
            reason,
            server,
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

/// HTTP or HTTPS (the TLS is already on for HTTPS).
pub async fn http(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    let host = ctx.tls.sni.as_deref().unwrap_or(ctx.host);
    let host_header = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: portwatch/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        ctx.http.method,
        ctx.http.path,
        env!("CARGO_PKG_VERSION")
    );
    session.send(request.as_bytes()).await?;
    let head = session.frame("an HTTP response", parse_head).await?;
    let mut details = vec![
        ("status", format!("{} {}", head.status, head.reason)),
        ("version", head.version.clone()),
    ];
    if let Some(server) = &head.server {
        details.push(("server", server.clone()));
    }
    if !accepted(head.status, &ctx.http.expect_status) {
        let wanted = if ctx.http.expect_status.is_empty() {
            "200-399".to_owned()
        } else {
            ctx.http
                .expect_status
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
    Ok(details)
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
                    server: Some("nginx/1.22.1".into())
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
}
