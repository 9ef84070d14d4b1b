//! postern behind a real Dovecot 2.4 (Debian trixie's 2.4.1 in a chroot), wired as
//! docs/dovecot.md says: `passdb lua` / `userdb lua` running the shipped
//! `dovecot/postern.lua` against the loopback auth API, `last_login` and `quota_clone`
//! through the dict socket. Plus the auth API itself over plain HTTP.
//!
//! Needs root and the chroot that `.ci/trixie.sh` builds (CI runs it); without the chroot
//! the Dovecot tests fail and say so.
//!
//! Measured on the 2-core test VM: `.ci/trixie.sh` from nothing 97 s, once per machine
//! (17 s installing debootstrap, 80 s debootstrap; 294 MB), a reuse under 1 s; then
//! `cargo test --test it dovecot24` (already compiled, 16 tests) 3 to 6 s. Total for a
//! fresh machine: about 100 s plus compiling.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::dovecot::{
    accounts, add_with_password, eventually, home, login_ok, login_refused, maildir_new_files, show,
};
use crate::support::dovecot24::{Dovecot24, Options};
use crate::support::scenarios;
use crate::support::TestDaemon;

const PW: &str = "correct horse battery";
/// JSON's and %E's special characters and non-ASCII text. (Dovecot itself refuses
/// passwords with control characters: "Attempted login with password having illegal chars".)
const AWKWARD_PW: &str = "back\\slash \"quoted\" it's a/b c pässwörd ✓";

const MESSAGE: &str = "From: sender@example.net\n\
To: alice@example.org\n\
Subject: hello\n\
\n\
Hello Alice.\n\
.a line starting with a dot\n";

fn start(mode: &str) -> (TestDaemon, Dovecot24) {
    let daemon = TestDaemon::start(mode);
    let dovecot = Dovecot24::start(&daemon);
    (daemon, dovecot)
}

// ----- the auth API over plain HTTP (no Dovecot) ------------------------------------------

/// One answer of the auth API: status, content type, body.
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "content type {}",
            self.content_type
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Calls the daemon's auth API; `secret` goes in `Authorization: Bearer`.
fn api(
    d: &TestDaemon,
    method: &str,
    path: &str,
    secret: Option<&str>,
    accept: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut req = ureq::request(method, &format!("http://{}{path}", d.auth_http))
        .timeout(Duration::from_secs(30));
    if let Some(s) = secret {
        req = req.set("Authorization", &format!("Bearer {s}"));
    }
    if let Some(a) = accept {
        req = req.set("Accept", a);
    }
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    Reply {
        status: response.status(),
        content_type: response.content_type().to_owned(),
        body: response.into_string().expect("body"),
    }
}

fn passdb_body(user: &str, password: &str) -> String {
    json!({"user": user, "password": password, "service": "imap", "remote_ip": "192.0.2.7"})
        .to_string()
}

#[test]
fn auth_api_refuses_requests_without_or_with_a_wrong_secret() {
    let d = TestDaemon::start("open");
    let body = passdb_body("alice@example.org", PW);

    let r = api(&d, "POST", "/v1/passdb", None, None, Some(&body));
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["result"], "error");
    assert!(
        r.json()["reason"].as_str().unwrap_or("").contains("secret"),
        "{}",
        r.body
    );

    let r = api(
        &d,
        "POST",
        "/v1/passdb",
        Some("not-the-secret-at-all"),
        None,
        Some(&body),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["reason"], "wrong secret");
    // A prefix of the right secret is a wrong secret too.
    let prefix = &d.auth_http_secret[..d.auth_http_secret.len() - 1];
    let r = api(&d, "POST", "/v1/passdb", Some(prefix), None, Some(&body));
    assert_eq!(r.status, 403, "{}", r.body);
    // Every endpoint is behind the secret, unknown ones too.
    assert_eq!(api(&d, "GET", "/v1/users", None, None, None).status, 401);
    assert_eq!(api(&d, "GET", "/nope", None, None, None).status, 401);
    let r = api(
        &d,
        "POST",
        "/v1/userdb",
        None,
        Some("text/plain"),
        Some("{}"),
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("result=error\n"), "{}", r.body);

    // No core call happened: registration is open, yet nothing was created.
    assert!(accounts(&d).is_empty());
    assert!(d.log().contains("reason=wrong_secret"), "{}", d.log());

    // With the secret the same request creates the account.
    let r = api(
        &d,
        "POST",
        "/v1/passdb",
        Some(&d.auth_http_secret),
        None,
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"result": "ok", "user": "alice@example.org"})
    );
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
}

