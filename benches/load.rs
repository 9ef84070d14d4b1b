//! postern's load tool: starts the real `postern serve` on a database of N accounts and
//! drives its sockets the way Dovecot and Postfix do, from client threads in this
//! process. Prints a Markdown table for docs/performance.md.
//!
//! ```text
//! cargo bench --bench load                       # 100 000 accounts, 5 s per phase
//! cargo bench --bench load -- --accounts 20000 --seconds 3 --clients 4
//! cargo bench --bench load -- --only policy,get_new   # some phases (names below)
//! cargo bench --bench load -- --sweep 1,2,4,8,16 --plot target/load.svg
//! cargo bench --bench load -- --postgres               # on a PostgreSQL server of its own
//! cargo bench --bench load -- --database-url postgresql:///load?host=/run/postgresql
//! cargo bench --bench load -- --metrics          # listen.metrics on, scraped each second
//! LOAD_DAEMON_BIN=/tmp/old/postern cargo bench --bench load   # another build
//! ```
//!
//! Phases: userdb lookups (one new connection per lookup, as Dovecot 2.3 does);
//! passdb logins of existing accounts with a warm verification cache; cold passdb
//! logins (argon2 every time), compared with the argon2 bound (hashes per second with one
//! hashing thread per core in this process, the daemon idle, measured next to each
//! argon2 phase, since the machine's speed drifts between runs); policy
//! decisions and SASL logins on persistent connections; `GET /new` and `POST /new` on
//! keep-alive connections; the daemon's peak resident memory (VmHWM) over the whole run;
//! the operator commands' times on that database (admin); IMAP `LOGIN` + `LOGOUT`
//! through a real Dovecot 2.3 on postern against the same Dovecot on a passwd-file
//! (imap), and simultaneous first logins of new addresses through it (imap_new).
//! Phase names for `--only`: userdb, warm, cold, policy, sasl, get_new, post_new, admin,
//! imap, imap_new (the last two need root and Dovecot; without `--only` they run when
//! both are there).
//!
//! Every socket phase is run a second time against a reference server
//! (load/reference.rs: the same protocol answered with a fixed reply, in a process of its
//! own) right after the daemon's run, and printed as a ratio to it; the argon2 phases
//! are compared with the argon2 bound, the IMAP phase with Dovecot's passwd-file floor.
//! `--sweep` repeats the persistent-connection phases (daemon and reference) at each
//! client count for the latency plot; `--plot` writes the SVG (load/plot.rs).
//! Each socket phase also reports the CPU time (user + system, from /proc) per request of
//! the server (daemon or reference process) and of the client threads: steadier than the
//! rates, and what the ratio is made of; and the share of the machine's time stolen by
//! its hypervisor during the phase (/proc/stat), to tell a slow machine from slow code.

// Test and measurement code: a failed step ends the run with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[path = "load/dovecot.rs"]
mod dovecot;
#[path = "../src/store/test_pg.rs"]
mod pg;
#[path = "load/plot.rs"]
mod plot;
#[path = "load/reference.rs"]
mod reference;

use postern::accounts::password::{Hasher, Password};
use postern::config::{Argon2Config, Database};
use postern::store::{NewAccount, QuotaMode, Store};

const PASSWORD: &str = "benchmark password";

#[derive(Clone)]
struct Options {
    accounts: usize,
    seconds: u64,
    clients: usize,
    /// Phases to run; empty: all.
    only: Vec<String>,
    /// Client counts of the latency sweep (persistent phases); empty: no sweep.
    sweep: Vec<usize>,
    /// Where to write the SVG plot.
    plot: Option<PathBuf>,
    /// An existing PostgreSQL database to run on instead of SQLite.
    database_url: Option<String>,
    /// Start a PostgreSQL server of its own and run on it.
    postgres: bool,
    /// IMAP client threads of the `imap` phase.
    imap_clients: usize,
    /// Simultaneous first logins of the `imap_new` phase.
    first_logins: usize,
    /// Serve `listen.metrics` and scrape it once a second, as Prometheus would.
    metrics: bool,
}

