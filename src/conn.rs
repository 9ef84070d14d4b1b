//! Connection I/O shared by the listeners. [`Connection`] is the one type the line
//! protocols (dict, auth, policy) read and answer through: it owns the stream, the read
//! buffer, the protocol's pure codec (and with it the line and request limits), the
//! answers waiting to be sent, the idle timeout, the stop signal and the final linger.
//! Whether a malformed frame closes the connection is the codec error's own decision
//! ([`Decoder::ends_session`]), consulted here and nowhere else.
//!
//! ```text
//! let mut conn = Connection::new(stream, Codec::new(), IDLE, lease);
//! while let Some(input) = conn.read_frame().await? {   // None: peer closed, idle, stop
//!     match input {
//!         Ok(frame) => answer(frame, conn.out()),          // sent before the next wait
//!         Err(e) => answer_malformed(&e, conn.out()),      // e.ends_session(): last answer
//!     }
//! }
//! conn.close().await                                       // flush; linger after an error
//! ```
//!
//! A listener's connections share a [`Pool`] (`listen.max_connections`). When the pool
//! is full, the connection that has waited longest for its client's next request is
//! told to close (one at a time), and the newcomer takes its place: a client holding
//! every slot open with idle connections cannot starve a listener, while connections in
//! the middle of a request are never cut. Only when every connection is busy does a newcomer wait.
//! Connections that never report being idle (HTTP, which keeps its own timeouts) are
//! never chosen.
//!
//! [`PeerAddr`] lives here too: the HTTP server hands it to the web and Lua API
//! handlers, and both sides need the type without needing each other.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::metrics::ListenerStats;

/// The address of the peer that sent an HTTP request: `None` on a Unix socket (the
/// reverse proxy in front). Handlers read it with `Extension<PeerAddr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub Option<SocketAddr>);

/// A protocol's pure decoder, as a [`Connection`] drives it.
pub trait Decoder {
    type Frame;
    type Error: fmt::Display;

    /// The next frame in `buf`, `Ok(None)` until one is complete (as the codecs do).
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, Self::Error>;

    /// Whether the connection closes after answering this error (a limit: the stream
    /// cannot be resynchronised), rather than decoding on.
    fn ends_session(error: &Self::Error) -> bool;
}

/// What waiting on a connection came to, besides its end.
#[derive(Debug)]
pub enum Input<F, E, W> {
    /// A decoded frame.
    Frame(F),
    /// A frame that did not decode; when it ends the session, the next wait returns
    /// `None` without reading.
    Malformed(E),
    /// The session's own future (work it started earlier) finished first.
    Woken(W),
}

/// One line-protocol connection (see the module text).
pub struct Connection<S, C> {
    stream: S,
    codec: C,
    buf: BytesMut,
    out: Vec<u8>,
    idle: Duration,
    /// Fires at the latest `last_input + idle`; armed once and moved on only when it
    /// fires early, so a read costs no timer work.
    idle_timer: Pin<Box<Sleep>>,
    /// When the peer last sent bytes (or the session's own work last finished).
    last_input: Instant,
    lease: Lease,
    /// A frame ended the session, or the session asked to end: read no more.
    closing: bool,
}

impl<S, C> Connection<S, C>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Decoder,
{
    /// A connection that closes after `idle` without a byte from the peer, or when the
    /// lease is revoked (the daemon stops, or the pool needs the slot).
    pub fn new(stream: S, codec: C, idle: Duration, lease: Lease) -> Self {
        Connection {
            stream,
            codec,
            buf: BytesMut::with_capacity(4096),
            out: Vec::with_capacity(4096),
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            last_input: Instant::now(),
            lease,
            closing: false,
        }
    }

    /// Where answers go; they are sent before the connection next waits for its peer.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Sends what is waiting in [`Connection::out`] now.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Ends the session after the answers written so far (the peer broke the protocol
    /// in a way the codec cannot see, such as an unsupported version).
    pub fn end(&mut self) {
        self.closing = true;
    }

