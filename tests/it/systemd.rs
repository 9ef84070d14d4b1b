//! The Debian package under a booted systemd, with Dovecot and Postfix as Debian runs
//! them: a bookworm container (systemd 252, Dovecot 2.3, Postfix 3.7 from Debian, no
//! procps), the package built by packaging/build-deb.sh installed in it, and Dovecot and
//! Postfix wired only with the package's examples and the shell blocks of
//! docs/install.md, run as they are printed there (the domain put in). So this test is
//! the proof that the first hour the docs describe works.
//!
//! ```text
//! host: cargo test --test it systemd      container (systemd-nspawn -b, host network)
//!   IMAP client ── 127.0.0.1:<imap> ───▶ dovecot (imap, lmtp as vmail) ─┐ dict.sock
//!   SMTP client ── 127.0.0.1:<smtp> ───▶ postfix smtpd (chroot) ────────┼▶ postern.service
//!                                        postfix lmtp ─▶ dovecot-lmtp  ─┘ (Type=notify)
//! ```
//!
//! Besides the docs' steps the container gets only what a test needs: Dovecot's IMAP and
//! Postfix's SMTP on loopback ports of their own (the container shares the host's
//! network), and `smtpd_tls_auth_only = no` (the test's SMTP client speaks no TLS).
//!
//! Needs root, systemd-nspawn (systemd-container), debootstrap and the root that
//! `.ci/bookworm.sh` caches; without the tools, and outside CI, it says so and passes.
//! Measured on the project's 2-core machine (shared with other builds), with the root
//! cached and a release build of the sources there: about 2 minutes, half of it
//! build-deb.sh repackaging and running lintian (the package test, in the same run,
//! reuses that package), the other half the container: boot 3 to 8 s, the steps, checks,
//! upgrade and purge about 50 s. `.ci/bookworm.sh` builds the root once, in about 2.5
//! minutes (270 MB).
//!
//! Debian trixie boots the same way here: a root made by `debootstrap --variant=minbase
//! --include=systemd,systemd-sysv,dbus trixie DIR` and started with the same
//! `systemd-nspawn -D DIR -b --register=no --keep-unit` reached `is-system-running` =
//! `running` under systemd 257 with no failed unit, and powered off cleanly (checked by
//! hand on 2026-12-02). The test stays on bookworm, the release Dovecot 2.3 operators run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::dovecot::maildir_new_files;
use crate::support::mail_clients::imap_login;
use crate::support::nspawn::{self, output_text, Container};
use crate::support::postfix::SmtpSession;

/// The mail name `.ci/bookworm.sh` gives the root, which postern serves.
const DOMAIN: &str = "chat.postern.test";
/// The domain docs/install.md writes, replaced by [`DOMAIN`] in its commands.
const DOC_DOMAIN: &str = "chat.example.org";
const PW: &str = "correct horse battery";
const MESSAGE: &str = "From: sender@example.net\n\
To: bob@chat.postern.test\n\
Subject: through Postfix\n\
\n\
Delivered by Postfix over LMTP.\n";

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A loopback port in 20000..30000, below the kernel's ephemeral range, so no other
/// test's `free_port()` (port 0) is handed it while the container holds it.
fn quiet_port(taken: &[u16]) -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    loop {
        let port = rng.gen_range(20000..30000);
        if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The shell block that follows `marker` in docs/install.md, with the domain put in.
fn doc_block(doc: &str, marker: &str) -> String {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("docs/install.md has no `{marker}`"));
    let rest = &doc[at..];
    let start = rest
        .find("```sh\n")
        .unwrap_or_else(|| panic!("no ```sh block after `{marker}` in docs/install.md"))
        + "```sh\n".len();
    let len = rest[start..]
        .find("```")
        .unwrap_or_else(|| panic!("unterminated block after `{marker}`"));
    rest[start..start + len].replace(DOC_DOMAIN, DOMAIN)
}

