//! `/new`: sign-up for Delta Chat (`DCACCOUNT:https://host/new[?token=CODE]`) and for
//! people with a browser.
//!
//! ```text
//! POST /new                      empty body: random address and password
//! POST /new  {"username":"alice","password":"...","token":"..."}   (each optional)
//! POST /new  username=alice&password=...&token=...&action=choose|random   (the HTML form)
//!   200 {"email":"alice@example.org","password":"..."}          Content-Type: application/json
//!   400 {"reason":"the password must be at least 9 characters long"}
//!   403 {"reason":"registration is currently disabled."}   (and every invite problem)
//!   409 {"reason":"this address is not available."}       (taken or blocked alike)
//!   413 / 408 / 429 / 503 {"reason":"..."}
//! GET  /new[?token=CODE]         the sign-up page
//! ```
//!
//! The invite code comes from the body, else from `?token=`. The answer is HTML (the
//! success page, or the form again with the reason, under the same status) when the
//! body is the HTML form or `Accept` names `text/html`; otherwise JSON, which is what
//! Delta Chat reads. Every `POST` counts against `http.new_per_minute` for its client.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

use super::form::{self, Fields};
use super::{pages, read_body, AppState, Client};
use crate::accounts::password::Password;
use crate::accounts::register::CLOSED_MESSAGE;
use crate::accounts::{InviteCheck, RegisterError, RegisterRequest};
use crate::config::{Config, RegistrationMode};
use crate::logfmt;

/// A JSON sign-up. Absent, null or blank fields mean "generate one" (no token).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct JsonRequest {
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

/// What the client sent, whatever the encoding.
#[derive(Debug, Default)]
struct Submitted {
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

fn blank_to_none(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty())
}

/// Whether to answer with HTML: `Accept` decides when it names `text/html` or
/// `application/json`; otherwise the HTML form gets HTML and everything else JSON.
/// A request that says its body is empty (`curl -d ''`, urllib with `data=b""`): not a
/// browser's form, whatever its content type.
fn empty_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0")
}

fn wants_html(headers: &HeaderMap, is_form: bool) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if accept.contains("text/html") {
        true
    } else if accept.contains("application/json") {
        false
    } else {
        is_form
    }
}

