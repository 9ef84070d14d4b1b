//! `/account` over real HTTP: the JSON endpoints for scripts and clients with every status
//! they answer, the page's sign-in, forms and locks (CSRF, its own sessions), and the
//! sign-up page's word on dead invites. Logins are checked through the dict socket, as
//! Dovecot asks.

use serde_json::json;

use crate::support::dovecot::add_with_password;
use crate::support::{accounts, passdb_once, TestDaemon};
use crate::web::{Http, Reply};

const PW: &str = "correct horse battery";
const NEW_PW: &str = "a brand new passphrase";

fn logs_in(d: &TestDaemon, user: &str, password: &str) -> bool {
    passdb_once(&d.dict_socket, user, password).starts_with('O')
}

fn blocklist(d: &TestDaemon) -> Vec<String> {
    d.cli_json(&["blocklist", "list"])
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["address"].as_str().expect("address").to_owned())
        .collect()
}

fn status_and_reason(r: &Reply) -> (u16, String) {
    (r.status, r.reason())
}

#[test]
fn json_password_and_delete_answer_200_400_401_415_and_429() {
    let d = TestDaemon::start_with("open", &[("POSTERN_LOGIN__MAX_FAILURES", "3")]);
    add_with_password(&d, "alice@example.org", PW);
    add_with_password(&d, "bob@example.org", PW);
    let h = Http::new(&d);
    // A cached login with the old password: the change must end it at once.
    assert!(logs_in(&d, "alice@example.org", PW));

    // 415: a form (what a cross-site page could send) or no type at all.
    let form = b"email=alice%40example.org&password=x&new_password=y";
    for headers in [
        &[("Content-Type", "application/x-www-form-urlencoded")][..],
        &[("Content-Type", "text/plain")][..],
        &[][..],
    ] {
        for path in ["/account/password", "/account/delete"] {
            let r = h.request("POST", path, headers, form);
            assert_eq!(
                status_and_reason(&r),
                (
                    415,
                    "send a JSON body with Content-Type: application/json".to_owned()
                ),
                "{path} {headers:?}"
            );
        }
    }

    // 400: not the expected object, or a new password the rules refuse.
    let r = h.request(
        "POST",
        "/account/password",
        &[("Content-Type", "application/json")],
        b"{not json",
    );
    assert_eq!(
        status_and_reason(&r),
        (
            400,
            r#"send {"email": "...", "password": "...", "new_password": "..."}"#.to_owned()
        )
    );
    let r = h.post_json(
        "/account/password",
        &json!({"email": "alice@example.org", "password": PW}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = h.post_json("/account/delete", &json!({"email": "alice@example.org"}));
    assert_eq!(
        status_and_reason(&r),
        (
            400,
            r#"send {"email": "...", "password": "..."}"#.to_owned()
        )
    );
    let r = h.post_json(
        "/account/password",
        &json!({"email": "alice@example.org", "password": PW, "new_password": "short"}),
    );
    assert_eq!(
        status_and_reason(&r),
        (
            400,
            "the password must be at least 9 characters long".to_owned()
        )
    );

    // 401: a wrong password, and an unknown address alike; nothing is created.
    for email in ["alice@example.org", "nobody@example.org"] {
        let r = h.post_json(
            "/account/password",
            &json!({"email": email, "password": "not the password", "new_password": NEW_PW}),
        );
        assert_eq!(
            status_and_reason(&r),
            (401, "wrong address or password".to_owned())
        );
    }
    assert_eq!(
        accounts(&d),
        vec!["alice@example.org", "bob@example.org"],
        "self-service never creates an account"
    );
    assert!(logs_in(&d, "alice@example.org", PW));

    // 200: the new password works at once, the cached old one no longer does.
    let r = h.post_json(
        "/account/password",
        &json!({"email": "Alice@Example.org", "password": PW, "new_password": NEW_PW}),
    );
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.body);
    assert!(!logs_in(&d, "alice@example.org", PW));
    assert!(logs_in(&d, "alice@example.org", NEW_PW));
    assert!(
        !d.log().contains(NEW_PW) && !d.log().contains(PW),
        "no password in the log"
    );

    // 429: after login.max_failures wrong passwords, no password is checked.
    for _ in 0..3 {
        let r = h.post_json(
            "/account/delete",
            &json!({"email": "bob@example.org", "password": "a wrong guess"}),
        );
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = h.post_json(
        "/account/delete",
        &json!({"email": "bob@example.org", "password": PW}),
    );
    assert_eq!(
        status_and_reason(&r),
        (429, "too many failed attempts; try again later".to_owned())
    );
    assert!(accounts(&d).contains(&"bob@example.org".to_owned()));

    // 200 for a delete: the account is gone, the address stays on the blocklist and
    // its mail home waits for the maintenance run.
    let r = h.post_json(
        "/account/delete",
        &json!({"email": "alice@example.org", "password": NEW_PW}),
    );
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.body);
    assert_eq!(accounts(&d), vec!["bob@example.org"]);
    assert_eq!(blocklist(&d), vec!["alice@example.org"]);
    assert!(!logs_in(&d, "alice@example.org", NEW_PW));
    let stats = d.cli_json(&["stats"]);
    assert_eq!(stats["mail_homes_queued"], 1, "{stats}");
    let r = h.post_json("/new", &json!({"username": "alice", "password": PW}));
    assert_eq!(
        status_and_reason(&r),
        (409, "this address is not available.".to_owned())
    );
}

#[test]
fn json_endpoints_answer_403_when_self_service_is_off() {
    let d = TestDaemon::start_with("open", &[("POSTERN_SELF_SERVICE__ENABLED", "false")]);
    add_with_password(&d, "alice@example.org", PW);
    let h = Http::new(&d);
    let off = (
        403,
        "self-service is switched off on this server".to_owned(),
    );
    let r = h.post_json(
        "/account/password",
        &json!({"email": "alice@example.org", "password": PW, "new_password": NEW_PW}),
    );
    assert_eq!(status_and_reason(&r), off);
    let r = h.post_json(
        "/account/delete",
        &json!({"email": "alice@example.org", "password": PW}),
    );
    assert_eq!(status_and_reason(&r), off);
    let r = h.request("POST", "/account/delete", &[], b"");
    assert_eq!(status_and_reason(&r), off);
    let page = h.get("/account");
    assert_eq!(page.status, 403);
    assert!(page
        .body
        .contains("self-service is switched off on this server"));
    assert!(!page.body.contains("<form"), "{}", page.body);
    assert!(logs_in(&d, "alice@example.org", PW), "nothing changed");
}

/// Signs in at `/account` through the form; the session cookie (`name=value`).
fn sign_in(h: &Http, address: &str, password: &str) -> Result<String, Box<Reply>> {
    let page = h.get("/account");
    assert_eq!(page.status, 200, "{}", page.body);
    let signin = page
        .cookie("postern_account_signin")
        .expect("sign-in cookie");
    assert_eq!(page.csrf(), signin);
    let r = h.post_form(
        "/account/login",
        &[
            ("address", address),
            ("password", password),
            ("csrf", &signin),
        ],
        Some(&format!("postern_account_signin={signin}")),
    );
    if r.status != 303 {
        return Err(Box::new(r));
    }
    assert_eq!(r.location.as_deref(), Some("/account"));
    let set = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("postern_account="))
        .expect("session cookie");
    assert!(
        set.contains("Path=/account;")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict"),
        "{set}"
    );
    Ok(format!(
        "postern_account={}",
        r.cookie("postern_account").expect("cookie")
    ))
}

