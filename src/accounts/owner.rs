//! What an account's owner may do without the operator (`/account`): sign in, read the
//! account, change its password, delete it. Every call proves the password through the
//! same path as every other login (its failure limits included) and never creates an
//! account; `[self_service] enabled = false` closes all of them.
//!
//! ```text
//! owner_sign_in(user, password)                -> the canonical address
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
use super::{Accounts, AdminError, LoginContext, LoginOutcome, Refusal, Unavailable};

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
    /// The account went away between the check and the change (a parallel delete), or
    /// its mail home cannot be named.
    #[error("{0}")]
    Failed(String),
}

impl From<AdminError> for OwnerError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Unavailable(u) => OwnerError::Unavailable(u),
            AdminError::Password(p) => OwnerError::Password(p),
            AdminError::NotFound(_) => OwnerError::Credentials,
            other => OwnerError::Failed(other.to_string()),
        }
    }
}

impl Accounts {
    /// Whether `/account` is open (`self_service.enabled`).
    pub fn self_service_enabled(&self) -> bool {
        self.config().self_service.enabled
    }

    /// Checks an owner's address and password like every login (failure limits, the
    /// verified cache, a dummy hash for unknown addresses) without ever creating an
    /// account. The canonical address on success.
    pub async fn owner_sign_in(
        &self,
        user: &str,
        password: &Password,
        ctx: LoginContext<'_>,
    ) -> Result<Address, OwnerError> {
        if !self.self_service_enabled() {
            return Err(OwnerError::Disabled);
        }
        let outcome = self.login_inner(user, password, ctx.remote_ip, false).await;
        self.log_login(user, &ctx, &outcome);
        match outcome? {
            LoginOutcome::Accepted { address, .. } => Ok(Address::from_canonical(address)),
            LoginOutcome::Refused(Refusal::Throttled) => Err(OwnerError::Throttled),
            LoginOutcome::Refused(_) => Err(OwnerError::Credentials),
        }
    }

    /// The signed-in owner's account, or `None` once it is gone or blocked (which ends
    /// the session).
    pub async fn owner_account(&self, address: &str) -> Result<Option<Account>, OwnerError> {
        if !self.self_service_enabled() {
            return Err(OwnerError::Disabled);
        }
        match self.user(address).await {
            Ok(a) if !a.status.is_blocked() => Ok(Some(a)),
            Ok(_) | Err(AdminError::NotFound(_) | AdminError::Address(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
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
    ) -> Result<Address, OwnerError> {
        if !self.self_service_enabled() {
            return Err(OwnerError::Disabled);
        }
        password::check_rules(new, &self.config().registration.password)?;
        let address = self.owner_sign_in(user, current, ctx).await?;
        let (address, _) = self
            .set_password(address.as_str(), Some(new.clone()))
            .await?;
        tracing::info!(
            "event=self_service action=passwd address={}",
            self.private(address.as_str())
        );
        Ok(address)
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
        let address = self.owner_sign_in(user, current, ctx).await?;
        let allow_reuse = self.config().self_service.allow_reuse;
        let deleted = self
            .delete_user(address.as_str(), false, allow_reuse)
            .await?;
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
