//! Real Dovecot 2.3 for the IMAP phases, configured by the integration tests' own
//! `tests/it/support/dovecot_conf.rs` (included here): Debian's stock /etc/dovecot
//! copied, `auth-system.conf.ext` commented out, the shipped `packaging/examples` files
//! added with this run's paths, the same `local.conf` plus enough processes for 100
//! simultaneous logins. Two variants are started side by side:
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

#[path = "../../tests/it/support/dovecot_conf.rs"]
mod conf;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

pub use conf::MAIL_UID;

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
        let (auth_args, mut postern_conf) = conf::shipped(&dir, &etc, dict_socket);
        if let Some(file) = passwd_file {
            let dict = format!(
                "driver = dict\n  args = {}",
                etc.join("conf.d/auth-postern.conf.ext").display()
            );
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
        let config = conf::layer_on_stock(
            Path::new(conf::STOCK),
            &etc,
            &[
                ("conf.d/auth-postern.conf.ext", auth_args),
                ("conf.d/99-postern.conf", postern_conf),
            ],
        );
        let port = free_port();
        std::fs::write(
            etc.join("local.conf"),
            conf::local_conf(&dir, name, port, "default_process_limit = 300\n"),
        )
        .expect("write local.conf");
        let log = std::fs::File::create(dir.join("dovecot.stderr")).expect("stderr file");
        let child = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&config)
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
