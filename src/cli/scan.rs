//! `portwatch scan`: the port range sensor on the command line.

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use owo_colors::OwoColorize;
use serde::Serialize;

use super::output::millis;
use super::{EXIT_UNKNOWN, ScanArgs, ScanFormat};
use crate::probe::scan::{self, PortReport, PortState, ScanOptions};
use crate::probe::target::parse_bare_host;
use crate::probe::{Reason, Resolver, Services};

pub(super) const EXAMPLES: &str = "Examples:
  portwatch scan localhost                      the well-known ports
  portwatch scan 192.0.2.10 --ports 1-1024,3306,ssh
  portwatch scan example.com -p 1-65535 --rate 500 --concurrency 200
  portwatch scan ::1 -p 1-10000 --format json
  portwatch scan localhost -4                   IPv4 only (default: every address)

States: open (handshake completed), closed (RST), filtered (no answer within
--timeout), unreachable and prohibited (ICMP errors). Closed ports are listed
only with --all when more than 25 ports are scanned.
Exit codes: 0 the scan completed, 2 the host did not resolve, 3 bad input or
ports that could not be checked.";

/// Ports that are listed even when closed, up to this many scanned.
const LIST_CLOSED_UP_TO: usize = 25;

#[derive(Serialize)]
struct JsonPort<'a> {
    host: &'a str,
    address: IpAddr,
    port: u16,
    service: Option<&'a str>,
    state: PortState,
    reason: Reason,
    response_time_ms: Option<f64>,
    reported_by: Option<IpAddr>,
}

pub(super) async fn run(args: ScanArgs) -> anyhow::Result<u8> {
    let host = parse_bare_host(&args.host).map_err(|error| anyhow::anyhow!("{error}"))?;
    let services = Services::global();
    let ports = args
        .ports
        .clone()
        .map_or_else(Services::builtin_ports, |list| list.0);
    let resolved = match Resolver::from_system()
        .resolve(&host, args.address.family())
        .await
    {
        Ok(resolved) => resolved,
        Err(error) => {
            writeln!(anstream::stderr(), "portwatch: cannot scan: {error}")?;
            return Ok(2);
        }
    };
    // Every address the name has (IPv6 and IPv4 unless -4 or -6 chose),
    // each scanned in full: a service may listen on one family only.
    let mut addresses = crate::probe::happy::interleave(&resolved.addresses);
    let mut seen = std::collections::HashSet::new();
    addresses.retain(|a| seen.insert(*a));

    let fd_limit = scan::raise_fd_limit();
    let concurrency = (args.concurrency as usize).min(fd_limit.saturating_sub(64).max(1) as usize);
    let options = ScanOptions {
        timeout: args.timeout,
        concurrency,
        rate: args.rate,
        source: args.address.source,
    };
    let progress = progress_bar((ports.len() * addresses.len()) as u64);
    let host_text = host.to_string();
    let mut stdout = std::io::BufWriter::new(anstream::stdout().lock());
    let list_closed = args.all || ports.len() <= LIST_CLOSED_UP_TO;
    let mut all_reports = Vec::new();
    for (index, &address) in addresses.iter().enumerate() {
        let started = Instant::now();
        let bar = progress.clone();
        let reports = scan::scan(address, &ports, options, move |report| {
            bar.inc(1);
            if report.state == PortState::Open {
                bar.set_message(format!("{address} {} open", report.port));
            }
        })
        .await;
        let elapsed = started.elapsed();
        if index + 1 == addresses.len() {
            progress.finish_and_clear();
        }
        if args.format == ScanFormat::Human {
            if index > 0 {
                writeln!(stdout)?;
            }
            if addresses.len() > 1 {
                writeln!(stdout, "{}", format!("{address}").bold())?;
            }
            writeln!(
                stdout,
                "{}",
                format!("{:<11} {:<12} {:<16} TIME", "PORT", "STATE", "SERVICE").bold()
            )?;
        }
        for report in &reports {
            let service = services.by_port(report.port).map(|s| s.name.as_str());
            match args.format {
                ScanFormat::Json => {
                    let json = JsonPort {
                        host: &host_text,
                        address,
                        port: report.port,
                        service,
                        state: report.state,
                        reason: report.reason,
                        response_time_ms: report.response_time.map(millis),
                        reported_by: report.reported_by,
                    };
                    writeln!(stdout, "{}", serde_json::to_string(&json)?)?;
                }
                ScanFormat::Human if report.state != PortState::Closed || list_closed => {
                    writeln!(stdout, "{}", human_line(report, service))?;
                }
                ScanFormat::Human => {}
            }
        }
        if args.format == ScanFormat::Human {
            writeln!(
                stdout,
                "{}",
                summary(&host_text, address, &reports, elapsed, list_closed)
            )?;
        }
        all_reports.extend(reports);
    }
    stdout.flush()?;
    let reports = all_reports;
    let errors = reports
        .iter()
        .filter(|r| r.state == PortState::Error)
        .count();
    if errors > 0 {
        let example = reports
            .iter()
            .find(|r| r.state == PortState::Error)
            .map(|r| r.detail.as_str())
            .unwrap_or("");
        writeln!(
            anstream::stderr(),
            "portwatch: {errors} ports could not be checked ({example}): lower --concurrency or raise `ulimit -n`"
        )?;
        return Ok(EXIT_UNKNOWN);
    }
    Ok(0)
}

