//! A real Dovecot 2.4 (Debian trixie's 2.4.1, in a chroot) wired to a test daemon exactly
//! as docs/dovecot.md tells an operator: the chroot's stock `/etc/dovecot`, copied, with
//! the shipped `dovecot/dovecot24.conf` as `conf.d/99-postern.conf` (`passdb lua` /
//! `userdb lua` running the shipped `dovecot/postern.lua` against the daemon's loopback
//! auth API, `last_login` and `quota_clone` through its dict socket), driven with the
//! IMAP and LMTP clients of [`super::mail_clients`]. The shipped lines get the test's
//! paths; what only a test needs is in `local.conf` (see [`super::dovecot`]).
//!
//! The chroot is built once per machine by `.ci/trixie.sh` (default
//! `/var/cache/postern-test/trixie`, or `TRIXIE_CHROOT`). Each instance bind-mounts
//! the daemon's temporary directory into the chroot at the same path, so the config, the
//! Lua script copy, the secret file, the dict socket, Dovecot's base_dir and log, and the
//! mail homes have one path inside and outside; TCP on 127.0.0.1 is shared. Dropping a
//! [`Dovecot24`] stops Dovecot's process group, then unmounts.
//!
//! ```text
//! host  /tmp/postern-test-XXXX/            (TestDaemon: dict.sock, auth-http.secret, vmail/)
//!         dovecot24/etc/ (stock + 99-postern.conf + local.conf) postern.lua run/ state/ dovecot.log
//! chroot /var/cache/postern-test/trixie/tmp/postern-test-XXXX   <- mount --bind of the above
//! chroot DIR dovecot -F -c /tmp/postern-test-XXXX/dovecot24/etc/dovecot.conf
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::dovecot_conf::layer_on_stock;
use super::mail_clients::{
    self, dovecot_log, spawn_in_own_group, stop_process_group, wait_for_dovecot, ImapServer,
    ImapSession,
};
use super::{free_port, TestDaemon};

/// A logged-in IMAP connection to Dovecot 2.4 (the same client as for 2.3).
pub type Imap = ImapSession;

