//! `postern serve`: opens the database, binds every configured socket, tells systemd it
//! is ready, serves until SIGTERM/SIGINT, then stops accepting, lets requests in flight
//! finish (bounded by a deadline) and removes its socket files. SIGHUP re-reads the
//! configuration and the auth API secret and applies them without dropping a connection.
//!
//! ```text
//! [listen] dict = "/run/postern/dict.sock"   -> dovecot_dict::session per connection
//! ```

pub mod http;

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::Accounts;
use crate::config::{Config, ConfigError, Listen};
use crate::dovecot_dict::{self, handler::DictHandler};
use crate::dovecot_lua_api::Secret;
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
    let accounts = Arc::new(Accounts::open(config.clone())?);
    match accounts.promote_configured_admins().await {
        Ok(promoted) => {
            for a in promoted {
                tracing::info!("event=admin_promote address={a}");
            }
        }
        Err(e) => tracing::warn!("event=admin_promote result=tempfail error=\"{e}\""),
    }

    // Bind everything first: a socket that cannot be bound stops the start before
    // anything is served.
    let listen = &config.listen;
    let mut bound = Vec::new();
    for (path, service) in [
        (&listen.dict, Service::Dict),
        (&listen.auth, Service::Auth),
        (&listen.policy, Service::Policy),
    ] {
        if let Some(path) = path {
            match bind_unix(path, listen) {
                Ok(listener) => bound.push((path.clone(), service, listener)),
                Err(e) => {
                    for (p, _, _) in &bound {
                        let _ = std::fs::remove_file(p);
                    }
                    return Err(e);
                }
            }
        }
    }
    let mut http_bound = Vec::new();
    let unbind = |bound: &Vec<(PathBuf, Service, UnixListener)>| {
        for (p, _, _) in bound {
            let _ = std::fs::remove_file(p);
        }
    };
    if let Some(addr) = &listen.http {
        match bind_tcp(addr).await {
            Ok(l) => http_bound.push((HttpService::Web, http::HttpListener::Tcp(l))),
            Err(e) => {
                unbind(&bound);
                return Err(e);
            }
        }
    }
    if let Some(path) = &listen.http_socket {
        match bind_unix(path, listen) {
            Ok(l) => {
                bound.push((path.clone(), Service::HttpSocket, l));
            }
            Err(e) => {
                unbind(&bound);
                return Err(e);
            }
        }
    }
    let mut lua_secret = None;
    if let Some(addr) = &listen.auth_http {
        let path = &config.auth_http.secret_file;
        let secret = match read_secret(path) {
            Ok(s) => Arc::new(Secret::new(s)),
            Err(message) => {
                unbind(&bound);
                return Err(ServeError::Secret {
                    path: path.clone(),
                    message,
                });
            }
        };
        lua_secret = Some(secret.clone());
        match bind_tcp(addr).await {
            Ok(l) => http_bound.push((HttpService::LuaApi(secret), http::HttpListener::Tcp(l))),
            Err(e) => {
                unbind(&bound);
                return Err(e);
            }
        }
    }
    if bound.is_empty() && http_bound.is_empty() {
        return Err(ServeError::NothingToServe);
    }

    let tracker = TaskTracker::new();
    let dict = Arc::new(DictHandler::new(accounts.clone()));
    let timeouts = {
        let accounts = accounts.clone();
        move || {
            let config = accounts.config();
            http::Timeouts {
                header: config.http.header_timeout.duration(),
                idle: config.http.idle_timeout.duration(),
            }
        }
    };
    let web = crate::web::router(accounts.clone());
    for (service, listener) in http_bound {
        let router = match service {
            HttpService::Web => web.clone(),
            HttpService::LuaApi(secret) => crate::dovecot_lua_api::router(accounts.clone(), secret),
        };
        tracker.spawn(http::serve(
            listener,
            router,
            config.http.max_connections,
            timeouts.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
    }
    let mut sockets = Vec::new();
    for (path, service, listener) in bound {
        sockets.push(path);
        let max = listen.max_connections;
        let (c, t) = (cancel.clone(), tracker.clone());
        match service {
            Service::Dict => {
                let dict = dict.clone();
                tracker.spawn(accept_loop(listener, max, c, t, move |stream, cancel| {
                    dovecot_dict::session::run(stream, dict.clone(), cancel)
                }));
            }
            Service::Auth => {
                let accounts = accounts.clone();
                tracker.spawn(accept_loop(listener, max, c, t, move |stream, cancel| {
                    dovecot_auth::session::run(stream, accounts.clone(), cancel)
                }));
            }
            Service::Policy => {
                let accounts = accounts.clone();
                tracker.spawn(accept_loop(listener, max, c, t, move |stream, cancel| {
                    postfix_policy::session::run(stream, accounts.clone(), cancel)
                }));
            }
            Service::HttpSocket => {
                tracker.spawn(http::serve(
                    http::HttpListener::Unix(listener),
                    web.clone(),
                    config.http.max_connections,
                    timeouts.clone(),
                    c,
                    t,
                ));
            }
        }
    }
    tracing::info!("event=start listeners={}", sockets.len());
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let reload = Reload {
        accounts: &accounts,
        config_path: &config_path,
        log: log.as_ref(),
        secret: lua_secret.as_deref(),
    };
    wait_for_stop(&reload, &cancel).await;

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("event=stop");
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("event=stop result=deadline open_connections_dropped=true");
    }
    for path in sockets {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Service {
    Dict,
    Auth,
    Policy,
    HttpSocket,
}

#[derive(Debug, Clone)]
enum HttpService {
    Web,
    LuaApi(Arc<Secret>),
}

async fn bind_tcp(addr: &str) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
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
    log: Option<&'a LogHandle>,
    /// The auth API's secret, when `listen.auth_http` is served.
    secret: Option<&'a Secret>,
}

/// Waits for SIGTERM, SIGINT or `cancel`; reloads on SIGHUP.
async fn wait_for_stop(reload: &Reload<'_>, cancel: &CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
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
        let loaded = Config::load(self.config_path, false);
        if let Some(secret) = self.secret {
            let path = match &loaded {
                Ok(new) => new.auth_http.secret_file.clone(),
                Err(_) => self.accounts.config().auth_http.secret_file.clone(),
            };
            reload_secret(secret, &path);
        }
        match loaded {
            Ok(new) => self.apply(new),
            Err(e) => tracing::error!("event=reload result=fail kept=old error=\"{e}\""),
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
                tracing::warn!("event=reload log_level=unchanged error=\"{e}\"");
            }
        }
        let mode = new.registration.mode;
        accounts.replace_config(new);
        tracing::info!("event=reload result=ok registration_mode={mode}");
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
                path.display()
            );
        }
        Err(e) => tracing::warn!(
            "event=reload auth_http_secret=kept_old file={} error=\"{e}\"",
            path.display()
        ),
    }
}

