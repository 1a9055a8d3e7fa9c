//! Uptime reports, both ways IPCheck reports them:
//! - **by time**, from state-change events: time UP or WARNING over time UP,
//!   WARNING or DOWN; paused, pending and unknown time is excluded;
//! - **by requests**, from results: checks that found the service answering
//!   over all checks.
//!
//! Plus the outage list and connect-time statistics.

pub mod rollup;

use portwatch_probe::{Reason, Status};
use serde::Serialize;

use crate::monitor::state::State;
use rollup::{Accumulator, Rollup};

/// One raw result as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredResult {
    /// The sensor's id.
    pub sensor: i64,
    /// When the check started, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The verdict.
    pub status: Status,
    /// The reason.
    pub reason: Reason,
    /// The connect time in microseconds, if an answer came.
    pub rtt_us: Option<u32>,
}

/// A stored state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Sensor id.
    pub sensor_id: i64,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
    /// The check's reason, if a check caused it.
    pub reason: Option<String>,
    /// What happened.
    pub message: String,
}

/// An interval spent DOWN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outage {
    /// When it started (ms since the epoch); the report's start if it began
    /// earlier.
    pub start_ms: i64,
    /// When it ended; `None` while it goes on.
    pub end_ms: Option<i64>,
    /// The reason of the check that confirmed it.
    pub reason: Option<String>,
    /// Its message.
    pub message: String,
}

impl Outage {
    /// Its length up to `now_ms` if it goes on.
    pub fn duration_ms(&self, now_ms: i64) -> i64 {
        self.end_ms.unwrap_or(now_ms) - self.start_ms
    }
}

/// Time in each kind of state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// UP or WARNING.
    pub up_ms: i64,
    /// DOWN.
    pub down_ms: i64,
    /// Paused, pending or unknown: excluded from uptime.
    pub excluded_ms: i64,
}

impl Timeline {
    /// Uptime by time, in percent, if any time counted.
    pub fn uptime_percent(&self) -> Option<f64> {
        let counted = self.up_ms + self.down_ms;
        (counted > 0).then(|| self.up_ms as f64 * 100.0 / counted as f64)
    }
}

/// Walks a sensor's events over `from_ms..to_ms`, starting in `initial`
/// (its state at `from_ms`, `None` if it had none yet).
pub fn timeline(
    initial: Option<State>,
    events: &[EventRow],
    from_ms: i64,
    to_ms: i64,
) -> (Timeline, Vec<Outage>) {
    let mut totals = Timeline::default();
    let mut outages: Vec<Outage> = Vec::new();
    let mut state = initial.unwrap_or(State::Pending);
    let mut at = from_ms;
    if state == State::Down {
        outages.push(Outage {
            start_ms: from_ms,
            end_ms: None,
            reason: None,
            message: "down since before the report".into(),
        });
    }
    let add = |state: State, span: i64, totals: &mut Timeline| match state.availability() {
        Some(true) => totals.up_ms += span,
        Some(false) => totals.down_ms += span,
        None => totals.excluded_ms += span,
    };
    for event in events
        .iter()
        .filter(|e| e.at_ms >= from_ms && e.at_ms < to_ms)
    {
        add(state, event.at_ms - at, &mut totals);
        if state == State::Down
            && event.to != State::Down
            && let Some(open) = outages.last_mut()
        {
            open.end_ms = Some(event.at_ms);
        }
        if event.to == State::Down && state != State::Down {
            outages.push(Outage {
                start_ms: event.at_ms,
                end_ms: None,
                reason: event.reason.clone(),
                message: event.message.clone(),
            });
        }
        state = event.to;
        at = event.at_ms;
    }
    add(state, to_ms - at, &mut totals);
    (totals, outages)
}

/// Counts and connect-time statistics over results.
pub fn summarize(results: &[StoredResult]) -> Rollup {
    let mut accumulator = Accumulator::default();
    for result in results {
        accumulator.add(result);
    }
    accumulator.finish()
}

