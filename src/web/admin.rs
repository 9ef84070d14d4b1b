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

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

use super::form::{self, Fields};
use super::session::{
    cookie, random_token, same_token, set_cookie, Flash, Session, CSRF_FIELD, SESSION_COOKIE,
    SIGNIN_COOKIE,
};
use super::{pages, read_body, AppState, Client};
use crate::accounts::admin::parse_quota;
use crate::accounts::password::Password;
use crate::accounts::{
    Account, AdminError, AdminSignIn, LoginContext, NewUser, QuotaSource, Refusal, Route, Status,
};
use crate::config::{Config, RegistrationMode, Seconds};

/// Most accounts listed on one page; a search narrows the list.
const LIST_LIMIT: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/", get(home))
        .route("/admin/login", get(signin_page).post(signin))
        .route("/admin/logout", post(signout))
        .route("/admin/accounts", get(accounts_page).post(add_account))
        .route("/admin/accounts/{address}", get(account_page))
        .route("/admin/accounts/{address}/{action}", post(account_action))
        .route("/admin/invites", get(invites_page).post(create_invite))
        .route("/admin/invites/{id}/revoke", post(revoke_invite))
        .route("/admin/blocklist", get(blocklist_page).post(blocklist_add))
        .route("/admin/blocklist/remove", post(blocklist_remove))
        .route(
            "/admin/registration",
            get(registration_page).post(set_registration),
        )
}

// ----- sessions -----------------------------------------------------------------------

/// A signed-in admin: a live session whose account exists, is admin and is not blocked.
pub struct Admin(Session);

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
                tracing::warn!("event=admin_page result=tempfail error=\"{e}\"");
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
            tracing::warn!("event=admin_action result=tempfail error=\"{inner}\"");
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

// ----- sign-in ------------------------------------------------------------------------

fn signin_form(config: &Config, token: &str, address: Option<&str>, error: Option<&str>) -> Markup {
    pages::layout(
        "Sign in",
        true,
        html! { span .site { (config.site_name()) " · admin" } },
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p .error role="alert" #error { (e) } }
            form method="post" action="/admin/login" {
                input type="hidden" name=(CSRF_FIELD) value=(token);
                label for="address" { "Address" }
                input #address type="text" name="address" value=[address] autocomplete="username"
                    autocapitalize="none" spellcheck="false" required;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p .hint { "Only administrator accounts can sign in." }
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
    let token = cookie(headers, SIGNIN_COOKIE)
        .filter(|t| t.len() == 43)
        .unwrap_or_else(random_token);
    let mut res = (status, signin_form(config, &token, address, error)).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(
        SIGNIN_COOKIE,
        &token,
        std::time::Duration::from_secs(3600),
        secure(config),
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

async fn signin_page(
    State(state): State<AppState>,
    admin: Result<Admin, Response>,
    headers: HeaderMap,
) -> Response {
    if admin.is_ok() {
        return Redirect::to("/admin/accounts").into_response();
    }
    let config = state.accounts().config();
    signin_response(&config, &headers, StatusCode::OK, None, None)
}

async fn signin(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = state.accounts().config();
    let refuse = |status: StatusCode, address: Option<&str>, text: &str| {
        signin_response(&config, &headers, status, address, Some(text))
    };
    if let Err(wait) = state.accounts().admit_admin_sign_in(client.ip) {
        tracing::info!(
            "event=admin_signin result=throttled ip={}",
            client.shown(&state)
        );
        let secs = wait.as_secs().max(1);
        let mut res = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            &format!("Too many sign-in attempts from your network; try again in {secs} seconds."),
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return res;
    }
    let bytes = match read_body(&state, &headers, body).await {
        Ok(b) => b,
        Err(e) => return refuse(e.status(), None, &e.reason()),
    };
    let fields = Fields::parse(&bytes);
    let address = fields.text("address");
    let cookie_token = cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if !fields
        .get(CSRF_FIELD)
        .is_some_and(|t| same_token(t, &cookie_token))
    {
        return refuse(
            StatusCode::FORBIDDEN,
            address,
            "This sign-in form has expired or did not come from this site; please try again.",
        );
    }
    let (Some(address), Some(password)) =
        (address, fields.get("password").filter(|p| !p.is_empty()))
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            address,
            "Enter your address and password.",
        );
    };
    const WRONG: &str = "Wrong address or password.";
    let shown_ip = client.shown(&state);
    let shown_address = if config.log.no_log { "-" } else { address };
    let ctx = LoginContext {
        service: "admin",
        remote_ip: client.ip,
    };
    let outcome = state
        .accounts()
        .admin_sign_in(address, &Password::new(password), ctx)
        .await;
    match outcome {
        Ok(AdminSignIn::Admin(admin)) => {
            // Always a new id: a session id planted before sign-in is worthless after it.
            if let Some(old) = cookie(&headers, SESSION_COOKIE) {
                state.0.sessions.remove(&old);
            }
            let session = state.0.sessions.create(&admin, super::now());
            tracing::info!("event=admin_signin result=ok address={shown_address} ip={shown_ip}");
            let mut res = Redirect::to("/admin/accounts").into_response();
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&set_cookie(
                SESSION_COOKIE,
                &session.id,
                super::session::cookie_lifetime(),
                secure(&config),
            )) {
                h.append(header::SET_COOKIE, v);
            }
            h.append(header::SET_COOKIE, clear_cookie(SIGNIN_COOKIE, &config));
            res
        }
        Ok(AdminSignIn::NotAdmin) => {
            tracing::info!(
                "event=admin_signin result=fail reason=not_admin address={shown_address} ip={shown_ip}"
            );
            refuse(
                StatusCode::FORBIDDEN,
                Some(address),
                "This account is not an administrator.",
            )
        }
        Ok(AdminSignIn::Refused(Refusal::Throttled)) => refuse(
            StatusCode::TOO_MANY_REQUESTS,
            Some(address),
            "Too many failed sign-ins for this account or network; wait a few minutes.",
        ),
        Ok(AdminSignIn::Refused(_)) => refuse(StatusCode::FORBIDDEN, Some(address), WRONG),
        Err(e) => {
            tracing::warn!("event=admin_signin result=tempfail error=\"{e}\"");
            unavailable(&config)
        }
    }
}

async fn signout(State(state): State<AppState>, AdminForm { admin, .. }: AdminForm) -> Response {
    state.0.sessions.remove(&admin.0.id);
    let config = state.accounts().config();
    let mut res = Redirect::to("/admin/login").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE, &config));
    res
}

