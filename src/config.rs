//! Configuration: built-in defaults, then the TOML file, then `POSTERN_*` environment
//! variables (`__` separates nesting levels), then the plain aliases operators know
//! (`REGISTRATION_MODE`, `ADMIN_USERNAME`).
//!
//! ```text
//! domains = ["example.org"]
//! [registration]
//! mode = "open"
//! POSTERN_REGISTRATION__MODE=closed   # environment wins over the file
//! ```
//!
//! Unknown keys are errors that name the key; a bad value names the key and what is
//! accepted. Sizes are `500M`, `1G` or bytes; durations are `90d`, `72h`, `30m`, `10s`.
//! Every value is parsed here, as the file loads, into the type its users need
//! ([`SocketMode`], [`LogLevel`], [`IpNet`], [`Quota`], [`Seconds`]): a bad value stops
//! the start with exit status 2, and a reload (SIGHUP) refuses it and keeps the old
//! configuration. Nothing downstream parses a setting again.
//!
//! ```text
//! [listen] socket_mode = "0666"          -> SocketMode(0o666)
//! [listen.sockets.dict] mode = "0660"    -> this socket only (also owner, group)
//! [http] trusted_proxies = ["10.0.0.0/8"] -> [IpNet]; "proxy.example" is an error
//! ```

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the daemon and the CLI look for the configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/postern/postern.toml";

/// The host's mail name on Debian: the domain used when `domains` is empty.
const MAILNAME: &str = "/etc/mailname";

/// A configuration that could not be loaded or is inconsistent. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(String),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment's messages already carry the key path; join every error it found.
        let text: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        ConfigError::Load(text.join("; "))
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The whole effective configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The mail domains postern creates and serves accounts for.
    pub domains: Vec<String>,
    pub database: Database,
    pub listen: Listen,
    pub mailbox: Mailbox,
    pub registration: Registration,
    pub quota: QuotaConfig,
    pub argon2: Argon2Config,
    pub login: LoginLimits,
    pub policy: PolicyConfig,
    pub http: Http,
    pub self_service: SelfService,
    pub auth_http: AuthHttp,
    pub autoconfig: Autoconfig,
    pub maintenance: Maintenance,
    pub log: Log,
}

/// Where the accounts live: a SQLite file (`path`, the default) or a PostgreSQL database
/// shared by several hosts (`url`); never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// The SQLite file; unset: [`Database::DEFAULT_PATH`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A libpq connection URL (`postgresql://...`): selects PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file holding the PostgreSQL password (instead of one in the URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL connections this process keeps at most.
    pub pool_size: usize,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            path: None,
            url: None,
            password_file: None,
            pool_size: 16,
        }
    }
}

impl Database {
    pub const DEFAULT_PATH: &'static str = "/var/lib/postern/postern.db";

    /// A SQLite database at `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> Database {
        Database {
            path: Some(path.into()),
            ..Database::default()
        }
    }

    /// The SQLite file (the configured one or the default).
    pub fn sqlite_path(&self) -> &Path {
        self.path
            .as_deref()
            .unwrap_or(Path::new(Database::DEFAULT_PATH))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.is_some() && self.url.is_some() {
            return Err(invalid(
                "database.url",
                "`database.path` (SQLite) and `database.url` (PostgreSQL) are both set; keep one",
            ));
        }
        if let Some(url) = &self.url {
            if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
                return Err(invalid(
                    "database.url",
                    "a PostgreSQL URL starts with postgresql:// \
                     (postgresql://USER@HOST/DATABASE or postgresql:///DATABASE?host=/run/postgresql)",
                ));
            }
        } else if self.password_file.is_some() {
            return Err(invalid(
                "database.password_file",
                "is for PostgreSQL: set `database.url` too",
            ));
        }
        if self.pool_size == 0 || self.pool_size > 1000 {
            return Err(invalid(
                "database.pool_size",
                format!("{} is not between 1 and 1000", self.pool_size),
            ));
        }
        Ok(())
    }
}

/// Listeners; each one absent means that service is off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Dovecot dict proxy socket (passdb, userdb, last_login, quota_clone).
    pub dict: Option<PathBuf>,
    /// Dovecot auth protocol socket, for Postfix SMTP AUTH.
    pub auth: Option<PathBuf>,
    /// Postfix policy delegation socket.
    pub policy: Option<PathBuf>,
    /// HTTP listener for /new and /admin: `host:port`.
    pub http: Option<String>,
    /// The same HTTP service on a Unix socket, for a reverse proxy (nginx terminates TLS).
    pub http_socket: Option<PathBuf>,
    /// Loopback HTTP auth API for Dovecot 2.4's Lua passdb/userdb: `127.0.0.1:port`.
    pub auth_http: Option<String>,
    /// `GET /metrics` (Prometheus), `/healthz`, `/readyz` and `postern status`: a
    /// loopback `host:port` or an absolute Unix socket path. Off when unset.
    pub metrics: Option<String>,
    /// Permission bits of every socket file without its own `[listen.sockets.*] mode`.
    pub socket_mode: SocketMode,
    pub socket_owner: Option<String>,
    pub socket_group: Option<String>,
    /// Per-socket mode, owner and group, over the three above.
    pub sockets: SocketOverrides,
    /// How many connections each listener serves at once; when a line-protocol listener
    /// is full, its longest-idle connection is closed to make room.
    pub max_connections: usize,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            dict: None,
            auth: None,
            policy: None,
            http: None,
            http_socket: None,
            auth_http: None,
            metrics: None,
            socket_mode: SocketMode::default(),
            socket_owner: None,
            socket_group: None,
            sockets: SocketOverrides::default(),
            max_connections: 1024,
        }
    }
}

