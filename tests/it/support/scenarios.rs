//! Scenarios that Dovecot 2.3 (dict passdb/userdb) and Dovecot 2.4 (Lua passdb/userdb
//! over the auth API) must both pass: the same steps and checks against either server.

use super::dovecot::{
    add_with_password, eventually, home, login_ok, maildir_new_files, maildir_vsize, now, show,
    MailServer,
};
use super::TestDaemon;

/// An IMAP login reaches postern's `last_login` through Dovecot's last_login plugin.
pub fn imap_login_records_last_login(d: &TestDaemon, server: &impl MailServer, password: &str) {
    add_with_password(d, "bob@example.org", password);
    assert!(show(d, "bob@example.org")["last_login"].is_null());
    let t0 = now();

    login_ok(server, "bob@example.org", password);
    let last = eventually("last_login from Dovecot's last_login plugin", || {
        show(d, "bob@example.org")["last_login"].as_i64()
    });
    // Stored with at most day precision (chatmail rounds down to the day).
    assert!(
        last > t0 - 86_400 && last <= now() + 5,
        "last_login {last}, login at {t0}"
    );
}

/// Deliveries over LMTP reach postern's usage through Dovecot's quota_clone plugin, in
/// the sizes Dovecot counts (the Maildir files' virtual sizes).
pub fn lmtp_delivery_updates_used_bytes_and_messages(
    d: &TestDaemon,
    server: &impl MailServer,
    password: &str,
    message: &str,
) {
    login_ok(server, "alice@example.org", password);
    let home = home(d, "alice@example.org");

    server
        .lmtp_deliver("alice@example.org", message)
        .expect("first delivery");
    let first = maildir_vsize(&maildir_new_files(&home)[0]);
    let a = eventually("used_messages = 1 from quota_clone", || {
        Some(show(d, "alice@example.org")).filter(|a| a["used_messages"] == 1)
    });
    assert_eq!(a["used_bytes"], first, "{a}");

    server
        .lmtp_deliver("alice@example.org", message)
        .expect("second delivery");
    let total: u64 = maildir_new_files(&home)
        .iter()
        .map(|f| maildir_vsize(f))
        .sum();
    let a = eventually("used_messages = 2 from quota_clone", || {
        Some(show(d, "alice@example.org")).filter(|a| a["used_messages"] == 2)
    });
    assert_eq!(a["used_bytes"], total, "{a}");
}