// ----- accounts -----------------------------------------------------------------------

fn account_href(address: &str) -> String {
    format!("/admin/accounts/{}", form::encode(address))
}

fn quota_shown(row: &Account) -> String {
    let source = match row.quota.source {
        QuotaSource::Default => " (default)",
        QuotaSource::Explicit | QuotaSource::Unlimited => "",
    };
    format!("{}{source}", row.usage_text())
}

fn created_shown(row: &Account) -> String {
    let mut s = format!(
        "{} via {}",
        pages::when(Some(row.created_at)),
        row.created_via
    );
    if let Some(t) = &row.invite {
        s.push_str(&format!(" (invite {})", t.id));
    }
    s
}

fn badges(row: &Account) -> Markup {
    html! {
        @if row.status.is_blocked() { span .badge .blocked { "blocked" } }
        @if row.admin { span .badge .admin { "admin" } }
    }
}

async fn accounts_page(
    State(state): State<AppState>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> Response {
    let config = state.accounts().config();
    let q = Fields::parse(query.as_deref().unwrap_or("").as_bytes());
    let search = q.text("q").map(str::to_owned);
    let blocked_only = q.flag("blocked");
    let rows = match state.accounts().users(blocked_only, search.clone()).await {
        Ok(r) => r,
        Err(e) => {
            error_text(&e);
            return unavailable(&config);
        }
    };
    // A count, not worth failing the page over.
    let queued_homes = state.accounts().queued_home_count().await.unwrap_or(0);
    let content = html! {
        h1 { "Accounts" }
        form .inline method="get" action="/admin/accounts" role="search" {
            label .sr-only for="q" { "Search by address" }
            input #q type="search" name="q" value=[search.as_deref()] placeholder="Search by address";
            label .check { input type="checkbox" name="blocked" value="1" checked[blocked_only]; "blocked only" }
            button .small type="submit" { "Search" }
        }
        p { (rows.len()) " account(s)"
            @if rows.len() > LIST_LIMIT { ", the first " (LIST_LIMIT) " shown: search to narrow the list" } }
        @if queued_homes > 0 {
            p #queued-homes { "Mail homes of deleted accounts waiting for removal: " (queued_homes)
                ". The next maintenance run (daily) removes them, or " code { "postern maintenance run" }
                " at once." }
        }
        table #accounts {
            thead { tr {
                th scope="col" { "Address" } th scope="col" { "Usage" } th scope="col" { "Created" }
                th scope="col" { "First login" } th scope="col" { "Last login" }
            } }
            tbody {
                @for row in rows.iter().take(LIST_LIMIT) {
                    tr data-address=(row.address) {
                        td { a href=(account_href(&row.address)) { (row.address) } (badges(row)) }
                        td { (quota_shown(row)) }
                        td { (created_shown(row)) }
                        td { (pages::when(row.first_login)) }
                        td { (pages::when(row.last_login)) }
                    }
                }
            }
        }
        section aria-labelledby="add-h" {
            h2 #add-h { "Add an account" }
            form method="post" action="/admin/accounts" {
                (csrf(&admin.0))
                label for="new-address" { "Address or username" }
                input #new-address type="text" name="address" required autocapitalize="none" spellcheck="false";
                label for="new-password" { "Password" }
                input #new-password type="password" name="password" autocomplete="new-password";
                p .hint { "Leave empty to generate one; it is shown once, with a QR code for Delta Chat." }
                label for="new-quota" { "Quota" }
                input #new-quota type="text" name="quota" placeholder="default";
                p .hint { "Such as 500M or 2G, \"unlimited\", or empty for the default (" (config.quota.default) ")." }
                label .check { input type="checkbox" name="admin" value="1"; "administrator" }
                button type="submit" { "Add account" }
            }
        }
    };
    render(&state, &admin, "accounts", "Accounts", content).into_response()
}

