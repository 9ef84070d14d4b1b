//! The people postern exists for: the real Delta Chat core (PyPI `deltachat-rpc-server`)
//! signs up and chats through postern, a real Dovecot 2.3 (IMAP, LMTP) and a real Postfix
//! (SMTP AUTH through postern's auth socket, RCPT checks through its policy socket), with
//! postern's web listener behind nginx on `https://_postern.test` as an operator runs it.
//! Core finds the IMAP and SMTP servers in postern's autoconfig document.
//!
//! One stack, one story, step by step; a failure names its step and keeps every log under
//! `target/deltachat-artifacts/`. Needs root and `bash .ci/deltachat.sh`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::deltachat::{artifacts_dir, keep_artifacts, redact, Core, TlsFront};
use crate::support::dovecot::{show, Dovecot};
use crate::support::mail_clients::imap_login;
use crate::support::postfix::{Postfix, SmtpSession};
use crate::support::TestDaemon;

/// The mail domain: core checks no certificate chain for names starting with `_`.
const DOMAIN: &str = "_postern.test";
/// What core waits for at most in one step (a sign-up, a message on its way).
const STEP: Duration = Duration::from_secs(30);

/// Everything the story runs on. Fields drop in order: core first, postern last.
struct Stack {
    core: Core,
    front: TlsFront,
    postfix: Postfix,
    dovecot: Dovecot,
    daemon: TestDaemon,
    test: &'static str,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        self.core.stop();
        let dest = keep_artifacts(
            &artifacts_dir(self.test),
            &[
                ("core", self.core.dir.clone()),
                ("postern.log", self.daemon.dir.join("postern.log")),
                ("postern.toml", self.daemon.config.clone()),
                ("dovecot.log", self.dovecot.dir.join("dovecot.log")),
                ("dovecot.conf", self.dovecot.config.clone()),
                ("postfix-maillog", self.postfix.dir.join("maillog")),
                ("postfix-main.cf", self.postfix.config_dir.join("main.cf")),
                ("nginx", self.front.dir.clone()),
            ],
        );
        eprintln!(
            "--- Delta Chat test: core's events, core's and the driver's logs, postern's, \
             Dovecot's, Postfix's and nginx's logs are in {}",
            dest.display()
        );
    }
}

