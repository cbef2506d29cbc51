//! The admin API's handlers.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{
        rejection::{BytesRejection, PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use tracing::Instrument as _;

use super::{api, AdminState, ApiError};
use plugin_host::{
    discovery::Verdict, live::RescanError, CallError, CallOptions, ComponentState,
    ErrorChainDisplay, EvictError, GetError, InitError, ReloadError,
};

type AppState = State<Arc<AdminState>>;

/// What axum's extractors refuse (a body too large, a path parameter that does not
/// parse), answered in the one error shape.
pub(super) trait Rejection {
    fn status(&self) -> StatusCode;
    fn body_text(&self) -> String;
}

macro_rules! rejection {
    ($($kind:ty),*) => {$(
        impl Rejection for $kind {
            fn status(&self) -> StatusCode {
                <$kind>::status(self)
            }
            fn body_text(&self) -> String {
                <$kind>::body_text(self)
            }
        }
    )*};
}

rejection!(PathRejection, BytesRejection, QueryRejection);

pub(super) fn refused(rejection: &impl Rejection) -> Response {
    ApiError::rejected(rejection.status(), rejection.body_text()).into_response()
}

pub(super) async fn healthz() -> Json<api::Health> {
    Json(api::Health {
        status: "ok".to_owned(),
    })
}

pub(super) async fn readyz(State(state): AppState) -> Response {
    if state.host.is_stopping() {
        // A load balancer must stop sending work as soon as the stop begins.
        let stopping = api::Readiness {
            ready: false,
            shutting_down: true,
            waiting: Vec::new(),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(stopping)).into_response();
    }
    let waiting: Vec<api::Waiting> = state
        .host
        .eager_components()
        .iter()
        .filter_map(|name| match state.host.state_of(name) {
            Some(ComponentState::Ready) => None,
            state => Some(api::Waiting {
                component: name.clone(),
                state: state.map(|s| s.as_str().to_owned()),
            }),
        })
        .collect();
    let status = if waiting.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let readiness = api::Readiness {
        ready: waiting.is_empty(),
        shutting_down: false,
        waiting,
    };
    (status, Json(readiness)).into_response()
}

pub(super) async fn metrics(State(state): AppState) -> Response {
    let collector = Arc::clone(&state.collector);
    // Reading RSS and every slot is blocking work; keep it off the async workers.
    match tokio::task::spawn_blocking(move || collector.prometheus()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("collecting metrics failed: {err}"),
        )
        .into_response(),
    }
}

/// Runs host blocking work (RSS reads, snapshots of every slot) on tokio's blocking pool,
/// off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the admin API's worker failed: {err}"),
        )
    })
}

pub(super) async fn metrics_json(State(state): AppState) -> Result<Json<api::Snapshot>, ApiError> {
    let collector = Arc::clone(&state.collector);
    blocking(move || Json(collector.snapshot())).await
}

pub(super) async fn plugins(State(state): AppState) -> Response {
    let loaded: std::collections::HashSet<std::path::PathBuf> =
        state.host.loaded_libraries().into_iter().collect();
    let catalog = state.host.catalog();
    let plugins = catalog
        .plugins
        .iter()
        .map(|plugin| Verdict {
            loaded: Some(loaded.contains(&plugin.path)),
            ..plugin.verdict()
        })
        .collect();
    Json(api::Plugins {
        dir: catalog.dir.clone(),
        plugins,
    })
    .into_response()
}

/// `POST /plugins/rescan`: discover the plugins directory now; answer what changed.
pub(super) async fn rescan(State(state): AppState) -> Response {
    match state.host.rescan().await {
        Ok(changes) => Json(changes).into_response(),
        Err(err @ RescanError::Stopped) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            err.to_string(),
        )
        .into_response(),
        // The directory, not the host, is at fault (gone, unreadable): what was
        // registered keeps serving, and a rescan once it is back succeeds.
        Err(err @ RescanError::Discovery(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rescan_failed",
            format!("{err}; the plugins already registered keep serving"),
        )
        .into_response(),
    }
}

