//! postern behind a real Dovecot 2.3, wired as an operator wires it: passdb/userdb
//! `driver = dict` with chatmail's keys, `last_login` and `quota_clone` through the same
//! socket. Each test starts its own daemon and its own Dovecot (root and the Debian
//! packages dovecot-core, dovecot-imapd, dovecot-lmtpd are needed).

use crate::support::dovecot::{
    accounts, add_with_password, eventually, home, login_ok, login_refused, maildir_new_files,
    show, Dovecot,
};
use crate::support::scenarios;
use crate::support::{store_a_zero_quota, TestDaemon};

const PW: &str = "correct horse battery";
/// Every character `%E` escapes plus `/` and spaces.
const AWKWARD_PW: &str = r#"back\slash "quoted" it's a/b c"#;

const MESSAGE: &str = "From: sender@example.net\n\
To: alice@example.org\n\
Subject: hello\n\
\n\
Hello Alice.\n\
.a line starting with a dot\n";

fn start(mode: &str) -> (TestDaemon, Dovecot) {
    let daemon = TestDaemon::start(mode);
    let dovecot = Dovecot::start(&daemon);
    (daemon, dovecot)
}

#[test]
fn imap_first_login_creates_the_account_and_logs_in_again() {
    let (d, dovecot) = start("open");
    let mut s = dovecot
        .imap_login("alice@example.org", PW)
        .expect("first login creates the account");
    assert_eq!(s.select_inbox(), 0);
    s.logout();
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
    let a = show(&d, "alice@example.org");
    assert_eq!(a["created_via"], "jit", "{a}");
    assert_eq!(a["blocked"], false, "{a}");
    // The mailbox was made where the userdb said, by Dovecot as the mail user.
    assert!(home(&d, "alice@example.org").join("Maildir").is_dir());

    login_ok(&dovecot, "alice@example.org", PW);
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
}

#[test]
fn imap_wrong_password_is_refused_and_changes_nothing() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    // Let the first login's last_login write land before taking the snapshot.
    eventually("last_login after the first login", || {
        Some(()).filter(|_| !show(&d, "alice@example.org")["last_login"].is_null())
    });
    let before = show(&d, "alice@example.org");

    let e = login_refused(&dovecot, "alice@example.org", "wrong password!");
    assert!(e.contains("NO [AUTHENTICATIONFAILED]"), "{e}");

    assert_eq!(accounts(&d), vec!["alice@example.org"]);
    assert_eq!(show(&d, "alice@example.org"), before);
    // The right password still works.
    login_ok(&dovecot, "alice@example.org", PW);
}

#[test]
fn imap_awkward_password_works_for_first_and_second_login() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", AWKWARD_PW);
    assert_eq!(show(&d, "alice@example.org")["created_via"], "jit");
    login_ok(&dovecot, "alice@example.org", AWKWARD_PW);
    // Variants that differ only where %E escaping happens are other passwords.
    login_refused(
        &dovecot,
        "alice@example.org",
        r#"back\\slash "quoted" it's a/b c"#,
    );
    login_refused(
        &dovecot,
        "alice@example.org",
        r#"backslash "quoted" it's a/b c"#,
    );
    login_refused(
        &dovecot,
        "alice@example.org",
        r#"back\slash \"quoted\" it\'s a/b c"#,
    );
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
}

// Regression guard: a daemon that hashes the %E-escaped key text instead of the password
// lets JIT accounts log in again but locks out every account made with the CLI.
#[test]
fn cli_account_with_awkward_password_logs_in_through_dovecot() {
    let (d, dovecot) = start("closed");
    add_with_password(&d, "bob@example.org", AWKWARD_PW);
    assert_eq!(show(&d, "bob@example.org")["created_via"], "cli");
    login_ok(&dovecot, "bob@example.org", AWKWARD_PW);
    login_refused(
        &dovecot,
        "bob@example.org",
        r#"back\\slash \"quoted\" it\'s a/b c"#,
    );
}

#[test]
fn blocked_account_cannot_log_in() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    d.cli_ok(&["user", "block", "alice@example.org"]);
    assert_eq!(show(&d, "alice@example.org")["blocked"], true);

    let e = login_refused(&dovecot, "alice@example.org", PW);
    assert!(e.contains(" NO "), "{e}");
    // Blocking keeps the account (and its address) rather than freeing it for a new JIT.
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
    assert_eq!(show(&d, "alice@example.org")["blocked"], true);
}

#[test]
fn invite_only_refuses_imap_login_of_a_new_address() {
    let (d, dovecot) = start("invite_only");
    let e = login_refused(&dovecot, "newbie@example.org", PW);
    assert!(e.contains("NO [AUTHENTICATIONFAILED]"), "{e}");
    assert!(accounts(&d).is_empty());
    assert!(dovecot.doveadm_user_list().is_empty());
    assert!(!home(&d, "newbie@example.org").exists());
}

#[test]
fn closed_registration_refuses_imap_login_of_a_new_address() {
    let (d, dovecot) = start("closed");
    let e = login_refused(&dovecot, "newbie@example.org", PW);
    assert!(e.contains("NO [AUTHENTICATIONFAILED]"), "{e}");
    assert!(accounts(&d).is_empty());
}