/// Where `.ci/trixie.sh` puts the chroot unless `TRIXIE_CHROOT` says otherwise.
pub const DEFAULT_CHROOT: &str = "/var/cache/postern-test/trixie";
/// How long Dovecot may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long Dovecot's master may take to stop its children after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The trixie chroot; panics (failing the test) with what to run when it is missing.
pub fn chroot_dir() -> PathBuf {
    let dir = std::env::var_os("TRIXIE_CHROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROOT));
    assert!(
        dir.join(".postern-ready").exists(),
        "the Dovecot 2.4 tests need the Debian trixie chroot at {} and it is missing: \
         run `sudo bash .ci/trixie.sh` once (CI runs it), or set TRIXIE_CHROOT",
        dir.display()
    );
    dir
}

/// What the Dovecot side of one test instance is given.
pub struct Options {
    /// `postern_url` for the Lua script (the daemon's `listen.auth_http` by default).
    pub url: String,
    /// `postern_secret_file` for the Lua script (the daemon's by default).
    pub secret_file: PathBuf,
}

impl Options {
    pub fn for_daemon(daemon: &TestDaemon) -> Options {
        Options {
            url: format!("http://{}", daemon.auth_http),
            secret_file: daemon.dir.join("auth-http.secret"),
        }
    }
}

/// A running Dovecot 2.4.1 in the trixie chroot.
pub struct Dovecot24 {
    pub chroot: PathBuf,
    /// `<daemon dir>/dovecot24`, the same path inside the chroot and out.
    pub dir: PathBuf,
    pub config: PathBuf,
    pub imap_port: u16,
    pub lmtp_socket: PathBuf,
    log: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
    // Dropped after `Drop::drop` has stopped Dovecot.
    _mount: BindMount,
}

impl Dovecot24 {
    /// Starts Dovecot 2.4 for `daemon` and waits until IMAP greets.
    pub fn start(daemon: &TestDaemon) -> Dovecot24 {
        Self::start_with(daemon, Options::for_daemon(daemon))
    }

    pub fn start_with(daemon: &TestDaemon, options: Options) -> Dovecot24 {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the Dovecot 2.4 tests need root: chroot, mount, and Dovecot's privilege drop"
        );
        let chroot = chroot_dir();
        let dir = daemon.dir.join("dovecot24");
        std::fs::create_dir_all(&dir).expect("mkdir dovecot24");
        // The shipped script, not a test copy of it.
        let lua = dir.join("postern.lua");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("dovecot/postern.lua");
        std::fs::copy(&shipped, &lua).unwrap_or_else(|e| panic!("copy {}: {e}", shipped.display()));
        let mount = BindMount::new(&daemon.dir, &chroot);
        let etc = dir.join("etc");
        let shipped_conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("dovecot/dovecot24.conf");
        let postern_conf = std::fs::read_to_string(&shipped_conf)
            .unwrap_or_else(|e| panic!("read {}: {e}", shipped_conf.display()))
            .replace(
                "/usr/share/postern/dovecot/postern.lua",
                &lua.display().to_string(),
            )
            .replace("http://127.0.0.1:8026", &options.url)
            .replace(
                "/etc/postern/auth-http.secret",
                &options.secret_file.display().to_string(),
            )
            .replace(
                "/run/postern/dict.sock",
                &daemon.dict_socket.display().to_string(),
            )
            .replace(
                "/var/spool/postfix/private/dovecot-lmtp",
                &dir.join("postfix-lmtp").display().to_string(),
            )
            + &format!("first_valid_uid = {}\n", super::MAIL_UID);
        let config = layer_on_stock(
            &chroot.join("etc/dovecot"),
            &etc,
            &[("conf.d/99-postern.conf", postern_conf)],
        );
        let log = dir.join("dovecot.log");
        let stderr = dir.join("dovecot.stderr");
        let instance = daemon
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("postern-test")
            .to_owned();

        let mut mount = Some(mount);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let imap_port = free_port();
            let _ = std::fs::remove_dir_all(dir.join("run"));
            let text = local_conf(&dir, &instance, imap_port);
            std::fs::write(etc.join("local.conf"), text).expect("write local.conf");
            let child = spawn_in_own_group(
                Command::new("chroot")
                    .arg(&chroot)
                    .arg("dovecot")
                    .arg("-F")
                    .arg("-c")
                    .arg(&config),
                &stderr,
            )
            .unwrap_or_else(|e| panic!("cannot run chroot: {e}"));
            let mut d = Dovecot24 {
                chroot: chroot.clone(),
                dir: dir.clone(),
                config: config.clone(),
                imap_port,
                lmtp_socket: dir.join("run").join("lmtp"),
                log: log.clone(),
                stderr: stderr.clone(),
                child: Some(child),
                _mount: mount.take().expect("mount"),
            };
            match d.wait_ready() {
                Ok(()) => return d,
                Err(_) if attempt < 5 && d.log_contents().contains("Address already in use") => {
                    d.stop();
                    mount = Some(std::mem::replace(&mut d._mount, BindMount::none()));
                }
                // Dropping `d` while panicking prints Dovecot's log.
                Err(why) => panic!("Dovecot 2.4 did not start: {why}"),
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        wait_for_dovecot(
            self.child.as_ref(),
            self.imap_port,
            &self.lmtp_socket,
            START_TIMEOUT,
        )
    }

    /// Dovecot's stderr (before its log was set up) and its log.
    pub fn log_contents(&self) -> String {
        dovecot_log(&self.stderr, &self.log)
    }

    /// Logs in over IMAP; `Err` is the tagged reply (`a1 NO [AUTHENTICATIONFAILED] ...`).
    pub fn imap_login(&self, user: &str, pass: &str) -> Result<Imap, String> {
        mail_clients::imap_login(self.imap_port, user, pass)
    }

    /// Delivers `message` to `rcpt` over LMTP; `Err` is the refusing step and reply.
    pub fn lmtp_deliver(&self, rcpt: &str, message: &str) -> Result<(), String> {
        mail_clients::lmtp_deliver(&self.lmtp_socket, rcpt, message)
    }

    /// `doveadm -c <config> <args>` inside the chroot.
    pub fn doveadm(&self, args: &[&str]) -> Output {
        Command::new("chroot")
            .arg(&self.chroot)
            .arg("doveadm")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run doveadm in the chroot")
    }

    /// `doveadm user '*'`: the userdb iteration.
    pub fn doveadm_user_list(&self) -> Vec<String> {
        mail_clients::doveadm_user_list(self.doveadm(&["user", "*"]), || self.log_contents())
    }

    /// One userdb field as Dovecot sees it; `None` when the userdb does not know the user.
    pub fn doveadm_user_field(&self, user: &str, field: &str) -> Option<String> {
        mail_clients::doveadm_user_field(self.doveadm(&["user", "-f", field, user]), user, field)
    }

    /// SIGTERM to the master, then SIGKILL to what is left of its process group.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_process_group(child, STOP_TIMEOUT);
        }
    }
}

