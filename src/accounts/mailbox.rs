//! Checks of `[mailbox]` against this host: whether `uid` and `gid` name somebody, and
//! whether that owner can write the mail root (the fixed part of `home`), where Dovecot
//! creates the mail homes. `postern config check` prints the findings (an error makes it
//! exit 1), `postern serve` logs them as warnings at start.
//!
//! ```text
//! uid = "vmial"         error    no user named vmial on this host
//! uid = "5000"          warning  no passwd entry has uid 5000
//! /var/vmail missing    warning  Dovecot creates it (vmail may write in /var) | error
//! /var/vmail root 0755  error    vmail (uid 5000) cannot create mail homes in it
//! ```

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use super::address::home_root;
use crate::config::Mailbox;

/// How bad a finding is: an error stops mail from working; a warning may be intended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One thing wrong (or suspicious) with `[mailbox]` on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The configuration key it is about.
    pub key: &'static str,
    pub message: String,
}

/// A `uid` or `gid` setting as this host resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    /// A name or number with an entry: the number and the entry's name.
    Known(u32, String),
    /// A number without a passwd/group entry (Dovecot accepts it as is).
    Bare(u32),
    /// A name nobody has.
    Unknown,
}

fn user(setting: &str) -> Id {
    let setting = setting.trim();
    if let Ok(n) = setting.parse::<u32>() {
        return match User::from_uid(Uid::from_raw(n)) {
            Ok(Some(u)) => Id::Known(n, u.name),
            _ => Id::Bare(n),
        };
    }
    match User::from_name(setting) {
        Ok(Some(u)) => Id::Known(u.uid.as_raw(), u.name),
        _ => Id::Unknown,
    }
}

fn group(setting: &str) -> Id {
    let setting = setting.trim();
    if let Ok(n) = setting.parse::<u32>() {
        return match Group::from_gid(Gid::from_raw(n)) {
            Ok(Some(g)) => Id::Known(n, g.name),
            _ => Id::Bare(n),
        };
    }
    match Group::from_name(setting) {
        Ok(Some(g)) => Id::Known(g.gid.as_raw(), g.name),
        _ => Id::Unknown,
    }
}

/// What is wrong with a resolved `uid` (`kind` "user", `id` "uid") or `gid` setting.
fn id_finding(
    key: &'static str,
    kind: &str,
    id: &str,
    setting: &str,
    resolved: &Id,
) -> Option<Finding> {
    let (severity, message) = match resolved {
        Id::Unknown => (
            Severity::Error,
            format!(
                "no {kind} named {} on this host: Dovecot cannot give the mail files that \
                 {kind} (create the {kind}, or set the number)",
                setting.trim()
            ),
        ),
        Id::Bare(n) => (
            Severity::Warning,
            format!("no {kind} has {id} {n} on this host (Dovecot accepts it; is it a typo?)"),
        ),
        Id::Known(..) => return None,
    };
    Some(Finding {
        severity,
        key,
        message,
    })
}

