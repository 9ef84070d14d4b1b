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
        .create_token(&h, Some("for alice"), 1, Some(1000), 10)
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
    s.create_token(&h2, None, 5, Some(50), 10)
        .await
        .expect("db");
    b.token_hash = Some(h2);
    assert_eq!(
        s.create_account(b.clone()).await.expect("db"),
        Err(CreateRefusal::Token(TokenProblem::Expired))
    );
    let h3 = [9u8; 32];
    let id3 = s.create_token(&h3, None, 5, None, 10).await.expect("db");
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
