//! Operator actions, shared by the CLI and the admin web page: accounts, the blocklist,
//! invite codes and the run-time registration mode. Each takes the [`Actor`] who acts
//! and records what it changed in the audit trail (`audit.rs`).
//!
//! ```text
//! add_user  set_password  block_user  unblock_user  delete_user  set_user_quota
//! blocklist_add  blocklist_remove  create_token  create_invite  token_detail  revoke_token
//! set_registration_mode
//! ```

use std::path::{Path, PathBuf};

use super::address::{self, Address, AddressError};
use super::audit::{blocked_text, yes_no, Actor, Change};
use super::password::{self, Password, PasswordError};
use super::register::{generate_code, hash_code, random_password};
use super::view::{Account, BlockedAddress, Invite, InviteDetail, InviteUsed, QuotaSetting};
use super::{Accounts, Route, Unavailable, MODE_SETTING};
use crate::config::{format_size, Quota, RegistrationMode, Seconds};
use crate::store::{CreateRefusal, NewAccount, QuotaMode};

/// Why an import file was refused as a whole (nothing was imported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A JSON Lines file: the line (from 1) and what is wrong with it.
    #[error("line {0}: {1}")]
    Line(usize, String),
    /// A madmail export (a JSON array): the entry (from 1) and what is wrong with it.
    #[error("entry {0}: {1}")]
    Entry(usize, String),
    #[error("not a madmail export (a JSON array): {0}")]
    Array(String),
}

/// Why an operator action did not happen. The text is for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Address(#[from] AddressError),
    #[error("{0}")]
    Password(#[from] PasswordError),
    #[error("there is no account {0}")]
    NotFound(String),
    #[error("{0} already has an account")]
    Exists(String),
    #[error("{0} is on the blocklist; take it off with `postern blocklist remove {0}` first")]
    Blocked(String),
    #[error("there is no invite {0}")]
    NoToken(String),
    #[error("an invite must expire in the future: give --expires a positive duration such as 72h")]
    DeadInvite,
    #[error("an account lifetime must be positive: give a duration such as 7d")]
    NoLifetime,
    #[error("{0}; nothing was imported")]
    BadImport(#[from] ParseError),
    #[error("cannot write the setup invite to {}: {1}", .0.display())]
    SetupFile(PathBuf, String),
    #[error("mail home of {address} ({path}): {message}")]
    MailHome {
        address: String,
        path: PathBuf,
        message: String,
    },
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl From<crate::store::StoreError> for AdminError {
    fn from(e: crate::store::StoreError) -> Self {
        AdminError::Unavailable(Unavailable::Store(e))
    }
}

impl AdminError {
    /// A temporary failure (the database), as opposed to a refusal of the request.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AdminError::Unavailable(_))
    }
}

/// An account the operator creates.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub address: String,
    /// `None`: generate one and return it.
    pub password: Option<Password>,
    pub quota: QuotaSetting,
    pub admin: bool,
    pub route: Route,
}

/// What `delete_user` did.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub account: Account,
    /// The mail home queued for removal; `None` when the mail is kept.
    pub mail_queued: Option<PathBuf>,
    pub still_blocked: bool,
}

/// Why an operator cannot set a quota of 0.
const ZERO_QUOTA: &str = "a quota of 0 would refuse all mail; use `unlimited` for no limit, \
                          or `postern user block` to stop mail";

/// An operator's quota setting: a size (`500M`, `1G`, bytes), `unlimited`, or `default`
/// (blank too): follow `quota.default`. The error says what is accepted.
pub fn parse_quota(s: &str) -> Result<QuotaSetting, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("default") {
        return Ok(QuotaSetting::Default);
    }
    match Quota::parse(s) {
        Ok(Quota::Limited(0)) => Err(ZERO_QUOTA.to_owned()),
        Ok(Quota::Limited(b)) => Ok(QuotaSetting::Explicit(b)),
        Ok(Quota::Unlimited) => Ok(QuotaSetting::Unlimited),
        Err(e) => Err(format!("{e}, \"unlimited\" or \"default\"")),
    }
}