/// Where `listen.metrics` listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAddress<'a> {
    Unix(&'a Path),
    Tcp(&'a str),
}

impl Listen {
    /// `listen.metrics`, told apart: a path starts with `/`, anything else is `host:port`.
    pub fn metrics_address(&self) -> Option<MetricsAddress<'_>> {
        let value = self.metrics.as_deref()?;
        Some(if value.starts_with('/') {
            MetricsAddress::Unix(Path::new(value))
        } else {
            MetricsAddress::Tcp(value)
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(MetricsAddress::Tcp(addr)) = self.metrics_address() {
            let loopback = match addr.parse::<std::net::SocketAddr>() {
                Ok(a) => a.ip().is_loopback(),
                Err(_) => addr
                    .strip_prefix("localhost:")
                    .is_some_and(|port| port.parse::<u16>().is_ok()),
            };
            if !loopback {
                return Err(invalid(
                    "listen.metrics",
                    format!(
                        "`{addr}` must be a loopback address such as \"127.0.0.1:8027\" \
                         or an absolute Unix socket path"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The effective permissions of one socket: its own settings, else the shared ones.
    pub fn access(&self, own: &SocketAccess) -> SocketPerms {
        SocketPerms {
            mode: own.mode.unwrap_or(self.socket_mode),
            owner: own.owner.clone().or_else(|| self.socket_owner.clone()),
            group: own.group.clone().or_else(|| self.socket_group.clone()),
        }
    }
}

/// `[listen.sockets.dict]` and the like: settings of one socket file that differ from
/// `listen.socket_mode`, `socket_owner` and `socket_group`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketOverrides {
    pub dict: SocketAccess,
    pub auth: SocketAccess,
    pub policy: SocketAccess,
    pub http_socket: SocketAccess,
}

/// One socket's own mode, owner and group; each absent one is the shared setting.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketAccess {
    pub mode: Option<SocketMode>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// The permissions a socket file is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPerms {
    pub mode: SocketMode,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// Permission bits of a socket file, written in octal: `"0660"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(u32);

impl SocketMode {
    /// Reads `"0660"`, `"660"` or `"0o660"`; at most `0777`.
    pub fn parse(s: &str) -> Result<SocketMode, String> {
        let digits = s.trim_start_matches("0o");
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if bits <= 0o777 => Ok(SocketMode(bits)),
            _ => Err(format!("`{s}` is not an octal permission such as \"0660\"")),
        }
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}

impl Default for SocketMode {
    fn default() -> Self {
        SocketMode(0o660)
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for SocketMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SocketMode::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mailbox {
    /// Mail home template for userdb answers: `{address}`, `{local}`, `{domain}`.
    pub home: String,
    /// Owner of the mail files, a name or a number, passed to Dovecot as is.
    #[serde(deserialize_with = "name_or_number")]
    pub uid: String,
    #[serde(deserialize_with = "name_or_number")]
    pub gid: String,
}

/// A user or group as a name or a number: `uid = 5000` and `POSTERN_MAILBOX__UID=5000`
/// read like `uid = "5000"`.
fn name_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NameOrNumber {
        Name(String),
        Number(u32),
    }
    Ok(match NameOrNumber::deserialize(d)? {
        NameOrNumber::Name(s) => s,
        NameOrNumber::Number(n) => n.to_string(),
    })
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox {
            home: "/var/vmail/{domain}/{local}".into(),
            uid: "vmail".into(),
            gid: "vmail".into(),
        }
    }
}

/// How new accounts may come into being.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    Open,
    InviteOnly,
    Closed,
}

impl RegistrationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Open => "open",
            RegistrationMode::InviteOnly => "invite_only",
            RegistrationMode::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(RegistrationMode::Open),
            "invite_only" => Some(RegistrationMode::InviteOnly),
            "closed" => Some(RegistrationMode::Closed),
            _ => None,
        }
    }
}

impl fmt::Display for RegistrationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Registration {
    pub mode: RegistrationMode,
    /// In open mode, a first login with an unknown address creates the account.
    pub jit: bool,
    pub first_account_is_admin: bool,
    /// Accounts promoted to admin at start.
    pub admin_usernames: Vec<String>,
    /// Length of generated local parts (`/new` with an empty body).
    pub random_local_length: usize,
    /// Just-in-time creations per client IP per minute (SMTP AUTH, Lua API; 0: no limit).
    pub jit_per_minute: u32,
    /// New accounts per hour across every route but the operator's (0: no limit).
    pub max_new_per_hour: u32,
    /// No account is created while the file system of the mail root has less free
    /// space than this (0: no check).
    pub min_free_disk: Size,
    /// No account is created while the 1-minute load average is above this (unset: no
    /// check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_load_1m: Option<f64>,
    pub username: UsernameRules,
    pub password: PasswordRules,
}

impl Default for Registration {
    fn default() -> Self {
        Registration {
            mode: RegistrationMode::InviteOnly,
            jit: true,
            first_account_is_admin: true,
            admin_usernames: Vec::new(),
            random_local_length: 9,
            jit_per_minute: 10,
            max_new_per_hour: 0,
            min_free_disk: Size(1 << 30),
            max_load_1m: None,
            username: UsernameRules::default(),
            password: PasswordRules::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsernameRules {
    pub min_length: usize,
    pub max_length: usize,
    pub reserved: Vec<String>,
}

impl Default for UsernameRules {
    fn default() -> Self {
        UsernameRules {
            min_length: 3,
            max_length: 32,
            reserved: [
                "postmaster",
                "abuse",
                "root",
                "admin",
                "hostmaster",
                "webmaster",
                "mailer-daemon",
                "noreply",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// A class of characters a password may be required to contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CharClass {
    Upper,
    Lower,
    Digit,
    Special,
}

impl CharClass {
    pub fn describe(self) -> &'static str {
        match self {
            CharClass::Upper => "an uppercase letter",
            CharClass::Lower => "a lowercase letter",
            CharClass::Digit => "a digit",
            CharClass::Special => "a character that is not a letter or digit",
        }
    }

    pub fn matches(self, c: char) -> bool {
        match self {
            CharClass::Upper => c.is_uppercase(),
            CharClass::Lower => c.is_lowercase(),
            CharClass::Digit => c.is_ascii_digit(),
            CharClass::Special => !c.is_alphanumeric(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordRules {
    pub min_length: usize,
    pub max_length: usize,
    pub require: Vec<CharClass>,
}

impl Default for PasswordRules {
    fn default() -> Self {
        PasswordRules {
            min_length: 9,
            max_length: 128,
            require: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// The quota of accounts that have none of their own.
    pub default: Quota,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            default: Quota::Limited(500 * 1024 * 1024),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// How long a verified (address, password) pair skips argon2 after its last use.
    pub cache_ttl: Seconds,
    /// A cached pair is checked with argon2 again at the latest this long after its
    /// last check, however often it is used.
    pub cache_max_age: Seconds,
    /// Password hashes waiting for a core; beyond this, logins fail temporarily.
    pub max_pending: usize,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Argon2Config {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
            cache_ttl: Seconds(3600),
            cache_max_age: Seconds(7 * 86400),
            max_pending: 256,
        }
    }
}

/// Brute-force limits on logins (IMAP, SMTP AUTH, admin page alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginLimits {
    /// Failed logins per (account, client) within `failure_window` before that client's
    /// further tries are refused without checking the password; more than this many from
    /// all clients together put the account in slow mode (0: no limit).
    pub max_failures: u32,
    /// Failed logins per client IP across accounts, where the protocol tells it.
    pub max_failures_per_ip: u32,
    pub failure_window: Seconds,
    /// In slow mode, one password check per account per this many milliseconds.
    pub slow_interval_ms: u64,
    /// In slow mode, how long a login waits for its turn before it is refused.
    pub slow_wait_ms: u64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            max_failures: 10,
            max_failures_per_ip: 30,
            failure_window: Seconds(600),
            slow_interval_ms: 3000,
            slow_wait_ms: 6000,
        }
    }
}

/// The Postfix policy service: what it refuses, with which reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Refuse mail for addresses in served domains that have no account.
    pub reject_unknown: bool,
    pub blocked_reply: String,
    pub unknown_reply: String,
    pub full_reply: String,
    pub sender_blocked_reply: String,
    pub rate_reply: String,
    pub defer_reply: String,
    /// Messages an authenticated sender may send per minute (0: no limit) ...
    pub send_per_minute: u32,
    /// ... after a burst of this many.
    pub send_burst: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            reject_unknown: true,
            blocked_reply: "REJECT 5.7.1 Recipient address is blocked".into(),
            unknown_reply: "550 5.1.1 User unknown".into(),
            full_reply: "452 4.2.2 Mailbox full".into(),
            sender_blocked_reply: "REJECT 5.7.1 Sender account is blocked".into(),
            rate_reply: "450 4.7.1 Sending too fast, try again later".into(),
            defer_reply: "DEFER_IF_PERMIT Service temporarily unavailable".into(),
            send_per_minute: 60,
            send_burst: 10,
        }
    }
}

/// The web side: links, limits, and what to trust in front of postern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// The public base URL, e.g. `https://chat.example.org`, for sign-up links.
    pub public_url: Option<String>,
    /// Peers whose `X-Forwarded-For` is believed: addresses or networks (`10.0.0.0/8`).
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request body accepted.
    pub max_body: Size,
    /// Time to receive a request's headers: from the connection's start, or from the
    /// first byte of a later request on a kept-alive connection.
    pub header_timeout: Seconds,
    /// How long a kept-alive connection may stay silent between requests before it is
    /// closed; also the time a web request's body may take to arrive.
    pub idle_timeout: Seconds,
    pub max_connections: usize,
    /// Sign-ups (`POST /new`) per client IP per minute (0: no limit).
    pub new_per_minute: u32,
    /// Admin sign-in attempts per client IP per minute.
    pub admin_logins_per_minute: u32,
    /// `/new?token=CODE` shows how many uses a live invite has left.
    pub show_invite_uses: bool,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            public_url: None,
            trusted_proxies: Vec::new(),
            max_body: Size(16 * 1024),
            header_timeout: Seconds(10),
            idle_timeout: Seconds(60),
            max_connections: 512,
            new_per_minute: 10,
            admin_logins_per_minute: 10,
            show_invite_uses: false,
        }
    }
}

/// `/account`: owners sign in to see their account, change its password or delete it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfService {
    pub enabled: bool,
    /// An address its owner deleted may be registered again; otherwise it stays on the
    /// blocklist, as after the operator's delete.
    pub allow_reuse: bool,
}

impl Default for SelfService {
    fn default() -> Self {
        SelfService {
            enabled: true,
            allow_reuse: false,
        }
    }
}

/// How a mail program reaches a server: implicit TLS, STARTTLS, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocketType {
    #[serde(rename = "SSL", alias = "ssl", alias = "tls", alias = "TLS")]
    Ssl,
    #[serde(rename = "STARTTLS", alias = "starttls")]
    Starttls,
    #[serde(rename = "plain")]
    Plain,
}

impl SocketType {
    /// The word a Mozilla autoconfig document uses.
    pub fn autoconfig(self) -> &'static str {
        match self {
            SocketType::Ssl => "SSL",
            SocketType::Starttls => "STARTTLS",
            SocketType::Plain => "plain",
        }
    }

    /// The word a `dclogin:` link uses (`is=`, `ss=`).
    pub fn dclogin(self) -> &'static str {
        match self {
            SocketType::Ssl => "ssl",
            SocketType::Starttls => "starttls",
            SocketType::Plain => "plain",
        }
    }

    /// What a person setting up a mail program by hand reads.
    pub fn describe(self) -> &'static str {
        match self {
            SocketType::Ssl => "SSL/TLS",
            SocketType::Starttls => "STARTTLS",
            SocketType::Plain => "none",
        }
    }
}

