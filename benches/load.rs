//! postern's load tool: starts the real `postern serve` on a database of N accounts and
//! drives its sockets the way Dovecot and Postfix do, from client threads in this
//! process. Prints a Markdown table for docs/performance.md.
//!
//! ```text
//! cargo bench --bench load                       # 100 000 accounts, 5 s per phase
//! cargo bench --bench load -- --accounts 20000 --seconds 3 --clients 4
//! cargo bench --bench load -- --only policy,get_new   # some phases (names below)
//! cargo bench --bench load -- --metrics          # listen.metrics on, scraped each second
//! ```
//!
//! Phases: userdb lookups (one new connection per lookup, as Dovecot 2.3 does);
//! passdb logins of existing accounts with a warm verification cache; cold passdb
//! logins (argon2 every time), compared with the argon2 bound (hashes per second with one
//! hashing thread per core in this process, the daemon idle, measured next to each
//! argon2 phase, since the machine's speed drifts between runs); policy
//! decisions and SASL logins on persistent connections; `GET /new` and `POST /new` on
//! keep-alive connections; the daemon's peak resident memory (VmHWM) over the whole run.
//! Phase names for `--only`: userdb, warm, cold, policy, sasl, get_new, post_new.

// Test and measurement code: a failed step ends the run with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern::accounts::password::{Hasher, Password};
use postern::config::{Argon2Config, Database};
use postern::store::{NewAccount, QuotaMode, Store};

const PASSWORD: &str = "benchmark password";

struct Options {
    accounts: usize,
    seconds: u64,
    clients: usize,
    /// Phases to run; empty: all.
    only: Vec<String>,
    /// Serve `listen.metrics` and scrape it once a second, as Prometheus would.
    metrics: bool,
}

const PHASES: [&str; 7] = [
    "userdb", "warm", "cold", "policy", "sasl", "get_new", "post_new",
];

impl Options {
    fn runs(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }
}