/// `POST /plugins/{name}/reload`: a new worker process takes over the plugin's isolated
/// components on its file as last vetted; the old one finishes its calls.
pub(super) async fn reload(
    State(state): AppState,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(name) = match name {
        Ok(name) => name,
        Err(rejection) => return refused(&rejection),
    };
    match state.host.reload_plugin(&name).await {
        Ok(report) => Json(report).into_response(),
        Err(err) => {
            let status = match err {
                ReloadError::UnknownPlugin { .. } => StatusCode::NOT_FOUND,
                ReloadError::InProcess { .. } => StatusCode::CONFLICT,
                _ => StatusCode::BAD_GATEWAY,
            };
            ApiError::new(status, err.kind(), err.to_string()).into_response()
        }
    }
}

pub(super) async fn components(State(state): AppState) -> Result<Json<api::Components>, ApiError> {
    let collector = Arc::clone(&state.collector);
    blocking(move || {
        Json(api::Components {
            components: collector.components(),
        })
    })
    .await
}

pub(super) async fn memory(State(state): AppState) -> Result<Json<api::Memory>, ApiError> {
    let host = state.host.clone();
    blocking(move || Json(api::Memory::from(host.memory().status()))).await
}

pub(super) async fn locks(State(state): AppState) -> Json<api::Locks> {
    Json(api::Locks::of(state.host.locks()))
}

pub(super) async fn timeouts(State(state): AppState) -> Json<api::Timeouts> {
    Json(api::Timeouts::of(state.host.timeouts()))
}

pub(super) async fn cancel_timeout(
    State(state): AppState,
    id: Result<Path<u64>, PathRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(rejection) => return refused(&rejection),
    };
    if state.host.timeouts().cancel(id) {
        Json(api::Cancelled { cancelled: id }).into_response()
    } else {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no active timed operation with id {id}"),
        )
        .into_response()
    }
}

