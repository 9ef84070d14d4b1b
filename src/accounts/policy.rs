//! The Postfix policy decision: who may receive and who may send, decided at RCPT time
//! so refused mail is never queued.
//!
//! ```text
//! sender (sasl_username) blocked            -> SenderBlocked
//! sender over its send rate (per message)   -> SenderRateLimited
//! recipient in a served domain, blocked     -> RecipientBlocked
//! recipient in a served domain, no account  -> RecipientUnknown (if policy.reject_unknown)
//! recipient over quota (used, or used+size) -> MailboxFull
//! anything else                             -> Dunno
//! ```

use super::address::Address;
use super::{Accounts, Unavailable};
use crate::logfmt;
use crate::metrics::PolicyAction;

/// What Postfix told us about one SMTP transaction step.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyRequest<'a> {
    /// `RCPT`, `DATA`, `END-OF-MESSAGE`, ...
    pub protocol_state: &'a str,
    pub recipient: &'a str,
    pub sasl_username: &'a str,
    /// The client's `MAIL FROM SIZE=` at RCPT (0 if none), the real size at END-OF-MESSAGE.
    pub size: u64,
    /// Postfix's id of the mail transaction: one per message.
    pub instance: &'a str,
}

/// The decision; the adapter picks the configured reply text for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVerdict {
    Dunno,
    RecipientBlocked,
    RecipientUnknown,
    MailboxFull,
    SenderBlocked,
    SenderRateLimited,
}

impl PolicyVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVerdict::Dunno => "dunno",
            PolicyVerdict::RecipientBlocked => "recipient_blocked",
            PolicyVerdict::RecipientUnknown => "recipient_unknown",
            PolicyVerdict::MailboxFull => "mailbox_full",
            PolicyVerdict::SenderBlocked => "sender_blocked",
            PolicyVerdict::SenderRateLimited => "sender_rate",
        }
    }
}

impl Accounts {
    /// Decides one policy request.
    pub async fn policy(&self, req: PolicyRequest<'_>) -> Result<PolicyVerdict, Unavailable> {
        let verdict = self.policy_inner(req).await;
        crate::metrics::get().policy(match &verdict {
            Ok(PolicyVerdict::Dunno) => PolicyAction::Dunno,
            Ok(PolicyVerdict::RecipientBlocked) => PolicyAction::RejectBlocked,
            Ok(PolicyVerdict::RecipientUnknown) => PolicyAction::RejectUnknown,
            Ok(PolicyVerdict::MailboxFull) => PolicyAction::Full,
            Ok(PolicyVerdict::SenderBlocked) => PolicyAction::SenderBlocked,
            Ok(PolicyVerdict::SenderRateLimited) => PolicyAction::Rate,
            Err(_) => PolicyAction::Defer,
        });
        if let Ok(v) = &verdict {
            if *v != PolicyVerdict::Dunno {
                tracing::info!(
                    "event=policy verdict={} sender={} recipient={}",
                    v.as_str(),
                    logfmt::private_opt(
                        Some(req.sasl_username).filter(|u| !u.is_empty()),
                        self.config().log.no_log
                    ),
                    self.private(req.recipient)
                );
            }
        }
        verdict
    }

    async fn policy_inner(&self, req: PolicyRequest<'_>) -> Result<PolicyVerdict, Unavailable> {
        let config = self.config();
        let at_rcpt = req.protocol_state.eq_ignore_ascii_case("RCPT");
        if !req.sasl_username.is_empty() {
            if let Ok(sender) = Address::parse(req.sasl_username, &config.domains) {
                if self.store.blocklist_entry(sender.as_str()).await?.is_some() {
                    return Ok(PolicyVerdict::SenderBlocked);
                }
                if at_rcpt
                    && !self
                        .take_send_token(&sender, req.instance, &config.policy)
                        .await?
                {
                    return Ok(PolicyVerdict::SenderRateLimited);
                }
            }
        }
        if !at_rcpt || req.recipient.is_empty() {
            return Ok(PolicyVerdict::Dunno);
        }
        // Other domains (and malformed addresses) are not ours to judge.
        let Ok(rcpt) = Address::parse(req.recipient, &config.domains) else {
            return Ok(PolicyVerdict::Dunno);
        };
        // One point read: the account's quota and usage, and the blocklist.
        let facts = self.store.mail_facts(rcpt.as_str()).await?;
        if facts.blocked {
            return Ok(PolicyVerdict::RecipientBlocked);
        }
        let Some(mailbox) = facts.mailbox else {
            return Ok(if config.policy.reject_unknown {
                PolicyVerdict::RecipientUnknown
            } else {
                PolicyVerdict::Dunno
            });
        };
        if let Some(quota) = self.quota_of(mailbox.quota).limit {
            let used = u64::try_from(mailbox.used_bytes).unwrap_or(0);
            if used >= quota || (req.size > 0 && used.saturating_add(req.size) > quota) {
                return Ok(PolicyVerdict::MailboxFull);
            }
        }
        Ok(PolicyVerdict::Dunno)
    }
}
