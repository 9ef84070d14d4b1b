//! Dovecot's dict proxy protocol: Dovecot 2.3's `passdb`/`userdb` with `driver = dict`,
//! and the `last_login` and `quota_clone` plugins of 2.3 and 2.4.
//!
//! ```text
//! codec.rs    bytes <-> commands and replies (pure, limits, escaping)
//! session.rs  one connection: read, answer in order, idle timeout, cancel
//! handler.rs  keys -> accounts core calls
//! ```

pub mod codec;
pub mod handler;
pub mod session;
