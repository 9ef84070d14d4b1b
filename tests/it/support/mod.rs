//! Shared test helpers: a real `postern serve` in a temporary directory, its CLI, and a
//! raw dict client. Everything lives under one temp dir with unique socket paths, so
//! tests run side by side.

#![allow(dead_code)]

pub mod browser;
pub mod deltachat;
pub mod dovecot;
pub mod dovecot24;
pub mod dovecot_conf;
pub mod mail_clients;
pub mod nspawn;
pub mod postfix;
pub mod postgres;
pub mod scenarios;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use dovecot_conf::MAIL_UID;
/// The gid mail homes belong to in tests (Debian's `nogroup`).
pub const MAIL_GID: u32 = 65534;

/// A running `postern serve` with its own config, database and sockets.
pub struct TestDaemon {
    tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub dict_socket: PathBuf,
    /// Dovecot auth protocol socket (Postfix SMTP AUTH).
    pub auth_socket: PathBuf,
    /// Postfix policy delegation socket.
    pub policy_socket: PathBuf,
    /// `host:port` of the web listener (/new, /admin).
    pub http: String,
    /// `host:port` of the Dovecot 2.4 auth API, and the secret it requires.
    pub auth_http: String,
    pub auth_http_secret: String,
    pub vmail: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_postern")
}

impl TestDaemon {
    /// Starts the daemon in registration `mode` and waits until its socket answers.
    pub fn start(mode: &str) -> TestDaemon {
        Self::start_with(mode, &[])
    }

    /// Like `start`, with extra `POSTERN_*` environment settings.
    pub fn start_with(mode: &str, env: &[(&str, &str)]) -> TestDaemon {
        let mut d = Self::configure(mode, env);
        d.spawn();
        d
    }

    /// Writes the configuration without starting the daemon (CLI-only tests).
    pub fn configure(mode: &str, env: &[(&str, &str)]) -> TestDaemon {
        let tmp = tempfile::Builder::new()
            .prefix("postern-test-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let vmail = dir.join("vmail");
        std::fs::create_dir(&vmail).expect("mkdir vmail");
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(
                &vmail,
                Some(nix::unistd::Uid::from_raw(MAIL_UID)),
                Some(nix::unistd::Gid::from_raw(MAIL_GID)),
            )
            .expect("chown vmail");
        }
        let dict_socket = dir.join("dict.sock");
        let auth_socket = dir.join("auth.sock");
        let policy_socket = dir.join("policy.sock");
        let config = dir.join("postern.toml");
        let http = format!("127.0.0.1:{}", free_port());
        let auth_http = format!("127.0.0.1:{}", free_port());
        // At least the 16 characters postern requires, whatever the pid.
        let auth_http_secret = format!("test-secret-{:010}", std::process::id());
        let secret_file = dir.join("auth-http.secret");
        std::fs::write(&secret_file, format!("{auth_http_secret}\n")).expect("write secret");
        std::fs::write(
            &config,
            format!(
                r#"domains = ["example.org"]
[database]
path = "{db}"
[listen]
dict = "{dict}"
auth = "{auth}"
policy = "{policy}"
http = "{http}"
auth_http = "{auth_http}"
socket_mode = "0666"
[auth_http]
secret_file = "{secret_file}"
[mailbox]
home = "{vmail}/{{domain}}/{{local}}"
uid = "{MAIL_UID}"
gid = "{MAIL_GID}"
[registration]
mode = "{mode}"
[argon2]
memory_kib = 1024
iterations = 1
[log]
level = "debug"
target = "stderr"
"#,
                db = dir.join("postern.db").display(),
                dict = dict_socket.display(),
                auth = auth_socket.display(),
                policy = policy_socket.display(),
                secret_file = secret_file.display(),
                vmail = vmail.display(),
            ),
        )
        .expect("write config");
        TestDaemon {
            tmp,
            dir,
            config,
            dict_socket,
            auth_socket,
            policy_socket,
            http,
            auth_http,
            auth_http_secret,
            vmail,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        }
    }

    /// Starts `postern serve` (again, after `stop`) and waits until it listens. A TCP
    /// port taken between [`free_port`] and the daemon's bind (by another test's
    /// connection) is picked anew, a few times.
    pub fn spawn(&mut self) {
        for _ in 0..3 {
            match self.try_spawn() {
                Ok(()) => return,
                Err(log) if log.contains("Address already in use") => self.new_ports(),
                Err(log) => panic!("postern serve exited:\n{log}"),
            }
        }
        panic!("no free TCP ports for postern serve:\n{}", self.log());
    }

    /// Moves the HTTP listeners to other free ports in the configuration.
    fn new_ports(&mut self) {
        let mut text = std::fs::read_to_string(&self.config).expect("read config");
        for port in [&mut self.http, &mut self.auth_http] {
            let fresh = format!("127.0.0.1:{}", free_port());
            text = text.replace(&format!("\"{port}\""), &format!("\"{fresh}\""));
            *port = fresh;
        }
        std::fs::write(&self.config, text).expect("write config");
    }

