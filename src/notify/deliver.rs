//! Sending one notification through one channel. Every failure comes back
//! as one line that says what went wrong (connection, HTTP status and body,
//! exit status), for the outbox and for `portwatch notify test`.

use std::process::Stdio;
use std::time::Duration;

use super::{ChannelDef, ChannelKind, Payload};

/// Sends `payload` through `channel`, within the channel's timeout.
pub async fn deliver(
    channel: &ChannelDef,
    payload: &Payload,
    client: &reqwest::Client,
) -> Result<(), String> {
    let timeout = channel.options.timeout();
    match &channel.kind {
        ChannelKind::Webhook {
            url,
            token_env,
            preset,
        } => {
            let token = match token_env {
                Some(variable) => Some(std::env::var(variable).map_err(|_| {
                    format!("the environment variable {variable} (the webhook's token) is not set")
                })?),
                None => None,
            };
            let (content_type, body) = super::webhook_body(*preset, payload, token.as_deref());
            let mut request = client
                .post(url)
                .timeout(timeout)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
            if *preset == Some(super::Preset::Ntfy) {
                request = request.header("Title", payload.title.as_str()).header(
                    "Priority",
                    if payload.to == "down" {
                        "high"
                    } else {
                        "default"
                    },
                );
            }
            if let Some(token) = token.filter(|_| *preset != Some(super::Preset::Pagerduty)) {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .map_err(|error| describe(&error, timeout))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            Err(format!("HTTP {status}: {}", body.trim()))
        }
        ChannelKind::Email {
            host,
            port,
            security,
            from,
            to,
            username,
            password_env,
            password_file,
        } => {
            send_mail(
                host,
                *port,
                *security,
                from,
                to,
                username.as_deref(),
                password_env.as_deref(),
                password_file.as_deref(),
                payload,
                timeout,
            )
            .await
        }
        ChannelKind::Command { argv } => {
            let (argv, payload) = (argv.clone(), payload.clone());
            tokio::task::spawn_blocking(move || run_command(&argv, &payload, timeout))
                .await
                .map_err(|e| format!("the command runner failed: {e}"))?
        }
    }
}

/// The facts a mail lists under its summary line.
fn mail_rows(payload: &Payload) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Sensor", payload.sensor.clone()),
        ("Host", format!("{}:{}", payload.host, payload.port)),
        ("Change", format!("{} -> {}", payload.from, payload.to)),
        (
            "Reason",
            payload.reason.clone().unwrap_or_else(|| "-".into()),
        ),
        ("Message", payload.message.clone()),
        ("At", payload.at.clone()),
        ("Since", payload.since.clone()),
    ];
    if let Some(ms) = payload.response_ms {
        rows.push(("Connect", format!("{ms:.1} ms")));
    }
    if let Some(link) = &payload.link {
        rows.push(("Link", link.clone()));
    }
    rows
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The password of an SMTP channel, from the environment or a file; never
/// stored, never logged.
fn smtp_password(env: Option<&str>, file: Option<&str>) -> Result<Option<String>, String> {
    if let Some(variable) = env {
        return std::env::var(variable).map(Some).map_err(|_| {
            format!("the environment variable {variable} (the SMTP password) is not set")
        });
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the SMTP password file {path}: {e}"))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
    }
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
async fn send_mail(
    host: &str,
    port: Option<u16>,
    security: super::Security,
    from: &str,
    to: &[String],
    username: Option<&str>,
    password_env: Option<&str>,
    password_file: Option<&str>,
    payload: &Payload,
    timeout: Duration,
) -> Result<(), String> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("the sender '{from}' is not an address: {e}"))?;
    let mut message = Message::builder()
        .from(from)
        .subject(format!("[portwatch] {}", payload.title));
    for recipient in to {
        message = message.to(recipient
            .parse()
            .map_err(|e| format!("the recipient '{recipient}' is not an address: {e}"))?);
    }
    let rows = mail_rows(payload);
    let mut plain = format!("{}\n\n", payload.text);
    let mut html = format!("<p><strong>{}</strong></p><table>", escape(&payload.text));
    for (label, value) in &rows {
        plain.push_str(&format!("{:<9}{value}\n", format!("{label}:")));
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(label),
            escape(value)
        ));
    }
    html.push_str("</table>");
    if let Some(link) = &payload.link {
        html.push_str(&format!(
            "<p><a href=\"{}\">Open the sensor</a></p>",
            escape(link)
        ));
    }
    let message = message
        .multipart(MultiPart::alternative_plain_html(plain, html))
        .map_err(|e| format!("cannot build the mail: {e}"))?;
    let builder = match security {
        super::Security::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| format!("{host}: {e}"))?,
        super::Security::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| format!("{host}: {e}"))?
        }
        super::Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
    };
    let mut builder = builder.timeout(Some(timeout));
    if let Some(port) = port {
        builder = builder.port(port);
    }
    if let Some(user) = username {
        let password = smtp_password(password_env, password_file)?.unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.to_owned(), password));
    }
    builder
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| {
            let mut text = format!("SMTP {host}: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        })
}

/// Runs a command channel on a blocking thread. (tokio's process support
/// would pull in its signal driver, which the one-shot commands avoid so
/// that they start even with almost no file descriptors left.)
fn run_command(argv: &[String], payload: &Payload, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".into());
    };
    let json = serde_json::to_vec(payload).expect("a payload serialises");
    let mut child = std::process::Command::new(program)
        .args(args)
        .env("PORTWATCH_SENSOR", &payload.sensor)
        .env("PORTWATCH_SERVER", &payload.server)
        .env("PORTWATCH_GROUP", payload.group.as_deref().unwrap_or(""))
        .env("PORTWATCH_FROM", &payload.from)
        .env("PORTWATCH_TO", &payload.to)
        .env("PORTWATCH_REASON", payload.reason.as_deref().unwrap_or(""))
        .env("PORTWATCH_MESSAGE", &payload.message)
        .env("PORTWATCH_AT", &payload.at)
        .env("PORTWATCH_SINCE", &payload.since)
        .env("PORTWATCH_KIND", payload.kind.as_str())
        .env("PORTWATCH_HOST", &payload.host)
        .env("PORTWATCH_PORT", payload.port.to_string())
        .env("PORTWATCH_LINK", payload.link.as_deref().unwrap_or(""))
        .env("PORTWATCH_TITLE", &payload.title)
        .env("PORTWATCH_TEXT", &payload.text)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&json);
    }
    let deadline = std::time::Instant::now() + timeout * 3;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {}s",
                    (timeout * 3).as_secs()
                ));
            }
            Err(error) => return Err(format!("{program}: {error}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    Err(format!(
        "{program} exited with {status}: {}",
        stderr.lines().next().unwrap_or("").trim()
    ))
}

/// One line for a failed request: timeout, connection refused, DNS, TLS.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    let mut text = if error.is_timeout() {
        format!("no answer within {}s", timeout.as_secs())
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
