//! Connection I/O shared by the socket sessions (dict, auth, policy): read more bytes
//! unless the peer is idle too long or the daemon is stopping, and close after a final
//! answer without losing it.
//!
//! ```text
//! loop { decode what is buffered; answer; match read_more(..) { More => continue, _ => return } }
//! ```

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// What waiting for input came to.
#[derive(Debug)]
pub enum Read {
    /// Bytes were appended to the buffer.
    More,
    /// The peer closed, was idle longer than allowed, or the daemon is stopping.
    Done,
}

/// Appends whatever the peer sends next to `buf`.
pub async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    idle: Duration,
    cancel: &CancellationToken,
) -> std::io::Result<Read> {
    tokio::select! {
        read = tokio::time::timeout(idle, stream.read_buf(buf)) => match read {
            Ok(Ok(0)) | Err(_) => Ok(Read::Done),
            Ok(Ok(_)) => Ok(Read::More),
            Ok(Err(e)) => Err(e),
        },
        () = cancel.cancelled() => Ok(Read::Done),
    }
}

/// Closes after a final answer so the client can still read it: shut the write half,
/// then discard what the client is still sending for a moment (closing a Unix socket
/// with unread input resets it, and the client would lose the answer).
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 8192];
    let mut budget: usize = 1 << 20;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while budget > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    })
    .await;
}
