//! `postern database copy`: moves an installation from its SQLite file to an empty
//! PostgreSQL database. Every row keeps its id, its password hash and its times, so the
//! same passwords log in afterwards and invites keep their counts. The target is written
//! in one transaction: a copy that fails leaves it as it was.
//!
//! ```text
//! read   the SQLite file, read-only, at the schema this binary writes
//! check  the target is empty (or `force`: emptied in the same transaction)
//! write  tokens, accounts, blocklist, settings, mail home queue; identities moved on
//! ```

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::postgres::{migrations, Postgres};
use super::{Result, StoreError};

/// What was copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub accounts: usize,
    pub invites: usize,
    pub blocklist: usize,
    pub settings: usize,
    pub queued_homes: usize,
}

#[derive(Default)]
struct Tokens {
    id: Vec<i64>,
    code_hash: Vec<Vec<u8>>,
    comment: Vec<Option<String>>,
    max_uses: Vec<i64>,
    uses: Vec<i64>,
    expires_at: Vec<Option<i64>>,
    revoked_at: Vec<Option<i64>>,
    created_at: Vec<i64>,
    last_used_at: Vec<Option<i64>>,
    account_lifetime: Vec<Option<i64>>,
}

#[derive(Default)]
struct Accounts {
    id: Vec<i64>,
    address: Vec<String>,
    password_hash: Vec<String>,
    created_at: Vec<i64>,
    created_via: Vec<String>,
    token_id: Vec<Option<i64>>,
    first_login: Vec<Option<i64>>,
    last_login: Vec<Option<i64>>,
    quota_mode: Vec<String>,
    quota_bytes: Vec<Option<i64>>,
    used_bytes: Vec<i64>,
    used_messages: Vec<i64>,
    usage_updated_at: Vec<Option<i64>>,
    admin: Vec<bool>,
    expires_at: Vec<Option<i64>>,
}

#[derive(Default)]
struct Audit {
    id: Vec<i64>,
    at: Vec<i64>,
    actor: Vec<String>,
    actor_name: Vec<String>,
    action: Vec<String>,
    target: Vec<Option<String>>,
    old_value: Vec<Option<String>>,
    new_value: Vec<Option<String>>,
}

#[derive(Default)]
struct Snapshot {
    tokens: Tokens,
    accounts: Accounts,
    /// (address, reason, created_at)
    blocklist: (Vec<String>, Vec<Option<String>>, Vec<i64>),
    settings: (Vec<String>, Vec<String>),
    /// (address, home, queued_at)
    homes: (Vec<String>, Vec<String>, Vec<i64>),
    audit: Audit,
}

fn copy_error(message: impl Into<String>) -> StoreError {
    StoreError::Copy(message.into())
}

/// Copies the SQLite database at `from` into `to`. `force` empties a target that holds
/// rows; without it such a target is refused and left alone.
pub async fn sqlite_to_postgres(from: &Path, to: &Postgres, force: bool) -> Result<CopyReport> {
    let path = from.to_owned();
    let snap = tokio::task::spawn_blocking(move || read_sqlite(&path))
        .await
        .map_err(|_| StoreError::Worker)??;
    let mut c = to.pool().get().await?;
    let tx = c.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, 3)",
        &[&migrations::LOCK_NAMESPACE],
    )
    .await?;
    let held: i64 = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM tokens) \
             + (SELECT COUNT(*) FROM blocklist) + (SELECT COUNT(*) FROM settings) \
             + (SELECT COUNT(*) FROM mail_home_removals) + (SELECT COUNT(*) FROM audit_log)",
            &[],
        )
        .await?
        .try_get(0)?;
    if held > 0 {
        if !force {
            return Err(copy_error(format!(
                "the target database is not empty ({held} rows in accounts, invites, \
                 blocklist, settings, the mail home queue and the audit trail); --force \
                 empties it first"
            )));
        }
        tx.batch_execute(
            "TRUNCATE accounts, tokens, blocklist, settings, mail_home_removals, audit_log \
             RESTART IDENTITY",
        )
        .await?;
    }
    let t = &snap.tokens;
    tx.execute(
        "INSERT INTO tokens (id, code_hash, comment, max_uses, uses, expires_at, revoked_at, \
         created_at, last_used_at, account_lifetime) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::TEXT[], $4::BIGINT[], \
         $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[])",
        &[
            &t.id,
            &t.code_hash,
            &t.comment,
            &t.max_uses,
            &t.uses,
            &t.expires_at,
            &t.revoked_at,
            &t.created_at,
            &t.last_used_at,
            &t.account_lifetime,
        ],
    )
    .await?;
    let a = &snap.accounts;
    tx.execute(
        "INSERT INTO accounts (id, address, password_hash, created_at, created_via, token_id, \
         first_login, last_login, quota_mode, quota_bytes, used_bytes, used_messages, \
         usage_updated_at, admin, expires_at) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], \
         $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::TEXT[], $10::BIGINT[], $11::BIGINT[], \
         $12::BIGINT[], $13::BIGINT[], $14::BOOLEAN[], $15::BIGINT[])",
        &[
            &a.id,
            &a.address,
            &a.password_hash,
            &a.created_at,
            &a.created_via,
            &a.token_id,
            &a.first_login,
            &a.last_login,
            &a.quota_mode,
            &a.quota_bytes,
            &a.used_bytes,
            &a.used_messages,
            &a.usage_updated_at,
            &a.admin,
            &a.expires_at,
        ],
    )
    .await?;
    let (b0, b1, b2) = &snap.blocklist;
    tx.execute(
        "INSERT INTO blocklist (address, reason, created_at) \
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[])",
        &[b0, b1, b2],
    )
    .await?;
    let (s0, s1) = &snap.settings;
    tx.execute(
        "INSERT INTO settings (key, value) SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[])",
        &[s0, s1],
    )
    .await?;
    let (h0, h1, h2) = &snap.homes;
    tx.execute(
        "INSERT INTO mail_home_removals (address, home, queued_at) \
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[])",
        &[h0, h1, h2],
    )
    .await?;
    let l = &snap.audit;
    tx.execute(
        "INSERT INTO audit_log (id, at, actor, actor_name, action, target, old_value, \
         new_value) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
         $6::TEXT[], $7::TEXT[], $8::TEXT[])",
        &[
            &l.id,
            &l.at,
            &l.actor,
            &l.actor_name,
            &l.action,
            &l.target,
            &l.old_value,
            &l.new_value,
        ],
    )
    .await?;
    // New rows continue after the copied ids.
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('accounts', 'id'), \
           COALESCE((SELECT MAX(id) FROM accounts), 0) + 1, false); \
         SELECT setval(pg_get_serial_sequence('tokens', 'id'), \
           COALESCE((SELECT MAX(id) FROM tokens), 0) + 1, false); \
         SELECT setval(pg_get_serial_sequence('audit_log', 'id'), \
           COALESCE((SELECT MAX(id) FROM audit_log), 0) + 1, false);",
    )
    .await?;
    tx.commit().await?;
    Ok(CopyReport {
        accounts: a.id.len(),
        invites: t.id.len(),
        blocklist: b0.len(),
        settings: s0.len(),
        queued_homes: h0.len(),
    })
}

