//! What an account's owner may do without the operator (`/account`): sign in, read the
//! account, change its password, delete it. Every call proves the password through the
//! same path as every other login (its failure limits included) and never creates an
//! account; `[self_service] enabled = false` closes all of them.
//!
//! ```text
//! owner_sign_in(user, password)                -> the canonical address and a tag of the
//!                                              password in force (sessions keep it)
//! change_own_password(user, password, new)     new meets the password rules; cached
//!                                              logins with the old one end at once
//! delete_own_account(user, password)           as the operator's delete: the address
//!                                              stays blocked unless self_service.allow_reuse;
//!                                              the mail home is queued for maintenance
//! ```

use super::address::Address;
use super::admin::Deleted;
use super::password::{self, Password, PasswordError};
use super::view::Account;
use super::{Accounts, Actor, AdminError, LoginContext, LoginOutcome, Refusal, Unavailable};

/// Why an owner's request was refused. The text is for the owner.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// `[self_service] enabled = false`.
    #[error("self-service is switched off on this server")]
    Disabled,
    /// Wrong password, unknown or blocked address: one answer for all.
    #[error("wrong address or password")]
    Credentials,
    /// The login failure limits: no password was checked.
    #[error("too many failed attempts; try again later")]
    Throttled,
    #[error("{0}")]
    Password(#[from] PasswordError),
    #[error("the account could not be changed right now; try again later")]
    Unavailable(#[from] Unavailable),
    /// The operator's action refused what the owner asked (its mail home cannot be
    /// named under `mailbox.home`): logged with the reason, which the owner does not see.
    #[error("the account cannot be changed here; ask the server's operator")]
    Failed,
}

/// A signed-in owner: the canonical address and a tag of the password in force. The tag
/// goes with the owner's session: once the password changes (here, on the admin page, by
/// the CLI in another process), [`Accounts::owner_account`] no longer accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub address: Address,
    pub tag: [u8; 16],
}

impl Accounts {
    /// What the owner hears of an operator action's refusal; the reason is logged (its
    /// text may name the account's mail home, hence `log.no_log`).
    fn owner_failure(&self, e: AdminError) -> OwnerError {
        match e {
            AdminError::Unavailable(u) => OwnerError::Unavailable(u),
            AdminError::Password(p) => OwnerError::Password(p),
            // Deleted in the meantime.
            AdminError::NotFound(_) => OwnerError::Credentials,
            other => {
                tracing::warn!(
                    "event=self_service result=fail error={}",
                    self.private(&other)
                );
                OwnerError::Failed
            }
        }
    }

    /// Whether `/account` is open (`self_service.enabled`).
    pub fn self_service_enabled(&self) -> bool {
        self.config().self_service.enabled
    }

    /// Checks an owner's address and password like every login (failure limits, the
    /// verified cache, a dummy hash for unknown addresses) without ever creating an
    /// account.
    pub async fn owner_sign_in(
        &self,
        user: &str,
        password: &Password,
        ctx: LoginContext<'_>,
    ) -> Result<SignedIn, OwnerError> {
        if !self.self_service_enabled() {
            return Err(OwnerError::Disabled);
        }
        let outcome = self.login_inner(user, password, ctx.remote_ip, false).await;
        self.log_login(user, &ctx, &outcome);
        match outcome? {
            LoginOutcome::Accepted { address, .. } => self.signed_in(address).await,
            LoginOutcome::Refused(Refusal::Throttled) => Err(OwnerError::Throttled),
            LoginOutcome::Refused(_) => Err(OwnerError::Credentials),
        }
    }

    async fn signed_in(&self, address: String) -> Result<SignedIn, OwnerError> {
        let row = self
            .store
            .account(&address)
            .await
            .map_err(Unavailable::from)?
            .ok_or(OwnerError::Credentials)?;
        Ok(SignedIn {
            tag: self.cache.credential_tag(&row.password_hash),
            address: Address::from_canonical(address),
        })
    }

    /// The signed-in owner's account, or `None` once it is gone or blocked or its
    /// password is no longer the one `tag` was made for (which ends the session).
    pub async fn owner_account(
        &self,
        address: &str,
        tag: &[u8; 16],
    ) -> Result<Option<Account>, OwnerError> {
        if !self.self_service_enabled() {
            return Err(OwnerError::Disabled);
        }
        let Ok(parsed) = self.parse(address) else {
            return Ok(None);
        };
        let row = self
            .store
            .account(parsed.as_str())
            .await
            .map_err(Unavailable::from)?;
        Ok(row
            .filter(|r| r.blocked.is_none())
            .filter(|r| self.cache.credential_tag(&r.password_hash) == *tag)
            .map(|r| self.account_view(r)))
    }

    /// Sets a new password after checking the current one. The new one must meet the
    /// password rules (checked first: that costs no hash and tells nothing). Every cached
    /// verification of the account is dropped, so the old password stops working at once.
    pub async fn change_own_password(
        &self,
        user: &str,
        current: &Password,
        new: &Password,
        ctx: LoginContext<'_>,
    ) -> Result<SignedIn, OwnerError> {
        if !self.self_service_enabled() {
            return Err(OwnerError::Disabled);
        }
        password::check_rules(new, &self.config().registration.password)?;
        let signed_in = self.owner_sign_in(user, current, ctx).await?;
        let owner = Actor::Owner {
            address: signed_in.address.as_str().to_owned(),
        };
        let (address, _) = self
            .set_password(&owner, signed_in.address.as_str(), Some(new.clone()))
            .await
            .map_err(|e| self.owner_failure(e))?;
        tracing::info!(
            "event=self_service action=passwd address={}",
            self.private(address.as_str())
        );
        self.signed_in(address.as_str().to_owned()).await
    }

    /// Deletes the account after checking its password, through the operator's delete:
    /// the mail home is queued for the maintenance run, and the address stays on the
    /// blocklist unless `self_service.allow_reuse`.
    pub async fn delete_own_account(
        &self,
        user: &str,
        current: &Password,
        ctx: LoginContext<'_>,
    ) -> Result<Deleted, OwnerError> {
        if !self.self_service_enabled() {
            return Err(OwnerError::Disabled);
        }
        let address = self.owner_sign_in(user, current, ctx).await?.address;
        let allow_reuse = self.config().self_service.allow_reuse;
        let owner = Actor::Owner {
            address: address.as_str().to_owned(),
        };
        let deleted = self
            .delete_user(&owner, address.as_str(), false, allow_reuse)
            .await
            .map_err(|e| self.owner_failure(e))?;
        tracing::info!(
            "event=self_service action=delete address={}",
            self.private(address.as_str())
        );
        Ok(deleted)
    }

    /// Whether `typed` names the account `address` (the delete form's confirmation):
    /// compared as addresses, so case and the IDNA form do not matter.
    pub fn confirms_address(&self, address: &str, typed: &str) -> bool {
        self.parse(typed)
            .is_ok_and(|t| self.parse(address).is_ok_and(|a| a == t))
    }
}
