//! The SQLite backend: [`Db`](db::Db) runs the queries; this type decides where each
//! call runs. A point read (one indexed row: the account behind a login, a userdb or a
//! policy lookup) runs right on the async thread with SQLite's lock wait off: it is over
//! in microseconds, while a trip to the blocking pool and back costs more than the read.
//! Only when SQLite would have to wait for another connection's lock (rare in WAL mode,
//! where readers pass writers) does it go to the blocking pool to wait there. Writes and
//! scans always run on the blocking pool.
//!
//! ```text
//! account(a)        inline, no wait  --busy-->  blocking pool, waits up to 5 s
//! create_account(n) blocking pool
//! ```

mod db;
mod migrations;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use db::Db;

use super::{
    AccountRow, AuditFilter, AuditRecord, AuditRow, BlockEntry, CreateRefusal, Created,
    ImportResult, ImportRow, LoginRow, MailFacts, NewAccount, QueuedHome, QuotaMode, Result,
    StoreError, StoreStats, TokenRow,
};

/// The schema version this binary writes (`user_version` after every migration).
pub fn schema_version() -> i64 {
    migrations::known()
}

/// The SQLite database as the async core uses it.
pub struct Sqlite {
    db: Arc<Db>,
}

impl Sqlite {
    /// Opens (creating if needed) the database file and applies its migrations.
    pub fn open(path: &Path) -> Result<Sqlite> {
        Ok(Sqlite {
            db: Arc::new(Db::open(path)?),
        })
    }

    /// Like [`open`](Sqlite::open), but starts on a temporary failure and keeps trying
    /// ([`Db::open_degraded`]).
    pub fn open_degraded(path: &Path) -> Result<Sqlite> {
        Ok(Sqlite {
            db: Arc::new(Db::open_degraded(path)?),
        })
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Whether the file is still the one opened ([`Db::check`]).
    pub fn check(&self) -> Result<()> {
        self.db.check()
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|_| StoreError::Worker)?
    }

