//! Passwords: the rules a new one must meet, argon2id hashing on a bounded pool,
//! verification of hashes imported from other servers, and the verified-credential cache.
//!
//! ```text
//! $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>     what postern stores
//! {SHA512-CRYPT}$6$<salt>$<hash>                    imported (chatmail); re-hashed at next good login
//! $5$...  $2y$...  {BLF-CRYPT}$2y$...               other imported schemes
//! sha256:<salt b64>:<SHA-256(salt + password) b64>  madmail's default (imported)
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

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

/// The hasher could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HasherError {
    #[error("argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("cannot start argon2 workers: {0}")]
    Spawn(std::io::Error),
}

/// What a stored hash said about a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match { rehash: bool },
    Mismatch,
}

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on its own threads, one per core, fed by a bounded
/// queue: at most one hash per core runs at a time, a flood of logins waits in the queue
/// or (beyond `max_pending`) is refused at once. Dedicated threads also keep argon2's
/// large buffers in a fixed set of allocator arenas instead of one per blocking thread,
/// which is what keeps resident memory bounded.
pub struct Hasher {
    params: Params,
    queue: SyncSender<Job>,
    /// Password verifications started (real or dummy hash): what the tests count.
    verifications: AtomicU64,
}

impl Hasher {
    pub fn new(config: &Argon2Config) -> Result<Hasher, HasherError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_workers(config, cores)
    }

    fn with_workers(config: &Argon2Config, workers: usize) -> Result<Hasher, HasherError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(HasherError::Params)?;
        let (queue, jobs) = sync_channel::<Job>(config.max_pending);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..workers.max(1) {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name("postern-argon2".into())
                .spawn(move || loop {
                    // The lock is held only while taking a job, never while hashing.
                    let next = match jobs.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match next {
                        Ok(job) => job(),
                        Err(_) => return, // the Hasher is gone
                    }
                })
                .map_err(HasherError::Spawn)?;
        }
        Ok(Hasher {
            params,
            queue,
            verifications: AtomicU64::new(0),
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
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.run(move || verify_with(&params, &password, &stored))
            .await
    }

    /// How many verifications this hasher has been asked for since it started.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The same as `hash`, on the calling thread (the CLI, the load tool).
    pub fn hash_blocking(&self, password: &Password) -> String {
        hash_with(&self.params, password)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let metrics = crate::metrics::get();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            metrics.argon2_queued.fetch_sub(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let done = work();
            metrics.argon2_seconds.observe(started.elapsed());
            metrics.argon2_hashes.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(done);
        });
        // Counted before it is sent, so a worker never takes the depth below zero.
        metrics.argon2_queued.fetch_add(1, Ordering::Relaxed);
        if self.queue.try_send(job).is_err() {
            metrics.argon2_queued.fetch_sub(1, Ordering::Relaxed);
            metrics.argon2_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Busy);
        }
        rx.await.map_err(|_| Busy)
    }
}

fn argon2_with(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

thread_local! {
    /// Each argon2 worker's memory, allocated once and reused for every hash, so the
    /// process holds `workers x memory_kib` for argon2 no matter how many logins it has
    /// served (the allocator would otherwise keep freed 19 MiB buffers around).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs argon2 over this thread's reusable blocks; a hash that needs more memory than
/// the configured cost (an imported one) gets a buffer of its own, freed afterwards.
fn with_blocks<T>(needed: usize, retain: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    if needed > retain {
        let mut own = vec![Block::default(); needed];
        return f(&mut own);
    }
    BLOCKS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut blocks) => {
            if blocks.len() < needed {
                blocks.resize(needed, Block::default());
            }
            f(&mut blocks[..needed])
        }
        Err(_) => f(&mut vec![Block::default(); needed]),
    })
}

/// Computes argon2 for `password` and `salt` into `out` (argon2id of the given params,
/// or whatever `argon2` is set up for).
fn compute(
    argon2: &Argon2<'_>,
    params: &Params,
    retain: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> bool {
    with_blocks(params.block_count(), retain, |blocks| {
        argon2
            .hash_password_into_with_memory(password, salt, out, blocks)
            .is_ok()
    })
}

fn hash_with(params: &Params, password: &Password) -> String {
    let phc = || -> Option<String> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_buf).ok()?;
        let mut out = [0u8; 32];
        let argon2 = argon2_with(params);
        if !compute(
            &argon2,
            params,
            params.block_count(),
            password.expose().as_bytes(),
            salt_bytes,
            &mut out,
        ) {
            return None;
        }
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params).ok()?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).ok()?),
        };
        Some(hash.to_string())
    };
    // Unreachable with valid parameters and a password within the rules' limits; a
    // hash that matches nothing is the safe answer if it ever happens.
    phc().unwrap_or_else(|| String::from("!unhashable"))
}

