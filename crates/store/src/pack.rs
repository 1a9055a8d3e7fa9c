//! Compact encoding of raw check results.
//!
//! A result is a time, a status, a reason and a connect time. Stored one per
//! row, SQLite spends 20–30 bytes on each; packed as varint deltas they take
//! about five. Two layouts share the entry format:
//! - a **journal batch**: everything one flush of the writer holds, sorted by
//!   sensor, so that a crash loses at most that flush;
//! - a **sensor row**: one sensor's results over up to an hour
//!   ([`extend_rows`]), for reading back one sensor's history.

use portwatch_probe::{Reason, Status};

pub use portwatch_core::report::StoredResult;

const STATUSES: [Status; 4] = [Status::Up, Status::Warning, Status::Down, Status::Unknown];
const REASONS: [Reason; 23] = Reason::ALL;
const HAS_RTT: u8 = 0x80;

fn code(result: &StoredResult) -> u8 {
    let status = STATUSES
        .iter()
        .position(|s| *s == result.status)
        .unwrap_or(3) as u8;
    let reason = REASONS
        .iter()
        .position(|r| *r == result.reason)
        .unwrap_or(7) as u8;
    // Reason index: bits 0-2, bit 5 for indexes 8-15 and bit 6 for 16-31
    // (each added later, so older stores read unchanged).
    status << 3
        | (reason & 7)
        | (reason & 8) << 2
        | (reason & 16) << 2
        | if result.rtt_us.is_some() { HAS_RTT } else { 0 }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

/// Why packed bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt packed results at byte {0}")]
pub struct Corrupt(pub usize);

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, Corrupt> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or(Corrupt(self.at))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Corrupt(self.at))
    }

    fn byte(&mut self) -> Result<u8, Corrupt> {
        let byte = *self.bytes.get(self.at).ok_or(Corrupt(self.at))?;
        self.at += 1;
        Ok(byte)
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

fn put_tail(out: &mut Vec<u8>, result: &StoredResult) {
    out.push(code(result));
    if let Some(rtt) = result.rtt_us {
        put_varint(out, u64::from(rtt));
    }
}

fn read_tail(reader: &mut Reader, sensor: i64, at_ms: i64) -> Result<StoredResult, Corrupt> {
    let code = reader.byte()?;
    let status = STATUSES[usize::from(code >> 3 & 0x3)];
    let index = usize::from(code & 0x7 | (code >> 2) & 0x18);
    let reason = *REASONS.get(index).ok_or(Corrupt(reader.at))?;
    let rtt_us = if code & HAS_RTT != 0 {
        Some(u32::try_from(reader.varint()?).map_err(|_| Corrupt(reader.at))?)
    } else {
        None
    };
    Ok(StoredResult {
        sensor,
        at_ms,
        status,
        reason,
        rtt_us,
    })
}

/// A sensor's last checks as fixed-size ticks (seconds since the epoch,
/// big-endian, then the status and reason code), kept in its status row
/// for the dashboard's bar: appending and keeping the last
/// `n * TICK_BYTES` bytes is done by the database in the same upsert.
pub const TICK_BYTES: usize = 5;

/// How many ticks a status row keeps.
pub const TICKS_KEPT: usize = 20;

/// Appends `result` to `out` as a tick.
pub fn put_tick(out: &mut Vec<u8>, result: &StoredResult) {
    let seconds = u32::try_from(result.at_ms.max(0) / 1000).unwrap_or(u32::MAX);
    out.extend_from_slice(&seconds.to_be_bytes());
    out.push(code(result) & !HAS_RTT);
}

/// Reads ticks back, oldest first: `(at_ms, status, reason)`. A trailing
/// part of a tick, or a code that names no reason, ends the list.
pub fn ticks(bytes: &[u8]) -> Vec<(i64, Status, Reason)> {
    bytes
        .chunks_exact(TICK_BYTES)
        .map_while(|tick| {
            let seconds = u32::from_be_bytes([tick[0], tick[1], tick[2], tick[3]]);
            let mut reader = Reader {
                bytes: &tick[4..],
                at: 0,
            };
            let result = read_tail(&mut reader, 0, i64::from(seconds) * 1000).ok()?;
            Some((result.at_ms, result.status, result.reason))
        })
        .collect()
}

/// Packs one sensor's results, in time order and none before `start_ms`,
/// as unsigned time deltas (a 10 s interval takes two bytes).
pub fn pack_window(start_ms: i64, results: &[StoredResult]) -> Vec<u8> {
    let mut out = Vec::with_capacity(results.len() * 5);
    let mut previous = start_ms;
    for result in results {
        debug_assert!(result.at_ms >= previous, "results must be in time order");
        put_varint(&mut out, (result.at_ms - previous).max(0) as u64);
        previous = result.at_ms;
        put_tail(&mut out, result);
    }
    out
}

/// Reads a sensor window back.
pub fn unpack_window(
    sensor: i64,
    start_ms: i64,
    bytes: &[u8],
) -> Result<Vec<StoredResult>, Corrupt> {
    let mut reader = Reader { bytes, at: 0 };
    let mut results = Vec::new();
    let mut at_ms = start_ms;
    while !reader.done() {
        let delta = i64::try_from(reader.varint()?).map_err(|_| Corrupt(reader.at))?;
        at_ms = at_ms.checked_add(delta).ok_or(Corrupt(reader.at))?;
        results.push(read_tail(&mut reader, sensor, at_ms)?);
    }
    Ok(results)
}

/// The longest span of one stored row of a sensor's results: a read of the
/// results from `from` looks at the rows that start after `from - ROW_MS`.
pub const ROW_MS: i64 = 3_600_000;

/// A row takes no more results once its packed data reaches this size, so
/// that it stays within one SQLite page (a larger row spills to overflow
/// pages, mostly empty).
pub const ROW_BYTES: usize = 768;

/// A stored row of one sensor's results: packed as a window from
/// `start_ms` ([`pack_window`]), its latest result at `end_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Its key with the sensor: no result in it is earlier.
    pub start_ms: i64,
    /// Its latest result's time.
    pub end_ms: i64,
    /// How many results it holds.
    pub count: i64,
    /// The results, packed.
    pub data: Vec<u8>,
}

