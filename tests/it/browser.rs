//! The web pages in a real headless Chromium (WebDriver): what a person does with them,
//! with screenshots of each step in `target/browser-artifacts/`.

use crate::support::browser::Browser;
use crate::support::TestDaemon;

const PW: &str = "correct horse battery";

#[test]
fn browser_sign_up_on_new_shows_the_account_and_its_qr_code() {
    let d = TestDaemon::start("open");
    let b = Browser::start("signup");
    let base = format!("http://{}", d.http);

    b.goto(&format!("{base}/new"));
    b.find("form[action='/new']");
    b.screenshot("1-form");
    b.fill("#username", "alice");
    b.fill("#password", PW);
    b.click("button[value='choose']");
    assert_eq!(b.text("#address"), "alice@example.org");
    assert_eq!(b.text("#password"), PW);
    b.find("main svg.qr path");
    let link = b.attribute("#dclogin", "href").expect("dclogin link");
    assert!(
        link.starts_with("dclogin:alice@example.org?p=correct%20horse%20battery&v=1"),
        "{link}"
    );
    b.screenshot("2-account-ready");
    assert_eq!(
        d.cli_json(&["user", "show", "alice@example.org"])["created_via"],
        "web"
    );

    // "Give me a random account" needs nothing typed (the button skips validation).
    b.goto(&format!("{base}/new"));
    b.click("button[value='random']");
    let address = b.text("#address");
    assert!(
        address.ends_with("@example.org") && address.len() == 9 + 12,
        "{address}"
    );
    b.find("main svg.qr");

    // A refusal shows its reason on the page.
    b.goto(&format!("{base}/new"));
    b.fill("#username", "alice");
    b.fill("#password", PW);
    b.click("button[value='choose']");
    assert_eq!(b.text("#error"), "this address is not available.");
    b.screenshot("3-taken");
}

#[test]
fn browser_admin_signs_in_creates_an_invite_and_blocks_an_account() {
    let d = TestDaemon::start("invite_only");
    for (addr, admin) in [("boss@example.org", true), ("alice@example.org", false)] {
        let mut args = vec!["user", "add", addr, "--password-stdin"];
        if admin {
            args.push("--admin");
        }
        let out = d.cli_stdin(&args, &format!("{PW}\n"));
        assert!(out.status.success());
    }
    let b = Browser::start("admin");
    let base = format!("http://{}", d.http);

    b.goto(&format!("{base}/admin"));
    b.find("form[action='/admin/login']");
    assert!(b.url().ends_with("/admin/login"), "{}", b.url());

    // A wrong password is refused.
    b.fill("#address", "boss@example.org");
    b.fill("#password", "not the password");
    b.click("form[action='/admin/login'] button");
    assert_eq!(b.text("#error"), "Wrong address or password.");
    b.screenshot("1-wrong-password");
    assert!(b.try_find("#accounts").is_none());

    b.fill("#address", "boss@example.org");
    b.fill("#password", PW);
    b.click("form[action='/admin/login'] button");
    b.find("table#accounts");
    assert!(b.url().ends_with("/admin/accounts"), "{}", b.url());
    b.screenshot("2-accounts");

    // An invite: its link, DCACCOUNT string and QR code show once.
    b.goto(&format!("{base}/admin/invites"));
    b.fill("#uses", "2");
    b.fill("#comment", "for Dave");
    b.click("form[action='/admin/invites'] button");
    let link = b.text("#invite-link");
    assert!(link.starts_with("https://example.org/new?token="), "{link}");
    assert_eq!(b.text("#invite-dcaccount"), format!("DCACCOUNT:{link}"));
    b.find("#new-invite svg.qr");
    b.screenshot("3-invite");
    let tokens = d.cli_json(&["token", "list"]);
    assert_eq!(tokens[0]["comment"], "for Dave");
    assert_eq!(tokens[0]["max_uses"], 2);

    // Block alice: her row says so.
    b.goto(&format!("{base}/admin/accounts/alice@example.org"));
    b.screenshot("4-account");
    b.fill("#reason", "spam");
    b.click("form[action$='/block'] button");
    assert!(
        b.text("#status").starts_with("blocked since"),
        "{}",
        b.source()
    );
    b.goto(&format!("{base}/admin/accounts"));
    assert_eq!(
        b.text("tr[data-address='alice@example.org'] .badge.blocked"),
        "blocked"
    );
    b.screenshot("5-blocked");
    let alice = d.cli_json(&["user", "show", "alice@example.org"]);
    assert_eq!(alice["blocked_reason"], "spam");

    // Sign out: the pages are closed again.
    b.click("form[action='/admin/logout'] button");
    b.find("form[action='/admin/login']");
    b.goto(&format!("{base}/admin/accounts"));
    b.find("form[action='/admin/login']");
}

