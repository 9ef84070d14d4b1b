//! postern: the side gate of a Dovecot + Postfix mail server. It creates accounts just
//! in time (first login, `/new`, invites) and enforces blocklists, quotas and send rates
//! by speaking the protocols Dovecot and Postfix already speak.
//!
//! Read the modules bottom-up; each uses only the floors below its own (the `layers`
//! test holds the code to this map: it is the one list of floors):
//!
//! ```text
//! cli              the `postern` commands (an adapter: parses, calls accounts, prints)
//! server           `postern serve`: the table of listeners, reload on SIGHUP, drain at stop
//! web, dovecot_lua_api  HTTP: /new sign-up and the admin pages; the loopback auth API
//!                  for Dovecot 2.4's Lua passdb/userdb
//! dovecot_dict, dovecot_auth, postfix_policy  the line protocols: Dovecot dict proxy
//!                  (passdb, userdb, last_login, quota_clone); Dovecot auth for Postfix
//!                  SMTP AUTH (SASL PLAIN, LOGIN); Postfix policy delegation
//! accounts         the core: every rule (login, registration, userdb, operator actions)
//! store            the database behind one interface: `Store`, an enum over backends
//!                  (SQLite in store/sqlite, PostgreSQL in store/postgres: schema,
//!                  migrations, every query)
//! logging          syslog or stderr
//! config           figment configuration, every value parsed as it loads
//! conn, lines, tabescape, qr, domain  connection I/O (Connection, the pool, PeerAddr);
//!                  LF-line framing; 0x01 escaping; QR codes as SVG and terminal text;
//!                  domain names (IDNA normalization)
//! logfmt, metrics  log values: plain tokens as is, the rest quoted and escaped; no_log;
//!                  repeated lines told apart; the process's counters and gauges (atomics)
//!                  and their Prometheus exposition
//! codec_tests      (tests only) chunked replay shared by the codecs
//! ```

pub mod accounts;
pub mod cli;
#[cfg(test)]
mod codec_tests;
pub mod config;
pub mod conn;
pub mod domain;
pub mod dovecot_auth;
pub mod dovecot_dict;
pub mod dovecot_lua_api;
#[cfg(test)]
mod layers;
pub mod lines;
pub mod logfmt;
pub mod logging;
pub mod metrics;
pub mod postfix_policy;
pub mod qr;
pub mod server;
pub mod store;
pub mod tabescape;
pub mod web;