/// Combines hourly rollups (p95 becomes the highest hourly p95, an upper
/// bound).
pub fn combine(rollups: &[Rollup]) -> Rollup {
    let timed: Vec<&Rollup> = rollups.iter().filter(|r| r.avg_us.is_some()).collect();
    let weight: u64 = timed.iter().map(|r| u64::from(r.count)).sum();
    Rollup {
        count: rollups.iter().map(|r| r.count).sum(),
        ups: rollups.iter().map(|r| r.ups).sum(),
        min_us: timed.iter().filter_map(|r| r.min_us).min(),
        max_us: timed.iter().filter_map(|r| r.max_us).max(),
        avg_us: (weight > 0).then(|| {
            (timed
                .iter()
                .map(|r| u64::from(r.avg_us.unwrap_or(0)) * u64::from(r.count))
                .sum::<u64>()
                / weight) as u32
        }),
        p95_us: timed.iter().filter_map(|r| r.p95_us).max(),
    }
}

/// One sensor's report.
#[derive(Debug, Clone, Serialize)]
pub struct SensorReport {
    /// `server/sensor`.
    pub sensor: String,
    /// Report start (ms).
    pub from_ms: i64,
    /// Report end (ms).
    pub to_ms: i64,
    /// Time by kind.
    pub time: Timeline,
    /// Uptime by time, percent.
    pub uptime_by_time: Option<f64>,
    /// Uptime by requests, percent.
    pub uptime_by_requests: Option<f64>,
    /// Checks in the period.
    pub checks: u32,
    /// Checks that found the service answering.
    pub checks_up: u32,
    /// Connect time statistics (µs).
    pub min_us: Option<u32>,
    /// Mean.
    pub avg_us: Option<u32>,
    /// Maximum.
    pub max_us: Option<u32>,
    /// 95th percentile.
    pub p95_us: Option<u32>,
    /// Outages.
    pub outages: Vec<Outage>,
}

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Uptime by time of each of `days` days from `from_ms` (a day's start),
/// up to `now_ms`, from the sensor's `events` (sorted, covering the span)
/// and its state at `from_ms`: `None` for a day with no time counted (not
/// monitored, paused or in maintenance all day, or still to come).
pub fn daily_uptime(
    initial: Option<State>,
    events: &[EventRow],
    from_ms: i64,
    days: usize,
    now_ms: i64,
) -> Vec<Day> {
    (0..days as i64)
        .map(|day| {
            let start = from_ms + day * DAY_MS;
            let end = (start + DAY_MS).min(now_ms);
            if end <= start {
                return Day::default();
            }
            let before = events
                .iter()
                .rev()
                .find(|e| e.at_ms < start)
                .map(|e| e.to)
                .or(initial);
            let (totals, outages) = timeline(before, events, start, end);
            Day {
                uptime: totals.uptime_percent(),
                outages: outages.len(),
                down_ms: totals.down_ms,
            }
        })
        .collect()
}

/// One day of a sensor's history, for the uptime bars.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Day {
    /// Uptime by time, in percent (`None`: no judged moment that day).
    pub uptime: Option<f64>,
    /// Outages during the day (one that spans midnight counts in both).
    pub outages: usize,
    /// Time down during the day.
    pub down_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::state::PauseCause;

    #[test]
    fn daily_uptime_splits_the_events_by_day() {
        let day = DAY_MS;
        let events = [
            event(day / 2, State::Pending, State::Up),
            event(day + day / 4, State::Up, State::Down),
            event(day + day / 2, State::Down, State::Up),
        ];
        let days = daily_uptime(None, &events, 0, 4, 3 * day + day / 2);
        // Day 0: pending, then up (only the up half counts); day 1: 1/4 of
        // it down; day 2: up all day; day 3: up so far.
        let uptimes = |days: Vec<Day>| days.iter().map(|d| d.uptime).collect::<Vec<_>>();
        assert_eq!(
            uptimes(days.clone()),
            [Some(100.0), Some(75.0), Some(100.0), Some(100.0)]
        );
        // Day 1 had one outage of a quarter of a day.
        assert_eq!((days[1].outages, days[1].down_ms), (1, day / 4));
        assert_eq!((days[2].outages, days[2].down_ms), (0, 0));
        // A day still to come has no figure; a sensor never checked neither.
        assert_eq!(daily_uptime(None, &events, 0, 5, 4 * day)[4].uptime, None);
        assert_eq!(
            uptimes(daily_uptime(None, &[], 0, 2, 2 * day)),
            [None, None]
        );
        // Down before the span: counted from the first day's start.
        assert_eq!(
            daily_uptime(Some(State::Down), &[], 0, 1, day)[0],
            Day {
                uptime: Some(0.0),
                outages: 1,
                down_ms: day
            }
        );
    }

    fn event(at_ms: i64, from: State, to: State) -> EventRow {
        EventRow {
            sensor_id: 1,
            at_ms,
            from,
            to,
            reason: Some("refused".into()),
            message: format!("{from} -> {to}"),
        }
    }

    #[test]
    fn uptime_by_time_excludes_paused_time() {
        let events = [
            event(100, State::Pending, State::Up),
            event(400, State::Up, State::Warning),
            event(410, State::Warning, State::Down),
            event(500, State::Down, State::Up),
            event(600, State::Up, State::Paused(PauseCause::Schedule)),
            event(900, State::Paused(PauseCause::Schedule), State::Pending),
            event(910, State::Pending, State::Up),
        ];
        let (time, outages) = timeline(None, &events, 0, 1000);
        assert_eq!(
            time,
            Timeline {
                up_ms: 300 + 10 + 100 + 90,
                down_ms: 90,
                excluded_ms: 100 + 300 + 10
            }
        );
        assert_eq!(time.up_ms + time.down_ms + time.excluded_ms, 1000);
        assert_eq!(outages.len(), 1);
        assert_eq!((outages[0].start_ms, outages[0].end_ms), (410, Some(500)));
        assert_eq!(outages[0].reason.as_deref(), Some("refused"));
        let uptime = time.uptime_percent().unwrap();
        assert!((uptime - 500.0 * 100.0 / 590.0).abs() < 1e-9, "{uptime}");
    }

    #[test]
    fn an_ongoing_outage_and_one_from_before() {
        let (time, outages) = timeline(
            Some(State::Down),
            &[
                event(300, State::Down, State::Up),
                event(700, State::Up, State::Down),
            ],
            0,
            1000,
        );
        assert_eq!(
            time,
            Timeline {
                up_ms: 400,
                down_ms: 600,
                excluded_ms: 0
            }
        );
        assert_eq!(
            outages
                .iter()
                .map(|o| (o.start_ms, o.end_ms))
                .collect::<Vec<_>>(),
            [(0, Some(300)), (700, None)]
        );
        assert_eq!(outages[1].duration_ms(1000), 300);
    }

    #[test]
    fn nothing_counted_means_no_uptime_figure() {
        let (time, _) = timeline(Some(State::Paused(PauseCause::Manual)), &[], 0, 1000);
        assert_eq!(time.uptime_percent(), None);
        assert_eq!(time.excluded_ms, 1000);
    }

    #[test]
    fn rollups_combine_weighted() {
        let a = Rollup {
            count: 10,
            ups: 10,
            min_us: Some(100),
            avg_us: Some(200),
            max_us: Some(300),
            p95_us: Some(290),
        };
        let b = Rollup {
            count: 30,
            ups: 27,
            min_us: Some(50),
            avg_us: Some(400),
            max_us: Some(900),
            p95_us: Some(800),
        };
        let c = combine(&[a, b]);
        assert_eq!(
            (c.count, c.ups, c.min_us, c.max_us, c.p95_us),
            (40, 37, Some(50), Some(900), Some(800))
        );
        assert_eq!(c.avg_us, Some(350));
    }
}
