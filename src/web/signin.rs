//! Sign-in throttling: per address, per user, and a global cap on password
//! hashes in flight.
//!
//! - An attempt is counted **before** its password is verified, so many
//!   concurrent guesses from one address cannot all run before the first
//!   failure is recorded: the sixth attempt within a minute gets 429.
//!   IPv6 addresses are counted per /64, the block one host usually has.
//! - A user who has had [`USER_FAILURES`] failures within
//!   [`USER_WINDOW`] (from any address) is not locked out: their sign-ins
//!   are spaced [`USER_SPACING`] apart, each waiting at most
//!   [`MAX_USER_WAIT`] for its turn (then 429). An attacker with many
//!   addresses slows guessing at one account to one per second, and the
//!   real user still gets in.
//! - At most [`MAX_HASHES`] argon2 verifications run at once (19 MiB each);
//!   the rest wait up to [`HASH_WAIT`] and then get 503. Memory stays
//!   bounded whatever the load.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Sign-in attempts allowed per address per [`ADDRESS_WINDOW`].
pub(super) const ADDRESS_ATTEMPTS: u32 = 5;
/// The window of the per-address count.
const ADDRESS_WINDOW: Duration = Duration::from_secs(60);
/// Failures of one user after which that user's sign-ins are spaced out.
pub(super) const USER_FAILURES: u32 = 5;
/// The window of the per-user failure count.
const USER_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The spacing of a throttled user's sign-ins.
pub(super) const USER_SPACING: Duration = Duration::from_secs(1);
/// The longest a throttled user's sign-in waits for its turn.
pub(super) const MAX_USER_WAIT: Duration = Duration::from_secs(10);
/// Password verifications that may run at once.
pub(super) const MAX_HASHES: usize = 4;
/// How long a sign-in waits for a verification slot.
const HASH_WAIT: Duration = Duration::from_secs(5);
/// Entries kept per map; the oldest windows are dropped beyond it.
const MAX_ENTRIES: usize = 10_000;

/// Why a sign-in is not tried now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Too many attempts from this address, or the user's queue is full.
    TooMany,
    /// Every verification slot is busy.
    Busy,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    count: u32,
    since: Instant,
}

impl Window {
    /// An empty window starting at `now`.
    fn new(now: Instant) -> Window {
        Window {
            count: 0,
            since: now,
        }
    }

