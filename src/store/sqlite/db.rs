//! SQLite's side of the store, synchronous: a small pool of rusqlite connections in WAL
//! mode with a busy timeout, the schema migrations, and every query as a literal. The
//! async [`Sqlite`](super::Sqlite) backend decides which thread runs each call.
//!
//! ```text
//! accounts   one row per account: address, argon2 PHC hash, how/when created, logins,
//!            quota, usage, admin flag
//! blocklist  addresses that may not log in, receive or register (blocked accounts and
//!            the addresses of deleted ones)
//! tokens     invite codes, stored as SHA-256 of the code
//! settings   run-time overrides (registration mode)
//! mail_home_removals  mail homes of deleted accounts waiting for `maintenance run`
//! login_failures, send_rate  the limits several hosts share (used by the core on
//!            PostgreSQL only; here so the store suite runs the same ops on both)
//! audit_log  operator actions: who, what, old and new value, when
//! ```

use std::cell::Cell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use super::migrations;
use crate::logfmt;
use crate::store::{
    AccountRow, AuditFilter, AuditRecord, AuditRow, BlockEntry, CreateRefusal, Created,
    ImportResult, ImportRow, LoginRow, MailFacts, MailboxUsage, NewAccount, QueuedHome, QuotaMode,
    Result, StoreError, StoreStats, TokenProblem, TokenRow,
};

thread_local! {
    /// Set while [`Db::without_waiting`] runs on this thread.
    static NO_WAIT: Cell<bool> = const { Cell::new(false) };
}

/// Clears [`NO_WAIT`] however the call ends.
struct NoWaitGuard;

impl Drop for NoWaitGuard {
    fn drop(&mut self) {
        NO_WAIT.set(false);
    }
}
/// The SQLite database. Holds a few connections and hands one to each call, and watches
/// that the file it opened is still the one at its path.
pub struct Db {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    watch: Watch,
}

/// What [`Db`] knows about its file between calls: its identity once opened, and when
/// to look at the path again (at most once a [`CHECK_EVERY`], so a point read costs no
/// extra system call).
struct Watch {
    /// (device, inode) of the file the connections use; unset until the database is open.
    identity: OnceLock<(u64, u64)>,
    started: Instant,
    /// Milliseconds since `started` at which the path is looked at next.
    next_check: AtomicU64,
    /// Why the file at the path is no longer the one opened, while that lasts.
    lost: Mutex<Option<String>>,
    /// Whether `lost` holds a reason: the fast path reads only this.
    is_lost: AtomicBool,
    next_reminder: AtomicU64,
    /// Serializes opening (migrations, marker).
    opening: Mutex<()>,
}

const MAX_IDLE: usize = 16;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of the database file each connection maps (larger files read the rest).
const MMAP_SIZE: i64 = 256 << 20;
/// How often the path's identity is compared with the open file's.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often a lost database is named in the log again.
const REMIND_EVERY: Duration = Duration::from_secs(60);
/// The settings key of the id shared by a database and its marker file.
const ID_SETTING: &str = "database_id";

/// One account by address, from the `account_rows` view (the account and its blocklist
/// entry, the columns [`account_from_row`] reads, in its order).
const SELECT_ACCOUNT: &str = "SELECT * FROM account_rows WHERE address = ?1";

/// What a login needs of an account: its id, address, hash, last login and blocklist
/// state.
const SELECT_LOGIN: &str = "SELECT a.id, a.address, a.password_hash, a.last_login, \
     b.address IS NOT NULL \
     FROM accounts a LEFT JOIN blocklist b ON b.address = a.address \
     WHERE a.address = ?1";

/// What the policy and userdb need of an address, always one row: the account's quota columns
/// (NULL without an account) and whether the blocklist has the address. Three index
/// lookups, five columns.
const SELECT_MAIL_FACTS: &str = "SELECT a.quota_mode, a.quota_bytes, a.used_bytes, \
     b.address IS NOT NULL \
     FROM (SELECT ?1 AS address) k \
     LEFT JOIN accounts a ON a.address = k.address \
     LEFT JOIN blocklist b ON b.address = k.address";

/// The marker kept beside the database: `postern.db.id` for `postern.db`.
pub fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".id");
    PathBuf::from(name)
}

/// What an error says about the connection that saw it.
#[derive(PartialEq)]
enum Aftermath {
    /// Usable again (a full disk: the statement was rolled back, and a fresh connection
    /// could not even be opened while the disk is full).
    Keep,
    /// This connection may be broken (an I/O error): open another next time.
    Drop,
    /// Every connection may be stuck with it (opened read-only, or before the file's
    /// permissions changed): drop them all, so fixing the cause recovers without a
    /// restart.
    DropAll,
}

fn aftermath(e: &StoreError) -> Aftermath {
    use rusqlite::ErrorCode as C;
    match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => match f.code {
            C::ReadOnly
            | C::PermissionDenied
            | C::CannotOpen
            | C::DatabaseCorrupt
            | C::NotADatabase => Aftermath::DropAll,
            C::SystemIoFailure => Aftermath::Drop,
            _ => Aftermath::Keep,
        },
        _ => Aftermath::Keep,
    }
}

