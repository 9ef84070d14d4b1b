//! The Debian package, end to end, as an operator meets it: build it, `dpkg -i` it,
//! check what it installed and that its daemon starts as the unit would start it, check it
//! with lintian and `systemd-analyze verify`, reinstall it, remove it, purge it.
//!
//! Needs root (it installs the package on this machine: CI's machines are throwaway) and
//! the tools `.ci/package.sh` installs: cargo-deb, lintian, systemd-analyze, man-db. A
//! missing tool fails the test with the command that installs it.
//!
//! Cost, measured on the project's 2-core machine (bookworm):
//! - `.ci/package.sh` on a fresh machine: `cargo install cargo-deb --locked` ~2.5 min,
//!   apt (lintian and its dependencies) ~1 min, the release build ~2 min, `cargo deb`
//!   ~8 s: ~6 min in all; ~2.5 min with the tools already there.
//! - this test after it: ~25 s (build-deb.sh finds the release build up to date and only
//!   repackages, ~8 s; lintian ~5 s; the rest is dpkg). Without a release build of the
//!   current sources it builds one first (~2 min), so it always checks the package of
//!   the sources under test.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::DictClient;

const CONFIG: &str = "/etc/postern/postern.toml";
const DEFAULT_CONFIG: &str = "/usr/share/postern/postern.toml";
const SECRET: &str = "/etc/postern/auth-http.secret";
const STATE: &str = "/var/lib/postern";
const RUNTIME: &str = "/run/postern";
const POSTFIX_SOCKETS: &str = "/var/spool/postfix/postern";
const UNITS: [&str; 3] = [
    "postern.service",
    "postern-maintenance.service",
    "postern-maintenance.timer",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(out.status.success(), "{shown} failed: {}", text(&out));
    text(&out)
}

/// Fails, naming the fix, when a tool the package test needs is missing.
fn require_tool(cmd: &mut Command, what: &str) {
    let ok = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{what} is missing: run `bash .ci/package.sh` (it installs cargo-deb, lintian, \
         systemd and man-db)"
    );
}

fn uid_of(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn gid_of(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// `/etc/mailname` as a Postfix host has it (the default config serves that domain);
/// written for the test when absent and removed again afterwards.
struct MailName {
    domain: String,
    written: bool,
}

impl MailName {
    fn ensure() -> MailName {
        match fs::read_to_string("/etc/mailname") {
            Ok(s) if !s.trim().is_empty() => MailName {
                domain: s.trim().to_owned(),
                written: false,
            },
            _ => {
                fs::write("/etc/mailname", "postern-package-test.example\n")
                    .expect("write /etc/mailname");
                MailName {
                    domain: "postern-package-test.example".into(),
                    written: true,
                }
            }
        }
    }
}

impl Drop for MailName {
    fn drop(&mut self) {
        if self.written {
            let _ = fs::remove_file("/etc/mailname");
        }
    }
}

/// The installed daemon, started as postern.service starts it; killed on drop.
struct Daemon {
    child: Child,
    notify: UnixDatagram,
    notify_path: PathBuf,
}

impl Daemon {
    /// What systemd does before ExecStart: RuntimeDirectory=postern (postern:postern
    /// 0750), User=/Group=postern, NOTIFY_SOCKET. (The sandboxing needs systemd itself;
    /// `systemd-analyze verify` checks those lines.)
    fn start() -> Daemon {
        let _ = fs::remove_dir_all(RUNTIME);
        fs::create_dir(RUNTIME).expect("mkdir /run/postern");
        fs::set_permissions(RUNTIME, fs::Permissions::from_mode(0o750)).expect("chmod");
        nix::unistd::chown(
            RUNTIME,
            uid_of("postern").map(nix::unistd::Uid::from_raw),
            gid_of("postern").map(nix::unistd::Gid::from_raw),
        )
        .expect("chown /run/postern");

        let notify_path =
            std::env::temp_dir().join(format!("postern-notify-{}", std::process::id()));
        let _ = fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        fs::set_permissions(&notify_path, fs::Permissions::from_mode(0o666)).expect("chmod");
        notify
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let child = Command::new("setpriv")
            .args(["--reuid=postern", "--regid=postern", "--init-groups", "--"])
            .args(["/usr/bin/postern", "--config", CONFIG, "serve"])
            .env("NOTIFY_SOCKET", &notify_path)
            .env("POSTERN_LOG__TARGET", "stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run setpriv (util-linux)");
        Daemon {
            child,
            notify,
            notify_path,
        }
    }

    /// The notifications up to READY=1 (what Type=notify waits for).
    fn wait_ready(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let ready = msg.lines().any(|l| l == "READY=1");
                    seen.push(msg);
                    if ready {
                        return seen;
                    }
                }
                Err(e) => panic!("no READY=1 from the daemon ({e}); got {seen:?}"),
            }
        }
        panic!("no READY=1 from the daemon within 20 s; got {seen:?}")
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_file(&self.notify_path);
    }
}

