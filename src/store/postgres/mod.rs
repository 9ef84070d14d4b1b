//! The account database on PostgreSQL, for several mail hosts sharing one set of
//! accounts: tokio-postgres connections in a deadpool pool, prepared statements cached
//! per connection, versioned migrations applied at open. Same tables, same operations and
//! same guarantees as the SQLite store; every guarantee holds across hosts:
//!
//! ```text
//! create_account   one transaction holding an advisory lock on the address: the
//!                  blocklist, the address and the invite are checked and consumed
//!                  together, so concurrent first logins on two hosts make one account
//! invites          UPDATE tokens SET uses = uses + 1 ... WHERE uses < max_uses RETURNING:
//!                  the row lock makes the count exact whichever host asks
//! delete, block    take the same address lock, so no creation slips between a
//!                  deletion and its tombstone
//! limits           a failure count, a slow-mode turn, a send token: each one
//!                  INSERT ... ON CONFLICT DO UPDATE [WHERE ...] RETURNING, atomic on
//!                  its row whichever host asks
//! failures         a lost server or a full pool is an error (temporary for every
//!                  caller); the pool drops closed connections and dials anew
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;

use super::{
    AccountRow, AuditFilter, AuditRecord, AuditRow, BlockEntry, CreateRefusal, Created,
    ImportResult, ImportRow, LoginRow, MailFacts, MailboxUsage, NewAccount, QueuedHome, QuotaMode,
    Result, StoreError, StoreStats, TokenProblem, TokenRow,
};

pub mod migrations;
pub mod options;

pub use options::PgOptions;

/// How long a call waits for a free connection, a new one, or a health check.
const POOL_TIMEOUT: Duration = Duration::from_secs(3);

/// The default `[database] pool_size`.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The advisory lock that makes "the first account is admin" hold across hosts.
const ADMIN_LOCK: i32 = 2;

/// `SELECT` of every account column and its blocklist entry (what [`account_from_row`]
/// reads), followed by `$rest`.
macro_rules! select_accounts {
    ($rest:literal) => {
        concat!(
            "SELECT a.id, a.address, a.password_hash, a.created_at, a.created_via, \
             a.token_id, a.first_login, a.last_login, a.quota_mode, a.quota_bytes, \
             a.used_bytes, a.used_messages, a.usage_updated_at, a.admin, \
             b.address, b.reason, b.created_at, a.expires_at \
             FROM accounts a LEFT JOIN blocklist b ON b.address = a.address ",
            $rest
        )
    };
}

const SELECT_ACCOUNT: &str = select_accounts!("WHERE a.address = $1");

/// Serializes creations, deletions and blocks of one address across every host.
const LOCK_ADDRESS: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/// The PostgreSQL account database.
pub struct Postgres {
    pool: Pool,
    /// Set once the schema is current: the migrations run with the first call that
    /// reaches the server, so a host can start while its database is away.
    migrated: tokio::sync::OnceCell<()>,
    /// What the operator sees in messages: the URL without its password.
    shown: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("url", &self.shown)
            .finish()
    }
}

impl Postgres {
    /// Builds the pool. No connection is made yet: the first call connects and brings
    /// the schema up to date ([`Postgres::open`] does both at once).
    pub fn new(options: &PgOptions) -> Result<Postgres> {
        let parsed = options.parse()?;
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(parsed.tls);
        let manager = Manager::from_config(
            parsed.config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Options(e.to_string()))?;
        Ok(Postgres {
            pool,
            migrated: tokio::sync::OnceCell::new(),
            shown: without_password(&options.url),
        })
    }

    /// Builds the pool, connects and migrates: the URL, the server and the schema are
    /// checked before this returns.
    pub async fn open(options: &PgOptions) -> Result<Postgres> {
        let store = Postgres::new(options)?;
        drop(store.conn().await?);
        Ok(store)
    }

