//! The `postern` CLI through the built binary: every command, `--json` parsed, clear
//! messages and non-zero exits on bad input.

use crate::support::TestDaemon;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A configured but not running daemon: the CLI works on the database alone.
fn offline(mode: &str) -> TestDaemon {
    TestDaemon::configure(mode, &[])
}

#[test]
fn user_lifecycle_add_show_passwd_quota_block_delete() {
    let d = offline("invite_only");
    let added = d.cli_json(&["user", "add", "Alice@Example.org", "--random"]);
    assert_eq!(added["address"], "alice@example.org");
    assert_eq!(added["created_via"], "cli");
    let generated = added["password"].as_str().expect("generated password");
    assert!(generated.len() >= 20);
    // The first account is admin (first_account_is_admin).
    assert_eq!(added["admin"], true);

    let out = d.cli_stdin(
        &[
            "user",
            "add",
            "bob@example.org",
            "--password-stdin",
            "--quota",
            "1G",
        ],
        "bobs password 1\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bob = d.cli_json(&["user", "show", "bob@example.org"]);
    assert_eq!(bob["quota_bytes"], 1u64 << 30);
    assert_eq!(bob["quota_source"], "explicit");
    assert_eq!(bob["admin"], false);
    assert!(bob.get("password").is_none());

    d.cli_ok(&["user", "quota", "bob@example.org", "unlimited"]);
    assert_eq!(
        d.cli_json(&["user", "show", "bob@example.org"])["quota_bytes"],
        serde_json::Value::Null
    );
    d.cli_ok(&["user", "quota", "bob@example.org", "default"]);
    assert_eq!(
        d.cli_json(&["user", "show", "bob@example.org"])["quota_bytes"],
        500u64 << 20
    );

    let text = d.cli_ok(&["user", "passwd", "bob@example.org", "--random"]);
    assert!(text.contains("password: "), "{text}");

    d.cli_ok(&["user", "block", "bob@example.org", "--reason", "spam run"]);
    let bob = d.cli_json(&["user", "show", "bob@example.org"]);
    assert_eq!(
        (bob["blocked"].as_bool(), bob["blocked_reason"].as_str()),
        (Some(true), Some("spam run"))
    );
    let blocked = d.cli_json(&["user", "list", "--blocked"]);
    assert_eq!(blocked.as_array().map(Vec::len), Some(1));
    d.cli_ok(&["user", "unblock", "bob@example.org"]);
    assert_eq!(
        d.cli_json(&["user", "show", "bob@example.org"])["blocked"],
        false
    );

    d.cli_ok(&["user", "admin", "bob@example.org"]);
    assert_eq!(
        d.cli_json(&["user", "show", "bob@example.org"])["admin"],
        true
    );
    d.cli_ok(&["user", "admin", "bob@example.org", "--revoke"]);
    assert_eq!(
        d.cli_json(&["user", "show", "bob@example.org"])["admin"],
        false
    );

    // Human-readable output too.
    let list = d.cli_ok(&["user", "list"]);
    assert!(
        list.contains("alice@example.org") && list.contains("2 account(s)"),
        "{list}"
    );
    let show = d.cli_ok(&["user", "show", "bob@example.org"]);
    assert!(show.contains("quota:") && show.contains("500M"), "{show}");
}

#[test]
fn delete_needs_yes_removes_mail_and_keeps_address_blocked() {
    let d = offline("open");
    d.cli_ok(&["user", "add", "carol@example.org", "--random"]);
    let home = d.vmail.join("example.org/carol/Maildir/cur");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join("1.mail"), "hello").expect("write");

    let out = d.cli(&["user", "delete", "carol@example.org"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert!(home.exists(), "nothing happens without --yes");

    let text = d.cli_ok(&["user", "delete", "carol@example.org", "--yes"]);
    assert!(text.contains("removed mail home"), "{text}");
    assert!(!d.vmail.join("example.org/carol").exists());
    let bl = d.cli_json(&["blocklist", "list"]);
    assert_eq!(bl[0]["address"], "carol@example.org");
    // The address cannot be taken again.
    let out = d.cli(&["user", "add", "carol@example.org", "--random"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("blocklist"), "{}", stderr(&out));

    // --keep-mail --allow-reuse: mail stays, address is free.
    d.cli_ok(&["user", "add", "dave@example.org", "--random"]);
    let dave = d.vmail.join("example.org/dave");
    std::fs::create_dir_all(&dave).expect("mkdir");
    d.cli_ok(&[
        "user",
        "delete",
        "dave@example.org",
        "--keep-mail",
        "--allow-reuse",
        "--yes",
    ]);
    assert!(dave.exists());
    d.cli_ok(&["user", "add", "dave@example.org", "--random"]);
}

#[test]
fn delete_that_cannot_remove_the_mail_home_keeps_it_queued_and_exits_1() {
    let d = offline("open");
    d.cli_ok(&["user", "add", "carol@example.org", "--random"]);
    // carol's home is a link to a directory outside the mail root: never followed.
    let outside = d.dir.join("elsewhere");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::create_dir(d.vmail.join("example.org")).expect("mkdir");
    let home = d.vmail.join("example.org/carol");
    std::os::unix::fs::symlink(&outside, &home).expect("symlink");

    let out = d.cli(&["user", "delete", "carol@example.org", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "account carol@example.org was deleted, but its mail home {} could not be removed: \
             it is a symbolic link; not following it; it stays queued for `postern maintenance run`",
            home.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(outside.exists());
    assert_eq!(d.cli_json(&["stats"])["mail_homes_queued"], 1);
    // The daily run tries again; once the link is gone, the entry leaves the queue.
    assert_eq!(d.cli(&["maintenance", "run"]).status.code(), Some(1));
    std::fs::remove_file(&home).expect("rm link");
    d.cli_ok(&["maintenance", "run"]);
    assert_eq!(d.cli_json(&["stats"])["mail_homes_queued"], 0);
}

#[test]
fn tokens_create_list_revoke() {
    let d = offline("invite_only");
    let t = d.cli_json(&[
        "token",
        "create",
        "--uses",
        "3",
        "--expires",
        "72h",
        "--comment",
        "for Alice",
    ]);
    let code = t["code"].as_str().expect("code");
    assert_eq!(t["link"], format!("https://example.org/new?token={code}"));
    assert_eq!(
        t["dcaccount"],
        format!("DCACCOUNT:https://example.org/new?token={code}")
    );
    assert_eq!(
        (t["max_uses"].as_i64(), t["status"].as_str()),
        (Some(3), Some("active"))
    );
    assert!(t["expires_at"].as_i64().expect("expiry") > t["created_at"].as_i64().expect("created"));
    let text = d.cli_ok(&["token", "create"]);
    assert!(
        text.contains("code: ") && text.contains("/new?token="),
        "{text}"
    );

    let list = d.cli_json(&["token", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert!(
        list[0].get("code").is_none(),
        "codes are never stored or listed"
    );
    assert_eq!(list[0]["comment"], "for Alice");

    d.cli_ok(&["token", "revoke", code]);
    d.cli_ok(&["token", "revoke", "2"]);
    let list = d.cli_json(&["token", "list"]);
    assert!(list
        .as_array()
        .expect("array")
        .iter()
        .all(|t| t["status"] == "revoked"));
    let out = d.cli(&["token", "revoke", "no-such-code"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no invite"), "{}", stderr(&out));
    let out = d.cli(&["token", "create", "--expires", "soon"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn blocklist_add_remove_list() {
    let d = offline("open");
    d.cli_ok(&[
        "blocklist",
        "add",
        "Spammer@example.org",
        "--reason",
        "abuse",
    ]);
    let list = d.cli_json(&["blocklist", "list"]);
    assert_eq!(
        (list[0]["address"].as_str(), list[0]["reason"].as_str()),
        (Some("spammer@example.org"), Some("abuse"))
    );
    d.cli_ok(&["blocklist", "remove", "spammer@example.org"]);
    assert_eq!(
        d.cli_json(&["blocklist", "list"]).as_array().map(Vec::len),
        Some(0)
    );
    let out = d.cli(&["blocklist", "remove", "spammer@example.org"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn registration_status_set_reset() {
    let d = offline("invite_only");
    let s = d.cli_json(&["registration", "status"]);
    assert_eq!(
        (s["mode"].as_str(), s["source"].as_str()),
        (Some("invite_only"), Some("config"))
    );
    d.cli_ok(&["registration", "set", "closed"]);
    let s = d.cli_json(&["registration", "status"]);
    assert_eq!(
        (s["mode"].as_str(), s["source"].as_str()),
        (Some("closed"), Some("runtime"))
    );
    d.cli_ok(&["registration", "reset"]);
    assert_eq!(
        d.cli_json(&["registration", "status"])["mode"],
        "invite_only"
    );
    let out = d.cli(&["registration", "set", "wide-open"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_input_gets_a_clear_message_and_nonzero_exit() {
    let d = offline("open");
    let cases: &[(&[&str], &str)] = &[
        (
            &["user", "add", "two@@example.org", "--random"],
            "exactly one @",
        ),
        (
            &["user", "add", "x@other.org", "--random"],
            "does not serve",
        ),
        (&["user", "add", "a..b@example.org", "--random"], "'..'"),
        (&["user", "show", "ghost@example.org"], "no account"),
        (&["user", "block", "ghost@example.org"], "no account"),
        (
            &["user", "passwd", "ghost@example.org", "--random"],
            "no account",
        ),
        (&["user", "quota", "ghost@example.org", "1G"], "no account"),
        (
            &["user", "quota", "ghost@example.org", "lots"],
            "not a size",
        ),
    ];
    for (args, needle) in cases {
        let out = d.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let out = d.cli_stdin(
        &["user", "add", "erin@example.org", "--password-stdin"],
        "weak\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("at least 9 characters"),
        "{}",
        stderr(&out)
    );
    // Nothing was created by any of it.
    assert_eq!(
        d.cli_json(&["user", "list"]).as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn config_show_check_and_errors_exit_2() {
    let d = offline("open");
    let shown = d.cli_ok(&["config", "show"]);
    assert!(shown.contains("domains = [\"example.org\"]"), "{shown}");
    assert!(
        shown.contains("[registration]") && shown.contains("mode = \"open\""),
        "{shown}"
    );
    d.cli_ok(&["config", "check"]);

    // Environment overrides the file, with the plain alias too.
    let out = d
        .command()
        .args(["registration", "status", "--json"])
        .env("REGISTRATION_MODE", "closed")
        .output()
        .expect("run");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(s["mode"], "closed");
    let out = d
        .command()
        .args(["config", "show"])
        .env("POSTERN_REGISTRATION__MODE", "invite_only")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("mode = \"invite_only\""));

    std::fs::write(&d.config, "domains = [\"example.org\"]\nsurprise = 1\n").expect("write");
    let out = d.cli(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("surprise"), "{}", stderr(&out));
    std::fs::write(
        &d.config,
        "domains = [\"example.org\"]\n[registration]\nmode = \"sometimes\"\n",
    )
    .expect("write");
    let out = d.cli(&["user", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invite_only"), "{}", stderr(&out));
    let out = d.cli(&["serve"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "config errors exit 2 so systemd does not restart-loop"
    );
}

#[test]
fn no_password_reaches_the_database_or_the_log() {
    let d = TestDaemon::start("open");
    let secret = "UniqueSecret-4711-xyz";
    let reply = crate::support::passdb_once(&d.dict_socket, "alice@example.org", secret);
    assert!(reply.starts_with('O'));
    assert!(
        crate::support::passdb_once(&d.dict_socket, "alice@example.org", "Wrong-4711-xyz")
            .starts_with('N')
    );
    let out = d.cli_stdin(
        &["user", "add", "bob@example.org", "--password-stdin"],
        &format!("{secret}\n"),
    );
    assert!(out.status.success());
    for file in ["postern.db", "postern.db-wal", "postern.log"] {
        let bytes = std::fs::read(d.dir.join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(secret) && !text.contains("Wrong-4711"),
            "{file} holds a password"
        );
    }
}

#[test]
fn quota_recalc_counts_maildir_sizes_from_names_and_files() {
    let d = offline("open");
    d.cli_ok(&["user", "add", "alice@example.org", "--random"]);
    d.cli_ok(&["user", "add", "bob@example.org", "--random"]);
    let maildir = d.vmail.join("example.org/alice/Maildir");
    for sub in ["cur", "new", ".Sent/cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("mkdir");
    }
    std::fs::write(maildir.join("new/1700000000.M1P2.host,S=1000,W=1030"), "x").expect("write");
    std::fs::write(
        maildir.join("cur/1700000001.M2P2.host,S=2000,W=2050:2,S"),
        "x",
    )
    .expect("write");
    std::fs::write(maildir.join(".Sent/cur/1700000002.M3P2.host:2,S"), "12345").expect("write");
    std::fs::write(maildir.join("tmp/in-flight"), "not counted").expect("write");
    let out = d.cli_ok(&["quota", "recalc"]);
    assert!(
        out.contains("alice@example.org: 2.9K in 3 messages"),
        "{out}"
    );
    let alice = d.cli_json(&["user", "show", "alice@example.org"]);
    assert_eq!(
        (
            alice["used_bytes"].as_i64(),
            alice["used_messages"].as_i64()
        ),
        (Some(3005), Some(3))
    );
    assert!(alice["usage_updated_at"].as_i64().is_some());
    let bob = d.cli_json(&["user", "show", "bob@example.org"]);
    assert_eq!(bob["used_bytes"], 0);
    let out = d.cli(&["quota", "recalc", "ghost@example.org"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn run_as_root_the_cli_acts_as_the_database_owner() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        panic!("this test must run as root (CI does)");
    }
    let probe = TestDaemon::configure("open", &[]);
    let db_dir = probe.dir.join("state");
    std::fs::create_dir(&db_dir).expect("mkdir");
    nix::unistd::chown(
        &db_dir,
        Some(nix::unistd::Uid::from_raw(crate::support::MAIL_UID)),
        Some(nix::unistd::Gid::from_raw(crate::support::MAIL_GID)),
    )
    .expect("chown");
    let db = db_dir.join("postern.db");
    let db_str = db.to_string_lossy().into_owned();
    let d = TestDaemon::configure("open", &[("POSTERN_DATABASE__PATH", &db_str)]);
    d.cli_ok(&["user", "add", "alice@example.org", "--random"]);
    for file in [
        db.clone(),
        db_dir.join("postern.db-wal"),
        db_dir.join("postern.db-shm"),
    ] {
        if let Ok(meta) = std::fs::metadata(&file) {
            assert_eq!(
                meta.uid(),
                crate::support::MAIL_UID,
                "{} owned by uid {}",
                file.display(),
                meta.uid()
            );
        }
    }
    assert_eq!(
        std::fs::metadata(&db).expect("db exists").uid(),
        crate::support::MAIL_UID
    );
    // Root's rights are still used where they are needed: a root-only mail home goes.
    let home = d.vmail.join("example.org/alice");
    std::fs::create_dir_all(home.join("Maildir")).expect("mkdir");
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    d.cli_ok(&["user", "delete", "alice@example.org", "--yes"]);
    assert!(!home.exists());
}

#[test]
fn token_create_qr_prints_a_scannable_block() {
    let d = offline("invite_only");
    let out = d.cli_ok(&["token", "create", "--qr"]);
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.contains('█') || l.contains('▀') || l.contains('▄'))
        .collect();
    // A QR code of a ~60-character DCACCOUNT link is at least 25 modules: >= 14 text rows.
    assert!(rows.len() >= 14, "{out}");
    let width = rows[0].chars().count();
    assert!(
        rows.iter().all(|r| r.chars().count() == width),
        "rows of one width"
    );
    assert!(
        !d.cli_ok(&["token", "create"]).contains('█'),
        "no QR without --qr"
    );
}

// The package installed only postern(1): `man postern-user-block` found nothing.
#[test]
fn generate_assets_writes_a_man_page_per_subcommand_and_the_completions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("generate-assets")
        .arg(dir.path())
        .output()
        .expect("run postern generate-assets");
    assert!(out.status.success(), "{}", stderr(&out));
    let man = dir.path().join("man");
    let page = |name: &str| {
        std::fs::read_to_string(man.join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"))
    };

    let block = page("postern-user-block");
    assert!(block.contains(".TH postern-user-block 1"), "{block}");
    assert!(
        block.contains("Block an account: no login, no new mail"),
        "{block}"
    );
    assert!(block.contains(r"\fBpostern user block\fR"), "{block}");
    assert!(
        block.contains(r"\fBpostern\fR(1), \fBpostern\-user\fR(1)"),
        "SEE ALSO names the parents: {block}"
    );

    // `man postern` was bare clap output: no exit statuses, files, environment, examples.
    let top = page("postern");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH EXAMPLES",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(top.contains(section), "postern.1 has no {section}");
    }
    assert!(top.contains(r"\fBPOSTERN_CONFIG\fR"), "{top}");
    assert!(top.contains(r"\fBpostern.toml\fR(5)"), "{top}");
    assert!(
        block.contains(".SH \"EXIT STATUS\""),
        "every page tells its exit statuses"
    );
    // postern.toml(5), from the packaged default file: every table of it.
    let toml5 = std::fs::read_to_string(man.join("postern.toml.5")).expect("postern.toml.5");
    assert!(toml5.contains(".TH postern.toml 5"), "{toml5}");
    let default = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/postern.toml"
    ))
    .expect("packaging/postern.toml");
    let tables: Vec<&str> = default.lines().filter(|l| l.starts_with('[')).collect();
    assert!(tables.len() >= 14, "{tables:?}");
    for table in tables {
        assert!(
            toml5.contains(&format!(".SS {table}\n")),
            "no {table} in postern.toml.5"
        );
    }
    assert!(toml5.contains(r"\fBdomains\fR = "), "{toml5}");

    let mut names: Vec<String> = std::fs::read_dir(&man)
        .expect("man dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".1"))
        .collect();
    names.sort();
    for name in ["postern.1", "postern-user.1", "postern-token-create.1"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    // Hidden commands and clap's `help` get no page.
    assert!(
        !names
            .iter()
            .any(|n| n.contains("generate") || n.contains("help")),
        "{names:?}"
    );
    // The top page leads to every other page.
    for name in names.iter().filter(|n| *n != "postern.1") {
        let stem = name.trim_end_matches(".1").replace('-', r"\-");
        assert!(
            top.contains(&format!(r"\fB{stem}\fR(1)")),
            "postern.1 does not name {name}"
        );
    }

    for f in ["postern.bash", "_postern", "postern.fish"] {
        let path = dir.path().join("completions").join(f);
        assert!(std::fs::metadata(&path).is_ok_and(|m| m.len() > 0), "{f}");
    }
}

// A bad `http.trusted_proxies` entry used to be a warning, and skipped at each request.
#[test]
fn a_bad_trusted_proxies_entry_fails_config_check_naming_the_key() {
    let d = offline("open");
    let mut config = std::fs::read_to_string(&d.config).expect("read");
    config.push_str("[http]\ntrusted_proxies = [\"127.0.0.1\", \"proxy.example\"]\n");
    std::fs::write(&d.config, config).expect("write");
    let out = d.cli(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("http.trusted_proxies") && stderr(&out).contains("proxy.example"),
        "{}",
        stderr(&out)
    );
}

// Regression: `user quota <addr> 0` was stored and then read four different ways.
#[test]
fn a_quota_of_0_is_refused_with_what_to_use_instead() {
    let d = TestDaemon::start("closed");
    d.cli_ok(&["user", "add", "bob@example.org", "--random"]);
    for args in [
        &["user", "quota", "bob@example.org", "0"][..],
        &[
            "user",
            "add",
            "carol@example.org",
            "--random",
            "--quota",
            "0",
        ][..],
    ] {
        let out = d.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("a quota of 0 would refuse all mail; use `unlimited` for no limit, or `postern user block` to stop mail"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        d.cli_json(&["user", "show", "bob@example.org"])["quota_source"],
        "default"
    );
    assert!(!d
        .cli(&["user", "show", "carol@example.org"])
        .status
        .success());
}

/// `offline` with `n` imported accounts (a chatmail import: one hash, no argon2).
fn with_accounts(n: usize) -> TestDaemon {
    let d = offline("open");
    let src = d.dir.join("many");
    let hash = sha_crypt::sha512_simple("pw", &sha_crypt::Sha512Params::new(1000).expect("params"))
        .expect("hash");
    for i in 0..n {
        let home = src.join(format!("user{i:04}@example.org"));
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::write(home.join("password"), &hash).expect("write");
    }
    let out = d.cli_ok(&["import", "chatmail", src.to_str().expect("utf-8")]);
    assert!(out.contains(&format!("imported {n} account(s)")), "{out}");
    d
}

// Regression: `postern user list | head -1` panicked on the broken pipe and exited 101.
#[test]
fn user_list_into_a_pipe_closed_after_one_line_ends_quietly_with_0() {
    use std::io::BufRead;
    let d = with_accounts(700);
    // More than a pipe holds (64 KiB), so the list is still being written when the
    // reader goes.
    let whole = d.cli_ok(&["user", "list"]);
    assert!(whole.len() > 65536, "only {} bytes", whole.len());

    let mut child = d
        .command()
        .args(["user", "list"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run postern user list");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("first line");
    assert!(first.starts_with("address"), "{first}");
    drop(reader);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn user_list_into_a_full_device_fails_with_a_clear_message() {
    let d = with_accounts(3);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = d
        .command()
        .args(["user", "list"])
        .stdin(std::process::Stdio::null())
        .stdout(full)
        .output()
        .expect("run postern user list");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("postern: cannot write the output: No space left on device"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `postern ARGS` without the test daemon's `--config` and with a clean environment.
fn bare(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_postern"));
    c.args(args).stdin(std::process::Stdio::null());
    for var in ["REGISTRATION_MODE", "ADMIN_USERNAME", "POSTERN_CONFIG"] {
        c.env_remove(var);
    }
    c
}

// Regression: `--config` naming a missing file was read as "defaults only", and
// `config check` said "no file" about the file it had been given.
#[test]
fn a_named_configuration_file_that_does_not_exist_is_an_error_for_every_command() {
    let missing = "/nonexistent/postern.toml";
    for args in [
        &["config", "check"][..],
        &["config", "show"],
        &["user", "list"],
        &["token", "list"],
        &["stats"],
        &["serve"],
    ] {
        let mut argv = vec!["--config", missing];
        argv.extend_from_slice(args);
        let out = bare(&argv).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("postern: configuration file {missing} does not exist (named by --config)\n"),
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        let out = bare(args)
            .env("POSTERN_CONFIG", missing)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!(
                "postern: configuration file {missing} does not exist (named by POSTERN_CONFIG)\n"
            ),
            "{args:?}"
        );
    }
}

#[test]
fn config_check_names_the_file_it_checked() {
    let d = offline("open");
    let out = d.cli_ok(&["config", "check"]);
    assert_eq!(
        out,
        format!("configuration ok ({})\n", d.config.display()),
        "{out}"
    );
}

// `mailbox.uid = "vmial"` (a typo) passed `config check`, and every delivery failed.
#[test]
fn config_check_reports_a_mail_owner_nobody_has_and_serve_logs_it() {
    use std::os::unix::fs::PermissionsExt;
    let d = offline("open");
    let out = d
        .command()
        .args(["config", "check"])
        .env("POSTERN_MAILBOX__UID", "postern-no-such-user")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.starts_with("error: mailbox.uid: no user named postern-no-such-user on this host"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("is valid, but 1 error(s) on this host (above)"),
        "{}",
        stderr(&out)
    );
    // A number without a passwd entry is only a warning (when it may write the mail
    // root; the root is the test user's).
    std::fs::set_permissions(&d.vmail, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = d
        .command()
        .args(["config", "check"])
        .env("POSTERN_MAILBOX__UID", "3999999")
        .env("POSTERN_MAILBOX__GID", "3999999")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.starts_with("warning: mailbox.uid: no user has uid 3999999 on this host"),
        "{text}"
    );
    assert!(text.ends_with(&format!("configuration ok ({})\n", d.config.display())));

    // serve starts all the same and says it in its log.
    let d = TestDaemon::start_with("open", &[("POSTERN_MAILBOX__GID", "postern-no-such-group")]);
    let log = d.log();
    assert!(
        log.contains(
            "event=config_check severity=error key=mailbox.gid message=\"no group named postern-no-such-group"
        ),
        "{log}"
    );
}

/// The syslog lines received so far on `sock`.
fn received(sock: &std::os::unix::net::UnixDatagram) -> Vec<String> {
    sock.set_nonblocking(true).expect("nonblocking");
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    lines
}

fn events<'a>(lines: &'a [String], event: &str) -> Vec<&'a String> {
    let key = format!("event={event} ");
    lines.iter().filter(|l| l.contains(&key)).collect()
}

// Regressions: `user unblock` of an account that was not blocked and a failed
// `blocklist remove` still logged event=unblock; `token revoke` twice said "revoked"
// twice; quota and admin-flag changes logged nothing.
#[test]
fn operator_actions_log_what_changed_and_say_when_nothing_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind syslog");
    let path = path.to_string_lossy().into_owned();
    let d = TestDaemon::configure(
        "open",
        &[
            ("POSTERN_LOG__TARGET", "syslog"),
            ("POSTERN_LOG__SYSLOG_SOCKET", &path),
            ("POSTERN_LOG__LEVEL", "info"),
        ],
    );
    d.cli_ok(&["user", "add", "bob@example.org", "--random"]);
    received(&sock);

    assert_eq!(
        d.cli_ok(&["user", "quota", "bob@example.org", "1G"]),
        "quota of bob@example.org is now 1G (explicit)\n"
    );
    d.cli_ok(&["user", "quota", "bob@example.org", "unlimited"]);
    d.cli_ok(&["user", "admin", "bob@example.org", "--revoke"]);
    let lines = received(&sock);
    let audit = |lines: &[String], action: &str| -> Vec<String> {
        let key = format!(" action={action} ");
        events(lines, "audit")
            .into_iter()
            .filter(|l| l.contains(&key))
            .map(|l| {
                l.split("event=audit ")
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        audit(&lines, "quota_change"),
        [
            "actor=cli:root action=quota_change target=bob@example.org old=default new=1G",
            "actor=cli:root action=quota_change target=bob@example.org old=1G new=unlimited",
        ],
        "{lines:?}"
    );
    assert_eq!(
        audit(&lines, "admin_flag"),
        ["actor=cli:root action=admin_flag target=bob@example.org old=yes new=no"],
        "{lines:?}"
    );

    assert_eq!(
        d.cli_ok(&["user", "unblock", "bob@example.org"]),
        "bob@example.org was not blocked\n"
    );
    let out = d.cli(&["blocklist", "remove", "nobody@example.org"]);
    assert_eq!(out.status.code(), Some(1));
    d.cli_ok(&["blocklist", "add", "spam@example.org"]);
    assert_eq!(
        d.cli_ok(&["blocklist", "add", "spam@example.org"]),
        "spam@example.org was already on the blocklist\n"
    );
    let lines = received(&sock);
    assert_eq!(
        audit(&lines, "account_unblock"),
        Vec::<String>::new(),
        "{lines:?}"
    );
    assert_eq!(audit(&lines, "blocklist_remove"), Vec::<String>::new());
    assert_eq!(audit(&lines, "blocklist_add").len(), 1, "{lines:?}");

    let id = d.cli_json(&["token", "create"])["id"].to_string();
    received(&sock);
    assert_eq!(
        d.cli_ok(&["token", "revoke", &id]),
        format!("revoked invite {id}\n")
    );
    let out = d.cli(&["token", "revoke", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("invite {id} was already revoked (at 20")),
        "{text}"
    );
    assert_eq!(audit(&received(&sock), "invite_revoke").len(), 1);
}

// Regression: without /dev/log every non-terminal CLI call printed a syslog warning.
#[test]
fn a_command_without_a_syslog_socket_is_quiet() {
    let d = TestDaemon::configure(
        "open",
        &[
            ("POSTERN_LOG__TARGET", "auto"),
            ("POSTERN_LOG__SYSLOG_SOCKET", "/nonexistent/log"),
        ],
    );
    let out = d.cli(&["user", "add", "bob@example.org", "--random"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "");
    // Asked for syslog by name, its absence is worth one line.
    let out = d
        .command()
        .args(["user", "list"])
        .env("POSTERN_LOG__TARGET", "syslog")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stderr(&out),
        "postern: cannot reach syslog at /nonexistent/log (Initialization error: Io error: No such file or directory (os error 2)); logging to stderr\n"
    );
}

// Regression: outside systemd, `runuser -u postern -- postern serve` failed with a bare
// "Permission denied" when /run/postern did not exist.
#[test]
fn serve_without_its_socket_directory_says_which_and_what_to_do() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run serve as another user");
        return;
    }
    let d = offline("open");
    // A database directory the unprivileged user owns; sockets under a root-owned one.
    let db_dir = d.dir.join("db");
    std::fs::create_dir(&db_dir).expect("mkdir");
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::chown(&db_dir, Some(nobody), None).expect("chown");
    let run_dir = d.dir.join("run/postern");
    let out = d
        .command()
        .arg("serve")
        .env("POSTERN_DATABASE__PATH", db_dir.join("postern.db"))
        .env("POSTERN_LISTEN__DICT", run_dir.join("dict.sock"))
        .env("POSTERN_LOG__TARGET", "stderr")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run serve");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "postern: socket {}: its directory {} does not exist and cannot be created (Permission denied (os error 13)); under systemd",
            run_dir.join("dict.sock").display(),
            run_dir.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "install -d -o postern -g postern -m 0750 {}",
            run_dir.display()
        )),
        "{err}"
    );
}

// Reported: the start line said `listeners=3` with four listeners and named no paths.
#[test]
fn the_start_line_counts_and_names_every_listener() {
    let d = TestDaemon::start("open");
    let log = d.log();
    let expected = format!(
        "event=start version={} listeners=5 dict={} auth={} policy={} http={} auth_http={}",
        env!("CARGO_PKG_VERSION"),
        d.dict_socket.display(),
        d.auth_socket.display(),
        d.policy_socket.display(),
        d.http,
        d.auth_http
    );
    assert!(log.contains(&expected), "{expected}\nnot in:\n{log}");
}
