//! What the real-server harnesses ([`super::dovecot`], [`super::dovecot24`],
//! [`super::postfix`]) share: the tiny IMAP, LMTP and SMTP client pieces the tests drive
//! the servers with, the readiness probes, doveadm's answers, and starting and stopping a
//! server in a process group of its own.
//!
//! ```text
//! imap:  S: * OK [CAPABILITY ...] Dovecot (Debian) ready.
//!        C: a1 LOGIN "alice@example.org" "pass \"word\""
//!        S: a1 OK [CAPABILITY ...] Logged in          | a1 NO [AUTHENTICATIONFAILED] ...
//! lmtp:  LHLO / MAIL FROM / RCPT TO (550 5.1.1 ... User doesn't exist) / DATA / QUIT
//! smtp:  replies as in LMTP: `250-...` lines, then the last one `250 ...`
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// How long a client waits for any single reply from a server (policy and auth answers
/// behind an SMTP reply included).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

// ----- server processes --------------------------------------------------------------------

/// The first of `candidates` that exists, else `name` (looked up in `PATH`).
pub fn binary(name: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| name.to_owned())
}

/// Spawns `command` in a process group of its own (a ^C to the test run does not reach
/// it first, and it can be killed as a group), stdin from /dev/null, stdout and stderr
/// into a new file at `output`.
pub fn spawn_in_own_group(command: &mut Command, output: &Path) -> std::io::Result<Child> {
    let out = std::fs::File::create(output)
        .unwrap_or_else(|e| panic!("create {}: {e}", output.display()));
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .process_group(0)
        .spawn()
}

/// Whether process `pid` has exited (without reaping it).
pub fn is_dead_or_zombie(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "123 (dovecot) Z ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
        Err(_) => true,
    }
}

/// Stops a server spawned by [`spawn_in_own_group`] whose `child` leads the group:
/// SIGTERM to it, up to `grace` for it to exit, then SIGKILL to whatever of its process
/// group is left.
pub fn stop_process_group(mut child: Child, grace: Duration) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    // Wait without reaping: while the leader is unreaped (even a zombie) its pid, which
    // is also the process group id, cannot be reused, so killpg below hits only the server.
    let deadline = Instant::now() + grace;
    while !is_dead_or_zombie(child.id()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// The first line a fresh connection to `127.0.0.1:<port>` gets, and the connection.
pub fn greeting_line(port: u16) -> std::io::Result<(String, TcpStream)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    Ok((line, stream))
}

/// The first line a fresh IMAP connection gets.
pub fn imap_greeting(port: u16) -> std::io::Result<String> {
    greeting_line(port).map(|(line, _)| line)
}

// ----- Dovecot (2.3 and 2.4) -----------------------------------------------------------------

