//! In-memory rate limits: failed logins per account and per client IP, and the send
//! rate of authenticated senders. Per process, bounded in size, forgotten at restart.
//!
//! ```text
//! guard      per (account, client): more than max_failures in failure_window ->
//!            that client is refused without argon2; per account: more than
//!            max_failures from all clients -> slow mode, one argon2 check per
//!            slow_interval (clients without failures go first; clients that got in
//!            lately skip the line)
//! failures   per client IP across accounts: max_failures_per_ip
//! creations  per client: just-in-time creations (registration.jit_per_minute);
//!            all routes: new accounts per hour (registration.max_new_per_hour)
//! buckets    token bucket per key: the send rate per sender (burst, refilled at
//!            send_per_minute; one token per message, Postfix's `instance`, not per
//!            recipient); per client IP (IPv6: per /64) for sign-ups and admin
//!            sign-ins
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys a limiter tracks before it forgets the idle ones.
const MAX_KEYS: usize = 100_000;

/// Counts failures per key within a window.
pub struct FailureLimiter {
    window: Duration,
    map: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailureLimiter {
    pub fn new(window: Duration) -> Self {
        FailureLimiter {
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// True when `key` has reached `max` failures in the current window.
    pub fn is_limited(&self, key: &str, max: u32, now: Instant) -> bool {
        max != 0 && self.count(key, now) >= max
    }

    /// The failures of `key` in the current window.
    pub fn count(&self, key: &str, now: Instant) -> u32 {
        let Ok(map) = self.map.lock() else {
            return 0;
        };
        map.get(key)
            .filter(|(_, start)| now.duration_since(*start) < self.window)
            .map_or(0, |(n, _)| *n)
    }

    pub fn record_failure(&self, key: &str, now: Instant) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, (_, start)| now.duration_since(*start) < window);
            if map.len() >= MAX_KEYS {
                return;
            }
        }
        let entry = map.entry(key.to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// Forgets the failures of the key `key` builds. The key is built only when some
    /// key has failures, so the usual good login on a quiet server builds none.
    pub fn clear<K: AsRef<str>>(&self, key: impl FnOnce() -> K) {
        if let Ok(mut map) = self.map.lock() {
            if !map.is_empty() {
                map.remove(key().as_ref());
            }
        }
    }
}

/// The client key of every request that carries no IP.
pub const UNKNOWN_CLIENT: &str = "unknown";
/// Clients remembered per account as having logged in lately.
const KNOWN_PER_ACCOUNT: usize = 8;
/// How long a client that logged in stays known to skip slow mode.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 86400);
/// How often a waiting login looks again whether its turn has come.
const POLL: Duration = Duration::from_millis(25);

/// What the guard says about a password check that is about to happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password now.
    Go,
    /// The account is in slow mode: wait for a turn (`Guard::turn`).
    Rationed { fresh: bool },
    /// Refuse without checking.
    Refused,
}

struct Ration {
    next: Instant,
    /// Logins from clients without failures waiting for a turn: they go first.
    fresh_waiting: u32,
}

/// The guessing limits of accounts: failures per (account, client), failures per
/// account, clients that logged in lately, and the turns of accounts in slow mode.
pub struct Guard {
    pairs: FailureLimiter,
    accounts: FailureLimiter,
    known: Mutex<HashMap<String, Vec<(String, Instant)>>>,
    rations: Mutex<HashMap<String, Ration>>,
}

fn pair_key(account: &str, client: &str) -> String {
    format!("{account}\0{client}")
}

impl Guard {
    pub fn new(window: Duration) -> Guard {
        Guard {
            pairs: FailureLimiter::new(window),
            accounts: FailureLimiter::new(window),
            known: Mutex::new(HashMap::new()),
            rations: Mutex::new(HashMap::new()),
        }
    }

