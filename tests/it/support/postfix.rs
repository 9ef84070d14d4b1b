//! A real Postfix 3.7 in front of a test daemon, wired as an operator wires it: SMTP AUTH
//! through postern's Dovecot-auth socket, `check_policy_service` on postern's policy
//! socket at RCPT, and `example.org` delivered over LMTP to a test [`Dovecot`]. Plus the
//! tiny SMTP client the tests drive it with (its reply reading and dot-stuffing are
//! [`super::mail_clients`]'s, shared with the LMTP client).
//!
//! Each instance lives under `<daemon dir>/postfix/`: `etc/` (main.cf, master.cf),
//! `queue/`, `data/` (owned by `postfix`) and `maillog`, with its own loopback SMTP port.
//! Every service runs unchrooted, so the absolute socket paths in main.cf mean what they
//! say. Dropping the [`Postfix`] runs `postfix stop`, kills whatever of the instance is
//! left, and prints the mail log when the test is failing.
//!
//! ```text
//! S: 220 mail.example.org ESMTP Postfix
//! C: EHLO client.test                      S: 250-... 250-AUTH PLAIN LOGIN ... 250 CHUNKING
//! C: AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==
//! S: 235 2.7.0 Authentication successful   | 535 5.7.8 Error: authentication failed: ...
//! C: MAIL FROM:<alice@example.org>         S: 250 2.1.0 Ok
//! C: RCPT TO:<full@example.org>
//! S: 452 4.2.2 <full@example.org>: Recipient address rejected: Mailbox full
//! ```
//!
//! Needs root (Postfix's master and `postfix stop`) and the Debian package `postfix`.

use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::dovecot::Dovecot;
use super::mail_clients::{
    binary, dot_stuffed, greeting_line, read_reply, spawn_in_own_group, ReplyError, IO_TIMEOUT,
};
use super::{free_port, TestDaemon};

/// What to install when Postfix is missing.
const PACKAGES: &str = "apt-get install postfix";
/// Where Debian keeps Postfix's daemons; leftovers are recognised by their executable.
const DAEMON_DIRECTORY: &str = "/usr/lib/postfix/sbin";
/// How long Postfix may take to come up (`postfix start` checks the queue first).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the master may take to exit after `postfix stop`.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `postfix start-fg` with its own configuration, queue and SMTP port.
pub struct Postfix {
    /// `<daemon dir>/postfix`.
    pub dir: PathBuf,
    /// `<dir>/etc`: main.cf and master.cf (what `postfix -c` takes).
    pub config_dir: PathBuf,
    /// The loopback port smtpd listens on.
    pub port: u16,
    queue: PathBuf,
    maillog: PathBuf,
    stderr: PathBuf,
    /// `postfix-script start-fg`, the parent of the master.
    child: Option<Child>,
}

impl Postfix {
    /// Starts Postfix for `daemon`'s auth and policy sockets, delivering `example.org` to
    /// `dovecot`'s LMTP socket, and waits until SMTP greets.
    pub fn start(daemon: &TestDaemon, dovecot: &Dovecot) -> Postfix {
        Self::start_for_domain(daemon, dovecot, "example.org")
    }

    /// Like [`Postfix::start`], delivering the mail domain `domain` instead.
    pub fn start_for_domain(daemon: &TestDaemon, dovecot: &Dovecot, domain: &str) -> Postfix {
        Self::start_at(
            &daemon.dir,
            &daemon.auth_socket,
            &daemon.policy_socket,
            &dovecot.lmtp_socket,
            domain,
        )
    }

    /// Starts Postfix under `<parent>/postfix` with the given sockets. The auth socket must
    /// already accept connections: smtpd dies when it cannot reach it.
    pub fn start_for(parent: &Path, auth: &Path, policy: &Path, lmtp: &Path) -> Postfix {
        Self::start_at(parent, auth, policy, lmtp, "example.org")
    }