#[test]
fn lmtp_delivery_lands_in_the_maildir_and_shows_in_imap() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    let home = home(&d, "alice@example.org");
    assert_eq!(dovecot.maildir_new_count(&home), 0);

    dovecot
        .lmtp_deliver("alice@example.org", MESSAGE)
        .expect("delivery accepted");
    assert_eq!(dovecot.maildir_new_count(&home), 1);
    let stored = std::fs::read_to_string(&maildir_new_files(&home)[0]).expect("read message");
    assert!(stored.contains("Subject: hello"), "{stored}");
    // Dot-stuffing was undone by the server: the line has its single dot back.
    assert!(
        stored.contains("\n.a line starting with a dot\n"),
        "{stored}"
    );

    let mut s = dovecot.imap_login("alice@example.org", PW).expect("login");
    assert_eq!(s.select_inbox(), 1);
    s.logout();
}

#[test]
fn lmtp_delivery_to_an_account_made_with_the_cli_before_any_login() {
    let (d, dovecot) = start("closed");
    add_with_password(&d, "bob@example.org", PW);
    let home = home(&d, "bob@example.org");
    assert!(!home.exists());
    dovecot
        .lmtp_deliver("bob@example.org", MESSAGE)
        .expect("delivery accepted");
    assert_eq!(dovecot.maildir_new_count(&home), 1);
}

#[test]
fn lmtp_refuses_a_blocked_account_and_writes_nothing() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    d.cli_ok(&["user", "block", "alice@example.org"]);

    let e = dovecot
        .lmtp_deliver("alice@example.org", MESSAGE)
        .expect_err("delivery to a blocked account refused");
    // Permanent: a blocked mailbox must not make sending servers queue and retry for days.
    assert!(e.contains(": 5"), "{e}");
    assert_eq!(dovecot.maildir_new_count(&home(&d, "alice@example.org")), 0);
}

#[test]
fn lmtp_to_an_unknown_address_is_refused_and_creates_nothing() {
    let (d, dovecot) = start("open");
    let e = dovecot
        .lmtp_deliver("stranger@example.org", MESSAGE)
        .expect_err("delivery to an unknown address refused");
    assert!(e.starts_with("RCPT: 550"), "{e}");
    // A userdb lookup is not a login: delivery never creates accounts.
    assert!(accounts(&d).is_empty());
    assert!(!home(&d, "stranger@example.org").exists());
}

#[test]
fn doveadm_user_iteration_lists_exactly_the_accounts() {
    let (d, dovecot) = start("open");
    assert!(dovecot.doveadm_user_list().is_empty());
    login_ok(&dovecot, "alice@example.org", PW);
    login_ok(&dovecot, "carol@example.org", PW);
    add_with_password(&d, "bob@example.org", PW);

    let mut listed = dovecot.doveadm_user_list();
    listed.sort();
    assert_eq!(listed, accounts(&d));
    assert_eq!(
        listed,
        vec!["alice@example.org", "bob@example.org", "carol@example.org"]
    );
}

#[test]
fn userdb_gives_dovecot_the_home_and_mail_uid() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    let want_home = home(&d, "alice@example.org");
    assert_eq!(
        dovecot
            .doveadm_user_field("alice@example.org", "home")
            .as_deref(),
        Some(want_home.to_str().expect("utf-8 path"))
    );
    assert_eq!(
        dovecot
            .doveadm_user_field("alice@example.org", "uid")
            .as_deref(),
        Some("65534")
    );
    assert_eq!(
        dovecot
            .doveadm_user_field("alice@example.org", "gid")
            .as_deref(),
        Some("65534")
    );
    assert_eq!(
        dovecot.doveadm_user_field("nobody@example.org", "home"),
        None
    );
}

#[test]
fn imap_login_records_last_login() {
    let (d, dovecot) = start("closed");
    scenarios::imap_login_records_last_login(&d, &dovecot, PW);
}

#[test]
fn lmtp_delivery_updates_used_bytes_and_messages() {
    let (d, dovecot) = start("open");
    scenarios::lmtp_delivery_updates_used_bytes_and_messages(&d, &dovecot, PW, MESSAGE);
}

// Regression: a stored quota of 0 reached Dovecot as `*:storage=0B`.
#[test]
fn lmtp_delivers_to_an_account_whose_stored_quota_is_0_as_to_an_unlimited_one() {
    let (d, dovecot) = start("closed");
    add_with_password(&d, "bob@example.org", PW);
    add_with_password(&d, "carol@example.org", PW);
    store_a_zero_quota(&d, "bob@example.org");
    d.cli_ok(&["user", "quota", "carol@example.org", "unlimited"]);

    dovecot
        .lmtp_deliver("bob@example.org", MESSAGE)
        .expect("delivery accepted");
    assert_eq!(dovecot.maildir_new_count(&home(&d, "bob@example.org")), 1);
    let zero = dovecot.doveadm_user_field("bob@example.org", "quota_rule");
    let unlimited = dovecot.doveadm_user_field("carol@example.org", "quota_rule");
    assert!(zero.is_some(), "the userdb knows bob");
    assert_eq!(zero, unlimited);
    assert!(!zero.unwrap_or_default().contains("storage=0"));
    assert_eq!(
        show(&d, "bob@example.org")["quota_bytes"],
        serde_json::Value::Null
    );
}
