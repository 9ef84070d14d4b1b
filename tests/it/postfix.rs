//! postern behind a real Postfix 3.7 and a real Dovecot 2.3, wired as an operator wires
//! them: SMTP AUTH through postern's Dovecot-auth socket, `check_policy_service` on its
//! policy socket, `example.org` delivered by LMTP into Dovecot, and Dovecot's quota_clone
//! reporting usage back. Each test starts its own daemon, Dovecot and Postfix (root and
//! the Debian packages postfix, dovecot-core, dovecot-imapd, dovecot-lmtpd are needed).

use std::time::Duration;

use crate::support::dovecot::{
    add_with_password, eventually_within, home, maildir_new_files, show, Dovecot,
};
use crate::support::postfix::{Postfix, SmtpSession};
use crate::support::{store_a_zero_quota, TestDaemon};

const PW: &str = "correct horse battery";

/// A daemon, the Dovecot it feeds, and the Postfix in front of both. Dropped in reverse
/// order: Postfix first, the daemon (and its temp dir) last.
struct Stack {
    postfix: Postfix,
    _dovecot: Dovecot,
    daemon: TestDaemon,
}

fn start(mode: &str) -> Stack {
    start_with(mode, &[])
}

fn start_with(mode: &str, env: &[(&str, &str)]) -> Stack {
    let daemon = TestDaemon::start_with(mode, env);
    let dovecot = Dovecot::start(&daemon);
    let postfix = Postfix::start(&daemon, &dovecot);
    Stack {
        postfix,
        _dovecot: dovecot,
        daemon,
    }
}

fn exists(d: &TestDaemon, addr: &str) -> bool {
    d.cli(&["user", "show", addr, "--json"]).status.success()
}

fn add(d: &TestDaemon, addr: &str) {
    add_with_password(d, addr, PW);
}

/// Polls `f` until it returns `Some`, for at most 20 s (delivery goes through Postfix's
/// queue manager, then LMTP, then quota_clone's dict write).
fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    eventually_within(Duration::from_secs(20), what, f)
}

/// An SMTP session authenticated as `user` with AUTH PLAIN.
fn logged_in(p: &Postfix, user: &str) -> SmtpSession {
    let mut s = p.smtp();
    let code = s.auth_plain(user, PW);
    assert_eq!(code, 235, "AUTH PLAIN as {user}:\n{}", s.transcript());
    s
}

fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!("From: <{from}>\nTo: <{to}>\nSubject: {subject}\n\n{body}")
}

/// One whole message in session `s`; asserts every step is accepted.
fn send_ok(s: &mut SmtpSession, from: &str, to: &str, msg: &str) {
    let (code, text) = s.mail_from(from);
    assert_eq!(code, 250, "MAIL FROM: {text}");
    let (code, text) = s.rcpt_to(to);
    assert_eq!(code, 250, "RCPT TO:<{to}>: {text}\n{}", s.transcript());
    let (code, text) = s.data(msg);
    assert_eq!(code, 250, "end of DATA: {text}");
}

#[test]
fn smtp_auth_plain_and_login_accept_the_right_password_only() {
    let st = start("open");
    add(&st.daemon, "alice@example.org");

    let mut s = st.postfix.smtp();
    assert_eq!(s.auth_plain("alice@example.org", "wrong password!"), 535);
    // A failed AUTH leaves the session unauthenticated: the right password still works.
    assert_eq!(
        s.auth_plain("alice@example.org", PW),
        235,
        "{}",
        s.transcript()
    );
    s.quit();

    let mut s = st.postfix.smtp();
    assert_eq!(s.auth_login("alice@example.org", "wrong password!"), 535);
    assert_eq!(
        s.auth_login("alice@example.org", PW),
        235,
        "{}",
        s.transcript()
    );
    s.quit();

    // A wrong password in open mode creates nothing and changes nothing.
    assert_eq!(show(&st.daemon, "alice@example.org")["created_via"], "cli");
}

#[test]
fn smtp_auth_refuses_a_blocked_account() {
    let st = start("open");
    add(&st.daemon, "alice@example.org");
    st.daemon.cli_ok(&["user", "block", "alice@example.org"]);

    let mut s = st.postfix.smtp();
    assert_eq!(
        s.auth_plain("alice@example.org", PW),
        535,
        "{}",
        s.transcript()
    );
    assert_eq!(
        s.auth_login("alice@example.org", PW),
        535,
        "{}",
        s.transcript()
    );
    s.quit();
    assert_eq!(show(&st.daemon, "alice@example.org")["blocked"], true);
}

