//! The database's own faults under a running daemon, through the real sockets: a kill -9
//! during a burst of creations, a full disk, a lock held by another process, a
//! read-only file system, and the file deleted. Each is answered with temporary failures
//! on every adapter, creates or unblocks nothing, and recovers without a restart.
//! Mounts (tmpfs, bind) need root; without it these tests say so and pass.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::support::{accounts, passdb_once, percent_e, tab_escape, TestDaemon};
use crate::web::Http;

const PW: &str = "correct horse battery";

fn is_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped: needs root to mount file systems");
    }
    root
}

/// A mount made by a test, taken away when it ends.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).expect("mkdir");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ],
            at,
        );
        Mount(at.to_owned())
    }

    /// `from` seen read-only at `at`.
    fn read_only_bind(from: &Path, at: &Path) -> Mount {
        std::fs::create_dir_all(at).expect("mkdir");
        run("mount", &["--bind", &from.display().to_string()], at);
        let m = Mount(at.to_owned());
        m.remount("bind,ro");
        m
    }

    fn remount(&self, options: &str) {
        run("mount", &["-o", &format!("remount,{options}")], &self.0);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &str, args: &[&str], last: &Path) {
    let status = Command::new(cmd)
        .args(args)
        .arg(last)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "{cmd} {args:?} {}: {status}",
        last.display()
    );
}

/// One dict passdb lookup on a fresh connection; `None` when the daemon went away.
fn try_passdb(socket: &Path, user: &str, password: &str) -> Option<String> {
    let s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut r = BufReader::new(s);
    let key = format!("shared/passdb/{}\"{}", percent_e(password), percent_e(user));
    let req = format!(
        "H3\t2\t0\t\tauth\nL{}\t{}\n",
        tab_escape(&key),
        tab_escape(user)
    );
    r.get_mut().write_all(req.as_bytes()).ok()?;
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(n) if n > 0 => Some(line.trim_end().to_owned()),
        _ => None,
    }
}

/// SASL PLAIN over the auth socket as Postfix sends it; the reply line.
pub(crate) fn sasl(d: &TestDaemon, user: &str, password: &str) -> String {
    let s = UnixStream::connect(&d.auth_socket).expect("connect auth");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut r = BufReader::new(s);
    r.get_mut()
        .write_all(b"VERSION\t1\t0\nCPID\t4242\n")
        .expect("write");
    loop {
        let mut l = String::new();
        r.read_line(&mut l).expect("read");
        if l.trim_end() == "DONE" || l.is_empty() {
            break;
        }
    }
    let resp = STANDARD.encode(format!("\0{user}\0{password}"));
    r.get_mut()
        .write_all(
            format!(
                "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp={resp}\n"
            )
            .as_bytes(),
        )
        .expect("write");
    let mut l = String::new();
    r.read_line(&mut l).expect("read");
    l.trim_end().to_owned()
}

/// The policy action for mail from and to `address` after SMTP AUTH as it.
fn policy(d: &TestDaemon, address: &str) -> String {
    let s = UnixStream::connect(&d.policy_socket).expect("connect policy");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut r = BufReader::new(s);
    let block = format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address=127.0.0.1\nclient_name=localhost\nhelo_name=client.test\n\
         sender={address}\nrecipient={address}\nrecipient_count=0\nqueue_id=C2E5498C0F4\n\
         instance=1.1\nsize=100\nsasl_method=PLAIN\nsasl_username={address}\n\n"
    );
    r.get_mut().write_all(block.as_bytes()).expect("write");
    let mut l = String::new();
    r.read_line(&mut l).expect("read");
    l.trim_end()
        .strip_prefix("action=")
        .unwrap_or(&l)
        .to_owned()
}