    /// One start: `Err` with the log when the daemon exits before it listens.
    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join("postern.log")).expect("log file");
        let child = self
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn postern serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        let sockets = [&self.dict_socket, &self.auth_socket, &self.policy_socket];
        let ports = [&self.http, &self.auth_http];
        while sockets.iter().any(|s| UnixStream::connect(s).is_err())
            || ports
                .iter()
                .any(|p| std::net::TcpStream::connect(p.as_str()).is_err())
        {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("exit status {status}\n{}", self.log()));
            }
            assert!(
                Instant::now() < deadline,
                "postern did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postern.log")).unwrap_or_default()
    }

    /// `postern --config <cfg>` with the test's environment, ready for more arguments.
    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config").arg(&self.config);
        for var in ["REGISTRATION_MODE", "ADMIN_USERNAME", "POSTERN_CONFIG"] {
            c.env_remove(var);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run postern")
    }

    /// Runs the CLI with `stdin` as standard input.
    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run postern");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    /// Runs the CLI, asserts success and returns standard output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "postern {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs the CLI with `--json`, asserts success and parses the output.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let text = self.cli_ok(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// A new dict connection, as Dovecot opens one per lookup.
    pub fn dict(&self) -> DictClient {
        DictClient::connect(&self.dict_socket)
    }

    /// Sends a signal to the running daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("daemon running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("kill");
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM and waits for the daemon to exit; returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- postern log ---\n{}", self.log());
        }
    }
}

/// Addresses in `user list`, sorted.
pub fn accounts(d: &TestDaemon) -> Vec<String> {
    let mut v: Vec<String> = d
        .cli_json(&["user", "list"])
        .as_array()
        .expect("user list is an array")
        .iter()
        .map(|a| a["address"].as_str().expect("address").to_owned())
        .collect();
    v.sort();
    v
}

/// `user show <addr>`.
pub fn show(d: &TestDaemon, addr: &str) -> serde_json::Value {
    d.cli_json(&["user", "show", addr])
}

/// Stores a quota of 0 for `addr` the way older versions did (they accepted
/// `postern user quota <addr> 0`), straight into the daemon's database.
pub fn store_a_zero_quota(d: &TestDaemon, addr: &str) {
    let db = rusqlite::Connection::open(d.path().join("postern.db")).expect("open the database");
    let n = db
        .execute(
            "UPDATE accounts SET quota_mode = 'explicit', quota_bytes = 0 WHERE address = ?1",
            [addr],
        )
        .expect("update");
    assert_eq!(n, 1, "{addr} has an account");
}

/// A loopback TCP port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Dovecot's `%E` escaping: a backslash before `"`, `'` and `\`.
pub fn percent_e(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if matches!(c, '"' | '\'' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Dovecot's dict-protocol escaping of one field.
pub fn tab_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            '\0' => out.push_str("\x010"),
            c => out.push(c),
        }
    }
    out
}

/// A raw dict proxy client speaking as Dovecot 2.3's auth process does.
pub struct DictClient {
    reader: BufReader<UnixStream>,
}

impl DictClient {
    pub fn connect(path: &Path) -> DictClient {
        let stream = UnixStream::connect(path).expect("connect to dict socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut c = DictClient {
            reader: BufReader::new(stream),
        };
        c.send("H3\t2\t0\t\tauth");
        c
    }

    pub fn send(&mut self, line: &str) {
        let s = self.reader.get_mut();
        s.write_all(line.as_bytes()).expect("write");
        s.write_all(b"\n").expect("write");
    }

    /// One reply line without its LF; `None` at end of stream.
    pub fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_owned()),
            Err(e) => panic!("read from dict socket: {e}"),
        }
    }

    /// Nothing arrives within `wait`.
    pub fn is_silent(&mut self, wait: Duration) -> bool {
        self.reader
            .get_ref()
            .set_read_timeout(Some(wait))
            .expect("timeout");
        let mut line = String::new();
        let silent = match self.reader.read_line(&mut line) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        silent
    }

    pub fn lookup(&mut self, key: &str, user: &str) -> String {
        self.send(&format!("L{}\t{}", tab_escape(key), tab_escape(user)));
        self.read_line().expect("a reply")
    }

    /// The passdb lookup Dovecot sends with `password_key = passdb/%Ew"%Eu`.
    pub fn passdb(&mut self, user: &str, password: &str) -> String {
        let key = format!("shared/passdb/{}\"{}", percent_e(password), percent_e(user));
        self.lookup(&key, user)
    }

    pub fn userdb(&mut self, user: &str) -> String {
        self.lookup(&format!("shared/userdb/{user}"), user)
    }
}

/// One first-login/login through a fresh connection, as Dovecot 2.3 does it.
pub fn passdb_once(socket: &Path, user: &str, password: &str) -> String {
    DictClient::connect(socket).passdb(user, password)
}