async fn add_account(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let Some(address) = fields.text("address") else {
        return done(
            &state,
            &admin,
            "/admin/accounts",
            Err("Enter an address.".into()),
        );
    };
    let quota = match parse_quota(fields.get("quota").unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return done(&state, &admin, "/admin/accounts", Err(e)),
    };
    let user = NewUser {
        address: address.to_owned(),
        password: fields
            .get("password")
            .filter(|p| !p.is_empty())
            .map(Password::new),
        quota,
        admin: fields.flag("admin"),
        route: Route::Admin,
    };
    match state.accounts().add_user(user).await {
        Ok((row, Some(password))) => {
            let config = state.accounts().config();
            let content = html! {
                h1 { "Account " (row.address) " created" }
                p { "Hand these to its owner; the password is not shown again." }
                (pages::account_ready(&config, &row.address, password.expose()))
                p { a href=(account_href(&row.address)) { "Manage this account" } }
            };
            render(&state, &admin, "accounts", "Account created", content).into_response()
        }
        Ok((row, None)) => done(
            &state,
            &admin,
            &account_href(&row.address),
            Ok(format!("Account {} created.", row.address)),
        ),
        Err(e) => done(&state, &admin, "/admin/accounts", Err(error_text(&e))),
    }
}

async fn account_page(
    State(state): State<AppState>,
    admin: Admin,
    Path(address): Path<String>,
) -> Response {
    let config = state.accounts().config();
    let row = match state.accounts().user(&address).await {
        Ok(r) => r,
        Err(AdminError::Unavailable(e)) => {
            error_text(&AdminError::Unavailable(e));
            return unavailable(&config);
        }
        Err(e) => {
            let content = html! {
                h1 { "No such account" }
                p .error role="alert" { (error_text(&e)) }
                p { a href="/admin/accounts" { "All accounts" } }
            };
            return (
                StatusCode::NOT_FOUND,
                render(&state, &admin, "accounts", "No such account", content),
            )
                .into_response();
        }
    };
    let action = |name: &str| format!("{}/{name}", account_href(&row.address));
    let s = &admin.0;
    let content = html! {
        h1 { (row.address) (badges(&row)) }
        section #details {
            dl {
                dt { "Status" }
                dd #status {
                    @match &row.status {
                        Status::Blocked { reason, since } => {
                            "blocked since " (pages::when(Some(*since)))
                            @if let Some(r) = reason { " (" (r) ")" }
                        }
                        Status::Active => "active",
                    }
                }
                dt { "Administrator" } dd { @if row.admin { "yes" } @else { "no" } }
                dt { "Created" } dd { (created_shown(&row)) }
                dt { "First login" } dd { (pages::when(row.first_login)) }
                dt { "Last login" } dd { (pages::when(row.last_login)) }
                dt { "Usage" } dd { (quota_shown(&row)) ", " (row.usage.messages) " messages (reported " (pages::when(row.usage.updated_at)) ")" }
            }
        }
        section aria-labelledby="block-h" {
            @if row.status.is_blocked() {
                h2 #block-h { "Unblock" }
                p { "The account can log in and receive mail again." }
                form method="post" action=(action("unblock")) {
                    (csrf(s))
                    button type="submit" { "Unblock" }
                }
            } @else {
                h2 #block-h { "Block" }
                p { "A blocked account cannot log in or receive mail; its mail is kept." }
                form method="post" action=(action("block")) {
                    (csrf(s))
                    label for="reason" { "Reason (optional)" }
                    input #reason type="text" name="reason";
                    button .danger type="submit" { "Block" }
                }
            }
        }
        section aria-labelledby="quota-h" {
            h2 #quota-h { "Quota" }
            form method="post" action=(action("quota")) {
                (csrf(s))
                label for="quota" { "New quota" }
                input #quota type="text" name="quota" required placeholder="500M, 2G, unlimited or default";
                button type="submit" { "Set quota" }
            }
        }
        section aria-labelledby="password-h" {
            h2 #password-h { "Password" }
            form method="post" action=(action("password")) {
                (csrf(s))
                label for="new-password" { "New password" }
                input #new-password type="password" name="password" autocomplete="new-password";
                p .hint { "Leave empty to generate one; it is shown once. Devices using the old password are logged out." }
                button type="submit" { "Reset password" }
            }
        }
        section aria-labelledby="admin-h" {
            h2 #admin-h { "Administrator" }
            form method="post" action=(action("admin")) {
                (csrf(s))
                @if row.admin {
                    input type="hidden" name="admin" value="0";
                    button .secondary type="submit" { "Revoke administrator rights" }
                } @else {
                    input type="hidden" name="admin" value="1";
                    button .secondary type="submit" { "Make administrator" }
                }
            }
        }
        section aria-labelledby="delete-h" {
            h2 #delete-h { "Delete" }
            form method="post" action=(action("delete")) {
                (csrf(s))
                label .check { input type="checkbox" name="keep_mail" value="1"; "keep the mail on disk" }
                label .check { input type="checkbox" name="allow_reuse" value="1";
                    "let the address be registered again (otherwise it stays on the blocklist)" }
                label .check { input type="checkbox" name="confirm" value="1" required; "yes, delete " (row.address) }
                button .danger type="submit" { "Delete account" }
            }
        }
    };
    render(&state, &admin, "accounts", &row.address, content).into_response()
}

