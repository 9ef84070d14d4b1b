//! `postern config show|check`: the effective configuration (defaults, file,
//! environment), as TOML or as a verdict. `check` also looks at this host: whether
//! `mailbox.uid` and `mailbox.gid` name somebody and whether they can write the mail
//! root (`accounts::mailbox`).
//!
//! ```text
//! $ postern config check
//! warning: mailbox.uid: no user has uid 5000 on this host (Dovecot accepts it; ...)
//! configuration ok (/etc/postern/postern.toml)
//! ```

use std::io::Write;

use clap::Subcommand;

use super::{load_config, Cli, Failure};
use crate::accounts::mailbox::{self, Severity};

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration (defaults, file, environment) as TOML.
    Show,
    /// Check the configuration; exit 2 with the reason when it is invalid. Then check it
    /// against this host (mailbox.uid and mailbox.gid exist, the mail root is writable
    /// by them): problems are printed as errors (exit 1) or warnings.
    Check,
}

pub(super) fn run(cli: &Cli, cmd: &ConfigCmd, out: &mut dyn Write) -> Result<(), Failure> {
    let config = load_config(cli)?;
    match cmd {
        ConfigCmd::Show => write!(out, "{}", config.to_toml())?,
        ConfigCmd::Check => {
            let findings = mailbox::check(&config.mailbox);
            for f in &findings {
                writeln!(out, "{}: {}: {}", f.severity.as_str(), f.key, f.message)?;
            }
            let errors = findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            let source = if cli.config_path().exists() {
                cli.config_path().display().to_string()
            } else {
                format!(
                    "defaults and environment; no file at {}",
                    cli.config_path().display()
                )
            };
            if errors > 0 {
                out.flush()?;
                return Err(Failure::refused(format!(
                    "the configuration ({source}) is valid, but {errors} error(s) on this host \
                     (above) keep mail from working"
                )));
            }
            writeln!(out, "configuration ok ({source})")?;
        }
    }
    Ok(())
}
