//! Account maintenance, statistics and imports: what `postern maintenance run`,
//! `postern stats` and `postern import chatmail` decide.
//!
//! ```text
//! queue      mail homes of deleted accounts (the admin page's, failed removals) -> remove,
//!            strictly inside the mail root; the address has an account again -> leave
//!            the home, drop the entry; already gone -> drop; removal fails -> keep
//! expired    made with an invite that gives accounts a lifetime, now past it -> delete
//!            with mail
//! inactive   last login older than maintenance.delete_inactive_after   -> delete with mail
//!            (administrators are never deleted by maintenance)
//! unused     web/invite accounts never logged in after delete_unused_after -> delete
//! tokens     revoked/expired/used up for token_grace, no account made with them -> purge
//! usage      not reported by quota_clone for usage_stale_after -> recompute from Maildir
//! ```
//!
//! [`Accounts::run_maintenance`] runs these steps in this order and returns a
//! [`MaintenanceReport`]; the CLI prints it and maps it to an exit code. Mail homes
//! belong to the mail user, so every file operation on them goes through the caller's
//! [`MailHomeRights`].

use std::future::Future;
use std::path::{Path, PathBuf};

use super::address::{self, Address};
use super::audit::{Actor, Change};
use super::password::looks_like_supported_hash;
use super::view::Quota;
use super::{Accounts, AdminError, Route, Unavailable, UsageChange};
use crate::logfmt;
use crate::store::{NewAccount, QueuedHome, QuotaMode};

/// The right to touch mail homes, which belong to the mail user rather than to whoever
/// runs postern. The CLI run as root has it: it switches back to root around the
/// operation (`src/cli/privileges.rs`). The daemon has none, so it never removes a mail
/// home itself (see [`Accounts::delete_user`]). Only file-system work runs inside
/// `with_rights`, never a database call.
pub trait MailHomeRights {
    /// Runs `op`, a file operation on mail homes, with the rights it needs. `op` must
    /// not start its work before it is first polled (an `async` block, not a spawned
    /// task), so the work happens inside the switch.
    fn with_rights<T>(&self, op: impl Future<Output = T>) -> impl Future<Output = T>;
}

/// What became of a queued mail home; in a dry run, what would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeResult {
    /// Removed; off the queue.
    Removed,
    /// Nothing on disk; off the queue.
    Gone,
    /// The address has an account again (registered after `--allow-reuse`): the home
    /// now holds that account's mail. Left alone; off the queue.
    Skipped,
    /// Could not be removed (the reason); it stays queued for the next run.
    Failed(String),
}

/// One queued mail home and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeOutcome {
    pub address: String,
    pub home: PathBuf,
    pub result: HomeResult,
}

/// Why maintenance deletes an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Past the lifetime its invite gave it (`token create --account-lifetime`).
    Expired,
    /// Last login older than `delete_inactive_after`.
    Inactive,
    /// Made on the web or with an invite, never logged in, older than `delete_unused_after`.
    Unused,
}

/// What became of an account maintenance found due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueOutcome {
    /// A dry run: it would be deleted with its mail home.
    Due,
    /// Deleted, and what became of its mail home (`None`: another process handled it).
    Deleted(Option<HomeOutcome>),
    /// Not deleted (why).
    NotDeleted(String),
}

/// An account maintenance found due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAccount {
    pub address: String,
    pub why: Due,
    pub outcome: DueOutcome,
}

/// What `run_maintenance` did, step by step; in a dry run, what it would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub dry_run: bool,
    /// Mail homes queued by earlier deletions, in queue order.
    pub queued_homes: Vec<HomeOutcome>,
    /// Expired accounts, then inactive ones, then unused ones.
    pub accounts: Vec<DueAccount>,
    /// Dead invites purged (in a dry run: due).
    pub tokens_purged: usize,
    /// Accounts whose usage was recomputed (in a dry run: due).
    pub usage_recomputed: usize,
}

