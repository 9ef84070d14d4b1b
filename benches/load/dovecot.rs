//! Real Dovecot 2.3 for the IMAP phases, configured as tests/it/support/dovecot.rs does
//! (Debian's stock /etc/dovecot copied, `auth-system.conf.ext` commented out, the shipped
//! `packaging/examples` files added with this run's paths, the same `local.conf`), in
//! two variants started side by side:
//!
//! ```text
//! <dir>/dovecot-postern  passdb and userdb `driver = dict` on postern's socket (shipped)
//! <dir>/dovecot-floor    the same files with passdb and userdb `driver = passwd-file`
//!                        on a file of the same accounts, {PLAIN} passwords: Dovecot's
//!                        own floor for a login; everything else (plugins, last_login
//!                        and quota_clone through postern's dict) unchanged
//! ```
//!
//! Needs root (Dovecot switches to the mail uid) and dovecot-core, dovecot-imapd.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

pub const MAIL_UID: u32 = 65534;

/// Whether this machine can run the IMAP phases.
pub fn available() -> bool {
    nix::unistd::geteuid().is_root()
        && Path::new("/usr/sbin/dovecot").exists()
        && Path::new("/etc/dovecot/dovecot.conf").exists()
}

pub struct Dovecot {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Dovecot {
    /// Starts Dovecot under `parent/<name>`; `passwd_file` selects the floor variant.
    pub fn start(
        parent: &Path,
        name: &str,
        dict_socket: &Path,
        passwd_file: Option<&Path>,
    ) -> Dovecot {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir dovecot dir");
        let etc = dir.join("etc");
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/examples");
        let auth_args = etc.join("conf.d/auth-postern.conf.ext");
        let shipped = |file: &str| {
            std::fs::read_to_string(examples.join(file))
                .expect("read packaging/examples")
                .replace("/run/postern/dict.sock", &dict_socket.display().to_string())
                .replace(
                    "/etc/dovecot/conf.d/auth-postern.conf.ext",
                    &auth_args.display().to_string(),
                )
                .replace(
                    "/var/spool/postfix/private/dovecot-lmtp",
                    &dir.join("postfix-lmtp").display().to_string(),
                )
        };
        let mut postern_conf = shipped("dovecot-postern.conf");
        if let Some(file) = passwd_file {
            let dict = format!("driver = dict\n  args = {}", auth_args.display());
            assert_eq!(
                postern_conf.matches(&dict).count(),
                2,
                "dovecot-postern.conf's passdb and userdb blocks changed"
            );
            postern_conf = postern_conf.replace(
                &dict,
                &format!(
                    "driver = passwd-file\n  args = username_format=%u {}",
                    file.display()
                ),
            );
        }
        postern_conf.push_str(&format!("first_valid_uid = {MAIL_UID}\n"));
        let _ = std::fs::remove_dir_all(&etc);
        let out = Command::new("cp")
            .arg("-a")
            .arg("/etc/dovecot")
            .arg(&etc)
            .output()
            .expect("run cp");
        assert!(out.status.success(), "cp -a /etc/dovecot failed");
        let auth = etc.join("conf.d/10-auth.conf");
        let text = std::fs::read_to_string(&auth).expect("10-auth.conf");
        let text = text.replace(
            "\n!include auth-system.conf.ext",
            "\n#!include auth-system.conf.ext",
        );
        std::fs::write(&auth, text).expect("write 10-auth.conf");
        std::fs::write(&auth_args, shipped("auth-postern.conf.ext")).expect("write auth args");
        std::fs::write(etc.join("conf.d/99-postern.conf"), postern_conf).expect("write conf");
        let port = free_port();
        std::fs::write(etc.join("local.conf"), local_conf(&dir, name, port))
            .expect("write local.conf");
        let log = std::fs::File::create(dir.join("dovecot.stderr")).expect("stderr file");
        let child = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(etc.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start dovecot");
        let d = Dovecot {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                let mut line = String::new();
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = BufReader::new(s).read_line(&mut line);
                if line.starts_with("* OK") {
                    return d;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Dovecot ({name}) did not start: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.join("dovecot.stderr")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default());
        s
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The passwd-file of the floor variant: `n` accounts, the same addresses, password and
/// homes as postern's.
pub fn write_passwd_file(
    path: &Path,
    n: usize,
    address: impl Fn(usize) -> String,
    pw: &str,
    vmail: &Path,
) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("passwd-file"));
    for i in 0..n {
        let a = address(i);
        let (local, domain) = a.split_once('@').expect("address");
        writeln!(
            out,
            "{a}:{{PLAIN}}{pw}:{MAIL_UID}:{MAIL_UID}::{}/{domain}/{local}::",
            vmail.display()
        )
        .expect("write passwd-file");
    }
    out.flush().expect("flush passwd-file");
}

/// An IMAP connection that has read the greeting.
pub struct Imap {
    reader: BufReader<TcpStream>,
}

impl Imap {
    pub fn connect(port: u16) -> Option<Imap> {
        let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        s.set_nodelay(true).ok()?;
        let mut reader = BufReader::new(s);
        let mut greeting = String::new();
        reader.read_line(&mut greeting).ok()?;
        greeting.starts_with("* OK").then_some(Imap { reader })
    }

    /// Sends `tag command` and reads up to the tagged reply; whether it is OK.
    fn command(&mut self, tag: &str, command: &str) -> Option<bool> {
        self.reader
            .get_mut()
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .ok()?;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if let Some(rest) = line.strip_prefix(tag) {
                return Some(rest.starts_with(" OK"));
            }
        }
    }

    /// `LOGIN` (the password as a quoted string) then `LOGOUT`; whether both were OK.
    pub fn login_logout(mut self, user: &str, password: &str) -> bool {
        let login = format!("LOGIN \"{user}\" \"{password}\"");
        self.command("a", &login) == Some(true) && self.command("b", "LOGOUT") == Some(true)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// tests/it/support/dovecot.rs's `local.conf` (the test-only settings), and enough
/// processes for 100 simultaneous logins plus the load's clients.
fn local_conf(dir: &Path, instance: &str, imap_port: u16) -> String {
    format!(
        r#"# postern load tool instance only: everything under {dir}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
instance_name = {instance}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
mail_access_groups =
default_process_limit = 300

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"#,
        dir = dir.display(),
    )
}
