//! `postern token`: invite codes. A code is printed once; only its hash is kept.
//!
//! ```text
//! $ postern token create --uses 5 --expires 30d
//! invite 7 created (uses: 5, expires: 2026-05-01T00:00:00Z)
//! code: ...
//! ```

use std::io::Write;

use clap::Subcommand;
use serde_json::json;

use super::output::{print_json, token_json, when};
use super::{Failure, Json};
use crate::accounts::{Accounts, Actor};
use crate::config::Seconds;

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an invite code; it is printed once, with its sign-up link.
    Create {
        /// How many accounts it may create.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime such as 72h or 30d (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
        /// A note for the operator, shown by `token list` (such as who it is for).
        #[arg(long)]
        comment: Option<String>,
        /// Also print the Delta Chat QR code (DCACCOUNT:<link>) in the terminal.
        #[arg(long)]
        qr: bool,
        #[command(flatten)]
        json: Json,
    },
    /// List invite codes (their codes are not stored, only their ids).
    List {
        #[command(flatten)]
        json: Json,
    },
    /// Revoke an invite by its code or id.
    Revoke {
        /// The invite's code, or its id as `token list` shows it.
        code_or_id: String,
    },
}

pub(super) async fn run(
    accounts: &Accounts,
    actor: &Actor,
    cmd: &TokenCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        TokenCmd::Create {
            uses,
            expires,
            comment,
            qr,
            json,
        } => {
            if *uses == 0 {
                return Err(Failure::refused("--uses must be at least 1"));
            }
            let expires = expires
                .as_deref()
                .map(Seconds::parse)
                .transpose()
                .map_err(Failure::refused)?;
            let (row, code) = accounts
                .create_token(actor, *uses, expires, comment.clone())
                .await?;
            let link = accounts.signup_link(&code);
            if json.json {
                let mut v = token_json(&row);
                v["code"] = json!(code);
                v["link"] = json!(link);
                v["dcaccount"] = json!(format!("DCACCOUNT:{link}"));
                print_json(out, &v)?;
            } else {
                writeln!(
                    out,
                    "invite {} created (uses: {}, expires: {})",
                    row.id,
                    row.max_uses,
                    when(row.expires_at)
                )?;
                writeln!(out, "code: {code}")?;
                writeln!(out, "link: {link}")?;
                writeln!(out, "Delta Chat: DCACCOUNT:{link}")?;
                if *qr {
                    write!(
                        out,
                        "{}",
                        crate::qr::terminal_qr(&format!("DCACCOUNT:{link}"))
                    )?;
                }
                writeln!(
                    out,
                    "The code is shown only now; postern stores only its hash."
                )?;
            }
        }
        TokenCmd::List { json } => {
            let rows = accounts.tokens().await?;
            if json.json {
                print_json(out, &json!(rows.iter().map(token_json).collect::<Vec<_>>()))?;
            } else {
                writeln!(
                    out,
                    "{:>5}  {:<8}  {:>9}  {:<20}  comment",
                    "id", "status", "uses", "expires"
                )?;
                for t in &rows {
                    writeln!(
                        out,
                        "{:>5}  {:<8}  {:>9}  {:<20}  {}",
                        t.id,
                        t.status,
                        format!("{}/{}", t.uses, t.max_uses),
                        when(t.expires_at),
                        t.comment.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
        TokenCmd::Revoke { code_or_id } => {
            let row = accounts.revoke_token(actor, code_or_id).await?;
            writeln!(out, "revoked invite {}", row.id)?;
        }
    }
    Ok(())
}
