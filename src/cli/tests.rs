//! The command line's parsing and its renderers, below what the integration tests in
//! `tests/it/cli.rs` reach: each group's arguments, and the text and JSON made from the
//! core's views.

use std::io;

use clap::{CommandFactory, Parser};

use super::output::{
    account_details, account_json, account_table, block_json, import_counts, invite_detail_json,
    invite_details, print_json, token_json, when,
};
use super::*;
use crate::accounts::address::Address;
use crate::accounts::export::ImportCounts;
use crate::accounts::view::{InviteStatus, Quota, Usage};
use crate::accounts::{
    Account, BlockedAddress, Invite, InviteDetail, InviteUsed, QuotaSource, Status,
};

fn parse(args: &[&str]) -> Command {
    let mut argv = vec!["postern"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli.command,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

fn refused(args: &[&str]) -> clap::error::ErrorKind {
    let mut argv = vec!["postern"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv) {
        Ok(cli) => panic!("{args:?} parsed as {:?}", cli.command),
        Err(e) => e.kind(),
    }
}

#[test]
fn the_clap_tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn the_config_option_goes_anywhere_and_defaults_to_the_packaged_file() {
    let cli = Cli::try_parse_from(["postern", "user", "list", "-c", "/tmp/p.toml"]).unwrap();
    assert_eq!(cli.config, Some(PathBuf::from("/tmp/p.toml")));
    assert_eq!(cli.config_path(), std::path::Path::new("/tmp/p.toml"));
    let cli = Cli::try_parse_from(["postern", "stats"]).unwrap();
    if std::env::var_os("POSTERN_CONFIG").is_none() {
        assert_eq!(cli.config, None);
        assert_eq!(
            cli.config_path(),
            std::path::Path::new(crate::config::DEFAULT_PATH)
        );
    }
}

#[test]
fn user_arguments() {
    match parse(&["user", "add", "alice", "--quota", "1G", "--admin", "--json"]) {
        Command::User(UserCmd::Add {
            address,
            password,
            quota,
            admin,
            json,
        }) => {
            assert_eq!(address, "alice");
            assert!(!password.password_stdin && !password.random);
            assert_eq!(quota.as_deref(), Some("1G"));
            assert!(admin && json.json);
        }
        other => panic!("{other:?}"),
    }
    // One password source at most.
    assert_eq!(
        refused(&["user", "add", "a", "--password-stdin", "--random"]),
        clap::error::ErrorKind::ArgumentConflict
    );
    match parse(&["user", "delete", "a@example.org", "--yes", "--keep-mail"]) {
        Command::User(UserCmd::Delete {
            keep_mail,
            allow_reuse,
            yes,
            ..
        }) => assert!(keep_mail && !allow_reuse && yes),
        other => panic!("{other:?}"),
    }
    match parse(&["user", "quota", "a", "unlimited"]) {
        Command::User(UserCmd::Quota { address, size }) => {
            assert_eq!((address.as_str(), size.as_str()), ("a", "unlimited"))
        }
        other => panic!("{other:?}"),
    }
    match parse(&["user", "admin", "a", "--revoke"]) {
        Command::User(UserCmd::Admin { revoke, .. }) => assert!(revoke),
        other => panic!("{other:?}"),
    }
    match parse(&["user", "block", "a", "--reason", "spam"]) {
        Command::User(UserCmd::Block { reason, .. }) => assert_eq!(reason.as_deref(), Some("spam")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refused(&["user", "quota", "a"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn token_arguments() {
    match parse(&["token", "create"]) {
        Command::Token(TokenCmd::Create {
            uses, expires, qr, ..
        }) => assert!(uses == 1 && expires.is_none() && !qr),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refused(&["token", "create", "--uses", "many"]),
        clap::error::ErrorKind::ValueValidation
    );
    match parse(&["token", "revoke", "7"]) {
        Command::Token(TokenCmd::Revoke { code_or_id }) => assert_eq!(code_or_id, "7"),
        other => panic!("{other:?}"),
    }
    match parse(&["token", "create", "--account-lifetime", "7d"]) {
        Command::Token(TokenCmd::Create {
            account_lifetime, ..
        }) => assert_eq!(account_lifetime.as_deref(), Some("7d")),
        other => panic!("{other:?}"),
    }
    match parse(&["token", "show", "abc", "--json"]) {
        Command::Token(TokenCmd::Show { code_or_id, json }) => {
            assert!(code_or_id == "abc" && json.json)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn export_and_import_arguments() {
    match parse(&["user", "export", "--with-hashes"]) {
        Command::User(UserCmd::Export { with_hashes }) => assert!(with_hashes),
        other => panic!("{other:?}"),
    }
    match parse(&["user", "import", "a.jsonl", "--dry-run"]) {
        Command::User(UserCmd::Import {
            file,
            update,
            dry_run,
        }) => assert!(file == std::path::Path::new("a.jsonl") && !update && dry_run),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refused(&["user", "import"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn registration_modes_are_checked_while_parsing() {
    assert!(matches!(
        parse(&["registration", "set", "invite_only"]),
        Command::Registration(RegistrationCmd::Set { mode }) if mode == "invite_only"
    ));
    assert_eq!(
        refused(&["registration", "set", "sometimes"]),
        clap::error::ErrorKind::InvalidValue
    );
}

#[test]
fn the_other_groups_arguments() {
    assert!(matches!(
        parse(&["maintenance", "run", "--dry-run", "--at", "5"]),
        Command::Maintenance(MaintenanceCmd::Run {
            dry_run: true,
            at: Some(5)
        })
    ));
    assert!(matches!(
        parse(&["quota", "recalc"]),
        Command::Quota(QuotaCmd::Recalc { address: None })
    ));
    assert!(matches!(
        parse(&["import", "chatmail", "/srv/mail"]),
        Command::Import(ImportCmd::Chatmail { dir }) if dir.as_path() == std::path::Path::new("/srv/mail")
    ));
    assert!(matches!(
        parse(&["blocklist", "remove", "a"]),
        Command::Blocklist(BlocklistCmd::Remove { .. })
    ));
    assert!(matches!(
        parse(&["stats", "--json"]),
        Command::Stats {
            json: Json { json: true }
        }
    ));
    assert!(matches!(
        parse(&["config", "check"]),
        Command::Config(ConfigCmd::Check)
    ));
    assert!(matches!(
        parse(&["audit", "--since", "7d", "--address", "a@example.org", "--limit", "5", "--json"]),
        Command::Audit(audit::AuditCmd { since: Some(s), address: Some(a), limit: Some(5), json: Json { json: true } })
            if s == "7d" && a == "a@example.org"
    ));
    assert!(matches!(
        parse(&["audit"]),
        Command::Audit(audit::AuditCmd {
            since: None,
            address: None,
            limit: None,
            ..
        })
    ));
    assert_eq!(
        refused(&["audit", "--limit", "many"]),
        clap::error::ErrorKind::ValueValidation
    );
}

fn address(a: &str) -> Address {
    Address::parse(a, &["example.org".to_owned()]).unwrap()
}

fn alice() -> Account {
    Account {
        address: address("alice@example.org"),
        status: Status::Blocked {
            reason: Some("spam".into()),
            since: 86400,
        },
        quota: Quota {
            limit: Some(1 << 30),
            source: QuotaSource::Explicit,
        },
        usage: Usage {
            bytes: 1 << 29,
            messages: 12,
            updated_at: None,
        },
        created_at: 0,
        created_via: "invite".into(),
        invite: Some(InviteUsed {
            id: 3,
            comment: Some("for Alice".into()),
        }),
        first_login: Some(60),
        last_login: None,
        admin: true,
        expires_at: Some(7 * 86400),
    }
}

fn text(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
    let mut out = Vec::new();
    f(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn times_are_rfc3339_or_a_dash() {
    assert_eq!(when(Some(86400)), "1970-01-02T00:00:00Z");
    assert_eq!(when(None), "-");
    assert_eq!(when(Some(-1)), "-");
}

#[test]
fn an_account_as_json() {
    let v = account_json(&alice());
    assert_eq!(v["address"], "alice@example.org");
    assert_eq!(v["quota_bytes"], 1u64 << 30);
    assert_eq!(v["quota_source"], "explicit");
    assert_eq!(v["used_messages"], 12);
    assert_eq!(v["token_id"], 3);
    assert_eq!(v["blocked"], true);
    assert_eq!(v["blocked_since"], 86400);
    assert_eq!(v["blocked_reason"], "spam");
    assert_eq!(v["last_login"], serde_json::Value::Null);
    assert!(v.get("password_hash").is_none());
}

// Regression: an `Address` ignored the width, so `user list` columns no longer lined up.
#[test]
fn the_account_table_lines_up_and_counts() {
    let mut bob = alice();
    bob.address = address("bob@example.org");
    bob.status = Status::Active;
    bob.admin = false;
    let table = text(|out| account_table(out, &[alice(), bob]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("address "), "{table}");
    assert!(lines[1].starts_with("alice@example.org "), "{table}");
    assert!(lines[1].ends_with("admin,blocked"), "{table}");
    assert!(lines[2].ends_with("  "), "no flags: {table:?}");
    // Columns start at the same place on every line.
    let via = lines[0].find("via").unwrap();
    assert_eq!(lines[1].find("invite"), Some(via), "{table}");
    assert_eq!(lines[3], "2 account(s)");
}

#[test]
fn account_details_say_why_it_is_blocked() {
    let details = text(|out| account_details(out, &alice()));
    assert!(
        details.contains("invite:       3 (for Alice)\n"),
        "{details}"
    );
    assert!(
        details.contains("blocked:      since 1970-01-02T00:00:00Z (spam)\n"),
        "{details}"
    );
    assert!(details.contains("admin:        yes\n"), "{details}");
    assert!(details.contains("last login:   -\n"), "{details}");
    assert!(
        details.contains("expires:      1970-01-08T00:00:00Z (deleted by the maintenance run)\n"),
        "{details}"
    );
    assert_eq!(account_json(&alice())["expires_at"], 7 * 86400);
    let mut forever = alice();
    forever.expires_at = None;
    let details = text(|out| account_details(out, &forever));
    assert!(!details.contains("expires"), "{details}");
}

fn invite(status: InviteStatus, uses: i64) -> Invite {
    Invite {
        id: 7,
        status,
        comment: Some("workshop".into()),
        max_uses: 5,
        uses,
        expires_at: None,
        revoked_at: None,
        created_at: 5,
        account_lifetime: Some(7 * 86400),
    }
}

#[test]
fn token_show_lists_the_accounts_and_the_remaining_uses() {
    let d = InviteDetail {
        invite: invite(InviteStatus::Active, 2),
        accounts: vec![
            (address("k3x9q2m1a@example.org"), 86400),
            (address("z8y7x6w5v@example.org"), 2 * 86400),
        ],
    };
    let shown = text(|out| invite_details(out, &d));
    assert_eq!(
        shown,
        "invite:           7 (workshop)\n\
         status:           active\n\
         uses:             2 of 5 (3 remaining)\n\
         created:          1970-01-01T00:00:05Z\n\
         expires:          -\n\
         account lifetime: 7d\n\
         accounts:         2\n\
         \x20 k3x9q2m1a@example.org  created 1970-01-02T00:00:00Z\n\
         \x20 z8y7x6w5v@example.org  created 1970-01-03T00:00:00Z\n"
    );
    let v = invite_detail_json(&d);
    assert_eq!(v["remaining_uses"], 3);
    assert_eq!(v["account_lifetime"], 7 * 86400);
    assert_eq!(v["accounts"][1]["address"], "z8y7x6w5v@example.org");
    assert_eq!(v["accounts"][1]["created_at"], 2 * 86400);
    // A revoked invite has no uses left, whatever its count says.
    let revoked = InviteDetail {
        invite: invite(InviteStatus::Revoked, 2),
        accounts: vec![],
    };
    assert!(text(|out| invite_details(out, &revoked)).contains("2 of 5 (0 remaining)"));
}

#[test]
fn import_counts_read_as_done_or_as_planned() {
    let mut c = ImportCounts {
        dry_run: true,
        created: 2,
        updated: 1,
        unchanged: 0,
        skipped: vec![("x@other.org".into(), "not served".into())],
    };
    assert_eq!(
        text(|out| import_counts(out, &c)),
        "would create 2, update 1, leave 0 existing unchanged, skip 1\n\
         skip x@other.org: not served\n"
    );
    c.dry_run = false;
    assert_eq!(
        text(|out| import_counts(out, &c)),
        "created 2, updated 1, left 0 existing unchanged, skipped 1\n\
         skipped x@other.org: not served\n"
    );
}

#[test]
fn invites_and_blocklist_entries_as_json() {
    let t = Invite {
        id: 7,
        status: InviteStatus::UsedUp,
        comment: None,
        max_uses: 1,
        uses: 1,
        expires_at: None,
        revoked_at: None,
        created_at: 5,
        account_lifetime: None,
    };
    let v = token_json(&t);
    assert_eq!(
        (v["id"].clone(), v["status"].clone()),
        (7.into(), "used_up".into())
    );
    let b = BlockedAddress {
        address: address("spam@example.org"),
        reason: None,
        since: 9,
    };
    assert_eq!(
        block_json(&b),
        serde_json::json!({"address": "spam@example.org", "reason": null, "since": 9})
    );
    assert_eq!(
        text(|out| print_json(out, &block_json(&b))),
        "{\n  \"address\": \"spam@example.org\",\n  \"reason\": null,\n  \"since\": 9\n}\n"
    );
}

/// A writer whose reader has gone.
struct Closed(io::ErrorKind);

impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(self.0))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_closed_pipe_is_no_failure_but_a_full_disk_is() {
    let e = account_table(&mut Closed(io::ErrorKind::BrokenPipe), &[alice()]).unwrap_err();
    let f = Failure::from(e);
    assert!(f.pipe_closed);
    assert_eq!(report(&f), ExitCode::SUCCESS);
    let full = io::Error::from_raw_os_error(28);
    let f = Failure::from(full);
    assert!(!f.pipe_closed);
    assert_eq!(f.code, 1);
    assert!(
        f.message.starts_with("cannot write the output: "),
        "{}",
        f.message
    );
}

/// Every argument and option of every command, as `name (command path)`, that `--help`
/// would show without a description.
fn undescribed(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let builtin = matches!(arg.get_id().as_str(), "help" | "version");
        if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
            out.push(format!("{} ({path})", arg.get_id()));
        }
    }
    // `help`'s own subcommands mirror the real ones.
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_path = format!("{path} {}", sub.get_name());
        if !sub.is_hide_set() && sub.get_about().is_none() {
            out.push(format!("subcommand ({sub_path})"));
        }
        undescribed(sub, &sub_path, out);
    }
}

// `--help` showed empty descriptions for <ADDRESS>, <SIZE>, --reason, --revoke, ...
#[test]
fn every_argument_and_subcommand_has_help_text() {
    let mut cli = Cli::command();
    cli.build();
    let mut missing = Vec::new();
    undescribed(&cli, "postern", &mut missing);
    assert!(missing.is_empty(), "no help text: {missing:#?}");
    // The walk sees what `--help` shows.
    let mut bare = clap::Command::new("x")
        .arg(clap::Arg::new("address"))
        .subcommand(clap::Command::new("y"));
    bare.build();
    let mut found = Vec::new();
    undescribed(&bare, "x", &mut found);
    assert_eq!(found, vec!["address (x)", "subcommand (x y)"]);
}

// Regression: `blocklist list` printed `address  since ...` unaligned, without a header.
#[test]
fn the_blocklist_table_lines_up() {
    let entry = |a: &str, reason: Option<&str>| BlockedAddress {
        address: address(a),
        reason: reason.map(str::to_owned),
        since: 86400,
    };
    let table = text(|out| {
        super::output::blocklist_table(
            out,
            &[
                entry("spam@example.org", Some("abuse")),
                entry("a-much-longer-name@example.org", None),
            ],
        )
    });
    assert_eq!(
        table,
        "address                         since                 reason\n\
         spam@example.org                1970-01-02T00:00:00Z  abuse\n\
         a-much-longer-name@example.org  1970-01-02T00:00:00Z  \n\
         2 address(es)\n"
    );
}

// The package's one-line description is Cargo's `description`: Debian wants it short.
#[test]
fn the_one_line_description_fits_a_line() {
    let description = env!("CARGO_PKG_DESCRIPTION");
    assert!(
        !description.is_empty() && description.len() <= 80,
        "{} characters: {description}",
        description.len()
    );
}
