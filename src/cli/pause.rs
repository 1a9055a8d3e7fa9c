//! `portwatch pause NAME`, `portwatch resume NAME` and `portwatch access`:
//! small changes to the store.

use std::io::Write;

use super::{AccessCommand, NameArgs, Scope};
use crate::store::Store;
use crate::store::accounts::{Role, random_token};

pub(super) fn run(args: &NameArgs, paused: bool) -> anyhow::Result<u8> {
    let mut store = Store::open(&args.db.db)?;
    let changed = store.set_paused(&args.name, paused)?;
    let verb = if paused { "paused" } else { "resumed" };
    writeln!(
        anstream::stdout(),
        "{verb} {changed} sensors under '{}'",
        args.name
    )?;
    Ok(0)
}

fn role(scope: Scope) -> Role {
    match scope {
        Scope::Read => Role::Read,
        Scope::Admin => Role::Admin,
    }
}

pub(super) fn access(command: &AccessCommand) -> anyhow::Result<u8> {
    let mut out = anstream::stdout();
    match command {
        AccessCommand::Token { name, scope, db } => {
            let token = Store::open(&db.db)?.create_token(name, role(*scope))?;
            writeln!(out, "{token}")?;
            writeln!(
                anstream::stderr(),
                "API token '{name}' ({}) created; it is shown this once. Use it as: Authorization: Bearer {token}",
                role(*scope).as_str()
            )?;
        }
        AccessCommand::User {
            name,
            role: scope,
            db,
        } => {
            let password = std::env::var("PORTWATCH_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty());
            let shown = password.is_none();
            let password = password.unwrap_or_else(|| random_token()[..20].to_owned());
            Store::open(&db.db)?.create_user(name, &password, role(*scope))?;
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
    let Some(channel) = Store::open(&db.db)?.channel(name)? else {
        anyhow::bail!(
            "no channel named '{name}' in {}: declare it in portwatch.toml and apply it",
            db.db.display()
        );
    };
    let payload = crate::notify::test_payload(&channel);
    let client = crate::notify::deliver::Http::new();
    match crate::notify::deliver::deliver(&channel, &payload, &client).await {
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
