//! `/account`: an account's owner signs in with address and password, sees the account,
//! changes its password or deletes it. The rules (failure limits, password rules, what
//! a delete does) are the core's (`accounts::owner`); this file reads forms and JSON
//! and renders the answers.
//!
//! ```text
//! GET  /account                      the sign-in form, or the account page when signed in
//! POST /account/login                address=..&password=..&csrf=..  -> 303 /account + session
//! POST /account/logout               csrf=..
//! POST /account/change-password      password=..&new_password=..&csrf=..   (the page's form)
//! POST /account/delete-account       password=..&confirm=<address>&csrf=.. (the page's form)
//! POST /account/password  {"email":"a@example.org","password":"..","new_password":".."}
//! POST /account/delete    {"email":"a@example.org","password":".."}
//!   200 {}   400 / 401 / 403 / 413 / 415 / 429 / 503 {"reason":"..."}
//! ```
//!
//! Sessions and CSRF tokens are the admin pages' machinery (`session.rs`), in a store of
//! their own with the cookie `postern_account` on `Path=/account`: an owner's session
//! opens nothing under `/admin`. The JSON endpoints take no cookie; they require
//! `Content-Type: application/json`, which no cross-site form can send, and answer 415
//! otherwise. `[self_service] enabled = false` answers 403 everywhere here.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

use super::form::Fields;
use super::session::{
    cookie, cookie_lifetime, secure_cookies, set_cookie_at, signin_fields, signin_token, Flash,
    Session, CSRF_FIELD,
};
use super::{media_type, pages, read_body, session_form, AppState, Client};
use crate::accounts::password::Password;
use crate::accounts::{Account, LoginContext, LoginVia, OwnerError};
use crate::config::Config;
use crate::logfmt;

/// The owner's session cookie.
const SESSION_COOKIE: &str = "postern_account";
/// The sign-in form's double-submit cookie.
const SIGNIN_COOKIE: &str = "postern_account_signin";
const PATH: &str = "/account";
/// The service name in login log lines.
const SERVICE: &str = "account";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(home))
        .route("/account/", get(home))
        .route("/account/login", post(signin))
        .route("/account/logout", post(signout))
        .route("/account/change-password", post(change_password_form))
        .route("/account/delete-account", post(delete_form))
        .route("/account/password", post(change_password_json))
        .route("/account/delete", post(delete_json))
}

fn ctx(client: &Client) -> LoginContext<'static> {
    LoginContext {
        service: SERVICE,
        remote_ip: client.ip,
        via: LoginVia::Account,
    }
}

fn cookie_header(config: &Config, name: &str, value: &str, max_age: Duration) -> HeaderValue {
    HeaderValue::from_str(&set_cookie_at(
        PATH,
        name,
        value,
        max_age,
        secure_cookies(config),
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn clear_cookie(config: &Config, name: &str) -> HeaderValue {
    cookie_header(config, name, "", Duration::ZERO)
}

// ----- pages --------------------------------------------------------------------------

fn header(config: &Config, signed_in: Option<&Session>) -> Markup {
    html! {
        a .site href="/account" { (config.site_name()) " · your account" }
        @if let Some(s) = signed_in {
            span { "Signed in as " (s.address) }
            form method="post" action="/account/logout" {
                (csrf(s))
                button .secondary .small type="submit" { "Sign out" }
            }
        }
    }
}

fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(s.csrf); }
}

/// A page with one message.
fn message(config: &Config, status: StatusCode, title: &str, text: &str) -> Response {
    let body = pages::layout(
        title,
        true,
        header(config, None),
        html! {
            h1 { (title) }
            p .error role="alert" #error { (text) }
            p { a href="/account" { "Back to your account" } }
        },
    );
    (status, body).into_response()
}

fn disabled_page(config: &Config) -> Response {
    message(
        config,
        StatusCode::FORBIDDEN,
        "Not available",
        &OwnerError::Disabled.to_string(),
    )
}

fn unavailable_page(config: &Config) -> Response {
    message(
        config,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "The account database is busy or unavailable; try again in a moment.",
    )
}

fn signin_form(config: &Config, token: &str, address: Option<&str>, error: Option<&str>) -> Markup {
    pages::layout(
        "Your account",
        true,
        header(config, None),
        html! {
            h1 { "Sign in to your account" }
            (pages::signin_form("/account/login", token, address, error))
            p .hint { "The address and password you use in your mail program. Signing in here never creates an account: "
                a href="/new" { "create one" } " instead." }
        },
    )
}

/// The sign-in page with a (new or kept) double-submit token, under `status`.
fn signin_response(
    config: &Config,
    headers: &HeaderMap,
    status: StatusCode,
    address: Option<&str>,
    error: Option<&str>,
) -> Response {
    let token = signin_token(headers, SIGNIN_COOKIE);
    let mut res = (status, signin_form(config, &token, address, error)).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(config, SIGNIN_COOKIE, &token, Duration::from_secs(3600)),
    );
    res
}