/// The status code for an initialisation failure, looking through dependency chains.
fn init_status(err: &InitError) -> StatusCode {
    match err {
        InitError::MemoryRefused { .. } => StatusCode::INSUFFICIENT_STORAGE,
        InitError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        InitError::Dependency { source, .. } => get_status(source),
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn get_status(err: &GetError) -> StatusCode {
    match err {
        GetError::UnknownComponent { .. } => StatusCode::NOT_FOUND,
        GetError::Unusable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        GetError::Init(init) | GetError::Backoff { source: init, .. } => init_status(init),
        GetError::MissingDependency { .. }
        | GetError::ShuttingDown { .. }
        | GetError::InitStillRunning { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub(super) fn call_status(err: &CallError) -> StatusCode {
    match err {
        CallError::Get(get) => get_status(get),
        CallError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        CallError::Cancelled { .. }
        | CallError::CpuBudgetExceeded { .. }
        | CallError::Saturated { .. }
        | CallError::Quarantined { .. } => StatusCode::SERVICE_UNAVAILABLE,
        CallError::Failed { source, .. } => match source.kind() {
            "bad_input" => StatusCode::BAD_REQUEST,
            "unknown_method" | "not_found" => StatusCode::NOT_FOUND,
            // Kinds plugins name with `PluginError::with_kind`.
            "permission_denied" => StatusCode::FORBIDDEN,
            "conflict" => StatusCode::CONFLICT,
            // The plugin stopped early: the host is stopping.
            "unavailable" | "cancelled" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        CallError::Json { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        CallError::WorkerFailed { .. } | CallError::ReplyTooLarge { .. } => StatusCode::BAD_GATEWAY,
        CallError::NotAStream { .. } | CallError::StreamOnly { .. } => StatusCode::BAD_REQUEST,
        CallError::StreamIdle { .. } => StatusCode::GATEWAY_TIMEOUT,
        CallError::UndeclaredMethod { .. } => StatusCode::NOT_FOUND,
    }
}

pub(super) async fn call(
    State(state): AppState,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (Path((name, method)), body) = match (path, body) {
        (Ok(path), Ok(body)) => (path, body),
        (Err(rejection), _) => return refused(&rejection),
        (_, Err(rejection)) => return refused(&rejection),
    };
    let input = match json_input(&body) {
        Ok(input) => input,
        Err(refusal) => return refusal.into_response(),
    };
    let options = call_options(&headers);
    let span =
        plugin_host::telemetry::request_span("POST /components/{name}/call/{method}", &options);
    let answer = state
        .host
        .call_with(&name, &method, input, &options)
        .instrument(span)
        .await;
    match answer {
        Ok(output) => call_result(&output),
        Err(err) => {
            let mut response = ApiError::new(
                call_status(&err),
                err.kind(),
                ErrorChainDisplay(&err).to_string(),
            )
            .into_response();
            if matches!(err, CallError::Saturated { .. }) {
                // The slots free up as calls return; a second is a fair first retry.
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            response
        }
    }
}

/// What a call's or a stream's HTTP request says of its context: the client's W3C trace
/// (`traceparent`, `tracestate`; an invalid one is ignored, as the specification asks).
pub(super) fn call_options(headers: &HeaderMap) -> CallOptions {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    };
    match headers.get("traceparent") {
        Some(_) => CallOptions::new().with_trace(text("traceparent"), text("tracestate")),
        None => CallOptions::new(),
    }
}

/// A call's or a stream's input: the body, checked to be JSON (empty means `null`).
pub(super) fn json_input(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(b"null".to_vec());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| body.to_vec())
        .map_err(|err| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the request body is not valid JSON: {err}"),
            )
        })
}

/// An [`api::CallResult`] around the component's reply, written without parsing the reply
/// into a tree: JSON is checked and passed through; anything else is handed back as a
/// string.
fn call_result(output: &[u8]) -> Response {
    let body = if serde_json::from_slice::<serde::de::IgnoredAny>(output).is_ok() {
        let mut body = Vec::with_capacity(output.len() + 11);
        body.extend_from_slice(b"{\"result\":");
        body.extend_from_slice(output);
        body.push(b'}');
        body
    } else {
        let result = serde_json::Value::String(String::from_utf8_lossy(output).into_owned());
        serde_json::to_vec(&api::CallResult { result }).unwrap_or_default()
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `?cascade=true|false` (or `1`/`0`), nothing else: a typo such as `?cascde=true` or
/// `?cascade=yes` would otherwise evict less than the operator asked for, silently.
fn evict_cascade(query: &HashMap<String, String>) -> Result<bool, ApiError> {
    let refuse = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
    if let Some(other) = query.keys().find(|key| key.as_str() != "cascade") {
        return Err(refuse(format!(
            "unknown query parameter `{other}`; evict takes only `cascade=true` or `cascade=false`"
        )));
    }
    match query.get("cascade").map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(value) => Err(refuse(format!(
            "`cascade={value}` is neither true nor false; use `cascade=true` to evict the components that depend on it too"
        ))),
    }
}

pub(super) async fn evict(
    State(state): AppState,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let (Path(name), Query(query)) = match (name, query) {
        (Ok(name), Ok(query)) => (name, query),
        (Err(rejection), _) => return refused(&rejection),
        (_, Err(rejection)) => return refused(&rejection),
    };
    let cascade = match evict_cascade(&query) {
        Ok(cascade) => cascade,
        Err(refusal) => return refusal.into_response(),
    };
    // The instances are dropped on the plugin executor.
    match state.host.evict(&name, cascade).await {
        Ok(evicted) => Json(api::Evicted { evicted }).into_response(),
        Err(err) => {
            let (status, kind) = match err {
                EvictError::UnknownComponent { .. } => (StatusCode::NOT_FOUND, "unknown_component"),
                _ => (StatusCode::CONFLICT, "conflict"),
            };
            ApiError::new(status, kind, err.to_string()).into_response()
        }
    }
}
