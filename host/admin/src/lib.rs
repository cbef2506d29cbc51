//! The admin HTTP API: health, readiness, Prometheus metrics, plugins, components, memory,
//! locks, timeouts, calls and evictions, as JSON on the host's own tokio runtime.
//!
//! It listens on loopback by default. When a token is configured every request must carry
//! `Authorization: Bearer <token>`; the config refuses a non-loopback address without one.
//! What a browser sends on behalf of another site's page is refused (see `browsers`).

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod api;
mod browsers;
mod collector;
mod families;
mod process;
mod prometheus;
mod routes;
mod server;
mod stream;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};

pub use self::{collector::UnifiedMetricsCollector, server::ConnectionStats};
use plugin_host::Host;

/// What the admin API serves: a host, with the token and probe settings of its
/// `[admin]` config.
pub struct AdminState {
    /// The host.
    pub host: Host,
    /// The metrics collector.
    pub collector: Arc<UnifiedMetricsCollector>,
    /// The bearer token every request must carry, if any.
    pub token: Option<String>,
    /// Whether `/healthz` and `/readyz` answer without the token.
    pub probes_without_token: bool,
    /// What the server refused its clients (also in the collector's metrics).
    pub connections: Arc<ConnectionStats>,
}

impl AdminState {
    /// The admin API of `host`, as its `[admin]` config says.
    pub fn new(host: &Host) -> Self {
        let admin = &host.config().admin;
        let connections = Arc::new(ConnectionStats::default());
        Self {
            host: host.clone(),
            collector: Arc::new(UnifiedMetricsCollector::with_connections(
                host.clone(),
                Arc::clone(&connections),
            )),
            token: Some(admin.token.clone()).filter(|t| !t.is_empty()),
            probes_without_token: admin.probes_without_token,
            connections,
        }
    }
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The admin API of a host, serving until stopped.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Serves the admin API of `host` on `[admin] listen` (port 0 picks a free one) until
    /// [`Self::stop`]: the same API the `plugin-host` binary serves.
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub async fn start(host: &Host) -> std::io::Result<Self> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, task) = serve(
            host.config().admin.listen,
            Arc::new(AdminState::new(host)),
            async {
                let _ = stopped.await;
            },
        )
        .await?;
        Ok(Self { addr, stop, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: requests in flight are answered first, for up to 5 s.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(std::time::Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("admin API did not stop within 5s");
        }
    }
}

/// An error answer: a status code and `{"error": {"kind": "...", "message": "..."}}`.
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: String,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        kind: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl ApiError {
    /// The framework's own refusal of a request (a body too large, a path parameter
    /// that does not parse), in the one error shape.
    pub(crate) fn rejected(status: StatusCode, text: String) -> Self {
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            s if s.is_client_error() => "bad_request",
            _ => "internal",
        };
        Self::new(status, kind, text)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "kind": self.kind, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// The admin API's routes.
pub fn router(state: Arc<AdminState>) -> Router {
    let limits = server::Limits::of(&state.host.config().admin);
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/metrics.json", get(routes::metrics_json))
        .route("/plugins", get(routes::plugins))
        .route("/plugins/rescan", post(routes::rescan))
        .route("/plugins/{name}/reload", post(routes::reload))
        .route("/components", get(routes::components))
        .route("/memory", get(routes::memory))
        .route("/locks", get(routes::locks))
        .route("/timeouts", get(routes::timeouts))
        .route("/timeouts/{id}/cancel", post(routes::cancel_timeout))
        .route("/components/{name}/call/{method}", post(routes::call))
        .route("/components/{name}/stream/{method}", post(stream::stream))
        .route("/components/{name}/evict", post(routes::evict))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see the admin API table in the README",
            )
        })
        .layer(middleware::from_fn_with_state(
            server::BodyLimits::new(&limits, Arc::clone(&state.connections)),
            server::read_body,
        ))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            browsers::refuse_other_sites,
        ))
        .with_state(state)
}

/// Compares without leaking where the first difference is.
fn same_token(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn authorize(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    let token = state
        .token
        .as_ref()
        .filter(|_| !(probe && state.probes_without_token));
    if let Some(token) = token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| same_token(given, token)) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token: send Authorization: Bearer <admin.token>",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

/// Connections the kernel queues for the server before it accepts them (capped by
/// `net.core.somaxconn`). The default of Rust's listeners, 128, overflowed when hundreds
/// of clients connected at once: the kernel answered with SYN cookies, some failed, and
/// those connections were reset (seen as `ListenOverflows` and `SyncookiesFailed` in
/// `nstat`).
const BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of [`BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Binds `addr` and serves the admin API until `shutdown` completes. Returns the bound
/// address (useful with port 0) and the server task.
///
/// # Errors
///
/// The bind error, with the address.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = listen(addr).map_err(|err| {
        let what = match err.kind() {
            std::io::ErrorKind::AddrInUse => "; another process (a plugin-host already running?) listens there: stop it, or give this host another address with [admin] listen or PLUGIN_HOST_ADMIN_LISTEN (port 0 picks a free one)",
            std::io::ErrorKind::AddrNotAvailable => "; no interface of this machine has that address: set [admin] listen to one it has",
            std::io::ErrorKind::PermissionDenied => "; ports below 1024 need privileges: pick a higher one with [admin] listen",
            _ => "",
        };
        std::io::Error::new(
            err.kind(),
            format!("cannot listen on {addr} for the admin API: {err}{what}"),
        )
    })?;
    let bound = listener.local_addr()?;
    let limits = server::Limits::of(&state.host.config().admin);
    let stats = Arc::clone(&state.connections);
    let app = router(state);
    let task = tokio::spawn(server::serve(listener, app, limits, stats, shutdown));
    Ok((bound, task))
}