#[test]
fn smtp_auth_with_a_new_address_creates_the_account_in_open_mode() {
    let st = start("open");
    let mut s = st.postfix.smtp();
    assert_eq!(
        s.auth_plain("newbie@example.org", PW),
        235,
        "{}",
        s.transcript()
    );
    s.quit();
    let a = show(&st.daemon, "newbie@example.org");
    assert_eq!(a["created_via"], "jit", "{a}");
    assert_eq!(a["blocked"], false, "{a}");

    // The password chosen at the first login is now the account's password.
    let mut s = st.postfix.smtp();
    assert_eq!(s.auth_login("newbie@example.org", "another password"), 535);
    assert_eq!(
        s.auth_login("newbie@example.org", PW),
        235,
        "{}",
        s.transcript()
    );
    s.quit();
}

#[test]
fn smtp_auth_with_a_new_address_creates_nothing_when_registration_is_closed() {
    let st = start("closed");
    let mut s = st.postfix.smtp();
    assert_eq!(
        s.auth_plain("newbie@example.org", PW),
        535,
        "{}",
        s.transcript()
    );
    s.quit();
    assert!(!exists(&st.daemon, "newbie@example.org"));
}

#[test]
fn rcpt_to_a_blocked_or_unknown_account_is_refused() {
    let st = start("open");
    add(&st.daemon, "alice@example.org");
    add(&st.daemon, "bob@example.org");
    add(&st.daemon, "gone@example.org");
    st.daemon.cli_ok(&["user", "block", "gone@example.org"]);

    let mut s = logged_in(&st.postfix, "alice@example.org");
    let (code, _) = s.mail_from("alice@example.org");
    assert_eq!(code, 250);

    let (code, text) = s.rcpt_to("gone@example.org");
    assert_eq!(code, 554, "{text}");
    assert!(text.starts_with("554 5.7.1 <gone@example.org>"), "{text}");
    assert!(text.contains("Recipient address is blocked"), "{text}");

    let (code, text) = s.rcpt_to("ghost@example.org");
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("550 5.1.1 <ghost@example.org>"), "{text}");
    assert!(text.contains("User unknown"), "{text}");

    // The same transaction still takes a recipient that exists.
    let (code, text) = s.rcpt_to("bob@example.org");
    assert_eq!(code, 250, "{text}");
    s.quit();
}

#[test]
fn message_is_delivered_into_the_maildir_and_counted_in_used_bytes() {
    let st = start("open");
    add(&st.daemon, "alice@example.org");
    add(&st.daemon, "bob@example.org");
    let before = show(&st.daemon, "bob@example.org");
    assert_eq!(before["used_bytes"], 0, "{before}");

    let mut s = logged_in(&st.postfix, "alice@example.org");
    let msg = message(
        "alice@example.org",
        "bob@example.org",
        "over Postfix",
        "Hello Bob.\n.a line starting with a dot\n",
    );
    send_ok(&mut s, "alice@example.org", "bob@example.org", &msg);
    s.quit();

    let home = home(&st.daemon, "bob@example.org");
    let files = eventually("a file in bob's Maildir/new", || {
        Some(maildir_new_files(&home)).filter(|f| !f.is_empty())
    });
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).expect("read delivered message");
    assert!(text.contains("Subject: over Postfix"), "{text}");
    assert!(
        text.contains("with ESMTPA"),
        "authenticated submission: {text}"
    );
    // Dot-stuffing undone on the way.
    assert!(text.contains("\n.a line starting with a dot\n"), "{text}");

    let a = eventually("used_bytes > 0 from quota_clone", || {
        Some(show(&st.daemon, "bob@example.org")).filter(|a| a["used_bytes"].as_u64() > Some(0))
    });
    assert_eq!(a["used_messages"], 1, "{a}");
    assert!(
        a["used_bytes"].as_u64() >= Some(msg.len() as u64),
        "used_bytes below the message's size {}: {a}",
        msg.len()
    );
}

#[test]
fn rcpt_to_a_full_mailbox_is_deferred_with_452() {
    let st = start("open");
    add(&st.daemon, "alice@example.org");
    add(&st.daemon, "bob@example.org");
    add(&st.daemon, "carol@example.org");

    // Bob receives 3 KB while his quota is the default, then gets a 1K quota.
    let mut s = logged_in(&st.postfix, "alice@example.org");
    let big = message(
        "alice@example.org",
        "bob@example.org",
        "bulky",
        &"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n".repeat(48),
    );
    send_ok(&mut s, "alice@example.org", "bob@example.org", &big);
    eventually("bob's used_bytes to reach 3 KB", || {
        Some(())
            .filter(|_| show(&st.daemon, "bob@example.org")["used_bytes"].as_u64() >= Some(3072))
    });
    st.daemon
        .cli_ok(&["user", "quota", "bob@example.org", "1K"]);

    let (code, text) = s.mail_from("alice@example.org");
    assert_eq!(code, 250, "{text}");
    let (code, text) = s.rcpt_to("bob@example.org");
    assert_eq!(code, 452, "{text}");
    assert!(text.starts_with("452 4.2.2 <bob@example.org>"), "{text}");
    assert!(text.contains("Mailbox full"), "{text}");
    s.rset();

    // Carol has room, but not for a message announced as 5000 bytes.
    st.daemon
        .cli_ok(&["user", "quota", "carol@example.org", "1K"]);
    let (code, text) = s.mail_from_sized("alice@example.org", 5000);
    assert_eq!(code, 250, "{text}");
    let (code, text) = s.rcpt_to("carol@example.org");
    assert_eq!(code, 452, "{text}");
    assert!(text.starts_with("452 4.2.2 "), "{text}");
    s.rset();
    let (code, _) = s.mail_from_sized("alice@example.org", 500);
    assert_eq!(code, 250);
    let (code, text) = s.rcpt_to("carol@example.org");
    assert_eq!(code, 250, "{text}");
    s.quit();
}

