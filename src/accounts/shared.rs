//! The limits several hosts share when the store is shared (PostgreSQL): the per-account
//! failure count that starts slow mode, the slow-mode turns, and the per-sender send
//! rate. With one host (SQLite) each call here is the in-memory limit of `limits.rs`
//! alone and touches no database. Per-IP limits and the per (account, client) pairs stay
//! in each process's memory.
//!
//! ```text
//! login, not cached    read failures(account)     one point read, before argon2
//!   slow mode          claim the account's turn   one upsert per turn granted here
//!   refused after it   failures += 1              one upsert (a good login writes nothing)
//! policy RCPT          take a send token          one upsert per message (other
//!                                                 recipients of it are free in memory)
//! maintenance run      prune ended windows and full buckets
//! ```
//!
//! Windows: a failure window opens at the first failure after the last one ended and
//! lasts `login.failure_window`, as in memory; a send bucket holds `policy.send_burst`
//! tokens refilled at `policy.send_per_minute`. Times are the hosts' clocks in
//! milliseconds; a host whose clock is behind gets no refill from it.
//!
//! When the database fails: the read before a check is a temporary failure (nothing is
//! checked, nobody let in or refused for good), and so is the send token (policy
//! `DEFER_IF_PERMIT`). Counting a failure that already happened only logs: the refusal
//! stands, and this process's own count still limits the guesser on this host.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::address::Address;
use super::{Accounts, Unavailable};
use crate::config::PolicyConfig;

/// Milliseconds since the Unix epoch on this host's clock.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The clock the shared limits use, for tests that read them back.
#[cfg(test)]
pub(super) fn now_ms_for_tests() -> i64 {
    now_ms()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Accounts {
    /// The account's failures counted by every host in the current window (0 with one
    /// host, or with the limit off).
    pub(super) async fn shared_failures(&self, address: &Address) -> Result<u32, Unavailable> {
        if !self.store.shared_by_hosts() || self.config().login.max_failures == 0 {
            return Ok(0);
        }
        Ok(self
            .store
            .login_failures(address.as_str(), now_ms())
            .await?)
    }

    /// Counts a refused password check for every host. A store error only logs.
    pub(super) async fn count_shared_failure(&self, address: &Address) {
        let login = self.config().login.clone();
        if !self.store.shared_by_hosts() || login.max_failures == 0 {
            return;
        }
        let window = millis(login.failure_window.duration());
        if let Err(e) = self
            .store
            .add_login_failure(address.as_str(), now_ms(), window)
            .await
        {
            self.bookkeeping_failed("login_failure", address.as_str(), &e);
        }
    }

    /// Claims the account's slow-mode turn for every host: `Err(after)` when another
    /// host has it. Always granted with one host.
    pub(super) async fn claim_shared_turn(
        &self,
        address: &Address,
        interval: Duration,
    ) -> Result<Result<(), Duration>, Unavailable> {
        if !self.store.shared_by_hosts() {
            return Ok(Ok(()));
        }
        Ok(
            match self
                .store
                .claim_login_turn(address.as_str(), now_ms(), millis(interval))
                .await?
            {
                None => Ok(()),
                Some(after) => Err(Duration::from_millis(u64::try_from(after).unwrap_or(0))),
            },
        )
    }

    /// Takes one send token for `sender`'s message `tag` (Postfix's `instance`; a tag
    /// already paid for is free). False: over the send rate.
    pub(super) async fn take_send_token(
        &self,
        sender: &Address,
        tag: &str,
        policy: &PolicyConfig,
    ) -> Result<bool, Unavailable> {
        if !self.store.shared_by_hosts() {
            return Ok(self
                .send_limiter
                .take(
                    sender.as_str(),
                    tag,
                    policy.send_burst,
                    policy.send_per_minute,
                    std::time::Instant::now(),
                )
                .is_ok());
        }
        if policy.send_per_minute == 0 || self.paid_tags.is_paid(sender.as_str(), tag) {
            return Ok(true);
        }
        let capacity = f64::from(policy.send_burst.max(1));
        let per_ms = f64::from(policy.send_per_minute) / 60_000.0;
        let taken = self
            .store
            .take_send_token(sender.as_str(), now_ms(), capacity, per_ms)
            .await?;
        if taken && !tag.is_empty() {
            self.paid_tags.paid(sender.as_str(), tag);
        }
        Ok(taken)
    }

    /// Forgets the shared counts that no longer limit anything: failure windows and
    /// turns that ended, and send buckets idle long enough to be full again. Returns how
    /// many rows went.
    pub(super) async fn prune_shared_limits(&self) -> Result<u64, Unavailable> {
        let policy = self.config().policy.clone();
        // A bucket idle for capacity / rate is full again; with no rate, none limits.
        let full_after = if policy.send_per_minute == 0 {
            0
        } else {
            let per_minute = i64::from(policy.send_per_minute);
            (i64::from(policy.send_burst.max(1)) * 60_000 + per_minute - 1) / per_minute
        };
        Ok(self.store.prune_limits(now_ms(), full_after).await?)
    }
}