#[test]
fn auth_api_answers_logins_userdb_and_the_user_list() {
    let d = TestDaemon::start("open");
    let secret = Some(d.auth_http_secret.as_str());
    let passdb = |user: &str, pw: &str| {
        api(
            &d,
            "POST",
            "/v1/passdb",
            secret,
            None,
            Some(&passdb_body(user, pw)),
        )
    };

    // Just-in-time creation, then the canonical name for any spelling.
    let r = passdb("Alice@Example.ORG", PW);
    assert_eq!(
        r.json(),
        json!({"result": "ok", "user": "alice@example.org"})
    );
    assert_eq!(show(&d, "alice@example.org")["created_via"], "jit");
    assert_eq!(passdb("alice@example.org", PW).json()["result"], "ok");
    let r = passdb("alice@example.org", "wrong password!");
    assert_eq!((r.status, r.json()), (200, json!({"result": "fail"})));
    // Invalid for creation: refused the same way, nothing made.
    assert_eq!(passdb("x@example.org", PW).json()["result"], "fail");
    assert_eq!(passdb("bob@elsewhere.net", PW).json()["result"], "fail");

    let r = api(
        &d,
        "POST",
        "/v1/userdb",
        secret,
        None,
        Some(r#"{"user":"alice@example.org"}"#),
    );
    let v = r.json();
    assert_eq!(v["result"], "ok");
    assert_eq!(v["user"], "alice@example.org");
    assert_eq!(
        v["home"],
        home(&d, "alice@example.org").to_str().expect("utf-8")
    );
    assert_eq!(
        (v["uid"].clone(), v["gid"].clone()),
        (json!("65534"), json!("65534"))
    );
    // Dovecot 2.4's per-user quota setting, from postern's quota (500M by default).
    assert_eq!(v["quota_storage_size"], "524288000B");
    d.cli_ok(&["user", "quota", "alice@example.org", "unlimited"]);
    let r = api(
        &d,
        "POST",
        "/v1/userdb",
        secret,
        None,
        Some(r#"{"user":"alice@example.org"}"#),
    );
    assert_eq!(r.json()["quota_storage_size"], "unlimited");
    let r = api(
        &d,
        "POST",
        "/v1/userdb",
        secret,
        None,
        Some(r#"{"user":"nobody@example.org"}"#),
    );
    assert_eq!((r.status, r.json()), (200, json!({"result": "unknown"})));

    add_with_password(&d, "bob@example.org", PW);
    let r = api(&d, "GET", "/v1/users", secret, None, None);
    assert_eq!(
        r.json(),
        json!({"result": "ok", "users": ["alice@example.org", "bob@example.org"]})
    );

    // The form the Lua script asks for.
    let r = api(&d, "GET", "/v1/users", secret, Some("text/plain"), None);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    assert_eq!(
        r.body,
        "result=ok\nusers=alice@example.org\nusers=bob@example.org\n"
    );
    let body = passdb_body("ALICE@example.org", PW);
    let r = api(
        &d,
        "POST",
        "/v1/passdb",
        secret,
        Some("text/plain"),
        Some(&body),
    );
    assert_eq!(r.body, "result=ok\nuser=alice@example.org\n");

    // Malformed requests: 400 with a reason that does not echo the password.
    for bad in [
        "not json",
        r#"{"user":"alice@example.org"}"#,
        r#"{"user":"alice@example.org","password":["correct horse battery"]}"#,
    ] {
        let r = api(&d, "POST", "/v1/passdb", secret, None, Some(bad));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.json()["result"], "error");
        assert!(!r.body.contains("horse"), "{}", r.body);
    }
    let body = json!({"user": "alice@example.org", "password": PW, "remote_ip": "1.2.3"});
    let r = api(
        &d,
        "POST",
        "/v1/passdb",
        secret,
        None,
        Some(&body.to_string()),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(api(&d, "GET", "/v1/nope", secret, None, None).status, 404);
}

// Regression guard: the per-IP brute-force limit must see Dovecot's client address.
#[test]
fn auth_api_throttles_guessing_from_one_client_ip() {
    let d = TestDaemon::start_with("closed", &[("POSTERN_LOGIN__MAX_FAILURES_PER_IP", "3")]);
    add_with_password(&d, "alice@example.org", PW);
    add_with_password(&d, "bob@example.org", PW);
    let secret = Some(d.auth_http_secret.as_str());
    for i in 0..3 {
        let body = passdb_body("alice@example.org", &format!("guess number {i}"));
        let r = api(&d, "POST", "/v1/passdb", secret, None, Some(&body));
        assert_eq!(r.json()["result"], "fail");
    }
    // Right password, but from the guessing IP: refused; from another IP: fine.
    let r = api(
        &d,
        "POST",
        "/v1/passdb",
        secret,
        None,
        Some(&passdb_body("bob@example.org", PW)),
    );
    assert_eq!(r.json()["result"], "fail", "{}", r.body);
    let body = json!({"user": "bob@example.org", "password": PW, "service": "imap", "remote_ip": "198.51.100.1"});
    let r = api(
        &d,
        "POST",
        "/v1/passdb",
        secret,
        None,
        Some(&body.to_string()),
    );
    assert_eq!(r.json()["result"], "ok", "{}", r.body);
}

// `systemctl reload postern` after rotating the secret must put the new one in force; a
// botched file must not take the API (and so every Dovecot 2.4 login) down.
#[test]
fn sighup_rereads_the_auth_api_secret_and_keeps_it_when_the_file_is_empty_or_gone() {
    let d = TestDaemon::start("open");
    let file = d.dir.join("auth-http.secret");
    let users = |secret: &str| api(&d, "GET", "/v1/users", Some(secret), None, None).status;
    let reloads = || d.log().matches("event=reload result=ok").count();
    let reload = |n: usize| {
        d.signal(Signal::SIGHUP);
        eventually(&format!("reload {n}"), || (reloads() == n).then_some(()));
    };
    let old = d.auth_http_secret.clone();
    assert_eq!(users(&old), 200);

    let new = "rotated-secret-0123456789";
    std::fs::write(&file, format!("{new}\n")).expect("write the new secret");
    reload(1);
    assert_eq!(users(new), 200, "the new secret after the reload");
    assert_eq!(users(&old), 403, "the old secret is refused");

    std::fs::write(&file, "").expect("empty the secret file");
    reload(2);
    assert_eq!(users(new), 200, "an empty file keeps the secret in force");
    let kept = format!("auth_http_secret=kept_old file={}", file.display());
    assert_eq!(d.log().matches(&kept).count(), 1, "{}", d.log());

    std::fs::remove_file(&file).expect("remove the secret file");
    reload(3);
    assert_eq!(users(new), 200, "a missing file keeps the secret in force");
    assert_eq!(d.log().matches(&kept).count(), 2, "{}", d.log());
}

// ----- through a real Dovecot 2.4 ----------------------------------------------------------

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
    // Dovecot made the mailbox where the userdb said, as the mail user.
    assert!(home(&d, "alice@example.org").join("Maildir").is_dir());

    login_ok(&dovecot, "alice@example.org", PW);
    // Another spelling is the same account.
    login_ok(&dovecot, "Alice@EXAMPLE.org", PW);
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
}

#[test]
fn imap_wrong_password_is_refused_and_changes_nothing() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    eventually("last_login after the first login", || {
        Some(()).filter(|_| !show(&d, "alice@example.org")["last_login"].is_null())
    });
    let before = show(&d, "alice@example.org");

    let e = login_refused(&dovecot, "alice@example.org", "wrong password!");
    assert!(e.contains("NO [AUTHENTICATIONFAILED]"), "{e}");
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
    assert_eq!(show(&d, "alice@example.org"), before);
    login_ok(&dovecot, "alice@example.org", PW);
}

// Regression guard for the Lua side's JSON encoding: quotes, backslashes and non-ASCII
// must reach postern unchanged, or a JIT account could not log in again.
#[test]
fn imap_awkward_password_works_for_first_and_second_login() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", AWKWARD_PW);
    assert_eq!(show(&d, "alice@example.org")["created_via"], "jit");
    login_ok(&dovecot, "alice@example.org", AWKWARD_PW);
    login_refused(
        &dovecot,
        "alice@example.org",
        &AWKWARD_PW.replace('\\', "\\\\"),
    );
    login_refused(&dovecot, "alice@example.org", &AWKWARD_PW.replace('ä', "a"));
    // An account made with the CLI (not through the Lua encoding) logs in too.
    add_with_password(&d, "bob@example.org", AWKWARD_PW);
    login_ok(&dovecot, "bob@example.org", AWKWARD_PW);
}

