//! Core behaviour, without any protocol: the rules every adapter relies on.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::*;
use crate::config::{Argon2Config, Config, RegistrationMode};
use crate::store::{AccountRow, TokenProblem};

struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    clock: Arc<AtomicI64>,
}

impl Fixture {
    fn new(mode: RegistrationMode) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            domains: vec!["example.org".into()],
            ..Config::default()
        };
        config.database = crate::store::test_backend::database(module_path!(), dir.path());
        config.mailbox.home = format!("{}/vmail/{{domain}}/{{local}}", dir.path().display());
        config.registration.mode = mode;
        config.argon2 = Argon2Config {
            memory_kib: 1024,
            iterations: 1,
            ..Argon2Config::default()
        };
        Fixture {
            _dir: dir,
            config,
            clock: Arc::new(AtomicI64::new(1_800_000_000)),
        }
    }

    /// A core over the fixture's database: call twice for two processes sharing it.
    fn accounts(&self) -> Arc<Accounts> {
        let store = Store::open(&self.config.database).expect("store");
        let clock = self.clock.clone();
        Arc::new(
            Accounts::with_clock(
                self.config.clone(),
                store,
                Arc::new(move || clock.load(Ordering::SeqCst)),
            )
            .expect("accounts"),
        )
    }
}

/// The operator of the tests' operator actions.
fn op() -> Actor {
    Actor::Cli {
        unix_user: "root".into(),
    }
}

fn pw(s: &str) -> Password {
    Password::new(s)
}

async fn login(a: &Accounts, user: &str, password: &str) -> LoginOutcome {
    a.login(user, &pw(password), LoginContext::default())
        .await
        .expect("no temporary failure")
}

async fn add_admin(a: &Accounts, address: &str, password: &str) {
    a.add_user(
        &op(),
        NewUser {
            address: address.into(),
            password: Some(pw(password)),
            quota: QuotaSetting::Default,
            admin: true,
            route: Route::Cli,
        },
    )
    .await
    .expect("add admin");
}

fn accepted(address: &str, created: bool) -> LoginOutcome {
    LoginOutcome::Accepted {
        address: address.into(),
        created,
    }
}

#[tokio::test]
async fn jit_creates_on_first_login_then_verifies() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    assert_eq!(
        login(&a, " Alice@Example.org", "first password").await,
        accepted("alice@example.org", true)
    );
    assert_eq!(
        login(&a, "alice@example.org", "first password").await,
        accepted("alice@example.org", false)
    );
    assert_eq!(
        login(&a, "alice@example.org", "other password").await,
        LoginOutcome::Refused(Refusal::BadPassword)
    );
    let row = a.user("alice@example.org").await.expect("exists");
    assert_eq!(row.created_via, "jit");
    let row = stored_row(&a, "alice@example.org").await;
    assert!(row.password_hash.starts_with("$argon2id$"));
    assert!(!row.password_hash.contains("first password"));
    assert_eq!(row.first_login, Some(1_800_000_000));
    // No just-in-time account becomes admin, not even the first one.
    assert!(!row.admin);
    login(&a, "bob@example.org", "first password").await;
    assert!(!a.user("bob@example.org").await.expect("exists").admin);
}

#[tokio::test]
async fn jit_refuses_what_it_may_not_create() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    let refused = |r| LoginOutcome::Refused(r);
    assert_eq!(
        login(&a, "ab@example.org", "long enough pw").await,
        refused(Refusal::Invalid)
    );
    assert_eq!(
        login(&a, "postmaster@example.org", "long enough pw").await,
        refused(Refusal::Invalid)
    );
    assert_eq!(
        login(&a, "carol@example.org", "short").await,
        refused(Refusal::Invalid)
    );
    assert_eq!(
        login(&a, "carol@other.org", "long enough pw").await,
        refused(Refusal::Unknown)
    );
    assert_eq!(
        login(&a, "carol@example.org", "").await,
        refused(Refusal::BadPassword)
    );
    a.blocklist_add(&op(), "dave@example.org", None)
        .await
        .expect("block");
    assert_eq!(
        login(&a, "dave@example.org", "long enough pw").await,
        refused(Refusal::Blocked)
    );
    assert!(a.users(false, None).await.expect("list").is_empty());
}

