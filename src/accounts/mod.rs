//! The accounts core: every rule postern enforces lives here, once. The dict, SASL,
//! policy and HTTP adapters and the CLI translate their bytes into these calls and the
//! answers back; none of them decides anything.
//!
//! ```text
//! login(user, password)      verify (cache, argon2, legacy re-hash) or create just in time
//! userdb(user)               home / uid / gid / quota for Dovecot
//! register(...)              /new, invites          (register.rs)
//! add_user, block, delete... operator actions       (admin.rs), each recorded in the
//!                            audit trail with its Actor     (audit.rs)
//! export_accounts, import_lines  JSON Lines export and import (export.rs)
//! Account, Invite, BlockedAddress, Address   what adapters get back (view.rs): no
//!                            store record and no password hash leaves the core
//! ```
//!
//! Failure is never an open door: a store error or a full hash queue is
//! [`Unavailable`], which every adapter turns into a temporary failure, and no error path
//! creates, deletes or unblocks anything.

pub mod address;
pub mod admin;
pub mod audit;
pub mod capacity;
pub mod copy;
pub mod dict_watch;
pub mod export;
pub mod health;
pub mod limits;
pub mod mailbox;
pub mod maintenance;
pub mod owner;
pub mod password;
pub mod policy;
pub mod register;
mod shared;
pub mod view;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, RegistrationMode};
use crate::logfmt;
pub use crate::metrics::LoginVia;
use crate::metrics::{CreationRoute, LoginResult};
use crate::store::{AccountRow, CreateRefusal, LoginRow, NewAccount, QuotaMode, Store, StoreError};
use address::Address;
use limits::{
    client_key, Admission, ClientLimiter, FailureLimiter, Guard, HourlyCap, PaidTags, TokenBuckets,
};
use password::{Busy, Hasher, HasherError, Password, Verdict, VerifiedCache};
use view::Quota;

pub use admin::{AdminError, NewUser};
pub use audit::{Actor, AuditEntry, AuditQuery};
pub use capacity::Paused;
pub use owner::{OwnerError, SignedIn};
pub use policy::{PolicyRequest, PolicyVerdict};
pub use register::{InviteCheck, RegisterError, RegisterRequest, Registered};
pub use view::{
    Account, BlockedAddress, Invite, InviteDetail, InviteStatus, InviteUsed, QuotaSetting,
    QuotaSource, Status, Usage,
};

/// Why the core could not be set up: the database or the argon2 parameters.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hasher(#[from] HasherError),
}

/// The key under which the run-time registration mode is stored.
const MODE_SETTING: &str = "registration_mode";
/// last_login is written at most this often per account.
const LOGIN_WRITE_INTERVAL: i64 = 3600;
/// Most verified (address, password) pairs kept in memory.
const CACHE_ENTRIES: usize = 200_000;

/// A temporary failure: the store or the hash pool could not answer. Adapters answer
/// "try again later" (Dovecot `F`, Postfix `DEFER_IF_PERMIT`, HTTP 503).
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The sign-up guard: the disk is nearly full or the load too high (`capacity.rs`).
    #[error(transparent)]
    Paused(#[from] Paused),
}

/// Why `admit_creation` said no.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CreationRefused {
    /// The sign-up guard: no account for anyone now.
    Paused(Paused),
    /// A creation limit: try again after this long.
    Limited(Duration),
}

/// How an account came into being; stored with it and shown in `user show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// First login with an unknown address (IMAP, SMTP AUTH).
    Jit,
    /// `/new` without an invite.
    Web,
    /// `/new` with an invite code.
    Invite,
    Cli,
    /// The admin web page.
    Admin,
    /// Imported from another server.
    Import,
}

/// The series a creation counts in (`postern_accounts_created_total{route=...}`).
impl From<Route> for CreationRoute {
    fn from(r: Route) -> CreationRoute {
        match r {
            Route::Jit => CreationRoute::Jit,
            Route::Web => CreationRoute::Web,
            Route::Invite => CreationRoute::Invite,
            Route::Cli => CreationRoute::Cli,
            Route::Admin => CreationRoute::Admin,
            Route::Import => CreationRoute::Import,
        }
    }
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Jit => "jit",
            Route::Web => "web",
            Route::Invite => "invite",
            Route::Cli => "cli",
            Route::Admin => "admin",
            Route::Import => "import",
        }
    }
}

