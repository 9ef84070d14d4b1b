//! One policy connection: Postfix keeps it open and sends one attribute block per
//! decision; each gets exactly one `action=` reply. A block over the limits gets
//! `DEFER_IF_PERMIT` and the connection closes. The session holds nothing between
//! requests but the core; the shared [`Connection`] does the I/O.
//!
//! ```text
//! C: request=smtpd_access_policy / protocol_state=RCPT / recipient=full@example.org / ... / (empty line)
//! S: action=452 4.2.2 Mailbox full / (empty line)
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::codec::{self, DecodeError, Reply, Request};
use crate::accounts::{Accounts, PolicyRequest, PolicyVerdict};
use crate::config::PolicyConfig;
use crate::conn::{Connection, Decoder, Lease};
use crate::logfmt;

/// Postfix closes idle policy connections after 300 s (`smtpd_policy_service_max_idle`);
/// this only reaps clients that vanished.
const IDLE_TIMEOUT: Duration = Duration::from_secs(900);

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

/// Serves one connection until Postfix closes it, it breaks a limit, or the lease ends.
pub async fn run<S>(stream: S, accounts: Arc<Accounts>, lease: Lease) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Connection::new(stream, codec::Codec::new(), IDLE_TIMEOUT, lease);
    while let Some(input) = conn.read_frame().await? {
        match input {
            Ok(request) => answer(&accounts, &request, conn.out()).await,
            Err(e) => {
                if e.ends_session() {
                    tracing::warn!(
                        "event=policy_error result=close error={}",
                        logfmt::value(&e)
                    );
                } else {
                    tracing::debug!("event=policy_error error={}", logfmt::value(&e));
                }
                let config = accounts.config();
                codec::encode(
                    &Reply {
                        action: &config.policy.defer_reply,
                    },
                    conn.out(),
                );
            }
        }
    }
    conn.close().await
}

async fn answer(accounts: &Accounts, r: &Request, out: &mut Vec<u8>) {
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
    let action = match verdict {
        Ok(v) => reply_for(&config.policy, v),
        Err(e) => {
            tracing::warn!("event=policy result=tempfail error={}", logfmt::value(&e));
            &config.policy.defer_reply
        }
    };
    codec::encode(&Reply { action }, out);
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