fn account_page(config: &Config, owner: &Owner, flash: Option<Flash>) -> Markup {
    let a = &owner.account;
    let s = &owner.session;
    let pw = &config.registration.password;
    let reuse = config.self_service.allow_reuse;
    pages::layout(
        "Your account",
        true,
        header(config, Some(s)),
        html! {
            h1 { "Your account" }
            @if let Some(f) = flash { (pages::flash(f.ok, &f.text)) }
            section aria-labelledby="about-h" {
                h2 #about-h { "About" }
                dl {
                    dt { "Address" } dd { code #address { (a.address) } }
                    dt { "Storage" } dd #usage { (a.usage_text()) }
                    dt { "Created" } dd #created { (pages::when(Some(a.created_at))) }
                    dt { "Last login" } dd #last-login { (pages::when(a.last_login)) }
                }
            }
            section aria-labelledby="password-h" {
                h2 #password-h { "Change the password" }
                form method="post" action="/account/change-password" {
                    (csrf(s))
                    label for="current-password" { "Current password" }
                    input #current-password type="password" name="password"
                        autocomplete="current-password" required;
                    label for="new-password" { "New password" }
                    input #new-password type="password" name="new_password" autocomplete="new-password"
                        required minlength=(pw.min_length) maxlength=(pw.max_length)
                        aria-describedby="new-password-hint";
                    p .hint #new-password-hint {
                        "At least " (pw.min_length) " characters"
                        @for class in &pw.require { ", with " (class.describe()) }
                        ". Mail programs signed in with the old password must sign in again."
                    }
                    button type="submit" { "Change the password" }
                }
            }
            section aria-labelledby="delete-h" {
                h2 #delete-h { "Delete the account" }
                p {
                    "The account and all its mail are deleted; this cannot be undone. "
                    @if reuse { "The address can be registered again later." }
                    @else { "The address cannot be registered again, by you or anyone else." }
                }
                form method="post" action="/account/delete-account" {
                    (csrf(s))
                    label for="delete-password" { "Password" }
                    input #delete-password type="password" name="password"
                        autocomplete="current-password" required;
                    label for="confirm" { "Type your address to confirm" }
                    input #confirm type="text" name="confirm" autocomplete="off"
                        autocapitalize="none" spellcheck="false" required;
                    button .danger type="submit" { "Delete the account" }
                }
            }
        },
    )
}

// ----- the signed-in owner ------------------------------------------------------------

/// A signed-in owner: a live session whose account exists and is not blocked, read
/// afresh for every request.
struct Owner {
    session: Session,
    account: Account,
}

/// Why there is no [`Owner`]: what to answer instead.
enum NoOwner {
    Disabled,
    SignedOut,
    Unavailable,
}

impl FromRequestParts<AppState> for Owner {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let config = state.accounts().config();
        Owner::find(parts, state)
            .await
            .map_err(|n| n.answer(&config, &parts.method, &parts.headers))
    }
}

impl Owner {
    async fn find(parts: &Parts, state: &AppState) -> Result<Owner, NoOwner> {
        let accounts = state.accounts();
        if !accounts.self_service_enabled() {
            return Err(NoOwner::Disabled);
        }
        let sessions = &state.0.owner_sessions;
        let session = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|id| sessions.get(&id, super::now()))
            .ok_or(NoOwner::SignedOut)?;
        match accounts.owner_account(&session.address, &session.tag).await {
            Ok(Some(account)) => Ok(Owner { session, account }),
            Ok(None) => {
                sessions.remove(&session.id);
                Err(NoOwner::SignedOut)
            }
            Err(OwnerError::Disabled) => Err(NoOwner::Disabled),
            Err(e) => {
                tracing::warn!(
                    "event=account_page result=tempfail error={}",
                    logfmt::value(&e)
                );
                Err(NoOwner::Unavailable)
            }
        }
    }
}

