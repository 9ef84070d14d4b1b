//! Tests: which backend a test runs on. The store suite (`store/tests.rs`) and the core
//! suite (`accounts/tests.rs`) are each compiled twice, as `tests` and as
//! `tests_on_postgres`; the module path a test passes in picks SQLite or a fresh database
//! on the test process's PostgreSQL server.
//!
//! ```text
//! store::tests::first_admin_only_once               SQLite file in the temp dir
//! store::tests_on_postgres::first_admin_only_once   database t<pid>_<n> on PgServer::shared()
//! ```

use std::path::Path;

use super::test_pg::PgServer;
use crate::config;

/// The database for a test whose files live in `dir`: the same one again when called
/// again with the same `dir` (a test that reopens its store sees its data).
pub fn database(module: &str, dir: &Path) -> config::Database {
    if !module.ends_with("_on_postgres") {
        return config::Database::sqlite(dir.join("t.db"));
    }
    let remembered = dir.join("postgres-url");
    let url = match std::fs::read_to_string(&remembered) {
        Ok(url) => url,
        Err(_) => {
            let url = PgServer::shared().fresh_database();
            std::fs::write(&remembered, &url).expect("remember the database");
            url
        }
    };
    config::Database {
        url: Some(url),
        pool_size: 4,
        ..config::Database::default()
    }
}
