//! Registration outside of login: `/new` (with or without an invite code), and the
//! invite codes themselves.
//!
//! ```text
//! open         anyone may register; an invite code, if given, must be valid and is used
//! invite_only  a valid invite code is required
//! closed       "registration is currently disabled." (invites too: closed means closed)
//! ```

use rand::Rng;
use sha2::{Digest, Sha256};

use super::address::{self, Address, AddressError};
use super::password::{self, Password, PasswordError};
use super::{Accounts, CreationRefused, Paused, Route, Unavailable};
use crate::config::{PasswordRules, RegistrationMode};
use crate::logfmt;
use crate::metrics::SignupRefusal;
use crate::store::{CreateRefusal, NewAccount, QuotaMode, TokenProblem};

/// Exactly what closed mode answers, as operators know it.
pub const CLOSED_MESSAGE: &str = "registration is currently disabled.";

/// A sign-up. Absent username or password means "generate one".
#[derive(Debug, Clone, Default)]
pub struct RegisterRequest {
    /// A local part, or a full address in a served domain.
    pub username: Option<String>,
    pub password: Option<Password>,
    /// The invite code, as typed or taken from the link.
    pub token: Option<String>,
}

/// A new account and the password to hand to its owner.
#[derive(Debug, Clone)]
pub struct Registered {
    pub address: String,
    pub password: Password,
}

/// Why a sign-up was refused. The text is shown to the person signing up.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{CLOSED_MESSAGE}")]
    Closed,
    #[error("an invite code is required to register.")]
    TokenRequired,
    #[error("{}", token_text(*.0))]
    Token(TokenProblem),
    #[error("{0}")]
    Address(#[from] AddressError),
    #[error("{0}")]
    Password(#[from] PasswordError),
    /// Exists or is on the blocklist: one wording for both, so nobody learns which.
    #[error("this address is not available.")]
    Taken,
    #[error("the server cannot register accounts right now, please try again later.")]
    Unavailable(#[from] Unavailable),
    /// `registration.max_new_per_hour` was reached.
    #[error("too many new accounts right now, please try again later.")]
    Limited,
    /// The sign-up guard (disk or load): a temporary refusal, logged by the guard.
    #[error("{0}")]
    Paused(Paused),
}

impl RegisterError {
    /// The `reason` label of `postern_signups_refused_total`.
    pub fn metric_reason(&self) -> SignupRefusal {
        match self {
            RegisterError::Closed => SignupRefusal::Closed,
            RegisterError::TokenRequired => SignupRefusal::InviteRequired,
            RegisterError::Token(_) => SignupRefusal::InviteInvalid,
            RegisterError::Address(_) => SignupRefusal::Address,
            RegisterError::Password(_) => SignupRefusal::Password,
            RegisterError::Taken => SignupRefusal::Taken,
            RegisterError::Limited => SignupRefusal::Limited,
            RegisterError::Unavailable(_) => SignupRefusal::TempFail,
            RegisterError::Paused(_) => SignupRefusal::Paused,
        }
    }
}

fn token_text(p: TokenProblem) -> &'static str {
    match p {
        TokenProblem::Unknown => "this invite code is not valid.",
        TokenProblem::Expired => "this invite code has expired.",
        TokenProblem::UsedUp => "this invite code has been used up.",
        TokenProblem::Revoked => "this invite code has been revoked.",
    }
}

/// SHA-256 of an invite code: what the database stores. Codes carry over 100 bits of
/// randomness, so a fast hash is enough to make a stolen database useless for signing up.
pub fn hash_code(code: &str) -> [u8; 32] {
    Sha256::digest(code.trim().as_bytes()).into()
}

const CODE_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A new invite code: 22 characters from an alphabet without look-alikes (110 bits).
pub fn generate_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..22)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// A random local part of `len` characters of `a-z0-9`, as Delta Chat's relays hand out.
pub fn random_local(len: usize) -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
        .collect()
}

