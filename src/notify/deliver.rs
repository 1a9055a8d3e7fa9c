//! Sending one notification through one channel. Every failure comes back
//! as one line that says what went wrong (connection, HTTP status and body,
//! exit status), for the outbox and for `portwatch notify test`.

use std::process::Stdio;
use std::time::Duration;

use super::{ChannelKind, Payload};

/// How long one delivery attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `payload` through `channel`.
pub async fn deliver(
    channel: &ChannelKind,
    payload: &Payload,
    client: &reqwest::Client,
) -> Result<(), String> {
    match channel {
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
                .timeout(TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
            if *preset == Some(super::Preset::Ntfy) {
                request = request
                    .header(
                        "Title",
                        format!("{} is {}", payload.sensor, payload.to.to_uppercase()),
                    )
                    .header(
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
            let response = request.send().await.map_err(|error| describe(&error))?;
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
            )
            .await
        }
        ChannelKind::Command { argv } => {
            let (argv, payload) = (argv.clone(), payload.clone());
            tokio::task::spawn_blocking(move || run_command(&argv, &payload))
                .await
                .map_err(|e| format!("the command runner failed: {e}"))?
        }
    }
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
) -> Result<(), String> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("the sender '{from}' is not an address: {e}"))?;
    let mut message = Message::builder().from(from).subject(format!(
        "[portwatch] {} is {}",
        payload.sensor,
        payload.to.to_uppercase()
    ));
    for recipient in to {
        message = message.to(recipient
            .parse()
            .map_err(|e| format!("the recipient '{recipient}' is not an address: {e}"))?);
    }
    let plain = format!(
        "{}\n\nSensor:  {}\nHost:    {}:{}\nChange:  {} -> {}\nReason:  {}\nMessage: {}\nAt:      {}\n",
        payload.text,
        payload.sensor,
        payload.host,
        payload.port,
        payload.from,
        payload.to,
        payload.reason.as_deref().unwrap_or("-"),
        payload.message,
        payload.at
    );
    let html = format!(
        "<p><strong>{}</strong></p><table><tr><td>Sensor</td><td>{}</td></tr><tr><td>Host</td><td>{}:{}</td></tr><tr><td>Change</td><td>{} → {}</td></tr><tr><td>Reason</td><td>{}</td></tr><tr><td>Message</td><td>{}</td></tr><tr><td>At</td><td>{}</td></tr></table>",
        escape(&payload.text),
        escape(&payload.sensor),
        escape(&payload.host),
        payload.port,
        escape(&payload.from),
        escape(&payload.to),
        escape(payload.reason.as_deref().unwrap_or("-")),
        escape(&payload.message),
        escape(&payload.at)
    );
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
    let mut builder = builder.timeout(Some(TIMEOUT));
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
fn run_command(argv: &[String], payload: &Payload) -> Result<(), String> {
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
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&json);
    }
    let deadline = std::time::Instant::now() + TIMEOUT * 3;
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
                    (TIMEOUT * 3).as_secs()
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
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        format!("no answer within {}s", TIMEOUT.as_secs())
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
