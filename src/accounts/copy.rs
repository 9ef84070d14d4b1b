//! Moving an installation from SQLite to PostgreSQL (`postern database copy`): the rule
//! is that the source is the configured SQLite file and the target an empty PostgreSQL
//! database (or one the operator lets us empty); the rows move as they are, hashes
//! included, so every password keeps working.
//!
//! ```text
//! copy_to_postgres(&config.database, "postgresql:///postern?host=/run/postgresql", None, false)
//!   -> Copied { accounts: 1200, invites: 14, blocklist: 30, settings: 1, queued_homes: 2 }
//! ```

use std::path::PathBuf;

use crate::config;
use crate::store::{copy, postgres, StoreError};

/// What was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub accounts: usize,
    pub invites: usize,
    pub blocklist: usize,
    pub settings: usize,
    pub queued_homes: usize,
}

/// Why a copy did not happen (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "this configuration already uses PostgreSQL ([database] url); the copy reads a \
         SQLite file: point --config at the SQLite configuration"
    )]
    SourceNotSqlite,
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl CopyError {
    /// 2: the wrong source; 1: the target refused (not empty, bad URL); 3: the database
    /// could not be reached or failed (try again).
    pub fn exit_code(&self) -> u8 {
        match self {
            CopyError::SourceNotSqlite => 2,
            CopyError::Store(StoreError::Copy(_) | StoreError::Options(_)) => 1,
            CopyError::Store(_) => 3,
        }
    }
}

/// Copies the SQLite database of `from` into the PostgreSQL database at `to`.
pub async fn copy_to_postgres(
    from: &config::Database,
    to: &str,
    password_file: Option<PathBuf>,
    force: bool,
) -> Result<Copied, CopyError> {
    if from.url.is_some() {
        return Err(CopyError::SourceNotSqlite);
    }
    let target = postgres::Postgres::open(&postgres::PgOptions {
        url: to.to_owned(),
        password_file,
        pool_size: 2,
    })
    .await?;
    let r = copy::sqlite_to_postgres(from.sqlite_path(), &target, force).await?;
    Ok(Copied {
        accounts: r.accounts,
        invites: r.invites,
        blocklist: r.blocklist,
        settings: r.settings,
        queued_homes: r.queued_homes,
    })
}
