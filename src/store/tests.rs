//! The store's behaviour, written once against [`Store`]: each test opens the backend
//! under test through [`store`], so another backend runs the same bodies.
//!
//! ```text
//! create once -> Exists; blocked -> Blocked; invite used up -> Token(UsedUp)
//! ```

use std::path::Path;

use super::*;

/// The store every test here runs against: a fresh database of the backend under test.
fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    (dir, store)
}

/// Opens the backend under test on the database kept in `dir` (reopening sees the data).
fn open(dir: &Path) -> Store {
    Store::open(&test_backend::database(module_path!(), dir)).expect("open")
}

fn new(address: &str) -> NewAccount {
    NewAccount {
        address: address.to_owned(),
        password_hash: "$argon2id$x".to_owned(),
        created_via: "cli",
        now: 100,
        token_hash: None,
        admin_if_none: false,
        admin: false,
        quota: QuotaMode::Default,
    }
}

#[tokio::test]
async fn create_once_then_exists_and_blocklist_refuses() {
    let (_d, s) = store();
    assert!(s.create_account(new("a@x.org")).await.expect("db").is_ok());
    assert_eq!(
        s.create_account(new("a@x.org")).await.expect("db"),
        Err(CreateRefusal::Exists)
    );
    s.block("b@x.org", Some("spam"), 5).await.expect("db");
    assert_eq!(
        s.create_account(new("b@x.org")).await.expect("db"),
        Err(CreateRefusal::Blocked)
    );
    let row = s.account("a@x.org").await.expect("db").expect("row");
    assert_eq!(row.created_via, "cli");
    assert_eq!(row.blocked, None);
}

#[tokio::test]
async fn login_row_holds_what_a_login_checks() {
    let (_d, s) = store();
    assert_eq!(s.login_row("a@x.org").await.expect("db"), None);
    let id = match s.create_account(new("a@x.org")).await.expect("db") {
        Ok(c) => c.id,
        Err(e) => panic!("create: {e:?}"),
    };
    s.create_account(new("b@x.org"))
        .await
        .expect("db")
        .expect("b");
    let fresh = LoginRow {
        id,
        address: "a@x.org".into(),
        password_hash: "$argon2id$x".into(),
        last_login: None,
        blocked: false,
    };
    assert_eq!(
        s.login_row("a@x.org").await.expect("db"),
        Some(fresh.clone())
    );
    s.record_login(id, 1_000, 3_600).await.expect("db");
    assert!(s
        .set_password_hash("a@x.org", "$argon2id$y")
        .await
        .expect("db"));
    s.block("a@x.org", None, 5).await.expect("db");
    assert_eq!(
        s.login_row("a@x.org").await.expect("db"),
        Some(LoginRow {
            password_hash: "$argon2id$y".into(),
            last_login: Some(1_000),
            blocked: true,
            ..fresh
        })
    );
    // The other account is untouched; a blocked address without an account has no row.
    let b = s.login_row("b@x.org").await.expect("db").expect("b");
    assert!(!b.blocked && b.last_login.is_none() && b.id != id);
    s.block("gone@x.org", None, 5).await.expect("db");
    assert_eq!(s.login_row("gone@x.org").await.expect("db"), None);
}

#[tokio::test]
async fn mail_facts_read_quota_usage_and_blocklist_in_one_row() {
    let (_d, s) = store();
    let none = MailFacts {
        mailbox: None,
        blocked: false,
    };
    assert_eq!(s.mail_facts("nobody@x.org").await.expect("db"), none);

    assert!(s.create_account(new("a@x.org")).await.expect("db").is_ok());
    let fresh = MailboxUsage {
        quota: QuotaMode::Default,
        used_bytes: 0,
    };
    assert_eq!(
        s.mail_facts("a@x.org").await.expect("db"),
        MailFacts {
            mailbox: Some(fresh),
            blocked: false
        }
    );

    s.set_usage("a@x.org", Some(700), None, 1)
        .await
        .expect("db");
    s.set_quota("a@x.org", QuotaMode::Explicit(1000))
        .await
        .expect("db");
    s.block("a@x.org", Some("spam"), 5).await.expect("db");
    assert_eq!(
        s.mail_facts("a@x.org").await.expect("db"),
        MailFacts {
            mailbox: Some(MailboxUsage {
                quota: QuotaMode::Explicit(1000),
                used_bytes: 700
            }),
            blocked: true
        }
    );
    // An address blocked without an account, and one that only shares a prefix.
    s.block("gone@x.org", None, 5).await.expect("db");
    assert_eq!(
        s.mail_facts("gone@x.org").await.expect("db"),
        MailFacts {
            mailbox: None,
            blocked: true
        }
    );
    assert_eq!(s.mail_facts("a@x.or").await.expect("db"), none);
    s.set_quota("a@x.org", QuotaMode::Unlimited)
        .await
        .expect("db");
    s.unblock("a@x.org").await.expect("db");
    assert_eq!(
        s.mail_facts("a@x.org").await.expect("db"),
        MailFacts {
            mailbox: Some(MailboxUsage {
                quota: QuotaMode::Unlimited,
                used_bytes: 700
            }),
            blocked: false
        }
    );
}