/// Who is logging in, for logs and brute-force limits.
#[derive(Debug, Clone, Copy)]
pub struct LoginContext<'a> {
    /// `imap`, `smtp`, `lmtp`, ... as the peer names it.
    pub service: &'a str,
    pub remote_ip: Option<IpAddr>,
    /// The adapter it came through, for `postern_logins_total`.
    pub via: LoginVia,
}

impl Default for LoginContext<'_> {
    fn default() -> Self {
        LoginContext {
            service: "-",
            remote_ip: None,
            via: LoginVia::Dict,
        }
    }
}

/// The answer to a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Let them in, as this canonical address.
    Accepted { address: String, created: bool },
    /// Keep them out. Adapters must not tell the client which reason it was.
    Refused(Refusal),
}

/// Why a login was refused (for logs; clients all see the same answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadPassword,
    Blocked,
    /// No such account, and none may be created now.
    Unknown,
    /// The address or password does not meet the creation rules.
    Invalid,
    /// Too many failures for this account or client lately; not checked.
    Throttled,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::BadPassword => "bad_password",
            Refusal::Blocked => "blocked",
            Refusal::Unknown => "unknown",
            Refusal::Invalid => "invalid",
            Refusal::Throttled => "throttled",
        }
    }
}

/// The answer to an admin page sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSignIn {
    Admin(String),
    /// The password is right, but the account is not an administrator.
    NotAdmin,
    Refused(Refusal),
}

/// What Dovecot's userdb needs to deliver to and serve an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserdbEntry {
    pub address: String,
    pub home: PathBuf,
    pub uid: String,
    pub gid: String,
    /// `None` means unlimited.
    pub quota_bytes: Option<u64>,
}

/// Seconds since the Unix epoch, from a clock tests can replace.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

/// The accounts core, shared by every adapter of one process.
pub struct Accounts {
    config: RwLock<Arc<Config>>,
    store: Store,
    hasher: Hasher,
    cache: VerifiedCache,
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Failures per (account, client) and per account; slow mode (`login.*`).
    guard: Guard,
    ip_failures: FailureLimiter,
    send_limiter: TokenBuckets,
    /// What each sender's last shared send token paid for (`shared.rs`).
    paid_tags: PaidTags,
    /// Sign-ups (`/new`) per client, `http.new_per_minute`.
    signups: ClientLimiter,
    /// Admin sign-ins per client, `http.admin_logins_per_minute`.
    admin_sign_ins: ClientLimiter,
    /// Just-in-time creations per client, `registration.jit_per_minute`.
    jit_creations: ClientLimiter,
    /// New accounts per hour on every route, `registration.max_new_per_hour`.
    new_per_hour: HourlyCap,
    dummy_hash: tokio::sync::OnceCell<String>,
    /// Which throttled requests have had their INFO line in this window.
    repeats: logfmt::Repeats,
    /// The sign-up guard's reading of the disk and the load.
    capacity: capacity::Gauge,
    /// Held while the setup invite is being used.
    setup_lock: tokio::sync::Mutex<()>,
    /// Logins against Dovecot's dict writes: lost last_login/quota_clone writes.
    dict_watch: dict_watch::DictWatch,
    clock: Clock,
}

/// A request a per-client limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// How long until this client may try again.
    pub wait: Duration,
    /// The first refusal for this client in this minute: logged at INFO; the repeats at
    /// DEBUG.
    pub news: bool,
}

impl Accounts {
    /// Opens the configured database and sets up the core over it: what `postern serve`
    /// and the operator commands start with.
    pub fn open(config: Config) -> Result<Accounts, OpenError> {
        let store = Store::open(&config.database)?;
        Ok(Self::new(config, store)?)
    }

    pub fn new(config: Config, store: Store) -> Result<Accounts, HasherError> {
        Self::with_clock(config, store, system_clock())
    }