fn read_sqlite(path: &Path) -> Result<Snapshot> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Open {
        path: path.to_owned(),
        message: e.to_string(),
        permanent: false,
    })?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    // The copy reads the schema this binary writes (`user_version` after every
    // migration); the tables it does not copy (the limits) hold nothing lasting.
    let wanted = super::sqlite::schema_version();
    if version != wanted {
        return Err(copy_error(format!(
            "{}: schema version {version}, the copy reads version {wanted} \
             (start this postern once on the SQLite file to bring it up to date)",
            path.display()
        )));
    }
    let mut snap = Snapshot::default();
    // One read transaction: every table as of the same moment.
    conn.execute_batch("BEGIN")?;
    {
        let mut st = conn.prepare(
            "SELECT id, code_hash, comment, max_uses, uses, expires_at, revoked_at, \
             created_at, last_used_at, account_lifetime FROM tokens ORDER BY id",
        )?;
        let mut rows = st.query([])?;
        let t = &mut snap.tokens;
        while let Some(r) = rows.next()? {
            t.id.push(r.get(0)?);
            t.code_hash.push(r.get(1)?);
            t.comment.push(r.get(2)?);
            t.max_uses.push(r.get(3)?);
            t.uses.push(r.get(4)?);
            t.expires_at.push(r.get(5)?);
            t.revoked_at.push(r.get(6)?);
            t.created_at.push(r.get(7)?);
            t.last_used_at.push(r.get(8)?);
            t.account_lifetime.push(r.get(9)?);
        }
    }
    {
        let mut st = conn.prepare(
            "SELECT id, address, password_hash, created_at, created_via, token_id, \
             first_login, last_login, quota_mode, quota_bytes, used_bytes, used_messages, \
             usage_updated_at, admin, expires_at FROM accounts ORDER BY id",
        )?;
        let mut rows = st.query([])?;
        let a = &mut snap.accounts;
        while let Some(r) = rows.next()? {
            a.id.push(r.get(0)?);
            a.address.push(r.get(1)?);
            a.password_hash.push(r.get(2)?);
            a.created_at.push(r.get(3)?);
            a.created_via.push(r.get(4)?);
            a.token_id.push(r.get(5)?);
            a.first_login.push(r.get(6)?);
            a.last_login.push(r.get(7)?);
            a.quota_mode.push(r.get(8)?);
            a.quota_bytes.push(r.get(9)?);
            a.used_bytes.push(r.get(10)?);
            a.used_messages.push(r.get(11)?);
            a.usage_updated_at.push(r.get(12)?);
            a.admin.push(r.get::<_, i64>(13)? != 0);
            a.expires_at.push(r.get(14)?);
        }
    }
    {
        let mut st =
            conn.prepare("SELECT address, reason, created_at FROM blocklist ORDER BY address")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            snap.blocklist.0.push(r.get(0)?);
            snap.blocklist.1.push(r.get(1)?);
            snap.blocklist.2.push(r.get(2)?);
        }
    }
    {
        // `database_id` names the SQLite file (its marker beside it), not the accounts.
        let mut st = conn
            .prepare("SELECT key, value FROM settings WHERE key <> 'database_id' ORDER BY key")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            snap.settings.0.push(r.get(0)?);
            snap.settings.1.push(r.get(1)?);
        }
    }
    {
        let mut st = conn
            .prepare("SELECT address, home, queued_at FROM mail_home_removals ORDER BY address")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            snap.homes.0.push(r.get(0)?);
            snap.homes.1.push(r.get(1)?);
            snap.homes.2.push(r.get(2)?);
        }
    }
    {
        let mut st = conn.prepare(
            "SELECT id, at, actor, actor_name, action, target, old_value, new_value \
             FROM audit_log ORDER BY id",
        )?;
        let mut rows = st.query([])?;
        let l = &mut snap.audit;
        while let Some(r) = rows.next()? {
            l.id.push(r.get(0)?);
            l.at.push(r.get(1)?);
            l.actor.push(r.get(2)?);
            l.actor_name.push(r.get(3)?);
            l.action.push(r.get(4)?);
            l.target.push(r.get(5)?);
            l.old_value.push(r.get(6)?);
            l.new_value.push(r.get(7)?);
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(snap)
}
