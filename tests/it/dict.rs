//! The dict proxy service over its real Unix socket, driven the way Dovecot 2.3 drives
//! it (one new connection per lookup, `H3` hello first).

use std::time::{Duration, Instant};

use crate::support::{accounts, passdb_once, DictClient, TestDaemon};

const OK_ALICE: &str = r#"O{"nopassword":"Y","user":"alice@example.org"}"#;

#[test]
fn hello_alone_gets_no_output() {
    let d = TestDaemon::start("open");
    let mut c = d.dict();
    assert!(c.is_silent(Duration::from_millis(300)));
    // ...and the connection still answers afterwards.
    assert_eq!(c.userdb("nobody@example.org"), "N");
}

#[test]
fn unknown_userdb_is_not_found_and_unknown_key_fails_without_closing() {
    let d = TestDaemon::start("open");
    let mut c = d.dict();
    assert_eq!(c.userdb("ghost@example.org"), "N");
    assert!(c.lookup("shared/something/else", "").starts_with('F'));
    c.send("Xgarbage");
    assert!(c.read_line().expect("reply").starts_with('F'));
    assert_eq!(c.userdb("ghost@example.org"), "N");
}

#[test]
fn first_login_with_awkward_password_creates_and_logs_in_again() {
    let d = TestDaemon::start("open");
    let pw = r#"back\slash "quoted" it's a/b c"#;
    assert_eq!(
        passdb_once(&d.dict_socket, "alice@example.org", pw),
        OK_ALICE
    );
    assert_eq!(
        passdb_once(&d.dict_socket, "Alice@Example.org", pw),
        OK_ALICE
    );
    let show = d.cli_json(&["user", "show", "alice@example.org"]);
    assert_eq!(show["created_via"], "jit");
    // A different password fails and creates nothing.
    assert_eq!(
        passdb_once(&d.dict_socket, "alice@example.org", "another password"),
        "N"
    );
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
    // The userdb entry is there, with home and quota.
    let reply = d.dict().userdb("alice@example.org");
    let json: serde_json::Value =
        serde_json::from_str(reply.strip_prefix('O').expect("O")).expect("json");
    assert_eq!(
        json["home"],
        format!("{}/example.org/alice", d.vmail.display())
    );
    assert_eq!(json["uid"], "65534");
    assert_eq!(json["quota_rule"], format!("*:storage={}B", 500u64 << 20));
}

#[test]
fn escaped_tab_and_newline_in_a_password_stay_one_field() {
    let d = TestDaemon::start("open");
    // TAB and LF arrive 0x01-escaped; decoded, they are control characters, which new
    // passwords may not contain: refused, nothing created, and the stream stays in sync.
    let mut c = d.dict();
    assert_eq!(c.passdb("carol@example.org", "tab\there and\nnewline"), "N");
    assert_eq!(c.passdb("carol@example.org", "tab\there"), "N");
    assert_eq!(c.userdb("carol@example.org"), "N");
    assert!(accounts(&d).is_empty());
}

#[test]
fn two_accounts_may_share_a_password() {
    let d = TestDaemon::start("open");
    assert!(passdb_once(&d.dict_socket, "alice@example.org", "same password").starts_with('O'));
    assert!(passdb_once(&d.dict_socket, "bob@example.org", "same password").starts_with('O'));
    assert!(passdb_once(&d.dict_socket, "alice@example.org", "same password").starts_with('O'));
    assert_eq!(accounts(&d).len(), 2);
}

#[test]
fn ten_concurrent_first_logins_give_one_account_and_ten_successes() {
    let d = TestDaemon::start("open");
    let socket = d.dict_socket.clone();
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || passdb_once(&socket, "alice@example.org", "concurrent pw"))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), OK_ALICE);
    }
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
}

