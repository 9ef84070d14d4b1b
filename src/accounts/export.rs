//! Moving accounts between servers: `postern user export` writes one JSON object per
//! account per line (JSON Lines); `postern user import FILE` reads those lines back, and
//! madmail's `accounts export` (a JSON array of `{"username", "hash"}`) too.
//!
//! ```text
//! {"address":"alice@example.org","admin":false,"blocked":false,"blocked_reason":null,
//!  "blocked_since":null,"created_at":1767225600,"created_via":"web","expires_at":null,
//!  "first_login":1767225601,"invite_comment":null,"last_login":1767312000,
//!  "password_hash":"$argon2id$v=19$...","quota":"default"}
//! ```
//!
//! (one line per account; wrapped here). `password_hash` is there only with
//! `--with-hashes`: [`Accounts::export_accounts`] is the one call through which a
//! password hash leaves the core. `quota` is `"default"`, `"unlimited"` or a number of
//! bytes. On import, only `address` is required; hashes are accepted as postern stores
//! them (argon2 PHC strings) and as other servers do (`{SHA512-CRYPT}$6$...`, `$2y$...`,
//! madmail's `bcrypt:` and `sha256:`): see [`super::password`]. `invite_comment` is for
//! the reader; invites themselves do not move.
//!
//! A file is read whole before anything is written: a malformed line is an error naming
//! its number and nothing is imported. Lines that parse but cannot be imported (an
//! address outside the served domains, an unsupported hash, no hash for a new account)
//! are skipped and reported; the others are written in one transaction.

use std::fmt;

use serde_json::{json, Map, Value};

use super::admin::{parse_quota, ParseError};
use super::audit::{Actor, Change};
use super::view::QuotaSetting;
use super::{Accounts, AdminError, Route};
use crate::store::{ImportResult, ImportRow, QuotaMode};

/// One account as it is exported and imported.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub address: String,
    /// The hash as stored; only in an export `--with-hashes`.
    pub password_hash: Option<String>,
    pub quota: QuotaSetting,
    /// On the blocklist: (reason, since; `None` on import: now).
    pub blocked: Option<(Option<String>, Option<i64>)>,
    pub admin: bool,
    /// `None` on import: now.
    pub created_at: Option<i64>,
    /// The route it was made by; `None` or an unknown one on import: `import`.
    pub created_via: Option<String>,
    pub first_login: Option<i64>,
    pub last_login: Option<i64>,
    pub expires_at: Option<i64>,
    /// The comment of the invite it was made with (informative: not imported).
    pub invite_comment: Option<String>,
}

/// The hash stays out of debug output.
impl fmt::Debug for AccountRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountRecord")
            .field("address", &self.address)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<hash>"),
            )
            .field("quota", &self.quota)
            .field("blocked", &self.blocked)
            .field("admin", &self.admin)
            .field("created_at", &self.created_at)
            .field("created_via", &self.created_via)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl AccountRecord {
    /// The record as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        let quota = match self.quota {
            QuotaSetting::Default => json!("default"),
            QuotaSetting::Unlimited => json!("unlimited"),
            QuotaSetting::Explicit(b) => json!(b),
        };
        let (reason, since) = match &self.blocked {
            Some((reason, since)) => (reason.clone(), *since),
            None => (None, None),
        };
        let mut v = json!({
            "address": self.address,
            "quota": quota,
            "blocked": self.blocked.is_some(),
            "blocked_reason": reason,
            "blocked_since": since,
            "admin": self.admin,
            "created_at": self.created_at,
            "created_via": self.created_via,
            "first_login": self.first_login,
            "last_login": self.last_login,
            "expires_at": self.expires_at,
            "invite_comment": self.invite_comment,
        });
        if let Some(hash) = &self.password_hash {
            v["password_hash"] = json!(hash);
        }
        v.to_string()
    }
}

/// Reads an import file: JSON Lines as `user export` writes them (blank lines are
/// ignored), or madmail's export, a JSON array of `{"username", "hash"}` objects.
pub fn parse_import(text: &str) -> Result<Vec<AccountRecord>, ParseError> {
    if text.trim_start().starts_with('[') {
        let entries: Vec<Value> =
            serde_json::from_str(text).map_err(|e| ParseError::Array(e.to_string()))?;
        return entries
            .iter()
            .enumerate()
            .map(|(i, v)| madmail_record(v).map_err(|e| ParseError::Entry(i + 1, e)))
            .collect();
    }
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str::<Value>(line)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| record(&v));
        records.push(record.map_err(|e| ParseError::Line(i + 1, e))?);
    }
    Ok(records)
}