/// Waits until Dovecot (`child`, its master) greets over IMAP on `imap_port` and its
/// LMTP socket accepts.
pub fn wait_for_dovecot(
    child: Option<&Child>,
    imap_port: u16,
    lmtp_socket: &Path,
    within: Duration,
) -> Result<(), String> {
    let Some(pid) = child.map(Child::id) else {
        return Err("dovecot is not running".to_owned());
    };
    let deadline = Instant::now() + within;
    loop {
        // Not reaped here: stopping relies on the master's pid staying reserved.
        if is_dead_or_zombie(pid) {
            return Err("dovecot exited".to_owned());
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {within:?}"));
        }
        if let Ok(greeting) = imap_greeting(imap_port) {
            if greeting.starts_with("* OK") && UnixStream::connect(lmtp_socket).is_ok() {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Dovecot's stderr (what it wrote before its log was set up), then its log.
pub fn dovecot_log(stderr: &Path, log: &Path) -> String {
    let mut s = std::fs::read_to_string(stderr).unwrap_or_default();
    s.push_str(&std::fs::read_to_string(log).unwrap_or_default());
    s
}

/// The users `doveadm user '*'` printed (`out`), one an entry, in Dovecot's order;
/// panics with the output and `log()` unless doveadm succeeded.
pub fn doveadm_user_list(out: Output, log: impl FnOnce() -> String) -> Vec<String> {
    assert!(
        out.status.success(),
        "doveadm user '*' failed ({}):\n{}{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The field `doveadm user -f <field> <user>` printed (`out`); `None` when the userdb
/// does not know the user.
pub fn doveadm_user_field(out: Output, user: &str, field: &str) -> Option<String> {
    // doveadm user exits 67 (EX_NOUSER) for an unknown user.
    if out.status.code() == Some(67) {
        return None;
    }
    assert!(
        out.status.success(),
        "doveadm user -f {field} {user} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

// ----- IMAP --------------------------------------------------------------------------------

/// A server the tests log in to over IMAP on a loopback port.
pub trait ImapServer {
    fn imap_port(&self) -> u16;
}

/// Opens an IMAP connection to `127.0.0.1:<port>` and logs in; `Err` is the tagged reply
/// (e.g. `a1 NO [AUTHENTICATIONFAILED] Authentication failed.`).
pub fn imap_login(port: u16, user: &str, pass: &str) -> Result<ImapSession, String> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
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
    let login = format!("LOGIN {} {}", imap_string(user), imap_string(pass));
    let (_, done) = session.command(&login);
    if tagged_status(&done) == "OK" {
        Ok(session)
    } else {
        Err(done)
    }
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
pub fn tagged_status(line: &str) -> &str {
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

    /// Sends `command` and returns (untagged lines, tagged completion line).
    pub fn command(&mut self, command: &str) -> (Vec<String>, String) {
        self.next_tag += 1;
        let tag = format!("a{}", self.next_tag);
        self.reader
            .get_mut()
            .write_all(format!("{tag} {command}\r\n").as_bytes())
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

// ----- SMTP and LMTP -----------------------------------------------------------------------

/// Why [`read_reply`] got no whole reply.
pub enum ReplyError {
    /// The server closed the connection.
    Closed,
    Read(std::io::Error),
}

/// One SMTP/LMTP reply: its lines without line ends, up to the last one (a `250-...` line
/// is followed by more, `250 ...` is the last). `seen` gets each line as it arrives.
pub fn read_reply(
    reader: &mut impl BufRead,
    mut seen: impl FnMut(&str),
) -> Result<Vec<String>, ReplyError> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(ReplyError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReplyError::Read(e)),
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        seen(&line);
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Ok(lines);
        }
    }
}

/// `message` with CRLF line ends and lines starting with `.` doubled, its last line
/// ended by CRLF; the final `.` line is sent as its own command.
pub fn dot_stuffed(message: &str) -> String {
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

/// Delivers `message` (LF or CRLF line ends) to `rcpt` over LMTP at `socket`. `Err`
/// carries the server's reply to whichever step refused (RCPT TO or the end of DATA).
pub fn lmtp_deliver(socket: &Path, rcpt: &str, message: &str) -> Result<(), String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("connect to LMTP: {e}"))?;
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

    /// The last line of one (possibly multi-line `250-...`) reply, or what went wrong.
    fn reply(&mut self) -> String {
        match read_reply(&mut self.reader, |_| {}) {
            Ok(mut lines) => lines.pop().unwrap_or_default(),
            Err(ReplyError::Closed) => "(connection closed)".to_owned(),
            Err(ReplyError::Read(e)) => format!("(read failed: {e})"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_dot_stuffing() {
        assert_eq!(imap_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(imap_string("x\ny"), "{3+}\r\nx\ny");
        assert_eq!(dot_stuffed("a\n.b\r\n..c"), "a\r\n..b\r\n...c\r\n");
        assert_eq!(dot_stuffed("."), "..\r\n");
    }

    #[test]
    fn replies_end_at_the_line_without_a_dash() {
        let mut input: &[u8] = b"250-first\r\n250-second\r\n250 last\r\n220 next\r\n";
        let mut seen = Vec::new();
        let lines = read_reply(&mut input, |l| seen.push(l.to_owned())).ok();
        let want = ["250-first", "250-second", "250 last"].map(String::from);
        assert_eq!(lines.as_deref(), Some(&want[..]));
        assert_eq!(seen, want);
        assert!(matches!(
            read_reply(&mut input, |_| {}).ok().as_deref(),
            Some([l]) if l == "220 next"
        ));
        assert!(matches!(
            read_reply(&mut input, |_| {}),
            Err(ReplyError::Closed)
        ));
    }
}
