//! The Dovecot auth protocol service over its real socket, as Postfix's smtpd speaks it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::support::TestDaemon;

struct AuthClient {
    reader: BufReader<UnixStream>,
}

impl AuthClient {
    /// Connects and reads the server's handshake up to DONE.
    fn connect(d: &TestDaemon) -> (AuthClient, Vec<String>) {
        let stream = UnixStream::connect(&d.auth_socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut c = AuthClient {
            reader: BufReader::new(stream),
        };
        c.send("VERSION\t1\t0");
        c.send("CPID\t4242");
        let mut hello = Vec::new();
        loop {
            let line = c.line();
            let done = line == "DONE";
            hello.push(line);
            if done {
                break;
            }
        }
        (c, hello)
    }

    fn send(&mut self, line: &str) {
        let s = self.reader.get_mut();
        s.write_all(format!("{line}\n").as_bytes()).expect("write");
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("read");
        l.trim_end_matches('\n').to_owned()
    }

    fn plain(&mut self, id: u32, user: &str, pw: &str) -> String {
        let resp = STANDARD.encode(format!("\0{user}\0{pw}"));
        self.send(&format!(
            "AUTH\t{id}\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp={resp}"
        ));
        self.line()
    }
}

#[test]
fn handshake_is_what_postfix_expects() {
    let d = TestDaemon::start("open");
    let (_, hello) = AuthClient::connect(&d);
    assert_eq!(hello[0], "VERSION\t1\t2");
    assert_eq!(hello[1], "MECH\tPLAIN\tplaintext");
    assert_eq!(hello[2], "MECH\tLOGIN\tplaintext");
    assert!(hello[3].starts_with("SPID\t"));
    assert!(hello[4].starts_with("CUID\t"));
    let cookie = hello[5].strip_prefix("COOKIE\t").expect("cookie");
    assert_eq!(cookie.len(), 32);
    assert!(cookie.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(hello[6], "DONE");
    let (_, again) = AuthClient::connect(&d);
    assert_ne!(again[5], hello[5], "a new cookie per connection");
}

#[test]
fn plain_creates_in_open_mode_then_checks_the_password() {
    let d = TestDaemon::start("open");
    let (mut c, _) = AuthClient::connect(&d);
    assert_eq!(
        c.plain(1, "Alice@example.org", "sasl password 1"),
        "OK\t1\tuser=alice@example.org"
    );
    assert_eq!(
        d.cli_json(&["user", "show", "alice@example.org"])["created_via"],
        "jit"
    );
    assert_eq!(
        c.plain(2, "alice@example.org", "sasl password 1"),
        "OK\t2\tuser=alice@example.org"
    );
    let wrong = c.plain(3, "alice@example.org", "wrong password");
    let unknown_pw = c.plain(4, "ab@example.org", "wrong password"); // invalid name: cannot be created
                                                                     // Same words whether the account exists or not.
    assert_eq!(
        wrong,
        "FAIL\t3\tuser=alice@example.org\treason=Authentication failed"
    );
    assert_eq!(
        unknown_pw,
        "FAIL\t4\tuser=ab@example.org\treason=Authentication failed"
    );
    d.cli_ok(&["user", "block", "alice@example.org"]);
    assert_eq!(
        c.plain(5, "alice@example.org", "sasl password 1"),
        "FAIL\t5\tuser=alice@example.org\treason=Authentication failed"
    );
}

#[test]
fn login_mechanism_and_plain_without_initial_response() {
    let d = TestDaemon::start("open");
    let (mut c, _) = AuthClient::connect(&d);
    c.send("AUTH\t1\tLOGIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1");
    assert_eq!(c.line(), "CONT\t1\tVXNlcm5hbWU6");
    c.send(&format!("CONT\t1\t{}", STANDARD.encode("bob@example.org")));
    assert_eq!(c.line(), "CONT\t1\tUGFzc3dvcmQ6");
    c.send(&format!("CONT\t1\t{}", STANDARD.encode("login password")));
    assert_eq!(c.line(), "OK\t1\tuser=bob@example.org");

    c.send("AUTH\t2\tPLAIN\tservice=smtp");
    assert_eq!(c.line(), "CONT\t2\t");
    c.send(&format!(
        "CONT\t2\t{}",
        STANDARD.encode("\0bob@example.org\0login password")
    ));
    assert_eq!(c.line(), "OK\t2\tuser=bob@example.org");

    c.send("AUTH\t3\tPLAIN\tservice=smtp\tresp=!!notbase64");
    assert_eq!(
        c.line(),
        "FAIL\t3\tcode=invalid_base64\treason=Invalid base64 data in initial response"
    );
    c.send("AUTH\t4\tCRAM-MD5\tservice=smtp");
    assert!(c.line().starts_with("FAIL\t4\t"));
    // The connection is still good.
    assert_eq!(
        c.plain(5, "bob@example.org", "login password"),
        "OK\t5\tuser=bob@example.org"
    );
}

#[test]
fn several_requests_in_flight_are_answered_by_id() {
    let d = TestDaemon::start("open");
    let (mut c, _) = AuthClient::connect(&d);
    for (id, user) in [(7, "carol"), (8, "dave"), (9, "erin")] {
        let resp = STANDARD.encode(format!("\0{user}@example.org\0parallel pw 1"));
        c.send(&format!("AUTH\t{id}\tPLAIN\tservice=smtp\tresp={resp}"));
    }
    let mut got: Vec<String> = (0..3).map(|_| c.line()).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            "OK\t7\tuser=carol@example.org",
            "OK\t8\tuser=dave@example.org",
            "OK\t9\tuser=erin@example.org"
        ]
    );
}

#[test]
fn over_long_line_closes_the_connection() {
    let d = TestDaemon::start("open");
    let (mut c, _) = AuthClient::connect(&d);
    let _ = c
        .reader
        .get_mut()
        .write_all(format!("AUTH\t1\tPLAIN\tresp={}\n", "A".repeat(20_000)).as_bytes());
    let mut rest = String::new();
    let n = c.reader.read_line(&mut rest).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer: {rest}");
}
