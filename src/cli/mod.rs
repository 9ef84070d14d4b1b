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
//! try again).

mod output;
mod privileges;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::accounts::maintenance::HomeResult;
use crate::accounts::password::Password;
use crate::accounts::{
    Accounts, AdminError, NewUser, OpenError, QuotaSetting, Route, Unavailable, UsageChange,
};
use crate::config::{self, Config, RegistrationMode, Seconds};
use crate::logfmt;
use output::{account_json, block_json, print_json, token_json, when};

/// Chatmail-style accounts for Dovecot + Postfix.
#[derive(Debug, Parser)]
#[command(name = "postern", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, value_name = "PATH", env = "POSTERN_CONFIG",
          default_value = config::DEFAULT_PATH)]
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
    /// Show or check the effective configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Move the accounts database to PostgreSQL.
    #[command(subcommand)]
    Database(DatabaseCmd),
    /// Write the man page and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
}

#[derive(Debug, Args)]
pub struct Json {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Generate a random password and print it once (the default).
    #[arg(long)]
    random: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create an account.
    Add {
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
        address: String,
        #[command(flatten)]
        json: Json,
    },
    /// Set a new password.
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Block an account: no login, no new mail; its mail is kept.
    Block {
        address: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unblock an account.
    Unblock { address: String },
    /// Delete an account and (unless --keep-mail) its mail home. Run as root, the mail
    /// home goes at once; a home that cannot be removed stays queued for `postern
    /// maintenance run` (accounts deleted on the admin page queue theirs too).
    Delete {
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
    Quota { address: String, size: String },
    /// Grant (or with --revoke take away) the administrator flag.
    Admin {
        address: String,
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Recompute usage from the mail homes (for installs without Dovecot's quota_clone).
    Recalc {
        /// One account; all accounts when absent.
        address: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceCmd {
    /// Run the maintenance the configuration asks for ([maintenance]), and remove the
    /// mail homes queued by deletions (the admin page's). Exits 1 when an account or a
    /// mail home could not be removed; such a home stays queued for the next run.
    Run {
        /// Show what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Act as if it were this Unix time (for testing retention settings).
        #[arg(long, hide = true)]
        at: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Import a chatmail relay's accounts: each `<dir>/<address>/password` file holds
    /// the account's SHA512-CRYPT hash. Mail stays where it is (point mailbox.home at
    /// it, e.g. "/home/vmail/mail/{domain}/{address}").
    Chatmail { dir: PathBuf },
}

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
    Revoke { code_or_id: String },
}

#[derive(Debug, Subcommand)]
pub enum BlocklistCmd {
    /// Put an address on the blocklist.
    Add {
        address: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Take an address off the blocklist.
    Remove { address: String },
    /// List the blocklist.
    List {
        #[command(flatten)]
        json: Json,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegistrationCmd {
    /// Show the mode in force and where it comes from.
    Status {
        #[command(flatten)]
        json: Json,
    },
    /// Set the mode now, for every process and across restarts.
    Set {
        #[arg(value_parser = ["open", "invite_only", "closed"])]
        mode: String,
    },
    /// Drop the run-time mode; the configuration file's applies again.
    Reset,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration (defaults, file, environment) as TOML.
    Show,
    /// Check the configuration; exit 2 with the reason when it is invalid.
    Check,
}

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

/// A failure of a command, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn refused(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        let code = match e {
            AdminError::Unavailable(_) => 3,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<Unavailable> for Failure {
    fn from(e: Unavailable) -> Self {
        Failure {
            code: 3,
            message: e.to_string(),
        }
    }
}

/// Runs a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::GenerateAssets { dir } => generate_assets(dir),
        Command::Config(cmd) => config_command(&cli, cmd),
        Command::Serve => serve(&cli),
        Command::Database(cmd) => database_command(&cli, cmd),
        _ => admin_command(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("postern: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Writes the man pages, `DIR/man/postern.1` and one per subcommand as git and cargo
/// have them (`postern-user.1`, `postern-user-block.1`, ...), and
/// `DIR/completions/{postern.bash,_postern,postern.fish}`.
fn generate_assets(dir: &std::path::Path) -> Result<(), Failure> {
    use clap::CommandFactory;
    let fail = |e: std::io::Error| Failure::refused(format!("{}: {e}", dir.display()));
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man).map_err(fail)?;
    std::fs::create_dir_all(&completions).map_err(fail)?;
    // Built once, every subcommand knows its page name (`postern-user-block`) and its
    // synopsis name (`postern user block`). `help` is no subcommand worth a page.
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut pages = Vec::new();
    man_pages(&cli, &[], &mut pages);
    let everything: Vec<String> = pages.iter().skip(1).map(|(c, _)| page_name(c)).collect();
    let source = format!("postern {}", env!("CARGO_PKG_VERSION"));
    for (cmd, parents) in &pages {
        let page = clap_mangen::Man::new((*cmd).clone()).source(source.as_str());
        let mut text = Vec::new();
        page.render(&mut text).map_err(fail)?;
        // SEE ALSO: the top page names every other page; the others, their parents.
        let related = if parents.is_empty() {
            &everything
        } else {
            parents
        };
        let mut see_also = clap_mangen::roff::Roff::new();
        see_also.control("SH", ["SEE ALSO"]);
        // Names are not hyphenated or spread out (the section ends the page).
        see_also.control("nh", []).control("ad", ["l"]);
        let mut line = Vec::new();
        for (i, name) in related.iter().enumerate() {
            let end = if i + 1 < related.len() {
                "(1), "
            } else {
                "(1)"
            };
            line.push(clap_mangen::roff::bold(name.as_str()));
            line.push(clap_mangen::roff::roman(end));
        }
        see_also.text(line);
        text.extend_from_slice(see_also.to_roff().as_bytes());
        std::fs::write(man.join(page.get_filename()), text).map_err(fail)?;
    }
    for (shell, name) in [
        (clap_complete::Shell::Bash, "postern.bash"),
        (clap_complete::Shell::Zsh, "_postern"),
        (clap_complete::Shell::Fish, "postern.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "postern", &mut out);
        std::fs::write(completions.join(name), out).map_err(fail)?;
    }
    println!(
        "wrote {} man pages to {}/ and completions to {}/",
        pages.len(),
        man.display(),
        completions.display()
    );
    Ok(())
}

/// A built command's man page name: `postern-user-block` for `postern user block`.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned()
}

/// `cmd` and its visible subcommands at every depth, each after its parent, with the
/// page names of its parents.
fn man_pages<'a>(
    cmd: &'a clap::Command,
    parents: &[String],
    out: &mut Vec<(&'a clap::Command, Vec<String>)>,
) {
    out.push((cmd, parents.to_vec()));
    let mut chain = parents.to_vec();
    chain.push(page_name(cmd));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, &chain, out);
    }
}

fn load_config(cli: &Cli) -> Result<Config, Failure> {
    Config::load(&cli.config, false)
        .map_err(|e| Failure::usage(format!("{}: {e:#}", cli.config.display())))
}

fn config_command(cli: &Cli, cmd: &ConfigCmd) -> Result<(), Failure> {
    let config = load_config(cli)?;
    match cmd {
        ConfigCmd::Show => print!("{}", config.to_toml()),
        ConfigCmd::Check => println!(
            "configuration ok ({})",
            if cli.config.exists() {
                cli.config.display().to_string()
            } else {
                "defaults and environment; no file".into()
            }
        ),
    }
    Ok(())
}

fn database_command(cli: &Cli, cmd: &DatabaseCmd) -> Result<(), Failure> {
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
    let c = runtime.block_on(copy).map_err(|e| Failure {
        code: e.exit_code(),
        message: e.to_string(),
    })?;
    println!(
        "copied {} accounts, {} invites, {} blocklist entries, {} settings, {} queued mail homes",
        c.accounts, c.invites, c.blocklist, c.settings, c.queued_homes
    );
    Ok(())
}

fn serve(cli: &Cli) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let log = crate::logging::init(&config.log);
    // Blocking threads run SQLite calls only (argon2 has its own workers): a few are
    // plenty, and a bound keeps a burst of connections from spawning hundreds.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(|e| Failure::refused(format!("cannot start the runtime: {e}")))?;
    let cancel = tokio_util::sync::CancellationToken::new();
    runtime
        .block_on(crate::server::run(config, cli.config.clone(), log, cancel))
        .map_err(|e| {
            tracing::error!("event=fatal error={}", logfmt::value(&e));
            let code = match e {
                crate::server::ServeError::Config(_)
                | crate::server::ServeError::NothingToServe => 2,
                crate::server::ServeError::Open(OpenError::Store(ref e)) if e.is_permanent() => 4,
                _ => 1,
            };
            Failure {
                code,
                message: e.to_string(),
            }
        })
}

fn admin_command(cli: &Cli) -> Result<(), Failure> {
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
            OpenError::Store(e) => Failure {
                code: if e.is_permanent() { 4 } else { 3 },
                message: e.to_string(),
            },
            OpenError::Hasher(e) => Failure::usage(format!("argon2: {e}")),
        })?;
    let accounts = Arc::new(accounts);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::refused(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(dispatch(cli, &accounts, &privileges))
}

async fn dispatch(
    cli: &Cli,
    accounts: &Accounts,
    privileges: &privileges::Privileges,
) -> Result<(), Failure> {
    match &cli.command {
        Command::User(cmd) => user_command(accounts, cmd, privileges).await,
        Command::Token(cmd) => token_command(accounts, cmd).await,
        Command::Quota(QuotaCmd::Recalc { address }) => {
            recalc_command(accounts, address.as_deref(), privileges).await
        }
        Command::Maintenance(MaintenanceCmd::Run { dry_run, at }) => {
            maintenance_command(accounts, *dry_run, *at, privileges).await
        }
        Command::Stats { json } => stats_command(accounts, json.json).await,
        Command::Import(ImportCmd::Chatmail { dir }) => {
            import_command(accounts, dir, privileges).await
        }
        Command::Blocklist(cmd) => blocklist_command(accounts, cmd).await,
        Command::Registration(cmd) => registration_command(accounts, cmd).await,
        Command::Serve
        | Command::Config(_)
        | Command::Database(_)
        | Command::GenerateAssets { .. } => Ok(()),
    }
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

fn parse_quota(s: &str) -> Result<QuotaSetting, Failure> {
    crate::accounts::admin::parse_quota(s).map_err(Failure::refused)
}

async fn user_command(
    accounts: &Accounts,
    cmd: &UserCmd,
    privileges: &privileges::Privileges,
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
                .add_user(NewUser {
                    address: address.clone(),
                    password: read_password(password)?,
                    quota,
                    admin: *admin,
                    route: Route::Cli,
                })
                .await?;
            if json.json {
                let mut v = account_json(&row);
                if let Some(p) = &generated {
                    v["password"] = json!(p.expose());
                }
                print_json(&v);
            } else {
                println!("created {}", row.address);
                if let Some(p) = &generated {
                    println!("password: {}", p.expose());
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
                print_json(&json!(rows.iter().map(account_json).collect::<Vec<_>>()));
            } else {
                output::account_table(&rows);
            }
        }
        UserCmd::Show { address, json } => {
            let row = accounts.user(address).await?;
            if json.json {
                print_json(&account_json(&row));
            } else {
                output::account_details(&row);
            }
        }
        UserCmd::Passwd { address, password } => {
            let (address, generated) = accounts
                .set_password(address, read_password(password)?)
                .await?;
            println!("password changed for {address}");
            if let Some(p) = generated {
                println!("password: {}", p.expose());
            }
        }
        UserCmd::Block { address, reason } => {
            let address = accounts.block_user(address, reason.clone()).await?;
            println!("blocked {address}");
        }
        UserCmd::Unblock { address } => match accounts.unblock_user(address).await? {
            (address, true) => println!("unblocked {address}"),
            (address, false) => println!("{address} was not blocked"),
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
                .delete_user(address, *keep_mail, *allow_reuse)
                .await?;
            println!("deleted {}", deleted.account.address);
            if deleted.still_blocked {
                println!("the address stays on the blocklist (--allow-reuse lets it be registered again)");
            }
            if !keep_mail {
                // The deletion queued the mail home; remove it now with root's rights.
                let removed = accounts
                    .remove_queued_home(deleted.account.address.as_str(), privileges)
                    .await?;
                match removed.map(|h| (h.result, h.home)) {
                    Some((HomeResult::Removed, home)) => {
                        println!("removed mail home {}", home.display())
                    }
                    Some((HomeResult::Failed(why), home)) => {
                        return Err(Failure::refused(format!(
                            "account {} was deleted, but its mail home {} could not be removed: \
                             {why}; it stays queued for `postern maintenance run`",
                            deleted.account.address,
                            home.display()
                        )))
                    }
                    Some((HomeResult::Skipped, home)) => println!(
                        "mail home {} left alone: the address has an account again",
                        home.display()
                    ),
                    Some((HomeResult::Gone, _)) | None => println!("no mail home on disk"),
                }
            }
        }
        UserCmd::Quota { address, size } => {
            let quota = parse_quota(size)?;
            let account = accounts.set_user_quota(address, quota).await?;
            println!("quota of {} is now {}", account.address, account.quota);
        }
        UserCmd::Admin { address, revoke } => {
            let address = accounts.set_user_admin(address, !revoke).await?;
            println!(
                "{address} is {}an administrator",
                if *revoke { "no longer " } else { "now " }
            );
        }
    }
    Ok(())
}

async fn maintenance_command(
    accounts: &Accounts,
    dry_run: bool,
    at: Option<i64>,
    privileges: &privileges::Privileges,
) -> Result<(), Failure> {
    let now = at.unwrap_or_else(|| accounts.now());
    let report = accounts.run_maintenance(now, dry_run, privileges).await?;
    output::maintenance_report(&report);
    if report.succeeded() {
        return Ok(());
    }
    let mut problems = Vec::new();
    let not_deleted = report.not_deleted();
    if !not_deleted.is_empty() {
        let names: Vec<&str> = not_deleted.iter().map(|(a, _)| *a).collect();
        problems.push(format!(
            "{} account(s) could not be deleted: {}",
            names.len(),
            names.join(", ")
        ));
    }
    let homes = report.failed_homes();
    if !homes.is_empty() {
        let names: Vec<String> = homes.iter().map(|h| h.home.display().to_string()).collect();
        problems.push(format!(
            "{} mail home(s) could not be removed and stay queued for the next run: {}",
            names.len(),
            names.join(", ")
        ));
    }
    Err(Failure::refused(problems.join("; ")))
}

async fn stats_command(accounts: &Accounts, json: bool) -> Result<(), Failure> {
    let now = accounts.now();
    let s = accounts.stats(now).await?;
    let st = &s;
    if json {
        let created: serde_json::Map<String, serde_json::Value> = st
            .created
            .iter()
            .map(|(via, day, week)| (via.clone(), json!({ "last_day": day, "last_week": week })))
            .collect();
        print_json(&json!({
            "accounts": { "total": st.accounts, "blocked": st.blocked_accounts, "admins": st.admins },
            "blocklist": st.blocklist,
            "created": created,
            "storage": {
                "used_bytes": st.used_bytes,
                "quota_bytes": s.quota_bytes,
                "unlimited_accounts": st.unlimited_accounts,
            },
            "tokens": {
                "active": st.tokens_active,
                "used_up": st.tokens_used_up,
                "expired": st.tokens_expired,
                "revoked": st.tokens_revoked,
            },
            "mail_homes_queued": st.homes_queued,
        }));
        return Ok(());
    }
    println!(
        "accounts:   {} ({} blocked, {} admin)",
        st.accounts, st.blocked_accounts, st.admins
    );
    println!("blocklist:  {} address(es)", st.blocklist);
    println!("created:    route      last day  last week");
    for (via, day, week) in &st.created {
        println!("            {via:<9}  {day:>8}  {week:>9}");
    }
    println!(
        "storage:    {} used of {} allotted ({} unlimited account(s))",
        config::format_size(u64::try_from(st.used_bytes).unwrap_or(0)),
        config::format_size(s.quota_bytes),
        st.unlimited_accounts
    );
    println!(
        "invites:    {} active, {} used up, {} expired, {} revoked",
        st.tokens_active, st.tokens_used_up, st.tokens_expired, st.tokens_revoked
    );
    println!(
        "mail homes: {} queued for removal (by the next `postern maintenance run`)",
        st.homes_queued
    );
    Ok(())
}

async fn import_command(
    accounts: &Accounts,
    dir: &std::path::Path,
    privileges: &privileges::Privileges,
) -> Result<(), Failure> {
    // The mailboxes belong to the mail user: read them with the invoker's rights.
    let found = privileges
        .as_invoker_async(async { read_chatmail_dir(dir) })
        .await
        .map_err(|e| Failure::refused(format!("{}: {e}", dir.display())))?;
    let report = accounts.import(found).await?;
    println!("imported {} account(s)", report.imported);
    for (address, why) in &report.skipped {
        println!("skipped {address}: {why}");
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

async fn recalc_command(
    accounts: &Accounts,
    address: Option<&str>,
    privileges: &privileges::Privileges,
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
                println!("{a}: {} in {messages} messages", config::format_size(bytes));
            }
            Err(e) => {
                failed += 1;
                eprintln!("postern: {a}: {e}");
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

async fn token_command(accounts: &Accounts, cmd: &TokenCmd) -> Result<(), Failure> {
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
                .create_token(*uses, expires, comment.clone())
                .await?;
            let link = accounts.signup_link(&code);
            if json.json {
                let mut v = token_json(&row);
                v["code"] = json!(code);
                v["link"] = json!(link);
                v["dcaccount"] = json!(format!("DCACCOUNT:{link}"));
                print_json(&v);
            } else {
                println!(
                    "invite {} created (uses: {}, expires: {})",
                    row.id,
                    row.max_uses,
                    when(row.expires_at)
                );
                println!("code: {code}");
                println!("link: {link}");
                println!("Delta Chat: DCACCOUNT:{link}");
                if *qr {
                    print!("{}", crate::qr::terminal_qr(&format!("DCACCOUNT:{link}")));
                }
                println!("The code is shown only now; postern stores only its hash.");
            }
        }
        TokenCmd::List { json } => {
            let rows = accounts.tokens().await?;
            if json.json {
                print_json(&json!(rows.iter().map(token_json).collect::<Vec<_>>()));
            } else {
                println!(
                    "{:>5}  {:<8}  {:>9}  {:<20}  comment",
                    "id", "status", "uses", "expires"
                );
                for t in &rows {
                    println!(
                        "{:>5}  {:<8}  {:>9}  {:<20}  {}",
                        t.id,
                        t.status,
                        format!("{}/{}", t.uses, t.max_uses),
                        when(t.expires_at),
                        t.comment.as_deref().unwrap_or("")
                    );
                }
            }
        }
        TokenCmd::Revoke { code_or_id } => {
            let row = accounts.revoke_token(code_or_id).await?;
            println!("revoked invite {}", row.id);
        }
    }
    Ok(())
}

async fn blocklist_command(accounts: &Accounts, cmd: &BlocklistCmd) -> Result<(), Failure> {
    match cmd {
        BlocklistCmd::Add { address, reason } => {
            let (a, new) = accounts.blocklist_add(address, reason.clone()).await?;
            println!(
                "{}",
                if new {
                    format!("{a} is now on the blocklist")
                } else {
                    format!("{a} was already on the blocklist")
                }
            );
        }
        BlocklistCmd::Remove { address } => {
            let (a, removed) = accounts.blocklist_remove(address).await?;
            if removed {
                println!("{a} is off the blocklist");
            } else {
                return Err(Failure::refused(format!("{a} is not on the blocklist")));
            }
        }
        BlocklistCmd::List { json } => {
            let rows = accounts.blocklist().await?;
            if json.json {
                print_json(&json!(rows.iter().map(block_json).collect::<Vec<_>>()));
            } else {
                for b in &rows {
                    println!(
                        "{}  since {}  {}",
                        b.address,
                        when(Some(b.since)),
                        b.reason.as_deref().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(())
}

async fn registration_command(accounts: &Accounts, cmd: &RegistrationCmd) -> Result<(), Failure> {
    match cmd {
        RegistrationCmd::Status { json } => {
            let mode = accounts.registration_mode().await?;
            let runtime = accounts.registration_override().await?;
            let config_mode = accounts.config().registration.mode;
            if json.json {
                print_json(&json!({
                    "mode": mode.as_str(),
                    "source": if runtime.is_some() { "runtime" } else { "config" },
                    "config_mode": config_mode.as_str(),
                    "jit": accounts.config().registration.jit,
                }));
            } else {
                println!("registration: {mode}");
                match runtime {
                    Some(_) => println!("set at run time (the configuration says {config_mode}; `postern registration reset` returns to it)"),
                    None => println!("from the configuration"),
                }
            }
        }
        RegistrationCmd::Set { mode } => {
            let mode = RegistrationMode::parse(mode)
                .ok_or_else(|| Failure::usage("mode must be open, invite_only or closed"))?;
            let now = accounts.set_registration_mode(Some(mode)).await?;
            println!("registration: {now}");
        }
        RegistrationCmd::Reset => {
            let now = accounts.set_registration_mode(None).await?;
            println!("registration: {now} (from the configuration)");
        }
    }
    Ok(())
}