impl NoOwner {
    /// The answer to a request that needed a signed-in owner.
    fn answer(self, config: &Config, method: &Method, headers: &HeaderMap) -> Response {
        match self {
            NoOwner::Disabled => disabled_page(config),
            NoOwner::Unavailable => unavailable_page(config),
            NoOwner::SignedOut if method == Method::GET || method == Method::HEAD => {
                let mut res = signin_response(config, headers, StatusCode::OK, None, None);
                res.headers_mut()
                    .append(header::SET_COOKIE, clear_cookie(config, SESSION_COOKIE));
                res
            }
            NoOwner::SignedOut => {
                let mut res = message(
                    config,
                    StatusCode::FORBIDDEN,
                    "Sign in first",
                    "Your session has ended: sign in again.",
                );
                res.headers_mut()
                    .append(header::SET_COOKIE, clear_cookie(config, SESSION_COOKIE));
                res
            }
        }
    }
}

/// A signed-in owner's form: the [`Owner`] and the urlencoded fields, read within the
/// body limits and accepted only with the session's CSRF token.
struct OwnerForm {
    owner: Owner,
    fields: Fields,
}

impl FromRequest<AppState> for OwnerForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let owner = Owner::from_request_parts(&mut parts, state).await?;
        let config = state.accounts().config();
        let fields = session_form(state, &parts.headers, body, &owner.session)
            .await
            .map_err(|r| message(&config, r.status, r.title, &r.text))?;
        Ok(OwnerForm { owner, fields })
    }
}

/// Back to the account page with a one-time message.
fn back(state: &AppState, owner: &Owner, flash: Flash) -> Response {
    state.0.owner_sessions.set_flash(&owner.session.id, flash);
    Redirect::to(PATH).into_response()
}

fn refused(text: String) -> Flash {
    Flash { ok: false, text }
}

/// An owner's refusal for the page, with store trouble logged rather than shown.
fn error_text(e: &OwnerError) -> String {
    if let OwnerError::Unavailable(inner) = e {
        tracing::warn!(
            "event=self_service result=tempfail error={}",
            logfmt::value(inner)
        );
    }
    match e {
        OwnerError::Credentials => "The password is wrong; nothing was changed.".into(),
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            let mut sentence: String = match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => text,
            };
            sentence.push('.');
            sentence
        }
    }
}

// ----- handlers -----------------------------------------------------------------------

async fn home(State(state): State<AppState>, owner: Result<Owner, Response>) -> Response {
    let config = state.accounts().config();
    match owner {
        Ok(owner) => {
            let flash = state.0.owner_sessions.take_flash(&owner.session.id);
            account_page(&config, &owner, flash).into_response()
        }
        Err(res) => res,
    }
}

async fn signin(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = state.accounts().config();
    if !state.accounts().self_service_enabled() {
        return disabled_page(&config);
    }
    let refuse = |status: StatusCode, address: Option<&str>, text: &str| {
        signin_response(&config, &headers, status, address, Some(text))
    };
    let bytes = match read_body(&state, &headers, body).await {
        Ok(b) => b,
        Err(e) => return refuse(e.status(), None, &e.reason()),
    };
    let fields = Fields::parse(&bytes);
    let (address, password) = match signin_fields(&fields, &headers, SIGNIN_COOKIE) {
        Ok(typed) => typed,
        Err(bad) => return refuse(bad.status(), bad.address, bad.text()),
    };
    let outcome = state
        .accounts()
        .owner_sign_in(address, &Password::new(password), ctx(&client))
        .await;
    match outcome {
        Ok(signed_in) => {
            // Always a new id: a session id planted before sign-in is worthless after it.
            if let Some(old) = cookie(&headers, SESSION_COOKIE) {
                state.0.owner_sessions.remove(&old);
            }
            let session = state.0.owner_sessions.create_tagged(
                signed_in.address.as_str(),
                signed_in.tag,
                super::now(),
            );
            let mut res = Redirect::to(PATH).into_response();
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                cookie_header(&config, SESSION_COOKIE, &session.id, cookie_lifetime()),
            );
            h.append(header::SET_COOKIE, clear_cookie(&config, SIGNIN_COOKIE));
            res
        }
        Err(OwnerError::Credentials) => refuse(
            StatusCode::FORBIDDEN,
            Some(address),
            "Wrong address or password.",
        ),
        Err(OwnerError::Throttled) => refuse(
            StatusCode::TOO_MANY_REQUESTS,
            Some(address),
            "Too many failed sign-ins for this account or network; wait a few minutes.",
        ),
        Err(OwnerError::Disabled) => disabled_page(&config),
        Err(e) => {
            tracing::warn!(
                "event=account_signin result=tempfail error={}",
                logfmt::value(&e)
            );
            unavailable_page(&config)
        }
    }
}

