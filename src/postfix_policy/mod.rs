//! Postfix's policy delegation protocol (`check_policy_service`): refuse mail for
//! blocked, unknown and full mailboxes at RCPT time, and stop blocked or too-fast
//! authenticated senders.
//!
//! ```text
//! codec.rs    attribute blocks <-> requests, `action=...` replies (pure, limits)
//! session.rs  one persistent connection; the core decides, config words the reply
//! ```

pub mod codec;
pub mod session;
