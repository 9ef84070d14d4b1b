//! Signing in and out of the admin pages.
//!
//! ```text
//! GET  /admin/login                          -> the form, with a double-submit token
//! POST /admin/login  address=..&password=..&csrf=..   -> 303 /admin/accounts + session
//! POST /admin/logout csrf=..                 -> 303 /admin/login
//! ```

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

use super::super::form::Fields;
use super::super::session::{
    cookie, set_cookie, signin_fields, signin_token, SESSION_COOKIE, SIGNIN_COOKIE,
};
use super::super::{pages, read_body, AppState, Client};
use super::{clear_cookie, secure, unavailable, Admin, AdminForm};
use crate::accounts::password::Password;
use crate::accounts::{AdminSignIn, LoginContext, LoginVia, Refusal};
use crate::config::Config;
use crate::logfmt;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/login", get(signin_page).post(signin))
        .route("/admin/logout", post(signout))
}

fn signin_form(config: &Config, token: &str, address: Option<&str>, error: Option<&str>) -> Markup {
    pages::layout(
        "Sign in",
        true,
        html! { span .site { (config.site_name()) " · admin" } },
        html! {
            h1 { "Sign in" }
            (pages::signin_form("/admin/login", token, address, error))
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
    let token = signin_token(headers, SIGNIN_COOKIE);
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
    if let Err(throttled) = state.accounts().admit_admin_sign_in(client.ip) {
        let ip = logfmt::private_opt(client.ip, config.log.no_log);
        if throttled.news {
            tracing::info!("event=admin_signin result=throttled ip={ip}");
        } else {
            tracing::debug!("event=admin_signin result=throttled ip={ip}");
        }
        let secs = throttled.wait.as_secs().max(1);
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
    let (address, password) = match signin_fields(&fields, &headers, SIGNIN_COOKIE) {
        Ok(typed) => typed,
        Err(bad) => return refuse(bad.status(), bad.address, bad.text()),
    };
    const WRONG: &str = "Wrong address or password.";
    let shown_ip = logfmt::private_opt(client.ip, config.log.no_log);
    let shown_address = logfmt::private(address, config.log.no_log);
    let ctx = LoginContext {
        service: "admin",
        remote_ip: client.ip,
        via: LoginVia::Admin,
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
            let session = state.0.sessions.create(&admin, super::super::now());
            tracing::info!("event=admin_signin result=ok address={shown_address} ip={shown_ip}");
            let mut res = Redirect::to("/admin/accounts").into_response();
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&set_cookie(
                SESSION_COOKIE,
                &session.id,
                super::super::session::cookie_lifetime(),
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
            tracing::warn!(
                "event=admin_signin result=tempfail error={}",
                logfmt::value(&e)
            );
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
