//! The daemon's counters, gauges and histograms, and their exposition for Prometheus.
//! Every series lives in one process-wide [`Metrics`], made of plain atomics with their
//! label values fixed in advance: counting is an atomic add (no lock, no allocation, no
//! map lookup), so the core, the store and the connection pools count on their hot
//! paths. The `prometheus-client` crate writes the exposition at each scrape, in the
//! Prometheus text format or, when the scraper asks for it, in OpenMetrics.
//!
//! No label carries an address, an IP or a token: every label value is one of the fixed
//! words below, so no-log mode changes nothing here.
//!
//! ```text
//! # TYPE postern_logins_total counter
//! postern_logins_total{service="dict",result="ok"} 3
//! # TYPE postern_argon2_hash_duration_seconds histogram
//! postern_argon2_hash_duration_seconds_bucket{le="0.05"} 2
//! # TYPE postern_build_info gauge
//! postern_build_info{version="0.1.0"} 1
//! ```

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The values of one label: an enum whose variants are the only words its family counts
/// under, in exposition order. A call site names a variant, so it cannot count under a
/// word the family does not list (such counts used to be dropped silently).
macro_rules! label_values {
    (
        $(#[$doc:meta])*
        $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)* }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// The label words, indexed by `variant as usize`.
            pub const WORDS: &'static [&'static str] = &[$($word,)*];
            const COUNT: usize = $name::WORDS.len();

            pub fn as_str(self) -> &'static str {
                $name::WORDS[self as usize]
            }
        }
    };
}

label_values! {
    /// Which adapter a login came through (the `service` label of `postern_logins_total`).
    LoginVia {
        /// Dovecot's passdb over the dict proxy (IMAP, POP3, ...).
        Dict = "dict",
        /// Dovecot's auth protocol, for Postfix SMTP AUTH.
        Sasl = "sasl",
        /// Dovecot 2.4's Lua passdb over the loopback auth API.
        LuaApi = "lua_api",
        /// The admin page's sign-in.
        Admin = "admin",
        /// The owner's self-service page (`/account`) and its JSON endpoints.
        Account = "account",
    }
}

label_values! {
    /// How a login ended (the `result` label of `postern_logins_total`).
    LoginResult {
        Ok = "ok",
        BadPassword = "bad_password",
        Blocked = "blocked",
        Unknown = "unknown",
        Throttled = "throttled",
        Invalid = "invalid",
        TempFail = "temp_fail",
    }
}

label_values! {
    /// How an account was made (the `route` label of `postern_accounts_created_total`).
    CreationRoute {
        Jit = "jit",
        Web = "web",
        Invite = "invite",
        Cli = "cli",
        Admin = "admin",
        Import = "import",
    }
}

label_values! {
    /// Why a sign-up was refused (the `reason` label of `postern_signups_refused_total`).
    SignupRefusal {
        Closed = "closed",
        InviteRequired = "invite_required",
        InviteInvalid = "invite_invalid",
        Address = "address",
        Password = "password",
        Taken = "taken",
        Limited = "limited",
        Paused = "paused",
        TempFail = "temp_fail",
    }
}

label_values! {
    /// What a policy request was answered with (the `action` label of
    /// `postern_policy_decisions_total`).
    PolicyAction {
        Dunno = "dunno",
        RejectBlocked = "reject_blocked",
        RejectUnknown = "reject_unknown",
        Full = "full",
        SenderBlocked = "sender_blocked",
        Rate = "rate",
        Defer = "defer",
    }
}

/// The `listen.*` keys, in the order of `server::listeners()`.
pub const LISTENERS: [&str; 7] = [
    "dict",
    "auth",
    "policy",
    "http",
    "http_socket",
    "auth_http",
    "metrics",
];

/// Upper bounds of the argon2 histogram, in seconds (a hash takes tens of milliseconds).
const HASH_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Upper bounds of the store histogram, in seconds (a point read takes microseconds).
const STORE_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];