    pub fn with_clock(config: Config, store: Store, clock: Clock) -> Result<Accounts, HasherError> {
        let window = config.login.failure_window.duration();
        Ok(Accounts {
            hasher: Hasher::new(&config.argon2)?,
            cache: VerifiedCache::new(
                config.argon2.cache_ttl.duration(),
                config.argon2.cache_max_age.duration(),
                CACHE_ENTRIES,
            ),
            config: RwLock::new(Arc::new(config)),
            store,
            creating: Mutex::new(HashMap::new()),
            guard: Guard::new(window),
            ip_failures: FailureLimiter::new(window),
            send_limiter: TokenBuckets::default(),
            paid_tags: PaidTags::default(),
            signups: ClientLimiter::default(),
            admin_sign_ins: ClientLimiter::default(),
            jit_creations: ClientLimiter::default(),
            new_per_hour: HourlyCap::default(),
            dummy_hash: tokio::sync::OnceCell::new(),
            repeats: logfmt::Repeats::default(),
            capacity: capacity::Gauge::default(),
            setup_lock: tokio::sync::Mutex::new(()),
            dict_watch: dict_watch::DictWatch::default(),
            clock,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies a re-read configuration (rules, registration, quota defaults). The
    /// database path and the argon2 cost of the running process stay as they were.
    pub fn replace_config(&self, config: Config) {
        let mut guard = match self.config.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(config);
    }

    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The quota in force for a stored account: the one place the rule is applied.
    /// The quota an account with this setting has under the configured default.
    fn quota_of(&self, mode: QuotaMode) -> Quota {
        Quota::effective(mode, self.config().quota.default.bytes())
    }

    /// The operator's view of a stored account.
    fn account_view(&self, row: AccountRow) -> Account {
        Account::from_row(row, self.config().quota.default.bytes())
    }

    fn parse(&self, user: &str) -> Result<Address, address::AddressError> {
        Address::parse(user, &self.config().domains)
    }

    /// An address, username, IP or path for a log line: escaped, or `-` under
    /// `log.no_log` (logfmt does both).
    fn private<T: std::fmt::Display>(&self, value: T) -> logfmt::Shown<T> {
        logfmt::private(value, self.config().log.no_log)
    }

    /// Counts one sign-up attempt from `client` against `http.new_per_minute`, before
    /// anything else is looked at.
    pub fn admit_signup(&self, client: Option<IpAddr>) -> Result<(), Throttled> {
        let per_minute = self.config().http.new_per_minute;
        self.admit(&self.signups, "new", client, per_minute)
    }

    /// Counts one admin sign-in attempt from `client` against
    /// `http.admin_logins_per_minute`.
    pub fn admit_admin_sign_in(&self, client: Option<IpAddr>) -> Result<(), Throttled> {
        let per_minute = self.config().http.admin_logins_per_minute;
        self.admit(&self.admin_sign_ins, "admin_signin", client, per_minute)
    }

    fn admit(
        &self,
        limiter: &ClientLimiter,
        what: &str,
        client: Option<IpAddr>,
        per_minute: u32,
    ) -> Result<(), Throttled> {
        let now = Instant::now();
        limiter.take(client, per_minute, now).map_err(|wait| {
            let key = format!("{what} {}", limits::client_key(client));
            Throttled {
                wait,
                news: self.repeats.first(&key, Duration::from_secs(60), now),
            }
        })
    }

    /// Whether a throttled login gets an INFO line: the first one for each throttled
    /// account and client pair in a failure window does; the repeats go to DEBUG, so
    /// guessing at a throttle cannot flood the log.
    fn throttle_is_news(&self, user: &str, ip: Option<IpAddr>) -> bool {
        let window = self.config().login.failure_window.duration();
        let account = self
            .parse(user)
            .map_or_else(|_| user.to_owned(), |a| a.as_str().to_owned());
        let key = format!("login {account} {}", client_key(ip));
        self.repeats.first(&key, window, Instant::now())
    }

    /// Counts one account about to be created by `route` for `client` against the
    /// creation limits: first the sign-up guard (`registration.min_free_disk`,
    /// `max_load_1m`: no account for anyone while either is exceeded), then
    /// `registration.jit_per_minute` per client IP for just-in-time creations that carry
    /// one (SMTP AUTH, the Lua API; the dict passdb carries none), and
    /// `registration.max_new_per_hour` across every route but the operator's. The one
    /// place register and just-in-time creation ask.
    pub fn admit_creation(
        &self,
        route: Route,
        client: Option<IpAddr>,
    ) -> Result<(), CreationRefused> {
        self.check_capacity().map_err(CreationRefused::Paused)?;
        let config = self.config();
        let now = Instant::now();
        if route == Route::Jit && client.is_some() {
            self.jit_creations
                .take(client, config.registration.jit_per_minute, now)
                .map_err(CreationRefused::Limited)?;
        }
        self.new_per_hour
            .take(config.registration.max_new_per_hour, now)
            .map_err(CreationRefused::Limited)
    }

    /// The sign-up guard on its own: `Err` while the mail root's file system has less
    /// than `registration.min_free_disk` free or the load is above `max_load_1m`. Logs
    /// the pause (and a reading that failed) at most once a minute, and the resumption.
    pub fn check_capacity(&self) -> Result<(), Paused> {
        let config = self.config();
        let r = &config.registration;
        if r.min_free_disk.0 == 0 && r.max_load_1m.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let root = address::home_root(&config.mailbox.home);
        let reading = self.capacity.reading(&root, now);
        let every = capacity::LOG_EVERY;
        if let (Err(e), true) = (&reading.free_disk, r.min_free_disk.0 > 0) {
            if self
                .repeats
                .first("signup_guard unreadable disk", every, now)
            {
                tracing::warn!(
                    "event=signup_guard result=unmeasured what=disk path={} error={}",
                    self.private(root.display()),
                    logfmt::value(e)
                );
            }
        }
        if let (Err(e), true) = (&reading.load_1m, r.max_load_1m.is_some()) {
            if self
                .repeats
                .first("signup_guard unreadable load", every, now)
            {
                tracing::warn!(
                    "event=signup_guard result=unmeasured what=load error={}",
                    logfmt::value(e)
                );
            }
        }
        let exceeded = capacity::exceeded(&reading, r.min_free_disk.0, r.max_load_1m);
        let changed = self.capacity.changed(exceeded.is_some());
        match exceeded {
            Some(why) => {
                // Asked every time, so a pause just begun also starts the minute.
                let news = self.repeats.first("signup_guard paused", every, now);
                if changed || news {
                    tracing::warn!("event=signup_guard result=paused {}", why.fields());
                }
                Err(Paused { why })
            }
            None => {
                if changed {
                    tracing::info!("event=signup_guard result=resumed");
                }
                Ok(())
            }
        }
    }

    /// The registration mode in force: the run-time setting if one is stored, else the
    /// configuration's.
    pub async fn registration_mode(&self) -> Result<RegistrationMode, Unavailable> {
        let stored = self.store.setting(MODE_SETTING).await?;
        Ok(stored
            .as_deref()
            .and_then(RegistrationMode::parse)
            .unwrap_or(self.config().registration.mode))
    }

    /// Fails while the database cannot serve (deleted or replaced file, not yet open).
    pub fn check_database(&self) -> Result<(), Unavailable> {
        Ok(self.store.check()?)
    }

    // ----- login ----------------------------------------------------------------------

    /// Checks a login, creating the account just in time when registration is open.
    /// Used by Dovecot's passdb, SMTP AUTH and the admin page's sign-in alike.
    pub async fn login(
        &self,
        user: &str,
        password: &Password,
        ctx: LoginContext<'_>,
    ) -> Result<LoginOutcome, Unavailable> {
        let outcome = self.login_inner(user, password, ctx.remote_ip, true).await;
        self.log_login(user, &ctx, &outcome);
        // SMTP AUTH makes Dovecot write nothing; the other logins are IMAP/POP3's.
        if matches!(outcome, Ok(LoginOutcome::Accepted { .. })) && ctx.service != "smtp" {
            self.watch_dict_writes();
        }
        outcome
    }

    /// Counts a mail login against Dovecot's dict writes and warns when they stopped
    /// arriving (`dict_watch`). Only where the dict socket is served.
    fn watch_dict_writes(&self) {
        let config = self.config();
        let Some(socket) = &config.listen.dict else {
            return;
        };
        let Some(o) = self.dict_watch.login(self.now()) else {
            return;
        };
        let last_write = match o.last_write {
            Some(t) => t.to_string(),
            None => "never".into(),
        };
        tracing::warn!(
            "event=dict_writes result=missing logins={} minutes={} last_write={last_write} dict={} \
             hint=\"logins succeed but Dovecot's last_login and quota_clone writes do not arrive: \
             its mail processes probably cannot reach the dict socket (check doveconf \
             mail_access_groups and the socket directory's group)\"",
            o.logins,
            o.quiet_for / 60,
            logfmt::value(socket.display())
        );
    }

    /// Checks an operator's sign-in to the admin page: like `login`, but never creates
    /// an account (an unknown address costs a dummy hash, so timing does not tell it
    /// apart), and only accounts with the admin flag get in.
    pub async fn admin_sign_in(
        &self,
        user: &str,
        password: &Password,
        ctx: LoginContext<'_>,
    ) -> Result<AdminSignIn, Unavailable> {
        let outcome = self.login_inner(user, password, ctx.remote_ip, false).await;
        let ctx = LoginContext {
            via: LoginVia::Admin,
            ..ctx
        };
        self.log_login(user, &ctx, &outcome);
        match outcome? {
            LoginOutcome::Refused(why) => Ok(AdminSignIn::Refused(why)),
            LoginOutcome::Accepted { address, .. } => {
                let admin = self
                    .store
                    .account(&address)
                    .await?
                    .is_some_and(|row| row.admin && row.blocked.is_none());
                Ok(if admin {
                    AdminSignIn::Admin(address)
                } else {
                    AdminSignIn::NotAdmin
                })
            }
        }
    }

    fn log_login(
        &self,
        user: &str,
        ctx: &LoginContext<'_>,
        outcome: &Result<LoginOutcome, Unavailable>,
    ) {
        let no_log = self.config().log.no_log;
        let ip = logfmt::private_opt(ctx.remote_ip, no_log);
        let user_shown = logfmt::private(user, no_log);
        let service = logfmt::value(ctx.service);
        self.count_login(ctx.via, outcome);
        // postern writes the client's address last on a failed login: the fail2ban
        // filter takes it from there.
        match &outcome {
            Ok(LoginOutcome::Accepted { address, created }) => {
                let address = logfmt::private(address, no_log);
                if *created {
                    tracing::info!(
                        "event=register route=jit address={address} service={service} ip={ip}"
                    );
                }
                tracing::debug!("event=login result=ok address={address} service={service} ip={ip}");
            }
            Ok(LoginOutcome::Refused(why)) => {
                let line = format!(
                    "event=login result=fail reason={} address={user_shown} service={service} ip={ip}",
                    why.as_str()
                );
                if *why != Refusal::Throttled || self.throttle_is_news(user, ctx.remote_ip) {
                    tracing::info!("{line}");
                } else {
                    tracing::debug!("{line}");
                }
            }
            // The sign-up guard logs its pause itself, once a minute.
            Err(e @ Unavailable::Paused(_)) => tracing::debug!(
                "event=login result=tempfail address={user_shown} service={service} ip={ip} error={}",
                logfmt::value(e)
            ),
            Err(e) => tracing::warn!(
                "event=login result=tempfail address={user_shown} service={service} ip={ip} error={}",
                logfmt::value(e)
            ),
        }
    }

    /// Counts a login in `postern_logins_total` (and a creation in
    /// `postern_jit_creations_total`).
    fn count_login(&self, via: LoginVia, outcome: &Result<LoginOutcome, Unavailable>) {
        let metrics = crate::metrics::get();
        let result = match outcome {
            Ok(LoginOutcome::Accepted { created, .. }) => {
                if *created {
                    metrics.jit_created();
                }
                LoginResult::Ok
            }
            Ok(LoginOutcome::Refused(why)) => match why {
                Refusal::BadPassword => LoginResult::BadPassword,
                Refusal::Blocked => LoginResult::Blocked,
                Refusal::Unknown => LoginResult::Unknown,
                Refusal::Invalid => LoginResult::Invalid,
                Refusal::Throttled => LoginResult::Throttled,
            },
            Err(_) => LoginResult::TempFail,
        };
        metrics.login(via, result);
    }

    /// Password verifications asked of the hasher so far (real and dummy hashes alike).
    pub fn argon2_verifications(&self) -> u64 {
        self.hasher.verifications()
    }

    /// Every refusal but `Throttled` costs exactly one argon2 verification (the dummy
    /// hash where there is no real one to check), so timing does not tell an unknown,
    /// blocked, invalid or closed-mode refusal from a wrong password. `Throttled` costs
    /// none: it depends only on what the client itself did.
    async fn login_inner(
        &self,
        user: &str,
        password: &Password,
        ip: Option<IpAddr>,
        may_create: bool,
    ) -> Result<LoginOutcome, Unavailable> {
        let client = client_key(ip);
        let limits = self.config().login.clone();
        let now = Instant::now();
        if ip.is_some()
            && self
                .ip_failures
                .is_limited(&client, limits.max_failures_per_ip, now)
        {
            return Ok(LoginOutcome::Refused(Refusal::Throttled));
        }
        let Ok(address) = self.parse(user) else {
            self.spend_dummy_hash(password).await;
            if ip.is_some() {
                self.ip_failures.record_failure(&client, now);
            }
            return Ok(LoginOutcome::Refused(Refusal::Unknown));
        };
        let row = self.store.login_row(address.as_str()).await?;
        let cached = row.as_ref().is_some_and(|r| {
            !r.blocked && self.cache.check(&r.address, password, &r.password_hash)
        });
        if !cached {
            let shared = self.shared_failures(&address).await?;
            match self
                .guard
                .admit(address.as_str(), &client, limits.max_failures, shared, now)
            {
                Admission::Go => {}
                Admission::Refused => return Ok(LoginOutcome::Refused(Refusal::Throttled)),
                Admission::Rationed { fresh } => {
                    let interval = std::time::Duration::from_millis(limits.slow_interval_ms);
                    let wait = std::time::Duration::from_millis(limits.slow_wait_ms);
                    let claim = || self.claim_shared_turn(&address, interval);
                    if !self
                        .guard
                        .turn(address.as_str(), fresh, interval, wait, claim)
                        .await?
                    {
                        self.guard
                            .record_missed_turn(address.as_str(), &client, Instant::now());
                        return Ok(LoginOutcome::Refused(Refusal::Throttled));
                    }
                }
            }
            self.guard
                .record_attempt(address.as_str(), &client, Instant::now());
        }
        let outcome = if password.expose().is_empty() {
            self.spend_dummy_hash(password).await;
            LoginOutcome::Refused(Refusal::BadPassword)
        } else {
            match row {
                Some(row) => self.verify_existing(row, password, &client, cached).await?,
                None if may_create => {
                    self.login_create(address.clone(), password, ip, &client)
                        .await?
                }
                None => {
                    self.spend_dummy_hash(password).await;
                    LoginOutcome::Refused(Refusal::Unknown)
                }
            }
        };
        if !cached && matches!(outcome, LoginOutcome::Refused(r) if r != Refusal::Throttled) {
            self.count_shared_failure(&address).await;
        }
        if let (LoginOutcome::Refused(Refusal::BadPassword | Refusal::Unknown), Some(_)) =
            (&outcome, ip)
        {
            self.ip_failures.record_failure(&client, Instant::now());
        }
        Ok(outcome)
    }

    /// Checks a password against an existing account (its admission already decided):
    /// a pair in the verified cache gets in without argon2. `cached`: the caller has
    /// just found the pair in the cache for this very row.
    async fn verify_existing(
        &self,
        row: LoginRow,
        password: &Password,
        client: &str,
        cached: bool,
    ) -> Result<LoginOutcome, Unavailable> {
        if row.blocked {
            self.spend_dummy_hash(password).await;
            return Ok(LoginOutcome::Refused(Refusal::Blocked));
        }
        let cached = cached || self.cache.check(&row.address, password, &row.password_hash);
        crate::metrics::get().verify_cache(cached);
        if !cached {
            match self.hasher.verify(password, &row.password_hash).await? {
                Verdict::Mismatch => return Ok(LoginOutcome::Refused(Refusal::BadPassword)),
                Verdict::Match { rehash } => {
                    let mut stored = row.password_hash.clone();
                    if rehash {
                        let new = self.hasher.hash(password).await?;
                        match self
                            .store
                            .replace_hash(row.id, &row.password_hash, &new)
                            .await
                        {
                            Ok(true) => {
                                tracing::info!(
                                    "event=rehash address={}",
                                    self.private(&row.address)
                                );
                                stored = new;
                            }
                            Ok(false) => {}
                            Err(e) => self.bookkeeping_failed("rehash", &row.address, &e),
                        }
                    }
                    self.cache.insert(&row.address, password, &stored);
                }
            }
        }
        self.guard
            .record_success(&row.address, client, Instant::now());
        let now = self.now();
        if row
            .last_login
            .is_none_or(|t| now - t >= LOGIN_WRITE_INTERVAL)
        {
            if let Err(e) = self
                .store
                .record_login(row.id, now, LOGIN_WRITE_INTERVAL)
                .await
            {
                self.bookkeeping_failed("last_login", &row.address, &e);
            }
        }
        Ok(LoginOutcome::Accepted {
            address: row.address,
            created: false,
        })
    }

    async fn login_create(
        &self,
        address: Address,
        password: &Password,
        ip: Option<IpAddr>,
        client: &str,
    ) -> Result<LoginOutcome, Unavailable> {
        let config = self.config();
        if !config.registration.jit || self.registration_mode().await? != RegistrationMode::Open {
            self.spend_dummy_hash(password).await;
            return Ok(LoginOutcome::Refused(Refusal::Unknown));
        }
        if address.check_rules(&config.registration.username).is_err()
            || password::check_rules(password, &config.registration.password).is_err()
            || address::mail_home(&config.mailbox.home, &address).is_err()
        {
            self.spend_dummy_hash(password).await;
            return Ok(LoginOutcome::Refused(Refusal::Invalid));
        }
        match self.admit_creation(Route::Jit, ip) {
            Ok(()) => {}
            Err(CreationRefused::Paused(p)) => return Err(Unavailable::Paused(p)),
            Err(CreationRefused::Limited(_)) => {
                tracing::info!(
                    "event=register route=jit result=limited address={}",
                    self.private(address.as_str())
                );
                return Ok(LoginOutcome::Refused(Refusal::Throttled));
            }
        }
        // One creation per address at a time in this process; the others wait, then
        // find the account and verify against it (a cache hit when the password matches).
        let lock = self.creation_lock(address.as_str());
        let outcome = {
            let _held = lock.lock().await;
            self.create_locked(&address, password, client).await
        };
        self.release_creation_lock(address.as_str(), lock);
        outcome
    }

    async fn create_locked(
        &self,
        address: &Address,
        password: &Password,
        client: &str,
    ) -> Result<LoginOutcome, Unavailable> {
        if let Some(row) = self.store.login_row(address.as_str()).await? {
            return self.verify_existing(row, password, client, false).await;
        }
        let hash = self.hasher.hash(password).await?;
        let now = self.now();
        let created = self
            .store
            .create_account(NewAccount {
                address: address.as_str().to_owned(),
                password_hash: hash.clone(),
                created_via: Route::Jit.as_str(),
                now,
                token_hash: None,
                admin_if_none: false,
                admin: false,
                quota: QuotaMode::Default,
            })
            .await?;
        match created {
            Ok(c) => {
                crate::metrics::get().accounts_created(Route::Jit.into(), 1);
                self.cache.insert(address.as_str(), password, &hash);
                self.guard
                    .record_success(address.as_str(), client, Instant::now());
                if let Err(e) = self
                    .store
                    .record_login(c.id, now, LOGIN_WRITE_INTERVAL)
                    .await
                {
                    self.bookkeeping_failed("last_login", address.as_str(), &e);
                }
                Ok(LoginOutcome::Accepted {
                    address: address.as_str().to_owned(),
                    created: true,
                })
            }
            // Another process (or host) created it meanwhile: verify against that one.
            Err(CreateRefusal::Exists) => match self.store.login_row(address.as_str()).await? {
                Some(row) => self.verify_existing(row, password, client, false).await,
                None => Ok(LoginOutcome::Refused(Refusal::Unknown)),
            },
            Err(CreateRefusal::Blocked) => Ok(LoginOutcome::Refused(Refusal::Blocked)),
            Err(CreateRefusal::Token(_)) => Ok(LoginOutcome::Refused(Refusal::Unknown)),
        }
    }

    /// A write that only keeps records (last login, a re-hash) failed: the login it
    /// belongs to goes on.
    fn bookkeeping_failed(&self, what: &str, address: &str, e: &StoreError) {
        tracing::warn!(
            "event=bookkeeping result=fail write={what} address={} error={}",
            self.private(address),
            logfmt::value(e)
        );
    }

    /// Verifies `password` against a throwaway hash, so refusing an unknown address
    /// takes as long as refusing a wrong password.
    async fn spend_dummy_hash(&self, password: &Password) {
        let dummy = self
            .dummy_hash
            .get_or_init(|| async {
                let throwaway = register::random_password(&self.config().registration.password);
                self.hasher.hash(&throwaway).await.unwrap_or_default()
            })
            .await;
        let _ = self.hasher.verify(password, dummy).await;
    }

    fn creation_lock(&self, address: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = match self.creating.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(address.to_owned()).or_default().clone()
    }

    fn release_creation_lock(&self, address: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = match self.creating.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Only the map and this caller hold it: nobody is waiting, drop the entry.
        if Arc::strong_count(&lock) <= 2 {
            map.remove(address);
        }
    }

    // ----- Dovecot userdb, last_login, quota_clone ---------------------------------------

    /// The userdb entry of an existing, unblocked account.
    pub async fn userdb(&self, user: &str) -> Result<Option<UserdbEntry>, Unavailable> {
        let Ok(address) = self.parse(user) else {
            return Ok(None);
        };
        // One point read: whether the account exists and is blocked, and its quota.
        let facts = self.store.mail_facts(address.as_str()).await?;
        let Some(mailbox) = facts.mailbox.filter(|_| !facts.blocked) else {
            return Ok(None);
        };
        let config = self.config();
        let Ok(home) = address::mail_home(&config.mailbox.home, &address) else {
            tracing::warn!(
                "event=userdb result=unsafe_home address={}",
                self.private(address.as_str())
            );
            return Ok(None);
        };
        let quota_bytes = self.quota_of(mailbox.quota).limit;
        Ok(Some(UserdbEntry {
            address: address.as_str().to_owned(),
            home,
            uid: config.mailbox.uid.clone(),
            gid: config.mailbox.gid.clone(),
            quota_bytes,
        }))
    }

    /// Every account address, for `doveadm user '*'`.
    pub async fn userdb_list(&self) -> Result<Vec<String>, Unavailable> {
        Ok(self.store.addresses().await?)
    }

    /// Dovecot's last_login plugin reports a login. Unknown users are ignored (false).
    pub async fn note_last_login(&self, user: &str, at: i64) -> Result<bool, Unavailable> {
        self.dict_watch.write(self.now());
        let Ok(address) = self.parse(user) else {
            return Ok(false);
        };
        Ok(self.store.set_last_login(address.as_str(), at).await?)
    }

    /// Dovecot's quota_clone plugin reports usage: absolute values (`set`) or changes
    /// (`add`). Unknown users are ignored (false).
    pub async fn note_usage(&self, user: &str, change: UsageChange) -> Result<bool, Unavailable> {
        self.dict_watch.write(self.now());
        let Ok(address) = self.parse(user) else {
            return Ok(false);
        };
        let (key, now) = (address.as_str(), self.now());
        Ok(match change {
            UsageChange::Set { bytes, messages } => {
                self.store.set_usage(key, bytes, messages, now).await?
            }
            UsageChange::Add { bytes, messages } => {
                self.store.add_usage(key, bytes, messages, now).await?
            }
        })
    }

    /// Promotes `registration.admin_usernames` (run at start). Returns those promoted.
    pub async fn promote_configured_admins(&self) -> Result<Vec<String>, Unavailable> {
        let config = self.config();
        let mut promoted = Vec::new();
        for name in &config.registration.admin_usernames {
            let full = if name.contains('@') {
                name.clone()
            } else {
                match config.domains.first() {
                    Some(d) => format!("{name}@{d}"),
                    None => continue,
                }
            };
            let Ok(address) = self.parse(&full) else {
                tracing::warn!(
                    "event=admin_promote result=invalid name={}",
                    self.private(name)
                );
                continue;
            };
            if let Some(row) = self.store.account(address.as_str()).await? {
                if !row.admin {
                    self.store.set_admin(&row.address, true).await?;
                    promoted.push(row.address);
                }
            }
        }
        Ok(promoted)
    }
}

/// A usage report from Dovecot's quota_clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageChange {
    Set {
        bytes: Option<i64>,
        messages: Option<i64>,
    },
    Add {
        bytes: i64,
        messages: i64,
    },
}

#[cfg(test)]
mod tests;
/// The same tests on PostgreSQL (`store::test_backend`).
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "tests.rs"]
mod tests_on_postgres;
