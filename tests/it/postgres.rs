//! Several mail hosts on one PostgreSQL database: two `postern serve` daemons, each with
//! its own real Dovecot 2.3, share a database on a real PostgreSQL server from Debian's
//! packages (started in a temporary directory). What one host creates, blocks, deletes,
//! re-passwords or uses up holds on the other at once; a guesser's failures and a
//! sender's messages count once over both hosts; a database that goes away is a temporary failure on every
//! adapter and comes back without a restart; `database copy` moves a SQLite
//! installation with its passwords.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::support::dovecot::{
    add_with_password, eventually_within, login_ok, login_refused, Dovecot,
};
use crate::support::mail_clients;
use crate::support::postgres::{configure_on_postgres, on_postgres, PgServer};
use crate::support::{accounts, passdb_once, TestDaemon};

const PW: &str = "correct horse battery staple";

/// One policy request for a RCPT to `recipient`; returns the action line.
fn policy(d: &TestDaemon, recipient: &str) -> String {
    policy_from(d, recipient, "", "a1.1")
}

/// One policy request for a RCPT of message `instance`, sent by `sasl_username` (empty:
/// not authenticated).
fn policy_from(d: &TestDaemon, recipient: &str, sasl_username: &str, instance: &str) -> String {
    let s = UnixStream::connect(&d.policy_socket).expect("connect policy");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut r = BufReader::new(s);
    let block = format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address=192.0.2.7\nclient_name=mx.example.net\nhelo_name=mx.example.net\n\
         sender=someone@example.net\nrecipient={recipient}\nrecipient_count=0\n\
         instance={instance}\nsize=100\nsasl_username={sasl_username}\n\n"
    );
    r.get_mut().write_all(block.as_bytes()).expect("write");
    let mut action = String::new();
    r.read_line(&mut action).expect("read");
    action
        .trim_end()
        .strip_prefix("action=")
        .unwrap_or(&action)
        .to_owned()
}

/// One SMTP AUTH PLAIN over the Dovecot auth protocol, as Postfix sends it.
fn sasl(d: &TestDaemon, user: &str, password: &str) -> String {
    sasl_from(d, user, password, "127.0.0.1")
}

/// One SMTP AUTH PLAIN from the client at `rip`.
fn sasl_from(d: &TestDaemon, user: &str, password: &str, rip: &str) -> String {
    let s = UnixStream::connect(&d.auth_socket).expect("connect auth");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut r = BufReader::new(s);
    r.get_mut()
        .write_all(b"VERSION\t1\t0\nCPID\t4242\n")
        .expect("write");
    loop {
        let mut l = String::new();
        r.read_line(&mut l).expect("read");
        if l.trim_end() == "DONE" || l.is_empty() {
            break;
        }
    }
    let resp = STANDARD.encode(format!("\0{user}\0{password}"));
    r.get_mut()
        .write_all(
            format!(
                "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip={rip}\tresp={resp}\n"
            )
            .as_bytes(),
        )
        .expect("write");
    let mut l = String::new();
    r.read_line(&mut l).expect("read");
    l.trim_end().to_owned()
}

/// POST /new (an empty body: a random account, or the invite's) on `d`; the status.
fn post_new(d: &TestDaemon, query: &str) -> u16 {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    match agent
        .post(&format!("http://{}/new{query}", d.http))
        .send_bytes(b"")
    {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(c, _)) => c,
        Err(e) => panic!("/new: {e}"),
    }
}

fn two_hosts(pg: &PgServer, name: &str, mode: &str) -> (TestDaemon, TestDaemon) {
    let url = pg.create_database(name);
    let env = [("POSTERN_HTTP__NEW_PER_MINUTE", "0")];
    (on_postgres(mode, &url, &env), on_postgres(mode, &url, &env))
}