#[test]
fn fifty_clients_creating_five_accounts_each_give_250_accounts() {
    let d = TestDaemon::start("open");
    let socket = d.dict_socket.clone();
    let handles: Vec<_> = (0..50)
        .map(|client| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                for n in 0..5 {
                    let user = format!("user{client}x{n}@example.org");
                    let reply = passdb_once(&socket, &user, "load test password");
                    assert!(reply.starts_with('O'), "{user}: {reply}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("no client saw an error");
    }
    assert_eq!(accounts(&d).len(), 250);
}

#[test]
fn iteration_lists_every_account_then_an_empty_line() {
    let d = TestDaemon::start("open");
    for u in ["carol", "alice", "bob"] {
        assert!(
            passdb_once(&d.dict_socket, &format!("{u}@example.org"), "iterate pw 1")
                .starts_with('O')
        );
    }
    let mut c = d.dict();
    c.send("I0\t0\tshared/userdb/");
    let mut rows = Vec::new();
    loop {
        let line = c
            .read_line()
            .expect("iteration must end with an empty line");
        if line.is_empty() {
            break;
        }
        rows.push(line);
    }
    assert_eq!(
        rows,
        vec![
            "Oshared/userdb/alice@example.org\t",
            "Oshared/userdb/bob@example.org\t",
            "Oshared/userdb/carol@example.org\t"
        ]
    );
    // The connection goes on after an iteration.
    assert_eq!(c.userdb("ghost@example.org"), "N");
}

#[test]
fn last_login_and_quota_clone_transactions_update_the_account() {
    let d = TestDaemon::start("open");
    assert_eq!(
        passdb_once(&d.dict_socket, "alice@example.org", "quota password"),
        OK_ALICE
    );
    let mut c = DictClient::connect(&d.dict_socket);
    c.send("B1\talice@example.org");
    c.send("S1\tshared/last-login/alice@example.org\t1900000000");
    c.send("C1");
    assert!(c.read_line().expect("commit reply").starts_with('O'));
    c.send("B2\talice@example.org");
    c.send("S2\tpriv/quota/storage\t123456");
    c.send("S2\tpriv/quota/messages\t7");
    c.send("C2");
    assert!(c.read_line().expect("commit reply").starts_with('O'));
    let show = d.cli_json(&["user", "show", "alice@example.org"]);
    assert_eq!(show["last_login"], 1_900_000_000);
    assert_eq!(show["used_bytes"], 123_456);
    assert_eq!(show["used_messages"], 7);
    // Increments adjust, and a commit with an unknown key applies nothing.
    c.send("B3\talice@example.org");
    c.send("A3\tpriv/quota/storage\t-456");
    c.send("A3\tpriv/quota/messages\t1");
    c.send("C3");
    assert!(c.read_line().expect("commit reply").starts_with('O'));
    c.send("B4\talice@example.org");
    c.send("S4\tpriv/quota/storage\t1");
    c.send("S4\tpriv/unknown/key\t1");
    c.send("C4");
    assert!(c.read_line().expect("commit reply").starts_with('F'));
    let show = d.cli_json(&["user", "show", "alice@example.org"]);
    assert_eq!(
        (show["used_bytes"].as_i64(), show["used_messages"].as_i64()),
        (Some(123_000), Some(8))
    );
}

#[test]
fn invite_only_and_closed_create_nothing() {
    for mode in ["invite_only", "closed"] {
        let d = TestDaemon::start(mode);
        assert_eq!(
            passdb_once(&d.dict_socket, "alice@example.org", "long enough pw"),
            "N"
        );
        assert!(accounts(&d).is_empty(), "{mode}");
    }
}

#[test]
fn blocked_accounts_get_not_found() {
    let d = TestDaemon::start("open");
    assert_eq!(
        passdb_once(&d.dict_socket, "alice@example.org", "blocked password"),
        OK_ALICE
    );
    d.cli_ok(&["user", "block", "alice@example.org", "--reason", "spam"]);
    assert_eq!(
        passdb_once(&d.dict_socket, "alice@example.org", "blocked password"),
        "N"
    );
    assert_eq!(d.dict().userdb("alice@example.org"), "N");
    d.cli_ok(&["user", "unblock", "alice@example.org"]);
    assert_eq!(
        passdb_once(&d.dict_socket, "alice@example.org", "blocked password"),
        OK_ALICE
    );
}

#[test]
fn over_long_line_gets_f_and_the_connection_closes() {
    let d = TestDaemon::start("open");
    let mut c = d.dict();
    let huge = format!("Lshared/userdb/{}", "a".repeat(200_000));
    c.send(&huge);
    assert!(c.read_line().expect("reply").starts_with('F'));
    assert_eq!(c.read_line(), None);
}

// One local client holding every connection open and idle blocked the dict listener
// for 300 s: a new lookup waited until an idle connection timed out.
#[test]
fn idle_connections_holding_the_cap_no_longer_starve_a_new_lookup() {
    let d = TestDaemon::start_with("open", &[("POSTERN_LISTEN__MAX_CONNECTIONS", "16")]);
    // One after the other, each answered before the next opens: a readiness probe's
    // connection the daemon has not closed yet on a busy machine may still take a place,
    // and then the longest idle one of these makes room early, never one in its first
    // lookup.
    let mut idle: Vec<DictClient> = (0..16)
        .map(|_| {
            let mut c = d.dict();
            assert_eq!(c.userdb("nobody@example.org"), "N");
            c
        })
        .collect();
    let asked = Instant::now();
    assert_eq!(d.dict().userdb("nobody@example.org"), "N");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        asked.elapsed()
    );
    // The connection idle longest made room; the others are still served.
    assert_eq!(idle[0].read_line(), None);
    assert_eq!(idle[15].userdb("nobody@example.org"), "N");
}