/// A random password that meets `rules`: at least 20 characters (as long as allowed).
pub fn random_password(rules: &PasswordRules) -> Password {
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-_.!#%+=";
    let len = rules.min_length.max(20).min(rules.max_length);
    let mut rng = rand::rngs::OsRng;
    loop {
        let candidate: String = (0..len)
            .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
            .collect();
        let candidate = Password::new(candidate);
        if password::check_rules(&candidate, rules).is_ok() {
            return candidate;
        }
    }
}

/// What an invite code can do now, for the sign-up page (`/new?token=CODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteCheck {
    /// It can be used this many more times.
    Live { uses_left: i64 },
    /// Unknown, expired, used up or revoked: the reason is the text `/new` answers.
    Dead(TokenProblem),
}

impl InviteCheck {
    /// The sentence for a dead invite (the same `POST /new` answers with).
    pub fn problem_text(self) -> Option<String> {
        match self {
            InviteCheck::Live { .. } => None,
            InviteCheck::Dead(p) => Some(RegisterError::Token(p).to_string()),
        }
    }
}

/// The file beside the database that holds the setup invite's code (mode 0600).
pub const SETUP_INVITE_FILE: &str = "setup-invite";

impl Accounts {
    fn setup_invite_path(&self) -> std::path::PathBuf {
        let config = self.config();
        config
            .database
            .sqlite_path()
            .parent()
            .map_or_else(|| SETUP_INVITE_FILE.into(), |d| d.join(SETUP_INVITE_FILE))
    }