/// Every series of the process.
#[derive(Debug)]
pub struct Metrics {
    started: SystemTime,
    logins: [[AtomicU64; LoginResult::COUNT]; LoginVia::COUNT],
    jit_created: AtomicU64,
    created: [AtomicU64; CreationRoute::COUNT],
    signups_refused: [AtomicU64; SignupRefusal::COUNT],
    policy: [AtomicU64; PolicyAction::COUNT],
    /// argon2 computations: hashes of new passwords and verifications alike.
    pub argon2_hashes: AtomicU64,
    pub argon2_queued: AtomicI64,
    pub argon2_refused: AtomicU64,
    pub argon2_seconds: Histogram,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Store operations, registered by their first call ([`store_op`]).
    store_ops: Mutex<Vec<&'static StoreOp>>,
    pub store_busy_retries: AtomicU64,
    listeners: [ListenerStats; LISTENERS.len()],
    /// Bumped by each configuration reload that was applied (1 at start).
    pub config_generation: AtomicU64,
    /// Counts read from the database, refreshed by the core (see [`Counts`]).
    pub counts: Counts,
}

/// One listener's connections.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections open now.
    pub open: AtomicI64,
    /// Newcomers that found every place taken (the longest-idle connection was closed
    /// for them, or they waited for a place).
    pub at_cap: AtomicU64,
}

/// One store operation's calls, failures and time.
#[derive(Debug)]
pub struct StoreOp {
    name: &'static str,
    calls: AtomicU64,
    errors: AtomicU64,
    seconds: Histogram,
}

impl StoreOp {
    /// Counts one call that began at `started`, and its failure.
    pub fn record(&self, started: Instant, failed: bool) {
        self.seconds.observe(started.elapsed());
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The handle of the store operation `name`, made at its first call (each call site
/// keeps it in a `OnceLock`, so later calls take no lock).
pub fn store_op(name: &'static str) -> &'static StoreOp {
    let mut ops = get()
        .store_ops
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(op) = ops.iter().find(|op| op.name == name) {
        return op;
    }
    let op: &'static StoreOp = Box::leak(Box::new(StoreOp {
        name,
        calls: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        seconds: Histogram::new(STORE_BOUNDS),
    }));
    ops.push(op);
    op
}

/// Database counts for the gauges. A scrape never scans a table: the core refreshes
/// these from one `stats` read when they are older than [`Counts::TTL`] (or marked
/// stale by a creation in this process), and a scrape shows what they hold.
#[derive(Debug, Default)]
pub struct Counts {
    pub accounts: AtomicI64,
    pub blocked: AtomicI64,
    pub admins: AtomicI64,
    pub invites: AtomicI64,
    pub homes_queued: AtomicI64,
    /// Milliseconds after the process start of the last refresh; 0: never.
    refreshed_ms: AtomicU64,
    stale: AtomicBool,
}

impl Counts {
    /// How long a refresh serves scrapes.
    pub const TTL: Duration = Duration::from_secs(15);

    /// Whether the counts must be read again.
    pub fn due(&self) -> bool {
        let at = self.refreshed_ms.load(Ordering::Relaxed);
        at == 0
            || self.stale.load(Ordering::Relaxed)
            || since_start_ms().saturating_sub(at) >= Self::TTL.as_millis() as u64
    }

    /// Something changed the counts: read them at the next scrape.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// New counts read from the database.
    pub fn set(&self, accounts: i64, blocked: i64, admins: i64, invites: i64, homes: i64) {
        self.stale.store(false, Ordering::Relaxed);
        self.accounts.store(accounts, Ordering::Relaxed);
        self.blocked.store(blocked, Ordering::Relaxed);
        self.admins.store(admins, Ordering::Relaxed);
        self.invites.store(invites, Ordering::Relaxed);
        self.homes_queued.store(homes, Ordering::Relaxed);
        self.refreshed_ms
            .store(since_start_ms().max(1), Ordering::Relaxed);
    }