async fn account_action(
    State(state): State<AppState>,
    Path((address, action)): Path<(String, String)>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let accounts = state.accounts();
    let here = account_href(&address);
    let result = match action.as_str() {
        "block" => accounts
            .block_user(&address, fields.text("reason").map(str::to_owned))
            .await
            .map(|a| format!("{a} is blocked.")),
        "unblock" => accounts.unblock_user(&address).await.map(|(a, was)| {
            if was {
                format!("{a} is unblocked.")
            } else {
                format!("{a} was not blocked.")
            }
        }),
        "quota" => match parse_quota(fields.get("quota").unwrap_or("")) {
            Ok(q) => accounts
                .set_user_quota(&address, q)
                .await
                .map(|a| format!("The quota of {} is set.", a.address)),
            Err(e) => return done(&state, &admin, &here, Err(e)),
        },
        "admin" => {
            let make = fields.get("admin") == Some("1");
            accounts.set_user_admin(&address, make).await.map(|a| {
                if make {
                    format!("{a} is now an administrator.")
                } else {
                    format!("{a} is no longer an administrator.")
                }
            })
        }
        "password" => {
            let typed = fields
                .get("password")
                .filter(|p| !p.is_empty())
                .map(Password::new);
            match accounts.set_password(&address, typed).await {
                Ok((_, Some(password))) => {
                    let config = accounts.config();
                    let content = html! {
                        h1 { "New password for " (address) }
                        p { "Hand these to the account's owner; the password is not shown again." }
                        (pages::account_ready(&config, &address, password.expose()))
                        p { a href=(here) { "Back to the account" } }
                    };
                    return render(&state, &admin, "accounts", "New password", content)
                        .into_response();
                }
                Ok((a, None)) => Ok(format!("The password of {a} is changed.")),
                Err(e) => Err(e),
            }
        }
        "delete" => {
            if !fields.flag("confirm") {
                return done(
                    &state,
                    &admin,
                    &here,
                    Err("Tick the confirmation box to delete the account.".into()),
                );
            }
            let keep_mail = fields.flag("keep_mail");
            let allow_reuse = fields.flag("allow_reuse");
            // The daemon never removes mail homes itself: the deletion queues the home
            // for `postern maintenance run` (see `Accounts::delete_user`).
            match accounts.delete_user(&address, keep_mail, allow_reuse).await {
                Ok(d) => {
                    let mut text = format!("{} is deleted", d.account.address);
                    if d.still_blocked {
                        text.push_str("; the address stays on the blocklist");
                    }
                    text.push('.');
                    match &d.mail_queued {
                        Some(home) => text.push_str(&format!(
                            " Its mail home {} will be removed by the next maintenance run \
                             (daily), or at once by `postern maintenance run` on the server.",
                            home.display()
                        )),
                        None => text.push_str(" Its mail stays on disk."),
                    }
                    return done(&state, &admin, "/admin/accounts", Ok(text));
                }
                Err(e) => Err(e),
            }
        }
        _ => {
            let config = accounts.config();
            return message(
                &config,
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such action.",
            );
        }
    };
    done(&state, &admin, &here, result.map_err(|e| error_text(&e)))
}

