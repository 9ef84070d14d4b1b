//! `postern token`: invite codes. A code is printed once; only its hash is kept.
//!
//! ```text
//! $ postern token create --uses 5 --expires 30d
//! invite 7 created (uses: 5, expires: 2026-05-01T00:00:00Z)
//! code: ...
//! $ postern token show 7
//! invite:           7
//! uses:             1 of 5 (4 remaining)
//! accounts:         1
//!   k3x9q2m1a@example.org  created 2026-04-02T10:00:00Z
//! ```

use std::io::Write;

use clap::Subcommand;
use serde_json::json;

use super::output::{self, print_json, token_json, when};
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
        /// Make temporary accounts: each account created with this invite is deleted
        /// (by the maintenance run) this long after its creation, such as 7d.
        #[arg(long, value_name = "DURATION")]
        account_lifetime: Option<String>,
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
    /// Show an invite: its uses and remaining uses, and the accounts made with it.
    Show {
        /// The invite's code, or its id as `token list` shows it.
        code_or_id: String,
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
            account_lifetime,
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
            let lifetime = account_lifetime
                .as_deref()
                .map(Seconds::parse)
                .transpose()
                .map_err(|e| Failure::refused(format!("--account-lifetime: {e}")))?;
            let (row, code) = accounts
                .create_invite(actor, *uses, expires, lifetime, comment.clone())
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
                if let Some(l) = row.account_lifetime {
                    writeln!(
                        out,
                        "accounts made with it are deleted {} after their creation",
                        Seconds(l)
                    )?;
                }
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
        TokenCmd::Show { code_or_id, json } => {
            let detail = accounts.token_detail(code_or_id).await?;
            if json.json {
                print_json(out, &output::invite_detail_json(&detail))?;
            } else {
                output::invite_details(out, &detail)?;
            }
        }
        TokenCmd::Revoke { code_or_id } => match accounts.revoke_token(actor, code_or_id).await? {
            (row, true) => writeln!(out, "revoked invite {}", row.id)?,
            (row, false) => writeln!(
                out,
                "invite {} was already revoked (at {})",
                row.id,
                when(row.revoked_at)
            )?,
        },
    }
    Ok(())
}
