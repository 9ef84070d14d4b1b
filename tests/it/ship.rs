//! Running postern as a service: reload, graceful stop, syslog, maintenance, imports,
//! statistics.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{accounts, passdb_once, DictClient, TestDaemon};

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_applies_a_new_registration_mode_and_refuses_a_broken_config() {
    let mut d = TestDaemon::start("invite_only");
    assert_eq!(
        passdb_once(&d.dict_socket, "alice@example.org", "reload password"),
        "N"
    );
    let original = std::fs::read_to_string(&d.config).expect("config");
    std::fs::write(
        &d.config,
        original.replace("mode = \"invite_only\"", "mode = \"open\""),
    )
    .expect("write");
    // A connection open across the reload keeps working.
    let mut held = DictClient::connect(&d.dict_socket);
    d.signal(Signal::SIGHUP);
    wait_for("the reload", || d.log().contains("event=reload result=ok"));
    assert!(
        held.passdb("alice@example.org", "reload password")
            .starts_with('O'),
        "open after reload"
    );

    std::fs::write(
        &d.config,
        "domains = [\"example.org\"]\n[registration]\nmode = \"sometimes\"\n",
    )
    .expect("write");
    d.signal(Signal::SIGHUP);
    wait_for("the refused reload", || {
        d.log().contains("event=reload result=fail")
    });
    assert!(
        d.is_running(),
        "a broken config on reload does not stop the daemon"
    );
    // The old configuration is still in force: open, and the same sockets.
    assert!(passdb_once(&d.dict_socket, "bob@example.org", "reload password").starts_with('O'));
    assert!(held.userdb("bob@example.org").starts_with('O'));
}

#[test]
fn sigterm_answers_requests_in_flight_then_exits_zero_and_removes_sockets() {
    // Costly hashes, so first logins are still being checked when SIGTERM arrives.
    let mut d = TestDaemon::start_with(
        "open",
        &[
            ("POSTERN_ARGON2__MEMORY_KIB", "8192"),
            ("POSTERN_ARGON2__ITERATIONS", "2"),
        ],
    );
    let mut clients: Vec<DictClient> = (0..6).map(|_| d.dict()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let key = format!("shared/passdb/inflight pw {i}\"user{i}@example.org");
        c.send(&format!("L{key}\tuser{i}@example.org"));
    }
    // Long enough for the daemon to accept and read the six requests on a loaded
    // machine; six such hashes on two cores (an unoptimized build) take longer, so they
    // are still in flight, and well under the drain deadline.
    std::thread::sleep(Duration::from_millis(200));
    let status = d.stop().expect("exit status");
    for (i, c) in clients.iter_mut().enumerate() {
        let reply = c.read_line().unwrap_or_default();
        assert_eq!(
            reply,
            format!(r#"O{{"nopassword":"Y","user":"user{i}@example.org"}}"#)
        );
    }
    assert!(status.success(), "exit status {status}");
    assert!(!d.dict_socket.exists() && !d.auth_socket.exists() && !d.policy_socket.exists());
}

#[test]
fn a_stale_socket_is_replaced_but_a_live_one_is_not() {
    let d = TestDaemon::start("open");
    // A second daemon on the same sockets must refuse to start.
    let out = d.cli(&["serve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another process is listening"));
    assert_eq!(
        d.dict().userdb("ghost@example.org"),
        "N",
        "the first one still serves"
    );
}

fn syslog_lines(sock: &UnixDatagram, wait: Duration) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + wait;
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    lines
}

fn failed_smtp_login(d: &TestDaemon) {
    use base64::Engine;
    use std::io::{BufRead, BufReader, Write};
    let s = std::os::unix::net::UnixStream::connect(&d.auth_socket).expect("connect");
    let mut r = BufReader::new(s);
    let resp =
        base64::engine::general_purpose::STANDARD.encode("\0alice@example.org\0wrong password");
    r.get_mut()
        .write_all(format!("VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.7\tresp={resp}\n").as_bytes())
        .expect("write");
    let mut line = String::new();
    while !line.starts_with("FAIL") {
        line.clear();
        r.read_line(&mut line).expect("read");
    }
}

