//! Text that crosses a trust boundary: names users give, and replies that
//! monitored servers send.
//!
//! - Names, tags and hosts refuse control characters, bidirectional
//!   overrides and zero-width characters ([`name_problem`]): a newline in a
//!   server name could forge a log line, and an override can make a name
//!   read as another.
//! - Text from the network is made [`printable`] before it is used in a
//!   notification, and [`header_safe`] before it goes into a header.
//! - [`visible`] shows such characters as escapes on pages.

/// Whether `c` reorders or hides text: the bidirectional embeddings,
/// overrides and isolates, the directional marks, and zero-width
/// characters.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200B}'..='\u{200F}'
            | '\u{061C}'
            | '\u{2060}'
            | '\u{FEFF}'
    )
}

/// Why `text` cannot be a name (of a sensor, server, group, tag, channel or
/// user) or host, or `None` when it can.
pub fn name_problem(text: &str) -> Option<String> {
    let bad = text
        .chars()
        .find(|c| c.is_control() || is_invisible_format(*c))?;
    let what = if bad.is_control() {
        "a control character"
    } else {
        "an invisible or text-direction character"
    };
    Some(format!(
        "contains {what} (U+{:04X}): use visible characters only",
        bad as u32
    ))
}

/// `text` without control characters (line breaks and tabs become spaces)
/// and without invisible or text-direction characters.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\n' | '\r' | '\t') {
            out.push(' ');
        } else if !(c.is_control() || is_invisible_format(c)) {
            out.push(c);
        }
    }
    out
}

/// `text` fit for an HTTP or mail header: printable, on one line, at most
/// `max` characters.
pub fn header_safe(text: &str, max: usize) -> String {
    printable(text).chars().take(max).collect()
}

/// `text` with control, invisible and text-direction characters shown as
/// `\u{…}` escapes, for pages that show what a server sent.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_invisible_format(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_control_bidi_and_zero_width_characters() {
        for bad in [
            "a\0b",
            "a\rb",
            "a\nb",
            "a\x1b[31mb",
            "evil\u{202E}txt.exe",
            "a\u{200B}b",
            "x\u{2066}y",
            "\u{FEFF}bom",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        for good in ["db-1", "Прод", "web/https", "東京", "a b"] {
            assert_eq!(name_problem(good), None, "{good:?}");
        }
        assert!(name_problem("a\u{202E}b").unwrap().contains("U+202E"));
    }

    #[test]
    fn network_text_is_made_printable_and_header_safe() {
        assert_eq!(printable("up\r\nX-Injected: yes"), "up  X-Injected: yes");
        assert_eq!(printable("a\u{202E}b\u{7}c"), "abc");
        assert_eq!(header_safe("title\rinjected", 100), "title injected");
        assert_eq!(header_safe("abcdef", 3), "abc");
        assert!(
            !header_safe("\r\n\0\u{85}", 100)
                .chars()
                .any(char::is_control)
        );
    }

    #[test]
    fn pages_show_hidden_characters_as_escapes() {
        assert_eq!(visible("admin\u{202E}gpj.exe"), "admin\\u{202e}gpj.exe");
        assert_eq!(visible("a\rb"), "a\\u{000d}b");
        assert_eq!(visible("plain"), "plain");
    }
}
