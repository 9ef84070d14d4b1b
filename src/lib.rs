//! postern: the side gate of a Dovecot + Postfix mail server. It creates accounts just
//! in time (first login, `/new`, invites) and enforces blocklists, quotas and send rates
//! by speaking the protocols Dovecot and Postfix already speak.
//!
//! Read the modules bottom-up; each uses only the ones listed below it:
//!
//! ```text
//! cli            the `postern` commands (an adapter: parses, calls accounts, prints)
//! server         `postern serve`: binds the sockets, runs the sessions, shuts down cleanly
//! web            /new sign-up and the admin pages (HTTP)
//! dovecot_lua_api  loopback HTTP auth API for Dovecot 2.4's Lua passdb/userdb
//! dovecot_dict   Dovecot dict proxy protocol: passdb, userdb, last_login, quota_clone
//! dovecot_auth   Dovecot auth protocol for Postfix SMTP AUTH (SASL PLAIN, LOGIN)
//! postfix_policy Postfix policy delegation: blocked, unknown, full, send rate
//! accounts       the core: every rule (login, registration, userdb, operator actions)
//! store          the database behind one interface: `Store`, an enum over backends
//!                (SQLite in store/sqlite, PostgreSQL in store/postgres: schema,
//!                migrations, every query)
//! config         figment configuration; logging: syslog or stderr
//! domain         domain names: IDNA normalization (uses nothing else in the crate)
//! lines, tabescape  LF-line framing and 0x01 escaping shared by the Dovecot codecs
//! conn           connection I/O shared by the socket sessions (idle, cancel, linger)
//! qr             QR codes as SVG (web pages) and terminal text (the CLI)
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
pub mod lines;
pub mod logging;
pub mod postfix_policy;
pub mod qr;
pub mod server;
pub mod store;
pub mod tabescape;
pub mod web;