impl Row {
    fn open(start_ms: i64) -> Row {
        Row {
            start_ms,
            end_ms: start_ms,
            count: 0,
            data: Vec::new(),
        }
    }

    /// Whether `result` may still be added: the row spans less than
    /// [`ROW_MS`] and holds less than [`ROW_BYTES`]. A result at the row's
    /// own start is always taken, so that a new row never has the key of
    /// the one before it.
    fn takes(&self, result: &StoredResult) -> bool {
        result.at_ms == self.start_ms
            || (result.at_ms - self.start_ms < ROW_MS && self.data.len() < ROW_BYTES)
    }

    /// Appends a result no earlier than the row's latest.
    fn push(&mut self, result: &StoredResult) {
        put_varint(&mut self.data, (result.at_ms - self.end_ms).max(0) as u64);
        put_tail(&mut self.data, result);
        self.end_ms = result.at_ms;
        self.count += 1;
    }
}

/// Adds one sensor's new results (in time order, none before the start of
/// `latest`, the sensor's latest stored row) to its stored rows, and
/// returns the rows to write.
///
/// Results after the latest row's end are appended to its bytes as they
/// are; a result inside it has the row unpacked and packed again in time
/// order. A row is closed once it spans [`ROW_MS`] or holds
/// [`ROW_BYTES`], and the next result starts a new one, keyed by that
/// result's time. A sensor checked every minute thus has one row an hour
/// (about 6 bytes a result with the key), where a row per repack held two
/// results and weighed 21 bytes each.
pub fn extend_rows(
    sensor: i64,
    latest: Option<Row>,
    results: &[StoredResult],
) -> Result<Vec<Row>, Corrupt> {
    let merged;
    let (mut current, changed, results) = match latest {
        Some(row) if results.first().is_some_and(|r| r.at_ms < row.end_ms) => {
            let mut all = unpack_window(sensor, row.start_ms, &row.data)?;
            all.extend_from_slice(results);
            all.sort_by_key(|r| r.at_ms);
            merged = all;
            (Row::open(row.start_ms), true, merged.as_slice())
        }
        Some(row) => (row, false, results),
        None => match results.first() {
            Some(first) => (Row::open(first.at_ms), true, results),
            None => return Ok(Vec::new()),
        },
    };
    debug_assert!(results.iter().all(|r| r.at_ms >= current.start_ms));
    let mut rows = Vec::new();
    let mut changed = changed;
    for result in results {
        if current.count > 0 && !current.takes(result) {
            let full = std::mem::replace(&mut current, Row::open(result.at_ms));
            if changed {
                rows.push(full);
            }
        }
        current.push(result);
        changed = true;
    }
    if changed {
        rows.push(current);
    }
    Ok(rows)
}