#[tokio::test]
async fn first_admin_only_once() {
    let (_d, s) = store();
    let mut a = new("a@x.org");
    a.admin_if_none = true;
    assert!(
        s.create_account(a.clone())
            .await
            .expect("db")
            .expect("created")
            .admin
    );
    let mut b = new("b@x.org");
    b.admin_if_none = true;
    assert!(
        !s.create_account(b.clone())
            .await
            .expect("db")
            .expect("created")
            .admin
    );
}

// The setup invite's check at start read every account into memory (hundreds of MiB
// at a million accounts); this op answers from the admin index.
#[tokio::test]
async fn has_active_admin_ignores_plain_and_blocked_accounts() {
    let (_d, s) = store();
    assert!(!s.has_active_admin().await.expect("db"));
    s.create_account(new("plain@x.org"))
        .await
        .expect("db")
        .expect("created");
    assert!(!s.has_active_admin().await.expect("db"));
    let mut admin = new("boss@x.org");
    admin.admin = true;
    s.create_account(admin).await.expect("db").expect("created");
    assert!(s.has_active_admin().await.expect("db"));
    s.block("boss@x.org", None, 5).await.expect("db");
    assert!(!s.has_active_admin().await.expect("db"));
    s.unblock("boss@x.org").await.expect("db");
    assert!(s.has_active_admin().await.expect("db"));
}

#[tokio::test]
async fn token_uses_expiry_and_revocation() {
    let (_d, s) = store();
    let h = [7u8; 32];
    let id = s
        .create_token(&h, Some("for alice"), 1, Some(1000), 10, None)
        .await
        .expect("db");
    let mut a = new("a@x.org");
    a.token_hash = Some(h);
    assert_eq!(
        s.create_account(a.clone())
            .await
            .expect("db")
            .expect("ok")
            .token_id,
        Some(id)
    );
    let mut b = new("b@x.org");
    b.token_hash = Some(h);
    assert_eq!(
        s.create_account(b.clone()).await.expect("db"),
        Err(CreateRefusal::Token(TokenProblem::UsedUp))
    );
    let h2 = [8u8; 32];
    s.create_token(&h2, None, 5, Some(50), 10, None)
        .await
        .expect("db");
    b.token_hash = Some(h2);
    assert_eq!(
        s.create_account(b.clone()).await.expect("db"),
        Err(CreateRefusal::Token(TokenProblem::Expired))
    );
    let h3 = [9u8; 32];
    let id3 = s
        .create_token(&h3, None, 5, None, 10, None)
        .await
        .expect("db");
    assert!(s.revoke_token(id3, 20).await.expect("db"));
    b.token_hash = Some(h3);
    assert_eq!(
        s.create_account(b.clone()).await.expect("db"),
        Err(CreateRefusal::Token(TokenProblem::Revoked))
    );
    b.token_hash = Some([1u8; 32]);
    assert_eq!(
        s.create_account(b.clone()).await.expect("db"),
        Err(CreateRefusal::Token(TokenProblem::Unknown))
    );
    // A refused creation consumed nothing.
    assert_eq!(
        s.token(Some(id3), None)
            .await
            .expect("db")
            .expect("row")
            .uses,
        0
    );
    assert!(s.account("b@x.org").await.expect("db").is_none());
}

