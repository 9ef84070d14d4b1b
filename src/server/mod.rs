//! `postern serve`: opens the database, binds every configured listener, tells systemd
//! it is ready, serves until SIGTERM/SIGINT, then stops accepting, lets requests in
//! flight finish (bounded by a deadline) and removes its socket files. SIGHUP re-reads
//! the configuration and the auth API secret and applies them without dropping a
//! connection.
//!
//! The listeners are one table ([`listeners`]): what to bind (a Unix path or a TCP
//! address) and which service runs on each connection. Everything is bound before
//! anything is served; the socket files bound so far are removed by [`SocketFiles`]'s
//! drop, whether the start fails half way or the daemon stops.
//!
//! ```text
//! [listen] dict = "/run/postern/dict.sock"      -> dovecot_dict::session per connection
//!          auth = ".../postern/auth"            -> dovecot_auth::session
//!          policy = ".../postern/policy"        -> postfix_policy::session
//!          http = "127.0.0.1:8025", http_socket -> web::router (http.rs)
//!          auth_http = "127.0.0.1:8026"         -> dovecot_lua_api::router
//!          metrics = "127.0.0.1:8027" or a path  -> observe::router (/metrics, /readyz)
//! event=start version=0.1.0 listeners=2 dict=/run/postern/dict.sock http=127.0.0.1:8025
//! ```

pub mod http;
pub mod observe;

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::Accounts;
use crate::config::{Config, ConfigError, Listen, MetricsAddress, SocketAccess, SocketPerms};
use crate::conn::{Lease, Pool};
use crate::dovecot_dict::{self, handler::DictHandler};
use crate::dovecot_lua_api::Secret;
use crate::logfmt;
use crate::logging::LogHandle;
use crate::{dovecot_auth, postfix_policy};

/// How long requests in flight may take to finish after a stop signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Open(#[from] crate::accounts::OpenError),
    #[error(transparent)]
    Hasher(#[from] crate::accounts::password::HasherError),
    #[error("socket {path}: {message}")]
    Socket { path: PathBuf, message: String },
    /// The socket's directory is missing and cannot be made, or postern may not write
    /// in it: a setup problem (outside systemd, `/run/postern` is nobody's job).
    #[error(
        "socket {path}: {message}; under systemd, postern.service makes /run/postern \
         (RuntimeDirectory=); started another way, make the directory first, writable by \
         the user postern runs as: install -d -o postern -g postern -m 0750 {}",
        dir.display()
    )]
    SocketDir {
        path: PathBuf,
        dir: PathBuf,
        message: String,
    },
    #[error("auth API secret {path}: {message}")]
    Secret { path: PathBuf, message: String },
    #[error("no listener is configured: set at least one of listen.dict, listen.auth, listen.policy, listen.http")]
    NothingToServe,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the daemon until `cancel` fires or a stop signal arrives.
pub async fn run(
    config: Config,
    config_path: PathBuf,
    log: Option<LogHandle>,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let signals = Signals::catch();
    // A file there at the start must be there at a reload: a missing one is refused,
    // not read as "defaults only".
    let file_at_start = config_path.exists();
    // What `postern config check` calls errors keeps mail from working, not postern from
    // serving: logged, and the start goes on.
    for f in crate::accounts::mailbox::check(&config.mailbox) {
        tracing::warn!(
            "event=config_check severity={} key={} message={}",
            f.severity.as_str(),
            f.key,
            logfmt::value(&f.message)
        );
    }
    let accounts = open_accounts(&config)?;
    promote_admins(&accounts).await;
    announce_setup_invite(&accounts).await;

    let mut sockets = SocketFiles::default();
    let mut bound = Vec::new();
    for listener in listeners(&config.listen) {
        bound.push(listener.bind(&config, &mut sockets).await?);
    }
    if bound.is_empty() {
        return Err(ServeError::NothingToServe);
    }
    let names: Vec<String> = bound.iter().map(|b| b.listener.describe()).collect();
    let daemon = Arc::new(observe::Daemon {
        accounts: accounts.clone(),
        listeners: bound.iter().map(|b| b.listener.key_and_address()).collect(),
        serving: std::sync::atomic::AtomicBool::new(false),
    });
    let lua_secret = bound.iter().find_map(|b| match &b.runs {
        Runs::LuaApi(secret) => Some(secret.clone()),
        _ => None,
    });

    tracing::info!(
        "event=start version={} listeners={} {}",
        env!("CARGO_PKG_VERSION"),
        names.len(),
        names.join(" ")
    );
    let tracker = TaskTracker::new();
    let services = Services::new(&accounts, &daemon);
    for b in bound {
        tracker.spawn(services.clone().serve(b, cancel.clone(), tracker.clone()));
    }
    daemon
        .serving
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let reload = Reload {
        accounts: &accounts,
        config_path: &config_path,
        file_at_start,
        log: log.as_ref(),
        secret: lua_secret.as_deref(),
    };
    wait_for_stop(signals, &reload, &cancel).await;

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    daemon
        .serving
        .store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("event=stop");
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("event=stop result=deadline open_connections_dropped=true");
    }
    drop(sockets);
    Ok(())
}

