//! Run as root, the CLI acts as the owner of the database file, so the files SQLite
//! creates (the database, its -wal and -shm) keep the owner the daemon runs as. It
//! switches its effective ids only, so it can act as root again where root is needed
//! (removing a mail home that belongs to the mail user).
//!
//! ```text
//! # ls -l /var/lib/postern/postern.db  -> postern:postern
//! # postern user add ...               -> euid postern while touching the database
//! ```

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{getegid, geteuid, setegid, seteuid, Gid, Uid};

/// The ids to act as while using the database, when they differ from ours.
pub struct Privileges {
    owner: Option<(Uid, Gid)>,
    invoker: (Uid, Gid),
}

impl Privileges {
    /// Looks up the owner of the database (or of its directory, before it exists).
    pub fn for_database(path: &Path) -> Result<Privileges, String> {
        let invoker = (geteuid(), getegid());
        if !invoker.0.is_root() {
            return Ok(Privileges {
                owner: None,
                invoker,
            });
        }
        let meta = std::fs::metadata(path).or_else(|_| {
            std::fs::metadata(
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )
        });
        let owner = match meta {
            Ok(m) if m.uid() != 0 => Some((Uid::from_raw(m.uid()), Gid::from_raw(m.gid()))),
            _ => None,
        };
        let p = Privileges { owner, invoker };
        p.become_owner()?;
        Ok(p)
    }

    fn become_owner(&self) -> Result<(), String> {
        if let Some((uid, gid)) = self.owner {
            setegid(gid).map_err(|e| e.to_string())?;
            seteuid(uid).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn become_invoker(&self) -> Result<(), String> {
        if self.owner.is_some() {
            seteuid(self.invoker.0).map_err(|e| e.to_string())?;
            setegid(self.invoker.1).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Runs `f` as the database owner (the state the CLI is already in).
    pub fn as_owner<T>(&self, f: impl FnOnce() -> T) -> T {
        f()
    }

    /// Runs `f` with the invoking user's ids (root), then returns to the owner's.
    pub async fn as_invoker_async<T>(&self, f: impl Future<Output = T>) -> T {
        if let Err(e) = self.become_invoker() {
            eprintln!("postern: cannot return to the invoking user: {e}");
        }
        let out = f.await;
        if let Err(e) = self.become_owner() {
            eprintln!("postern: cannot switch back to the database owner: {e}");
        }
        out
    }
}

/// Mail homes belong to the mail user: the core's file operations on them run with the
/// invoking user's ids (root under `postern-maintenance.service`).
impl crate::accounts::maintenance::MailHomeRights for Privileges {
    fn with_rights<T>(&self, op: impl Future<Output = T>) -> impl Future<Output = T> {
        self.as_invoker_async(op)
    }
}