#[test]
fn the_page_signs_owners_in_and_its_forms_need_the_session_token() {
    let d = TestDaemon::start("open");
    add_with_password(&d, "alice@example.org", PW);
    let h = Http::new(&d);

    let wrong = sign_in(&h, "alice@example.org", "not the password").expect_err("refused");
    assert_eq!(wrong.status, 403);
    assert!(wrong.body.contains("Wrong address or password."));
    let unknown = sign_in(&h, "nobody@example.org", PW).expect_err("refused");
    assert!(unknown.body.contains("Wrong address or password."));
    assert_eq!(accounts(&d), vec!["alice@example.org"], "nothing created");
    // Without the double-submit cookie, no sign-in.
    let r = h.post_form(
        "/account/login",
        &[
            ("address", "alice@example.org"),
            ("password", PW),
            ("csrf", "x"),
        ],
        None,
    );
    assert_eq!(r.status, 403);

    let cookie = sign_in(&h, "alice@example.org", PW).expect("signed in");
    let page = h.get_with("/account", &cookie);
    assert_eq!(page.status, 200);
    for part in [
        "<code id=\"address\">alice@example.org</code>",
        "<dd id=\"usage\">0 of 500M (0%)</dd>",
        "<dd id=\"last-login\">",
    ] {
        assert!(page.body.contains(part), "no {part} in {}", page.body);
    }
    let csrf = page.csrf();
    // The owner's session opens nothing of the admin pages.
    let admin = h.get_with(
        "/admin/accounts",
        &cookie.replace("postern_account", "postern_admin"),
    );
    assert_eq!(admin.status, 303);

    // A form without the token changes nothing.
    let r = h.post_form(
        "/account/change-password",
        &[("password", PW), ("new_password", NEW_PW)],
        Some(&cookie),
    );
    assert_eq!(r.status, 403);
    assert!(logs_in(&d, "alice@example.org", PW));
    // A wrong confirmation deletes nothing.
    let r = h.post_form(
        "/account/delete-account",
        &[("password", PW), ("confirm", "alice"), ("csrf", &csrf)],
        Some(&cookie),
    );
    assert_eq!(r.status, 303);
    let page = h.get_with("/account", &cookie);
    assert!(
        page.body
            .contains("Type your address, alice@example.org, to confirm; nothing was deleted."),
        "{}",
        page.body
    );
    assert_eq!(accounts(&d), vec!["alice@example.org"]);

    // The change shows the dclogin: code for the new password and ends other sessions.
    let other = sign_in(&h, "alice@example.org", PW).expect("second browser");
    let r = h.post_form(
        "/account/change-password",
        &[("password", PW), ("new_password", NEW_PW), ("csrf", &csrf)],
        Some(&cookie),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("dclogin:alice@example.org?p=a%20brand%20new%20passphrase&amp;v=1"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<svg"));
    let stale = h.get_with("/account", &other);
    assert!(
        stale.body.contains("Sign in to your account"),
        "{}",
        stale.body
    );
    let fresh = format!(
        "postern_account={}",
        r.cookie("postern_account").expect("new session")
    );
    let page = h.get_with("/account", &fresh);
    assert!(page.body.contains("id=\"address\""), "{}", page.body);

    // Sign out: the session is gone.
    let r = h.post_form("/account/logout", &[("csrf", &page.csrf())], Some(&fresh));
    assert_eq!(r.status, 303);
    let page = h.get_with("/account", &fresh);
    assert!(page.body.contains("Sign in to your account"));

    // A password set elsewhere (the CLI, another process) ends the session too.
    let cookie = sign_in(&h, "alice@example.org", NEW_PW).expect("signed in");
    assert!(h
        .get_with("/account", &cookie)
        .body
        .contains("id=\"address\""));
    d.cli_ok(&["user", "passwd", "alice@example.org", "--random"]);
    let page = h.get_with("/account", &cookie);
    assert!(
        page.body.contains("Sign in to your account"),
        "{}",
        page.body
    );
}

// ----- dead invites on /new ---------------------------------------------------------

fn invite(d: &TestDaemon, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    d.cli_json(&all)["code"].as_str().expect("code").to_owned()
}

/// The reason `/new?token=CODE` shows at the top; asserts no QR code and no code filled in.
fn invite_problem(h: &Http, code: &str) -> String {
    let page = h.get(&format!("/new?token={code}"));
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("<svg"),
        "a QR code for a dead invite: {}",
        page.body
    );
    assert!(!page.body.contains("DCACCOUNT:"), "{}", page.body);
    assert!(
        !page.body.contains(&format!("value=\"{code}\"")),
        "{}",
        page.body
    );
    let marker = "id=\"invite-problem\" role=\"alert\">";
    let start = page
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no reason on {}", page.body))
        + marker.len();
    let end = page.body[start..].find('<').expect("end") + start;
    assert!(start < page.body.find("<form").expect("the form"));
    page.body[start..end].to_owned()
}

#[test]
fn dead_invites_show_their_reason_up_front_and_live_ones_their_uses() {
    for mode in ["invite_only", "open"] {
        let d = TestDaemon::start_with(
            mode,
            &[
                ("POSTERN_HTTP__SHOW_INVITE_USES", "true"),
                ("POSTERN_HTTP__NEW_PER_MINUTE", "0"),
            ],
        );
        let h = Http::new(&d);
        assert_eq!(
            invite_problem(&h, "nosuchcode"),
            "this invite code is not valid."
        );
        let once = invite(&d, &["--uses", "1"]);
        let r = h.post_empty(&format!("/new?token={once}"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            invite_problem(&h, &once),
            "this invite code has been used up."
        );
        let revoked = invite(&d, &["--uses", "2"]);
        d.cli_ok(&["token", "revoke", &revoked]);
        assert_eq!(
            invite_problem(&h, &revoked),
            "this invite code has been revoked."
        );
        let expiring = invite(&d, &["--uses", "2", "--expires", "1s"]);
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(
            invite_problem(&h, &expiring),
            "this invite code has expired."
        );

        let live = invite(&d, &["--uses", "3"]);
        let r = h.post_empty(&format!("/new?token={live}"));
        assert_eq!(r.status, 200, "{}", r.body);
        let page = h.get(&format!("/new?token={live}"));
        assert!(
            page.body.contains(
                "<p class=\"notice\" id=\"invite-uses\">This invite can be used 2 more times.</p>"
            ),
            "{}",
            page.body
        );
        assert!(page
            .body
            .contains(&format!("DCACCOUNT:https://example.org/new?token={live}")));
        assert!(!page.body.contains("invite-problem"));
    }
    // The operator did not allow it: no count.
    let d = TestDaemon::start("invite_only");
    let h = Http::new(&d);
    let live = invite(&d, &["--uses", "3"]);
    let page = h.get(&format!("/new?token={live}"));
    assert!(page.body.contains("<svg"));
    assert!(!page.body.contains("invite-uses"), "{}", page.body);
}