/// Accepts connections on a Unix socket until cancelled, at most `max` at a time, each
/// in its own task.
async fn accept_loop<F, Fut>(
    listener: UnixListener,
    max: usize,
    cancel: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    F: Fn(UnixStream, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = &listener;
    let accept = || async move { listener.accept().await.map(|(stream, _)| stream) };
    serve_connections(accept, max, cancel, tracker, serve).await;
}

/// Takes connections from `accept` until cancelled, at most `max` at a time, and runs
/// `serve` for each in its own task. A failing accept (out of file descriptors and the
/// like) backs off instead of spinning.
pub(crate) async fn serve_connections<C, A, AFut, F, Fut>(
    accept: A,
    max: usize,
    cancel: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    A: Fn() -> AFut,
    AFut: Future<Output = std::io::Result<C>>,
    F: Fn(C, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max.max(1)));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = cancel.cancelled() => return,
        };
        let connection = tokio::select! {
            accepted = accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("event=accept result=fail error=\"{e}\"");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => return,
        };
        let session = serve(connection, cancel.clone());
        tracker.spawn(async move {
            let _permit = permit;
            if let Err(e) = session.await {
                tracing::debug!("event=connection result=error error=\"{e}\"");
            }
        });
    }
}

/// Binds a Unix socket with the configured mode, owner and group. A socket file left
/// by a previous run is replaced only if nothing answers on it.
pub fn bind_unix(path: &Path, listen: &Listen) -> Result<UnixListener, ServeError> {
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
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create directory: {e}")))?;
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    let mode = listen.mode_bits()?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail(format!("cannot set mode: {e}")))?;
    let uid = match &listen.socket_owner {
        Some(name) => Some(lookup_user(name).map_err(fail)?),
        None => None,
    };
    let gid = match &listen.socket_group {
        Some(name) => Some(lookup_group(name).map_err(fail)?),
        None => None,
    };
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(path, uid, gid)
            .map_err(|e| fail(format!("cannot change owner: {e}")))?;
    }
    Ok(listener)
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
