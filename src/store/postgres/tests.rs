//! What only PostgreSQL has to show: the guarantees across hosts (two pools on one
//! database stand for two hosts), migrations run by hosts starting together, failures
//! that are temporary and recovery without a restart, TLS and passwords. The operations'
//! semantics are tested on both backends by the shared store suite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::store::test_pg::{PgServer, PG_PASSWORD};

fn options(url: String) -> PgOptions {
    PgOptions {
        url,
        password_file: None,
        pool_size: 8,
    }
}

async fn host(url: &str) -> Postgres {
    Postgres::open(&options(url.to_owned()))
        .await
        .expect("open")
}

fn new(address: &str) -> NewAccount {
    NewAccount {
        address: address.to_owned(),
        password_hash: "$argon2id$x".to_owned(),
        created_via: "login",
        now: 100,
        token_hash: None,
        admin_if_none: false,
        admin: false,
        quota: QuotaMode::Default,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_starting_together_migrate_once() {
    let url = PgServer::shared().fresh_database();
    let opened = futures_join_all((0..6).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Postgres::open(&options(url)).await })
    }))
    .await;
    for o in opened {
        o.expect("join").expect("every host opens");
    }
    let version =
        PgServer::shared().count(url_database(&url), "SELECT version FROM postern_schema");
    assert_eq!(version, migrations::known());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_logins_on_two_hosts_make_one_account() {
    let url = PgServer::shared().fresh_database();
    let (a, b) = (Arc::new(host(&url).await), Arc::new(host(&url).await));
    let tasks = (0..20).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let hash = format!("$argon2id$hash{i}");
            let mut n = new("race@x.org");
            n.password_hash = hash.clone();
            store.create_account(n).await.map(|r| r.ok().map(|_| hash))
        })
    });
    let results = futures_join_all(tasks).await;
    let winners: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.expect("join").expect("no database error"))
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let row = a.account("race@x.org").await.expect("db").expect("row");
    // Only the winner's password is the account's.
    assert_eq!(row.password_hash, winners[0]);
    assert_eq!(a.stats(200).await.expect("db").accounts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_use_invite_raced_through_two_hosts_makes_one_account() {
    let url = PgServer::shared().fresh_database();
    let (a, b) = (Arc::new(host(&url).await), Arc::new(host(&url).await));
    let code = [3u8; 32];
    let id = a
        .create_token(&code, None, 1, None, 10, None)
        .await
        .expect("db");
    let tasks = (0..10).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let address = format!("u{i}@x.org");
            let mut n = new(&address);
            n.token_hash = Some(code);
            n.created_via = "invite";
            store.create_account(n).await
        })
    });
    let mut created = 0;
    for r in futures_join_all(tasks).await {
        match r.expect("join").expect("no database error") {
            Ok(c) => {
                assert_eq!(c.token_id, Some(id));
                created += 1
            }
            Err(refusal) => assert_eq!(refusal, CreateRefusal::Token(TokenProblem::UsedUp)),
        }
    }
    assert_eq!(created, 1);
    let token = b.token(Some(id), None).await.expect("db").expect("row");
    assert_eq!(token.uses, 1);
    assert_eq!(b.stats(20).await.expect("db").accounts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_admin_is_one_account_across_hosts() {
    let url = PgServer::shared().fresh_database();
    let (a, b) = (Arc::new(host(&url).await), Arc::new(host(&url).await));
    let tasks = (0..8).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let address = format!("admin{i}@x.org");
            let mut n = new(&address);
            n.admin_if_none = true;
            store.create_account(n).await
        })
    });
    let admins = futures_join_all(tasks)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(Ok(c))) if c.admin))
        .count();
    assert_eq!(admins, 1);
    assert_eq!(a.stats(0).await.expect("db").admins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_or_delete_on_one_host_holds_on_the_other_at_once() {
    let url = PgServer::shared().fresh_database();
    let (a, b) = (host(&url).await, host(&url).await);
    a.create_account(new("a@x.org"))
        .await
        .expect("db")
        .expect("ok");
    assert!(b.block("a@x.org", Some("spam"), 5).await.expect("db"));
    let row = a.account("a@x.org").await.expect("db").expect("row");
    assert_eq!(row.blocked.map(|e| e.reason), Some(Some("spam".to_owned())));
    assert!(a.addresses().await.expect("db").is_empty());
    b.delete_account("a@x.org", false, "deleted", 6, None)
        .await
        .expect("db")
        .expect("deleted");
    assert!(a.account("a@x.org").await.expect("db").is_none());
    assert_eq!(
        a.create_account(new("a@x.org")).await.expect("db"),
        Err(CreateRefusal::Blocked)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_temporary_error_and_the_pool_recovers_without_reopening() {
    let mut pg = PgServer::start();
    let url = pg.create_database("down");
    let store = host(&url).await;
    store
        .create_account(new("a@x.org"))
        .await
        .expect("db")
        .expect("ok");
    pg.stop();
    let started = Instant::now();
    let err = store
        .create_account(new("b@x.org"))
        .await
        .expect_err("no server");
    assert!(
        matches!(err, StoreError::Pool(_) | StoreError::Postgres(_)),
        "{err}"
    );
    assert!(store.account("a@x.org").await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.account("a@x.org").await {
            Ok(row) => {
                assert!(row.is_some());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("not back after 10 s: {e}"),
        }
    }
    // Nothing was created while the server was away.
    assert!(store.account("b@x.org").await.expect("db").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_verify_full_verify_ca_require_and_a_password_file() {
    let pg = PgServer::start_with_tls();
    pg.create_database("tls");
    let ca = pg.ca.clone().expect("ca");
    let ca = ca.display();
    for (host_name, mode) in [
        ("localhost", format!("verify-full&sslrootcert={ca}")),
        ("127.0.0.1", format!("verify-full&sslrootcert={ca}")),
        ("127.0.0.1", format!("verify-ca&sslrootcert={ca}")),
        ("127.0.0.1", "require".to_owned()),
    ] {
        let url = pg.tcp_url(host_name, "tls", &mode);
        let store = Postgres::open(&options(url.clone()))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", without_password(&url)));
        store.set_setting("k", Some("v")).await.expect("db");
        let ssl = pg.psql(
            "tls",
            "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE s.ssl AND a.datname = 'tls'",
        );
        assert_ne!(ssl, "0", "{mode}: the connection is not encrypted");
    }
    // A CA that did not sign the server's certificate is refused.
    let other = tempfile::tempdir().expect("tempdir");
    let wrong = other.path().join("ca.pem");
    let gen = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-keyout"])
        .arg(other.path().join("k"))
        .arg("-out")
        .arg(&wrong)
        .args(["-days", "1", "-subj", "/CN=other"])
        .output()
        .expect("openssl");
    assert!(gen.status.success());
    let url = pg.tcp_url(
        "localhost",
        "tls",
        &format!("verify-full&sslrootcert={}", wrong.display()),
    );
    assert!(Postgres::open(&options(url)).await.is_err());

    // The password from a file, the URL without one.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, format!("{PG_PASSWORD}\n")).expect("write");
    let url = format!(
        "postgresql://postgres@localhost:{}/tls?sslmode=verify-full&sslrootcert={ca}",
        pg.port
    );
    let no_password = Postgres::open(&options(url.clone())).await;
    assert!(no_password.is_err());
    let store = Postgres::open(&PgOptions {
        url,
        password_file: Some(file),
        pool_size: 2,
    })
    .await
    .expect("the password file is read");
    assert_eq!(store.setting("k").await.expect("db").as_deref(), Some("v"));
}

/// The database name in a URL made by [`PgServer::url`].
fn url_database(url: &str) -> &str {
    url.trim_start_matches("postgresql:///")
        .split('?')
        .next()
        .unwrap_or("")
}

async fn futures_join_all<T>(
    tasks: impl IntoIterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await);
    }
    out
}
