//! One policy connection: Postfix keeps it open and sends one attribute block per
//! decision; each gets exactly one `action=` reply. A block over the limits gets
//! `DEFER_IF_PERMIT` and the connection closes.
//!
//! ```text
//! C: request=smtpd_access_policy / protocol_state=RCPT / recipient=full@example.org / ... / (empty line)
//! S: action=452 4.2.2 Mailbox full / (empty line)
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::codec::{self, DecodeError, Reply, Request};
use crate::accounts::{Accounts, PolicyRequest, PolicyVerdict};
use crate::config::PolicyConfig;
use crate::conn::{read_more, Read};

/// Postfix closes idle policy connections after 300 s (`smtpd_policy_service_max_idle`);
/// this only reaps clients that vanished.
const IDLE_TIMEOUT: Duration = Duration::from_secs(900);

/// Serves one connection until Postfix closes it, it breaks a limit, or `cancel` fires.
pub async fn run<S>(
    mut stream: S,
    accounts: Arc<Accounts>,
    cancel: CancellationToken,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut codec = codec::Codec::new();
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(256);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(request)) => {
                    let action = decide(&accounts, &request).await;
                    codec::encode(&Reply { action: &action }, &mut out);
                }
                Ok(None) => break,
                Err(e @ DecodeError::Malformed { .. }) => {
                    tracing::debug!("event=policy_error error=\"{e}\"");
                    let config = accounts.config();
                    codec::encode(
                        &Reply {
                            action: &config.policy.defer_reply,
                        },
                        &mut out,
                    );
                }
                Err(e) => {
                    tracing::warn!("event=policy_error result=close error=\"{e}\"");
                    let config = accounts.config();
                    codec::encode(
                        &Reply {
                            action: &config.policy.defer_reply,
                        },
                        &mut out,
                    );
                    stream.write_all(&out).await?;
                    crate::conn::linger(&mut stream).await;
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if let Read::Done = read_more(&mut stream, &mut buf, IDLE_TIMEOUT, &cancel).await? {
            return Ok(());
        }
    }
}

async fn decide(accounts: &Accounts, r: &Request) -> String {
    let verdict = accounts
        .policy(PolicyRequest {
            protocol_state: &r.protocol_state,
            recipient: &r.recipient,
            sasl_username: &r.sasl_username,
            size: r.size,
            instance: &r.instance,
        })
        .await;
    let config = accounts.config();
    match verdict {
        Ok(v) => reply_for(&config.policy, v).to_owned(),
        Err(e) => {
            tracing::warn!("event=policy result=tempfail error=\"{e}\"");
            config.policy.defer_reply.clone()
        }
    }
}

/// The configured reply text for a verdict.
fn reply_for(p: &PolicyConfig, v: PolicyVerdict) -> &str {
    match v {
        PolicyVerdict::Dunno => "DUNNO",
        PolicyVerdict::RecipientBlocked => &p.blocked_reply,
        PolicyVerdict::RecipientUnknown => &p.unknown_reply,
        PolicyVerdict::MailboxFull => &p.full_reply,
        PolicyVerdict::SenderBlocked => &p.sender_blocked_reply,
        PolicyVerdict::SenderRateLimited => &p.rate_reply,
    }
}