    fn start_at(parent: &Path, auth: &Path, policy: &Path, lmtp: &Path, domain: &str) -> Postfix {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the real-Postfix tests need root: Postfix's master runs as root"
        );
        let postfix = binary("postfix", &["/usr/sbin/postfix", "/usr/local/sbin/postfix"]);
        let postfix_uid = nix::unistd::User::from_name("postfix")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no `postfix` user ({PACKAGES})"))
            .uid;
        let dir = parent.join("postfix");
        let config_dir = dir.join("etc");
        let queue = dir.join("queue");
        let data = dir.join("data");
        for d in [&dir, &config_dir, &queue, &data] {
            std::fs::create_dir_all(d).expect("mkdir postfix dirs");
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        // The queue belongs to root (`postfix start` makes its subdirectories); the data
        // directory, where the master keeps its lock, to the mail owner.
        nix::unistd::chown(&data, Some(postfix_uid), None).expect("chown data_directory");

        // A port picked by binding :0 may be taken again before the master binds it; then
        // the master exits at once with "Address already in use" and we try another.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            // Output of an earlier attempt would read as this one's failure.
            let _ = std::fs::remove_file(dir.join("maillog"));
            let _ = std::fs::remove_file(queue.join("pid").join("master.pid"));
            std::fs::write(
                config_dir.join("main.cf"),
                main_cf(&dir, auth, policy, lmtp, domain),
            )
            .expect("write main.cf");
            std::fs::write(config_dir.join("master.cf"), master_cf(port)).expect("write master.cf");
            let maillog = dir.join("maillog");
            let stderr = dir.join("postfix.stderr");
            // Its own process group: a ^C to the test run does not reach it first, and
            // the master (a session leader of its own) is found by its pid file.
            let child = spawn_in_own_group(
                Command::new(&postfix)
                    .arg("-c")
                    .arg(&config_dir)
                    .arg("start-fg"),
                &stderr,
            )
            .unwrap_or_else(|e| panic!("cannot run {postfix}: {e} ({PACKAGES})"));
            let mut p = Postfix {
                dir: dir.clone(),
                config_dir: config_dir.clone(),
                port,
                queue: queue.clone(),
                maillog,
                stderr,
                child: Some(child),
            };
            match p.wait_ready() {
                Ok(()) => return p,
                Err(_) if attempt < 5 && p.log().contains("Address already in use") => {
                    p.stop();
                }
                // Dropping `p` while panicking prints Postfix's log.
                Err(why) => panic!("Postfix did not start: {why}"),
            }
        }
    }

    /// Waits until smtpd greets on the port, from this instance (not some other
    /// server that took the port meanwhile).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("postfix start-fg exited with {status}"));
            }
            // e.g. smtpd's "fatal: no SASL authentication mechanisms" when the auth
            // socket does not answer: the master would only retry it every 2 s.
            if let Some(fatal) = self.log().lines().find(|l| l.contains(" fatal: ")) {
                return Err(fatal.to_owned());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {START_TIMEOUT:?}"));
            }
            if let Ok(greeting) = smtp_greeting(self.port) {
                if greeting.starts_with("220 mail.example.org ") && self.master_pid().is_some() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new SMTP connection, greeted and past `EHLO`.
    pub fn smtp(&self) -> SmtpSession {
        let mut s = SmtpSession::connect(self.port);
        let (code, reply) = s.ehlo();
        assert_eq!(code, 250, "EHLO refused: {reply}");
        s
    }

    /// Postfix's mail log (`maillog_file`), then whatever `postfix start-fg` wrote to
    /// stderr (the shell's "Terminated" when the master was stopped, early errors).
    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(&self.maillog).unwrap_or_default();
        for line in std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .lines()
        {
            s.push_str(&format!("postfix start-fg: {line}\n"));
        }
        s
    }

    /// The master's pid from `<queue>/pid/master.pid`, once it has written it.
    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.queue.join("pid").join("master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops Postfix: `postfix stop`, a wait for the master, then SIGKILL to whatever of
    /// its session is left. Safe to call twice.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let master = self.master_pid();
        let _ = Command::new(binary(
            "postfix",
            &["/usr/sbin/postfix", "/usr/local/sbin/postfix"],
        ))
        .arg("-c")
        .arg(&self.config_dir)
        .arg("stop")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
        // postfix-script waits for the master in the foreground, so its exit means the
        // master is gone.
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        // The master is a session leader; its children (smtpd, qmgr, lmtp, ...) share its
        // session and normally exit on its SIGTERM. Kill any that did not.
        if let Some(sid) = master {
            for pid in session_members(sid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- postfix log ({}) ---\n{}",
                self.dir.display(),
                self.log()
            );
        }
    }
}

