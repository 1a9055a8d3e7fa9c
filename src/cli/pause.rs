//! `portwatch pause NAME`, `portwatch resume NAME` and `portwatch access`:
//! small changes to the store.

use std::io::Write;

use super::{AccessCommand, NameArgs, PushUrlArgs, Scope, StoreClient};
use crate::store::Storage;
use crate::store::accounts::{Role, random_token};

pub(super) fn run(args: &NameArgs, paused: bool) -> anyhow::Result<u8> {
    let store = StoreClient::open(&args.db, true)?;
    let changed = store.call(store.db.set_paused(args.name.clone(), paused))?;
    let verb = if paused { "paused" } else { "resumed" };
    let noun = if changed == 1 { "sensor" } else { "sensors" };
    writeln!(
        anstream::stdout(),
        "{verb} {changed} {noun} under '{}'",
        args.name
    )?;
    Ok(0)
}

/// `portwatch push-url SENSOR`: a new push URL for a heartbeat sensor, on
/// stdout (the old one stops working).
pub(super) fn push_url(args: &PushUrlArgs) -> anyhow::Result<u8> {
    let store = StoreClient::open(&args.db, true)?;
    let ids = store.call(store.db.sensor_ids(args.sensor.clone()))?;
    let [id] = ids[..] else {
        anyhow::bail!(
            "'{}' names {} sensors: name one heartbeat sensor as server/sensor",
            args.sensor,
            ids.len()
        );
    };
    let (_, _, overrides, _) = store.call(store.db.sensor_settings(id))?;
    if overrides.heartbeat.is_none() {
        anyhow::bail!(
            "'{}' is not a heartbeat sensor: give it kind = \"heartbeat\" in portwatch.toml",
            args.sensor
        );
    }
    let base = args
        .public_url
        .as_deref()
        .unwrap_or("http://127.0.0.1:8080")
        .trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        anyhow::bail!("--public-url '{base}' is not a web address: give http://… or https://…");
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let token = store.call(store.db.new_push_token(id, now_ms))?;
    writeln!(anstream::stdout(), "{base}/push/{token}")?;
    writeln!(
        anstream::stderr(),
        "push URL of '{}' made; it is shown this once and the previous one no longer works. Call it from the job: curl -fsS -m 10 URL (add ?status=down&msg=… when it failed)",
        args.sensor
    )?;
    Ok(0)
}

fn role(scope: Scope) -> Role {
    match scope {
        Scope::Read => Role::Read,
        Scope::Admin => Role::Admin,
    }
}

/// PORTWATCH_PASSWORD, or a generated password (then `true`: print it).
fn password_from_env() -> (String, bool) {
    match std::env::var("PORTWATCH_PASSWORD") {
        Ok(password) if !password.is_empty() => (password, false),
        _ => (random_token()[..20].to_owned(), true),
    }
}

pub(super) fn access(command: &AccessCommand) -> anyhow::Result<u8> {
    let mut out = anstream::stdout();
    let (AccessCommand::List { db }
    | AccessCommand::Revoke { db, .. }
    | AccessCommand::Passwd { db, .. }
    | AccessCommand::Disable { db, .. }
    | AccessCommand::Enable { db, .. }
    | AccessCommand::Token { db, .. }
    | AccessCommand::User { db, .. }) = command;
    let store = StoreClient::open(db, true)?;
    match command {
        AccessCommand::List { .. } => {
            let time = |ms: i64| {
                jiff::Timestamp::from_millisecond(ms)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default()
            };
            writeln!(out, "users:")?;
            for user in store.call(store.db.users())? {
                let state = match user.disabled_ms {
                    Some(ms) => format!("disabled since {}", time(ms)),
                    None => "active".to_owned(),
                };
                writeln!(
                    out,
                    "  {:<20} {:<6} created {}  {state}",
                    user.name,
                    user.role.as_str(),
                    time(user.created_ms)
                )?;
            }
            writeln!(out, "API tokens:")?;
            for token in store.call(store.db.tokens())? {
                writeln!(
                    out,
                    "  {:<20} {:<6} created {}",
                    token.name,
                    token.scope.as_str(),
                    time(token.created_ms)
                )?;
            }
        }
        AccessCommand::Revoke { name, .. } => {
            store.call(store.db.revoke_token(name.clone()))?;
            writeln!(out, "API token '{name}' revoked")?;
        }
        AccessCommand::Passwd { name, .. } => {
            let (password, shown) = password_from_env();
            store.call(store.db.set_password(name.clone(), password.clone()))?;
            if shown {
                writeln!(
                    out,
                    "user {name}: new password {password} (shown once); their sessions ended"
                )?;
            } else {
                writeln!(out, "user {name}: password changed; their sessions ended")?;
            }
        }
        AccessCommand::Disable { name, .. } => {
            store.call(store.db.set_disabled(name.clone(), true))?;
            writeln!(out, "user {name} disabled; their sessions ended")?;
        }
        AccessCommand::Enable { name, .. } => {
            store.call(store.db.set_disabled(name.clone(), false))?;
            writeln!(out, "user {name} enabled")?;
        }
        AccessCommand::Token { name, scope, .. } => {
            let token = store.call(store.db.create_token(name.clone(), role(*scope)))?;
            writeln!(out, "{token}")?;
            writeln!(
                anstream::stderr(),
                "API token '{name}' ({}) created; it is shown this once. Use it as: Authorization: Bearer {token}",
                role(*scope).as_str()
            )?;
        }
        AccessCommand::User {
            name, role: scope, ..
        } => {
            let (password, shown) = password_from_env();
            store.call(
                store
                    .db
                    .create_user(name.clone(), password.clone(), role(*scope)),
            )?;
            if shown {
                writeln!(
                    out,
                    "user {name} ({}) created with password {password} (shown once)",
                    role(*scope).as_str()
                )?;
            } else {
                writeln!(out, "user {name} ({}) created", role(*scope).as_str())?;
            }
        }
    }
    Ok(0)
}

pub(super) async fn notify_test(name: &str, db: &super::DbArgs) -> anyhow::Result<u8> {
    let Some(channel) = crate::store::Backend::open_existing(&db.location()?, 2)
        .await?
        .channel(name.to_owned())
        .await?
    else {
        anyhow::bail!(
            "no channel named '{name}' in {}: declare it in portwatch.toml and apply it",
            db.db
        );
    };
    let payload = crate::notify::test_payload(&channel);
    let client = crate::notify::deliver::Http::new();
    match crate::notify::deliver::deliver(&channel, &payload, &client, None).await {
        Ok(()) => {
            writeln!(
                anstream::stdout(),
                "delivered a test notification through '{name}'"
            )?;
            Ok(0)
        }
        Err(error) => {
            writeln!(anstream::stderr(), "portwatch: '{name}' failed: {error}")?;
            Ok(2)
        }
    }
}