fn options() -> Options {
    let mut o = Options {
        accounts: 100_000,
        seconds: 5,
        clients: 4,
        only: Vec::new(),
        metrics: false,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (args[i].as_str(), value) {
            ("--accounts", Some(v)) => o.accounts = v as usize,
            ("--seconds", Some(v)) => o.seconds = v,
            ("--clients", Some(v)) => o.clients = v as usize,
            ("--bench", _) => {
                i += 1;
                continue;
            }
            ("--metrics", _) => {
                o.metrics = true;
                i += 1;
                continue;
            }
            ("--only", _) if i + 1 < args.len() => {
                o.only = args[i + 1].split(',').map(str::to_owned).collect();
                if let Some(bad) = o.only.iter().find(|p| !PHASES.contains(&p.as_str())) {
                    eprintln!("unknown phase {bad}; phases: {}", PHASES.join(", "));
                    std::process::exit(2);
                }
            }
            (other, _) => {
                eprintln!("unknown or incomplete option {other}; use --accounts N --seconds S --clients C --only P,Q --metrics");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    o
}

fn address(i: usize) -> String {
    format!("user{i:06}@example.org")
}

fn main() {
    let o = options();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("postern.db");
    let socket = dir.path().join("dict.sock");
    let auth_socket = dir.path().join("auth.sock");
    let policy_socket = dir.path().join("policy.sock");
    let http_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").to_string()
    };
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").to_string()
    };
    let argon2 = Argon2Config::default();

    eprintln!("populating {} accounts ...", o.accounts);
    let hash = Hasher::new(&argon2)
        .expect("argon2")
        .hash_blocking(&Password::new(PASSWORD));
    {
        let store = Store::open(&Database::sqlite(db.clone())).expect("store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let addresses: Vec<String> = (0..o.accounts).map(address).collect();
        for chunk in addresses.chunks(10_000) {
            let rows: Vec<NewAccount> = chunk
                .iter()
                .map(|a| NewAccount {
                    address: a.clone(),
                    password_hash: hash.clone(),
                    created_via: "import",
                    now: 1_800_000_000,
                    token_hash: None,
                    admin_if_none: false,
                    admin: false,
                    quota: QuotaMode::Default,
                })
                .collect();
            runtime.block_on(store.insert_many(rows)).expect("insert");
        }
    }

    let config = dir.path().join("postern.toml");
    std::fs::write(
        &config,
        format!(
            "domains = [\"example.org\"]\n[database]\npath = \"{}\"\n[listen]\ndict = \"{}\"\n\
             auth = \"{}\"\npolicy = \"{}\"\nhttp = \"{}\"\n[registration]\nmode = \"open\"\n\
             [policy]\nsend_per_minute = 0\n[http]\nnew_per_minute = 0\n[log]\nlevel = \"warn\"\ntarget = \"stderr\"\n",
            db.display(),
            socket.display(),
            auth_socket.display(),
            policy_socket.display(),
            http_addr
        ),
    )
    .expect("config");
    if o.metrics {
        let text = std::fs::read_to_string(&config).expect("config");
        let text = text.replace(
            "[listen]\n",
            &format!("[listen]\nmetrics = \"{metrics_addr}\"\n"),
        );
        std::fs::write(&config, text).expect("config");
    }
    let mut daemon = Daemon::start(&config, &socket);
    let scraper = o.metrics.then(|| Scraper::start(&metrics_addr));

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let rss_start = daemon.rss_kib("VmRSS:");
    let userdb = o.runs("userdb").then(|| {
        run_phase(&o, &socket, |_, i| {
            let reply = lookup(
                &socket,
                &format!("shared/userdb/{}", address(i % o.accounts)),
            );
            reply.starts_with('O')
        })
    });

    let rss_userdb = daemon.rss_kib("VmRSS:");
    // Warm: a small working set, verified once (argon2), then served from the cache.
    let warm_set = 1000.min(o.accounts);
    if o.runs("warm") || o.runs("sasl") {
        for i in 0..warm_set {
            assert!(passdb(&socket, &address(i), PASSWORD).starts_with('O'));
        }
    }
    let warm = o.runs("warm").then(|| {
        run_phase(&o, &socket, |_, i| {
            passdb(&socket, &address(i % warm_set), PASSWORD).starts_with('O')
        })
    });

    let rss_warm = daemon.rss_kib("VmRSS:");
    // Cold: accounts never verified in this process, so every login pays argon2.
    let next_cold = Arc::new(AtomicUsize::new(warm_set));
    let cold = o.runs("cold").then(|| {
        let bound = argon2_bound(&argon2, cores);
        let phase = run_phase(&o, &socket, |_, _| {
            let i = next_cold.fetch_add(1, Ordering::Relaxed) % o.accounts;
            passdb(&socket, &address(i), PASSWORD).starts_with('O')
        });
        (phase, bound)
    });

    // Policy: persistent connections, one request after the other, latency per request.
    let policy = o.runs("policy").then(|| {
        run_persistent(&o, || {
            let stream = UnixStream::connect(&policy_socket).ok()?;
            let mut reader = BufReader::new(stream);
            let mut i = 0usize;
            Some(move || {
                i += 1;
                let block = format!(
                "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=someone@elsewhere.net\n\
                 recipient={}\nsasl_username=\ninstance=bench.{i}\nsize=1000\n\n",
                address((i * 7919) % o.accounts)
            );
                reader.get_mut().write_all(block.as_bytes()).ok()?;
                let mut action = String::new();
                let mut empty = String::new();
                reader.read_line(&mut action).ok()?;
                reader.read_line(&mut empty).ok()?;
                Some(action == "action=DUNNO\n")
            })
        })
    });

    // SASL: persistent connections as Postfix's smtpd keeps them, warm-cache logins.
    let sasl = o.runs("sasl").then(|| {
        run_persistent(&o, || {
            let stream = UnixStream::connect(&auth_socket).ok()?;
            let mut reader = BufReader::new(stream);
            reader
                .get_mut()
                .write_all(b"VERSION\t1\t0\nCPID\t1\n")
                .ok()?;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).ok()?;
                if line == "DONE\n" {
                    break;
                }
            }
            let mut id = 0u32;
            Some(move || {
                id += 1;
                let user = address(id as usize % warm_set);
                let resp = b64(format!("\0{user}\0{PASSWORD}").as_bytes());
                let line = format!(
                    "AUTH\t{id}\tPLAIN\tservice=smtp\tnologin\trip=127.0.0.1\tresp={resp}\n"
                );
                reader.get_mut().write_all(line.as_bytes()).ok()?;
                let mut reply = String::new();
                reader.read_line(&mut reply).ok()?;
                Some(reply.starts_with("OK\t"))
            })
        })
    });

    // Web: the sign-up page over keep-alive connections, then random-account creation
    // (POST /new with an empty body: one argon2 hash each).
    let get_new = o.runs("get_new").then(|| {
        run_persistent(&o, || {
            let mut conn = HttpConn::connect(&http_addr)?;
            Some(move || {
                let (status, body) = conn.request("GET", "/new", "")?;
                Some(status == 200 && body.contains("<form"))
            })
        })
    });
    let post_new = o.runs("post_new").then(|| {
        let bound = argon2_bound(&argon2, cores);
        let phase = run_persistent(&o, || {
            let mut conn = HttpConn::connect(&http_addr)?;
            Some(move || {
                let (status, body) = conn.request("POST", "/new", "")?;
                Some(status == 200 && body.contains("\"email\""))
            })
        });
        (phase, bound)
    });

    let rss_end = daemon.rss_kib("VmRSS:");
    let (anon_end, file_end) = (daemon.rss_kib("RssAnon:"), daemon.rss_kib("RssFile:"));
    let hwm = daemon.rss_kib("VmHWM:");
    let scrapes = scraper.map(Scraper::stop);
    daemon.stop();

    println!("| measurement | result |");
    println!("|---|---|");
    println!("| accounts in the database | {} |", o.accounts);
    println!("| client threads | {} |", o.clients);
    match scrapes {
        Some(n) => println!("| listen.metrics | on, {n} scrapes (one a second) |"),
        None => println!("| listen.metrics | off |"),
    }
    let db_mib = std::fs::metadata(&db).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0));
    println!("| database file | {db_mib:.1} MiB |");
    let row = |what: &str, result: Option<String>| {
        println!("| {what} | {} |", result.as_deref().unwrap_or("(not run)"));
    };
    row(
        "userdb lookups, new connection each",
        userdb.map(|p| format!("{:.0}/s ({} errors)", p.rate, p.errors)),
    );
    row(
        "passdb logins, warm cache, new connection each",
        warm.map(|p| format!("{:.0}/s ({} errors)", p.rate, p.errors)),
    );
    row(
        &format!(
            "passdb logins, cold (argon2 m={} KiB t={} p={})",
            argon2.memory_kib, argon2.iterations, argon2.parallelism
        ),
        cold.map(|(p, bound)| {
            format!(
                "{:.1}/s = {:.0}% of the argon2 bound, {bound:.1}/s on {cores} cores ({} errors)",
                p.rate,
                p.rate / bound * 100.0,
                p.errors
            )
        }),
    );
    let timed = |t: Timed| {
        format!(
            "{:.0}/s, p50 {:.0} µs, p99 {:.0} µs ({} errors)",
            t.rate, t.p50_us, t.p99_us, t.errors
        )
    };
    row(
        "policy decisions, persistent connections",
        policy.map(timed),
    );
    row(
        "SASL PLAIN logins, warm cache, persistent connections",
        sasl.map(timed),
    );
    row("GET /new, keep-alive connections", get_new.map(timed));
    row(
        "POST /new random accounts (argon2 each)",
        post_new.map(|(t, bound)| {
            format!(
                "{:.1}/s = {:.0}% of the argon2 bound, {bound:.1}/s on {cores} cores ({} errors)",
                t.rate,
                t.rate / bound * 100.0,
                t.errors
            )
        }),
    );
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "| daemon RSS after start / userdb / warm phase / at the end | {:.1} / {:.1} / {:.1} / {:.1} MiB |",
        mib(rss_start),
        mib(rss_userdb),
        mib(rss_warm),
        mib(rss_end)
    );
    println!(
        "| RSS at the end: anonymous / file-backed (binary, mapped database) | {:.1} / {:.1} MiB |",
        mib(anon_end),
        mib(file_end)
    );
    println!(
        "| daemon peak RSS (VmHWM) | {:.1} MiB (argon2 in flight adds {} x {:.0} MiB) |",
        hwm as f64 / 1024.0,
        cores,
        argon2.memory_kib as f64 / 1024.0
    );
}