/// Checks an argon2 PHC string; `current` tells whether it is argon2id with `params`.
fn verify_argon2(params: &Params, password: &Password, hash: &str) -> (bool, bool) {
    let check = || -> Option<(bool, bool)> {
        let parsed = PasswordHash::new(hash).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let their = Params::try_from(&parsed).ok()?;
        let expected = parsed.hash?;
        let mut salt_buf = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
        let mut out = vec![0u8; expected.len()];
        let argon2 = Argon2::new(algorithm, version, their.clone());
        if !compute(
            &argon2,
            &their,
            params.block_count(),
            password.expose().as_bytes(),
            salt,
            &mut out,
        ) {
            return None;
        }
        // Output's equality is constant-time.
        let ok = Output::new(&out).ok()? == expected;
        let current = algorithm == Algorithm::Argon2id
            && version == Version::V0x13
            && their.m_cost() == params.m_cost()
            && their.t_cost() == params.t_cost()
            && their.p_cost() == params.p_cost();
        Some((ok, current))
    };
    check().unwrap_or((false, false))
}

/// Whether `stored` is a hash `verify_with` knows (for imports).
pub fn looks_like_supported_hash(stored: &str) -> bool {
    let hash = match stored.strip_prefix('{') {
        Some(rest) => rest.split_once('}').map_or(stored, |(_, h)| h),
        None => stored,
    };
    if hash.starts_with("$argon2") {
        return PasswordHash::new(hash).is_ok();
    }
    if let Some(rest) = hash.strip_prefix("sha256:") {
        return madmail_sha256(rest).is_some();
    }
    ["$6$", "$5$", "$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| hash.starts_with(p) && hash.len() > p.len() + 8)
}

/// The salt and digest of madmail's `sha256:<salt>:<digest>` (both standard base64; the
/// digest is SHA-256 of the salt followed by the password).
fn madmail_sha256(rest: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    let (salt, digest) = rest.split_once(':')?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (salt, digest) = (b64.decode(salt).ok()?, b64.decode(digest).ok()?);
    (!salt.is_empty() && digest.len() == 32).then_some((salt, digest))
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
        verify_argon2(params, password, hash)
    } else if hash.starts_with("$6$") {
        (sha_crypt::sha512_check(pw, hash).is_ok(), false)
    } else if hash.starts_with("$5$") {
        (sha_crypt::sha256_check(pw, hash).is_ok(), false)
    } else if hash.starts_with("$2") {
        (bcrypt::verify(pw, hash).unwrap_or(false), false)
    } else if let Some(rest) = hash.strip_prefix("sha256:") {
        let ok = madmail_sha256(rest).is_some_and(|(salt, digest)| {
            let mut h = Sha256::new();
            h.update(&salt);
            h.update(pw.as_bytes());
            bool::from(subtle::ConstantTimeEq::ct_eq(
                &h.finalize()[..],
                &digest[..],
            ))
        });
        (ok, false)
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
/// made by another process (the CLI) invalidates them on the next lookup. Each hit
/// renews an entry for `ttl` (a device in use stays known), but never beyond `max_age`
/// after the argon2 check that made it.
pub struct VerifiedCache {
    /// HMAC-SHA256 under a random key, its key blocks already absorbed: each tag
    /// clones it.
    keyed: HmacSha256,
    ttl: Duration,
    max_age: Duration,
    max_entries: usize,
    map: Mutex<HashMap<String, Vec<Entry>>>,
}

struct Entry {
    tag: [u8; 32],
    stored: [u8; 16],
    until: Instant,
    /// `until` is never renewed past this.
    cap: Instant,
}

type HmacSha256 = Hmac<Sha256>;

impl VerifiedCache {
    pub fn new(ttl: Duration, max_age: Duration, max_entries: usize) -> Self {
        // One block of key: HMAC uses it as it is, so taking it cannot fail.
        let mut key = [0u8; 64];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let keyed = <HmacSha256 as hmac::digest::KeyInit>::new(&key.into());
        VerifiedCache {
            keyed,
            ttl,
            max_age: max_age.max(ttl),
            max_entries,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, address: &str, password: &Password) -> [u8; 32] {
        let mut mac = self.keyed.clone();
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

    /// True when this pair was verified against this very stored hash and used within
    /// the TTL since; a hit renews the entry.
    pub fn check(&self, address: &str, password: &Password, stored: &str) -> bool {
        self.check_at(address, password, stored, Instant::now())
    }

    fn check_at(&self, address: &str, password: &Password, stored: &str, now: Instant) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let tag = self.tag(address, password);
        let fp = Self::fingerprint(stored);
        let Ok(mut map) = self.map.lock() else {
            return false;
        };
        let Some(entries) = map.get_mut(address) else {
            return false;
        };
        match entries
            .iter_mut()
            .find(|e| e.tag == tag && e.stored == fp && e.until > now)
        {
            Some(e) => {
                e.until = (now + self.ttl).min(e.cap);
                true
            }
            None => false,
        }
    }

    pub fn insert(&self, address: &str, password: &Password, stored: &str) {
        self.insert_at(address, password, stored, Instant::now());
    }

    fn insert_at(&self, address: &str, password: &Password, stored: &str, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let entry = Entry {
            tag: self.tag(address, password),
            stored: Self::fingerprint(stored),
            until: now + self.ttl,
            cap: now + self.max_age,
        };
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= self.max_entries && !map.contains_key(address) {
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

    /// A keyed digest of a stored hash (this process's key): it tells whether the
    /// password changed since, without the hash leaving the core.
    pub fn credential_tag(&self, stored: &str) -> [u8; 16] {
        let mut mac = self.keyed.clone();
        mac.update(b"credential\0");
        mac.update(stored.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        out
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
    fn phc_strings_interoperate_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let pw = Password::new("interop password");
        let ours = hash_with(&cheap(), &pw);
        let parsed = PasswordHash::new(&ours).expect("valid PHC");
        assert!(argon2_with(&cheap())
            .verify_password(pw.expose().as_bytes(), &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = argon2_with(&cheap())
            .hash_password(pw.expose().as_bytes(), &salt)
            .expect("hash")
            .to_string();
        assert_eq!(
            verify_with(&cheap(), &pw, &theirs),
            Verdict::Match { rehash: false }
        );
        // argon2i / a bigger memory cost than ours: verified, and due for a re-hash.
        let big = Params::new(4096, 1, 1, None).expect("params");
        let other = Argon2::new(Algorithm::Argon2i, Version::V0x13, big)
            .hash_password(pw.expose().as_bytes(), &salt)
            .expect("hash")
            .to_string();
        assert_eq!(
            verify_with(&cheap(), &pw, &other),
            Verdict::Match { rehash: true }
        );
        assert_eq!(
            verify_with(&cheap(), &Password::new("nope"), &other),
            Verdict::Mismatch
        );
        assert_eq!(
            verify_with(&cheap(), &pw, "$argon2id$v=19$m=1024,t=1,p=1$garbage"),
            Verdict::Mismatch
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
        let madmail = {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD;
            let salt = b"0123456789abcdef";
            let digest = Sha256::new()
                .chain_update(salt)
                .chain_update(pw.expose())
                .finalize();
            format!("sha256:{}:{}", b64.encode(salt), b64.encode(digest))
        };
        assert!(looks_like_supported_hash(&madmail));
        assert!(!looks_like_supported_hash("sha256:c2FsdA==:dG9vc2hvcnQ="));
        for stored in [
            madmail,
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
        let cache = VerifiedCache::new(Duration::from_secs(60), Duration::from_secs(60), 100);
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

    // A cached login expired `cache_ttl` after its argon2 check however often it was
    // used, so guessing that kept the account throttled then locked the owner out.
    #[test]
    fn cache_entry_renewed_on_use_until_its_absolute_cap() {
        let minute = Duration::from_secs(60);
        let cache = VerifiedCache::new(minute, 5 * minute, 100);
        let pw = Password::new("pw-one-123");
        let t0 = Instant::now();
        cache.insert_at("a@x.org", &pw, "$h", t0);
        // Used every 50 s: still known after four minutes, past the 60 s TTL.
        for i in 1..=4u32 {
            assert!(cache.check_at("a@x.org", &pw, "$h", t0 + i * 50 * Duration::from_secs(1)));
        }
        // Unused for longer than the TTL: forgotten.
        assert!(!cache.check_at(
            "a@x.org",
            &pw,
            "$h",
            t0 + 200 * Duration::from_secs(1) + 2 * minute
        ));
        // In use, but the absolute cap ends it.
        cache.insert_at("b@x.org", &pw, "$h", t0);
        let mut t = t0;
        while t < t0 + 5 * minute - Duration::from_secs(30) {
            t += Duration::from_secs(30);
            assert!(cache.check_at("b@x.org", &pw, "$h", t));
        }
        assert!(!cache.check_at(
            "b@x.org",
            &pw,
            "$h",
            t0 + 5 * minute + Duration::from_secs(1)
        ));
    }

    #[tokio::test]
    async fn hasher_refuses_beyond_the_queue_bound() {
        let config = Argon2Config {
            memory_kib: 1024,
            iterations: 1,
            max_pending: 1,
            ..Argon2Config::default()
        };
        let hasher = Arc::new(Hasher::with_workers(&config, 1).expect("hasher"));
        // Occupy the only worker until told to go on.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        hasher
            .queue
            .try_send(Box::new(move || {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            }))
            .expect("queue has room");
        started_rx.recv().expect("worker started");
        // One job fits in the queue; the next is refused at once, without waiting.
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        hasher
            .queue
            .try_send(Box::new(move || {
                let _ = ran_tx.send(());
            }))
            .expect("one queued job fits");
        let pw = Password::new("whatever-123");
        assert_eq!(hasher.hash(&pw).await, Err(Busy));
        release_tx.send(()).expect("release");
        ran_rx.recv().expect("the queued job ran");
        assert!(hasher.hash(&pw).await.is_ok(), "free again");
    }
}
