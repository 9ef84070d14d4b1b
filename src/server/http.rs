//! Serves an axum `Router` (the web pages, the Dovecot 2.4 auth API) on a TCP or Unix
//! listener: HTTP/1.1 with a header timeout, a connection cap, the peer's address
//! handed to handlers as a request extension, and a graceful stop.
//!
//! ```text
//! listen.http = "127.0.0.1:8025"      -> web::router
//! listen.http_socket = "/run/postern/http.sock"   (for nginx)
//! listen.auth_http = "127.0.0.1:8026" -> dovecot_lua_api::router
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The address of the peer that sent a request: `None` on a Unix socket (the reverse
/// proxy in front). Handlers read it with `Extension<PeerAddr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub Option<SocketAddr>);

/// A bound HTTP listener.
pub enum HttpListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// How long a connection may take to finish its request after a stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Accepts connections until `cancel` fires, at most `max` at a time.
pub async fn serve(
    listener: HttpListener,
    router: Router,
    max: usize,
    header_timeout: Duration,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(max.max(1)));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = cancel.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            () = cancel.cancelled() => return,
        };
        let (io, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("event=accept result=fail error=\"{e}\"");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req
            },
        );
        let service = TowerToHyperService::new(service);
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("event=http_connection result=error error=\"{e}\"");
                    }
                }
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(STOP_GRACE, conn).await;
                }
            }
        });
    }
}

type Io = TokioIo<Box<dyn IoStream>>;

/// A connected stream of either kind.
pub trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> IoStream for T {}

async fn accept(listener: &HttpListener) -> std::io::Result<(Io, Option<SocketAddr>)> {
    match listener {
        HttpListener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((TokioIo::new(Box::new(s) as Box<dyn IoStream>), Some(peer)))
        }
        HttpListener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((TokioIo::new(Box::new(s) as Box<dyn IoStream>), None))
        }
    }
}
