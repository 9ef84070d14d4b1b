//! Account maintenance, statistics and imports: what `postern maintenance run`,
//! `postern stats` and `postern import chatmail` decide.
//!
//! ```text
//! inactive   last login older than maintenance.delete_inactive_after   -> delete with mail
//!            (administrators are never deleted by maintenance)
//! unused     web/invite accounts never logged in after delete_unused_after -> delete
//! tokens     revoked/expired/used up for token_grace, no account made with them -> purge
//! usage      not reported by quota_clone for usage_stale_after -> recompute from Maildir
//! ```

use super::address::Address;
use super::password::looks_like_supported_hash;
use super::{Accounts, AdminError, Route};
use crate::store::{NewAccount, QuotaMode, StoreStats};

/// What maintenance would do at a given time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenancePlan {
    pub inactive: Vec<String>,
    pub unused: Vec<String>,
    pub tokens: Vec<i64>,
    pub stale_usage: Vec<String>,
}

/// Counts for `postern stats`, with quotas resolved against the configured default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub store: StoreStats,
    /// Sum of the limited accounts' quotas.
    pub quota_bytes: u64,
}

/// One account to import: its address and its stored hash, as the other server had it.
#[derive(Debug, Clone)]
pub struct Imported {
    pub address: String,
    pub password_hash: String,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub imported: usize,
    /// (address, why) for each one left out.
    pub skipped: Vec<(String, String)>,
}

impl Accounts {
    /// Lists what maintenance would delete, purge and recompute at `now`.
    pub async fn maintenance_plan(&self, now: i64) -> Result<MaintenancePlan, AdminError> {
        let m = self.config().maintenance.clone();
        let before =
            |d: crate::config::Seconds| now.saturating_sub(i64::try_from(d.0).unwrap_or(i64::MAX));
        let inactive_before = m.delete_inactive_after.map(before);
        let unused_before = m.delete_unused_after.map(before);
        let token_cutoff = before(m.token_grace);
        let stale_before = before(m.usage_stale_after);
        let (inactive, unused, tokens, stale_usage) = self
            .db(move |s| {
                let inactive = match inactive_before {
                    Some(t) => s.inactive_accounts(t)?,
                    None => Vec::new(),
                };
                let mut unused = match unused_before {
                    Some(t) => s.unused_accounts(t)?,
                    None => Vec::new(),
                };
                unused.retain(|a| !inactive.contains(a));
                Ok((
                    inactive,
                    unused,
                    s.dead_tokens(token_cutoff)?,
                    s.stale_usage(stale_before)?,
                ))
            })
            .await?;
        let stale_usage = stale_usage
            .into_iter()
            .filter(|a| !inactive.contains(a) && !unused.contains(a))
            .collect();
        Ok(MaintenancePlan {
            inactive,
            unused,
            tokens,
            stale_usage,
        })
    }

    /// Deletes invites (ids from a plan).
    pub async fn purge_tokens(&self, ids: Vec<i64>) -> Result<usize, AdminError> {
        let n = self.db(move |s| s.delete_tokens(&ids)).await?;
        tracing::info!("event=token_purge count={n}");
        Ok(n)
    }

    pub async fn stats(&self, now: i64) -> Result<Stats, AdminError> {
        let store = self.db(move |s| s.stats(now)).await?;
        let default = self.config().quota.default.bytes().unwrap_or(0);
        let quota_bytes = default
            .saturating_mul(u64::try_from(store.default_quota_accounts).unwrap_or(0))
            .saturating_add(u64::try_from(store.explicit_quota_bytes).unwrap_or(0));
        Ok(Stats { store, quota_bytes })
    }

    /// Imports accounts with the hashes another server stored (chatmail's SHA512-CRYPT,
    /// bcrypt, argon2): they log in with their old passwords and are re-hashed to
    /// argon2id at the next good login. Existing and blocked addresses are left alone.
    pub async fn import(&self, accounts: Vec<Imported>) -> Result<ImportReport, AdminError> {
        let config = self.config();
        let mut report = ImportReport::default();
        let mut rows = Vec::new();
        for a in accounts {
            let address = match Address::parse(&a.address, &config.domains) {
                Ok(addr) => addr,
                Err(e) => {
                    report.skipped.push((a.address, e.to_string()));
                    continue;
                }
            };
            if super::address::mail_home(&config.mailbox.home, &address).is_err() {
                report
                    .skipped
                    .push((a.address, "cannot have a mail home".into()));
                continue;
            }
            let hash = a.password_hash.trim().to_owned();
            if !looks_like_supported_hash(&hash) {
                report
                    .skipped
                    .push((a.address, "unsupported password hash".into()));
                continue;
            }
            rows.push((address.as_str().to_owned(), hash));
        }
        let now = self.now();
        let wanted = rows.len();
        let inserted = self
            .db(move |s| {
                let new: Vec<NewAccount<'_>> = rows
                    .iter()
                    .map(|(address, hash)| NewAccount {
                        address,
                        password_hash: hash,
                        created_via: Route::Import.as_str(),
                        now,
                        token_hash: None,
                        admin_if_none: false,
                        admin: false,
                        quota: QuotaMode::Default,
                    })
                    .collect();
                s.insert_many(&new)
            })
            .await?;
        report.imported = inserted;
        if inserted < wanted {
            report.skipped.push((
                format!("{} address(es)", wanted - inserted),
                "exist already or are blocked".into(),
            ));
        }
        tracing::info!(
            "event=import imported={inserted} skipped={}",
            report.skipped.len()
        );
        Ok(report)
    }
}