#[test]
fn blocked_account_cannot_log_in() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    d.cli_ok(&["user", "block", "alice@example.org"]);

    let e = login_refused(&dovecot, "alice@example.org", PW);
    assert!(e.contains("NO [AUTHENTICATIONFAILED]"), "{e}");
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
    assert_eq!(show(&d, "alice@example.org")["blocked"], true);
    d.cli_ok(&["user", "unblock", "alice@example.org"]);
    login_ok(&dovecot, "alice@example.org", PW);
}

#[test]
fn invite_only_refuses_imap_login_of_a_new_address() {
    let (d, dovecot) = start("invite_only");
    let e = login_refused(&dovecot, "newbie@example.org", PW);
    assert!(e.contains("NO [AUTHENTICATIONFAILED]"), "{e}");
    assert!(accounts(&d).is_empty());
    assert!(dovecot.doveadm_user_list().is_empty());
}

#[test]
fn postern_unreachable_is_a_temporary_failure_not_a_refusal() {
    let (mut d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    d.stop();
    let e = login_refused(&dovecot, "alice@example.org", PW);
    // [UNAVAILABLE] tells the client to retry, rather than to ask for a new password.
    assert!(e.contains("NO [UNAVAILABLE]"), "{e}");
    assert!(
        dovecot.log_contents().contains("postern auth API http://"),
        "{}",
        dovecot.log_contents()
    );
    // Delivery is deferred, never bounced, while postern is away.
    let e = dovecot
        .lmtp_deliver("alice@example.org", MESSAGE)
        .expect_err("delivery deferred");
    assert!(e.starts_with("RCPT: 4"), "{e}");
}

#[test]
fn a_wrong_secret_in_dovecot_is_a_temporary_failure_and_creates_nothing() {
    let d = TestDaemon::start("open");
    let wrong = d.dir.join("wrong.secret");
    std::fs::write(&wrong, "this-is-not-the-secret\n").expect("write");
    let mut options = Options::for_daemon(&d);
    options.secret_file = wrong;
    let dovecot = Dovecot24::start_with(&d, options);

    let e = login_refused(&dovecot, "alice@example.org", PW);
    assert!(e.contains("NO [UNAVAILABLE]"), "{e}");
    assert!(accounts(&d).is_empty());
    assert!(d.log().contains("reason=wrong_secret"), "{}", d.log());
}

#[test]
fn lmtp_delivery_lands_in_the_maildir_and_shows_in_imap() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    let home = home(&d, "alice@example.org");

    dovecot
        .lmtp_deliver("alice@example.org", MESSAGE)
        .expect("delivery accepted");
    let files = maildir_new_files(&home);
    assert_eq!(files.len(), 1);
    let stored = std::fs::read_to_string(&files[0]).expect("read message");
    assert!(stored.contains("Subject: hello"), "{stored}");
    assert!(
        stored.contains("\n.a line starting with a dot\n"),
        "{stored}"
    );

    let mut s = dovecot.imap_login("alice@example.org", PW).expect("login");
    assert_eq!(s.select_inbox(), 1);
    s.logout();
}

