//! Fills a SQLite store with simulated history for `bench/store`: every
//! sensor of the store checked every INTERVAL seconds over the HOURS
//! before END_MS, written in the store's own layout and steps: an hour's
//! 2-minute packed windows, hourly rollups and daily sums, then the hour's
//! windows merged into rows of up to an hour as the writer's compaction
//! does, with one event and a status row per sensor.
//!
//! Usage: cargo run --release --example fill_store -- DB HOURS INTERVAL END_MS

use portwatch::probe::{Reason, Status};
use portwatch::store::pack::{StoredResult, extend_rows, pack_window};
use portwatch::store::writer::WINDOW_MS;
use rusqlite::{Connection, params};

const HOUR_MS: i64 = 3_600_000;

fn main() -> rusqlite::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, hours, interval, end_ms] = &args[..] else {
        panic!("usage: fill_store DB HOURS INTERVAL END_MS");
    };
    let hours: i64 = hours.parse().expect("HOURS: a number");
    let interval_ms = interval.parse::<i64>().expect("INTERVAL: seconds") * 1000;
    let end_ms: i64 = end_ms.parse().expect("END_MS: milliseconds");
    let start_ms = end_ms - end_ms.rem_euclid(HOUR_MS) - hours * HOUR_MS;
    let mut conn = Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let sensors: Vec<i64> = conn
        .prepare("SELECT id FROM sensors ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let tx = conn.transaction()?;
    for &sensor in &sensors {
        tx.execute(
            "INSERT INTO events (sensor_id, at_ms, from_state, to_state, reason, message)
             VALUES (?1, ?2, 'pending', 'up', 'connected', 'connected')",
            params![sensor, start_ms],
        )?;
        tx.execute(
            "INSERT INTO sensor_status (sensor_id, state, since_ms, last_check_ms, last_status, last_reason, last_rtt_us, last_message)
             VALUES (?1, 'up', ?2, ?3, 'up', 'connected', 300, 'connected')",
            params![sensor, start_ms, end_ms - interval_ms],
        )?;
    }
    tx.commit()?;
    // A sensor's results over the hour from `hour_ms`: up, each sensor
    // with its own phase within the interval, and a connect time of 200 to
    // 1,000 µs drawn from (sensor, time), so that a second pass sees the
    // same ones.
    let hour_results = |sensor: i64, hour_ms: i64, out: &mut Vec<StoredResult>| {
        out.clear();
        let mut at = hour_ms + (sensor * 7919) % interval_ms;
        while at < hour_ms + HOUR_MS {
            let mut x = (sensor as u64) << 32 ^ at as u64 ^ 0x2545_f491_4f6c_dd1d;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(StoredResult {
                sensor,
                at_ms: at,
                status: Status::Up,
                reason: Reason::Connected,
                rtt_us: Some(200 + (x % 800) as u32),
            });
            at += interval_ms;
        }
    };
    let mut results = Vec::new();
    for hour in 0..hours {
        let hour_ms = start_ms + hour * HOUR_MS;
        let tx = conn.transaction()?;
        {
            let mut window = tx.prepare_cached(
                "INSERT INTO results (sensor_id, start_ms, end_ms, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut rollup = tx.prepare_cached(
                "INSERT INTO rollups (sensor_id, hour_ms, count, ups, min_us, avg_us, max_us, p95_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut daily = tx.prepare_cached(
                "INSERT INTO daily_rollups (sensor_id, day_ms, count, ups) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sensor_id, day_ms) DO UPDATE SET count = count + ?3, ups = ups + ?4",
            )?;
            for &sensor in &sensors {
                hour_results(sensor, hour_ms, &mut results);
                for part in results
                    .chunk_by(|a, b| a.at_ms.div_euclid(WINDOW_MS) == b.at_ms.div_euclid(WINDOW_MS))
                {
                    let start = part[0].at_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
                    let last = part[part.len() - 1].at_ms;
                    window.execute(params![
                        sensor,
                        start,
                        last,
                        part.len() as i64,
                        pack_window(start, part)
                    ])?;
                }
                let sum = portwatch::report::summarize(&results);
                rollup.execute(params![
                    sensor, hour_ms, sum.count, sum.ups, sum.min_us, sum.avg_us, sum.max_us,
                    sum.p95_us
                ])?;
                daily.execute(params![
                    sensor,
                    hour_ms - hour_ms.rem_euclid(24 * HOUR_MS),
                    sum.count,
                    sum.ups
                ])?;
            }
        }
        tx.commit()?;
        let merging = std::time::Instant::now();
        // The hour is closed: its windows are merged into rows of up to an
        // hour, 2,000 sensors a transaction, as the writer's compaction does.
        for slice in sensors.chunks(2_000) {
            let tx = conn.transaction()?;
            {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM results WHERE sensor_id = ?1 AND start_ms >= ?2 AND start_ms < ?3",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO results (sensor_id, start_ms, end_ms, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for &sensor in slice {
                    hour_results(sensor, hour_ms, &mut results);
                    delete.execute(params![sensor, hour_ms, hour_ms + HOUR_MS])?;
                    for row in extend_rows(sensor, None, &results).expect("packed rows") {
                        insert.execute(params![
                            sensor,
                            row.start_ms,
                            row.end_ms,
                            row.count,
                            row.data
                        ])?;
                    }
                }
            }
            tx.commit()?;
        }
        let merged = merging.elapsed();
        eprintln!(
            "hour {} of {hours} written; merging its windows took {:.1} s, {:.0} ms per {} sensors",
            hour + 1,
            merged.as_secs_f64(),
            merged.as_secs_f64() * 1000.0 * 2000.0 / sensors.len() as f64,
            2000
        );
    }
    Ok(())
}
