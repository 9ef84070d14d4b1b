//! The real Delta Chat core for the end-to-end test: its Python driver
//! (`tests/deltachat/driver.py`, run with the virtualenv `.ci/deltachat.sh` makes) inside
//! a private mount namespace whose `/etc/hosts` maps the test's mail domain to loopback,
//! and the TLS front (Debian's nginx with a self-signed certificate made at test time)
//! that carries `https://<domain>/` to postern's web listener, as an operator's reverse
//! proxy does.
//!
//! The driver answers one JSON request a line (see the script's docstring):
//!
//! ```text
//! > {"id":3,"cmd":"scan","args":{"name":"A","qr":"DCACCOUNT:https://_postern.test/new"}}
//! < {"id":3,"ok":true,"result":{"account":1,"addr":"k3x9q2m7a@_postern.test","servers":...}}
//! > {"id":4,"cmd":"wait_incoming","args":{"account":2,"text":"hello B","timeout":30.0}}
//! < {"id":4,"ok":false,"error":"Timeout: no incoming message 'hello B' at B within 30 s"}
//! ```
//!
//! Core trusts no certificate chain for host names that start with `_`, but still checks
//! the name, so the domain must start with `_` and the certificate must name it. Core is
//! a static musl binary (HOSTALIASES does not reach it), hence the bind mount over
//! `/etc/hosts` that only the driver and core see.
//!
//! Needs root (port 443, `unshare -m`, `mount --bind`), `bash .ci/deltachat.sh`.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::mail_clients::{is_dead_or_zombie, spawn_in_own_group, stop_process_group};

const INSTALL: &str = "run `bash .ci/deltachat.sh` as root (Delta Chat core from PyPI into \
                       a virtualenv, nginx and openssl from Debian)";
/// Where `.ci/deltachat.sh` puts the virtualenv unless `DELTACHAT_VENV` says otherwise.
const DEFAULT_VENV: &str = "/opt/postern-ci/deltachat-venv";
const NGINX: &str = "/usr/sbin/nginx";
/// How long nginx and the driver (which starts core) may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// What the Rust side allows on top of the time a request gives the driver, before it
/// declares the driver hung.
const ANSWER_MARGIN: Duration = Duration::from_secs(15);
/// Kept short so a lost driver does not outlive a run for long.
const DRIVER_DEADLINE_SECS: u64 = 600;

/// The virtualenv with `deltachat-rpc-server` and `deltachat-rpc-client`.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("DELTACHAT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV));
    for bin in ["python", "deltachat-rpc-server"] {
        assert!(
            dir.join("bin").join(bin).exists(),
            "{} is missing: {INSTALL}",
            dir.join("bin").join(bin).display()
        );
    }
    dir
}

/// Where a failing test leaves its logs: `<crate>/target/deltachat-artifacts/<test>`.
pub fn artifacts_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("deltachat-artifacts")
        .join(test)
}

/// Copies each existing file (or directory's files, one level) into `dest`, under its
/// label; returns `dest`.
pub fn keep_artifacts(dest: &Path, files: &[(&str, PathBuf)]) -> PathBuf {
    let _ = std::fs::create_dir_all(dest);
    for (label, path) in files {
        if path.is_dir() {
            let Ok(entries) = std::fs::read_dir(path) else {
                continue;
            };
            for e in entries.flatten() {
                if e.path().is_file() {
                    let name = format!("{label}-{}", e.file_name().to_string_lossy());
                    let _ = std::fs::copy(e.path(), dest.join(name));
                }
            }
        } else if path.is_file() {
            let _ = std::fs::copy(path, dest.join(label));
        }
    }
    dest.to_path_buf()
}

/// A `dclogin:` link or QR text with its password (`p=`) masked, for messages.
pub fn redact(text: &str) -> String {
    match text.split_once('?') {
        Some((head, query)) => {
            let parts: Vec<&str> = query
                .split('&')
                .map(|p| if p.starts_with("p=") { "p=***" } else { p })
                .collect();
            format!("{head}?{}", parts.join("&"))
        }
        None => text.to_owned(),
    }
}