#[test]
fn logs_reach_syslog_with_the_mail_facility_and_no_log_hides_addresses() {
    for no_log in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock_path = dir.path().join("log.sock");
        let sock = UnixDatagram::bind(&sock_path).expect("bind syslog");
        let path = sock_path.to_string_lossy().into_owned();
        let no_log_value = no_log.to_string();
        let d = TestDaemon::start_with(
            "open",
            &[
                ("POSTERN_LOG__TARGET", "syslog"),
                ("POSTERN_LOG__SYSLOG_SOCKET", &path),
                ("POSTERN_LOG__LEVEL", "info"),
                ("POSTERN_LOG__NO_LOG", &no_log_value),
            ],
        );
        assert!(
            passdb_once(&d.dict_socket, "alice@example.org", "syslog password").starts_with('O')
        );
        failed_smtp_login(&d);
        let lines = syslog_lines(&sock, Duration::from_millis(1500));
        let failed = lines
            .iter()
            .find(|l| l.contains("event=login result=fail"))
            .unwrap_or_else(|| panic!("no failed-login line in {lines:?}"));
        // <22>: facility mail (2), severity info (6).
        assert!(failed.starts_with("<22>"), "{failed}");
        assert!(failed.contains("postern["), "{failed}");
        assert!(
            lines.iter().any(|l| l.contains("event=register route=jit")),
            "{lines:?}"
        );
        for l in &lines {
            assert!(
                !l.contains("syslog password") && !l.contains("wrong password"),
                "password in {l}"
            );
        }
        if no_log {
            for l in &lines {
                assert!(
                    !l.contains("alice") && !l.contains("192.0.2.7"),
                    "no_log leaked: {l}"
                );
            }
        } else {
            assert!(
                failed.contains("address=alice@example.org") && failed.contains("ip=192.0.2.7"),
                "{failed}"
            );
        }
    }
}

#[test]
fn maintenance_deletes_exactly_the_inactive_accounts_and_dry_run_nothing() {
    let d = TestDaemon::start_with(
        "open",
        &[("POSTERN_MAINTENANCE__DELETE_INACTIVE_AFTER", "90d")],
    );
    // The first account is the administrator; maintenance never deletes administrators.
    let out = d.cli_stdin(
        &["user", "add", "boss@example.org", "--password-stdin"],
        "boss password 1\n",
    );
    assert!(out.status.success());
    assert!(passdb_once(&d.dict_socket, "boss@example.org", "boss password 1").starts_with('O'));
    for u in ["old1", "old2"] {
        assert!(passdb_once(
            &d.dict_socket,
            &format!("{u}@example.org"),
            "maintenance pw"
        )
        .starts_with('O'));
    }
    d.cli_ok(&["user", "add", "kept@example.org", "--random"]); // never logged in, made by the operator
    let home = d.vmail.join("example.org/old1/Maildir/new");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join("1.x"), "mail").expect("write");
    let now = d.cli_json(&["user", "show", "old1@example.org"])["last_login"]
        .as_i64()
        .expect("last login");

    // 89 days later nothing is due; 91 days later both logged-in accounts are.
    let at = |days: i64| (now + days * 86400).to_string();
    let out = d.cli_ok(&["maintenance", "run", "--dry-run", "--at", &at(89)]);
    assert!(!out.contains("would delete"), "{out}");
    let out = d.cli_ok(&["maintenance", "run", "--dry-run", "--at", &at(91)]);
    assert!(
        out.contains("would delete old1@example.org (inactive)")
            && out.contains("would delete old2@example.org"),
        "{out}"
    );
    assert_eq!(
        d.cli_json(&["user", "list"]).as_array().map(Vec::len),
        Some(4),
        "dry run deletes nothing"
    );
    assert!(home.exists());

    let out = d.cli_ok(&["maintenance", "run", "--at", &at(91)]);
    assert!(out.contains("deleted old1@example.org (inactive)"), "{out}");
    assert_eq!(accounts(&d), vec!["boss@example.org", "kept@example.org"]);
    assert!(
        !d.vmail.join("example.org/old1").exists(),
        "mail home removed"
    );
    // A deleted address cannot be registered by a stranger.
    assert_eq!(
        passdb_once(&d.dict_socket, "old1@example.org", "maintenance pw"),
        "N"
    );
}