/// Every adapter answers with its temporary failure, for a new name and a known one.
fn assert_all_temporary(d: &TestDaemon, known: &str, new: &str) {
    for user in [known, new] {
        let dict = passdb_once(&d.dict_socket, user, PW);
        assert!(dict.starts_with('F'), "dict for {user}: {dict}");
        let auth = sasl(d, user, PW);
        assert!(
            auth.starts_with("FAIL") && auth.contains("code=temp_fail"),
            "SASL for {user}: {auth}"
        );
    }
    let action = policy(d, known);
    assert!(action.starts_with("DEFER_IF_PERMIT"), "policy: {action}");
    let web = Http::new(d).post_json(
        "/new",
        &serde_json::json!({"username": new, "password": PW}),
    );
    assert_eq!(web.status, 503, "/new: {}", web.body);
}

fn add_user(d: &TestDaemon, address: &str) {
    let out = d.cli_stdin(
        &["user", "add", address, "--password-stdin"],
        &format!("{PW}\n"),
    );
    assert!(out.status.success(), "user add: {out:?}");
}

/// Waits up to `secs` for `ok` to hold.
fn eventually(secs: u64, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Runs `postern serve` expecting it to refuse at once; its exit code and log.
fn serve_refuses(d: &TestDaemon) -> (Option<i32>, String) {
    let out = d.dir.join("refused.log");
    let mut child = d
        .command()
        .arg("serve")
        .stderr(std::fs::File::create(&out).expect("log"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started on a lost database");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.code(),
        std::fs::read_to_string(out).unwrap_or_default(),
    )
}

#[test]
fn deleted_database_answered_ok_and_was_rebuilt_empty() {
    let mut d = TestDaemon::start("open");
    assert!(passdb_once(&d.dict_socket, "alice@example.org", PW).starts_with('O'));
    d.cli_ok(&["blocklist", "add", "mallory@example.org"]);
    let db = d.dir.join("postern.db");
    std::fs::remove_file(&db).expect("delete the database");

    // Within the check interval every adapter notices, and keeps refusing.
    assert!(
        eventually(5, || passdb_once(&d.dict_socket, "alice@example.org", PW)
            .starts_with('F')),
        "still answered from the deleted file"
    );
    assert_all_temporary(&d, "alice@example.org", "newcomer@example.org");
    // A blocked address is not created just in time from an empty database.
    assert!(passdb_once(&d.dict_socket, "mallory@example.org", PW).starts_with('F'));
    assert!(!db.exists(), "an empty database was created in its place");
    assert!(
        d.log().contains("event=database result=lost")
            && d.log().contains(&db.display().to_string()),
        "no loud log line:\n{}",
        d.log()
    );

    // A restart refuses to build a fresh one, as every command does.
    d.stop();
    let (code, log) = serve_refuses(&d);
    assert_eq!(code, Some(4), "{log}");
    assert!(log.contains("lost"), "{log}");
    let out = d.cli(&["user", "list"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(!db.exists(), "an empty database was created in its place");
}

#[test]
fn full_disk_refused_logins_and_stayed_failed() {
    if !is_root() {
        return;
    }
    let d0 = TestDaemon::configure("open", &[]);
    let disk = Mount::tmpfs(&d0.dir.join("disk"), "4m");
    let db = disk.0.join("postern.db");
    let dbenv = db.display().to_string();
    let mut d = TestDaemon::configure("open", &[("POSTERN_DATABASE__PATH", &dbenv)]);
    add_user(&d, "known@example.org"); // never logged in: its first login writes
    d.cli_ok(&["blocklist", "add", "mallory@example.org"]);
    d.spawn();
    assert!(passdb_once(&d.dict_socket, "alice@example.org", PW).starts_with('O'));

    // Fill the file system, and again before each request: a failed write closes
    // connections, which gives the write-ahead log's space back.
    let fill = || {
        for n in 0.. {
            let path = disk.0.join(format!("filler{n}"));
            if path.exists() {
                continue;
            }
            let mut f = std::fs::File::create(&path).expect("filler");
            let chunk = vec![0u8; 4096];
            while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
            break;
        }
    };
    for (i, user) in ["new1@example.org", "new2@example.org"].iter().enumerate() {
        fill();
        let dict = passdb_once(&d.dict_socket, user, PW);
        assert!(dict.starts_with('F'), "dict creation {i}: {dict}");
    }
    fill();
    let auth = sasl(&d, "new3@example.org", PW);
    assert!(auth.contains("code=temp_fail"), "SASL creation: {auth}");
    fill();
    let web = Http::new(&d).post_json(
        "/new",
        &serde_json::json!({"username": "new4@example.org", "password": PW}),
    );
    assert_eq!(web.status, 503, "/new: {}", web.body);
    // Only the last-login write fails: the logins go through.
    fill();
    let known = passdb_once(&d.dict_socket, "known@example.org", PW);
    assert!(
        known.starts_with('O'),
        "bookkeeping refused a login: {known}"
    );
    assert!(passdb_once(&d.dict_socket, "alice@example.org", PW).starts_with('O'));
    assert!(sasl(&d, "alice@example.org", PW).starts_with("OK"));
    assert!(
        d.log().contains("event=bookkeeping result=fail"),
        "{}",
        d.log()
    );
    let action = policy(&d, "alice@example.org");
    assert!(!action.starts_with("REJECT"), "policy: {action}");
    assert!(passdb_once(&d.dict_socket, "mallory@example.org", PW).starts_with(['F', 'N']));

    // Space again: everything works without a restart.
    for entry in std::fs::read_dir(&disk.0).expect("list") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("filler"))
        {
            std::fs::remove_file(path).expect("free space");
        }
    }
    assert!(passdb_once(&d.dict_socket, "new5@example.org", PW).starts_with('O'));
    assert!(sasl(&d, "new6@example.org", PW).starts_with("OK"));
    let web = Http::new(&d).post_json(
        "/new",
        &serde_json::json!({"username": "new7@example.org", "password": PW}),
    );
    assert_eq!(web.status, 200, "/new: {}", web.body);
    assert!(passdb_once(&d.dict_socket, "mallory@example.org", PW).starts_with('N'));
    let all = accounts(&d);
    for gone in ["new1", "new2", "new3", "new4", "mallory"] {
        assert!(
            !all.contains(&format!("{gone}@example.org")),
            "{gone} was created: {all:?}"
        );
    }
    d.stop();
    drop(disk);
}

#[test]
fn read_only_database_at_start_stayed_failed_after_it_was_writable() {
    if !is_root() {
        return;
    }
    let d0 = TestDaemon::configure("open", &[]);
    let rw = d0.dir.join("rw");
    std::fs::create_dir(&rw).expect("mkdir");
    let ro_dir = d0.dir.join("ro");
    let db = ro_dir.join("postern.db");
    let dbenv = db.display().to_string();
    let mut d = TestDaemon::configure("open", &[("POSTERN_DATABASE__PATH", &dbenv)]);
    let out = d
        .command()
        .env("POSTERN_DATABASE__PATH", rw.join("postern.db"))
        .args(["user", "add", "alice@example.org", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .expect("stdin")
                .write_all(format!("{PW}\n").as_bytes())?;
            c.wait_with_output()
        })
        .expect("user add");
    assert!(out.status.success(), "{out:?}");
    let ro = Mount::read_only_bind(&rw, &ro_dir);

    d.spawn();
    let created = passdb_once(&d.dict_socket, "new1@example.org", PW);
    assert!(
        created.starts_with('F'),
        "created on a read-only file: {created}"
    );
    let web = Http::new(&d).post_json(
        "/new",
        &serde_json::json!({"username": "new2@example.org", "password": PW}),
    );
    assert_eq!(web.status, 503, "/new: {}", web.body);
    let alice = passdb_once(&d.dict_socket, "alice@example.org", PW);
    assert!(alice.starts_with(['O', 'F']), "a wrong answer: {alice}");

    // Writable again: no restart needed.
    ro.remount("bind,rw");
    assert!(
        eventually(5, || passdb_once(&d.dict_socket, "new3@example.org", PW)
            .starts_with('O')),
        "still failing after the file became writable:\n{}",
        d.log()
    );
    assert!(passdb_once(&d.dict_socket, "alice@example.org", PW).starts_with('O'));
    let all = accounts(&d);
    assert!(!all.contains(&"new1@example.org".to_owned()), "{all:?}");
    d.stop();
    drop(ro);
}

#[test]
fn exclusive_lock_by_another_process_gave_wrong_answers() {
    let d = TestDaemon::start("open");
    assert!(passdb_once(&d.dict_socket, "alice@example.org", PW).starts_with('O'));
    let db = d.dir.join("postern.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(6500));
        conn.execute_batch("COMMIT").expect("unlock");
    });
    // Longer than busy_timeout: the creation is a temporary failure, never a refusal.
    let started = Instant::now();
    let created = passdb_once(&d.dict_socket, "new1@example.org", PW);
    assert!(created.starts_with('F'), "under the lock: {created}");
    assert!(started.elapsed() < Duration::from_secs(6400 / 1000 + 1));
    // Reads pass the lock (WAL): the known account gets in, a wrong password is refused.
    assert!(passdb_once(&d.dict_socket, "alice@example.org", PW).starts_with('O'));
    assert!(passdb_once(&d.dict_socket, "alice@example.org", "wrong one!!").starts_with('N'));
    release.join().expect("join");
    assert!(passdb_once(&d.dict_socket, "new1@example.org", PW).starts_with('O'));
    // A lock shorter than busy_timeout is waited for.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        conn.execute_batch("COMMIT").expect("unlock");
    });
    assert!(sasl(&d, "new2@example.org", PW).starts_with("OK"));
    release.join().expect("join");
}

