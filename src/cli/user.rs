//! `postern user`: add, list, show, passwd, block, unblock, delete, quota, admin,
//! export, import.
//!
//! ```text
//! $ postern user add alice@example.org
//! created alice@example.org
//! password: 8hJ3...
//! $ postern user block alice@example.org --reason spam
//! blocked alice@example.org
//! $ postern user export --with-hashes > accounts.jsonl
//! $ postern user import accounts.jsonl --dry-run
//! would create 12, update 0, leave 0 existing unchanged, skip 0
//! ```

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{self, account_json, print_json};
use super::privileges::Privileges;
use super::{Failure, Json};
use crate::accounts::maintenance::HomeResult;
use crate::accounts::password::Password;
use crate::accounts::{Accounts, Actor, NewUser, QuotaSetting, Route};

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub(super) password_stdin: bool,
    /// Generate a random password and print it once (the default).
    #[arg(long)]
    pub(super) random: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create an account.
    Add {
        /// The new account's address, or a local part (it gets the first of `domains`).
        address: String,
        #[command(flatten)]
        password: PasswordSource,
        /// Storage quota: 500M, 1G, bytes or "unlimited" (default: quota.default).
        #[arg(long)]
        quota: Option<String>,
        /// Make the account an administrator (admin web page).
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        json: Json,
    },
    /// List accounts.
    List {
        /// Only blocked accounts.
        #[arg(long)]
        blocked: bool,
        /// Only addresses containing this text.
        #[arg(long)]
        search: Option<String>,
        #[command(flatten)]
        json: Json,
    },
    /// Show one account.
    Show {
        /// The account's address (user@domain).
        address: String,
        #[command(flatten)]
        json: Json,
    },
    /// Set a new password.
    Passwd {
        /// The account's address (user@domain).
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Block an account: no login, no new mail; its mail is kept.
    Block {
        /// The account's address (user@domain).
        address: String,
        /// Why, for the operator (`user show`, the admin page); the owner never sees it.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unblock an account.
    Unblock {
        /// The account's address (user@domain).
        address: String,
    },
    /// Delete an account and (unless --keep-mail) its mail home. Run as root, the mail
    /// home goes at once; a home that cannot be removed stays queued for `postern
    /// maintenance run` (accounts deleted on the admin page queue theirs too).
    Delete {
        /// The account's address (user@domain).
        address: String,
        /// Keep the mail home on disk.
        #[arg(long)]
        keep_mail: bool,
        /// Let the address be registered again (by default it stays on the blocklist).
        #[arg(long)]
        allow_reuse: bool,
        /// Confirm: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Set the quota: a size (500M, 1G, bytes), "unlimited" or "default".
    Quota {
        /// The account's address (user@domain).
        address: String,
        /// 500M, 1G, a number of bytes, "unlimited", or "default" (follow quota.default).
        size: String,
    },
    /// Write every account as JSON Lines to standard output (one object per line:
    /// address, quota, blocked and reason, admin, created and how, first and last login,
    /// expiry, invite comment).
    Export {
        /// Include each account's password hash as stored, so that an import elsewhere
        /// keeps every password working. Keep such a file as safe as the database.
        #[arg(long)]
        with_hashes: bool,
    },
    /// Import accounts from a file of `user export` lines (or madmail's `accounts
    /// export`); "-" reads standard input. Creates the accounts that do not exist;
    /// a malformed line refuses the whole file.
    Import {
        /// The file to read.
        file: PathBuf,
        /// Replace existing accounts with the file's (hash, quota, admin, blocklist state,
        /// expiry); by default they are left as they are.
        #[arg(long)]
        update: bool,
        /// Show the counts; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Grant (or with --revoke take away) the administrator flag.
    Admin {
        /// The account's address (user@domain).
        address: String,
        /// Take the administrator flag away instead.
        #[arg(long)]
        revoke: bool,
    },
}

fn read_password(source: &PasswordSource) -> Result<Option<Password>, Failure> {
    if !source.password_stdin {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::refused(format!("cannot read the password: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(Failure::refused("no password on standard input"));
    }
    Ok(Some(Password::new(line)))
}

/// The text of an import file; `-` is standard input.
fn read_import_file(file: &std::path::Path) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().lock().read_to_string(&mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(file)
}

fn parse_quota(s: &str) -> Result<QuotaSetting, Failure> {
    crate::accounts::admin::parse_quota(s).map_err(Failure::refused)
}

pub(super) async fn run(
    accounts: &Accounts,
    actor: &Actor,
    cmd: &UserCmd,
    privileges: &Privileges,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        UserCmd::Add {
            address,
            password,
            quota,
            admin,
            json,
        } => {
            let quota = quota
                .as_deref()
                .map(parse_quota)
                .transpose()?
                .unwrap_or(QuotaSetting::Default);
            let (row, generated) = accounts
                .add_user(
                    actor,
                    NewUser {
                        address: address.clone(),
                        password: read_password(password)?,
                        quota,
                        admin: *admin,
                        route: Route::Cli,
                    },
                )
                .await?;
            if json.json {
                let mut v = account_json(&row);
                if let Some(p) = &generated {
                    v["password"] = json!(p.expose());
                }
                print_json(out, &v)?;
            } else {
                writeln!(out, "created {}", row.address)?;
                if let Some(p) = &generated {
                    writeln!(out, "password: {}", p.expose())?;
                }
            }
        }
        UserCmd::List {
            blocked,
            search,
            json,
        } => {
            let rows = accounts.users(*blocked, search.clone()).await?;
            if json.json {
                print_json(
                    out,
                    &json!(rows.iter().map(account_json).collect::<Vec<_>>()),
                )?;
            } else {
                output::account_table(out, &rows)?;
            }
        }
        UserCmd::Show { address, json } => {
            let row = accounts.user(address).await?;
            if json.json {
                print_json(out, &account_json(&row))?;
            } else {
                output::account_details(out, &row)?;
            }
        }
        UserCmd::Passwd { address, password } => {
            let (address, generated) = accounts
                .set_password(actor, address, read_password(password)?)
                .await?;
            writeln!(out, "password changed for {address}")?;
            if let Some(p) = generated {
                writeln!(out, "password: {}", p.expose())?;
            }
        }
        UserCmd::Block { address, reason } => {
            let address = accounts.block_user(actor, address, reason.clone()).await?;
            writeln!(out, "blocked {address}")?;
        }
        UserCmd::Unblock { address } => match accounts.unblock_user(actor, address).await? {
            (address, true) => writeln!(out, "unblocked {address}")?,
            (address, false) => writeln!(out, "{address} was not blocked")?,
        },
        UserCmd::Delete {
            address,
            keep_mail,
            allow_reuse,
            yes,
        } => {
            if !yes {
                return Err(Failure::refused(format!(
                    "deleting {address} cannot be undone; add --yes to confirm"
                )));
            }
            let deleted = accounts
                .delete_user(actor, address, *keep_mail, *allow_reuse)
                .await?;
            writeln!(out, "deleted {}", deleted.account.address)?;
            if deleted.still_blocked {
                writeln!(out, "the address stays on the blocklist (--allow-reuse lets it be registered again)")?;
            }
            if !keep_mail {
                // The deletion queued the mail home; remove it now with root's rights.
                let removed = accounts
                    .remove_queued_home(actor, deleted.account.address.as_str(), privileges)
                    .await?;
                match removed.map(|h| (h.result, h.home)) {
                    Some((HomeResult::Removed, home)) => {
                        writeln!(out, "removed mail home {}", home.display())?
                    }
                    Some((HomeResult::Failed(why), home)) => {
                        return Err(Failure::refused(format!(
                            "account {} was deleted, but its mail home {} could not be removed: \
                             {why}; it stays queued for `postern maintenance run`",
                            deleted.account.address,
                            home.display()
                        )))
                    }
                    Some((HomeResult::Skipped, home)) => writeln!(
                        out,
                        "mail home {} left alone: the address has an account again",
                        home.display()
                    )?,
                    Some((HomeResult::Gone, _)) | None => writeln!(out, "no mail home on disk")?,
                }
            }
        }
        UserCmd::Quota { address, size } => {
            let quota = parse_quota(size)?;
            let account = accounts.set_user_quota(actor, address, quota).await?;
            writeln!(out, "quota of {} is now {}", account.address, account.quota)?;
        }
        UserCmd::Export { with_hashes } => {
            for record in accounts.export_accounts(*with_hashes).await? {
                writeln!(out, "{}", record.to_line())?;
            }
        }
        UserCmd::Import {
            file,
            update,
            dry_run,
        } => {
            // The file is the invoker's: read it with the invoker's rights.
            let text = privileges
                .as_invoker_async(async { read_import_file(file) })
                .await
                .map_err(|e| Failure::refused(format!("{}: {e}", file.display())))?;
            let counts = accounts
                .import_lines(actor, &text, *update, *dry_run)
                .await?;
            output::import_counts(out, &counts)?;
        }
        UserCmd::Admin { address, revoke } => {
            let address = accounts.set_user_admin(actor, address, !revoke).await?;
            writeln!(
                out,
                "{address} is {}an administrator",
                if *revoke { "no longer " } else { "now " }
            )?;
        }
    }
    Ok(())
}
