//! The admin API's connections: accepted up to `[admin] max_connections` (one more is
//! answered `503` and closed), each served by hyper's HTTP/1 with a deadline for a
//! request's head (an incomplete one is answered `408`), a bounded head size (`431`), and
//! a deadline and size for its body (`408`, `413`). Every refusal is counted
//! ([`ConnectionStats`]) and logged at debug level, so that a client holding the server
//! shows in metrics, not only as a slow host.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    Router,
};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use plugin_host::config::AdminConfig;
use tokio::{
    io::{AsyncRead, AsyncWriteExt as _, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
};
use tower::ServiceExt as _;

use crate::ApiError;

/// What the admin API's clients were refused, by reason; read by the collector.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub(crate) open: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) header_timeouts: AtomicU64,
    pub(crate) idle_closed: AtomicU64,
    pub(crate) header_too_large: AtomicU64,
    pub(crate) body_timeouts: AtomicU64,
    pub(crate) body_too_large: AtomicU64,
    pub(crate) cross_origin: AtomicU64,
    pub(crate) foreign_host: AtomicU64,
}

impl ConnectionStats {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The limits of `[admin]` that bound what one client may hold.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    max_connections: usize,
    header_timeout: Duration,
    body_timeout: Duration,
    max_header_size: usize,
    max_body: usize,
}

impl Limits {
    pub(crate) fn of(config: &AdminConfig) -> Self {
        Self {
            max_connections: config.max_connections.max(1),
            header_timeout: config.header_timeout,
            body_timeout: config.body_timeout,
            max_header_size: usize::try_from(config.max_header_size)
                .unwrap_or(usize::MAX)
                .max(8192),
            max_body: usize::try_from(config.max_body).unwrap_or(usize::MAX),
        }
    }
}

/// Refusals of connections over the limit answered at once; past this many in flight a
/// refused connection is closed without an answer (a flood gets no work from the host).
const REFUSALS_IN_FLIGHT: usize = 256;

