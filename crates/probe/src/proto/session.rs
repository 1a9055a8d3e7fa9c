//! One conversation with a server: bounded reads against the check's
//! deadline, the time to the first byte, and the failure reasons a
//! conversation can end with (reset, closed, no response, mismatch).
//!
//! Received bytes are parsed by pure functions returning a [`Frame`], so the
//! parsers never touch a socket and can be fuzzed on their own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Reason;

/// What a parser makes of the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<T> {
    /// Not enough yet: read more.
    Need,
    /// A whole answer, and how many bytes it used.
    Got(T, usize),
    /// Not this protocol: what was wrong.
    Bad(String),
}

impl<T> Frame<T> {
    /// Goes on with a whole answer and the bytes it used; `Need` and `Bad`
    /// pass through.
    pub fn and_then<U>(self, next: impl FnOnce(T, usize) -> Frame<U>) -> Frame<U> {
        match self {
            Frame::Got(value, used) => next(value, used),
            Frame::Need => Frame::Need,
            Frame::Bad(message) => Frame::Bad(message),
        }
    }
}

/// Why a conversation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// The reason code.
    pub reason: Reason,
    /// What happened, with what arrived (escaped and truncated).
    pub message: String,
}

impl Fail {
    /// An answer that is not what the protocol wants.
    pub fn mismatch(message: impl Into<String>) -> Fail {
        Fail {
            reason: Reason::ProtocolMismatch,
            message: message.into(),
        }
    }
}

/// The connection, plain or after a TLS handshake.
#[allow(clippy::large_enum_variant)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Shows received bytes in a message: printable ASCII as is, the rest
/// escaped, at most `limit` bytes.
pub fn show(bytes: &[u8], limit: usize) -> String {
    let mut out = String::new();
    for &b in bytes.iter().take(limit) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > limit {
        out.push('…');
    }
    out
}

/// How much of the received bytes messages show.
pub const SHOWN: usize = 64;

/// A conversation over one connection.
pub struct Session {
    stream: Option<Stream>,
    buf: Vec<u8>,
    /// When the whole check must end.
    pub deadline: Instant,
    /// The most bytes read in all.
    pub max_bytes: usize,
    received: usize,
    opened: Instant,
    /// Connection established to the first byte received.
    pub first_byte: Option<Duration>,
    /// The check's timeout, for messages.
    pub timeout: Duration,
}

impl Session {
    /// A conversation on a connection established just now.
    pub fn new(
        stream: TcpStream,
        deadline: Instant,
        timeout: Duration,
        max_bytes: usize,
    ) -> Session {
        Session {
            stream: Some(Stream::Plain(stream)),
            buf: Vec::new(),
            deadline,
            max_bytes,
            received: 0,
            opened: Instant::now(),
            first_byte: None,
            timeout,
        }
    }

    /// Bytes received and not yet used by a frame.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the bytes received and not yet used.
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Whether `max_bytes` have been read: reading more would fail.
    pub fn full(&self) -> bool {
        self.received >= self.max_bytes
    }

    /// Reads once more into the pending bytes; `what` names the awaited
    /// answer for messages.
    pub async fn more(&mut self, what: &str) -> Result<(), Fail> {
        self.fill(what).await
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    /// Takes the plain connection (for a TLS handshake); bytes already
    /// received but unused are dropped.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        self.buf.clear();
        match self.stream.take() {
            Some(Stream::Plain(s)) => Some(s),
            other => {
                self.stream = other;
                None
            }
        }
    }

    /// Continues over TLS.
    pub fn put_tls(&mut self, stream: tokio_rustls::client::TlsStream<TcpStream>) {
        self.stream = Some(Stream::Tls(Box::new(stream)));
    }

    fn stream(&mut self) -> Result<&mut Stream, Fail> {
        self.stream.as_mut().ok_or_else(handed_over)
    }

