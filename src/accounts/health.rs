//! What the metrics listener asks of the core: the database counts behind the gauges
//! (read at most once per [`Counts::TTL`](crate::metrics::Counts::TTL), never per scrape) and whether the database
//! answers a read in time (`/readyz`, `postern status`).
//!
//! ```text
//! GET /metrics  -> refresh_counts()   stats read when older than 15 s or stale
//! GET /readyz   -> database_ready(2s) "ok" | "database: ... lost: deleted"
//! ```

use std::time::Duration;

use super::{Accounts, MODE_SETTING};

impl Accounts {
    /// Reads the gauges' counts from the database when the last read is older than
    /// [`Counts::TTL`](crate::metrics::Counts::TTL) or an account was created since; a failed read keeps the old ones.
    pub async fn refresh_counts(&self) {
        let counts = &crate::metrics::get().counts;
        if !counts.due() {
            return;
        }
        match self.store.stats(self.now()).await {
            Ok(s) => counts.set(
                s.accounts,
                s.blocked_accounts,
                s.admins,
                s.tokens_active,
                s.homes_queued,
            ),
            Err(e) => tracing::debug!(
                "event=metrics result=tempfail error={}",
                crate::logfmt::value(e)
            ),
        }
    }

    /// Whether the database answers a point read within `deadline`; the error is one
    /// line saying why not.
    pub async fn database_ready(&self, deadline: Duration) -> Result<(), String> {
        self.check_database().map_err(|e| e.to_string())?;
        match tokio::time::timeout(deadline, self.store.setting(MODE_SETTING)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "database: no answer within {} ms",
                deadline.as_millis()
            )),
        }
    }
}
