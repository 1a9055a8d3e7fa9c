//! The classic small services: echo (7), time (37, RFC 868), and the
//! query-and-hang-up ones: whois (43), gopher (70), finger (79).

use super::session::{Fail, Frame, SHOWN, Session, show};
use super::{Ctx, Details};

/// The echo answer: exactly the bytes sent.
pub fn parse_echo(bytes: &[u8], sent: &[u8]) -> Frame<()> {
    let n = bytes.len().min(sent.len());
    if bytes[..n] != sent[..n] {
        return Frame::Bad(format!(
            "expected the {} bytes sent back, got '{}'",
            sent.len(),
            show(bytes, SHOWN)
        ));
    }
    if bytes.len() >= sent.len() {
        Frame::Got((), sent.len())
    } else {
        Frame::Need
    }
}

/// echo: 16 random bytes come back unchanged.
pub async fn echo(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    let sent: [u8; 16] = rand::random();
    session.send(&sent).await?;
    session
        .frame("the echoed bytes", |b| parse_echo(b, &sent))
        .await?;
    Ok(vec![("echoed", "16 bytes".into())])
}

/// Seconds between 1900-01-01 and 1970-01-01.
const EPOCH_1900: i64 = 2_208_988_800;

/// The RFC 868 time as Unix seconds. The 32-bit count wraps in 2036;
/// values below 2^31 are taken as after the wrap.
pub fn parse_time(bytes: &[u8]) -> Frame<i64> {
    match bytes.get(..4) {
        None => Frame::Need,
        Some(raw) => {
            let value = i64::from(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]));
            let value = if value < 1 << 31 {
                value + (1 << 32)
            } else {
                value
            };
            Frame::Got(value - EPOCH_1900, 4)
        }
    }
}

/// time: four bytes of seconds since 1900; the offset from this clock is
/// reported.
pub async fn time(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    let server = session.frame("a 4-byte time", parse_time).await?;
    let offset = server - jiff::Timestamp::now().as_second();
    let at = jiff::Timestamp::from_second(server)
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(vec![("time", at), ("offset_s", offset.to_string())])
}

async fn query(session: &mut Session, request: &[u8], what: &str) -> Result<Vec<u8>, Fail> {
    session.send(request).await?;
    let answer = session.until_close(what).await?;
    if answer.is_empty() {
        return Err(Fail::mismatch(format!("an empty {what}")));
    }
    Ok(answer)
}

fn first_line(bytes: &[u8]) -> String {
    let line = bytes
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or(bytes);
    show(line.strip_suffix(b"\r").unwrap_or(line), SHOWN)
}

/// whois: a query for the monitored host's name is answered with text.
pub async fn whois(session: &mut Session, ctx: &Ctx<'_>) -> Result<Details, Fail> {
    let answer = query(
        session,
        format!("{}\r\n", ctx.host).as_bytes(),
        "whois answer",
    )
    .await?;
    Ok(vec![("answer", first_line(&answer))])
}

/// gopher: the root selector is answered with a menu.
pub async fn gopher(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    let answer = query(session, b"\r\n", "gopher menu").await?;
    Ok(vec![("answer", first_line(&answer))])
}

/// finger: an empty query (the logged-in users) is answered with text.
pub async fn finger(session: &mut Session, _: &Ctx<'_>) -> Result<Details, Fail> {
    let answer = query(session, b"\r\n", "finger answer").await?;
    Ok(vec![("answer", first_line(&answer))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_and_time() {
        assert_eq!(parse_echo(b"ab", b"abcd"), Frame::Need);
        assert_eq!(parse_echo(b"abcd", b"abcd"), Frame::Got((), 4));
        assert!(matches!(parse_echo(b"xy", b"abcd"), Frame::Bad(_)));
        // 2026-11-23T00:00:00Z is 4_004_380_800 seconds after 1900.
        let raw = 4_004_380_800u32.to_be_bytes();
        assert_eq!(parse_time(&raw), Frame::Got(1_795_392_000, 4));
        assert_eq!(parse_time(&raw[..3]), Frame::Need);
        // After the 2036 wrap, small values are the next era.
        assert_eq!(
            parse_time(&[0, 0, 0, 0]),
            Frame::Got((1 << 32) - EPOCH_1900, 4)
        );
        assert_eq!(first_line(b"\r\n\r\nDomain: x\r\nmore"), "Domain: x");
    }
}
