//! `postern config show|check`: the effective configuration (defaults, file,
//! environment), as TOML or as a verdict.
//!
//! ```text
//! $ postern config check
//! configuration ok (/etc/postern/postern.toml)
//! ```

use std::io::Write;

use clap::Subcommand;

use super::{load_config, Cli, Failure};

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration (defaults, file, environment) as TOML.
    Show,
    /// Check the configuration; exit 2 with the reason when it is invalid.
    Check,
}

pub(super) fn run(cli: &Cli, cmd: &ConfigCmd, out: &mut dyn Write) -> Result<(), Failure> {
    let config = load_config(cli)?;
    match cmd {
        ConfigCmd::Show => write!(out, "{}", config.to_toml())?,
        ConfigCmd::Check => writeln!(
            out,
            "configuration ok ({})",
            if cli.config.exists() {
                cli.config.display().to_string()
            } else {
                "defaults and environment; no file".into()
            }
        )?,
    }
    Ok(())
}
