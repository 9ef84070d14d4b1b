//! The shipped fail2ban filter and jail, checked with Debian's own `fail2ban-regex` and
//! `fail2ban-client` against a log postern wrote while clients failed to log in with
//! forged-looking names on every route: SMTP AUTH (the auth socket, as Postfix asks),
//! the dict passdb, the Lua auth API and the admin sign-in form.
//!
//! postern logs to a syslog socket the test binds; each datagram goes into the file as
//! a plain receiver would write it (`Dec 02 04:49:57 mx postern[812]: ...`), with no
//! escaping of its own, so a line break inside a message would forge a line.
//!
//! Needs `apt-get install fail2ban` (`.ci/fail2ban.sh`); without it the test fails and
//! says so.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::support::{passdb_once, TestDaemon};
use crate::web::{urlencode, Http};

const FILTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/examples/fail2ban/filter.d/postern.conf"
);
const JAIL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/examples/fail2ban/jail.d/postern.conf"
);
const INSTALL: &str = "install it with `bash .ci/fail2ban.sh` (apt-get install -y fail2ban)";
const PW: &str = "correct horse battery";

/// Usernames that try to forge a line or a field naming an address in 192.0.2.0/24;
/// the real clients are all in 203.0.113.0/24.
const FORGED: &[&str] = &[
    "x\nDec 02 04:49:57 mx postern[1]: event=login result=fail reason=bad_password address=y service=smtp ip=192.0.2.10\ny",
    "eve@example.org service=smtp ip=192.0.2.11",
    "eve ip=192.0.2.12\" ip=192.0.2.13",
    "eve\\\" ip=192.0.2.14 \\",
    "\r\nevent=admin_signin result=ok address=boss@example.org ip=192.0.2.15",
    "event=login result=fail reason=bad_password address=a service=smtp ip=192.0.2.16",
    "tab\there ip=192.0.2.17\u{1b}[1A\u{1b}[2K \u{2028}ip=192.0.2.18",
];

/// A syslog socket whose datagrams become the lines of a log file. A thread reads it
/// all the time, as a syslog daemon does: postern's sends wait while the queue is full.
struct Syslog {
    lines: Arc<Mutex<Vec<String>>>,
    last: Arc<Mutex<Instant>>,
}

impl Syslog {
    fn bind(path: &Path) -> Syslog {
        let sock = UnixDatagram::bind(path).expect("bind syslog socket");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let last = Arc::new(Mutex::new(Instant::now()));
        let (l, t) = (lines.clone(), last.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                let line = as_written(&String::from_utf8_lossy(&buf[..n]));
                l.lock().expect("lines").push(line);
                *t.lock().expect("time") = Instant::now();
            }
        });
        Syslog { lines, last }
    }

    /// Every line so far, once none came for `quiet`.
    fn lines(&self, quiet: Duration) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.last.lock().expect("time").elapsed() < quiet && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.lines.lock().expect("lines").clone()
    }
}

/// A datagram as a receiver writes it to a file: the priority dropped, a host name
/// after the time stamp.
fn as_written(datagram: &str) -> String {
    let text = datagram.split_once('>').map_or(datagram, |(_, rest)| rest);
    // "Dec 02 04:49:57 postern[812]: message": the stamp is 15 characters.
    match (text.get(..15), text.get(16..)) {
        (Some(stamp), Some(rest)) => format!("{stamp} mx {rest}"),
        _ => text.to_owned(),
    }
}

/// `Dec 02 04:49:57 mx postern[812]: ` and the rest of the line.
fn message(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    let stamp = b.len() > 16
        && b[..3].iter().all(u8::is_ascii_alphabetic)
        && b[3] == b' '
        && b[4..6].iter().all(|c| c.is_ascii_digit() || *c == b' ')
        && b[6] == b' '
        && line.get(7..15).is_some_and(|t| {
            t.bytes().enumerate().all(|(i, c)| {
                if i % 3 == 2 {
                    c == b':'
                } else {
                    c.is_ascii_digit()
                }
            })
        });
    let rest = line
        .get(16..)
        .filter(|_| stamp)?
        .strip_prefix("mx postern[")?;
    let (pid, rest) = rest.split_once("]: ")?;
    (!pid.is_empty() && pid.bytes().all(|c| c.is_ascii_digit())).then_some(rest)
}

/// The fields of a message by the filter's grammar: `key=value` separated by single
/// spaces, a value either a plain token or a quoted string with backslash escapes.
/// `None` if the message does not read that way.
fn fields(message: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut rest = message;
    loop {
        let (key, after) = rest.split_once('=')?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return None;
        }
        let end = if let Some(quoted) = after.strip_prefix('"') {
            let mut escaped = false;
            let mut close = None;
            for (i, c) in quoted.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        close = Some(i + 2);
                        break;
                    }
                    c if c.is_control() => return None,
                    _ => {}
                }
            }
            close?
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            let token = &after[..end];
            let plain = |b: u8| b.is_ascii_alphanumeric() || b"@._:+/-".contains(&b);
            if token.is_empty() || !token.bytes().all(plain) {
                return None;
            }
            end
        };
        out.push((key, &after[..end]));
        let tail = &after[end..];
        if tail.is_empty() {
            return Some(out);
        }
        rest = tail.strip_prefix(' ').filter(|r| !r.is_empty())?;
    }
}

