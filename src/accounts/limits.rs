//! In-memory rate limits: failed logins per account and per client IP, and the send
//! rate of authenticated senders. Per process, bounded in size, forgotten at restart.
//!
//! ```text
//! failures   more than max_failures in failure_window -> refused without argon2
//!            until the window passes (a known-good device in the cache still gets in)
//! send rate  token bucket per sender: burst, refilled at send_per_minute; one token per
//!            message (Postfix's `instance`), not per recipient
//! ```

use std::collections::HashMap;
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
    last_message: String,
}

/// A token bucket per sender, charged once per message.
pub struct SendLimiter {
    map: Mutex<HashMap<String, Bucket>>,
}

impl Default for SendLimiter {
    fn default() -> Self {
        SendLimiter {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl SendLimiter {
    /// Charges `sender` for `message` (Postfix's per-transaction `instance`); further
    /// recipients of the same message are free. False when the sender is over the rate.
    pub fn allow(
        &self,
        sender: &str,
        message: &str,
        per_minute: u32,
        burst: u32,
        now: Instant,
    ) -> bool {
        if per_minute == 0 {
            return true;
        }
        let Ok(mut map) = self.map.lock() else {
            return true;
        };
        let capacity = f64::from(burst.max(1));
        let per_sec = f64::from(per_minute) / 60.0;
        if map.len() >= MAX_KEYS && !map.contains_key(sender) {
            // Buckets that have refilled completely carry no information: drop them.
            map.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < capacity
            });
        }
        let bucket = map.entry(sender.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
            last_message: String::new(),
        });
        if !message.is_empty() && bucket.last_message == message {
            return true;
        }
        let refill = now.duration_since(bucket.at).as_secs_f64() * per_sec;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.last_message = message.to_owned();
            true
        } else {
            false
        }
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
        let l = SendLimiter::default();
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(l.allow("s", &format!("m{i}"), 60, 10, t0), "burst {i}");
        }
        assert!(
            l.allow("s", "m9", 60, 10, t0),
            "another recipient of the same message is free"
        );
        assert!(!l.allow("s", "m10", 60, 10, t0));
        assert!(l.allow("other", "x", 60, 10, t0));
        // 60 per minute: one new token per second.
        assert!(l.allow("s", "m11", 60, 10, t0 + Duration::from_millis(1100)));
        assert!(!l.allow("s", "m12", 60, 10, t0 + Duration::from_millis(1200)));
    }
}