    /// Sends bytes before the deadline.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Fail> {
        let deadline = self.deadline;
        let timeout = self.timeout;
        let stream = self.stream()?;
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(io_fail(&error, "while sending", &[])),
            Err(_) => Err(Fail {
                reason: Reason::NoResponse,
                message: format!("could not send within {}", crate::duration::format(timeout)),
            }),
        }
    }

    /// Reads once more into the buffer; `what` names the awaited answer
    /// for messages.
    async fn fill(&mut self, what: &str) -> Result<(), Fail> {
        if self.received >= self.max_bytes {
            return Err(Fail::mismatch(format!(
                "no {what} within the first {} bytes: '{}'",
                self.max_bytes,
                show(&self.buf, SHOWN)
            )));
        }
        // Read straight into the buffer's tail: no allocation per read.
        let room = (self.max_bytes - self.received).min(16 * 1024);
        let start = self.buf.len();
        let timeout = self.timeout;
        let Some(stream) = self.stream.as_mut() else {
            return Err(handed_over());
        };
        self.buf.resize(start + room, 0);
        let read =
            tokio::time::timeout_at(self.deadline, stream.read(&mut self.buf[start..])).await;
        let got = match &read {
            Ok(Ok(n)) => *n,
            _ => 0,
        };
        self.buf.truncate(start + got);
        match read {
            Ok(Ok(0)) => Err(Fail {
                reason: Reason::ClosedByPeer,
                message: if self.received == 0 {
                    format!("the server closed the connection without a word (waiting for {what})")
                } else {
                    format!(
                        "the server closed the connection while {what} was awaited, after '{}'",
                        show(&self.buf, SHOWN)
                    )
                },
            }),
            Ok(Ok(n)) => {
                if self.first_byte.is_none() {
                    self.first_byte = Some(self.opened.elapsed());
                }
                self.received += n;
                Ok(())
            }
            Ok(Err(error)) => Err(io_fail(
                &error,
                &format!("while {what} was awaited"),
                &self.buf,
            )),
            Err(_) => Err(Fail {
                reason: Reason::NoResponse,
                message: if self.received == 0 {
                    format!(
                        "no answer within {} (waiting for {what})",
                        crate::duration::format(timeout)
                    )
                } else {
                    format!(
                        "no {what} within {}; received '{}'",
                        crate::duration::format(timeout),
                        show(&self.buf, SHOWN)
                    )
                },
            }),
        }
    }

    /// Reads until `parse` finds a whole answer, and consumes it.
    pub async fn frame<T>(
        &mut self,
        what: &str,
        parse: impl Fn(&[u8]) -> Frame<T>,
    ) -> Result<T, Fail> {
        loop {
            match parse(&self.buf) {
                Frame::Got(value, used) => {
                    self.buf.drain(..used.min(self.buf.len()));
                    return Ok(value);
                }
                Frame::Bad(message) => return Err(Fail::mismatch(message)),
                Frame::Need => self.fill(what).await?,
            }
        }
    }

    /// Reads one line (without its line ending).
    pub async fn line(&mut self, what: &str) -> Result<String, Fail> {
        self.frame(what, parse_line).await
    }

    /// Reads whatever arrives until the server closes or the deadline or
    /// `max_bytes`, for protocols that answer and hang up (whois, finger).
    pub async fn until_close(&mut self, what: &str) -> Result<Vec<u8>, Fail> {
        loop {
            match self.fill(what).await {
                Ok(()) => {}
                Err(fail) if fail.reason == Reason::ClosedByPeer && !self.buf.is_empty() => {
                    return Ok(std::mem::take(&mut self.buf));
                }
                Err(fail)
                    if (fail.reason == Reason::NoResponse
                        || fail.reason == Reason::ProtocolMismatch)
                        && !self.buf.is_empty() =>
                {
                    return Ok(std::mem::take(&mut self.buf));
                }
                Err(fail) => return Err(fail),
            }
        }
    }

    /// Sends `bytes` (a polite goodbye) and ignores any failure.
    pub async fn quit(&mut self, bytes: &[u8]) {
        let _ = self.send(bytes).await;
        if let Ok(stream) = self.stream() {
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.shutdown()).await;
        }
    }
}

/// The connection is with the TLS handshake (a bug if ever seen).
fn handed_over() -> Fail {
    Fail {
        reason: Reason::LocalError,
        message: "the connection was handed over and not returned".into(),
    }
}

fn io_fail(error: &io::Error, context: &str, received: &[u8]) -> Fail {
    let after = if received.is_empty() {
        String::new()
    } else {
        format!(" after '{}'", show(received, SHOWN))
    };
    match error.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Fail {
            reason: Reason::Reset,
            message: format!("the server reset the connection {context}{after}"),
        },
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionAborted => Fail {
            reason: Reason::ClosedByPeer,
            message: format!("the server closed the connection {context}{after}"),
        },
        _ if error
            .get_ref()
            .is_some_and(|e| e.is::<tokio_rustls::rustls::Error>()) =>
        {
            Fail {
                reason: Reason::TlsError,
                message: format!("TLS failed {context}: {error}"),
            }
        }
        _ => Fail {
            reason: Reason::Reset,
            message: format!("the connection failed {context}: {error}{after}"),
        },
    }
}

/// A line ending in `\n` (a `\r` before it is dropped). Lines longer than
/// 8 KiB are not a line protocol.
pub fn parse_line(bytes: &[u8]) -> Frame<String> {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(end) => {
            let line = &bytes[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Frame::Got(String::from_utf8_lossy(line).into_owned(), end + 1)
        }
        None if bytes.len() > 8192 => Frame::Bad(format!(
            "a line longer than 8 KiB: '{}'",
            show(bytes, SHOWN)
        )),
        None => Frame::Need,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_shown_bytes() {
        assert_eq!(parse_line(b"abc"), Frame::Need);
        assert_eq!(
            parse_line(b"220 hi\r\nrest"),
            Frame::Got("220 hi".into(), 8)
        );
        assert_eq!(parse_line(b"x\n"), Frame::Got("x".into(), 2));
        assert!(matches!(parse_line(&[b'a'; 9000]), Frame::Bad(_)));
        assert_eq!(show(b"a\r\n\x00\xff'", 64), "a\\r\\n\\x00\\xff\\'");
        assert_eq!(show(b"abcdef", 3), "abc…");
    }
}
