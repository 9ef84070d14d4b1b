//! A real Dovecot 2.3 wired to a test daemon's dict socket exactly as an operator wires it:
//! Debian's stock `/etc/dovecot` of this host, copied, with the package's examples
//! (`auth-postern.conf.ext`, `dovecot-postern.conf` as `conf.d/99-postern.conf`) added as
//! docs/install.md says, driven with the IMAP and LMTP clients of [`super::mail_clients`]. Also the helpers every test that runs
//! a Dovecot (2.3 or 2.4, alone or behind Postfix) shares: accounts through the CLI, mail
//! homes and their Maildirs, IMAP logins that must work or must fail, polling.
//!
//! Each instance lives under `<daemon dir>/dovecot/` with its own `base_dir`, `state_dir`,
//! log, loopback IMAP port and LMTP socket, so tests run side by side; its configuration
//! is written by [`super::dovecot_conf`], which the load tool shares. Dovecot runs in its
//! own process group; dropping the [`Dovecot`] stops the master and kills whatever of that
//! group is left, and prints Dovecot's log when the test is failing.
//!
//! Needs root (Dovecot switches to the mail uid 65534) and the Debian packages
//! `dovecot-core dovecot-imapd dovecot-lmtpd`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::dovecot_conf::{layer_on_stock, local_conf, shipped, STOCK};
pub use super::mail_clients::ImapSession;
use super::mail_clients::{
    self, binary, dovecot_log, spawn_in_own_group, stop_process_group, wait_for_dovecot, ImapServer,
};
use super::{free_port, TestDaemon};

/// What to install when Dovecot is missing.
const PACKAGES: &str = "apt-get install dovecot-core dovecot-imapd dovecot-lmtpd";
/// How long Dovecot may take to come up (it forks a handful of processes).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long Dovecot's master may take to stop its children after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `dovecot -F` whose passdb, userdb, `last_login` and `quota_clone` all point at
/// one dict socket.
pub struct Dovecot {
    /// `<daemon dir>/dovecot`: configuration, base_dir (`run/`), state_dir, log.
    pub dir: PathBuf,
    pub config: PathBuf,
    /// The loopback port Dovecot's imap-login listens on.
    pub imap_port: u16,
    /// Dovecot's LMTP listener (a Unix socket in its base_dir).
    pub lmtp_socket: PathBuf,
    log: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
}

impl Dovecot {
    /// Starts Dovecot for `daemon`'s dict socket and waits until IMAP greets.
    pub fn start(daemon: &TestDaemon) -> Dovecot {
        Self::start_for(&daemon.dir, &daemon.dict_socket)
    }

    /// Starts Dovecot under `<parent>/dovecot`, its dicts pointing at `dict_socket`.
    pub fn start_for(parent: &Path, dict_socket: &Path) -> Dovecot {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the real-Dovecot tests need root: Dovecot switches to the mail uid"
        );
        let dovecot = binary("dovecot", &["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]);
        let dir = parent.join("dovecot");
        std::fs::create_dir_all(&dir).expect("mkdir dovecot dir");
        let etc = dir.join("etc");
        let (auth_args, postern_conf) = shipped(&dir, &etc, dict_socket);
        let config = layer_on_stock(
            Path::new(STOCK),
            &etc,
            &[
                ("conf.d/auth-postern.conf.ext", auth_args),
                ("conf.d/99-postern.conf", postern_conf),
            ],
        );
        let log = dir.join("dovecot.log");
        let stderr = dir.join("dovecot.stderr");
        // Shows in process titles (`dovecot-<instance>/imap`): names the test's temp dir.
        let instance = parent
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("postern-test")
            .to_owned();

        // A port picked by binding :0 may be taken again before Dovecot binds it; then
        // Dovecot exits at once with "Address already in use" and we try another.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let imap_port = free_port();
            // A stale anvil-auth-penalty socket from an earlier attempt would stall auth.
            let _ = std::fs::remove_dir_all(dir.join("run"));
            let text = local_conf(&dir, &instance, imap_port, "");
            std::fs::write(etc.join("local.conf"), text).expect("write local.conf");
            let child = spawn_in_own_group(
                Command::new(&dovecot).arg("-F").arg("-c").arg(&config),
                &stderr,
            )
            .unwrap_or_else(|e| panic!("cannot run {dovecot}: {e} ({PACKAGES})"));
            let mut d = Dovecot {
                lmtp_socket: dir.join("run").join("lmtp"),
                dir: dir.clone(),
                config: config.clone(),
                imap_port,
                log: log.clone(),
                stderr: stderr.clone(),
                child: Some(child),
            };
            match d.wait_ready() {
                Ok(()) => return d,
                Err(_) if attempt < 5 && d.log_contents().contains("Address already in use") => {
                    d.stop();
                }
                // Dropping `d` while panicking prints Dovecot's log.
                Err(why) => panic!("Dovecot did not start: {why}"),
            }
        }
    }

    /// Waits until IMAP greets and the LMTP socket accepts.
    fn wait_ready(&mut self) -> Result<(), String> {
        wait_for_dovecot(
            self.child.as_ref(),
            self.imap_port,
            &self.lmtp_socket,
            START_TIMEOUT,
        )
    }