/// Every service of the instance, none chrooted: a chrooted smtpd or lmtp would resolve
/// the absolute socket paths in main.cf under `/var/spool/postfix`. No `local`,
/// `virtual` or `pipe`: mail for `example.org` goes to Dovecot over LMTP.
fn master_cf(port: u16) -> String {
    format!(
        "\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port} inet n -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
    )
}

/// The whole main.cf of one test instance, delivering `domain` (the host names stay
/// `mail.example.org`, which the greeting check looks for).
fn main_cf(dir: &Path, auth: &Path, policy: &Path, lmtp: &Path, domain: &str) -> String {
    format!(
        r#"# postern test instance: everything under {dir}
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
myhostname = mail.example.org
mydomain = example.org
myorigin = $myhostname
mydestination =
relay_domains =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
# A daemon that fails (e.g. smtpd before the auth socket exists) is retried after 2 s,
# not 60 s.
service_throttle_time = 2s

# Mail for {domain} goes to Dovecot over LMTP. virtual_mailbox_maps stays empty, so
# smtpd takes every address of the domain and postern's policy decides who exists.
virtual_mailbox_domains = {domain}
virtual_transport = lmtp:unix:{lmtp}

# SMTP AUTH through postern's Dovecot-auth socket, plaintext on loopback without TLS.
smtpd_tls_security_level = none
smtpd_tls_auth_only = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {auth}
smtpd_sasl_security_options = noanonymous
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions =
    check_policy_service {{ unix:{policy}, timeout=10s, default_action=DEFER_IF_PERMIT }}
"#,
        dir = dir.display(),
        auth = auth.display(),
        policy = policy.display(),
        lmtp = lmtp.display(),
    )
}

/// The first line a fresh SMTP connection gets (then QUIT).
fn smtp_greeting(port: u16) -> std::io::Result<String> {
    let (line, mut stream) = greeting_line(port)?;
    let _ = stream.write_all(b"QUIT\r\n");
    Ok(line)
}

/// Postfix processes (by executable) whose session id is `sid`: the master and its
/// children.
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp session ...": fields after the command name.
            let session = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(3))
                .and_then(|s| s.parse::<i32>().ok());
            session == Some(sid)
                && std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe.starts_with(DAEMON_DIRECTORY))
        })
        .collect()
}

/// The client half of one SMTP session. Every reply comes back whole (all lines of a
/// multi-line reply, joined by `\n`) with its code, so tests can assert enhanced codes.
pub struct SmtpSession {
    reader: BufReader<TcpStream>,
    /// Every line sent (`C: `) and received (`S: `), for assertion messages.
    transcript: Vec<String>,
}