/// A quota setting as the audit trail shows it: `default`, `500M`, `unlimited`.
fn quota_text(q: QuotaMode) -> String {
    match q {
        QuotaMode::Default => "default".into(),
        QuotaMode::Explicit(b) => format_size(b),
        QuotaMode::Unlimited => "unlimited".into(),
    }
}

impl Accounts {
    /// Creates an account. Operators may use reserved names (postmaster, ...); the other
    /// local-part rules and the password rules still apply.
    pub async fn add_user(
        &self,
        actor: &Actor,
        user: NewUser,
    ) -> Result<(Account, Option<Password>), AdminError> {
        let config = self.config();
        let address = self.address_for(&user.address)?;
        let mut rules = config.registration.username.clone();
        rules.reserved.clear();
        address.check_rules(&rules)?;
        address::mail_home(&config.mailbox.home, &address)?;
        let (password, generated) = match user.password {
            Some(p) => {
                password::check_rules(&p, &config.registration.password)?;
                (p, false)
            }
            None => (random_password(&config.registration.password), true),
        };
        let hash = self
            .hasher
            .hash(&password)
            .await
            .map_err(Unavailable::from)?;
        let now = self.now();
        let created = self
            .store
            .create_account(NewAccount {
                address: address.as_str().to_owned(),
                password_hash: hash,
                created_via: user.route.as_str(),
                now,
                token_hash: None,
                admin_if_none: config.registration.first_account_is_admin,
                admin: user.admin,
                quota: user.quota.to_store(),
            })
            .await?;
        match created {
            Ok(_) => crate::metrics::get().accounts_created(user.route.into(), 1),
            Err(CreateRefusal::Exists) => return Err(AdminError::Exists(address.to_string())),
            Err(CreateRefusal::Blocked) => return Err(AdminError::Blocked(address.to_string())),
            Err(CreateRefusal::Token(_)) => return Err(AdminError::NoToken(String::new())),
        }
        tracing::info!(
            "event=register route={} address={}",
            user.route.as_str(),
            self.private(address.as_str())
        );
        let row = self.user(address.as_str()).await?;
        let change = Change::new("account_add", address.to_string()).new_value(format!(
            "quota={} admin={}",
            quota_text(user.quota.to_store()),
            yes_no(row.admin)
        ));
        self.record(actor, change).await;
        Ok((row, generated.then_some(password)))
    }

    /// One account, blocked or not.
    pub async fn user(&self, address: &str) -> Result<Account, AdminError> {
        let address = self.admin_address(address)?;
        let row = self
            .store
            .account(address.as_str())
            .await?
            .ok_or_else(|| AdminError::NotFound(address.to_string()))?;
        let mut account = self.account_view(row);
        if let Some(invite) = &mut account.invite {
            invite.comment = self
                .store
                .token(Some(invite.id), None)
                .await?
                .and_then(|t| t.comment);
        }
        Ok(account)
    }

    /// Whether `address` is an unblocked administrator (the admin page's sessions).
    pub async fn is_active_admin(&self, address: &str) -> Result<bool, AdminError> {
        let address = self.admin_address(address)?;
        Ok(self
            .store
            .account(address.as_str())
            .await?
            .is_some_and(|row| row.admin && row.blocked.is_none()))
    }

