//! The loopback auth API that Dovecot 2.4's Lua passdb/userdb script calls.

use std::sync::Arc;

use axum::Router;

use crate::accounts::Accounts;

/// The routes served on `listen.auth_http`; every request must carry `secret`.
pub fn router(accounts: Arc<Accounts>, secret: Vec<u8>) -> Router {
    let _ = (accounts, secret);
    Router::new()
}
