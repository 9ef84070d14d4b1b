//! The web side over real HTTP: `POST /new` as Delta Chat sends it (empty body, JSON,
//! `?token=`) and as the HTML form sends it, every refusal with its status and reason,
//! the client-IP rules behind proxies, and the admin pages' locks (sessions, CSRF,
//! sign-in limits) and actions, checked through the CLI.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::dovecot::Dovecot;
use crate::support::{accounts, passdb_once, show, TestDaemon};

const PW: &str = "correct horse battery";
/// The core's one wording for "exists" and "blocked".
const TAKEN: &str = "this address is not available.";

/// One HTTP answer, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "not JSON ({}): {}",
            self.content_type,
            self.body
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", self.body))
    }

    /// The `reason` of a JSON refusal.
    pub fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("no reason in {}", self.body))
            .to_owned()
    }

    pub fn is_html(&self) -> bool {
        self.content_type.starts_with("text/html")
    }

    /// The value of cookie `name` set by this answer.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (n, v) = first.split_once('=')?;
            (n.trim() == name).then(|| v.to_owned())
        })
    }

    /// The value of the hidden `csrf` field of the first form.
    pub fn csrf(&self) -> String {
        hidden_value(&self.body, "csrf").unwrap_or_else(|| panic!("no csrf field in {}", self.body))
    }
}

