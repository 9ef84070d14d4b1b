//! What a failed command tells its caller: a message for standard error and the exit
//! code it maps to; and whether standard output was closed under it (a reader such as
//! `head` that has seen enough), which is no failure at all.
//!
//! ```text
//! postern: no account alice@example.org        exit 1
//! postern: /etc/postern/postern.toml: ...       exit 2
//! postern: the account database is busy         exit 3
//! ```

use std::io;

use crate::accounts::{AdminError, Unavailable};

/// A failure of a command, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// Standard output was closed by its reader: end quietly, with status 0.
    pub pipe_closed: bool,
}

impl Failure {
    pub(super) fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            pipe_closed: false,
        }
    }

    pub(super) fn refused(message: impl Into<String>) -> Self {
        Failure::new(1, message)
    }

    pub(super) fn usage(message: impl Into<String>) -> Self {
        Failure::new(2, message)
    }
}

/// A failed write of the command's output.
impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure {
            pipe_closed: e.kind() == io::ErrorKind::BrokenPipe,
            ..Failure::refused(format!("cannot write the output: {e}"))
        }
    }
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        let code = match e {
            AdminError::Unavailable(_) => 3,
            _ => 1,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<Unavailable> for Failure {
    fn from(e: Unavailable) -> Self {
        Failure::new(3, e.to_string())
    }
}