/// The core over the configured database. A database that cannot be opened for now
/// (read-only, full, locked) does not stop the start: requests get temporary failures
/// until it opens. A timer looks at the file once a second, so a deleted or replaced
/// database is named in the log even while no request comes.
fn open_accounts(config: &Config) -> Result<Arc<Accounts>, ServeError> {
    let store = crate::store::Store::open_degraded(&config.database)
        .map_err(crate::accounts::OpenError::Store)?;
    let accounts = Arc::new(Accounts::new(config.clone(), store)?);
    let watched = Arc::downgrade(&accounts);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while let Some(accounts) = (tick.tick().await, watched.upgrade()).1 {
            let _ = accounts.check_database();
        }
    });
    Ok(accounts)
}

/// Makes the accounts named by `registration.admin_usernames` administrators.
async fn promote_admins(accounts: &Accounts) {
    match accounts.promote_configured_admins().await {
        Ok(promoted) => {
            for a in promoted {
                let a = logfmt::private(a, accounts.config().log.no_log);
                tracing::info!("event=admin_promote address={a}");
            }
        }
        Err(e) => tracing::warn!(
            "event=admin_promote result=tempfail error={}",
            logfmt::value(e)
        ),
    }
}

/// While no administrator exists, logs the setup invite's link once (the code is also in
/// `setup-invite` beside the database, readable by root only).
async fn announce_setup_invite(accounts: &Accounts) {
    match accounts.ensure_setup_invite().await {
        Ok(Some(code)) => tracing::warn!(
            "event=setup_invite result=waiting link={} note={}",
            crate::logfmt::value(accounts.signup_link(&code)),
            crate::logfmt::value(
                "no administrator yet: the first sign-up with this link becomes one"
            )
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "event=setup_invite result=tempfail error={}",
            crate::logfmt::value(&e)
        ),
    }
}

// ----- the listener table ----------------------------------------------------------------

/// What runs on a listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Dict,
    Auth,
    Policy,
    /// `/new` and `/admin` (web::router).
    Web,
    /// Dovecot 2.4's Lua passdb/userdb API (dovecot_lua_api::router).
    LuaApi,
    /// `/metrics`, `/healthz`, `/readyz`, `/status` (observe::router).
    Metrics,
}

/// Where a listener listens.
#[derive(Debug, Clone)]
enum Address<'a> {
    /// A Unix socket, created with these permissions.
    Unix(&'a Path, SocketPerms),
    /// `host:port`.
    Tcp(&'a str),
}

/// One row of the table: a configured listener.
#[derive(Debug, Clone)]
struct Listener<'a> {
    /// The `listen.*` key that configures it; it names the listener in the log.
    key: &'static str,
    service: Service,
    address: Address<'a>,
}

