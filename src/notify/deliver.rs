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
        ChannelKind::Webhook { url, token_env } => {
            let mut request = client.post(url).timeout(TIMEOUT).json(payload);
            if let Some(variable) = token_env {
                let token = std::env::var(variable).map_err(|_| {
                    format!("the environment variable {variable} (the webhook's token) is not set")
                })?;
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
        ChannelKind::Command { argv } => {
            let (argv, payload) = (argv.clone(), payload.clone());
            tokio::task::spawn_blocking(move || run_command(&argv, &payload))
                .await
                .map_err(|e| format!("the command runner failed: {e}"))?
        }
    }
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
