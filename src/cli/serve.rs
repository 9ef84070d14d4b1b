//! `postern serve`: the daemon on a multi-threaded runtime, until SIGTERM.
//!
//! ```text
//! $ postern serve
//! event=start version=0.1.0 listeners=4 ...
//! ```

use super::{load_config, Cli, Failure};

pub(super) fn run(cli: &Cli) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let log = crate::logging::init(&config.log);
    // Blocking threads run SQLite calls only (argon2 has its own workers): a few are
    // plenty, and a bound keeps a burst of connections from spawning hundreds.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(|e| Failure::refused(format!("cannot start the runtime: {e}")))?;
    let cancel = tokio_util::sync::CancellationToken::new();
    runtime
        .block_on(crate::server::run(
            config,
            cli.config_path().to_path_buf(),
            log,
            cancel,
        ))
        .map_err(|e| {
            tracing::error!("event=fatal error={}", crate::logfmt::value(&e));
            let code = match e {
                crate::server::ServeError::Config(_)
                | crate::server::ServeError::NothingToServe
                | crate::server::ServeError::SocketDir { .. } => 2,
                crate::server::ServeError::Open(crate::accounts::OpenError::Store(ref e))
                    if e.is_permanent() =>
                {
                    4
                }
                _ => 1,
            };
            Failure::new(code, e.to_string())
        })
}
