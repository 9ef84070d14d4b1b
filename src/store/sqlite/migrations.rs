//! Versioned schema migrations, tracked in SQLite's `user_version`. Each step runs in
//! its own transaction; a database newer than this binary is refused rather than touched.

use rusqlite::Connection;

use crate::store::{Result, StoreError};

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE accounts (
    id               INTEGER PRIMARY KEY,
    address          TEXT NOT NULL UNIQUE,
    password_hash    TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    created_via      TEXT NOT NULL,
    token_id         INTEGER REFERENCES tokens(id) ON DELETE SET NULL,
    first_login      INTEGER,
    last_login       INTEGER,
    quota_mode       TEXT NOT NULL DEFAULT 'default'
                     CHECK (quota_mode IN ('default', 'explicit', 'unlimited')),
    quota_bytes      INTEGER,
    used_bytes       INTEGER NOT NULL DEFAULT 0,
    used_messages    INTEGER NOT NULL DEFAULT 0,
    usage_updated_at INTEGER,
    admin            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX accounts_admin ON accounts(admin) WHERE admin = 1;
CREATE TABLE blocklist (
    address    TEXT PRIMARY KEY,
    reason     TEXT,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY,
    code_hash  BLOB NOT NULL UNIQUE,
    comment    TEXT,
    max_uses   INTEGER NOT NULL CHECK (max_uses > 0),
    uses       INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER,
    revoked_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
",
    r"
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
CREATE INDEX accounts_token ON accounts(token_id) WHERE token_id IS NOT NULL;
",
    r"
CREATE TABLE mail_home_removals (
    address   TEXT PRIMARY KEY,
    home      TEXT NOT NULL,
    queued_at INTEGER NOT NULL
) WITHOUT ROWID;
",
    r"
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    old_value  TEXT,
    new_value  TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_target ON audit_log(target) WHERE target IS NOT NULL;
",
    r"
CREATE TABLE login_failures (
    address    TEXT PRIMARY KEY,
    failures   INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    next_turn  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE send_rate (
    address    TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
",
    // Temporary accounts: an invite's account lifetime (seconds) and the time an account
    // made with it is deleted by maintenance.
    r"
ALTER TABLE tokens ADD COLUMN account_lifetime INTEGER;
ALTER TABLE accounts ADD COLUMN expires_at INTEGER;
CREATE INDEX accounts_expires ON accounts(expires_at) WHERE expires_at IS NOT NULL;
",
    // One account row as the store reads it: the account and its blocklist entry. Every
    // lookup's query text is then a few words, which SQLite's statement cache hashes
    // and copies on each use (SQLite plans it as the join itself).
    r"
CREATE VIEW account_rows AS
SELECT a.id, a.address, a.password_hash, a.created_at, a.created_via, a.token_id,
       a.first_login, a.last_login, a.quota_mode, a.quota_bytes, a.used_bytes,
       a.used_messages, a.usage_updated_at, a.admin,
       b.address AS blocked_address, b.reason AS blocked_reason,
       b.created_at AS blocked_at, a.expires_at
FROM accounts a LEFT JOIN blocklist b ON b.address = a.address;
",
];

/// The schema version this binary writes.
pub fn known() -> i64 {
    MIGRATIONS.len() as i64
}

/// Applies every migration the database has not seen yet.
pub fn apply(conn: &mut Connection) -> Result<()> {
    let known = known();
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if now > i as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
