//! A real Dovecot 2.3 wired to a test daemon's dict socket exactly as an operator wires it
//! (chatmail's `auth.conf`, the `last_login` and `quota_clone` plugins), plus the tiny IMAP
//! and LMTP clients the tests drive it with.
//!
//! Each instance lives under `<daemon dir>/dovecot/` with its own `base_dir`, `state_dir`,
//! log, loopback IMAP port and LMTP socket, so tests run side by side. Dovecot runs in its
//! own process group; dropping the [`Dovecot`] stops the master and kills whatever of that
//! group is left, and prints Dovecot's log when the test is failing.
//!
//! ```text
//! imap:  S: * OK [CAPABILITY ...] Dovecot (Debian) ready.
//!        C: a LOGIN "alice@example.org" "pass \"word\""
//!        S: a OK [CAPABILITY ...] Logged in          | a NO [AUTHENTICATIONFAILED] ...
//! lmtp:  LHLO / MAIL FROM / RCPT TO (550 5.1.1 ... User doesn't exist) / DATA / QUIT
//! ```
//!
//! Needs root (Dovecot switches to the mail uid 65534) and the Debian packages
//! `dovecot-core dovecot-imapd dovecot-lmtpd`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::TestDaemon;

/// What to install when Dovecot is missing.
const PACKAGES: &str = "apt-get install dovecot-core dovecot-imapd dovecot-lmtpd";
/// How long a client waits for any single reply from Dovecot.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
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
        let auth_args = dir.join("auth-dict.conf.ext");
        std::fs::write(&auth_args, auth_dict_args(dict_socket)).expect("write auth args");
        let config = dir.join("dovecot.conf");
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
            let text = config_text(&dir, &instance, dict_socket, &auth_args, imap_port);
            std::fs::write(&config, text).expect("write dovecot.conf");
            let out = std::fs::File::create(&stderr).expect("create dovecot.stderr");
            let child = Command::new(&dovecot)
                .arg("-F")
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup"))
                .stderr(out)
                .process_group(0)
                .spawn()
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
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return Err("dovecot is not running".to_owned());
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Not reaped here: stop() relies on the master's pid staying reserved.
            if is_dead_or_zombie(pid) {
                return Err("dovecot exited".to_owned());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {START_TIMEOUT:?}"));
            }
            if let Ok(greeting) = imap_greeting(self.imap_port) {
                if greeting.starts_with("* OK") && UnixStream::connect(&self.lmtp_socket).is_ok() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Dovecot's own log (everything: master, auth, imap, lmtp), after anything it wrote
    /// to stderr before its log was set up.
    pub fn log_contents(&self) -> String {
        let mut s = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(&self.log).unwrap_or_default());
        s
    }

    /// Opens an IMAP connection and logs in; `Err` is the tagged reply (e.g.
    /// `a NO [AUTHENTICATIONFAILED] Authentication failed.`).
    pub fn imap_login(&self, user: &str, pass: &str) -> Result<ImapSession, String> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.imap_port))
            .map_err(|e| format!("connect to IMAP: {e}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut session = ImapSession {
            reader: BufReader::new(stream),
            next_tag: 0,
        };
        let greeting = session.read_line();
        assert!(
            greeting.starts_with("* OK"),
            "unexpected IMAP greeting: {greeting}"
        );
        let (_, done) =
            session.command_parts(&["LOGIN ", &imap_string(user), " ", &imap_string(pass)]);
        if tagged_status(&done) == "OK" {
            Ok(session)
        } else {
            Err(done)
        }
    }

    /// Delivers `message` (LF or CRLF line ends) to `rcpt` over LMTP. `Err` carries the
    /// server's reply to whichever step refused (RCPT TO or the end of DATA).
    pub fn lmtp_deliver(&self, rcpt: &str, message: &str) -> Result<(), String> {
        let stream =
            UnixStream::connect(&self.lmtp_socket).map_err(|e| format!("connect to LMTP: {e}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut c = Lmtp {
            reader: BufReader::new(stream),
        };
        c.expect("greeting", None, "220")?;
        c.expect("LHLO", Some("LHLO postern-test"), "250")?;
        c.expect("MAIL", Some("MAIL FROM:<sender@example.net>"), "250")?;
        if let Err(e) = c.expect("RCPT", Some(&format!("RCPT TO:<{rcpt}>")), "250") {
            c.quit();
            return Err(e);
        }
        c.expect("DATA", Some("DATA"), "354")?;
        c.send_raw(&dot_stuffed(message));
        // LMTP answers once per accepted recipient; there is one.
        let result = c.expect("end of DATA", Some("."), "250");
        c.quit();
        result.map(drop)
    }

    /// `doveadm user '*'`: the userdb iteration, one user per entry, in Dovecot's order.
    pub fn doveadm_user_list(&self) -> Vec<String> {
        let out = self.doveadm(&["user", "*"]);
        assert!(
            out.status.success(),
            "doveadm user '*' failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_contents()
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// One userdb field as Dovecot sees it (`doveadm user -f <field> <user>`); `None` when
    /// the userdb does not know the user.
    pub fn doveadm_user_field(&self, user: &str, field: &str) -> Option<String> {
        let out = self.doveadm(&["user", "-f", field, user]);
        // doveadm user exits 67 (EX_NOUSER) for an unknown user.
        if out.status.code() == Some(67) {
            return None;
        }
        assert!(
            out.status.success(),
            "doveadm user -f {field} {user} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
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
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        // Wait without reaping: while the master is unreaped (even a zombie) its pid, which
        // is also the process group id, cannot be reused, so killpg below hits only Dovecot.
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !is_dead_or_zombie(child.id()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = child.wait();
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

/// chatmail's `auth.conf`: the password travels in the passdb key, so the first login
/// can create the account.
fn auth_dict_args(dict_socket: &Path) -> String {
    format!(
        r#"uri = proxy:{sock}:auth
password_key = passdb/%Ew"%Eu
user_key = userdb/%Eu
iterate_prefix = userdb/
iterate_disable = no
default_pass_scheme = plain
"#,
        sock = dict_socket.display()
    )
}

/// The whole `dovecot.conf` of one test instance.
fn config_text(
    dir: &Path,
    instance: &str,
    dict_socket: &Path,
    auth_args: &Path,
    imap_port: u16,
) -> String {
    let sock = dict_socket.display();
    format!(
        r#"# postern test instance: everything under {dir}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
instance_name = {instance}
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
login_trusted_networks = 127.0.0.0/8
# the mail uid/gid postern hands out in tests is 65534 (nobody/nogroup)
first_valid_uid = 1000
last_valid_uid = 0
first_valid_gid = 1000
last_valid_gid = 0
mail_location = maildir:~/Maildir

passdb {{
  driver = dict
  args = {auth_args}
}}
userdb {{
  driver = dict
  args = {auth_args}
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
# No per-IP auth penalty: every test connects from 127.0.0.1 and some fail on purpose.
# (login_trusted_networks does not exempt from it in 2.3.19.) Without this socket
# the auth process runs with the penalty disabled.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

protocol imap {{
  mail_plugins = $mail_plugins quota imap_quota quota_clone last_login
}}
protocol lmtp {{
  mail_plugins = $mail_plugins quota quota_clone
}}

plugin {{
  last_login_dict = proxy:{sock}:lastlogin
  last_login_key = last-login/%u
  quota = count:User quota
  quota_vsizes = yes
  quota_clone_dict = proxy:{sock}:quotaclone
}}
"#,
        dir = dir.display(),
        auth_args = auth_args.display(),
    )
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The first line a fresh IMAP connection gets.
fn imap_greeting(port: u16) -> std::io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

/// Whether process `pid` has exited (without reaping it).
fn is_dead_or_zombie(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "123 (dovecot) Z ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
        Err(_) => true,
    }
}

fn binary(name: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| name.to_owned())
}

/// An IMAP astring for `s`: a quoted string with `"` and `\` escaped, or a non-synchronizing
/// literal when `s` holds CR, LF, NUL or 8-bit bytes a quoted string cannot carry.
pub fn imap_string(s: &str) -> String {
    if s.bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        return format!("{{{}+}}\r\n{s}", s.len());
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// "OK" / "NO" / "BAD" of a tagged line `a1 OK ...`.
fn tagged_status(line: &str) -> &str {
    line.split(' ').nth(1).unwrap_or("")
}

/// A logged-in IMAP connection.
pub struct ImapSession {
    reader: BufReader<TcpStream>,
    next_tag: u32,
}

impl ImapSession {
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("IMAP server closed the connection"),
            Ok(_) => line.trim_end_matches(['\r', '\n']).to_owned(),
            Err(e) => panic!("read from IMAP: {e}"),
        }
    }

    /// Sends one command (its parts concatenated) and returns the untagged lines and the
    /// tagged completion line.
    fn command_parts(&mut self, parts: &[&str]) -> (Vec<String>, String) {
        self.next_tag += 1;
        let tag = format!("a{}", self.next_tag);
        let mut line = format!("{tag} ");
        for p in parts {
            line.push_str(p);
        }
        line.push_str("\r\n");
        self.reader
            .get_mut()
            .write_all(line.as_bytes())
            .expect("write to IMAP");
        let mut untagged = Vec::new();
        loop {
            let l = self.read_line();
            if l.starts_with(&format!("{tag} ")) {
                return (untagged, l);
            }
            untagged.push(l);
        }
    }

    /// Sends `command` and returns (untagged lines, tagged line).
    pub fn command(&mut self, command: &str) -> (Vec<String>, String) {
        self.command_parts(&[command])
    }

    /// `SELECT INBOX`; returns the `* <n> EXISTS` count. Panics unless the server says OK.
    pub fn select_inbox(&mut self) -> u32 {
        let (untagged, done) = self.command("SELECT INBOX");
        assert_eq!(
            tagged_status(&done),
            "OK",
            "SELECT INBOX failed: {done}\n{untagged:?}"
        );
        untagged
            .iter()
            .find_map(|l| {
                l.strip_prefix("* ")
                    .and_then(|r| r.strip_suffix(" EXISTS"))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or_else(|| panic!("no EXISTS in SELECT reply: {untagged:?}"))
    }

    /// `LOGOUT`, then reads until the server closes.
    pub fn logout(mut self) {
        let (_, done) = self.command("LOGOUT");
        assert_eq!(tagged_status(&done), "OK", "LOGOUT failed: {done}");
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
    }
}

/// The client half of one LMTP session.
struct Lmtp {
    reader: BufReader<UnixStream>,
}

impl Lmtp {
    fn send_raw(&mut self, data: &str) {
        self.reader
            .get_mut()
            .write_all(data.as_bytes())
            .expect("write to LMTP");
    }

    /// The last line of one (possibly multi-line `250-...`) reply.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return "(connection closed)".to_owned(),
                Ok(_) => {}
                Err(e) => return format!("(read failed: {e})"),
            }
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }

    /// Sends `command` (if any) and wants a reply starting with `code`.
    fn expect(&mut self, step: &str, command: Option<&str>, code: &str) -> Result<String, String> {
        if let Some(c) = command {
            self.send_raw(&format!("{c}\r\n"));
        }
        let reply = self.reply();
        if reply.starts_with(code) {
            Ok(reply)
        } else {
            Err(format!("{step}: {reply}"))
        }
    }

    fn quit(&mut self) {
        self.send_raw("QUIT\r\n");
        let _ = self.reply();
    }
}

/// `message` with CRLF line ends, lines starting with `.` doubled, and the final `.`
/// line's preceding CRLF guaranteed (the `.` itself is sent as the next command).
fn dot_stuffed(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 16);
    for line in message.split_inclusive('\n') {
        let body = line.trim_end_matches('\n').trim_end_matches('\r');
        if body.starts_with('.') {
            out.push('.');
        }
        out.push_str(body);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_dot_stuffing() {
        assert_eq!(imap_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(imap_string("x\ny"), "{3+}\r\nx\ny");
        assert_eq!(dot_stuffed("a\n.b\r\n..c"), "a\r\n..b\r\n...c\r\n");
    }
}