async fn signout(State(state): State<AppState>, OwnerForm { owner, .. }: OwnerForm) -> Response {
    state.0.owner_sessions.remove(&owner.session.id);
    let config = state.accounts().config();
    let mut res = Redirect::to(PATH).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(&config, SESSION_COOKIE));
    res
}

async fn change_password_form(
    State(state): State<AppState>,
    client: Client,
    OwnerForm { owner, fields }: OwnerForm,
) -> Response {
    let (Some(current), Some(new)) = (
        fields.get("password").filter(|p| !p.is_empty()),
        fields.get("new_password").filter(|p| !p.is_empty()),
    ) else {
        return back(
            &state,
            &owner,
            refused("Enter the current and the new password.".into()),
        );
    };
    let accounts = state.accounts();
    let new = Password::new(new);
    let address = owner.account.address.as_str();
    match accounts
        .change_own_password(address, &Password::new(current), &new, ctx(&client))
        .await
    {
        Ok(signed_in) => {
            // Sessions opened with the old password end; this browser gets a new one.
            let address = signed_in.address;
            let sessions = &state.0.owner_sessions;
            sessions.remove_address(address.as_str());
            let session = sessions.create_tagged(address.as_str(), signed_in.tag, super::now());
            let config = accounts.config();
            let body = pages::layout(
                "Password changed",
                true,
                header(&config, Some(&session)),
                html! {
                    h1 { "Password changed" }
                    p #changed { "The new password works from now on; the old one no longer does. "
                        "Set up your devices again with it:" }
                    (pages::account_ready(&config, address.as_str(), new.expose()))
                    p { a href="/account" { "Back to your account" } }
                },
            );
            let mut res = (StatusCode::OK, body).into_response();
            res.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(&config, SESSION_COOKIE, &session.id, cookie_lifetime()),
            );
            res
        }
        Err(OwnerError::Disabled) => disabled_page(&accounts.config()),
        Err(e) => back(&state, &owner, refused(error_text(&e))),
    }
}

async fn delete_form(
    State(state): State<AppState>,
    client: Client,
    OwnerForm { owner, fields }: OwnerForm,
) -> Response {
    let accounts = state.accounts();
    let address = owner.account.address.as_str().to_owned();
    let Some(password) = fields.get("password").filter(|p| !p.is_empty()) else {
        return back(&state, &owner, refused("Enter your password.".into()));
    };
    if !accounts.confirms_address(&address, fields.get("confirm").unwrap_or("")) {
        return back(
            &state,
            &owner,
            refused(format!(
                "Type your address, {address}, to confirm; nothing was deleted."
            )),
        );
    }
    match accounts
        .delete_own_account(&address, &Password::new(password), ctx(&client))
        .await
    {
        Ok(deleted) => {
            state.0.owner_sessions.remove_address(&address);
            let config = accounts.config();
            let body = pages::layout(
                "Account deleted",
                true,
                header(&config, None),
                html! {
                    h1 { "Account deleted" }
                    p #deleted { (deleted.account.address) " is deleted. Its mail is removed from the server within a day." }
                    @if deleted.still_blocked {
                        p { "The address cannot be registered again." }
                    }
                },
            );
            let mut res = (StatusCode::OK, body).into_response();
            res.headers_mut()
                .append(header::SET_COOKIE, clear_cookie(&config, SESSION_COOKIE));
            res
        }
        Err(OwnerError::Disabled) => disabled_page(&accounts.config()),
        Err(e) => back(&state, &owner, refused(error_text(&e))),
    }
}