#[tokio::test]
async fn delete_keeps_address_blocked_unless_reuse() {
    let (_d, s) = store();
    s.create_account(new("a@x.org"))
        .await
        .expect("db")
        .expect("ok");
    s.create_account(new("b@x.org"))
        .await
        .expect("db")
        .expect("ok");
    assert!(s
        .delete_account("a@x.org", false, "deleted", 9, None)
        .await
        .expect("db")
        .is_some());
    assert!(s.blocklist_entry("a@x.org").await.expect("db").is_some());
    assert!(s
        .delete_account("b@x.org", true, "deleted", 9, None)
        .await
        .expect("db")
        .is_some());
    assert!(s.blocklist_entry("b@x.org").await.expect("db").is_none());
    assert!(s
        .delete_account("b@x.org", true, "deleted", 9, None)
        .await
        .expect("db")
        .is_none());
}

#[tokio::test]
async fn deleting_queues_the_mail_home_in_the_same_step_and_keeping_mail_cancels_it() {
    let (_d, s) = store();
    let home = Path::new("/var/vmail/x.org/a");
    s.create_account(new("a@x.org"))
        .await
        .expect("db")
        .expect("ok");
    s.delete_account("a@x.org", true, "deleted", 10, Some(home))
        .await
        .expect("db")
        .expect("deleted");
    let queued = s.queued_home("a@x.org").await.expect("db").expect("queued");
    assert_eq!((queued.home.as_path(), queued.queued_at), (home, 10));
    assert_eq!(s.stats(20).await.expect("db").homes_queued, 1);
    // No account, no queue entry: nothing is queued by a deletion that did not happen.
    assert!(s
        .delete_account("ghost@x.org", true, "deleted", 11, Some(home))
        .await
        .expect("db")
        .is_none());
    assert_eq!(s.queued_home_count().await.expect("db"), 1);

    // Registered again and deleted again: one entry, the newer one.
    s.create_account(new("a@x.org"))
        .await
        .expect("db")
        .expect("ok");
    s.delete_account("a@x.org", true, "deleted", 30, Some(home))
        .await
        .expect("db")
        .expect("deleted");
    let newer = s.queued_home("a@x.org").await.expect("db").expect("queued");
    assert_eq!(newer.queued_at, 30);
    // Handling the older entry does not drop the newer one.
    assert!(!s.dequeue_home(&queued).await.expect("db"));
    assert_eq!(s.queued_homes().await.expect("db"), vec![newer.clone()]);

    // Registered again and deleted keeping the mail: the older removal is cancelled.
    s.create_account(new("a@x.org"))
        .await
        .expect("db")
        .expect("ok");
    s.delete_account("a@x.org", true, "deleted", 40, None)
        .await
        .expect("db")
        .expect("deleted");
    assert_eq!(s.queued_homes().await.expect("db"), vec![]);
    assert!(!s.dequeue_home(&newer).await.expect("db"));
}

#[tokio::test]
async fn login_times_are_throttled() {
    let (_d, s) = store();
    let id = s
        .create_account(new("a@x.org"))
        .await
        .expect("db")
        .expect("ok")
        .id;
    s.record_login(id, 1000, 3600).await.expect("db");
    s.record_login(id, 2000, 3600).await.expect("db");
    let row = s.account("a@x.org").await.expect("db").expect("row");
    assert_eq!((row.first_login, row.last_login), (Some(1000), Some(1000)));
    s.record_login(id, 4600, 3600).await.expect("db");
    let row = s.account("a@x.org").await.expect("db").expect("row");
    assert_eq!((row.first_login, row.last_login), (Some(1000), Some(4600)));
}

#[tokio::test]
async fn usage_set_and_increment() {
    let (_d, s) = store();
    s.create_account(new("a@x.org"))
        .await
        .expect("db")
        .expect("ok");
    assert!(s
        .set_usage("a@x.org", Some(500), None, 1)
        .await
        .expect("db"));
    assert!(s.add_usage("a@x.org", -100, 2, 2).await.expect("db"));
    assert!(s.add_usage("a@x.org", -1000, 0, 3).await.expect("db"));
    let row = s.account("a@x.org").await.expect("db").expect("row");
    assert_eq!((row.used_bytes, row.used_messages), (0, 2));
    assert!(!s
        .set_usage("nobody@x.org", Some(1), None, 1)
        .await
        .expect("db"));
}

