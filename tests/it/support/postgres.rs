//! PostgreSQL for the integration tests: the server harness shared with the unit tests
//! (src/store/test_pg.rs), and `postern serve` daemons configured on one of its
//! databases, so several "hosts" share one set of accounts.
//!
//! ```text
//! let pg = PgServer::start();
//! let url = pg.create_database("hosts");
//! let a = on_postgres("open", &url, &[]);   // TestDaemon with [database] url
//! let b = on_postgres("open", &url, &[]);
//! ```

#[path = "../../../src/store/test_pg.rs"]
mod server;

pub use server::*;

use super::TestDaemon;

/// A daemon configured like [`TestDaemon::configure`], its `[database]` a PostgreSQL URL
/// instead of the SQLite file; started.
pub fn on_postgres(mode: &str, url: &str, env: &[(&str, &str)]) -> TestDaemon {
    let mut d = configure_on_postgres(mode, url, env);
    d.spawn();
    d
}

/// Writes the configuration without starting the daemon (the CLI on that database).
pub fn configure_on_postgres(mode: &str, url: &str, env: &[(&str, &str)]) -> TestDaemon {
    let d = TestDaemon::configure(mode, env);
    let text = std::fs::read_to_string(&d.config).expect("read config");
    let path_line = format!("path = \"{}\"\n", d.dir.join("postern.db").display());
    assert!(
        text.contains(&path_line),
        "the test config names its SQLite file"
    );
    let text = text.replace(&path_line, &format!("url = \"{url}\"\npool_size = 8\n"));
    std::fs::write(&d.config, text).expect("write config");
    d
}