#[tokio::test]
async fn invite_only_and_closed_create_nothing_on_login() {
    for mode in [RegistrationMode::InviteOnly, RegistrationMode::Closed] {
        let f = Fixture::new(mode);
        let a = f.accounts();
        assert_eq!(
            login(&a, "alice@example.org", "long enough pw").await,
            LoginOutcome::Refused(Refusal::Unknown)
        );
        assert!(a.users(false, None).await.expect("list").is_empty());
    }
    // jit = false switches creation on login off even in open mode.
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.registration.jit = false;
    let a = f.accounts();
    assert_eq!(
        login(&a, "alice@example.org", "long enough pw").await,
        LoginOutcome::Refused(Refusal::Unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_logins_make_one_account_and_all_succeed() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    let b = f.accounts(); // a second process on the same database
    let mut tasks = Vec::new();
    for i in 0..10 {
        let core = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            core.login(
                "same@example.org",
                &pw("shared secret 1"),
                LoginContext::default(),
            )
            .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.expect("join").expect("no tempfail") {
            LoginOutcome::Accepted { created: c, .. } => created += usize::from(c),
            other => panic!("refused: {other:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(a.users(false, None).await.expect("list").len(), 1);
}

#[tokio::test]
async fn block_and_password_change_from_another_process_take_effect_at_once() {
    let f = Fixture::new(RegistrationMode::Open);
    let daemon = f.accounts();
    let cli = f.accounts();
    login(&daemon, "alice@example.org", "old password").await;
    // Warm the daemon's verification cache.
    assert_eq!(
        login(&daemon, "alice@example.org", "old password").await,
        accepted("alice@example.org", false)
    );
    cli.set_password(&op(), "alice@example.org", Some(pw("new password")))
        .await
        .expect("passwd");
    assert_eq!(
        login(&daemon, "alice@example.org", "old password").await,
        LoginOutcome::Refused(Refusal::BadPassword)
    );
    assert_eq!(
        login(&daemon, "alice@example.org", "new password").await,
        accepted("alice@example.org", false)
    );
    cli.block_user(&op(), "alice@example.org", Some("abuse".into()))
        .await
        .expect("block");
    assert_eq!(
        login(&daemon, "alice@example.org", "new password").await,
        LoginOutcome::Refused(Refusal::Blocked)
    );
    assert_eq!(daemon.userdb("alice@example.org").await.expect("db"), None);
    cli.unblock_user(&op(), "alice@example.org")
        .await
        .expect("unblock");
    assert_eq!(
        login(&daemon, "alice@example.org", "new password").await,
        accepted("alice@example.org", false)
    );
}

#[tokio::test]
async fn runtime_mode_overrides_config_across_processes() {
    let f = Fixture::new(RegistrationMode::InviteOnly);
    let daemon = f.accounts();
    let cli = f.accounts();
    assert_eq!(
        daemon.registration_mode().await.expect("db"),
        RegistrationMode::InviteOnly
    );
    cli.set_registration_mode(&op(), Some(RegistrationMode::Open))
        .await
        .expect("set");
    assert_eq!(
        login(&daemon, "alice@example.org", "long enough pw").await,
        accepted("alice@example.org", true)
    );
    cli.set_registration_mode(&op(), Some(RegistrationMode::Closed))
        .await
        .expect("set");
    let err = daemon
        .register(RegisterRequest::default())
        .await
        .expect_err("closed");
    assert_eq!(err.to_string(), "registration is currently disabled.");
    cli.set_registration_mode(&op(), None).await.expect("reset");
    assert_eq!(
        daemon.registration_mode().await.expect("db"),
        RegistrationMode::InviteOnly
    );
}

#[tokio::test]
async fn legacy_hash_is_rehashed_at_next_good_login() {
    let f = Fixture::new(RegistrationMode::Closed);
    let a = f.accounts();
    a.add_user(
        &op(),
        NewUser {
            address: "old@example.org".into(),
            password: Some(pw("placeholder pw")),
            quota: QuotaSetting::Default,
            admin: false,
            route: Route::Import,
        },
    )
    .await
    .expect("add");
    let legacy = sha_crypt::sha512_simple(
        "chatmail password",
        &sha_crypt::Sha512Params::new(5000).expect("params"),
    )
    .expect("hash");
    let stored = format!("{{SHA512-CRYPT}}{legacy}");
    a.store
        .set_password_hash("old@example.org", &stored)
        .await
        .expect("db");
    assert_eq!(
        login(&a, "old@example.org", "wrong password").await,
        LoginOutcome::Refused(Refusal::BadPassword)
    );
    assert_eq!(
        login(&a, "old@example.org", "chatmail password").await,
        accepted("old@example.org", false)
    );
    let row = stored_row(&a, "old@example.org").await;
    assert!(
        row.password_hash.starts_with("$argon2id$"),
        "{}",
        row.password_hash
    );
    let b = f.accounts(); // fresh process, no cache: the new hash verifies
    assert_eq!(
        login(&b, "old@example.org", "chatmail password").await,
        accepted("old@example.org", false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invite_uses_are_never_exceeded_under_concurrency() {
    let f = Fixture::new(RegistrationMode::InviteOnly);
    let a = f.accounts();
    let (_, code) = a
        .create_token(&op(), 5, None, Some("five".into()))
        .await
        .expect("token");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (a, code) = (a.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            a.register(RegisterRequest {
                token: Some(code),
                ..RegisterRequest::default()
            })
            .await
        }));
    }
    let (mut ok, mut used_up) = (0, 0);
    for t in tasks {
        match t.await.expect("join") {
            Ok(r) => {
                ok += 1;
                assert_eq!(r.address.len(), 9 + "@example.org".len());
            }
            Err(RegisterError::Token(TokenProblem::UsedUp)) => used_up += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((ok, used_up), (5, 15));
    let rows = a.users(false, None).await.expect("list");
    assert_eq!(rows.len(), 5);
    assert!(rows
        .iter()
        .all(|r| r.created_via == "invite" && r.invite.is_some()));
}

#[tokio::test]
async fn register_checks_mode_token_and_rules() {
    let f = Fixture::new(RegistrationMode::InviteOnly);
    let a = f.accounts();
    let req = |u: &str, p: &str, t: Option<&str>| RegisterRequest {
        username: Some(u.into()),
        password: Some(pw(p)),
        token: t.map(str::to_owned),
    };
    assert!(matches!(
        a.register(req("alice", "long enough pw", None)).await,
        Err(RegisterError::TokenRequired)
    ));
    assert!(matches!(
        a.register(req("alice", "long enough pw", Some("nope")))
            .await,
        Err(RegisterError::Token(TokenProblem::Unknown))
    ));
    let (_, code) = a.create_token(&op(), 3, None, None).await.expect("token");
    assert!(matches!(
        a.register(req("alice", "short", Some(&code))).await,
        Err(RegisterError::Password(_))
    ));
    assert!(matches!(
        a.register(req("a..b", "long enough pw", Some(&code))).await,
        Err(RegisterError::Address(_))
    ));
    let r = a
        .register(req("Alice@example.org", "long enough pw", Some(&code)))
        .await
        .expect("ok");
    assert_eq!(r.address, "alice@example.org");
    assert!(matches!(
        a.register(req("alice", "long enough pw", Some(&code)))
            .await,
        Err(RegisterError::Taken)
    ));
    // Refused attempts consumed no use: 3 uses, 1 account.
    let t = &a.tokens().await.expect("tokens")[0];
    assert_eq!(t.uses, 1);
    // The registered password logs in.
    assert_eq!(
        login(&a, "alice@example.org", "long enough pw").await,
        accepted("alice@example.org", false)
    );
}

/// Runs mail-home operations with the test process's own rights.
struct OwnRights;

impl maintenance::MailHomeRights for OwnRights {
    fn with_rights<T>(
        &self,
        op: impl std::future::Future<Output = T>,
    ) -> impl std::future::Future<Output = T> {
        op
    }
}

/// Creates `address` (open mode, by logging in) with a message in its mail home.
async fn with_mail(a: &Accounts, address: &str) -> std::path::PathBuf {
    login(a, address, "long enough pw").await;
    let home = a.userdb(address).await.expect("db").expect("entry").home;
    std::fs::create_dir_all(home.join("Maildir/new")).expect("mkdir");
    std::fs::write(home.join("Maildir/new/1"), "mail").expect("write");
    home
}

#[tokio::test]
async fn delete_blocks_address_and_queues_the_home_without_touching_it() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    let home = with_mail(&a, "alice@example.org").await;
    let deleted = a
        .delete_user(&op(), "alice@example.org", false, false)
        .await
        .expect("delete");
    assert_eq!(deleted.mail_queued.as_deref(), Some(home.as_path()));
    assert!(
        home.join("Maildir/new/1").exists(),
        "deleting touches no file"
    );
    assert_eq!(a.queued_home_count().await.expect("db"), 1);
    // The address stays blocked: nobody can take it over by logging in.
    assert_eq!(
        login(&a, "alice@example.org", "long enough pw").await,
        LoginOutcome::Refused(Refusal::Blocked)
    );
    // With the rights to do it (the CLI as root), the queued home goes at once.
    let removed = a
        .remove_queued_home(&op(), "alice@example.org", &OwnRights)
        .await
        .expect("db")
        .expect("queued");
    assert_eq!(
        (removed.result, removed.home.as_path()),
        (maintenance::HomeResult::Removed, home.as_path())
    );
    assert!(!home.exists());
    assert_eq!(a.queued_home_count().await.expect("db"), 0);

    // --keep-mail queues nothing; with --allow-reuse the address can be registered again.
    let bob = with_mail(&a, "bob@example.org").await;
    let deleted = a
        .delete_user(&op(), "bob@example.org", true, true)
        .await
        .expect("delete");
    assert_eq!(deleted.mail_queued, None);
    assert_eq!(a.queued_home_count().await.expect("db"), 0);
    assert!(bob.exists());
    assert_eq!(
        login(&a, "bob@example.org", "another pw 1").await,
        accepted("bob@example.org", true)
    );
}

#[tokio::test]
async fn maintenance_removes_queued_homes_but_not_a_reregistered_one_and_keeps_failures() {
    use maintenance::HomeResult;
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    let alice = with_mail(&a, "alice@example.org").await;
    let bob = with_mail(&a, "bob@example.org").await;
    login(&a, "carol@example.org", "long enough pw").await; // never had a mail home
    let dave = with_mail(&a, "dave@example.org").await;
    for user in ["alice", "bob", "carol", "dave"] {
        a.delete_user(&op(), &format!("{user}@example.org"), false, user == "bob")
            .await
            .expect("delete");
    }
    // bob registers again after --allow-reuse: his home now holds the new account's mail.
    assert_eq!(
        login(&a, "bob@example.org", "the new bob pw").await,
        accepted("bob@example.org", true)
    );
    // dave's home became a link to a directory outside the mail root.
    let outside = f._dir.path().join("elsewhere");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::remove_dir_all(&dave).expect("rm");
    std::os::unix::fs::symlink(&outside, &dave).expect("symlink");

    let results = |r: &maintenance::MaintenanceReport| {
        r.queued_homes
            .iter()
            .map(|h| (h.address.clone(), h.result.clone()))
            .collect::<HashMap<_, _>>()
    };
    let failed = HomeResult::Failed("it is a symbolic link; not following it".into());
    let expected = HashMap::from([
        ("alice@example.org".to_owned(), HomeResult::Removed),
        ("bob@example.org".to_owned(), HomeResult::Skipped),
        ("carol@example.org".to_owned(), HomeResult::Gone),
        ("dave@example.org".to_owned(), failed.clone()),
    ]);

    // A dry run says all that and changes nothing.
    let now = a.now();
    let dry = a
        .run_maintenance(&op(), now, true, &OwnRights)
        .await
        .expect("run");
    assert_eq!(results(&dry), expected);
    assert!(dry.succeeded());
    assert!(alice.join("Maildir/new/1").exists());
    assert_eq!(a.queued_home_count().await.expect("db"), 4);

    let run = a
        .run_maintenance(&op(), now, false, &OwnRights)
        .await
        .expect("run");
    assert_eq!(results(&run), expected);
    assert!(!alice.exists(), "removed");
    assert!(
        bob.join("Maildir/new/1").exists(),
        "the new account's mail is kept"
    );
    assert!(outside.exists(), "the link was not followed");
    assert!(!run.succeeded());
    assert_eq!(
        run.failed_homes()
            .iter()
            .map(|h| h.home.clone())
            .collect::<Vec<_>>(),
        vec![dave.clone()]
    );
    // Only the failure stays queued; the next run tries it again.
    assert_eq!(a.queued_home_count().await.expect("db"), 1);
    let again = a
        .run_maintenance(&op(), now, false, &OwnRights)
        .await
        .expect("run");
    assert_eq!(
        results(&again),
        HashMap::from([("dave@example.org".to_owned(), failed)])
    );
    // Once the operator clears the link away, the entry leaves the queue.
    std::fs::remove_file(&dave).expect("rm link");
    let last = a
        .run_maintenance(&op(), now, false, &OwnRights)
        .await
        .expect("run");
    assert!(last.succeeded());
    assert_eq!(a.queued_home_count().await.expect("db"), 0);
}

#[tokio::test]
async fn maintenance_deletes_due_accounts_with_their_homes_at_once() {
    use crate::config::Seconds;
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.maintenance.delete_inactive_after = Some(Seconds(90 * 86400));
    let a = f.accounts();
    add_admin(&a, "boss@example.org", "long enough pw").await; // the administrator: never due
    let old = with_mail(&a, "old@example.org").await;
    let later = a.now() + 91 * 86400;

    let dry = a
        .run_maintenance(&op(), later, true, &OwnRights)
        .await
        .expect("run");
    assert_eq!(
        dry.accounts,
        vec![maintenance::DueAccount {
            address: "old@example.org".into(),
            why: maintenance::Due::Inactive,
            outcome: maintenance::DueOutcome::Due,
        }]
    );
    assert!(old.exists() && a.user("old@example.org").await.is_ok());

    let run = a
        .run_maintenance(&op(), later, false, &OwnRights)
        .await
        .expect("run");
    assert!(run.succeeded(), "{run:?}");
    assert!(matches!(
        &run.accounts[..],
        [maintenance::DueAccount {
            outcome: maintenance::DueOutcome::Deleted(Some(maintenance::HomeOutcome {
                result: maintenance::HomeResult::Removed,
                ..
            })),
            ..
        }]
    ));
    assert!(!old.exists());
    assert!(a.user("old@example.org").await.is_err());
    assert_eq!(a.queued_home_count().await.expect("db"), 0);
}

// Regression: `maintenance run --dry-run` counted every account with stale usage, the
// run only those with a mail home to measure, so the two counts differed.
#[tokio::test]
async fn a_dry_run_predicts_the_usage_count_of_the_run() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    with_mail(&a, "alice@example.org").await;
    login(&a, "bob@example.org", "long enough pw").await; // no mail home yet
    let later = a.now() + 2 * 86400;
    let plan = a.maintenance_plan(later).await.expect("plan");
    assert_eq!(
        plan.stale_usage,
        vec!["alice@example.org".to_owned(), "bob@example.org".to_owned()]
    );
    let dry = a
        .run_maintenance(&op(), later, true, &OwnRights)
        .await
        .expect("run");
    assert_eq!(dry.usage_recomputed, 1);
    assert_eq!(
        a.user("alice@example.org")
            .await
            .expect("user")
            .usage
            .updated_at,
        None,
        "a dry run writes nothing"
    );
    let run = a
        .run_maintenance(&op(), later, false, &OwnRights)
        .await
        .expect("run");
    assert_eq!(run.usage_recomputed, dry.usage_recomputed);
    let alice = a.user("alice@example.org").await.expect("user");
    assert_eq!((alice.usage.bytes, alice.usage.messages), (4, 1));
}

#[tokio::test]
async fn userdb_and_usage_reports() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    login(&a, "alice@example.org", "long enough pw").await;
    let e = a
        .userdb("ALICE@example.org")
        .await
        .expect("db")
        .expect("entry");
    assert_eq!(e.address, "alice@example.org");
    assert_eq!(e.quota_bytes, Some(500 << 20));
    assert!(e.home.ends_with("vmail/example.org/alice"));
    a.set_user_quota(&op(), "alice@example.org", QuotaSetting::Unlimited)
        .await
        .expect("quota");
    assert_eq!(
        a.userdb("alice@example.org")
            .await
            .expect("db")
            .expect("e")
            .quota_bytes,
        None
    );
    assert!(a
        .note_usage(
            "alice@example.org",
            UsageChange::Set {
                bytes: Some(4096),
                messages: Some(2)
            }
        )
        .await
        .expect("db"));
    assert!(!a
        .note_usage(
            "nobody@example.org",
            UsageChange::Set {
                bytes: Some(1),
                messages: None
            }
        )
        .await
        .expect("db"));
    assert!(a
        .note_last_login("alice@example.org", 1_900_000_000)
        .await
        .expect("db"));
    let row = a.user("alice@example.org").await.expect("row");
    assert_eq!(
        (row.usage.bytes, row.usage.messages, row.last_login),
        (4096, 2, Some(1_900_000_000))
    );
    assert_eq!(a.userdb("nobody@example.org").await.expect("db"), None);
}

#[tokio::test]
async fn repeated_failures_throttle_without_locking_out_known_devices() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.login.max_failures = 3;
    let a = f.accounts();
    login(&a, "alice@example.org", "right password").await; // creates; device now cached
    for _ in 0..3 {
        assert_eq!(
            login(&a, "alice@example.org", "wrong guess").await,
            LoginOutcome::Refused(Refusal::BadPassword)
        );
    }
    // Further guesses are refused without a password check...
    assert_eq!(
        login(&a, "alice@example.org", "wrong guess").await,
        LoginOutcome::Refused(Refusal::Throttled)
    );
    // ...a new device with the right password waits for the window too...
    let fresh = f.accounts();
    for _ in 0..3 {
        login(&fresh, "alice@example.org", "bad").await;
    }
    assert_eq!(
        login(&fresh, "alice@example.org", "right password").await,
        LoginOutcome::Refused(Refusal::Throttled)
    );
    // ...but the owner's known device still gets in.
    assert_eq!(
        login(&a, "alice@example.org", "right password").await,
        accepted("alice@example.org", false)
    );
}

#[tokio::test]
async fn failures_per_client_ip_are_limited_across_accounts() {
    let mut f = Fixture::new(RegistrationMode::Closed);
    f.config.login.max_failures_per_ip = 5;
    let a = f.accounts();
    a.add_user(
        &op(),
        NewUser {
            address: "alice@example.org".into(),
            password: Some(pw("right password")),
            quota: QuotaSetting::Default,
            admin: false,
            route: Route::Cli,
        },
    )
    .await
    .expect("add");
    let attacker = LoginContext {
        service: "smtp",
        remote_ip: Some("192.0.2.7".parse().expect("ip")),
        ..LoginContext::default()
    };
    for i in 0..5 {
        let r = a
            .login(
                &format!("user{i}@example.org"),
                &pw("guess guess"),
                attacker,
            )
            .await
            .expect("ok");
        assert_eq!(r, LoginOutcome::Refused(Refusal::Unknown));
    }
    let r = a
        .login("alice@example.org", &pw("right password"), attacker)
        .await
        .expect("ok");
    assert_eq!(r, LoginOutcome::Refused(Refusal::Throttled));
    let other = LoginContext {
        service: "smtp",
        remote_ip: Some("198.51.100.1".parse().expect("ip")),
        ..LoginContext::default()
    };
    let r = a
        .login("alice@example.org", &pw("right password"), other)
        .await
        .expect("ok");
    assert_eq!(r, accepted("alice@example.org", false));
}

#[tokio::test]
async fn policy_decisions() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.policy.send_burst = 2;
    let a = f.accounts();
    for u in ["alice", "bob", "full"] {
        login(&a, &format!("{u}@example.org"), "policy password").await;
    }
    a.set_user_quota(&op(), "full@example.org", QuotaSetting::Explicit(1000))
        .await
        .expect("quota");
    a.note_usage(
        "full@example.org",
        UsageChange::Set {
            bytes: Some(1000),
            messages: Some(1),
        },
    )
    .await
    .expect("usage");
    a.set_user_quota(&op(), "bob@example.org", QuotaSetting::Explicit(10_000))
        .await
        .expect("quota");
    a.note_usage(
        "bob@example.org",
        UsageChange::Set {
            bytes: Some(9_000),
            messages: Some(1),
        },
    )
    .await
    .expect("usage");
    a.blocklist_add(&op(), "gone@example.org", None)
        .await
        .expect("block");
    let rcpt = |r: &'static str, size: u64| PolicyRequest {
        protocol_state: "RCPT",
        recipient: r,
        size,
        ..PolicyRequest::default()
    };
    let decide = |req| {
        let a = a.clone();
        async move { a.policy(req).await.expect("no tempfail") }
    };
    assert_eq!(
        decide(rcpt("alice@example.org", 0)).await,
        PolicyVerdict::Dunno
    );
    assert_eq!(
        decide(rcpt("Alice@EXAMPLE.org", 0)).await,
        PolicyVerdict::Dunno
    );
    assert_eq!(
        decide(rcpt("someone@elsewhere.net", 0)).await,
        PolicyVerdict::Dunno
    );
    assert_eq!(
        decide(rcpt("ghost@example.org", 0)).await,
        PolicyVerdict::RecipientUnknown
    );
    assert_eq!(
        decide(rcpt("gone@example.org", 0)).await,
        PolicyVerdict::RecipientBlocked
    );
    assert_eq!(
        decide(rcpt("full@example.org", 0)).await,
        PolicyVerdict::MailboxFull
    );
    assert_eq!(
        decide(rcpt("bob@example.org", 500)).await,
        PolicyVerdict::Dunno
    );
    assert_eq!(
        decide(rcpt("bob@example.org", 2_000)).await,
        PolicyVerdict::MailboxFull
    );
    let mut data = rcpt("full@example.org", 0);
    data.protocol_state = "DATA";
    assert_eq!(decide(data).await, PolicyVerdict::Dunno);

    // Authenticated sender: rate per message, block.
    let send = |instance: &'static str| PolicyRequest {
        protocol_state: "RCPT",
        recipient: "someone@elsewhere.net",
        sasl_username: "alice@example.org",
        instance,
        size: 0,
    };
    assert_eq!(decide(send("m1")).await, PolicyVerdict::Dunno);
    assert_eq!(
        decide(send("m1")).await,
        PolicyVerdict::Dunno,
        "second recipient, same message"
    );
    assert_eq!(decide(send("m2")).await, PolicyVerdict::Dunno);
    assert_eq!(decide(send("m3")).await, PolicyVerdict::SenderRateLimited);
    a.block_user(&op(), "alice@example.org", None)
        .await
        .expect("block");
    assert_eq!(decide(send("m4")).await, PolicyVerdict::SenderBlocked);

    let mut f2 = Fixture::new(RegistrationMode::Open);
    f2.config.policy.reject_unknown = false;
    let b = f2.accounts();
    assert_eq!(
        b.policy(rcpt("ghost@example.org", 0)).await.expect("ok"),
        PolicyVerdict::Dunno
    );
}

