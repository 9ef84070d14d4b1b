//! The Dovecot auth-client protocol, server side: what Postfix speaks for SMTP AUTH with
//! `smtpd_sasl_type = dovecot`. Credentials go through the same core login as IMAP, so
//! a first SMTP AUTH in open mode creates the account.
//!
//! ```text
//! codec.rs    bytes <-> requests and replies (pure, limits, escaping)
//! sasl.rs     PLAIN and LOGIN conversations (pure)
//! session.rs  one connection: handshake, conversations by id, answers as they finish
//! ```

pub mod codec;
pub mod sasl;
pub mod session;
