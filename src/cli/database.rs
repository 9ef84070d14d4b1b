//! `postern database copy`: the configured SQLite database into an empty PostgreSQL
//! one (the work is in the core and the store; this parses and prints).
//!
//! ```text
//! $ postern database copy --to 'postgresql://postern@db.example.org/postern?sslmode=verify-full'
//! copied 1200 accounts, 14 invites, 37 blocklist entries, 1 settings, 0 queued mail homes
//! ```

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::{load_config, Cli, Failure};

#[derive(Debug, Subcommand)]
pub enum DatabaseCmd {
    /// Copy the configured SQLite database into an empty PostgreSQL database.
    Copy {
        /// The target, a PostgreSQL URL (postgresql://USER@HOST/DATABASE?sslmode=...).
        #[arg(long, value_name = "URL")]
        to: String,
        /// A file holding the target's password.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Empty a target that already holds rows first.
        #[arg(long)]
        force: bool,
    },
}

pub(super) fn run(cli: &Cli, cmd: &DatabaseCmd, out: &mut dyn Write) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let DatabaseCmd::Copy {
        to,
        password_file,
        force,
    } = cmd;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::refused(format!("cannot start the runtime: {e}")))?;
    let copy = crate::accounts::copy::copy_to_postgres(
        &config.database,
        to,
        password_file.clone(),
        *force,
    );
    let c = runtime
        .block_on(copy)
        .map_err(|e| Failure::new(e.exit_code(), e.to_string()))?;
    writeln!(
        out,
        "copied {} accounts, {} invites, {} blocklist entries, {} settings, {} queued mail homes",
        c.accounts, c.invites, c.blocklist, c.settings, c.queued_homes
    )?;
    Ok(())
}