struct Phase {
    rate: f64,
    errors: usize,
}

fn run_phase(o: &Options, _socket: &Path, op: impl Fn(usize, usize) -> bool + Sync) -> Phase {
    let done = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..o.clients {
            let (done, errors, stop, op) = (&done, &errors, &stop, &op);
            s.spawn(move || {
                let mut i = t * 7919;
                while !stop.load(Ordering::Relaxed) {
                    if op(t, i) {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_secs(o.seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    Phase {
        rate: done.load(Ordering::Relaxed) as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
    }
}

struct Timed {
    rate: f64,
    errors: usize,
    p50_us: f64,
    p99_us: f64,
}

/// Each client thread opens one connection (`connect` returns its request function)
/// and sends requests one after the other for the phase's duration.
fn run_persistent<F, R>(o: &Options, connect: F) -> Timed
where
    F: Fn() -> Option<R> + Sync,
    R: FnMut() -> Option<bool>,
{
    let errors = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let mut latencies: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..o.clients)
            .map(|_| {
                let (errors, stop, connect) = (&errors, &stop, &connect);
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(1 << 16);
                    let Some(mut request) = connect() else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return lat;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match request() {
                            Some(true) => lat.push(t.elapsed().as_micros() as u32),
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(o.seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |v| f64::from(*v))
    };
    Timed {
        rate: latencies.len() as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// A keep-alive HTTP/1.1 connection, just enough for the load tool.
struct HttpConn {
    reader: BufReader<std::net::TcpStream>,
}

impl HttpConn {
    fn connect(addr: &str) -> Option<HttpConn> {
        let s = std::net::TcpStream::connect(addr).ok()?;
        s.set_nodelay(true).ok()?;
        Some(HttpConn {
            reader: BufReader::new(s),
        })
    }

    /// Sends a request and reads the whole response: (status, body).
    fn request(&mut self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader.get_mut().write_all(req.as_bytes()).ok()?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).ok()?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().ok()?;
                }
            }
        }
        let mut buf = vec![0u8; length];
        std::io::Read::read_exact(&mut self.reader, &mut buf).ok()?;
        Some((status, String::from_utf8_lossy(&buf).into_owned()))
    }
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The argon2 bound: hashes per second with one thread per core hashing in parallel for
/// about two seconds (on hyperthreaded vCPUs this is less than cores / one hash's time).
fn argon2_bound(argon2: &Argon2Config, cores: usize) -> f64 {
    let pw = Password::new(PASSWORD);
    let hashed = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(|| {
                let hasher = Hasher::new(argon2).expect("argon2");
                while start.elapsed() < Duration::from_secs(2) {
                    hasher.hash_blocking(&pw);
                    hashed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    hashed.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// One lookup over a new connection, hello first, as Dovecot 2.3's auth process does.
fn lookup(socket: &Path, key: &str) -> String {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return String::new();
    };
    let msg = format!("H3\t2\t0\t\tauth\nL{key}\t\n");
    if stream.write_all(msg.as_bytes()).is_err() {
        return String::new();
    }
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line
}

fn passdb(socket: &Path, user: &str, password: &str) -> String {
    lookup(socket, &format!("shared/passdb/{password}\"{user}"))
}

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(config: &Path, socket: &PathBuf) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_postern"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdin(Stdio::null())
            .spawn()
            .expect("start postern");
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "postern did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child }
    }

    /// A memory figure of the daemon from /proc (`VmRSS:` now, `VmHWM:` peak, `RssAnon:`,
    /// `RssFile:`), in KiB.
    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// A Prometheus stand-in: `GET /metrics` once a second on a new connection.
struct Scraper {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Scraper {
    fn start(addr: &str) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, addr) = (stop.clone(), addr.to_owned());
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0;
            while !flag.load(Ordering::Relaxed) {
                let mut s = std::net::TcpStream::connect(&addr).expect("connect metrics");
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .expect("scrape");
                let mut text = String::new();
                std::io::Read::read_to_string(&mut s, &mut text).expect("read scrape");
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                assert!(text.contains("postern_policy_decisions_total"), "{text}");
                scrapes += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        });
        Scraper { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("scraper")
    }
}