    /// Runs the point read `f(key)` here, without waiting for locks; on the blocking pool
    /// only when SQLite reports another connection's lock. No allocation on the fast path.
    async fn point<T: Send + 'static>(
        &self,
        key: &str,
        f: fn(&Db, &str) -> Result<T>,
    ) -> Result<T> {
        match self.db.without_waiting(|d| f(d, key)) {
            Err(e) if e.is_busy() => {
                crate::metrics::get()
                    .store_busy_retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let key = key.to_owned();
                self.blocking(move |d| f(d, &key)).await
            }
            done => done,
        }
    }

    pub async fn account(&self, address: &str) -> Result<Option<AccountRow>> {
        self.point(address, Db::account).await
    }

    pub async fn login_row(&self, address: &str) -> Result<Option<LoginRow>> {
        self.point(address, Db::login_row).await
    }

    pub async fn mail_facts(&self, address: &str) -> Result<MailFacts> {
        self.point(address, Db::mail_facts).await
    }

    pub async fn accounts(
        &self,
        blocked_only: bool,
        search: Option<String>,
    ) -> Result<Vec<AccountRow>> {
        self.blocking(move |d| d.accounts(blocked_only, search.as_deref()))
            .await
    }

    pub async fn addresses(&self) -> Result<Vec<String>> {
        self.blocking(move |d| d.addresses()).await
    }

    pub async fn has_active_admin(&self) -> Result<bool> {
        self.blocking(move |d| d.has_active_admin()).await
    }

    pub async fn create_account(
        &self,
        new: NewAccount,
    ) -> Result<std::result::Result<Created, CreateRefusal>> {
        self.blocking(move |d| d.create_account(&new)).await
    }

    pub async fn insert_many(&self, accounts: Vec<NewAccount>) -> Result<usize> {
        self.blocking(move |d| d.insert_many(&accounts)).await
    }

    pub async fn import_accounts(
        &self,
        rows: Vec<ImportRow>,
        update: bool,
        dry_run: bool,
    ) -> Result<Vec<ImportResult>> {
        self.blocking(move |d| d.import_accounts(&rows, update, dry_run))
            .await
    }

    pub async fn record_login(&self, id: i64, now: i64, min_interval: i64) -> Result<()> {
        self.blocking(move |d| d.record_login(id, now, min_interval))
            .await
    }

    pub async fn replace_hash(&self, id: i64, old: &str, new: &str) -> Result<bool> {
        let old = old.to_owned();
        let new = new.to_owned();
        self.blocking(move |d| d.replace_hash(id, &old, &new)).await
    }

    pub async fn set_password_hash(&self, address: &str, hash: &str) -> Result<bool> {
        let address = address.to_owned();
        let hash = hash.to_owned();
        self.blocking(move |d| d.set_password_hash(&address, &hash))
            .await
    }

    pub async fn set_quota(&self, address: &str, quota: QuotaMode) -> Result<bool> {
        let address = address.to_owned();
        self.blocking(move |d| d.set_quota(&address, quota)).await
    }

    pub async fn set_admin(&self, address: &str, admin: bool) -> Result<bool> {
        let address = address.to_owned();
        self.blocking(move |d| d.set_admin(&address, admin)).await
    }

    pub async fn set_last_login(&self, address: &str, at: i64) -> Result<bool> {
        let address = address.to_owned();
        self.blocking(move |d| d.set_last_login(&address, at)).await
    }

    pub async fn set_usage(
        &self,
        address: &str,
        bytes: Option<i64>,
        messages: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        let address = address.to_owned();
        self.blocking(move |d| d.set_usage(&address, bytes, messages, now))
            .await
    }

    pub async fn add_usage(
        &self,
        address: &str,
        bytes: i64,
        messages: i64,
        now: i64,
    ) -> Result<bool> {
        let address = address.to_owned();
        self.blocking(move |d| d.add_usage(&address, bytes, messages, now))
            .await
    }

    pub async fn delete_account(
        &self,
        address: &str,
        allow_reuse: bool,
        reason: &str,
        now: i64,
        remove_home: Option<&Path>,
    ) -> Result<Option<AccountRow>> {
        let address = address.to_owned();
        let reason = reason.to_owned();
        let remove_home: Option<PathBuf> = remove_home.map(Path::to_path_buf);
        self.blocking(move |d| {
            d.delete_account(&address, allow_reuse, &reason, now, remove_home.as_deref())
        })
        .await
    }

    pub async fn queued_homes(&self) -> Result<Vec<QueuedHome>> {
        self.blocking(move |d| d.queued_homes()).await
    }

    pub async fn queued_home(&self, address: &str) -> Result<Option<QueuedHome>> {
        self.point(address, Db::queued_home).await
    }

    pub async fn queued_home_count(&self) -> Result<i64> {
        self.blocking(move |d| d.queued_home_count()).await
    }

    pub async fn dequeue_home(&self, entry: &QueuedHome) -> Result<bool> {
        let entry = entry.clone();
        self.blocking(move |d| d.dequeue_home(&entry)).await
    }

    pub async fn block(&self, address: &str, reason: Option<&str>, now: i64) -> Result<bool> {
        let address = address.to_owned();
        let reason = reason.map(str::to_owned);
        self.blocking(move |d| d.block(&address, reason.as_deref(), now))
            .await
    }

    pub async fn unblock(&self, address: &str) -> Result<bool> {
        let address = address.to_owned();
        self.blocking(move |d| d.unblock(&address)).await
    }

    pub async fn blocklist_entry(&self, address: &str) -> Result<Option<BlockEntry>> {
        self.point(address, Db::blocklist_entry).await
    }

    pub async fn blocklist(&self) -> Result<Vec<BlockEntry>> {
        self.blocking(move |d| d.blocklist()).await
    }

    pub async fn create_token(
        &self,
        code_hash: &[u8; 32],
        comment: Option<&str>,
        max_uses: i64,
        expires_at: Option<i64>,
        now: i64,
        account_lifetime: Option<i64>,
    ) -> Result<i64> {
        let code_hash = *code_hash;
        let comment = comment.map(str::to_owned);
        self.blocking(move |d| {
            d.create_token(
                &code_hash,
                comment.as_deref(),
                max_uses,
                expires_at,
                now,
                account_lifetime,
            )
        })
        .await
    }

    pub async fn token_accounts(&self, id: i64) -> Result<Vec<(String, i64)>> {
        self.blocking(move |d| d.token_accounts(id)).await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.blocking(move |d| d.tokens()).await
    }

    pub async fn token(
        &self,
        id: Option<i64>,
        code_hash: Option<&[u8; 32]>,
    ) -> Result<Option<TokenRow>> {
        let code_hash = code_hash.copied();
        self.blocking(move |d| d.token(id, code_hash.as_ref()))
            .await
    }

    pub async fn revoke_token(&self, id: i64, now: i64) -> Result<bool> {
        self.blocking(move |d| d.revoke_token(id, now)).await
    }

    pub async fn dead_tokens(&self, cutoff: i64) -> Result<Vec<i64>> {
        self.blocking(move |d| d.dead_tokens(cutoff)).await
    }

    pub async fn delete_tokens(&self, ids: Vec<i64>) -> Result<usize> {
        self.blocking(move |d| d.delete_tokens(&ids)).await
    }

    pub async fn inactive_accounts(&self, before: i64) -> Result<Vec<String>> {
        self.blocking(move |d| d.inactive_accounts(before)).await
    }

    pub async fn expired_accounts(&self, now: i64) -> Result<Vec<String>> {
        self.blocking(move |d| d.expired_accounts(now)).await
    }

    pub async fn unused_accounts(&self, before: i64) -> Result<Vec<String>> {
        self.blocking(move |d| d.unused_accounts(before)).await
    }

    pub async fn stale_usage(&self, before: i64) -> Result<Vec<String>> {
        self.blocking(move |d| d.stale_usage(before)).await
    }

    pub async fn stats(&self, now: i64) -> Result<StoreStats> {
        self.blocking(move |d| d.stats(now)).await
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        self.point(key, Db::setting).await
    }

    pub async fn set_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        let key = key.to_owned();
        let value = value.map(str::to_owned);
        self.blocking(move |d| d.set_setting(&key, value.as_deref()))
            .await
    }

    pub async fn login_failures(&self, address: &str, now_ms: i64) -> Result<u32> {
        let address = address.to_owned();
        self.blocking(move |d| d.login_failures(&address, now_ms))
            .await
    }

    pub async fn add_login_failure(
        &self,
        address: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u32> {
        let address = address.to_owned();
        self.blocking(move |d| d.add_login_failure(&address, now_ms, window_ms))
            .await
    }

    pub async fn claim_login_turn(
        &self,
        address: &str,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<Option<i64>> {
        let address = address.to_owned();
        self.blocking(move |d| d.claim_login_turn(&address, now_ms, interval_ms))
            .await
    }

    pub async fn take_send_token(
        &self,
        address: &str,
        now_ms: i64,
        capacity: f64,
        per_ms: f64,
    ) -> Result<bool> {
        let address = address.to_owned();
        self.blocking(move |d| d.take_send_token(&address, now_ms, capacity, per_ms))
            .await
    }

    pub async fn prune_limits(&self, now_ms: i64, full_after_ms: i64) -> Result<u64> {
        self.blocking(move |d| d.prune_limits(now_ms, full_after_ms))
            .await
    }

    pub async fn append_audit(&self, record: AuditRecord) -> Result<i64> {
        self.blocking(move |d| d.append_audit(&record)).await
    }

    pub async fn audit_log(&self, filter: AuditFilter) -> Result<Vec<AuditRow>> {
        self.blocking(move |d| d.audit_log(&filter)).await
    }
}
