//! One dict proxy connection: read commands, answer them in order, go on after a
//! malformed line (answering `F`), close after an over-long one or when idle too long.
//! The session is the state of one connection (its open transactions) over the shared
//! [`Connection`].
//!
//! ```text
//! C: H3\t2\t0\t\tauth          (no reply)
//! C: Lshared/userdb/alice@example.org\talice@example.org
//! S: O{"home":"/var/vmail/example.org/alice","uid":"vmail","gid":"vmail",...}
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::codec::{self, Command, CommitResult, DecodeError, Reply};
use super::handler::{Committed, DictHandler, Lookup, Transactions, WriteValue};
use crate::conn::{Connection, Decoder, Lease};
use crate::logfmt;

/// A dict client that says nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Decoder for codec::Codec {
    type Frame = Command;
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, DecodeError> {
        codec::Codec::decode(self, buf)
    }

    fn ends_session(error: &DecodeError) -> bool {
        error.ends_session()
    }
}

/// Serves one connection until the peer closes it, it misbehaves, or the lease ends.
pub async fn run<S>(stream: S, handler: Arc<DictHandler>, lease: Lease) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Connection::new(stream, codec::Codec::new(), IDLE_TIMEOUT, lease);
    let mut session = Session {
        handler,
        transactions: Transactions::default(),
    };
    while let Some(input) = conn.read_frame().await? {
        match input {
            Ok(command) => session.answer(command, conn.out()).await,
            Err(e) => malformed(&e, conn.out()),
        }
    }
    conn.close().await
}

/// What one connection holds between commands.
struct Session {
    handler: Arc<DictHandler>,
    transactions: Transactions,
}

/// Answers a line that did not decode: `F`, unless Dovecot expects no reply to it.
fn malformed(e: &DecodeError, out: &mut Vec<u8>) {
    if let DecodeError::LineTooLong = e {
        codec::encode(&Reply::Fail("line too long"), out);
        return;
    }
    tracing::debug!("event=dict_error error={}", logfmt::value(&e));
    if answers_malformed(e) {
        codec::encode(&Reply::Fail("malformed command"), out);
    }
}

/// A malformed line is answered with `F` unless it is one of the commands Dovecot sends
/// without waiting for a reply: answering those would be read as the reply to its next
/// lookup or commit.
fn answers_malformed(e: &DecodeError) -> bool {
    match e {
        DecodeError::Malformed { command, .. } => {
            e.expects_reply()
                || !matches!(command, Some('H' | 'B' | 'S' | 'U' | 'A' | 'R' | 'T' | 'V'))
        }
        DecodeError::LineTooLong => true,
    }
}

impl Session {
    async fn answer(&mut self, command: Command, out: &mut Vec<u8>) {
        let (handler, tx) = (&self.handler, &mut self.transactions);
        match command {
            Command::Hello { .. } | Command::Timestamp { .. } | Command::HideLogValues { .. } => {}
            Command::Lookup { key, .. } => match handler.lookup(&key).await {
                Lookup::Found(json) => codec::encode(&Reply::Found(&json), out),
                Lookup::NotFound => codec::encode(&Reply::NotFound, out),
                Lookup::Fail(why) => codec::encode(&Reply::Fail(&why), out),
            },
            Command::Iterate { path, .. } => match handler.iterate(&path).await {
                Ok(rows) => {
                    for (key, value) in &rows {
                        codec::encode(&Reply::IterRow { key, value }, out);
                    }
                    codec::encode(&Reply::IterEnd, out);
                }
                Err(why) => codec::encode(&Reply::IterFail(&why), out),
            },
            Command::Begin { id, user } => {
                if let Err(why) = handler.begin(tx, id, user) {
                    tracing::debug!("event=dict_error error={}", logfmt::value(&why));
                }
            }
            Command::Set { id, key, value } => {
                handler.write(tx, id, &key, WriteValue::Set(&value));
            }
            Command::AtomicInc { id, key, delta } => {
                handler.write(tx, id, &key, WriteValue::Add(delta));
            }
            Command::Unset { id, key } => {
                handler.write(tx, id, &key, WriteValue::Unset);
            }
            Command::Rollback { id } => handler.rollback(tx, id),
            Command::Commit { id, is_async } => {
                let result = match handler.commit(tx, id).await {
                    Committed::Ok => CommitResult::Ok,
                    Committed::NotFound => CommitResult::NotFound,
                    Committed::Failed(why) => {
                        tracing::debug!(
                            "event=dict_commit result=fail error={}",
                            logfmt::value(&why)
                        );
                        CommitResult::Failed
                    }
                };
                codec::encode(
                    &Reply::Commit {
                        result,
                        id,
                        is_async,
                    },
                    out,
                );
            }
        }
    }
}
