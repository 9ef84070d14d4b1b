//! One auth-client connection (Postfix smtpd keeps one per process, across SMTP
//! sessions): send the handshake, then run AUTH conversations, several at once, each
//! answered under its own id as soon as the core has decided. The session is the state
//! of one connection (conversations waiting for a CONT, password checks running) over
//! the shared [`Connection`], which wakes it when a check finishes.
//!
//! ```text
//! S: VERSION 1 2 / MECH PLAIN plaintext / MECH LOGIN plaintext / SPID / CUID / COOKIE / DONE
//! C: AUTH 1 PLAIN service=smtp nologin rip=192.0.2.7 resp=AGFsaWNl...
//! S: OK 1 user=alice@example.org          (or FAIL 1 user=... reason=...)
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::{JoinError, JoinSet};

use super::codec::{self, AuthRequest, DecodeError, Reply, Request};
use super::sasl::{Conversation, Mechanism, SaslError, Step};
use crate::accounts::password::Password;
use crate::accounts::{Accounts, LoginContext, LoginOutcome, LoginVia};
use crate::conn::{Connection, Decoder, Input, Lease};
use crate::logfmt;

/// An auth client that says nothing for this long is disconnected (Postfix reconnects).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Conversations one connection may have open at once.
const MAX_IN_FLIGHT: usize = 64;
/// What a refused client is told: the same for every reason, so nobody learns whether
/// an account exists, is blocked or is throttled.
const FAIL_REASON: &str = "Authentication failed";
const TEMP_REASON: &str = "Temporary authentication failure, try again later";

static NEXT_CUID: AtomicU32 = AtomicU32::new(1);

impl Decoder for codec::Codec {
    type Frame = Request;
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, DecodeError> {
        codec::Codec::decode(self, buf)
    }

    fn ends_session(error: &DecodeError) -> bool {
        error.ends_session()
    }
}

/// Serves one connection until the client closes it, misbehaves, or the lease ends
/// (conversations already being checked are still answered).
pub async fn run<S>(stream: S, accounts: Arc<Accounts>, lease: Lease) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Connection::new(stream, codec::Codec::new(), IDLE_TIMEOUT, lease);
    handshake(conn.out());
    conn.flush().await?;
    let mut session = Session {
        accounts,
        pending: HashMap::new(),
        checks: JoinSet::new(),
    };
    while let Some(input) = conn.next(session.checked()).await? {
        match input {
            Input::Frame(request) => {
                if !session.handle(request, conn.out()) {
                    conn.end();
                }
            }
            Input::Malformed(e) => tracing::debug!("event=auth_error error={}", logfmt::value(&e)),
            Input::Woken(Ok(reply)) => conn.out().extend_from_slice(&reply),
            Input::Woken(Err(_)) => {}
        }
    }
    // Answer what is being checked already, then close.
    while let Some(done) = session.checks.join_next().await {
        if let Ok(reply) = done {
            conn.out().extend_from_slice(&reply);
        }
    }
    conn.close().await
}

/// What one connection holds between requests.
struct Session {
    accounts: Arc<Accounts>,
    /// Conversations waiting for the client's CONT, by request id.
    pending: HashMap<u32, Pending>,
    /// Password checks running; each gives the encoded reply.
    checks: JoinSet<Vec<u8>>,
}

/// A conversation waiting for the client's CONT.
struct Pending {
    conversation: Conversation,
    service: String,
    rip: Option<IpAddr>,
}

fn handshake(out: &mut Vec<u8>) {
    let mut cookie = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut cookie);
    codec::encode(
        &Reply::Version {
            major: codec::PROTOCOL_MAJOR,
            minor: codec::PROTOCOL_MINOR,
        },
        out,
    );
    for name in ["PLAIN", "LOGIN"] {
        codec::encode(
            &Reply::Mech {
                name,
                flags: &["plaintext"],
            },
            out,
        );
    }
    codec::encode(&Reply::Spid(std::process::id()), out);
    codec::encode(&Reply::Cuid(NEXT_CUID.fetch_add(1, Ordering::Relaxed)), out);
    codec::encode(&Reply::Cookie(&cookie), out);
    codec::encode(&Reply::Done, out);
}

impl Session {
    /// The next finished password check; never, while none runs.
    async fn checked(&mut self) -> Result<Vec<u8>, JoinError> {
        match self.checks.join_next().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }

