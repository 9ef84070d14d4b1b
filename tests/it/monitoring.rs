//! The metrics listener: exact counts after a scripted set of dict and SASL logins and
//! policy requests, the same counts as a real Prometheus (Debian's `prometheus`,
//! started here on a free port) scraped and stores them, `promtool check` on the
//! exposition and on the shipped alert rules, `/readyz` while the database is gone and
//! back, and `postern status`'s exit codes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::faults::sasl;
use crate::policy::{block, PolicyClient};
use crate::support::dovecot::{login_ok, login_refused, Dovecot};
use crate::support::{free_port, passdb_once, TestDaemon};

const PW: &str = "correct horse battery";
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/examples/prometheus-postern-rules.yml"
);
const SCRAPE_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/examples/prometheus-postern.yml"
);
const MONITORING_MD: &str = include_str!("../../docs/monitoring.md");

/// Fails the test, saying how to install it, when Debian's Prometheus is missing.
fn need(binary: &str) {
    assert!(
        Path::new(binary).exists(),
        "{binary} is missing: run .ci/prometheus.sh"
    );
}

/// Runs `promtool args...` with `input` on its standard input; fails the test unless it
/// succeeds. Returns what it printed.
fn promtool(args: &[&str], input: &str) -> String {
    let mut child = Command::new(PROMTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("write");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\n{said}",
        out.status
    );
    said
}