    /// The next frame or malformed frame; `None` when the peer closed, was idle too
    /// long, the lease was revoked, or the session is closing.
    pub async fn read_frame(&mut self) -> std::io::Result<Option<Result<C::Frame, C::Error>>> {
        Ok(
            match self.next(std::future::pending::<Infallible>()).await? {
                None => None,
                Some(Input::Frame(f)) => Some(Ok(f)),
                Some(Input::Malformed(e)) => Some(Err(e)),
                Some(Input::Woken(never)) => match never {},
            },
        )
    }

    /// Like [`Connection::read_frame`], but also returns when `wake` finishes while
    /// the connection waits for its peer (the auth session's password checks).
    pub async fn next<W>(
        &mut self,
        wake: impl Future<Output = W>,
    ) -> std::io::Result<Option<Input<C::Frame, C::Error, W>>> {
        if self.closing {
            return Ok(None);
        }
        let mut wake = std::pin::pin!(wake);
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => return Ok(Some(Input::Frame(frame))),
                Ok(None) => {}
                Err(e) => {
                    self.closing = C::ends_session(&e);
                    return Ok(Some(Input::Malformed(e)));
                }
            }
            // Idle from before the last answer leaves: a peer that has read it and
            // moved to another connection finds this one idle already.
            self.lease.idle();
            self.flush().await?;
            // Biased: bytes the peer sent before a stop are still read and answered.
            let read = tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.buf) => read,
                woken = &mut wake => {
                    self.last_input = Instant::now();
                    self.lease.busy();
                    return Ok(Some(Input::Woken(woken)));
                }
                () = self.lease.cancel.cancelled() => return Ok(None),
                () = self.idle_timer.as_mut() => {
                    let due = self.last_input + self.idle;
                    if Instant::now() >= due {
                        return Ok(None);
                    }
                    self.idle_timer.as_mut().reset(due);
                    continue;
                }
            };
            self.last_input = Instant::now();
            self.lease.busy();
            match read {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the last answers and closes. After an error that ended the session, the
    /// close lingers so the peer can still read its answer.
    pub async fn close(mut self) -> std::io::Result<()> {
        self.flush().await?;
        if self.closing {
            linger(&mut self.stream).await;
        }
        Ok(())
    }
}

/// Closes after a final answer so the client can still read it: shut the write half,
/// then discard what the client is still sending for a moment (closing a Unix socket
/// with unread input resets it, and the client would lose the answer).
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    // On the heap: an array here would make every connection's future (and each move
    // of it when the task is spawned) 8 KiB larger, for a path few connections take.
    let mut sink = vec![0u8; 8192];
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

// ----- the pool ----------------------------------------------------------------------

/// How often a newcomer waiting for a full pool of busy connections looks again.
const RECHECK: Duration = Duration::from_millis(50);

/// `idle_since` of a connection that is busy (or never reports idleness).
const BUSY: u64 = u64::MAX;

/// The connections of one listener, at most `max` at once (see the module text).
pub struct Pool {
    max: usize,
    /// The listener's connection counts, when it is one of the daemon's listeners.
    stats: Option<&'static ListenerStats>,
    epoch: Instant,
    slots: Mutex<Slots>,
    freed: Notify,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    live: HashMap<u64, Slot>,
}

struct Slot {
    cancel: CancellationToken,
    idle_since: Arc<AtomicU64>,
    /// Told to close to make room, and not closed yet.
    evicted: bool,
}

impl Pool {
    /// A pool of `max` connections (at least one).
    pub fn new(max: usize) -> Arc<Pool> {
        Self::counted(max, None)
    }

