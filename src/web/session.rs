//! Sessions and CSRF tokens of the admin pages and of `/account` (one [`Sessions`] store
//! each), kept in memory (a restart signs everyone out).
//!
//! ```text
//! Set-Cookie: postern_admin=<43 chars: 256 random bits>; Path=/admin; HttpOnly; SameSite=Strict[; Secure]
//! Set-Cookie: postern_account=<...>; Path=/account; ...   an owner's session at /account
//! <input type="hidden" name="csrf" value="<per-session 256-bit token>">
//! Set-Cookie: postern_signin=<random>; ...    sign-in form only: the same value must come
//!                                             back in its hidden field (double submit)
//! ```
//!
//! The server keeps only the SHA-256 of each session id, so the map's lookups reveal
//! nothing through timing; tokens are compared in constant time. A session ends after an
//! hour unused, twelve hours after sign-in, or at sign-out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::form::Fields;

/// The session cookie.
pub const SESSION_COOKIE: &str = "postern_admin";
/// The sign-in form's double-submit cookie.
pub const SIGNIN_COOKIE: &str = "postern_signin";
/// The hidden field every admin form carries.
pub const CSRF_FIELD: &str = "csrf";

const IDLE: Duration = Duration::from_secs(3600);
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept; the oldest go first beyond this.
const MAX_SESSIONS: usize = 10_000;

/// A one-time message shown on the next page (after POST-redirect-GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

struct Entry {
    address: String,
    tag: [u8; 16],
    csrf: String,
    created: Instant,
    seen: Instant,
    flash: Option<Flash>,
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie value (needed to sign out or leave a flash).
    pub id: String,
    pub address: String,
    pub csrf: String,
    /// What the session was opened with besides the address (an owner's: the core's tag
    /// of the password in force); zero for admin sessions.
    pub tag: [u8; 16],
}

impl Session {
    /// Whether a submitted form carries this session's CSRF token.
    pub fn csrf_ok(&self, submitted: Option<&str>) -> bool {
        submitted.is_some_and(|s| same_token(s, &self.csrf))
    }
}

/// Every signed-in admin of this process.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts a session for `address` with a fresh id and CSRF token.
    pub fn create(&self, address: &str, now: Instant) -> Session {
        self.create_tagged(address, [0; 16], now)
    }

    /// Starts a session that carries `tag` (see [`Session::tag`]).
    pub fn create_tagged(&self, address: &str, tag: [u8; 16], now: Instant) -> Session {
        let id = random_token();
        let csrf = random_token();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, e| alive(e, now));
            if map.len() >= MAX_SESSIONS {
                if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.seen).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(
            key(&id),
            Entry {
                address: address.to_owned(),
                tag,
                csrf: csrf.clone(),
                created: now,
                seen: now,
                flash: None,
            },
        );
        Session {
            id,
            address: address.to_owned(),
            csrf,
            tag,
        }
    }

    /// The live session with this cookie value, marked as used now.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let k = key(id);
        let mut map = self.lock();
        let entry = map.get_mut(&k)?;
        if !alive(entry, now) {
            map.remove(&k);
            return None;
        }
        entry.seen = now;
        Some(Session {
            id: id.to_owned(),
            address: entry.address.clone(),
            csrf: entry.csrf.clone(),
            tag: entry.tag,
        })
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    /// Ends every session of `address` (its password changed, it was deleted).
    pub fn remove_address(&self, address: &str) {
        self.lock().retain(|_, e| e.address != address);
    }

    pub fn set_flash(&self, id: &str, flash: Flash) {
        if let Some(e) = self.lock().get_mut(&key(id)) {
            e.flash = Some(flash);
        }
    }

    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.lock().get_mut(&key(id)).and_then(|e| e.flash.take())
    }
}

fn alive(e: &Entry, now: Instant) -> bool {
    now.saturating_duration_since(e.seen) < IDLE
        && now.saturating_duration_since(e.created) < LIFETIME
}

/// 256 random bits from the OS, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time comparison of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// A `Set-Cookie` value for the admin pages; `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    set_cookie_at("/admin", name, value, max_age, secure)
}

/// A `Set-Cookie` value for the pages below `path` (`/admin`, `/account`).
pub fn set_cookie_at(
    path: &str,
    name: &str,
    value: &str,
    max_age: Duration,
    secure: bool,
) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// Session cookies are `Secure` whenever links would be https: always, unless
/// `http.public_url` is an explicit `http://` URL.
pub fn secure_cookies(config: &crate::config::Config) -> bool {
    config
        .http
        .public_url
        .as_deref()
        .is_none_or(|u| !u.trim().to_ascii_lowercase().starts_with("http://"))
}

/// The double-submit token for a sign-in form: the one its cookie `name` already holds,
/// or a new one.
pub fn signin_token(headers: &HeaderMap, name: &str) -> String {
    cookie(headers, name)
        .filter(|t| t.len() == 43)
        .unwrap_or_else(random_token)
}

/// A sign-in form that is not to be checked: forged (its token is not its cookie's) or
/// incomplete. The address as typed, to fill in again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignIn<'a> {
    pub address: Option<&'a str>,
    forged: bool,
}

