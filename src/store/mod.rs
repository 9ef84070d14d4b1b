//! The account database behind one interface: [`Store`] is an enum over the backends
//! (SQLite today, in `sqlite/`), and every operation the core needs is one named async
//! method on it, taking plain values and returning the records below. Each backend keeps
//! its SQL to itself, as literals; nothing above this module sees a query.
//!
//! ```text
//! Store::open(&config.database)          -> Store::Sqlite(..)
//! store.account("alice@example.org")     -> Option<AccountRow>   point read, inline
//! store.create_account(NewAccount {..})  -> Ok(Created) | Err(CreateRefusal::Exists)
//! store.stats(now)                       -> StoreStats           scan, blocking pool
//! ```
//!
//! A new backend is one more variant and one more arm in each method.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use crate::config;

pub mod copy;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
pub mod test_backend;
#[cfg(test)]
pub mod test_pg;

pub use postgres::Postgres;
pub use sqlite::Sqlite;

/// A database failure. Callers treat every one as temporary: nothing is created,
/// deleted or unblocked on an error path. [`StoreError::is_permanent`] tells the
/// failures at start that waiting cannot fix (exit status 4).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {path}: {message}")]
    Open {
        path: PathBuf,
        message: String,
        permanent: bool,
    },
    /// The database file was deleted or replaced under the running process, or at start
    /// its marker names a database that is not there.
    #[error("database {path} lost: {message}")]
    Lost { path: PathBuf, message: String },
    #[error("database worker stopped")]
    Worker,
    #[error("database schema version {found} is newer than this postern understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("database: {}", postgres::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database: {}", postgres::describe_pool(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database url: {0}")]
    Options(String),
    #[error("{0}")]
    Copy(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs one store operation, counting it, its failure and its time under its name
/// (`postern_store_operations_total{op=...}`); the call site keeps its handle, so only
/// its first call takes a lock. Used through [`dispatch!`]. The
/// operation is awaited right in the method's own future, not wrapped in another: a
/// wrapper would copy every store future into a larger one, and the connection tasks
/// that hold them grow with each layer.
macro_rules! timed {
    ($op:literal, $call:expr) => {{
        static OP: std::sync::OnceLock<&'static crate::metrics::StoreOp> =
            std::sync::OnceLock::new();
        let started = std::time::Instant::now();
        let result = $call;
        OP.get_or_init(|| crate::metrics::store_op($op))
            .record(started, result.is_err());
        result
    }};
}

/// One operation on whichever backend holds the data, timed ([`timed!`]). PostgreSQL's
/// futures (a pool checkout and the client's query, several KiB) are boxed: unboxed,
/// every caller's future, and with it every connection's task, would be that large on
/// SQLite too, and be copied whole each time the task is spawned.
macro_rules! dispatch {
    ($op:literal, $store:expr, $b:ident => $call:expr) => {
        timed! { $op, match $store {
            Store::Sqlite($b) => $call.await,
            Store::Postgres($b) => Box::pin($call).await,
        }}
    };
}

impl StoreError {
    /// SQLite gave up because another connection holds a lock it needs.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    }

    /// Waiting or restarting cannot fix it: a missing directory, a file that is not a
    /// database, a lost or replaced database, a schema newer than this binary.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Open { permanent, .. } => *permanent,
            StoreError::Lost { .. } | StoreError::TooNew { .. } => true,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == ErrorCode::NotADatabase
            }
            _ => false,
        }
    }
}

/// How an account's quota is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaMode {
    /// Follows `quota.default` from the configuration, whatever it is at the time.
    Default,
    Explicit(u64),
    Unlimited,
}

impl QuotaMode {
    /// How both backends store it: the `quota_mode` and `quota_bytes` columns.
    pub(crate) fn columns(self) -> (&'static str, Option<i64>) {
        match self {
            QuotaMode::Default => ("default", None),
            QuotaMode::Explicit(b) => ("explicit", Some(i64::try_from(b).unwrap_or(i64::MAX))),
            QuotaMode::Unlimited => ("unlimited", None),
        }
    }