#[tokio::test]
async fn reopening_keeps_data_and_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(dir.path());
        s.create_account(new("a@x.org"))
            .await
            .expect("db")
            .expect("ok");
    }
    let s = open(dir.path());
    assert!(s.account("a@x.org").await.expect("db").is_some());
}

#[tokio::test]
async fn login_failures_count_within_one_window_then_start_again() {
    let (_d, s) = store();
    let count = |at| s.login_failures("a@x.org", at);
    assert_eq!(count(1000).await.expect("db"), 0);
    assert_eq!(
        s.add_login_failure("a@x.org", 1000, 600).await.expect("db"),
        1
    );
    assert_eq!(
        s.add_login_failure("a@x.org", 1100, 600).await.expect("db"),
        2
    );
    assert_eq!(
        s.add_login_failure("a@x.org", 1599, 600).await.expect("db"),
        3
    );
    assert_eq!(count(1599).await.expect("db"), 3);
    assert_eq!(s.login_failures("b@x.org", 1599).await.expect("db"), 0);
    // The window opened at the first failure (1000) and ends at 1600.
    assert_eq!(count(1600).await.expect("db"), 0);
    assert_eq!(
        s.add_login_failure("a@x.org", 1600, 600).await.expect("db"),
        1
    );
    assert_eq!(count(2199).await.expect("db"), 1);
    assert_eq!(
        s.add_login_failure("b@x.org", 1700, 100).await.expect("db"),
        1
    );
    // Pruning takes only the windows that ended: b's (1800), not a's (2200).
    assert_eq!(s.prune_limits(2199, 60_000).await.expect("db"), 1);
    assert_eq!(count(2199).await.expect("db"), 1);
    assert_eq!(s.prune_limits(2200, 60_000).await.expect("db"), 1);
    assert_eq!(s.prune_limits(2200, 60_000).await.expect("db"), 0);
}

#[tokio::test]
async fn send_tokens_allow_the_burst_then_refill_at_the_rate() {
    let (_d, s) = store();
    // 3 at once, then one every 1024 ms (a rate exact in binary).
    let per_ms = 1.0 / 1024.0;
    let take = |who: &'static str, at| s.take_send_token(who, at, 3.0, per_ms);
    for i in 0..3 {
        assert!(take("a@x.org", 0).await.expect("db"), "burst {i}");
    }
    assert!(!take("a@x.org", 0).await.expect("db"));
    assert!(!take("a@x.org", 1023).await.expect("db"));
    assert!(take("a@x.org", 1024).await.expect("db"));
    assert!(!take("a@x.org", 1024).await.expect("db"));
    // A host whose clock is behind gets no refill from going back in time.
    assert!(!take("a@x.org", 500).await.expect("db"));
    assert!(
        take("b@x.org", 500).await.expect("db"),
        "one bucket per sender"
    );
    // Idle for a whole refill (3 * 1024 ms): full again, so pruning may forget it.
    assert_eq!(s.prune_limits(1024 + 3072 - 1, 3072).await.expect("db"), 1);
    assert_eq!(s.prune_limits(1024 + 3072, 3072).await.expect("db"), 1);
    for i in 0..3 {
        assert!(take("a@x.org", 5000).await.expect("db"), "again {i}");
    }
    assert!(!take("a@x.org", 5000).await.expect("db"));
}

/// Many takes at once from one bucket (as from several hosts): exactly the burst passes;
/// many failures at once: each counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_send_tokens_never_exceed_the_burst() {
    let (_d, s) = store();
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.take_send_token("a@x.org", 0, 10.0, 0.0).await })
        })
        .collect();
    let mut taken = 0;
    for t in tasks {
        if t.await.expect("task").expect("db") {
            taken += 1;
        }
    }
    assert_eq!(taken, 10);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.add_login_failure("a@x.org", 0, 60_000).await })
        })
        .collect();
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.expect("task").expect("db"));
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=40).collect::<Vec<u32>>(),
        "each failure counted once"
    );
}

