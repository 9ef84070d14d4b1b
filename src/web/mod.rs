//! The web side: `/new` sign-up (what Delta Chat's `DCACCOUNT:` QR codes call, and a page
//! for people) and the operator's `/admin` pages. An adapter like the others: it reads
//! requests, calls the accounts core, and renders the answer; every rule lives in the core.
//!
//! ```text
//! POST /new                        -> 200 {"email":"k3x9q2m1a@example.org","password":"..."}
//! POST /new?token=CODE             -> 403 {"reason":"this invite code has been used up."}
//! GET  /new                        -> sign-up page (HTML, no JavaScript)
//! GET  /.well-known/autoconfig/mail/config-v1.1.xml   -> where IMAP and SMTP are
//! GET  /admin                      -> 303 /admin/login until signed in
//! GET  /account                    -> an owner's sign-in, then their account page
//! POST /account/password           {"email","password","new_password"} -> 200 {}
//! ```
//!
//! Files: `new.rs` (/new), `account.rs` (/account), `autoconfig.rs` (mail client autoconfiguration), `admin/`
//! (/admin: one module per resource), `session.rs` (admin sessions, CSRF), `client.rs` (client IP behind proxies,
//! for the core's per-client limits), `pages.rs` (HTML frame, setup instructions), `qr.rs` (QR codes),
//! `form.rs` (urlencoded bodies).
//!
//! Every response carries a strict Content-Security-Policy (no scripts, styles only from
//! [`pages::CSS_PATH`]), `no-referrer` (invite codes travel in URLs) and `no-store`.

mod account;
mod admin;
mod autoconfig;
mod client;
#[doc(hidden)]
pub mod form;
mod new;
mod pages;
mod session;

#[doc(hidden)]
pub use new::JsonRequest;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use tower::util::MapResponseLayer;

use crate::accounts::Accounts;
use crate::conn::PeerAddr;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    accounts: Arc<Accounts>,
    sessions: session::Sessions,
    /// Owners signed in at `/account` (apart from the admin sessions).
    owner_sessions: session::Sessions,
    /// `GET /new` without an invite code, rendered.
    new_pages: new::PageCache,
}

impl AppState {
    fn accounts(&self) -> &Accounts {
        &self.0.accounts
    }
}

/// The routes served on `listen.http` and `listen.http_socket`.
pub fn router(accounts: Arc<Accounts>) -> Router {
    let state = AppState(Arc::new(Inner {
        accounts,
        sessions: session::Sessions::default(),
        owner_sessions: session::Sessions::default(),
        new_pages: new::PageCache::default(),
    }));
    Router::new()
        .route("/", get(|| async { Redirect::to("/new") }))
        .route(pages::CSS_PATH, get(stylesheet))
        .route("/new", get(new::page).post(new::submit))
        .route(autoconfig::WELL_KNOWN_PATH, get(autoconfig::document))
        .route(autoconfig::AUTOCONFIG_PATH, get(autoconfig::document))
        .merge(admin::routes())
        .merge(account::routes())
        .fallback(not_found)
        .with_state(state)
        .layer(MapResponseLayer::new(security_headers))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::CSS,
    )
        .into_response()
}

async fn not_found(State(state): State<AppState>) -> Response {
    let config = state.accounts().config();
    let body = pages::layout(
        "Not found",
        true,
        maud::html! { span .site { (config.site_name()) } },
        maud::html! {
            h1 { "Not found" }
            p { "There is nothing here. " a href="/new" { "Create an account" } "?" }
        },
    );
    (StatusCode::NOT_FOUND, body).into_response()
}

fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    res
}

/// The client's IP address: the TCP peer, or `X-Forwarded-For` when the peer is a trusted
/// proxy or the Unix socket (see `client.rs`). `None` when unknown.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub ip: Option<IpAddr>,
}

impl FromRequestParts<AppState> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        // Without the peer extension (the router served some other way) nothing
        // tells whether the sender is a proxy: believe no header.
        let Some(PeerAddr(peer)) = parts.extensions.get::<PeerAddr>().copied() else {
            return Ok(Client { ip: None });
        };
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
        let config = state.accounts().config();
        Ok(Client {
            ip: client::client_ip(peer, forwarded.as_deref(), &config.http.trusted_proxies),
        })
    }
}

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    /// Larger than `http.max_body` (the limit, in bytes).
    TooLarge(u64),
    /// Not complete within `http.idle_timeout`.
    Timeout,
}

impl BodyError {
    fn status(self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn reason(self) -> String {
        match self {
            BodyError::TooLarge(max) => {
                format!("the request is too large (at most {max} bytes are accepted).")
            }
            BodyError::Timeout => "the request took too long to arrive.".into(),
        }
    }
}

/// Reads a request body of at most `http.max_body` bytes within `http.idle_timeout`.
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, BodyError> {
    let config = state.accounts().config();
    let max = config.http.max_body.0;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge(max));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let wait = config
        .http
        .idle_timeout
        .duration()
        .max(Duration::from_secs(1));
    match tokio::time::timeout(wait, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        // The only other failure is a broken connection, whose answer nobody reads.
        Ok(Err(_)) => Err(BodyError::TooLarge(max)),
        Err(_) => Err(BodyError::Timeout),
    }
}

/// Why a signed-in session's form was not accepted: for the page that says so.
struct FormRefused {
    status: StatusCode,
    title: &'static str,
    text: String,
}

/// Reads the urlencoded form of a signed-in `session` (admin or owner): the body within
/// `http.max_body` (413) and `http.idle_timeout` (408), accepted only with the session's
/// CSRF token (403).
async fn session_form(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    session: &session::Session,
) -> Result<form::Fields, FormRefused> {
    let bytes = read_body(state, headers, body)
        .await
        .map_err(|e| FormRefused {
            status: e.status(),
            title: "Not accepted",
            text: e.reason(),
        })?;
    let fields = form::Fields::parse(&bytes);
    if !session.csrf_ok(fields.get(session::CSRF_FIELD)) {
        return Err(FormRefused {
            status: StatusCode::FORBIDDEN,
            title: "Form refused",
            text: "This form did not carry this session's security token (it may be old, or \
                   come from another site). Go back, reload the page and try again."
                .into(),
        });
    }
    Ok(fields)
}

/// The `Content-Type` without parameters, lowercased.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Now, for the in-memory limiters and sessions.
fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_say_what_went_wrong() {
        assert_eq!(
            BodyError::TooLarge(16384).reason(),
            "the request is too large (at most 16384 bytes are accepted)."
        );
        assert_eq!(
            BodyError::TooLarge(1).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(media_type(&h), "application/json");
    }
}