#[test]
fn lmtp_refuses_blocked_and_unknown_addresses_and_creates_nothing() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    d.cli_ok(&["user", "block", "alice@example.org"]);

    let e = dovecot
        .lmtp_deliver("alice@example.org", MESSAGE)
        .expect_err("delivery to a blocked account refused");
    assert!(e.starts_with("RCPT: 550"), "{e}");
    let e = dovecot
        .lmtp_deliver("stranger@example.org", MESSAGE)
        .expect_err("delivery to an unknown address refused");
    assert!(e.starts_with("RCPT: 550"), "{e}");
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
    assert!(!home(&d, "stranger@example.org").exists());
    assert!(maildir_new_files(&home(&d, "alice@example.org")).is_empty());
}

#[test]
fn userdb_gives_dovecot_home_uid_gid_quota_and_the_user_list() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    add_with_password(&d, "bob@example.org", PW);
    d.cli_ok(&["user", "quota", "bob@example.org", "1G"]);

    let field = |user: &str, f: &str| dovecot.doveadm_user_field(user, f);
    let want_home = home(&d, "alice@example.org");
    assert_eq!(
        field("alice@example.org", "home").as_deref(),
        want_home.to_str()
    );
    assert_eq!(field("alice@example.org", "uid").as_deref(), Some("65534"));
    assert_eq!(field("alice@example.org", "gid").as_deref(), Some("65534"));
    assert_eq!(
        field("alice@example.org", "quota_storage_size").as_deref(),
        Some("524288000B")
    );
    assert_eq!(
        field("bob@example.org", "quota_storage_size").as_deref(),
        Some("1073741824B")
    );
    assert_eq!(field("nobody@example.org", "home"), None);

    let mut listed = dovecot.doveadm_user_list();
    listed.sort();
    assert_eq!(listed, vec!["alice@example.org", "bob@example.org"]);
}