/// A daemon in open mode with `listen.metrics` on a free port.
fn daemon() -> (TestDaemon, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let d = TestDaemon::start_with("open", &[("POSTERN_LISTEN__METRICS", &metrics)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&metrics).is_err() {
        assert!(
            Instant::now() < deadline,
            "no metrics listener:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (d, metrics)
}

/// `GET url`: the status code and the body, whatever the code.
fn get(url: &str) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    match agent.get(url).call() {
        Ok(r) => (r.status(), r.into_string().expect("body")),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().expect("body")),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// One scrape of `/metrics`.
fn scrape(metrics: &str) -> String {
    let (code, text) = get(&format!("http://{metrics}/metrics"));
    assert_eq!(code, 200, "{text}");
    text
}

/// The value of the sample written exactly `series` (name and labels) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .expect("a number")
}

/// What [`scripted_traffic`] does, as each counter must show it.
const EXPECTED: &[(&str, f64)] = &[
    ("postern_logins_total{service=\"dict\",result=\"ok\"}", 3.0),
    (
        "postern_logins_total{service=\"dict\",result=\"bad_password\"}",
        1.0,
    ),
    (
        "postern_logins_total{service=\"dict\",result=\"blocked\"}",
        1.0,
    ),
    (
        "postern_logins_total{service=\"dict\",result=\"unknown\"}",
        1.0,
    ),
    (
        "postern_logins_total{service=\"dict\",result=\"invalid\"}",
        1.0,
    ),
    (
        "postern_logins_total{service=\"dict\",result=\"throttled\"}",
        0.0,
    ),
    (
        "postern_logins_total{service=\"dict\",result=\"temp_fail\"}",
        0.0,
    ),
    ("postern_logins_total{service=\"sasl\",result=\"ok\"}", 1.0),
    (
        "postern_logins_total{service=\"sasl\",result=\"bad_password\"}",
        1.0,
    ),
    (
        "postern_logins_total{service=\"sasl\",result=\"unknown\"}",
        0.0,
    ),
    (
        "postern_logins_total{service=\"lua_api\",result=\"ok\"}",
        0.0,
    ),
    ("postern_logins_total{service=\"admin\",result=\"ok\"}", 0.0),
    ("postern_jit_creations_total", 2.0),
    ("postern_accounts_created_total{route=\"jit\"}", 2.0),
    ("postern_accounts_created_total{route=\"web\"}", 0.0),
    ("postern_policy_decisions_total{action=\"dunno\"}", 2.0),
    (
        "postern_policy_decisions_total{action=\"reject_unknown\"}",
        1.0,
    ),
    (
        "postern_policy_decisions_total{action=\"reject_blocked\"}",
        1.0,
    ),
    ("postern_policy_decisions_total{action=\"full\"}", 0.0),
    ("postern_policy_decisions_total{action=\"defer\"}", 0.0),
    // alice's second dict login and her SASL login hit; her two wrong passwords miss
    // (creations and the refusals decided before a password check are no lookups).
    ("postern_verify_cache_hits_total", 2.0),
    ("postern_verify_cache_misses_total", 2.0),
    ("postern_signups_refused_total{reason=\"closed\"}", 0.0),
];

/// Dict logins (two just-in-time creations, a good, a bad, a blocked, an unknown and an
/// invalid one), SASL logins (a good and a bad one) and policy requests (two DUNNO, an
/// unknown and a blocked recipient), each checked for the answer it must get.
fn scripted_traffic(d: &TestDaemon) {
    let dict = |user: &str, pw: &str| passdb_once(&d.dict_socket, user, pw);
    assert!(dict("alice@example.org", PW).starts_with('O'), "alice JIT");
    assert!(
        dict("alice@example.org", PW).starts_with('O'),
        "alice again"
    );
    assert!(dict("alice@example.org", "wrong password 1").starts_with('N'));
    assert!(dict("bob@example.org", PW).starts_with('O'), "bob JIT");
    d.cli_ok(&["user", "block", "bob@example.org"]);
    assert!(dict("bob@example.org", PW).starts_with('N'), "bob blocked");
    assert!(
        dict("carol@elsewhere.net", PW).starts_with('N'),
        "not served"
    );
    assert!(
        dict("ab@example.org", PW).starts_with('N'),
        "name too short"
    );
    assert!(sasl(d, "alice@example.org", PW).starts_with("OK"));
    assert!(sasl(d, "alice@example.org", "wrong password 2").starts_with("FAIL"));
    let mut policy = PolicyClient::connect(d);
    let mut ask = |rcpt: &str, instance: &str| policy.ask(&block(rcpt, "", instance, 0));
    assert_eq!(ask("alice@example.org", "i1").as_deref(), Some("DUNNO"));
    assert_eq!(
        ask("ghost@example.org", "i2").as_deref(),
        Some("550 5.1.1 User unknown")
    );
    assert_eq!(
        ask("bob@example.org", "i3").as_deref(),
        Some("REJECT 5.7.1 Recipient address is blocked")
    );
    assert_eq!(ask("friend@elsewhere.net", "i4").as_deref(), Some("DUNNO"));
}

#[test]
fn each_counter_shows_exactly_what_was_done() {
    let (d, metrics) = daemon();
    scripted_traffic(&d);
    let text = scrape(&metrics);
    for (series, want) in EXPECTED {
        assert_eq!(sample(&text, series), *want, "{series}");
    }
    // The gauges are read from the database at the scrape.
    assert_eq!(sample(&text, "postern_accounts"), 2.0);
    assert_eq!(sample(&text, "postern_accounts_blocked"), 1.0);
    assert_eq!(sample(&text, "postern_administrators"), 0.0);
    assert_eq!(sample(&text, "postern_config_generation"), 1.0);
    let version = format!(
        "postern_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &version), 1.0);
    // Every dict login was counted once: 3 + 1 + 1 + 1 + 1.
    let dict_total: f64 = text
        .lines()
        .filter(|l| l.starts_with("postern_logins_total{service=\"dict\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(dict_total, 7.0);
    // Each login at a served domain read its login row (alice three dict and two SASL
    // logins, bob two, ab one: its name is judged only when it would be created), and
    // each creation read it again under the creation lock (alice, bob): 10. Each policy
    // request for a served domain read its recipient's mail facts (alice, ghost, bob):
    // 3. None failed.
    assert_eq!(
        sample(&text, "postern_store_operations_total{op=\"login_row\"}"),
        10.0
    );
    assert_eq!(
        sample(&text, "postern_store_operations_total{op=\"mail_facts\"}"),
        3.0
    );
    for op in ["login_row", "mail_facts"] {
        let series = format!("postern_store_errors_total{{op=\"{op}\"}}");
        assert_eq!(sample(&text, &series), 0.0, "{series}");
    }
    // The scrape's own connection is counted on its listener.
    assert!(sample(&text, "postern_connections_open{listener=\"metrics\"}") >= 1.0);
    assert!(sample(&text, "postern_argon2_hashes_total") >= 5.0);
    // No label value is an address or an IP.
    assert!(!text.contains("example.org") && !text.contains("127.0.0.1"));
    // A reload bumps the generation.
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&scrape(&metrics), "postern_config_generation") != 2.0 {
        assert!(Instant::now() < deadline, "no reload:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn promtool_checks_the_exposition_in_both_formats_and_the_shipped_rules() {
    need(PROMTOOL);
    let (d, metrics) = daemon();
    scripted_traffic(&d);
    let text = scrape(&metrics);
    assert!(text.contains("postern_store_operation_duration_seconds_bucket"));
    // No lint either: names, units, suffixes and help texts as Prometheus wants them.
    assert_eq!(promtool(&["check", "metrics"], &text), "");
    // OpenMetrics, when the scraper asks for it, ends with # EOF.
    let agent = ureq::AgentBuilder::new().build();
    let om = agent
        .get(&format!("http://{metrics}/metrics"))
        .set("Accept", "application/openmetrics-text;version=1.0.0")
        .call()
        .expect("scrape");
    assert!(om
        .content_type()
        .starts_with("application/openmetrics-text"));
    let om = om.into_string().expect("body");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("postern_logins_total{service=\"dict\",result=\"ok\"} 3\n"));

    let said = promtool(&["check", "rules", RULES], "");
    assert!(said.contains("SUCCESS: 6 rules found"), "{said}");

    // The shipped scrape configuration, with the rules where it expects them.
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("prometheus.yml");
    let text = std::fs::read_to_string(SCRAPE_CONFIG).expect("read the example");
    assert!(text.contains("/etc/prometheus/prometheus-postern-rules.yml"));
    std::fs::write(
        &config,
        text.replace("/etc/prometheus/prometheus-postern-rules.yml", RULES),
    )
    .expect("write");
    let config = config.display().to_string();
    let said = promtool(&["check", "config", &config], "");
    assert!(said.contains("SUCCESS: 1 rule files found"), "{said}");
}

/// Debian's Prometheus on a free loopback port, scraping `target` each second, with its
/// configuration and storage in a temporary directory; stopped on drop.
struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {RULES}\n\
                 scrape_configs:\n  - job_name: postern\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            url: format!("http://{addr}"),
            dir,
            _tmp: tmp,
        };
        p.eventually("ready", || {
            let r = ureq::get(&format!("{}/-/ready", p.url)).call();
            matches!(r, Ok(r) if r.status() == 200).then_some(())
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn eventually<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus: {what} did not happen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The value of an instant query that yields one series, if it yields one.
    fn query(&self, promql: &str) -> Option<f64> {
        let r = ureq::get(&format!("{}/api/v1/query", self.url))
            .query("query", promql)
            .call()
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&r.into_string().ok()?).ok()?;
        assert_eq!(v["status"], "success", "{promql}: {v}");
        let result = v["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            [] => None,
            _ => panic!("{promql}: more than one series: {v}"),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_login_and_policy_counts_the_test_caused() {
    need(PROMETHEUS);
    let (d, metrics) = daemon();
    scripted_traffic(&d);
    let prometheus = Prometheus::start(&metrics);
    prometheus.eventually("a successful scrape", || {
        (prometheus.query("up{job=\"postern\"}")? == 1.0).then_some(())
    });
    for (series, want) in EXPECTED {
        let got = prometheus.eventually(series, || prometheus.query(series));
        assert_eq!(got, *want, "{series} as Prometheus stored it");
    }
    // The shipped rules load and none fires on a healthy postern.
    let (code, rules) = get(&format!("{}/api/v1/rules", prometheus.url));
    assert_eq!(code, 200);
    let rules: serde_json::Value = serde_json::from_str(&rules).expect("json");
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(names.contains(&"PosternDown"), "{names:?}");
    assert_eq!(prometheus.query("ALERTS{alertstate=\"firing\"}"), None);
    drop(d);
}

#[test]
fn readyz_is_503_while_the_database_is_gone_and_status_exits_0_1_3() {
    let (mut d, metrics) = daemon();
    let ready = || get(&format!("http://{metrics}/readyz"));
    assert_eq!(
        get(&format!("http://{metrics}/healthz")),
        (200, "ok\n".into())
    );
    assert_eq!(ready(), (200, "ok\n".into()));
    let status = |d: &TestDaemon, json: bool| {
        let mut args = vec!["status"];
        if json {
            args.push("--json");
        }
        d.cli(&args)
    };
    let out = status(&d, false);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("postern {}: healthy\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains(&format!("metrics={metrics}")), "{text}");
    let out = status(&d, true);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["healthy"], true);
    assert_eq!(json["config_generation"], 1);
    assert_eq!(json["database"]["ready"], true);
    let keys: Vec<&str> = json["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .filter_map(|l| l["key"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["dict", "auth", "policy", "http", "auth_http", "metrics"]
    );

    // The database file goes away: within the second the daemon looks, /readyz says so.
    let db = d.dir.join("postern.db");
    let away = d.dir.join("postern.db.away");
    std::fs::rename(&db, &away).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, body) = loop {
        let r = ready();
        if r.0 != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("lost") && body.ends_with('\n'), "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    let out = status(&d, true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["healthy"], false);
    assert_eq!(json["database"]["ready"], false);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unhealthy"),
        "{out:?}"
    );

    // Back in place: ready again, without a restart.
    std::fs::rename(&away, &db).expect("rename back");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready().0 != 200 {
        assert!(Instant::now() < deadline, "still not ready:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&d, false).status.code(), Some(0));

    d.stop();
    let out = status(&d, false);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be reached"),
        "{out:?}"
    );
}

/// The text block of docs/monitoring.md that starts with `first_line`.
fn docs_block(first_line: &str) -> String {
    let start = MONITORING_MD
        .find(&format!("```text\n{first_line}"))
        .expect("the block in docs/monitoring.md")
        + "```text\n".len();
    let len = MONITORING_MD[start..].find("```").expect("its end");
    MONITORING_MD[start..start + len].to_owned()
}

#[test]
fn dovecots_own_metrics_scrape_beside_posterns_with_the_documented_lines() {
    let (d, metrics) = daemon();
    let dovecot = Dovecot::start(&d);
    let port = free_port();
    let lines = docs_block("service stats {");
    assert!(lines.contains("port = 9900"), "{lines}");
    std::fs::write(
        dovecot
            .config
            .with_file_name("conf.d")
            .join("95-metrics.conf"),
        lines.replace("port = 9900", &format!("port = {port}")),
    )
    .expect("write 95-metrics.conf");
    let out = dovecot.doveadm(&["reload"]);
    assert!(out.status.success(), "doveadm reload: {out:?}");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&url).call().is_err() {
        assert!(
            Instant::now() < deadline,
            "Dovecot's stats listener did not answer:\n{}",
            dovecot.log_contents()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    login_ok(&dovecot, "dave@example.org", PW);
    login_ok(&dovecot, "dave@example.org", PW);
    login_refused(&dovecot, "dave@example.org", "wrong password 3");
    let dovecot_sample = |series: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, text) = get(&url);
            let v = text
                .lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .and_then(|v| v.parse::<f64>().ok());
            match v {
                Some(v) => return v,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                None => panic!("no {series} in Dovecot's metrics:\n{text}"),
            }
        }
    };
    // What Dovecot accepted and refused is what postern answered its passdb.
    let ok = dovecot_sample("dovecot_auth_success_total");
    let refused = dovecot_sample("dovecot_auth_failure_total");
    let text = scrape(&metrics);
    assert_eq!(ok, 2.0);
    assert_eq!(refused, 1.0);
    assert_eq!(
        sample(
            &text,
            "postern_logins_total{service=\"dict\",result=\"ok\"}"
        ),
        ok
    );
    assert_eq!(
        sample(
            &text,
            "postern_logins_total{service=\"dict\",result=\"bad_password\"}"
        ),
        refused
    );
}

#[test]
fn on_a_unix_socket_the_listener_serves_the_exposition_and_postern_status() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket = tmp.path().join("metrics.sock");
    let socket_text = socket.display().to_string();
    let d = TestDaemon::start_with("open", &[("POSTERN_LISTEN__METRICS", &socket_text)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "no metrics socket:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(passdb_once(&d.dict_socket, "erin@example.org", PW).starts_with('O'));
    let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    std::io::Write::write_all(
        &mut s,
        b"GET /metrics HTTP/1.1\r\nHost: postern\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let (_, text) = answer.split_once("\r\n\r\n").expect("a body");
    assert_eq!(
        sample(text, "postern_logins_total{service=\"dict\",result=\"ok\"}"),
        1.0
    );
    let out = d.cli(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let metrics = json["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["key"] == "metrics")
        .expect("the metrics listener");
    assert_eq!(metrics["address"], socket_text.as_str());
    drop(d);
    assert!(!socket.exists(), "the socket file is removed at stop");
}
