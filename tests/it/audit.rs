//! The audit trail end to end: operator actions through the built `postern` binary and
//! through the admin page in a real headless Chromium, read back with `postern audit`
//! and on `/admin/audit`, each one a syslog line, and no password or invite code in the
//! rows, the database file or the log.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::browser::Browser;
use crate::support::TestDaemon;

/// A syslog socket; a thread collects its datagrams as lines.
struct Syslog {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Syslog {
    fn bind(path: &Path) -> Syslog {
        let sock = UnixDatagram::bind(path).expect("bind syslog socket");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                l.lock().expect("lines").push(line);
            }
        });
        Syslog { lines }
    }

    /// The `event=audit` lines, once there are `n` of them (or 10 s have passed).
    fn audit_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<String> = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .filter(|l| l.contains("event=audit "))
                .cloned()
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn all(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }
}

/// A daemon configuration logging to a syslog socket of the test's own, for the daemon
/// and the CLI alike.
fn with_syslog(mode: &str, dir: &Path) -> (TestDaemon, Syslog) {
    let path = dir.join("log.sock");
    let syslog = Syslog::bind(&path);
    let path = path.to_string_lossy().into_owned();
    let d = TestDaemon::configure(
        mode,
        &[
            ("POSTERN_LOG__TARGET", "syslog"),
            ("POSTERN_LOG__SYSLOG_SOCKET", &path),
            ("POSTERN_LOG__LEVEL", "info"),
        ],
    );
    (d, syslog)
}

/// The Unix user this test runs as, as the CLI names it.
fn unix_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .expect("user lookup")
        .map_or_else(|| format!("uid{}", uid.as_raw()), |u| u.name)
}