#[tokio::test]
async fn maintenance_plan_picks_exactly_what_is_due() {
    use crate::config::Seconds;
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.maintenance.delete_inactive_after = Some(Seconds(90 * 86400));
    f.config.maintenance.delete_unused_after = Some(Seconds(7 * 86400));
    f.config.maintenance.token_grace = Seconds(86400);
    let a = f.accounts();
    let t0 = f.clock.load(Ordering::SeqCst);
    let day = 86400;
    // The operator's account comes first, so it is the administrator (never due).
    a.add_user(
        &op(),
        NewUser {
            address: "operator@example.org".into(),
            password: None,
            quota: QuotaSetting::Default,
            admin: false,
            route: Route::Cli,
        },
    )
    .await
    .expect("add");
    login(&a, "active@example.org", "long enough pw").await;
    let web = a
        .register(RegisterRequest::default())
        .await
        .expect("web account")
        .address;
    let used_web = a
        .register(RegisterRequest::default())
        .await
        .expect("web account");
    login(&a, &used_web.address, used_web.password.expose()).await;
    let (spent, code) = a.create_token(&op(), 1, None, None).await.expect("token");
    let invited = a
        .register(RegisterRequest {
            token: Some(code),
            ..RegisterRequest::default()
        })
        .await
        .expect("invite");
    let (revoked, _) = a.create_token(&op(), 3, None, None).await.expect("token");
    a.revoke_token(&op(), &revoked.id.to_string())
        .await
        .expect("revoke");
    let (live, _) = a.create_token(&op(), 3, None, None).await.expect("token");

    // Day 6: nothing is due (the revoked invite's grace ends on day 1, so it is).
    let plan = a.maintenance_plan(t0 + 6 * day).await.expect("plan");
    assert!(
        plan.inactive.is_empty() && plan.unused.is_empty(),
        "{plan:?}"
    );
    assert_eq!(
        plan.tokens,
        vec![revoked.id],
        "the used-up invite made an account: kept"
    );

    // Day 8: the web and invite accounts never used are due; nobody is inactive.
    let plan = a.maintenance_plan(t0 + 8 * day).await.expect("plan");
    let mut unused = vec![web.clone(), invited.address.clone()];
    unused.sort();
    assert_eq!(plan.unused, unused);
    assert!(plan.inactive.is_empty());
    assert!(!plan.tokens.contains(&live.id) && !plan.tokens.contains(&spent.id));

    // Day 91: every account that ever logged in is inactive; the operator's stays.
    let plan = a.maintenance_plan(t0 + 91 * day).await.expect("plan");
    let mut inactive = vec!["active@example.org".to_owned(), used_web.address.clone()];
    inactive.sort();
    assert_eq!(plan.inactive, inactive);
    assert!(!plan.unused.contains(&"operator@example.org".to_owned()));
    assert_eq!(a.purge_tokens(&op(), plan.tokens).await.expect("purge"), 1);
    assert_eq!(a.tokens().await.expect("tokens").len(), 2);
}

#[tokio::test]
async fn admin_sign_in_never_creates_and_needs_the_admin_flag() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    add_admin(&a, "boss@example.org", "boss password").await;
    login(&a, "worker@example.org", "worker password").await;
    let ctx = LoginContext::default();
    let sign_in = |u: &'static str, p: &'static str| {
        let a = a.clone();
        async move { a.admin_sign_in(u, &pw(p), ctx).await.expect("no tempfail") }
    };
    assert_eq!(
        sign_in("Boss@example.org", "boss password").await,
        AdminSignIn::Admin("boss@example.org".into())
    );
    assert_eq!(
        sign_in("boss@example.org", "wrong").await,
        AdminSignIn::Refused(Refusal::BadPassword)
    );
    assert_eq!(
        sign_in("worker@example.org", "worker password").await,
        AdminSignIn::NotAdmin
    );
    // Open mode, valid new name and password: a login would create it; sign-in does not.
    assert_eq!(
        sign_in("newcomer@example.org", "long enough pw").await,
        AdminSignIn::Refused(Refusal::Unknown)
    );
    assert!(a.user("newcomer@example.org").await.is_err());
}

#[test]
fn quota_settings_as_operators_write_them() {
    use crate::accounts::admin::parse_quota;
    assert_eq!(parse_quota(""), Ok(QuotaSetting::Default));
    assert_eq!(parse_quota(" "), Ok(QuotaSetting::Default));
    assert_eq!(parse_quota("Default"), Ok(QuotaSetting::Default));
    assert_eq!(parse_quota("1G"), Ok(QuotaSetting::Explicit(1 << 30)));
    assert_eq!(parse_quota("unlimited"), Ok(QuotaSetting::Unlimited));
    let err = parse_quota("lots").expect_err("not a size");
    assert!(err.ends_with(", \"unlimited\" or \"default\""), "{err}");
    for zero in ["0", "0M", " 0 "] {
        let err = parse_quota(zero).expect_err("a quota of 0 refuses all mail");
        assert!(err.contains("a quota of 0 would refuse all mail"), "{err}");
        assert!(err.contains("`unlimited`") && err.contains("`postern user block`"));
    }
}

