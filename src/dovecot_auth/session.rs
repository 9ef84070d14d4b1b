//! One auth-client connection (Postfix smtpd keeps one per process, across SMTP
//! sessions): send the handshake, then run AUTH conversations, several at once, each
//! answered under its own id as soon as the core has decided.
//!
//! ```text
//! S: VERSION 1 2 / MECH PLAIN plaintext / MECH LOGIN plaintext / SPID / CUID / COOKIE / DONE
//! C: AUTH 1 PLAIN service=smtp nologin rip=192.0.2.7 resp=AGFsaWNl...
//! S: OK 1 user=alice@example.org          (or FAIL 1 user=... reason=...)
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::codec::{self, AuthRequest, DecodeError, Reply, Request};
use super::sasl::{Conversation, Mechanism, SaslError, Step};
use crate::accounts::password::Password;
use crate::accounts::{Accounts, LoginContext, LoginOutcome};

/// An auth client that says nothing for this long is disconnected (Postfix reconnects).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Conversations one connection may have open at once.
const MAX_IN_FLIGHT: usize = 64;
/// What a refused client is told: the same for every reason, so nobody learns whether
/// an account exists, is blocked or is throttled.
const FAIL_REASON: &str = "Authentication failed";
const TEMP_REASON: &str = "Temporary authentication failure, try again later";

static NEXT_CUID: AtomicU32 = AtomicU32::new(1);

/// Serves one connection until the client closes it, misbehaves, or `cancel` fires
/// (conversations already being checked are still answered).
pub async fn run<S>(
    mut stream: S,
    accounts: Arc<Accounts>,
    cancel: CancellationToken,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = Vec::with_capacity(1024);
    handshake(&mut out);
    stream.write_all(&out).await?;
    out.clear();

    let mut codec = codec::Codec::new();
    let mut buf = BytesMut::with_capacity(4096);
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let mut checks: JoinSet<(u32, Vec<u8>)> = JoinSet::new();
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(request)) => {
                    if !handle(request, &accounts, &mut pending, &mut checks, &mut out) {
                        stream.write_all(&out).await?;
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(DecodeError::LineTooLong) => {
                    stream.write_all(&out).await?;
                    return Ok(());
                }
                Err(e @ DecodeError::UnknownCommand(_)) => {
                    // Dovecot closes on a command a client never sends; so do we.
                    tracing::debug!("event=auth_error error=\"{e}\"");
                    stream.write_all(&out).await?;
                    return Ok(());
                }
                Err(e) => tracing::debug!("event=auth_error error=\"{e}\""),
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        tokio::select! {
            read = tokio::time::timeout(IDLE_TIMEOUT, stream.read_buf(&mut buf)) => match read {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            },
            Some(done) = checks.join_next(), if !checks.is_empty() => {
                if let Ok((_, reply)) = done {
                    stream.write_all(&reply).await?;
                }
            }
            () = cancel.cancelled() => break,
        }
    }
    // Answer what is being checked already, then close.
    while let Some(done) = checks.join_next().await {
        if let Ok((_, reply)) = done {
            let _ = stream.write_all(&reply).await;
        }
    }
    Ok(())
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

/// Handles one request; false when the connection must close.
fn handle(
    request: Request,
    accounts: &Arc<Accounts>,
    pending: &mut HashMap<u32, Pending>,
    checks: &mut JoinSet<(u32, Vec<u8>)>,
    out: &mut Vec<u8>,
) -> bool {
    match request {
        Request::Version { major, .. } => major == codec::PROTOCOL_MAJOR,
        Request::Cpid { .. } => true,
        Request::Cancel { id } => {
            pending.remove(&id);
            true
        }
        Request::Auth(auth) => {
            start(auth, accounts, pending, checks, out);
            true
        }
        Request::Cont { id, data } => {
            let Some(mut p) = pending.remove(&id) else {
                fail(out, id, None, &[("reason", "Unknown request")]);
                return true;
            };
            let step = p.conversation.answer(&data);
            let user = p.conversation.user().map(str::to_owned);
            proceed(id, step, user, p, accounts, pending, checks, out);
            true
        }
    }
}

fn start(
    auth: AuthRequest,
    accounts: &Arc<Accounts>,
    pending: &mut HashMap<u32, Pending>,
    checks: &mut JoinSet<(u32, Vec<u8>)>,
    out: &mut Vec<u8>,
) {
    let id = auth.id;
    if pending.contains_key(&id) {
        fail(out, id, None, &[("reason", "Duplicate request id")]);
        return;
    }
    if pending.len() + checks.len() >= MAX_IN_FLIGHT {
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
    let service = auth.service.clone().unwrap_or_else(|| "-".into());
    match Conversation::start(mechanism, initial) {
        Ok((conversation, step)) => {
            let p = Pending {
                conversation,
                service,
                rip,
            };
            proceed(id, Ok(step), None, p, accounts, pending, checks, out);
        }
        Err(e) => sasl_fail(out, id, None, e),
    }
}

#[allow(clippy::too_many_arguments)]
fn proceed(
    id: u32,
    step: Result<Step, SaslError>,
    user: Option<String>,
    p: Pending,
    accounts: &Arc<Accounts>,
    pending: &mut HashMap<u32, Pending>,
    checks: &mut JoinSet<(u32, Vec<u8>)>,
    out: &mut Vec<u8>,
) {
    match step {
        Err(e) => sasl_fail(out, id, user.as_deref(), e),
        Ok(Step::Challenge(data)) => {
            codec::encode(&Reply::Cont { id, data }, out);
            pending.insert(id, p);
        }
        Ok(Step::Credentials { user, password }) => {
            let accounts = accounts.clone();
            checks.spawn(async move {
                let mut reply = Vec::new();
                check(
                    &accounts, id, &user, &password, &p.service, p.rip, &mut reply,
                )
                .await;
                (id, reply)
            });
        }
    }
}

async fn check(
    accounts: &Accounts,
    id: u32,
    user: &str,
    password: &Password,
    service: &str,
    rip: Option<IpAddr>,
    out: &mut Vec<u8>,
) {
    let ctx = LoginContext {
        service,
        remote_ip: rip,
    };
    match accounts.login(user, password, ctx).await {
        Ok(LoginOutcome::Accepted { address, .. }) => {
            codec::encode(
                &Reply::Ok {
                    id,
                    fields: &[("user", &address)],
                },
                out,
            );
        }
        Ok(LoginOutcome::Refused(_)) => fail(out, id, Some(user), &[("reason", FAIL_REASON)]),
        Err(_) => fail(
            out,
            id,
            Some(user),
            &[("code", "temp_fail"), ("reason", TEMP_REASON)],
        ),
    }
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