/// Every configured listener, in the order they are bound.
fn listeners(listen: &Listen) -> Vec<Listener<'_>> {
    let s = &listen.sockets;
    [
        Listener::unix("dict", Service::Dict, &listen.dict, listen.access(&s.dict)),
        Listener::unix("auth", Service::Auth, &listen.auth, listen.access(&s.auth)),
        Listener::unix(
            "policy",
            Service::Policy,
            &listen.policy,
            listen.access(&s.policy),
        ),
        Listener::tcp("http", Service::Web, &listen.http),
        Listener::unix(
            "http_socket",
            Service::Web,
            &listen.http_socket,
            listen.access(&s.http_socket),
        ),
        Listener::tcp("auth_http", Service::LuaApi, &listen.auth_http),
        Listener::metrics(listen),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A listener bound and ready to accept.
struct Bound {
    listener: BoundListener,
    runs: Runs,
}

/// A [`Service`] with what it needs to answer.
enum Runs {
    Dict,
    Auth,
    Policy,
    Web,
    /// With the auth API's shared secret.
    LuaApi(Arc<Secret>),
    Metrics,
}

/// The socket of a bound listener, and the key and address it was configured with.
enum BoundListener {
    Unix(&'static str, PathBuf, UnixListener),
    Tcp(&'static str, String, TcpListener),
}

impl BoundListener {
    /// `key=address`, for the start line.
    fn describe(&self) -> String {
        match self {
            BoundListener::Unix(key, path, _) => {
                format!("{key}={}", logfmt::value(path.display()))
            }
            BoundListener::Tcp(key, addr, _) => format!("{key}={addr}"),
        }
    }

    /// The `listen.*` key and the address, for `postern status`.
    fn key_and_address(&self) -> (&'static str, String) {
        match self {
            BoundListener::Unix(key, path, _) => (key, path.display().to_string()),
            BoundListener::Tcp(key, addr, _) => (key, addr.clone()),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            BoundListener::Unix(key, ..) | BoundListener::Tcp(key, ..) => key,
        }
    }
}

impl<'a> Listener<'a> {
    /// A Unix socket listener, if `path` is configured.
    fn unix(
        key: &'static str,
        service: Service,
        path: &'a Option<PathBuf>,
        perms: SocketPerms,
    ) -> Option<Self> {
        let path = path.as_deref()?;
        Some(Listener {
            key,
            service,
            address: Address::Unix(path, perms),
        })
    }

    /// The metrics listener, if `listen.metrics` is set: TCP, or a Unix socket with the
    /// shared socket permissions.
    fn metrics(listen: &'a Listen) -> Option<Self> {
        let address = match listen.metrics_address()? {
            MetricsAddress::Unix(path) => {
                Address::Unix(path, listen.access(&SocketAccess::default()))
            }
            MetricsAddress::Tcp(addr) => Address::Tcp(addr),
        };
        Some(Listener {
            key: "metrics",
            service: Service::Metrics,
            address,
        })
    }

    /// A TCP listener, if `addr` is configured.
    fn tcp(key: &'static str, service: Service, addr: &'a Option<String>) -> Option<Self> {
        let addr = addr.as_deref()?;
        Some(Listener {
            key,
            service,
            address: Address::Tcp(addr),
        })
    }

    /// Binds the listener (a socket file goes into `sockets`), and reads what its
    /// service needs before it can answer (the auth API's secret).
    async fn bind(&self, config: &Config, sockets: &mut SocketFiles) -> Result<Bound, ServeError> {
        let runs = match self.service {
            Service::Dict => Runs::Dict,
            Service::Auth => Runs::Auth,
            Service::Policy => Runs::Policy,
            Service::Web => Runs::Web,
            Service::Metrics => Runs::Metrics,
            Service::LuaApi => {
                let path = &config.auth_http.secret_file;
                let secret = read_secret(path).map_err(|message| ServeError::Secret {
                    path: path.clone(),
                    message,
                })?;
                Runs::LuaApi(Arc::new(Secret::new(secret)))
            }
        };
        let listener = match &self.address {
            Address::Unix(path, access) => {
                let l = bind_unix(path, access)?;
                sockets.0.push(path.to_path_buf());
                BoundListener::Unix(self.key, path.to_path_buf(), l)
            }
            Address::Tcp(addr) => {
                BoundListener::Tcp(self.key, (*addr).to_owned(), bind_tcp(addr).await?)
            }
        };
        Ok(Bound { listener, runs })
    }
}

/// The socket files this run created; dropping it removes them.
#[derive(Debug, Default)]
pub struct SocketFiles(Vec<PathBuf>);

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What the listeners' connections are served with, made once for all of them.
struct Services {
    accounts: Arc<Accounts>,
    dict: Arc<DictHandler>,
    web: axum::Router,
    observe: axum::Router,
}

impl Services {
    fn new(accounts: &Arc<Accounts>, daemon: &Arc<observe::Daemon>) -> Arc<Services> {
        Arc::new(Services {
            accounts: accounts.clone(),
            dict: Arc::new(DictHandler::new(accounts.clone())),
            web: crate::web::router(accounts.clone()),
            observe: observe::router(daemon.clone()),
        })
    }

    /// Accepts and serves `bound`'s connections until `cancel` fires.
    async fn serve(self: Arc<Self>, bound: Bound, cancel: CancellationToken, tracker: TaskTracker) {
        let (max, http_max) = {
            let config = self.accounts.config();
            (config.listen.max_connections, config.http.max_connections)
        };
        let (c, t) = (cancel, tracker);
        let key = bound.listener.key();
        let (listener, router) = match (bound.runs, bound.listener) {
            (Runs::Dict, BoundListener::Unix(.., l)) => {
                let dict = self.dict.clone();
                return accept_loop(l, key, max, c, t, move |stream, lease| {
                    dovecot_dict::session::run(stream, dict.clone(), lease)
                })
                .await;
            }
            (Runs::Auth, BoundListener::Unix(.., l)) => {
                let accounts = self.accounts.clone();
                return accept_loop(l, key, max, c, t, move |stream, lease| {
                    dovecot_auth::session::run(stream, accounts.clone(), lease)
                })
                .await;
            }
            (Runs::Policy, BoundListener::Unix(.., l)) => {
                let accounts = self.accounts.clone();
                return accept_loop(l, key, max, c, t, move |stream, lease| {
                    postfix_policy::session::run(stream, accounts.clone(), lease)
                })
                .await;
            }
            // The table puts the line protocols on Unix sockets only.
            (Runs::Dict | Runs::Auth | Runs::Policy, BoundListener::Tcp(..)) => return,
            (Runs::Web, listener) => (http_listener(listener), self.web.clone()),
            (Runs::Metrics, listener) => (http_listener(listener), self.observe.clone()),
            (Runs::LuaApi(secret), listener) => (
                http_listener(listener),
                crate::dovecot_lua_api::router(self.accounts.clone(), secret),
            ),
        };
        let accounts = self.accounts.clone();
        let timeouts = move || {
            let config = accounts.config();
            http::Timeouts {
                header: config.http.header_timeout.duration(),
                idle: config.http.idle_timeout.duration(),
            }
        };
        http::serve(listener, key, router, http_max, timeouts, c, t).await;
    }
}

fn http_listener(listener: BoundListener) -> http::HttpListener {
    match listener {
        BoundListener::Tcp(.., l) => http::HttpListener::Tcp(l),
        BoundListener::Unix(.., l) => http::HttpListener::Unix(l),
    }
}

async fn bind_tcp(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Socket {
            path: PathBuf::from(addr),
            message: e.to_string(),
        })
}

/// Reads the auth API's shared secret; it must exist and hold at least 16 characters.
/// The error says what is wrong, without the path.
fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let secret: Vec<u8> = text.trim_ascii().to_vec();
    if secret.len() < 16 {
        return Err("the secret must be at least 16 characters".into());
    }
    Ok(secret)
}

/// What a reload (SIGHUP) re-reads and where it puts the result.
struct Reload<'a> {
    accounts: &'a Accounts,
    config_path: &'a Path,
    /// The configuration file existed when the daemon started.
    file_at_start: bool,
    log: Option<&'a LogHandle>,
    /// The auth API's secret, when `listen.auth_http` is served.
    secret: Option<&'a Secret>,
}