// Regression: a stored quota of 0 made the policy service answer "452 Mailbox full".
#[test]
fn rcpt_to_an_account_whose_stored_quota_is_0_is_accepted_and_delivered() {
    let st = start("open");
    add(&st.daemon, "alice@example.org");
    add(&st.daemon, "bob@example.org");
    store_a_zero_quota(&st.daemon, "bob@example.org");

    let mut s = logged_in(&st.postfix, "alice@example.org");
    let msg = message(
        "alice@example.org",
        "bob@example.org",
        "zero",
        "Hello Bob.\n",
    );
    send_ok(&mut s, "alice@example.org", "bob@example.org", &msg);
    s.quit();
    let home = home(&st.daemon, "bob@example.org");
    eventually("the message in bob's Maildir", || {
        Some(()).filter(|_| !maildir_new_files(&home).is_empty())
    });
}

#[test]
fn sender_past_its_burst_gets_450_at_rcpt() {
    // A burst of 3 and (so the test does not race the refill) one more per minute.
    let st = start_with(
        "open",
        &[
            ("POSTERN_POLICY__SEND_BURST", "3"),
            ("POSTERN_POLICY__SEND_PER_MINUTE", "1"),
        ],
    );
    for a in ["alice", "bob", "carol"] {
        add(&st.daemon, &format!("{a}@example.org"));
    }
    let mut s = logged_in(&st.postfix, "alice@example.org");

    // Message 1 has two recipients and counts once.
    let (code, _) = s.mail_from("alice@example.org");
    assert_eq!(code, 250);
    for rcpt in ["bob@example.org", "carol@example.org"] {
        let (code, text) = s.rcpt_to(rcpt);
        assert_eq!(code, 250, "message 1, RCPT {rcpt}: {text}");
    }
    let msg = message("alice@example.org", "bob@example.org", "hi", "1\n");
    let (code, text) = s.data(&msg);
    assert_eq!(code, 250, "{text}");
    for n in 2..=3 {
        let msg = message(
            "alice@example.org",
            "bob@example.org",
            "hi",
            &format!("{n}\n"),
        );
        send_ok(&mut s, "alice@example.org", "bob@example.org", &msg);
    }

    let (code, _) = s.mail_from("alice@example.org");
    assert_eq!(code, 250);
    let (code, text) = s.rcpt_to("bob@example.org");
    assert_eq!(code, 450, "message 4: {text}");
    assert!(text.starts_with("450 4.7.1 <bob@example.org>"), "{text}");
    assert!(text.contains("Sending too fast"), "{text}");
    s.quit();

    // The limit is Alice's: Bob still sends, and mail from outside still comes in.
    let mut s = logged_in(&st.postfix, "bob@example.org");
    let msg = message("bob@example.org", "alice@example.org", "re: hi", "ok\n");
    send_ok(&mut s, "bob@example.org", "alice@example.org", &msg);
    s.quit();
    let mut s = st.postfix.smtp();
    let msg = message(
        "friend@example.net",
        "alice@example.org",
        "hello",
        "from outside\n",
    );
    send_ok(&mut s, "friend@example.net", "alice@example.org", &msg);
    s.quit();
}

#[test]
fn sender_blocked_during_its_session_is_refused_at_rcpt() {
    let st = start("open");
    add(&st.daemon, "alice@example.org");
    add(&st.daemon, "bob@example.org");
    let mut s = logged_in(&st.postfix, "alice@example.org");
    st.daemon.cli_ok(&["user", "block", "alice@example.org"]);

    let (code, _) = s.mail_from("alice@example.org");
    assert_eq!(code, 250);
    let (code, text) = s.rcpt_to("bob@example.org");
    assert_eq!(code, 554, "{text}");
    assert!(text.starts_with("554 5.7.1 <bob@example.org>"), "{text}");
    assert!(text.contains("Sender account is blocked"), "{text}");
    s.quit();
}
