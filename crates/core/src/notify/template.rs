//! Message templates: text with `{placeholder}`s filled from a
//! [`Payload`]. `{{` and `}}` stand for literal braces. `{summary}` is the
//! built-in one-line text, so a template can add to it rather than replace
//! it.

use super::{Kind, Payload};

/// Every placeholder a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "sensor",
    "server",
    "group",
    "host",
    "port",
    "from",
    "to",
    "STATE",
    "reason",
    "message",
    "at",
    "since",
    "link",
    "kind",
    "response_ms",
    "suppressed",
    "summary",
];

/// One piece of a template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Field(&'a str),
}

/// Splits a template, or says what is wrong with it.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("{{") {
            out.push(Piece::Text("{"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            out.push(Piece::Text("}"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after.find('}').ok_or_else(|| {
                "a '{' is not closed: write {sensor}, or {{ for a brace".to_owned()
            })?;
            let name = &after[..end];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{name}}}: use one of {}",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            out.push(Piece::Field(name));
            rest = &after[end + 1..];
        } else if rest.starts_with('}') {
            return Err("a lone '}': write }} for a brace".to_owned());
        } else {
            let end = rest.find(['{', '}']).unwrap_or(rest.len());
            out.push(Piece::Text(&rest[..end]));
            rest = &rest[end..];
        }
    }
    Ok(out)
}

/// Checks a template before it is stored.
pub fn validate(template: &str) -> Result<(), String> {
    pieces(template).map(|_| ())
}

/// Fills a template. An invalid one (validated templates never are) is
/// returned as it is, so a message still goes out.
pub fn render(template: &str, payload: &Payload) -> String {
    render_with(template, payload, &|value| value.to_owned())
}

/// Fills a template, passing every field's value through `escape` (a chat
/// service's markup escaping) after removing control and bidi-override
/// characters, which may come from a monitored server's reply.
pub fn render_with(template: &str, payload: &Payload, escape: &dyn Fn(&str) -> String) -> String {
    let Ok(pieces) = pieces(template) else {
        return template.to_owned();
    };
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Field(name) => out.push_str(&escape(&portwatch_probe::text::printable(&field(
                name, payload,
            )))),
        }
    }
    out
}

fn field(name: &str, p: &Payload) -> String {
    match name {
        "sensor" => p.sensor.clone(),
        "server" => p.server.clone(),
        "group" => p.group.clone().unwrap_or_default(),
        "host" => p.host.clone(),
        "port" => p.port.to_string(),
        "from" => p.from.clone(),
        "to" => p.to.clone(),
        "STATE" => p.to.to_uppercase(),
        "reason" => p.reason.clone().unwrap_or_else(|| "-".into()),
        "message" => p.message.clone(),
        "at" => p.at.clone(),
        "since" => p.since.clone(),
        "link" => p.link.clone().unwrap_or_default(),
        "kind" => p.kind.as_str().to_owned(),
        "response_ms" => p
            .response_ms
            .map(|ms| format!("{ms:.1}"))
            .unwrap_or_default(),
        "suppressed" => p.suppressed.unwrap_or(0).to_string(),
        "summary" => render(default_text(p.kind), p),
        _ => String::new(),
    }
}

/// The built-in message of each kind.
pub fn default_text(kind: Kind) -> &'static str {
    match kind {
        Kind::Change => "{sensor} is {STATE} ({reason}): {message}",
        Kind::Escalation | Kind::Repeat => {
            "{sensor} is still DOWN since {since} ({reason}): {message}"
        }
        Kind::Flapping => {
            "{sensor} is flapping ({STATE} now): further notifications to this channel are held back"
        }
        Kind::Summary => {
            "{sensor}: {suppressed} notifications held back while it flapped; it is {STATE} now"
        }
        Kind::Test => "portwatch test notification: if you read this, the channel works",
        Kind::Node => "{message}",
    }
}

/// The built-in title of each kind.
pub fn default_title(kind: Kind) -> &'static str {
    match kind {
        Kind::Escalation | Kind::Repeat => "{sensor} is still DOWN",
        Kind::Flapping => "{sensor} is flapping",
        Kind::Test => "portwatch test notification",
        Kind::Node => "portwatch node {server} lapsed",
        Kind::Change | Kind::Summary => "{sensor} is {STATE}",
    }
}

/// Fills `payload`'s title and text for a channel with these templates.
pub fn word(payload: &mut Payload, text: Option<&str>, title: Option<&str>) {
    payload.text = render(text.unwrap_or(default_text(payload.kind)), payload);
    payload.title = render(title.unwrap_or(default_title(payload.kind)), payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Payload {
        Payload {
            kind: Kind::Change,
            sensor: "web/https".into(),
            server: "web".into(),
            group: Some("Site".into()),
            host: "192.0.2.1".into(),
            port: 443,
            from: "up".into(),
            to: "down".into(),
            reason: Some("refused".into()),
            message: "connection refused".into(),
            at: "2026-11-23T20:00:00Z".into(),
            since: "2026-11-23T20:00:00Z".into(),
            response_ms: Some(1.5),
            link: Some("http://mon/sensors/1".into()),
            suppressed: None,
            title: String::new(),
            text: String::new(),
        }
    }

    #[test]
    fn fills_placeholders_and_braces() {
        assert_eq!(
            render(
                "{{{STATE}}} {sensor} on {host}:{port} {response_ms} ms <{link}>",
                &payload()
            ),
            "{DOWN} web/https on 192.0.2.1:443 1.5 ms <http://mon/sensors/1>"
        );
        assert_eq!(
            render(">> {summary}", &payload()),
            ">> web/https is DOWN (refused): connection refused"
        );
    }

    #[test]
    fn refuses_unknown_or_unclosed_placeholders() {
        let unknown = validate("{sensr} down").unwrap_err();
        assert!(
            unknown.starts_with("unknown placeholder {sensr}"),
            "{unknown}"
        );
        assert!(validate("{sensor").unwrap_err().contains("not closed"));
        assert!(validate("a } b").unwrap_err().contains("lone"));
        assert!(validate("plain text, {{braces}}").is_ok());
    }

    #[test]
    fn every_kind_has_valid_defaults() {
        for kind in [
            Kind::Change,
            Kind::Escalation,
            Kind::Repeat,
            Kind::Flapping,
            Kind::Summary,
            Kind::Test,
            Kind::Node,
        ] {
            validate(default_text(kind)).unwrap();
            validate(default_title(kind)).unwrap();
        }
        let mut p = payload();
        word(&mut p, None, Some("[{kind}] {sensor}"));
        assert_eq!(p.title, "[change] web/https");
        assert_eq!(p.text, "web/https is DOWN (refused): connection refused");
    }

    #[test]
    fn any_input_renders_without_panicking() {
        for text in ["{", "}", "{{", "}}}", "{é}", "é{sensor}é", "{}{}"] {
            let _ = render(text, &payload());
        }
    }
}
