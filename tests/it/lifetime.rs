//! Accounts over their lifetime, through a real Dovecot: moved to another server with
//! `user export --with-hashes` and `user import` (every password keeps working, chatmail
//! imports re-hashed or not), and made temporary by an invite (`token create
//! --account-lifetime`), shown by `token show`, and deleted by the maintenance run once
//! past their lifetime.

use crate::support::dovecot::{add_with_password, home, login_ok, login_refused, Dovecot};
use crate::support::{accounts, passdb_once, show, TestDaemon};
use crate::web::Http;

/// A password with the characters Dovecot's `%E` escapes, and a space.
const AWKWARD_PW: &str = r#"back\slash "quoted" it's a/b c"#;

/// Two chatmail accounts in `<dir>/<address>/password`, as `import chatmail` reads them.
fn chatmail_dir(d: &TestDaemon, accounts: &[(&str, &str)]) -> std::path::PathBuf {
    let src = d.dir.join("chatmail-mailboxes");
    for (addr, pw) in accounts {
        let hash =
            sha_crypt::sha512_simple(pw, &sha_crypt::Sha512Params::new(5000).expect("params"))
                .expect("hash");
        std::fs::create_dir_all(src.join(addr)).expect("mkdir");
        std::fs::write(
            src.join(addr).join("password"),
            format!("{{SHA512-CRYPT}}{hash}\n"),
        )
        .expect("write");
    }
    src
}

#[test]
fn export_with_hashes_imports_into_an_empty_server_and_every_password_logs_in() {
    let old = TestDaemon::start("open");
    add_with_password(&old, "boss@example.org", "boss password 1");
    make_admin_with_quota(&old, "boss@example.org", "1G");
    // A JIT account with an awkward password, and a blocked one.
    assert!(passdb_once(&old.dict_socket, "alice@example.org", AWKWARD_PW).starts_with('O'));
    assert!(passdb_once(&old.dict_socket, "spammer@example.org", "spam password").starts_with('O'));
    old.cli_ok(&["user", "block", "spammer@example.org", "--reason", "spam"]);
    // Two chatmail imports: one has logged in since (re-hashed to argon2id), one not.
    let chatmail = [
        ("k3x9q2m1a@example.org", "old chatmail pw 1"),
        ("z8y7x6w5v@example.org", "old chatmail pw 2"),
    ];
    let src = chatmail_dir(&old, &chatmail);
    old.cli_ok(&["import", "chatmail", src.to_str().expect("utf-8")]);
    assert!(passdb_once(&old.dict_socket, chatmail[0].0, chatmail[0].1).starts_with('O'));

    let plain = old.cli_ok(&["user", "export"]);
    assert_eq!(plain.lines().count(), 5, "{plain}");
    assert!(
        !plain.contains("password_hash") && !plain.contains("$argon2"),
        "{plain}"
    );
    let export = old.cli_ok(&["user", "export", "--with-hashes"]);
    let lines: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 5);
    let hash_of = |addr: &str| {
        lines
            .iter()
            .find(|l| l["address"] == addr)
            .and_then(|l| l["password_hash"].as_str())
            .unwrap_or_else(|| panic!("no hash for {addr}"))
            .to_owned()
    };
    assert!(
        hash_of(chatmail[0].0).starts_with("$argon2id$"),
        "re-hashed"
    );
    assert!(
        hash_of(chatmail[1].0).starts_with("{SHA512-CRYPT}$6$"),
        "as imported"
    );
    let boss = lines
        .iter()
        .find(|l| l["address"] == "boss@example.org")
        .expect("boss");
    assert_eq!(
        (boss["admin"].as_bool(), boss["quota"].as_u64()),
        (Some(true), Some(1 << 30))
    );

    // A new server that creates no accounts by itself: only the import can.
    let new = TestDaemon::start("closed");
    let file = new.dir.join("accounts.jsonl");
    std::fs::write(&file, &export).expect("write");
    let file = file.to_str().expect("utf-8");
    let dry = new.cli_ok(&["user", "import", file, "--dry-run"]);
    assert_eq!(
        dry.trim(),
        "would create 5, update 0, leave 0 existing unchanged, skip 0"
    );
    assert!(accounts(&new).is_empty(), "a dry run writes nothing");
    let done = new.cli_ok(&["user", "import", file]);
    assert_eq!(
        done.trim(),
        "created 5, updated 0, left 0 existing unchanged, skipped 0"
    );
    assert_eq!(accounts(&new), accounts(&old));
    // The import is in the audit trail; the dry run is not.
    let audit = new.cli_json(&["audit"]);
    let imports: Vec<&serde_json::Value> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["action"] == "import")
        .collect();
    assert_eq!(imports.len(), 1, "{audit}");
    assert_eq!(
        imports[0]["new"],
        "created=5 updated=0 unchanged=0 skipped=0"
    );

    let dovecot = Dovecot::start(&new);
    for (user, pw) in [
        ("boss@example.org", "boss password 1"),
        ("alice@example.org", AWKWARD_PW),
        chatmail[0],
        chatmail[1],
    ] {
        login_ok(&dovecot, user, pw);
        login_refused(&dovecot, user, "not the password");
    }
    // The chatmail account imported as SHA512-CRYPT has been re-hashed by its login.
    login_ok(&dovecot, chatmail[1].0, chatmail[1].1);
    login_refused(&dovecot, "spammer@example.org", "spam password");
    let spammer = show(&new, "spammer@example.org");
    assert_eq!(
        (
            spammer["blocked"].as_bool(),
            spammer["blocked_reason"].as_str()
        ),
        (Some(true), Some("spam"))
    );
    let boss = show(&new, "boss@example.org");
    assert_eq!(
        (boss["admin"].as_bool(), boss["quota_bytes"].as_u64()),
        (Some(true), Some(1 << 30))
    );
    assert_eq!(show(&new, "alice@example.org")["created_via"], "jit");
    let mut listed = dovecot.doveadm_user_list();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            "alice@example.org",
            "boss@example.org",
            "k3x9q2m1a@example.org",
            "z8y7x6w5v@example.org"
        ]
    );

    // Importing again changes nothing without --update.
    let again = new.cli_ok(&["user", "import", file]);
    assert_eq!(
        again.trim(),
        "created 0, updated 0, left 5 existing unchanged, skipped 0"
    );
    // A malformed file is refused whole, naming the line.
    std::fs::write(
        new.dir.join("bad.jsonl"),
        format!("{export}{{\"address\":\n"),
    )
    .expect("write");
    let bad = new.cli(&[
        "user",
        "import",
        new.dir.join("bad.jsonl").to_str().expect("utf-8"),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.starts_with("postern: line 6: not JSON: ")
            && err.trim_end().ends_with("nothing was imported"),
        "{err}"
    );
}