/// How long a refused connection is given to read its answer before it is closed.
const LINGER: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` completes, then lets every connection
/// finish the request it is answering and closes it.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let (stop, stopping) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_size);
    let connection = Arc::new(Connection {
        http,
        app,
        stats: Arc::clone(&stats),
    });
    let mut accept_warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(&err, &stats, &mut accept_warned).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            ConnectionStats::count(&stats.refused);
            if let Ok(refusal) = Arc::clone(&refusals).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream, limits.max_connections).await;
                    drop(refusal);
                });
            }
            continue;
        };
        ConnectionStats::count(&stats.accepted);
        let connection = Arc::clone(&connection);
        let stopping = stopping.clone();
        tokio::spawn(async move {
            connection.serve(stream, stopping).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection has ended when every slot is back.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// An accept that failed: out of descriptors, most likely. Waits a little (the listener
/// would fail again at once) and warns at most once a minute.
async fn accept_failed(
    err: &std::io::Error,
    stats: &ConnectionStats,
    warned: &mut Option<Instant>,
) {
    ConnectionStats::count(&stats.accept_errors);
    if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
        *warned = Some(Instant::now());
        tracing::warn!(
            error = %err,
            "the admin API cannot accept a connection (out of descriptors? raise the open-files limit or lower admin.max_connections)"
        );
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Answers a connection over the limit with `503` and closes it, once it has read the
/// answer or [`LINGER`] has passed.
async fn refuse(mut stream: TcpStream, limit: usize) {
    tracing::debug!(
        limit,
        "admin API: connection refused, at admin.max_connections"
    );
    let body = format!(
        r#"{{"error":{{"kind":"too_many_connections","message":"the admin API serves {limit} connections at once (admin.max_connections); retry later"}}}}"#
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(LINGER, linger_with(&mut stream, answer.as_bytes())).await;
}

/// Writes `answer`, ends the sending side, and reads until the client closes, so that
/// the request it may still be sending does not turn the close into a reset that would
/// discard the answer.
async fn linger_with(stream: &mut TcpStream, answer: &[u8]) {
    if stream.write_all(answer).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    while let Ok(n) = tokio::io::AsyncReadExt::read(stream, &mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// What every connection is served with.
struct Connection {
    http: hyper::server::conn::http1::Builder,
    app: Router,
    stats: Arc<ConnectionStats>,
}

impl Connection {
    async fn serve(&self, mut stream: TcpStream, mut stopping: watch::Receiver<bool>) {
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        // Set when a request's bytes arrive, cleared when its head is complete and again
        // when it has been answered: a head timeout with it set is a client too slow
        // (answered 408), without it an idle keep-alive connection (closed).
        let head_started = Arc::new(AtomicBool::new(false));
        let result = {
            let (read, write) = stream.split();
            let read = Watched {
                inner: read,
                head_started: Arc::clone(&head_started),
            };
            let app = self.app.clone();
            let started = Arc::clone(&head_started);
            let service = hyper::service::service_fn(move |request: Request<_>| {
                started.store(false, Ordering::Relaxed);
                let app = app.clone();
                let started = Arc::clone(&started);
                async move {
                    let response = app.oneshot(request.map(Body::new)).await;
                    // Its body has been read whole by now (`read_body`): bytes from here
                    // on are the next request's.
                    started.store(false, Ordering::Relaxed);
                    response
                }
            });
            let conn = self
                .http
                .serve_connection(TokioIo::new(tokio::io::join(read, write)), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => result,
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        };
        if let Err(err) = result {
            self.ended_with(&err, &mut stream, head_started.load(Ordering::Relaxed))
                .await;
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts why a connection ended in error and, for a head too slow, tells the client.
    async fn ended_with(&self, err: &hyper::Error, stream: &mut TcpStream, head_started: bool) {
        if err.is_timeout() && head_started {
            ConnectionStats::count(&self.stats.header_timeouts);
            tracing::debug!("admin API: a request's head did not arrive within admin.header_timeout; answered 408");
            let body = r#"{"error":{"kind":"header_timeout","message":"the request's head did not arrive within admin.header_timeout"}}"#;
            let answer = format!(
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(LINGER, linger_with(stream, answer.as_bytes())).await;
        } else if err.is_timeout() {
            ConnectionStats::count(&self.stats.idle_closed);
        } else if err.is_parse_too_large() {
            // hyper has answered 431 itself.
            ConnectionStats::count(&self.stats.header_too_large);
            tracing::debug!(
                "admin API: a request's head exceeded admin.max_header_size; answered 431"
            );
        } else {
            tracing::trace!(error = %err, "admin API connection ended");
        }
    }
}

/// The reading side of a connection, noting when a request's first bytes arrive.
struct Watched<R> {
    inner: R,
    head_started: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.head_started.store(true, Ordering::Relaxed);
        }
        polled
    }
}

/// The body limits a request is read under, for [`read_body`].
#[derive(Clone)]
pub(crate) struct BodyLimits {
    timeout: Duration,
    max: usize,
    stats: Arc<ConnectionStats>,
}

impl BodyLimits {
    pub(crate) fn new(limits: &Limits, stats: Arc<ConnectionStats>) -> Self {
        Self {
            timeout: limits.body_timeout,
            max: limits.max_body,
            stats,
        }
    }
}

/// `413`, counted: a body over `[admin] max_body`. The connection closes after it (the
/// rest of the body is not read).
fn too_large(limits: &BodyLimits) -> Response {
    ConnectionStats::count(&limits.stats.body_too_large);
    let message = format!(
        "the request body is over {} bytes (admin.max_body)",
        limits.max
    );
    let mut response =
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message).into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Reads a request's whole body within `[admin] body_timeout` and `max_body` before the
/// handler runs (every endpoint takes its body whole), answering `408` or `413` past them.
pub(crate) async fn read_body(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    // A length over the limit is refused from the head, without waiting for a body that
    // would be refused anyway (or never come).
    if axum::body::HttpBody::size_hint(&body).lower()
        > u64::try_from(limits.max).unwrap_or(u64::MAX)
    {
        return too_large(&limits);
    }
    let read = tokio::time::timeout(limits.timeout, Limited::new(body, limits.max).collect());
    let bytes = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(&limits);
        }
        Ok(Err(err)) => {
            let message = format!("the request body could not be read: {err}");
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).into_response();
        }
        Err(_) => {
            ConnectionStats::count(&limits.stats.body_timeouts);
            tracing::debug!("admin API: a request's body did not arrive within admin.body_timeout; answered 408");
            let message = format!(
                "the request body did not arrive within {} (admin.body_timeout)",
                humantime::format_duration(limits.timeout)
            );
            let mut response =
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message).into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