    /// Accounts, optionally only blocked ones or those whose address contains `search`.
    pub async fn users(
        &self,
        blocked_only: bool,
        search: Option<String>,
    ) -> Result<Vec<Account>, AdminError> {
        let search = search
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
        let rows = self.store.accounts(blocked_only, search).await?;
        let comments = self.invite_comments(&rows).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let mut account = self.account_view(row);
                if let Some(InviteUsed { id, comment }) = &mut account.invite {
                    *comment = comments.get(id).cloned().flatten();
                }
                account
            })
            .collect())
    }

    /// The comments of the invites `rows` were made with, by invite id (read only when
    /// one was).
    pub(super) async fn invite_comments(
        &self,
        rows: &[crate::store::AccountRow],
    ) -> Result<std::collections::HashMap<i64, Option<String>>, AdminError> {
        if !rows.iter().any(|r| r.token_id.is_some()) {
            return Ok(std::collections::HashMap::new());
        }
        let tokens = self.store.tokens().await?;
        Ok(tokens.into_iter().map(|t| (t.id, t.comment)).collect())
    }

    /// Sets a new password (`None`: generate and return one). Cached logins end.
    pub async fn set_password(
        &self,
        actor: &Actor,
        address: &str,
        password: Option<Password>,
    ) -> Result<(Address, Option<Password>), AdminError> {
        let config = self.config();
        let address = self.admin_address(address)?;
        let (password, generated) = match password {
            Some(p) => {
                password::check_rules(&p, &config.registration.password)?;
                (p, false)
            }
            None => (random_password(&config.registration.password), true),
        };
        let hash = self
            .hasher
            .hash(&password)
            .await
            .map_err(Unavailable::from)?;
        if !self
            .store
            .set_password_hash(address.as_str(), &hash)
            .await?
        {
            return Err(AdminError::NotFound(address.to_string()));
        }
        self.cache.forget(address.as_str());
        let new = if generated { "generated" } else { "changed" };
        let change = Change::new("password_change", address.to_string()).new_value(new);
        self.record(actor, change).await;
        Ok((address, generated.then_some(password)))
    }

    /// Blocks an existing account: no login, no mail; its mail stays. Returns the
    /// account's address.
    pub async fn block_user(
        &self,
        actor: &Actor,
        address: &str,
        reason: Option<String>,
    ) -> Result<Address, AdminError> {
        let account = self.user(address).await?;
        Ok(self
            .block_address(actor, "account_block", account.address.as_str(), reason)
            .await?
            .0)
    }

    /// Lets a blocked account in again. False when it was not blocked.
    pub async fn unblock_user(
        &self,
        actor: &Actor,
        address: &str,
    ) -> Result<(Address, bool), AdminError> {
        let account = self.user(address).await?;
        self.unblock_address(actor, "account_unblock", account.address.as_str())
            .await
    }

    /// Deletes an account. Its address stays on the blocklist unless `allow_reuse`, so a
    /// stranger cannot register it and receive its mail. Unless `keep_mail`, its mail
    /// home joins the removal queue in the same transaction; this call never touches the
    /// file system.
    ///
    /// The rule for mail homes: deleting an account only queues its home. Removing one
    /// takes [`MailHomeRights`](super::maintenance::MailHomeRights), which only the CLI
    /// run as root has: `postern user delete` removes the home at once with
    /// [`Accounts::remove_queued_home`], and `postern maintenance run` (daily) empties
    /// the queue with [`Accounts::run_maintenance`]. The daemon (the admin page) never
    /// tries: under the packaged unit it has no access to mail homes, and trying would
    /// make the outcome depend on how it runs (removed in a development setup run as
    /// root, an error after the account is already gone under systemd). Queuing gives one
    /// predictable answer, and the queue keeps the removal from being forgotten.
    pub async fn delete_user(
        &self,
        actor: &Actor,
        address: &str,
        keep_mail: bool,
        allow_reuse: bool,
    ) -> Result<Deleted, AdminError> {
        self.delete_account(actor, address, keep_mail, allow_reuse, None)
            .await
    }

    /// [`delete_user`](Accounts::delete_user), recording `why` (maintenance's reason).
    pub(super) async fn delete_account(
        &self,
        actor: &Actor,
        address: &str,
        keep_mail: bool,
        allow_reuse: bool,
        why: Option<&str>,
    ) -> Result<Deleted, AdminError> {
        let address = self.admin_address(address)?;
        let home = if keep_mail {
            None
        } else {
            Some(address::mail_home(&self.config().mailbox.home, &address)?)
        };
        let row = self
            .store
            .delete_account(
                address.as_str(),
                allow_reuse,
                "deleted",
                self.now(),
                home.as_deref(),
            )
            .await?
            .ok_or_else(|| AdminError::NotFound(address.to_string()))?;
        self.cache.forget(address.as_str());
        let new = format!(
            "{}mail={} address={}",
            why.map(|w| format!("why={w} ")).unwrap_or_default(),
            if keep_mail { "kept" } else { "queued" },
            if allow_reuse { "reusable" } else { "blocked" }
        );
        let old = if row.admin {
            "account admin=yes"
        } else {
            "account"
        };
        let change = Change::new("account_delete", address.to_string())
            .old(old)
            .new_value(new);
        self.record(actor, change).await;
        Ok(Deleted {
            account: self.account_view(row),
            mail_queued: home,
            still_blocked: !allow_reuse,
        })
    }

    /// Measures an account's Maildir (every folder's `cur` and `new`): bytes, from the
    /// `S=` size Dovecot writes into file names where present, and messages. `None` when
    /// the mail home does not exist yet.
    pub async fn measure_mail_home(&self, address: &str) -> Result<Option<(u64, u64)>, AdminError> {
        let config = self.config();
        let address = self.admin_address(address)?;
        let home = address::mail_home(&config.mailbox.home, &address)?;
        tokio::task::spawn_blocking(move || measure_maildir(&home.join("Maildir")))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            .map_err(|e| AdminError::MailHome {
                address: address.to_string(),
                path: PathBuf::from(&config.mailbox.home),
                message: e.to_string(),
            })
    }

    /// Sets how an account's quota is decided; returns the account as it now is.
    pub async fn set_user_quota(
        &self,
        actor: &Actor,
        address: &str,
        quota: QuotaSetting,
    ) -> Result<Account, AdminError> {
        let address = self.admin_address(address)?;
        let before = self.store.account(address.as_str()).await?;
        if !self
            .store
            .set_quota(address.as_str(), quota.to_store())
            .await?
        {
            return Err(AdminError::NotFound(address.to_string()));
        }
        let (old, new) = (before.map(|r| r.quota), quota.to_store());
        if old != Some(new) {
            let mut change = Change::new("quota_change", address.to_string());
            if let Some(old) = old {
                change = change.old(quota_text(old));
            }
            self.record(actor, change.new_value(quota_text(new))).await;
        }
        self.user(address.as_str()).await
    }

    /// Grants or revokes the admin flag; returns the account's address.
    pub async fn set_user_admin(
        &self,
        actor: &Actor,
        address: &str,
        admin: bool,
    ) -> Result<Address, AdminError> {
        let address = self.admin_address(address)?;
        let before = self.store.account(address.as_str()).await?;
        if !self.store.set_admin(address.as_str(), admin).await? {
            return Err(AdminError::NotFound(address.to_string()));
        }
        let old = before.map(|r| r.admin);
        if old != Some(admin) {
            let mut change = Change::new("admin_flag", address.to_string());
            if let Some(old) = old {
                change = change.old(yes_no(old));
            }
            self.record(actor, change.new_value(yes_no(admin))).await;
        }
        Ok(address)
    }

    // ----- blocklist ------------------------------------------------------------------

    /// Puts an address (with or without an account) on the blocklist. True when new.
    pub async fn blocklist_add(
        &self,
        actor: &Actor,
        address: &str,
        reason: Option<String>,
    ) -> Result<(Address, bool), AdminError> {
        self.block_address(actor, "blocklist_add", address, reason)
            .await
    }

    /// Takes an address off the blocklist. True when it was there.
    pub async fn blocklist_remove(
        &self,
        actor: &Actor,
        address: &str,
    ) -> Result<(Address, bool), AdminError> {
        self.unblock_address(actor, "blocklist_remove", address)
            .await
    }

    /// Blocks an address and records `action` when that changed something: a new entry
    /// or another reason.
    async fn block_address(
        &self,
        actor: &Actor,
        action: &'static str,
        address: &str,
        reason: Option<String>,
    ) -> Result<(Address, bool), AdminError> {
        let address = self.admin_address(address)?;
        let before = self.store.blocklist_entry(address.as_str()).await?;
        let added = self
            .store
            .block(address.as_str(), reason.as_deref(), self.now())
            .await?;
        self.cache.forget(address.as_str());
        let old_reason = before.and_then(|b| b.reason);
        let old = if added {
            Some("not blocked".to_owned())
        } else if reason.is_some() && old_reason != reason {
            Some(blocked_text(old_reason.as_deref()))
        } else {
            None
        };
        if let Some(old) = old {
            let change = Change::new(action, address.to_string())
                .old(old)
                .new_value(blocked_text(reason.as_deref()));
            self.record(actor, change).await;
        }
        Ok((address, added))
    }

    /// Unblocks an address and records `action` when it was blocked.
    async fn unblock_address(
        &self,
        actor: &Actor,
        action: &'static str,
        address: &str,
    ) -> Result<(Address, bool), AdminError> {
        let address = self.admin_address(address)?;
        let before = self.store.blocklist_entry(address.as_str()).await?;
        let removed = self.store.unblock(address.as_str()).await?;
        if removed {
            let old = blocked_text(before.and_then(|b| b.reason).as_deref());
            let change = Change::new(action, address.to_string())
                .old(old)
                .new_value("not blocked");
            self.record(actor, change).await;
        }
        Ok((address, removed))
    }

    pub async fn blocklist(&self) -> Result<Vec<BlockedAddress>, AdminError> {
        let entries = self.store.blocklist().await?;
        Ok(entries.into_iter().map(BlockedAddress::from_row).collect())
    }

    // ----- invites --------------------------------------------------------------------

    /// Creates an invite code; the code is returned once and only its hash is stored.
    pub async fn create_token(
        &self,
        actor: &Actor,
        uses: u32,
        expires_in: Option<Seconds>,
        comment: Option<String>,
    ) -> Result<(Invite, String), AdminError> {
        self.create_invite(actor, uses, expires_in, None, comment)
            .await
    }

    /// Creates an invite code (as [`create_token`](Accounts::create_token)) whose
    /// accounts are temporary: each one made with it expires `account_lifetime` after its
    /// creation, and the maintenance run deletes it then.
    pub async fn create_invite(
        &self,
        actor: &Actor,
        uses: u32,
        expires_in: Option<Seconds>,
        account_lifetime: Option<Seconds>,
        comment: Option<String>,
    ) -> Result<(Invite, String), AdminError> {
        if expires_in.is_some_and(|d| d.0 == 0) {
            return Err(AdminError::DeadInvite);
        }
        if account_lifetime.is_some_and(|d| d.0 == 0) {
            return Err(AdminError::NoLifetime);
        }
        let lifetime = account_lifetime.map(|d| i64::try_from(d.0).unwrap_or(i64::MAX));
        let code = generate_code();
        let hash = hash_code(&code);
        let now = self.now();
        let expires_at =
            expires_in.map(|d| now.saturating_add(i64::try_from(d.0).unwrap_or(i64::MAX)));
        let uses = i64::from(uses.max(1));
        let id = self
            .store
            .create_token(&hash, comment.as_deref(), uses, expires_at, now, lifetime)
            .await?;
        let row = self
            .store
            .token(Some(id), None)
            .await?
            .ok_or_else(|| AdminError::NoToken(id.to_string()))?;
        let mut new = format!(
            "uses={uses} expires={} comment={}",
            expires_at.map_or_else(|| "never".to_owned(), rfc3339),
            row.comment.as_deref().unwrap_or("-")
        );
        if let Some(l) = account_lifetime {
            new.push_str(&format!(" account_lifetime={l}"));
        }
        let change = Change::new("invite_create", format!("invite:{id}")).new_value(new);
        self.record(actor, change).await;
        Ok((Invite::from_row(row, now), code))
    }

    /// Every invite, with its status now.
    pub async fn tokens(&self) -> Result<Vec<Invite>, AdminError> {
        let now = self.now();
        let rows = self.store.tokens().await?;
        Ok(rows.into_iter().map(|t| Invite::from_row(t, now)).collect())
    }

    /// The invite named by its id or its code.
    async fn find_token(&self, code_or_id: &str) -> Result<crate::store::TokenRow, AdminError> {
        let arg = code_or_id.trim();
        let hash = hash_code(arg);
        self.store
            .token(arg.parse::<i64>().ok(), Some(&hash))
            .await?
            .ok_or_else(|| AdminError::NoToken(code_or_id.to_owned()))
    }

    /// An invite named by its id or its code, with the accounts made with it.
    pub async fn token_detail(&self, code_or_id: &str) -> Result<InviteDetail, AdminError> {
        let row = self.find_token(code_or_id).await?;
        let accounts = self.store.token_accounts(row.id).await?;
        Ok(InviteDetail {
            invite: Invite::from_row(row, self.now()),
            accounts: accounts
                .into_iter()
                .map(|(a, at)| (Address::from_canonical(a), at))
                .collect(),
        })
    }

    /// Revokes an invite named by its id or its code. True when this call revoked it,
    /// false when it was revoked already.
    pub async fn revoke_token(
        &self,
        actor: &Actor,
        code_or_id: &str,
    ) -> Result<(Invite, bool), AdminError> {
        let row = self.find_token(code_or_id).await?;
        let id = row.id;
        let status = Invite::from_row(row.clone(), self.now()).status;
        let revoked = self.store.revoke_token(id, self.now()).await?;
        if revoked {
            let change = Change::new("invite_revoke", format!("invite:{id}"))
                .old(format!(
                    "status={status} comment={}",
                    row.comment.as_deref().unwrap_or("-")
                ))
                .new_value("status=revoked");
            self.record(actor, change).await;
        }
        let invite = self
            .store
            .token(Some(id), None)
            .await?
            .map(|t| Invite::from_row(t, self.now()))
            .ok_or_else(|| AdminError::NoToken(code_or_id.to_owned()))?;
        Ok((invite, revoked))
    }

    /// The sign-up link for an invite code.
    pub fn signup_link(&self, code: &str) -> String {
        format!("{}/new?token={code}", self.config().public_base_url())
    }

    // ----- registration mode ----------------------------------------------------------

    /// Sets the run-time registration mode (`None`: back to the configuration's). Takes
    /// effect at once in every process sharing the database, and survives restarts.
    pub async fn set_registration_mode(
        &self,
        actor: &Actor,
        mode: Option<RegistrationMode>,
    ) -> Result<RegistrationMode, AdminError> {
        let before = self.registration_override().await?;
        self.store
            .set_setting(MODE_SETTING, mode.map(RegistrationMode::as_str))
            .await?;
        let now = self.registration_mode().await?;
        if before != mode {
            let configured = self.config().registration.mode;
            let text = |m: Option<RegistrationMode>| match m {
                Some(m) => m.to_string(),
                None => format!("configured ({configured})"),
            };
            let change = Change::new("registration_mode", "registration".to_owned())
                .old(text(before))
                .new_value(text(mode));
            self.record(actor, change).await;
        }
        Ok(now)
    }

    /// The run-time override, if one is set.
    pub async fn registration_override(&self) -> Result<Option<RegistrationMode>, AdminError> {
        Ok(self
            .store
            .setting(MODE_SETTING)
            .await?
            .as_deref()
            .and_then(RegistrationMode::parse))
    }

    /// Addresses the operator names: normalized and in a served domain, no creation rules.
    fn admin_address(&self, address: &str) -> Result<Address, AddressError> {
        self.address_for(address)
    }
}

