//! `portwatch apply FILE`: make the store monitor what the file declares.

use std::io::Write;

use super::ApplyArgs;
use super::StoreClient;
use crate::config::read_config;
use crate::store::Storage;

pub(super) const EXAMPLES: &str = "Examples:
  portwatch apply portwatch.toml
  portwatch apply --check portwatch.toml      validate only
  portwatch apply --db /var/lib/portwatch/portwatch.db portwatch.toml

Groups, servers and sensors in the file are created or updated; the ones an
earlier apply created that have left the file are removed from monitoring.
Their history stays, and returns if they come back under the same name. A
running `portwatch serve` picks the change up within two seconds. Nothing is
changed when the file has an error.";

pub(super) fn run(args: &ApplyArgs) -> anyhow::Result<u8> {
    let config = read_config(&args.file)?;
    let (groups, servers, sensors) = config.counts();
    let mut stdout = anstream::stdout().lock();
    if args.check {
        writeln!(
            stdout,
            "{}: valid ({groups} groups, {servers} servers, {sensors} sensors)",
            args.file.display()
        )?;
        return Ok(0);
    }
    let store = StoreClient::open(&args.db, false)?;
    let summary = store.call(store.db.apply(config))?;
    writeln!(
        stdout,
        "applied {}: {} sensors ({} added, {} removed) in {groups} groups and {servers} servers, store {}",
        args.file.display(),
        summary.sensors,
        summary.added,
        summary.removed,
        args.db.db
    )?;
    Ok(0)
}
