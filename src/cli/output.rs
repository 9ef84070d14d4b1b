//! How the CLI prints accounts, invites and blocklist entries: aligned text for people,
//! stable JSON (`--json`) for scripts.
//!
//! ```text
//! {"address":"alice@example.org","created_via":"jit","quota_bytes":524288000,...}
//! ```

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::accounts::export::ImportCounts;
use crate::accounts::maintenance::{Due, DueOutcome, HomeResult, MaintenanceReport};
use crate::accounts::{Account, BlockedAddress, Invite, InviteDetail, Status};
use crate::config::Seconds;

/// A Unix time as RFC 3339 (UTC), or `-`.
pub fn when(t: Option<i64>) -> String {
    match t.and_then(|t| u64::try_from(t).ok()) {
        Some(secs) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        }
        None => "-".into(),
    }
}

pub fn account_json(a: &Account) -> Value {
    let (blocked_since, blocked_reason) = match &a.status {
        Status::Blocked { reason, since } => (Some(*since), reason.clone()),
        Status::Active => (None, None),
    };
    json!({
        "address": a.address.as_str(),
        "admin": a.admin,
        "created_at": a.created_at,
        "created_via": a.created_via,
        "token_id": a.invite.as_ref().map(|i| i.id),
        "first_login": a.first_login,
        "last_login": a.last_login,
        "quota_bytes": a.quota.limit,
        "quota_source": a.quota.source.as_str(),
        "used_bytes": a.usage.bytes,
        "used_messages": a.usage.messages,
        "usage_updated_at": a.usage.updated_at,
        "blocked": a.status.is_blocked(),
        "blocked_since": blocked_since,
        "blocked_reason": blocked_reason,
        "expires_at": a.expires_at,
    })
}

pub fn token_json(t: &Invite) -> Value {
    json!({
        "id": t.id,
        "status": t.status.as_str(),
        "comment": t.comment,
        "max_uses": t.max_uses,
        "uses": t.uses,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "created_at": t.created_at,
        "account_lifetime": t.account_lifetime,
        "remaining_uses": t.remaining_uses(),
    })
}

/// `token show --json`: the invite and the accounts made with it.
pub fn invite_detail_json(d: &InviteDetail) -> Value {
    let mut v = token_json(&d.invite);
    v["accounts"] = json!(d
        .accounts
        .iter()
        .map(|(a, at)| json!({ "address": a.as_str(), "created_at": at }))
        .collect::<Vec<_>>());
    v
}

/// `postern token show`: the invite, its remaining uses, and its accounts.
///
/// ```text
/// invite:          7 (for the workshop)
/// status:          active
/// uses:            2 of 5 (3 remaining)
/// ```
pub fn invite_details(out: &mut dyn Write, d: &InviteDetail) -> io::Result<()> {
    let t = &d.invite;
    match &t.comment {
        Some(c) => writeln!(out, "invite:           {} ({c})", t.id)?,
        None => writeln!(out, "invite:           {}", t.id)?,
    }
    writeln!(out, "status:           {}", t.status)?;
    writeln!(
        out,
        "uses:             {} of {} ({} remaining)",
        t.uses,
        t.max_uses,
        t.remaining_uses()
    )?;
    writeln!(out, "created:          {}", when(Some(t.created_at)))?;
    writeln!(out, "expires:          {}", when(t.expires_at))?;
    if let Some(at) = t.revoked_at {
        writeln!(out, "revoked:          {}", when(Some(at)))?;
    }
    match t.account_lifetime {
        Some(l) => writeln!(out, "account lifetime: {}", Seconds(l))?,
        None => writeln!(out, "account lifetime: -")?,
    }
    writeln!(out, "accounts:         {}", d.accounts.len())?;
    for (address, at) in &d.accounts {
        writeln!(out, "  {address}  created {}", when(Some(*at)))?;
    }
    Ok(())
}

pub fn block_json(b: &BlockedAddress) -> Value {
    json!({ "address": b.address.as_str(), "reason": b.reason, "since": b.since })
}

pub fn print_json(out: &mut dyn Write, v: &Value) -> io::Result<()> {
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    )
}

/// A line on standard error beside the output (a failed item of a run that goes on).
/// When standard error itself fails there is nowhere left to tell.
pub fn warn(text: &str) {
    let _ = writeln!(io::stderr(), "postern: {text}");
}

pub fn account_table(out: &mut dyn Write, rows: &[Account]) -> io::Result<()> {
    writeln!(
        out,
        "{:<40}  {:<7}  {:<20}  {:<24}  flags",
        "address", "via", "last login", "usage"
    )?;
    for r in rows {
        let mut flags = Vec::new();
        if r.admin {
            flags.push("admin");
        }
        if r.status.is_blocked() {
            flags.push("blocked");
        }
        writeln!(
            out,
            "{:<40}  {:<7}  {:<20}  {:<24}  {}",
            r.address,
            r.created_via,
            when(r.last_login),
            r.usage_text(),
            flags.join(",")
        )?;
    }
    writeln!(out, "{} account(s)", rows.len())
}

