//! `portwatch report [NAME] --since 30d`.

use std::io::Write;

use owo_colors::OwoColorize;

use super::StoreClient;
use super::status::time;
use super::{ReportArgs, ScanFormat};
use crate::report::SensorReport;
use crate::store::{Detail, Storage};

pub(super) const EXAMPLES: &str = "Examples:
  portwatch report                      every sensor, last 30 days
  portwatch report web1 --since 7d      the sensors of server web1
  portwatch report web1/https --since 24h --format json
  portwatch report Production           a group and its subgroups

Uptime by time counts the time UP or WARNING against the time DOWN (paused,
pending and unknown time is left out); uptime by requests counts the checks
that found the service answering. A report of several sensors takes
connect times from hourly rollups: its p95 is the highest hourly p95.";

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}%"))
}

fn millis(us: Option<u32>) -> String {
    us.map_or_else(
        || "-".to_owned(),
        |us| format!("{:.3} ms", f64::from(us) / 1000.0),
    )
}

pub(super) fn run(args: &ReportArgs) -> anyhow::Result<u8> {
    let store = StoreClient::open(&args.db, true)?;
    // A name's sensors by id (rather than every sensor's status row: a
    // million of them in a large store); everything in path order.
    let ids: Vec<i64> = match &args.name {
        Some(name) => store.call(store.db.sensor_ids(name.clone()))?,
        None => store
            .call(store.db.status())?
            .into_iter()
            .map(|r| r.id)
            .collect(),
    };
    let to_ms = jiff::Timestamp::now().as_millisecond();
    let from_ms = to_ms - args.since.as_millis() as i64;
    let detail = Detail::for_sensors(ids.len());
    let mut stdout = std::io::BufWriter::new(anstream::stdout().lock());
    let mut write = |report: &SensorReport| -> anyhow::Result<()> {
        match args.format {
            ScanFormat::Json => writeln!(stdout, "{}", serde_json::to_string(report)?)?,
            ScanFormat::Human => human(&mut stdout, report, to_ms)?,
        }
        Ok(())
    };
    if args.name.is_some() {
        let mut reports = store.call(store.db.sensor_reports(ids, from_ms, to_ms, detail))?;
        reports.sort_by(|a, b| a.sensor.cmp(&b.sensor));
        reports.iter().try_for_each(&mut write)?;
    } else {
        for chunk in ids.chunks(1000) {
            store
                .call(
                    store
                        .db
                        .sensor_reports(chunk.to_vec(), from_ms, to_ms, detail),
                )?
                .iter()
                .try_for_each(&mut write)?;
        }
    }
    stdout.flush()?;
    Ok(0)
}

fn human(out: &mut impl Write, report: &SensorReport, now_ms: i64) -> std::io::Result<()> {
    writeln!(
        out,
        "{}  {} to {}",
        report.sensor.bold(),
        time(report.from_ms),
        time(report.to_ms)
    )?;
    writeln!(
        out,
        "  uptime by time      {}   (up {}, down {}, excluded {})",
        percent(report.uptime_by_time),
        crate::duration::age(0, report.time.up_ms),
        crate::duration::age(0, report.time.down_ms),
        crate::duration::age(0, report.time.excluded_ms)
    )?;
    writeln!(
        out,
        "  uptime by requests  {}   ({} of {} checks answered)",
        percent(report.uptime_by_requests),
        report.checks_up,
        report.checks
    )?;
    if report.checks_up == 0 {
        // Refusals answer fast too: a sensor that never connected has no
        // connect time worth showing.
        writeln!(out, "  connect time        - (no check connected)")?;
    } else {
        writeln!(
            out,
            "  connect time        min {}  avg {}  p95 {}  max {}",
            millis(report.min_us),
            millis(report.avg_us),
            millis(report.p95_us),
            millis(report.max_us)
        )?;
    }
    if report.outages.is_empty() {
        writeln!(out, "  outages             none")?;
    } else {
        writeln!(out, "  outages             {}", report.outages.len())?;
        for outage in &report.outages {
            let end = outage.end_ms.map_or_else(|| "ongoing".to_owned(), time);
            writeln!(
                out,
                "    {} to {}  {:>9}  {:<19} {}",
                time(outage.start_ms),
                end,
                crate::duration::age(0, outage.duration_ms(now_ms)),
                outage.reason.as_deref().unwrap_or("-"),
                outage.message
            )?;
        }
    }
    writeln!(out)
}