    /// Dovecot's own log (everything: master, auth, imap, lmtp), after anything it wrote
    /// to stderr before its log was set up.
    pub fn log_contents(&self) -> String {
        dovecot_log(&self.stderr, &self.log)
    }

    /// Opens an IMAP connection and logs in; `Err` is the tagged reply (e.g.
    /// `a1 NO [AUTHENTICATIONFAILED] Authentication failed.`).
    pub fn imap_login(&self, user: &str, pass: &str) -> Result<ImapSession, String> {
        mail_clients::imap_login(self.imap_port, user, pass)
    }

    /// Delivers `message` (LF or CRLF line ends) to `rcpt` over LMTP. `Err` carries the
    /// server's reply to whichever step refused (RCPT TO or the end of DATA).
    pub fn lmtp_deliver(&self, rcpt: &str, message: &str) -> Result<(), String> {
        mail_clients::lmtp_deliver(&self.lmtp_socket, rcpt, message)
    }

    /// `doveadm user '*'`: the userdb iteration, one user per entry, in Dovecot's order.
    pub fn doveadm_user_list(&self) -> Vec<String> {
        mail_clients::doveadm_user_list(self.doveadm(&["user", "*"]), || self.log_contents())
    }

    /// One userdb field as Dovecot sees it (`doveadm user -f <field> <user>`); `None` when
    /// the userdb does not know the user.
    pub fn doveadm_user_field(&self, user: &str, field: &str) -> Option<String> {
        mail_clients::doveadm_user_field(self.doveadm(&["user", "-f", field, user]), user, field)
    }

    /// Runs `doveadm -c <this config> <args>`.
    pub fn doveadm(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary(
            "doveadm",
            &["/usr/bin/doveadm", "/usr/local/bin/doveadm"],
        ))
        .arg("-c")
        .arg(&self.config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run doveadm")
    }

    /// Number of messages waiting in `<home>/Maildir/new` (0 when it does not exist).
    pub fn maildir_new_count(&self, home: &Path) -> usize {
        maildir_new_files(home).len()
    }

    /// Stops Dovecot: SIGTERM to the master, then SIGKILL to whatever of its process group
    /// is left. Safe to call twice.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_process_group(child, STOP_TIMEOUT);
        }
    }
}

impl ImapServer for Dovecot {
    fn imap_port(&self) -> u16 {
        self.imap_port
    }
}

impl MailServer for Dovecot {
    fn lmtp_deliver(&self, rcpt: &str, message: &str) -> Result<(), String> {
        Dovecot::lmtp_deliver(self, rcpt, message)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- dovecot log ({}) ---\n{}",
                self.dir.display(),
                self.log_contents()
            );
        }
    }
}

/// The files in `<home>/Maildir/new`, sorted (empty when the directory does not exist).
pub fn maildir_new_files(home: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(home.join("Maildir").join("new")) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// The virtual size (CRLF line ends) Dovecot recorded in a Maildir file name
/// (`...,S=<size>,W=<vsize>`): what the count quota with `quota_vsizes = yes` counts.
pub fn maildir_vsize(file: &Path) -> u64 {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.split([',', ':'])
        .find_map(|part| part.strip_prefix("W="))
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no W=<vsize> in maildir file name {name}"))
}

// ----- what the tests running a Dovecot share (tests/it/dovecot.rs, dovecot24.rs, postfix.rs)

pub use super::{accounts, show};

/// The mail home the test configuration gives `addr`: `<vmail>/{domain}/{local}`.
pub fn home(d: &TestDaemon, addr: &str) -> PathBuf {
    let (local, domain) = addr.split_once('@').expect("an address");
    d.vmail.join(domain).join(local)
}

/// `user add <addr> --password-stdin`; asserts it succeeded.
pub fn add_with_password(d: &TestDaemon, addr: &str, password: &str) {
    let out = d.cli_stdin(
        &["user", "add", addr, "--password-stdin"],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "user add {addr} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Logs in over IMAP, selects INBOX and logs out; fails the test when refused.
pub fn login_ok(server: &impl ImapServer, user: &str, pass: &str) {
    let mut s = mail_clients::imap_login(server.imap_port(), user, pass)
        .unwrap_or_else(|e| panic!("IMAP login of {user} refused: {e}"));
    s.select_inbox();
    s.logout();
}

/// The tagged reply refusing an IMAP login; fails the test when the login is accepted.
pub fn login_refused(server: &impl ImapServer, user: &str, pass: &str) -> String {
    match mail_clients::imap_login(server.imap_port(), user, pass) {
        Ok(s) => {
            s.logout();
            panic!("IMAP login of {user} with {pass:?} was accepted");
        }
        Err(e) => e,
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Polls `f` until it returns `Some`, for at most 15 s (Dovecot's dict writes from the
/// mail processes can land after the IMAP/LMTP reply).
pub fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    eventually_within(Duration::from_secs(15), what, f)
}

/// Polls `f` every 100 ms until it returns `Some`; fails the test after `limit`.
pub fn eventually_within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's stock Dovecot configuration on this host.
/// A running Dovecot of either version, as the shared scenarios drive it.
pub trait MailServer: ImapServer {
    fn lmtp_deliver(&self, rcpt: &str, message: &str) -> Result<(), String>;
}
