//! Where log lines go: syslog (mail facility, as mail servers log) when not attached to
//! a terminal or when configured, stderr otherwise. One line per event, in a stable
//! `key=value` shape that fail2ban can match; never a password (the core never formats
//! one). Values are written by `logfmt`: quoted and escaped unless plain tokens, and
//! with `log.no_log` no address, IP or code (`-`).
//!
//! The level comes checked from the configuration ([`LogLevel`]); a reload swaps it in.
//!
//! ```text
//! postern[812]: event=login result=fail reason=bad_password address=alice@example.org service=smtp ip=192.0.2.7
//! postern[812]: event=register route=jit address=k3x9q2m1a@example.org service=dovecot ip=-
//! postern[812]: event=login result=fail reason=unknown address="x ip=192.0.2.10" service=smtp ip=203.0.113.5
//! ```

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::{Log, LogLevel, LogTarget};

/// Changes the log level of the running process (configuration reload).
#[derive(Clone)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
}

impl LogHandle {
    pub fn set_level(&self, level: &LogLevel) -> Result<(), String> {
        self.filter
            .reload(level.filter())
            .map_err(|e| e.to_string())
    }
}

/// Installs the global logger of the daemon; `None` if one is installed already
/// (tests). When syslog cannot be reached, it says so once and logs to stderr.
pub fn init(config: &Log) -> Option<LogHandle> {
    install(config, false)
}

/// Installs the logger of an operator command: syslog when configured, or with
/// `target = "auto"` off a terminal (scripts, the maintenance timer). Under `auto`, a
/// host without a syslog socket (a container without `/dev/log`) gets no log lines and
/// no warning: the command's own output says what happened, and a warning on every
/// call would drown it. Nothing is installed at a terminal or with `target = "stderr"`.
pub fn init_command(config: &Log) -> Option<LogHandle> {
    match config.target {
        LogTarget::Syslog => install(config, false),
        LogTarget::Auto if !std::io::stderr().is_terminal() => install(config, true),
        LogTarget::Auto | LogTarget::Stderr => None,
    }
}

fn install(config: &Log, quiet_without_syslog: bool) -> Option<LogHandle> {
    let filter = config.level.filter();
    let (filter, handle) = reload::Layer::new(filter);
    let to_syslog = match config.target {
        LogTarget::Syslog => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => !std::io::stderr().is_terminal(),
    };
    let syslog = if to_syslog {
        let formatter = Formatter3164 {
            facility: Facility::LOG_MAIL,
            hostname: None,
            process: "postern".into(),
            pid: std::process::id(),
        };
        match syslog::unix_custom(formatter, &config.syslog_socket) {
            Ok(logger) => Some(SyslogWriter {
                logger: Arc::new(Mutex::new(logger)),
            }),
            Err(_) if quiet_without_syslog => return None,
            Err(e) => {
                eprintln!(
                    "postern: cannot reach syslog at {} ({e}); logging to stderr",
                    config.syslog_socket.display()
                );
                None
            }
        }
    } else {
        None
    };
    let installed = match syslog {
        Some(writer) => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .without_time()
                    .with_level(false)
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(writer),
            )
            .try_init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    installed.ok().map(|()| LogHandle { filter: handle })
}

/// Sends each formatted line to syslog with the event's severity.
#[derive(Clone)]
struct SyslogWriter {
    logger: Arc<Mutex<Logger<LoggerBackend, Formatter3164>>>,
}

/// One line being formatted; sent when the formatter drops it.
struct SyslogLine {
    logger: Arc<Mutex<Logger<LoggerBackend, Formatter3164>>>,
    level: Level,
    buf: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let line = text.trim_end();
        if line.is_empty() {
            return;
        }
        let Ok(mut logger) = self.logger.lock() else {
            return;
        };
        let sent = match self.level {
            Level::ERROR => logger.err(line),
            Level::WARN => logger.warning(line),
            Level::INFO => logger.info(line),
            Level::DEBUG | Level::TRACE => logger.debug(line),
        };
        if sent.is_err() {
            // syslog restarted or is gone: the line is not lost, it goes to stderr.
            eprintln!("{line}");
        }
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogLine {
        self.line(*meta.level())
    }
}

impl SyslogWriter {
    fn line(&self, level: Level) -> SyslogLine {
        SyslogLine {
            logger: self.logger.clone(),
            level,
            buf: Vec::with_capacity(256),
        }
    }
}
