//! Passwords: the rules a new one must meet, argon2id hashing on a bounded pool,
//! verification of hashes imported from other servers, and the verified-credential cache.
//!
//! ```text
//! $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>     what postern stores
//! {SHA512-CRYPT}$6$<salt>$<hash>                    imported (chatmail); re-hashed at next good login
//! $5$...  $2y$...  {BLF-CRYPT}$2y$...               other imported schemes
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::config::{Argon2Config, PasswordRules};

/// A plaintext password. It never prints: `Debug` shows a placeholder and there is no
/// `Display`, so it cannot reach a log line or a panic message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Why a new password was refused; the text says which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be at least {0} characters long")]
    TooShort(usize),
    #[error("the password must be at most {0} characters long")]
    TooLong(usize),
    #[error("the password must contain {0}")]
    Missing(&'static str),
    #[error("the password may not contain control characters")]
    Control,
}

/// Checks a new password against the configured rules.
pub fn check_rules(password: &Password, rules: &PasswordRules) -> Result<(), PasswordError> {
    let p = password.expose();
    let len = p.chars().count();
    if len < rules.min_length {
        return Err(PasswordError::TooShort(rules.min_length));
    }
    if len > rules.max_length {
        return Err(PasswordError::TooLong(rules.max_length));
    }
    if p.chars().any(char::is_control) {
        return Err(PasswordError::Control);
    }
    for class in &rules.require {
        if !p.chars().any(|c| class.matches(c)) {
            return Err(PasswordError::Missing(class.describe()));
        }
    }
    Ok(())
}

/// Every argon2 worker is busy and the queue is full: answer a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks waiting")]
pub struct Busy;

/// What a stored hash said about a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match { rehash: bool },
    Mismatch,
}

/// Hashes and verifies passwords, at most one per core at a time; the rest wait in a
/// bounded queue so a flood of logins cannot pile up unbounded memory (argon2 allocates
/// `memory_kib` per hash in flight).
pub struct Hasher {
    params: Params,
    permits: Semaphore,
    pending: AtomicUsize,
    max_pending: usize,
}

impl Hasher {
    pub fn new(config: &Argon2Config) -> Result<Hasher, argon2::Error> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Hasher {
            params,
            permits: Semaphore::new(cores),
            pending: AtomicUsize::new(0),
            max_pending: config.max_pending,
        })
    }

    /// Hashes a new password as an argon2id PHC string.
    pub async fn hash(&self, password: &Password) -> Result<String, Busy> {
        let params = self.params.clone();
        let password = password.clone();
        self.run(move || hash_with(&params, &password)).await
    }

    /// Checks `password` against a stored hash of any supported scheme.
    pub async fn verify(&self, password: &Password, stored: &str) -> Result<Verdict, Busy> {
        let params = self.params.clone();
        let password = password.clone();
        let stored = stored.to_owned();
        self.run(move || verify_with(&params, &password, &stored))
            .await
    }

    /// The same as `hash`, for callers outside the async runtime (the CLI).
    pub fn hash_blocking(&self, password: &Password) -> String {
        hash_with(&self.params, password)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let waiting = self.pending.fetch_add(1, Ordering::AcqRel);
        let _guard = PendingGuard(&self.pending);
        if waiting >= self.max_pending {
            return Err(Busy);
        }
        let _permit = self.permits.acquire().await.map_err(|_| Busy)?;
        tokio::task::spawn_blocking(work).await.map_err(|_| Busy)
    }
}

struct PendingGuard<'a>(&'a AtomicUsize);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn argon2_with(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_with(params: &Params, password: &Password) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    match argon2_with(params).hash_password(password.expose().as_bytes(), &salt) {
        Ok(hash) => hash.to_string(),
        // Only reachable with a password longer than argon2's 4 GiB limit, which the
        // password rules and every codec's line limit already exclude.
        Err(_) => String::from("!unhashable"),
    }
}