/// The package of the current sources, built once per test run: the package test and
/// the systemd test (tests/it/systemd.rs) install the same file.
pub fn built_deb() -> PathBuf {
    static DEB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DEB.get_or_init(build_deb).clone()
}

/// Builds the package of the current sources (incremental: a release build left by
/// .ci/package.sh is reused) and returns its path. build-deb.sh fails on any lintian
/// error or warning.
fn build_deb() -> PathBuf {
    require_tool(
        Command::new("cargo").args(["deb", "--version"]),
        "cargo-deb",
    );
    let out = run(Command::new("bash")
        .arg(repo().join("packaging/build-deb.sh"))
        .current_dir(repo()));
    assert!(
        out.status.success(),
        "packaging/build-deb.sh failed: {}",
        text(&out)
    );
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
    let deb = repo().join(format!(
        "target/debian/postern_{}-1_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch.trim()
    ));
    assert!(
        deb.is_file(),
        "build-deb.sh did not produce {}",
        deb.display()
    );
    deb
}

/// Runs dpkg, waiting while another dpkg or apt holds its lock (apt-get in a CI script,
/// another test run).
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = run(Command::new("dpkg").args(args));
        let locked = !out.status.success() && text(&out).contains("lock");
        if !locked || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn dpkg_ok(args: &[&str]) {
    let out = dpkg(args);
    assert!(out.status.success(), "dpkg {args:?} failed: {}", text(&out));
}

fn purge() -> Output {
    dpkg(&["--purge", "postern"])
}

/// The machine-wide lock of this test: two test runs on one machine (two developers'
/// `cargo test`) would install and purge the same package under each other.
fn machine_lock() -> nix::fcntl::Flock<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/lock/postern-package-test.lock")
        .expect("open /run/lock/postern-package-test.lock");
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock /run/lock/postern-package-test.lock")
}

/// Every file below `roots` that belongs to `uid`.
fn owned_by(uid: u32, roots: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, uid: u32, found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.uid() == uid {
                found.push(path.clone());
            }
            if meta.is_dir() {
                walk(&path, uid, found);
            }
        }
    }
    let mut found = Vec::new();
    for root in roots {
        walk(Path::new(root), uid, &mut found);
    }
    found
}

/// Whether `user` (its primary group only, as Postfix's daemons run; plus `group` if
/// given) may enter `dir`.
fn can_enter(user: &str, group: Option<&str>, dir: &str) -> bool {
    let pw = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no user {user}"));
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", pw.uid))
        .arg(format!("--regid={}", pw.gid));
    match group {
        Some(g) => cmd.arg(format!("--groups={}", gid_of(g).expect("group"))),
        None => cmd.arg("--clear-groups"),
    };
    cmd.args(["--", "test", "-x", dir]);
    let out = run(&mut cmd);
    // `test` answers 0 or 1; anything else is setpriv failing, not an answer.
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("setpriv failed: {}", text(&out)),
    }
}

