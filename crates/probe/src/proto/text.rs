//! Line-based protocols: FTP, SMTP and NNTP (numeric replies), POP3, IMAP,
//! SSH's identification line, telnet, Redis, memcached and XMPP's stream
//! header. Each parser is a pure function over the bytes received so far.

use super::session::{Fail, Frame, SHOWN, Session, parse_line, show};
use super::{Ctx, Details};

/// A numeric reply (FTP, SMTP, NNTP): `NNN-text` lines continue it, a
/// `NNN text` line ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line.
    pub lines: Vec<String>,
}

/// Parses one numeric reply.
pub fn parse_reply(bytes: &[u8]) -> Frame<Reply> {
    let mut used = 0;
    let mut lines = Vec::new();
    loop {
        let line = match parse_line(&bytes[used..]) {
            Frame::Got(line, n) => {
                used += n;
                line
            }
            Frame::Need => return Frame::Need,
            Frame::Bad(message) => return Frame::Bad(message),
        };
        let head = line.as_bytes();
        let code = head
            .get(..3)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|d| d.iter().fold(0u16, |n, b| n * 10 + u16::from(b - b'0')));
        let Some(code) = code else {
            return Frame::Bad(format!(
                "expected a three-digit reply, got '{}'",
                show(line.as_bytes(), SHOWN)
            ));
        };
        let separator = head.get(3).copied();
        lines.push(line.get(4..).unwrap_or("").to_owned());
        if separator != Some(b'-') {
            return Frame::Got(Reply { code, lines }, used);
        }
        if lines.len() > 200 {
            return Frame::Bad("a reply of more than 200 lines".into());
        }
    }
}

async fn reply(session: &mut Session, what: &str, wanted: &[u16]) -> Result<Reply, Fail> {
    let reply = session.frame(what, parse_reply).await?;
    if wanted.contains(&reply.code) {
        Ok(reply)
    } else {
        Err(Fail::mismatch(format!(
            "expected {what} ({}), got {} {}",
            wanted
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
            reply.code,
            show(
                reply.lines.first().map_or(&b""[..], |l| l.as_bytes()),
                SHOWN
            )
        )))
    }
}

async fn upgrade(session: &mut Session, ctx: &Ctx<'_>) -> Result<(), Fail> {
    let report = super::tls::handshake(session, ctx.host, ctx.tls, &[]).await?;
    *ctx.tls_report.lock().expect("not poisoned") = Some(report);
    Ok(())
}

/// FTP: a 220 greeting; with STARTTLS, `AUTH TLS` answered 234.
pub async fn ftp(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    let greeting = reply(session, "an FTP greeting", &[220]).await?;
    if ctx.starttls {
        session.send(b"AUTH TLS\r\n").await?;
        reply(session, "an answer to AUTH TLS", &[234]).await?;
        upgrade(session, ctx).await?;
    }
    session.quit(b"QUIT\r\n").await;
    Ok(vec![("greeting", greeting.lines.join(" "))])
}

/// SMTP: a 220 greeting, `EHLO` answered 250, `QUIT`; with STARTTLS, the
/// upgrade and a second `EHLO` over TLS.
pub async fn smtp(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    let greeting = reply(session, "an SMTP greeting", &[220]).await?;
    session.send(b"EHLO portwatch.invalid\r\n").await?;
    let mut ehlo = reply(session, "an answer to EHLO", &[250]).await?;
    if ctx.starttls {
        if !ehlo
            .lines
            .iter()
            .any(|l| l.trim().eq_ignore_ascii_case("STARTTLS"))
        {
            return Err(Fail {
                reason: crate::Reason::TlsError,
                message: "the SMTP server does not offer STARTTLS".into(),
            });
        }
        session.send(b"STARTTLS\r\n").await?;
        reply(session, "an answer to STARTTLS", &[220]).await?;
        upgrade(session, ctx).await?;
        session.send(b"EHLO portwatch.invalid\r\n").await?;
        ehlo = reply(session, "an answer to EHLO over TLS", &[250]).await?;
    }
    session.quit(b"QUIT\r\n").await;
    let extensions: Vec<String> = ehlo
        .lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    Ok(vec![
        ("greeting", greeting.lines.join(" ")),
        ("extensions", extensions.join(" ")),
    ])
}

/// NNTP: a 200 (posting allowed) or 201 greeting.
pub async fn nntp(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    let greeting = reply(session, "an NNTP greeting", &[200, 201]).await?;
    session.quit(b"QUIT\r\n").await;
    Ok(vec![(
        "greeting",
        format!("{} {}", greeting.code, greeting.lines.join(" ")),
    )])
}