/// The IMAP and SMTP servers mail programs are told about: in the autoconfig document
/// (`/.well-known/autoconfig/mail/config-v1.1.xml`), in `dclogin:` links and on the
/// sign-up page. Hosts default to `http.public_url`'s host, else the first domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Autoconfig {
    pub imap_host: Option<String>,
    pub imap_port: u16,
    pub imap_socket: SocketType,
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub smtp_socket: SocketType,
}

impl Default for Autoconfig {
    fn default() -> Self {
        Autoconfig {
            imap_host: None,
            imap_port: 993,
            imap_socket: SocketType::Ssl,
            smtp_host: None,
            smtp_port: 465,
            smtp_socket: SocketType::Ssl,
        }
    }
}

/// One server as mail programs are told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailServer {
    pub host: String,
    pub port: u16,
    pub socket: SocketType,
}

/// Where mail programs fetch and send mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailServers {
    pub imap: MailServer,
    pub smtp: MailServer,
}

/// The loopback auth API for Dovecot 2.4 (`listen.auth_http`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthHttp {
    /// File holding the shared secret Dovecot's Lua script sends (readable by Dovecot).
    pub secret_file: PathBuf,
}

impl Default for AuthHttp {
    fn default() -> Self {
        AuthHttp {
            secret_file: PathBuf::from("/etc/postern/auth-http.secret"),
        }
    }
}