impl SmtpSession {
    /// Connects to `127.0.0.1:<port>` and reads the greeting, which must be 220.
    pub fn connect(port: u16) -> SmtpSession {
        let stream =
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to Postfix's smtpd");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut s = SmtpSession {
            reader: BufReader::new(stream),
            transcript: Vec::new(),
        };
        let (code, greeting) = s.reply();
        assert_eq!(code, 220, "unexpected SMTP greeting: {greeting}");
        s
    }

    /// What was said so far, one line each.
    pub fn transcript(&self) -> String {
        self.transcript.join("\n")
    }

    fn send_line(&mut self, line: &str) {
        self.transcript.push(format!("C: {line}"));
        self.reader
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write to SMTP");
    }

    /// One whole reply: its code and its lines joined by `\n`.
    fn reply(&mut self) -> (u16, String) {
        let transcript = &mut self.transcript;
        let lines = match read_reply(&mut self.reader, |l| transcript.push(format!("S: {l}"))) {
            Ok(lines) => lines,
            // The transcript is printed as the session drops.
            Err(ReplyError::Closed) => panic!("Postfix closed the SMTP connection"),
            Err(ReplyError::Read(e)) => panic!("read from SMTP: {e}"),
        };
        let code = lines
            .last()
            .and_then(|l| l.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an SMTP reply: {lines:?}"));
        (code, lines.join("\n"))
    }

    /// Sends one command line and returns the reply.
    pub fn command(&mut self, line: &str) -> (u16, String) {
        self.send_line(line);
        self.reply()
    }

    /// `EHLO client.test`; the reply lists the extensions (`AUTH PLAIN LOGIN`, ...).
    pub fn ehlo(&mut self) -> (u16, String) {
        self.command("EHLO client.test")
    }

    /// `AUTH PLAIN` with the initial response; returns the final code (235 or 535).
    pub fn auth_plain(&mut self, user: &str, pass: &str) -> u16 {
        let resp = STANDARD.encode(format!("\0{user}\0{pass}"));
        self.command(&format!("AUTH PLAIN {resp}")).0
    }

    /// `AUTH LOGIN`, answering the username and password challenges; returns the final
    /// code (or the first one that is not a 334 challenge).
    pub fn auth_login(&mut self, user: &str, pass: &str) -> u16 {
        let (code, text) = self.command("AUTH LOGIN");
        if code != 334 {
            return code;
        }
        assert!(text.ends_with("VXNlcm5hbWU6"), "not `Username:`: {text}");
        let (code, text) = self.command(&STANDARD.encode(user));
        if code != 334 {
            return code;
        }
        assert!(text.ends_with("UGFzc3dvcmQ6"), "not `Password:`: {text}");
        self.command(&STANDARD.encode(pass)).0
    }

    pub fn mail_from(&mut self, addr: &str) -> (u16, String) {
        self.command(&format!("MAIL FROM:<{addr}>"))
    }

    /// `MAIL FROM:<addr> SIZE=<size>`: the size the client announces, which the policy
    /// service sees at RCPT.
    pub fn mail_from_sized(&mut self, addr: &str, size: u64) -> (u16, String) {
        self.command(&format!("MAIL FROM:<{addr}> SIZE={size}"))
    }

    pub fn rcpt_to(&mut self, addr: &str) -> (u16, String) {
        self.command(&format!("RCPT TO:<{addr}>"))
    }

    /// `DATA`, then `message` (LF or CRLF line ends, dot-stuffed here) and the final
    /// `.`; returns the reply to the end of data (250 ... queued as ...), or the refusal
    /// of `DATA` itself.
    pub fn data(&mut self, message: &str) -> (u16, String) {
        let (code, text) = self.command("DATA");
        if code != 354 {
            return (code, text);
        }
        let body = dot_stuffed(message);
        self.transcript
            .push(format!("C: <{} bytes of message>", body.len()));
        self.reader
            .get_mut()
            .write_all(body.as_bytes())
            .expect("write message");
        self.command(".")
    }

    pub fn rset(&mut self) -> (u16, String) {
        self.command("RSET")
    }

    /// `QUIT`; the reply must be 221.
    pub fn quit(mut self) {
        let (code, text) = self.command("QUIT");
        assert_eq!(code, 221, "QUIT: {text}");
    }
}

impl Drop for SmtpSession {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- SMTP session ---\n{}", self.transcript());
        }
    }
}