const PHASES: [&str; 10] = [
    "userdb", "warm", "cold", "policy", "sasl", "get_new", "post_new", "admin", "imap", "imap_new",
];

impl Options {
    fn runs(&self, phase: &str) -> bool {
        if phase.starts_with("imap") && self.only.is_empty() {
            return dovecot::available();
        }
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }

    fn with_clients(&self, clients: usize) -> Options {
        Options {
            clients,
            ..self.clone()
        }
    }
}

fn options() -> Options {
    let mut o = Options {
        accounts: 100_000,
        seconds: 5,
        clients: 4,
        only: Vec::new(),
        sweep: Vec::new(),
        plot: None,
        database_url: None,
        postgres: false,
        imap_clients: 16,
        first_logins: 100,
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
            ("--imap-clients", Some(v)) => o.imap_clients = v as usize,
            ("--first-logins", Some(v)) => o.first_logins = v as usize,
            ("--metrics", _) => {
                o.metrics = true;
                i += 1;
                continue;
            }
            ("--postgres", _) => {
                o.postgres = true;
                i += 1;
                continue;
            }
            ("--database-url", _) if i + 1 < args.len() => {
                o.database_url = Some(args[i + 1].clone());
            }
            ("--plot", _) if i + 1 < args.len() => o.plot = Some(PathBuf::from(&args[i + 1])),
            ("--sweep", _) if i + 1 < args.len() => {
                o.sweep = args[i + 1]
                    .split(',')
                    .filter_map(|c| c.parse().ok())
                    .collect();
            }
            ("--bench", _) => {
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
                eprintln!(
                    "unknown or incomplete option {other}; use --accounts N --seconds S \
                     --clients C --only P,Q --sweep C1,C2 --plot FILE.svg --postgres \
                     --database-url URL --imap-clients C --first-logins N --metrics"
                );
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
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--reference-server") {
        reference::serve(Path::new(args.get(2).expect("--reference-server DIR")));
        return;
    }
    let o = options();
    let dir = tempfile::tempdir().expect("tempdir");
    // Dovecot's mail processes (the mail uid) reach the vmail homes and the sockets.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let vmail = dir.path().join("vmail");
    std::fs::create_dir(&vmail).expect("mkdir vmail");
    if nix::unistd::geteuid().is_root() {
        let id = dovecot::MAIL_UID;
        nix::unistd::chown(
            &vmail,
            Some(nix::unistd::Uid::from_raw(id)),
            Some(nix::unistd::Gid::from_raw(id)),
        )
        .expect("chown vmail");
    }
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

    // PostgreSQL: a given URL, or a server of its own (tests' harness, src/store/test_pg.rs).
    let pg_server = o.postgres.then(pg::PgServer::start);
    let url = o
        .database_url
        .clone()
        .or_else(|| pg_server.as_ref().map(|p| p.create_database("load")));
    let database = match &url {
        Some(u) => Database {
            url: Some(u.clone()),
            ..Database::default()
        },
        None => Database::sqlite(db.clone()),
    };
    let backend = if url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };

    eprintln!("populating {} accounts ({backend}) ...", o.accounts);
    let seed_start = Instant::now();
    let hash = Hasher::new(&argon2)
        .expect("argon2")
        .hash_blocking(&Password::new(PASSWORD));
    {
        let store = Store::open(&database).expect("store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for start in (0..o.accounts).step_by(10_000) {
            let rows: Vec<NewAccount> = (start..(start + 10_000).min(o.accounts))
                .map(|i| NewAccount {
                    address: address(i),
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
    let seed_seconds = seed_start.elapsed().as_secs_f64();
    eprintln!("populated in {seed_seconds:.1} s");

    let database_toml = match &url {
        Some(u) => format!("url = \"{u}\""),
        None => format!("path = \"{}\"", db.display()),
    };
    let config = dir.path().join("postern.toml");
    std::fs::write(
        &config,
        format!(
            "domains = [\"example.org\"]\n[database]\n{database_toml}\n[listen]\ndict = \"{}\"\n\
             auth = \"{}\"\npolicy = \"{}\"\nhttp = \"{}\"\nsocket_mode = \"0666\"\n\
             [mailbox]\nhome = \"{}/{{domain}}/{{local}}\"\nuid = \"{mail}\"\ngid = \"{mail}\"\n\
             [registration]\nmode = \"open\"\n\
             [policy]\nsend_per_minute = 0\n[http]\nnew_per_minute = 0\n[log]\nlevel = \"warn\"\ntarget = \"stderr\"\n",
            socket.display(),
            auth_socket.display(),
            policy_socket.display(),
            http_addr,
            vmail.display(),
            mail = dovecot::MAIL_UID,
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

    // The reference servers answer with the daemon's own replies (same sizes on the wire).
    let userdb_reply = lookup(&socket, &format!("shared/userdb/{}", address(0)));
    assert!(
        userdb_reply.starts_with('O'),
        "userdb reply {userdb_reply:?}"
    );
    let page = HttpConn::connect(&http_addr)
        .and_then(|mut c| c.request("GET", "/new", ""))
        .map(|(_, body)| body)
        .expect("GET /new");
    let reference = reference::Reference::start(dir.path(), &userdb_reply, page.as_bytes());
    let refs = &reference.sockets;
    let _ = SERVERS.set([daemon.child.id(), reference.pid()]);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut bars: Vec<plot::Bar> = Vec::new();
    let mut points: Vec<plot::Point> = Vec::new();

    let rss_start = daemon.rss_kib("VmRSS:");
    let userdb = o.runs("userdb").then(|| {
        let lookups = |dict: &Path| {
            run_phase(&o, dict, |_, i| {
                lookup(dict, &format!("shared/userdb/{}", address(i % o.accounts))).starts_with('O')
            })
        };
        (lookups(&socket), lookups(&refs.dict))
    });

    let rss_userdb = daemon.rss_kib("VmRSS:");
    // Warm: a small working set, verified once (argon2), then served from the cache.
    let warm_set = 1000.min(o.accounts);
    if o.runs("warm") || o.runs("sasl") || o.runs("imap") {
        for i in 0..warm_set {
            assert!(passdb(&socket, &address(i), PASSWORD).starts_with('O'));
        }
    }
    let warm = o.runs("warm").then(|| {
        let logins = |dict: &Path| {
            run_phase(&o, dict, |_, i| {
                passdb(dict, &address(i % warm_set), PASSWORD).starts_with('O')
            })
        };
        (logins(&socket), logins(&refs.dict))
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
    let policy_phase = |o: &Options, s: &Path| run_persistent(o, || policy_client(s, o.accounts));
    let policy = o.runs("policy").then(|| {
        (
            policy_phase(&o, &policy_socket),
            policy_phase(&o, &refs.policy),
        )
    });

    // SASL: persistent connections as Postfix's smtpd keeps them, warm-cache logins.
    let sasl_phase = |o: &Options, s: &Path| run_persistent(o, || sasl_client(s, warm_set));
    let sasl = o
        .runs("sasl")
        .then(|| (sasl_phase(&o, &auth_socket), sasl_phase(&o, &refs.auth)));

    // Web: the sign-up page over keep-alive connections, then random-account creation
    // (POST /new with an empty body: one argon2 hash each).
    let get_phase = |o: &Options, a: &str| run_persistent(o, || get_new_client(a));
    let get_new = o
        .runs("get_new")
        .then(|| (get_phase(&o, &http_addr), get_phase(&o, &refs.http)));
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

    // Latency and rate against the number of client threads, daemon and reference.
    for &c in &o.sweep {
        let oc = o.with_clients(c);
        eprintln!("sweep: {c} clients ...");
        let mut add = |series: &str, t: Timed| {
            points.push(plot::Point {
                series: series.to_owned(),
                clients: c,
                rate: t.rate,
                p50_us: t.p50_us,
                p99_us: t.p99_us,
            })
        };
        if o.runs("policy") {
            add("policy postern", policy_phase(&oc, &policy_socket));
            add("policy reference", policy_phase(&oc, &refs.policy));
        }
        if o.runs("sasl") {
            add("SASL postern", sasl_phase(&oc, &auth_socket));
            add("SASL reference", sasl_phase(&oc, &refs.auth));
        }
        if o.runs("get_new") {
            add("GET /new postern", get_phase(&oc, &http_addr));
            add("GET /new reference", get_phase(&oc, &refs.http));
        }
    }

    let rss_end = daemon.rss_kib("VmRSS:");
    let (anon_end, file_end) = (daemon.rss_kib("RssAnon:"), daemon.rss_kib("RssFile:"));

    // The operator's commands on this database, the daemon running.
    let admin = o.runs("admin").then(|| {
        let mut times = Vec::new();
        let list = dir.path().join("list.json");
        times.push((
            "postern user list --json".to_owned(),
            time_cli(&config, &["user", "list", "--json"], Some(&list)),
        ));
        times.push((
            "postern stats".to_owned(),
            time_cli(&config, &["stats"], None),
        ));
        times.push((
            "postern maintenance run --dry-run".to_owned(),
            time_cli(&config, &["maintenance", "run", "--dry-run"], None),
        ));
        let export = dir.path().join("export.jsonl");
        times.push((
            "postern user export --with-hashes".to_owned(),
            time_cli(&config, &["user", "export", "--with-hashes"], Some(&export)),
        ));
        // The export to another database: `database copy` into an empty PostgreSQL one.
        if url.is_none() && std::path::Path::new("/usr/lib/postgresql").exists() {
            let target = pg::PgServer::start();
            let to = target.create_database("export");
            times.push((
                "postern database copy --to (empty PostgreSQL)".to_owned(),
                time_cli(&config, &["database", "copy", "--to", &to], None),
            ));
        }
        let list_mib = std::fs::metadata(&list).map_or(0.0, |m| m.len() as f64 / 1048576.0);
        (times, list_mib)
    });

    // IMAP through real Dovecot: postern against Dovecot's passwd-file floor.
    let imap = o.runs("imap").then(|| {
        let passwd = dir.path().join("passwd-file");
        dovecot::write_passwd_file(&passwd, o.accounts, address, PASSWORD, &vmail);
        let on_postern = dovecot::Dovecot::start(dir.path(), "dovecot-postern", &socket, None);
        let floor = dovecot::Dovecot::start(dir.path(), "dovecot-floor", &socket, Some(&passwd));
        // Warm: every account of the set (the first 200 of the warm set, verified once)
        // has logged in once through each Dovecot (homes made).
        let imap_set = 200.min(warm_set);
        for d in [&on_postern, &floor] {
            for i in 0..imap_set {
                let ok = dovecot::Imap::connect(d.port)
                    .is_some_and(|c| c.login_logout(&address(i), PASSWORD));
                assert!(
                    ok,
                    "warm-up login through {} failed: {}",
                    d.dir.display(),
                    d.log()
                );
            }
        }
        let oi = o.with_clients(o.imap_clients);
        let next = AtomicUsize::new(0);
        let logins = |port: u16| {
            run_persistent(&oi, || {
                let next = &next;
                Some(move || {
                    let k = next.fetch_add(1, Ordering::Relaxed) * 7919;
                    let c = dovecot::Imap::connect(port)?;
                    Some(c.login_logout(&address(k % imap_set), PASSWORD))
                })
            })
        };
        // Twice each, alternating, so a drift of the machine hits both alike.
        [
            logins(on_postern.port),
            logins(floor.port),
            logins(on_postern.port),
            logins(floor.port),
        ]
    });

    // Simultaneous first logins of new addresses (JIT accounts, one argon2 hash each).
    let imap_new = o.runs("imap_new").then(|| {
        let d = dovecot::Dovecot::start(dir.path(), "dovecot-first", &socket, None);
        let bound = argon2_bound(&argon2, cores);
        let n = o.first_logins;
        let barrier = std::sync::Barrier::new(n + 1);
        let (ok, last) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|k| {
                    let barrier = &barrier;
                    let port = d.port;
                    s.spawn(move || {
                        let c = dovecot::Imap::connect(port);
                        barrier.wait();
                        let ok = c.is_some_and(|c| {
                            c.login_logout(&format!("first{k:04}@example.org"), PASSWORD)
                        });
                        (ok, Instant::now())
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let results: Vec<(bool, Instant)> = handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect();
            let ok = results.iter().filter(|r| r.0).count();
            let last = results
                .iter()
                .map(|r| r.1.duration_since(start))
                .max()
                .unwrap_or_default();
            (ok, last)
        });
        if ok < n {
            eprintln!("{}", d.log());
        }
        (ok, last.as_secs_f64(), bound)
    });

    let hwm = daemon.rss_kib("VmHWM:");
    let scrapes = scraper.map(Scraper::stop);
    daemon.stop();
    drop(reference);

    println!("| measurement | postern | reference | ratio | target |");
    println!("|---|---|---|---|---|");
    println!("| backend | {backend} | | | |");
    println!(
        "| accounts in the database | {} (seeded in {seed_seconds:.1} s) | | | |",
        o.accounts
    );
    println!("| client threads | {} | | | |", o.clients);
    match scrapes {
        Some(n) => println!("| listen.metrics | on, {n} scrapes (one a second) | | | |"),
        None => println!("| listen.metrics | off | | | |"),
    }
    let db_mib = match &url {
        None => {
            let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
            let wal = PathBuf::from(format!("{}-wal", db.display()));
            (size(&db) + size(&wal)) as f64 / (1024.0 * 1024.0)
        }
        Some(u) => pg_database_mib(u),
    };
    println!("| database size | {db_mib:.1} MiB | | | |");
    let mut ratio_row = |what: &str,
                         short: &str,
                         ours: String,
                         rate: f64,
                         theirs: String,
                         reference: f64,
                         reference_name: &'static str,
                         target: Option<f64>| {
        println!(
            "| {what} | {ours} | {theirs} | {:.2} | {} |",
            rate / reference,
            target.map_or("-".to_owned(), |t| format!("≥ {t}"))
        );
        bars.push(plot::Bar {
            name: short.to_owned(),
            rate,
            reference,
            reference_name,
            target,
        });
    };
    let cpu = |c: &CpuPerRequest| {
        format!(
            "CPU per request {:.1} µs server + {:.1} µs clients, steal {:.0} %",
            c.server_us, c.client_us, c.steal_pct
        )
    };
    let plain = |p: &Phase| {
        format!(
            "{}, {} ({} errors)",
            plot::rate(p.rate),
            cpu(&p.cpu),
            p.errors
        )
    };
    let timed = |t: &Timed| {
        format!(
            "{}, p50 {:.0} µs, p99 {:.0} µs, {} ({} errors)",
            plot::rate(t.rate),
            t.p50_us,
            t.p99_us,
            cpu(&t.cpu),
            t.errors
        )
    };
    let not_run = |what: &str| println!("| {what} | (not run) | | | |");
    match &userdb {
        Some((p, r)) => ratio_row(
            "userdb lookups, new connection each",
            "userdb",
            plain(p),
            p.rate,
            plain(r),
            r.rate,
            "dict reference",
            Some(0.8),
        ),
        None => not_run("userdb lookups"),
    }
    match &warm {
        Some((p, r)) => ratio_row(
            "passdb logins, warm cache, new connection each",
            "passdb warm",
            plain(p),
            p.rate,
            plain(r),
            r.rate,
            "dict reference",
            None,
        ),
        None => not_run("passdb logins, warm"),
    }
    let argon2_name = format!(
        "argon2 m={} KiB t={} p={}",
        argon2.memory_kib, argon2.iterations, argon2.parallelism
    );
    match &cold {
        Some((p, bound)) => ratio_row(
            &format!(
                "passdb logins, cold ({argon2_name}), reference: the argon2 bound on {cores} cores"
            ),
            "passdb cold",
            plain(p),
            p.rate,
            plot::rate(*bound),
            *bound,
            "argon2 bound",
            Some(0.9),
        ),
        None => not_run("passdb logins, cold"),
    }
    for (what, short, result, target) in [
        (
            "policy decisions, persistent connections",
            "policy",
            &policy,
            0.7,
        ),
        (
            "SASL PLAIN logins, warm cache, persistent connections",
            "SASL warm",
            &sasl,
            0.6,
        ),
        (
            "GET /new, keep-alive connections",
            "GET /new",
            &get_new,
            0.0,
        ),
    ] {
        match result {
            Some((p, r)) => ratio_row(
                what,
                short,
                timed(p),
                p.rate,
                timed(r),
                r.rate,
                "reference",
                (target > 0.0).then_some(target),
            ),
            None => not_run(what),
        }
    }
    match &post_new {
        Some((t, bound)) => ratio_row(
            "POST /new random accounts (argon2 each), reference: the argon2 bound",
            "POST /new",
            timed(t),
            t.rate,
            plot::rate(*bound),
            *bound,
            "argon2 bound",
            Some(0.9),
        ),
        None => not_run("POST /new"),
    }
    if let Some(runs) = &imap {
        let ours = runs[0].rate + runs[2].rate;
        let floor = runs[1].rate + runs[3].rate;
        ratio_row(
            &format!(
                "IMAP LOGIN + LOGOUT through Dovecot, {} clients, new connection each, warm \
                 (reference: the same Dovecot on a passwd-file, {{PLAIN}})",
                o.imap_clients
            ),
            "IMAP login",
            format!(
                "{} and {} (p99 {:.1} / {:.1} ms, {} errors)",
                plot::rate(runs[0].rate),
                plot::rate(runs[2].rate),
                runs[0].p99_us / 1000.0,
                runs[2].p99_us / 1000.0,
                runs[0].errors + runs[2].errors
            ),
            ours / 2.0,
            format!(
                "{} and {} (p99 {:.1} / {:.1} ms, {} errors)",
                plot::rate(runs[1].rate),
                plot::rate(runs[3].rate),
                runs[1].p99_us / 1000.0,
                runs[3].p99_us / 1000.0,
                runs[1].errors + runs[3].errors
            ),
            floor / 2.0,
            "passwd-file",
            Some(0.9),
        );
    } else {
        not_run("IMAP logins through Dovecot");
    }
    if let Some((ok, seconds, bound)) = imap_new {
        let n = o.first_logins;
        ratio_row(
            &format!(
                "{n} simultaneous IMAP first logins of new addresses through Dovecot \
                 (reference: {n} hashes at the argon2 bound take {:.2} s)",
                n as f64 / bound
            ),
            "IMAP first logins",
            format!("{ok} of {n} in, the last after {seconds:.2} s"),
            n as f64 / seconds,
            plot::rate(bound),
            bound,
            "argon2 bound",
            Some(0.9),
        );
        // The argon2 bound leaves out Dovecot's own work for each login (imap-login,
        // auth, an imap process), which shares the same two cores: add what the same
        // number of logins costs Dovecot on its passwd-file floor, measured above.
        if let Some(runs) = &imap {
            let floor = (runs[1].rate + runs[3].rate) / 2.0;
            let both = n as f64 / bound + n as f64 / floor;
            ratio_row(
                &format!(
                    "the same, reference: {n} hashes at the argon2 bound plus {n} logins at \
                     Dovecot's passwd-file floor take {both:.2} s"
                ),
                "IMAP first logins (argon2 + Dovecot)",
                format!("{ok} of {n} in, the last after {seconds:.2} s"),
                n as f64 / seconds,
                plot::rate(n as f64 / both),
                n as f64 / both,
                "argon2 + Dovecot floor",
                Some(0.9),
            );
        }
    } else {
        not_run("IMAP first logins through Dovecot");
    }
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "| daemon RSS after start / userdb / warm phase / at the end | {:.1} / {:.1} / {:.1} / {:.1} MiB | | | |",
        mib(rss_start),
        mib(rss_userdb),
        mib(rss_warm),
        mib(rss_end)
    );
    println!(
        "| RSS after the socket phases: anonymous / file-backed (binary, mapped database) | {:.1} / {:.1} MiB | | | ≤ 64 MiB + {cores} x {:.0} MiB anonymous |",
        mib(anon_end),
        mib(file_end),
        argon2.memory_kib as f64 / 1024.0
    );
    println!(
        "| daemon peak RSS (VmHWM) | {:.1} MiB (argon2 in flight adds {} x {:.0} MiB) | | | |",
        hwm as f64 / 1024.0,
        cores,
        argon2.memory_kib as f64 / 1024.0
    );
    if let Some((times, list_mib)) = &admin {
        for (what, t) in times {
            match t {
                Ok(s) => println!("| `{what}` | {s:.3} s | | | |"),
                Err(e) => println!("| `{what}` | failed: {e} | | | |"),
            }
        }
        println!("| `user list --json` output | {list_mib:.1} MiB | | | |");
    }
    if !points.is_empty() {
        println!();
        println!("| phase | clients | rate | p50 | p99 |");
        println!("|---|---|---|---|---|");
        for p in &points {
            println!(
                "| {} | {} | {} | {:.0} µs | {:.0} µs |",
                p.series,
                p.clients,
                plot::rate(p.rate),
                p.p50_us,
                p.p99_us
            );
        }
    }
    if let Some(path) = &o.plot {
        let title = format!(
            "postern load tool: {} accounts, {backend}, {} client threads, {cores} cores",
            o.accounts, o.clients
        );
        match plot::write(path, &title, &bars, &points) {
            Ok(()) => eprintln!("plot written to {}", path.display()),
            Err(e) => eprintln!("plot not written: {e}"),
        }
    }
}

/// Runs `postern --config <config> <args>`, its output to `out` (or discarded); seconds.
fn time_cli(config: &Path, args: &[&str], out: Option<&Path>) -> Result<f64, String> {
    let stdout = match out {
        Some(p) => Stdio::from(std::fs::File::create(p).map_err(|e| e.to_string())?),
        None => Stdio::null(),
    };
    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    if output.status.success() {
        Ok(seconds)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// `pg_database_size` of the URL's database, in MiB (0 when psql cannot tell).
fn pg_database_mib(url: &str) -> f64 {
    Command::new(pg::pg_bin().join("psql"))
        .arg(url)
        .args(["-Atc", "SELECT pg_database_size(current_database())"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |b| b / (1024.0 * 1024.0))
}

/// A policy client on one persistent connection: RCPT requests for existing accounts.
fn policy_client(socket: &Path, accounts: usize) -> Option<impl FnMut() -> Option<bool>> {
    let stream = UnixStream::connect(socket).ok()?;
    let mut reader = BufReader::new(stream);
    let mut i = 0usize;
    Some(move || {
        i += 1;
        let block = format!(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=someone@elsewhere.net\n\
             recipient={}\nsasl_username=\ninstance=bench.{i}\nsize=1000\n\n",
            address((i * 7919) % accounts)
        );
        reader.get_mut().write_all(block.as_bytes()).ok()?;
        let mut action = String::new();
        let mut empty = String::new();
        reader.read_line(&mut action).ok()?;
        reader.read_line(&mut empty).ok()?;
        Some(action == "action=DUNNO\n")
    })
}

/// A SASL client on one persistent connection, as Postfix's smtpd keeps it: PLAIN logins
/// of the first `warm_set` accounts.
fn sasl_client(socket: &Path, warm_set: usize) -> Option<impl FnMut() -> Option<bool>> {
    let stream = UnixStream::connect(socket).ok()?;
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(b"VERSION\t1\t0\nCPID\t1\n")
        .ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "DONE\n" {
            break;
        }
    }
    let mut id = 0u32;
    Some(move || {
        id += 1;
        let user = address(id as usize % warm_set);
        let resp = b64(format!("\0{user}\0{PASSWORD}").as_bytes());
        let line =
            format!("AUTH\t{id}\tPLAIN\tservice=smtp\tnologin\trip=127.0.0.1\tresp={resp}\n");
        reader.get_mut().write_all(line.as_bytes()).ok()?;
        let mut reply = String::new();
        reader.read_line(&mut reply).ok()?;
        Some(reply.starts_with("OK\t"))
    })
}

/// `GET /new` on one keep-alive connection.
fn get_new_client(addr: &str) -> Option<impl FnMut() -> Option<bool>> {
    let mut conn = HttpConn::connect(addr)?;
    Some(move || {
        let (status, body) = conn.request("GET", "/new", "")?;
        Some(status == 200 && body.contains("<form"))
    })
}

struct Phase {
    rate: f64,
    errors: usize,
    cpu: CpuPerRequest,
}

/// The daemon's and the reference process's pids, whose CPU time each phase reads.
static SERVERS: OnceLock<[u32; 2]> = OnceLock::new();

/// CPU time (user + system) per request of a phase: the server side (the daemon and the
/// reference process together; only one of them is busy in a phase) and the client
/// threads (this process). Steadier than a rate on a machine whose speed drifts. Beside
/// it, the share of the machine's time its hypervisor gave to others (steal): a daemon
/// phase and its reference phase compare fairly only when their steal is alike.
#[derive(Clone, Copy)]
struct CpuPerRequest {
    server_us: f64,
    client_us: f64,
    steal_pct: f64,
}

/// Clock ticks so far: CPU time of the servers and of this process, and the machine's
/// stolen and total ticks (`/proc/stat`).
#[derive(Clone, Copy)]
struct Ticks {
    servers: u64,
    client: u64,
    steal: u64,
    total: u64,
}

fn cpu_ticks() -> Ticks {
    let ticks = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime is the 12th, stime
        // the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        field(11) + field(12)
    };
    let servers = SERVERS
        .get()
        .map_or(0, |p| p.iter().map(|pid| ticks(&pid.to_string())).sum());
    // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"; guest time
    // is counted in user already.
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let machine: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    Ticks {
        servers,
        client: ticks("self"),
        steal: machine.get(7).copied().unwrap_or(0),
        total: machine.iter().sum(),
    }
}

impl CpuPerRequest {
    fn since(start: Ticks, requests: usize) -> CpuPerRequest {
        let now = cpu_ticks();
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        let per = |ticks: u64| ticks as f64 * 1e6 / hz / requests.max(1) as f64;
        let total = now.total.saturating_sub(start.total).max(1) as f64;
        CpuPerRequest {
            server_us: per(now.servers.saturating_sub(start.servers)),
            client_us: per(now.client.saturating_sub(start.client)),
            steal_pct: now.steal.saturating_sub(start.steal) as f64 * 100.0 / total,
        }
    }
}

fn run_phase(o: &Options, _socket: &Path, op: impl Fn(usize, usize) -> bool + Sync) -> Phase {
    let done = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let cpu_start = cpu_ticks();
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
    let done = done.load(Ordering::Relaxed);
    Phase {
        rate: done as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
        cpu: CpuPerRequest::since(cpu_start, done),
    }
}

struct Timed {
    rate: f64,
    errors: usize,
    p50_us: f64,
    p99_us: f64,
    cpu: CpuPerRequest,
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
    let cpu_start = cpu_ticks();
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
    let cpu = CpuPerRequest::since(cpu_start, latencies.len());
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
        cpu,
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

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Daemon {
    fn start(config: &Path, socket: &PathBuf) -> Daemon {
        // LOAD_DAEMON_BIN runs another build under the same load (comparing two builds).
        let bin = std::env::var_os("LOAD_DAEMON_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_postern").into());
        let child = Command::new(bin)
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
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
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
