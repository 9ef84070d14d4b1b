//! A real headless Chromium driven over WebDriver (W3C, HTTP + JSON) through Debian's
//! `chromedriver`: just the commands the browser tests use, with polling for elements and
//! screenshots saved under `target/browser-artifacts/`.
//!
//! ```text
//! POST /session {"capabilities":{"alwaysMatch":{"goog:chromeOptions":{...}}}} -> sessionId
//! POST /session/ID/url {"url":...}    POST /session/ID/element {"using":"css selector",...}
//! POST /session/ID/element/EL/value {"text":...}   GET /session/ID/screenshot -> base64 PNG
//! ```
//!
//! Needs `apt-get install chromium chromium-driver` (`.ci/browser.sh`); without them the
//! tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "install them with `bash .ci/browser.sh` \
                       (apt-get install -y chromium chromium-driver)";
/// How long to wait for an element to appear after a navigation.
const FIND_TIMEOUT: Duration = Duration::from_secs(15);

/// A chromedriver process and one browser session in a temporary profile.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    /// Prefix of this test's screenshot files.
    name: String,
    /// chromedriver.log and the browser profile; removed on drop.
    tmp: tempfile::TempDir,
}

/// Where screenshots go: `<crate>/target/browser-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("browser-artifacts")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. Panics with the install command when
    /// either is missing.
    pub fn start(name: &str) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the browser tests need Chromium and its WebDriver; {INSTALL}"
            );
        }
        let port = super::free_port();
        let profile = tempfile::Builder::new()
            .prefix("postern-chromium-")
            .tempdir()
            .expect("profile dir");
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; {INSTALL}"));
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(90))
            .build();
        let base = format!("http://127.0.0.1:{port}");
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            agent,
            name: name.to_owned(),
            tmp: profile,
        };
        b.wait_ready();
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1100,1400".to_owned(),
            format!("--user-data-dir={}", b.tmp.path().join("profile").display()),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
                }
            }
        });
        let v = b.raw("POST", "/session", Some(caps));
        b.session = v["value"]["sessionId"]
            .as_str()
            .or(v["sessionId"].as_str())
            .unwrap_or_else(|| panic!("no browser session: {v}"))
            .to_owned();
        b
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.agent.get(&format!("{}/status", self.base)).call() {
                let v: Value = r
                    .into_string()
                    .ok()
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or(Value::Null);
                if v["value"]["ready"] == true {
                    return;
                }
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!("chromedriver exited with {status}");
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; returns the answer's JSON (with `value`). Panics on errors.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_raw(method, path, body) {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    fn try_raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        let req = req.set("Content-Type", "application/json; charset=utf-8");
        let res = match body {
            Some(b) => req.send_string(&b.to_string()),
            None if method == "POST" => req.send_string("{}"),
            None => req.call(),
        };
        match res {
            Ok(r) => {
                let text = r.into_string().map_err(|e| e.to_string())?;
                serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
            }
            Err(ureq::Error::Status(code, r)) => {
                Err(format!("{code}: {}", r.into_string().unwrap_or_default()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element matching `css` now, if any.
    pub fn try_find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let v = self
            .try_raw(
                "POST",
                &path,
                Some(json!({ "using": "css selector", "value": css })),
            )
            .ok()?;
        // The element reference is the one value of the returned object.
        v["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The element matching `css`, waiting for it to appear.
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("missing-{}", sanitize(css)));
                panic!("no element {css} on {}:\n{}", self.url(), self.source());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn text(&self, css: &str) -> String {
        let el = self.find(css);
        self.cmd("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the element matching `css` shows `needle` in its text: a page that
    /// a click loads can then be told from the one the click was made on.
    pub fn find_text(&self, css: &str, needle: &str) {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            if self.try_find(css).is_some() && self.text(css).contains(needle) {
                return;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("missing-{}", sanitize(css)));
                panic!(
                    "no {needle:?} in {css} on {}:\n{}",
                    self.url(),
                    self.source()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let el = self.find(css);
        self.cmd("GET", &format!("/element/{el}/attribute/{name}"), None)
            .as_str()
            .map(str::to_owned)
    }

    /// Clears a field and types `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/clear"), None);
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, css: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/click"), None);
    }

    /// Saves a PNG of the viewport as `<artifacts>/<test>-<step>.png`.
    pub fn screenshot(&self, step: &str) -> PathBuf {
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{}-{step}.png", self.name));
        let path_str = format!("/session/{}/screenshot", self.session);
        if let Ok(v) = self.try_raw("GET", &path_str, None) {
            if let Some(png) = v["value"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            {
                let _ = std::fs::write(&path, png);
            }
        }
        path
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.tmp.path().join("chromedriver.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- chromedriver log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.try_raw("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
