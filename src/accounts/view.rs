//! What the core hands its adapters: accounts, invites and blocklist entries as the
//! rules see them, never as the store keeps them. An [`Account`] carries its effective
//! quota (the configured default already applied), never a password hash; adapters
//! print these values and decide nothing.
//!
//! ```text
//! Account { address: alice@example.org, status: Active,
//!           quota: 500M (default), usage: 120M of 500M (24%), created: web, ... }
//! Invite  { id: 3, status: used_up, uses: 1 of 1, comment: "for Alice" }
//! ```

use std::fmt;

use super::address::Address;
use crate::config::human_size;
use crate::store::{AccountRow, BlockEntry, QuotaMode, TokenProblem, TokenRow};

/// How the operator sets an account's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaSetting {
    /// Follow `quota.default` from the configuration, whatever it is at the time.
    Default,
    Explicit(u64),
    Unlimited,
}

impl QuotaSetting {
    pub(crate) fn to_store(self) -> QuotaMode {
        match self {
            QuotaSetting::Default => QuotaMode::Default,
            QuotaSetting::Explicit(b) => QuotaMode::Explicit(b),
            QuotaSetting::Unlimited => QuotaMode::Unlimited,
        }
    }
}

/// Where an account's effective quota comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaSource {
    Default,
    Explicit,
    Unlimited,
}

impl QuotaSource {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaSource::Default => "default",
            QuotaSource::Explicit => "explicit",
            QuotaSource::Unlimited => "unlimited",
        }
    }
}

/// The quota in force for an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Bytes; `None`: no limit.
    pub limit: Option<u64>,
    pub source: QuotaSource,
}

impl Quota {
    /// The one rule for the quota an account has: its own setting, or the configured
    /// default (`default_limit`, `None` for unlimited) when it follows the default.
    ///
    /// A limit of 0 means unlimited: older versions let an operator set it, Dovecot reads
    /// `storage=0` as no limit, and a quota that refuses all mail is what blocking is
    /// for. Operators can no longer set it ([`parse_quota`](super::admin::parse_quota)).
    pub fn effective(setting: QuotaMode, default_limit: Option<u64>) -> Quota {
        match setting {
            QuotaMode::Default => Quota {
                limit: default_limit.filter(|&b| b > 0),
                source: QuotaSource::Default,
            },
            QuotaMode::Explicit(0) => Quota {
                limit: None,
                source: QuotaSource::Unlimited,
            },
            QuotaMode::Explicit(b) => Quota {
                limit: Some(b),
                source: QuotaSource::Explicit,
            },
            QuotaMode::Unlimited => Quota {
                limit: None,
                source: QuotaSource::Unlimited,
            },
        }
    }
}

/// `500M (default)`, `1G (explicit)`, `unlimited`.
impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Some(b) => write!(f, "{} ({})", human_size(b), self.source.as_str()),
            None => f.write_str("unlimited"),
        }
    }
}

/// Storage use as Dovecot's quota_clone last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub messages: u64,
    pub updated_at: Option<i64>,
}

/// Whether an account may log in and receive mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Active,
    Blocked { reason: Option<String>, since: i64 },
}

impl Status {
    pub fn is_blocked(&self) -> bool {
        matches!(self, Status::Blocked { .. })
    }
}

/// The invite an account was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteUsed {
    pub id: i64,
    pub comment: Option<String>,
}

/// An account as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub address: Address,
    pub status: Status,
    pub quota: Quota,
    pub usage: Usage,
    pub created_at: i64,
    /// The route it was made by (`jit`, `web`, `invite`, `cli`, `admin`, `import`).
    pub created_via: String,
    pub invite: Option<InviteUsed>,
    pub first_login: Option<i64>,
    pub last_login: Option<i64>,
    pub admin: bool,
    /// When maintenance deletes it: made with an invite that gives accounts a lifetime.
    pub expires_at: Option<i64>,
}

impl Account {
    pub(crate) fn from_row(row: AccountRow, default_limit: Option<u64>) -> Account {
        Account {
            address: Address::from_canonical(row.address),
            status: match row.blocked {
                Some(b) => Status::Blocked {
                    reason: b.reason,
                    since: b.since,
                },
                None => Status::Active,
            },
            quota: Quota::effective(row.quota, default_limit),
            usage: Usage {
                bytes: u64::try_from(row.used_bytes).unwrap_or(0),
                messages: u64::try_from(row.used_messages).unwrap_or(0),
                updated_at: row.usage_updated_at,
            },
            created_at: row.created_at,
            created_via: row.created_via,
            invite: row.token_id.map(|id| InviteUsed { id, comment: None }),
            first_login: row.first_login,
            last_login: row.last_login,
            admin: row.admin,
            expires_at: row.expires_at,
        }
    }