/// Packs a journal batch: any sensors, sorted here by (sensor, time).
pub fn pack_batch(first_ms: i64, results: &mut [StoredResult]) -> Vec<u8> {
    results.sort_unstable_by_key(|r| (r.sensor, r.at_ms));
    let mut out = Vec::with_capacity(results.len() * 6);
    let mut previous_sensor = 0;
    for result in results.iter() {
        put_varint(&mut out, zigzag(result.sensor - previous_sensor));
        previous_sensor = result.sensor;
        put_varint(&mut out, zigzag(result.at_ms - first_ms));
        put_tail(&mut out, result);
    }
    out
}

/// How many results a journal part holds at most: a sensor page decodes
/// one part per flush that the journal still holds, not the whole flush.
pub const PART_RESULTS: usize = 512;

/// A part of a journal batch: results of the sensors `first_sensor` to
/// `last_sensor` (one sensor's results may continue in the next part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalPart {
    /// The earliest result's time, which the packed times count from.
    pub first_ms: i64,
    /// The latest result's time.
    pub last_ms: i64,
    /// How many results it holds.
    pub count: i64,
    /// The lowest sensor id in it.
    pub first_sensor: i64,
    /// The highest sensor id in it.
    pub last_sensor: i64,
    /// The results, packed as a batch ([`unpack_batch`]).
    pub data: Vec<u8>,
}

/// Packs one flush of results as journal parts of at most `per_part`
/// results each, in sensor order, so that reading one sensor back finds
/// its part by the sensor range.
pub fn pack_journal(results: &mut [StoredResult], per_part: usize) -> Vec<JournalPart> {
    results.sort_unstable_by_key(|r| (r.sensor, r.at_ms));
    results
        .chunks_mut(per_part.max(1))
        .map(|part| {
            let first_ms = part.iter().map(|r| r.at_ms).min().unwrap_or(0);
            JournalPart {
                first_ms,
                last_ms: part.iter().map(|r| r.at_ms).max().unwrap_or(0),
                count: part.len() as i64,
                first_sensor: part[0].sensor,
                last_sensor: part[part.len() - 1].sensor,
                data: pack_batch(first_ms, part),
            }
        })
        .collect()
}

/// Reads a journal batch back.
pub fn unpack_batch(first_ms: i64, bytes: &[u8]) -> Result<Vec<StoredResult>, Corrupt> {
    let mut reader = Reader { bytes, at: 0 };
    let mut results = Vec::new();
    let mut sensor: i64 = 0;
    while !reader.done() {
        sensor = sensor.wrapping_add(unzigzag(reader.varint()?));
        let at_ms = first_ms.wrapping_add(unzigzag(reader.varint()?));
        results.push(read_tail(&mut reader, sensor, at_ms)?);
    }
    Ok(results)
}