/// One SMTP AUTH attempt over the auth socket as Postfix's smtpd makes it.
fn smtp_auth(d: &TestDaemon, mechanism: &str, user: &str, password: &str, rip: &str) -> String {
    let s = UnixStream::connect(&d.auth_socket).expect("connect auth socket");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut r = BufReader::new(s);
    let send = |r: &mut BufReader<UnixStream>, line: &str| {
        r.get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .expect("write");
    };
    send(&mut r, "VERSION\t1\t0");
    send(&mut r, "CPID\t4242");
    let head = format!("AUTH\t1\t{mechanism}\tservice=smtp\tnologin\tlip=127.0.0.1\trip={rip}");
    if mechanism == "PLAIN" {
        let resp = STANDARD.encode(format!("\0{user}\0{password}"));
        send(&mut r, &format!("{head}\tresp={resp}"));
    } else {
        send(&mut r, &head);
        send(&mut r, &format!("CONT\t1\t{}", STANDARD.encode(user)));
        send(&mut r, &format!("CONT\t1\t{}", STANDARD.encode(password)));
    }
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).expect("read") == 0 {
            return line;
        }
        if line.starts_with("OK\t") || line.starts_with("FAIL\t") {
            return line.trim_end().to_owned();
        }
    }
}

/// One passdb request to the Lua auth API, as Dovecot 2.4's helper sends it.
fn lua_api(d: &TestDaemon, user: &str, password: &str, remote_ip: &str) -> String {
    let body = serde_json::json!({
        "user": user, "password": password, "service": "imap", "remote_ip": remote_ip,
    });
    let res = ureq::post(&format!("http://{}/v1/passdb", d.auth_http))
        .set("Authorization", &format!("Bearer {}", d.auth_http_secret))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string());
    let text = res
        .unwrap_or_else(|e| panic!("auth API: {e}"))
        .into_string()
        .expect("answer");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
    answer["result"].as_str().unwrap_or_default().to_owned()
}