    /// Handles one request; false when the connection must close.
    fn handle(&mut self, request: Request, out: &mut Vec<u8>) -> bool {
        match request {
            Request::Version { major, .. } => major == codec::PROTOCOL_MAJOR,
            Request::Cpid { .. } => true,
            Request::Cancel { id } => {
                self.pending.remove(&id);
                true
            }
            Request::Auth(auth) => {
                self.start(auth, out);
                true
            }
            Request::Cont { id, data } => {
                let Some(mut p) = self.pending.remove(&id) else {
                    fail(out, id, None, &[("reason", "Unknown request")]);
                    return true;
                };
                let step = p.conversation.answer(&data);
                let user = p.conversation.user().map(str::to_owned);
                self.proceed(id, step, user, p, out);
                true
            }
        }
    }

    fn start(&mut self, auth: AuthRequest, out: &mut Vec<u8>) {
        let id = auth.id;
        if self.pending.contains_key(&id) {
            fail(out, id, None, &[("reason", "Duplicate request id")]);
            return;
        }
        if self.pending.len() + self.checks.len() >= MAX_IN_FLIGHT {
            fail(
                out,
                id,
                None,
                &[("code", "temp_fail"), ("reason", TEMP_REASON)],
            );
            return;
        }
        let Some(mechanism) = Mechanism::parse(&auth.mech) else {
            fail(
                out,
                id,
                None,
                &[("reason", "Unsupported authentication mechanism")],
            );
            return;
        };
        // Clients of protocol 1.0/1.1 (Postfix) send `resp=` empty to mean "no initial response".
        let initial = auth.resp.as_deref().filter(|r| !r.is_empty());
        let rip = auth.rip.as_deref().and_then(|ip| ip.parse().ok());
        let service = auth.service.unwrap_or_else(|| "-".into());
        match Conversation::start(mechanism, initial) {
            Ok((conversation, step)) => {
                let p = Pending {
                    conversation,
                    service,
                    rip,
                };
                self.proceed(id, Ok(step), None, p, out);
            }
            Err(e) => sasl_fail(out, id, None, e),
        }
    }

    fn proceed(
        &mut self,
        id: u32,
        step: Result<Step, SaslError>,
        user: Option<String>,
        p: Pending,
        out: &mut Vec<u8>,
    ) {
        match step {
            Err(e) => sasl_fail(out, id, user.as_deref(), e),
            Ok(Step::Challenge(data)) => {
                codec::encode(&Reply::Cont { id, data }, out);
                self.pending.insert(id, p);
            }
            Ok(Step::Credentials { user, password }) => {
                let accounts = self.accounts.clone();
                let mut check =
                    Box::pin(async move { check(&accounts, id, &user, &password, &p).await });
                // A check that needs no waiting (a warm login: one point read and a cache
                // hit) is answered right here; one that waits (argon2, a slow-mode turn)
                // goes on as its own task, polled again there with its real waker.
                match check.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(reply) => out.extend_from_slice(&reply),
                    Poll::Pending => {
                        self.checks.spawn(check);
                    }
                }
            }
        }
    }
}

/// Asks the core about a finished conversation; the encoded reply.
async fn check(
    accounts: &Accounts,
    id: u32,
    user: &str,
    password: &Password,
    p: &Pending,
) -> Vec<u8> {
    let ctx = LoginContext {
        service: &p.service,
        remote_ip: p.rip,
        via: LoginVia::Sasl,
    };
    let mut out = Vec::new();
    match accounts.login(user, password, ctx).await {
        Ok(LoginOutcome::Accepted { address, .. }) => {
            codec::encode(
                &Reply::Ok {
                    id,
                    fields: &[("user", &address)],
                },
                &mut out,
            );
        }
        Ok(LoginOutcome::Refused(_)) => fail(&mut out, id, Some(user), &[("reason", FAIL_REASON)]),
        Err(_) => fail(
            &mut out,
            id,
            Some(user),
            &[("code", "temp_fail"), ("reason", TEMP_REASON)],
        ),
    }
    out
}

fn sasl_fail(out: &mut Vec<u8>, id: u32, user: Option<&str>, e: SaslError) {
    let code = match e {
        SaslError::InvalidBase64 => Some(("code", "invalid_base64")),
        _ => None,
    };
    let reason = e.to_string();
    let mut fields: Vec<(&str, &str)> = code.into_iter().collect();
    fields.push(("reason", &reason));
    fail(out, id, user, &fields);
}

fn fail(out: &mut Vec<u8>, id: u32, user: Option<&str>, rest: &[(&str, &str)]) {
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(rest.len() + 1);
    if let Some(u) = user {
        fields.push(("user", u));
    }
    fields.extend_from_slice(rest);
    codec::encode(
        &Reply::Fail {
            id,
            fields: &fields,
        },
        out,
    );
}
