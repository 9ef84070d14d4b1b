//! Turns dict commands into accounts-core calls and core answers into dict replies.
//! Key shapes are the only thing this file knows; every decision is the core's.
//!
//! ```text
//! L shared/passdb/<%E-escaped password>"<%E-escaped user>   -> login (may create)
//! L shared/userdb/<user>                                    -> userdb entry
//! I shared/userdb/                                          -> every account
//! S shared/last-login/<user> <unix time>                    -> last login   (in B..C)
//! S priv/quota/storage <bytes> / priv/quota/messages <n>    -> usage of B's user
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::password::Password;
use crate::accounts::{Accounts, LoginContext, LoginOutcome, LoginVia, UsageChange, UserdbEntry};

const PASSDB: &str = "shared/passdb/";
const USERDB: &str = "shared/userdb/";
const LAST_LOGIN: &str = "shared/last-login/";
const QUOTA_BYTES: &str = "priv/quota/storage";
const QUOTA_MESSAGES: &str = "priv/quota/messages";

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A flat JSON object.
    Found(String),
    NotFound,
    /// Temporary failure or a key this service does not serve; the text is for
    /// Dovecot's log and never carries a password.
    Fail(String),
}

/// One write inside a transaction, checked when it arrives and applied at commit.
#[derive(Debug, Clone)]
enum Write {
    LastLogin {
        user: String,
        at: i64,
    },
    Usage {
        user: String,
        change: UsageChange,
    },
    /// A key or value this service does not accept: the commit fails, nothing applies.
    Refused(String),
}

/// The open transactions of one connection.
#[derive(Debug, Default)]
pub struct Transactions {
    open: HashMap<u32, (Option<String>, Vec<Write>)>,
}

/// What a commit came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Ok,
    NotFound,
    Failed(String),
}

/// Most transactions one connection may hold open at once.
const MAX_OPEN_TRANSACTIONS: usize = 64;
/// Most writes one transaction may hold.
const MAX_WRITES: usize = 64;

/// The dict service; one per process, shared by every connection.
pub struct DictHandler {
    accounts: Arc<Accounts>,
}

impl DictHandler {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        DictHandler { accounts }
    }

    pub async fn lookup(&self, key: &str) -> Lookup {
        if let Some(rest) = key.strip_prefix(PASSDB) {
            let Some((password, user)) = split_passdb_key(rest) else {
                return Lookup::Fail("passdb key must be passdb/%Ew\"%Eu".into());
            };
            let ctx = LoginContext {
                service: "dovecot",
                remote_ip: None,
                via: LoginVia::Dict,
            };
            // Boxed: a login's future is large, and unboxed every dict connection's task
            // (userdb lookups, nearly all of them) would be that large and copied whole.
            return match Box::pin(self.accounts.login(&user, &password, ctx)).await {
                Ok(LoginOutcome::Accepted { address, .. }) => Lookup::Found(
                    serde_json::json!({ "nopassword": "Y", "user": address }).to_string(),
                ),
                Ok(LoginOutcome::Refused(_)) => Lookup::NotFound,
                Err(e) => Lookup::Fail(format!("temporary failure: {e}")),
            };
        }
        if let Some(user) = key.strip_prefix(USERDB) {
            return match self.accounts.userdb(user).await {
                Ok(Some(entry)) => Lookup::Found(userdb_json(&entry)),
                Ok(None) => Lookup::NotFound,
                Err(e) => Lookup::Fail(format!("temporary failure: {e}")),
            };
        }
        Lookup::Fail("unknown key".into())
    }

    /// The rows of an iteration, or a failure text. Only `shared/userdb/` is served.
    pub async fn iterate(&self, path: &str) -> Result<Vec<(String, String)>, String> {
        if path != USERDB {
            return Err("unknown iteration path".into());
        }
        self.accounts
            .userdb_list()
            .await
            .map(|all| {
                all.into_iter()
                    .map(|a| (format!("{USERDB}{a}"), String::new()))
                    .collect()
            })
            .map_err(|e| format!("temporary failure: {e}"))
    }

    pub fn begin(
        &self,
        tx: &mut Transactions,
        id: u32,
        user: Option<String>,
    ) -> Result<(), String> {
        if tx.open.len() >= MAX_OPEN_TRANSACTIONS && !tx.open.contains_key(&id) {
            return Err("too many open transactions".into());
        }
        tx.open
            .insert(id, (user.filter(|u| !u.is_empty()), Vec::new()));
        Ok(())
    }

    /// Records a set or increment; false when the transaction is unknown.
    pub fn write(&self, tx: &mut Transactions, id: u32, key: &str, value: WriteValue<'_>) -> bool {
        let Some((user, writes)) = tx.open.get_mut(&id) else {
            return false;
        };
        if writes.len() >= MAX_WRITES {
            writes.push(Write::Refused("too many writes".into()));
            return true;
        }
        writes.push(classify(user.as_deref(), key, value));
        true
    }

    pub fn rollback(&self, tx: &mut Transactions, id: u32) {
        tx.open.remove(&id);
    }

    /// Applies a transaction's writes, all or (if any was refused) none.
    pub async fn commit(&self, tx: &mut Transactions, id: u32) -> Committed {
        let Some((_, writes)) = tx.open.remove(&id) else {
            return Committed::Failed("unknown transaction".into());
        };
        if let Some(Write::Refused(why)) = writes.iter().find(|w| matches!(w, Write::Refused(_))) {
            return Committed::Failed(why.clone());
        }
        let mut found_all = true;
        for write in writes {
            let applied = match write {
                Write::LastLogin { user, at } => self.accounts.note_last_login(&user, at).await,
                Write::Usage { user, change } => self.accounts.note_usage(&user, change).await,
                Write::Refused(_) => Ok(true),
            };
            match applied {
                Ok(found) => found_all &= found,
                Err(e) => return Committed::Failed(format!("temporary failure: {e}")),
            }
        }
        if found_all {
            Committed::Ok
        } else {
            Committed::NotFound
        }
    }
}

