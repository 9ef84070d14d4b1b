//! The metrics listener (`listen.metrics`): the Prometheus exposition, the health and
//! readiness checks, and the daemon's state for `postern status`. Loopback or a Unix
//! socket only; nothing here is personal (no address, IP or token in any answer).
//!
//! ```text
//! GET /metrics  200 text/plain; version=0.0.4 (application/openmetrics-text if asked)
//! GET /healthz  200 "ok"                              the process answers
//! GET /readyz   200 "ok" | 503 "database: ... lost: deleted"
//! GET /status   200 | 503 {"version":"0.1.0","uptime_seconds":42,"config_generation":2,
//!                          "listeners":[{"key":"dict","address":"/run/postern/dict.sock"}],
//!                          "database":{"ready":true},"healthy":true}
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::accounts::Accounts;
use crate::metrics;

/// How long the database may take over `/readyz`'s read.
const READ_DEADLINE: Duration = Duration::from_secs(2);

const NOT_SERVING: &str = "listeners: not all bound and served (starting or stopping)";

/// What the daemon tells about itself: its listeners, and whether all of them are bound
/// and served.
pub struct Daemon {
    pub accounts: Arc<Accounts>,
    /// `(key, address)` of each bound listener, in the table's order.
    pub listeners: Vec<(&'static str, String)>,
    /// Every listener is bound and served (set after start, cleared at stop).
    pub serving: AtomicBool,
}

/// The metrics listener's routes.
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(daemon)
}

async fn scrape(State(daemon): State<Arc<Daemon>>, headers: HeaderMap) -> Response {
    daemon.accounts.refresh_counts().await;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let openmetrics = metrics::wants_openmetrics(accept);
    let body = metrics::get().encode(openmetrics);
    let content_type = if openmetrics {
        metrics::OPENMETRICS_CONTENT_TYPE
    } else {
        metrics::TEXT_CONTENT_TYPE
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

impl Daemon {
    /// `Ok` when every listener is served and the database answers a read in time;
    /// else one line saying why not.
    async fn ready(&self) -> Result<(), String> {
        if !self.serving.load(Ordering::Relaxed) {
            return Err(NOT_SERVING.into());
        }
        self.accounts.database_ready(READ_DEADLINE).await
    }
}

async fn readyz(State(daemon): State<Arc<Daemon>>) -> Response {
    match daemon.ready().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()).into_response(),
        Err(why) => {
            let line = why.replace(['\n', '\r'], " ");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{line}\n")).into_response()
        }
    }
}

async fn status(State(daemon): State<Arc<Daemon>>) -> Response {
    let db = daemon.accounts.database_ready(READ_DEADLINE).await;
    let reason = if daemon.serving.load(Ordering::Relaxed) {
        db.as_ref().err().cloned()
    } else {
        Some(NOT_SERVING.to_owned())
    };
    let m = metrics::get();
    let since_epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    };
    let uptime = SystemTime::now()
        .duration_since(m.started())
        .unwrap_or_default()
        .as_secs();
    let listeners: Vec<serde_json::Value> = daemon
        .listeners
        .iter()
        .map(|(key, address)| serde_json::json!({ "key": key, "address": address }))
        .collect();
    let database = match db {
        Ok(()) => serde_json::json!({ "ready": true }),
        Err(e) => serde_json::json!({ "ready": false, "error": e }),
    };
    let code = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": since_epoch(m.started()),
        "uptime_seconds": uptime,
        "config_generation": m.config_generation.load(Ordering::Relaxed),
        "listeners": listeners,
        "database": database,
        "healthy": reason.is_none(),
        "reason": reason,
    });
    (code, Json(body)).into_response()
}
