//! A real PostgreSQL server for tests, from Debian's `postgresql` package: initdb and
//! pg_ctl in a temporary directory, a Unix socket in it, and with TLS a loopback TCP port
//! whose certificate is made at start. Root runs the server as the `postgres` user
//! (initdb refuses root). Stopped on drop; `stop` and `start` let a test take it away
//! and bring it back with the same data, socket and port. The unit tests and the
//! integration tests (tests/it/support/postgres.rs) share this file.
//!
//! ```text
//! let pg = PgServer::start();          // own server, Unix socket only
//! let url = pg.create_database("t1");  // postgresql:///t1?host=/tmp/...&port=...&user=postgres
//! pg.stop(); pg.start_again();
//! PgServer::shared()                   // one per test process, stopped when it exits
//! ```

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The superuser's password for TCP logins (Unix socket logins need none).
pub const PG_PASSWORD: &str = "postern-test-pw";
/// The superuser's name.
pub const PG_USER: &str = "postgres";

pub struct PgServer {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    bin: PathBuf,
    pub data: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    /// The CA that signed the server certificate, with TLS.
    pub ca: Option<PathBuf>,
    /// OS user the server runs as (`None`: the test's own).
    run_as: Option<String>,
    running: bool,
}

/// The newest PostgreSQL binaries installed, `/usr/lib/postgresql/<version>/bin`.
pub fn pg_bin() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (bash .ci/postgres.sh)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, b)| b)
        .expect("no /usr/lib/postgresql/*/bin/initdb (bash .ci/postgres.sh)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl PgServer {
    /// A server on a Unix socket only.
    pub fn start() -> PgServer {
        Self::launch(false)
    }

    /// A server on a Unix socket and on 127.0.0.1 with TLS (a fresh CA and a certificate
    /// for `localhost` and 127.0.0.1); TCP logins need [`PG_PASSWORD`].
    pub fn start_with_tls() -> PgServer {
        Self::launch(true)
    }

    /// One server for the whole test process, stopped when the process ends.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let pg = Self::launch(false);
            pg.stop_when_process_ends();
            pg
        })
    }

    fn launch(tls: bool) -> PgServer {
        let tmp = tempfile::Builder::new()
            .prefix("postern-pg-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let root = nix::unistd::geteuid().is_root();
        let run_as = root.then(|| "postgres".to_owned());
        let data = dir.join("data");
        let socket_dir = dir.join("sock");
        std::fs::create_dir(&socket_dir).expect("mkdir sock");
        std::fs::create_dir(&data).expect("mkdir data");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).expect("pwfile");
        if let Some(user) = &run_as {
            let pw = nix::unistd::User::from_name(user)
                .expect("getpwnam")
                .expect("the postgres user exists (bash .ci/postgres.sh)");
            for p in [&data, &socket_dir, &pwfile] {
                nix::unistd::chown(p, Some(pw.uid), Some(pw.gid)).expect("chown");
            }
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let mut pg = PgServer {
            _tmp: tmp,
            dir: dir.clone(),
            bin: pg_bin(),
            data,
            socket_dir,
            port: free_port(),
            ca: None,
            run_as,
            running: false,
        };
        let initdb = pg.bin.join("initdb");
        pg.run(
            &initdb,
            &[
                "-D".as_ref(),
                pg.data.as_os_str(),
                "-U".as_ref(),
                PG_USER.as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "--auth-local=trust".as_ref(),
                "--auth-host=scram-sha-256".as_ref(),
                "--no-sync".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
            ],
        );
        let mut conf = format!(
            "port = {}\nunix_socket_directories = '{}'\nfsync = off\n\
             full_page_writes = off\nmax_connections = 300\n\
             shared_buffers = 32MB\n",
            pg.port,
            pg.socket_dir.display()
        );
        if tls {
            pg.make_certificates();
            conf.push_str("listen_addresses = '127.0.0.1'\nssl = on\n");
            conf.push_str("ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        } else {
            conf.push_str("listen_addresses = ''\n");
        }
        let file = pg.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&file).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&file, text).expect("write postgresql.conf");
        pg.start_again();
        pg
    }

    fn make_certificates(&mut self) {
        let d = &self.dir;
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdin(Stdio::null())
                .output()
                .expect("openssl (bash .ci/postgres.sh)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(
            d.join("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=postern test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        for f in ["server.crt", "server.key"] {
            let to = self.data.join(f);
            std::fs::copy(d.join(f), &to).expect("copy certificate");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            if let Some(user) = &self.run_as {
                let pw = nix::unistd::User::from_name(user)
                    .expect("getpwnam")
                    .expect("postgres user");
                nix::unistd::chown(&to, Some(pw.uid), Some(pw.gid)).expect("chown");
            }
        }
        self.ca = Some(d.join("ca.crt"));
    }

    /// Runs a server binary as the server's user; panics with its output on failure.
    fn run(&self, program: &Path, args: &[&std::ffi::OsStr]) {
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(program);
                c
            }
            None => Command::new(program),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run PostgreSQL binary");
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut all: Vec<&std::ffi::OsStr> = vec!["-D".as_ref(), self.data.as_os_str()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        self.run(&self.bin.join("pg_ctl"), &all);
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&mut self) {
        let log = self.dir.join("server.log");
        if !log.exists() {
            std::fs::write(&log, "").expect("log");
            if let Some(user) = &self.run_as {
                let pw = nix::unistd::User::from_name(user)
                    .expect("getpwnam")
                    .expect("postgres user");
                nix::unistd::chown(&log, Some(pw.uid), Some(pw.gid)).expect("chown");
            }
        }
        let log = log.display().to_string();
        self.pg_ctl(&["-l", &log, "-w", "-t", "60", "start"]);
        self.running = true;
    }

    /// Stops the server at once (connections are cut, as when a database host fails).
    pub fn stop(&mut self) {
        if self.running {
            self.pg_ctl(&["-m", "immediate", "-w", "-t", "60", "stop"]);
            self.running = false;
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Runs SQL through psql on the Unix socket as the superuser; returns its output
    /// (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-X")
            .arg("-qAt")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(PG_USER)
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates a database and returns its URL over the Unix socket.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }

    /// A database with a name unique in this process, and its URL.
    pub fn fresh_database(&self) -> String {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("t{}_{n}", std::process::id()))
    }

    /// The URL of `database` over the Unix socket (libpq's `host=` directory form).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql:///{database}?host={}&port={}&user={PG_USER}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// The URL of `database` over TCP to `host` (`localhost` or `127.0.0.1`) with the
    /// password in it and `sslmode` as given.
    pub fn tcp_url(&self, host: &str, database: &str, sslmode: &str) -> String {
        format!(
            "postgresql://{PG_USER}:{PG_PASSWORD}@{host}:{}/{database}?sslmode={sslmode}",
            self.port
        )
    }

    /// How many rows `sql` (a `SELECT COUNT(*)`) counts.
    pub fn count(&self, database: &str, sql: &str) -> i64 {
        self.psql(database, sql).parse().expect("a count")
    }

    /// A watcher process that stops the server once this process is gone (for
    /// [`PgServer::shared`], whose drop never runs).
    fn stop_when_process_ends(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match &self.run_as {
            Some(user) => format!(
                "runuser -u {user} -- '{}' -D '{}' -m immediate stop",
                pg_ctl.display(),
                self.data.display()
            ),
            None => format!(
                "'{}' -D '{}' -m immediate stop",
                pg_ctl.display(),
                self.data.display()
            ),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ = Command::new(match &self.run_as {
                Some(_) => PathBuf::from("runuser"),
                None => self.bin.join("pg_ctl"),
            })
            .args(match &self.run_as {
                Some(user) => vec![
                    "-u".to_owned(),
                    user.clone(),
                    "--".to_owned(),
                    self.bin.join("pg_ctl").display().to_string(),
                ],
                None => vec![],
            })
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        }
    }
}