// Regression: a stored quota of 0 showed as unlimited in `user show`, as "of 0" on the
// admin page, as 0 bytes in `stats`, and made the policy answer "Mailbox full" to all.
#[tokio::test]
async fn a_quota_of_0_from_an_older_version_is_unlimited_everywhere() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    login(&a, "zero@example.org", "zero quota pw").await;
    // Older versions stored what `user quota zero@example.org 0` asked for.
    assert!(a
        .store
        .set_quota("zero@example.org", QuotaMode::Explicit(0))
        .await
        .expect("db"));
    a.note_usage(
        "zero@example.org",
        UsageChange::Set {
            bytes: Some(5000),
            messages: Some(1),
        },
    )
    .await
    .expect("usage");

    let shown = a.user("zero@example.org").await.expect("account");
    assert_eq!(shown.quota.limit, None);
    assert_eq!(shown.quota.source, QuotaSource::Unlimited);
    assert_eq!(shown.quota.to_string(), "unlimited");
    assert!(
        shown.usage_text().ends_with("of unlimited"),
        "{}",
        shown.usage_text()
    );
    let entry = a
        .userdb("zero@example.org")
        .await
        .expect("db")
        .expect("entry");
    assert_eq!(entry.quota_bytes, None);
    let verdict = a
        .policy(PolicyRequest {
            protocol_state: "RCPT",
            recipient: "zero@example.org",
            size: 1000,
            ..PolicyRequest::default()
        })
        .await
        .expect("db");
    assert_eq!(verdict, PolicyVerdict::Dunno);
    let stats = a.stats(a.now()).await.expect("stats");
    assert_eq!(stats.unlimited_accounts, 1);
    assert_eq!(stats.quota_bytes, 0);
}

/// The account as the store holds it, hash included (what no view shows).
async fn stored_row(a: &Accounts, address: &str) -> AccountRow {
    a.store.account(address).await.expect("db").expect("stored")
}

fn from(ip: &str) -> LoginContext<'static> {
    LoginContext {
        service: "smtp",
        remote_ip: Some(ip.parse().expect("ip")),
        ..LoginContext::default()
    }
}

/// A closed-mode core with alice, argon2 checks counted, no cache, and slow mode scaled
/// down to 40 ms turns and a 1 s wait.
async fn guarded(max_failures: u32) -> (Fixture, Arc<Accounts>) {
    let mut f = Fixture::new(RegistrationMode::Closed);
    f.config.login.max_failures = max_failures;
    f.config.login.max_failures_per_ip = 1000;
    f.config.login.slow_interval_ms = 40;
    f.config.login.slow_wait_ms = 1000;
    f.config.argon2.cache_ttl = crate::config::Seconds(0);
    let a = f.accounts();
    a.add_user(
        &op(),
        NewUser {
            address: "alice@example.org".into(),
            password: Some(pw("right password")),
            quota: QuotaSetting::Default,
            admin: false,
            route: Route::Cli,
        },
    )
    .await
    .expect("add");
    (f, a)
}

// After `login.max_failures` guesses the whole account was refused without a check, so
// an owner whose cached login had expired was locked out for as long as guessing went on.
#[tokio::test]
async fn guessing_locked_the_owner_out_once_the_cache_expired() {
    let (_f, a) = guarded(3).await;
    for i in 0..12 {
        let r = a
            .login(
                "alice@example.org",
                &pw("wrong guess"),
                from(&format!("192.0.2.{i}")),
            )
            .await
            .expect("ok");
        assert_ne!(r, accepted("alice@example.org", false));
    }
    let r = a
        .login(
            "alice@example.org",
            &pw("right password"),
            from("198.51.100.9"),
        )
        .await
        .expect("ok");
    assert_eq!(r, accepted("alice@example.org", false));
}

#[tokio::test]
async fn a_client_over_its_failures_is_refused_without_argon2_others_are_not() {
    let (_f, a) = guarded(3).await;
    let guesser = from("192.0.2.1");
    for _ in 0..3 {
        let r = a
            .login("alice@example.org", &pw("wrong guess"), guesser)
            .await
            .expect("ok");
        assert_eq!(r, LoginOutcome::Refused(Refusal::BadPassword));
    }
    let before = a.argon2_verifications();
    for _ in 0..20 {
        let r = a
            .login("alice@example.org", &pw("right password"), guesser)
            .await
            .expect("ok");
        assert_eq!(r, LoginOutcome::Refused(Refusal::Throttled));
    }
    assert_eq!(a.argon2_verifications(), before, "throttled: no argon2");
    // One IPv6 /64 is one client; another client is not affected.
    let r = a
        .login(
            "alice@example.org",
            &pw("right password"),
            from("2001:db8::1"),
        )
        .await
        .expect("ok");
    assert_eq!(r, accepted("alice@example.org", false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_from_a_new_address_gets_in_while_50_addresses_guess() {
    let (_f, a) = guarded(10).await;
    // The owner logged in from home before: that client skips slow mode.
    let home = from("203.0.113.5");
    assert_eq!(
        a.login("alice@example.org", &pw("right password"), home)
            .await
            .expect("ok"),
        accepted("alice@example.org", false)
    );
    let start = a.argon2_verifications();
    let began = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut guessers = Vec::new();
    for i in 0..50 {
        let (a, stop) = (a.clone(), stop.clone());
        guessers.push(tokio::spawn(async move {
            let ctx = from(&format!("192.0.2.{}", i + 1));
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let r = a
                    .login("alice@example.org", &pw(&format!("guess {i} {n}")), ctx)
                    .await
                    .expect("ok");
                assert_ne!(r, accepted("alice@example.org", false));
                n += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }));
    }
    // Sustained: every guesser has had (or missed) its first turn as a fresh client.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    let owner = a
        .login(
            "alice@example.org",
            &pw("right password"),
            from("198.51.100.77"),
        )
        .await
        .expect("ok");
    assert_eq!(owner, accepted("alice@example.org", false));
    // Accepted, not Throttled: its turn came within the 1 s slow_wait (the owner goes
    // before every guesser). Wall-clock time here is this debug build's argon2 on a
    // busy host, so it is not asserted.
    let known = a
        .login("alice@example.org", &pw("right password"), home)
        .await
        .expect("ok");
    assert_eq!(known, accepted("alice@example.org", false));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    stop.store(true, Ordering::SeqCst);
    for g in guessers {
        g.await.expect("guesser");
    }
    // Documented bound: max_failures + 1 checks at once, then one per slow_interval
    // (plus the first turn), plus the owner's two logins.
    let elapsed_ms = u64::try_from(began.elapsed().as_millis()).expect("ms");
    let bound = 11 + elapsed_ms / 40 + 1 + 2;
    let done = a.argon2_verifications() - start;
    assert!(done <= bound, "{done} argon2 checks, bound {bound}");
    assert!(done >= 11, "guessing was checked at all: {done}");
}

#[tokio::test]
async fn every_refusal_costs_one_argon2_check_and_throttled_none() {
    let (_f, a) = guarded(2).await;
    a.block_user(&op(), "alice@example.org", None)
        .await
        .expect("block");
    a.add_user(
        &op(),
        NewUser {
            address: "bob@example.org".into(),
            password: Some(pw("bobs password")),
            quota: QuotaSetting::Default,
            admin: true,
            route: Route::Cli,
        },
    )
    .await
    .expect("add");
    a.blocklist_add(&op(), "gone@example.org", None)
        .await
        .expect("block");
    let cost = |user: &'static str, p: &'static str, ip: &'static str| {
        let a = a.clone();
        async move {
            let before = a.argon2_verifications();
            let r = a.login(user, &pw(p), from(ip)).await.expect("ok");
            (r, a.argon2_verifications() - before)
        }
    };
    let refused = |why| LoginOutcome::Refused(why);
    // Closed mode: an unknown address, a blocked account, an address on the blocklist,
    // a name that does not parse, an empty and a wrong password.
    assert_eq!(
        cost("nobody@example.org", "long enough pw", "192.0.2.1").await,
        (refused(Refusal::Unknown), 1)
    );
    assert_eq!(
        cost("alice@example.org", "right password", "192.0.2.2").await,
        (refused(Refusal::Blocked), 1)
    );
    assert_eq!(
        cost("gone@example.org", "long enough pw", "192.0.2.3").await,
        (refused(Refusal::Unknown), 1)
    );
    assert_eq!(
        cost("not an address", "long enough pw", "192.0.2.4").await,
        (refused(Refusal::Unknown), 1)
    );
    assert_eq!(
        cost("bob@example.org", "", "192.0.2.5").await,
        (refused(Refusal::BadPassword), 1)
    );
    assert_eq!(
        cost("bob@example.org", "wrong guess", "192.0.2.6").await,
        (refused(Refusal::BadPassword), 1)
    );
    // Throttled: no check at all.
    cost("bob@example.org", "wrong guess", "192.0.2.6").await;
    assert_eq!(
        cost("bob@example.org", "wrong guess", "192.0.2.6").await,
        (refused(Refusal::Throttled), 0)
    );
    // Open mode: a name the rules refuse, and the address on the blocklist.
    a.set_registration_mode(&op(), Some(RegistrationMode::Open))
        .await
        .expect("mode");
    assert_eq!(
        cost("postmaster@example.org", "long enough pw", "192.0.2.7").await,
        (refused(Refusal::Invalid), 1)
    );
    assert_eq!(
        cost("short@example.org", "short", "192.0.2.8").await,
        (refused(Refusal::Invalid), 1)
    );
    // The admin page's sign-in: unknown, and not an administrator.
    let before = a.argon2_verifications();
    let r = a
        .admin_sign_in(
            "nobody@example.org",
            &pw("long enough pw"),
            from("192.0.2.9"),
        )
        .await
        .expect("ok");
    assert_eq!(
        (r, a.argon2_verifications() - before),
        (AdminSignIn::Refused(Refusal::Unknown), 1)
    );
}

// One client created 300 accounts in seconds over SMTP AUTH: just-in-time creation had no
// limit per client, while /new allowed 10 a minute.
#[tokio::test]
async fn jit_creations_from_one_client_were_unlimited() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.registration.jit_per_minute = 3;
    let a = f.accounts();
    let client = from("192.0.2.50");
    for i in 0..3 {
        let r = a
            .login(
                &format!("new{i}@example.org"),
                &pw("long enough pw"),
                client,
            )
            .await
            .expect("ok");
        assert_eq!(r, accepted(&format!("new{i}@example.org"), true));
    }
    let r = a
        .login("new3@example.org", &pw("long enough pw"), client)
        .await
        .expect("ok");
    assert_eq!(r, LoginOutcome::Refused(Refusal::Throttled));
    assert!(a.user("new3@example.org").await.is_err());
    // Another client may still create; an existing account still logs in.
    let r = a
        .login(
            "other@example.org",
            &pw("long enough pw"),
            from("198.51.100.50"),
        )
        .await
        .expect("ok");
    assert_eq!(r, accepted("other@example.org", true));
    let r = a
        .login("new0@example.org", &pw("long enough pw"), client)
        .await
        .expect("ok");
    assert_eq!(r, accepted("new0@example.org", false));
}

#[tokio::test]
async fn max_new_per_hour_caps_every_route_but_the_operator() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.registration.max_new_per_hour = 2;
    let a = f.accounts();
    assert_eq!(
        login(&a, "one@example.org", "long enough pw").await,
        accepted("one@example.org", true)
    );
    a.register(RegisterRequest::default())
        .await
        .expect("second");
    assert!(matches!(
        a.register(RegisterRequest::default()).await,
        Err(RegisterError::Limited)
    ));
    assert_eq!(
        login(&a, "three@example.org", "long enough pw").await,
        LoginOutcome::Refused(Refusal::Throttled)
    );
    // The dict route (no client IP) is capped too; the operator is not.
    assert!(a.user("three@example.org").await.is_err());
    add_admin(&a, "boss@example.org", "boss password").await;
}

