//! The loopback auth API that Dovecot 2.4's Lua passdb/userdb script
//! (`dovecot/postern.lua`) calls, since 2.4 has no dict passdb/userdb. Thin: JSON in, one
//! accounts-core call, the answer out; the login is the very one the dict and SASL
//! services make (just-in-time creation, brute-force limits, verification cache).
//!
//! Every request carries the shared secret (`auth_http.secret_file`, read at start and
//! again at each reload) as `Authorization: Bearer <secret>`, compared in constant time;
//! without it the answer is 401, with a wrong one 403, and the core is not called. Answers are JSON, or `key=value`
//! lines (an array gives one line per element) when the request says
//! `Accept: text/plain`, which is what the Lua script asks for: Lua 5.4 has no JSON decoder.
//!
//! ```text
//! POST /v1/passdb  {"user":"Alice@Example.org","password":"...","service":"imap","remote_ip":"192.0.2.7"}
//!   200 {"result":"ok","user":"alice@example.org"}      result=ok
//!                                                       user=alice@example.org
//!   200 {"result":"fail"}            wrong password, blocked, unknown and not creatable, throttled
//!   503 {"result":"tempfail","reason":"temporary failure, try again later"}
//! POST /v1/userdb  {"user":"alice@example.org"}
//!   200 {"result":"ok","user":"alice@example.org","home":"/var/vmail/example.org/alice",
//!        "uid":"vmail","gid":"vmail","quota_storage_size":"524288000B"}   (or "unlimited")
//!   200 {"result":"unknown"}         no such account, or blocked
//! GET  /v1/users
//!   200 {"result":"ok","users":["alice@example.org","bob@example.org"]}
//! no secret  401 {"result":"error","reason":"missing secret: send Authorization: Bearer <secret>"}
//! wrong one  403 {"result":"error","reason":"wrong secret"}
//! bad body   400 {"result":"error","reason":"invalid request body: expected ..."}
//! ```
//!
//! `quota_storage_size` is Dovecot 2.4's per-user quota setting (2.4 dropped `quota_rule`).

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::accounts::password::Password;
use crate::accounts::{Accounts, LoginContext, LoginOutcome, LoginVia, UserdbEntry};
use crate::conn::PeerAddr;
use crate::logfmt;

/// Largest request body accepted (a user name and a password fit many times over).
const MAX_BODY: usize = 16 * 1024;
/// What a client sees for a temporary failure; never the cause.
const TEMPFAIL_REASON: &str = "temporary failure, try again later";
/// The service name logged when the request names none (or an odd one).
const DEFAULT_SERVICE: &str = "dovecot";

/// The shared secret requests must carry. The server holds it too and swaps in the one
/// re-read at a reload (SIGHUP), so a rotated secret needs no restart.
#[derive(Debug)]
pub struct Secret(RwLock<Arc<[u8]>>);

impl Secret {
    pub fn new(secret: Vec<u8>) -> Secret {
        Secret(RwLock::new(secret.into()))
    }

    /// The secret in force now.
    pub fn current(&self) -> Arc<[u8]> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `secret` in force for every request from now on.
    pub fn replace(&self, secret: Vec<u8>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = secret.into();
    }
}

/// The state every handler shares.
#[derive(Clone)]
struct Api {
    accounts: Arc<Accounts>,
    secret: Arc<Secret>,
}

/// The routes served on `listen.auth_http`; every request must carry `secret`.
pub fn router(accounts: Arc<Accounts>, secret: Arc<Secret>) -> Router {
    let api = Api { accounts, secret };
    Router::new()
        .route("/v1/passdb", post(passdb))
        .route("/v1/userdb", post(userdb))
        .route("/v1/users", get(users))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(api.clone(), require_secret))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

// ----- answers ---------------------------------------------------------------------------

/// One field of an answer: a string, or a list of strings.
enum Value {
    One(String),
    Many(Vec<String>),
}

/// A status and flat fields, rendered as JSON or as `key=value` lines.
struct Answer {
    status: StatusCode,
    fields: Vec<(&'static str, Value)>,
}

impl Answer {
    fn new(status: StatusCode, result: &str) -> Answer {
        Answer {
            status,
            fields: vec![("result", Value::One(result.to_owned()))],
        }
    }

    fn with(mut self, key: &'static str, value: impl Into<String>) -> Answer {
        self.fields.push((key, Value::One(value.into())));
        self
    }

    fn error(status: StatusCode, reason: &str) -> Answer {
        Answer::new(status, "error").with("reason", reason)
    }

    fn tempfail() -> Answer {
        Answer::new(StatusCode::SERVICE_UNAVAILABLE, "tempfail").with("reason", TEMPFAIL_REASON)
    }