/// The value of a set (`S`) or atomic increment (`A`).
#[derive(Debug, Clone, Copy)]
pub enum WriteValue<'a> {
    Set(&'a str),
    Add(i64),
    Unset,
}

fn classify(user: Option<&str>, key: &str, value: WriteValue<'_>) -> Write {
    if let Some(who) = key.strip_prefix(LAST_LOGIN) {
        return match value {
            WriteValue::Set(v) => match v.trim().parse::<i64>() {
                Ok(at) => Write::LastLogin {
                    user: who.to_owned(),
                    at,
                },
                Err(_) => Write::Refused("last-login value is not a Unix time".into()),
            },
            _ => Write::Refused("last-login only takes a set".into()),
        };
    }
    let (is_bytes, is_messages) = (key == QUOTA_BYTES, key == QUOTA_MESSAGES);
    if !(is_bytes || is_messages) {
        return Write::Refused("unknown key".into());
    }
    let Some(user) = user else {
        return Write::Refused("quota keys need the transaction's user".into());
    };
    let change = match value {
        WriteValue::Set(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => UsageChange::Set {
                bytes: is_bytes.then_some(n),
                messages: is_messages.then_some(n),
            },
            _ => return Write::Refused("quota value is not a count".into()),
        },
        WriteValue::Add(n) => UsageChange::Add {
            bytes: if is_bytes { n } else { 0 },
            messages: if is_messages { n } else { 0 },
        },
        WriteValue::Unset => UsageChange::Set {
            bytes: is_bytes.then_some(0),
            messages: is_messages.then_some(0),
        },
    };
    Write::Usage {
        user: user.to_owned(),
        change,
    }
}

/// Splits `<password>"<user>` (both `%E`-escaped: `\` before `"`, `'` and `\`) at the
/// first unescaped `"`, undoing the escapes.
pub fn split_passdb_key(rest: &str) -> Option<(Password, String)> {
    let mut password = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next()? {
            '\\' => password.push(chars.next()?),
            '"' => break,
            c => password.push(c),
        }
    }
    let mut user = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => user.push(chars.next()?),
            c => user.push(c),
        }
    }
    Some((Password::new(password), user))
}

/// The userdb fields as Dovecot reads them from a dict value, keys in name order.
#[derive(serde::Serialize)]
struct UserdbJson<'a> {
    gid: &'a str,
    home: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_rule: Option<String>,
    uid: &'a str,
    user: &'a str,
}

fn userdb_json(entry: &UserdbEntry) -> String {
    let json = UserdbJson {
        gid: &entry.gid,
        home: entry.home.to_string_lossy(),
        quota_rule: entry.quota_bytes.map(|b| format!("*:storage={b}B")),
        uid: &entry.uid,
        user: &entry.address,
    };
    // Only strings in a struct: serializing cannot fail.
    serde_json::to_string(&json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passdb_key_unescapes_both_halves() {
        let (pw, user) = split_passdb_key(r#"a\\b\"c\'d / e"alice@example.org"#).expect("split");
        assert_eq!(pw.expose(), r#"a\b"c'd / e"#);
        assert_eq!(user, "alice@example.org");
        let (pw, user) = split_passdb_key(r#""bob@example.org"#).expect("split");
        assert_eq!((pw.expose(), user.as_str()), ("", "bob@example.org"));
        assert!(split_passdb_key("no-separator").is_none());
        assert!(split_passdb_key("dangling\\").is_none());
    }

    #[test]
    fn quota_rule_only_when_limited() {
        let mut e = UserdbEntry {
            address: "a@x.org".into(),
            home: "/var/vmail/x.org/a".into(),
            uid: "vmail".into(),
            gid: "vmail".into(),
            quota_bytes: Some(1024),
        };
        assert_eq!(
            userdb_json(&e),
            r#"{"gid":"vmail","home":"/var/vmail/x.org/a","quota_rule":"*:storage=1024B","uid":"vmail","user":"a@x.org"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&userdb_json(&e)).expect("json");
        assert_eq!(v["quota_rule"], "*:storage=1024B");
        assert_eq!(v["home"], "/var/vmail/x.org/a");
        e.quota_bytes = None;
        let v: serde_json::Value = serde_json::from_str(&userdb_json(&e)).expect("json");
        assert!(v.get("quota_rule").is_none());
    }
}