/// One line of `user export`.
fn record(v: &Value) -> Result<AccountRecord, String> {
    let o = v.as_object().ok_or("not a JSON object")?;
    let address = text(o, "address")?.ok_or("no \"address\"")?;
    let quota = match o.get("quota") {
        None | Some(Value::Null) => QuotaSetting::Default,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => QuotaSetting::Unlimited,
            Some(b) => QuotaSetting::Explicit(b),
            None => return Err(format!("\"quota\": {n} is not a number of bytes")),
        },
        Some(Value::String(s)) => parse_quota(s).map_err(|e| format!("\"quota\": {e}"))?,
        Some(_) => return Err("\"quota\" must be \"default\", \"unlimited\" or bytes".into()),
    };
    let blocked = match o.get("blocked") {
        None | Some(Value::Null | Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some((text(o, "blocked_reason")?, number(o, "blocked_since")?)),
        Some(_) => return Err("\"blocked\" must be true or false".into()),
    };
    let admin = match o.get("admin") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"admin\" must be true or false".into()),
    };
    Ok(AccountRecord {
        address,
        password_hash: text(o, "password_hash")?,
        quota,
        blocked,
        admin,
        created_at: number(o, "created_at")?,
        created_via: text(o, "created_via")?,
        first_login: number(o, "first_login")?,
        last_login: number(o, "last_login")?,
        expires_at: number(o, "expires_at")?,
        invite_comment: text(o, "invite_comment")?,
    })
}

/// One entry of madmail's `accounts export`: `username` and `hash` (a `password` in
/// plain text is not taken: such an entry has no hash and is skipped).
fn madmail_record(v: &Value) -> Result<AccountRecord, String> {
    let o = v.as_object().ok_or("not a JSON object")?;
    let address = text(o, "username")?.ok_or("no \"username\"")?;
    let hash = text(o, "hash")?.filter(|h| !h.is_empty());
    Ok(AccountRecord {
        address,
        password_hash: hash,
        quota: QuotaSetting::Default,
        blocked: None,
        admin: false,
        created_at: None,
        created_via: None,
        first_login: None,
        last_login: None,
        expires_at: None,
        invite_comment: None,
    })
}

fn text(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("\"{key}\" must be a string")),
    }
}

fn number(o: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("\"{key}\" must be a whole number (Unix time)")),
        Some(_) => Err(format!("\"{key}\" must be a whole number (Unix time)")),
    }
}

/// What an import did (in a dry run: would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub dry_run: bool,
    pub created: usize,
    /// Existing accounts replaced (`--update`).
    pub updated: usize,
    /// Existing accounts left as they were (no `--update`).
    pub unchanged: usize,
    /// (address, why) for each record left out.
    pub skipped: Vec<(String, String)>,
}

/// The routes an import keeps as they were; any other becomes `import`.
const ROUTES: [Route; 6] = [
    Route::Jit,
    Route::Web,
    Route::Invite,
    Route::Cli,
    Route::Admin,
    Route::Import,
];

/// A stored hash as an import takes it: trimmed; madmail's `bcrypt:` label dropped (the
/// rest is an ordinary bcrypt hash).
fn normalize_hash(hash: &str) -> String {
    let hash = hash.trim();
    hash.strip_prefix("bcrypt:").unwrap_or(hash).to_owned()
}

impl Accounts {
    /// Every account as a record for `user export`, in address order; with
    /// `with_hashes` each carries its password hash as stored (the only call through
    /// which a hash leaves the core), without it none does.
    pub async fn export_accounts(
        &self,
        with_hashes: bool,
    ) -> Result<Vec<AccountRecord>, AdminError> {
        let rows = self.store.accounts(false, None).await?;
        let comments = self.invite_comments(&rows).await?;
        tracing::info!(
            "event=export accounts={} with_hashes={with_hashes}",
            rows.len()
        );
        Ok(rows
            .into_iter()
            .map(|row| AccountRecord {
                quota: match row.quota {
                    QuotaMode::Default => QuotaSetting::Default,
                    QuotaMode::Explicit(0) | QuotaMode::Unlimited => QuotaSetting::Unlimited,
                    QuotaMode::Explicit(b) => QuotaSetting::Explicit(b),
                },
                blocked: row.blocked.map(|b| (b.reason, Some(b.since))),
                admin: row.admin,
                created_at: Some(row.created_at),
                created_via: Some(row.created_via),
                first_login: row.first_login,
                last_login: row.last_login,
                expires_at: row.expires_at,
                invite_comment: row
                    .token_id
                    .and_then(|id| comments.get(&id).cloned().flatten()),
                password_hash: with_hashes.then_some(row.password_hash),
                address: row.address,
            })
            .collect())
    }