// `token create --expires 0s` made an invite that was dead on arrival.
#[tokio::test]
async fn zero_expiry_made_a_dead_invite() {
    let f = Fixture::new(RegistrationMode::InviteOnly);
    let a = f.accounts();
    let r = a
        .create_token(&op(), 1, Some(crate::config::Seconds(0)), None)
        .await;
    assert!(matches!(r, Err(AdminError::DeadInvite)), "{r:?}");
    assert!(a.tokens().await.expect("tokens").is_empty());
}

// `import chatmail` skipped the username rules: `postmaster` and `x%y` were imported.
#[tokio::test]
async fn import_skipped_the_username_rules() {
    let f = Fixture::new(RegistrationMode::InviteOnly);
    let a = f.accounts();
    let hash = a.hasher.hash_blocking(&pw("imported pw"));
    let imported = |address: &str| maintenance::Imported {
        address: address.into(),
        password_hash: hash.clone(),
    };
    let report = a
        .import(
            &op(),
            vec![
                imported("postmaster@example.org"),
                imported("x%y@example.org"),
                imported("fine@example.org"),
            ],
        )
        .await
        .expect("import");
    assert_eq!(report.imported, 1);
    let skipped: Vec<&str> = report.skipped.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(skipped, ["postmaster@example.org", "x%y@example.org"]);
    assert!(a.user("postmaster@example.org").await.is_err());
    assert!(a.user("x%y@example.org").await.is_err());
}

#[tokio::test]
async fn anonymous_signup_and_jit_on_a_fresh_open_server_make_no_admin() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    let web = a
        .register(RegisterRequest::default())
        .await
        .expect("sign-up");
    login(&a, "first@example.org", "long enough pw").await;
    assert!(!a.user(&web.address).await.expect("exists").admin);
    assert!(!a.user("first@example.org").await.expect("exists").admin);
}

#[tokio::test]
async fn setup_invite_makes_the_admin_once_and_is_gone_after() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new(RegistrationMode::Closed);
    if f.config.database.url.is_some() {
        // The setup invite's file lives beside the SQLite database only.
        return;
    }
    let a = f.accounts();
    let code = a
        .ensure_setup_invite()
        .await
        .expect("ok")
        .expect("no admin yet");
    let file = f
        .config
        .database
        .sqlite_path()
        .parent()
        .expect("dir")
        .join(register::SETUP_INVITE_FILE);
    let mode = std::fs::metadata(&file).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Reused while unused.
    assert_eq!(
        a.ensure_setup_invite().await.expect("ok"),
        Some(code.clone())
    );
    let admin = a
        .register(RegisterRequest {
            username: Some("boss".into()),
            token: Some(code.clone()),
            ..RegisterRequest::default()
        })
        .await
        .expect("setup sign-up, even in closed mode");
    assert!(a.user(&admin.address).await.expect("exists").admin);
    assert!(!file.exists(), "the file is removed");
    let again = a
        .register(RegisterRequest {
            token: Some(code),
            ..RegisterRequest::default()
        })
        .await;
    assert!(again.is_err(), "dead afterwards");
    // An administrator exists: no setup invite.
    assert_eq!(a.ensure_setup_invite().await.expect("ok"), None);
    assert!(!file.exists());
}

/// Fresh-address guesses at alice, alternating over `hosts`, with slow mode's turns an
/// hour apart: how many were checked (refused as a bad password) before the throttle.
async fn checked_guesses(hosts: &[&Accounts], user: &str, guesses: usize) -> usize {
    let mut checked = 0;
    for i in 0..guesses {
        let host = hosts[i % hosts.len()];
        let r = host
            .login(
                user,
                &pw("wrong guess"),
                from(&format!("192.0.2.{}", i + 1)),
            )
            .await
            .expect("ok");
        match r {
            LoginOutcome::Refused(Refusal::BadPassword) => checked += 1,
            LoginOutcome::Refused(Refusal::Throttled) => {}
            other => panic!("guess {i}: {other:?}"),
        }
    }
    checked
}

#[tokio::test]
async fn guesses_spread_over_two_hosts_count_against_one_account_limit_when_shared() {
    let (mut f, one) = guarded(3).await;
    f.config.login.slow_interval_ms = 3_600_000;
    f.config.login.slow_wait_ms = 100;
    one.replace_config(f.config.clone());
    for user in ["bob@example.org", "carol@example.org"] {
        one.add_user(
            &op(),
            NewUser {
                address: user.into(),
                password: Some(pw("right password")),
                quota: QuotaSetting::Default,
                admin: false,
                route: Route::Cli,
            },
        )
        .await
        .expect("add");
    }
    // One host: max_failures + 1 checks at full speed, then slow mode's first turn.
    assert_eq!(checked_guesses(&[&one], "bob@example.org", 12).await, 5);
    let (a, b) = (f.accounts(), f.accounts());
    let spread = checked_guesses(&[&a, &b], "carol@example.org", 12).await;
    if a.store.shared_by_hosts() {
        assert_eq!(spread, 5, "the same total as on one host");
        assert_eq!(
            a.store
                .login_failures("carol@example.org", super::shared::now_ms_for_tests())
                .await
                .expect("db"),
            5
        );
    } else {
        assert_eq!(spread, 10, "one host per process: each counts its own");
    }
}

#[tokio::test]
async fn messages_spread_over_two_hosts_share_one_send_rate_when_shared() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.policy.send_burst = 3;
    f.config.policy.send_per_minute = 1;
    let (a, b) = (f.accounts(), f.accounts());
    login(&a, "alice@example.org", "policy password").await;
    async fn send(host: &Accounts, instance: &str, rcpt: &str) -> PolicyVerdict {
        let req = PolicyRequest {
            protocol_state: "RCPT",
            recipient: rcpt,
            sasl_username: "alice@example.org",
            size: 0,
            instance,
        };
        host.policy(req).await.expect("policy")
    }
    let mut passed = 0;
    for i in 0..8 {
        let host = if i % 2 == 0 { &a } else { &b };
        let instance = format!("m{i}");
        let v = send(host, &instance, "friend@elsewhere.net").await;
        if v == PolicyVerdict::Dunno {
            passed += 1;
            // Another recipient of the same message costs nothing.
            assert_eq!(
                send(host, &instance, "other@elsewhere.net").await,
                PolicyVerdict::Dunno
            );
        } else {
            assert_eq!(v, PolicyVerdict::SenderRateLimited);
        }
    }
    let expected = if a.store.shared_by_hosts() { 3 } else { 6 };
    assert_eq!(passed, expected);
}

#[tokio::test]
async fn a_good_login_writes_no_limit_and_a_refused_one_counts_only_when_shared() {
    let (_f, a) = guarded(3).await;
    let rows = || a.store.prune_limits(i64::MAX / 2, 0);
    // Not cached (the fixture keeps no cache): read, checked, accepted; nothing written.
    for _ in 0..3 {
        let r = a
            .login(
                "alice@example.org",
                &pw("right password"),
                from("192.0.2.1"),
            )
            .await
            .expect("ok");
        assert_eq!(r, accepted("alice@example.org", false));
    }
    assert_eq!(rows().await.expect("db"), 0);
    let r = a
        .login("alice@example.org", &pw("wrong guess"), from("192.0.2.1"))
        .await
        .expect("ok");
    assert_eq!(r, LoginOutcome::Refused(Refusal::BadPassword));
    let expected = u64::from(a.store.shared_by_hosts());
    assert_eq!(rows().await.expect("db"), expected);
}

/// The audit trail oldest first, as (actor, action, target, old, new).
async fn trail(a: &Accounts) -> Vec<(String, String, String, String, String)> {
    let mut rows = a
        .audit_trail(AuditQuery::default())
        .await
        .expect("audit trail");
    rows.reverse();
    rows.into_iter()
        .map(|e| {
            (
                format!("{}:{}", e.actor, e.actor_name),
                e.action,
                e.target.unwrap_or_default(),
                e.old.unwrap_or_default(),
                e.new.unwrap_or_default(),
            )
        })
        .collect()
}

fn row(
    actor: &str,
    action: &str,
    target: &str,
    old: &str,
    new: &str,
) -> (String, String, String, String, String) {
    (
        actor.into(),
        action.into(),
        target.into(),
        old.into(),
        new.into(),
    )
}