/// Every byte of the database files (the WAL too), as text where it is text.
fn database_bytes(d: &TestDaemon) -> String {
    let mut all = String::new();
    for name in ["postern.db", "postern.db-wal"] {
        if let Ok(bytes) = std::fs::read(d.dir.join(name)) {
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    all
}

/// (actor, action, target, old, new) of `postern audit --json`, oldest first.
fn trail(d: &TestDaemon, args: &[&str]) -> Vec<[String; 5]> {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let v = d.cli_json(&all);
    let text = |e: &Value, k: &str| e[k].as_str().unwrap_or("").to_owned();
    let mut rows: Vec<[String; 5]> = v
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| {
            [
                format!("{}:{}", text(e, "actor"), text(e, "actor_name")),
                text(e, "action"),
                text(e, "target"),
                text(e, "old"),
                text(e, "new"),
            ]
        })
        .collect();
    rows.reverse();
    rows
}

fn row(actor: &str, action: &str, target: &str, old: &str, new: &str) -> [String; 5] {
    [actor, action, target, old, new].map(str::to_owned)
}

const ALICE_PW: &str = "alice secret one";
const ALICE_PW2: &str = "alice secret two";

#[test]
fn audit_records_each_cli_action_with_the_unix_user_and_no_secret() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (d, syslog) = with_syslog("invite_only", tmp.path());
    let alice = "alice@example.org";
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(d.cli_stdin(
        &["user", "add", alice, "--password-stdin"],
        &format!("{ALICE_PW}\n"),
    ));
    ok(d.cli_stdin(
        &["user", "passwd", alice, "--password-stdin"],
        &format!("{ALICE_PW2}\n"),
    ));
    let generated = d.cli_ok(&["user", "passwd", alice, "--random"]);
    let generated = generated
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a generated password")
        .to_owned();
    d.cli_ok(&["user", "quota", alice, "1G"]);
    d.cli_ok(&["user", "admin", alice, "--revoke"]);
    d.cli_ok(&["user", "block", alice, "--reason", "spam run"]);
    d.cli_ok(&["user", "unblock", alice]);
    // Not blocked any more: nothing changes, nothing is recorded.
    d.cli_ok(&["user", "unblock", alice]);
    d.cli_ok(&["blocklist", "add", "eve@example.org"]);
    d.cli_ok(&["blocklist", "remove", "eve@example.org"]);
    let invite = d.cli_json(&["token", "create", "--comment", "for Dave"]);
    let code = invite["code"].as_str().expect("code").to_owned();
    let id = invite["id"].as_i64().expect("id");
    d.cli_ok(&["token", "revoke", &code]);
    d.cli_ok(&["registration", "set", "open"]);
    d.cli_ok(&["registration", "reset"]);
    ok(d.cli_stdin(
        &["user", "add", "bob@example.org", "--password-stdin"],
        "bob secret pw\n",
    ));
    d.cli_ok(&["user", "delete", "bob@example.org", "--yes", "--keep-mail"]);
    let src = d.dir.join("chatmail");
    std::fs::create_dir_all(src.join("carol@example.org")).expect("mkdir");
    let hash = sha_crypt::sha512_simple(
        "carol pw",
        &sha_crypt::Sha512Params::new(1000).expect("params"),
    )
    .expect("hash");
    std::fs::write(src.join("carol@example.org/password"), hash).expect("write");
    d.cli_ok(&["import", "chatmail", src.to_str().expect("utf-8")]);
    // The revoked invite is purged by maintenance once its grace (7 days) is over.
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 8 * 86400)
        .to_string();
    d.cli_ok(&["maintenance", "run", "--at", &later]);

    let c = format!("cli:{}", unix_user());
    let m = format!("maintenance:{}", unix_user());
    let invite = format!("invite:{id}");
    let expected = vec![
        row(&c, "account_add", alice, "", "quota=default admin=yes"),
        row(&c, "password_change", alice, "", "changed"),
        row(&c, "password_change", alice, "", "generated"),
        row(&c, "quota_change", alice, "default", "1G"),
        row(&c, "admin_flag", alice, "yes", "no"),
        row(
            &c,
            "account_block",
            alice,
            "not blocked",
            "blocked: spam run",
        ),
        row(
            &c,
            "account_unblock",
            alice,
            "blocked: spam run",
            "not blocked",
        ),
        row(
            &c,
            "blocklist_add",
            "eve@example.org",
            "not blocked",
            "blocked",
        ),
        row(
            &c,
            "blocklist_remove",
            "eve@example.org",
            "blocked",
            "not blocked",
        ),
        row(
            &c,
            "invite_create",
            &invite,
            "",
            "uses=1 expires=never comment=for Dave",
        ),
        row(
            &c,
            "invite_revoke",
            &invite,
            "status=active comment=for Dave",
            "status=revoked",
        ),
        row(
            &c,
            "registration_mode",
            "registration",
            "configured (invite_only)",
            "open",
        ),
        row(
            &c,
            "registration_mode",
            "registration",
            "open",
            "configured (invite_only)",
        ),
        // No administrator is left (alice's flag is revoked): bob becomes one.
        row(
            &c,
            "account_add",
            "bob@example.org",
            "",
            "quota=default admin=yes",
        ),
        row(
            &c,
            "account_delete",
            "bob@example.org",
            "account admin=yes",
            "mail=kept address=blocked",
        ),
        row(&c, "import", "", "", "imported=1 skipped=0"),
        row(
            &m,
            "invite_purge",
            "",
            &format!("invites={id}"),
            "deleted=1",
        ),
    ];
    assert_eq!(trail(&d, &[]), expected);

    // Filters: --address, --since, --limit; bad input is a usage error.
    assert_eq!(
        trail(&d, &["--address", "EVE@example.org"]),
        expected[7..9].to_vec()
    );
    assert_eq!(trail(&d, &["--since", "24h"]).len(), expected.len());
    assert_eq!(
        trail(&d, &["--limit", "1"]),
        expected[expected.len() - 1..].to_vec()
    );
    let bad = d.cli(&["audit", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--since"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let text = d.cli_ok(&["audit", "--address", alice]);
    assert!(
        text.contains(&format!("  {c}  quota_change  {alice}  default -> 1G\n")),
        "{text}"
    );

    // One syslog line per recorded action.
    let lines = syslog.audit_lines(expected.len());
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    assert!(
        lines[3].contains(&format!(
            "event=audit actor={c} action=quota_change target={alice} old=default new=1G"
        )),
        "{}",
        lines[3]
    );

    // No password and no invite code anywhere: rows, database file, log.
    let rows = d.cli_ok(&["audit", "--json"]);
    let stored = database_bytes(&d);
    let log = syslog.all();
    for secret in [
        ALICE_PW,
        ALICE_PW2,
        generated.as_str(),
        code.as_str(),
        "bob secret pw",
    ] {
        assert!(!rows.contains(secret), "a secret in `postern audit`");
        assert!(!stored.contains(secret), "a secret in the database");
        assert!(!log.contains(secret), "a secret in the log");
    }
}

const BOSS_PW: &str = "boss secret password";
const NEW_PW: &str = "dave typed this password";
/// What the browser test does on the admin page, in order.
const ADMIN_ACTIONS: [&str; 7] = [
    "account_add",
    "account_block",
    "account_unblock",
    "invite_create",
    "invite_revoke",
    "blocklist_add",
    "registration_mode",
];

#[test]
fn browser_admin_actions_are_on_the_audit_page_and_in_the_log_without_secrets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut d, syslog) = with_syslog("invite_only", tmp.path());
    let out = d.cli_stdin(
        &[
            "user",
            "add",
            "boss@example.org",
            "--password-stdin",
            "--admin",
        ],
        &format!("{BOSS_PW}\n"),
    );
    assert!(out.status.success());
    d.spawn();
    let b = Browser::start("audit");
    let base = format!("http://{}", d.http);

    b.goto(&format!("{base}/admin/login"));
    b.fill("#address", "boss@example.org");
    b.fill("#password", BOSS_PW);
    b.click("form[action='/admin/login'] button");
    b.find("table#accounts");

    // An account with a password typed in, then its quota, admin flag, block and unblock.
    b.fill("#new-address", "dave");
    b.fill("#new-password", NEW_PW);
    b.fill("#new-quota", "500M");
    b.click("form[action='/admin/accounts'][method='post'] button");
    b.find("form[action$='/block']");
    b.fill("#reason", "spam <b>run</b>");
    b.click("form[action$='/block'] button");
    b.find("form[action$='/unblock']");
    b.click("form[action$='/unblock'] button");
    b.find("form[action$='/block']");

    // An invite, then revoked.
    b.goto(&format!("{base}/admin/invites"));
    b.fill("#comment", "for Erin");
    b.click("form[action='/admin/invites'] button");
    let link = b.text("#invite-link");
    let code = link
        .split_once("token=")
        .map(|(_, c)| c.to_owned())
        .expect("a code in the link");
    b.goto(&format!("{base}/admin/invites"));
    b.click("form[action$='/revoke'] button");
    // The invites page is there before the click too: wait for the answer's flash.
    b.find_text(".flash", "revoked");

    // The blocklist and the registration mode.
    b.goto(&format!("{base}/admin/blocklist"));
    b.fill("#block-address", "eve@example.org");
    b.click("form[action='/admin/blocklist'] button");
    b.find("tr[data-address='eve@example.org']");
    b.goto(&format!("{base}/admin/registration"));
    b.click("form[action='/admin/registration'] input[value='open']");
    b.click("form[action='/admin/registration'] button");
    b.find_text(".flash", "Registration is now open");

    // The audit page, linked from the navigation.
    b.click("nav a[href='/admin/audit']");
    b.find("table#audit");
    b.screenshot("1-audit");
    let actions: Vec<String> = ADMIN_ACTIONS
        .iter()
        .map(|a| b.text(&format!("tr[data-action='{a}'] td.who")))
        .collect();
    assert!(
        actions.iter().all(|who| who == "admin: boss@example.org"),
        "{actions:?}"
    );
    assert_eq!(
        b.text("tr[data-action='account_block'] td.new"),
        "blocked: spam <b>run</b>",
        "escaped, shown as typed"
    );
    assert_eq!(
        b.text("tr[data-action='account_add'] td.new"),
        "quota=500M admin=no"
    );
    assert_eq!(
        b.text("tr[data-action='registration_mode'] td.old"),
        "configured (invite_only)"
    );
    let page = b.source();
    assert!(!page.contains("<b>run</b>"), "unescaped markup on the page");

    // Filtered by an address.
    b.fill("#audit-address", "eve@example.org");
    b.click("form[action='/admin/audit'] button");
    b.find("tr[data-action='blocklist_add']");
    assert!(b.try_find("tr[data-action='account_add']").is_none());
    b.screenshot("2-filtered");

    // The same rows through the CLI, one syslog line each, and no secret anywhere.
    let rows = d.cli_json(&["audit"]);
    let rows = rows.as_array().expect("array");
    let by_admin: Vec<&str> = rows
        .iter()
        .rev()
        .filter(|r| r["actor"] == "admin" && r["actor_name"] == "boss@example.org")
        .map(|r| r["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(by_admin, ADMIN_ACTIONS);
    // The admin account itself was added with the CLI.
    assert_eq!(rows.len(), by_admin.len() + 1, "{rows:#?}");
    let lines = syslog.audit_lines(rows.len());
    assert_eq!(lines.len(), rows.len(), "{lines:#?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("event=audit actor=admin:boss@example.org "))
            .count(),
        by_admin.len()
    );
    let (text, stored, log) = (
        serde_json::to_string(&rows).expect("json"),
        database_bytes(&d),
        syslog.all(),
    );
    for secret in [BOSS_PW, NEW_PW, code.as_str()] {
        assert!(!text.contains(secret), "a secret in the audit rows");
        assert!(!stored.contains(secret), "a secret in the database");
        assert!(!log.contains(secret), "a secret in the log");
        assert!(!page.contains(secret), "a secret on the audit page");
    }

    // Paged: 50 to a page, newest first. 45 more actions make 53.
    for i in 0..45 {
        d.cli_ok(&["blocklist", "add", &format!("spam{i}@example.org")]);
    }
    b.goto(&format!("{base}/admin/audit"));
    let rows_on = |b: &Browser| b.source().matches("<tr data-id=").count();
    assert_eq!(rows_on(&b), 50);
    assert!(b.try_find("#audit-newer").is_none());
    assert_eq!(
        b.text("#audit tbody tr:first-child td.target"),
        "spam44@example.org"
    );
    b.click("#audit-older");
    b.find("#audit-newer");
    assert!(b.try_find("#audit-older").is_none());
    assert_eq!(rows_on(&b), 3);
    // The oldest three: boss added with the CLI, then dave and his block on the page.
    assert_eq!(
        b.text("#audit tbody tr:last-child td.who"),
        format!("cli: {}", unix_user())
    );
    assert_eq!(
        b.text("#audit tbody tr:first-child td.action"),
        "account_block"
    );
    b.screenshot("3-page-2");
}
