//! `postern audit`: the operator actions recorded by the core (CLI, admin page,
//! maintenance), newest first. Also where the CLI says who it acts for: the Unix user
//! of the real uid.
//!
//! ```text
//! $ postern audit --since 24h --address alice@example.org
//! 2026-12-02T09:41:07Z  cli:root  quota_change  alice@example.org  500M -> 1G
//! 2026-12-02T09:40:55Z  admin:boss@example.org  account_block  alice@example.org  not blocked -> blocked: spam
//! ```

use std::io::Write;

use clap::Args;
use serde_json::{json, Value};

use super::output::{print_json, when};
use super::{Failure, Json};
use crate::accounts::{Accounts, Actor, AuditEntry, AuditQuery};
use crate::config::Seconds;

#[derive(Debug, Args)]
pub struct AuditCmd {
    /// Only actions of the last DURATION, such as 24h or 7d.
    #[arg(long, value_name = "DURATION")]
    pub(super) since: Option<String>,
    /// Only actions about this address (or made by this admin account).
    #[arg(long, value_name = "ADDRESS")]
    pub(super) address: Option<String>,
    /// At most this many actions (the newest).
    #[arg(long, value_name = "N")]
    pub(super) limit: Option<u32>,
    #[command(flatten)]
    pub(super) json: Json,
}

/// The Unix user the CLI runs as: the real uid (not the database owner it switches to,
/// nor root's effective uid under a set-uid wrapper), by name where it has one.
pub(super) fn unix_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid{}", uid.as_raw()),
    }
}

/// Who a command acts as: maintenance runs apart from other commands.
pub(super) fn actor(maintenance: bool) -> Actor {
    let unix_user = unix_user();
    if maintenance {
        Actor::Maintenance { unix_user }
    } else {
        Actor::Cli { unix_user }
    }
}

pub(super) async fn run(
    accounts: &Accounts,
    cmd: &AuditCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let since = match cmd.since.as_deref() {
        Some(s) => {
            let d = Seconds::parse(s).map_err(|e| Failure::usage(format!("--since: {e}")))?;
            let secs = i64::try_from(d.0).unwrap_or(i64::MAX);
            Some(accounts.now().saturating_sub(secs))
        }
        None => None,
    };
    if cmd.limit == Some(0) {
        return Err(Failure::usage("--limit must be at least 1"));
    }
    let entries = accounts
        .audit_trail(AuditQuery {
            since,
            address: cmd.address.clone(),
            limit: cmd.limit.unwrap_or(0),
            offset: 0,
        })
        .await?;
    if cmd.json.json {
        print_json(
            out,
            &json!(entries.iter().map(entry_json).collect::<Vec<_>>()),
        )?;
        return Ok(());
    }
    for e in &entries {
        writeln!(
            out,
            "{}  {}:{}  {}  {}  {} -> {}",
            when(Some(e.at)),
            e.actor,
            e.actor_name,
            e.action,
            e.target.as_deref().unwrap_or("-"),
            e.old.as_deref().unwrap_or("-"),
            e.new.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(())
}

fn entry_json(e: &AuditEntry) -> Value {
    json!({
        "id": e.id,
        "at": e.at,
        "actor": e.actor,
        "actor_name": e.actor_name,
        "action": e.action,
        "target": e.target,
        "old": e.old,
        "new": e.new,
    })
}