    /// The URL, its password left out.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object> {
        let mut conn = self.pool.get().await?;
        if self.migrated.get().is_none() {
            self.migrated
                .get_or_try_init(|| migrations::apply(&mut conn))
                .await?;
        }
        Ok(conn)
    }

    // ----- accounts -------------------------------------------------------------------

    pub async fn account(&self, address: &str) -> Result<Option<AccountRow>> {
        let c = self.conn().await?;
        account_in(&c, address).await
    }

    pub async fn accounts(
        &self,
        blocked_only: bool,
        search: Option<String>,
    ) -> Result<Vec<AccountRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(select_accounts!(
                "WHERE ($1 = FALSE OR b.address IS NOT NULL) \
                   AND ($2::TEXT IS NULL OR strpos(a.address, $2) > 0) \
                 ORDER BY a.address"
            ))
            .await?;
        c.query(&st, &[&blocked_only, &search])
            .await?
            .iter()
            .map(account_from_row)
            .collect()
    }

    pub async fn addresses(&self) -> Result<Vec<String>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT address FROM accounts a WHERE NOT EXISTS \
                 (SELECT 1 FROM blocklist b WHERE b.address = a.address) ORDER BY address",
            )
            .await?;
        strings(c.query(&st, &[]).await?)
    }

    pub async fn has_active_admin(&self) -> Result<bool> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM accounts a WHERE a.admin AND NOT EXISTS \
                 (SELECT 1 FROM blocklist b WHERE b.address = a.address))",
            )
            .await?;
        Ok(c.query_one(&st, &[]).await?.get(0))
    }

    pub async fn create_account(
        &self,
        new: NewAccount,
    ) -> Result<std::result::Result<Created, CreateRefusal>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        tx.execute(&tx.prepare_cached(LOCK_ADDRESS).await?, &[&new.address])
            .await?;
        let blocked = tx
            .query_opt(
                &tx.prepare_cached("SELECT 1 FROM blocklist WHERE address = $1")
                    .await?,
                &[&new.address],
            )
            .await?;
        if blocked.is_some() {
            return Ok(Err(CreateRefusal::Blocked));
        }
        let exists = tx
            .query_opt(
                &tx.prepare_cached("SELECT 1 FROM accounts WHERE address = $1")
                    .await?,
                &[&new.address],
            )
            .await?;
        if exists.is_some() {
            return Ok(Err(CreateRefusal::Exists));
        }
        let (token_id, lifetime) = match &new.token_hash {
            None => (None, None),
            Some(hash) => match consume_token(&tx, hash, new.now).await? {
                Ok((id, lifetime)) => (Some(id), lifetime),
                // Dropping the transaction rolls it back.
                Err(problem) => return Ok(Err(CreateRefusal::Token(problem))),
            },
        };
        let admin = if new.admin {
            true
        } else if new.admin_if_none {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&migrations::LOCK_NAMESPACE, &ADMIN_LOCK],
            )
            .await?;
            tx.query_opt(
                &tx.prepare_cached("SELECT 1 FROM accounts WHERE admin LIMIT 1")
                    .await?,
                &[],
            )
            .await?
            .is_none()
        } else {
            false
        };
        let (mode, bytes) = QuotaMode::columns(new.quota);
        let expires_at: Option<i64> = lifetime.map(|l| new.now.saturating_add(l));
        let row = tx
            .query_opt(
                &tx.prepare_cached(
                    "INSERT INTO accounts (address, password_hash, created_at, created_via, \
                     token_id, quota_mode, quota_bytes, admin, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (address) DO NOTHING RETURNING id",
                )
                .await?,
                &[
                    &new.address,
                    &new.password_hash,
                    &new.now,
                    &new.created_via,
                    &token_id,
                    &mode,
                    &bytes,
                    &admin,
                    &expires_at,
                ],
            )
            .await?;
        let Some(row) = row else {
            return Ok(Err(CreateRefusal::Exists));
        };
        let id: i64 = row.try_get(0)?;
        tx.commit().await?;
        Ok(Ok(Created {
            id,
            admin,
            token_id,
        }))
    }

    /// Inserts many accounts in one statement (imports, benchmarks). Addresses that exist
    /// or are blocked are skipped; returns how many were inserted.
    pub async fn insert_many(&self, accounts: Vec<NewAccount>) -> Result<usize> {
        let mut address = Vec::with_capacity(accounts.len());
        let mut hash = Vec::with_capacity(accounts.len());
        let mut at = Vec::with_capacity(accounts.len());
        let mut via = Vec::with_capacity(accounts.len());
        let mut mode = Vec::with_capacity(accounts.len());
        let mut bytes = Vec::with_capacity(accounts.len());
        let mut admin = Vec::with_capacity(accounts.len());
        for a in &accounts {
            let (m, b) = QuotaMode::columns(a.quota);
            address.push(a.address.as_str());
            hash.push(a.password_hash.as_str());
            at.push(a.now);
            via.push(a.created_via);
            mode.push(m);
            bytes.push(b);
            admin.push(a.admin);
        }
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO accounts (address, password_hash, created_at, created_via, \
                 quota_mode, quota_bytes, admin) \
                 SELECT n.* FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], \
                 $5::TEXT[], $6::BIGINT[], $7::BOOLEAN[]) \
                 AS n (address, password_hash, created_at, created_via, quota_mode, \
                 quota_bytes, admin) \
                 WHERE NOT EXISTS (SELECT 1 FROM blocklist b WHERE b.address = n.address) \
                 ON CONFLICT (address) DO NOTHING",
            )
            .await?;
        let n = c
            .execute(&st, &[&address, &hash, &at, &via, &mode, &bytes, &admin])
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Imports accounts in one transaction (each address under its lock); `dry_run`
    /// rolls it back.
    pub async fn import_accounts(
        &self,
        rows: Vec<ImportRow>,
        update: bool,
        dry_run: bool,
    ) -> Result<Vec<ImportResult>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let mut results = Vec::with_capacity(rows.len());
        for row in &rows {
            results.push(import_one(&tx, row, update).await?);
        }
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(results)
    }

    pub async fn record_login(&self, id: i64, now: i64, min_interval: i64) -> Result<()> {
        self.execute(
            "UPDATE accounts SET first_login = COALESCE(first_login, $2), last_login = $2 \
             WHERE id = $1 AND (last_login IS NULL OR last_login <= $2::BIGINT - $3::BIGINT)",
            &[&id, &now, &min_interval],
        )
        .await?;
        Ok(())
    }

    pub async fn replace_hash(&self, id: i64, old: &str, new: &str) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
            &[&id, &old, &new],
        )
        .await
    }

    pub async fn set_password_hash(&self, address: &str, hash: &str) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET password_hash = $2 WHERE address = $1",
            &[&address, &hash],
        )
        .await
    }

    pub async fn set_quota(&self, address: &str, quota: QuotaMode) -> Result<bool> {
        let (mode, bytes) = QuotaMode::columns(quota);
        self.update_one(
            "UPDATE accounts SET quota_mode = $2, quota_bytes = $3 WHERE address = $1",
            &[&address, &mode, &bytes],
        )
        .await
    }

    pub async fn set_admin(&self, address: &str, admin: bool) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET admin = $2 WHERE address = $1",
            &[&address, &admin],
        )
        .await
    }

    pub async fn set_last_login(&self, address: &str, at: i64) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET first_login = COALESCE(first_login, $2), \
             last_login = GREATEST(COALESCE(last_login, 0), $2) WHERE address = $1",
            &[&address, &at],
        )
        .await
    }

    pub async fn set_usage(
        &self,
        address: &str,
        bytes: Option<i64>,
        messages: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET used_bytes = COALESCE($2, used_bytes), \
             used_messages = COALESCE($3, used_messages), usage_updated_at = $4 \
             WHERE address = $1",
            &[&address, &bytes, &messages, &now],
        )
        .await
    }

    pub async fn add_usage(
        &self,
        address: &str,
        bytes: i64,
        messages: i64,
        now: i64,
    ) -> Result<bool> {
        self.update_one(
            "UPDATE accounts SET used_bytes = GREATEST(0, used_bytes + $2), \
             used_messages = GREATEST(0, used_messages + $3), usage_updated_at = $4 \
             WHERE address = $1",
            &[&address, &bytes, &messages, &now],
        )
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
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        tx.execute(&tx.prepare_cached(LOCK_ADDRESS).await?, &[&address])
            .await?;
        let Some(row) = account_in(&tx, address).await? else {
            return Ok(None);
        };
        tx.execute(
            &tx.prepare_cached("DELETE FROM accounts WHERE id = $1")
                .await?,
            &[&row.id],
        )
        .await?;
        if allow_reuse {
            tx.execute(
                &tx.prepare_cached("DELETE FROM blocklist WHERE address = $1")
                    .await?,
                &[&address],
            )
            .await?;
        } else {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO blocklist (address, reason, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (address) DO NOTHING",
                )
                .await?,
                &[&address, &reason, &now],
            )
            .await?;
        }
        match remove_home {
            Some(home) => {
                let home = home.to_string_lossy();
                tx.execute(
                    &tx.prepare_cached(
                        "INSERT INTO mail_home_removals (address, home, queued_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (address) DO UPDATE \
                         SET home = excluded.home, queued_at = excluded.queued_at",
                    )
                    .await?,
                    &[&address, &home.as_ref(), &now],
                )
                .await?
            }
            None => {
                tx.execute(
                    &tx.prepare_cached("DELETE FROM mail_home_removals WHERE address = $1")
                        .await?,
                    &[&address],
                )
                .await?
            }
        };
        tx.commit().await?;
        Ok(Some(row))
    }

    // ----- mail home removal queue ----------------------------------------------------

    pub async fn queued_homes(&self) -> Result<Vec<QueuedHome>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT address, home, queued_at FROM mail_home_removals \
                 ORDER BY queued_at, address",
            )
            .await?;
        c.query(&st, &[])
            .await?
            .iter()
            .map(queued_home_from_row)
            .collect()
    }

    pub async fn queued_home(&self, address: &str) -> Result<Option<QueuedHome>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT address, home, queued_at FROM mail_home_removals WHERE address = $1",
            )
            .await?;
        c.query_opt(&st, &[&address])
            .await?
            .as_ref()
            .map(queued_home_from_row)
            .transpose()
    }

    pub async fn queued_home_count(&self) -> Result<i64> {
        self.count("SELECT COUNT(*) FROM mail_home_removals", &[])
            .await
    }

    pub async fn dequeue_home(&self, entry: &QueuedHome) -> Result<bool> {
        let home = entry.home.to_string_lossy();
        self.update_one(
            "DELETE FROM mail_home_removals WHERE address = $1 AND home = $2 AND queued_at = $3",
            &[&entry.address, &home.as_ref(), &entry.queued_at],
        )
        .await
    }

    // ----- blocklist ------------------------------------------------------------------

    pub async fn block(&self, address: &str, reason: Option<&str>, now: i64) -> Result<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        tx.execute(&tx.prepare_cached(LOCK_ADDRESS).await?, &[&address])
            .await?;
        let n = tx
            .execute(
                &tx.prepare_cached(
                    "INSERT INTO blocklist (address, reason, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (address) DO NOTHING",
                )
                .await?,
                &[&address, &reason, &now],
            )
            .await?;
        if n == 0 && reason.is_some() {
            tx.execute(
                &tx.prepare_cached("UPDATE blocklist SET reason = $2 WHERE address = $1")
                    .await?,
                &[&address, &reason],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    pub async fn unblock(&self, address: &str) -> Result<bool> {
        self.update_one("DELETE FROM blocklist WHERE address = $1", &[&address])
            .await
    }

    pub async fn blocklist_entry(&self, address: &str) -> Result<Option<BlockEntry>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT address, reason, created_at FROM blocklist WHERE address = $1")
            .await?;
        c.query_opt(&st, &[&address])
            .await?
            .as_ref()
            .map(block_from_row)
            .transpose()
    }

    /// What a login needs of the account at `address`.
    pub async fn login_row(&self, address: &str) -> Result<Option<LoginRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT a.id, a.address, a.password_hash, a.last_login, b.address IS NOT NULL \
                 FROM accounts a LEFT JOIN blocklist b ON b.address = a.address \
                 WHERE a.address = $1",
            )
            .await?;
        let Some(r) = c.query_opt(&st, &[&address]).await? else {
            return Ok(None);
        };
        Ok(Some(LoginRow {
            id: r.try_get(0)?,
            address: r.try_get(1)?,
            password_hash: r.try_get(2)?,
            last_login: r.try_get(3)?,
            blocked: r.try_get(4)?,
        }))
    }

    /// What the policy and userdb need of `address`: always one row, the account's quota columns
    /// (NULL without an account) and whether the blocklist has the address.
    pub async fn mail_facts(&self, address: &str) -> Result<MailFacts> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT a.quota_mode, a.quota_bytes, a.used_bytes, b.address IS NOT NULL \
                 FROM (SELECT $1::TEXT AS address) k \
                 LEFT JOIN accounts a ON a.address = k.address \
                 LEFT JOIN blocklist b ON b.address = k.address",
            )
            .await?;
        let r = c.query_one(&st, &[&address]).await?;
        let mailbox = match r.try_get::<_, Option<&str>>(0)? {
            Some(mode) => Some(MailboxUsage {
                quota: QuotaMode::from_columns(mode, r.try_get(1)?),
                used_bytes: r.try_get(2)?,
            }),
            None => None,
        };
        Ok(MailFacts {
            mailbox,
            blocked: r.try_get(3)?,
        })
    }

    pub async fn blocklist(&self) -> Result<Vec<BlockEntry>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT address, reason, created_at FROM blocklist ORDER BY address")
            .await?;
        c.query(&st, &[])
            .await?
            .iter()
            .map(block_from_row)
            .collect()
    }

    // ----- tokens ---------------------------------------------------------------------

    pub async fn create_token(
        &self,
        code_hash: &[u8; 32],
        comment: Option<&str>,
        max_uses: i64,
        expires_at: Option<i64>,
        now: i64,
        account_lifetime: Option<i64>,
    ) -> Result<i64> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO tokens (code_hash, comment, max_uses, expires_at, created_at, \
                 account_lifetime) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .await?;
        let row = c
            .query_one(
                &st,
                &[
                    &&code_hash[..],
                    &comment,
                    &max_uses,
                    &expires_at,
                    &now,
                    &account_lifetime,
                ],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn token_accounts(&self, id: i64) -> Result<Vec<(String, i64)>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT address, created_at FROM accounts WHERE token_id = $1 \
                 ORDER BY created_at, address",
            )
            .await?;
        c.query(&st, &[&id])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(concat!(
                "SELECT id, comment, max_uses, uses, expires_at, revoked_at, created_at, ",
                "account_lifetime ",
                "FROM tokens ORDER BY id"
            ))
            .await?;
        c.query(&st, &[])
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    pub async fn token(
        &self,
        id: Option<i64>,
        code_hash: Option<&[u8; 32]>,
    ) -> Result<Option<TokenRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(concat!(
                "SELECT id, comment, max_uses, uses, expires_at, revoked_at, created_at, ",
                "account_lifetime ",
                "FROM tokens WHERE id = $1 OR code_hash = $2"
            ))
            .await?;
        let hash = code_hash.map(|h| &h[..]);
        c.query_opt(&st, &[&id, &hash])
            .await?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    pub async fn revoke_token(&self, id: i64, now: i64) -> Result<bool> {
        self.update_one(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &now],
        )
        .await
    }

    pub async fn dead_tokens(&self, cutoff: i64) -> Result<Vec<i64>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT id FROM tokens t WHERE \
                 (revoked_at < $1 OR expires_at < $1 OR (uses >= max_uses AND last_used_at < $1)) \
                 AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.token_id = t.id) ORDER BY id",
            )
            .await?;
        c.query(&st, &[&cutoff])
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    pub async fn delete_tokens(&self, ids: Vec<i64>) -> Result<usize> {
        let n = self
            .execute("DELETE FROM tokens WHERE id = ANY($1)", &[&ids])
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    // ----- maintenance and statistics -------------------------------------------------

    pub async fn inactive_accounts(&self, before: i64) -> Result<Vec<String>> {
        self.addresses_where(
            "SELECT address FROM accounts WHERE NOT admin AND last_login IS NOT NULL \
             AND last_login < $1 ORDER BY address",
            before,
        )
        .await
    }

    pub async fn expired_accounts(&self, now: i64) -> Result<Vec<String>> {
        self.addresses_where(
            "SELECT address FROM accounts WHERE NOT admin AND expires_at IS NOT NULL \
             AND expires_at <= $1 ORDER BY address",
            now,
        )
        .await
    }

    pub async fn unused_accounts(&self, before: i64) -> Result<Vec<String>> {
        self.addresses_where(
            "SELECT address FROM accounts WHERE NOT admin AND created_via IN ('web', 'invite') \
             AND first_login IS NULL AND created_at < $1 ORDER BY address",
            before,
        )
        .await
    }

    pub async fn stale_usage(&self, before: i64) -> Result<Vec<String>> {
        self.addresses_where(
            "SELECT address FROM accounts WHERE usage_updated_at IS NULL \
             OR usage_updated_at < $1 ORDER BY address",
            before,
        )
        .await
    }

    async fn addresses_where(&self, sql: &'static str, value: i64) -> Result<Vec<String>> {
        let c = self.conn().await?;
        let st = c.prepare_cached(sql).await?;
        strings(c.query(&st, &[&value]).await?)
    }

    pub async fn stats(&self, now: i64) -> Result<StoreStats> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT created_via, COUNT(*) FILTER (WHERE created_at >= $1), \
                 COUNT(*) FILTER (WHERE created_at >= $2) \
                 FROM accounts GROUP BY created_via ORDER BY created_via",
            )
            .await?;
        let mut created = Vec::new();
        for r in c.query(&st, &[&(now - 86400), &(now - 7 * 86400)]).await? {
            created.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
        let st = c
            .prepare_cached(
                "SELECT \
                 (SELECT COUNT(*) FROM accounts), \
                 (SELECT COUNT(*) FROM accounts a JOIN blocklist b ON b.address = a.address), \
                 (SELECT COUNT(*) FROM blocklist), \
                 (SELECT COUNT(*) FROM accounts WHERE admin), \
                 (SELECT COALESCE(SUM(used_bytes), 0)::BIGINT FROM accounts), \
                 (SELECT COUNT(*) FROM accounts WHERE quota_mode = 'default'), \
                 (SELECT COALESCE(SUM(quota_bytes), 0)::BIGINT FROM accounts \
                    WHERE quota_mode = 'explicit'), \
                 (SELECT COUNT(*) FROM accounts WHERE quota_mode = 'explicit' \
                    AND quota_bytes = 0), \
                 (SELECT COUNT(*) FROM accounts WHERE quota_mode = 'unlimited'), \
                 (SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL AND uses < max_uses \
                    AND (expires_at IS NULL OR expires_at > $1)), \
                 (SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL AND uses >= max_uses), \
                 (SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL AND uses < max_uses \
                    AND expires_at <= $1), \
                 (SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL), \
                 (SELECT COUNT(*) FROM mail_home_removals)",
            )
            .await?;
        let r = c.query_one(&st, &[&now]).await?;
        Ok(StoreStats {
            accounts: r.try_get(0)?,
            blocked_accounts: r.try_get(1)?,
            blocklist: r.try_get(2)?,
            admins: r.try_get(3)?,
            created,
            used_bytes: r.try_get(4)?,
            default_quota_accounts: r.try_get(5)?,
            explicit_quota_bytes: r.try_get(6)?,
            explicit_zero_accounts: r.try_get(7)?,
            unlimited_accounts: r.try_get(8)?,
            tokens_active: r.try_get(9)?,
            tokens_used_up: r.try_get(10)?,
            tokens_expired: r.try_get(11)?,
            tokens_revoked: r.try_get(12)?,
            homes_queued: r.try_get(13)?,
        })
    }

    // ----- settings -------------------------------------------------------------------

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT value FROM settings WHERE key = $1")
            .await?;
        Ok(match c.query_opt(&st, &[&key]).await? {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    pub async fn set_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => {
                self.execute(
                    "INSERT INTO settings (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&key, &v],
                )
                .await?
            }
            None => {
                self.execute("DELETE FROM settings WHERE key = $1", &[&key])
                    .await?
            }
        };
        Ok(())
    }

    // ----- limits shared by the hosts ---------------------------------------------------

    pub async fn login_failures(&self, address: &str, now_ms: i64) -> Result<u32> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT failures FROM login_failures WHERE address = $1 AND window_end > $2",
            )
            .await?;
        Ok(match c.query_opt(&st, &[&address, &now_ms]).await? {
            Some(r) => count_u32(r.try_get(0)?),
            None => 0,
        })
    }

    pub async fn add_login_failure(
        &self,
        address: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u32> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO login_failures (address, failures, window_end) \
                 VALUES ($1, 1, $2::BIGINT + $3::BIGINT) \
                 ON CONFLICT (address) DO UPDATE SET \
                 failures = CASE WHEN login_failures.window_end <= $2::BIGINT THEN 1 \
                            ELSE login_failures.failures + 1 END, \
                 window_end = CASE WHEN login_failures.window_end <= $2::BIGINT \
                              THEN $2::BIGINT + $3::BIGINT ELSE login_failures.window_end END \
                 RETURNING failures",
            )
            .await?;
        let row = c.query_one(&st, &[&address, &now_ms, &window_ms]).await?;
        Ok(count_u32(row.try_get(0)?))
    }

    pub async fn claim_login_turn(
        &self,
        address: &str,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<Option<i64>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO login_failures (address, failures, window_end, next_turn) \
                 VALUES ($1, 0, $2, $2::BIGINT + $3::BIGINT) \
                 ON CONFLICT (address) DO UPDATE SET next_turn = $2::BIGINT + $3::BIGINT \
                 WHERE login_failures.next_turn <= $2::BIGINT \
                 RETURNING next_turn",
            )
            .await?;
        if c.query_opt(&st, &[&address, &now_ms, &interval_ms])
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let st = c
            .prepare_cached("SELECT next_turn FROM login_failures WHERE address = $1")
            .await?;
        Ok(Some(match c.query_opt(&st, &[&address]).await? {
            Some(r) => (r.try_get::<_, i64>(0)? - now_ms).max(0),
            None => 0,
        }))
    }

    pub async fn take_send_token(
        &self,
        address: &str,
        now_ms: i64,
        capacity: f64,
        per_ms: f64,
    ) -> Result<bool> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO send_rate (address, tokens, updated_at) \
                 VALUES ($1, $3::DOUBLE PRECISION - 1, $2) \
                 ON CONFLICT (address) DO UPDATE SET \
                 tokens = LEAST($3::DOUBLE PRECISION, send_rate.tokens \
                          + GREATEST(0, $2::BIGINT - send_rate.updated_at) \
                          * $4::DOUBLE PRECISION) - 1, \
                 updated_at = GREATEST(send_rate.updated_at, $2::BIGINT) \
                 WHERE LEAST($3::DOUBLE PRECISION, send_rate.tokens \
                       + GREATEST(0, $2::BIGINT - send_rate.updated_at) \
                       * $4::DOUBLE PRECISION) >= 1 \
                 RETURNING tokens",
            )
            .await?;
        Ok(c.query_opt(&st, &[&address, &now_ms, &capacity, &per_ms])
            .await?
            .is_some())
    }

    pub async fn prune_limits(&self, now_ms: i64, full_after_ms: i64) -> Result<u64> {
        let failures = self
            .execute(
                "DELETE FROM login_failures WHERE window_end <= $1 AND next_turn <= $1",
                &[&now_ms],
            )
            .await?;
        let buckets = self
            .execute(
                "DELETE FROM send_rate WHERE updated_at <= $1::BIGINT - $2::BIGINT",
                &[&now_ms, &full_after_ms],
            )
            .await?;
        Ok(failures + buckets)
    }

    // ----- audit trail ----------------------------------------------------------------

    pub async fn append_audit(&self, r: AuditRecord) -> Result<i64> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO audit_log \
                 (at, actor, actor_name, action, target, old_value, new_value) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .await?;
        let row = c
            .query_one(
                &st,
                &[
                    &r.at,
                    &r.actor,
                    &r.actor_name,
                    &r.action,
                    &r.target,
                    &r.old_value,
                    &r.new_value,
                ],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn audit_log(&self, f: AuditFilter) -> Result<Vec<AuditRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT id, at, actor, actor_name, action, target, old_value, new_value \
                 FROM audit_log \
                 WHERE at >= $1 \
                   AND ($2::TEXT IS NULL OR target = $2::TEXT OR actor_name = $2::TEXT) \
                 ORDER BY at DESC, id DESC LIMIT $3 OFFSET $4",
            )
            .await?;
        c.query(
            &st,
            &[
                &f.since.unwrap_or(i64::MIN),
                &f.address,
                &f.limit,
                &f.offset,
            ],
        )
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }

    // ----- helpers --------------------------------------------------------------------

    async fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let c = self.conn().await?;
        let st = c.prepare_cached(sql).await?;
        Ok(c.execute(&st, params).await?)
    }

    async fn update_one(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool> {
        Ok(self.execute(sql, params).await? > 0)
    }

    async fn count(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<i64> {
        let c = self.conn().await?;
        let st = c.prepare_cached(sql).await?;
        Ok(c.query_one(&st, params).await?.try_get(0)?)
    }

    /// The pool, for the copy from SQLite (src/store/copy.rs).
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }
}