/// `user quota` and `user admin` for an existing account.
fn make_admin_with_quota(d: &TestDaemon, addr: &str, size: &str) {
    d.cli_ok(&["user", "quota", addr, size]);
    d.cli_ok(&["user", "admin", addr]);
}

#[test]
fn a_temporary_account_past_its_lifetime_is_deleted_by_the_maintenance_run() {
    let d = TestDaemon::start_with("invite_only", &[("POSTERN_HTTP__NEW_PER_MINUTE", "0")]);
    add_with_password(&d, "boss@example.org", "boss password 1");
    let dovecot = Dovecot::start(&d);
    let invite = d.cli_json(&[
        "token",
        "create",
        "--uses",
        "2",
        "--account-lifetime",
        "7d",
        "--comment",
        "workshop",
    ]);
    assert_eq!(invite["account_lifetime"], 7 * 86400);
    let code = invite["code"].as_str().expect("code").to_owned();
    let id = invite["id"].to_string();

    let http = Http::new(&d);
    let r = http.post_json(
        &format!("/new?token={code}"),
        &serde_json::json!({"username": "temp", "password": "temporary password"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    login_ok(&dovecot, "temp@example.org", "temporary password");
    assert!(home(&d, "temp@example.org").join("Maildir").is_dir());
    let temp = show(&d, "temp@example.org");
    let created = temp["created_at"].as_i64().expect("created_at");
    let expires = temp["expires_at"].as_i64().expect("expires_at");
    assert_eq!(expires, created + 7 * 86400);
    let text = d.cli_ok(&["user", "show", "temp@example.org"]);
    assert!(text.contains("\nexpires:      "), "{text}");
    assert!(show(&d, "boss@example.org")["expires_at"].is_null());

    // The invite lists what it made, by id or by code.
    for arg in [id.as_str(), code.as_str()] {
        let shown = d.cli_ok(&["token", "show", arg]);
        assert!(
            shown.contains("uses:             1 of 2 (1 remaining)\n"),
            "{shown}"
        );
        assert!(shown.contains("account lifetime: 7d\n"), "{shown}");
        assert!(shown.contains("\n  temp@example.org  created "), "{shown}");
    }

    let at = |t: i64| t.to_string();
    let early = d.cli_ok(&["maintenance", "run", "--dry-run", "--at", &at(expires - 1)]);
    assert!(!early.contains("would delete"), "{early}");
    let dry = d.cli_ok(&["maintenance", "run", "--dry-run", "--at", &at(expires)]);
    let listed: Vec<&str> = dry
        .lines()
        .filter(|l| l.starts_with("would delete"))
        .collect();
    assert_eq!(
        listed,
        vec!["would delete temp@example.org (expired)"],
        "{dry}"
    );
    let run = d.cli_ok(&["maintenance", "run", "--at", &at(expires)]);
    let deleted: Vec<&str> = run.lines().filter(|l| l.starts_with("deleted")).collect();
    assert_eq!(deleted, vec!["deleted temp@example.org (expired)"], "{run}");

    assert_eq!(accounts(&d), vec!["boss@example.org"]);
    assert_eq!(dovecot.doveadm_user_list(), vec!["boss@example.org"]);
    assert!(!home(&d, "temp@example.org").exists(), "mail home removed");
    login_refused(&dovecot, "temp@example.org", "temporary password");
    // As with every deletion, the address stays on the blocklist.
    let blocked = d.cli_json(&["blocklist", "list"]);
    assert!(
        blocked
            .as_array()
            .expect("array")
            .iter()
            .any(|b| b["address"] == "temp@example.org"),
        "{blocked}"
    );
    let r = http.post_json(
        &format!("/new?token={code}"),
        &serde_json::json!({"username": "temp", "password": "temporary password"}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
}
