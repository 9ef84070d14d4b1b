//! The reference servers: the physical limit of each protocol shape on this machine.
//!
//! A separate process (the load tool run again with `--reference-server DIR`, so it is
//! scheduled like the daemon: its own process, a multi-threaded tokio runtime with one
//! worker per core) serves the same sockets as `postern serve` and answers every request
//! with a fixed reply, doing nothing else: no parsing beyond finding where a request
//! ends, no database, no logging. The load tool drives it with the very client code it
//! drives the daemon with, right after each daemon phase, and prints the daemon's rate
//! as a ratio to it.
//!
//! ```text
//! DIR/ref-dict.sock    dict: `H...` ignored, each `L...` line -> DIR/dict.reply
//! DIR/ref-policy.sock  policy: each block (up to an empty line) -> `action=DUNNO`
//! DIR/ref-auth.sock    auth: the handshake, then each `AUTH\t<id>...` -> `OK\t<id>\tuser=...`
//! DIR/ref-http.addr    127.0.0.1:<port>: each HTTP/1.1 request -> 200 with DIR/http.body
//! DIR/ref.ready        written once every listener is bound
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};

/// Where the reference servers of one run listen.
pub struct Sockets {
    pub dict: PathBuf,
    pub policy: PathBuf,
    pub auth: PathBuf,
    pub http: String,
}

/// The reference process; stopped (SIGKILL) on drop.
pub struct Reference {
    child: std::process::Child,
    pub sockets: Sockets,
}

impl Reference {
    /// Writes the fixed replies into `dir`, starts the reference process there and waits
    /// until it listens.
    pub fn start(dir: &Path, dict_reply: &str, http_body: &[u8]) -> Reference {
        std::fs::write(dir.join("dict.reply"), dict_reply).expect("write dict.reply");
        std::fs::write(dir.join("http.body"), http_body).expect("write http.body");
        let child = std::process::Command::new(std::env::current_exe().expect("own path"))
            .arg("--reference-server")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start the reference process");
        let ready = dir.join("ref.ready");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !ready.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the reference servers did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let http = std::fs::read_to_string(dir.join("ref-http.addr")).expect("ref-http.addr");
        Reference {
            child,
            sockets: Sockets {
                dict: dir.join("ref-dict.sock"),
                policy: dir.join("ref-policy.sock"),
                auth: dir.join("ref-auth.sock"),
                http,
            },
        }
    }
}

impl Reference {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference process's main: serves until killed.
pub fn serve(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dict_reply: Arc<[u8]> = std::fs::read(dir.join("dict.reply"))
            .expect("dict.reply")
            .into();
        let body = std::fs::read(dir.join("http.body")).expect("http.body");
        let mut http_reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        http_reply.extend_from_slice(&body);
        let http_reply: Arc<[u8]> = http_reply.into();

        let dict = UnixListener::bind(dir.join("ref-dict.sock")).expect("bind dict");
        let policy = UnixListener::bind(dir.join("ref-policy.sock")).expect("bind policy");
        let auth = UnixListener::bind(dir.join("ref-auth.sock")).expect("bind auth");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        std::fs::write(
            dir.join("ref-http.addr"),
            http.local_addr().expect("addr").to_string(),
        )
        .expect("write ref-http.addr");
        std::fs::write(dir.join("ref.ready"), "").expect("write ref.ready");

        tokio::spawn(async move {
            while let Ok((s, _)) = dict.accept().await {
                let reply = dict_reply.clone();
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    let mut line = Vec::with_capacity(256);
                    while matches!(r.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                        if line.first() == Some(&b'L') && w.write_all(&reply).await.is_err() {
                            break;
                        }
                        line.clear();
                    }
                });
            }
        });
        tokio::spawn(async move {
            while let Ok((s, _)) = policy.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    let mut line = Vec::with_capacity(256);
                    while matches!(r.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                        if line == b"\n" && w.write_all(b"action=DUNNO\n\n").await.is_err() {
                            break;
                        }
                        line.clear();
                    }
                });
            }
        });
        tokio::spawn(async move {
            while let Ok((s, _)) = auth.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let hello = b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n\
                                  SPID\t1\nCUID\t1\nCOOKIE\t0123456789abcdef0123456789abcdef\nDONE\n";
                    if w.write_all(hello).await.is_err() {
                        return;
                    }
                    let mut r = BufReader::new(r);
                    let mut line = Vec::with_capacity(256);
                    while matches!(r.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                        if let Some(rest) = line.strip_prefix(b"AUTH\t") {
                            let id = rest.split(|b| *b == b'\t').next().unwrap_or_default();
                            let mut reply = Vec::with_capacity(64);
                            reply.extend_from_slice(b"OK\t");
                            reply.extend_from_slice(id);
                            reply.extend_from_slice(b"\tuser=user000000@example.org\n");
                            if w.write_all(&reply).await.is_err() {
                                break;
                            }
                        }
                        line.clear();
                    }
                });
            }
        });
        while let Ok((s, _)) = http.accept().await {
            let reply = http_reply.clone();
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                let mut line = Vec::with_capacity(256);
                let mut length = 0usize;
                loop {
                    line.clear();
                    match r.read_until(b'\n', &mut line).await {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                    if line == b"\r\n" {
                        if length > 0 {
                            let mut body = vec![0u8; length];
                            if r.read_exact(&mut body).await.is_err() {
                                break;
                            }
                        }
                        length = 0;
                        if w.write_all(&reply).await.is_err() {
                            break;
                        }
                    } else if let Some(v) = header_value(&line, b"content-length:") {
                        length = v;
                    }
                }
            });
        }
    });
}

/// The number after `name` (lowercase, with its colon) in a header line, any case.
fn header_value(line: &[u8], name: &[u8]) -> Option<usize> {
    let head = line.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name) {
        return None;
    }
    std::str::from_utf8(&line[name.len()..])
        .ok()?
        .trim()
        .parse()
        .ok()
}
