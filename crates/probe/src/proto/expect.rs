//! Send/expect conversations for services without a built-in check: read
//! a banner first or send first, expect substrings or regular expressions
//! in sequence, reuse a regex's captured groups in a later send (`${1}`,
//! `${name}`), and send a `quit` string before closing.

use std::collections::HashMap;

use regex::bytes::Regex;

use super::session::{Fail, Frame, SHOWN, Session, show};

/// One step of a conversation.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send these bytes (after `${…}` substitution).
    Send(Vec<u8>),
    /// Wait until these bytes have arrived.
    Expect(Vec<u8>),
    /// Wait until this expression matches what has arrived.
    ExpectRegex(Regex),
}

impl PartialEq for Step {
    fn eq(&self, other: &Step) -> bool {
        match (self, other) {
            (Step::Send(a), Step::Send(b)) | (Step::Expect(a), Step::Expect(b)) => a == b,
            (Step::ExpectRegex(a), Step::ExpectRegex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for Step {}

/// Reads `\r`, `\n`, `\t`, `\0`, `\\` and `\xNN` escapes.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)
                    .ok_or_else(|| {
                        format!("'\\x{hex}' is not a byte: write two hex digits, e.g. \\x00")
                    })?;
                out.push(byte);
            }
            Some(other) => {
                return Err(format!(
                    "unknown escape '\\{other}': use \\r \\n \\t \\0 \\\\ or \\xNN"
                ));
            }
            None => return Err("a trailing '\\': write \\\\ for a backslash".into()),
        }
    }
    Ok(out)
}

/// A regular expression for `expect_regex`, or why it is not one.
pub fn regex(text: &str) -> Result<Regex, String> {
    Regex::new(text).map_err(|e| {
        format!(
            "'{text}' is not a regular expression: {}",
            e.to_string().lines().last().unwrap_or("")
        )
    })
}

/// Where `needle` first appears in `hay`: the end of the match.
pub fn find(hay: &[u8], needle: &[u8]) -> Frame<usize> {
    if needle.is_empty() {
        return Frame::Got(0, 0);
    }
    match hay.windows(needle.len()).position(|w| w == needle) {
        Some(at) => Frame::Got(at, at + needle.len()),
        None => Frame::Need,
    }
}

/// Fills `${1}` or `${name}` from the captures so far; unknown ones stay.
pub fn substitute(bytes: &[u8], captures: &HashMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(start) = rest.windows(2).position(|w| w == b"${") {
        out.extend_from_slice(&rest[..start]);
        let after = &rest[start + 2..];
        match after.iter().position(|b| *b == b'}') {
            Some(end) => {
                let name = String::from_utf8_lossy(&after[..end]);
                match captures.get(name.as_ref()) {
                    Some(value) => out.extend_from_slice(value),
                    None => out.extend_from_slice(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.extend_from_slice(&rest[start..]);
                rest = &[];
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The `custom` protocol's conversation: runs the steps, then sends the
/// quit bytes, if any.
pub async fn conversation(
    session: &mut Session,
    ctx: &super::Ctx<'_>,
) -> Result<super::Details, Fail> {
    let matched = run(session, ctx.steps).await?;
    if let Some(quit) = ctx.quit {
        session.quit(quit).await;
    }
    Ok(if matched.is_empty() {
        Vec::new()
    } else {
        vec![("matched", matched)]
    })
}

/// Runs the steps; returns what the last expectation matched.
pub async fn run(session: &mut Session, steps: &[Step]) -> Result<String, Fail> {
    let mut captures: HashMap<String, Vec<u8>> = HashMap::new();
    let mut last = String::new();
    for step in steps {
        match step {
            Step::Send(bytes) => session.send(&substitute(bytes, &captures)).await?,
            Step::Expect(needle) => {
                let what = format!("'{}'", show(needle, SHOWN));
                let needle = needle.clone();
                session
                    .frame(&what, move |hay| find(hay, &needle))
                    .await
                    .map_err(|fail| expected(fail, &what))?;
                last = format!("'{}'", show(&needle_or(step), SHOWN));
            }
            Step::ExpectRegex(pattern) => {
                let what = format!("a match of /{}/", pattern.as_str());
                let found = session
                    .frame(&what, |hay| match pattern.captures(hay) {
                        Some(groups) => {
                            let whole = groups.get(0).map_or(0..0, |m| m.range());
                            let mut named = HashMap::new();
                            for (index, group) in groups.iter().enumerate() {
                                if let Some(group) = group {
                                    named.insert(index.to_string(), group.as_bytes().to_vec());
                                }
                            }
                            for name in pattern.capture_names().flatten() {
                                if let Some(group) = groups.name(name) {
                                    named.insert(name.to_owned(), group.as_bytes().to_vec());
                                }
                            }
                            Frame::Got((named, hay[whole.clone()].to_vec()), whole.end)
                        }
                        None => Frame::Need,
                    })
                    .await
                    .map_err(|fail| expected(fail, &what))?;
                last = format!("'{}'", show(&found.1, SHOWN));
                captures.extend(found.0);
            }
        }
    }
    Ok(last)
}

fn needle_or(step: &Step) -> Vec<u8> {
    match step {
        Step::Expect(needle) => needle.clone(),
        _ => Vec::new(),
    }
}

/// A timeout or close while waiting for an expectation means the answer
/// was wrong when something else arrived.
fn expected(fail: Fail, what: &str) -> Fail {
    Fail {
        message: format!("expected {what}: {}", fail.message),
        ..fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape("a\\r\\n\\x00\\\\").unwrap(), b"a\r\n\x00\\");
        assert!(unescape("\\q").unwrap_err().contains("unknown escape"));
        assert!(unescape("\\x4").unwrap_err().contains("two hex digits"));
        assert!(unescape("end\\").unwrap_err().contains("trailing"));
        assert_eq!(unescape("é").unwrap(), "é".as_bytes());
    }

    #[test]
    fn finding_and_substituting() {
        assert_eq!(find(b"xx220 ok", b"220"), Frame::Got(2, 5));
        assert_eq!(find(b"xx", b"220"), Frame::Need);
        let mut captures = HashMap::new();
        captures.insert("1".to_owned(), b"abc".to_vec());
        captures.insert("token".to_owned(), b"T".to_vec());
        assert_eq!(
            substitute(b"AUTH ${1} ${token} ${missing} ${", &captures),
            b"AUTH abc T ${missing} ${"
        );
    }

    #[test]
    fn bad_regexes_say_why() {
        assert!(
            regex("(")
                .unwrap_err()
                .starts_with("'(' is not a regular expression")
        );
    }
}
