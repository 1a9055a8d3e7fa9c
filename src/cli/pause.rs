//! `portwatch pause NAME` and `portwatch resume NAME`.

use std::io::Write;

use super::NameArgs;
use crate::store::Store;

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