/// The stop and reload signals, caught from the start: a SIGHUP that arrives while the
/// listeners are being bound (or right after READY) must reload, not kill the daemon.
struct Signals(Option<[tokio::signal::unix::Signal; 3]>);

impl Signals {
    fn catch() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Signals(Some([term, int, hup])),
            _ => Signals(None),
        }
    }
}

/// Waits for SIGTERM, SIGINT or `cancel`; reloads on SIGHUP.
async fn wait_for_stop(signals: Signals, reload: &Reload<'_>, cancel: &CancellationToken) {
    let Some([mut term, mut int, mut hup]) = signals.0 else {
        tracing::warn!("event=signals result=unavailable");
        cancel.cancelled().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            () = cancel.cancelled() => return,
            _ = hup.recv() => reload.run(),
        }
    }
}

impl Reload<'_> {
    /// Applies a re-read configuration and auth API secret; whichever cannot be read
    /// stays as it was. The secret is re-read even when the configuration is refused (it
    /// is a file of its own), from the new `auth_http.secret_file` when there is one.
    fn run(&self) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
        let loaded = Config::load(self.config_path, self.file_at_start);
        if let Some(secret) = self.secret {
            let path = match &loaded {
                Ok(new) => new.auth_http.secret_file.clone(),
                Err(_) => self.accounts.config().auth_http.secret_file.clone(),
            };
            reload_secret(secret, &path);
        }
        match loaded {
            Ok(new) => self.apply(new),
            Err(e) => tracing::error!(
                "event=reload result=fail kept=old error={}",
                logfmt::value(e)
            ),
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    }

    fn apply(&self, new: Config) {
        let (accounts, log) = (self.accounts, self.log);
        let old = accounts.config();
        if new.listen != old.listen || new.database != old.database || new.argon2 != old.argon2 {
            tracing::warn!(
                "event=reload note=\"listen, database and argon2 changes take effect at restart\""
            );
        }
        if let Some(log) = log {
            if let Err(e) = log.set_level(&new.log.level) {
                tracing::warn!(
                    "event=reload log_level=unchanged error={}",
                    logfmt::value(e)
                );
            }
        }
        let mode = new.registration.mode;
        accounts.replace_config(new);
        let generation = crate::metrics::get()
            .config_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        tracing::info!(
            "event=reload result=ok registration_mode={mode} config_generation={generation}"
        );
    }
}