/// The status a refused sign-up answers with.
fn status_of(e: &RegisterError) -> StatusCode {
    match e {
        RegisterError::Address(_) | RegisterError::Password(_) => StatusCode::BAD_REQUEST,
        RegisterError::Closed | RegisterError::TokenRequired | RegisterError::Token(_) => {
            StatusCode::FORBIDDEN
        }
        RegisterError::Taken => StatusCode::CONFLICT,
        RegisterError::Unavailable(_) | RegisterError::Paused(_) => StatusCode::SERVICE_UNAVAILABLE,
        RegisterError::Limited => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// A refusal: JSON `{"reason"}`, or the form again with the reason, under `status`.
fn refuse(
    html: bool,
    config: &Config,
    mode: Option<RegistrationMode>,
    submitted: &Submitted,
    status: StatusCode,
    reason: &str,
) -> Response {
    if html {
        let form = FormState {
            token: submitted.token.as_deref(),
            username: submitted.username.as_deref(),
            error: Some(reason),
            invite: None,
        };
        let mode = mode.unwrap_or(RegistrationMode::Open);
        (status, signup_page(config, mode, &form)).into_response()
    } else {
        (status, Json(json!({ "reason": reason }))).into_response()
    }
}

/// `POST /new`.
pub async fn submit(
    State(state): State<AppState>,
    client: Client,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = state.accounts().config();
    let is_form = super::media_type(&headers) == "application/x-www-form-urlencoded";
    let html = wants_html(&headers, is_form && !empty_body(&headers));
    let mut submitted = Submitted {
        token: query
            .as_deref()
            .map(|q| Fields::parse(q.as_bytes()))
            .and_then(|f| f.text("token").map(str::to_owned)),
        ..Submitted::default()
    };
    // The form is shown again on errors; it needs the mode, which costs a lookup, so
    // only HTML answers ask for it.
    let mode = if html {
        state.accounts().registration_mode().await.ok()
    } else {
        None
    };

    if let Err(throttled) = state.accounts().admit_signup(client.ip) {
        let ip = logfmt::private_opt(client.ip, config.log.no_log);
        if throttled.news {
            tracing::info!("event=new result=throttled ip={ip}");
        } else {
            tracing::debug!("event=new result=throttled ip={ip}");
        }
        let secs = throttled.wait.as_secs().max(1);
        let reason = format!("too many sign-ups from your network; try again in {secs} seconds.");
        let mut res = refuse(
            html,
            &config,
            mode,
            &submitted,
            StatusCode::TOO_MANY_REQUESTS,
            &reason,
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        return res;
    }

    let bytes = match read_body(&state, &headers, body).await {
        Ok(b) => b,
        Err(e) => return refuse(html, &config, mode, &submitted, e.status(), &e.reason()),
    };

    if is_form {
        let fields = Fields::parse(&bytes);
        // "Give me a random account" ignores whatever was typed into name and password.
        if fields.get("action") != Some("random") {
            submitted.username = fields.text("username").map(str::to_owned);
            submitted.password = fields
                .get("password")
                .filter(|p| !p.is_empty())
                .map(str::to_owned);
        }
        if let Some(t) = fields.text("token") {
            submitted.token = Some(t.to_owned());
        }
    } else if !bytes.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice::<JsonRequest>(&bytes) {
            Ok(j) => {
                submitted.username = blank_to_none(j.username).map(|u| u.trim().to_owned());
                submitted.password = j.password.filter(|p| !p.is_empty());
                if let Some(t) = blank_to_none(j.token) {
                    submitted.token = Some(t.trim().to_owned());
                }
            }
            Err(_) => {
                return refuse(
                    html,
                    &config,
                    mode,
                    &submitted,
                    StatusCode::BAD_REQUEST,
                    "send an empty body, a JSON object such as {\"username\": \"...\", \
                     \"password\": \"...\", \"token\": \"...\"} (each optional), or the form.",
                );
            }
        }
    }

    let request = RegisterRequest {
        username: submitted.username.clone(),
        password: submitted.password.clone().map(Password::new),
        token: submitted.token.clone(),
    };
    match state.accounts().register(request).await {
        Ok(registered) => {
            let password = registered.password.expose().to_owned();
            if html {
                let body = pages::layout(
                    "Your account is ready",
                    true,
                    site_header(&config),
                    html! {
                        h1 { "Your account is ready" }
                        (pages::account_ready(&config, &registered.address, &password))
                    },
                );
                (StatusCode::OK, body).into_response()
            } else {
                (
                    StatusCode::OK,
                    Json(json!({ "email": registered.address, "password": password })),
                )
                    .into_response()
            }
        }
        Err(e) => {
            if let RegisterError::Unavailable(inner) = &e {
                tracing::warn!("event=new result=tempfail error={}", logfmt::value(inner));
            }
            refuse(
                html,
                &config,
                mode,
                &submitted,
                status_of(&e),
                &e.to_string(),
            )
        }
    }
}

/// The sign-up pages without an invite code, one per registration mode, rendered once
/// for the configuration in force (a reload renders them again). Rendering, with its QR
/// code, costs far more than serving.
#[derive(Default)]
pub struct PageCache(Mutex<Option<CachedPages>>);

/// The configuration the pages were rendered from, and a page per mode.
type CachedPages = (Arc<Config>, [Option<Bytes>; 3]);

impl PageCache {
    fn page(&self, config: &Arc<Config>, mode: RegistrationMode) -> Bytes {
        let slot = match mode {
            RegistrationMode::Open => 0,
            RegistrationMode::InviteOnly => 1,
            RegistrationMode::Closed => 2,
        };
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached_for, pages)) = lock().as_ref() {
            if let (true, Some(page)) = (Arc::ptr_eq(cached_for, config), &pages[slot]) {
                return page.clone();
            }
        }
        let empty = FormState {
            token: None,
            username: None,
            error: None,
            invite: None,
        };
        let page = Bytes::from(signup_page(config, mode, &empty).into_string());
        let mut cache = lock();
        match cache.as_mut() {
            Some((cached_for, pages)) if Arc::ptr_eq(cached_for, config) => {
                pages[slot] = Some(page.clone());
            }
            _ => {
                let mut pages = [None, None, None];
                pages[slot] = Some(page.clone());
                *cache = Some((config.clone(), pages));
            }
        }
        page
    }
}