    /// `120M of 500M (24%)`, `3K of unlimited`.
    pub fn usage_text(&self) -> String {
        let used = human_size(self.usage.bytes);
        match self.quota.limit.filter(|&q| q > 0) {
            Some(q) => format!(
                "{used} of {} ({}%)",
                human_size(q),
                self.usage.bytes.saturating_mul(100) / q
            ),
            None => format!("{used} of unlimited"),
        }
    }
}

/// What an invite code can still do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteStatus {
    Active,
    UsedUp,
    Expired,
    Revoked,
}

impl InviteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteStatus::Active => "active",
            InviteStatus::UsedUp => "used_up",
            InviteStatus::Expired => "expired",
            InviteStatus::Revoked => "revoked",
        }
    }
}

impl fmt::Display for InviteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An invite code's record (never the code itself), with its status at the time it was
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub id: i64,
    pub status: InviteStatus,
    pub comment: Option<String>,
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    /// Seconds: each account made with it is deleted this long after its creation.
    pub account_lifetime: Option<u64>,
}

impl Invite {
    /// How many more accounts it can make: none once it is revoked, expired or used up.
    pub fn remaining_uses(&self) -> i64 {
        match self.status {
            InviteStatus::Active => (self.max_uses - self.uses).max(0),
            _ => 0,
        }
    }

    pub(crate) fn from_row(t: TokenRow, now: i64) -> Invite {
        let status = match t.problem(now) {
            None => InviteStatus::Active,
            Some(TokenProblem::Revoked) => InviteStatus::Revoked,
            Some(TokenProblem::Expired) => InviteStatus::Expired,
            Some(TokenProblem::UsedUp | TokenProblem::Unknown) => InviteStatus::UsedUp,
        };
        Invite {
            id: t.id,
            status,
            comment: t.comment,
            max_uses: t.max_uses,
            uses: t.uses,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            created_at: t.created_at,
            account_lifetime: t.account_lifetime.and_then(|l| u64::try_from(l).ok()),
        }
    }
}

/// An invite with the accounts made with it (`token show`, the admin page's invite view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteDetail {
    pub invite: Invite,
    /// (address, created_at), oldest first; deleted accounts are no longer listed.
    pub accounts: Vec<(Address, i64)>,
}

/// An address on the blocklist (with or without an account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedAddress {
    pub address: Address,
    pub reason: Option<String>,
    pub since: i64,
}

impl BlockedAddress {
    pub(crate) fn from_row(b: BlockEntry) -> BlockedAddress {
        BlockedAddress {
            address: Address::from_canonical(b.address),
            reason: b.reason,
            since: b.since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(used: u64, quota: Quota) -> Account {
        Account {
            address: Address::from_canonical("a@example.org".into()),
            status: Status::Active,
            quota,
            usage: Usage {
                bytes: used,
                messages: 0,
                updated_at: None,
            },
            created_at: 0,
            created_via: "cli".into(),
            invite: None,
            first_login: None,
            last_login: None,
            admin: false,
            expires_at: None,
        }
    }

    #[test]
    fn usage_and_quota_read_the_same_everywhere() {
        let limited = Quota::effective(QuotaMode::Default, Some(500 << 20));
        assert_eq!(limited.to_string(), "500M (default)");
        assert_eq!(account(12 << 20, limited).usage_text(), "12M of 500M (2%)");
        let unlimited = Quota::effective(QuotaMode::Unlimited, Some(500 << 20));
        assert_eq!(unlimited.to_string(), "unlimited");
        assert_eq!(account(0, unlimited).usage_text(), "0 of unlimited");
        // Regression: bytes that no unit divides were shown raw (`7041 of 500M`).
        assert_eq!(account(7041, limited).usage_text(), "6.9K of 500M (0%)");
    }

    #[test]
    fn a_stored_quota_of_0_is_unlimited() {
        let zero = Quota::effective(QuotaMode::Explicit(0), Some(500 << 20));
        assert_eq!(
            zero,
            Quota {
                limit: None,
                source: QuotaSource::Unlimited
            }
        );
        assert_eq!(zero.to_string(), "unlimited");
        assert_eq!(account(3 << 10, zero).usage_text(), "3K of unlimited");
        // A default of 0 too; any other limit stays what it is.
        assert_eq!(Quota::effective(QuotaMode::Default, Some(0)).limit, None);
        assert_eq!(
            Quota::effective(QuotaMode::Explicit(1), None).limit,
            Some(1)
        );
    }
}
