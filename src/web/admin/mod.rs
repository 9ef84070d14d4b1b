//! `/admin`: the operator's pages. Everything the CLI does with accounts, invites, the
//! blocklist and the registration mode, through the same core calls.
//!
//! ```text
//! GET  /admin/login   POST /admin/login (address, password, csrf)   POST /admin/logout
//! GET  /admin/accounts[?q=TEXT&blocked=1]      POST /admin/accounts (add)
//! GET  /admin/accounts/{address}
//! POST /admin/accounts/{address}/{block|unblock|quota|password|admin|delete}
//! GET  /admin/invites   POST /admin/invites (create)   POST /admin/invites/{id}/revoke
//! GET  /admin/blocklist POST /admin/blocklist (add)    POST /admin/blocklist/remove
//! GET  /admin/registration                   POST /admin/registration (mode)
//! GET  /admin/audit[?address=A&page=N]       the audit trail, newest first
//! ```
//!
//! Signing in checks the password with the core's `login` (argon2, its per-account and
//! per-IP failure limits) and then requires an admin account; sign-in attempts are also
//! limited per client (`http.admin_logins_per_minute`, 429). Every request re-reads the
//! account, so a blocked, deleted or demoted admin is out at once. Without a session, a
//! `GET` is sent to the sign-in page and anything else gets 403. Every form carries the
//! session's CSRF token (the sign-in form a double-submit cookie); a form without it gets
//! 403. Actions answer with a redirect and a one-time message, except those that show a
//! secret once (a generated password, a new invite code), which answer the page directly.
//!
//! One module per resource, each with its routes, its pages and a typed form for each
//! action: `signin.rs`, `accounts.rs`, `invites.rs`, `blocklist.rs`, `registration.rs`,
//! `audit.rs` (read only). Every action passes the signed-in admin as the core's
//! [`Actor`], so the audit trail names who did it.
//! This file holds what they share: the [`Admin`] extractor, the CSRF-checked
//! [`AdminForm`], the page frame and the one-time messages.

mod accounts;
mod audit;
mod blocklist;
mod invites;
mod registration;
mod signin;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};

use super::form::Fields;
use super::session::{cookie, set_cookie, Flash, Session, CSRF_FIELD, SESSION_COOKIE};
use super::{pages, read_body, AppState};
use crate::accounts::{Actor, AdminError};
use crate::config::Config;
use crate::logfmt;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/", get(home))
        .merge(signin::routes())
        .merge(accounts::routes())
        .merge(invites::routes())
        .merge(blocklist::routes())
        .merge(registration::routes())
        .merge(audit::routes())
}

/// A signed-in admin: a live session whose account exists, is admin and is not blocked.
pub struct Admin(Session);

impl Admin {
    /// Who the audit trail names for this admin's actions.
    fn actor(&self) -> Actor {
        Actor::Admin {
            address: self.0.address.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let config = state.accounts().config();
        let session = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|id| state.0.sessions.get(&id, super::now()));
        let Some(session) = session else {
            return Err(not_signed_in(&parts.method, &config));
        };
        match state.accounts().is_active_admin(&session.address).await {
            Ok(true) => Ok(Admin(session)),
            Err(AdminError::Unavailable(e)) => {
                tracing::warn!(
                    "event=admin_page result=tempfail error={}",
                    logfmt::value(&e)
                );
                Err(unavailable(&config))
            }
            _ => {
                state.0.sessions.remove(&session.id);
                Err(not_signed_in(&parts.method, &config))
            }
        }
    }
}

/// The session cookie is `Secure` whenever links would be https: always, unless
/// `http.public_url` is an explicit `http://` URL.
fn secure(config: &Config) -> bool {
    config
        .http
        .public_url
        .as_deref()
        .is_none_or(|u| !u.trim().to_ascii_lowercase().starts_with("http://"))
}

