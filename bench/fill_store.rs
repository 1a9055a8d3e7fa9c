//! Fills a SQLite store with simulated history for `bench/store`: every
//! sensor of the store checked every INTERVAL seconds over the HOURS
//! before END_MS, written in the store's own layout and order: every
//! 2 minutes, each sensor's new results added to its latest row as the
//! writer's repack does (`extend_rows`, one transaction per repack), then
//! hourly rollups and daily sums, with one event and a status row per
//! sensor.
//!
//! Usage: cargo run --release --example fill_store -- DB HOURS INTERVAL END_MS

use portwatch::probe::{Reason, Status};
use portwatch::store::pack::{Row, StoredResult, extend_rows};
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
    // A result of `sensor` at `at_ms`: up, with a connect time of 200 to
    // 1,000 µs drawn from the pair, so that a later pass sees the same one.
    let result = |sensor: i64, at_ms: i64| {
        let mut x = (sensor as u64) << 32 ^ at_ms as u64 ^ 0x2545_f491_4f6c_dd1d;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        StoredResult {
            sensor,
            at_ms,
            status: Status::Up,
            reason: Reason::Connected,
            rtt_us: Some(200 + (x % 800) as u32),
        }
    };
    // A sensor's results in [from, to): each sensor has its own phase within
    // the interval.
    let between = |sensor: i64, from: i64, to: i64, out: &mut Vec<StoredResult>| {
        out.clear();
        let phase = (sensor * 7919) % interval_ms;
        let mut at = from + (phase - from).rem_euclid(interval_ms);
        while at < to {
            out.push(result(sensor, at));
            at += interval_ms;
        }
    };
    // Each sensor's latest row, as the writer reads it back at each repack.
    let mut latest: Vec<Option<Row>> = vec![None; sensors.len()];
    let mut results = Vec::new();
    for hour in 0..hours {
        let hour_ms = start_ms + hour * HOUR_MS;
        // One transaction per repack, every WINDOW_MS, as the writer does.
        for window in (hour_ms..hour_ms + HOUR_MS).step_by(WINDOW_MS as usize) {
            let tx = conn.transaction()?;
            {
                let mut write = tx.prepare_cached(
                    "INSERT OR REPLACE INTO results (sensor_id, start_ms, end_ms, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (&sensor, latest) in sensors.iter().zip(latest.iter_mut()) {
                    between(sensor, window, window + WINDOW_MS, &mut results);
                    let rows = extend_rows(sensor, latest.clone(), &results).expect("packed rows");
                    for row in &rows {
                        write.execute(params![
                            sensor,
                            row.start_ms,
                            row.end_ms,
                            row.count,
                            row.data
                        ])?;
                    }
                    if let Some(row) = rows.into_iter().last() {
                        *latest = Some(row);
                    }
                }
            }
            tx.commit()?;
        }
        let tx = conn.transaction()?;
        {
            let mut rollup = tx.prepare_cached(
                "INSERT INTO rollups (sensor_id, hour_ms, count, ups, min_us, avg_us, max_us, p95_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut daily = tx.prepare_cached(
                "INSERT INTO daily_rollups (sensor_id, day_ms, count, ups) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sensor_id, day_ms) DO UPDATE SET count = count + ?3, ups = ups + ?4",
            )?;
            for &sensor in &sensors {
                between(sensor, hour_ms, hour_ms + HOUR_MS, &mut results);
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
        eprintln!("hour {} of {hours} written", hour + 1);
    }
    Ok(())
}