    /// Decides whether `client` may have `account`'s password checked now. `shared` is
    /// the account's failure count from every host (0 with one host): slow mode starts
    /// when either it or this process's own count is over `max`.
    pub fn admit(
        &self,
        account: &str,
        client: &str,
        max: u32,
        shared: u32,
        now: Instant,
    ) -> Admission {
        if max == 0 {
            return Admission::Go;
        }
        let pair = pair_key(account, client);
        if self.pairs.is_limited(&pair, max, now) {
            return Admission::Refused;
        }
        if self.is_known(account, client, now) {
            return Admission::Go;
        }
        if self.accounts.count(account, now).max(shared) >= max.saturating_add(1) {
            return Admission::Rationed {
                fresh: !self.pairs.is_limited(&pair, 1, now),
            };
        }
        Admission::Go
    }

    /// Counts a password check about to be made as a failure, before it runs, so
    /// concurrent guesses cannot all slip in before the first one is counted; a good
    /// login takes its client's count back (`record_success`).
    pub fn record_attempt(&self, account: &str, client: &str, now: Instant) {
        self.pairs.record_failure(&pair_key(account, client), now);
        self.accounts.record_failure(account, now);
    }

    /// A login that found no turn in time: its client is no longer fresh, so it cannot
    /// stay ahead of the line by never being checked.
    pub fn record_missed_turn(&self, account: &str, client: &str, now: Instant) {
        self.pairs.record_failure(&pair_key(account, client), now);
    }

    /// A good login: this client's failures are forgotten and it is known from now on.
    /// The account's own count stays, so a login by the owner does not hand guessers a
    /// new set of fast tries. The shared "unknown" client (no IP) is never remembered:
    /// it is everyone.
    ///
    /// A client already known (the usual login) is renewed in place, without an
    /// allocation, and moves to the end: the one left out when more come is the one
    /// that logged in longest ago.
    pub fn record_success(&self, account: &str, client: &str, now: Instant) {
        self.pairs.clear(|| pair_key(account, client));
        if client == UNKNOWN_CLIENT {
            return;
        }
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        if let Some(clients) = known.get_mut(account) {
            if let Some(i) = clients.iter().position(|(c, _)| c == client) {
                clients[i].1 = now;
                clients[i..].rotate_left(1);
                return;
            }
        }
        if known.len() >= MAX_KEYS && !known.contains_key(account) {
            known.retain(|_, v| v.iter().any(|(_, at)| now.duration_since(*at) < KNOWN_FOR));
            if known.len() >= MAX_KEYS {
                return;
            }
        }
        let clients = known.entry(account.to_owned()).or_default();
        clients.retain(|(_, at)| now.duration_since(*at) < KNOWN_FOR);
        if clients.len() >= KNOWN_PER_ACCOUNT {
            clients.remove(0);
        }
        clients.push((client.to_owned(), now));
    }

    /// Forgets everything about an account (deleted, password changed).
    pub fn forget(&self, account: &str) {
        self.accounts.clear(|| account);
        if let Ok(mut known) = self.known.lock() {
            known.remove(account);
        }
    }

    fn is_known(&self, account: &str, client: &str, now: Instant) -> bool {
        let Ok(known) = self.known.lock() else {
            return false;
        };
        known.get(account).is_some_and(|v| {
            v.iter()
                .any(|(c, at)| c == client && now.duration_since(*at) < KNOWN_FOR)
        })
    }

    /// Takes the account's next turn if it is free at `now`: `Err` says how long to wait
    /// before asking again. A fresh client takes a turn before any client with failures.
    pub fn try_turn(
        &self,
        account: &str,
        fresh: bool,
        interval: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut rations = match self.rations.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if rations.len() >= MAX_KEYS && !rations.contains_key(account) {
            rations.retain(|_, r| r.fresh_waiting > 0 || r.next > now);
            if rations.len() >= MAX_KEYS {
                return Err(interval.max(POLL));
            }
        }
        let r = rations.entry(account.to_owned()).or_insert(Ration {
            next: now,
            fresh_waiting: 0,
        });
        if now >= r.next && (fresh || r.fresh_waiting == 0) {
            r.next = now + interval;
            return Ok(());
        }
        Err(r.next.saturating_duration_since(now).max(POLL))
    }

    fn waiting(&self, account: &str, fresh: bool, enter: bool) {
        if !fresh {
            return;
        }
        let mut rations = match self.rations.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(r) = rations.get_mut(account) {
            r.fresh_waiting = if enter {
                r.fresh_waiting.saturating_add(1)
            } else {
                r.fresh_waiting.saturating_sub(1)
            };
        }
    }

