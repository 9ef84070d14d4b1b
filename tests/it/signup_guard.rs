//! The sign-up guard on a real disk: a mail root on a tiny tmpfs filled past
//! `registration.min_free_disk` pauses every creation (a just-in-time login through a real
//! Dovecot 2.3, SMTP AUTH, `/new`) with a temporary failure, while existing accounts keep logging
//! in; freeing the space lets sign-ups through again. Needs root (the mount, Dovecot).

use std::time::Duration;

use serde_json::json;

use crate::faults::{is_root, sasl, Mount};
use crate::support::dovecot::{accounts, login_ok, login_refused, Dovecot};
use crate::support::{TestDaemon, MAIL_GID, MAIL_UID};
use crate::web::Http;

const PW: &str = "correct horse battery";

#[test]
fn a_full_mail_root_pauses_sign_ups_with_a_temporary_failure_until_space_is_freed() {
    if !is_root() {
        return;
    }
    let mut d = TestDaemon::configure("open", &[("POSTERN_REGISTRATION__MIN_FREE_DISK", "4M")]);
    let _disk = Mount::tmpfs(&d.vmail, "8m");
    nix::unistd::chown(
        &d.vmail,
        Some(nix::unistd::Uid::from_raw(MAIL_UID)),
        Some(nix::unistd::Gid::from_raw(MAIL_GID)),
    )
    .expect("chown the mail root");
    d.spawn();
    let dovecot = Dovecot::start(&d);
    let h = Http::new(&d);

    // 8M free: the first login creates alice.
    login_ok(&dovecot, "alice@example.org", PW);
    assert_eq!(accounts(&d), vec!["alice@example.org"]);

    // 6M of filler leaves less than the 4M minimum.
    let filler = d.vmail.join("filler");
    std::fs::write(&filler, vec![0u8; 6 << 20]).expect("fill the disk");
    // A reading serves for a second: wait out the one taken at alice's creation.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..3 {
        let refused = login_refused(&dovecot, "bob@example.org", PW);
        // [UNAVAILABLE]: the client retries later instead of asking for a new password.
        assert!(refused.contains("NO [UNAVAILABLE]"), "{refused}");
    }
    // SMTP AUTH (SASL) asks again later too; the account it knows still gets in.
    let auth = sasl(&d, "dave@example.org", PW);
    assert!(
        auth.starts_with("FAIL\t1") && auth.contains("code=temp_fail"),
        "{auth}"
    );
    assert!(sasl(&d, "alice@example.org", PW).starts_with("OK\t1"));
    let r = h.post_json("/new", &json!({"username": "carol", "password": PW}));
    assert_eq!(
        (r.status, r.reason()),
        (503, "registration is temporarily unavailable".to_owned())
    );
    // Existing accounts keep working.
    login_ok(&dovecot, "alice@example.org", PW);
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
    // One line for the pause, not one per refused request.
    let log = d.log();
    let paused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("event=signup_guard result=paused"))
        .collect();
    assert_eq!(paused.len(), 1, "{log}");
    assert!(
        paused[0].contains("reason=disk") && paused[0].contains("min=4M"),
        "{}",
        paused[0]
    );

    // Space again: after the one-second reading, sign-ups go through.
    std::fs::remove_file(&filler).expect("free the disk");
    std::thread::sleep(Duration::from_millis(1100));
    login_ok(&dovecot, "bob@example.org", PW);
    assert_eq!(accounts(&d), vec!["alice@example.org", "bob@example.org"]);
    assert!(
        d.log().contains("event=signup_guard result=resumed"),
        "{}",
        d.log()
    );
    drop(dovecot);
    d.stop();
}