async fn account_in(c: &impl GenericClient, address: &str) -> Result<Option<AccountRow>> {
    let st = c.prepare_cached(SELECT_ACCOUNT).await?;
    c.query_opt(&st, &[&address])
        .await?
        .as_ref()
        .map(account_from_row)
        .transpose()
}

/// Consumes one use of an invite: one UPDATE whose WHERE is the whole rule, so two hosts
/// racing for the last use cannot both get it (the second re-reads the row after the
/// first commits and no longer matches).
async fn consume_token(
    tx: &deadpool_postgres::Transaction<'_>,
    hash: &[u8; 32],
    now: i64,
) -> Result<std::result::Result<(i64, Option<i64>), TokenProblem>> {
    let used = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE tokens SET uses = uses + 1, last_used_at = $2 \
                 WHERE code_hash = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2) AND uses < max_uses \
                 RETURNING id, account_lifetime",
            )
            .await?,
            &[&&hash[..], &now],
        )
        .await?;
    if let Some(row) = used {
        return Ok(Ok((row.try_get(0)?, row.try_get(1)?)));
    }
    let st = tx
        .prepare_cached(concat!(
            "SELECT id, comment, max_uses, uses, expires_at, revoked_at, created_at, ",
            "account_lifetime ",
            "FROM tokens WHERE code_hash = $1"
        ))
        .await?;
    let problem = match tx.query_opt(&st, &[&&hash[..]]).await? {
        None => TokenProblem::Unknown,
        Some(row) => token_from_row(&row)?
            .problem(now)
            .unwrap_or(TokenProblem::UsedUp),
    };
    Ok(Err(problem))
}