#[test]
fn kill_9_during_creations_lost_accounts_that_were_answered_ok() {
    let mut d = TestDaemon::start_with("open", &[("POSTERN_HTTP__NEW_PER_MINUTE", "100000")]);
    let told_ok: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (told_ok, stop) = (told_ok.clone(), stop.clone());
        let socket = d.dict_socket.clone();
        let http = format!("http://{}/new", d.http);
        workers.push(std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let user = format!("burst{w}x{i}@example.org");
                let password = format!("{PW} {w} {i}");
                if w % 3 == 2 {
                    let body = serde_json::json!({"username": user, "password": password});
                    match ureq::post(&http)
                        .set("Content-Type", "application/json")
                        .send_string(&body.to_string())
                    {
                        Ok(r) if r.status() == 200 => {}
                        Ok(_) | Err(ureq::Error::Status(..)) => continue,
                        Err(_) => break,
                    }
                } else {
                    match try_passdb(&socket, &user, &password) {
                        Some(a) if a.starts_with('O') => {}
                        Some(_) => continue,
                        None => break,
                    }
                }
                told_ok.lock().expect("lock").push((user, password));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.stop();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let told_ok = told_ok.lock().expect("lock").clone();
    assert!(
        told_ok.len() > 5,
        "the burst made too few accounts: {}",
        told_ok.len()
    );

    let conn = rusqlite::Connection::open(d.dir.join("postern.db")).expect("open");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    drop(conn);

    d.spawn();
    for (user, password) in &told_ok {
        let again = passdb_once(&d.dict_socket, user, password);
        assert!(again.starts_with('O'), "{user} told OK, now: {again}");
    }
}

#[test]
fn missing_directory_and_not_a_database_exited_temporary_and_were_restarted() {
    let d0 = TestDaemon::configure("open", &[]);
    let missing = d0.dir.join("nowhere/postern.db");
    let garbage = d0.dir.join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).expect("write");
    for db in [&missing, &garbage] {
        let dbenv = db.display().to_string();
        let d = TestDaemon::configure("open", &[("POSTERN_DATABASE__PATH", &dbenv)]);
        let (code, log) = serve_refuses(&d);
        assert_eq!(code, Some(4), "serve on {dbenv}: {log}");
        let out = d.cli(&["user", "list"]);
        assert_eq!(out.status.code(), Some(4), "user list on {dbenv}: {out:?}");
    }
    assert!(!missing.parent().expect("dir").exists());
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/postern.service"
    ))
    .expect("unit");
    assert!(
        unit.lines()
            .any(|l| l.starts_with("RestartPreventExitStatus=")
                && l.split([' ', '=']).any(|c| c == "4")),
        "systemd restarts on status 4"
    );
}