/// Verifies against argon2 PHC strings and the crypt(3) schemes other servers store,
/// with or without Dovecot's `{SCHEME}` prefix. `rehash` is set when the stored hash is
/// not argon2id with the current parameters.
pub fn verify_with(params: &Params, password: &Password, stored: &str) -> Verdict {
    let pw = password.expose();
    let hash = match stored.strip_prefix('{') {
        Some(rest) => rest.split_once('}').map_or(stored, |(_, h)| h),
        None => stored,
    };
    let (ok, current) = if hash.starts_with("$argon2") {
        match PasswordHash::new(hash) {
            Ok(parsed) => {
                let ok = argon2_with(params)
                    .verify_password(pw.as_bytes(), &parsed)
                    .is_ok();
                let current = parsed.algorithm.as_str() == "argon2id"
                    && Params::try_from(&parsed).is_ok_and(|p| {
                        p.m_cost() == params.m_cost()
                            && p.t_cost() == params.t_cost()
                            && p.p_cost() == params.p_cost()
                    });
                (ok, current)
            }
            Err(_) => (false, false),
        }
    } else if hash.starts_with("$6$") {
        (sha_crypt::sha512_check(pw, hash).is_ok(), false)
    } else if hash.starts_with("$5$") {
        (sha_crypt::sha256_check(pw, hash).is_ok(), false)
    } else if hash.starts_with("$2") {
        (bcrypt::verify(pw, hash).unwrap_or(false), false)
    } else {
        (false, false)
    };
    if ok {
        Verdict::Match { rehash: !current }
    } else {
        Verdict::Mismatch
    }
}

/// Remembers (address, password) pairs that argon2 accepted, so the reconnect storms of
/// mobile clients do not pay a hash per login. Entries hold a keyed hash of the pair
/// (random key per process: nothing here can be turned back into a password offline)
/// and a fingerprint of the stored hash they were checked against, so a password change
/// made by another process (the CLI) invalidates them on the next lookup.
pub struct VerifiedCache {
    key: [u8; 32],
    ttl: Duration,
    max_entries: usize,
    map: Mutex<HashMap<String, Vec<Entry>>>,
}

struct Entry {
    tag: [u8; 32],
    stored: [u8; 16],
    until: Instant,
}

type HmacSha256 = Hmac<Sha256>;