    /// The account's next turn in this process is at `at`: the turn just granted here
    /// was another host's, and the shared one is free again then.
    fn defer(&self, account: &str, at: Instant) {
        let mut rations = match self.rations.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(r) = rations.get_mut(account) {
            r.next = at;
        }
    }

    /// Waits at most `wait` for the account's next turn; false: none came in time. A
    /// turn this process grants must also be claimed with `claim` (the turn shared by
    /// every host; with one host it always succeeds): `Err(after)` says another host
    /// has it, and when the next one is free.
    pub async fn turn<E, F, Fut>(
        &self,
        account: &str,
        fresh: bool,
        interval: Duration,
        wait: Duration,
        mut claim: F,
    ) -> Result<bool, E>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Result<(), Duration>, E>>,
    {
        let deadline = Instant::now() + wait;
        let mut entered = false;
        let got = loop {
            let now = Instant::now();
            let after = match self.try_turn(account, fresh, interval, now) {
                Ok(()) => match claim().await {
                    Ok(Ok(())) => break Ok(true),
                    Ok(Err(after)) => {
                        self.defer(account, now + after);
                        after.max(POLL)
                    }
                    Err(e) => break Err(e),
                },
                Err(after) => after,
            };
            if now + after > deadline {
                break Ok(false);
            }
            if !entered {
                self.waiting(account, fresh, true);
                entered = true;
            }
            tokio::time::sleep(after.min(POLL)).await;
        };
        if entered {
            self.waiting(account, fresh, false);
        }
        got
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// What the last token paid for; the same tag again is free.
    tag: String,
}

/// Token buckets per key: `capacity` requests at once, refilled at `per_minute`. Used for
/// the send rate (one token per message: the tag is Postfix's `instance`) and for the
/// web's sign-up and sign-in limits (no tag). Bounded: idle full buckets are forgotten,
/// and when `MAX_KEYS` busy keys are tracked, new keys are refused.
#[derive(Default)]
pub struct TokenBuckets {
    map: Mutex<HashMap<String, Bucket>>,
}

impl TokenBuckets {
    /// Takes a token for `key`, unless `tag` is not empty and paid already. `Err` holds
    /// how long until a token is free. `per_minute == 0` means no limit.
    pub fn take(
        &self,
        key: &str,
        tag: &str,
        capacity: u32,
        per_minute: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(capacity.max(1));
        let rate = f64::from(per_minute) / 60.0;
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            // Buckets that have refilled completely carry no information: drop them.
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < capacity
            });
            if map.len() >= MAX_KEYS {
                return Err(Duration::from_secs(60));
            }
        }
        let bucket = map.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
            tag: String::new(),
        });
        if !tag.is_empty() && bucket.tag == tag {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            tag.clone_into(&mut bucket.tag);
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// The message each sender's last send token paid for, when the buckets are in the
/// database: another recipient of the same message is free without asking it.
#[derive(Default)]
pub struct PaidTags {
    map: Mutex<HashMap<String, String>>,
}

impl PaidTags {
    /// Whether `tag` (not empty) is what `key`'s last token paid for.
    pub fn is_paid(&self, key: &str, tag: &str) -> bool {
        !tag.is_empty()
            && self
                .map
                .lock()
                .is_ok_and(|m| m.get(key).is_some_and(|t| t == tag))
    }

    /// Remembers that `key`'s last token paid for `tag`. Bounded: at `MAX_KEYS` senders
    /// it starts over (a recipient then pays again: stricter, never looser).
    pub fn paid(&self, key: &str, tag: &str) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.clear();
        }
        map.insert(key.to_owned(), tag.to_owned());
    }
}

/// The bucket a client counts against: its IPv4 address, its IPv6 /64 (one host usually
/// has a whole /64), or one shared bucket when the address is unknown.
pub fn client_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => {
            // What `to_string` gives, without the formatting machinery: this runs on
            // every login.
            let mut key = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    key.push('.');
                }
                if octet >= 100 {
                    key.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    key.push(char::from(b'0' + octet / 10 % 10));
                }
                key.push(char::from(b'0' + octet % 10));
            }
            key
        }
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => UNKNOWN_CLIENT.into(),
    }
}