#[test]
fn browser_owner_changes_the_password_and_deletes_the_account_at_account() {
    use crate::support::dovecot::{login_ok, login_refused, Dovecot};
    use crate::web::Http;
    const NEW_PW: &str = "a brand new passphrase";

    let d = TestDaemon::start("open");
    let dovecot = Dovecot::start(&d);
    // The first IMAP login creates alice; the second is answered from the verified cache.
    login_ok(&dovecot, "alice@example.org", PW);
    login_ok(&dovecot, "alice@example.org", PW);
    let b = Browser::start("account");
    let base = format!("http://{}", d.http);

    b.goto(&format!("{base}/account"));
    b.find("form[action='/account/login']");
    b.screenshot("1-sign-in");
    b.fill("#address", "alice@example.org");
    b.fill("#password", PW);
    b.click("form[action='/account/login'] button");
    // The sign-in form has an #address too: wait for the account page first.
    b.find("#usage");
    assert_eq!(b.text("#address"), "alice@example.org");
    assert_eq!(b.text("#usage"), "0 of 500M (0%)");
    assert!(b.text("#created").ends_with(" UTC"), "{}", b.source());
    assert!(b.text("#last-login").ends_with(" UTC"), "{}", b.source());
    b.screenshot("2-account");

    b.fill("#current-password", PW);
    b.fill("#new-password", NEW_PW);
    b.click("form[action='/account/change-password'] button");
    b.find("#changed");
    assert_eq!(b.text("#password"), NEW_PW);
    b.find("main svg.qr path");
    let link = b.attribute("#dclogin", "href").expect("dclogin link");
    assert!(
        link.starts_with("dclogin:alice@example.org?p=a%20brand%20new%20passphrase&v=1"),
        "{link}"
    );
    b.screenshot("3-password-changed");
    // Through the real Dovecot: the old password, cached a moment ago, is refused at once.
    let refused = login_refused(&dovecot, "alice@example.org", PW);
    assert!(refused.contains("AUTHENTICATIONFAILED"), "{refused}");
    login_ok(&dovecot, "alice@example.org", NEW_PW);

    b.goto(&format!("{base}/account"));
    b.fill("#delete-password", NEW_PW);
    b.fill("#confirm", "alice@example.org");
    b.click("form[action='/account/delete-account'] button");
    assert_eq!(
        b.text("#deleted"),
        "alice@example.org is deleted. Its mail is removed from the server within a day."
    );
    b.screenshot("4-deleted");
    let refused = login_refused(&dovecot, "alice@example.org", NEW_PW);
    assert!(refused.contains("AUTHENTICATIONFAILED"), "{refused}");
    // Nobody gets the address again: not by logging in, not on /new.
    let refused = login_refused(&dovecot, "alice@example.org", "another password");
    assert!(refused.contains("AUTHENTICATIONFAILED"), "{refused}");
    let r = Http::new(&d).post_json(
        "/new",
        &serde_json::json!({"username": "alice", "password": PW}),
    );
    assert_eq!(
        (r.status, r.reason()),
        (409, "this address is not available.".to_owned())
    );
    assert!(d
        .cli_json(&["user", "list"])
        .as_array()
        .expect("list")
        .is_empty());

    // Signed out with the account: the page asks for a sign-in again.
    b.goto(&format!("{base}/account"));
    b.find("form[action='/account/login']");
}
