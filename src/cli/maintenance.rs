//! `postern maintenance run` and `postern stats`: the daily clean-up, and the counts
//! an operator looks at.
//!
//! ```text
//! $ postern maintenance run --dry-run
//! would delete old1@example.org (inactive)
//! would purge 1 dead invite(s)
//! $ postern stats
//! accounts:   12 (1 blocked, 1 admin)
//! ```

use std::io::Write;

use clap::Subcommand;
use serde_json::json;

use super::output::{self, print_json};
use super::privileges::Privileges;
use super::Failure;
use crate::accounts::{Accounts, Actor};
use crate::config;

#[derive(Debug, Subcommand)]
pub enum MaintenanceCmd {
    /// Run the maintenance the configuration asks for ([maintenance]), and remove the
    /// mail homes queued by deletions (the admin page's). Exits 1 when an account or a
    /// mail home could not be removed; such a home stays queued for the next run.
    Run {
        /// Show what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Act as if it were this Unix time (for testing retention settings).
        #[arg(long, hide = true)]
        at: Option<i64>,
    },
}

pub(super) async fn run(
    accounts: &Accounts,
    actor: &Actor,
    cmd: &MaintenanceCmd,
    privileges: &Privileges,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let MaintenanceCmd::Run { dry_run, at } = cmd;
    let now = at.unwrap_or_else(|| accounts.now());
    let report = accounts
        .run_maintenance(actor, now, *dry_run, privileges)
        .await?;
    output::maintenance_report(out, &report)?;
    if report.succeeded() {
        return Ok(());
    }
    let mut problems = Vec::new();
    let not_deleted = report.not_deleted();
    if !not_deleted.is_empty() {
        let names: Vec<&str> = not_deleted.iter().map(|(a, _)| *a).collect();
        problems.push(format!(
            "{} account(s) could not be deleted: {}",
            names.len(),
            names.join(", ")
        ));
    }
    let homes = report.failed_homes();
    if !homes.is_empty() {
        let names: Vec<String> = homes.iter().map(|h| h.home.display().to_string()).collect();
        problems.push(format!(
            "{} mail home(s) could not be removed and stay queued for the next run: {}",
            names.len(),
            names.join(", ")
        ));
    }
    Err(Failure::refused(problems.join("; ")))
}

pub(super) async fn stats(
    accounts: &Accounts,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let now = accounts.now();
    let s = accounts.stats(now).await?;
    let st = &s;
    if json {
        let created: serde_json::Map<String, serde_json::Value> = st
            .created
            .iter()
            .map(|(via, day, week)| (via.clone(), json!({ "last_day": day, "last_week": week })))
            .collect();
        print_json(
            out,
            &json!({
                "accounts": { "total": st.accounts, "blocked": st.blocked_accounts, "admins": st.admins },
                "blocklist": st.blocklist,
                "created": created,
                "storage": {
                    "used_bytes": st.used_bytes,
                    "quota_bytes": s.quota_bytes,
                    "unlimited_accounts": st.unlimited_accounts,
                },
                "tokens": {
                    "active": st.tokens_active,
                    "used_up": st.tokens_used_up,
                    "expired": st.tokens_expired,
                    "revoked": st.tokens_revoked,
                },
                "mail_homes_queued": st.homes_queued,
            }),
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "accounts:   {} ({} blocked, {} admin)",
        st.accounts, st.blocked_accounts, st.admins
    )?;
    writeln!(out, "blocklist:  {} address(es)", st.blocklist)?;
    writeln!(out, "created:    route      last day  last week")?;
    for (via, day, week) in &st.created {
        writeln!(out, "            {via:<9}  {day:>8}  {week:>9}")?;
    }
    writeln!(
        out,
        "storage:    {} used of {} allotted ({} unlimited account(s))",
        config::format_size(u64::try_from(st.used_bytes).unwrap_or(0)),
        config::format_size(s.quota_bytes),
        st.unlimited_accounts
    )?;
    writeln!(
        out,
        "invites:    {} active, {} used up, {} expired, {} revoked",
        st.tokens_active, st.tokens_used_up, st.tokens_expired, st.tokens_revoked
    )?;
    writeln!(
        out,
        "mail homes: {} queued for removal (by the next `postern maintenance run`)",
        st.homes_queued
    )?;
    Ok(())
}