impl VerifiedCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        VerifiedCache {
            key,
            ttl,
            max_entries,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, address: &str, password: &Password) -> [u8; 32] {
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else {
            return [0; 32];
        };
        mac.update(address.as_bytes());
        mac.update(&[0]);
        mac.update(password.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn fingerprint(stored: &str) -> [u8; 16] {
        let digest = Sha256::digest(stored.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// True when this pair was verified against this very stored hash within the TTL.
    pub fn check(&self, address: &str, password: &Password, stored: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let tag = self.tag(address, password);
        let fp = Self::fingerprint(stored);
        let now = Instant::now();
        let Ok(map) = self.map.lock() else {
            return false;
        };
        map.get(address).is_some_and(|entries| {
            entries
                .iter()
                .any(|e| e.tag == tag && e.stored == fp && e.until > now)
        })
    }

    pub fn insert(&self, address: &str, password: &Password, stored: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let entry = Entry {
            tag: self.tag(address, password),
            stored: Self::fingerprint(stored),
            until: Instant::now() + self.ttl,
        };
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= self.max_entries && !map.contains_key(address) {
            let now = Instant::now();
            map.retain(|_, v| v.iter().any(|e| e.until > now));
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        let entries = map.entry(address.to_owned()).or_default();
        entries.retain(|e| e.stored == entry.stored && e.tag != entry.tag);
        entries.truncate(3);
        entries.push(entry);
    }

    /// Drops every entry of an account (password change, block, delete).
    pub fn forget(&self, address: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CharClass;

    fn cheap() -> Params {
        Params::new(1024, 1, 1, None).expect("params")
    }

    #[test]
    fn argon2_round_trip_and_rehash_on_cost_change() {
        let pw = Password::new("correct horse");
        let h = hash_with(&cheap(), &pw);
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert_eq!(
            verify_with(&cheap(), &pw, &h),
            Verdict::Match { rehash: false }
        );
        assert_eq!(
            verify_with(&cheap(), &Password::new("wrong horse"), &h),
            Verdict::Mismatch
        );
        let costlier = Params::new(2048, 1, 1, None).expect("params");
        assert_eq!(
            verify_with(&costlier, &pw, &h),
            Verdict::Match { rehash: true }
        );
    }

    #[test]
    fn legacy_schemes_verify_and_ask_for_rehash() {
        let pw = Password::new("hunter2hunter2");
        let sha512 = sha_crypt::sha512_simple(
            pw.expose(),
            &sha_crypt::Sha512Params::new(5000).expect("params"),
        )
        .expect("hash");
        let sha256 = sha_crypt::sha256_simple(
            pw.expose(),
            &sha_crypt::Sha256Params::new(5000).expect("params"),
        )
        .expect("hash");
        let bcrypt = bcrypt::hash(pw.expose(), 4).expect("hash");
        for stored in [
            format!("{{SHA512-CRYPT}}{sha512}"),
            sha512.clone(),
            sha256,
            bcrypt.clone(),
            format!("{{BLF-CRYPT}}{bcrypt}"),
        ] {
            assert_eq!(
                verify_with(&cheap(), &pw, &stored),
                Verdict::Match { rehash: true },
                "{stored}"
            );
            assert_eq!(
                verify_with(&cheap(), &Password::new("nope"), &stored),
                Verdict::Mismatch
            );
        }
        assert_eq!(
            verify_with(&cheap(), &pw, "{PLAIN}hunter2hunter2"),
            Verdict::Mismatch
        );
        assert_eq!(verify_with(&cheap(), &pw, "garbage"), Verdict::Mismatch);
    }

    #[test]
    fn rules_say_which_rule_failed() {
        let mut rules = PasswordRules::default();
        assert_eq!(
            check_rules(&Password::new("short"), &rules),
            Err(PasswordError::TooShort(9))
        );
        assert_eq!(check_rules(&Password::new("long enough"), &rules), Ok(()));
        rules.require = vec![CharClass::Digit, CharClass::Upper];
        assert_eq!(
            check_rules(&Password::new("long enough"), &rules),
            Err(PasswordError::Missing("a digit"))
        );
        assert_eq!(
            check_rules(&Password::new("long enough 9"), &rules),
            Err(PasswordError::Missing("an uppercase letter"))
        );
        assert_eq!(
            check_rules(&Password::new("tab\there 1X"), &rules),
            Err(PasswordError::Control)
        );
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::new("s3cret-value");
        assert!(!format!("{p:?}").contains("s3cret"));
    }

    #[test]
    fn cache_hits_only_the_same_pair_and_stored_hash() {
        let cache = VerifiedCache::new(Duration::from_secs(60), 100);
        let pw = Password::new("pw-one-123");
        cache.insert("a@x.org", &pw, "$argon2id$A");
        assert!(cache.check("a@x.org", &pw, "$argon2id$A"));
        assert!(!cache.check("a@x.org", &Password::new("pw-two-123"), "$argon2id$A"));
        assert!(!cache.check("b@x.org", &pw, "$argon2id$A"));
        // the stored hash changed (password set by the CLI): the entry no longer counts
        assert!(!cache.check("a@x.org", &pw, "$argon2id$B"));
        cache.forget("a@x.org");
        assert!(!cache.check("a@x.org", &pw, "$argon2id$A"));
    }

    #[tokio::test]
    async fn hasher_refuses_beyond_the_queue_bound() {
        let config = Argon2Config {
            memory_kib: 1024,
            iterations: 1,
            max_pending: 1,
            ..Argon2Config::default()
        };
        let hasher = std::sync::Arc::new(Hasher::new(&config).expect("hasher"));
        let pw = Password::new("whatever-123");
        // Hold every permit so requests queue.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let held = hasher
            .permits
            .acquire_many(cores as u32)
            .await
            .expect("permits");
        let h2 = hasher.clone();
        let pw2 = pw.clone();
        let first = tokio::spawn(async move { h2.hash(&pw2).await });
        tokio::task::yield_now().await;
        while hasher.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(hasher.hash(&pw).await, Err(Busy));
        drop(held);
        assert!(first.await.expect("join").is_ok());
    }
}