/// `postern blocklist list`: one aligned line per address, the widest address setting
/// the column, then the count.
///
/// ```text
/// address            since                 reason
/// spam@example.org   2026-11-20T10:00:00Z  abuse
/// 1 address(es)
/// ```
pub fn blocklist_table(out: &mut dyn Write, rows: &[BlockedAddress]) -> io::Result<()> {
    let width = rows
        .iter()
        .map(|b| b.address.as_str().chars().count())
        .chain(["address".len()])
        .max()
        .unwrap_or(0);
    writeln!(out, "{:<width$}  {:<20}  reason", "address", "since")?;
    for b in rows {
        writeln!(
            out,
            "{:<width$}  {:<20}  {}",
            b.address.as_str(),
            when(Some(b.since)),
            b.reason.as_deref().unwrap_or("")
        )?;
    }
    writeln!(out, "{} address(es)", rows.len())
}

pub fn account_details(out: &mut dyn Write, r: &Account) -> io::Result<()> {
    writeln!(out, "address:      {}", r.address)?;
    writeln!(
        out,
        "created:      {} via {}",
        when(Some(r.created_at)),
        r.created_via
    )?;
    if let Some(t) = &r.invite {
        match &t.comment {
            Some(c) => writeln!(out, "invite:       {} ({c})", t.id)?,
            None => writeln!(out, "invite:       {}", t.id)?,
        }
    }
    writeln!(out, "first login:  {}", when(r.first_login))?;
    writeln!(out, "last login:   {}", when(r.last_login))?;
    writeln!(out, "quota:        {}", r.quota)?;
    writeln!(
        out,
        "usage:        {}, {} messages (updated {})",
        r.usage_text(),
        r.usage.messages,
        when(r.usage.updated_at)
    )?;
    writeln!(out, "admin:        {}", if r.admin { "yes" } else { "no" })?;
    if let Some(at) = r.expires_at {
        writeln!(
            out,
            "expires:      {} (deleted by the maintenance run)",
            when(Some(at))
        )?;
    }
    match &r.status {
        Status::Blocked { reason, since } => writeln!(
            out,
            "blocked:      since {}{}",
            when(Some(*since)),
            reason
                .as_deref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        )?,
        Status::Active => writeln!(out, "blocked:      no")?,
    }
    Ok(())
}

/// `postern user import [--dry-run]`: the counts, then a line per account left out.
///
/// ```text
/// created 12, updated 0, left 1 existing unchanged, skipped 1
/// skipped x@other.org: the domain is not one of the served domains
/// ```
pub fn import_counts(out: &mut dyn Write, c: &ImportCounts) -> io::Result<()> {
    let (create, update, leave, skip) = if c.dry_run {
        ("would create", "update", "leave", "skip")
    } else {
        ("created", "updated", "left", "skipped")
    };
    writeln!(
        out,
        "{create} {}, {update} {}, {leave} {} existing unchanged, {skip} {}",
        c.created,
        c.updated,
        c.unchanged,
        c.skipped.len()
    )?;
    for (address, why) in &c.skipped {
        writeln!(out, "{skip} {address}: {why}")?;
    }
    Ok(())
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
pub fn maintenance_report(out: &mut dyn Write, r: &MaintenanceReport) -> io::Result<()> {
    let would = |done: &'static str, planned: &'static str| if r.dry_run { planned } else { done };
    for h in &r.queued_homes {
        let (home, address) = (h.home.display(), &h.address);
        match &h.result {
            HomeResult::Removed => writeln!(
                out,
                "{} queued mail home {home} of {address}",
                would("removed", "would remove")
            )?,
            HomeResult::Gone => writeln!(
                out,
                "queued mail home {home} of {address} {} already gone",
                would("was", "is")
            )?,
            HomeResult::Skipped => writeln!(
                out,
                "{} queued mail home {home} alone: {address} has an account again",
                would("left", "would leave")
            )?,
            HomeResult::Failed(why) if r.dry_run => writeln!(
                out,
                "queued mail home {home} of {address} cannot be removed: {why}"
            )?,
            HomeResult::Failed(why) => warn(&format!(
                "queued mail home {home} of {address} could not be removed: {why}; \
                 it stays queued"
            )),
        }
    }
    for a in &r.accounts {
        let why = match a.why {
            Due::Expired => "expired",
            Due::Inactive => "inactive",
            Due::Unused => "never used",
        };
        match &a.outcome {
            DueOutcome::Due => writeln!(out, "would delete {} ({why})", a.address)?,
            DueOutcome::Deleted(home) => {
                writeln!(out, "deleted {} ({why})", a.address)?;
                if let Some(h) = home {
                    if let HomeResult::Failed(e) = &h.result {
                        warn(&format!(
                            "account {} was deleted, but its mail home {} could not \
                             be removed: {e}; it stays queued",
                            a.address,
                            h.home.display()
                        ));
                    }
                }
            }
            DueOutcome::NotDeleted(e) => warn(&format!("{}: {e}", a.address)),
        }
    }
    writeln!(
        out,
        "{} {} dead invite(s)",
        would("purged", "would purge"),
        r.tokens_purged
    )?;
    writeln!(
        out,
        "{} usage of {} account(s)",
        would("recomputed", "would recompute"),
        r.usage_recomputed
    )
}