    /// Starts the window again at `now` when `length` has passed.
    fn renew(&mut self, now: Instant, length: Duration) {
        if now.duration_since(self.since) >= length {
            *self = Window::new(now);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct UserThrottle {
    failures: Window,
    /// When the next throttled attempt may start.
    next: Instant,
}

/// The sign-in limits of one web server. Cloning the state clones an `Arc`
/// of this.
#[derive(Debug)]
pub struct SignIns {
    addresses: Mutex<HashMap<IpAddr, Window>>,
    users: Mutex<HashMap<String, UserThrottle>>,
    hashes: std::sync::Arc<Semaphore>,
    /// Passwords verified (right or wrong), for `/metrics`.
    pub verified: AtomicU64,
    /// Sign-ins refused with 429 or 503, for `/metrics`.
    pub refused: AtomicU64,
}

impl Default for SignIns {
    fn default() -> Self {
        SignIns {
            addresses: Mutex::default(),
            users: Mutex::default(),
            hashes: std::sync::Arc::new(Semaphore::new(MAX_HASHES)),
            verified: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

/// The key an address is counted under: itself, or its /64 for IPv6.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Counts one attempt in `window` at `now`; false when the window is full.
fn count(window: &mut Window, now: Instant, limit: u32, length: Duration) -> bool {
    window.renew(now, length);
    if window.count >= limit {
        return false;
    }
    window.count += 1;
    true
}

/// A user's throttle: how long an attempt at `now` waits, and books it.
/// `None` when it would wait longer than [`MAX_USER_WAIT`].
fn user_wait(throttle: &mut UserThrottle, now: Instant) -> Option<Duration> {
    throttle.failures.renew(now, USER_WINDOW);
    if throttle.failures.count < USER_FAILURES {
        return Some(Duration::ZERO);
    }
    let start = throttle.next.max(now);
    let wait = start - now;
    if wait > MAX_USER_WAIT {
        return None;
    }
    throttle.next = start + USER_SPACING;
    Some(wait)
}

fn trim<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    since: impl Fn(&V) -> Instant,
) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    let mut ages: Vec<(Instant, K)> = map.iter().map(|(k, v)| (since(v), k.clone())).collect();
    ages.sort_by_key(|(at, _)| *at);
    for (_, key) in ages.into_iter().take(MAX_ENTRIES / 10) {
        map.remove(&key);
    }
}

impl SignIns {
    /// Admits one sign-in attempt by `user` from `ip`: counts it against the
    /// address, waits for the user's turn if that user is throttled, then
    /// for a verification slot. The permit must be held while the password
    /// is verified.
    pub(super) async fn admit(
        &self,
        ip: Option<IpAddr>,
        user: &str,
    ) -> Result<OwnedSemaphorePermit, Refusal> {
        let now = Instant::now();
        if let Some(ip) = ip {
            let mut addresses = self.addresses.lock().expect("sign-in lock");
            trim(&mut addresses, |w| w.since);
            let window = addresses.entry(address_key(ip)).or_insert(Window::new(now));
            if !count(window, now, ADDRESS_ATTEMPTS, ADDRESS_WINDOW) {
                drop(addresses);
                return Err(self.refuse(Refusal::TooMany));
            }
        }
        let wait = {
            let mut users = self.users.lock().expect("sign-in lock");
            match users.get_mut(user) {
                Some(throttle) => user_wait(throttle, now),
                None => Some(Duration::ZERO),
            }
        };
        let Some(wait) = wait else {
            return Err(self.refuse(Refusal::TooMany));
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        match tokio::time::timeout(HASH_WAIT, self.hashes.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                self.verified.fetch_add(1, Ordering::Relaxed);
                Ok(permit)
            }
            _ => Err(self.refuse(Refusal::Busy)),
        }
    }

    fn refuse(&self, refusal: Refusal) -> Refusal {
        self.refused.fetch_add(1, Ordering::Relaxed);
        refusal
    }

    /// Records the outcome of a verified attempt: a failure counts against
    /// the user; a success clears the address's and the user's counts.
    pub(super) fn settle(&self, ip: Option<IpAddr>, user: &str, succeeded: bool) {
        let now = Instant::now();
        if succeeded {
            if let Some(ip) = ip {
                self.addresses
                    .lock()
                    .expect("sign-in lock")
                    .remove(&address_key(ip));
            }
            self.users.lock().expect("sign-in lock").remove(user);
            return;
        }
        let mut users = self.users.lock().expect("sign-in lock");
        trim(&mut users, |t| t.failures.since);
        let throttle = users.entry(user.to_owned()).or_insert(UserThrottle {
            failures: Window::new(now),
            next: now,
        });
        throttle.failures.renew(now, USER_WINDOW);
        throttle.failures.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sixth_attempt_from_an_address_is_refused_until_the_minute_ends() {
        let limits = SignIns::default();
        let ip = Some("192.0.2.7".parse().unwrap());
        for n in 0..ADDRESS_ATTEMPTS {
            let permit = limits.admit(ip, &format!("user{n}")).await;
            assert!(permit.is_ok(), "attempt {n}");
        }
        assert_eq!(
            limits.admit(ip, "other").await.err(),
            Some(Refusal::TooMany)
        );
        tokio::time::advance(ADDRESS_WINDOW).await;
        assert!(limits.admit(ip, "other").await.is_ok());
        assert_eq!(limits.verified.load(Ordering::Relaxed), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_with_many_failures_is_slowed_not_locked_out() {
        let limits = SignIns::default();
        // Failures from many addresses (one each, under every address limit).
        for n in 0..USER_FAILURES {
            let ip = Some(IpAddr::from([192, 0, 2, n as u8 + 1]));
            drop(limits.admit(ip, "admin").await.unwrap());
            limits.settle(ip, "admin", false);
        }
        // From now on one attempt per second; each waits its turn.
        let start = Instant::now();
        let mut waits = Vec::new();
        for n in 0..3u8 {
            let ip = Some(IpAddr::from([198, 51, 100, n + 1]));
            drop(limits.admit(ip, "admin").await.unwrap());
            waits.push(Instant::now() - start);
        }
        assert_eq!(
            waits,
            [Duration::ZERO, USER_SPACING, USER_SPACING * 2],
            "attempts are spaced, not refused"
        );
        // The real user's right password gets in, and clears the throttle.
        limits.settle(Some([203, 0, 113, 5].into()), "admin", true);
        let before = Instant::now();
        drop(
            limits
                .admit(Some([203, 0, 113, 5].into()), "admin")
                .await
                .unwrap(),
        );
        assert_eq!(Instant::now(), before, "no wait after a success");
        // Another user is never slowed by admin's failures.
        let before = Instant::now();
        drop(limits.admit(None, "alice").await.unwrap());
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn a_users_failures_count_for_fifteen_minutes() {
        let limits = SignIns::default();
        for _ in 0..USER_FAILURES {
            drop(limits.admit(None, "admin").await.unwrap());
            limits.settle(None, "admin", false);
        }
        // Ten minutes on, the failures still count: the second attempt in a
        // row waits its turn.
        tokio::time::advance(Duration::from_secs(10 * 60)).await;
        drop(limits.admit(None, "admin").await.unwrap());
        let before = Instant::now();
        drop(limits.admit(None, "admin").await.unwrap());
        assert_eq!(Instant::now() - before, USER_SPACING, "still throttled");
        // Fifteen minutes after the first failure the window starts again.
        tokio::time::advance(USER_WINDOW - Duration::from_secs(10 * 60)).await;
        let before = Instant::now();
        drop(limits.admit(None, "admin").await.unwrap());
        drop(limits.admit(None, "admin").await.unwrap());
        assert_eq!(Instant::now(), before, "the window has ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_users_queue_is_bounded() {
        let mut throttle = UserThrottle {
            failures: Window {
                count: USER_FAILURES,
                since: Instant::now(),
            },
            next: Instant::now(),
        };
        let now = Instant::now();
        let booked: Vec<_> = std::iter::from_fn(|| user_wait(&mut throttle, now))
            .take(100)
            .collect();
        assert_eq!(booked.len(), 11, "0 s to 10 s in 1 s steps, then refused");
        assert_eq!(booked.last(), Some(&MAX_USER_WAIT));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_map_drops_its_oldest_tenth() {
        let start = Instant::now();
        let at = |n: usize| start + Duration::from_secs(n as u64);
        let mut map: HashMap<usize, Instant> = (0..MAX_ENTRIES - 1).map(|n| (n, at(n))).collect();
        trim(&mut map, |since| *since);
        assert_eq!(map.len(), MAX_ENTRIES - 1, "not full yet: nothing dropped");
        map.insert(MAX_ENTRIES - 1, at(MAX_ENTRIES - 1));
        trim(&mut map, |since| *since);
        assert_eq!(map.len(), MAX_ENTRIES - MAX_ENTRIES / 10);
        let oldest_kept = map.keys().min().copied();
        assert_eq!(oldest_kept, Some(MAX_ENTRIES / 10), "the oldest went first");
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_hashes_verify_at_once() {
        let limits = std::sync::Arc::new(SignIns::default());
        let mut held = Vec::new();
        for n in 0..MAX_HASHES {
            held.push(limits.admit(None, &format!("u{n}")).await.unwrap());
        }
        // The next waits, then gives up with Busy.
        assert_eq!(limits.admit(None, "late").await.err(), Some(Refusal::Busy));
        drop(held.pop());
        assert!(limits.admit(None, "late").await.is_ok());
    }
}
