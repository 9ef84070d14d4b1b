//! `postern quota recalc`: usage measured from the mail homes, for installs without
//! Dovecot's quota_clone.
//!
//! ```text
//! $ postern quota recalc alice@example.org
//! alice@example.org: 12.3M in 140 messages
//! ```

use std::io::Write;

use clap::Subcommand;

use super::output::warn;
use super::privileges::Privileges;
use super::Failure;
use crate::accounts::{Accounts, UsageChange};
use crate::config;

#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Recompute usage from the mail homes (for installs without Dovecot's quota_clone).
    Recalc {
        /// One account; all accounts when absent.
        address: Option<String>,
    },
}

pub(super) async fn run(
    accounts: &Accounts,
    cmd: &QuotaCmd,
    privileges: &Privileges,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let QuotaCmd::Recalc { address } = cmd;
    recalc(accounts, address.as_deref(), privileges, out).await
}

async fn recalc(
    accounts: &Accounts,
    address: Option<&str>,
    privileges: &Privileges,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let addresses = match address {
        Some(a) => vec![accounts.user(a).await?.address],
        None => accounts
            .users(false, None)
            .await?
            .into_iter()
            .map(|r| r.address)
            .collect(),
    };
    let mut failed = 0;
    for a in &addresses {
        // Mail homes belong to the mail user: read them with the invoker's rights.
        match privileges
            .as_invoker_async(accounts.measure_mail_home(a))
            .await
        {
            Ok(measured) => {
                let (bytes, messages) = measured.unwrap_or((0, 0));
                let change = UsageChange::Set {
                    bytes: Some(i64::try_from(bytes).unwrap_or(i64::MAX)),
                    messages: Some(i64::try_from(messages).unwrap_or(i64::MAX)),
                };
                accounts.note_usage(a, change).await?;
                writeln!(
                    out,
                    "{a}: {} in {messages} messages",
                    config::human_size(bytes)
                )?;
            }
            Err(e) => {
                failed += 1;
                warn(&format!("{a}: {e}"));
            }
        }
    }
    if failed > 0 {
        return Err(Failure::refused(format!(
            "{failed} mail home(s) could not be read"
        )));
    }
    Ok(())
}