    /// The mode the two columns hold (an unknown mode falls back to the default).
    pub(crate) fn from_columns(mode: &str, bytes: Option<i64>) -> QuotaMode {
        match (mode, bytes) {
            ("explicit", Some(b)) => QuotaMode::Explicit(u64::try_from(b).unwrap_or(0)),
            ("unlimited", _) => QuotaMode::Unlimited,
            _ => QuotaMode::Default,
        }
    }
}

/// One account, with its blocklist entry if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: i64,
    pub address: String,
    pub password_hash: String,
    pub created_at: i64,
    pub created_via: String,
    pub token_id: Option<i64>,
    pub first_login: Option<i64>,
    pub last_login: Option<i64>,
    pub quota: QuotaMode,
    pub used_bytes: i64,
    pub used_messages: i64,
    pub usage_updated_at: Option<i64>,
    pub admin: bool,
    pub blocked: Option<BlockEntry>,
    /// When maintenance deletes it (made with an invite that has an account lifetime).
    pub expires_at: Option<i64>,
}

/// An address on the blocklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEntry {
    pub address: String,
    pub reason: Option<String>,
    pub since: i64,
}

/// What checking a login needs of an account: five columns of [`AccountRow`], for the
/// hot path of every IMAP and SMTP login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRow {
    pub id: i64,
    pub address: String,
    pub password_hash: String,
    pub last_login: Option<i64>,
    /// The address is on the blocklist.
    pub blocked: bool,
}

/// What serving mail to an address needs of it (a policy decision on a recipient, a
/// userdb lookup): one point read of both tables, instead of the whole [`AccountRow`]
/// and, for an address without an account, a second read of the blocklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailFacts {
    /// The account's quota and stored usage; `None` when no account has the address.
    pub mailbox: Option<MailboxUsage>,
    /// The address is on the blocklist (with or without an account).
    pub blocked: bool,
}

/// An account's quota setting and the usage Dovecot last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxUsage {
    pub quota: QuotaMode,
    pub used_bytes: i64,
}

/// A new account to insert, with everything that must happen atomically with it.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub address: String,
    pub password_hash: String,
    pub created_via: &'static str,
    pub now: i64,
    /// SHA-256 of an invite code to consume in the same transaction.
    pub token_hash: Option<[u8; 32]>,
    /// Make this account admin when no admin exists yet.
    pub admin_if_none: bool,
    pub admin: bool,
    pub quota: QuotaMode,
}

/// Why an insert did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateRefusal {
    Exists,
    Blocked,
    Token(TokenProblem),
}

/// Why an invite code cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Unknown,
    Expired,
    UsedUp,
    Revoked,
}

/// What a successful insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub id: i64,
    pub admin: bool,
    pub token_id: Option<i64>,
}

/// An invite code's record (never the code itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub comment: Option<String>,
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    /// Seconds: accounts made with it expire this long after their creation.
    pub account_lifetime: Option<i64>,
}

/// An account as an import brings it (`postern user import`), with its blocklist state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub address: String,
    /// `None`: keep the stored one (an update); an account cannot be made without one.
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub created_via: String,
    pub first_login: Option<i64>,
    pub last_login: Option<i64>,
    pub quota: QuotaMode,
    pub admin: bool,
    /// On the blocklist (its reason and since when), or not.
    pub blocked: Option<(Option<String>, i64)>,
    pub expires_at: Option<i64>,
}

/// What an import did with one row (in a dry run: would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportResult {
    Created,
    /// It existed and `update` replaced it.
    Updated,
    /// It existed and was left as it was.
    Exists,
    /// No account, but the address is on the blocklist (a deleted account's): left out.
    Blocked,
    /// No account, and the row carries no password hash to make one with.
    NoHash,
}

/// A deleted account's mail home waiting for removal (one per address: a later
/// deletion of the same address replaces it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedHome {
    pub address: String,
    /// The mail home as it was when the account was deleted.
    pub home: PathBuf,
    pub queued_at: i64,
}