    fn render(self, text: bool) -> Response {
        if !text {
            let mut map = serde_json::Map::new();
            for (key, value) in self.fields {
                let value = match value {
                    Value::One(s) => serde_json::Value::String(s),
                    Value::Many(v) => v.into_iter().map(serde_json::Value::String).collect(),
                };
                map.insert(key.to_owned(), value);
            }
            let body = serde_json::Value::Object(map).to_string();
            return (
                self.status,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        match text_body(&self.fields) {
            Some(body) => (
                self.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                body,
            )
                .into_response(),
            None => {
                tracing::warn!("event=auth_api result=tempfail error=\"a value has a line break\"");
                Answer::tempfail().render(true)
            }
        }
    }
}

/// `key=value` lines; `None` when a value cannot be written that way (a line break or NUL).
fn text_body(fields: &[(&'static str, Value)]) -> Option<String> {
    let mut out = String::new();
    let mut line = |key: &str, value: &str| {
        if value.contains(['\n', '\r', '\0']) {
            return false;
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        out.push('\n');
        true
    };
    for (key, value) in fields {
        let ok = match value {
            Value::One(s) => line(key, s),
            Value::Many(v) => v.iter().all(|s| line(key, s)),
        };
        if !ok {
            return None;
        }
    }
    Some(out)
}

/// The client asked for `key=value` lines rather than JSON.
fn wants_text(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/plain"))
}

// ----- the secret ------------------------------------------------------------------------

/// Lets a request through only with the right `Authorization: Bearer <secret>`.
async fn require_secret(State(api): State<Api>, req: Request, next: Next) -> Response {
    let text = wants_text(req.headers());
    let secret = api.secret.current();
    let refusal = match bearer(req.headers()) {
        None => Some((
            StatusCode::UNAUTHORIZED,
            "missing_secret",
            "missing secret: send Authorization: Bearer <secret>",
        )),
        // An empty configured secret never matches (the server refuses to start with one).
        Some(given) if secret.is_empty() || !bool::from(given.ct_eq(&secret)) => {
            Some((StatusCode::FORBIDDEN, "wrong_secret", "wrong secret"))
        }
        Some(_) => None,
    };
    let Some((status, why, reason)) = refusal else {
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<PeerAddr>()
        .and_then(|p| p.0)
        .map(|a| a.ip());
    let peer = logfmt::private_opt(peer, api.accounts.config().log.no_log);
    tracing::warn!("event=auth_api result=refused reason={why} peer={peer}");
    let mut response = Answer::error(status, reason).render(text);
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes().trim_ascii();
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, token) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(token.trim_ascii())
}

// ----- requests --------------------------------------------------------------------------

#[derive(Deserialize)]
struct PassdbRequest {
    user: String,
    password: String,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    remote_ip: Option<String>,
}

#[derive(Deserialize)]
struct UserdbRequest {
    user: String,
}

/// Parses a JSON body; the 400 answer names what was expected and never echoes the input
/// (it may hold a password).
fn parse<T: DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, Answer> {
    serde_json::from_slice(body).map_err(|_| {
        Answer::error(
            StatusCode::BAD_REQUEST,
            &format!("invalid request body: expected {expected}"),
        )
    })
}

/// The service name for logs: the request's, when it looks like one.
fn service_name(service: Option<&str>) -> &str {
    match service {
        Some(s)
            if (1..=32).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            s
        }
        _ => DEFAULT_SERVICE,
    }
}

/// The client's address; absent or empty means unknown.
fn remote_ip(given: Option<&str>) -> Result<Option<IpAddr>, Answer> {
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| Answer::error(StatusCode::BAD_REQUEST, "remote_ip is not an IP address")),
    }
}

// ----- handlers --------------------------------------------------------------------------

async fn passdb(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let text = wants_text(&headers);
    let answer = match passdb_answer(&api, &body).await {
        Ok(a) | Err(a) => a,
    };
    answer.render(text)
}

async fn passdb_answer(api: &Api, body: &[u8]) -> Result<Answer, Answer> {
    let req: PassdbRequest = parse(
        body,
        r#"{"user":"...","password":"...","service":"...","remote_ip":"..."}"#,
    )?;
    let ctx = LoginContext {
        service: service_name(req.service.as_deref()),
        remote_ip: remote_ip(req.remote_ip.as_deref())?,
        via: LoginVia::LuaApi,
    };
    let password = Password::new(req.password);
    Ok(match api.accounts.login(&req.user, &password, ctx).await {
        Ok(LoginOutcome::Accepted { address, .. }) => {
            Answer::new(StatusCode::OK, "ok").with("user", address)
        }
        Ok(LoginOutcome::Refused(_)) => Answer::new(StatusCode::OK, "fail"),
        // The core has logged the cause.
        Err(_) => Answer::tempfail(),
    })
}

async fn userdb(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let text = wants_text(&headers);
    let answer = match parse::<UserdbRequest>(&body, r#"{"user":"..."}"#) {
        Err(a) => a,
        Ok(req) => match api.accounts.userdb(&req.user).await {
            Ok(Some(entry)) => userdb_answer(entry),
            Ok(None) => Answer::new(StatusCode::OK, "unknown"),
            Err(e) => {
                tracing::warn!("event=userdb result=tempfail error={}", logfmt::value(&e));
                Answer::tempfail()
            }
        },
    };
    answer.render(text)
}

fn userdb_answer(entry: UserdbEntry) -> Answer {
    let Some(home) = entry.home.to_str() else {
        tracing::warn!("event=userdb result=tempfail error=\"mail home is not UTF-8\"");
        return Answer::tempfail();
    };
    let quota = match entry.quota_bytes {
        Some(bytes) => format!("{bytes}B"),
        None => "unlimited".to_owned(),
    };
    Answer::new(StatusCode::OK, "ok")
        .with("user", entry.address.clone())
        .with("home", home)
        .with("uid", entry.uid)
        .with("gid", entry.gid)
        .with("quota_storage_size", quota)
}

async fn users(State(api): State<Api>, headers: HeaderMap) -> Response {
    let text = wants_text(&headers);
    let answer = match api.accounts.userdb_list().await {
        Ok(all) => {
            let mut a = Answer::new(StatusCode::OK, "ok");
            a.fields.push(("users", Value::Many(all)));
            a
        }
        Err(e) => {
            tracing::warn!(
                "event=userdb_list result=tempfail error={}",
                logfmt::value(&e)
            );
            Answer::tempfail()
        }
    };
    answer.render(text)
}

async fn not_found(headers: HeaderMap) -> Response {
    Answer::error(StatusCode::NOT_FOUND, "no such endpoint").render(wants_text(&headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    #[test]
    fn bearer_token_is_taken_from_the_authorization_header() {
        let h = headers(&[(header::AUTHORIZATION, "Bearer  s3cret-token ")]);
        assert_eq!(bearer(&h), Some(&b"s3cret-token"[..]));
        let h = headers(&[(header::AUTHORIZATION, "bearer abc")]);
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        let h = headers(&[(header::AUTHORIZATION, "Basic abc")]);
        assert_eq!(bearer(&h), None);
        let h = headers(&[(header::AUTHORIZATION, "Bearer")]);
        assert_eq!(bearer(&h), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn text_answers_are_key_value_lines_and_refuse_line_breaks() {
        let fields = vec![
            ("result", Value::One("ok".into())),
            (
                "users",
                Value::Many(vec!["a@x.org".into(), "b@x.org".into()]),
            ),
        ];
        assert_eq!(
            text_body(&fields).as_deref(),
            Some("result=ok\nusers=a@x.org\nusers=b@x.org\n")
        );
        let bad = vec![("home", Value::One("/a\nb".into()))];
        assert_eq!(text_body(&bad), None);
    }

    #[test]
    fn accept_header_selects_text() {
        assert!(wants_text(&headers(&[(header::ACCEPT, "text/plain")])));
        assert!(wants_text(&headers(&[(
            header::ACCEPT,
            "application/json, Text/Plain;q=0.5"
        )])));
        assert!(!wants_text(&headers(&[(header::ACCEPT, "*/*")])));
        assert!(!wants_text(&HeaderMap::new()));
    }

    #[test]
    fn odd_service_names_are_not_logged_verbatim() {
        assert_eq!(service_name(Some("imap")), "imap");
        assert_eq!(service_name(Some("imap\" x=1")), DEFAULT_SERVICE);
        assert_eq!(service_name(Some("")), DEFAULT_SERVICE);
        assert_eq!(service_name(None), DEFAULT_SERVICE);
    }

    #[test]
    fn remote_ip_is_optional_but_must_parse() {
        assert_eq!(remote_ip(None).ok(), Some(None));
        assert_eq!(remote_ip(Some("")).ok(), Some(None));
        assert_eq!(
            remote_ip(Some("192.0.2.7")).ok(),
            Some(Some("192.0.2.7".parse().expect("ip")))
        );
        assert!(remote_ip(Some("::1")).is_ok());
        assert!(remote_ip(Some("not-an-ip")).is_err());
    }

    #[test]
    fn bad_bodies_never_echo_the_input() {
        let Err(a) = parse::<PassdbRequest>(br#"{"user":"a","password":12345678}"#, "X") else {
            panic!("parsed a numeric password");
        };
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let body = text_body(&a.fields).expect("text");
        assert!(!body.contains("12345678"), "{body}");
    }
}