#[tokio::test]
async fn every_operator_action_is_audited_once_with_old_and_new_values_and_no_secret() {
    let mut f = Fixture::new(RegistrationMode::InviteOnly);
    f.config.registration.first_account_is_admin = false;
    let a = f.accounts();
    let cli = op();
    let boss = Actor::Admin {
        address: "boss@example.org".into(),
    };
    let alice = "alice@example.org";
    a.add_user(
        &cli,
        NewUser {
            address: "Alice@Example.org".into(),
            password: Some(pw("alice first password")),
            quota: QuotaSetting::Explicit(500 << 20),
            admin: false,
            route: Route::Cli,
        },
    )
    .await
    .expect("add");
    a.set_password(&boss, alice, Some(pw("alice second password")))
        .await
        .expect("passwd");
    let (_, generated) = a.set_password(&cli, alice, None).await.expect("passwd");
    let generated = generated.expect("a generated password");
    for _ in 0..2 {
        a.set_user_quota(&cli, alice, QuotaSetting::Explicit(1 << 30))
            .await
            .expect("quota");
        a.set_user_admin(&boss, alice, true).await.expect("admin");
        a.block_user(&boss, alice, Some("spam".into()))
            .await
            .expect("block");
    }
    // A new reason is a change; no reason keeps the old one and is none.
    a.block_user(&boss, alice, Some("abuse".into()))
        .await
        .expect("block");
    a.block_user(&boss, alice, None).await.expect("block");
    for _ in 0..2 {
        a.unblock_user(&cli, alice).await.expect("unblock");
    }
    a.blocklist_add(&cli, "eve@example.org", None)
        .await
        .expect("blocklist");
    for _ in 0..2 {
        a.blocklist_remove(&cli, "eve@example.org")
            .await
            .expect("blocklist");
    }
    let (invite, code) = a
        .create_token(&boss, 2, None, Some("for Dave".into()))
        .await
        .expect("invite");
    // Revoked by its code: only the id is recorded.
    a.revoke_token(&boss, &code).await.expect("revoke");
    a.revoke_token(&boss, &code).await.expect("revoke again");
    for _ in 0..2 {
        a.set_registration_mode(&cli, Some(RegistrationMode::Open))
            .await
            .expect("mode");
    }
    a.set_registration_mode(&cli, None).await.expect("mode");
    a.delete_user(&boss, alice, true, false)
        .await
        .expect("delete");
    let hash = a.hasher.hash_blocking(&pw("imported pw"));
    a.import(
        &cli,
        vec![maintenance::Imported {
            address: "carol@example.org".into(),
            password_hash: hash,
        }],
    )
    .await
    .expect("import");
    // Nothing imported: nothing changed.
    a.import(&cli, Vec::new()).await.expect("import");

    let invite_target = format!("invite:{}", invite.id);
    let (c, b) = ("cli:root", "admin:boss@example.org");
    assert_eq!(
        trail(&a).await,
        vec![
            row(c, "account_add", alice, "", "quota=500M admin=no"),
            row(b, "password_change", alice, "", "changed"),
            row(c, "password_change", alice, "", "generated"),
            row(c, "quota_change", alice, "500M", "1G"),
            row(b, "admin_flag", alice, "no", "yes"),
            row(b, "account_block", alice, "not blocked", "blocked: spam"),
            row(b, "account_block", alice, "blocked: spam", "blocked: abuse"),
            row(c, "account_unblock", alice, "blocked: abuse", "not blocked"),
            row(
                c,
                "blocklist_add",
                "eve@example.org",
                "not blocked",
                "blocked"
            ),
            row(
                c,
                "blocklist_remove",
                "eve@example.org",
                "blocked",
                "not blocked"
            ),
            row(
                b,
                "invite_create",
                &invite_target,
                "",
                "uses=2 expires=never comment=for Dave"
            ),
            row(
                b,
                "invite_revoke",
                &invite_target,
                "status=active comment=for Dave",
                "status=revoked"
            ),
            row(
                c,
                "registration_mode",
                "registration",
                "configured (invite_only)",
                "open"
            ),
            row(
                c,
                "registration_mode",
                "registration",
                "open",
                "configured (invite_only)"
            ),
            row(
                b,
                "account_delete",
                alice,
                "account admin=yes",
                "mail=kept address=blocked"
            ),
            row(c, "import", "", "", "imported=1 skipped=0"),
        ]
    );
    let everything = format!("{:?}", a.audit_trail(AuditQuery::default()).await);
    for secret in [
        "alice first password",
        "alice second password",
        generated.expose(),
        code.as_str(),
    ] {
        assert!(!everything.contains(secret), "a secret in the trail");
    }

    // Filters: an address (as typed, canonicalized), the time, paging.
    let about = a
        .audit_trail(AuditQuery {
            address: Some(" EVE@example.org ".into()),
            ..AuditQuery::default()
        })
        .await
        .expect("filter");
    assert_eq!(
        about.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["blocklist_remove", "blocklist_add"]
    );
    let by_boss = a
        .audit_trail(AuditQuery {
            address: Some("boss@example.org".into()),
            limit: 2,
            offset: 1,
            ..AuditQuery::default()
        })
        .await
        .expect("filter");
    assert_eq!(
        by_boss
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["invite_revoke", "invite_create"]
    );
    let future = a
        .audit_trail(AuditQuery {
            since: Some(a.now() + 1),
            ..AuditQuery::default()
        })
        .await
        .expect("filter");
    assert!(future.is_empty());
    assert!(matches!(
        a.audit_trail(AuditQuery {
            address: Some("x@elsewhere.org".into()),
            ..AuditQuery::default()
        })
        .await,
        Err(AdminError::Address(_))
    ));
}

#[tokio::test]
async fn maintenance_records_its_deletions_and_purges_as_maintenance() {
    use crate::config::Seconds;
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.maintenance.delete_inactive_after = Some(Seconds(90 * 86400));
    let a = f.accounts();
    let home = with_mail(&a, "old@example.org").await;
    let (revoked, _) = a.create_token(&op(), 1, None, None).await.expect("invite");
    a.revoke_token(&op(), &revoked.id.to_string())
        .await
        .expect("revoke");
    let before = trail(&a).await.len();
    let later = a.now() + 91 * 86400;
    let timer = Actor::Maintenance {
        unix_user: "root".into(),
    };
    a.run_maintenance(&timer, later, true, &OwnRights)
        .await
        .expect("dry run");
    assert_eq!(trail(&a).await.len(), before, "a dry run records nothing");
    a.run_maintenance(&timer, later, false, &OwnRights)
        .await
        .expect("run");
    let m = "maintenance:root";
    assert_eq!(
        trail(&a).await[before..],
        [
            row(
                m,
                "account_delete",
                "old@example.org",
                "account",
                "why=inactive mail=queued address=blocked"
            ),
            row(
                m,
                "mail_home_remove",
                "old@example.org",
                &home.to_string_lossy(),
                "removed"
            ),
            row(
                m,
                "invite_purge",
                "",
                &format!("invites={}", revoked.id),
                "deleted=1"
            ),
        ]
    );
}

// The change stands, and is reported, when its audit record cannot be written.
#[tokio::test]
async fn an_unwritable_audit_record_neither_undoes_nor_fails_the_change() {
    let f = Fixture::new(RegistrationMode::InviteOnly);
    let a = f.accounts();
    a.blocklist_add(&op(), "eve@example.org", None)
        .await
        .expect("block");
    let drop = "DROP TABLE audit_log";
    match &f.config.database.url {
        Some(url) => {
            let name = url
                .split_once(":///")
                .and_then(|(_, rest)| rest.split('?').next())
                .expect("a database name");
            crate::store::test_pg::PgServer::shared().psql(name, drop);
        }
        None => rusqlite::Connection::open(f.config.database.sqlite_path())
            .expect("open")
            .execute_batch(drop)
            .expect("drop"),
    }
    let (_, removed) = a
        .blocklist_remove(&op(), "eve@example.org")
        .await
        .expect("the change is reported");
    assert!(removed);
    assert!(a.blocklist().await.expect("db").is_empty());
    assert!(a.audit_trail(AuditQuery::default()).await.is_err());
}

// ----- the owner's self-service (owner.rs) ------------------------------------------

fn owner_ctx() -> LoginContext<'static> {
    LoginContext {
        service: "account",
        remote_ip: Some("198.51.100.7".parse().expect("ip")),
        via: LoginVia::Account,
    }
}

#[tokio::test]
async fn owner_sign_in_never_creates_and_counts_failures_like_every_login() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.login.max_failures = 3;
    let a = f.accounts();
    let r = a
        .owner_sign_in("new@example.org", &pw("long enough pw"), owner_ctx())
        .await;
    assert!(matches!(r, Err(OwnerError::Credentials)), "{r:?}");
    assert!(a.users(false, None).await.expect("db").is_empty());
    login(&a, "alice@example.org", "long enough pw").await;
    let ok = a
        .owner_sign_in(" Alice@Example.org", &pw("long enough pw"), owner_ctx())
        .await
        .expect("signed in");
    assert_eq!(ok.address.as_str(), "alice@example.org");
    assert!(a
        .owner_account("alice@example.org", &ok.tag)
        .await
        .expect("db")
        .is_some());
    // Another password (set by the operator here) ends what the old tag opened.
    a.set_password(&op(), "alice@example.org", Some(pw("long enough pw")))
        .await
        .expect("same password, new hash");
    assert_eq!(
        a.owner_account("alice@example.org", &ok.tag)
            .await
            .expect("db"),
        None
    );
    for _ in 0..3 {
        let r = a
            .owner_sign_in("alice@example.org", &pw("wrong guess"), owner_ctx())
            .await;
        assert!(matches!(r, Err(OwnerError::Credentials)), "{r:?}");
    }
    let r = a
        .owner_sign_in("alice@example.org", &pw("another guess"), owner_ctx())
        .await;
    assert!(matches!(r, Err(OwnerError::Throttled)), "{r:?}");
}

#[tokio::test]
async fn own_password_change_refuses_a_cached_old_password_at_once() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    login(&a, "alice@example.org", "old password").await;
    // Cached: the second login costs no argon2 check.
    let before = a.argon2_verifications();
    login(&a, "alice@example.org", "old password").await;
    assert_eq!(a.argon2_verifications(), before);

    let r = a
        .change_own_password(
            "alice@example.org",
            &pw("old password"),
            &pw("short"),
            owner_ctx(),
        )
        .await;
    assert!(matches!(&r, Err(OwnerError::Password(_))), "{r:?}");
    assert_eq!(
        r.err().map(|e| e.to_string()),
        Some("the password must be at least 9 characters long".into())
    );
    let r = a
        .change_own_password(
            "alice@example.org",
            &pw("wrong password"),
            &pw("new password"),
            owner_ctx(),
        )
        .await;
    assert!(matches!(r, Err(OwnerError::Credentials)), "{r:?}");
    assert_eq!(
        login(&a, "alice@example.org", "new password").await,
        LoginOutcome::Refused(Refusal::BadPassword)
    );

    let changed = a
        .change_own_password(
            "alice@example.org",
            &pw("old password"),
            &pw("new password"),
            owner_ctx(),
        )
        .await
        .expect("changed");
    assert_eq!(changed.address.as_str(), "alice@example.org");
    assert!(a
        .owner_account("alice@example.org", &changed.tag)
        .await
        .expect("db")
        .is_some());
    assert_eq!(
        login(&a, "alice@example.org", "old password").await,
        LoginOutcome::Refused(Refusal::BadPassword)
    );
    assert_eq!(
        login(&a, "alice@example.org", "new password").await,
        accepted("alice@example.org", false)
    );
    // The audit trail names the owner as the actor, never the password.
    let trail = a
        .audit_trail(AuditQuery::default())
        .await
        .expect("audit trail");
    let entry = trail
        .iter()
        .find(|e| e.action == "password_change")
        .expect("recorded");
    assert_eq!(
        (entry.actor.as_str(), entry.actor_name.as_str()),
        ("owner", "alice@example.org")
    );
    assert_eq!(entry.new.as_deref(), Some("changed"));
}