fn clear_cookie(name: &str, config: &Config) -> HeaderValue {
    HeaderValue::from_str(&set_cookie(
        name,
        "",
        std::time::Duration::ZERO,
        secure(config),
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn not_signed_in(method: &Method, config: &Config) -> Response {
    let mut res = if method == Method::GET || method == Method::HEAD {
        Redirect::to("/admin/login").into_response()
    } else {
        message(
            config,
            StatusCode::FORBIDDEN,
            "Sign in first",
            "This needs an administrator's session: sign in again.",
        )
    };
    res.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE, config));
    res
}

/// A page with one message and a link to the sign-in page.
fn message(config: &Config, status: StatusCode, title: &str, text: &str) -> Response {
    let body = pages::layout(
        title,
        true,
        html! { span .site { (config.site_name()) " · admin" } },
        html! {
            h1 { (title) }
            p .error role="alert" { (text) }
            p { a href="/admin" { "Back to the admin pages" } }
        },
    );
    (status, body).into_response()
}

fn unavailable(config: &Config) -> Response {
    message(
        config,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "The account database is busy or unavailable; try again in a moment.",
    )
}

/// The operator's text for a failed action; store trouble is logged, not shown.
fn error_text(e: &AdminError) -> String {
    match e {
        AdminError::Unavailable(inner) => {
            tracing::warn!(
                "event=admin_action result=tempfail error={}",
                logfmt::value(inner)
            );
            "The account database is busy or unavailable; nothing was changed. Try again.".into()
        }
        AdminError::Blocked(a) => {
            format!("{a} is on the blocklist; remove it from the blocklist first.")
        }
        other => other.to_string(),
    }
}

/// Reads an admin form: the body (413 when too large) and its CSRF token (403 without).
/// A signed-in admin's form: the [`Admin`] and the urlencoded fields, read within the
/// body limits and accepted only with the session's CSRF token.
struct AdminForm {
    admin: Admin,
    fields: Fields,
}

impl FromRequest<AppState> for AdminForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let admin = Admin::from_request_parts(&mut parts, state).await?;
        let config = state.accounts().config();
        let bytes = read_body(state, &parts.headers, body)
            .await
            .map_err(|e| message(&config, e.status(), "Not accepted", &e.reason()))?;
        let fields = Fields::parse(&bytes);
        if !admin.0.csrf_ok(fields.get(CSRF_FIELD)) {
            return Err(message(
                &config,
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form did not carry this session's security token (it may be old, or \
                 come from another site). Go back, reload the page and try again.",
            ));
        }
        Ok(AdminForm { admin, fields })
    }
}

/// Redirects to `to` after leaving a one-time message for the next page.
fn done(state: &AppState, admin: &Admin, to: &str, result: Result<String, String>) -> Response {
    let flash = match result {
        Ok(text) => Flash { ok: true, text },
        Err(text) => Flash { ok: false, text },
    };
    state.0.sessions.set_flash(&admin.0.id, flash);
    Redirect::to(to).into_response()
}

/// An admin page: navigation, the pending one-time message, then `content`.
fn render(state: &AppState, admin: &Admin, current: &str, title: &str, content: Markup) -> Markup {
    let config = state.accounts().config();
    let s = &admin.0;
    let flash = state.0.sessions.take_flash(&s.id);
    let header = html! {
        a .site href="/admin/accounts" { (config.site_name()) " · admin" }
        nav aria-label="Admin pages" {
            @for (path, name, label) in [
                ("/admin/accounts", "accounts", "Accounts"),
                ("/admin/invites", "invites", "Invites"),
                ("/admin/blocklist", "blocklist", "Blocklist"),
                ("/admin/registration", "registration", "Registration"),
                ("/admin/audit", "audit", "Audit trail"),
            ] {
                a href=(path) aria-current=[(current == name).then_some("page")] { (label) }
            }
        }
        span { "Signed in as " (s.address) }
        form method="post" action="/admin/logout" {
            (csrf(s))
            button .secondary .small type="submit" { "Sign out" }
        }
    };
    let content = html! {
        @if let Some(f) = flash { (pages::flash(f.ok, &f.text)) }
        (content)
    };
    pages::layout(title, false, header, content)
}

fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(s.csrf); }
}

async fn home(admin: Result<Admin, Response>) -> Response {
    match admin {
        Ok(_) => Redirect::to("/admin/accounts").into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod secure_tests {
    use super::*;

    // Without public_url invite links were https but the session cookie lacked Secure.
    #[test]
    fn cookie_lacked_secure_while_links_defaulted_to_https() {
        let mut config = Config::default();
        assert!(secure(&config));
        config.http.public_url = Some("https://chat.example.org".into());
        assert!(secure(&config));
        config.http.public_url = Some("HTTP://chat.example.org".into());
        assert!(!secure(&config));
    }
}
