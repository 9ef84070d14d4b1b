//! The audit trail: every operator action that changed something, with who did it, the
//! old and the new value, and when. The operator actions in `admin.rs` and
//! `maintenance.rs` take an [`Actor`] and record themselves here after the change
//! succeeded (a call that changes nothing, such as unblocking an address that is not
//! blocked, records nothing). Each record is one row in the database and one syslog line.
//!
//! No password and no invite code ever reaches a record: a password change records only
//! that it changed, an invite its id and comment.
//!
//! ```text
//! event=audit actor=cli:root action=quota_change target=alice@example.org old=500M new=1G
//! event=audit actor=admin:boss@example.org action=account_block target=eve@example.org old="not blocked" new="blocked: spam"
//! event=audit actor=admin:boss@example.org action=invite_create target=invite:7 old=- new="uses=2 expires=never comment=for Dave"
//! event=audit actor=maintenance:root action=account_delete target=old@example.org old=- new="why=inactive mail=queued address=blocked"
//! ```

use std::fmt;

use super::{Accounts, AdminError};
use crate::logfmt;
use crate::store::{AuditFilter, AuditRecord, AuditRow};

/// Who performs an operator action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A `postern` command, run by this Unix user (the real uid).
    Cli { unix_user: String },
    /// The admin web page, signed in as this account.
    Admin { address: String },
    /// `postern maintenance run` (the daily timer), run by this Unix user.
    Maintenance { unix_user: String },
}

impl Actor {
    /// `cli`, `admin` or `maintenance`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Cli { .. } => "cli",
            Actor::Admin { .. } => "admin",
            Actor::Maintenance { .. } => "maintenance",
        }
    }

    /// The Unix user or the admin account.
    pub fn name(&self) -> &str {
        match self {
            Actor::Cli { unix_user } | Actor::Maintenance { unix_user } => unix_user,
            Actor::Admin { address } => address,
        }
    }
}

/// `cli:root`, `admin:boss@example.org`, `maintenance:root`.
impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.name())
    }
}

/// One recorded operator action, as `postern audit` and the admin page show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix time.
    pub at: i64,
    /// `cli`, `admin` or `maintenance`.
    pub actor: String,
    /// The Unix user or the admin account.
    pub actor_name: String,
    /// `account_add`, `password_change`, `quota_change`, ... (see docs/audit.md).
    pub action: String,
    /// The address, `invite:<id>` or `registration` the action was about.
    pub target: Option<String>,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl AuditEntry {
    fn from_row(row: AuditRow) -> AuditEntry {
        let r = row.record;
        AuditEntry {
            id: row.id,
            at: r.at,
            actor: r.actor,
            actor_name: r.actor_name,
            action: r.action,
            target: r.target,
            old: r.old_value,
            new: r.new_value,
        }
    }
}

/// Which records to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records at or after this Unix time.
    pub since: Option<i64>,
    /// Only records about this address, or made by this admin account.
    pub address: Option<String>,
    /// At most this many (at most [`AUDIT_MAX_LIMIT`]; 0 means that many).
    pub limit: u32,
    /// Skip this many (paging).
    pub offset: u64,
}

/// The most records one query returns.
pub const AUDIT_MAX_LIMIT: u32 = 10_000;

/// What one action changed: its name, what it was about, the value before and after.
pub(super) struct Change {
    pub action: &'static str,
    pub target: Option<String>,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Change {
    pub fn new(action: &'static str, target: impl Into<Option<String>>) -> Change {
        Change {
            action,
            target: target.into(),
            old: None,
            new: None,
        }
    }

    pub fn old(mut self, old: impl Into<String>) -> Change {
        self.old = Some(old.into());
        self
    }

    pub fn new_value(mut self, new: impl Into<String>) -> Change {
        self.new = Some(new.into());
        self
    }
}

/// A block reason as an audit value: `blocked` or `blocked: <reason>`.
pub(super) fn blocked_text(reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("blocked: {r}"),
        None => "blocked".into(),
    }
}

/// `yes` or `no`.
pub(super) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl Accounts {
    /// Records an operator action that happened: one row, one syslog line. The change
    /// is already made, so a failed write does not undo it or fail the call: the line
    /// is still logged (at WARN, with the store's error).
    pub(super) async fn record(&self, actor: &Actor, change: Change) {
        let Change {
            action,
            target,
            old,
            new,
        } = change;
        let record = AuditRecord {
            at: self.now(),
            actor: actor.kind().to_owned(),
            actor_name: actor.name().to_owned(),
            action: action.to_owned(),
            target,
            old_value: old,
            new_value: new,
        };
        // An admin's address is personal; a Unix user is not.
        let who = match actor {
            Actor::Admin { address } => self.private(address.as_str()).to_string(),
            _ => logfmt::value(actor.name()).to_string(),
        };
        let target = logfmt::private_opt(record.target.as_deref(), self.config().log.no_log);
        let old = logfmt::private_opt(record.old_value.as_deref(), false);
        let new = logfmt::private_opt(record.new_value.as_deref(), false);
        let line = format!(
            "event=audit actor={}:{who} action={action} target={target} old={old} new={new}",
            actor.kind()
        );
        match self.store.append_audit(record).await {
            Ok(_) => tracing::info!("{line}"),
            Err(e) => tracing::warn!("{line} result=unrecorded error={}", logfmt::value(&e)),
        }
    }

    /// The audit trail, newest first, as `query` selects it.
    pub async fn audit_trail(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, AdminError> {
        let address = match query.address.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => Some(self.address_for(a)?.as_str().to_owned()),
        };
        let limit = match query.limit {
            0 => AUDIT_MAX_LIMIT,
            n => n.min(AUDIT_MAX_LIMIT),
        };
        let rows = self
            .store
            .audit_log(AuditFilter {
                since: query.since,
                address,
                limit: i64::from(limit),
                offset: i64::try_from(query.offset).unwrap_or(i64::MAX),
            })
            .await?;
        Ok(rows.into_iter().map(AuditEntry::from_row).collect())
    }
}
