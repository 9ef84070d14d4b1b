//! Serves an axum `Router` (the web pages, the Dovecot 2.4 auth API) on a TCP or Unix
//! listener: HTTP/1.1 with keep-alive, a header and an idle timeout, a connection cap,
//! the peer's address handed to handlers as a request extension ([`PeerAddr`]), and a
//! graceful stop. HTTP connections never count as idle in the listener's pool: these
//! timeouts reap them instead.
//!
//! ```text
//! listen.http = "127.0.0.1:8025"      -> web::router
//! listen.http_socket = "/run/postern/http.sock"   (for nginx)
//! listen.auth_http = "127.0.0.1:8026" -> dovecot_lua_api::router
//!
//! accept ... GET / HTTP/1.1 ... \r\n\r\n     within http.header_timeout, else closed
//!            (handler; it bounds a body read by http.idle_timeout)
//!            HTTP/1.1 200 OK ...
//!            silence                        up to http.idle_timeout, then closed
//!            GET /new HTTP/1.1 ... \r\n\r\n  within http.header_timeout of its first byte
//! ```
//!
//! hyper's own header timer cannot tell the two waits apart (it runs from the end of an
//! answer), so the connection's I/O enforces both ([`TimedIo`]), told by the service when
//! a request starts and when its answer is ready.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::conn::{Lease, PeerAddr};

/// A bound HTTP listener.
pub enum HttpListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// How long a connection may take to finish its request after a stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long a connection may take over each wait (`http.header_timeout`,
/// `http.idle_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the connection's start, or the first byte of a later request, to the end of
    /// that request's headers.
    pub header: Duration,
    /// From the last byte of an answer to the first byte of the next request.
    pub idle: Duration,
}

/// Accepts connections until `cancel` fires, at most `max` at a time. `timeouts` is asked
/// at each new connection, so a reload applies to the connections after it.
pub async fn serve(
    listener: HttpListener,
    key: &'static str,
    router: Router,
    max: usize,
    timeouts: impl Fn() -> Timeouts + Send + 'static,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let listener = &listener;
    let next = || accept(listener);
    let serve = |(io, peer): (Io, Option<SocketAddr>), lease: Lease| {
        let clock = Arc::new(Clock::new(timeouts()));
        let (started, answered) = (clock.clone(), clock.clone());
        // Requests on one HTTP/1.1 connection come one at a time: one flag serves them.
        let body_read = Arc::new(AtomicBool::new(true));
        let (body_start, body_check) = (body_read.clone(), body_read);
        let service = router
            .clone()
            .map_request(move |req: axum::http::Request<Incoming>| {
                started.request();
                body_start.store(req.body().is_end_stream(), Ordering::Relaxed);
                let mut req = req.map(|inner| TrackedBody {
                    inner,
                    read: body_start.clone(),
                });
                req.extensions_mut().insert(PeerAddr(peer));
                req
            })
            .map_response(move |mut response: axum::response::Response| {
                answered.answered();
                // An answer given before the request body was read to its end (a refusal,
                // a limit): hyper cannot reuse the connection, so say it closes, or a
                // client sends its next request into a closing connection.
                if !body_check.load(Ordering::Relaxed) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            });
        let service = TowerToHyperService::new(service);
        let io = TokioIo::new(TimedIo::new(io, clock));
        async move {
            let cancel = lease.cancelled();
            let mut builder = hyper::server::conn::http1::Builder::new();
            // TimedIo keeps the time instead of hyper's header timer.
            builder.header_read_timeout(None).keep_alive(true);
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => result.map_err(io::Error::other),
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(STOP_GRACE, conn).await;
                    Ok(())
                }
            }
        }
    };
    super::serve_connections(next, key, max, cancel, tracker, serve).await;
}

type Io = Box<dyn IoStream>;

/// A connected stream of either kind.
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

async fn accept(listener: &HttpListener) -> io::Result<(Io, Option<SocketAddr>)> {
    match listener {
        HttpListener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Box::new(s), Some(peer)))
        }
        HttpListener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((Box::new(s), None))
        }
    }
}

/// A request body that notes when it has been read to its end.
struct TrackedBody {
    inner: Incoming,
    read: Arc<AtomicBool>,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ----- timeouts --------------------------------------------------------------------------

/// Where a connection is between requests, and until when it may stay there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Receiving a request's head (from the connection's start, or its first byte).
    Head { until: Instant },
    /// A request is being answered; handlers bound their own body reads.
    Busy,
    /// Answered; waiting for the first byte of the next request.
    Idle { until: Instant },
}

/// One connection's [`Phase`], moved on by its I/O and its service.
#[derive(Debug)]
struct Clock {
    phase: Mutex<Phase>,
    timeouts: Timeouts,
}

impl Clock {
    fn new(timeouts: Timeouts) -> Clock {
        Clock {
            phase: Mutex::new(Phase::Head {
                until: Instant::now() + timeouts.header,
            }),
            timeouts,
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: after an idle wait, they begin the next request's head.
    fn received(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                until: Instant::now() + self.timeouts.header,
            };
        }
    }

    /// Bytes of an answer left: the idle wait counts from the last of them.
    fn sent(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Idle {
                until: Instant::now() + self.timeouts.idle,
            };
        }
    }

    /// hyper has a whole request head and calls the handler.
    fn request(&self) {
        *self.phase() = Phase::Busy;
    }

    /// The handler's answer is ready; hyper writes it next.
    fn answered(&self) {
        *self.phase() = Phase::Idle {
            until: Instant::now() + self.timeouts.idle,
        };
    }
}

/// A connection's stream that ends it when the peer is silent too long: while idle, the
/// read sees end of file (hyper closes the connection quietly); in the middle of a
/// request head, a timeout error.
struct TimedIo {
    inner: Io,
    clock: Arc<Clock>,
    sleep: Pin<Box<Sleep>>,
}

impl TimedIo {
    fn new(inner: Io, clock: Arc<Clock>) -> TimedIo {
        TimedIo {
            inner,
            clock,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.received();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        let phase = *this.clock.phase();
        let until = match phase {
            Phase::Busy => return Poll::Pending,
            Phase::Head { until } | Phase::Idle { until } => until,
        };
        if this.sleep.deadline() != until {
            this.sleep.as_mut().reset(until);
        }
        if this.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match phase {
            // Nothing read: end of file.
            Phase::Idle { .. } => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request headers not received within http.header_timeout",
            ))),
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                this.clock.sent();
            }
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                this.clock.sent();
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