/// Puts the secret re-read from `path` in force. An unreadable, empty or short file keeps
/// the old secret: Dovecot's logins go on working while the operator fixes the file.
fn reload_secret(secret: &Secret, path: &Path) {
    match read_secret(path) {
        Ok(new) if *secret.current() == *new => {}
        Ok(new) => {
            secret.replace(new);
            tracing::info!(
                "event=reload auth_http_secret=replaced file={}",
                logfmt::value(path.display())
            );
        }
        Err(e) => tracing::warn!(
            "event=reload auth_http_secret=kept_old file={} error={}",
            logfmt::value(path.display()),
            logfmt::value(e)
        ),
    }
}

/// Accepts connections on a Unix socket until cancelled, at most `max` at a time, each
/// in its own task.
async fn accept_loop<F, Fut>(
    listener: UnixListener,
    key: &'static str,
    max: usize,
    cancel: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    F: Fn(tokio::net::UnixStream, Lease) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = &listener;
    let accept = || async move { listener.accept().await.map(|(stream, _)| stream) };
    serve_connections(accept, key, max, cancel, tracker, serve).await;
}

/// Takes connections from `accept` until cancelled and runs `serve` for each in its own
/// task, holding a place in the listener's [`Pool`] of `max` (when it is full, the
/// longest-idle connection makes room). A failing accept (out of file descriptors and
/// the like) backs off instead of spinning. `key` names the listener in the metrics.
pub(crate) async fn serve_connections<C, A, AFut, F, Fut>(
    accept: A,
    key: &'static str,
    max: usize,
    cancel: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    A: Fn() -> AFut,
    AFut: Future<Output = std::io::Result<C>>,
    F: Fn(C, Lease) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let pool = Pool::counted(max, crate::metrics::get().listener(key));
    loop {
        let connection = tokio::select! {
            accepted = accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("event=accept result=fail error={}", logfmt::value(e));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => return,
        };
        let Some(lease) = pool.lease(&cancel).await else {
            return;
        };
        let session = serve(connection, lease);
        tracker.spawn(async move {
            if let Err(e) = session.await {
                tracing::debug!("event=connection result=error error={}", logfmt::value(e));
            }
        });
    }
}

/// Binds a Unix socket with the given mode, owner and group. A socket file left by a
/// previous run is replaced only if nothing answers on it.
pub fn bind_unix(path: &Path, access: &SocketPerms) -> Result<UnixListener, ServeError> {
    let fail = |message: String| ServeError::Socket {
        path: path.to_owned(),
        message,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(fail("exists and is not a socket; not replacing it".into()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(fail("another process is listening on it".into()));
        }
        std::fs::remove_file(path).map_err(|e| fail(format!("cannot remove stale socket: {e}")))?;
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir_problem = |message: String| ServeError::SocketDir {
        path: path.to_owned(),
        dir: dir.to_owned(),
        message,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| {
            dir_problem(format!(
                "its directory {} does not exist and cannot be created ({e})",
                dir.display()
            ))
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            dir_problem(format!(
                "no permission to create it in {} ({e})",
                dir.display()
            ))
        } else {
            fail(e.to_string())
        }
    })?;
    if let Err(e) = set_access(path, access) {
        let _ = std::fs::remove_file(path);
        return Err(fail(e));
    }
    Ok(listener)
}

/// Gives a new socket file its mode, owner and group.
fn set_access(path: &Path, access: &SocketPerms) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode.bits()))
        .map_err(|e| format!("cannot set mode: {e}"))?;
    let uid = match &access.owner {
        Some(name) => Some(lookup_user(name)?),
        None => None,
    };
    let gid = match &access.group {
        Some(name) => Some(lookup_group(name)?),
        None => None,
    };
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(path, uid, gid).map_err(|e| format!("cannot change owner: {e}"))?;
    }
    Ok(())
}

fn lookup_user(name: &str) -> Result<nix::unistd::Uid, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(nix::unistd::Uid::from_raw(n));
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid),
        _ => Err(format!("no user named {name}")),
    }
}

fn lookup_group(name: &str) -> Result<nix::unistd::Gid, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        _ => Err(format!("no group named {name}")),
    }
}