#[tokio::test]
async fn own_delete_goes_the_operators_way_and_reuse_follows_the_configuration() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    let home = with_mail(&a, "alice@example.org").await;
    let r = a
        .delete_own_account("alice@example.org", &pw("wrong password"), owner_ctx())
        .await;
    assert!(matches!(r, Err(OwnerError::Credentials)), "{r:?}");
    let deleted = a
        .delete_own_account("alice@example.org", &pw("long enough pw"), owner_ctx())
        .await
        .expect("deleted");
    assert_eq!(deleted.mail_queued.as_deref(), Some(home.as_path()));
    assert!(deleted.still_blocked);
    assert_eq!(a.queued_home_count().await.expect("db"), 1);
    assert_eq!(
        login(&a, "alice@example.org", "long enough pw").await,
        LoginOutcome::Refused(Refusal::Blocked)
    );
    let again = a
        .register(RegisterRequest {
            username: Some("alice".into()),
            password: Some(pw("long enough pw")),
            ..RegisterRequest::default()
        })
        .await;
    assert!(matches!(again, Err(RegisterError::Taken)), "{again:?}");

    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.self_service.allow_reuse = true;
    let a = f.accounts();
    login(&a, "bob@example.org", "long enough pw").await;
    let deleted = a
        .delete_own_account("bob@example.org", &pw("long enough pw"), owner_ctx())
        .await
        .expect("deleted");
    assert!(!deleted.still_blocked);
    assert_eq!(
        login(&a, "bob@example.org", "long enough pw").await,
        accepted("bob@example.org", true)
    );
}

#[tokio::test]
async fn self_service_switched_off_refuses_everything() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.self_service.enabled = false;
    let a = f.accounts();
    login(&a, "alice@example.org", "long enough pw").await;
    let p = pw("long enough pw");
    assert!(matches!(
        a.owner_sign_in("alice@example.org", &p, owner_ctx()).await,
        Err(OwnerError::Disabled)
    ));
    assert!(matches!(
        a.change_own_password("alice@example.org", &p, &pw("new password"), owner_ctx())
            .await,
        Err(OwnerError::Disabled)
    ));
    assert!(matches!(
        a.delete_own_account("alice@example.org", &p, owner_ctx())
            .await,
        Err(OwnerError::Disabled)
    ));
    assert!(a.user("alice@example.org").await.is_ok());
    assert!(a.confirms_address("alice@example.org", " ALICE@example.org"));
    assert!(!a.confirms_address("alice@example.org", "alice"));
}

// ----- the sign-up guard (capacity.rs) ----------------------------------------------

fn full_disk(_: &std::path::Path) -> capacity::Reading {
    capacity::Reading {
        free_disk: Ok(10 << 20),
        load_1m: Ok(0.5),
    }
}

fn busy_machine(_: &std::path::Path) -> capacity::Reading {
    capacity::Reading {
        free_disk: Ok(100 << 30),
        load_1m: Ok(12.0),
    }
}

fn healthy(_: &std::path::Path) -> capacity::Reading {
    capacity::Reading {
        free_disk: Ok(100 << 30),
        load_1m: Ok(0.5),
    }
}

#[tokio::test]
async fn the_signup_guard_pauses_every_route_but_not_existing_accounts() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.registration.max_load_1m = Some(5.0);
    let a = f.accounts();
    a.capacity.set_probe(healthy);
    login(&a, "alice@example.org", "long enough pw").await;
    let code = a
        .create_token(&op(), 5, None, None)
        .await
        .expect("invite")
        .1;
    for probe in [full_disk as capacity::Probe, busy_machine] {
        a.capacity.set_probe(probe);
        let jit = a
            .login("bob@example.org", &pw("long enough pw"), owner_ctx())
            .await;
        assert!(matches!(jit, Err(Unavailable::Paused(_))), "{jit:?}");
        for token in [None, Some(code.clone())] {
            let r = a
                .register(RegisterRequest {
                    username: Some("carol".into()),
                    token,
                    ..RegisterRequest::default()
                })
                .await;
            assert!(matches!(r, Err(RegisterError::Paused(_))), "{r:?}");
            assert_eq!(
                r.err().map(|e| e.to_string()),
                Some("registration is temporarily unavailable".into())
            );
        }
        assert_eq!(
            login(&a, "alice@example.org", "long enough pw").await,
            accepted("alice@example.org", false)
        );
    }
    assert_eq!(
        a.users(false, None)
            .await
            .expect("db")
            .iter()
            .map(|u| u.address.to_string())
            .collect::<Vec<_>>(),
        vec!["alice@example.org"]
    );
    a.capacity.set_probe(healthy);
    assert_eq!(
        login(&a, "bob@example.org", "long enough pw").await,
        accepted("bob@example.org", true)
    );
    // The operator still creates accounts while sign-ups are paused.
    a.capacity.set_probe(full_disk);
    a.add_user(
        &op(),
        NewUser {
            address: "dave@example.org".into(),
            password: Some(pw("long enough pw")),
            quota: QuotaSetting::Default,
            admin: false,
            route: Route::Cli,
        },
    )
    .await
    .expect("the operator is not paused");
}

#[tokio::test]
async fn the_signup_guard_switched_off_reads_nothing() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.registration.min_free_disk = crate::config::Size(0);
    f.config.registration.max_load_1m = None;
    let a = f.accounts();
    a.capacity.set_probe(full_disk);
    assert_eq!(a.check_capacity(), Ok(()));
    // The default: 1G free; 10M is not enough.
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    a.capacity.set_probe(full_disk);
    assert!(matches!(
        a.check_capacity(),
        Err(Paused {
            why: capacity::PauseReason::Disk { free, min: 1073741824 }
        }) if free == 10 << 20
    ));
    a.capacity.set_probe(busy_machine);
    assert_eq!(a.check_capacity(), Ok(()), "no load limit by default");
}

// ----- invites on the sign-up page ---------------------------------------------------

#[tokio::test]
async fn check_invite_tells_each_reason_and_the_uses_left() {
    let f = Fixture::new(RegistrationMode::InviteOnly);
    let a = f.accounts();
    assert_eq!(
        a.check_invite("no-such-code").await.expect("db"),
        InviteCheck::Dead(TokenProblem::Unknown)
    );
    let (_, live) = a.create_token(&op(), 3, None, None).await.expect("invite");
    assert_eq!(
        a.check_invite(&live).await.expect("db"),
        InviteCheck::Live { uses_left: 3 }
    );
    a.register(RegisterRequest {
        token: Some(live.clone()),
        ..RegisterRequest::default()
    })
    .await
    .expect("used once");
    assert_eq!(
        a.check_invite(&format!(" {live} ")).await.expect("db"),
        InviteCheck::Live { uses_left: 2 }
    );
    let (_, once) = a.create_token(&op(), 1, None, None).await.expect("invite");
    a.register(RegisterRequest {
        token: Some(once.clone()),
        ..RegisterRequest::default()
    })
    .await
    .expect("used");
    assert_eq!(
        a.check_invite(&once).await.expect("db"),
        InviteCheck::Dead(TokenProblem::UsedUp)
    );
    let (_, soon) = a
        .create_token(&op(), 1, Some(crate::config::Seconds(60)), None)
        .await
        .expect("invite");
    f.clock.fetch_add(61, Ordering::SeqCst);
    assert_eq!(
        a.check_invite(&soon).await.expect("db"),
        InviteCheck::Dead(TokenProblem::Expired)
    );
    let (_, revoked) = a.create_token(&op(), 1, None, None).await.expect("invite");
    a.revoke_token(&op(), &revoked).await.expect("revoke");
    assert_eq!(
        a.check_invite(&revoked).await.expect("db"),
        InviteCheck::Dead(TokenProblem::Revoked)
    );
    assert_eq!(
        InviteCheck::Dead(TokenProblem::Revoked).problem_text(),
        Some("this invite code has been revoked.".into())
    );
}

// Dovecot's mail processes could not reach the dict socket: logins worked, last_login
// and quota_clone writes were lost, and nothing in postern's log said so.
#[tokio::test]
async fn logins_without_dict_writes_for_half_an_hour_warn_once_an_hour() {
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.listen.dict = Some(f._dir.path().join("dict.sock"));
    let a = f.accounts();
    let start = f.clock.load(Ordering::SeqCst);
    let at = |minutes: i64| f.clock.store(start + minutes * 60, Ordering::SeqCst);
    let mail_login = |a: Arc<Accounts>, service: &'static str| async move {
        let ctx = LoginContext {
            service,
            remote_ip: None,
            via: LoginVia::Dict,
        };
        a.login("alice@example.org", &pw("first password"), ctx)
            .await
            .expect("no temporary failure")
    };
    assert_eq!(
        mail_login(a.clone(), "imap").await,
        accepted("alice@example.org", true)
    );
    at(29);
    mail_login(a.clone(), "imap").await;
    assert_eq!(a.dict_watch.warnings(), 0);
    // SMTP AUTH logins make Dovecot write nothing: they do not count.
    at(31);
    mail_login(a.clone(), "smtp").await;
    assert_eq!(a.dict_watch.warnings(), 0);
    // A failed login does not count either.
    login(&a, "alice@example.org", "wrong password").await;
    assert_eq!(a.dict_watch.warnings(), 0);
    mail_login(a.clone(), "imap").await;
    assert_eq!(a.dict_watch.warnings(), 1);
    at(90);
    mail_login(a.clone(), "imap").await;
    assert_eq!(a.dict_watch.warnings(), 1, "at most once an hour");
    at(91);
    mail_login(a.clone(), "dovecot").await;
    assert_eq!(a.dict_watch.warnings(), 2);
    // A last_login write starts the count again.
    assert!(a
        .note_last_login("alice@example.org", start)
        .await
        .expect("write"));
    at(200);
    mail_login(a.clone(), "imap").await;
    at(229);
    mail_login(a.clone(), "imap").await;
    assert_eq!(a.dict_watch.warnings(), 2);
    // A usage write too.
    a.note_usage(
        "alice@example.org",
        UsageChange::Add {
            bytes: 1,
            messages: 1,
        },
    )
    .await
    .expect("write");
    at(300);
    mail_login(a.clone(), "imap").await;
    assert_eq!(a.dict_watch.warnings(), 2);

    // Without a dict listener there are no dict writes to miss.
    let mut f = Fixture::new(RegistrationMode::Open);
    f.config.listen.dict = None;
    let b = f.accounts();
    for minutes in [0, 60, 120] {
        f.clock.store(start + minutes * 60, Ordering::SeqCst);
        mail_login(b.clone(), "imap").await;
    }
    assert_eq!(b.dict_watch.warnings(), 0);
}

