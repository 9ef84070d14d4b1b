//! `postern blocklist`: addresses that may not log in, receive mail or register.
//!
//! ```text
//! $ postern blocklist add spam@example.org --reason abuse
//! spam@example.org is now on the blocklist
//! ```

use std::io::Write;

use clap::Subcommand;
use serde_json::json;

use super::output::{block_json, print_json, when};
use super::{Failure, Json};
use crate::accounts::{Accounts, Actor};

#[derive(Debug, Subcommand)]
pub enum BlocklistCmd {
    /// Put an address on the blocklist.
    Add {
        /// The address (user@domain).
        address: String,
        /// Why, for the operator (`blocklist list`, the admin page).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Take an address off the blocklist.
    Remove {
        /// The address (user@domain).
        address: String,
    },
    /// List the blocklist.
    List {
        #[command(flatten)]
        json: Json,
    },
}

pub(super) async fn run(
    accounts: &Accounts,
    actor: &Actor,
    cmd: &BlocklistCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        BlocklistCmd::Add { address, reason } => {
            let (a, new) = accounts
                .blocklist_add(actor, address, reason.clone())
                .await?;
            writeln!(
                out,
                "{}",
                if new {
                    format!("{a} is now on the blocklist")
                } else {
                    format!("{a} was already on the blocklist")
                }
            )?;
        }
        BlocklistCmd::Remove { address } => {
            let (a, removed) = accounts.blocklist_remove(actor, address).await?;
            if removed {
                writeln!(out, "{a} is off the blocklist")?;
            } else {
                return Err(Failure::refused(format!("{a} is not on the blocklist")));
            }
        }
        BlocklistCmd::List { json } => {
            let rows = accounts.blocklist().await?;
            if json.json {
                print_json(out, &json!(rows.iter().map(block_json).collect::<Vec<_>>()))?;
            } else {
                for b in &rows {
                    writeln!(
                        out,
                        "{}  since {}  {}",
                        b.address,
                        when(Some(b.since)),
                        b.reason.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
    }
    Ok(())
}
