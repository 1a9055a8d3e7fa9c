//! Sending one notification through one channel. Every failure comes back
//! as one line that says what went wrong (connection, HTTP status and body,
//! exit status), for the outbox and for `portwatch notify test`, and says
//! whether trying again can help.

use std::process::Stdio;
use std::time::Duration;

use super::{ChannelDef, ChannelKind, Payload};

/// A delivery that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One line: what went wrong.
    pub message: String,
    /// Trying again cannot help (the request cannot be built, or the
    /// receiver rejected its content): the notification is marked failed
    /// instead of being retried forever.
    pub permanent: bool,
}

impl Failure {
    fn retry(message: impl Into<String>) -> Failure {
        Failure {
            message: crate::text::header_safe(&message.into(), 300),
            permanent: false,
        }
    }

    fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            message: crate::text::header_safe(&message.into(), 300),
            permanent: true,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The HTTP clients of the webhooks: one that never follows redirects (the
/// default) and one for channels with `follow_redirects = true`. Cloning is
/// shallow.
#[derive(Clone)]
pub struct Http {
    direct: reqwest::Client,
    following: reqwest::Client,
}

impl Http {
    /// Both clients, with portwatch's user agent.
    pub fn new() -> Http {
        let builder = || {
            reqwest::Client::builder().user_agent(concat!("portwatch/", env!("CARGO_PKG_VERSION")))
        };
        Http {
            direct: builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client with default settings"),
            following: builder()
                .redirect(reqwest::redirect::Policy::limited(5))
                .build()
                .expect("an HTTP client with default settings"),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

/// HTTP statuses that say the receiver will never take this request as it
/// is: bad request, gone, too large, unsupported type, unprocessable.
fn rejects_content(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 410 | 413 | 415 | 422)
}

/// Sends `payload` through `channel`, within the channel's timeout.
/// Sends `payload` to `channel`. `id`, the notification's outbox id,
/// goes with a webhook as its `Idempotency-Key` (`portwatch-ID`): a retry
/// after an attempt whose outcome was lost (the process died before it was
/// recorded) carries the same key, so a receiver can drop the repeat.
pub async fn deliver(
    channel: &ChannelDef,
    payload: &Payload,
    http: &Http,
    id: Option<i64>,
) -> Result<(), Failure> {
    let timeout = channel.options.timeout();
    match &channel.kind {
        ChannelKind::Webhook {
            url,
            token_env,
            token,
            preset,
            follow_redirects,
        } => {
            let token = match (token, token_env) {
                (Some(token), _) => Some(token.clone()),
                (None, Some(variable)) => Some(std::env::var(variable).map_err(|_| {
                    Failure::retry(format!(
                        "the environment variable {variable} (the webhook's token) is not set"
                    ))
                })?),
                (None, None) => None,
            };
            let (content_type, body) =
                super::webhook_body(*preset, payload, token.as_deref(), &channel.options);
            let client = if *follow_redirects {
                &http.following
            } else {
                &http.direct
            };
            let mut request = client
                .post(url)
                .timeout(timeout)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
            if *preset == Some(super::Preset::Ntfy) {
                request = request
                    .header("Title", crate::text::header_safe(&payload.title, 250))
                    .header(
                        "Priority",
                        if payload.to == "down" {
                            "high"
                        } else {
                            "default"
                        },
                    );
            }
            if let Some(id) = id {
                request = request.header("Idempotency-Key", format!("portwatch-{id}"));
            }
            if let Some(token) = token.filter(|_| *preset != Some(super::Preset::Pagerduty)) {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|error| {
                let message = describe(&error, timeout);
                if error.is_builder() {
                    Failure::permanent(message)
                } else {
                    Failure::retry(message)
                }
            })?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            if status.is_redirection() {
                let to = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(super::redact_url)
                    .unwrap_or_default();
                return Err(Failure::retry(format!(
                    "HTTP {status}: the receiver redirects to {to}; redirects are not followed unless the channel sets follow_redirects = true"
                )));
            }
            // One line: an HTML error page's lines and indentation folded
            // into single spaces, then cut.
            let body = response.text().await.unwrap_or_default();
            let body = crate::text::printable(&body)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let body: String = body.chars().take(200).collect();
            let message = format!("HTTP {status}: {body}");
            Err(if rejects_content(status) {
                Failure::permanent(message)
            } else {
                Failure::retry(message)
            })
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
            password,
        } => {
            let password = match password {
                Some(password) => Some(password.clone()),
                None => smtp_password(password_env.as_deref(), password_file.as_deref())
                    .map_err(Failure::retry)?,
            };
            send_mail(
                host,
                *port,
                *security,
                from,
                to,
                username
                    .as_deref()
                    .map(|user| (user, password.unwrap_or_default())),
                payload,
                timeout,
            )
            .await
        }
        ChannelKind::Command { argv } => {
            let (argv, payload) = (argv.clone(), payload.clone());
            tokio::task::spawn_blocking(move || run_command(&argv, &payload, timeout))
                .await
                .map_err(|e| Failure::retry(format!("the command runner failed: {e}")))?
                .map_err(Failure::retry)
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
    credentials: Option<(&str, String)>,
    payload: &Payload,
    timeout: Duration,
) -> Result<(), Failure> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let from: Mailbox = from
        .parse()
        .map_err(|e| Failure::permanent(format!("the sender '{from}' is not an address: {e}")))?;
    let mut message = Message::builder().from(from).subject(format!(
        "[portwatch] {}",
        crate::text::header_safe(&payload.title, 250)
    ));
    for recipient in to {
        message = message.to(recipient.parse().map_err(|e| {
            Failure::permanent(format!(
                "the recipient '{recipient}' is not an address: {e}"
            ))
        })?);
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
        .map_err(|e| Failure::permanent(format!("cannot build the mail: {e}")))?;
    let builder = match security {
        super::Security::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| Failure::retry(format!("{host}: {e}")))?,
        super::Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| Failure::retry(format!("{host}: {e}")))?,
        super::Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
    };
    let mut builder = builder.timeout(Some(timeout));
    if let Some(port) = port {
        builder = builder.port(port);
    }
    if let Some((user, password)) = credentials {
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
            // 5xx replies to the mail itself (a refused recipient) never
            // change on a retry; connection trouble may.
            if e.is_permanent() {
                Failure::permanent(text)
            } else {
                Failure::retry(text)
            }
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
    // A cleared environment: the daemon's own (an admin password, tokens
    // for other channels) is not the command's business.
    let mut command = std::process::Command::new(program);
    command.env_clear();
    for kept in ["PATH", "LANG", "LC_ALL", "TZ", "HOME"] {
        if let Some(value) = std::env::var_os(kept) {
            command.env(kept, value);
        }
    }
    let mut child = command
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