fn human_line(report: &PortReport, service: Option<&str>) -> String {
    let port = format!("{:<11}", format!("{}/tcp", report.port));
    let state = format!("{:<12}", report.state.as_str());
    let state = match report.state {
        PortState::Open => state.green().bold().to_string(),
        PortState::Closed => state.dimmed().to_string(),
        PortState::Filtered => state.yellow().to_string(),
        PortState::Unreachable | PortState::Prohibited | PortState::Error => {
            state.red().to_string()
        }
    };
    let time = report
        .response_time
        .map(|t| format!("{:.3} ms", millis(t)))
        .unwrap_or_default();
    let reported = report
        .reported_by
        .map(|ip| format!("  (reported by {ip})"))
        .unwrap_or_default();
    format!(
        "{port} {state} {:<16} {time}{reported}",
        service.unwrap_or("-")
    )
}

fn summary(
    host: &str,
    address: IpAddr,
    reports: &[PortReport],
    elapsed: Duration,
    listed_closed: bool,
) -> String {
    let count = |state| reports.iter().filter(|r| r.state == state).count();
    let mut parts = vec![format!("{} open", count(PortState::Open))];
    let closed = count(PortState::Closed);
    parts.push(if listed_closed || closed == 0 {
        format!("{closed} closed")
    } else {
        format!("{closed} closed (not listed; --all lists them)")
    });
    for state in [
        PortState::Filtered,
        PortState::Unreachable,
        PortState::Prohibited,
        PortState::Error,
    ] {
        let n = count(state);
        if n > 0 {
            parts.push(format!("{n} {}", state.as_str()));
        }
    }
    let shown = if host == address.to_string() {
        host.to_owned()
    } else {
        format!("{host} ({address})")
    };
    format!(
        "Scanned {} ports on {shown} in {:.2} s: {}.",
        reports.len(),
        elapsed.as_secs_f64(),
        parts.join(", ")
    )
}

/// A progress bar on stderr that appears only on a terminal, and only once
/// the scan has run for a second.
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} ports  {rate}  eta {eta}  {msg}")
            .expect("a valid progress template")
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.0}/s", state.per_sec());
                },
            ),
    );
    if std::io::stderr().is_terminal() {
        let delayed = bar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !delayed.is_finished() {
                delayed.set_draw_target(ProgressDrawTarget::stderr());
            }
        });
    }
    bar
}
