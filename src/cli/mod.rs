//! The `postern` command line: the daemon (`serve`) and the operator's commands. Like
//! every adapter it parses, calls the accounts core, and prints; it decides nothing.
//!
//! ```text
//! postern user add alice@example.org --password-stdin
//! postern user list --json
//! postern token create --uses 1 --expires 72h --comment "for Alice"
//! ```
//!
//! Exit codes: 0 done; 1 refused (bad input, no such account, already exists, ...);
//! 2 configuration or usage error; 3 temporary failure (database busy or unreachable:
//! try again). Output goes through a fallible writer: a reader that closes the pipe
//! early (`postern user list | head -1`) ends the command quietly with 0.
//!
//! One module per command group, as the clap tree has them: `user.rs`, `token.rs`,
//! `quota.rs`, `maintenance.rs` (maintenance run, stats), `import.rs`, `blocklist.rs`,
//! `audit.rs` (the audit trail, and the Unix user every command acts as),
//! `registration.rs`, `config.rs`, `serve.rs`, `assets.rs` (generate-assets); `output.rs`
//! renders the core's views as text and JSON; `failure.rs` maps errors to exit codes;
//! `privileges.rs` switches to the database owner.

mod assets;
mod audit;
mod blocklist;
mod config;
mod database;
mod failure;
mod import;
mod maintenance;
mod output;
mod privileges;
mod quota;
mod registration;
mod serve;
mod token;
mod user;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::accounts::{Accounts, OpenError};
pub use blocklist::BlocklistCmd;
pub use config::ConfigCmd;
pub use failure::Failure;
pub use import::ImportCmd;
pub use maintenance::MaintenanceCmd;
pub use quota::QuotaCmd;
pub use registration::RegistrationCmd;
pub use token::TokenCmd;
pub use user::{PasswordSource, UserCmd};

/// Chatmail-style accounts for Dovecot + Postfix.
#[derive(Debug, Parser)]
#[command(name = "postern", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, value_name = "PATH", env = "POSTERN_CONFIG",
          default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the Dovecot and Postfix sockets and the web listener.
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage invite codes.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Storage usage.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// Remove queued mail homes, delete inactive and unused accounts, purge dead invites,
    /// refresh stale usage.
    #[command(subcommand)]
    Maintenance(MaintenanceCmd),
    /// Accounts, registrations, storage and invites at a glance.
    Stats {
        #[command(flatten)]
        json: Json,
    },
    /// Bring in accounts from another server.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Addresses that may not log in, receive mail or register.
    #[command(subcommand)]
    Blocklist(BlocklistCmd),
    /// Show or change the registration mode at run time.
    #[command(subcommand)]
    Registration(RegistrationCmd),
    /// Show the operator actions recorded (CLI, admin page, maintenance), newest first.
    Audit(audit::AuditCmd),
    /// Show or check the effective configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Move the accounts database to PostgreSQL.
    #[command(subcommand)]
    Database(database::DatabaseCmd),
    /// Write the man page and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write `man/` and `completions/` (created when missing).
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct Json {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a parsed command line and reports its failure; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match run(cli) {
        Ok(code) => code,
        Err(f) => report(&f),
    }
}

/// Runs a parsed command line, its output on standard output.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    // Unlocked: each write takes the lock, so nothing else that prints can wait on it.
    let mut out = std::io::stdout();
    let result = match &cli.command {
        Command::GenerateAssets { dir } => assets::generate(dir, &mut out),
        Command::Config(cmd) => config::run(&cli, cmd, &mut out),
        Command::Serve => serve::run(&cli),
        Command::Database(cmd) => database::run(&cli, cmd, &mut out),
        _ => admin_command(&cli, &mut out),
    };
    result.and_then(|()| Ok(out.flush()?))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a failure on standard error and returns its exit code; a closed standard
/// output ends quietly with 0, as a reader that has seen enough expects.
pub fn report(f: &Failure) -> ExitCode {
    if f.pipe_closed {
        return ExitCode::SUCCESS;
    }
    // Nowhere left to say it when standard error fails too: the code still tells.
    let _ = writeln!(std::io::stderr(), "postern: {}", f.message);
    ExitCode::from(f.code)
}

fn load_config(cli: &Cli) -> Result<crate::config::Config, Failure> {
    crate::config::Config::load(&cli.config, false)
        .map_err(|e| Failure::usage(format!("{}: {e:#}", cli.config.display())))
}

fn admin_command(cli: &Cli, out: &mut dyn Write) -> Result<(), Failure> {
    let config = load_config(cli)?;
    // Operator actions reach syslog too (auditing, and the maintenance timer's record);
    // at a terminal the command's own output says what happened.
    if config.log.target == crate::config::LogTarget::Syslog
        || (config.log.target == crate::config::LogTarget::Auto && !std::io::stderr().is_terminal())
    {
        crate::logging::init(&config.log);
    }
    let privileges = privileges::Privileges::for_database(config.database.sqlite_path())
        .map_err(|e| Failure::refused(format!("cannot switch to the database owner: {e}")))?;
    let accounts = privileges
        .as_owner(|| Accounts::open(config))
        .map_err(|e| match e {
            OpenError::Store(e) => {
                Failure::new(if e.is_permanent() { 4 } else { 3 }, e.to_string())
            }
            OpenError::Hasher(e) => Failure::usage(format!("argon2: {e}")),
        })?;
    let accounts = Arc::new(accounts);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::refused(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(dispatch(cli, &accounts, &privileges, out))
}

async fn dispatch(
    cli: &Cli,
    accounts: &Accounts,
    privileges: &privileges::Privileges,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let actor = &audit::actor(matches!(cli.command, Command::Maintenance(_)));
    match &cli.command {
        Command::User(cmd) => user::run(accounts, actor, cmd, privileges, out).await,
        Command::Token(cmd) => token::run(accounts, actor, cmd, out).await,
        Command::Quota(cmd) => quota::run(accounts, cmd, privileges, out).await,
        Command::Maintenance(cmd) => maintenance::run(accounts, actor, cmd, privileges, out).await,
        Command::Stats { json } => maintenance::stats(accounts, json.json, out).await,
        Command::Import(cmd) => import::run(accounts, actor, cmd, privileges, out).await,
        Command::Blocklist(cmd) => blocklist::run(accounts, actor, cmd, out).await,
        Command::Registration(cmd) => registration::run(accounts, actor, cmd, out).await,
        Command::Audit(cmd) => audit::run(accounts, cmd, out).await,
        Command::Serve
        | Command::Config(_)
        | Command::Database(_)
        | Command::GenerateAssets { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests;