#[test]
fn quota_from_postern_is_enforced_on_delivery() {
    let (d, dovecot) = start("open");
    login_ok(&dovecot, "alice@example.org", PW);
    d.cli_ok(&["user", "quota", "alice@example.org", "2000"]);
    let big = format!("Subject: big\n\n{}\n", "x".repeat(5000));

    // Dovecot lets the mail that crosses the limit in (quota_storage_grace); the next
    // one is refused for good.
    let _ = dovecot.lmtp_deliver("alice@example.org", &big);
    let e = dovecot
        .lmtp_deliver("alice@example.org", MESSAGE)
        .expect_err("delivery over quota refused");
    assert!(e.contains("552 5.2.2"), "{e}");
    assert!(maildir_new_files(&home(&d, "alice@example.org")).len() <= 1);
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

// The shipped lines load quota globally, so doveadm has it: with the plugin only in
// `protocol` blocks, `doveadm quota get` answered "Unknown command 'quota'".
#[test]
fn doveadm_quota_get_answers_with_the_quota_postern_gives() {
    let (d, dovecot) = start("invite_only");
    add_with_password(&d, "alice@example.org", PW);
    d.cli_ok(&["user", "quota", "alice@example.org", "1M"]);
    let out = dovecot.doveadm(&["quota", "get", "-u", "alice@example.org"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "doveadm quota get: {text}");
    let storage = text
        .lines()
        .find(|l| l.contains("STORAGE"))
        .unwrap_or_else(|| panic!("no STORAGE row: {text}"));
    // doveadm shows the limit in KiB.
    assert!(storage.contains(" 1024 "), "{storage}");
}
