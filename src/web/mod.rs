//! The web side: `/new` sign-up (Delta Chat compatible) and the admin pages.

use std::sync::Arc;

use axum::Router;

use crate::accounts::Accounts;

/// The routes served on `listen.http` and `listen.http_socket`.
pub fn router(accounts: Arc<Accounts>) -> Router {
    let _ = accounts;
    Router::new()
}