impl MaintenanceReport {
    /// Every mail home handled: earlier deletions' and this run's.
    pub fn homes(&self) -> impl Iterator<Item = &HomeOutcome> {
        let deleted = self.accounts.iter().filter_map(|a| match &a.outcome {
            DueOutcome::Deleted(Some(h)) => Some(h),
            _ => None,
        });
        self.queued_homes.iter().chain(deleted)
    }

    /// Every mail home that could not be removed (they stay queued).
    pub fn failed_homes(&self) -> Vec<&HomeOutcome> {
        self.homes()
            .filter(|h| matches!(h.result, HomeResult::Failed(_)))
            .collect()
    }

    /// Accounts that were due but could not be deleted: (address, why not).
    pub fn not_deleted(&self) -> Vec<(&str, &str)> {
        self.accounts
            .iter()
            .filter_map(|a| match &a.outcome {
                DueOutcome::NotDeleted(why) => Some((a.address.as_str(), why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// True when a real run did everything it set out to do (a dry run changes
    /// nothing, so nothing in it fails).
    pub fn succeeded(&self) -> bool {
        self.dry_run || (self.failed_homes().is_empty() && self.not_deleted().is_empty())
    }
}

/// What maintenance would do at a given time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenancePlan {
    /// Past their lifetime (`expires_at` at or before the run's time).
    pub expired: Vec<String>,
    pub inactive: Vec<String>,
    pub unused: Vec<String>,
    pub tokens: Vec<i64>,
    pub stale_usage: Vec<String>,
}

/// Counts for `postern stats`, with quotas resolved against the configured default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub accounts: i64,
    pub blocked_accounts: i64,
    pub blocklist: i64,
    pub admins: i64,
    /// (created_via, created in the last day, created in the last week)
    pub created: Vec<(String, i64, i64)>,
    pub used_bytes: i64,
    /// Sum of the limited accounts' quotas.
    pub quota_bytes: u64,
    pub unlimited_accounts: i64,
    pub tokens_active: i64,
    pub tokens_used_up: i64,
    pub tokens_expired: i64,
    pub tokens_revoked: i64,
    /// Mail homes waiting in the removal queue.
    pub homes_queued: i64,
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
    /// Runs the maintenance `[maintenance]` asks for, as at `now`: first the mail homes
    /// queued by earlier deletions (so each entry is tried once per run), then the
    /// expired, inactive and unused accounts (each deleted as `user delete` deletes: its
    /// address stays on the blocklist, its home queued and removed at once),
    /// then dead invites and stale usage. `dry_run` changes nothing: the report says
    /// what would happen, mail homes checked on the real file system. An account that
    /// cannot be deleted or a mail home that cannot be removed goes into the report and
    /// the run goes on; any other database failure stops it (nothing half done is lost:
    /// a removed home's entry that could not leave the queue is found gone next time).
    pub async fn run_maintenance(
        &self,
        actor: &Actor,
        now: i64,
        dry_run: bool,
        rights: &impl MailHomeRights,
    ) -> Result<MaintenanceReport, AdminError> {
        let mut report = MaintenanceReport {
            dry_run,
            ..MaintenanceReport::default()
        };
        let queue = self.store.queued_homes().await?;
        for entry in queue {
            report.queued_homes.push(
                self.handle_queued_home(actor, entry, dry_run, rights)
                    .await?,
            );
        }

        let plan = self.maintenance_plan(now).await?;
        for (why, list) in [
            (Due::Expired, &plan.expired),
            (Due::Inactive, &plan.inactive),
            (Due::Unused, &plan.unused),
        ] {
            for address in list {
                let outcome = if dry_run {
                    DueOutcome::Due
                } else {
                    self.delete_due(actor, address, why, rights).await
                };
                report.accounts.push(DueAccount {
                    address: address.clone(),
                    why,
                    outcome,
                });
            }
        }

        if dry_run {
            report.tokens_purged = plan.tokens.len();
        } else {
            report.tokens_purged = self.purge_tokens(actor, plan.tokens).await?;
            let pruned = self.prune_shared_limits().await?;
            tracing::debug!("event=maintenance limits_pruned={pruned}");
        }
        // A dry run measures too (reading changes nothing): only accounts whose mail home
        // can be measured are recomputed, so it predicts the real run's count.
        for address in &plan.stale_usage {
            let measured = rights.with_rights(self.measure_mail_home(address)).await;
            if let Ok(Some((bytes, messages))) = measured {
                if !dry_run {
                    let change = UsageChange::Set {
                        bytes: Some(i64::try_from(bytes).unwrap_or(i64::MAX)),
                        messages: Some(i64::try_from(messages).unwrap_or(i64::MAX)),
                    };
                    self.note_usage(address, change).await?;
                }
                report.usage_recomputed += 1;
            }
        }
        if dry_run {
            return Ok(report);
        }
        let deleted = |why: Due| {
            report
                .accounts
                .iter()
                .filter(|a| a.why == why && matches!(a.outcome, DueOutcome::Deleted(_)))
                .count()
        };
        let homes =
            |want: fn(&HomeResult) -> bool| report.homes().filter(|h| want(&h.result)).count();
        tracing::info!(
            "event=maintenance deleted_expired={} deleted_inactive={} deleted_unused={} tokens_purged={} usage_recomputed={} failed={} homes_removed={} homes_gone={} homes_skipped={}",
            deleted(Due::Expired),
            deleted(Due::Inactive),
            deleted(Due::Unused),
            report.tokens_purged,
            report.usage_recomputed,
            report.failed_homes().len() + report.not_deleted().len(),
            homes(|r| *r == HomeResult::Removed),
            homes(|r| *r == HomeResult::Gone),
            homes(|r| *r == HomeResult::Skipped),
        );
        Ok(report)
    }

    /// Deletes an account maintenance found due (its address stays blocked) and removes
    /// its mail home at once.
    async fn delete_due(
        &self,
        actor: &Actor,
        address: &str,
        why: Due,
        rights: &impl MailHomeRights,
    ) -> DueOutcome {
        let why_text = match why {
            Due::Expired => "expired",
            Due::Inactive => "inactive",
            Due::Unused => "unused",
        };
        let deleted = match self
            .delete_account(actor, address, false, false, Some(why_text))
            .await
        {
            Ok(d) => d,
            Err(e) => return DueOutcome::NotDeleted(e.to_string()),
        };
        match self.remove_queued_home(actor, address, rights).await {
            Ok(home) => DueOutcome::Deleted(home),
            // The entry stays queued: the next run tries again.
            Err(e) => DueOutcome::Deleted(Some(HomeOutcome {
                address: deleted.account.address.to_string(),
                home: deleted.mail_queued.unwrap_or_default(),
                result: HomeResult::Failed(e.to_string()),
            })),
        }
    }

    /// Removes the queued mail home of `address` now, with `rights`: what `postern user
    /// delete` does right after the deletion. `None` when nothing is queued for it.
    pub async fn remove_queued_home(
        &self,
        actor: &Actor,
        address: &str,
        rights: &impl MailHomeRights,
    ) -> Result<Option<HomeOutcome>, AdminError> {
        let address = self.address_for(address)?;
        let Some(entry) = self.store.queued_home(address.as_str()).await? else {
            return Ok(None);
        };
        Ok(Some(
            self.handle_queued_home(actor, entry, false, rights).await?,
        ))
    }

    /// How many mail homes wait for removal.
    pub async fn queued_home_count(&self) -> Result<i64, Unavailable> {
        Ok(self.store.queued_home_count().await?)
    }

    /// Removes one queued mail home (`dry_run`: only checks it), unless its address has
    /// an account again. The entry leaves the queue unless the removal failed.
    async fn handle_queued_home(
        &self,
        actor: &Actor,
        entry: QueuedHome,
        dry_run: bool,
        rights: &impl MailHomeRights,
    ) -> Result<HomeOutcome, AdminError> {
        let result = if self.store.account(&entry.address).await?.is_some() {
            HomeResult::Skipped
        } else {
            let root = address::home_root(&self.config().mailbox.home);
            let home = entry.home.clone();
            // An async block: the blocking task starts inside the rights switch.
            let removed = rights
                .with_rights(async move {
                    tokio::task::spawn_blocking(move || remove_home(&root, &home, dry_run)).await
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            match removed {
                Ok(true) => HomeResult::Removed,
                Ok(false) => HomeResult::Gone,
                Err(message) => HomeResult::Failed(message),
            }
        };
        if !dry_run {
            let home = entry.home.to_string_lossy();
            let (address, home) = (self.private(&entry.address), self.private(&home));
            match &result {
                HomeResult::Removed => {
                    tracing::info!("event=mail_home result=removed address={address} home={home}")
                }
                HomeResult::Gone => {
                    tracing::info!("event=mail_home result=gone address={address} home={home}")
                }
                HomeResult::Skipped => tracing::warn!(
                    "event=mail_home result=skipped reason=account_exists address={address} home={home}"
                ),
                HomeResult::Failed(e) => tracing::warn!(
                    "event=mail_home result=fail address={address} home={home} error={}",
                    logfmt::value(e)
                ),
            }
            if !matches!(result, HomeResult::Failed(_)) {
                self.store.dequeue_home(&entry).await?;
            }
            if result == HomeResult::Removed {
                let change = Change::new("mail_home_remove", entry.address.clone())
                    .old(entry.home.to_string_lossy())
                    .new_value("removed");
                self.record(actor, change).await;
            }
        }
        Ok(HomeOutcome {
            address: entry.address,
            home: entry.home,
            result,
        })
    }

    /// Lists what maintenance would delete, purge and recompute at `now`.
    pub async fn maintenance_plan(&self, now: i64) -> Result<MaintenancePlan, AdminError> {
        let m = self.config().maintenance.clone();
        let before =
            |d: crate::config::Seconds| now.saturating_sub(i64::try_from(d.0).unwrap_or(i64::MAX));
        let inactive_before = m.delete_inactive_after.map(before);
        let unused_before = m.delete_unused_after.map(before);
        let token_cutoff = before(m.token_grace);
        let stale_before = before(m.usage_stale_after);
        let expired = self.store.expired_accounts(now).await?;
        let mut inactive = match inactive_before {
            Some(t) => self.store.inactive_accounts(t).await?,
            None => Vec::new(),
        };
        inactive.retain(|a| !expired.contains(a));
        let mut unused = match unused_before {
            Some(t) => self.store.unused_accounts(t).await?,
            None => Vec::new(),
        };
        unused.retain(|a| !inactive.contains(a) && !expired.contains(a));
        let tokens = self.store.dead_tokens(token_cutoff).await?;
        let stale_usage = self.store.stale_usage(stale_before).await?;
        let stale_usage = stale_usage
            .into_iter()
            .filter(|a| !expired.contains(a) && !inactive.contains(a) && !unused.contains(a))
            .collect();
        Ok(MaintenancePlan {
            expired,
            inactive,
            unused,
            tokens,
            stale_usage,
        })
    }

    /// Deletes invites (ids from a plan).
    pub async fn purge_tokens(&self, actor: &Actor, ids: Vec<i64>) -> Result<usize, AdminError> {
        let listed = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let n = self.store.delete_tokens(ids).await?;
        tracing::info!("event=token_purge count={n}");
        if n > 0 {
            let change = Change::new("invite_purge", None::<String>)
                .old(format!("invites={listed}"))
                .new_value(format!("deleted={n}"));
            self.record(actor, change).await;
        }
        Ok(n)
    }

    pub async fn stats(&self, now: i64) -> Result<Stats, AdminError> {
        let store = self.store.stats(now).await?;
        // Each group's quota by the one rule: a default or explicit 0 is unlimited.
        let default = Quota::effective(QuotaMode::Default, self.config().quota.default.bytes());
        let quota_bytes = default
            .limit
            .unwrap_or(0)
            .saturating_mul(u64::try_from(store.default_quota_accounts).unwrap_or(0))
            .saturating_add(u64::try_from(store.explicit_quota_bytes).unwrap_or(0));
        let mut unlimited_accounts = store.unlimited_accounts + store.explicit_zero_accounts;
        if default.limit.is_none() {
            unlimited_accounts += store.default_quota_accounts;
        }
        Ok(Stats {
            accounts: store.accounts,
            blocked_accounts: store.blocked_accounts,
            blocklist: store.blocklist,
            admins: store.admins,
            created: store.created,
            used_bytes: store.used_bytes,
            quota_bytes,
            unlimited_accounts,
            tokens_active: store.tokens_active,
            tokens_used_up: store.tokens_used_up,
            tokens_expired: store.tokens_expired,
            tokens_revoked: store.tokens_revoked,
            homes_queued: store.homes_queued,
        })
    }

    /// Imports accounts with the hashes another server stored (chatmail's SHA512-CRYPT,
    /// bcrypt, argon2): they log in with their old passwords and are re-hashed to
    /// argon2id at the next good login. Names the creation rules refuse (reserved, bad
    /// characters), existing and blocked addresses are skipped and reported.
    pub async fn import(
        &self,
        actor: &Actor,
        accounts: Vec<Imported>,
    ) -> Result<ImportReport, AdminError> {
        let config = self.config();
        let mut report = ImportReport::default();
        let mut rows = Vec::new();
        for a in accounts {
            let hash = a.password_hash.trim().to_owned();
            match self.importable(&a.address, Some(&hash), &config.registration.username) {
                Ok(address) => rows.push((address.as_str().to_owned(), hash)),
                Err(why) => report.skipped.push((a.address, why)),
            }
        }
        let now = self.now();
        let wanted = rows.len();
        let new = rows
            .into_iter()
            .map(|(address, password_hash)| NewAccount {
                address,
                password_hash,
                created_via: Route::Import.as_str(),
                now,
                token_hash: None,
                admin_if_none: false,
                admin: false,
                quota: QuotaMode::Default,
            })
            .collect();
        let inserted = self.store.insert_many(new).await?;
        crate::metrics::get().accounts_created(
            super::Route::Import.into(),
            u64::try_from(inserted).unwrap_or(0),
        );
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
        if inserted > 0 {
            let change = Change::new("import", None::<String>).new_value(format!(
                "imported={inserted} skipped={}",
                report.skipped.len()
            ));
            self.record(actor, change).await;
        }
        Ok(report)
    }
}

impl Accounts {
    /// The address an imported account gets, or why it is left out: a served domain,
    /// `rules`, a mail home, and a hash `verify_with` knows (when there is one). The one
    /// check both imports (chatmail's directories, `user import`) make.
    pub(super) fn importable(
        &self,
        address: &str,
        hash: Option<&str>,
        rules: &crate::config::UsernameRules,
    ) -> Result<Address, String> {
        let config = self.config();
        let address = Address::parse(address, &config.domains).map_err(|e| e.to_string())?;
        address.check_rules(rules).map_err(|e| e.to_string())?;
        if super::address::mail_home(&config.mailbox.home, &address).is_err() {
            return Err("cannot have a mail home".into());
        }
        if hash.is_some_and(|h| !looks_like_supported_hash(h)) {
            return Err("unsupported password hash".into());
        }
        Ok(address)
    }
}

/// Removes a mail home (`check_only`: only checks it) after checking, on the real file
/// system, that it lies strictly inside `root` (a symlink planted in the mail root must
/// not redirect the removal). `Ok(false)` when there is nothing to remove.
fn remove_home(root: &Path, home: &Path, check_only: bool) -> Result<bool, String> {
    let meta = match std::fs::symlink_metadata(home) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link; not following it".into());
    }
    let real_root = root.canonicalize().map_err(|e| e.to_string())?;
    let real_home = home.canonicalize().map_err(|e| e.to_string())?;
    if !real_home.starts_with(&real_root) || real_home == real_root {
        return Err(format!(
            "it is not inside the mail root {}",
            real_root.display()
        ));
    }
    if !check_only {
        std::fs::remove_dir_all(&real_home).map_err(|e| e.to_string())?;
    }
    Ok(true)
}