#[tokio::test]
async fn slow_mode_turns_are_claimed_once_per_interval() {
    let (_d, s) = store();
    // No failures counted yet: the first claim makes the row and takes the turn.
    assert_eq!(
        s.claim_login_turn("a@x.org", 1000, 300).await.expect("db"),
        None
    );
    assert_eq!(s.login_failures("a@x.org", 1000).await.expect("db"), 0);
    assert_eq!(
        s.claim_login_turn("a@x.org", 1100, 300).await.expect("db"),
        Some(200)
    );
    assert_eq!(
        s.claim_login_turn("a@x.org", 1300, 300).await.expect("db"),
        None
    );
    // Counting failures keeps the turn; the turn keeps the row from pruning.
    assert_eq!(
        s.add_login_failure("a@x.org", 1300, 100).await.expect("db"),
        1
    );
    assert_eq!(
        s.claim_login_turn("a@x.org", 1400, 300).await.expect("db"),
        Some(200)
    );
    assert_eq!(s.prune_limits(1500, 0).await.expect("db"), 0);
    assert_eq!(s.prune_limits(1600, 0).await.expect("db"), 1);
}

fn audit(at: i64, actor_name: &str, action: &str, target: Option<&str>) -> AuditRecord {
    AuditRecord {
        at,
        actor: "cli".into(),
        actor_name: actor_name.into(),
        action: action.into(),
        target: target.map(str::to_owned),
        old_value: Some("500M".into()),
        new_value: Some("1G".into()),
    }
}