    /// Imports the text of an import file ([`parse_import`]): a malformed line refuses
    /// the whole file. Accounts that do not exist are created; existing ones are left
    /// alone unless `update` (then their hash, when the record has one, quota, admin
    /// flag, blocklist state and expiry are replaced). `dry_run` writes nothing and
    /// reports what a real run would do.
    pub async fn import_lines(
        &self,
        actor: &Actor,
        text: &str,
        update: bool,
        dry_run: bool,
    ) -> Result<ImportCounts, AdminError> {
        let records = parse_import(text)?;
        self.import_records(actor, records, update, dry_run).await
    }

    /// Imports parsed records (see [`import_lines`](Accounts::import_lines)).
    pub async fn import_records(
        &self,
        actor: &Actor,
        records: Vec<AccountRecord>,
        update: bool,
        dry_run: bool,
    ) -> Result<ImportCounts, AdminError> {
        let config = self.config();
        let mut counts = ImportCounts {
            dry_run,
            ..ImportCounts::default()
        };
        // Operators may import reserved names (postmaster, ...), as they may add them.
        let mut rules = config.registration.username.clone();
        rules.reserved.clear();
        let now = self.now();
        let mut rows = Vec::new();
        for r in records {
            let hash = r.password_hash.as_deref().map(normalize_hash);
            let address = match self.importable(&r.address, hash.as_deref(), &rules) {
                Ok(a) => a,
                Err(why) => {
                    counts.skipped.push((r.address, why));
                    continue;
                }
            };
            let via = r
                .created_via
                .as_deref()
                .and_then(|v| ROUTES.iter().find(|route| route.as_str() == v))
                .copied()
                .unwrap_or(Route::Import);
            rows.push(ImportRow {
                address: address.as_str().to_owned(),
                password_hash: hash,
                created_at: r.created_at.unwrap_or(now),
                created_via: via.as_str().to_owned(),
                first_login: r.first_login,
                last_login: r.last_login,
                quota: r.quota.to_store(),
                admin: r.admin,
                blocked: r
                    .blocked
                    .map(|(reason, since)| (reason, since.unwrap_or(now))),
                expires_at: r.expires_at,
            });
        }
        let addresses: Vec<String> = rows.iter().map(|r| r.address.clone()).collect();
        let results = self.store.import_accounts(rows, update, dry_run).await?;
        for (address, result) in addresses.into_iter().zip(results) {
            match result {
                ImportResult::Created => counts.created += 1,
                ImportResult::Updated => {
                    counts.updated += 1;
                    if !dry_run {
                        self.cache.forget(&address);
                    }
                }
                ImportResult::Exists => counts.unchanged += 1,
                ImportResult::Blocked => counts.skipped.push((
                    address,
                    "on the blocklist (a deleted account's address); \
                     `postern blocklist remove` it first"
                        .into(),
                )),
                ImportResult::NoHash => counts.skipped.push((
                    address,
                    "no password hash to create it with (export with --with-hashes)".into(),
                )),
            }
        }
        if !dry_run {
            tracing::info!(
                "event=import created={} updated={} unchanged={} skipped={}",
                counts.created,
                counts.updated,
                counts.unchanged,
                counts.skipped.len()
            );
            if counts.created + counts.updated > 0 {
                let change = Change::new("import", None::<String>).new_value(format!(
                    "created={} updated={} unchanged={} skipped={}",
                    counts.created,
                    counts.updated,
                    counts.unchanged,
                    counts.skipped.len()
                ));
                self.record(actor, change).await;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> AccountRecord {
        AccountRecord {
            address: "alice@example.org".into(),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into()),
            quota: QuotaSetting::Explicit(1 << 30),
            blocked: Some((Some("spam".into()), Some(1_700_000_100))),
            admin: true,
            created_at: Some(1_700_000_000),
            created_via: Some("invite".into()),
            first_login: Some(1_700_000_001),
            last_login: None,
            expires_at: Some(1_700_604_800),
            invite_comment: Some("for \"Alice\"\nand Bob".into()),
        }
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let a = alice();
        let line = a.to_line();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(parse_import(&line), Ok(vec![a.clone()]));
        let mut b = a;
        b.address = "bob@example.org".into();
        b.password_hash = None;
        b.quota = QuotaSetting::Default;
        b.blocked = None;
        let text = format!("{}\n\n{}\n", alice().to_line(), b.to_line());
        assert_eq!(parse_import(&text), Ok(vec![alice(), b]));
    }

    #[test]
    fn without_hashes_the_field_is_absent() {
        let mut a = alice();
        a.password_hash = None;
        let v: Value = serde_json::from_str(&a.to_line()).expect("json");
        assert!(v.get("password_hash").is_none(), "{v}");
        assert_eq!(v["quota"], 1u64 << 30);
        assert_eq!(v["blocked_reason"], "spam");
        assert!(!format!("{:?}", alice()).contains("argon2"));
    }

    #[test]
    fn only_the_address_is_required_and_quotas_read_as_operators_write_them() {
        let got = parse_import(
            "{\"address\":\"a@example.org\"}\n\
             {\"address\":\"b@example.org\",\"quota\":\"500M\"}\n\
             {\"address\":\"c@example.org\",\"quota\":\"unlimited\",\"blocked\":true}\n\
             {\"address\":\"d@example.org\",\"quota\":0}",
        )
        .expect("parses");
        assert_eq!(got[0].quota, QuotaSetting::Default);
        assert_eq!(got[0].created_at, None);
        assert_eq!(got[1].quota, QuotaSetting::Explicit(500 << 20));
        assert_eq!(got[2].quota, QuotaSetting::Unlimited);
        assert_eq!(got[2].blocked, Some((None, None)));
        assert_eq!(got[3].quota, QuotaSetting::Unlimited);
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let good = alice().to_line();
        for (text, want) in [
            (
                format!("{good}\n{{\"address\": 5}}\n"),
                "line 2: \"address\" must be a string",
            ),
            (format!("{good}\n\n[1]\n"), "line 3: not a JSON object"),
            (
                format!("{good}\n{{\"quota\":\"1G\"}}"),
                "line 2: no \"address\"",
            ),
            (
                "{\"address\":\"a@example.org\",\"created_at\":\"yesterday\"}".to_owned(),
                "line 1: \"created_at\" must be a whole number (Unix time)",
            ),
            (
                "{\"address\":\"a@example.org\",\"blocked\":\"yes\"}".to_owned(),
                "line 1: \"blocked\" must be true or false",
            ),
        ] {
            let e = parse_import(&text).expect_err(&text);
            assert_eq!(e.to_string(), want);
        }
        let e = parse_import(&format!("{good}\n{{\"address\":")).expect_err("truncated");
        assert!(e.to_string().starts_with("line 2: not JSON: "), "{e}");
        let e = parse_import("{\"address\":\"a@example.org\",\"quota\":\"0\"}")
            .expect_err("zero quota");
        assert!(e.to_string().starts_with("line 1: \"quota\": "), "{e}");
    }

    #[test]
    fn madmail_exports_are_read_too() {
        let text = r#"[
  {
    "username": "k3x9q2m1a@example.org",
    "hash": "bcrypt:$2a$10$abcdefghijklmnopqrstuu"
  },
  {
    "username": "z8y7x6w5v@example.org"
  }
]"#;
        let got = parse_import(text).expect("madmail");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].address, "k3x9q2m1a@example.org");
        assert_eq!(
            got[0]
                .password_hash
                .as_deref()
                .map(normalize_hash)
                .as_deref(),
            Some("$2a$10$abcdefghijklmnopqrstuu")
        );
        assert_eq!(got[1].password_hash, None);
        assert_eq!(
            parse_import(r#"[{"username": 3}]"#),
            Err(ParseError::Entry(1, "\"username\" must be a string".into()))
        );
        assert!(parse_import("[{").is_err());
    }
}