/// Account maintenance (`postern maintenance run`, daily by the systemd timer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maintenance {
    /// Delete accounts (and mail) whose last login is older than this (off when absent).
    pub delete_inactive_after: Option<Seconds>,
    /// Delete web- or invite-created accounts never logged in after this long.
    pub delete_unused_after: Option<Seconds>,
    /// Purge expired, used-up and revoked invites this long after they stopped working.
    pub token_grace: Seconds,
    /// Recompute usage from the Maildir when quota_clone has not reported for this long.
    pub usage_stale_after: Seconds,
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance {
            delete_inactive_after: None,
            delete_unused_after: None,
            token_grace: Seconds(7 * 86400),
            usage_stale_after: Seconds(86400),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug`, `trace` (or tracing directives).
    pub level: LogLevel,
    /// Drop addresses, IPs and tokens from every log line.
    pub no_log: bool,
    /// Where lines go: `auto` (syslog unless stderr is a terminal), `syslog`, `stderr`.
    pub target: LogTarget,
    /// The syslog socket (tests point it elsewhere).
    pub syslog_socket: PathBuf,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: LogLevel::default(),
            no_log: false,
            target: LogTarget::Auto,
            syslog_socket: PathBuf::from("/dev/log"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    Auto,
    Syslog,
    Stderr,
}

/// A log level (or tracing filter directives), checked when the configuration loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel(String);

impl LogLevel {
    /// A level (`info`), or tracing directives where each bare word is a level
    /// (`info,postern=debug`): a bare word that is no level is a mistake, not a target.
    pub fn parse(s: &str) -> Result<LogLevel, String> {
        let bad = || format!("`{s}`: accepted values: error, warn, info, debug, trace");
        let levels = ["off", "error", "warn", "info", "debug", "trace"];
        let bare_words_are_levels = s
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && !d.contains('='))
            .all(|d| levels.contains(&d.to_ascii_lowercase().as_str()));
        if !bare_words_are_levels {
            return Err(bad());
        }
        tracing_subscriber::EnvFilter::try_new(s)
            .map(|_| LogLevel(s.to_owned()))
            .map_err(|_| bad())
    }

    /// The filter the logger installs.
    pub fn filter(&self) -> tracing_subscriber::EnvFilter {
        tracing_subscriber::EnvFilter::try_new(&self.0)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    }
}

impl Default for LogLevel {
    fn default() -> Self {
        LogLevel("info".into())
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LogLevel::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An IP address or a network written `addr/len` (`http.trusted_proxies`). IPv4-mapped
/// IPv6 addresses are kept as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let bad = || format!("`{s}` is not an IP address or a network such as 10.0.0.0/8");
        let t = s.trim();
        let (addr, len) = match t.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (t, None),
        };
        let addr = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        Ok(IpNet { addr, len })
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let len = usize::from(len);
    let (bytes, bits) = (len / 8, len % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    if bits == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - bits);
    a[bytes] & mask == b[bytes] & mask
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IpNet::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A byte size, written `16K`, `1M` or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(self.0))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(Size(n)),
            NumOrStr::Str(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// A storage limit: a number of bytes or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Limited(u64),
    Unlimited,
}

impl Quota {
    /// Parses `500M`, `1G`, `1024`, `unlimited`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("unlimited") {
            return Ok(Quota::Unlimited);
        }
        parse_size(s).map(Quota::Limited)
    }

    pub fn bytes(self) -> Option<u64> {
        match self {
            Quota::Limited(b) => Some(b),
            Quota::Unlimited => None,
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quota::Limited(b) => f.write_str(&format_size(*b)),
            Quota::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl Serialize for Quota {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Quota {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(Quota::Limited(n)),
            NumOrStr::Str(s) => Quota::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration in whole seconds, written `90d`, `72h`, `30m`, `10s` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration such as 90d, 72h, 30m or 10s"))?;
        let mult = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            "w" => 7 * 86400,
            _ => {
                return Err(format!(
                    "`{s}` is not a duration such as 90d, 72h, 30m or 10s"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Seconds)
            .ok_or_else(|| format!("`{s}` is too long"))
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60)] {
            if s != 0 && s % len == 0 {
                return write!(f, "{}{unit}", s / len);
            }
        }
        write!(f, "{s}s")
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(Seconds(n)),
            NumOrStr::Str(s) => Seconds::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(u64),
    Str(String),
}

/// Parses a byte size: `1024`, `100K`, `100M`, `1G`, `1T` (binary multiples; a trailing
/// `B` or `iB` is allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a size such as 100M, 1G or a number of bytes");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let mult: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Formats bytes in the largest binary unit that divides them, as `parse_size` reads them.
pub fn format_size(b: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if b != 0 && b % (1u64 << shift) == 0 {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

/// Bytes for people, the same everywhere sizes are shown (usage, quotas, stats): exact
/// in the largest unit that divides them, else to one decimal: `0`, `512B`, `6.9K`,
/// `500M`, `1.5G`. Configuration and logs keep `format_size`, which is exact.
pub fn human_size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    if b == 0 {
        return "0".into();
    }
    // The largest unit not above the size.
    let mut i = UNITS.len() - 1;
    while i > 0 && b < 1u64 << (10 * i) {
        i -= 1;
    }
    let unit = 1u128 << (10 * i);
    let b = u128::from(b);
    if b % unit == 0 {
        return format!("{}{}", b / unit, UNITS[i]);
    }
    let mut tenths = (b * 10 + unit / 2) / unit;
    // 1023.96K rounds to 1024.0K: that is 1.0M.
    if tenths >= 10240 && i + 1 < UNITS.len() {
        i += 1;
        tenths = (b * 10 + (unit << 10) / 2) / (unit << 10);
    }
    format!("{}.{}{}", tenths / 10, tenths % 10, UNITS[i])
}

impl Config {
    /// The first mail domain, which names the site.
    pub fn site_name(&self) -> &str {
        self.domains.first().map_or("localhost", String::as_str)
    }

    /// The public base URL without a trailing slash: `http.public_url`, or
    /// `https://<first domain>`.
    pub fn public_base_url(&self) -> String {
        match &self.http.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://{}", self.site_name()),
        }
    }

    /// The host of `http.public_url` (without port or brackets), else the first domain.
    pub fn public_host(&self) -> String {
        let from_url = self.http.public_url.as_deref().and_then(|url| {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            let authority = rest.split(['/', '?', '#']).next()?;
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let host = if let Some(v6) = host_port.strip_prefix('[') {
                v6.split(']').next()?
            } else {
                host_port.split(':').next()?
            };
            (!host.is_empty()).then(|| host.to_ascii_lowercase())
        });
        from_url.unwrap_or_else(|| self.site_name().to_owned())
    }

    /// The IMAP and SMTP servers mail programs are told to use (`[autoconfig]`).
    pub fn mail_servers(&self) -> MailServers {
        let a = &self.autoconfig;
        let host = |h: &Option<String>| {
            h.as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map_or_else(|| self.public_host(), str::to_owned)
        };
        MailServers {
            imap: MailServer {
                host: host(&a.imap_host),
                port: a.imap_port,
                socket: a.imap_socket,
            },
            smtp: MailServer {
                host: host(&a.smtp_host),
                port: a.smtp_port,
                socket: a.smtp_socket,
            },
        }
    }

    /// Loads the configuration from defaults, `path` (absent is fine only when
    /// `path_required` is false) and the environment, then validates it.
    pub fn load(path: &Path, path_required: bool) -> Result<Config, ConfigError> {
        if path_required && !path.exists() {
            return Err(ConfigError::Load(format!(
                "configuration file {} does not exist",
                path.display()
            )));
        }
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            // POSTERN_CONFIG names the file (the CLI's --config), it is not a key.
            .merge(Env::prefixed("POSTERN_").ignore(&["CONFIG"]).split("__"))
            .merge(
                Env::raw()
                    .only(&["REGISTRATION_MODE"])
                    .map(|_| "registration.mode".into()),
            );
        let mut config: Config = figment.extract()?;
        if let Ok(admin) = std::env::var("ADMIN_USERNAME") {
            if !admin.trim().is_empty() {
                config
                    .registration
                    .admin_usernames
                    .push(admin.trim().into());
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The defaults and the TOML `text` alone (no file, no environment), validated: what
    /// the config fuzz target drives.
    #[doc(hidden)]
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: consistency between keys.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        if self.domains.is_empty() {
            // As Debian's mail packages do: the host's mail name is the default domain.
            match std::fs::read_to_string(MAILNAME) {
                Ok(name) if !name.trim().is_empty() => self.domains.push(name.trim().to_owned()),
                _ => {
                    return Err(invalid(
                        "domains",
                        "at least one mail domain is needed, e.g. domains = [\"example.org\"] \
                         (without it, postern uses the host's /etc/mailname, which is missing)",
                    ))
                }
            }
        }
        let mut normalized = Vec::with_capacity(self.domains.len());
        for d in &self.domains {
            let ascii = crate::domain::normalize(d)
                .map_err(|e| invalid("domains", format!("`{d}`: {e}")))?;
            normalized.push(ascii);
        }
        self.domains = normalized;
        self.database.validate()?;
        self.listen.validate()?;
        if let Some(url) = &self.http.public_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err(invalid(
                    "http.public_url",
                    format!("`{url}` must start with https:// (or http://)"),
                ));
            }
        }
        for (key, port) in [
            ("autoconfig.imap_port", self.autoconfig.imap_port),
            ("autoconfig.smtp_port", self.autoconfig.smtp_port),
        ] {
            if port == 0 {
                return Err(invalid(key, "must be a port number, 1 to 65535"));
            }
        }
        let u = &self.registration.username;
        if u.min_length == 0 || u.min_length > u.max_length || u.max_length > 64 {
            return Err(invalid(
                "registration.username",
                "need 1 <= min_length <= max_length <= 64",
            ));
        }
        let p = &self.registration.password;
        if p.min_length > p.max_length || p.max_length == 0 || p.max_length > 1024 {
            return Err(invalid(
                "registration.password",
                "need min_length <= max_length <= 1024",
            ));
        }
        let r = self.registration.random_local_length;
        if r < u.min_length || r > u.max_length {
            return Err(invalid(
                "registration.random_local_length",
                "must lie within registration.username's min_length..max_length",
            ));
        }
        if !self.mailbox.home.starts_with('/')
            || !(self.mailbox.home.contains("{local}") || self.mailbox.home.contains("{address}"))
        {
            return Err(invalid(
                "mailbox.home",
                "must be an absolute path containing {local} or {address}",
            ));
        }
        argon2::Params::new(
            self.argon2.memory_kib,
            self.argon2.iterations,
            self.argon2.parallelism,
            None,
        )
        .map_err(|e| invalid("argon2", e.to_string()))?;
        if let Some(load) = self.registration.max_load_1m {
            if !load.is_finite() || load <= 0.0 {
                return Err(invalid(
                    "registration.max_load_1m",
                    "must be a positive number such as 5 (leave it out for no limit)",
                ));
            }
        }
        if self.argon2.max_pending == 0 {
            return Err(invalid("argon2.max_pending", "must be at least 1"));
        }
        Ok(())
    }

    /// The configuration as TOML, for `postern config show`. Nothing here is secret today;
    /// secrets added later are replaced by `"<redacted>"` here.
    pub fn to_toml(&self) -> String {
        let value = match serde_json::to_value(self) {
            Ok(v) => v,
            Err(e) => return format!("# cannot render configuration: {e}\n"),
        };
        let mut out = String::new();
        write_toml(&mut out, &[], &value);
        out
    }
}