    /// A pool whose open connections and full-pool events are counted in `stats`.
    pub fn counted(max: usize, stats: Option<&'static ListenerStats>) -> Arc<Pool> {
        Arc::new(Pool {
            max: max.max(1),
            stats,
            epoch: Instant::now(),
            slots: Mutex::new(Slots::default()),
            freed: Notify::new(),
        })
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection, stopped by `cancel` too. When the pool is full,
    /// the longest-idle connection is told to close and this waits for its slot;
    /// `None` if `cancel` fires first.
    pub async fn lease(self: &Arc<Self>, cancel: &CancellationToken) -> Option<Lease> {
        let mut counted = false;
        loop {
            if let Some(lease) = self.try_lease(cancel) {
                return Some(lease);
            }
            if let (Some(stats), false) = (self.stats, counted) {
                stats.at_cap.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            // A place frees up when a connection ends, or a busy one becomes idle
            // (and can be asked to make room): look again at either.
            tokio::select! {
                () = self.freed.notified() => {}
                () = tokio::time::sleep(RECHECK) => {}
                () = cancel.cancelled() => return None,
            }
        }
    }

    fn try_lease(self: &Arc<Self>, cancel: &CancellationToken) -> Option<Lease> {
        let mut slots = self.slots();
        if slots.live.len() < self.max {
            let id = slots.next_id;
            slots.next_id += 1;
            let idle_since = Arc::new(AtomicU64::new(BUSY));
            let cancel = cancel.child_token();
            slots.live.insert(
                id,
                Slot {
                    cancel: cancel.clone(),
                    idle_since: idle_since.clone(),
                    evicted: false,
                },
            );
            if let Some(stats) = self.stats {
                stats.open.fetch_add(1, Ordering::Relaxed);
            }
            return Some(Lease {
                cancel,
                idle_since,
                home: Some((self.clone(), id)),
            });
        }
        // One connection closes for room at a time: a newcomer that looks again before
        // the last one told has closed (a busy machine) waits for it, rather than
        // closing the next idle connection, and the next.
        if slots.live.values().any(|s| s.evicted) {
            return None;
        }
        let longest_idle = slots
            .live
            .values_mut()
            .filter(|s| s.idle_since.load(Ordering::Relaxed) != BUSY)
            .min_by_key(|s| s.idle_since.load(Ordering::Relaxed));
        if let Some(slot) = longest_idle {
            // Not chosen twice while it closes.
            slot.idle_since.store(BUSY, Ordering::Relaxed);
            slot.evicted = true;
            slot.cancel.cancel();
            tracing::debug!("event=connections result=full closed=longest_idle");
        }
        None
    }
}

/// A connection's place in its [`Pool`]: its stop signal, and since when it has been
/// waiting for its peer. Dropping it frees the place.
pub struct Lease {
    cancel: CancellationToken,
    idle_since: Arc<AtomicU64>,
    home: Option<(Arc<Pool>, u64)>,
}

impl Lease {
    /// A lease outside any pool, stopped by `cancel` only (tests, single connections).
    pub fn standalone(cancel: CancellationToken) -> Lease {
        Lease {
            cancel,
            idle_since: Arc::new(AtomicU64::new(BUSY)),
            home: None,
        }
    }

    /// Fires when the daemon stops or the pool takes the place back.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The connection now waits for its peer: it may be chosen to make room.
    fn idle(&self) {
        if let Some((pool, _)) = &self.home {
            let since = u64::try_from(pool.epoch.elapsed().as_micros()).unwrap_or(BUSY - 1);
            self.idle_since
                .store(since.min(BUSY - 1), Ordering::Relaxed);
        }
    }

    /// The connection is working on a request.
    fn busy(&self) {
        if self.home.is_some() {
            self.idle_since.store(BUSY, Ordering::Relaxed);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((pool, id)) = self.home.take() {
            pool.slots().live.remove(&id);
            if let Some(stats) = pool.stats {
                stats.open.fetch_sub(1, Ordering::Relaxed);
            }
            pool.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames are LF-ended lines.
    struct Lines;

    impl Decoder for Lines {
        type Frame = Vec<u8>;
        type Error = String;

        fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<u8>>, String> {
            Ok(buf
                .iter()
                .position(|&b| b == b'\n')
                .map(|lf| buf.split_to(lf + 1).to_vec()))
        }

        fn ends_session(_: &String) -> bool {
            false
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_closes_after_its_idle_time_without_input_and_not_before() {
        let (ours, mut peer) = tokio::io::duplex(1024);
        let idle = Duration::from_secs(10);
        let mut conn = Connection::new(
            ours,
            Lines,
            idle,
            Lease::standalone(CancellationToken::new()),
        );
        let started = Instant::now();
        let served = tokio::spawn(async move {
            let mut frames = 0;
            while let Ok(Some(_)) = conn.read_frame().await {
                frames += 1;
            }
            (frames, Instant::now())
        });
        // A line every 6 s for 30 s: never 10 s without input.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            peer.write_all(b"x\n").await.expect("write");
        }
        let last = Instant::now();
        let (frames, closed) = served.await.expect("join");
        assert_eq!(frames, 5, "every line before the pause was read");
        assert!(last - started >= Duration::from_secs(30));
        let quiet = closed - last;
        assert!(
            quiet >= idle && quiet < idle + Duration::from_secs(1),
            "closed {quiet:?} after the last input"
        );
    }

    #[tokio::test]
    async fn a_full_pool_closes_its_longest_idle_connection_for_a_newcomer() {
        let pool = Pool::new(2);
        let stop = CancellationToken::new();
        let first = pool.lease(&stop).await.expect("first");
        let second = pool.lease(&stop).await.expect("second");
        second.idle();
        tokio::time::sleep(Duration::from_millis(2)).await;
        first.idle();
        let third = tokio::spawn({
            let (pool, stop) = (pool.clone(), stop.clone());
            async move { pool.lease(&stop).await.is_some() }
        });
        tokio::time::timeout(Duration::from_secs(5), second.cancelled().cancelled())
            .await
            .expect("the longest-idle connection is told to close");
        assert!(!first.cancelled().is_cancelled());
        drop(second);
        assert!(third.await.expect("join"));
    }

    #[tokio::test]
    async fn a_newcomer_closes_one_idle_connection_and_waits_for_it_however_often_it_looks() {
        let pool = Pool::new(3);
        let stop = CancellationToken::new();
        let leases: Vec<Lease> = [
            pool.lease(&stop).await,
            pool.lease(&stop).await,
            pool.lease(&stop).await,
        ]
        .into_iter()
        .map(|l| l.expect("lease"))
        .collect();
        for l in &leases {
            l.idle();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The longest-idle connection is slow to close: the newcomer looks again many
        // times meanwhile (RECHECK), and must not close the others too.
        let newcomer = tokio::spawn({
            let (pool, stop) = (pool.clone(), stop.clone());
            async move { pool.lease(&stop).await.is_some() }
        });
        tokio::time::timeout(Duration::from_secs(5), leases[0].cancelled().cancelled())
            .await
            .expect("the longest-idle connection is told to close");
        tokio::time::sleep(RECHECK * 6).await;
        assert!(!leases[1].cancelled().is_cancelled());
        assert!(!leases[2].cancelled().is_cancelled());
        let mut leases = leases.into_iter();
        drop(leases.next());
        assert!(newcomer.await.expect("join"));
    }

    #[tokio::test]
    async fn a_full_pool_of_busy_connections_makes_a_newcomer_wait() {
        let pool = Pool::new(1);
        let stop = CancellationToken::new();
        let busy = pool.lease(&stop).await.expect("first");
        let waited = tokio::time::timeout(Duration::from_millis(50), pool.lease(&stop)).await;
        assert!(waited.is_err(), "a busy connection is never cut");
        assert!(!busy.cancelled().is_cancelled());
        drop(busy);
        assert!(pool.lease(&stop).await.is_some());
    }
}