    /// While no active administrator exists: the one-time setup invite (reused when its
    /// file exists, else created and written to `setup-invite` beside the database, mode
    /// 0600). The file is the invite (no row in the invites table): its first use creates
    /// an administrator and removes it. `None` (and no file) once an administrator exists.
    pub async fn ensure_setup_invite(&self) -> Result<Option<String>, super::AdminError> {
        let path = self.setup_invite_path();
        // Not a scan of every account: at a million accounts that held hundreds of MiB
        // in the daemon from its start on (docs/performance.md).
        let has_admin = self
            .store
            .has_active_admin()
            .await
            .map_err(Unavailable::from)?;
        if has_admin {
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        if let Ok(code) = std::fs::read_to_string(&path) {
            let code = code.trim().to_owned();
            if !code.is_empty() {
                return Ok(Some(code));
            }
        }
        let code = generate_code();
        write_private(&path, &format!("{code}\n"))
            .map_err(|e| super::AdminError::SetupFile(path.clone(), e.to_string()))?;
        tracing::info!("event=setup_invite result=created");
        Ok(Some(code))
    }

    /// Whether `token` is the setup invite's code hash.
    fn is_setup_token(&self, token: &[u8; 32]) -> bool {
        std::fs::read_to_string(self.setup_invite_path())
            .is_ok_and(|code| !code.trim().is_empty() && hash_code(&code) == *token)
    }

    /// Whether the invite `code` can be used now, and how often; the setup invite is
    /// live for one use. Changes nothing.
    pub async fn check_invite(&self, code: &str) -> Result<InviteCheck, Unavailable> {
        let hash = hash_code(code);
        if self.is_setup_token(&hash) {
            return Ok(InviteCheck::Live { uses_left: 1 });
        }
        Ok(match self.store.token(None, Some(&hash)).await? {
            None => InviteCheck::Dead(TokenProblem::Unknown),
            Some(row) => match row.problem(self.now()) {
                Some(p) => InviteCheck::Dead(p),
                None => InviteCheck::Live {
                    uses_left: row.max_uses.saturating_sub(row.uses),
                },
            },
        })
    }

    /// Registers an account from `/new` (or anything else that signs people up).
    pub async fn register(&self, req: RegisterRequest) -> Result<Registered, RegisterError> {
        let outcome = self.register_inner(req).await;
        if let Err(e) = &outcome {
            crate::metrics::get().signup_refused(e.metric_reason());
        }
        match &outcome {
            // The sign-up guard logs its pause itself, once a minute.
            Err(e @ RegisterError::Paused(_)) => {
                tracing::debug!("event=register result=fail reason={}", logfmt::value(e));
            }
            Err(e) => tracing::info!("event=register result=fail reason={}", logfmt::value(e)),
            Ok(_) => {}
        }
        outcome
    }

    async fn register_inner(&self, req: RegisterRequest) -> Result<Registered, RegisterError> {
        let config = self.config();
        let token = req
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(hash_code);
        let setup_guard = match &token {
            Some(t) if self.is_setup_token(t) => Some(self.setup_lock.lock().await),
            _ => None,
        };
        // Under the lock, the file is looked at again: only one sign-up uses it.
        let setup = setup_guard.is_some() && token.as_ref().is_some_and(|t| self.is_setup_token(t));
        let token = if setup { None } else { token };
        match self.registration_mode().await? {
            _ if setup => {}
            RegistrationMode::Closed => return Err(RegisterError::Closed),
            RegistrationMode::InviteOnly if token.is_none() => {
                return Err(RegisterError::TokenRequired)
            }
            _ => {}
        }
        let password = match req.password {
            Some(p) => {
                password::check_rules(&p, &config.registration.password)?;
                p
            }
            None => random_password(&config.registration.password),
        };
        let route = if token.is_some() || setup {
            Route::Invite
        } else {
            Route::Web
        };
        // A generated name may collide with an existing one: draw again a few times.
        let attempts = if req.username.is_some() { 1 } else { 8 };
        for _ in 0..attempts {
            let address = match &req.username {
                Some(name) => self.address_for(name)?,
                None => self.address_for(&random_local(config.registration.random_local_length))?,
            };
            address.check_rules(&config.registration.username)?;
            address::mail_home(&config.mailbox.home, &address)?;
            match self.admit_creation(route, None) {
                Ok(()) => {}
                Err(CreationRefused::Paused(p)) => return Err(RegisterError::Paused(p)),
                Err(CreationRefused::Limited(_)) => return Err(RegisterError::Limited),
            }
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
                    password_hash: hash.clone(),
                    created_via: route.as_str(),
                    now,
                    token_hash: token,
                    admin_if_none: false,
                    admin: setup,
                    quota: QuotaMode::Default,
                })
                .await
                .map_err(Unavailable::from)?;
            match created {
                Ok(_) => {
                    crate::metrics::get().accounts_created(route.into(), 1);
                    tracing::info!(
                        "event=register route={} address={}",
                        route.as_str(),
                        self.private(address.as_str())
                    );
                    if setup {
                        let _ = std::fs::remove_file(self.setup_invite_path());
                        tracing::info!(
                            "event=setup_invite result=used admin={}",
                            self.private(address.as_str())
                        );
                    }
                    self.cache.insert(address.as_str(), &password, &hash);
                    return Ok(Registered {
                        address: address.as_str().to_owned(),
                        password,
                    });
                }
                Err(CreateRefusal::Exists) if req.username.is_none() => continue,
                Err(CreateRefusal::Exists | CreateRefusal::Blocked) => {
                    return Err(RegisterError::Taken)
                }
                Err(CreateRefusal::Token(p)) => return Err(RegisterError::Token(p)),
            }
        }
        Err(RegisterError::Taken)
    }

    /// A local part gets the first served domain; a full address must be in a served one.
    pub(crate) fn address_for(&self, name: &str) -> Result<Address, AddressError> {
        let config = self.config();
        if name.contains('@') {
            Address::parse(name, &config.domains)
        } else {
            let domain = config.domains.first().ok_or(AddressError::BadDomain)?;
            Address::from_parts(name.trim(), domain, &config.domains)
        }
    }
}

/// Writes `text` to a new file only its owner may read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CharClass;

    #[test]
    fn generated_values_have_the_promised_shape() {
        let code = generate_code();
        assert_eq!(code.len(), 22);
        assert_ne!(generate_code(), code);
        let local = random_local(9);
        assert_eq!(local.len(), 9);
        assert!(local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let rules = PasswordRules {
            min_length: 9,
            max_length: 128,
            require: vec![
                CharClass::Upper,
                CharClass::Lower,
                CharClass::Digit,
                CharClass::Special,
            ],
        };
        for _ in 0..50 {
            let p = random_password(&rules);
            assert_eq!(password::check_rules(&p, &rules), Ok(()));
            assert_eq!(p.expose().len(), 20);
        }
        assert_eq!(hash_code(" abc "), hash_code("abc"));
    }
}