// ----- invites ------------------------------------------------------------------------

async fn invites_page(State(state): State<AppState>, admin: Admin) -> Response {
    invites(&state, &admin, None).await
}

/// A new invite, shown once.
struct NewInvite {
    id: i64,
    code: String,
    link: String,
}

async fn invites(state: &AppState, admin: &Admin, created: Option<NewInvite>) -> Response {
    let config = state.accounts().config();
    let tokens = match state.accounts().tokens().await {
        Ok(t) => t,
        Err(e) => {
            error_text(&e);
            return unavailable(&config);
        }
    };
    let s = &admin.0;
    let content = html! {
        h1 { "Invites" }
        @if let Some(n) = &created {
            section #new-invite aria-labelledby="new-invite-h" {
                h2 #new-invite-h { "Invite " (n.id) " created" }
                p { "Send the link, or let the person scan the QR code with Delta Chat. "
                    strong { "This is the only time the code is shown" } ": postern keeps only its hash." }
                dl {
                    dt { "Code" } dd { span .secret #invite-code { (n.code) } }
                    dt { "Sign-up link" } dd { a #invite-link href=(n.link) { (n.link) } }
                    dt { "Delta Chat" } dd { code #invite-dcaccount { "DCACCOUNT:" (n.link) } }
                }
                @let dc = format!("DCACCOUNT:{}", n.link);
                (pages::qr_code(&dc, "QR code of the invite for Delta Chat"))
            }
        }
        section aria-labelledby="create-h" {
            h2 #create-h { "Create an invite" }
            form method="post" action="/admin/invites" {
                (csrf(s))
                label for="uses" { "Uses" }
                input #uses type="number" name="uses" min="1" value="1" required;
                p .hint { "How many accounts it may create." }
                label for="expires" { "Expires after" }
                input #expires type="text" name="expires" placeholder="72h, 30d, or empty for never";
                label for="comment" { "Comment" }
                input #comment type="text" name="comment" placeholder="for Alice";
                button type="submit" { "Create invite" }
            }
        }
        h2 { "All invites" }
        table #invites {
            thead { tr {
                th scope="col" { "Id" } th scope="col" { "Status" } th scope="col" { "Uses" }
                th scope="col" { "Expires" } th scope="col" { "Created" } th scope="col" { "Comment" }
                th scope="col" { span .sr-only { "Action" } }
            } }
            tbody {
                @for t in &tokens {
                    @let status = t.status.as_str();
                    tr data-id=(t.id) {
                        td { (t.id) }
                        td .status { (status.replace('_', " ")) }
                        td { (t.uses) " of " (t.max_uses) }
                        td { (pages::when(t.expires_at)) }
                        td { (pages::when(Some(t.created_at))) }
                        td { (t.comment.as_deref().unwrap_or("")) }
                        td {
                            @if t.revoked_at.is_none() {
                                form method="post" action=(format!("/admin/invites/{}/revoke", t.id)) {
                                    (csrf(s))
                                    button .secondary .small type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    render(state, admin, "invites", "Invites", content).into_response()
}

async fn create_invite(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let uses = match fields.text("uses").unwrap_or("1").parse::<u32>() {
        Ok(n) if n >= 1 => n,
        _ => {
            return done(
                &state,
                &admin,
                "/admin/invites",
                Err("Uses must be a whole number, at least 1.".into()),
            )
        }
    };
    let expires = match fields.text("expires").map(Seconds::parse).transpose() {
        Ok(e) => e,
        Err(e) => return done(&state, &admin, "/admin/invites", Err(e)),
    };
    let comment = fields.text("comment").map(str::to_owned);
    match state.accounts().create_token(uses, expires, comment).await {
        Ok((row, code)) => {
            let link = state.accounts().signup_link(&code);
            let created = NewInvite {
                id: row.id,
                code,
                link,
            };
            invites(&state, &admin, Some(created)).await
        }
        Err(e) => done(&state, &admin, "/admin/invites", Err(error_text(&e))),
    }
}

async fn revoke_invite(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminForm { admin, .. }: AdminForm,
) -> Response {
    // Only ids come through here: a code in a URL would end up in access logs.
    if id.parse::<i64>().is_err() {
        return done(
            &state,
            &admin,
            "/admin/invites",
            Err(format!("there is no invite {id}")),
        );
    }
    let result = state
        .accounts()
        .revoke_token(&id)
        .await
        .map(|row| format!("Invite {} is revoked.", row.id))
        .map_err(|e| error_text(&e));
    done(&state, &admin, "/admin/invites", result)
}

// ----- blocklist ----------------------------------------------------------------------

async fn blocklist_page(State(state): State<AppState>, admin: Admin) -> Response {
    let config = state.accounts().config();
    let entries = match state.accounts().blocklist().await {
        Ok(e) => e,
        Err(e) => {
            error_text(&e);
            return unavailable(&config);
        }
    };
    let s = &admin.0;
    let content = html! {
        h1 { "Blocklist" }
        p { "Addresses on the blocklist cannot log in, receive mail, or be registered." }
        section aria-labelledby="add-h" {
            h2 #add-h { "Add an address" }
            form method="post" action="/admin/blocklist" {
                (csrf(s))
                label for="block-address" { "Address" }
                input #block-address type="text" name="address" required autocapitalize="none" spellcheck="false";
                label for="block-reason" { "Reason (optional)" }
                input #block-reason type="text" name="reason";
                button .danger type="submit" { "Add to the blocklist" }
            }
        }
        table #blocklist {
            thead { tr { th scope="col" { "Address" } th scope="col" { "Since" } th scope="col" { "Reason" }
                th scope="col" { span .sr-only { "Action" } } } }
            tbody {
                @for b in &entries {
                    tr data-address=(b.address) {
                        td { (b.address) }
                        td { (pages::when(Some(b.since))) }
                        td { (b.reason.as_deref().unwrap_or("")) }
                        td {
                            form method="post" action="/admin/blocklist/remove" {
                                (csrf(s))
                                input type="hidden" name="address" value=(b.address);
                                button .secondary .small type="submit" { "Remove" }
                            }
                        }
                    }
                }
            }
        }
    };
    render(&state, &admin, "blocklist", "Blocklist", content).into_response()
}

async fn blocklist_add(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let Some(address) = fields.text("address") else {
        return done(
            &state,
            &admin,
            "/admin/blocklist",
            Err("Enter an address.".into()),
        );
    };
    let result = state
        .accounts()
        .blocklist_add(address, fields.text("reason").map(str::to_owned))
        .await
        .map(|(address, new)| {
            if new {
                format!("{address} is on the blocklist.")
            } else {
                format!("{address} was already on the blocklist.")
            }
        })
        .map_err(|e| error_text(&e));
    done(&state, &admin, "/admin/blocklist", result)
}

async fn blocklist_remove(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let Some(address) = fields.text("address") else {
        return done(
            &state,
            &admin,
            "/admin/blocklist",
            Err("Enter an address.".into()),
        );
    };
    let result = state
        .accounts()
        .blocklist_remove(address)
        .await
        .map(|(address, was)| {
            if was {
                format!("{address} is off the blocklist.")
            } else {
                format!("{address} was not on the blocklist.")
            }
        })
        .map_err(|e| error_text(&e));
    done(&state, &admin, "/admin/blocklist", result)
}

// ----- registration mode --------------------------------------------------------------

fn mode_text(mode: RegistrationMode) -> &'static str {
    match mode {
        RegistrationMode::Open => "open: anyone may create an account",
        RegistrationMode::InviteOnly => "invite only: an invite code is needed",
        RegistrationMode::Closed => "closed: nobody can create an account",
    }
}

async fn registration_page(State(state): State<AppState>, admin: Admin) -> Response {
    let config = state.accounts().config();
    let (mode, over) = match (
        state.accounts().registration_mode().await,
        state.accounts().registration_override().await,
    ) {
        (Ok(m), Ok(o)) => (m, o),
        (Err(e), _) => {
            error_text(&AdminError::Unavailable(e));
            return unavailable(&config);
        }
        (_, Err(e)) => {
            error_text(&e);
            return unavailable(&config);
        }
    };
    let file_mode = config.registration.mode;
    let s = &admin.0;
    let content = html! {
        h1 { "Registration" }
        p #mode { "Registration is " strong #mode-value { (mode.as_str()) } " (" (mode_text(mode)) ")"
            @if over.is_some() { ", set here at run time" } @else { ", as in the configuration file" } "." }
        p .hint { "Just-in-time creation at the first login (in open mode) is "
            @if config.registration.jit { "on" } @else { "off" } " in the configuration file." }
        form method="post" action="/admin/registration" {
            (csrf(s))
            fieldset {
                legend { "New mode" }
                @for m in [RegistrationMode::Open, RegistrationMode::InviteOnly, RegistrationMode::Closed] {
                    label .check {
                        input type="radio" name="mode" value=(m.as_str()) checked[over == Some(m)];
                        (mode_text(m))
                    }
                }
                label .check {
                    input type="radio" name="mode" value="default" checked[over.is_none()];
                    "as in the configuration file (" (file_mode.as_str()) ")"
                }
            }
            button type="submit" { "Apply" }
            p .hint { "Takes effect at once for every postern process sharing the database, and survives restarts." }
        }
    };
    render(&state, &admin, "registration", "Registration", content).into_response()
}

async fn set_registration(
    State(state): State<AppState>,
    AdminForm { admin, fields }: AdminForm,
) -> Response {
    let mode = match fields.text("mode") {
        Some("default") => None,
        Some(m) => match RegistrationMode::parse(m) {
            Some(m) => Some(m),
            None => {
                return done(
                    &state,
                    &admin,
                    "/admin/registration",
                    Err("Choose open, invite_only, closed or default.".into()),
                )
            }
        },
        None => {
            return done(
                &state,
                &admin,
                "/admin/registration",
                Err("Choose a mode.".into()),
            )
        }
    };
    let result = state
        .accounts()
        .set_registration_mode(mode)
        .await
        .map(|now| format!("Registration is now {now}."))
        .map_err(|e| error_text(&e));
    done(&state, &admin, "/admin/registration", result)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn quotas_as_the_cli_reads_them() {
        assert_eq!(
            account_href("a+b@example.org"),
            "/admin/accounts/a%2Bb%40example.org"
        );
    }
}