#[test]
fn import_chatmail_accounts_log_in_with_their_old_passwords() {
    let d = TestDaemon::start("closed");
    let src = d.dir.join("chatmail-mailboxes");
    let hash = |pw: &str| {
        sha_crypt::sha512_simple(pw, &sha_crypt::Sha512Params::new(5000).expect("params"))
            .expect("hash")
    };
    for (addr, content) in [
        (
            "k3x9q2m1a@example.org",
            format!("{{SHA512-CRYPT}}{}\n", hash("old chatmail pw 1")),
        ),
        ("z8y7x6w5v@example.org", hash("old chatmail pw 2")),
        ("someone@other.org", hash("whatever")),
        ("broken@example.org", "not a hash".to_owned()),
    ] {
        std::fs::create_dir_all(src.join(addr)).expect("mkdir");
        std::fs::write(src.join(addr).join("password"), content).expect("write");
    }
    std::fs::create_dir_all(src.join("nopassword@example.org")).expect("mkdir");
    let out = d.cli_ok(&["import", "chatmail", src.to_str().expect("utf-8")]);
    assert!(out.contains("imported 2 account(s)"), "{out}");
    assert!(
        out.contains("skipped someone@other.org") && out.contains("skipped broken@example.org"),
        "{out}"
    );
    assert_eq!(
        d.cli_json(&["user", "show", "k3x9q2m1a@example.org"])["created_via"],
        "import"
    );
    for (addr, pw) in [
        ("k3x9q2m1a@example.org", "old chatmail pw 1"),
        ("z8y7x6w5v@example.org", "old chatmail pw 2"),
    ] {
        assert_eq!(passdb_once(&d.dict_socket, addr, "wrong"), "N");
        assert!(
            passdb_once(&d.dict_socket, addr, pw).starts_with('O'),
            "{addr}"
        );
        // Re-hashed to argon2id by now; the password still works.
        assert!(
            passdb_once(&d.dict_socket, addr, pw).starts_with('O'),
            "{addr} after re-hash"
        );
    }
    // Importing again changes nothing.
    let out = d.cli_ok(&["import", "chatmail", src.to_str().expect("utf-8")]);
    assert!(out.contains("imported 0 account(s)"), "{out}");
}

#[test]
fn stats_count_accounts_routes_storage_and_invites() {
    let d = TestDaemon::start("open");
    assert!(passdb_once(&d.dict_socket, "alice@example.org", "stats password").starts_with('O'));
    d.cli_ok(&[
        "user",
        "add",
        "bob@example.org",
        "--random",
        "--quota",
        "1G",
    ]);
    d.cli_ok(&["user", "block", "bob@example.org"]);
    d.cli_ok(&["token", "create", "--uses", "2"]);
    let revoked = d.cli_json(&["token", "create"]);
    d.cli_ok(&["token", "revoke", &revoked["id"].to_string()]);
    let s = d.cli_json(&["stats"]);
    assert_eq!(s["accounts"]["total"], 2);
    assert_eq!(s["accounts"]["blocked"], 1);
    assert_eq!(s["accounts"]["admins"], 1);
    assert_eq!(s["created"]["jit"]["last_day"], 1);
    assert_eq!(s["created"]["cli"]["last_week"], 1);
    assert_eq!(s["storage"]["quota_bytes"], (500u64 << 20) + (1u64 << 30));
    assert_eq!(
        (
            s["tokens"]["active"].as_i64(),
            s["tokens"]["revoked"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let text = d.cli_ok(&["stats"]);
    assert!(
        text.contains("accounts:   2 (1 blocked, 1 admin)"),
        "{text}"
    );
}
