//! `/live`: the dashboard's state changes as Server-Sent Events, so that a
//! open dashboard follows them without a reload (`assets/live.js`).
//!
//! Each stream reads the store's newest events once a second: one small
//! query, whatever the number of sensors. An event carries its id, so a
//! browser that reconnects (`Last-Event-ID`) continues where it stopped. A
//! stream re-checks its sign-in every 15 s and ends with `signedout` once
//! it is gone.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};

use super::auth::{ApiUser, still_signed_in};
use super::pages::{class, problems_in, tally_of, time};
use super::{AppError, AppState};
use crate::store::{EventRow, Storage};

/// How often a stream reads the newest events.
const POLL: Duration = Duration::from_secs(1);

/// How often a stream checks that its sign-in still holds.
const RECHECK: Duration = Duration::from_secs(15);

/// The most events one read takes; more than this between two reads and
/// the page is told to reload instead.
const BATCH: usize = 100;

/// Events up to this long before the page was drawn are sent again: an
/// event is stamped with its check's time, a moment before it is stored.
const OVERLAP_MS: i64 = 5_000;

#[derive(Deserialize)]
pub struct LiveQuery {
    /// When the page was drawn (ms since the epoch).
    since: Option<i64>,
}

/// One state change, as the page's script applies it to the sensor's rows.
#[derive(Serialize, Debug, PartialEq)]
pub(super) struct Change {
    /// The sensor's id (its rows carry `data-id`).
    id: i64,
    path: String,
    state: String,
    class: &'static str,
    reason: String,
    message: String,
    /// When, exact (the tooltip of "Since").
    at: String,
}

/// The counts and title after the changes of one read.
#[derive(Serialize, Debug, PartialEq)]
pub(super) struct Counts {
    title: String,
    /// Sensors per state class.
    counts: std::collections::BTreeMap<&'static str, usize>,
}

pub(super) fn change(path: String, event: &EventRow) -> Change {
    Change {
        id: event.sensor_id,
        path,
        state: event.to.to_string(),
        class: class(event.to),
        reason: event.reason.clone().unwrap_or_default(),
        message: crate::text::visible(&event.message),
        at: time(event.at_ms),
    }
}

/// Of the newest events (newest first), those to send after event `after`
/// (or, on a first read, from `since_ms` on), oldest first; `None` when
/// there may be more than were read since the last read (the page should
/// reload). A first read never asks for that: what came before the page
/// is on it.
pub(super) fn fresh<T>(
    newest: Vec<(i64, T)>,
    after: Option<i64>,
    since_ms: i64,
    at_ms: impl Fn(&T) -> i64,
) -> Option<Vec<(i64, T)>> {
    let full = newest.len() >= BATCH;
    let mut fresh: Vec<(i64, T)> = newest
        .into_iter()
        .take_while(|(id, event)| match after {
            Some(after) => *id > after,
            None => at_ms(event) >= since_ms - OVERLAP_MS,
        })
        .collect();
    if full && fresh.len() == BATCH && after.is_some() {
        return None;
    }
    fresh.reverse();
    Some(fresh)
}

struct Follower {
    state: AppState,
    parts: Parts,
    /// The last event sent (`None`: none yet, start from `since`).
    after: Option<i64>,
    since_ms: i64,
    queue: VecDeque<Event>,
    last_check: tokio::time::Instant,
    done: bool,
}