fn write_toml(out: &mut String, path: &[&str], value: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(map) = value else { return };
    for (k, v) in map {
        if !v.is_object() && !v.is_null() {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    for (k, v) in map {
        if v.is_object() {
            let mut p = path.to_vec();
            p.push(k);
            out.push_str(&format!("\n[{}]\n", p.join(".")));
            write_toml(out, &p, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert_eq!(parse_size("10kb"), Ok(10 << 10));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999T").is_err());
        assert_eq!(format_size(500 << 20), "500M");
        assert_eq!(format_size(1000), "1000");
        // Regression: `user list` said `7041 of 500M`.
        assert_eq!(human_size(7041), "6.9K");
        assert_eq!(human_size(0), "0");
        assert_eq!(human_size(1000), "1000B");
        assert_eq!(human_size(500 << 20), "500M");
        assert_eq!(human_size(3 << 29), "1.5G");
        assert_eq!(human_size((1 << 20) - 20), "1.0M");
        assert_eq!(human_size(12_900_000), "12.3M");
        assert_eq!(human_size(u64::MAX), "16777216.0T");
        assert_eq!(Quota::parse("unlimited"), Ok(Quota::Unlimited));
    }

    #[test]
    fn durations() {
        assert_eq!(Seconds::parse("90d"), Ok(Seconds(90 * 86400)));
        assert_eq!(Seconds::parse("72h"), Ok(Seconds(72 * 3600)));
        assert_eq!(Seconds::parse("30m"), Ok(Seconds(1800)));
        assert_eq!(Seconds::parse("45"), Ok(Seconds(45)));
        assert!(Seconds::parse("3 fortnights").is_err());
        assert_eq!(Seconds(3 * 86400).to_string(), "3d");
    }

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("postern.toml");
        std::fs::write(&path, toml).expect("write");
        Config::load(&path, true)
    }

    // `uid = 5000` (a number, as the comment allows) and POSTERN_MAILBOX__UID=5000 were
    // refused: "expected a string".
    #[test]
    fn the_mail_owner_is_a_name_or_a_number() {
        let c =
            load_str("domains = [\"a.org\"]\n[mailbox]\nuid = 5000\ngid = \"mail\"\n").expect("ok");
        assert_eq!(
            (c.mailbox.uid.as_str(), c.mailbox.gid.as_str()),
            ("5000", "mail")
        );
        let e = load_str("domains = [\"a.org\"]\n[mailbox]\nuid = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("uid"), "{e}");
    }

    #[test]
    fn sign_up_guard_and_self_service_keys() {
        let c = load_str("domains = [\"example.org\"]\n").expect("defaults");
        assert_eq!(c.registration.min_free_disk, Size(1 << 30));
        assert_eq!(c.registration.max_load_1m, None);
        assert!(c.self_service.enabled && !c.self_service.allow_reuse);
        assert!(!c.http.show_invite_uses);
        let c = load_str(
            "domains = [\"example.org\"]\n[registration]\nmin_free_disk = \"0\"\nmax_load_1m = 5\n\
             [self_service]\nenabled = false\n",
        )
        .expect("ok");
        assert_eq!(
            (c.registration.min_free_disk, c.registration.max_load_1m),
            (Size(0), Some(5.0))
        );
        assert!(!c.self_service.enabled);
        for bad in ["0", "-1", "nan"] {
            let e = load_str(&format!(
                "domains = [\"example.org\"]\n[registration]\nmax_load_1m = {bad}\n"
            ))
            .expect_err("refused")
            .to_string();
            assert!(e.contains("registration.max_load_1m"), "{bad}: {e}");
        }
    }

    #[test]
    fn file_values_and_errors_name_the_key() {
        let c = load_str("domains = [\"Example.ORG\"]\n[quota]\ndefault = \"1G\"\n").expect("ok");
        assert_eq!(c.domains, vec!["example.org"]);
        assert_eq!(c.quota.default, Quota::Limited(1 << 30));
        assert_eq!(c.registration.mode, RegistrationMode::InviteOnly);

        let e = load_str("domains = [\"a.org\"]\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = load_str("domains = [\"a.org\"]\n[registration]\nmode = \"wide\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invite_only") && e.contains("registration.mode"),
            "{e}"
        );
        if !Path::new(MAILNAME).exists() {
            let e = load_str("domains = []\n").unwrap_err().to_string();
            assert!(e.contains("domains") && e.contains("/etc/mailname"), "{e}");
        }
    }

    #[test]
    fn bad_typed_values_are_errors_that_name_the_key() {
        for (toml, key) in [
            ("[listen]\nsocket_mode = \"0999\"\n", "listen.socket_mode"),
            (
                "[listen]\nsocket_mode = \"rw-rw----\"\n",
                "listen.socket_mode",
            ),
            (
                "[listen.sockets.dict]\nmode = \"01777\"\n",
                "listen.sockets.dict.mode",
            ),
            ("[log]\nlevel = \"loud\"\n", "log.level"),
            (
                "[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "http.trusted_proxies",
            ),
            (
                "[http]\ntrusted_proxies = [\"proxy.example\"]\n",
                "http.trusted_proxies",
            ),
        ] {
            let e = load_str(&format!("domains = [\"a.org\"]\n{toml}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn typed_values_load_and_show_as_written() {
        let c = load_str(
            "domains = [\"a.org\"]\n[listen]\nsocket_mode = \"0666\"\nsocket_group = \"mail\"\n\
             [listen.sockets.dict]\nmode = \"0660\"\ngroup = \"dovecot\"\n\
             [log]\nlevel = \"debug\"\n[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n",
        )
        .expect("ok");
        let dict = c.listen.access(&c.listen.sockets.dict);
        assert_eq!(dict.mode.bits(), 0o660);
        assert_eq!(dict.group.as_deref(), Some("dovecot"));
        let auth = c.listen.access(&c.listen.sockets.auth);
        assert_eq!(auth.mode.bits(), 0o666);
        assert_eq!(auth.group.as_deref(), Some("mail"));
        assert!(c.http.trusted_proxies[1].contains("10.9.8.7".parse().expect("ip")));
        assert!(!c.http.trusted_proxies[0].contains("127.0.0.2".parse().expect("ip")));
        let shown = c.to_toml();
        for line in [
            "socket_mode = \"0666\"",
            "level = \"debug\"",
            "trusted_proxies = [\"127.0.0.1\",\"10.0.0.0/8\"]",
        ] {
            assert!(shown.contains(line), "{line} in {shown}");
        }
    }

    #[test]
    fn database_path_selects_sqlite_url_postgres_and_both_are_refused_by_name() {
        let c = load_str("domains = [\"a.org\"]\n").expect("ok");
        assert_eq!(c.database.sqlite_path(), Path::new(Database::DEFAULT_PATH));
        assert_eq!(
            (c.database.url.as_deref(), c.database.pool_size),
            (None, 16)
        );
        let c = load_str(
            "domains = [\"a.org\"]\n[database]\nurl = \"postgresql:///postern?host=/run/postgresql\"\n\
             pool_size = 4\n",
        )
        .expect("ok");
        assert_eq!(c.database.pool_size, 4);
        assert!(c.database.url.is_some());
        let e = load_str(
            "domains = [\"a.org\"]\n[database]\npath = \"/x.db\"\nurl = \"postgresql:///p\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("database.url") && e.contains("database.path"),
            "{e}"
        );
        let e = load_str("domains = [\"a.org\"]\n[database]\nurl = \"mysql://db/p\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.url"), "{e}");
        let e = load_str("domains = [\"a.org\"]\n[database]\npassword_file = \"/pw\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.password_file"), "{e}");
    }

    #[test]
    fn listen_metrics_is_off_by_default_and_takes_a_loopback_address_or_a_path() {
        let c = load_str("domains = [\"a.org\"]\n").expect("ok");
        assert_eq!(c.listen.metrics, None);
        assert_eq!(c.listen.metrics_address(), None);
        for (value, want) in [
            ("127.0.0.1:8027", MetricsAddress::Tcp("127.0.0.1:8027")),
            ("[::1]:8027", MetricsAddress::Tcp("[::1]:8027")),
            ("localhost:8027", MetricsAddress::Tcp("localhost:8027")),
            (
                "/run/postern/metrics.sock",
                MetricsAddress::Unix(Path::new("/run/postern/metrics.sock")),
            ),
        ] {
            let c = load_str(&format!(
                "domains = [\"a.org\"]\n[listen]\nmetrics = \"{value}\"\n"
            ))
            .expect(value);
            assert_eq!(c.listen.metrics_address(), Some(want), "{value}");
        }
        for value in [
            "0.0.0.0:8027",
            "192.0.2.1:8027",
            "metrics.example:8027",
            "localhost:x",
        ] {
            let e = load_str(&format!(
                "domains = [\"a.org\"]\n[listen]\nmetrics = \"{value}\"\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("listen.metrics") && e.contains("loopback"),
                "{value}: {e}"
            );
        }
    }
}