/// Requests per client per minute: `per_minute` at once, then one every
/// `60 / per_minute` seconds. Counts every request, whatever its outcome.
#[derive(Default)]
pub struct ClientLimiter(TokenBuckets);

impl ClientLimiter {
    /// Takes one token for `ip`. `Err` carries how long until one is free again.
    /// `per_minute == 0` means no limit.
    pub fn take(&self, ip: Option<IpAddr>, per_minute: u32, now: Instant) -> Result<(), Duration> {
        self.0
            .take(&client_key(ip), "", per_minute, per_minute, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_client_key_is_the_address_as_written() {
        for n in 0..=255u8 {
            for ip in [
                std::net::Ipv4Addr::new(n, 0, 255, 9),
                std::net::Ipv4Addr::new(10, n, 99, 100),
                std::net::Ipv4Addr::new(1, 20, n, n),
            ] {
                assert_eq!(client_key(Some(IpAddr::V4(ip))), ip.to_string());
            }
        }
        let v6 = "2001:db8:1:2:3:4:5:6".parse().expect("an IPv6 address");
        assert_eq!(client_key(Some(IpAddr::V6(v6))), "2001:db8:1:2::/64");
        assert_eq!(client_key(None), UNKNOWN_CLIENT);
    }

    #[test]
    fn a_client_that_logs_in_again_is_the_last_one_forgotten() {
        let g = Guard::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        g.record_success("a@x", "phone", at(0));
        for (i, c) in ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]
            .iter()
            .enumerate()
        {
            g.record_success("a@x", c, at(1 + i as u64));
        }
        // The phone again: renewed, and now the newest of eight.
        g.record_success("a@x", "phone", at(10));
        assert_eq!(g.known.lock().unwrap()["a@x"].len(), KNOWN_PER_ACCOUNT);
        g.record_success("a@x", "laptop", at(11));
        assert!(g.is_known("a@x", "phone", at(12)), "renewed, so kept");
        assert!(g.is_known("a@x", "laptop", at(12)));
        assert!(!g.is_known("a@x", "c1", at(12)), "the oldest left");
        assert!(g.is_known("a@x", "c2", at(12)));
        // Renewed means its time moved too: known for KNOWN_FOR from the last login.
        let later = at(10) + KNOWN_FOR - Duration::from_secs(1);
        assert!(g.is_known("a@x", "phone", later));
        assert!(!g.is_known("a@x", "c2", later));
        g.record_success("a@x", UNKNOWN_CLIENT, at(13));
        assert!(
            !g.is_known("a@x", UNKNOWN_CLIENT, at(13)),
            "no IP is never known"
        );
    }

    #[test]
    fn failures_limit_within_the_window_only() {
        let l = FailureLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(!l.is_limited("a", 3, t0));
            l.record_failure("a", t0);
        }
        assert!(l.is_limited("a", 3, t0));
        assert!(!l.is_limited("b", 3, t0));
        assert!(
            !l.is_limited("a", 3, t0 + Duration::from_secs(61)),
            "not locked out for good"
        );
        l.record_failure("b", t0);
        l.clear(|| "a");
        assert!(!l.is_limited("a", 3, t0));
        assert_eq!(l.count("b", t0), 1, "only the key named is forgotten");
        l.clear(|| "b");
        l.clear(|| -> &str { unreachable!("nothing left to forget: no key is built") });
    }

    #[tokio::test]
    async fn a_turn_another_host_holds_is_waited_for_then_claimed() {
        let g = Guard::new(Duration::from_secs(60));
        let interval = Duration::from_secs(3600);
        let claims = std::sync::atomic::AtomicU32::new(0);
        let claim = || {
            let n = claims.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                Ok::<_, ()>(if n == 0 {
                    Err(Duration::from_millis(60))
                } else {
                    Ok(())
                })
            }
        };
        let began = Instant::now();
        let got = g
            .turn("a", true, interval, Duration::from_secs(5), claim)
            .await;
        assert_eq!(got, Ok(true));
        assert_eq!(claims.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(
            began.elapsed() >= Duration::from_millis(60),
            "waited for it"
        );
        // The turn is this process's now: the next one is an interval away.
        let again = g
            .turn("a", true, interval, Duration::from_millis(50), || async {
                Ok::<_, ()>(Ok(()))
            })
            .await;
        assert_eq!(again, Ok(false));
        // A store error ends the wait as an error.
        let failed = g
            .turn("b", true, interval, Duration::from_secs(5), || async {
                Err::<Result<(), Duration>, _>("store")
            })
            .await;
        assert_eq!(failed, Err("store"));
    }