fn identity_of(path: &Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl Db {
    fn unopened(path: &Path) -> Db {
        Db {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            watch: Watch {
                identity: OnceLock::new(),
                started: Instant::now(),
                next_check: AtomicU64::new(0),
                lost: Mutex::new(None),
                is_lost: AtomicBool::new(false),
                next_reminder: AtomicU64::new(0),
                opening: Mutex::new(()),
            },
        }
    }

    /// Opens the database and brings its schema up to date. Creates it only on a first
    /// start: a marker file beside it ([`marker_path`]) names the database postern
    /// made, and a marker without its database, or with another one, is refused as
    /// [`StoreError::Lost`] instead of starting over empty.
    pub fn open(path: &Path) -> Result<Db> {
        let store = Db::unopened(path);
        store.init()?;
        Ok(store)
    }

    /// Like [`open`](Db::open), but a temporary failure (a read-only or full file
    /// system, a lock) leaves a database that answers every call with that kind of
    /// error and tries to open again, at most once a second, until it succeeds.
    pub fn open_degraded(path: &Path) -> Result<Db> {
        let store = Db::unopened(path);
        match store.init() {
            Err(e) if !e.is_permanent() => {
                tracing::error!(
                    "event=database result=unavailable path={} error={} \
                     answering temporary failures until it opens",
                    logfmt::value(path.display()),
                    logfmt::value(&e)
                );
                Ok(store)
            }
            done => done.map(|()| store),
        }
    }

    /// Opens the file, migrates it and checks it against its marker; records its
    /// identity.
    fn init(&self) -> Result<()> {
        let _opening = self.watch.opening.lock().map_err(|_| StoreError::Worker)?;
        if self.watch.identity.get().is_some() {
            return Ok(());
        }
        let open_error = |message: String, permanent: bool| StoreError::Open {
            path: self.path.clone(),
            message,
            permanent,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(open_error(
                    format!("directory {} does not exist", dir.display()),
                    true,
                ));
            }
        }
        let marker_file = marker_path(&self.path);
        let marker = match std::fs::read_to_string(&marker_file) {
            Ok(s) => Some(s.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(open_error(format!("{}: {e}", marker_file.display()), false)),
        };
        let exists = self.path.exists();
        if let (false, Some(id)) = (exists, &marker) {
            return Err(StoreError::Lost {
                path: self.path.clone(),
                message: format!(
                    "the file is gone but {} names database {id}: restore the database \
                     from a backup, or remove the marker to start over with an empty one",
                    marker_file.display()
                ),
            });
        }
        let mut conn = self.connect(!exists)?;
        migrations::apply(&mut conn)?;
        let stored: Option<String> = conn
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                [ID_SETTING],
                |r| r.get(0),
            )
            .optional()?;
        match (stored, marker) {
            (Some(stored), Some(marker)) if stored == marker => {}
            (stored, Some(marker)) => {
                return Err(StoreError::Lost {
                    path: self.path.clone(),
                    message: format!(
                        "it is not the database {} names ({marker}, found {}): put the \
                         right file back, or remove the marker to use this one",
                        marker_file.display(),
                        stored.as_deref().unwrap_or("none")
                    ),
                })
            }
            (stored, None) => {
                let id = match stored {
                    Some(id) => id,
                    None => {
                        let id = format!("{:032x}", rand::random::<u128>());
                        conn.execute(
                            "INSERT INTO settings (key, value) VALUES (?1, ?2)",
                            params![ID_SETTING, id],
                        )?;
                        id
                    }
                };
                std::fs::write(&marker_file, format!("{id}\n"))
                    .map_err(|e| open_error(format!("{}: {e}", marker_file.display()), false))?;
            }
        }
        let identity = identity_of(&self.path)
            .map_err(|e| open_error(format!("cannot stat the file: {e}"), false))?;
        let _ = self.watch.identity.set(identity);
        self.put(conn);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self, create: bool) -> Result<Connection> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn =
            Connection::open_with_flags(&self.path, flags).map_err(|e| StoreError::Open {
                path: self.path.clone(),
                permanent: matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::NotADatabase)
                ),
                message: e.to_string(),
            })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Reads come from a shared mapping of the file instead of a pread and a copy per
        // page: the hot path of every lookup (policy decisions +50 %, docs/performance.md).
        conn.pragma_update(None, "mmap_size", MMAP_SIZE)?;
        Ok(conn)
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    /// Fails while the file at the path is not the one opened (deleted, replaced), or
    /// the database could not be opened yet. Looks at the path at most once a
    /// [`CHECK_EVERY`]; between looks it costs a clock read and an atomic load.
    pub fn check(&self) -> Result<()> {
        self.look(false)
    }

    /// [`check`](Db::check); `force` looks at the path whatever the time (before writes).
    fn look(&self, force: bool) -> Result<()> {
        let now = u64::try_from(self.watch.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due_time = now >= self.watch.next_check.load(Ordering::Relaxed);
        if due_time {
            self.watch
                .next_check
                .store(now + CHECK_EVERY.as_millis() as u64, Ordering::Relaxed);
        }
        let due = force || due_time;
        let Some(&opened) = self.watch.identity.get() else {
            return if due_time {
                self.init()?;
                tracing::warn!(
                    "event=database result=open path={}",
                    logfmt::value(self.path.display())
                );
                Ok(())
            } else {
                Err(StoreError::Open {
                    path: self.path.clone(),
                    message: "could not be opened yet, trying again every second".into(),
                    permanent: false,
                })
            };
        };
        if !due && !self.watch.is_lost.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut lost = self.watch.lost.lock().map_err(|_| StoreError::Worker)?;
        if due {
            let why = match identity_of(&self.path) {
                Ok(id) if id == opened => None,
                Ok(_) => Some("replaced by another file"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("deleted"),
                // Cannot tell (a directory made unreadable): the queries will say.
                Err(_) => None,
            };
            match (why, lost.is_some()) {
                (Some(why), false) => {
                    tracing::error!(
                        "event=database result=lost path={} reason={} every \
                         request is answered with a temporary failure; restore the file \
                         and restart postern",
                        logfmt::value(self.path.display()),
                        logfmt::value(why)
                    );
                    *lost = Some(why.to_owned());
                    self.watch.is_lost.store(true, Ordering::Relaxed);
                    self.watch
                        .next_reminder
                        .store(now + REMIND_EVERY.as_millis() as u64, Ordering::Relaxed);
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.clear();
                    }
                }
                (Some(why), true) => {
                    if now >= self.watch.next_reminder.load(Ordering::Relaxed) {
                        tracing::error!(
                            "event=database result=still_lost path={} reason={}",
                            logfmt::value(self.path.display()),
                            logfmt::value(why)
                        );
                        self.watch
                            .next_reminder
                            .store(now + REMIND_EVERY.as_millis() as u64, Ordering::Relaxed);
                    }
                }
                (None, true) => {
                    tracing::warn!(
                        "event=database result=back path={}",
                        logfmt::value(self.path.display())
                    );
                    *lost = None;
                    self.watch.is_lost.store(false, Ordering::Relaxed);
                }
                (None, false) => {}
            }
        }
        match &*lost {
            None => Ok(()),
            Some(why) => Err(StoreError::Lost {
                path: self.path.clone(),
                message: why.clone(),
            }),
        }
    }

    /// Runs `f` with SQLite's lock waits off: a call that would wait for another
    /// connection's lock fails at once with an error for which
    /// [`StoreError::is_busy`] holds. For reads on an async thread, which must never wait
    /// seconds; in WAL mode readers do not wait for writers, so this is rare.
    pub fn without_waiting<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        NO_WAIT.set(true);
        let _guard = NoWaitGuard;
        f(self)
    }

    /// Runs `f` on a pooled connection. Point reads (without waiting, on an async
    /// thread) look at the file's identity at most once a second; every other call
    /// (writes, scans, on the blocking pool) looks first.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let no_wait = NO_WAIT.get();
        self.look(!no_wait)?;
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect(false)?,
        };
        if no_wait {
            conn.busy_timeout(Duration::ZERO)?;
        }
        let out = f(&mut conn);
        if let Err(e) = &out {
            match aftermath(e) {
                Aftermath::Keep => {}
                Aftermath::Drop => return out,
                Aftermath::DropAll => {
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.clear();
                    }
                    return out;
                }
            }
        }
        let restored = !no_wait || conn.busy_timeout(BUSY_TIMEOUT).is_ok();
        // A connection that saw an error may be mid-transaction; drop rather than reuse.
        if restored && (out.is_ok() || conn.is_autocommit()) {
            self.put(conn);
        }
        out
    }

    // ----- accounts -------------------------------------------------------------------

    /// The account at `address`, with its blocklist entry.
    pub fn account(&self, address: &str) -> Result<Option<AccountRow>> {
        self.with(|c| {
            Ok(c.prepare_cached(SELECT_ACCOUNT)?
                .query_row([address], account_from_row)
                .optional()?)
        })
    }

    /// What a login needs of the account at `address` ([`SELECT_LOGIN`]).
    pub fn login_row(&self, address: &str) -> Result<Option<LoginRow>> {
        self.with(|c| {
            Ok(c.prepare_cached(SELECT_LOGIN)?
                .query_row([address], |r| {
                    Ok(LoginRow {
                        id: r.get(0)?,
                        address: r.get(1)?,
                        password_hash: r.get(2)?,
                        last_login: r.get(3)?,
                        blocked: r.get(4)?,
                    })
                })
                .optional()?)
        })
    }

    /// What the policy and userdb need of `address` ([`SELECT_MAIL_FACTS`]).
    pub fn mail_facts(&self, address: &str) -> Result<MailFacts> {
        self.with(|c| {
            Ok(c.prepare_cached(SELECT_MAIL_FACTS)?
                .query_row([address], |r| {
                    let mailbox = match r.get_ref(0)?.as_str_or_null()? {
                        Some(mode) => Some(MailboxUsage {
                            quota: QuotaMode::from_columns(mode, r.get(1)?),
                            used_bytes: r.get(2)?,
                        }),
                        None => None,
                    };
                    Ok(MailFacts {
                        mailbox,
                        blocked: r.get(3)?,
                    })
                })?)
        })
    }

    /// Accounts in address order; `blocked_only` keeps those on the blocklist, `search`
    /// keeps addresses containing it.
    pub fn accounts(&self, blocked_only: bool, search: Option<&str>) -> Result<Vec<AccountRow>> {
        self.with(|c| {
            let sql = "SELECT * FROM account_rows \
                       WHERE (?1 = 0 OR blocked_address IS NOT NULL) \
                         AND (?2 IS NULL OR instr(address, ?2) > 0) \
                       ORDER BY address";
            let rows = c
                .prepare_cached(sql)?
                .query_map(params![blocked_only, search], account_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Every unblocked account address in order (Dovecot's userdb iteration: it lists
    /// exactly the users a userdb lookup answers).
    pub fn addresses(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT address FROM accounts a WHERE NOT EXISTS \
                     (SELECT 1 FROM blocklist b WHERE b.address = a.address) ORDER BY address",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
    }

    /// Whether an unblocked administrator exists (the partial index on `admin`).
    pub fn has_active_admin(&self) -> Result<bool> {
        self.with(|c| {
            Ok(c.prepare_cached(
                "SELECT 1 FROM accounts a WHERE a.admin = 1 AND NOT EXISTS \
                 (SELECT 1 FROM blocklist b WHERE b.address = a.address)",
            )?
            .exists([])?)
        })
    }

    /// Inserts an account, consuming an invite and granting admin in the same
    /// transaction, so concurrent creations never exceed a token's uses and make one
    /// account per address.
    pub fn create_account(
        &self,
        new: &NewAccount,
    ) -> Result<std::result::Result<Created, CreateRefusal>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let blocked: bool = tx
                .prepare_cached("SELECT 1 FROM blocklist WHERE address = ?1")?
                .exists([new.address.as_str()])?;
            if blocked {
                return Ok(Err(CreateRefusal::Blocked));
            }
            let exists: bool = tx
                .prepare_cached("SELECT 1 FROM accounts WHERE address = ?1")?
                .exists([new.address.as_str()])?;
            if exists {
                return Ok(Err(CreateRefusal::Exists));
            }
            let (token_id, lifetime) = match &new.token_hash {
                None => (None, None),
                Some(hash) => match consume_token(&tx, hash, new.now)? {
                    Ok((id, lifetime)) => (Some(id), lifetime),
                    Err(problem) => return Ok(Err(CreateRefusal::Token(problem))),
                },
            };
            let expires_at = lifetime.map(|l| new.now.saturating_add(l));
            let admin = new.admin
                || (new.admin_if_none
                    && !tx
                        .prepare_cached("SELECT 1 FROM accounts WHERE admin = 1")?
                        .exists([])?);
            let (mode, bytes) = QuotaMode::columns(new.quota);
            tx.prepare_cached(
                "INSERT INTO accounts (address, password_hash, created_at, created_via, \
                 token_id, quota_mode, quota_bytes, admin, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                new.address,
                new.password_hash,
                new.now,
                new.created_via,
                token_id,
                mode,
                bytes,
                admin,
                expires_at
            ])?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Ok(Created {
                id,
                admin,
                token_id,
            }))
        })
    }

    /// Inserts many accounts in one transaction (imports, benchmarks). Addresses that
    /// exist or are blocked are skipped; returns how many were inserted.
    pub fn insert_many(&self, accounts: &[NewAccount]) -> Result<usize> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut inserted = 0;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO accounts (address, password_hash, created_at, created_via, \
                     quota_mode, quota_bytes, admin) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
                     WHERE NOT EXISTS (SELECT 1 FROM blocklist WHERE address = ?1) \
                     ON CONFLICT(address) DO NOTHING",
                )?;
                for a in accounts {
                    let (mode, bytes) = QuotaMode::columns(a.quota);
                    inserted += stmt.execute(params![
                        a.address,
                        a.password_hash,
                        a.now,
                        a.created_via,
                        mode,
                        bytes,
                        a.admin
                    ])?;
                }
            }
            tx.commit()?;
            Ok(inserted)
        })
    }

    /// Imports accounts in one transaction: each row is created (with its blocklist
    /// entry when it comes blocked), updated when it exists and `update` is set, or left
    /// alone. `dry_run` rolls back: the answers are what a real run does.
    pub fn import_accounts(
        &self,
        rows: &[ImportRow],
        update: bool,
        dry_run: bool,
    ) -> Result<Vec<ImportResult>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(rows.len());
            for row in rows {
                results.push(import_one(&tx, row, update)?);
            }
            if dry_run {
                tx.rollback()?;
            } else {
                tx.commit()?;
            }
            Ok(results)
        })
    }

    /// Records a successful login: sets first_login once, and last_login when it is
    /// older than `min_interval` seconds (so a reconnect storm does not write every time).
    pub fn record_login(&self, id: i64, now: i64, min_interval: i64) -> Result<()> {
        self.with(|c| {
            c.prepare_cached(
                "UPDATE accounts SET first_login = COALESCE(first_login, ?2), last_login = ?2 \
                 WHERE id = ?1 AND (last_login IS NULL OR last_login <= ?2 - ?3)",
            )?
            .execute(params![id, now, min_interval])?;
            Ok(())
        })
    }

    /// Replaces a password hash only if it is still `old` (a re-hash after login must
    /// not undo a password change made meanwhile).
    pub fn replace_hash(&self, id: i64, old: &str, new: &str) -> Result<bool> {
        self.with(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE accounts SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
                )?
                .execute(params![id, old, new])?;
            Ok(n == 1)
        })
    }

    /// Sets a new password hash; false when the account does not exist.
    pub fn set_password_hash(&self, address: &str, hash: &str) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET password_hash = ?2 WHERE address = ?1",
            params![address, hash],
        )
    }

    pub fn set_quota(&self, address: &str, quota: QuotaMode) -> Result<bool> {
        let (mode, bytes) = QuotaMode::columns(quota);
        self.update_one(
            "UPDATE accounts SET quota_mode = ?2, quota_bytes = ?3 WHERE address = ?1",
            params![address, mode, bytes],
        )
    }

    pub fn set_admin(&self, address: &str, admin: bool) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET admin = ?2 WHERE address = ?1",
            params![address, admin],
        )
    }

    /// Last login as Dovecot's last_login plugin reports it (never moves backwards).
    pub fn set_last_login(&self, address: &str, at: i64) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET first_login = COALESCE(first_login, ?2), \
             last_login = MAX(COALESCE(last_login, 0), ?2) WHERE address = ?1",
            params![address, at],
        )
    }

    /// Storage usage as Dovecot's quota_clone plugin reports it. `None` leaves a value.
    pub fn set_usage(
        &self,
        address: &str,
        bytes: Option<i64>,
        messages: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET used_bytes = COALESCE(?2, used_bytes), \
             used_messages = COALESCE(?3, used_messages), usage_updated_at = ?4 \
             WHERE address = ?1",
            params![address, bytes, messages, now],
        )
    }

    /// Adds to the usage counters (quota_clone's atomic increments), never below zero.
    pub fn add_usage(&self, address: &str, bytes: i64, messages: i64, now: i64) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET used_bytes = MAX(0, used_bytes + ?2), \
             used_messages = MAX(0, used_messages + ?3), usage_updated_at = ?4 \
             WHERE address = ?1",
            params![address, bytes, messages, now],
        )
    }

    fn update_one(&self, sql: &str, params: impl rusqlite::Params) -> Result<bool> {
        self.with(|c| Ok(c.prepare_cached(sql)?.execute(params)? > 0))
    }

    /// Removes an account, and in the same transaction puts its address on the
    /// blocklist unless `allow_reuse`, and queues `remove_home` for removal (`None`: the
    /// mail is kept, which also cancels a removal queued by an earlier deletion of the
    /// address: that home now holds mail to keep). Returns the removed row.
    pub fn delete_account(
        &self,
        address: &str,
        allow_reuse: bool,
        reason: &str,
        now: i64,
        remove_home: Option<&Path>,
    ) -> Result<Option<AccountRow>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(row) = tx
                .prepare_cached(SELECT_ACCOUNT)?
                .query_row([address], account_from_row)
                .optional()?
            else {
                return Ok(None);
            };
            tx.prepare_cached("DELETE FROM accounts WHERE id = ?1")?
                .execute([row.id])?;
            if allow_reuse {
                tx.prepare_cached("DELETE FROM blocklist WHERE address = ?1")?
                    .execute([address])?;
            } else {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO blocklist (address, reason, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![address, reason, now])?;
            }
            match remove_home {
                Some(home) => tx
                    .prepare_cached(
                        "INSERT INTO mail_home_removals (address, home, queued_at) \
                         VALUES (?1, ?2, ?3) ON CONFLICT(address) DO UPDATE \
                         SET home = excluded.home, queued_at = excluded.queued_at",
                    )?
                    .execute(params![address, home.to_string_lossy(), now])?,
                None => tx
                    .prepare_cached("DELETE FROM mail_home_removals WHERE address = ?1")?
                    .execute([address])?,
            };
            tx.commit()?;
            Ok(Some(row))
        })
    }

    // ----- mail home removal queue ----------------------------------------------------

    /// Every queued mail home, oldest first.
    pub fn queued_homes(&self) -> Result<Vec<QueuedHome>> {
        self.with(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT address, home, queued_at FROM mail_home_removals \
                     ORDER BY queued_at, address",
                )?
                .query_map([], queued_home_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// The queued mail home of `address`, if there is one.
    pub fn queued_home(&self, address: &str) -> Result<Option<QueuedHome>> {
        self.with(|c| {
            Ok(c.prepare_cached(
                "SELECT address, home, queued_at FROM mail_home_removals WHERE address = ?1",
            )?
            .query_row([address], queued_home_from_row)
            .optional()?)
        })
    }

    /// How many mail homes wait for removal.
    pub fn queued_home_count(&self) -> Result<i64> {
        self.with(|c| {
            Ok(c.prepare_cached("SELECT COUNT(*) FROM mail_home_removals")?
                .query_row([], |r| r.get(0))?)
        })
    }

    /// Takes an entry off the queue, only if it is still the one that was handled (a
    /// deletion of the same address meanwhile queued a new one). True when it went.
    pub fn dequeue_home(&self, entry: &QueuedHome) -> Result<bool> {
        self.update_one(
            "DELETE FROM mail_home_removals WHERE address = ?1 AND home = ?2 AND queued_at = ?3",
            params![entry.address, entry.home.to_string_lossy(), entry.queued_at],
        )
    }

    // ----- blocklist ------------------------------------------------------------------

    /// Puts an address on the blocklist (or updates its reason). True when it was new.
    pub fn block(&self, address: &str, reason: Option<&str>, now: i64) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO blocklist (address, reason, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![address, reason, now])?;
            if n == 0 && reason.is_some() {
                tx.prepare_cached("UPDATE blocklist SET reason = ?2 WHERE address = ?1")?
                    .execute(params![address, reason])?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
    }

    /// Takes an address off the blocklist. True when it was there.
    pub fn unblock(&self, address: &str) -> Result<bool> {
        self.update_one("DELETE FROM blocklist WHERE address = ?1", params![address])
    }

    pub fn blocklist_entry(&self, address: &str) -> Result<Option<BlockEntry>> {
        self.with(|c| {
            Ok(c.prepare_cached(
                "SELECT address, reason, created_at FROM blocklist WHERE address = ?1",
            )?
            .query_row([address], block_from_row)
            .optional()?)
        })
    }

    pub fn blocklist(&self) -> Result<Vec<BlockEntry>> {
        self.with(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT address, reason, created_at FROM blocklist ORDER BY address",
                )?
                .query_map([], block_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    // ----- tokens ---------------------------------------------------------------------

    pub fn create_token(
        &self,
        code_hash: &[u8; 32],
        comment: Option<&str>,
        max_uses: i64,
        expires_at: Option<i64>,
        now: i64,
        account_lifetime: Option<i64>,
    ) -> Result<i64> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO tokens (code_hash, comment, max_uses, expires_at, created_at, \
                 account_lifetime) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                &code_hash[..],
                comment,
                max_uses,
                expires_at,
                now,
                account_lifetime
            ])?;
            Ok(c.last_insert_rowid())
        })
    }

    /// The accounts made with invite `id`: (address, created_at), oldest first.
    pub fn token_accounts(&self, id: i64) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT address, created_at FROM accounts WHERE token_id = ?1 \
                     ORDER BY created_at, address",
                )?
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.with(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT id, comment, max_uses, uses, expires_at, revoked_at, created_at, \
             account_lifetime \
                     FROM tokens ORDER BY id",
                )?
                .query_map([], token_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// The token with this id or this code hash.
    pub fn token(&self, id: Option<i64>, code_hash: Option<&[u8; 32]>) -> Result<Option<TokenRow>> {
        self.with(|c| {
            Ok(c.prepare_cached(
                "SELECT id, comment, max_uses, uses, expires_at, revoked_at, created_at, \
             account_lifetime \
                 FROM tokens WHERE id = ?1 OR code_hash = ?2",
            )?
            .query_row(params![id, code_hash.map(|h| &h[..])], token_from_row)
            .optional()?)
        })
    }

    /// Revokes a token; true when it existed and was not yet revoked.
    pub fn revoke_token(&self, id: i64, now: i64) -> Result<bool> {
        self.update_one(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )
    }

    /// Invites that stopped working before `cutoff` (revoked, expired, or used up with
    /// their last use before it) and that no account refers to: those that created
    /// accounts stay, as the accounts' audit trail.
    pub fn dead_tokens(&self, cutoff: i64) -> Result<Vec<i64>> {
        self.with(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT id FROM tokens t WHERE \
                     (revoked_at < ?1 OR expires_at < ?1 OR (uses >= max_uses AND last_used_at < ?1)) \
                     AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.token_id = t.id) ORDER BY id",
                )?
                .query_map([cutoff], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok(rows)
        })
    }

    pub fn delete_tokens(&self, ids: &[i64]) -> Result<usize> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0;
            for id in ids {
                n += tx
                    .prepare_cached("DELETE FROM tokens WHERE id = ?1")?
                    .execute([id])?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    // ----- maintenance and statistics -----------------------------------------------------

    /// Accounts whose last login is before `before` (administrators are never due).
    pub fn inactive_accounts(&self, before: i64) -> Result<Vec<String>> {
        self.addresses_where(
            "SELECT address FROM accounts \
             WHERE admin = 0 AND last_login IS NOT NULL AND last_login < ?1 ORDER BY address",
            before,
        )
    }

    /// Accounts whose lifetime ended at or before `now` (administrators are never due).
    pub fn expired_accounts(&self, now: i64) -> Result<Vec<String>> {
        self.addresses_where(
            "SELECT address FROM accounts \
             WHERE admin = 0 AND expires_at IS NOT NULL AND expires_at <= ?1 ORDER BY address",
            now,
        )
    }

    /// Accounts made on the web or with an invite, never logged in, created before `before`.
    pub fn unused_accounts(&self, before: i64) -> Result<Vec<String>> {
        self.addresses_where(
            "SELECT address FROM accounts WHERE admin = 0 AND created_via IN ('web', 'invite') \
             AND first_login IS NULL AND created_at < ?1 ORDER BY address",
            before,
        )
    }

    /// Accounts whose usage was not reported since `before`.
    pub fn stale_usage(&self, before: i64) -> Result<Vec<String>> {
        self.addresses_where(
            "SELECT address FROM accounts \
             WHERE usage_updated_at IS NULL OR usage_updated_at < ?1 ORDER BY address",
            before,
        )
    }

    /// The addresses `sql` (one literal, with `?1`) selects.
    fn addresses_where(&self, sql: &'static str, value: i64) -> Result<Vec<String>> {
        self.with(|c| {
            let rows = c
                .prepare_cached(sql)?
                .query_map([value], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
    }

    /// Counts for `postern stats`.
    pub fn stats(&self, now: i64) -> Result<StoreStats> {
        self.with(|c| {
            let one = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<i64> {
                c.prepare_cached(sql)?.query_row(p, |r| r.get(0))
            };
            let mut created = Vec::new();
            {
                let mut stmt = c.prepare_cached(
                    "SELECT created_via, SUM(created_at >= ?1), SUM(created_at >= ?2) \
                     FROM accounts GROUP BY created_via ORDER BY created_via",
                )?;
                let rows = stmt.query_map(params![now - 86400, now - 7 * 86400], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                for row in rows {
                    created.push(row?);
                }
            }
            Ok(StoreStats {
                accounts: one("SELECT COUNT(*) FROM accounts", &[])?,
                blocked_accounts: one(
                    "SELECT COUNT(*) FROM accounts a JOIN blocklist b ON b.address = a.address",
                    &[],
                )?,
                blocklist: one("SELECT COUNT(*) FROM blocklist", &[])?,
                admins: one("SELECT COUNT(*) FROM accounts WHERE admin = 1", &[])?,
                created,
                used_bytes: one("SELECT COALESCE(SUM(used_bytes), 0) FROM accounts", &[])?,
                default_quota_accounts: one(
                    "SELECT COUNT(*) FROM accounts WHERE quota_mode = 'default'",
                    &[],
                )?,
                explicit_quota_bytes: one(
                    "SELECT COALESCE(SUM(quota_bytes), 0) FROM accounts WHERE quota_mode = 'explicit'",
                    &[],
                )?,
                explicit_zero_accounts: one(
                    "SELECT COUNT(*) FROM accounts WHERE quota_mode = 'explicit' AND quota_bytes = 0",
                    &[],
                )?,
                unlimited_accounts: one(
                    "SELECT COUNT(*) FROM accounts WHERE quota_mode = 'unlimited'",
                    &[],
                )?,
                tokens_active: one(
                    "SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL AND uses < max_uses \
                     AND (expires_at IS NULL OR expires_at > ?1)",
                    &[&now],
                )?,
                tokens_used_up: one(
                    "SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL AND uses >= max_uses",
                    &[],
                )?,
                tokens_expired: one(
                    "SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL AND uses < max_uses \
                     AND expires_at <= ?1",
                    &[&now],
                )?,
                tokens_revoked: one("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL", &[])?,
                homes_queued: one("SELECT COUNT(*) FROM mail_home_removals", &[])?,
            })
        })
    }

    // ----- settings -------------------------------------------------------------------

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            Ok(
                c.prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                    .query_row([key], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    pub fn set_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.with(|c| {
            match value {
                Some(v) => c
                    .prepare_cached(
                        "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![key, v])?,
                None => c
                    .prepare_cached("DELETE FROM settings WHERE key = ?1")?
                    .execute([key])?,
            };
            Ok(())
        })
    }

    // ----- limits shared by the hosts ---------------------------------------------------

    pub fn login_failures(&self, address: &str, now_ms: i64) -> Result<u32> {
        self.with(|c| {
            let n: Option<i64> = c
                .prepare_cached(
                    "SELECT failures FROM login_failures WHERE address = ?1 AND window_end > ?2",
                )?
                .query_row(params![address, now_ms], |r| r.get(0))
                .optional()?;
            Ok(n.map_or(0, count_u32))
        })
    }

    pub fn add_login_failure(&self, address: &str, now_ms: i64, window_ms: i64) -> Result<u32> {
        self.with(|c| {
            let n: i64 = c
                .prepare_cached(
                    "INSERT INTO login_failures (address, failures, window_end) \
                     VALUES (?1, 1, ?2 + ?3) \
                     ON CONFLICT(address) DO UPDATE SET \
                     failures = CASE WHEN login_failures.window_end <= ?2 THEN 1 \
                                ELSE login_failures.failures + 1 END, \
                     window_end = CASE WHEN login_failures.window_end <= ?2 THEN ?2 + ?3 \
                                  ELSE login_failures.window_end END \
                     RETURNING failures",
                )?
                .query_row(params![address, now_ms, window_ms], |r| r.get(0))?;
            Ok(count_u32(n))
        })
    }

    pub fn claim_login_turn(
        &self,
        address: &str,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<Option<i64>> {
        self.with(|c| {
            let claimed: Option<i64> = c
                .prepare_cached(
                    "INSERT INTO login_failures (address, failures, window_end, next_turn) \
                     VALUES (?1, 0, ?2, ?2 + ?3) \
                     ON CONFLICT(address) DO UPDATE SET next_turn = ?2 + ?3 \
                     WHERE login_failures.next_turn <= ?2 \
                     RETURNING next_turn",
                )?
                .query_row(params![address, now_ms, interval_ms], |r| r.get(0))
                .optional()?;
            if claimed.is_some() {
                return Ok(None);
            }
            let next: Option<i64> = c
                .prepare_cached("SELECT next_turn FROM login_failures WHERE address = ?1")?
                .query_row([address], |r| r.get(0))
                .optional()?;
            Ok(Some(next.map_or(0, |n| (n - now_ms).max(0))))
        })
    }

    pub fn take_send_token(
        &self,
        address: &str,
        now_ms: i64,
        capacity: f64,
        per_ms: f64,
    ) -> Result<bool> {
        self.with(|c| {
            let left: Option<f64> = c
                .prepare_cached(
                    "INSERT INTO send_rate (address, tokens, updated_at) VALUES (?1, ?3 - 1, ?2) \
                     ON CONFLICT(address) DO UPDATE SET \
                     tokens = min(?3, send_rate.tokens \
                              + max(0, ?2 - send_rate.updated_at) * ?4) - 1, \
                     updated_at = max(send_rate.updated_at, ?2) \
                     WHERE min(?3, send_rate.tokens \
                           + max(0, ?2 - send_rate.updated_at) * ?4) >= 1 \
                     RETURNING tokens",
                )?
                .query_row(params![address, now_ms, capacity, per_ms], |r| r.get(0))
                .optional()?;
            Ok(left.is_some())
        })
    }

    pub fn prune_limits(&self, now_ms: i64, full_after_ms: i64) -> Result<u64> {
        self.with(|c| {
            let failures = c
                .prepare_cached(
                    "DELETE FROM login_failures WHERE window_end <= ?1 AND next_turn <= ?1",
                )?
                .execute([now_ms])?;
            let buckets = c
                .prepare_cached("DELETE FROM send_rate WHERE updated_at <= ?1 - ?2")?
                .execute([now_ms, full_after_ms])?;
            Ok(u64::try_from(failures + buckets).unwrap_or(u64::MAX))
        })
    }

    // ----- audit trail ----------------------------------------------------------------

    pub fn append_audit(&self, r: &AuditRecord) -> Result<i64> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO audit_log \
                 (at, actor, actor_name, action, target, old_value, new_value) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                r.at,
                r.actor,
                r.actor_name,
                r.action,
                r.target,
                r.old_value,
                r.new_value
            ])?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn audit_log(&self, f: &AuditFilter) -> Result<Vec<AuditRow>> {
        self.with(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT id, at, actor, actor_name, action, target, old_value, new_value \
                     FROM audit_log \
                     WHERE at >= ?1 AND (?2 IS NULL OR target = ?2 OR actor_name = ?2) \
                     ORDER BY at DESC, id DESC LIMIT ?3 OFFSET ?4",
                )?
                .query_map(
                    params![f.since.unwrap_or(i64::MIN), f.address, f.limit, f.offset],
                    audit_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

/// A stored counter as the core counts it (never negative, saturating).
fn count_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: r.get(0)?,
        record: AuditRecord {
            at: r.get(1)?,
            actor: r.get(2)?,
            actor_name: r.get(3)?,
            action: r.get(4)?,
            target: r.get(5)?,
            old_value: r.get(6)?,
            new_value: r.get(7)?,
        },
    })
}

/// Consumes one use of an invite: its id and account lifetime, or why it cannot be used.
fn consume_token(
    tx: &rusqlite::Transaction<'_>,
    hash: &[u8; 32],
    now: i64,
) -> Result<std::result::Result<(i64, Option<i64>), TokenProblem>> {
    let row = tx
        .prepare_cached(
            "SELECT id, comment, max_uses, uses, expires_at, revoked_at, created_at, \
             account_lifetime \
             FROM tokens WHERE code_hash = ?1",
        )?
        .query_row([&hash[..]], token_from_row)
        .optional()?;
    let Some(t) = row else {
        return Ok(Err(TokenProblem::Unknown));
    };
    if let Some(problem) = t.problem(now) {
        return Ok(Err(problem));
    }
    tx.prepare_cached("UPDATE tokens SET uses = uses + 1, last_used_at = ?2 WHERE id = ?1")?
        .execute(params![t.id, now])?;
    Ok(Ok((t.id, t.account_lifetime)))
}

fn import_one(
    tx: &rusqlite::Transaction<'_>,
    row: &ImportRow,
    update: bool,
) -> Result<ImportResult> {
    let (mode, bytes) = QuotaMode::columns(row.quota);
    let existing: Option<i64> = tx
        .prepare_cached("SELECT id FROM accounts WHERE address = ?1")?
        .query_row([row.address.as_str()], |r| r.get(0))
        .optional()?;
    let result = match existing {
        Some(_) if !update => return Ok(ImportResult::Exists),
        Some(id) => {
            tx.prepare_cached(
                "UPDATE accounts SET password_hash = COALESCE(?2, password_hash), \
                 quota_mode = ?3, quota_bytes = ?4, admin = ?5, expires_at = ?6 WHERE id = ?1",
            )?
            .execute(params![
                id,
                row.password_hash,
                mode,
                bytes,
                row.admin,
                row.expires_at
            ])?;
            ImportResult::Updated
        }
        None => {
            let blocked: bool = tx
                .prepare_cached("SELECT 1 FROM blocklist WHERE address = ?1")?
                .exists([row.address.as_str()])?;
            if blocked {
                return Ok(ImportResult::Blocked);
            }
            let Some(hash) = &row.password_hash else {
                return Ok(ImportResult::NoHash);
            };
            tx.prepare_cached(
                "INSERT INTO accounts (address, password_hash, created_at, created_via, \
                 first_login, last_login, quota_mode, quota_bytes, admin, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                row.address,
                hash,
                row.created_at,
                row.created_via,
                row.first_login,
                row.last_login,
                mode,
                bytes,
                row.admin,
                row.expires_at
            ])?;
            ImportResult::Created
        }
    };
    match &row.blocked {
        Some((reason, since)) => tx
            .prepare_cached(
                "INSERT INTO blocklist (address, reason, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(address) DO UPDATE SET reason = excluded.reason",
            )?
            .execute(params![row.address, reason, since])?,
        None => tx
            .prepare_cached("DELETE FROM blocklist WHERE address = ?1")?
            .execute([row.address.as_str()])?,
    };
    Ok(result)
}

fn account_from_row(r: &Row<'_>) -> rusqlite::Result<AccountRow> {
    let bytes: Option<i64> = r.get(9)?;
    let quota = QuotaMode::from_columns(r.get_ref(8)?.as_str()?, bytes);
    let blocked = match r.get::<_, Option<String>>(14)? {
        Some(address) => Some(BlockEntry {
            address,
            reason: r.get(15)?,
            since: r.get(16)?,
        }),
        None => None,
    };
    Ok(AccountRow {
        id: r.get(0)?,
        address: r.get(1)?,
        password_hash: r.get(2)?,
        created_at: r.get(3)?,
        created_via: r.get(4)?,
        token_id: r.get(5)?,
        first_login: r.get(6)?,
        last_login: r.get(7)?,
        quota,
        used_bytes: r.get(10)?,
        used_messages: r.get(11)?,
        usage_updated_at: r.get(12)?,
        admin: r.get(13)?,
        blocked,
        expires_at: r.get(17)?,
    })
}

fn block_from_row(r: &Row<'_>) -> rusqlite::Result<BlockEntry> {
    Ok(BlockEntry {
        address: r.get(0)?,
        reason: r.get(1)?,
        since: r.get(2)?,
    })
}

fn queued_home_from_row(r: &Row<'_>) -> rusqlite::Result<QueuedHome> {
    Ok(QueuedHome {
        address: r.get(0)?,
        home: PathBuf::from(r.get::<_, String>(1)?),
        queued_at: r.get(2)?,
    })
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        comment: r.get(1)?,
        max_uses: r.get(2)?,
        uses: r.get(3)?,
        expires_at: r.get(4)?,
        revoked_at: r.get(5)?,
        created_at: r.get(6)?,
        account_lifetime: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Db::open(&dir.path().join("t.db")).expect("open");
        (dir, store)
    }

    #[test]
    fn without_waiting_fails_fast_on_a_lock_and_leaves_the_wait_in_place() {
        let (dir, store) = store();
        let other = Connection::open(dir.path().join("t.db")).expect("open");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let started = std::time::Instant::now();
        let err = store
            .without_waiting(|s| s.set_setting("k", Some("v")))
            .expect_err("the write lock is taken");
        assert!(err.is_busy(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        // Reads pass the writer (WAL) without waiting.
        assert_eq!(
            store.without_waiting(|s| s.setting("k")).expect("read"),
            None
        );

        // The pooled connection waits again: the lock goes away while it waits.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").expect("unlock");
        });
        store
            .set_setting("k", Some("v"))
            .expect("waits for the lock");
        release.join().expect("join");
        assert_eq!(store.setting("k").expect("read").as_deref(), Some("v"));
    }

    #[test]
    fn a_deleted_database_is_not_created_again_on_the_next_start() {
        let (dir, store) = store();
        store.set_setting("k", Some("v")).expect("write");
        drop(store);
        let path = dir.path().join("t.db");
        assert!(marker_path(&path).exists());
        Db::open(&path).expect("the same database opens again");
        for f in ["t.db", "t.db-wal", "t.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(f));
        }
        let err = Db::open(&path).err().expect("refused");
        assert!(
            matches!(err, StoreError::Lost { .. }) && err.is_permanent(),
            "{err}"
        );
        assert!(!path.exists(), "no fresh database was made");
    }

    #[test]
    fn a_replaced_database_is_refused_at_start() {
        let (dir, store) = store();
        drop(store);
        let other = tempfile::tempdir().expect("tempdir");
        drop(Db::open(&other.path().join("t.db")).expect("another database"));
        let path = dir.path().join("t.db");
        for f in ["t.db-wal", "t.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(f));
        }
        std::fs::copy(other.path().join("t.db"), &path).expect("replace");
        let err = Db::open(&path).err().expect("refused");
        assert!(err.is_permanent(), "{err}");
    }

    #[test]
    fn a_missing_directory_is_permanent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Db::open(&dir.path().join("nope/t.db"))
            .err()
            .expect("refused");
        assert!(err.is_permanent(), "{err}");
    }

    #[test]
    fn a_database_deleted_under_the_open_store_fails_every_call_and_is_not_recreated() {
        let (dir, store) = store();
        store.set_setting("k", Some("v")).expect("write");
        std::fs::remove_file(dir.path().join("t.db")).expect("delete");
        let err = store
            .set_setting("k", Some("w"))
            .expect_err("writes refused");
        assert!(matches!(err, StoreError::Lost { .. }), "{err}");
        let err = store.setting("k").expect_err("reads refused");
        assert!(matches!(err, StoreError::Lost { .. }), "{err}");
        assert!(!dir.path().join("t.db").exists());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_permanent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        std::fs::write(&path, vec![b'x'; 8192]).expect("write");
        let err = Db::open(&path).err().expect("refused");
        assert!(err.is_permanent(), "{err}");
    }
}