/// A POP3 status line: `+OK …` or `-ERR …`.
pub fn parse_pop3(bytes: &[u8]) -> Frame<Result<String, String>> {
    parse_line(bytes).and_then(|line, n| {
        if let Some(rest) = line.strip_prefix("+OK") {
            Frame::Got(Ok(rest.trim().to_owned()), n)
        } else if let Some(rest) = line.strip_prefix("-ERR") {
            Frame::Got(Err(rest.trim().to_owned()), n)
        } else {
            Frame::Bad(format!(
                "expected '+OK', got '{}'",
                show(line.as_bytes(), SHOWN)
            ))
        }
    })
}

async fn pop3_ok(session: &mut Session, what: &str) -> Result<String, Fail> {
    session
        .frame(what, parse_pop3)
        .await?
        .map_err(|error| Fail::mismatch(format!("expected +OK for {what}, got -ERR {error}")))
}

/// POP3: a `+OK` greeting; with STARTTLS, `STLS` answered `+OK`.
pub async fn pop3(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    let greeting = pop3_ok(session, "a POP3 greeting").await?;
    if ctx.starttls {
        session.send(b"STLS\r\n").await?;
        pop3_ok(session, "STLS").await?;
        upgrade(session, ctx).await?;
    }
    session.quit(b"QUIT\r\n").await;
    Ok(vec![("greeting", greeting)])
}

/// An IMAP greeting: `* OK …` or `* PREAUTH …`.
pub fn parse_imap_greeting(bytes: &[u8]) -> Frame<String> {
    parse_line(bytes).and_then(|line, n| {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("* OK") || upper.starts_with("* PREAUTH") {
            Frame::Got(line, n)
        } else {
            Frame::Bad(format!(
                "expected '* OK', got '{}'",
                show(line.as_bytes(), SHOWN)
            ))
        }
    })
}

/// The tagged answer to an IMAP command `tag`, skipping untagged lines.
pub fn parse_imap_tagged(bytes: &[u8], tag: &str) -> Frame<(bool, String)> {
    let mut used = 0;
    loop {
        match parse_line(&bytes[used..]) {
            Frame::Got(line, n) => {
                used += n;
                if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                    let ok = rest.to_ascii_uppercase().starts_with("OK");
                    return Frame::Got((ok, rest.to_owned()), used);
                }
                if !line.starts_with('*') && !line.starts_with('+') {
                    return Frame::Bad(format!(
                        "expected the answer to {tag}, got '{}'",
                        show(line.as_bytes(), SHOWN)
                    ));
                }
            }
            Frame::Need => return Frame::Need,
            Frame::Bad(m) => return Frame::Bad(m),
        }
    }
}

/// IMAP: a `* OK` greeting; with STARTTLS, `STARTTLS` answered `OK`.
pub async fn imap(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    let greeting = session
        .frame("an IMAP greeting", parse_imap_greeting)
        .await?;
    if ctx.starttls {
        session.send(b"a1 STARTTLS\r\n").await?;
        let (ok, text) = session
            .frame("an answer to STARTTLS", |b| parse_imap_tagged(b, "a1"))
            .await?;
        if !ok {
            return Err(Fail::mismatch(format!("STARTTLS refused: {text}")));
        }
        upgrade(session, ctx).await?;
    }
    session.quit(b"a2 LOGOUT\r\n").await;
    Ok(vec![("greeting", greeting)])
}

/// The SSH identification line (RFC 4253 §4.2): other lines may come
/// first; protocol 2.0 (or 1.99) is wanted.
pub fn parse_ssh(bytes: &[u8]) -> Frame<String> {
    let mut used = 0;
    for _ in 0..20 {
        match parse_line(&bytes[used..]) {
            Frame::Got(line, n) => {
                used += n;
                if let Some(rest) = line.strip_prefix("SSH-") {
                    return if rest.starts_with("2.0-") || rest.starts_with("1.99-") {
                        Frame::Got(line, used)
                    } else {
                        Frame::Bad(format!(
                            "expected SSH protocol 2.0, got '{}'",
                            show(line.as_bytes(), SHOWN)
                        ))
                    };
                }
            }
            Frame::Need if bytes.len() > 4096 => {
                return Frame::Bad(format!("expected 'SSH-2.0-', got '{}'", show(bytes, SHOWN)));
            }
            Frame::Need => {
                // Non-SSH text without a line end yet: refuse early when
                // the first bytes cannot start an SSH line or a banner.
                return if bytes.len() >= 4 && used == 0 && !bytes.is_ascii() {
                    Frame::Bad(format!("expected 'SSH-2.0-', got '{}'", show(bytes, SHOWN)))
                } else {
                    Frame::Need
                };
            }
            Frame::Bad(m) => return Frame::Bad(m),
        }
    }
    Frame::Bad(format!(
        "expected 'SSH-2.0-' within 20 lines, got '{}'",
        show(bytes, SHOWN)
    ))
}