impl Follower {
    /// Reads the newest events into the queue; an error ends nothing (the
    /// next read tries again).
    async fn read(&mut self) -> Result<(), AppError> {
        if self.last_check.elapsed() >= RECHECK {
            self.last_check = tokio::time::Instant::now();
            if !still_signed_in(&self.parts, &self.state).await? {
                self.queue
                    .push_back(Event::default().event("signedout").data("{}"));
                self.done = true;
                return Ok(());
            }
        }
        let newest = self.state.db.recent_events(BATCH, None).await?;
        let newest_id = newest.first().map_or(0, |(id, _, _)| *id);
        let first_read = self.after.is_none();
        let Some(fresh) = fresh(
            newest
                .into_iter()
                .map(|(id, path, event)| (id, (path, event)))
                .collect(),
            self.after,
            self.since_ms,
            |(_, event)| event.at_ms,
        ) else {
            self.queue
                .push_back(Event::default().event("reload").data("{}"));
            self.done = true;
            return Ok(());
        };
        if fresh.is_empty() {
            if first_read {
                // Nothing since the page: continue after the newest event.
                self.after = Some(newest_id);
            }
            return Ok(());
        }
        for (id, (path, event)) in &fresh {
            let data =
                serde_json::to_string(&change(path.clone(), event)).expect("a change serialises");
            self.queue.push_back(
                Event::default()
                    .event("state")
                    .id(id.to_string())
                    .data(data),
            );
            self.after = Some(*id);
        }
        let everything = self.state.tallies.get(&self.state.db).await?;
        // The dashboard's own tally: its badges carry these classes.
        let tallied = tally_of(&everything);
        let problems = problems_in(&tallied);
        let counts: std::collections::BTreeMap<&'static str, usize> = tallied
            .into_iter()
            .map(|count| (count.class, count.n))
            .collect();
        let counts = Counts {
            title: if problems > 0 {
                format!("({problems}) portwatch")
            } else {
                "portwatch".into()
            },
            counts,
        };
        self.queue.push_back(
            Event::default()
                .event("counts")
                .data(serde_json::to_string(&counts).expect("counts serialise")),
        );
        Ok(())
    }
}

/// `GET /live?since=MS`: state changes from the page's time on (or after
/// the `Last-Event-ID` a reconnecting browser sends).
pub async fn live(
    State(state): State<AppState>,
    ApiUser(_): ApiUser,
    Query(query): Query<LiveQuery>,
    parts: Parts,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let after = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let since_ms = query
        .since
        .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
    let stream = Follower {
        state,
        parts,
        after,
        since_ms,
        queue: VecDeque::new(),
        last_check: tokio::time::Instant::now(),
        done: false,
    };
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        loop {
            if let Some(event) = stream.queue.pop_front() {
                return Some((Ok(event), stream));
            }
            if stream.done {
                return None;
            }
            if let Err(error) = stream.read().await {
                tracing::debug!(
                    ?error,
                    "live dashboard: cannot read the events; trying again"
                );
            }
            if stream.queue.is_empty() {
                tokio::time::sleep(POLL).await;
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

pub(super) fn routes() -> super::Routes {
    super::Routes::new().get("/live", live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(ids: &[(i64, i64)]) -> Vec<(i64, i64)> {
        // Newest first, as the store gives them: (id, at_ms).
        ids.iter().rev().copied().collect()
    }

    #[test]
    fn a_first_read_sends_what_followed_the_page_and_later_ones_what_followed_the_last() {
        let newest = events(&[(1, 1_000), (2, 50_000), (3, 58_000), (4, 61_000)]);
        let at = |t: &i64| *t;
        // The page was drawn at 60 s: events from 55 s on (a check's time
        // comes a moment before its event is stored), oldest first.
        assert_eq!(
            fresh(newest.clone(), None, 60_000, at),
            Some(vec![(3, 58_000), (4, 61_000)])
        );
        assert_eq!(
            fresh(newest.clone(), Some(2), 60_000, at),
            Some(vec![(3, 58_000), (4, 61_000)])
        );
        assert_eq!(fresh(newest, Some(4), 60_000, at), Some(vec![]));
    }

    #[test]
    fn a_full_read_of_fresh_events_asks_for_a_reload() {
        let newest: Vec<(i64, i64)> = (1..=BATCH as i64).rev().map(|id| (id, 0)).collect();
        assert_eq!(fresh(newest.clone(), Some(0), 0, |t| *t), None);
        // Not on a first read: the page shows what came before it.
        assert_eq!(
            fresh(newest.clone(), None, 0, |t| *t).map(|f| f.len()),
            Some(BATCH)
        );
        // A full read that reaches the last event sent is complete.
        assert_eq!(
            fresh(newest, Some(1), 0, |t| *t).map(|f| f.len()),
            Some(BATCH - 1)
        );
    }
}