#[test]
fn two_hosts_with_their_own_dovecot_share_accounts_creations_and_blocks() {
    let pg = PgServer::start();
    let (a, b) = two_hosts(&pg, "hosts", "open");
    let (dov_a, dov_b) = (Dovecot::start(&a), Dovecot::start(&b));

    // The first login through A creates the account; the same password works through B.
    login_ok(&dov_a, "alice@example.org", PW);
    login_ok(&dov_b, "alice@example.org", PW);
    login_refused(&dov_b, "alice@example.org", "another password entirely");
    assert_eq!(accounts(&b), vec!["alice@example.org"]);

    // 20 simultaneous first logins of one new address, spread over A and B.
    let ports = [dov_a.imap_port, dov_b.imap_port];
    let logins: Vec<_> = (0..20)
        .map(|i| {
            let port = ports[i % 2];
            std::thread::spawn(move || {
                mail_clients::imap_login(port, "bob@example.org", PW).map(|s| s.logout())
            })
        })
        .collect();
    let results: Vec<Result<(), String>> = logins
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(accounts(&a), vec!["alice@example.org", "bob@example.org"]);
    assert_eq!(
        pg.count(
            "hosts",
            "SELECT COUNT(*) FROM accounts WHERE address = 'bob@example.org'"
        ),
        1
    );

    // Blocked with B's configuration: A refuses the next login and mail to it.
    assert_eq!(policy(&a, "alice@example.org"), "DUNNO");
    b.cli_ok(&["user", "block", "alice@example.org"]);
    login_refused(&dov_a, "alice@example.org", PW);
    assert_eq!(
        policy(&a, "alice@example.org"),
        "REJECT 5.7.1 Recipient address is blocked"
    );
    login_ok(&dov_a, "bob@example.org", PW);

    // A password changed through A: B refuses the old one at the next login, through
    // Dovecot and straight on its dict socket, though B had just verified it.
    login_ok(&dov_b, "bob@example.org", PW);
    let new_pw = "a new password for bob";
    let out = a.cli_stdin(
        &["user", "passwd", "bob@example.org", "--password-stdin"],
        &format!("{new_pw}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    login_refused(&dov_b, "bob@example.org", PW);
    let old = passdb_once(&b.dict_socket, "bob@example.org", PW);
    assert!(old.starts_with('N'), "dict with the old password: {old}");
    login_ok(&dov_b, "bob@example.org", new_pw);
    // Deleted through B: A lets nobody in as it, and mail to it is refused.
    b.cli_ok(&["user", "delete", "bob@example.org", "--keep-mail", "--yes"]);
    login_refused(&dov_a, "bob@example.org", new_pw);
    assert_eq!(
        policy(&a, "bob@example.org"),
        "REJECT 5.7.1 Recipient address is blocked"
    );
}

/// Fresh-address guesses at `user` through the hosts in turn, each over SMTP AUTH: how
/// many were checked (a `bad_password` refusal in some host's log) rather than throttled.
fn checked_guesses(hosts: &[&TestDaemon], user: &str, guesses: usize, first_ip: usize) -> usize {
    let before: usize = hosts.iter().map(|h| bad_passwords(h, user)).sum();
    for i in 0..guesses {
        let ip = format!("192.0.2.{}", first_ip + i);
        let r = sasl_from(hosts[i % hosts.len()], user, "wrong guess", &ip);
        assert!(r.starts_with("FAIL\t1"), "guess {i}: {r}");
    }
    // The log line is written after the answer.
    std::thread::sleep(Duration::from_millis(300));
    let after: usize = hosts.iter().map(|h| bad_passwords(h, user)).sum();
    after - before
}

fn bad_passwords(d: &TestDaemon, user: &str) -> usize {
    let want = format!("reason=bad_password address={user} ");
    d.log().lines().filter(|l| l.contains(&want)).count()
}

#[test]
fn a_guesser_and_a_sender_spread_over_both_hosts_get_no_more_than_on_one() {
    let pg = PgServer::start();
    let url = pg.create_database("limits");
    // 3 failures, then slow mode with one turn an hour; 3 messages, then one a minute.
    let env = [
        ("POSTERN_HTTP__NEW_PER_MINUTE", "0"),
        ("POSTERN_LOGIN__MAX_FAILURES", "3"),
        ("POSTERN_LOGIN__MAX_FAILURES_PER_IP", "1000"),
        ("POSTERN_LOGIN__SLOW_INTERVAL_MS", "3600000"),
        ("POSTERN_LOGIN__SLOW_WAIT_MS", "100"),
        ("POSTERN_POLICY__SEND_BURST", "3"),
        ("POSTERN_POLICY__SEND_PER_MINUTE", "1"),
    ];
    let (a, b) = (
        on_postgres("closed", &url, &env),
        on_postgres("closed", &url, &env),
    );
    add_with_password(&a, "carol@example.org", PW);
    add_with_password(&a, "dave@example.org", PW);

    // One host: max_failures + 1 checks, then slow mode's one turn, then throttled.
    assert_eq!(checked_guesses(&[&a], "dave@example.org", 10, 1), 5);
    // Spread over both hosts: the same total.
    assert_eq!(checked_guesses(&[&a, &b], "carol@example.org", 10, 101), 5);
    assert_eq!(
        pg.count(
            "limits",
            "SELECT failures FROM login_failures WHERE address = 'carol@example.org'"
        ),
        5
    );

    // One sender's messages alternating over both hosts' policy sockets: the burst of
    // 3 in all, each message counted once whatever its recipients.
    let mut actions = Vec::new();
    for i in 0..8 {
        let host = if i % 2 == 0 { &a } else { &b };
        let instance = format!("m{i}.1");
        let first = policy_from(host, "friend@elsewhere.net", "carol@example.org", &instance);
        let second = policy_from(host, "other@elsewhere.net", "carol@example.org", &instance);
        assert_eq!(
            first, second,
            "message {i}: a second recipient is judged alike"
        );
        actions.push(first);
    }
    let rate = "450 4.7.1 Sending too fast, try again later";
    assert_eq!(
        actions,
        ["DUNNO", "DUNNO", "DUNNO", rate, rate, rate, rate, rate],
        "{actions:?}"
    );
}

#[test]
fn a_one_use_invite_raced_through_both_hosts_new_makes_one_account() {
    let pg = PgServer::start();
    let (a, b) = two_hosts(&pg, "invite", "invite_only");
    let v = a.cli_json(&["token", "create", "--uses", "1"]);
    let code = v["code"].as_str().expect("code").to_owned();
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let racers: Vec<_> = (0..12)
        .map(|i| {
            let host = if i % 2 == 0 { a.clone() } else { b.clone() };
            let query = format!("?token={code}");
            std::thread::spawn(move || post_new(&host, &query))
        })
        .collect();
    let statuses: Vec<u16> = racers
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(accounts(&b).len(), 1);
    assert_eq!(pg.count("invite", "SELECT uses FROM tokens"), 1);
}

#[test]
fn database_away_is_a_temporary_failure_everywhere_and_both_hosts_recover_without_restart() {
    let mut pg = PgServer::start();
    let (mut a, mut b) = two_hosts(&pg, "away", "open");
    assert!(passdb_once(&a.dict_socket, "alice@example.org", PW).starts_with('O'));

    pg.stop();
    for d in [&a, &b] {
        let known = passdb_once(&d.dict_socket, "alice@example.org", PW);
        assert!(known.starts_with('F'), "dict for a known account: {known}");
        let new = passdb_once(&d.dict_socket, "carol@example.org", PW);
        assert!(new.starts_with('F'), "dict for a first login: {new}");
        let auth = sasl(d, "alice@example.org", PW);
        assert!(
            auth.starts_with("FAIL\t1") && auth.contains("code=temp_fail"),
            "SASL: {auth}"
        );
        assert_eq!(
            policy(d, "alice@example.org"),
            "DEFER_IF_PERMIT Service temporarily unavailable"
        );
        assert_eq!(
            policy_from(d, "friend@elsewhere.net", "alice@example.org", "m1.1"),
            "DEFER_IF_PERMIT Service temporarily unavailable",
            "an authenticated sender's send rate"
        );
        assert_eq!(post_new(d, ""), 503);
        let out = d.cli(&["user", "list"]);
        assert_eq!(out.status.code(), Some(3), "the CLI says: try again");
    }

    pg.start_again();
    for d in [&a, &b] {
        eventually_within(Duration::from_secs(10), "the host answers again", || {
            passdb_once(&d.dict_socket, "alice@example.org", PW)
                .starts_with('O')
                .then_some(())
        });
        assert!(sasl(d, "alice@example.org", PW).starts_with("OK\t1"));
        assert_eq!(policy(d, "alice@example.org"), "DUNNO");
    }
    assert!(a.is_running() && b.is_running(), "no host restarted");
    // Nothing was created while the database was away.
    assert_eq!(accounts(&a), vec!["alice@example.org"]);
}

#[test]
fn database_copy_moves_a_sqlite_installation_and_the_old_passwords_log_in() {
    let sqlite = TestDaemon::configure("open", &[]);
    add_with_password(&sqlite, "alice@example.org", PW);
    add_with_password(&sqlite, "bob@example.org", "bob's own good password");
    sqlite.cli_ok(&[
        "blocklist",
        "add",
        "mallory@example.org",
        "--reason",
        "spam",
    ]);
    sqlite.cli_ok(&["token", "create", "--uses", "3"]);
    sqlite.cli_ok(&["registration", "set", "invite_only"]);

    let pg = PgServer::start();
    let url = pg.create_database("moved");
    let out = sqlite.cli_ok(&["database", "copy", "--to", &url]);
    assert_eq!(
        out.trim(),
        "copied 2 accounts, 1 invites, 1 blocklist entries, 1 settings, 0 queued mail homes"
    );
    // Not into a database that holds rows, unless told.
    let again = sqlite.cli(&["database", "copy", "--to", &url]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    sqlite.cli_ok(&["database", "copy", "--to", &url, "--force"]);

    let host = on_postgres("open", &url, &[]);
    let dovecot = Dovecot::start(&host);
    login_ok(&dovecot, "alice@example.org", PW);
    login_ok(&dovecot, "bob@example.org", "bob's own good password");
    login_refused(&dovecot, "alice@example.org", "bob's own good password");
    // The run-time mode came along: invite_only creates nothing on login.
    login_refused(&dovecot, "carol@example.org", PW);
    assert_eq!(
        policy(&host, "mallory@example.org"),
        "REJECT 5.7.1 Recipient address is blocked"
    );
    // New rows continue after the copied ids.
    host.cli_ok(&["token", "create", "--uses", "1"]);
    assert_eq!(pg.count("moved", "SELECT COUNT(*) FROM tokens"), 2);
    assert_eq!(pg.count("moved", "SELECT MAX(id) FROM tokens"), 2);
    // The audit trail came along (two accounts, the blocklist entry, the invite, the
    // mode), and the new invite's record follows it.
    assert_eq!(pg.count("moved", "SELECT COUNT(*) FROM audit_log"), 6);
    assert_eq!(
        pg.count(
            "moved",
            "SELECT id FROM audit_log WHERE action = 'invite_create' ORDER BY id DESC LIMIT 1"
        ),
        6
    );
    let cli_only = configure_on_postgres("open", &url, &[]);
    assert_eq!(
        accounts(&cli_only),
        vec!["alice@example.org", "bob@example.org"]
    );
}
