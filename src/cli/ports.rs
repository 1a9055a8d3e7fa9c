//! `portwatch ports`: look up the well-known port table.

use std::io::Write;

use owo_colors::OwoColorize;
use serde::Serialize;

use super::{PortsArgs, ScanFormat};
use crate::probe::Services;
use crate::probe::services::Source;

pub(super) const EXAMPLES: &str = "Examples:
  portwatch ports              the whole table
  portwatch ports 443          the service on port 443
  portwatch ports netbios      names or descriptions containing 'netbios'
  portwatch ports over tls     descriptions containing all the words";

#[derive(Serialize)]
struct JsonService<'a> {
    port: u16,
    name: &'a str,
    aliases: &'a [String],
    description: &'a str,
    source: &'static str,
}

pub(super) fn run(args: &PortsArgs) -> anyhow::Result<u8> {
    let services = Services::global();
    let query = args.query.join(" ");
    let found: Vec<_> = if query.trim().is_empty() {
        services.iter().collect()
    } else {
        services.search(&query)
    };
    let mut stdout = anstream::stdout().lock();
    if found.is_empty() {
        let suggestions = services.suggest(&query);
        let hint = if suggestions.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", suggestions.join(", "))
        };
        writeln!(
            anstream::stderr(),
            "portwatch: no well-known port matches '{query}'{hint}"
        )?;
        return Ok(1);
    }
    for service in found {
        let source = match service.source {
            Source::Builtin => "builtin",
            Source::System => "/etc/services",
        };
        match args.format {
            ScanFormat::Json => {
                let json = JsonService {
                    port: service.port,
                    name: &service.name,
                    aliases: &service.aliases,
                    description: &service.description,
                    source,
                };
                writeln!(stdout, "{}", serde_json::to_string(&json)?)?;
            }
            ScanFormat::Human => {
                let aliases = if service.aliases.is_empty() {
                    String::new()
                } else {
                    format!(" (also {})", service.aliases.join(", "))
                };
                let port = format!("{:>5}/tcp", service.port);
                writeln!(
                    stdout,
                    "{}  {:<16} {}{}",
                    port.bold(),
                    service.name,
                    service.description,
                    aliases.dimmed()
                )?;
            }
        }
    }
    Ok(0)
}