/// `GET /new`: the sign-up page, in the mode in force now.
pub async fn page(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let config = state.accounts().config();
    let token = query
        .as_deref()
        .map(|q| Fields::parse(q.as_bytes()))
        .and_then(|f| f.text("token").map(str::to_owned));
    match state.accounts().registration_mode().await {
        Ok(mode) if token.is_none() => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            state.0.new_pages.page(&config, mode),
        )
            .into_response(),
        Ok(RegistrationMode::Closed) => {
            let form = FormState {
                token: token.as_deref(),
                username: None,
                error: None,
                invite: None,
            };
            signup_page(&config, RegistrationMode::Closed, &form).into_response()
        }
        Ok(mode) => {
            let code = token.as_deref().unwrap_or_default();
            let invite = match state.accounts().check_invite(code).await {
                Ok(check) => invite_note(check, config.http.show_invite_uses),
                Err(e) => return unavailable_page(&config, e),
            };
            let dead = matches!(invite, Some(InviteNote::Dead(_)));
            let form = FormState {
                // A dead code is neither filled in nor put into a QR code.
                token: token.as_deref().filter(|_| !dead),
                username: None,
                error: None,
                invite,
            };
            signup_page(&config, mode, &form).into_response()
        }
        Err(e) => unavailable_page(&config, e),
    }
}

/// What the page says about an invite code: a dead one's reason; a live one's uses
/// left when `show_uses` (`http.show_invite_uses`).
fn invite_note(check: InviteCheck, show_uses: bool) -> Option<InviteNote> {
    match check {
        InviteCheck::Live { uses_left } => show_uses.then_some(InviteNote::UsesLeft(uses_left)),
        dead => dead.problem_text().map(InviteNote::Dead),
    }
}

/// The sign-up page's answer when the store cannot say what mode is in force.
fn unavailable_page(config: &Config, e: crate::accounts::Unavailable) -> Response {
    tracing::warn!("event=new_page result=tempfail error={}", logfmt::value(&e));
    let body = pages::layout(
        "Try again later",
        true,
        site_header(config),
        html! {
            h1 { "Try again later" }
            p .error role="alert" { (RegisterError::Unavailable(e).to_string()) }
        },
    );
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

fn site_header(config: &Config) -> Markup {
    html! { a .site href="/new" { (config.site_name()) } }
}

/// What the form shows besides the mode.
struct FormState<'a> {
    token: Option<&'a str>,
    username: Option<&'a str>,
    error: Option<&'a str>,
    /// What `GET /new?token=CODE` found out about the code.
    invite: Option<InviteNote>,
}

/// A dead invite's reason, or a live one's remaining uses (`http.show_invite_uses`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum InviteNote {
    Dead(String),
    UsesLeft(i64),
}

