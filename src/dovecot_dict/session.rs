//! One dict proxy connection: read commands, answer them in order, go on after a
//! malformed line (answering `F`), close after an over-long one or when idle too long.
//!
//! ```text
//! C: H3\t2\t0\t\tauth          (no reply)
//! C: Lshared/userdb/alice@example.org\talice@example.org
//! S: O{"home":"/var/vmail/example.org/alice","uid":"vmail","gid":"vmail",...}
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::codec::{self, Command, CommitResult, DecodeError, Reply};
use super::handler::{Committed, DictHandler, Lookup, Transactions, WriteValue};
use crate::conn::{read_more, Read};

/// A dict client that says nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Serves one connection until the peer closes it, it misbehaves, or `cancel` fires.
pub async fn run<S>(
    mut stream: S,
    handler: Arc<DictHandler>,
    cancel: CancellationToken,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut codec = codec::Codec::new();
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    let mut transactions = Transactions::default();
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(command)) => {
                    answer(&handler, &mut transactions, command, &mut out).await;
                }
                Ok(None) => break,
                Err(DecodeError::LineTooLong) => {
                    codec::encode(&Reply::Fail("line too long"), &mut out);
                    stream.write_all(&out).await?;
                    crate::conn::linger(&mut stream).await;
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!("event=dict_error error=\"{e}\"");
                    if answers_malformed(&e) {
                        codec::encode(&Reply::Fail("malformed command"), &mut out);
                    }
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

async fn answer(handler: &DictHandler, tx: &mut Transactions, command: Command, out: &mut Vec<u8>) {
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
                tracing::debug!("event=dict_error error=\"{why}\"");
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
                    tracing::debug!("event=dict_commit result=fail error=\"{why}\"");
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