#[tokio::test]
async fn a_temporary_account_is_deleted_by_maintenance_once_past_its_lifetime() {
    use crate::config::Seconds;
    let f = Fixture::new(RegistrationMode::InviteOnly);
    let a = f.accounts();
    add_admin(&a, "boss@example.org", "long enough pw").await;
    let (invite, code) = a
        .create_invite(
            &op(),
            2,
            None,
            Some(Seconds(7 * 86400)),
            Some("workshop".into()),
        )
        .await
        .expect("invite");
    assert_eq!(invite.account_lifetime, Some(7 * 86400));
    assert!(matches!(
        a.create_invite(&op(), 1, None, Some(Seconds(0)), None)
            .await,
        Err(AdminError::NoLifetime)
    ));
    let t0 = a.now();
    let temp = a
        .register(RegisterRequest {
            username: Some("temp".into()),
            password: Some(pw("long enough pw")),
            token: Some(code.clone()),
        })
        .await
        .expect("registered");
    let home = a
        .userdb(&temp.address)
        .await
        .expect("db")
        .expect("entry")
        .home;
    std::fs::create_dir_all(home.join("Maildir/new")).expect("mkdir");
    assert_eq!(
        a.user(&temp.address).await.expect("user").expires_at,
        Some(t0 + 7 * 86400)
    );
    // The invite shows what it made, and what it can still make.
    let shown = a
        .token_detail(&invite.id.to_string())
        .await
        .expect("detail");
    assert_eq!(
        shown
            .accounts
            .iter()
            .map(|(addr, at)| (addr.as_str(), *at))
            .collect::<Vec<_>>(),
        vec![("temp@example.org", t0)]
    );
    assert_eq!(shown.invite.remaining_uses(), 1);
    assert_eq!(
        a.token_detail(&code).await.expect("by code").invite.id,
        invite.id
    );
    assert!(matches!(
        a.token_detail("999").await,
        Err(AdminError::NoToken(_))
    ));

    // A second before its end it is not due; at its end the dry run lists it and the
    // run deletes exactly what the dry run listed.
    let early = a
        .run_maintenance(&op(), t0 + 7 * 86400 - 1, true, &OwnRights)
        .await
        .expect("dry run");
    assert!(early.accounts.is_empty(), "{early:?}");
    f.clock.store(t0 + 7 * 86400, Ordering::SeqCst);
    let dry = a
        .run_maintenance(&op(), a.now(), true, &OwnRights)
        .await
        .expect("dry run");
    let due = vec![maintenance::DueAccount {
        address: "temp@example.org".into(),
        why: maintenance::Due::Expired,
        outcome: maintenance::DueOutcome::Due,
    }];
    assert_eq!(dry.accounts, due);
    let run = a
        .run_maintenance(&op(), a.now(), false, &OwnRights)
        .await
        .expect("run");
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        run.accounts
            .iter()
            .map(|d| (d.address.as_str(), d.why))
            .collect::<Vec<_>>(),
        vec![("temp@example.org", maintenance::Due::Expired)]
    );
    assert!(!home.exists(), "mail home removed");
    assert!(a.user(&temp.address).await.is_err());
    assert_eq!(a.userdb_list().await.expect("db"), vec!["boss@example.org"]);
    // Deleted as every deletion: the address stays blocked, nobody registers it again.
    assert!(a
        .blocklist()
        .await
        .expect("db")
        .iter()
        .any(|b| b.address.as_str() == "temp@example.org"));
    assert!(matches!(
        a.register(RegisterRequest {
            username: Some("temp".into()),
            password: Some(pw("long enough pw")),
            token: Some(code),
        })
        .await,
        Err(RegisterError::Taken)
    ));
}

#[tokio::test]
async fn export_with_hashes_then_import_elsewhere_keeps_every_password() {
    let f = Fixture::new(RegistrationMode::Open);
    let a = f.accounts();
    add_admin(&a, "boss@example.org", "boss password 1").await;
    login(&a, "alice@example.org", "alice password").await;
    a.set_user_quota(&op(), "alice@example.org", QuotaSetting::Explicit(1 << 30))
        .await
        .expect("quota");
    login(&a, "spammer@example.org", "spam password").await;
    a.block_user(&op(), "spammer@example.org", Some("spam".into()))
        .await
        .expect("block");
    let legacy = sha_crypt::sha512_simple(
        "old chatmail pw",
        &sha_crypt::Sha512Params::new(5000).expect("params"),
    )
    .expect("hash");
    a.import(
        &op(),
        vec![maintenance::Imported {
            address: "k3x9q2m1a@example.org".into(),
            password_hash: format!("{{SHA512-CRYPT}}{legacy}"),
        }],
    )
    .await
    .expect("import");

    let without = a.export_accounts(false).await.expect("export");
    assert!(without.iter().all(|r| r.password_hash.is_none()));
    let records = a.export_accounts(true).await.expect("export");
    let text: String = records.iter().map(|r| r.to_line() + "\n").collect();
    assert_eq!(records.len(), 4);

    let g = Fixture::new(RegistrationMode::Closed);
    let b = g.accounts();
    let dry = b
        .import_lines(&op(), &text, false, true)
        .await
        .expect("dry run");
    assert_eq!((dry.created, dry.updated, dry.unchanged), (4, 0, 0));
    assert!(b.users(false, None).await.expect("db").is_empty());
    let done = b
        .import_lines(&op(), &text, false, false)
        .await
        .expect("import");
    assert_eq!(
        done,
        export::ImportCounts {
            dry_run: false,
            ..dry
        }
    );
    for (user, password) in [
        ("boss@example.org", "boss password 1"),
        ("alice@example.org", "alice password"),
        ("k3x9q2m1a@example.org", "old chatmail pw"),
    ] {
        assert_eq!(login(&b, user, password).await, accepted(user, false));
        assert_eq!(
            login(&b, user, "wrong password").await,
            LoginOutcome::Refused(Refusal::BadPassword)
        );
    }
    assert_eq!(
        login(&b, "spammer@example.org", "spam password").await,
        LoginOutcome::Refused(Refusal::Blocked)
    );
    let alice = b.user("alice@example.org").await.expect("user");
    assert_eq!(alice.quota.limit, Some(1 << 30));
    assert_eq!(alice.created_via, "jit");
    assert!(b.user("boss@example.org").await.expect("user").admin);
    let spammer = b.user("spammer@example.org").await.expect("user");
    assert!(matches!(spammer.status, Status::Blocked { reason: Some(ref r), .. } if r == "spam"));

    // Again: everything exists. Without --update nothing changes; with it, the hashes
    // of the file replace the stored ones.
    let again = b
        .import_lines(&op(), &text, false, false)
        .await
        .expect("again");
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 4));
    b.set_password(&op(), "alice@example.org", Some(pw("changed password")))
        .await
        .expect("passwd");
    let dry = b
        .import_lines(&op(), &text, true, true)
        .await
        .expect("dry update");
    assert_eq!((dry.created, dry.updated, dry.unchanged), (0, 4, 0));
    assert_eq!(
        login(&b, "alice@example.org", "changed password").await,
        accepted("alice@example.org", false)
    );
    let updated = b
        .import_lines(&op(), &text, true, false)
        .await
        .expect("update");
    assert_eq!(updated.updated, 4);
    assert_eq!(
        login(&b, "alice@example.org", "alice password").await,
        accepted("alice@example.org", false)
    );
    assert_eq!(
        login(&b, "alice@example.org", "changed password").await,
        LoginOutcome::Refused(Refusal::BadPassword)
    );
}

#[tokio::test]
async fn a_malformed_import_file_imports_nothing_and_bad_records_are_reported() {
    let f = Fixture::new(RegistrationMode::Closed);
    let a = f.accounts();
    let good = "{\"address\":\"anna@example.org\",\"password_hash\":\"$2y$04$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZa\"}";
    let e = a
        .import_lines(&op(), &format!("{good}\nnot json\n"), false, false)
        .await
        .expect_err("malformed");
    assert!(
        e.to_string().starts_with("line 2: not JSON: ")
            && e.to_string().ends_with("; nothing was imported"),
        "{e}"
    );
    assert!(a.users(false, None).await.expect("db").is_empty());
    let text = format!(
        "{good}\n\
         {{\"address\":\"x@other.org\",\"password_hash\":\"$6$abcdefghij$x\"}}\n\
         {{\"address\":\"bert@example.org\",\"password_hash\":\"{{PLAIN}}secret\"}}\n\
         {{\"address\":\"carl@example.org\"}}\n"
    );
    let c = a
        .import_lines(&op(), &text, false, false)
        .await
        .expect("import");
    assert_eq!(c.created, 1);
    let skipped: Vec<&str> = c.skipped.iter().map(|(addr, _)| addr.as_str()).collect();
    assert_eq!(
        skipped,
        vec!["x@other.org", "bert@example.org", "carl@example.org"]
    );
    assert_eq!(c.skipped[1].1, "unsupported password hash");
    assert_eq!(
        c.skipped[2].1,
        "no password hash to create it with (export with --with-hashes)"
    );
}

#[tokio::test]
async fn a_madmail_export_imports_and_its_passwords_log_in() {
    use base64::Engine;
    use sha2::Digest;
    let f = Fixture::new(RegistrationMode::Closed);
    let a = f.accounts();
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b"madmail salt 16b";
    let digest = sha2::Sha256::new()
        .chain_update(salt)
        .chain_update("madmail password")
        .finalize();
    let bcrypt = bcrypt::hash("bcrypt password", 4).expect("bcrypt");
    let text = serde_json::json!([
        {"username": "k3x9q2m1a@example.org",
         "hash": format!("sha256:{}:{}", b64.encode(salt), b64.encode(digest))},
        {"username": "z8y7x6w5v@example.org", "hash": format!("bcrypt:{bcrypt}")},
        {"username": "argon@example.org", "hash": "argon2:3:65536:1:c2FsdA:aGFzaA"},
    ])
    .to_string();
    let c = a
        .import_lines(&op(), &text, false, false)
        .await
        .expect("import");
    assert_eq!(c.created, 2);
    assert_eq!(
        c.skipped,
        vec![(
            "argon@example.org".to_owned(),
            "unsupported password hash".to_owned()
        )]
    );
    for (user, password) in [
        ("k3x9q2m1a@example.org", "madmail password"),
        ("z8y7x6w5v@example.org", "bcrypt password"),
    ] {
        assert_eq!(
            login(&a, user, "wrong password").await,
            LoginOutcome::Refused(Refusal::BadPassword)
        );
        assert_eq!(login(&a, user, password).await, accepted(user, false));
        // Re-hashed to argon2id at that login; the password still works.
        assert!(stored_row(&a, user)
            .await
            .password_hash
            .starts_with("$argon2id$"));
        assert_eq!(login(&a, user, password).await, accepted(user, false));
    }
}