/// A Unix time as RFC 3339 (UTC).
fn rfc3339(t: i64) -> String {
    let secs = u64::try_from(t).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

fn measure_maildir(maildir: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let top = match std::fs::read_dir(maildir) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut folders = vec![maildir.to_path_buf()];
    for entry in top {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') && entry.file_type()?.is_dir() {
            folders.push(entry.path());
        }
    }
    let (mut bytes, mut messages) = (0u64, 0u64);
    for folder in folders {
        for sub in ["cur", "new"] {
            let dir = match std::fs::read_dir(folder.join(sub)) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for file in dir {
                let file = file?;
                if !file.file_type()?.is_file() {
                    continue;
                }
                let name = file.file_name();
                let size = size_from_name(&name.to_string_lossy());
                bytes += match size {
                    Some(s) => s,
                    None => file.metadata()?.len(),
                };
                messages += 1;
            }
        }
    }
    Ok(Some((bytes, messages)))
}

/// The `S=<size>` field of a Maildir file name (`1700000000.M1P2.host,S=1234,W=1260:2,S`).
fn size_from_name(name: &str) -> Option<u64> {
    let base = name.split(':').next()?;
    base.split(',')
        .find_map(|f| f.strip_prefix("S="))
        .and_then(|s| s.parse().ok())
}