// ----- JSON ---------------------------------------------------------------------------

/// `POST /account/password` and `/account/delete`.
#[derive(Debug, Deserialize)]
struct JsonRequest {
    email: Option<String>,
    password: Option<String>,
    new_password: Option<String>,
}

fn json_refusal(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({ "reason": reason }))).into_response()
}

fn status_of(e: &OwnerError) -> StatusCode {
    match e {
        OwnerError::Disabled => StatusCode::FORBIDDEN,
        OwnerError::Credentials => StatusCode::UNAUTHORIZED,
        OwnerError::Throttled => StatusCode::TOO_MANY_REQUESTS,
        OwnerError::Password(_) => StatusCode::BAD_REQUEST,
        OwnerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OwnerError::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Reads a JSON request: 403 when self-service is off, 415 without the JSON content
/// type, 413/408 for the body, 400 unless it names `email` and `password` (and
/// `new_password` when `wants_new`).
async fn json_request(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    wants_new: bool,
) -> Result<(String, Password, Option<Password>), Response> {
    if !state.accounts().self_service_enabled() {
        return Err(json_refusal(
            StatusCode::FORBIDDEN,
            &OwnerError::Disabled.to_string(),
        ));
    }
    if media_type(headers) != "application/json" {
        return Err(json_refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send a JSON body with Content-Type: application/json",
        ));
    }
    let bytes = read_body(state, headers, body)
        .await
        .map_err(|e| json_refusal(e.status(), &e.reason()))?;
    let shape = if wants_new {
        r#"{"email": "...", "password": "...", "new_password": "..."}"#
    } else {
        r#"{"email": "...", "password": "..."}"#
    };
    let bad = || json_refusal(StatusCode::BAD_REQUEST, &format!("send {shape}"));
    let req: JsonRequest = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let nonempty = |s: Option<String>| s.filter(|v| !v.is_empty());
    let (Some(email), Some(password)) = (nonempty(req.email), nonempty(req.password)) else {
        return Err(bad());
    };
    let new = nonempty(req.new_password).map(Password::new);
    if wants_new && new.is_none() {
        return Err(bad());
    }
    Ok((email, Password::new(password), new))
}

fn json_answer<T>(result: Result<T, OwnerError>) -> Response {
    match result {
        Ok(_) => (StatusCode::OK, Json(json!({}))).into_response(),
        Err(e) => {
            if let OwnerError::Unavailable(inner) = &e {
                tracing::warn!(
                    "event=self_service result=tempfail error={}",
                    logfmt::value(inner)
                );
            }
            json_refusal(status_of(&e), &e.to_string())
        }
    }
}

async fn change_password_json(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (email, password, new) = match json_request(&state, &headers, body, true).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let Some(new) = new else {
        return json_refusal(StatusCode::BAD_REQUEST, "send new_password");
    };
    let result = state
        .accounts()
        .change_own_password(&email, &password, &new, ctx(&client))
        .await;
    if let Ok(signed_in) = &result {
        state
            .0
            .owner_sessions
            .remove_address(signed_in.address.as_str());
    }
    json_answer(result)
}

async fn delete_json(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (email, password, _) = match json_request(&state, &headers, body, false).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let result = state
        .accounts()
        .delete_own_account(&email, &password, ctx(&client))
        .await;
    if let Ok(deleted) = &result {
        state
            .0
            .owner_sessions
            .remove_address(deleted.account.address.as_str());
    }
    json_answer(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status() {
        assert_eq!(
            status_of(&OwnerError::Credentials),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status_of(&OwnerError::Disabled), StatusCode::FORBIDDEN);
        assert_eq!(
            status_of(&OwnerError::Throttled),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            error_text(&OwnerError::Throttled),
            "Too many failed attempts; try again later."
        );
        assert_eq!(
            error_text(&OwnerError::Credentials),
            "The password is wrong; nothing was changed."
        );
    }
}