/// nginx terminating TLS for `host` on `127.0.0.1:443` and passing everything to postern's
/// web listener with `X-Forwarded-For`, under `<parent>/tls-front/`.
pub struct TlsFront {
    pub dir: PathBuf,
    pub cert: PathBuf,
    child: Option<Child>,
}

impl TlsFront {
    pub fn start(parent: &Path, host: &str, upstream: &str) -> TlsFront {
        assert!(Path::new(NGINX).exists(), "{NGINX} is missing: {INSTALL}");
        let dir = parent.join("tls-front");
        // The key pair in a subdirectory: artifacts copy only `dir`'s own files.
        std::fs::create_dir_all(dir.join("tls")).expect("mkdir tls-front");
        std::fs::create_dir_all(dir.join("temp")).expect("mkdir tls-front");
        let cert = dir.join("tls").join("cert.pem");
        let key = dir.join("tls").join("key.pem");
        self_signed_certificate(host, &cert, &key);
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(&dir, host, &cert, &key, upstream)).expect("nginx.conf");
        let child = spawn_in_own_group(
            Command::new(NGINX)
                .arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf)
                .arg("-g")
                .arg("daemon off;"),
            &dir.join("nginx.stderr"),
        )
        .unwrap_or_else(|e| panic!("cannot run {NGINX}: {e}; {INSTALL}"));
        let mut front = TlsFront {
            dir,
            cert,
            child: Some(child),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 443));
        loop {
            let pid = front.child.as_ref().map(Child::id).unwrap_or(0);
            if is_dead_or_zombie(pid) {
                panic!(
                    "nginx (the TLS front on 127.0.0.1:443) exited; is port 443 taken?\n{}",
                    front.log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return front;
            }
            if Instant::now() > deadline {
                front.stop();
                panic!("nginx did not listen on 127.0.0.1:443:\n{}", front.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// nginx's stderr, error log and access log.
    pub fn log(&self) -> String {
        let mut s = String::new();
        for f in ["nginx.stderr", "error.log", "access.log"] {
            s.push_str(&format!("--- {f}\n"));
            s.push_str(&std::fs::read_to_string(self.dir.join(f)).unwrap_or_default());
        }
        s
    }

    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            // SIGTERM is nginx's fast shutdown; its workers are in its process group.
            stop_process_group(child, Duration::from_secs(5));
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A self-signed leaf certificate for `host`: CA:FALSE, SAN `DNS:<host>`, two days.
fn self_signed_certificate(host: &str, cert: &Path, key: &Path) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={host}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{host}"))
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "keyUsage=critical,digitalSignature"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}; {INSTALL}"));
    assert!(
        out.status.success(),
        "openssl req failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nginx_conf(dir: &Path, host: &str, cert: &Path, key: &Path, upstream: &str) -> String {
    let dir = dir.display();
    format!(
        r#"# postern test TLS front: everything under {dir}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {dir}/access.log;
  client_body_temp_path {dir}/temp/body;
  proxy_temp_path {dir}/temp/proxy;
  fastcgi_temp_path {dir}/temp/fastcgi;
  uwsgi_temp_path {dir}/temp/uwsgi;
  scgi_temp_path {dir}/temp/scgi;
  server {{
    listen 127.0.0.1:443 ssl;
    server_name {host};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://{upstream};
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
    }}
  }}
}}
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

/// The driver and, under it, `deltachat-rpc-server`: Delta Chat core with its accounts,
/// events and logs in `<parent>/deltachat/`.
pub struct Core {
    pub dir: PathBuf,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
    next_id: u64,
}

impl Core {
    /// Starts the driver in a mount namespace where `/etc/hosts` maps each of `names` to
    /// 127.0.0.1, and waits until core answers.
    pub fn start(parent: &Path, names: &[&str]) -> Core {
        let venv = venv();
        let dir = parent.join("deltachat");
        std::fs::create_dir_all(&dir).expect("mkdir deltachat");
        let hosts = dir.join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n127.0.0.1 {}\n", names.join(" ")),
        )
        .expect("write hosts");
        let driver = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("deltachat")
            .join("driver.py");
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .args([
                "/bin/sh",
                "-c",
                r#"mount --bind "$0" /etc/hosts && exec "$@""#,
            ])
            .arg(&hosts)
            .arg(venv.join("bin").join("python"))
            .arg(&driver)
            .arg("--artifacts")
            .arg(&dir)
            .arg("--rpc-server")
            .arg(venv.join("bin").join("deltachat-rpc-server"))
            .arg("--deadline")
            .arg(DRIVER_DEADLINE_SECS.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("driver.log")).expect("driver.log"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run unshare: {e}"));
        let stdout = child.stdout.take().expect("driver stdout");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut core = Core {
            dir,
            child: Some(child),
            stdin,
            answers,
            next_id: 1,
        };
        // The driver says `{"id":0,...}` once core has answered its first call.
        match core.answer(0, START_TIMEOUT) {
            Ok(_) => core,
            Err(e) => panic!("Delta Chat core did not start: {e}\n{}", core.log()),
        }
    }

    /// The driver's log (its requests and tracebacks; core's own log is `core.stderr`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("driver.log")).unwrap_or_default()
    }

    /// One request; `Err` is the driver's error (core's error text included), a timeout
    /// of `limit` (plus a margin), or a dead driver.
    pub fn try_call(
        &mut self,
        cmd: &str,
        mut args: Value,
        limit: Duration,
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        if let Value::Object(map) = &mut args {
            map.entry("timeout")
                .or_insert_with(|| json!(limit.as_secs_f64()));
        }
        let line = json!({ "id": id, "cmd": cmd, "args": args }).to_string();
        let stdin = self.stdin.as_mut().ok_or("the driver's stdin is closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("write to the driver: {e}"))?;
        self.answer(id, limit + ANSWER_MARGIN)
    }

    /// Like [`Core::try_call`]; panics with `step` and the error.
    pub fn call(&mut self, step: &str, cmd: &str, args: Value, limit: Duration) -> Value {
        self.try_call(cmd, args, limit)
            .unwrap_or_else(|e| panic!("{step}: Delta Chat core ({cmd}): {e}"))
    }

    fn answer(&mut self, id: u64, within: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.answers.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no answer from the driver within {within:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the driver exited (see driver.log)".to_owned())
                }
            };
            let v: Value = serde_json::from_str(&line).map_err(|e| {
                format!("the driver wrote something that is not JSON ({e}): {line}")
            })?;
            if v["id"] != json!(id) {
                // A late answer to a request given up on.
                continue;
            }
            return if v["ok"] == true {
                Ok(v["result"].clone())
            } else {
                Err(v["error"].as_str().unwrap_or("(no error text)").to_owned())
            };
        }
    }

    /// Asks the driver to close core, then stops whatever is left.
    pub fn stop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        if self.stdin.is_some() {
            let id = self.next_id;
            self.next_id += 1;
            if let Some(stdin) = self.stdin.as_mut() {
                let line = json!({ "id": id, "cmd": "shutdown" }).to_string();
                let _ = stdin.write_all(format!("{line}\n").as_bytes());
                let _ = stdin.flush();
            }
            self.stdin = None;
        }
        // The driver closes core (stop_io, then EOF on its stdin) and exits; whatever is
        // left of its process group (core runs in it) is killed after that.
        stop_after_exit(child, Duration::from_secs(10));
    }
}

/// Waits up to `grace` for `child` to exit by itself, then stops its process group.
fn stop_after_exit(child: Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while !is_dead_or_zombie(child.id()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_process_group(child, Duration::from_secs(2));
}

impl Drop for Core {
    fn drop(&mut self) {
        self.stop();
    }
}