/// Polls `f` every 200 ms until it returns `Some`; fails the test after `limit`.
fn within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `postern user show ADDRESS --json` inside the container.
fn show(c: &Container, address: &str) -> serde_json::Value {
    let text = c.stdout(&format!("postern user show {address} --json"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The addresses `postern user list` prints, sorted.
fn accounts(c: &Container) -> Vec<String> {
    let text = c.stdout("postern user list --json");
    let list: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let mut v: Vec<String> = list
        .as_array()
        .expect("an array")
        .iter()
        .map(|a| a["address"].as_str().expect("address").to_owned())
        .collect();
    v.sort();
    v
}

/// A copy of `deb` with a higher version and a changed default configuration, as the
/// next release would be.
fn bumped_deb(deb: &Path, dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    let run = |cmd: &mut std::process::Command| {
        let shown = format!("{cmd:?}");
        let out = cmd.output().expect("run dpkg-deb");
        assert!(out.status.success(), "{shown}: {}", output_text(&out));
    };
    run(std::process::Command::new("dpkg-deb")
        .arg("-R")
        .arg(deb)
        .arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("control");
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("a Version field")
        .to_owned();
    let next = format!("{version}+upgrade1");
    std::fs::write(
        &control,
        text.replace(&format!("Version: {version}"), &format!("Version: {next}")),
    )
    .expect("write control");
    let default = tree.join("usr/share/postern/postern.toml");
    let mut config = std::fs::read_to_string(&default).expect("the shipped default config");
    config.push_str("\n# A line the next release added to the default configuration.\n");
    std::fs::write(&default, config).expect("write default config");
    // Keep md5sums true to the files (dpkg --verify reads it).
    let sums = tree.join("DEBIAN/md5sums");
    if sums.exists() {
        let out = std::process::Command::new("md5sum")
            .arg("usr/share/postern/postern.toml")
            .current_dir(&tree)
            .output()
            .expect("md5sum");
        let new_line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let text = std::fs::read_to_string(&sums).expect("md5sums");
        let updated: String = text
            .lines()
            .map(|l| {
                if l.ends_with(" usr/share/postern/postern.toml") {
                    new_line.clone()
                } else {
                    l.to_owned()
                }
            })
            .fold(String::new(), |acc, l| acc + &l + "\n");
        std::fs::write(&sums, updated).expect("write md5sums");
    }
    let out = dir.join(format!("postern_{next}.deb"));
    run(std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out));
    out
}

/// Writes the test-only settings into the container's root before it boots: Dovecot's
/// IMAP on `imap` (no imaps), Postfix's smtpd on `smtp`, both on loopback.
fn test_only_ports(root: &Path, imap: u16, smtp: u16) {
    // dovecot.conf reads local.conf after conf.d/*.conf: it wins over 99-postern.conf.
    std::fs::write(
        root.join("etc/dovecot/local.conf"),
        format!(
            "# systemd test only: loopback ports of its own (the container shares the \
             host's network)\nlisten = 127.0.0.1\nservice imap-login {{\n  inet_listener \
             imap {{\n    port = {imap}\n  }}\n  inet_listener imaps {{\n    port = 0\n  \
             }}\n}}\n"
        ),
    )
    .expect("write dovecot local.conf");
    let master = root.join("etc/postfix/master.cf");
    let text = std::fs::read_to_string(&master).expect("master.cf");
    let mut replaced = false;
    let text: String = text
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.first() == Some(&"smtp") && fields.get(1) == Some(&"inet") {
                replaced = true;
                // Chrooted as Debian has it (the fifth field).
                l.replacen("smtp", &format!("127.0.0.1:{smtp}"), 1)
            } else {
                l.to_owned()
            }
        })
        .fold(String::new(), |acc, l| acc + &l + "\n");
    assert!(replaced, "no `smtp inet` service in Debian's master.cf");
    std::fs::write(&master, text).expect("write master.cf");
}

#[test]
fn package_runs_under_systemd_with_debian_dovecot_and_postfix_wired_by_the_docs() {
    if !nspawn::tools_present() && !is_ci() {
        eprintln!(
            "systemd test skipped: systemd-nspawn, nsenter or debootstrap is missing (apt-get \
             install systemd-container debootstrap, then `sudo bash .ci/bookworm.sh`); under \
             CI it runs"
        );
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the systemd test boots a container: run the tests as root"
    );
    let started = Instant::now();
    let cache = nspawn::cached_root();
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/install.md"))
            .expect("read docs/install.md");
    let deb = crate::package::built_deb();
    let work = tempfile::tempdir().expect("tempdir");
    let next_deb = bumped_deb(&deb, work.path());
    let built = started.elapsed();

    let imap_port = quiet_port(&[]);
    let smtp_port = quiet_port(&[imap_port]);
    let c = Container::boot(&cache, |root| {
        test_only_ports(root, imap_port, smtp_port);
        for (sub, file) in [("first", &deb), ("next", &next_deb)] {
            let dir = root.join("root/debs").join(sub);
            std::fs::create_dir_all(&dir).expect("mkdir debs");
            std::fs::copy(file, dir.join(file.file_name().expect("name"))).expect("copy deb");
        }
    });
    let booted = started.elapsed();
    assert!(
        !c.path("/bin/kill").exists() && !c.path("/usr/bin/kill").exists(),
        "the container must lack /bin/kill (procps), or the reload below proves nothing"
    );

    // ----- 1. Install: Type=notify reaches active.
    c.ok(&format!(
        "cd /root/debs/first\n{}",
        doc_block(&doc, "## 1. Install the package")
    ));
    within(Duration::from_secs(20), "postern.service active", || {
        Some(()).filter(|_| c.property("postern.service", "ActiveState") == "active")
    });
    assert_eq!(c.property("postern.service", "Type"), "notify");
    assert_eq!(
        c.property("postern.service", "StatusErrno"),
        "0",
        "{}",
        c.ok("systemctl status postern --no-pager || true")
    );
    assert!(
        c.path("/etc/postern/postern.toml").is_file(),
        "postinst made the configuration"
    );

    // ----- 2-4. Domains, the mail user and root, the Postfix sockets.
    c.ok(&doc_block(&doc, "## 2. Say which domains"));
    c.ok(&doc_block(&doc, "## 3. The mail user"));
    c.ok(&doc_block(&doc, "## 4. The Postfix sockets"));
    assert_eq!(c.property("postern.service", "ActiveState"), "active");
    for socket in [
        "/run/postern/dict.sock",
        "/var/spool/postfix/postern/auth",
        "/var/spool/postfix/postern/policy",
    ] {
        c.ok(&format!("test -S {socket}"));
    }
    let vmail_uid: u32 = c.stdout("id -u vmail").parse().expect("vmail uid");

    // ----- 5-6. Dovecot 2.3 and Postfix, from the examples.
    c.ok(&doc_block(&doc, "**Dovecot 2.3 (bookworm)**"));
    c.ok(&doc_block(&doc, "## 6. Postfix"));
    let postconf = c.ok("postconf -n");
    assert!(
        !postconf.contains("overriding earlier entry"),
        "the appended example repeats a stock setting:\n{postconf}"
    );
    // Test only: the SMTP client here has no TLS.
    c.ok("postconf -e 'smtpd_tls_auth_only = no' && systemctl reload postfix");
    within(Duration::from_secs(20), "Dovecot's IMAP", || {
        crate::support::mail_clients::imap_greeting(imap_port).ok()
    });

    // ----- 7. The administrator, first.
    let added = c.ok(&doc_block(&doc, "## 7. The administrator, first"));
    assert!(
        added.contains("password"),
        "user add --random prints a password"
    );
    let admin = format!("admin@{DOMAIN}");
    assert_eq!(show(&c, &admin)["admin"], true, "{}", show(&c, &admin));

    // invite_only (the default): a first login with a new address is refused ...
    let bob = format!("bob@{DOMAIN}");
    let refused = imap_login(imap_port, &bob, PW).err();
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("AUTHENTICATIONFAILED")),
        "invite_only let a new address in: {refused:?}"
    );
    // ----- 9. ... until `systemctl reload` applies registration mode open.
    c.ok(&doc_block(&doc, "open it to everyone"));
    assert_eq!(
        c.property("postern.service", "Result"),
        "success",
        "reload: {}",
        c.ok("systemctl status postern --no-pager || true")
    );
    within(
        Duration::from_secs(10),
        "the reloaded registration mode",
        || {
            Some(()).filter(|_| {
                c.ok("journalctl -u postern -o cat")
                    .contains("event=reload result=ok")
            })
        },
    );
    let mut s = imap_login(imap_port, &bob, PW).expect("open after the reload: JIT login");
    assert_eq!(s.select_inbox(), 0);
    s.logout();
    let a = show(&c, &bob);
    assert_eq!(a["created_via"], "jit", "{a}");
    // The mail home was made by Dovecot's imap process, as the mail user.
    let home = c.path(&format!("/var/vmail/{DOMAIN}/bob"));
    let meta = std::fs::metadata(home.join("Maildir")).expect("bob's Maildir");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        vmail_uid,
        "Maildir owner"
    );
    // last_login over the dict socket, from imap running as vmail in group postern.
    within(
        Duration::from_secs(15),
        "last_login through the dict socket",
        || show(&c, &bob)["last_login"].as_i64(),
    );

    // ----- SMTP AUTH and the policy service through Postfix's chrooted smtpd.
    let mut smtp = SmtpSession::connect(smtp_port);
    assert_eq!(smtp.ehlo().0, 250);
    assert_eq!(smtp.auth_plain(&bob, PW), 235, "{}", smtp.transcript());
    assert_eq!(smtp.mail_from(&bob).0, 250, "{}", smtp.transcript());
    assert_eq!(smtp.rcpt_to(&bob).0, 250, "{}", smtp.transcript());
    let (code, reply) = smtp.data(MESSAGE);
    assert_eq!(code, 250, "{reply}");
    smtp.quit();
    // Postfix's lmtp hands it to Dovecot's socket in the spool; it lands in the Maildir.
    within(
        Duration::from_secs(20),
        "the message in bob's Maildir",
        || Some(()).filter(|_| maildir_new_files(&home).len() == 1),
    );
    // quota_clone from lmtp (as vmail) reports the usage back.
    within(Duration::from_secs(15), "usage through quota_clone", || {
        Some(()).filter(|_| show(&c, &bob)["used_messages"] == 1)
    });
    let quota = c.ok(&format!("doveadm quota get -u {bob}"));
    assert!(quota.contains("STORAGE"), "doveadm quota get:\n{quota}");

    // A blocked and an unknown recipient, from a client in mynetworks (127.0.0.1): the
    // policy check comes first, so neither is accepted.
    let carol = format!("carol@{DOMAIN}");
    let out = c.sh_stdin(
        &format!("postern user add {carol} --password-stdin"),
        &format!("{PW}\n"),
    );
    assert!(out.status.success(), "user add: {}", output_text(&out));
    c.ok(&format!("postern user block {carol} --reason test"));
    let mut smtp = SmtpSession::connect(smtp_port);
    assert_eq!(smtp.ehlo().0, 250);
    assert_eq!(smtp.mail_from("sender@example.net").0, 250);
    let (code, reply) = smtp.rcpt_to(&carol);
    assert_eq!(code, 554, "blocked recipient: {reply}");
    assert!(reply.contains("5.7.1"), "{reply}");
    let (code, reply) = smtp.rcpt_to(&format!("nobody@{DOMAIN}"));
    assert_eq!(code, 550, "unknown recipient: {reply}");
    smtp.quit();

    // ----- restart keeps the accounts.
    c.ok("systemctl restart postern");
    assert_eq!(c.property("postern.service", "ActiveState"), "active");
    assert_eq!(
        accounts(&c),
        vec![admin.clone(), bob.clone(), carol.clone()]
    );

    // ----- the maintenance timer and service.
    assert_eq!(
        c.property("postern-maintenance.timer", "ActiveState"),
        "active"
    );
    let timers = c.ok("systemctl list-timers --all --no-pager postern-maintenance.timer");
    assert!(timers.contains("postern-maintenance.service"), "{timers}");
    c.ok("systemctl start postern-maintenance.service");
    assert_eq!(
        c.property("postern-maintenance.service", "Result"),
        "success",
        "{}",
        c.ok("journalctl -u postern-maintenance -o cat --no-pager")
    );

    // ----- the journal: postern's lines with the mail facility.
    let mail_log = c.ok("journalctl SYSLOG_FACILITY=2 SYSLOG_IDENTIFIER=postern -o cat --no-pager");
    for needle in [
        "event=start",
        "event=reload result=ok",
        "event=login result=fail",
        "event=register route=jit",
    ] {
        assert!(
            mail_log.contains(needle),
            "no `{needle}` in the mail facility:\n{mail_log}"
        );
    }
    let security = c.sh("systemd-analyze security postern.service --no-pager");
    let security = output_text(&security);
    eprintln!("systemd-analyze security postern.service:\n{security}");
    assert!(security.contains("Overall exposure level"), "{security}");

    // ----- stop ends with result success.
    c.ok("systemctl stop postern");
    assert_eq!(c.property("postern.service", "ActiveState"), "inactive");
    assert_eq!(c.property("postern.service", "Result"), "success");
    c.ok("test ! -e /run/postern/dict.sock");
    c.ok("systemctl start postern");

    // ----- upgrade over the running service: no question, the operator's config and the
    // database kept, running again afterwards.
    let config_before = std::fs::read_to_string(c.path("/etc/postern/postern.toml"))
        .expect("the operator's config");
    let pid_before = c.property("postern.service", "MainPID");
    let upgrade = c.ok("cd /root/debs/next && apt-get install -y ./postern_*.deb </dev/null");
    assert!(
        !upgrade.contains("Configuration file"),
        "the upgrade asked about the configuration:\n{upgrade}"
    );
    assert!(
        c.stdout("dpkg-query -W -f='${Version}' postern")
            .ends_with("+upgrade1"),
        "{upgrade}"
    );
    assert_eq!(
        std::fs::read_to_string(c.path("/etc/postern/postern.toml")).expect("config"),
        config_before,
        "the upgrade changed the operator's configuration"
    );
    assert!(
        std::fs::read_to_string(c.path("/usr/share/postern/postern.toml"))
            .expect("default")
            .contains("the next release added"),
        "the new default configuration was not installed"
    );
    assert_eq!(c.property("postern.service", "ActiveState"), "active");
    assert_ne!(
        c.property("postern.service", "MainPID"),
        pid_before,
        "the upgrade restarts the service"
    );
    assert_eq!(
        accounts(&c),
        vec![admin.clone(), bob.clone(), carol.clone()]
    );
    let mut s = imap_login(imap_port, &bob, PW).expect("login after the upgrade");
    assert_eq!(s.select_inbox(), 1);
    s.logout();

    // ----- purge removes state and configuration, never mail.
    c.ok("apt-get purge -y postern </dev/null");
    for gone in [
        "/var/lib/postern",
        "/etc/postern",
        "/var/spool/postfix/postern",
        "/run/postern",
        "/usr/bin/postern",
    ] {
        c.ok(&format!("test ! -e {gone}"));
    }
    // The login after the upgrade moved the message from new/ to cur/.
    let kept = std::fs::read_dir(home.join("Maildir/cur"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(kept, 1, "purge touched the mail");
    eprintln!(
        "systemd test: package built {:.0?}, container booted {:.0?}, done {:.0?}",
        built,
        booted - built,
        started.elapsed()
    );
}
