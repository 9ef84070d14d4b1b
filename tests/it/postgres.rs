//! Several mail hosts on one PostgreSQL database: two `postern serve` daemons, each with
//! its own real Dovecot 2.3, share a database on a real PostgreSQL server from Debian's
//! packages (started in a temporary directory). What one host creates, blocks or uses up
//! holds on the other at once; a database that goes away is a temporary failure on every
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
    let s = UnixStream::connect(&d.policy_socket).expect("connect policy");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut r = BufReader::new(s);
    let block = format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address=192.0.2.7\nclient_name=mx.example.net\nhelo_name=mx.example.net\n\
         sender=someone@example.net\nrecipient={recipient}\nrecipient_count=0\n\
         instance=a1.1\nsize=100\nsasl_username=\n\n"
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
            format!("AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp={resp}\n")
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