fn signup_page(config: &Config, mode: RegistrationMode, state: &FormState<'_>) -> Markup {
    let domain = config.site_name();
    let users = &config.registration.username;
    let pw = &config.registration.password;
    let title = format!("Create an account on {domain}");
    let content = html! {
        h1 { (title) }
        @if let Some(InviteNote::Dead(why)) = &state.invite {
            p .error role="alert" #invite-problem { (why) }
        }
        @if let Some(InviteNote::UsesLeft(n)) = &state.invite {
            p .notice #invite-uses {
                "This invite can be used " (n) " more " (if *n == 1 { "time" } else { "times" }) "."
            }
        }
        @if let Some(error) = state.error.filter(|e| mode != RegistrationMode::Closed || *e != CLOSED_MESSAGE) {
            p .error role="alert" #error { (error) }
        }
        @if mode == RegistrationMode::Closed {
            p .notice #closed { (CLOSED_MESSAGE) }
        } @else {
            @let dead = matches!(state.invite, Some(InviteNote::Dead(_)));
            @if !dead && (mode == RegistrationMode::Open || state.token.is_some()) {
                section aria-labelledby="dc-h" {
                    h2 #dc-h { "With Delta Chat" }
                    @let link = dcaccount(config, state.token);
                    p { "Scan this code in Delta Chat (" em { "Add account → Scan QR code" }
                        ") to get a new account in one step, or on this device "
                        a href=(link) { "open Delta Chat" } "." }
                    (pages::qr_code(&link, "QR code that creates an account in Delta Chat"))
                }
            }
            section aria-labelledby="form-h" {
                h2 #form-h { "Choose your own" }
                form method="post" action="/new" {
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=[state.username]
                        autocomplete="username" autocapitalize="none" spellcheck="false"
                        required minlength=(users.min_length) maxlength=(users.max_length)
                        aria-describedby="username-hint";
                    p .hint #username-hint {
                        "Your address will be " em { "username@" (domain) } ". "
                        (users.min_length) " to " (users.max_length)
                        " characters: a-z, 0-9, '.', '_' and '-', starting with a letter or a digit."
                    }
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="new-password"
                        required minlength=(pw.min_length) maxlength=(pw.max_length)
                        aria-describedby="password-hint";
                    p .hint #password-hint {
                        "At least " (pw.min_length) " characters"
                        @for class in &pw.require { ", with " (class.describe()) }
                        "."
                    }
                    @if mode == RegistrationMode::InviteOnly || state.token.is_some() {
                        label for="token" {
                            "Invite code"
                            @if mode != RegistrationMode::InviteOnly { " (optional)" }
                        }
                        input #token type="text" name="token" value=[state.token]
                            autocomplete="off" autocapitalize="none" spellcheck="false"
                            required[mode == RegistrationMode::InviteOnly];
                        @if mode == RegistrationMode::InviteOnly {
                            p .hint { "This server takes new accounts by invitation: ask its operator for a code." }
                        }
                    }
                    button type="submit" name="action" value="choose" { "Create account" }
                    button .secondary type="submit" name="action" value="random" formnovalidate {
                        "Give me a random account"
                    }
                }
            }
        }
    };
    pages::layout(&title, true, site_header(config), content)
}

