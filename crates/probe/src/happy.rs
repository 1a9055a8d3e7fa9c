//! RFC 8305 "Happy Eyeballs v2" connection racing.
//!
//! Addresses are interleaved by family (the first family first), and a new
//! attempt starts every 250 ms, or at once when the running attempts have
//! failed. The first handshake to complete wins; the others are dropped,
//! which closes their sockets.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, sleep_until};

use super::Reason;
use super::connect::{Failure, Outcome};

/// The delay between starting connection attempts (RFC 8305, section 5).
pub const STAGGER: Duration = Duration::from_millis(250);

/// Orders addresses for racing: alternate families, starting with the family
/// of the first address, keeping the resolver's order within a family.
pub fn interleave(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let Some(first) = addresses.first() else {
        return Vec::new();
    };
    let (mut preferred, mut other): (Vec<IpAddr>, Vec<IpAddr>) = addresses
        .iter()
        .partition(|ip| ip.is_ipv6() == first.is_ipv6());
    preferred.dedup();
    other.dedup();
    let mut ordered = Vec::with_capacity(addresses.len());
    let mut preferred = preferred.into_iter();
    let mut other = other.into_iter();
    loop {
        match (preferred.next(), other.next()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// What a race came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Race {
    /// The address that completed the handshake first, and its own connect
    /// time.
    pub winner: Option<(SocketAddr, Duration)>,
    /// Every attempt that failed, in the order the attempts started. An
    /// attempt still running at the deadline is a [`Reason::Timeout`].
    pub failures: Vec<(SocketAddr, Failure)>,
    /// The winner's connection, when the attempts keep it.
    pub kept: Option<super::connect::Kept>,
}

impl Race {
    /// The failure that best explains a lost race: the first attempt that got
    /// an answer (refused, unreachable, prohibited), else the first timeout,
    /// else the checker's own error.
    pub fn main_failure(&self) -> Option<&(SocketAddr, Failure)> {
        let rank = |f: &Failure| match f.reason {
            Reason::LocalError => 2,
            Reason::Timeout => 1,
            _ => 0,
        };
        self.failures
            .iter()
            .enumerate()
            .min_by_key(|(index, (_, f))| (rank(f), *index))
            .map(|(_, failure)| failure)
    }
}

/// Races `attempt` over `addresses` (already ordered) until one connects or
/// `deadline` passes.
pub async fn race<F, Fut>(addresses: &[IpAddr], port: u16, deadline: Instant, attempt: F) -> Race
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = Outcome>,
{
    // A plain loop: an iterator adapter with a closure held across an await
    // makes the future's Send bound unprovable for the compiler.
    let mut targets = Vec::with_capacity(addresses.len());
    for ip in addresses {
        targets.push(SocketAddr::new(*ip, port));
    }
    let mut queue = targets.into_iter().peekable();
    let mut running = FuturesUnordered::new();
    let mut started: Vec<SocketAddr> = Vec::new();
    let mut failures: Vec<(SocketAddr, Failure)> = Vec::new();
    let mut next_start = Instant::now();
    loop {
        if Instant::now() >= next_start
            && let Some(address) = queue.next()
        {
            let attempt = attempt(address);
            running.push(async move { (address, attempt.await) });
            started.push(address);
            next_start = Instant::now() + STAGGER;
        }
        if running.is_empty() && queue.peek().is_none() {
            break;
        }
        tokio::select! {
            biased;
            Some((address, outcome)) = running.next(), if !running.is_empty() => match outcome {
                Outcome::Connected { elapsed, kept } => {
                    return Race { winner: Some((address, elapsed)), failures: in_start_order(failures, &started), kept };
                }
                Outcome::Failed(failure) => {
                    failures.push((address, failure));
                    // A failed attempt frees its slot: start the next at once.
                    next_start = Instant::now();
                }
            },
            () = sleep_until(next_start), if queue.peek().is_some() => {}
            () = sleep_until(deadline) => {
                for address in &started {
                    if !failures.iter().any(|(a, _)| a == address) {
                        failures.push((*address, Failure {
                            reason: Reason::Timeout,
                            detail: "no answer".to_owned(),
                            reported_by: None,
                            elapsed: None,
                        }));
                    }
                }
                break;
            }
        }
    }
    Race {
        winner: None,
        failures: in_start_order(failures, &started),
        kept: None,
    }
}

fn in_start_order(
    mut failures: Vec<(SocketAddr, Failure)>,
    started: &[SocketAddr],
) -> Vec<(SocketAddr, Failure)> {
    failures.sort_by_key(|(address, _)| started.iter().position(|s| s == address));
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn interleaves_families_starting_with_the_first() {
        let ordered = interleave(&ips(&[
            "2001:db8::1",
            "2001:db8::2",
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
        ]));
        assert_eq!(
            ordered,
            ips(&[
                "2001:db8::1",
                "192.0.2.1",
                "2001:db8::2",
                "192.0.2.2",
                "192.0.2.3"
            ])
        );
        let ordered = interleave(&ips(&["192.0.2.1", "2001:db8::1"]));
        assert_eq!(ordered, ips(&["192.0.2.1", "2001:db8::1"]));
        assert!(interleave(&[]).is_empty());
    }

    fn failure(reason: Reason) -> Failure {
        Failure {
            reason,
            detail: String::new(),
            reported_by: None,
            elapsed: Some(Duration::from_millis(1)),
        }
    }

    /// A scripted attempt: each address answers after a delay with an outcome,
    /// or never answers. Records when each attempt started (virtual time).
    async fn scripted(
        script: &[(&str, Option<(u64, Outcome)>)],
        timeout: u64,
    ) -> (Race, Vec<(IpAddr, u64)>) {
        let origin = Instant::now();
        let starts = Mutex::new(Vec::new());
        let addresses: Vec<IpAddr> = script.iter().map(|(ip, _)| ip.parse().unwrap()).collect();
        let race = race(
            &addresses,
            80,
            origin + Duration::from_millis(timeout),
            |address| {
                starts
                    .lock()
                    .unwrap()
                    .push((address.ip(), origin.elapsed().as_millis() as u64));
                let step = script
                    .iter()
                    .find(|(ip, _)| ip.parse::<IpAddr>().unwrap() == address.ip())
                    .unwrap()
                    .1
                    .clone();
                async move {
                    match step {
                        Some((delay, outcome)) => {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                            outcome
                        }
                        None => std::future::pending().await,
                    }
                }
            },
        )
        .await;
        (race, starts.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn dead_ipv6_falls_back_to_ipv4_after_the_stagger() {
        let connected = Outcome::Connected {
            elapsed: Duration::from_millis(5),
            kept: None,
        };
        let (race, starts) = scripted(
            &[("2001:db8::1", None), ("192.0.2.1", Some((5, connected)))],
            10_000,
        )
        .await;
        assert_eq!(
            race.winner,
            Some(("192.0.2.1:80".parse().unwrap(), Duration::from_millis(5)))
        );
        assert_eq!(
            starts,
            vec![(ips(&["2001:db8::1"])[0], 0), (ips(&["192.0.2.1"])[0], 250)]
        );
        assert!(
            race.failures.is_empty(),
            "the pending IPv6 attempt is abandoned, not failed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_starts_the_next_attempt_at_once() {
        let connected = Outcome::Connected {
            elapsed: Duration::from_millis(1),
            kept: None,
        };
        let (race, starts) = scripted(
            &[
                (
                    "2001:db8::1",
                    Some((10, Outcome::Failed(failure(Reason::Refused)))),
                ),
                ("192.0.2.1", Some((1, connected))),
            ],
            10_000,
        )
        .await;
        assert_eq!(starts[1].1, 10);
        assert_eq!(race.winner.unwrap().0, "192.0.2.1:80".parse().unwrap());
        assert_eq!(race.failures.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_turns_running_attempts_into_timeouts() {
        let (race, starts) = scripted(
            &[
                ("2001:db8::1", None),
                (
                    "192.0.2.1",
                    Some((100, Outcome::Failed(failure(Reason::Refused)))),
                ),
                ("192.0.2.2", None),
            ],
            1_000,
        )
        .await;
        assert!(race.winner.is_none());
        let reasons: Vec<Reason> = race.failures.iter().map(|(_, f)| f.reason).collect();
        assert_eq!(reasons, [Reason::Timeout, Reason::Refused, Reason::Timeout]);
        assert_eq!(
            starts.iter().map(|s| s.1).collect::<Vec<_>>(),
            [0, 250, 350]
        );
        // The refusal is an answer, so it explains the outcome better than
        // the earlier timeout.
        assert_eq!(race.main_failure().unwrap().1.reason, Reason::Refused);
    }

    #[tokio::test(start_paused = true)]
    async fn all_failing_ends_before_the_deadline() {
        let (race, _) = scripted(
            &[(
                "192.0.2.1",
                Some((3, Outcome::Failed(failure(Reason::HostUnreachable)))),
            )],
            10_000,
        )
        .await;
        assert_eq!(race.failures.len(), 1);
        assert_eq!(
            race.main_failure().unwrap().1.reason,
            Reason::HostUnreachable
        );
    }
}
