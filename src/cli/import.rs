//! `postern import chatmail DIR`: a chatmail relay's accounts, with their password
//! hashes; the mail stays where it is.
//!
//! ```text
//! DIR/alice@example.org/password     $6$rounds=...   (SHA512-CRYPT)
//! $ postern import chatmail /home/vmail/mail/example.org
//! imported 1 account(s)
//! ```

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::privileges::Privileges;
use super::Failure;
use crate::accounts::{Accounts, Actor};

#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Import a chatmail relay's accounts: each `<dir>/<address>/password` file holds
    /// the account's SHA512-CRYPT hash. Mail stays where it is (point mailbox.home at
    /// it, e.g. "/home/vmail/mail/{domain}/{address}").
    Chatmail {
        /// The directory holding one `<address>/password` per account.
        dir: PathBuf,
    },
}

pub(super) async fn run(
    accounts: &Accounts,
    actor: &Actor,
    cmd: &ImportCmd,
    privileges: &Privileges,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ImportCmd::Chatmail { dir } = cmd;
    // The mailboxes belong to the mail user: read them with the invoker's rights.
    let found = privileges
        .as_invoker_async(async { read_chatmail_dir(dir) })
        .await
        .map_err(|e| Failure::refused(format!("{}: {e}", dir.display())))?;
    let report = accounts.import(actor, found).await?;
    writeln!(out, "imported {} account(s)", report.imported)?;
    for (address, why) in &report.skipped {
        writeln!(out, "skipped {address}: {why}")?;
    }
    Ok(())
}

/// `<dir>/<address>/password` for every subdirectory that has one.
fn read_chatmail_dir(
    dir: &std::path::Path,
) -> std::io::Result<Vec<crate::accounts::maintenance::Imported>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let Ok(hash) = std::fs::read_to_string(entry.path().join("password")) else {
            continue;
        };
        found.push(crate::accounts::maintenance::Imported {
            address: entry.file_name().to_string_lossy().into_owned(),
            password_hash: hash,
        });
    }
    found.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(found)
}