/// Checks `mailbox.uid`, `mailbox.gid` and the mail root. Empty when all is well.
pub fn check(mailbox: &Mailbox) -> Vec<Finding> {
    let uid = user(&mailbox.uid);
    let gid = group(&mailbox.gid);
    let mut found: Vec<Finding> = [
        id_finding("mailbox.uid", "user", "uid", &mailbox.uid, &uid),
        id_finding("mailbox.gid", "group", "gid", &mailbox.gid, &gid),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (owner_uid, who) = match &uid {
        Id::Known(n, name) => (*n, format!("{name} (uid {n})")),
        Id::Bare(n) => (*n, format!("uid {n}")),
        Id::Unknown => return found,
    };
    let mut groups: Vec<u32> = Vec::new();
    if let Id::Known(n, _) | Id::Bare(n) = gid {
        groups.push(n);
    }
    if let Id::Known(_, name) = &uid {
        if let Ok(name) = std::ffi::CString::new(name.as_str()) {
            let primary = Gid::from_raw(groups.first().copied().unwrap_or(u32::MAX));
            if let Ok(list) = nix::unistd::getgrouplist(&name, primary) {
                groups.extend(list.iter().map(|g| g.as_raw()));
            }
        }
    }
    let owner = Owner {
        uid: owner_uid,
        groups,
    };
    let root = home_root(&mailbox.home);
    if let Some((severity, message)) = check_root(&root, &owner, &who) {
        found.push(Finding {
            severity,
            key: "mailbox.home",
            message,
        });
    }
    found
}

/// Who writes the mail files: Dovecot's mail processes run with this uid and groups.
struct Owner {
    uid: u32,
    groups: Vec<u32>,
}

/// The permission bits `owner` gets on a file of `file_uid`:`file_gid` with `mode`:
/// the owner's, the group's or the others' triple (as the kernel picks, ACLs aside).
fn access_bits(owner: &Owner, file_uid: u32, file_gid: u32, mode: u32) -> u32 {
    if owner.uid == 0 {
        return 0o7;
    }
    if owner.uid == file_uid {
        (mode >> 6) & 0o7
    } else if owner.groups.contains(&file_gid) {
        (mode >> 3) & 0o7
    } else {
        mode & 0o7
    }
}

fn may(owner: &Owner, meta: &std::fs::Metadata, want: u32) -> bool {
    access_bits(owner, meta.uid(), meta.gid(), meta.mode()) & want == want
}

/// The mail root's problem, if any: missing (and whether Dovecot could make it), not a
/// directory, not writable, or a parent the owner cannot enter.
fn check_root(root: &Path, owner: &Owner, who: &str) -> Option<(Severity, String)> {
    const WRITE_ENTER: u32 = 0o3;
    const ENTER: u32 = 0o1;
    // The nearest directory that exists, and the parents above it.
    let mut existing: PathBuf = root.to_path_buf();
    let meta = loop {
        match std::fs::metadata(&existing) {
            Ok(meta) => break meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match existing.parent() {
                Some(p) => existing = p.to_path_buf(),
                None => return None,
            },
            Err(e) => {
                return Some((
                    Severity::Warning,
                    format!(
                        "cannot check the mail root {}: {}: {e}",
                        root.display(),
                        existing.display()
                    ),
                ))
            }
        }
    };
    for parent in existing.ancestors().skip(1) {
        if let Ok(m) = std::fs::metadata(parent) {
            if !may(owner, &m, ENTER) {
                return Some((
                    Severity::Error,
                    format!(
                        "{who} cannot enter {}, so not the mail root {} below it",
                        parent.display(),
                        root.display()
                    ),
                ));
            }
        }
    }
    if !meta.is_dir() {
        return Some((
            Severity::Error,
            format!(
                "the mail root {} cannot be made: {} is not a directory",
                root.display(),
                existing.display()
            ),
        ));
    }
    let writable = may(owner, &meta, WRITE_ENTER);
    if existing == root {
        return (!writable).then(|| {
            (
                Severity::Error,
                format!(
                    "{who} cannot write in the mail root {} (owner {}, mode {:04o}): Dovecot \
                     cannot create mail homes there",
                    root.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            )
        });
    }
    Some(if writable {
        (
            Severity::Warning,
            format!(
                "the mail root {} does not exist yet; Dovecot creates it as {who} at the first \
                 login or delivery",
                root.display()
            ),
        )
    } else {
        (
            Severity::Error,
            format!(
                "the mail root {} does not exist, and {who} cannot create it in {}: create it \
                 (install -d -o <uid> -g <gid> {})",
                root.display(),
                existing.display(),
                root.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mailbox(home: &str, uid: &str, gid: &str) -> Mailbox {
        Mailbox {
            home: home.into(),
            uid: uid.into(),
            gid: gid.into(),
        }
    }

    /// A uid and a gid no entry has (the test hosts' ids are small).
    const NOBODYS: &str = "3999999";

    #[test]
    fn permission_bits_come_from_the_owner_group_or_other_triple() {
        let vmail = Owner {
            uid: 5000,
            groups: vec![5000, 8],
        };
        assert_eq!(access_bits(&vmail, 5000, 0, 0o700), 0o7);
        assert_eq!(
            access_bits(&vmail, 5000, 5000, 0o070),
            0o0,
            "owner triple wins"
        );
        assert_eq!(access_bits(&vmail, 0, 8, 0o750), 0o5);
        assert_eq!(access_bits(&vmail, 0, 0, 0o755), 0o5);
        assert_eq!(access_bits(&vmail, 0, 0, 0o1777), 0o7);
        let root = Owner {
            uid: 0,
            groups: vec![],
        };
        assert_eq!(access_bits(&root, 5000, 5000, 0o000), 0o7);
    }

    #[test]
    fn names_that_resolve_and_a_writable_root_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        let home = format!("{}/{{domain}}/{{local}}", dir.path().display());
        assert_eq!(check(&mailbox(&home, "root", "0")), vec![]);
    }

    #[test]
    fn a_name_nobody_has_is_an_error_and_a_bare_number_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let home = format!("{}/{{domain}}/{{local}}", dir.path().display());
        let found = check(&mailbox(
            &home,
            "postern-no-such-user",
            "postern-no-such-group",
        ));
        let keys: Vec<_> = found.iter().map(|f| (f.severity, f.key)).collect();
        assert_eq!(
            keys,
            vec![
                (Severity::Error, "mailbox.uid"),
                (Severity::Error, "mailbox.gid")
            ],
            "{found:#?}"
        );
        assert!(found[0]
            .message
            .starts_with("no user named postern-no-such-user "));
        assert!(found[1]
            .message
            .starts_with("no group named postern-no-such-group "));

        // root may write in the temporary directory: only the ids are told.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let found = check(&mailbox(&home, NOBODYS, NOBODYS));
        assert_eq!(
            found,
            vec![
                Finding {
                    severity: Severity::Warning,
                    key: "mailbox.uid",
                    message: format!(
                        "no user has uid {NOBODYS} on this host (Dovecot accepts it; is it a typo?)"
                    ),
                },
                Finding {
                    severity: Severity::Warning,
                    key: "mailbox.gid",
                    message: format!(
                        "no group has gid {NOBODYS} on this host (Dovecot accepts it; is it a typo?)"
                    ),
                },
            ]
        );
    }

    #[test]
    fn a_mail_root_the_owner_cannot_write_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vmail");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = format!("{}/{{domain}}/{{local}}", root.display());
        let found = check(&mailbox(&home, NOBODYS, NOBODYS));
        let last = found.last().unwrap();
        assert_eq!((last.severity, last.key), (Severity::Error, "mailbox.home"));
        let owner = std::fs::metadata(&root).unwrap().uid();
        assert_eq!(
            last.message,
            format!(
                "uid {NOBODYS} cannot write in the mail root {} (owner {owner}, mode 0755): \
                 Dovecot cannot create mail homes there",
                root.display()
            )
        );
        // Its group may: fine.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o775)).unwrap();
        let gid: u32 = NOBODYS.parse().unwrap();
        nix::unistd::chown(&root, None, Some(Gid::from_raw(gid))).unwrap();
        let found = check(&mailbox(&home, NOBODYS, NOBODYS));
        assert!(found.iter().all(|f| f.key != "mailbox.home"), "{found:#?}");
    }

    #[test]
    fn a_missing_mail_root_is_a_warning_when_dovecot_can_make_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("srv/vmail");
        let home = format!("{}/{{domain}}/{{local}}", root.display());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = check(&mailbox(&home, NOBODYS, NOBODYS));
        let last = found.last().unwrap();
        assert_eq!((last.severity, last.key), (Severity::Error, "mailbox.home"));
        assert_eq!(
            last.message,
            format!(
                "the mail root {} does not exist, and uid {NOBODYS} cannot create it in {}: \
                 create it (install -d -o <uid> -g <gid> {})",
                root.display(),
                dir.path().display(),
                root.display()
            )
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let found = check(&mailbox(&home, NOBODYS, NOBODYS));
        let last = found.last().unwrap();
        assert_eq!(
            (last.severity, last.message.as_str()),
            (
                Severity::Warning,
                format!(
                    "the mail root {} does not exist yet; Dovecot creates it as uid {NOBODYS} \
                     at the first login or delivery",
                    root.display()
                )
                .as_str()
            )
        );
    }
}
