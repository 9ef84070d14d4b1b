//! `postern registration`: the mode in force, set at run time over the file's.
//!
//! ```text
//! $ postern registration set invite_only
//! registration: invite_only
//! ```

use std::io::Write;

use clap::Subcommand;
use serde_json::json;

use super::output::print_json;
use super::{Failure, Json};
use crate::accounts::{Accounts, Actor};
use crate::config::RegistrationMode;

#[derive(Debug, Subcommand)]
pub enum RegistrationCmd {
    /// Show the mode in force and where it comes from.
    Status {
        #[command(flatten)]
        json: Json,
    },
    /// Set the mode now, for every process and across restarts.
    Set {
        /// open (anyone), invite_only (an invite code is needed) or closed (nobody).
        #[arg(value_parser = ["open", "invite_only", "closed"])]
        mode: String,
    },
    /// Drop the run-time mode; the configuration file's applies again.
    Reset,
}

pub(super) async fn run(
    accounts: &Accounts,
    actor: &Actor,
    cmd: &RegistrationCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        RegistrationCmd::Status { json } => {
            let mode = accounts.registration_mode().await?;
            let runtime = accounts.registration_override().await?;
            let config_mode = accounts.config().registration.mode;
            if json.json {
                print_json(
                    out,
                    &json!({
                        "mode": mode.as_str(),
                        "source": if runtime.is_some() { "runtime" } else { "config" },
                        "config_mode": config_mode.as_str(),
                        "jit": accounts.config().registration.jit,
                    }),
                )?;
            } else {
                writeln!(out, "registration: {mode}")?;
                match runtime {
                    Some(_) => writeln!(out, "set at run time (the configuration says {config_mode}; `postern registration reset` returns to it)")?,
                    None => writeln!(out, "from the configuration")?,
                }
            }
        }
        RegistrationCmd::Set { mode } => {
            let mode = RegistrationMode::parse(mode)
                .ok_or_else(|| Failure::usage("mode must be open, invite_only or closed"))?;
            let now = accounts.set_registration_mode(actor, Some(mode)).await?;
            writeln!(out, "registration: {now}")?;
        }
        RegistrationCmd::Reset => {
            let now = accounts.set_registration_mode(actor, None).await?;
            writeln!(out, "registration: {now} (from the configuration)")?;
        }
    }
    Ok(())
}