/// A stored counter as the core counts it (never negative, saturating).
fn count_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

async fn import_one(
    tx: &deadpool_postgres::Transaction<'_>,
    row: &ImportRow,
    update: bool,
) -> Result<ImportResult> {
    tx.execute(&tx.prepare_cached(LOCK_ADDRESS).await?, &[&row.address])
        .await?;
    let (mode, bytes) = QuotaMode::columns(row.quota);
    let existing = tx
        .query_opt(
            &tx.prepare_cached("SELECT id FROM accounts WHERE address = $1")
                .await?,
            &[&row.address],
        )
        .await?;
    let result = match existing {
        Some(_) if !update => return Ok(ImportResult::Exists),
        Some(found) => {
            let id: i64 = found.try_get(0)?;
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE accounts SET password_hash = COALESCE($2, password_hash), \
                     quota_mode = $3, quota_bytes = $4, admin = $5, expires_at = $6 WHERE id = $1",
                )
                .await?,
                &[
                    &id,
                    &row.password_hash,
                    &mode,
                    &bytes,
                    &row.admin,
                    &row.expires_at,
                ],
            )
            .await?;
            ImportResult::Updated
        }
        None => {
            let blocked = tx
                .query_opt(
                    &tx.prepare_cached("SELECT 1 FROM blocklist WHERE address = $1")
                        .await?,
                    &[&row.address],
                )
                .await?;
            if blocked.is_some() {
                return Ok(ImportResult::Blocked);
            }
            let Some(hash) = &row.password_hash else {
                return Ok(ImportResult::NoHash);
            };
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO accounts (address, password_hash, created_at, created_via, \
                     first_login, last_login, quota_mode, quota_bytes, admin, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .await?,
                &[
                    &row.address,
                    hash,
                    &row.created_at,
                    &row.created_via,
                    &row.first_login,
                    &row.last_login,
                    &mode,
                    &bytes,
                    &row.admin,
                    &row.expires_at,
                ],
            )
            .await?;
            ImportResult::Created
        }
    };
    match &row.blocked {
        Some((reason, since)) => {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO blocklist (address, reason, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (address) DO UPDATE SET reason = excluded.reason",
                )
                .await?,
                &[&row.address, reason, since],
            )
            .await?
        }
        None => {
            tx.execute(
                &tx.prepare_cached("DELETE FROM blocklist WHERE address = $1")
                    .await?,
                &[&row.address],
            )
            .await?
        }
    };
    Ok(result)
}