#[test]
fn debian_package_installs_a_working_hardened_service_and_purges_cleanly() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the package test installs the .deb with dpkg: run the tests as root"
    );
    require_tool(Command::new("lintian").arg("--version"), "lintian");
    require_tool(
        Command::new("systemd-analyze").arg("--version"),
        "systemd-analyze (Debian package systemd)",
    );
    require_tool(
        Command::new("man").arg("--version"),
        "man (Debian package man-db)",
    );

    let _lock = machine_lock();
    let deb = built_deb();
    let deb_path = deb.to_str().expect("utf-8 path");

    // lintian: no error and no warning (build-deb.sh already refuses them; its output is
    // printed for the log; packaging/lintian-overrides says why each override exists).
    let lint = run(Command::new("lintian").arg("--pedantic").arg(&deb));
    let lint_text = text(&lint);
    eprintln!("lintian:\n{lint_text}");
    assert!(
        lint.status.success()
            && !lint_text
                .lines()
                .any(|l| l.starts_with("E: ") || l.starts_with("W: ")),
        "lintian reports errors or warnings:\n{lint_text}"
    );

    // A clean machine: no earlier install, and /etc/mailname as a Postfix host has it.
    let _ = purge();
    let mailname = MailName::ensure();
    dpkg_ok(&["-i", deb_path]);

    // The binary, its config (made by postinst from the shipped default, not a dpkg
    // conffile: upgrades must never stop at dpkg's conffile question), the user.
    let version = run_ok(Command::new("/usr/bin/postern").arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let conffiles = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "postern"]));
    assert!(
        !conffiles.contains(CONFIG),
        "a dpkg conffile, so a changed default would stop upgrades: {conffiles}"
    );
    assert_eq!(
        fs::read_to_string(CONFIG).expect("the installed configuration"),
        fs::read_to_string(DEFAULT_CONFIG).expect("the shipped default"),
        "postinst copies the default"
    );
    let config_meta = fs::metadata(CONFIG).expect("config");
    assert_eq!(config_meta.mode() & 0o7777, 0o644, "config mode");
    // The default names the mail user `vmail` and the mail root /var/vmail, which the
    // operator makes (docs/install.md); until then config check says what is missing.
    if uid_of("vmail").is_none() {
        let out =
            run(Command::new("/usr/bin/postern").args(["--config", CONFIG, "config", "check"]));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("mailbox.uid: no user named vmail"),
            "{}",
            text(&out)
        );
        run_ok(Command::new("adduser").args([
            "--system",
            "--group",
            "--home",
            "/var/vmail",
            "--no-create-home",
            "vmail",
        ]));
    }
    run_ok(Command::new("install").args([
        "-d",
        "-o",
        "vmail",
        "-g",
        "vmail",
        "-m",
        "0750",
        "/var/vmail",
    ]));
    let check =
        run_ok(Command::new("/usr/bin/postern").args(["--config", CONFIG, "config", "check"]));
    assert!(check.contains("configuration ok"), "{check}");
    let shown =
        run_ok(Command::new("/usr/bin/postern").args(["--config", CONFIG, "config", "show"]));
    assert!(
        shown.contains(&format!("domains = [\"{}\"]", mailname.domain)),
        "the default config should serve /etc/mailname's domain:\n{shown}"
    );
    let uid = uid_of("postern").expect("the postern user exists");
    let gid = gid_of("postern").expect("the postern group exists");
    let pw = nix::unistd::User::from_name("postern")
        .ok()
        .flatten()
        .expect("user");
    assert_eq!(pw.gid.as_raw(), gid, "postern's primary group is postern");
    assert_eq!(pw.dir, PathBuf::from(STATE));

    // Directories and the auth API secret.
    let state = fs::metadata(STATE).expect("/var/lib/postern");
    assert_eq!(
        (state.uid(), state.gid()),
        (uid, gid),
        "/var/lib/postern owner"
    );
    assert_eq!(state.mode() & 0o7777, 0o700, "/var/lib/postern mode");
    let secret = fs::metadata(SECRET).expect("auth-http.secret");
    assert_eq!((secret.uid(), secret.gid()), (0, gid), "secret owner");
    assert_eq!(secret.mode() & 0o7777, 0o640, "secret mode");
    let secret_text = fs::read_to_string(SECRET).expect("read secret");
    assert_eq!(secret_text.trim().len(), 64, "32 random bytes in hex");
    match gid_of("postfix") {
        Some(postfix_gid) if Path::new("/var/spool/postfix").is_dir() => {
            let d = fs::metadata(POSTFIX_SOCKETS).expect("/var/spool/postfix/postern");
            assert_eq!(
                (d.uid(), d.gid()),
                (uid, postfix_gid),
                "postfix socket dir owner"
            );
            assert_eq!(d.mode() & 0o7777, 0o750, "postfix socket dir mode");
            assert!(
                can_enter("postfix", None, POSTFIX_SOCKETS),
                "postfix cannot enter"
            );
            assert!(
                !can_enter("nobody", None, POSTFIX_SOCKETS),
                "others can enter"
            );
        }
        _ => assert!(!Path::new(POSTFIX_SOCKETS).exists()),
    }

    // Man pages (one per subcommand too), completions, docs and examples. The pages carry
    // the last commit's time, so man-db would take a page it formatted for an earlier
    // build of the same commit as current; a width outside 66..80 skips those cat pages.
    let man_page = |name: &str| {
        run_ok(
            Command::new("man")
                .env("MANWIDTH", "100")
                .args(["-P", "cat", name]),
        )
    };
    let man = man_page("postern");
    assert!(man.contains("postern") && man.contains("serve"), "{man}");
    assert!(man.contains("postern-user-block(1)"), "SEE ALSO: {man}");
    let block = man_page("postern-user-block");
    assert!(
        block.contains("postern user block") && block.contains("Block an account"),
        "{block}"
    );
    for f in [
        "/usr/share/bash-completion/completions/postern",
        "/usr/share/zsh/vendor-completions/_postern",
        "/usr/share/fish/vendor_completions.d/postern.fish",
    ] {
        assert!(fs::metadata(f).is_ok_and(|m| m.len() > 0), "{f} missing");
    }
    run_ok(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/postern && complete -p postern",
    ]));
    for f in [
        "/usr/share/doc/postern/examples/dovecot-postern.conf",
        "/usr/share/doc/postern/examples/auth-postern.conf.ext",
        "/usr/share/doc/postern/examples/postfix-main.cf",
        "/usr/share/doc/postern/examples/dovecot24.conf",
        "/usr/share/doc/postern/examples/fail2ban/filter.d/postern.conf",
        "/usr/share/doc/postern/examples/fail2ban/jail.d/postern.conf",
        "/usr/share/doc/postern/examples/prometheus-postern-rules.yml",
        "/usr/share/doc/postern/examples/prometheus-postern.yml",
        "/usr/share/postern/dovecot/postern.lua",
        "/usr/share/doc/postern/monitoring.md",
        "/usr/share/doc/postern/install.md",
        "/usr/share/doc/postern/security.md",
    ] {
        assert!(Path::new(f).is_file(), "{f} missing");
    }

    // The units: clean for systemd-analyze, enabled as deb-systemd-helper does it (the
    // maintenance service runs only from its timer).
    for unit in UNITS {
        let path = format!("/lib/systemd/system/{unit}");
        let out = run(Command::new("systemd-analyze").arg("verify").arg(&path));
        assert!(
            out.status.success() && text(&out).trim().is_empty(),
            "systemd-analyze verify {path}:\n{}",
            text(&out)
        );
    }
    assert!(Path::new("/etc/systemd/system/multi-user.target.wants/postern.service").exists());
    assert!(
        Path::new("/etc/systemd/system/timers.target.wants/postern-maintenance.timer").exists()
    );
    let security = run(Command::new("systemd-analyze").args([
        "security",
        "--offline=true",
        "/lib/systemd/system/postern.service",
    ]));
    eprintln!("{}", text(&security).lines().last().unwrap_or_default());

    // The CLI, run as root, acts as the database owner: the database it creates is
    // postern's, so the daemon can use it.
    let address = format!("packagetest@{}", mailname.domain);
    let mut add = Command::new("/usr/bin/postern")
        .args([
            "--config",
            CONFIG,
            "user",
            "add",
            &address,
            "--password-stdin",
        ])
        .env("POSTERN_LOG__TARGET", "stderr")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("postern user add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all(b"package test password\n")
        .expect("write password");
    let added = add.wait_with_output().expect("wait");
    assert!(added.status.success(), "user add: {}", text(&added));
    let db = fs::metadata(format!("{STATE}/postern.db")).expect("database created");
    assert_eq!((db.uid(), db.gid()), (uid, gid), "database owner");

    // The daemon starts with the installed configuration as the postern user, reports
    // READY, serves the dict socket inside the 0750 runtime directory, and stops cleanly.
    let mut daemon = Daemon::start();
    daemon.wait_ready();
    let sock = Path::new(RUNTIME).join("dict.sock");
    let meta = fs::symlink_metadata(&sock).expect("dict.sock");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.uid(), uid, "dict.sock owner");
    assert_eq!(
        meta.mode() & 0o777,
        0o666,
        "dict.sock mode (listen.socket_mode)"
    );
    assert!(
        can_enter("nobody", Some("postern"), RUNTIME),
        "group postern cannot enter /run/postern"
    );
    assert!(
        !can_enter("nobody", None, RUNTIME),
        "others can enter /run/postern"
    );
    let reply = DictClient::connect(&sock).passdb(&address, "package test password");
    assert!(
        reply.starts_with('O') && reply.contains("nopassword"),
        "{reply}"
    );
    let status = daemon.stop();
    assert!(status.success(), "daemon exit: {status}");
    assert!(
        !sock.exists(),
        "the daemon removes its socket when it stops"
    );
    drop(daemon);

    // Reinstalling (dpkg's upgrade path) keeps the secret, the database and the
    // operator's edits of the configuration.
    let edited = fs::read_to_string(CONFIG).expect("config") + "# the operator's note\n";
    fs::write(CONFIG, &edited).expect("edit the config");
    dpkg_ok(&["-i", deb_path]);
    assert_eq!(fs::read_to_string(SECRET).expect("secret"), secret_text);
    assert_eq!(fs::read_to_string(CONFIG).expect("config"), edited);
    let listed =
        run_ok(Command::new("/usr/bin/postern").args(["--config", CONFIG, "user", "list"]));
    assert!(listed.contains(&address), "{listed}");

    // Removing keeps the state; purging removes it and every file of the postern user.
    dpkg_ok(&["--remove", "postern"]);
    assert!(!Path::new("/usr/bin/postern").exists());
    assert!(
        Path::new(STATE).join("postern.db").exists(),
        "remove must keep the database"
    );
    assert!(
        Path::new(CONFIG).exists(),
        "remove must keep the configuration"
    );
    let purged = purge();
    assert!(purged.status.success(), "dpkg --purge: {}", text(&purged));
    for gone in [STATE, "/etc/postern", POSTFIX_SOCKETS, RUNTIME] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/postern.service").exists());
    let left = owned_by(uid, &["/etc", "/var/lib", "/var/spool", "/run", "/usr"]);
    assert!(
        left.is_empty(),
        "files of the postern user left after purge: {left:?}"
    );
}