impl BadSignIn<'_> {
    pub fn status(&self) -> StatusCode {
        if self.forged {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        }
    }

    pub fn text(&self) -> &'static str {
        if self.forged {
            "This sign-in form has expired or did not come from this site; please try again."
        } else {
            "Enter your address and password."
        }
    }
}

/// The address and password of a sign-in form (`address`, `password`, the hidden
/// token), once its token matches the double-submit cookie `cookie_name`.
pub fn signin_fields<'a>(
    fields: &'a Fields,
    headers: &HeaderMap,
    cookie_name: &str,
) -> Result<(&'a str, &'a str), BadSignIn<'a>> {
    let address = fields.text("address");
    let cookie_token = cookie(headers, cookie_name).unwrap_or_default();
    if !fields
        .get(CSRF_FIELD)
        .is_some_and(|t| same_token(t, &cookie_token))
    {
        return Err(BadSignIn {
            address,
            forged: true,
        });
    }
    match (address, fields.get("password").filter(|p| !p.is_empty())) {
        (Some(a), Some(p)) => Ok((a, p)),
        _ => Err(BadSignIn {
            address,
            forged: false,
        }),
    }
}

/// How long the session cookie lives in the browser (the server may end it sooner).
pub fn cookie_lifetime() -> Duration {
    LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sessions_expire_when_idle_and_after_their_lifetime() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.create("admin@example.org", t0);
        assert_eq!(a.id.len(), 43);
        assert_ne!(a.id, a.csrf);
        let got = s.get(&a.id, t0 + Duration::from_secs(60)).expect("live");
        assert_eq!(got.address, "admin@example.org");
        assert!(got.csrf_ok(Some(&a.csrf)));
        assert!(!got.csrf_ok(Some("x")));
        assert!(!got.csrf_ok(None));
        assert!(s.get("not-a-session", t0).is_none());
        // Used every 50 minutes, it still ends after 12 hours.
        let mut t = t0;
        for _ in 0..14 {
            t += Duration::from_secs(50 * 60);
            assert!(s.get(&a.id, t).is_some());
        }
        t += Duration::from_secs(50 * 60);
        assert!(s.get(&a.id, t).is_none());

        let b = s.create("admin@example.org", t0);
        assert!(s.get(&b.id, t0 + IDLE).is_none());

        let c = s.create("admin@example.org", t0);
        s.set_flash(
            &c.id,
            Flash {
                ok: true,
                text: "done".into(),
            },
        );
        assert_eq!(s.take_flash(&c.id).map(|f| f.text), Some("done".into()));
        assert_eq!(s.take_flash(&c.id), None);
        s.remove(&c.id);
        assert!(s.get(&c.id, t0).is_none());

        let d = s.create("bob@example.org", t0);
        let e = s.create("bob@example.org", t0);
        let other = s.create("carol@example.org", t0);
        s.remove_address("bob@example.org");
        assert!(s.get(&d.id, t0).is_none() && s.get(&e.id, t0).is_none());
        assert!(s.get(&other.id, t0).is_some());
    }

    #[test]
    fn sign_in_forms_need_their_cookie_token_and_both_fields() {
        let token = random_token();
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            HeaderValue::from_str(&format!("postern_signin={token}")).expect("header"),
        );
        assert_eq!(signin_token(&h, SIGNIN_COOKIE), token);
        assert_ne!(signin_token(&HeaderMap::new(), SIGNIN_COOKIE), token);
        let form = |body: String| Fields::parse(body.as_bytes());
        let good = form(format!("address=a%40example.org&password=pw&csrf={token}"));
        assert_eq!(
            signin_fields(&good, &h, SIGNIN_COOKIE),
            Ok(("a@example.org", "pw"))
        );
        let forged = form("address=a%40example.org&password=pw&csrf=other".into());
        let bad = signin_fields(&forged, &h, SIGNIN_COOKIE).expect_err("forged");
        assert_eq!(
            (bad.status(), bad.address),
            (StatusCode::FORBIDDEN, Some("a@example.org"))
        );
        assert!(signin_fields(&good, &HeaderMap::new(), SIGNIN_COOKIE).is_err());
        let empty = form(format!("address=a%40example.org&password=&csrf={token}"));
        let bad = signin_fields(&empty, &h, SIGNIN_COOKIE).expect_err("no password");
        assert_eq!(
            (bad.status(), bad.text()),
            (StatusCode::BAD_REQUEST, "Enter your address and password.")
        );
    }

    #[test]
    fn cookies_and_tokens() {
        let mut h = HeaderMap::new();
        h.append(
            axum::http::header::COOKIE,
            HeaderValue::from_static("a=1; postern_admin=abc"),
        );
        h.append(axum::http::header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc".into()));
        assert_eq!(cookie(&h, "b"), Some("2".into()));
        assert_eq!(cookie(&h, "c"), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("", ""));
        assert_eq!(
            set_cookie_at("/account", "postern_account", "v", Duration::ZERO, false),
            "postern_account=v; Path=/account; Max-Age=0; HttpOnly; SameSite=Strict"
        );
        let set = set_cookie(SESSION_COOKIE, "v", Duration::from_secs(60), true);
        assert_eq!(
            set,
            "postern_admin=v; Path=/admin; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