/// `DCACCOUNT:<public url>/new[?token=CODE]`.
fn dcaccount(config: &Config, token: Option<&str>) -> String {
    let base = config.public_base_url();
    match token {
        Some(t) => format!("DCACCOUNT:{base}/new?token={}", form::encode(t)),
        None => format!("DCACCOUNT:{base}/new"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    // `curl -d ''` (an empty form body) got the HTML page, unlike every other empty POST.
    #[test]
    fn empty_form_post_got_html_instead_of_json() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(empty_body(&h));
        assert!(!wants_html(&h, !empty_body(&h)));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert!(!empty_body(&h));
    }

    // serde_json skips an unknown field's value without checking all of it; such a body
    // is a sign-up with that field ignored, while the same value in a known field is
    // refused.
    #[test]
    fn unknown_fields_are_skipped_and_known_ones_checked() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for extra in [r#""\udc00""#, r#""\ud800""#, "1e999", deep.as_str()] {
            let body = format!(r#"{{"username":"alice","x":{extra},"token":"t"}}"#);
            let j: JsonRequest = serde_json::from_str(&body).expect(&body);
            assert_eq!(j.username.as_deref(), Some("alice"), "{body}");
            assert_eq!(j.token.as_deref(), Some("t"), "{body}");
            assert_eq!(j.password, None, "{body}");
            let known = format!(r#"{{"password":{extra}}}"#);
            assert!(
                serde_json::from_str::<JsonRequest>(&known).is_err(),
                "{known}"
            );
        }
    }

    #[test]
    fn negotiation() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h, false));
        assert!(wants_html(&h, true));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_html(&h, true));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&h, false));
    }

    #[test]
    fn closed_page_has_no_form_and_invite_only_asks_for_a_code() {
        let config = Config {
            domains: vec!["example.org".into()],
            ..Config::default()
        };
        let empty = FormState {
            token: None,
            username: None,
            error: None,
            invite: None,
        };
        let closed = signup_page(&config, RegistrationMode::Closed, &empty).into_string();
        assert!(closed.contains(CLOSED_MESSAGE));
        assert!(!closed.contains("<form"));
        let invite = signup_page(&config, RegistrationMode::InviteOnly, &empty).into_string();
        assert!(invite.contains("name=\"token\""));
        assert!(!invite.contains("DCACCOUNT:"), "no QR without a code");
        let with_code = FormState {
            token: Some("abc\"def"),
            username: None,
            error: None,
            invite: None,
        };
        let invite = signup_page(&config, RegistrationMode::InviteOnly, &with_code).into_string();
        assert!(invite.contains("value=\"abc&quot;def\""));
        assert!(invite.contains("DCACCOUNT:https://example.org/new?token=abc%22def"));
        assert!(invite.contains("<svg"));
        let open = signup_page(&config, RegistrationMode::Open, &empty).into_string();
        assert!(!open.contains("name=\"token\""));
        assert!(open.contains("DCACCOUNT:https://example.org/new\""));
    }

    #[test]
    fn dead_invites_show_their_reason_and_no_qr_code() {
        use crate::store::TokenProblem;
        let config = Config {
            domains: vec!["example.org".into()],
            ..Config::default()
        };
        for (problem, text) in [
            (TokenProblem::Unknown, "this invite code is not valid."),
            (TokenProblem::Expired, "this invite code has expired."),
            (TokenProblem::UsedUp, "this invite code has been used up."),
            (TokenProblem::Revoked, "this invite code has been revoked."),
        ] {
            let note = invite_note(InviteCheck::Dead(problem), true);
            assert_eq!(note, Some(InviteNote::Dead(text.into())));
            for mode in [RegistrationMode::Open, RegistrationMode::InviteOnly] {
                let form = FormState {
                    token: None,
                    username: None,
                    error: None,
                    invite: note.clone(),
                };
                let page = signup_page(&config, mode, &form).into_string();
                let top =
                    format!("<p class=\"error\" id=\"invite-problem\" role=\"alert\">{text}</p>");
                let at = page.find(&top).unwrap_or_else(|| panic!("{page}"));
                assert!(at < page.find("<form").unwrap_or(usize::MAX), "{page}");
                assert!(!page.contains("DCACCOUNT:"), "{page}");
                assert!(!page.contains("<svg"), "{page}");
            }
        }
        let live = InviteCheck::Live { uses_left: 3 };
        assert_eq!(invite_note(live, false), None);
        assert_eq!(invite_note(live, true), Some(InviteNote::UsesLeft(3)));
        let form = FormState {
            token: Some("code"),
            username: None,
            error: None,
            invite: Some(InviteNote::UsesLeft(1)),
        };
        let page = signup_page(&config, RegistrationMode::InviteOnly, &form).into_string();
        assert!(
            page.contains("This invite can be used 1 more time."),
            "{page}"
        );
        assert!(page.contains("DCACCOUNT:https://example.org/new?token=code"));
    }

    #[test]
    fn cached_pages_follow_the_mode_and_a_reloaded_configuration() {
        let cache = PageCache::default();
        let first = Arc::new(Config {
            domains: vec!["example.org".into()],
            ..Config::default()
        });
        let text = |b: Bytes| String::from_utf8(b.to_vec()).expect("utf-8");
        let open = text(cache.page(&first, RegistrationMode::Open));
        assert!(open.contains("DCACCOUNT:https://example.org/new\""));
        let closed = text(cache.page(&first, RegistrationMode::Closed));
        assert!(closed.contains(CLOSED_MESSAGE) && !closed.contains("<form"));
        assert_eq!(text(cache.page(&first, RegistrationMode::Open)), open);
        let invite = text(cache.page(&first, RegistrationMode::InviteOnly));
        assert!(invite.contains("name=\"token\""));

        let reloaded = Arc::new(Config {
            domains: vec!["example.net".into()],
            ..Config::default()
        });
        let open = text(cache.page(&reloaded, RegistrationMode::Open));
        assert!(
            open.contains("DCACCOUNT:https://example.net/new\""),
            "{open}"
        );
        assert!(!open.contains("example.org"));
    }
}
