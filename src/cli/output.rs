//! How the CLI prints accounts, invites and blocklist entries: aligned text for people,
//! stable JSON (`--json`) for scripts.
//!
//! ```text
//! {"address":"alice@example.org","created_via":"jit","quota_bytes":524288000,...}
//! ```

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::accounts::admin::token_status;
use crate::accounts::maintenance::{Due, DueOutcome, HomeResult, MaintenanceReport};
use crate::accounts::Accounts;
use crate::config::format_size;
use crate::store::{AccountRow, BlockEntry, QuotaMode, TokenRow};

/// A Unix time as RFC 3339 (UTC), or `-`.
pub fn when(t: Option<i64>) -> String {
    match t.and_then(|t| u64::try_from(t).ok()) {
        Some(secs) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        }
        None => "-".into(),
    }
}

fn quota_source(q: QuotaMode) -> &'static str {
    match q {
        QuotaMode::Default => "default",
        QuotaMode::Explicit(_) => "explicit",
        QuotaMode::Unlimited => "unlimited",
    }
}

pub fn quota_text(accounts: &Accounts, row: &AccountRow) -> String {
    match accounts.quota_bytes(row) {
        Some(b) => format!("{} ({})", format_size(b), quota_source(row.quota)),
        None => "unlimited".into(),
    }
}

pub fn account_json(accounts: &Accounts, row: &AccountRow) -> Value {
    json!({
        "address": row.address,
        "admin": row.admin,
        "created_at": row.created_at,
        "created_via": row.created_via,
        "token_id": row.token_id,
        "first_login": row.first_login,
        "last_login": row.last_login,
        "quota_bytes": accounts.quota_bytes(row),
        "quota_source": quota_source(row.quota),
        "used_bytes": row.used_bytes,
        "used_messages": row.used_messages,
        "usage_updated_at": row.usage_updated_at,
        "blocked": row.blocked.is_some(),
        "blocked_since": row.blocked.as_ref().map(|b| b.since),
        "blocked_reason": row.blocked.as_ref().and_then(|b| b.reason.clone()),
    })
}

pub fn token_json(t: &TokenRow, now: i64) -> Value {
    json!({
        "id": t.id,
        "status": token_status(t, now),
        "comment": t.comment,
        "max_uses": t.max_uses,
        "uses": t.uses,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "created_at": t.created_at,
    })
}

pub fn block_json(b: &BlockEntry) -> Value {
    json!({ "address": b.address, "reason": b.reason, "since": b.since })
}

pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    );
}

fn usage_text(accounts: &Accounts, row: &AccountRow) -> String {
    let used = format_size(u64::try_from(row.used_bytes).unwrap_or(0));
    match accounts.quota_bytes(row) {
        Some(q) if q > 0 => format!(
            "{used} of {} ({}%)",
            format_size(q),
            u64::try_from(row.used_bytes).unwrap_or(0) * 100 / q
        ),
        _ => format!("{used} of unlimited"),
    }
}

pub fn account_table(accounts: &Accounts, rows: &[AccountRow]) {
    println!(
        "{:<40}  {:<7}  {:<20}  {:<24}  flags",
        "address", "via", "last login", "usage"
    );
    for r in rows {
        let mut flags = Vec::new();
        if r.admin {
            flags.push("admin");
        }
        if r.blocked.is_some() {
            flags.push("blocked");
        }
        println!(
            "{:<40}  {:<7}  {:<20}  {:<24}  {}",
            r.address,
            r.created_via,
            when(r.last_login),
            usage_text(accounts, r),
            flags.join(",")
        );
    }
    println!("{} account(s)", rows.len());
}

pub fn account_details(accounts: &Accounts, r: &AccountRow) {
    println!("address:      {}", r.address);
    println!(
        "created:      {} via {}",
        when(Some(r.created_at)),
        r.created_via
    );
    if let Some(t) = r.token_id {
        println!("invite:       {t}");
    }
    println!("first login:  {}", when(r.first_login));
    println!("last login:   {}", when(r.last_login));
    println!("quota:        {}", quota_text(accounts, r));
    println!(
        "usage:        {}, {} messages (updated {})",
        usage_text(accounts, r),
        r.used_messages,
        when(r.usage_updated_at)
    );
    println!("admin:        {}", if r.admin { "yes" } else { "no" });
    match &r.blocked {
        Some(b) => println!(
            "blocked:      since {}{}",
            when(Some(b.since)),
            b.reason
                .as_deref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        ),
        None => println!("blocked:      no"),
    }
}

/// `postern maintenance run [--dry-run]`: a line per queued mail home and per account
/// due, then the invites and usage counts. Failures go to standard error.
///
/// ```text
/// removed queued mail home /var/vmail/example.org/carol of carol@example.org
/// deleted old1@example.org (inactive)
/// purged 1 dead invite(s)
/// recomputed usage of 0 account(s)
/// ```
pub fn maintenance_report(r: &MaintenanceReport) {
    let would = |done: &'static str, planned: &'static str| if r.dry_run { planned } else { done };
    for h in &r.queued_homes {
        let (home, address) = (h.home.display(), &h.address);
        match &h.result {
            HomeResult::Removed => println!(
                "{} queued mail home {home} of {address}",
                would("removed", "would remove")
            ),
            HomeResult::Gone => println!(
                "queued mail home {home} of {address} {} already gone",
                would("was", "is")
            ),
            HomeResult::Skipped => println!(
                "{} queued mail home {home} alone: {address} has an account again",
                would("left", "would leave")
            ),
            HomeResult::Failed(why) if r.dry_run => {
                println!("queued mail home {home} of {address} cannot be removed: {why}")
            }
            HomeResult::Failed(why) => eprintln!(
                "postern: queued mail home {home} of {address} could not be removed: {why}; \
                 it stays queued"
            ),
        }
    }
    for a in &r.accounts {
        let why = match a.why {
            Due::Inactive => "inactive",
            Due::Unused => "never used",
        };
        match &a.outcome {
            DueOutcome::Due => println!("would delete {} ({why})", a.address),
            DueOutcome::Deleted(home) => {
                println!("deleted {} ({why})", a.address);
                if let Some(h) = home {
                    if let HomeResult::Failed(e) = &h.result {
                        eprintln!(
                            "postern: account {} was deleted, but its mail home {} could not \
                             be removed: {e}; it stays queued",
                            a.address,
                            h.home.display()
                        );
                    }
                }
            }
            DueOutcome::NotDeleted(e) => eprintln!("postern: {}: {e}", a.address),
        }
    }
    println!(
        "{} {} dead invite(s)",
        would("purged", "would purge"),
        r.tokens_purged
    );
    println!(
        "{} usage of {} account(s)",
        would("recomputed", "would recompute"),
        r.usage_recomputed
    );
}