fn strings(rows: Vec<Row>) -> Result<Vec<String>> {
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

fn account_from_row(r: &Row) -> Result<AccountRow> {
    let mode: String = r.try_get(8)?;
    let bytes: Option<i64> = r.try_get(9)?;
    let quota = QuotaMode::from_columns(&mode, bytes);
    let blocked = match r.try_get::<_, Option<String>>(14)? {
        Some(address) => Some(BlockEntry {
            address,
            reason: r.try_get(15)?,
            since: r.try_get(16)?,
        }),
        None => None,
    };
    Ok(AccountRow {
        id: r.try_get(0)?,
        address: r.try_get(1)?,
        password_hash: r.try_get(2)?,
        created_at: r.try_get(3)?,
        created_via: r.try_get(4)?,
        token_id: r.try_get(5)?,
        first_login: r.try_get(6)?,
        last_login: r.try_get(7)?,
        quota,
        used_bytes: r.try_get(10)?,
        used_messages: r.try_get(11)?,
        usage_updated_at: r.try_get(12)?,
        admin: r.try_get(13)?,
        blocked,
        expires_at: r.try_get(17)?,
    })
}

fn block_from_row(r: &Row) -> Result<BlockEntry> {
    Ok(BlockEntry {
        address: r.try_get(0)?,
        reason: r.try_get(1)?,
        since: r.try_get(2)?,
    })
}

fn queued_home_from_row(r: &Row) -> Result<QueuedHome> {
    Ok(QueuedHome {
        address: r.try_get(0)?,
        home: PathBuf::from(r.try_get::<_, String>(1)?),
        queued_at: r.try_get(2)?,
    })
}

fn audit_from_row(r: &Row) -> Result<AuditRow> {
    Ok(AuditRow {
        id: r.try_get(0)?,
        record: AuditRecord {
            at: r.try_get(1)?,
            actor: r.try_get(2)?,
            actor_name: r.try_get(3)?,
            action: r.try_get(4)?,
            target: r.try_get(5)?,
            old_value: r.try_get(6)?,
            new_value: r.try_get(7)?,
        },
    })
}

fn token_from_row(r: &Row) -> Result<TokenRow> {
    Ok(TokenRow {
        id: r.try_get(0)?,
        comment: r.try_get(1)?,
        max_uses: r.try_get(2)?,
        uses: r.try_get(3)?,
        expires_at: r.try_get(4)?,
        revoked_at: r.try_get(5)?,
        created_at: r.try_get(6)?,
        account_lifetime: r.try_get(7)?,
    })
}

/// A driver error with the server's message when there is one (tokio-postgres shows
/// only "db error" for those).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

pub fn describe_pool(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// A URL for messages: `postgresql://user:secret@db/x` becomes `postgresql://user@db/x`;
/// a `password=` query option is dropped.
pub fn without_password(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, host) = match rest.rsplit_once('@') {
                Some((a, h)) => (Some(a), h),
                None => (None, rest),
            };
            let user = auth.map(|a| a.split(':').next().unwrap_or(""));
            match user {
                Some(u) => format!("{scheme}://{u}@{host}"),
                None => format!("{scheme}://{host}"),
            }
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|p| !p.starts_with("password="))
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod url_tests {
    use super::without_password;

    #[test]
    fn a_shown_url_never_carries_the_password() {
        assert_eq!(
            without_password("postgresql://u:secret@db:5432/x?sslmode=require&password=p"),
            "postgresql://u@db:5432/x?sslmode=require"
        );
        assert_eq!(
            without_password("postgresql:///x?host=/run/postgresql"),
            "postgresql:///x?host=/run/postgresql"
        );
    }
}
