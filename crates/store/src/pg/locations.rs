//! Each location's state of the sensors checked from several locations:
//! the node checking a sensor from a location writes a row after every
//! check; the node judging the sensor reads the rows written since its last
//! read (by a sequence number), and the web interface reads them to show
//! the locations side by side.
//!
//! One row per (sensor, location), rewritten at every check: the table's
//! size is the number of such pairs, and its rate the checks' rate.

use portwatch_core::monitor::state::State;
use portwatch_core::monitor::verdict::LocationReport;
use portwatch_probe::Reason;
use tokio_postgres::Row;

use super::Pg;
use crate::StoreError;

const COLUMNS: &str =
    "seq, sensor_id, location, state, since_ms, checked_ms, reason, rtt_us, message";

fn report(row: &Row) -> (i64, LocationReport) {
    let state: String = row.get(3);
    let reason: String = row.get(6);
    let rtt: Option<i64> = row.get(7);
    (
        row.get(0),
        LocationReport {
            sensor: row.get(1),
            location: row.get(2),
            state: state.parse().unwrap_or(State::Unknown),
            since_ms: row.get(4),
            checked_ms: row.get(5),
            reason: Reason::parse(&reason).unwrap_or(Reason::LocalError),
            rtt_us: rtt.and_then(|r| u32::try_from(r).ok()),
            message: row.get(8),
        },
    )
}

impl Pg {
    /// Stores node `node`'s latest reports, if its lease holds (a node
    /// whose lease lapsed reports nothing: another node checks its share
    /// now). Returns whether they were stored.
    pub async fn put_location_reports(
        &self,
        node: i64,
        reports: &[LocationReport],
    ) -> Result<bool, StoreError> {
        if reports.is_empty() {
            return Ok(true);
        }
        let column = |f: &dyn Fn(&LocationReport) -> i64| reports.iter().map(f).collect::<Vec<_>>();
        let sensors = column(&|r| r.sensor);
        let since = column(&|r| r.since_ms);
        let checked = column(&|r| r.checked_ms);
        let locations: Vec<&str> = reports.iter().map(|r| r.location.as_str()).collect();
        let states: Vec<&str> = reports.iter().map(|r| r.state.as_str()).collect();
        let reasons: Vec<&str> = reports.iter().map(|r| r.reason.as_str()).collect();
        let rtts: Vec<Option<i64>> = reports.iter().map(|r| r.rtt_us.map(i64::from)).collect();
        let messages: Vec<&str> = reports.iter().map(|r| r.message.as_str()).collect();
        let stored = self
            .client()
            .await?
            .execute(
                "INSERT INTO location_status AS l (sensor_id, location, state, since_ms, checked_ms, reason, rtt_us, message, node_id)
                 SELECT s, loc, st, since, checked, reason, rtt, message, $1
                 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::text[])
                      AS u(s, loc, st, since, checked, reason, rtt, message)
                 WHERE EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND expires_at > now())
                 ON CONFLICT (sensor_id, location) DO UPDATE
                 SET state = excluded.state, since_ms = excluded.since_ms, checked_ms = excluded.checked_ms,
                     reason = excluded.reason, rtt_us = excluded.rtt_us, message = excluded.message,
                     node_id = excluded.node_id, seq = nextval('location_status_seq')
                 WHERE l.checked_ms <= excluded.checked_ms",
                &[
                    &node, &sensors, &locations, &states, &since, &checked, &reasons, &rtts,
                    &messages,
                ],
            )
            .await
            .map_err(self.fail())?;
        Ok(stored > 0)
    }

    /// Deletes the reports not renewed for `age` (a sensor retired, or no
    /// longer checked from that location); returns how many.
    pub async fn prune_location_reports(
        &self,
        age: std::time::Duration,
    ) -> Result<u64, StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM location_status
                 WHERE checked_ms < (extract(epoch FROM now()) * 1000)::bigint - $1",
                &[&(age.as_millis() as i64)],
            )
            .await
            .map_err(self.fail())
    }

    /// The reports `clause` selects (`WHERE … ORDER BY …`), with their
    /// sequence numbers.
    async fn select(
        &self,
        clause: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<(i64, LocationReport)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM location_status {clause}"),
                params,
            )
            .await
            .map_err(self.fail())?;
        Ok(rows.iter().map(report).collect())
    }

    /// The reports written after sequence number `after`, with their
    /// sequence numbers (the next read goes on from the highest).
    pub async fn location_reports_since(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, LocationReport)>, StoreError> {
        self.select("WHERE seq > $1 ORDER BY seq", &[&after]).await
    }

    /// Every location's latest report of the sensors `sensors`, by sensor
    /// and location.
    pub async fn location_reports_of(
        &self,
        sensors: &[i64],
    ) -> Result<Vec<LocationReport>, StoreError> {
        let found = self
            .select(
                "WHERE sensor_id = ANY($1) ORDER BY sensor_id, location",
                &[&sensors],
            )
            .await?;
        Ok(found.into_iter().map(|(_, report)| report).collect())
    }

    /// Every location's latest report of sensor `sensor`, or of every
    /// sensor, by sensor and location.
    pub async fn location_reports(
        &self,
        sensor: Option<i64>,
    ) -> Result<Vec<LocationReport>, StoreError> {
        let found = self
            .select(
                "WHERE $1::bigint IS NULL OR sensor_id = $1 ORDER BY sensor_id, location",
                &[&sensor],
            )
            .await?;
        Ok(found.into_iter().map(|(_, report)| report).collect())
    }
}