/// SSH: the server's identification line; the software version is
/// reported. portwatch identifies itself and closes.
pub async fn ssh(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    let line = session.frame("an SSH identification", parse_ssh).await?;
    session
        .quit(concat!("SSH-2.0-portwatch_", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes())
        .await;
    let software = line.splitn(3, '-').nth(2).unwrap_or("").to_owned();
    Ok(vec![("banner", line), ("software", software)])
}

/// Telnet: option negotiation (IAC DO/DONT/WILL/WONT/SB) or text.
pub fn parse_telnet(bytes: &[u8]) -> Frame<String> {
    match bytes.first() {
        None => Frame::Need,
        Some(0xff) => match bytes.get(1) {
            None => Frame::Need,
            Some(command @ 250..=254) => {
                let name = match command {
                    250 => "SB",
                    251 => "WILL",
                    252 => "WONT",
                    253 => "DO",
                    _ => "DONT",
                };
                match bytes.get(2) {
                    None => Frame::Need,
                    Some(option) => Frame::Got(format!("IAC {name} option {option}"), bytes.len()),
                }
            }
            Some(other) => Frame::Bad(format!("IAC followed by {other}, not a negotiation")),
        },
        Some(_) => {
            let text: Vec<u8> = bytes.iter().copied().take_while(|b| *b != 0xff).collect();
            Frame::Got(show(&text, SHOWN), bytes.len())
        }
    }
}

/// Telnet: the server negotiates options or prints a banner or prompt.
pub async fn telnet(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    let first = session
        .frame("telnet negotiation or text", parse_telnet)
        .await?;
    Ok(vec![("greeting", first)])
}

/// A Redis simple reply: `+text` or `-error`.
pub fn parse_redis(bytes: &[u8]) -> Frame<Result<String, String>> {
    parse_line(bytes).and_then(|line, n| match line.as_bytes().first() {
        Some(b'+') => Frame::Got(Ok(line[1..].to_owned()), n),
        Some(b'-') => Frame::Got(Err(line[1..].to_owned()), n),
        _ => Frame::Bad(format!(
            "expected '+PONG', got '{}'",
            show(line.as_bytes(), SHOWN)
        )),
    })
}

/// Redis: `PING` answered `+PONG`; an authentication error also proves a
/// running Redis.
pub async fn redis(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    session.send(b"PING\r\n").await?;
    let answer = session.frame("an answer to PING", parse_redis).await?;
    session.quit(b"QUIT\r\n").await;
    match answer {
        Ok(text) if text.eq_ignore_ascii_case("PONG") => Ok(vec![("answer", "+PONG".into())]),
        Ok(text) => Err(Fail::mismatch(format!(
            "expected +PONG, got +{}",
            show(text.as_bytes(), SHOWN)
        ))),
        Err(error) => {
            let upper = error.to_ascii_uppercase();
            if ["NOAUTH", "WRONGPASS", "DENIED", "AUTH"]
                .iter()
                .any(|w| upper.contains(w))
            {
                Ok(vec![
                    ("answer", format!("-{error}")),
                    ("auth", "required".into()),
                ])
            } else {
                Err(Fail::mismatch(format!(
                    "expected +PONG, got -{}",
                    show(error.as_bytes(), SHOWN)
                )))
            }
        }
    }
}

/// memcached: `version` answered `VERSION x.y.z`.
pub fn parse_memcached(bytes: &[u8]) -> Frame<String> {
    parse_line(bytes).and_then(|line, n| match line.strip_prefix("VERSION ") {
        Some(version) => Frame::Got(version.trim().to_owned(), n),
        None => Frame::Bad(format!(
            "expected 'VERSION', got '{}'",
            show(line.as_bytes(), SHOWN)
        )),
    })
}

/// memcached: the server's version.
pub async fn memcached(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    session.send(b"version\r\n").await?;
    let version = session
        .frame("an answer to version", parse_memcached)
        .await?;
    session.quit(b"quit\r\n").await;
    Ok(vec![("version", version)])
}

/// XMPP: the server's stream header and features, up to
/// `</stream:features>`; whether STARTTLS is offered.
pub fn parse_xmpp_features(bytes: &[u8]) -> Frame<bool> {
    let text = String::from_utf8_lossy(bytes);
    if !text.is_empty() && !text.trim_start().starts_with('<') {
        return Frame::Bad(format!(
            "expected an XML stream, got '{}'",
            show(bytes, SHOWN)
        ));
    }
    if text.contains("<stream:error") {
        return Frame::Bad(format!(
            "the server sent a stream error: '{}'",
            show(bytes, SHOWN)
        ));
    }
    match text.find("</stream:features>") {
        Some(end) => Frame::Got(
            text[..end].contains("urn:ietf:params:xml:ns:xmpp-tls"),
            end + "</stream:features>".len(),
        ),
        None => Frame::Need,
    }
}

/// XMPP (client port): the stream opens with features; with STARTTLS, the
/// server must offer it and answer `<proceed/>`.
pub async fn xmpp(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    let open = format!(
        "<?xml version='1.0'?><stream:stream to='{}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
        ctx.tls.sni.as_deref().unwrap_or(ctx.host)
    );
    session.send(open.as_bytes()).await?;
    let offered = session
        .frame("XMPP stream features", parse_xmpp_features)
        .await?;
    if ctx.starttls {
        if !offered {
            return Err(Fail {
                reason: crate::Reason::TlsError,
                message: "the XMPP server does not offer STARTTLS".into(),
            });
        }
        session
            .send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        session
            .frame("<proceed/>", |b| {
                let text = String::from_utf8_lossy(b);
                match (text.find("<proceed"), text.find("<failure")) {
                    (_, Some(_)) => Frame::Bad("the server refused STARTTLS".into()),
                    (Some(_), _) => match text.find('>') {
                        Some(end) => Frame::Got((), end + 1),
                        None => Frame::Need,
                    },
                    _ => Frame::Need,
                }
            })
            .await?;
        upgrade(session, ctx).await?;
    }
    session.quit(b"</stream:stream>").await;
    Ok(vec![(
        "starttls",
        if offered { "offered" } else { "not offered" }.into(),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_replies() {
        assert_eq!(
            parse_reply(b"220-first\r\n220 last\r\nEXTRA"),
            Frame::Got(
                Reply {
                    code: 220,
                    lines: vec!["first".into(), "last".into()]
                },
                21
            )
        );
        assert_eq!(parse_reply(b"220-first\r\n"), Frame::Need);
        assert_eq!(
            parse_reply(b"250\r\n"),
            Frame::Got(
                Reply {
                    code: 250,
                    lines: vec![String::new()]
                },
                5
            )
        );
        assert!(
            matches!(parse_reply(b"HTTP/1.1 400\r\n"), Frame::Bad(m) if m.contains("three-digit"))
        );
    }

    #[test]
    fn pop3_imap_and_ssh() {
        assert_eq!(
            parse_pop3(b"+OK ready\r\n"),
            Frame::Got(Ok("ready".into()), 11)
        );
        assert_eq!(parse_pop3(b"-ERR no\r\n"), Frame::Got(Err("no".into()), 9));
        assert!(matches!(parse_pop3(b"* OK\r\n"), Frame::Bad(_)));
        assert!(matches!(
            parse_imap_greeting(b"* OK IMAP4rev1\r\n"),
            Frame::Got(..)
        ));
        assert!(matches!(parse_imap_greeting(b"* BYE\r\n"), Frame::Bad(_)));
        assert_eq!(
            parse_imap_tagged(b"* CAPABILITY x\r\na1 OK go\r\n", "a1"),
            Frame::Got((true, "OK go".into()), 26)
        );
        assert_eq!(
            parse_ssh(b"hello\r\nSSH-2.0-OpenSSH_9.2\r\n"),
            Frame::Got("SSH-2.0-OpenSSH_9.2".into(), 28)
        );
        assert!(matches!(parse_ssh(b"SSH-1.5-old\r\n"), Frame::Bad(m) if m.contains("2.0")));
        assert_eq!(parse_ssh(b"SSH-2.0-"), Frame::Need);
        assert!(matches!(parse_ssh(b"\x00\x01\x02\xff"), Frame::Bad(_)));
    }

    #[test]
    fn telnet_redis_memcached_xmpp() {
        assert_eq!(
            parse_telnet(&[0xff, 0xfd, 0x18]),
            Frame::Got("IAC DO option 24".into(), 3)
        );
        assert_eq!(parse_telnet(&[0xff]), Frame::Need);
        assert_eq!(parse_telnet(b"login: "), Frame::Got("login: ".into(), 7));
        assert_eq!(parse_redis(b"+PONG\r\n"), Frame::Got(Ok("PONG".into()), 7));
        assert_eq!(
            parse_redis(b"-NOAUTH Authentication required.\r\n"),
            Frame::Got(Err("NOAUTH Authentication required.".into()), 34)
        );
        assert!(matches!(parse_redis(b"HTTP/1.1 400\r\n"), Frame::Bad(_)));
        assert_eq!(
            parse_memcached(b"VERSION 1.6.18\r\n"),
            Frame::Got("1.6.18".into(), 16)
        );
        assert!(matches!(parse_memcached(b"ERROR\r\n"), Frame::Bad(_)));
        let features = b"<?xml version='1.0'?><stream:stream><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>";
        assert!(matches!(parse_xmpp_features(features), Frame::Got(true, _)));
        assert!(matches!(parse_xmpp_features(b"SSH-2.0-x"), Frame::Bad(_)));
    }
}
