//! `portwatch store copy --from A --to B`: moves a store between SQLite and
//! PostgreSQL (either way), with a progress bar on a terminal.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::location::Location;
use crate::store::{Backend, copy};

pub(super) async fn run(from: &Location, to: &Location) -> anyhow::Result<u8> {
    if from == to {
        anyhow::bail!("--from and --to name the same store ({from}): give another --to");
    }
    let source = Backend::open_existing(from, 2).await?;
    let destination = Backend::open(to, 2).await?;
    // Nothing may write either store meanwhile.
    let source_lock = source.lock_monitor().await?;
    let destination_lock = destination.lock_monitor().await?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{msg:14} {bar:40} {pos}/{len} rows  {per_sec}")
            .expect("a valid progress template"),
    );
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    let copied = copy::copy(&source, &destination, |table, done, total| {
        if bar.message() != table {
            bar.set_message(table.to_owned());
            bar.set_length(total);
            bar.reset();
        }
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    source_lock.release().await;
    destination_lock.release().await;
    let summary = copied?;
    let mut out = anstream::stdout().lock();
    let rows: u64 = summary.tables.iter().map(|(_, n)| n).sum();
    writeln!(out, "copied {rows} rows from {from} to {to}:")?;
    for (table, n) in &summary.tables {
        writeln!(out, "  {table:14} {n}")?;
    }
    Ok(0)
}