/// One admin sign-in through the form, from `client` behind the trusted proxy.
fn admin_sign_in(h: &Http, address: &str, password: &str, client: &str) -> u16 {
    let page = h.get("/admin/login");
    assert_eq!(page.status, 200);
    let token = page.csrf();
    let body = urlencode(&[
        ("address", address),
        ("password", password),
        ("csrf", &token),
    ]);
    h.request(
        "POST",
        "/admin/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &format!("postern_signin={token}")),
            ("X-Forwarded-For", client),
        ],
        body.as_bytes(),
    )
    .status
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}; {INSTALL}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn fail2ban_bans_the_real_clients_and_never_an_address_written_in_a_username() {
    assert!(
        Path::new("/usr/bin/fail2ban-regex").exists(),
        "fail2ban-regex is missing; {INSTALL}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let syslog = Syslog::bind(&dir.path().join("log.sock"));
    let sock = dir.path().join("log.sock").to_string_lossy().into_owned();
    let d = TestDaemon::start_with(
        "invite_only",
        &[
            ("POSTERN_LOG__TARGET", "syslog"),
            ("POSTERN_LOG__SYSLOG_SOCKET", &sock),
            ("POSTERN_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
            ("POSTERN_HTTP__ADMIN_LOGINS_PER_MINUTE", "100"),
        ],
    );
    for (addr, admin) in [("boss@example.org", true), ("alice@example.org", false)] {
        let mut args = vec!["user", "add", addr, "--password-stdin"];
        if admin {
            args.push("--admin");
        }
        let out = d.cli_stdin(&args, &format!("{PW}\n"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let h = Http::new(&d);
    for forged in FORGED {
        assert!(smtp_auth(&d, "PLAIN", forged, "guess", "203.0.113.5").starts_with("FAIL"));
        assert!(smtp_auth(&d, "LOGIN", forged, "guess", "203.0.113.6").starts_with("FAIL"));
        assert!(passdb_once(&d.dict_socket, forged, "guess").starts_with('N'));
        assert_eq!(lua_api(&d, forged, "guess", "203.0.113.30"), "fail");
        assert_eq!(admin_sign_in(&h, forged, "guess", "203.0.113.20"), 403);
        for ip in ["203.0.113.5", "203.0.113.6", "203.0.113.30", "203.0.113.20"] {
            *expected.entry(ip).or_default() += 1;
        }
    }
    // Wrong passwords for a real account, and an ordinary user on the admin page.
    for _ in 0..2 {
        assert!(
            smtp_auth(&d, "PLAIN", "alice@example.org", "guess", "203.0.113.7").starts_with("FAIL")
        );
    }
    expected.insert("203.0.113.7", 2);
    assert_eq!(
        admin_sign_in(&h, "boss@example.org", "guess", "203.0.113.20"),
        403
    );
    *expected.entry("203.0.113.20").or_default() += 1;
    assert_eq!(
        admin_sign_in(&h, "alice@example.org", PW, "203.0.113.21"),
        403
    );
    expected.insert("203.0.113.21", 1);
    // Successes are not failures.
    assert!(smtp_auth(&d, "PLAIN", "alice@example.org", PW, "203.0.113.8").starts_with("OK"));
    assert_eq!(
        admin_sign_in(&h, "boss@example.org", PW, "203.0.113.9"),
        303
    );

    let lines = syslog.lines(Duration::from_millis(1500));
    let log = lines.join("\n") + "\n";
    let log_path = dir.path().join("mail.log");
    std::fs::write(&log_path, &log).expect("write log");

    let out = run(Command::new("fail2ban-regex")
        .arg("-o")
        .arg("ip")
        .arg(&log_path)
        .arg(FILTER));
    let mut matched: BTreeMap<&str, usize> = BTreeMap::new();
    for ip in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        *matched.entry(ip).or_default() += 1;
    }
    assert_eq!(
        matched, expected,
        "fail2ban-regex matched:\n{out}\nin:\n{log}"
    );

    // Every line is one of postern's, made of well-formed fields with one ip= at most.
    for line in log.lines() {
        let msg = message(line).unwrap_or_else(|| panic!("a line not from postern: {line:?}"));
        let f = fields(msg).unwrap_or_else(|| panic!("malformed fields: {line:?}"));
        assert_eq!(f[0].0, "event", "{line:?}");
        assert!(
            f.iter().filter(|(k, _)| *k == "ip").count() <= 1,
            "{line:?}"
        );
    }
    // The forged names did reach the log (inside their quotes).
    for forged in ["192.0.2.11", "192.0.2.15", "192.0.2.18"] {
        assert!(log.contains(forged), "{forged} not logged:\n{log}");
    }

    // The jail loads in fail2ban's own configuration, next to Debian's.
    let conf = dir.path().join("fail2ban");
    run(Command::new("cp").arg("-a").arg("/etc/fail2ban").arg(&conf));
    for entry in std::fs::read_dir(conf.join("jail.d")).expect("jail.d") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove jail");
    }
    std::fs::copy(FILTER, conf.join("filter.d/postern.conf")).expect("copy filter");
    std::fs::copy(JAIL, conf.join("jail.d/postern.conf")).expect("copy jail");
    run(Command::new("fail2ban-client")
        .arg("-c")
        .arg(&conf)
        .arg("-t"));
    let dump = run(Command::new("fail2ban-client")
        .arg("-c")
        .arg(&conf)
        .arg("-d"));
    for want in [
        "['add', 'postern', 'systemd']",
        "['set', 'postern', 'maxretry', 10]",
        "['set', 'postern', 'addjournalmatch', '_SYSTEMD_UNIT=postern.service']",
        "['start', 'postern']",
    ] {
        assert!(dump.contains(want), "{want} not in:\n{dump}");
    }
}

/// Each throttled attempt wrote an INFO line (982 lines for 1000 cheap requests): now
/// one per account or client and window, the rest at DEBUG.
#[test]
fn throttled_attempts_wrote_an_info_line_each() {
    let d = TestDaemon::start_with(
        "invite_only",
        &[
            ("POSTERN_LOG__LEVEL", "info"),
            ("POSTERN_LOGIN__MAX_FAILURES", "3"),
            ("POSTERN_HTTP__NEW_PER_MINUTE", "2"),
            ("POSTERN_HTTP__ADMIN_LOGINS_PER_MINUTE", "2"),
            ("POSTERN_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ],
    );
    for addr in ["alice@example.org", "bob@example.org"] {
        let out = d.cli_stdin(
            &["user", "add", addr, "--password-stdin"],
            &format!("{PW}\n"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let h = Http::new(&d);
    for _ in 0..30 {
        assert!(
            smtp_auth(&d, "PLAIN", "alice@example.org", "guess", "203.0.113.5").starts_with("FAIL")
        );
    }
    for _ in 0..10 {
        assert!(
            smtp_auth(&d, "PLAIN", "bob@example.org", "guess", "203.0.113.5").starts_with("FAIL")
        );
    }
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let new = h.request("POST", "/new", &[("X-Forwarded-For", "203.0.113.6")], b"");
        statuses.push(new.status);
        statuses.push(admin_sign_in(
            &h,
            "carol@example.org",
            "guess",
            "203.0.113.7",
        ));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        56,
        "{statuses:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let log = d.log();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        count("reason=throttled address=alice@example.org"),
        1,
        "{log}"
    );
    assert_eq!(
        count("reason=throttled address=bob@example.org"),
        1,
        "{log}"
    );
    assert_eq!(count("event=new result=throttled"), 1, "{log}");
    assert_eq!(count("event=admin_signin result=throttled"), 1, "{log}");
    // The failures before the throttle are each logged, as fail2ban counts them.
    assert_eq!(
        count("reason=bad_password address=alice@example.org"),
        3,
        "{log}"
    );
}