/// One sensor's results in `span`, from its packed windows
/// `(start_ms, bytes)` and the journal batches `(first_ms, bytes)` not yet
/// repacked (which hold every sensor), in time order.
pub fn merge<'a>(
    sensor: i64,
    windows: impl IntoIterator<Item = (i64, &'a [u8])>,
    journal: impl IntoIterator<Item = (i64, &'a [u8])>,
    span: std::ops::Range<i64>,
) -> Result<Vec<StoredResult>, Corrupt> {
    let mut results = Vec::new();
    for (start, bytes) in windows {
        results.extend(unpack_window(sensor, start, bytes)?);
    }
    for (first, bytes) in journal {
        results.extend(
            unpack_batch(first, bytes)?
                .into_iter()
                .skip_while(|r| r.sensor < sensor)
                .take_while(|r| r.sensor == sensor),
        );
    }
    results.retain(|r| span.contains(&r.at_ms));
    results.sort_unstable_by_key(|r| r.at_ms);
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ticks_read_back_in_order_and_stop_at_a_torn_tick() {
        let result = |at_ms, status, reason| StoredResult {
            sensor: 9,
            at_ms,
            status,
            reason,
            rtt_us: Some(1234),
        };
        let mut bytes = Vec::new();
        put_tick(
            &mut bytes,
            &result(1_700_000_000_999, Status::Up, Reason::Connected),
        );
        put_tick(
            &mut bytes,
            &result(1_700_000_010_000, Status::Down, Reason::Refused),
        );
        put_tick(
            &mut bytes,
            &result(1_700_000_020_000, Status::Unknown, Reason::Partial),
        );
        assert_eq!(bytes.len(), 3 * TICK_BYTES);
        let read = ticks(&bytes);
        assert_eq!(
            read,
            vec![
                (1_700_000_000_000, Status::Up, Reason::Connected),
                (1_700_000_010_000, Status::Down, Reason::Refused),
                (1_700_000_020_000, Status::Unknown, Reason::Partial),
            ]
        );
        bytes.pop();
        assert_eq!(ticks(&bytes).len(), 2, "a torn tick is not read");
    }

    fn result(sensor: i64, at_ms: i64, rtt: Option<u32>) -> StoredResult {
        StoredResult {
            sensor,
            at_ms,
            status: Status::Up,
            reason: Reason::Connected,
            rtt_us: rtt,
        }
    }

    /// The bytes on disk, pinned: the status and reason of every stored
    /// result, as written by every portwatch since the format began. A
    /// change here makes old stores misread (tests #3: dropping the bit for
    /// reasons 8-15 passed every test).
    #[test]
    fn the_packed_code_of_every_status_and_reason_is_pinned() {
        const GOLDEN: [(&str, [u8; 4]); 23] = [
            ("connected", [0x00, 0x08, 0x10, 0x18]),
            ("refused", [0x01, 0x09, 0x11, 0x19]),
            ("timeout", [0x02, 0x0a, 0x12, 0x1a]),
            ("host_unreachable", [0x03, 0x0b, 0x13, 0x1b]),
            ("network_unreachable", [0x04, 0x0c, 0x14, 0x1c]),
            ("admin_prohibited", [0x05, 0x0d, 0x15, 0x1d]),
            ("dns_error", [0x06, 0x0e, 0x16, 0x1e]),
            ("local_error", [0x07, 0x0f, 0x17, 0x1f]),
            ("reset", [0x20, 0x28, 0x30, 0x38]),
            ("closed_by_peer", [0x21, 0x29, 0x31, 0x39]),
            ("no_response", [0x22, 0x2a, 0x32, 0x3a]),
            ("protocol_mismatch", [0x23, 0x2b, 0x33, 0x3b]),
            ("tls_error", [0x24, 0x2c, 0x34, 0x3c]),
            ("cert_expiring", [0x25, 0x2d, 0x35, 0x3d]),
            ("cert_expired", [0x26, 0x2e, 0x36, 0x3e]),
            ("partial", [0x27, 0x2f, 0x37, 0x3f]),
            ("too_few_locations", [0x40, 0x48, 0x50, 0x58]),
            ("missed_heartbeat", [0x41, 0x49, 0x51, 0x59]),
            ("reported_down", [0x42, 0x4a, 0x52, 0x5a]),
            ("content_mismatch", [0x43, 0x4b, 0x53, 0x5b]),
            ("unexpected_answer", [0x44, 0x4c, 0x54, 0x5c]),
            ("answered", [0x45, 0x4d, 0x55, 0x5d]),
            ("reply", [0x46, 0x4e, 0x56, 0x5e]),
        ];
        assert_eq!(
            Reason::ALL.len(),
            GOLDEN.len(),
            "a new reason needs a pinned code"
        );
        let start = 1_790_000_000_000;
        for (reason, (name, codes)) in Reason::ALL.iter().zip(GOLDEN) {
            assert_eq!(reason.as_str(), name, "Reason::ALL's order is the format");
            for (status, expected) in STATUSES.iter().zip(codes) {
                for rtt in [None, Some(300)] {
                    let stored = StoredResult {
                        sensor: 1,
                        at_ms: start,
                        status: *status,
                        reason: *reason,
                        rtt_us: rtt,
                    };
                    let bytes = pack_window(start, &[stored]);
                    let mut want = vec![0x00, expected | if rtt.is_some() { HAS_RTT } else { 0 }];
                    if rtt.is_some() {
                        want.extend([0xac, 0x02]); // 300 as a varint
                    }
                    assert_eq!(bytes, want, "{name} {status:?} {rtt:?}");
                    assert_eq!(unpack_window(1, start, &bytes).unwrap(), [stored]);
                }
            }
        }
    }

    #[test]
    fn a_typical_result_takes_about_five_bytes() {
        let start = 1_790_000_000_000;
        let results: Vec<StoredResult> = (0..60)
            .map(|i| result(7, start + i * 10_000, Some(180)))
            .collect();
        let bytes = pack_window(start, &results);
        assert!(bytes.len() <= 60 * 5, "{} bytes", bytes.len());
        assert_eq!(unpack_window(7, start, &bytes).unwrap(), results);
    }

    #[test]
    fn batches_round_trip_in_sensor_order() {
        let first = 1_790_000_000_000;
        let mut results = vec![
            result(9, first + 5, None),
            result(2, first + 900, Some(70_000)),
            result(2, first, Some(1)),
        ];
        let bytes = pack_batch(first, &mut results);
        let back = unpack_batch(first, &bytes).unwrap();
        assert_eq!(
            back.iter().map(|r| (r.sensor, r.at_ms)).collect::<Vec<_>>(),
            [(2, first), (2, first + 900), (9, first + 5)]
        );
        assert!(
            unpack_batch(first, &bytes[..bytes.len() - 1]).is_err(),
            "a cut batch is corrupt, not misread"
        );
    }

    /// Repacks `steps` of one sensor's results into a stored set of rows
    /// as the writer does, and returns the rows.
    fn store_steps(steps: &[Vec<StoredResult>]) -> std::collections::BTreeMap<i64, Row> {
        let mut stored = std::collections::BTreeMap::new();
        for step in steps {
            let latest = stored
                .last_key_value()
                .map(|(_, row): (&i64, &Row)| row.clone());
            for row in extend_rows(7, latest, step).unwrap() {
                stored.insert(row.start_ms, row);
            }
        }
        stored
    }

    #[test]
    fn a_sensor_checked_every_minute_fills_one_row_an_hour() {
        let start = 1_790_000_000_000;
        // Thirty repacks of two results each, as the writer repacks every
        // two minutes.
        let steps: Vec<Vec<StoredResult>> = (0..30)
            .map(|step| {
                (0..2)
                    .map(|i| result(7, start + (step * 2 + i) * 60_000, Some(300)))
                    .collect()
            })
            .collect();
        let stored = store_steps(&steps);
        assert_eq!(stored.len(), 1, "{stored:?}");
        let row = &stored[&start];
        assert_eq!((row.count, row.end_ms), (60, start + 59 * 60_000));
        assert!(row.data.len() <= 60 * 6, "{} bytes", row.data.len());
        // The next hour starts a new row.
        let more = store_steps(&[steps.concat(), vec![result(7, start + ROW_MS, None)]]);
        assert_eq!(
            more.keys().copied().collect::<Vec<_>>(),
            [start, start + ROW_MS]
        );
    }

    #[test]
    fn appending_writes_only_the_changed_row_and_keeps_its_bytes() {
        let start = 1_790_000_000_000;
        let first = extend_rows(7, None, &[result(7, start, Some(5))]).unwrap();
        let rows = extend_rows(7, first.first().cloned(), &[result(7, start + 10, None)]).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].data.starts_with(&first[0].data));
        // A full row is not written again: only the new one is.
        let mut full = first[0].clone();
        full.data.resize(ROW_BYTES, 0);
        let rows = extend_rows(7, Some(full), &[result(7, start + 20, None)]).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.start_ms).collect::<Vec<_>>(),
            [start + 20]
        );
        assert!(
            extend_rows(7, first.first().cloned(), &[])
                .unwrap()
                .is_empty()
        );
    }

    fn any_result() -> impl Strategy<Value = StoredResult> {
        (
            1i64..200_000,
            0i64..4_000_000_000_000,
            0usize..STATUSES.len(),
            0usize..REASONS.len(),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(sensor, at_ms, s, r, rtt_us)| StoredResult {
                sensor,
                at_ms,
                status: STATUSES[s],
                reason: REASONS[r],
                rtt_us,
            })
    }

    proptest! {
        #[test]
        fn window_round_trips(mut results in proptest::collection::vec(any_result(), 0..50), start in 0i64..4_000_000_000_000) {
            for r in &mut results { r.sensor = 1; r.at_ms += start; }
            results.sort_by_key(|r| r.at_ms);
            let bytes = pack_window(start, &results);
            prop_assert_eq!(unpack_window(1, start, &bytes).unwrap(), results);
        }

        #[test]
        fn batch_round_trips(mut results in proptest::collection::vec(any_result(), 0..50), first in 0i64..4_000_000_000_000) {
            let bytes = pack_batch(first, &mut results);
            prop_assert_eq!(unpack_batch(first, &bytes).unwrap(), results);
        }

        #[test]
        fn journal_parts_cover_their_sensors(
            mut results in proptest::collection::vec(any_result(), 0..60),
            per_part in 1usize..8,
            sensor in 1i64..200_000,
        ) {
            for (i, r) in results.iter_mut().enumerate() {
                // Some sensors with several results, which may span parts.
                if i % 3 == 0 { r.sensor = sensor; }
            }
            let parts = pack_journal(&mut results, per_part);
            let mut back = Vec::new();
            for part in &parts {
                let read = unpack_batch(part.first_ms, &part.data).unwrap();
                prop_assert!(read.len() <= per_part && read.len() as i64 == part.count);
                for r in &read {
                    prop_assert!((part.first_sensor..=part.last_sensor).contains(&r.sensor));
                    prop_assert!((part.first_ms..=part.last_ms).contains(&r.at_ms));
                }
                back.extend(read);
            }
            prop_assert_eq!(&back, &results, "the parts hold every result, in order");
            // One sensor's results come back from the parts whose range
            // holds it, as a store selects them.
            let found = merge(
                sensor,
                [],
                parts
                    .iter()
                    .filter(|p| (p.first_sensor..=p.last_sensor).contains(&sensor))
                    .map(|p| (p.first_ms, p.data.as_slice())),
                0..i64::MAX,
            )
            .unwrap();
            let mut expected: Vec<StoredResult> =
                results.iter().filter(|r| r.sensor == sensor).copied().collect();
            expected.sort_by_key(|r| r.at_ms);
            prop_assert_eq!(found, expected);
        }

        #[test]
        fn rows_hold_every_result_once_and_stay_within_their_bounds(
            steps in proptest::collection::vec(
                proptest::collection::vec((0i64..400_000, 0i64..200_000, any_result()), 1..30),
                1..12,
            ),
        ) {
            // Each step is one repack: its results are in time order, may
            // reach back before the previous step's latest (late results),
            // but never before the latest row's start (older ones take
            // another path in the writer).
            let mut now = 1_790_000_000_000;
            let mut stored: std::collections::BTreeMap<i64, Row> = Default::default();
            let mut all = Vec::new();
            for step in steps {
                let floor = stored.last_key_value().map_or(i64::MIN, |(start, _)| *start);
                let mut results: Vec<StoredResult> = step
                    .into_iter()
                    .map(|(gap, late, r)| {
                        now += gap;
                        StoredResult { sensor: 7, at_ms: now - late, ..r }
                    })
                    .filter(|r| r.at_ms >= floor)
                    .collect();
                results.sort_by_key(|r| r.at_ms);
                all.extend_from_slice(&results);
                let latest = stored.last_key_value().map(|(_, row)| row.clone());
                for row in extend_rows(7, latest, &results).unwrap() {
                    stored.insert(row.start_ms, row);
                }
            }
            let mut back = Vec::new();
            for row in stored.values() {
                let read = unpack_window(7, row.start_ms, &row.data).unwrap();
                prop_assert_eq!(read.len() as i64, row.count);
                prop_assert!(read.iter().all(|r| r.at_ms >= row.start_ms && r.at_ms - row.start_ms < ROW_MS));
                prop_assert_eq!(read.last().map(|r| r.at_ms), Some(row.end_ms));
                prop_assert!(row.data.len() < ROW_BYTES + 20, "{} bytes", row.data.len());
                back.extend(read);
            }
            let key = |r: &StoredResult| (r.at_ms, code(r), r.rtt_us);
            back.sort_by_key(key);
            all.sort_by_key(key);
            prop_assert_eq!(back, all);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = unpack_batch(0, &bytes);
            let _ = unpack_window(1, 0, &bytes);
        }
    }
}