    #[test]
    fn send_bucket_allows_burst_then_refills_and_charges_per_message() {
        let l = TokenBuckets::default();
        let t0 = Instant::now();
        let allow = |tag: &str, at| l.take("s", tag, 10, 60, at).is_ok();
        for i in 0..10 {
            assert!(allow(&format!("m{i}"), t0), "burst {i}");
        }
        assert!(
            allow("m9", t0),
            "another recipient of the same message is free"
        );
        assert!(!allow("m10", t0));
        assert!(l.take("other", "x", 10, 60, t0).is_ok());
        // 60 per minute: one new token per second.
        assert!(allow("m11", t0 + Duration::from_millis(1100)));
        assert!(!allow("m12", t0 + Duration::from_millis(1200)));
        // Untagged requests always pay, and say how long to wait.
        let wait = l
            .take("w", "", 1, 60, t0)
            .and_then(|()| l.take("w", "", 1, 60, t0));
        assert!(wait.expect_err("second is refused") <= Duration::from_secs(1));
        let free = l
            .take("f", "", 1, 0, t0)
            .and_then(|()| l.take("f", "", 1, 0, t0));
        assert!(free.is_ok(), "0 per minute means no limit");
    }

    #[test]
    fn hourly_cap_counts_per_hour_and_zero_is_off() {
        let cap = HourlyCap::default();
        let t0 = Instant::now();
        assert_eq!(cap.take(2, t0), Ok(()));
        assert_eq!(cap.take(2, t0), Ok(()));
        assert!(cap.take(2, t0 + Duration::from_secs(10)).is_err());
        assert_eq!(cap.take(2, t0 + Duration::from_secs(3601)), Ok(()));
        assert_eq!(HourlyCap::default().take(0, t0), Ok(()));
    }

    #[test]
    fn client_limiter_allows_per_minute_then_refills() {
        let l = ClientLimiter::default();
        let t0 = Instant::now();
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(l.take(a, 3, t0), Ok(()));
        }
        let wait = l.take(a, 3, t0).expect_err("fourth is refused");
        assert!(wait <= Duration::from_secs(20) && wait > Duration::from_secs(19));
        assert_eq!(l.take(ip("192.0.2.2"), 3, t0), Ok(()));
        assert_eq!(l.take(a, 3, t0 + Duration::from_secs(20)), Ok(()));
        assert!(l.take(a, 3, t0 + Duration::from_secs(20)).is_err());
        // One IPv6 /64 is one client; unknown clients share one bucket.
        assert_eq!(l.take(ip("2001:db8::1"), 1, t0), Ok(()));
        assert!(l.take(ip("2001:db8::2"), 1, t0).is_err());
        assert_eq!(l.take(None, 1, t0), Ok(()));
        assert!(l.take(None, 1, t0).is_err());
        assert_eq!(l.take(a, 0, t0), Ok(()));
    }
}

/// Events counted in fixed hours: the global cap on new accounts.
#[derive(Default)]
pub struct HourlyCap {
    state: Mutex<Option<(u32, Instant)>>,
}

impl HourlyCap {
    /// Counts one event unless `max` were counted in the current hour (`max == 0`: no
    /// limit). `Err`: how long until the hour ends.
    pub fn take(&self, max: u32, now: Instant) -> Result<(), Duration> {
        if max == 0 {
            return Ok(());
        }
        let hour = Duration::from_secs(3600);
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (count, start) = match *state {
            Some((n, start)) if now.saturating_duration_since(start) < hour => (n, start),
            _ => (0, now),
        };
        if count >= max {
            return Err(hour.saturating_sub(now.saturating_duration_since(start)));
        }
        *state = Some((count + 1, start));
        Ok(())
    }
}