    fn known(&self) -> bool {
        self.refreshed_ms.load(Ordering::Relaxed) != 0
    }
}

static PROCESS_START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn since_start_ms() -> u64 {
    u64::try_from(PROCESS_START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn index_of(words: &[&str], word: &str) -> Option<usize> {
    words.iter().position(|w| *w == word)
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    fn new() -> Metrics {
        LazyLock::force(&PROCESS_START);
        Metrics {
            started: SystemTime::now(),
            logins: Default::default(),
            jit_created: AtomicU64::new(0),
            created: Default::default(),
            signups_refused: Default::default(),
            policy: Default::default(),
            argon2_hashes: AtomicU64::new(0),
            argon2_queued: AtomicI64::new(0),
            argon2_refused: AtomicU64::new(0),
            argon2_seconds: Histogram::new(HASH_BOUNDS),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            store_ops: Mutex::new(Vec::new()),
            store_busy_retries: AtomicU64::new(0),
            listeners: Default::default(),
            config_generation: AtomicU64::new(1),
            counts: Counts::default(),
        }
    }

    /// When the process started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// A login through `via` ended with `result`.
    pub fn login(&self, via: LoginVia, result: LoginResult) {
        inc(&self.logins[via as usize][result as usize]);
    }

    /// A login's verified-credential cache lookup hit or missed.
    pub fn verify_cache(&self, hit: bool) {
        inc(if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        });
    }

    /// An account was created by a login (just in time).
    pub fn jit_created(&self) {
        inc(&self.jit_created);
    }

    /// `n` accounts were created by `route`.
    pub fn accounts_created(&self, route: CreationRoute, n: u64) {
        self.created[route as usize].fetch_add(n, Ordering::Relaxed);
        self.counts.mark_stale();
    }

    /// A sign-up was refused for `reason`.
    pub fn signup_refused(&self, reason: SignupRefusal) {
        inc(&self.signups_refused[reason as usize]);
    }

    /// A policy request was answered with `action`.
    pub fn policy(&self, action: PolicyAction) {
        inc(&self.policy[action as usize]);
    }

    /// The connection counts of the listener configured by `listen.<key>`.
    pub fn listener(&self, key: &str) -> Option<&ListenerStats> {
        index_of(&LISTENERS, key).map(|i| &self.listeners[i])
    }

    /// The value of one login counter (tests, `postern status`).
    pub fn logins(&self, via: LoginVia, result: LoginResult) -> u64 {
        load(&self.logins[via as usize][result as usize])
    }

    /// The exposition in the Prometheus text format, or OpenMetrics when `openmetrics`.
    pub fn encode(&'static self, openmetrics: bool) -> String {
        let mut registry = Registry::with_prefix("postern");
        registry.register_collector(Box::new(Exposition(self)));
        let mut out = String::with_capacity(16 * 1024);
        let written = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        };
        // Writing into a String does not fail; an encoder error would be a bug in a
        // label, and the scrape then shows what was written before it.
        let _ = written;
        out
    }
}

/// Whether a scraper's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept
        .split(',')
        .filter_map(|part| {
            let mut params = part.split(';').map(str::trim);
            let kind = params.next()?;
            let q = params
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((kind, q))
        })
        .filter(|(_, q)| *q > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .is_some_and(|(kind, _)| kind == "application/openmetrics-text")
}

// ----- histograms ------------------------------------------------------------------------

/// A histogram of durations with fixed buckets, each an atomic: observing takes no lock
/// (prometheus-client's own histogram takes a mutex per observation).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then +Inf; not cumulative.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many durations were observed.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so the +Inf bucket always equals it even while
        // observations land during the scrape.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

// ----- the exposition --------------------------------------------------------------------

/// Writes every series of [`Metrics`] at a scrape.
#[derive(Debug)]
struct Exposition(&'static Metrics);

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn counter(encoder: &mut MetricEncoder, v: u64) -> Result<(), std::fmt::Error> {
    encoder.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A counter family with one label whose values are `words`.
fn counters(
    d: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    words: &[&str],
    values: &[AtomicU64],
) -> Result<(), std::fmt::Error> {
    let mut e = d.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (word, v) in words.iter().zip(values) {
        let labels = [(label, *word)];
        counter(&mut e.encode_family(&labels)?, load(v))?;
    }
    Ok(())
}

fn one_counter(
    d: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    counter(
        &mut d.encode_descriptor(name, help, None, MetricType::Counter)?,
        v,
    )
}

fn one_gauge(
    d: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    d.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

impl Collector for Exposition {
    fn encode(&self, mut d: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.0;
        let d = &mut d;
        {
            let mut e = d.encode_descriptor(
                "logins",
                "Logins checked, by the adapter they came through and their result",
                None,
                MetricType::Counter,
            )?;
            for (service, row) in LoginVia::WORDS.iter().zip(&m.logins) {
                for (result, v) in LoginResult::WORDS.iter().zip(row) {
                    let labels = [("service", *service), ("result", *result)];
                    counter(&mut e.encode_family(&labels)?, load(v))?;
                }
            }
        }
        one_counter(
            d,
            "jit_creations",
            "Accounts created just in time by a login",
            load(&m.jit_created),
        )?;
        counters(
            d,
            "accounts_created",
            "Accounts created, by route",
            "route",
            CreationRoute::WORDS,
            &m.created,
        )?;
        counters(
            d,
            "signups_refused",
            "Sign-ups refused, by reason",
            "reason",
            SignupRefusal::WORDS,
            &m.signups_refused,
        )?;
        counters(
            d,
            "policy_decisions",
            "Postfix policy requests answered, by action",
            "action",
            PolicyAction::WORDS,
            &m.policy,
        )?;
        one_counter(
            d,
            "argon2_hashes",
            "argon2 hashes computed (new passwords and verifications)",
            load(&m.argon2_hashes),
        )?;
        one_gauge(
            d,
            "argon2_queue_depth",
            "argon2 jobs waiting for a hashing thread",
            m.argon2_queued.load(Ordering::Relaxed).max(0),
        )?;
        one_counter(
            d,
            "argon2_refused",
            "argon2 jobs refused because the queue was full",
            load(&m.argon2_refused),
        )?;
        m.argon2_seconds.encode(d.encode_descriptor(
            "argon2_hash_duration",
            "Time to compute one argon2 hash",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?)?;
        one_counter(
            d,
            "verify_cache_hits",
            "Logins answered from the verified-credential cache",
            load(&m.cache_hits),
        )?;
        one_counter(
            d,
            "verify_cache_misses",
            "Logins the verified-credential cache could not answer",
            load(&m.cache_misses),
        )?;
        self.encode_store(d)?;
        self.encode_listeners(d)?;
        self.encode_counts(d)?;
        one_gauge(
            d,
            "config_generation",
            "Configuration generation: 1 at start, bumped by each applied reload",
            i64::try_from(load(&m.config_generation)).unwrap_or(i64::MAX),
        )?;
        {
            let version = [("version", env!("CARGO_PKG_VERSION"))];
            let mut e = d.encode_descriptor(
                "build_info",
                "The running postern's version",
                None,
                MetricType::Gauge,
            )?;
            e.encode_family(&version)?.encode_gauge(&1i64)?;
        }
        let start = m
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        d.encode_descriptor(
            "process_start_time",
            "When the process started, in seconds since the Unix epoch",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?
        .encode_gauge(&start)
    }
}

impl Exposition {
    fn encode_store(&self, d: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ops: Vec<&'static StoreOp> = self
            .0
            .store_ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let per_op = |d: &mut DescriptorEncoder,
                      name: &str,
                      help: &str,
                      value: fn(&StoreOp) -> &AtomicU64|
         -> Result<(), std::fmt::Error> {
            let mut e = d.encode_descriptor(name, help, None, MetricType::Counter)?;
            for op in &ops {
                counter(&mut e.encode_family(&[("op", op.name)])?, load(value(op)))?;
            }
            Ok(())
        };
        per_op(
            d,
            "store_operations",
            "Database operations, by operation",
            |op| &op.calls,
        )?;
        per_op(
            d,
            "store_errors",
            "Database operations that failed, by operation",
            |op| &op.errors,
        )?;
        {
            let mut e = d.encode_descriptor(
                "store_operation_duration",
                "Time per database operation, by operation",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for op in &ops {
                op.seconds.encode(e.encode_family(&[("op", op.name)])?)?;
            }
        }
        one_counter(
            d,
            "store_busy_retries",
            "SQLite point reads that met another connection's lock and waited on the blocking pool",
            load(&self.0.store_busy_retries),
        )
    }

    fn encode_listeners(&self, d: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.0;
        {
            let mut e = d.encode_descriptor(
                "connections_open",
                "Connections open now, by listener",
                None,
                MetricType::Gauge,
            )?;
            for (key, l) in LISTENERS.iter().zip(&m.listeners) {
                e.encode_family(&[("listener", *key)])?
                    .encode_gauge(&l.open.load(Ordering::Relaxed).max(0))?;
            }
        }
        let mut e = d.encode_descriptor(
            "connections_at_cap",
            "Connections that found their listener at listen.max_connections (the longest-idle one was closed or the newcomer waited), by listener",
            None,
            MetricType::Counter,
        )?;
        for (key, l) in LISTENERS.iter().zip(&m.listeners) {
            counter(
                &mut e.encode_family(&[("listener", *key)])?,
                load(&l.at_cap),
            )?;
        }
        Ok(())
    }

    fn encode_counts(&self, d: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0.counts;
        if !c.known() {
            return Ok(());
        }
        let gauges: [(&str, &str, &AtomicI64); 5] = [
            ("accounts", "Accounts in the database", &c.accounts),
            ("accounts_blocked", "Accounts on the blocklist", &c.blocked),
            ("administrators", "Accounts with the admin flag", &c.admins),
            (
                "invites_live",
                "Invite codes that can still be used",
                &c.invites,
            ),
            (
                "mail_homes_queued",
                "Deleted accounts' mail homes waiting for removal",
                &c.homes_queued,
            ),
        ];
        for (name, help, v) in gauges {
            one_gauge(d, name, help, v.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        Histogram::encode(self, encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scraper_gets_openmetrics_only_when_it_prefers_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(prometheus));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics(
            "application/openmetrics-text;q=0.2,text/plain"
        ));
    }

    #[test]
    fn a_histogram_counts_each_duration_in_its_bucket() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let loads: Vec<u64> = h.buckets.iter().map(load).collect();
        assert_eq!(loads, [1, 2, 1]);
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn both_formats_name_the_families_with_their_units_and_suffixes() {
        let m = get();
        m.policy(PolicyAction::Defer);
        let text = m.encode(false);
        assert!(
            text.contains("# TYPE postern_policy_decisions_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE postern_argon2_hash_duration_seconds histogram\n"));
        assert!(text.contains("postern_argon2_hash_duration_seconds_bucket{le=\"+Inf\"} "));
        assert!(text.contains(&format!(
            "postern_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("postern_logins_total{service=\"sasl\",result=\"temp_fail\"} "));
        assert!(!text.contains("# EOF"));
        let om = m.encode(true);
        assert!(
            om.contains("# TYPE postern_policy_decisions counter\n"),
            "{om}"
        );
        assert!(om.contains("# UNIT postern_process_start_time_seconds seconds\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    // Regression: the sign-up guard's refusals and the owner's page were counted under
    // words the families did not list, so they were dropped.
    #[test]
    fn the_sign_up_guard_and_the_owner_page_have_their_series() {
        // The exposition is written from a process-wide instance; a test gets its own.
        let m: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        m.signup_refused(SignupRefusal::Paused);
        m.login(LoginVia::Account, LoginResult::BadPassword);
        let text = m.encode(false);
        assert!(
            text.contains("postern_signups_refused_total{reason=\"paused\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("postern_logins_total{service=\"account\",result=\"bad_password\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn each_label_value_counts_in_its_own_series_under_its_word() {
        let m: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        m.login(LoginVia::Sasl, LoginResult::BadPassword);
        m.login(LoginVia::Sasl, LoginResult::BadPassword);
        m.login(LoginVia::LuaApi, LoginResult::TempFail);
        m.accounts_created(CreationRoute::Import, 5);
        m.policy(PolicyAction::RejectUnknown);
        assert_eq!(m.logins(LoginVia::Sasl, LoginResult::BadPassword), 2);
        assert_eq!(m.logins(LoginVia::Sasl, LoginResult::Ok), 0);
        assert_eq!(m.logins(LoginVia::Dict, LoginResult::BadPassword), 0);
        let text = m.encode(false);
        for line in [
            "postern_logins_total{service=\"sasl\",result=\"bad_password\"} 2\n",
            "postern_logins_total{service=\"lua_api\",result=\"temp_fail\"} 1\n",
            "postern_logins_total{service=\"dict\",result=\"bad_password\"} 0\n",
            "postern_accounts_created_total{route=\"import\"} 5\n",
            "postern_accounts_created_total{route=\"jit\"} 0\n",
            "postern_policy_decisions_total{action=\"reject_unknown\"} 1\n",
            "postern_policy_decisions_total{action=\"dunno\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert_eq!(PolicyAction::Defer.as_str(), "defer");
        assert_eq!(LoginVia::WORDS.len(), 5);
    }
}
