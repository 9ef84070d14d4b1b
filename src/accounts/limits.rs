//! In-memory rate limits: failed logins per account and per client IP, and the send
//! rate of authenticated senders. Per process, bounded in size, forgotten at restart.
//!
//! ```text
//! failures   more than max_failures in failure_window -> refused without argon2
//!            until the window passes (a known-good device in the cache still gets in)
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
        if max == 0 {
            return false;
        }
        let Ok(map) = self.map.lock() else {
            return false;
        };
        map.get(key)
            .is_some_and(|(n, start)| *n >= max && now.duration_since(*start) < self.window)
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

    pub fn clear(&self, key: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
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

/// The bucket a client counts against: its IPv4 address, its IPv6 /64 (one host usually
/// has a whole /64), or one shared bucket when the address is unknown.
pub(super) fn client_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".into(),
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
        l.clear("a");
        assert!(!l.is_limited("a", 3, t0));
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