fn start(test: &'static str) -> Stack {
    let _ = std::fs::remove_dir_all(artifacts_dir(test));
    let daemon = TestDaemon::start_with(
        "open",
        &[
            ("POSTERN_DOMAINS", &format!("[\"{DOMAIN}\"]")),
            ("POSTERN_HTTP__PUBLIC_URL", &format!("https://{DOMAIN}")),
            // nginx in front: sign-ups count against the client, not the proxy.
            ("POSTERN_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ],
    );
    let dovecot = Dovecot::start(&daemon);
    let postfix = Postfix::start_for_domain(&daemon, &dovecot, DOMAIN);
    point_autoconfig_at(&daemon, dovecot.imap_port, postfix.port);
    let front = TlsFront::start(&daemon.dir, DOMAIN, &daemon.http);
    let core = Core::start(&daemon.dir, &[DOMAIN, &format!("autoconfig.{DOMAIN}")]);
    Stack {
        core,
        front,
        postfix,
        dovecot,
        daemon,
        test,
    }
}

/// The test's Dovecot and Postfix listen on ports picked at start, after postern (Postfix
/// needs its auth socket): write them into `[autoconfig]` and reload, as an operator
/// does, then check the document mail programs fetch says so.
fn point_autoconfig_at(daemon: &TestDaemon, imap_port: u16, smtp_port: u16) {
    let mut config = std::fs::read_to_string(&daemon.config).expect("read postern.toml");
    config.push_str(&format!(
        "[autoconfig]\nimap_port = {imap_port}\nimap_socket = \"plain\"\n\
         smtp_port = {smtp_port}\nsmtp_socket = \"plain\"\n"
    ));
    std::fs::write(&daemon.config, config).expect("write postern.toml");
    let reloads = || daemon.log().matches("event=reload result=ok").count();
    let before = reloads();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads() == before {
        assert!(
            Instant::now() < deadline,
            "postern did not reload:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!(
        "http://{}/.well-known/autoconfig/mail/config-v1.1.xml",
        daemon.http
    );
    let doc = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_string()
        .expect("autoconfig body");
    for port in [imap_port, smtp_port] {
        assert!(
            doc.contains(&format!("<port>{port}</port>")),
            "the autoconfig document does not name port {port}:\n{doc}"
        );
    }
}

/// What a scan gave: the profile's id in core and its address; panics with the step and
/// core's error when the sign-up failed.
fn scan(st: &mut Stack, step: &str, name: &str, qr: &str) -> (u64, String) {
    let r = st
        .core
        .call(step, "scan", json!({ "name": name, "qr": qr }), STEP);
    if let Some(e) = r["error"].as_str() {
        panic!(
            "{step}: core could not set up {name} from {}: {e}",
            redact(qr)
        );
    }
    let account = r["account"].as_u64().expect("account id");
    let addr = r["addr"].as_str().expect("addr").to_owned();
    assert!(
        addr.ends_with(&format!("@{DOMAIN}")),
        "{step}: core configured {addr}"
    );
    // Core uses the servers postern's autoconfig document (or the dclogin link) names.
    let servers = r["servers"].as_str().unwrap_or_default();
    for want in [
        format!("imap:[{DOMAIN}:{}:plain]", st.dovecot.imap_port),
        format!("smtp:[{DOMAIN}:{}:plain]", st.postfix.port),
    ] {
        assert!(
            servers.contains(&want),
            "{step}: core uses `{servers}`, not `{want}`"
        );
    }
    st.core
        .call(step, "online", json!({ "account": account }), STEP);
    (account, addr)
}

fn created_via(st: &Stack, addr: &str) -> String {
    show(&st.daemon, addr)["created_via"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A password nobody prints: 24 random letters and digits.
fn random_password() -> String {
    use std::io::Read;
    let alphabet = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
        .iter()
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect()
}

/// Core's password for `account`, for the test's own login checks (never printed).
fn core_password(st: &mut Stack, step: &str, account: u64) -> String {
    st.core
        .call(step, "password", json!({ "account": account }), STEP)["password"]
        .as_str()
        .expect("password")
        .to_owned()
}

#[test]
fn delta_chat_signs_up_through_postern_and_chats_encrypted() {
    let mut st = start("delta_chat_signs_up_through_postern_and_chats_encrypted");

    // 1. Scanning the sign-up QR code: core POSTs to /new, then finds the servers in
    //    postern's autoconfig document.
    let step = "step 1 (DCACCOUNT:https://_postern.test/new)";
    let (a, a_addr) = scan(
        &mut st,
        step,
        "A",
        &format!("DCACCOUNT:https://{DOMAIN}/new"),
    );
    assert_eq!(created_via(&st, &a_addr), "web", "{step}");

    // 2. The bare domain: core invents address and password; the first login creates the
    //    account just in time.
    let step = "step 2 (DCACCOUNT:_postern.test, just-in-time)";
    let (b, b_addr) = scan(&mut st, step, "B", &format!("DCACCOUNT:{DOMAIN}"));
    assert_eq!(created_via(&st, &b_addr), "jit", "{step}");

    // 3. A browser-style sign-up on /new; core scans the page's dclogin: link.
    let step = "step 3 (browser sign-up, dclogin: link)";
    let c_pw = random_password();
    let page = st.core.call(
        step,
        "browser_signup",
        json!({ "url": format!("https://{DOMAIN}/new"), "username": "carol", "password": c_pw }),
        STEP,
    );
    assert_eq!(
        page["status"], 200,
        "{step}: the page says {}",
        page["error"]
    );
    let c_addr = format!("carol@{DOMAIN}");
    assert_eq!(page["address"], c_addr, "{step}");
    let link = page["dclogin"]
        .as_str()
        .unwrap_or_else(|| panic!("{step}: no #dclogin link"));
    assert!(
        link.starts_with(&format!("dclogin:{c_addr}?")),
        "{step}: {}",
        redact(link)
    );
    // The link carries the servers, so core needs no lookup.
    let imap_port = st.dovecot.imap_port.to_string();
    let smtp_port = st.postfix.port.to_string();
    let query: Vec<&str> = link
        .split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .collect();
    for (key, value) in [
        ("v", "1"),
        ("ih", DOMAIN),
        ("ip", &imap_port),
        ("is", "plain"),
        ("sh", DOMAIN),
        ("sp", &smtp_port),
        ("ss", "plain"),
    ] {
        assert!(
            query.contains(&format!("{key}={value}").as_str()),
            "{step}: no {key}={value} in {}",
            redact(link)
        );
    }
    let (c, configured) = scan(&mut st, step, "C", link);
    assert_eq!(configured, c_addr, "{step}");
    assert_eq!(created_via(&st, &c_addr), "web", "{step}");

    // 4. Keys first (each imports the others' vCards), then a message each way between
    //    every pair; every one arrives with the padlock.
    let step = "step 4 (encrypted messages between A, B and C)";
    let people = [(a, "A", &a_addr), (b, "B", &b_addr), (c, "C", &c_addr)];
    for (from, _, _) in people {
        for (to, _, _) in people {
            if from != to {
                st.core
                    .call(step, "introduce", json!({ "from": from, "to": to }), STEP);
            }
        }
    }
    for (from, from_name, from_addr) in people {
        for (to, to_name, _) in people {
            if from == to {
                continue;
            }
            let text = format!("hello {to_name}, this is {from_name}");
            st.core.call(
                step,
                "send",
                json!({ "from": from, "to": to, "text": text }),
                STEP,
            );
            let got = st.core.call(
                step,
                "wait_incoming",
                json!({ "account": to, "text": text }),
                STEP,
            );
            assert_eq!(got["from"], json!(from_addr), "{step}: {got}");
            assert_eq!(
                got["show_padlock"], true,
                "{step}: {to_name} shows {from_name}'s message without the padlock: {got}"
            );
            assert_eq!(got["chat_encrypted"], true, "{step}: {got}");
        }
    }

    // 5. The operator blocks B: A's next message is refused at RCPT and fails in A's
    //    chat; B's password opens nothing any more.
    let step = "step 5 (B blocked by the operator)";
    let b_pw = core_password(&mut st, step, b);
    st.daemon
        .cli_ok(&["user", "block", &b_addr, "--reason", "e2e test"]);
    let sent = st.core.call(
        step,
        "send",
        json!({ "from": a, "to": b, "text": "are you still there, B?" }),
        STEP,
    );
    let state = st.core.call(
        step,
        "wait_state",
        json!({ "account": a, "msg": sent["msg"], "states": ["out_failed", "out_delivered", "out_mdn_rcvd"] }),
        STEP,
    );
    assert_eq!(
        state["state"], "out_failed",
        "{step}: A's message to blocked B: {state}"
    );
    let error = state["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("blocked"),
        "{step}: A's failed message does not say why: {state}"
    );
    match imap_login(st.dovecot.imap_port, &b_addr, &b_pw) {
        Ok(s) => {
            s.logout();
            panic!("{step}: blocked B still logs in over IMAP");
        }
        Err(reply) => assert!(reply.contains("NO"), "{step}: {reply}"),
    }
    let mut smtp = SmtpSession::connect(st.postfix.port);
    let _ = smtp.ehlo();
    assert_eq!(
        smtp.auth_plain(&b_addr, &b_pw),
        535,
        "{step}: blocked B still logs in over SMTP"
    );
    smtp.quit();
    drop(b_pw);

    // 6. Invite-only: a one-use invite's QR code makes one account; the second scan is
    //    refused and core shows postern's reason.
    let step = "step 6 (invite-only, one-use invite)";
    st.daemon.cli_ok(&["registration", "set", "invite_only"]);
    let token = st
        .daemon
        .cli_json(&["token", "create", "--uses", "1", "--comment", "e2e"]);
    let qr = token["dcaccount"].as_str().expect("dcaccount").to_owned();
    assert!(
        qr.starts_with(&format!("DCACCOUNT:https://{DOMAIN}/new?token=")),
        "{step}: {qr}"
    );
    let (_, d_addr) = scan(&mut st, step, "D", &qr);
    assert_eq!(created_via(&st, &d_addr), "invite", "{step}");
    // Addresses only: Dovecot's quota_clone may report usage between the two listings.
    let addresses = |st: &Stack| -> Vec<String> {
        let list = st.daemon.cli_json(&["user", "list"]);
        let rows = list.as_array().cloned().unwrap_or_default();
        rows.iter()
            .filter_map(|a| a["address"].as_str().map(str::to_owned))
            .collect()
    };
    let accounts_before = addresses(&st);
    let second = st
        .core
        .call(step, "scan", json!({ "name": "E", "qr": qr }), STEP);
    let error = second["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{step}: the second scan of a one-use invite worked: {second}"));
    assert!(
        error.contains("this invite code has been used up."),
        "{step}: core's error does not carry postern's reason: {error}"
    );
    assert_eq!(
        addresses(&st),
        accounts_before,
        "{step}: the refused scan created an account"
    );
}