impl ImapServer for Dovecot24 {
    fn imap_port(&self) -> u16 {
        self.imap_port
    }
}

impl super::dovecot::MailServer for Dovecot24 {
    fn lmtp_deliver(&self, rcpt: &str, message: &str) -> Result<(), String> {
        Dovecot24::lmtp_deliver(self, rcpt, message)
    }
}

impl Drop for Dovecot24 {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- dovecot 2.4 log ({}) ---\n{}",
                self.dir.display(),
                self.log_contents()
            );
        }
    }
}

/// `src` bind-mounted at `<chroot>/<src>`; unmounted on drop.
struct BindMount {
    target: Option<PathBuf>,
}

impl BindMount {
    fn new(src: &Path, chroot: &Path) -> BindMount {
        let relative = src.strip_prefix("/").expect("an absolute path");
        let target = chroot.join(relative);
        std::fs::create_dir_all(&target).expect("create the mount point in the chroot");
        let out = Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(&target)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount --bind {} {} failed: {}",
            src.display(),
            target.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        BindMount {
            target: Some(target),
        }
    }

    fn none() -> BindMount {
        BindMount { target: None }
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let Some(target) = self.target.take() else {
            return;
        };
        let unmounted = Command::new("umount")
            .arg(&target)
            .status()
            .is_ok_and(|s| s.success())
            || Command::new("umount")
                .arg("-l")
                .arg(&target)
                .status()
                .is_ok_and(|s| s.success());
        if unmounted {
            // The now empty mount point; never recursive, in case the unmount did not happen.
            let _ = std::fs::remove_dir(&target);
        } else {
            eprintln!("could not unmount {}", target.display());
        }
    }
}

/// The test-only settings of one instance (`local.conf`, read after `conf.d`).
fn local_conf(dir: &Path, instance: &str, imap_port: u16) -> String {
    format!(
        r#"# postern test instance only (Dovecot 2.4): everything under {dir}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
instance_name = {instance}
listen = 127.0.0.1
ssl = no
auth_allow_cleartext = yes
auth_failure_delay = 0
auth_internal_failure_delay = 0
auth_verbose = yes
login_trusted_networks = 127.0.0.0/8
# The test daemon's sockets are not behind /run/postern's group, and the chroot has
# neither a postern nor a postfix user or group.
mail_access_groups =
service lmtp {{
  unix_listener {dir}/postfix-lmtp {{
    user =
    group =
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}

service imap-login {{
  inet_listener imap {{
    listen = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"#,
        dir = dir.display(),
    )
}