/// One operator action as the audit trail keeps it (never a password or an invite
/// code: the core writes only what is safe to show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: i64,
    /// `cli`, `admin` or `maintenance`.
    pub actor: String,
    /// The Unix user (cli, maintenance) or the admin account's address.
    pub actor_name: String,
    pub action: String,
    /// The address (or `invite:<id>`, `registration`) the action was about.
    pub target: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

/// A stored audit record and its id (ids grow with time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub record: AuditRecord,
}

/// Which audit records to read: newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only records at or after this time.
    pub since: Option<i64>,
    /// Only records about this address or made by this admin account.
    pub address: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Counts for `postern stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub accounts: i64,
    pub blocked_accounts: i64,
    pub blocklist: i64,
    pub admins: i64,
    /// (created_via, created in the last day, created in the last week)
    pub created: Vec<(String, i64, i64)>,
    pub used_bytes: i64,
    pub default_quota_accounts: i64,
    pub explicit_quota_bytes: i64,
    /// Explicit quotas of 0 (older versions let operators set them).
    pub explicit_zero_accounts: i64,
    pub unlimited_accounts: i64,
    pub tokens_active: i64,
    pub tokens_used_up: i64,
    pub tokens_expired: i64,
    pub tokens_revoked: i64,
    /// Mail homes waiting in the removal queue.
    pub homes_queued: i64,
}

impl TokenRow {
    /// Why this invite cannot be used at `now`, or `None` when it can.
    pub fn problem(&self, now: i64) -> Option<TokenProblem> {
        if self.revoked_at.is_some() {
            Some(TokenProblem::Revoked)
        } else if self.expires_at.is_some_and(|e| e <= now) {
            Some(TokenProblem::Expired)
        } else if self.uses >= self.max_uses {
            Some(TokenProblem::UsedUp)
        } else {
            None
        }
    }
}

/// The account database, whichever backend holds it; each operation goes to it through
/// [`dispatch!`].
pub enum Store {
    Sqlite(Sqlite),
    /// Shared by several hosts (`[database] url`).
    Postgres(Postgres),
}

impl Store {
    /// Opens (creating if needed) the configured database and brings its schema up to
    /// date.
    /// PostgreSQL connects (and migrates) at the first call, so a host starts while its
    /// database server is away and answers temporary failures until it is back.
    pub fn open(database: &config::Database) -> Result<Store> {
        match &database.url {
            Some(url) => Ok(Store::Postgres(Postgres::new(&postgres::PgOptions {
                url: url.clone(),
                password_file: database.password_file.clone(),
                pool_size: database.pool_size,
            })?)),
            None => Ok(Store::Sqlite(Sqlite::open(database.sqlite_path())?)),
        }
    }

    /// Like [`open`](Store::open) for `serve`: a temporary failure (read-only or full file
    /// system, a lock) starts a store that answers temporary failures and keeps trying to
    /// open; only a permanent one is returned.
    pub fn open_degraded(database: &config::Database) -> Result<Store> {
        match &database.url {
            Some(_) => Store::open(database),
            None => Ok(Store::Sqlite(Sqlite::open_degraded(
                database.sqlite_path(),
            )?)),
        }
    }

    /// Fails while the database cannot serve: its file deleted or replaced under the
    /// process, or not opened yet (cheap: looks at the file at most once a second).
    pub fn check(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.check(),
            // The pool reconnects by itself; a failing server fails the calls.
            Store::Postgres(_) => Ok(()),
        }
    }

    /// Where the database lives, for messages.
    pub fn location(&self) -> &Path {
        match self {
            Store::Sqlite(s) => s.path(),
            Store::Postgres(p) => Path::new(p.shown()),
        }
    }

    /// The account at `address`, with its blocklist entry (a point read).
    pub async fn account(&self, address: &str) -> Result<Option<AccountRow>> {
        dispatch!("account", self, b => b.account(address))
    }

    /// Accounts in address order; `blocked_only` keeps those on the blocklist, `search`
    /// keeps addresses containing it.
    pub async fn accounts(
        &self,
        blocked_only: bool,
        search: Option<String>,
    ) -> Result<Vec<AccountRow>> {
        dispatch!("accounts", self, b => b.accounts(blocked_only, search))
    }

    /// Every unblocked account address in order (Dovecot's userdb iteration).
    pub async fn addresses(&self) -> Result<Vec<String>> {
        dispatch!("addresses", self, b => b.addresses())
    }

    /// Whether an administrator exists who is not on the blocklist (an index lookup,
    /// whatever the number of accounts).
    pub async fn has_active_admin(&self) -> Result<bool> {
        dispatch!("has_active_admin", self, b => b.has_active_admin())
    }

    /// Inserts an account, consuming an invite and granting admin in the same
    /// transaction.
    pub async fn create_account(
        &self,
        new: NewAccount,
    ) -> Result<std::result::Result<Created, CreateRefusal>> {
        dispatch!("create_account", self, b => b.create_account(new))
    }

    /// Inserts many accounts in one transaction (imports, benchmarks), skipping addresses
    /// that exist or are blocked; returns how many were inserted.
    pub async fn insert_many(&self, accounts: Vec<NewAccount>) -> Result<usize> {
        dispatch!("insert_many", self, b => b.insert_many(accounts))
    }

    /// Imports accounts in one transaction, each row created, updated (`update`) or left
    /// alone; `dry_run` rolls the transaction back, so its answers are exactly what a
    /// real run does on the same database.
    pub async fn import_accounts(
        &self,
        rows: Vec<ImportRow>,
        update: bool,
        dry_run: bool,
    ) -> Result<Vec<ImportResult>> {
        dispatch!("import_accounts", self, b => b.import_accounts(rows, update, dry_run))
    }

    /// Records a successful login: first_login once, last_login when older than
    /// `min_interval` seconds.
    pub async fn record_login(&self, id: i64, now: i64, min_interval: i64) -> Result<()> {
        dispatch!("record_login", self, b => b.record_login(id, now, min_interval))
    }

    /// Replaces a password hash only if it is still `old`.
    pub async fn replace_hash(&self, id: i64, old: &str, new: &str) -> Result<bool> {
        dispatch!("replace_hash", self, b => b.replace_hash(id, old, new))
    }

    /// Sets a new password hash; false when the account does not exist.
    pub async fn set_password_hash(&self, address: &str, hash: &str) -> Result<bool> {
        dispatch!("set_password_hash", self, b => b.set_password_hash(address, hash))
    }

    /// Sets how an account's quota is decided; false when there is no such account.
    pub async fn set_quota(&self, address: &str, quota: QuotaMode) -> Result<bool> {
        dispatch!("set_quota", self, b => b.set_quota(address, quota))
    }

    /// Sets or clears the admin flag; false when there is no such account.
    pub async fn set_admin(&self, address: &str, admin: bool) -> Result<bool> {
        dispatch!("set_admin", self, b => b.set_admin(address, admin))
    }

    /// Last login as Dovecot's last_login plugin reports it (never moves backwards).
    pub async fn set_last_login(&self, address: &str, at: i64) -> Result<bool> {
        dispatch!("set_last_login", self, b => b.set_last_login(address, at))
    }

    /// Storage usage as quota_clone reports it; `None` leaves a value.
    pub async fn set_usage(
        &self,
        address: &str,
        bytes: Option<i64>,
        messages: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        dispatch!("set_usage", self, b => b.set_usage(address, bytes, messages, now))
    }

    /// Adds to the usage counters, never below zero.
    pub async fn add_usage(
        &self,
        address: &str,
        bytes: i64,
        messages: i64,
        now: i64,
    ) -> Result<bool> {
        dispatch!("add_usage", self, b => b.add_usage(address, bytes, messages, now))
    }

    /// Removes an account and, in the same transaction, blocks its address unless
    /// `allow_reuse` and queues `remove_home` (`None` cancels a queued removal).
    pub async fn delete_account(
        &self,
        address: &str,
        allow_reuse: bool,
        reason: &str,
        now: i64,
        remove_home: Option<&Path>,
    ) -> Result<Option<AccountRow>> {
        dispatch!("delete_account", self, b => b.delete_account(
            address,
            allow_reuse,
            reason,
            now,
            remove_home,
        ))
    }

    /// Every queued mail home, oldest first.
    pub async fn queued_homes(&self) -> Result<Vec<QueuedHome>> {
        dispatch!("queued_homes", self, b => b.queued_homes())
    }

    /// The queued mail home of `address`, if there is one.
    pub async fn queued_home(&self, address: &str) -> Result<Option<QueuedHome>> {
        dispatch!("queued_home", self, b => b.queued_home(address))
    }

    /// How many mail homes wait for removal.
    pub async fn queued_home_count(&self) -> Result<i64> {
        dispatch!("queued_home_count", self, b => b.queued_home_count())
    }

    /// Takes an entry off the queue if it is still the one handled.
    pub async fn dequeue_home(&self, entry: &QueuedHome) -> Result<bool> {
        dispatch!("dequeue_home", self, b => b.dequeue_home(entry))
    }

    /// Puts an address on the blocklist (or updates its reason). True when it was new.
    pub async fn block(&self, address: &str, reason: Option<&str>, now: i64) -> Result<bool> {
        dispatch!("block", self, b => b.block(address, reason, now))
    }

    /// Takes an address off the blocklist. True when it was there.
    pub async fn unblock(&self, address: &str) -> Result<bool> {
        dispatch!("unblock", self, b => b.unblock(address))
    }

    /// The blocklist entry of `address` (a point read).
    pub async fn blocklist_entry(&self, address: &str) -> Result<Option<BlockEntry>> {
        dispatch!("blocklist_entry", self, b => b.blocklist_entry(address))
    }

    /// What a login needs of the account at `address` ([`LoginRow`], a point read).
    pub async fn login_row(&self, address: &str) -> Result<Option<LoginRow>> {
        dispatch!("login_row", self, b => b.login_row(address))
    }

    /// What the policy and userdb need of `address` ([`MailFacts`], a point read).
    pub async fn mail_facts(&self, address: &str) -> Result<MailFacts> {
        dispatch!("mail_facts", self, b => b.mail_facts(address))
    }

    /// The whole blocklist in address order.
    pub async fn blocklist(&self) -> Result<Vec<BlockEntry>> {
        dispatch!("blocklist", self, b => b.blocklist())
    }

    /// Stores an invite (its code's hash); returns its id. `account_lifetime` (seconds):
    /// each account made with it expires that long after its creation.
    pub async fn create_token(
        &self,
        code_hash: &[u8; 32],
        comment: Option<&str>,
        max_uses: i64,
        expires_at: Option<i64>,
        now: i64,
        account_lifetime: Option<i64>,
    ) -> Result<i64> {
        dispatch!("create_token", self, b => b.create_token(
            code_hash,
            comment,
            max_uses,
            expires_at,
            now,
            account_lifetime,
        ))
    }

    /// The accounts made with invite `id`: (address, created_at), oldest first.
    pub async fn token_accounts(&self, id: i64) -> Result<Vec<(String, i64)>> {
        dispatch!("token_accounts", self, b => b.token_accounts(id))
    }

    /// Every invite in id order.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        dispatch!("tokens", self, b => b.tokens())
    }

    /// The invite with this id or this code hash.
    pub async fn token(
        &self,
        id: Option<i64>,
        code_hash: Option<&[u8; 32]>,
    ) -> Result<Option<TokenRow>> {
        dispatch!("token", self, b => b.token(id, code_hash))
    }

    /// Revokes an invite; true when it existed and was not yet revoked.
    pub async fn revoke_token(&self, id: i64, now: i64) -> Result<bool> {
        dispatch!("revoke_token", self, b => b.revoke_token(id, now))
    }

    /// Invites that stopped working before `cutoff` and that no account refers to.
    pub async fn dead_tokens(&self, cutoff: i64) -> Result<Vec<i64>> {
        dispatch!("dead_tokens", self, b => b.dead_tokens(cutoff))
    }

    /// Deletes invites by id; returns how many went.
    pub async fn delete_tokens(&self, ids: Vec<i64>) -> Result<usize> {
        dispatch!("delete_tokens", self, b => b.delete_tokens(ids))
    }

    /// Accounts whose last login is before `before` (administrators never).
    pub async fn inactive_accounts(&self, before: i64) -> Result<Vec<String>> {
        dispatch!("inactive_accounts", self, b => b.inactive_accounts(before))
    }

    /// Accounts whose lifetime ended at or before `now` (administrators never).
    pub async fn expired_accounts(&self, now: i64) -> Result<Vec<String>> {
        dispatch!("expired_accounts", self, b => b.expired_accounts(now))
    }

    /// Web or invite accounts never logged in, created before `before`.
    pub async fn unused_accounts(&self, before: i64) -> Result<Vec<String>> {
        dispatch!("unused_accounts", self, b => b.unused_accounts(before))
    }

    /// Accounts whose usage was not reported since `before`.
    pub async fn stale_usage(&self, before: i64) -> Result<Vec<String>> {
        dispatch!("stale_usage", self, b => b.stale_usage(before))
    }

    /// Counts for `postern stats`.
    pub async fn stats(&self, now: i64) -> Result<StoreStats> {
        dispatch!("stats", self, b => b.stats(now))
    }

    /// A run-time setting (a point read).
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        dispatch!("setting", self, b => b.setting(key))
    }

    /// Stores a run-time setting (`None` removes it).
    pub async fn set_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        dispatch!("set_setting", self, b => b.set_setting(key, value))
    }

    // ----- limits shared by the hosts ---------------------------------------------------

    /// Whether several hosts share this store, so the core keeps the per-account failure
    /// count and the per-sender send rate in it rather than in its own memory.
    pub fn shared_by_hosts(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Failed logins counted for `address` in its current window (0 once the window
    /// ended at or before `now_ms`).
    pub async fn login_failures(&self, address: &str, now_ms: i64) -> Result<u32> {
        dispatch!("login_failures", self, b => b.login_failures(address, now_ms))
    }

    /// Counts one failed login for `address` and returns the count in its window: one
    /// atomic upsert. A window opens at the first failure after the last one ended and
    /// lasts `window_ms`; a failure after it ends starts a new one at 1.
    pub async fn add_login_failure(
        &self,
        address: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u32> {
        dispatch!("add_login_failure", self, b => b.add_login_failure(address, now_ms, window_ms))
    }

    /// Claims the next password check of an account in slow mode for the caller, one
    /// per `interval_ms` across every host: `None` when claimed (the next turn is then
    /// `interval_ms` away), else how many milliseconds until the next turn is free.
    pub async fn claim_login_turn(
        &self,
        address: &str,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<Option<i64>> {
        dispatch!("claim_login_turn", self, b => b.claim_login_turn(address, now_ms, interval_ms))
    }

    /// Takes one token from `address`'s send bucket (`capacity` tokens, refilled at
    /// `per_ms` tokens per millisecond, a new bucket full) in one atomic upsert; false,
    /// and nothing written, when less than one token is there.
    pub async fn take_send_token(
        &self,
        address: &str,
        now_ms: i64,
        capacity: f64,
        per_ms: f64,
    ) -> Result<bool> {
        dispatch!("take_send_token", self, b => b.take_send_token(
            address,
            now_ms,
            capacity,
            per_ms,
        ))
    }

    /// Deletes the failure counts whose window and slow-mode turn ended, and the send
    /// buckets untouched for `full_after_ms` (full again: forgetting them changes
    /// nothing); returns how many.
    pub async fn prune_limits(&self, now_ms: i64, full_after_ms: i64) -> Result<u64> {
        dispatch!("prune_limits", self, b => b.prune_limits(now_ms, full_after_ms))
    }

    /// Appends one record to the audit trail; returns its id.
    pub async fn append_audit(&self, record: AuditRecord) -> Result<i64> {
        dispatch!("append_audit", self, b => b.append_audit(record))
    }

    /// Audit records, newest first, as `filter` selects them.
    pub async fn audit_log(&self, filter: AuditFilter) -> Result<Vec<AuditRow>> {
        dispatch!("audit_log", self, b => b.audit_log(filter))
    }
}

#[cfg(test)]
mod tests;
/// The same tests on PostgreSQL (`store::test_backend`).
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "tests.rs"]
mod tests_on_postgres;