/// `section.key = value` for every line of `postern config show`.
fn shown_settings(config: &Path) -> Vec<String> {
    let out = run(Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("--config")
        .arg(config)
        .args(["config", "show"]));
    assert!(
        out.status.success(),
        "config show {}: {}",
        config.display(),
        text(&out)
    );
    let mut section = String::new();
    let mut settings = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{name}.");
        } else if !line.trim().is_empty() {
            settings.push(format!("{section}{line}"));
        }
    }
    settings
}

// The shipped /etc/postern/postern.toml lists every key the daemon knows, each commented
// default equal to the built-in one, so an operator reading it reads the truth.
#[test]
fn packaged_config_lists_every_key_with_its_builtin_default() {
    let packaged = fs::read_to_string(repo().join("packaging/postern.toml")).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    // Every `#key = value` line switched on: still a valid configuration (no unknown key).
    let all = dir.path().join("all.toml");
    let uncommented: String = packaged
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .fold(String::new(), |acc, l| acc + l + "\n");
    fs::write(&all, &uncommented).expect("write");
    let with_all = shown_settings(&all);
    // The built-in defaults (domains is the only key without one).
    let defaults = dir.path().join("defaults.toml");
    fs::write(&defaults, "domains = [\"example.org\"]\n").expect("write");
    for line in shown_settings(&defaults) {
        if line == "listen.socket_mode = \"0660\"" {
            // The package's one deliberate change: directories gate the sockets.
            assert!(with_all.contains(&"listen.socket_mode = \"0666\"".to_owned()));
            continue;
        }
        assert!(
            with_all.contains(&line),
            "packaging/postern.toml does not show the built-in `{line}`"
        );
    }
    // Keys off by default (no value to show) are there as examples.
    for key in [
        "listen.auth",
        "listen.policy",
        "listen.http",
        "listen.http_socket",
        "listen.auth_http",
        "listen.metrics",
        "listen.socket_owner",
        "listen.socket_group",
        "http.public_url",
        "autoconfig.imap_host",
        "autoconfig.smtp_host",
        "maintenance.delete_inactive_after",
        "maintenance.delete_unused_after",
        "registration.max_load_1m",
    ] {
        assert!(
            with_all.iter().any(|l| l.split(" = ").next() == Some(key)),
            "packaging/postern.toml lacks `{key}`"
        );
    }
}