/// `value` of `<input ... name="NAME" value="...">` (as maud writes it).
fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// A tiny HTTP client for one daemon; never follows redirects.
pub struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    pub fn new(d: &TestDaemon) -> Http {
        Http {
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(60))
                .build(),
            base: format!("http://{}", d.http),
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match req.send_bytes(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        Reply {
            status: res.status(),
            content_type: res.content_type().to_owned(),
            location: res.header("location").map(str::to_owned),
            retry_after: res.header("retry-after").map(str::to_owned),
            set_cookies: res
                .all("set-cookie")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            body: res.into_string().unwrap_or_default(),
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    pub fn get_with(&self, path: &str, cookie: &str) -> Reply {
        self.request("GET", path, &[("Cookie", cookie)], b"")
    }

    /// `POST /new` (or `path`) with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// A POST as Delta Chat sends it: no body at all.
    pub fn post_empty(&self, path: &str) -> Reply {
        self.request("POST", path, &[], b"")
    }

    /// A POST as a browser's form sends it.
    pub fn post_form(&self, path: &str, fields: &[(&str, &str)], cookie: Option<&str>) -> Reply {
        let mut headers = vec![
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ];
        if let Some(c) = cookie {
            headers.push(("Cookie", c));
        }
        self.request("POST", path, &headers, urlencode(fields).as_bytes())
    }
}

pub fn urlencode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An invite code from `postern token create`.
fn token(d: &TestDaemon, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let v = d.cli_json(&all);
    v["code"].as_str().expect("code").to_owned()
}

fn logs_in(d: &TestDaemon, user: &str, password: &str) -> bool {
    passdb_once(&d.dict_socket, user, password).starts_with('O')
}

// ----- /new ---------------------------------------------------------------------------

#[test]
fn empty_post_in_open_mode_gives_delta_chat_a_working_random_account() {
    let d = TestDaemon::start("open");
    let h = Http::new(&d);
    let r = h.post_empty("/new");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    let v = r.json();
    let obj = v.as_object().expect("an object");
    let keys: HashSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["email", "password"]), "{v}");
    let email = v["email"].as_str().expect("email");
    let password = v["password"].as_str().expect("password");
    let (local, domain) = email.split_once('@').expect("an address");
    assert_eq!(domain, "example.org");
    assert_eq!(local.len(), 9, "{email}");
    assert!(local
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert!(password.len() >= 9);
    // The account exists now (chatmail only hands out credentials; postern creates it).
    assert_eq!(show(&d, email)["created_via"], "web");
    assert!(logs_in(&d, email, password));
    assert!(!logs_in(&d, email, "not the password"));
    // A second one is a different account.
    let again = h.post_empty("/new").json();
    assert_ne!(again["email"], v["email"]);
}

#[test]
fn json_and_form_bodies_create_the_named_account() {
    let d = TestDaemon::start("open");
    let h = Http::new(&d);
    let r = h.post_json(
        "/new",
        &serde_json::json!({"username": "alice", "password": PW}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        serde_json::json!({"email": "alice@example.org", "password": PW})
    );
    assert!(logs_in(&d, "alice@example.org", PW));

    // A full address in a served domain, normalized.
    let r = h.post_json(
        "/new",
        &serde_json::json!({"username": "Bob@Example.ORG", "password": PW}),
    );
    assert_eq!(r.json()["email"], "bob@example.org");
    // Only a password: the name is generated.
    let r = h.post_json("/new", &serde_json::json!({"password": PW}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["password"], PW);

    // The HTML form answers with the page: address, dclogin link, QR code, settings.
    let r = h.post_form(
        "/new",
        &[
            ("username", "carol"),
            ("password", "p+w &d=1 'x'"),
            ("action", "choose"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.is_html(), "{}", r.content_type);
    assert!(r.body.contains("carol@example.org"));
    assert!(
        r.body
            .contains("dclogin:carol@example.org?p=p%2Bw%20%26d%3D1%20%27x%27&amp;v=1"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<svg"));
    assert!(r.body.contains("993") && r.body.contains("465"));
    assert!(logs_in(&d, "carol@example.org", "p+w &d=1 'x'"));

    // "Give me a random account" ignores the name and password fields.
    let r = h.post_form(
        "/new",
        &[
            ("username", "ignored"),
            ("password", ""),
            ("action", "random"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!accounts(&d).contains(&"ignored@example.org".to_owned()));
    assert_eq!(accounts(&d).len(), 5);

    // The same form answers JSON when the client asks for it.
    let r = h.request(
        "POST",
        "/new",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json"),
        ],
        b"username=dave&password=correct+horse+battery",
    );
    assert_eq!(r.json()["email"], "dave@example.org");
}

#[test]
fn bad_names_and_passwords_get_400_with_the_rule() {
    let d = TestDaemon::start_with("open", &[("POSTERN_HTTP__NEW_PER_MINUTE", "0")]);
    let h = Http::new(&d);
    let cases = [
        (
            serde_json::json!({"username": "alice", "password": "short"}),
            "the password must be at least 9 characters long",
        ),
        (
            serde_json::json!({"username": "a..b", "password": PW}),
            "the username may not end with '.' or contain '..'",
        ),
        (
            serde_json::json!({"username": "postmaster", "password": PW}),
            "this username is reserved",
        ),
        (
            serde_json::json!({"username": "al ice", "password": PW}),
            "the username may contain only a-z, 0-9, '.', '_' and '-'",
        ),
        (
            serde_json::json!({"username": "x@other.org", "password": PW}),
            "this server does not serve addresses at other.org",
        ),
    ];
    for (body, reason) in cases {
        let r = h.post_json("/new", &body);
        assert_eq!((r.status, r.reason()), (400, reason.to_owned()), "{body}");
    }
    let r = h.request(
        "POST",
        "/new",
        &[("Content-Type", "application/json")],
        b"{\"username\": ",
    );
    assert_eq!(r.status, 400);
    assert!(r.reason().contains("JSON"), "{}", r.body);
    // The form shows the same reason on the page, keeps the name, drops the password.
    let r = h.post_form(
        "/new",
        &[
            ("username", "alice"),
            ("password", "short"),
            ("action", "choose"),
        ],
        None,
    );
    assert_eq!(r.status, 400);
    assert!(r.is_html());
    assert!(r
        .body
        .contains("the password must be at least 9 characters long"));
    assert!(r.body.contains("value=\"alice\""));
    assert!(!r.body.contains("value=\"short\""));
    assert!(accounts(&d).is_empty());
}

#[test]
fn closed_mode_answers_403_with_the_known_message() {
    let d = TestDaemon::start("closed");
    let h = Http::new(&d);
    let r = h.post_empty("/new");
    assert_eq!(r.status, 403);
    assert_eq!(r.reason(), "registration is currently disabled.");
    // Closed means closed, invites too.
    let code = token(&d, &["--uses", "3"]);
    let r = h.post_empty(&format!("/new?token={code}"));
    assert_eq!(
        (r.status, r.reason()),
        (403, "registration is currently disabled.".to_owned())
    );
    let r = h.post_json(
        "/new",
        &serde_json::json!({"username": "alice", "password": PW}),
    );
    assert_eq!(r.status, 403);
    // The page says so instead of showing the form.
    let page = h.get("/new");
    assert_eq!(page.status, 200);
    assert!(page.is_html());
    assert!(page.body.contains("registration is currently disabled."));
    assert!(!page.body.contains("<form"));
    let r = h.post_form("/new", &[("username", "alice"), ("password", PW)], None);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("registration is currently disabled."));
    assert!(accounts(&d).is_empty());
}

#[test]
fn invite_codes_from_the_query_or_the_body_and_each_problem() {
    let d = TestDaemon::start_with("invite_only", &[("POSTERN_HTTP__NEW_PER_MINUTE", "0")]);
    let h = Http::new(&d);
    let r = h.post_empty("/new");
    assert_eq!(
        (r.status, r.reason()),
        (403, "an invite code is required to register.".to_owned())
    );
    let r = h.post_empty("/new?token=nosuchcode");
    assert_eq!(
        (r.status, r.reason()),
        (403, "this invite code is not valid.".to_owned())
    );

    // One use: the first sign-up takes it, the second finds it used up.
    let code = token(&d, &["--uses", "1", "--comment", "for Alice"]);
    let r = h.post_empty(&format!("/new?token={code}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let email = r.json()["email"].as_str().expect("email").to_owned();
    let user = show(&d, &email);
    assert_eq!(user["created_via"], "invite");
    assert!(user["token_id"].is_number(), "{user}");
    // The log names the route the account came by, as the database does.
    let logged = format!("event=register route=invite address={email}");
    assert!(d.log().contains(&logged), "no `{logged}` in:\n{}", d.log());
    let r = h.post_empty(&format!("/new?token={code}"));
    assert_eq!(
        (r.status, r.reason()),
        (403, "this invite code has been used up.".to_owned())
    );

    // In the JSON body (and it wins over the query).
    let code = token(&d, &["--uses", "1"]);
    let r = h.post_json(
        "/new?token=nosuchcode",
        &serde_json::json!({"username": "bob", "password": PW, "token": code}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["email"], "bob@example.org");

    // Revoked.
    let code = token(&d, &["--uses", "5"]);
    d.cli_ok(&["token", "revoke", &code]);
    let r = h.post_empty(&format!("/new?token={code}"));
    assert_eq!(
        (r.status, r.reason()),
        (403, "this invite code has been revoked.".to_owned())
    );

    // Expired: the shortest lifetime the CLI takes, then wait it out.
    let code = token(&d, &["--uses", "5", "--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let r = h.post_empty(&format!("/new?token={code}"));
    assert_eq!(
        (r.status, r.reason()),
        (403, "this invite code has expired.".to_owned())
    );

    // The page asks for the code and fills it in from the link.
    let page = h.get("/new");
    assert!(page.body.contains("name=\"token\""), "{}", page.body);
    let code = token(&d, &["--uses", "1"]);
    let page = h.get(&format!("/new?token={code}"));
    assert!(page.body.contains(&format!("value=\"{code}\"")));
    assert!(page
        .body
        .contains(&format!("DCACCOUNT:https://example.org/new?token={code}")));
    // The form with the code makes the account and shows it.
    let r = h.post_form(
        "/new",
        &[
            ("username", "carol"),
            ("password", PW),
            ("token", &code),
            ("action", "choose"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("carol@example.org"));
    // Without it, the form shows the reason under 403.
    let r = h.post_form("/new", &[("username", "dave"), ("password", PW)], None);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("an invite code is required to register."));
}

#[test]
fn taken_and_blocked_addresses_get_the_same_409() {
    let d = TestDaemon::start("open");
    let h = Http::new(&d);
    let alice = serde_json::json!({"username": "alice", "password": PW});
    assert_eq!(h.post_json("/new", &alice).status, 200);
    let r = h.post_json("/new", &alice);
    assert_eq!((r.status, r.reason()), (409, TAKEN.to_owned()));
    d.cli_ok(&["blocklist", "add", "carol@example.org", "--reason", "abuse"]);
    let r = h.post_json(
        "/new",
        &serde_json::json!({"username": "carol", "password": PW}),
    );
    assert_eq!((r.status, r.reason()), (409, TAKEN.to_owned()));
    assert_eq!(accounts(&d), vec!["alice@example.org"]);
}

#[test]
fn bodies_over_max_body_get_413() {
    let d = TestDaemon::start_with("open", &[("POSTERN_HTTP__MAX_BODY", "1K")]);
    let h = Http::new(&d);
    let big = serde_json::json!({"username": "alice", "password": "x".repeat(2000)});
    let r = h.post_json("/new", &big);
    assert_eq!(r.status, 413);
    assert!(r.reason().contains("too large"), "{}", r.body);
    let r = h.post_form(
        "/new",
        &[("username", "alice"), ("password", &"y".repeat(2000))],
        None,
    );
    assert_eq!(r.status, 413);
    assert!(r.is_html() && r.body.contains("too large"));
    // Just under the limit is fine.
    let r = h.post_json(
        "/new",
        &serde_json::json!({"username": "alice", "password": PW}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn more_than_new_per_minute_from_one_client_gets_429() {
    let d = TestDaemon::start_with("open", &[("POSTERN_HTTP__NEW_PER_MINUTE", "3")]);
    let h = Http::new(&d);
    for i in 0..3 {
        let r = h.post_empty("/new");
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    let r = h.post_empty("/new");
    assert_eq!(r.status, 429);
    assert!(r.reason().contains("too many"), "{}", r.body);
    let wait: u64 = r
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=20).contains(&wait), "{wait}");
    // The peer is not a trusted proxy: a forged X-Forwarded-For changes nothing.
    let r = h.request("POST", "/new", &[("X-Forwarded-For", "203.0.113.9")], b"");
    assert_eq!(r.status, 429);
    assert_eq!(accounts(&d).len(), 3);
}

#[test]
fn forwarded_for_counts_per_client_behind_a_trusted_proxy() {
    let d = TestDaemon::start_with(
        "open",
        &[
            ("POSTERN_HTTP__NEW_PER_MINUTE", "2"),
            ("POSTERN_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ],
    );
    let h = Http::new(&d);
    let from = |ip: &str| h.request("POST", "/new", &[("X-Forwarded-For", ip)], b"");
    assert_eq!(from("203.0.113.1").status, 200);
    assert_eq!(from("203.0.113.1").status, 200);
    assert_eq!(from("203.0.113.1").status, 429);
    // Another client behind the same proxy has its own allowance ...
    assert_eq!(from("203.0.113.2").status, 200);
    // ... and a client cannot pick one by prepending entries: the proxy appends the
    // address it saw, which is the one that counts.
    assert_eq!(from("198.51.100.7, 203.0.113.1").status, 429);
}

/// A POST over the Unix socket (where nginx would be the peer); returns the status.
fn unix_post(socket: &std::path::Path, path: &str, forwarded_for: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect http socket");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let xff = forwarded_for
        .map(|ip| format!("X-Forwarded-For: {ip}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: chat.example.org\r\nContent-Length: 0\r\n{xff}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer}"))
}

#[test]
fn on_the_unix_socket_the_proxy_tells_the_client() {
    let socket = std::env::temp_dir().join(format!(
        "postern-web-{}-{}.sock",
        std::process::id(),
        crate::support::free_port()
    ));
    let socket_str = socket.display().to_string();
    let d = TestDaemon::start_with(
        "open",
        &[
            ("POSTERN_HTTP__NEW_PER_MINUTE", "1"),
            ("POSTERN_LISTEN__HTTP_SOCKET", &socket_str),
        ],
    );
    assert_eq!(unix_post(&socket, "/new", Some("203.0.113.1")), 200);
    assert_eq!(unix_post(&socket, "/new", Some("203.0.113.1")), 429);
    assert_eq!(unix_post(&socket, "/new", Some("203.0.113.2")), 200);
    // Without the header every client is one unknown client: limited together.
    assert_eq!(unix_post(&socket, "/new", None), 200);
    assert_eq!(unix_post(&socket, "/new", None), 429);
    assert_eq!(accounts(&d).len(), 3);
    drop(d);
    let _ = std::fs::remove_file(&socket);
}

/// A raw keep-alive HTTP/1.1 connection to the web listener.
struct KeepAlive {
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl KeepAlive {
    fn connect(d: &TestDaemon) -> KeepAlive {
        let s = std::net::TcpStream::connect(&d.http).expect("connect http");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        KeepAlive {
            reader: std::io::BufReader::new(s),
        }
    }

    fn send(&mut self, text: &str) {
        use std::io::Write;
        self.reader
            .get_mut()
            .write_all(text.as_bytes())
            .expect("write");
    }

    /// One answer (headers and its Content-Length body); returns the status.
    fn answer(&mut self) -> u16 {
        self.answer_with_head().0
    }

    /// One answer: its status and its header lines.
    fn answer_with_head(&mut self) -> (u16, Vec<String>) {
        use std::io::{BufRead, Read};
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("read answer");
            assert!(!line.is_empty(), "closed before an answer: {head:?}");
            if line == "\r\n" {
                break;
            }
            head.push(line);
        }
        let length: usize = head
            .iter()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("read body");
        let status = head[0]
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {}", head[0]));
        (status, head)
    }

    fn get(&mut self) -> u16 {
        self.send(
            "GET /.well-known/autoconfig/mail/config-v1.1.xml HTTP/1.1\r\nHost: example.org\r\n\r\n",
        );
        self.answer()
    }

    /// Waits for the server to close the connection; how long that took.
    fn closed_after(&mut self) -> Duration {
        use std::io::Read;
        let start = std::time::Instant::now();
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("data instead of the end of the connection"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the connection was not closed: {e}"),
        }
        start.elapsed()
    }
}

fn says_close(head: &[String]) -> bool {
    head.iter()
        .any(|l| l.to_ascii_lowercase().trim_end() == "connection: close")
}

// A refusal answered before the request body arrived left a connection hyper would not
// reuse, without saying so: the client's next request on it failed (seen as a rare
// connection error in the admin tests).
#[test]
fn an_answer_given_before_the_body_is_read_says_the_connection_closes() {
    let d = TestDaemon::start("open");
    // No session: refused at once, while the body is still on its way.
    let mut c = KeepAlive::connect(&d);
    c.send(
        "POST /admin/blocklist HTTP/1.1\r\nHost: example.org\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 25\r\n\r\n",
    );
    let (status, head) = c.answer_with_head();
    assert_eq!(status, 403, "{head:?}");
    assert!(says_close(&head), "no `Connection: close`: {head:?}");
    c.closed_after();

    // A body read to its end (a refused sign-up) keeps the connection for the next one.
    let mut c = KeepAlive::connect(&d);
    let body = r#"{"username":"x"}"#;
    c.send(&format!(
        "POST /new HTTP/1.1\r\nHost: example.org\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let (status, head) = c.answer_with_head();
    assert_eq!(status, 400, "{head:?}");
    assert!(!says_close(&head), "{head:?}");
    assert_eq!(c.get(), 200);
}

// http.idle_timeout was never applied to connections: an idle keep-alive connection was
// closed by hyper's header timer (http.header_timeout) instead.
#[test]
fn keep_alive_connections_idle_up_to_idle_timeout_and_heads_get_header_timeout() {
    let d = TestDaemon::start_with(
        "open",
        &[
            ("POSTERN_HTTP__HEADER_TIMEOUT", "1s"),
            ("POSTERN_HTTP__IDLE_TIMEOUT", "3s"),
        ],
    );
    let (header, idle) = (Duration::from_secs(1), Duration::from_secs(3));
    let early = Duration::from_millis(500);
    std::thread::scope(|scope| {
        // Silent longer than header_timeout but within idle_timeout: still served.
        scope.spawn(|| {
            let mut c = KeepAlive::connect(&d);
            assert_eq!(c.get(), 200);
            std::thread::sleep(header + early);
            assert_eq!(c.get(), 200, "the next request within idle_timeout");
        });
        // Silent past idle_timeout: the server closes the connection.
        scope.spawn(|| {
            let mut c = KeepAlive::connect(&d);
            assert_eq!(c.get(), 200);
            let waited = c.closed_after();
            assert!(
                waited > idle - early && waited < idle * 3,
                "closed {waited:?} after the answer"
            );
        });
        // A request head that stalls, on a fresh connection and after an answer: closed
        // after header_timeout, not idle_timeout.
        scope.spawn(|| {
            let mut c = KeepAlive::connect(&d);
            c.send("GET / HTTP/1.1\r\nHost: exa");
            let waited = c.closed_after();
            assert!(
                waited < idle - early,
                "closed {waited:?} after a stalled head"
            );
        });
        scope.spawn(|| {
            let mut c = KeepAlive::connect(&d);
            assert_eq!(c.get(), 200);
            c.send("GET / HTTP/1.1\r\nHost: exa");
            let waited = c.closed_after();
            assert!(
                waited > header - early && waited < idle - early,
                "closed {waited:?} after a stalled second head"
            );
        });
        // A body that stalls is the handler's to time out (408 after idle_timeout).
        scope.spawn(|| {
            let mut c = KeepAlive::connect(&d);
            let start = std::time::Instant::now();
            c.send(
                "POST /new HTTP/1.1\r\nHost: example.org\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{}",
            );
            assert_eq!(c.answer(), 408);
            assert!(start.elapsed() > idle - early, "{:?}", start.elapsed());
        });
    });
}

#[test]
fn public_url_shapes_links_cookies_and_settings() {
    let d = TestDaemon::start_with(
        "invite_only",
        &[("POSTERN_HTTP__PUBLIC_URL", "https://chat.example.org/")],
    );
    add_user(&d, "boss@example.org", PW, true);
    let h = Http::new(&d);
    let code = token(&d, &["--uses", "1"]);
    let page = h.get(&format!("/new?token={code}"));
    assert!(page.body.contains(&format!(
        "DCACCOUNT:https://chat.example.org/new?token={code}"
    )));
    let r = h.post_form(
        "/new",
        &[("username", "alice"), ("password", PW), ("token", &code)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("<code id=\"imap-host\">chat.example.org</code>"),
        "{}",
        r.body
    );
    // The dclogin link carries the servers, so it works without autoconfiguration.
    assert!(
        r.body.contains("&amp;ih=chat.example.org&amp;ip=993&amp;is=ssl&amp;sh=chat.example.org&amp;sp=465&amp;ss=ssl"),
        "{}",
        r.body
    );
    // The session cookie is Secure behind https.
    let login = h.get("/admin/login");
    assert!(
        login.set_cookies[0].contains("; Secure"),
        "{:?}",
        login.set_cookies
    );
    let r = h.post_form(
        "/admin/login",
        &[
            ("address", "boss@example.org"),
            ("password", PW),
            ("csrf", &login.csrf()),
        ],
        Some(&format!("postern_signin={}", login.csrf())),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let session = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("postern_admin="))
        .expect("session cookie");
    assert!(session.ends_with("; Secure"), "{session}");
}

#[test]
fn store_trouble_gives_503_and_creates_nothing() {
    let d = TestDaemon::start("open");
    let h = Http::new(&d);
    // Another writer holds the database longer than the daemon's busy timeout (5 s).
    let db = rusqlite::Connection::open(d.dir.join("postern.db")).expect("open db");
    db.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let r = h.post_json(
        "/new",
        &serde_json::json!({"username": "alice", "password": PW}),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.reason(),
        "the server cannot register accounts right now, please try again later."
    );
    db.execute_batch("ROLLBACK").expect("unlock");
    drop(db);
    assert!(accounts(&d).is_empty());
    let r = h.post_json(
        "/new",
        &serde_json::json!({"username": "alice", "password": PW}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn twenty_parallel_signups_on_a_five_use_invite_make_five_accounts() {
    let d = TestDaemon::start_with("invite_only", &[("POSTERN_HTTP__NEW_PER_MINUTE", "0")]);
    let code = token(&d, &["--uses", "5"]);
    let base = format!("http://{}", d.http);
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let url = format!("{base}/new?token={code}");
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(60))
                    .build();
                match agent.post(&url).send_bytes(b"") {
                    Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
                    Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let results: Vec<(u16, String)> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let ok: Vec<&String> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    let refused: Vec<&(u16, String)> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert_eq!(ok.len(), 5, "{results:?}");
    assert_eq!(refused.len(), 15);
    for (status, body) in refused {
        assert_eq!(*status, 403, "{body}");
        let v: Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["reason"], "this invite code has been used up.");
    }
    assert_eq!(accounts(&d).len(), 5);
    let list = d.cli_json(&["token", "list"]);
    assert_eq!(list[0]["uses"], 5);
    assert_eq!(list[0]["status"], "used_up");
}

#[test]
fn an_account_made_on_new_logs_in_through_dovecot() {
    let d = TestDaemon::start("open");
    let dovecot = Dovecot::start(&d);
    let v = Http::new(&d).post_empty("/new").json();
    let (email, password) = (
        v["email"].as_str().expect("email"),
        v["password"].as_str().expect("password"),
    );
    let mut session = dovecot
        .imap_login(email, password)
        .unwrap_or_else(|e| panic!("IMAP login of {email} refused: {e}"));
    assert_eq!(session.select_inbox(), 0);
    session.logout();
    assert!(dovecot.imap_login(email, "wrong password").is_err());
}

// ----- /admin -------------------------------------------------------------------------

/// A signed-in admin: the session cookie (`postern_admin=...`) and its CSRF token.
pub struct AdminSession {
    pub cookie: String,
    pub csrf: String,
}

/// Signs in through the form as a browser would. `Err` is the refusing answer.
pub fn sign_in(h: &Http, address: &str, password: &str) -> Result<AdminSession, Box<Reply>> {
    let page = h.get("/admin/login");
    assert_eq!(page.status, 200);
    let signin = page.cookie("postern_signin").expect("sign-in cookie");
    let form_token = page.csrf();
    assert_eq!(signin, form_token);
    let r = h.post_form(
        "/admin/login",
        &[
            ("address", address),
            ("password", password),
            ("csrf", &form_token),
        ],
        Some(&format!("postern_signin={signin}")),
    );
    if r.status != 303 {
        return Err(Box::new(r));
    }
    assert_eq!(r.location.as_deref(), Some("/admin/accounts"));
    let id = r.cookie("postern_admin").expect("session cookie");
    let set = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("postern_admin="))
        .expect("set-cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    // No public_url: links default to https, so the cookie is Secure.
    assert!(set.contains("Secure"), "links default to https: {set}");
    assert_eq!(id.len(), 43);
    let cookie = format!("postern_admin={id}");
    let home = h.get_with("/admin/accounts", &cookie);
    assert_eq!(home.status, 200, "{}", home.body);
    Ok(AdminSession {
        csrf: home.csrf(),
        cookie,
    })
}

fn add_user(d: &TestDaemon, addr: &str, password: &str, admin: bool) {
    let mut args = vec!["user", "add", addr, "--password-stdin"];
    if admin {
        args.push("--admin");
    }
    let out = d.cli_stdin(&args, &format!("{password}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The invite code the admin page shows once, after creating it.
fn shown_invite_code(body: &str) -> String {
    body.split("id=\"invite-code\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("code")
        .to_owned()
}

/// A daemon with an admin (boss) and an ordinary account (alice).
fn with_accounts(mode: &str, env: &[(&str, &str)]) -> TestDaemon {
    let d = TestDaemon::start_with(mode, env);
    add_user(&d, "boss@example.org", PW, true);
    add_user(&d, "alice@example.org", PW, false);
    assert_eq!(show(&d, "alice@example.org")["admin"], false);
    d
}

#[test]
fn admin_routes_refuse_without_a_session_and_show_nothing() {
    let d = with_accounts("open", &[]);
    let h = Http::new(&d);
    for path in [
        "/admin",
        "/admin/accounts",
        "/admin/accounts?q=alice",
        "/admin/accounts/alice@example.org",
        "/admin/invites",
        "/admin/blocklist",
        "/admin/registration",
    ] {
        for cookie in ["", "postern_admin=forged-session-id"] {
            let r = h.get_with(path, cookie);
            assert_eq!(r.status, 303, "GET {path}: {}", r.body);
            assert_eq!(r.location.as_deref(), Some("/admin/login"), "GET {path}");
            assert!(!r.body.contains("alice"), "GET {path} leaked: {}", r.body);
        }
    }
    let posts: [(&str, &[(&str, &str)]); 10] = [
        (
            "/admin/accounts",
            &[("address", "mallory@example.org"), ("password", PW)],
        ),
        (
            "/admin/accounts/alice@example.org/block",
            &[("reason", "x")],
        ),
        (
            "/admin/accounts/alice@example.org/delete",
            &[("confirm", "1")],
        ),
        ("/admin/accounts/alice@example.org/admin", &[("admin", "1")]),
        (
            "/admin/accounts/alice@example.org/password",
            &[("password", "mallory was here")],
        ),
        ("/admin/invites", &[("uses", "100")]),
        ("/admin/invites/1/revoke", &[]),
        ("/admin/blocklist", &[("address", "alice@example.org")]),
        ("/admin/registration", &[("mode", "closed")]),
        ("/admin/logout", &[]),
    ];
    for (path, fields) in posts {
        let r = h.post_form(path, fields, Some("postern_admin=forged-session-id"));
        assert_eq!(r.status, 403, "POST {path}: {}", r.body);
        assert!(!r.body.contains("alice@"), "POST {path} leaked: {}", r.body);
    }
    // Nothing changed.
    assert_eq!(accounts(&d), vec!["alice@example.org", "boss@example.org"]);
    let alice = show(&d, "alice@example.org");
    assert_eq!(
        (alice["blocked"].as_bool(), alice["admin"].as_bool()),
        (Some(false), Some(false))
    );
    assert!(logs_in(&d, "alice@example.org", PW));
    assert_eq!(d.cli_json(&["token", "list"]), serde_json::json!([]));
    assert_eq!(d.cli_json(&["registration", "status"])["mode"], "open");
}

#[test]
fn admin_forms_without_the_csrf_token_are_refused() {
    let d = with_accounts("open", &[]);
    let h = Http::new(&d);
    let s = sign_in(&h, "boss@example.org", PW).unwrap_or_else(|r| panic!("{r:?}"));
    let block = "/admin/accounts/alice@example.org/block";
    let r = h.post_form(block, &[("reason", "no token")], Some(&s.cookie));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = h.post_form(
        block,
        &[("reason", "bad"), ("csrf", "x".repeat(43).as_str())],
        Some(&s.cookie),
    );
    assert_eq!(r.status, 403);
    // Another admin's token does not fit this session.
    let other = sign_in(&h, "boss@example.org", PW).unwrap_or_else(|r| panic!("{r:?}"));
    assert_ne!(other.csrf, s.csrf);
    let r = h.post_form(
        block,
        &[("reason", "bad"), ("csrf", &other.csrf)],
        Some(&s.cookie),
    );
    assert_eq!(r.status, 403);
    assert_eq!(show(&d, "alice@example.org")["blocked"], false);
    // With it, the action happens.
    let r = h.post_form(
        block,
        &[("reason", "spam"), ("csrf", &s.csrf)],
        Some(&s.cookie),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(show(&d, "alice@example.org")["blocked_reason"], "spam");
    // The sign-in form needs its double-submit cookie too.
    let page = h.get("/admin/login");
    let r = h.post_form(
        "/admin/login",
        &[
            ("address", "boss@example.org"),
            ("password", PW),
            ("csrf", &page.csrf()),
        ],
        None,
    );
    assert_eq!(r.status, 403);
    assert!(r.cookie("postern_admin").is_none());
}

#[test]
fn only_admins_with_the_right_password_sign_in() {
    let d = with_accounts("open", &[]);
    let h = Http::new(&d);
    let r = sign_in(&h, "alice@example.org", PW)
        .err()
        .expect("alice is no admin");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("not an administrator"), "{}", r.body);
    assert!(r.cookie("postern_admin").is_none());
    let r = sign_in(&h, "boss@example.org", "wrong password!")
        .err()
        .expect("wrong password");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Wrong address or password"));
    assert!(r.cookie("postern_admin").is_none());
    // An unknown address in open mode is refused, and no account is created.
    let r = sign_in(&h, "newcomer@example.org", PW)
        .err()
        .expect("unknown");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Wrong address or password"));
    assert_eq!(accounts(&d), vec!["alice@example.org", "boss@example.org"]);

    // A session ends when its admin is demoted, and at sign-out.
    let s = sign_in(&h, "boss@example.org", PW).unwrap_or_else(|r| panic!("{r:?}"));
    let r = h.post_form("/admin/logout", &[("csrf", &s.csrf)], Some(&s.cookie));
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/admin/login"))
    );
    assert_eq!(h.get_with("/admin/accounts", &s.cookie).status, 303);
    let s = sign_in(&h, "boss@example.org", PW).unwrap_or_else(|r| panic!("{r:?}"));
    d.cli_ok(&["user", "admin", "boss@example.org", "--revoke"]);
    assert_eq!(h.get_with("/admin/accounts", &s.cookie).status, 303);
}

#[test]
fn more_sign_ins_than_admin_logins_per_minute_get_429() {
    let d = with_accounts("open", &[("POSTERN_HTTP__ADMIN_LOGINS_PER_MINUTE", "3")]);
    let h = Http::new(&d);
    for _ in 0..3 {
        let r = sign_in(&h, "boss@example.org", "wrong password!")
            .err()
            .expect("refused");
        assert_eq!(r.status, 403);
    }
    let r = sign_in(&h, "boss@example.org", PW)
        .err()
        .expect("throttled");
    assert_eq!(r.status, 429);
    assert!(r.body.contains("Too many sign-in attempts"), "{}", r.body);
    assert!(r.retry_after.is_some());
    assert!(r.cookie("postern_admin").is_none());
}

#[test]
fn admin_actions_do_what_the_cli_does() {
    let d = with_accounts("invite_only", &[("POSTERN_HTTP__NEW_PER_MINUTE", "0")]);
    let h = Http::new(&d);
    let s = sign_in(&h, "boss@example.org", PW).unwrap_or_else(|r| panic!("{r:?}"));
    let post = |path: &str, fields: &[(&str, &str)]| {
        let mut all = fields.to_vec();
        all.push(("csrf", &s.csrf));
        h.post_form(path, &all, Some(&s.cookie))
    };
    let page = |path: &str| {
        let r = h.get_with(path, &s.cookie);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    };

    // The list and the search.
    let list = page("/admin/accounts");
    assert!(list.contains("alice@example.org") && list.contains("boss@example.org"));
    let found = page("/admin/accounts?q=ali");
    assert!(found.contains("alice@example.org") && !found.contains("data-address=\"boss@"));

    // Add with a generated password: shown once, with the QR code; it logs in.
    let r = post("/admin/accounts", &[("address", "carol"), ("quota", "1G")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let carol_pw = r
        .body
        .split("id=\"password\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("password on the page")
        .to_owned();
    assert!(r.body.contains("<svg") && r.body.contains("dclogin:carol@example.org"));
    assert!(logs_in(&d, "carol@example.org", &carol_pw));
    let carol = show(&d, "carol@example.org");
    assert_eq!(
        (carol["created_via"].as_str(), carol["quota_bytes"].as_u64()),
        (Some("admin"), Some(1 << 30))
    );

    // Block with a reason, then the flash message and the list say so; unblock.
    let r = post(
        "/admin/accounts/alice@example.org/block",
        &[("reason", "spam run")],
    );
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/admin/accounts/alice%40example.org"))
    );
    let alice = show(&d, "alice@example.org");
    assert_eq!(
        (alice["blocked"].as_bool(), alice["blocked_reason"].as_str()),
        (Some(true), Some("spam run"))
    );
    assert!(!logs_in(&d, "alice@example.org", PW));
    let detail = page("/admin/accounts/alice@example.org");
    assert!(
        detail.contains("alice@example.org is blocked."),
        "flash: {detail}"
    );
    assert!(detail.contains("spam run"));
    assert!(
        !page("/admin/accounts/alice@example.org").contains("is blocked."),
        "flash shown once"
    );
    assert_eq!(
        post("/admin/accounts/alice@example.org/unblock", &[]).status,
        303
    );
    assert!(logs_in(&d, "alice@example.org", PW));

    // Quota, admin flag, password.
    assert_eq!(
        post(
            "/admin/accounts/alice@example.org/quota",
            &[("quota", "unlimited")]
        )
        .status,
        303
    );
    assert_eq!(show(&d, "alice@example.org")["quota_bytes"], Value::Null);
    let r = post(
        "/admin/accounts/alice@example.org/quota",
        &[("quota", "lots")],
    );
    assert_eq!(r.status, 303);
    assert!(page("/admin/accounts/alice@example.org").contains("is not a size"));
    assert_eq!(
        post("/admin/accounts/alice@example.org/admin", &[("admin", "1")]).status,
        303
    );
    assert_eq!(show(&d, "alice@example.org")["admin"], true);
    assert_eq!(
        post("/admin/accounts/alice@example.org/admin", &[("admin", "0")]).status,
        303
    );
    assert_eq!(show(&d, "alice@example.org")["admin"], false);
    let r = post("/admin/accounts/alice@example.org/password", &[]);
    assert_eq!(r.status, 200);
    let new_pw = r
        .body
        .split("id=\"password\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("new password")
        .to_owned();
    assert!(logs_in(&d, "alice@example.org", &new_pw));
    assert!(!logs_in(&d, "alice@example.org", PW));

    // Invites: the code is shown once with its link, DCACCOUNT string and QR code.
    let r = post(
        "/admin/invites",
        &[("uses", "2"), ("expires", "72h"), ("comment", "for Dave")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let code = shown_invite_code(&r.body);
    assert!(r
        .body
        .contains(&format!("https://example.org/new?token={code}")));
    assert!(r
        .body
        .contains(&format!("DCACCOUNT:https://example.org/new?token={code}")));
    assert!(r.body.contains("<svg"));
    let signup = h.post_empty(&format!("/new?token={code}"));
    assert_eq!(signup.status, 200, "{}", signup.body);
    let tokens = d.cli_json(&["token", "list"]);
    assert_eq!(
        (tokens[0]["uses"].as_i64(), tokens[0]["comment"].as_str()),
        (Some(1), Some("for Dave"))
    );
    let id = tokens[0]["id"].to_string();
    let listed = page("/admin/invites");
    assert!(
        listed.contains("for Dave") && !listed.contains(&code),
        "code shown again"
    );
    assert_eq!(
        post(&format!("/admin/invites/{id}/revoke"), &[]).status,
        303
    );
    assert_eq!(d.cli_json(&["token", "list"])[0]["status"], "revoked");
    let r = post("/admin/invites", &[("uses", "0")]);
    assert_eq!(r.status, 303);
    assert_eq!(
        d.cli_json(&["token", "list"]).as_array().map(Vec::len),
        Some(1)
    );

    // Blocklist.
    assert_eq!(
        post(
            "/admin/blocklist",
            &[("address", "spammer@example.org"), ("reason", "abuse")]
        )
        .status,
        303
    );
    let bl = d.cli_json(&["blocklist", "list"]);
    assert_eq!(
        (bl[0]["address"].as_str(), bl[0]["reason"].as_str()),
        (Some("spammer@example.org"), Some("abuse"))
    );
    assert!(page("/admin/blocklist").contains("spammer@example.org"));
    assert_eq!(
        post(
            "/admin/blocklist/remove",
            &[("address", "spammer@example.org")]
        )
        .status,
        303
    );
    assert_eq!(d.cli_json(&["blocklist", "list"]), serde_json::json!([]));

    // Registration mode at run time.
    assert_eq!(
        post("/admin/registration", &[("mode", "closed")]).status,
        303
    );
    assert_eq!(d.cli_json(&["registration", "status"])["mode"], "closed");
    assert_eq!(
        h.post_empty("/new").reason(),
        "registration is currently disabled."
    );
    assert!(page("/admin/registration").contains("Registration is now closed."));
    assert_eq!(
        post("/admin/registration", &[("mode", "default")]).status,
        303
    );
    assert_eq!(
        d.cli_json(&["registration", "status"])["mode"],
        "invite_only"
    );

    // Delete: needs the confirmation; by default the address stays blocked.
    let r = post("/admin/accounts/carol@example.org/delete", &[]);
    assert_eq!(r.status, 303);
    assert!(accounts(&d).contains(&"carol@example.org".to_owned()));
    let r = post(
        "/admin/accounts/carol@example.org/delete",
        &[("confirm", "1")],
    );
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/admin/accounts"))
    );
    assert!(!accounts(&d).contains(&"carol@example.org".to_owned()));
    let bl = d.cli_json(&["blocklist", "list"]);
    assert_eq!(bl[0]["address"], "carol@example.org");
    assert!(page("/admin/accounts").contains("carol@example.org is deleted"));
    let r = post(
        "/admin/accounts/alice@example.org/delete",
        &[("confirm", "1"), ("allow_reuse", "1"), ("keep_mail", "1")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        d.cli_json(&["blocklist", "list"]).as_array().map(Vec::len),
        Some(1)
    );
    let missing = h.get_with("/admin/accounts/alice@example.org", &s.cookie);
    assert_eq!(missing.status, 404);
}

/// A mail home with one message, owned by the mail user and closed to others, as
/// Dovecot leaves it.
fn mail_home_with_mail(d: &TestDaemon, local: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let home = d.vmail.join("example.org").join(local);
    std::fs::create_dir_all(home.join("Maildir/new")).expect("mkdir");
    std::fs::write(home.join("Maildir/new/1.mail"), "hello").expect("write");
    for dir in [d.vmail.join("example.org"), home.clone()] {
        nix::unistd::chown(
            &dir,
            Some(nix::unistd::Uid::from_raw(crate::support::MAIL_UID)),
            Some(nix::unistd::Gid::from_raw(crate::support::MAIL_GID)),
        )
        .expect("chown");
    }
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    home
}

#[test]
fn admin_delete_queues_the_mail_home_for_the_maintenance_run() {
    let d = with_accounts("open", &[]);
    add_user(&d, "dora@example.org", PW, false);
    add_user(&d, "erin@example.org", PW, false);
    let alice = mail_home_with_mail(&d, "alice");
    let dora = mail_home_with_mail(&d, "dora");
    // erin's home became a link to a directory outside the mail root.
    let outside = d.dir.join("elsewhere");
    std::fs::create_dir(&outside).expect("mkdir");
    let erin = d.vmail.join("example.org/erin");
    std::os::unix::fs::symlink(&outside, &erin).expect("symlink");

    let h = Http::new(&d);
    let s = sign_in(&h, "boss@example.org", PW).unwrap_or_else(|r| panic!("{r:?}"));
    let delete = |address: &str, fields: &[(&str, &str)]| {
        let mut all = fields.to_vec();
        all.extend([("confirm", "1"), ("csrf", s.csrf.as_str())]);
        let r = h.post_form(
            &format!("/admin/accounts/{address}/delete"),
            &all,
            Some(&s.cookie),
        );
        assert_eq!(
            (r.status, r.location.as_deref()),
            (303, Some("/admin/accounts")),
            "{}",
            r.body
        );
        let page = h.get_with("/admin/accounts", &s.cookie);
        assert_eq!(page.status, 200);
        page.body
    };

    // The daemon deletes the account, leaves the mail home alone and says who removes it.
    let page = delete("alice@example.org", &[]);
    assert!(
        page.contains(&format!(
            "alice@example.org is deleted; the address stays on the blocklist. Its mail home \
             {} will be removed by the next maintenance run (daily), or at once by \
             `postern maintenance run` on the server.",
            alice.display()
        )),
        "{page}"
    );
    assert!(
        page.contains("Mail homes of deleted accounts waiting for removal: 1."),
        "{page}"
    );
    assert!(!accounts(&d).contains(&"alice@example.org".to_owned()));
    assert!(
        alice.join("Maildir/new/1.mail").exists(),
        "queued, not removed"
    );
    // dora is deleted with --allow-reuse and registered again before the maintenance run:
    // her old home now holds the new account's mail.
    delete("dora@example.org", &[("allow_reuse", "1")]);
    add_user(&d, "dora@example.org", "the new dora pw", false);
    delete("erin@example.org", &[]);
    assert_eq!(d.cli_json(&["stats"])["mail_homes_queued"], 3);
    assert!(d
        .cli_ok(&["stats"])
        .contains("mail homes: 3 queued for removal"));

    // A dry run says what would happen and changes nothing.
    let out = d.cli_ok(&["maintenance", "run", "--dry-run"]);
    for line in [
        format!(
            "would remove queued mail home {} of alice@example.org",
            alice.display()
        ),
        format!(
            "would leave queued mail home {} alone: dora@example.org has an account again",
            dora.display()
        ),
        format!(
            "queued mail home {} of erin@example.org cannot be removed: it is a symbolic link",
            erin.display()
        ),
    ] {
        assert!(out.contains(&line), "{line}\n in: {out}");
    }
    assert!(alice.join("Maildir/new/1.mail").exists());
    assert_eq!(d.cli_json(&["stats"])["mail_homes_queued"], 3);

    // The run removes alice's home, leaves dora's, and fails on erin's link, naming it.
    let run = d.cli(&["maintenance", "run"]);
    let (out, err) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert_eq!(run.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains(&format!(
            "removed queued mail home {} of alice@example.org",
            alice.display()
        )),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "1 mail home(s) could not be removed and stay queued for the next run: {}",
            erin.display()
        )),
        "{err}"
    );
    assert!(!alice.exists());
    assert!(
        dora.join("Maildir/new/1.mail").exists(),
        "the new account's mail"
    );
    assert!(outside.exists(), "the link was not followed");
    assert_eq!(d.cli_json(&["stats"])["mail_homes_queued"], 1);

    // Once the link is gone, so is the entry; the page no longer mentions the queue.
    std::fs::remove_file(&erin).expect("rm link");
    let out = d.cli_ok(&["maintenance", "run"]);
    assert!(
        out.contains(&format!(
            "queued mail home {} of erin@example.org was already gone",
            erin.display()
        )),
        "{out}"
    );
    assert_eq!(d.cli_json(&["stats"])["mail_homes_queued"], 0);
    let page = h.get_with("/admin/accounts", &s.cookie).body;
    assert!(!page.contains("waiting for removal"), "{page}");
    // Keeping the mail queues nothing.
    let page = delete("dora@example.org", &[("keep_mail", "1")]);
    assert!(page.contains("Its mail stays on disk."), "{page}");
    assert_eq!(d.cli_json(&["stats"])["mail_homes_queued"], 0);
}

/// The servers an autoconfig document names, read the way mail clients read it:
/// `clientConfig/emailProvider/{incoming,outgoing}Server[@type]/{hostname,port,socketType}`.
fn autoconfig_servers(xml: &str) -> (Vec<String>, Vec<[String; 5]>) {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("bad XML ({e}): {xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "clientConfig");
    assert_eq!(root.attribute("version"), Some("1.1"));
    let provider = root
        .children()
        .find(|n| n.has_tag_name("emailProvider"))
        .expect("emailProvider");
    let text = |n: roxmltree::Node, tag: &str| {
        n.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.text())
            .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
            .to_owned()
    };
    let domains = provider
        .children()
        .filter(|n| n.has_tag_name("domain"))
        .filter_map(|n| n.text().map(str::to_owned))
        .collect();
    let servers = provider
        .children()
        .filter(|n| n.has_tag_name("incomingServer") || n.has_tag_name("outgoingServer"))
        .map(|n| {
            assert_eq!(text(n, "username"), "%EMAILADDRESS%");
            assert_eq!(text(n, "authentication"), "password-cleartext");
            [
                n.attribute("type").unwrap_or_default().to_owned(),
                text(n, "hostname"),
                text(n, "port"),
                text(n, "socketType"),
                n.tag_name().name().to_owned(),
            ]
        })
        .collect();
    (domains, servers)
}

#[test]
fn autoconfig_names_the_servers_mail_clients_should_use() {
    let d = TestDaemon::start_with(
        "open",
        &[("POSTERN_HTTP__PUBLIC_URL", "https://chat.example.org/")],
    );
    let h = Http::new(&d);
    let expected = |imap: [&str; 3], smtp: [&str; 3]| {
        vec![
            ["imap", imap[0], imap[1], imap[2], "incomingServer"].map(str::to_owned),
            ["smtp", smtp[0], smtp[1], smtp[2], "outgoingServer"].map(str::to_owned),
        ]
    };
    for path in [
        "/.well-known/autoconfig/mail/config-v1.1.xml",
        "/mail/config-v1.1.xml?emailaddress=alice%40example.org",
        "/mail/config-v1.1.xml?emailaddress=Alice%40EXAMPLE.org",
    ] {
        let r = h.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(
            r.content_type.starts_with("application/xml"),
            "{}",
            r.content_type
        );
        let (domains, servers) = autoconfig_servers(&r.body);
        assert_eq!(domains, ["example.org"]);
        assert_eq!(
            servers,
            expected(
                ["chat.example.org", "993", "SSL"],
                ["chat.example.org", "465", "SSL"]
            )
        );
    }
    // Another domain's address would hand its password to the wrong server.
    let r = h.get("/mail/config-v1.1.xml?emailaddress=alice%40example.net");
    assert_eq!(r.status, 404, "{}", r.body);
    drop(d);

    // Every part comes from [autoconfig].
    let d = TestDaemon::start_with(
        "open",
        &[
            ("POSTERN_AUTOCONFIG__IMAP_HOST", "imap.example.org"),
            ("POSTERN_AUTOCONFIG__IMAP_PORT", "143"),
            ("POSTERN_AUTOCONFIG__IMAP_SOCKET", "STARTTLS"),
            ("POSTERN_AUTOCONFIG__SMTP_PORT", "587"),
            ("POSTERN_AUTOCONFIG__SMTP_SOCKET", "plain"),
        ],
    );
    let r = Http::new(&d).get("/.well-known/autoconfig/mail/config-v1.1.xml");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        autoconfig_servers(&r.body).1,
        expected(
            ["imap.example.org", "143", "STARTTLS"],
            ["example.org", "587", "plain"]
        )
    );
    drop(d);

    // A socket type clients do not know is a configuration error, named.
    let d = TestDaemon::configure("open", &[("POSTERN_AUTOCONFIG__SMTP_SOCKET", "tls1.3")]);
    let out = d.cli(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(
        err.contains("autoconfig.smtp_socket") && err.contains("starttls"),
        "{err}"
    );
}

#[test]
fn admin_invite_view_lists_its_accounts_and_remaining_uses() {
    let d = with_accounts("invite_only", &[("POSTERN_HTTP__NEW_PER_MINUTE", "0")]);
    let h = Http::new(&d);
    let s = sign_in(&h, "boss@example.org", PW).unwrap_or_else(|r| panic!("{r:?}"));
    let post = |path: &str, fields: &[(&str, &str)]| {
        let mut all = fields.to_vec();
        all.push(("csrf", &s.csrf));
        h.post_form(path, &all, Some(&s.cookie))
    };
    let form = h.get_with("/admin/invites", &s.cookie);
    assert!(form.body.contains("name=\"lifetime\""), "{}", form.body);
    let r = post(
        "/admin/invites",
        &[("uses", "3"), ("lifetime", "7d"), ("comment", "workshop")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let code = shown_invite_code(&r.body);
    let id = d.cli_json(&["token", "list"])[0]["id"].to_string();
    assert_eq!(
        d.cli_json(&["token", "show", &id])["account_lifetime"],
        7 * 86400
    );
    let signup = h.post_json(
        &format!("/new?token={code}"),
        &serde_json::json!({"username": "dora", "password": PW}),
    );
    assert_eq!(signup.status, 200, "{}", signup.body);
    assert!(show(&d, "dora@example.org")["expires_at"].is_number());

    let view = h.get_with(&format!("/admin/invites/{id}"), &s.cookie);
    assert_eq!(view.status, 200, "{}", view.body);
    assert!(view.body.contains("id=\"uses\">1 of 3<"), "{}", view.body);
    assert!(view.body.contains("id=\"remaining\">2<"), "{}", view.body);
    assert!(view.body.contains("id=\"lifetime\">7d<"), "{}", view.body);
    assert!(
        view.body
            .contains("href=\"/admin/accounts/dora%40example.org\">dora@example.org<")
            || view
                .body
                .contains("href=\"/admin/accounts/dora@example.org\">dora@example.org<"),
        "{}",
        view.body
    );
    assert!(!view.body.contains(&code), "the code is never shown again");
    // The account page says when it goes.
    let account = h.get_with("/admin/accounts/dora@example.org", &s.cookie);
    assert!(account.body.contains("id=\"expires\""), "{}", account.body);
    // An unknown invite and a code in the path are sent back to the list.
    for path in ["/admin/invites/999", &format!("/admin/invites/{code}")] {
        let r = h.get_with(path, &s.cookie);
        assert_eq!(
            (r.status, r.location.as_deref()),
            (303, Some("/admin/invites")),
            "{path}"
        );
    }
    // Without a session the view shows nothing.
    let r = h.get(&format!("/admin/invites/{id}"));
    assert_eq!(r.location.as_deref(), Some("/admin/login"));
    // A lifetime that is not a duration is refused.
    let r = post("/admin/invites", &[("uses", "1"), ("lifetime", "soon")]);
    assert_eq!(r.status, 303);
    assert_eq!(
        d.cli_json(&["token", "list"]).as_array().map(Vec::len),
        Some(1)
    );
}