#[tokio::test]
async fn audit_log_reads_newest_first_by_time_and_address_and_pages() {
    let (_d, s) = store();
    let first = s
        .append_audit(audit(100, "root", "quota_change", Some("a@x.org")))
        .await
        .expect("db");
    let second = s
        .append_audit(audit(200, "boss@x.org", "account_block", Some("b@x.org")))
        .await
        .expect("db");
    let third = s
        .append_audit(audit(200, "root", "import", None))
        .await
        .expect("db");
    assert!(first < second && second < third, "{first} {second} {third}");
    let all = |since, address: Option<&str>, limit, offset| AuditFilter {
        since,
        address: address.map(str::to_owned),
        limit,
        offset,
    };
    let ids = |rows: Vec<AuditRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();

    let rows = s.audit_log(all(None, None, 10, 0)).await.expect("db");
    assert_eq!(
        rows[2],
        AuditRow {
            id: first,
            record: audit(100, "root", "quota_change", Some("a@x.org")),
        }
    );
    assert_eq!(ids(rows), vec![third, second, first]);
    assert_eq!(
        ids(s.audit_log(all(Some(200), None, 10, 0)).await.expect("db")),
        vec![third, second]
    );
    assert_eq!(
        ids(s
            .audit_log(all(None, Some("a@x.org"), 10, 0))
            .await
            .expect("db")),
        vec![first]
    );
    // An admin's own actions are found under its address too.
    assert_eq!(
        ids(s
            .audit_log(all(None, Some("boss@x.org"), 10, 0))
            .await
            .expect("db")),
        vec![second]
    );
    assert_eq!(
        ids(s.audit_log(all(None, None, 1, 1)).await.expect("db")),
        vec![second]
    );
    assert_eq!(
        ids(s.audit_log(all(None, None, 10, 3)).await.expect("db")),
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn an_invite_with_an_account_lifetime_makes_accounts_that_expire() {
    let (_d, s) = store();
    let h = [3u8; 32];
    let id = s
        .create_token(&h, Some("workshop"), 3, None, 10, Some(7 * 86400))
        .await
        .expect("db");
    assert_eq!(
        s.token(Some(id), None)
            .await
            .expect("db")
            .expect("row")
            .account_lifetime,
        Some(7 * 86400)
    );
    for (address, at) in [("a@x.org", 100), ("b@x.org", 200)] {
        let mut a = new(address);
        a.token_hash = Some(h);
        a.now = at;
        s.create_account(a).await.expect("db").expect("ok");
    }
    s.create_account(new("c@x.org"))
        .await
        .expect("db")
        .expect("ok");
    let row = s.account("a@x.org").await.expect("db").expect("row");
    assert_eq!(row.expires_at, Some(100 + 7 * 86400));
    assert_eq!(
        s.account("c@x.org")
            .await
            .expect("db")
            .expect("row")
            .expires_at,
        None
    );
    assert_eq!(
        s.token_accounts(id).await.expect("db"),
        vec![("a@x.org".to_owned(), 100), ("b@x.org".to_owned(), 200)]
    );
    // Due exactly at its expiry, not a second before; administrators never.
    assert!(s
        .expired_accounts(100 + 7 * 86400 - 1)
        .await
        .expect("db")
        .is_empty());
    assert_eq!(
        s.expired_accounts(100 + 7 * 86400).await.expect("db"),
        vec!["a@x.org"]
    );
    assert!(s.set_admin("b@x.org", true).await.expect("db"));
    assert_eq!(
        s.expired_accounts(i64::MAX).await.expect("db"),
        vec!["a@x.org"]
    );
}

fn import_row(address: &str, hash: Option<&str>) -> ImportRow {
    ImportRow {
        address: address.to_owned(),
        password_hash: hash.map(str::to_owned),
        created_at: 50,
        created_via: "web".to_owned(),
        first_login: Some(60),
        last_login: Some(70),
        quota: QuotaMode::Explicit(1000),
        admin: false,
        blocked: None,
        expires_at: Some(900),
    }
}

#[tokio::test]
async fn import_creates_updates_only_when_told_and_a_dry_run_writes_nothing() {
    let (_d, s) = store();
    s.create_account(new("old@x.org"))
        .await
        .expect("db")
        .expect("ok");
    s.block("gone@x.org", Some("deleted"), 5).await.expect("db");
    let mut blocked = import_row("spam@x.org", Some("$6$h2"));
    blocked.blocked = Some((Some("spam".into()), 40));
    let rows = vec![
        import_row("new@x.org", Some("$6$h1")),
        blocked,
        import_row("old@x.org", Some("$6$replaced")),
        import_row("gone@x.org", Some("$6$h3")),
        import_row("nohash@x.org", None),
    ];
    let want = vec![
        ImportResult::Created,
        ImportResult::Created,
        ImportResult::Exists,
        ImportResult::Blocked,
        ImportResult::NoHash,
    ];
    assert_eq!(
        s.import_accounts(rows.clone(), false, true)
            .await
            .expect("db"),
        want
    );
    assert!(s.account("new@x.org").await.expect("db").is_none());
    assert_eq!(
        s.import_accounts(rows.clone(), false, false)
            .await
            .expect("db"),
        want
    );
    let row = s.account("new@x.org").await.expect("db").expect("row");
    assert_eq!(
        (
            row.password_hash.as_str(),
            row.created_at,
            row.created_via.as_str(),
            row.first_login,
            row.last_login,
            row.quota,
            row.expires_at
        ),
        (
            "$6$h1",
            50,
            "web",
            Some(60),
            Some(70),
            QuotaMode::Explicit(1000),
            Some(900)
        )
    );
    let spam = s.account("spam@x.org").await.expect("db").expect("row");
    assert_eq!(
        spam.blocked,
        Some(BlockEntry {
            address: "spam@x.org".into(),
            reason: Some("spam".into()),
            since: 40
        })
    );
    assert_eq!(
        s.account("old@x.org")
            .await
            .expect("db")
            .expect("row")
            .password_hash,
        "$argon2id$x"
    );
    // With update: the existing account takes the row's hash, quota and expiry.
    let updated = s
        .import_accounts(vec![rows[2].clone()], true, false)
        .await
        .expect("db");
    assert_eq!(updated, vec![ImportResult::Updated]);
    let old = s.account("old@x.org").await.expect("db").expect("row");
    assert_eq!(
        (
            old.password_hash.as_str(),
            old.quota,
            old.expires_at,
            old.created_via.as_str()
        ),
        ("$6$replaced", QuotaMode::Explicit(1000), Some(900), "cli")
    );
    // An update without a hash keeps the stored one, and unblocks as the row says.
    let mut unblock = import_row("spam@x.org", None);
    unblock.quota = QuotaMode::Unlimited;
    assert_eq!(
        s.import_accounts(vec![unblock], true, false)
            .await
            .expect("db"),
        vec![ImportResult::Updated]
    );
    let spam = s.account("spam@x.org").await.expect("db").expect("row");
    assert_eq!(
        (spam.password_hash.as_str(), spam.blocked, spam.quota),
        ("$6$h2", None, QuotaMode::Unlimited)
    );
}
