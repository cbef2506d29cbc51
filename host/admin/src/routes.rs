//! The admin API's handlers.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use plugin_host::plugin_api::PluginError;

use super::{AdminState, ApiError};
use plugin_host::{
    discovery::Verdict, CallError, ComponentState, ErrorChainDisplay, EvictError, GetError,
    InitError, ReloadError,
};

type AppState = State<Arc<AdminState>>;

pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub(super) async fn readyz(State(state): AppState) -> Response {
    let components = state.coordinator.components();
    let waiting: Vec<serde_json::Value> = state
        .eager
        .iter()
        .filter_map(|name| {
            let found = components.iter().find(|c| &c.name == name);
            match found.map(|c| c.state) {
                Some(ComponentState::Ready) => None,
                state => Some(serde_json::json!({ "component": name, "state": state })),
            }
        })
        .collect();
    let status = if waiting.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": waiting.is_empty(), "waiting": waiting })),
    )
        .into_response()
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

pub(super) async fn metrics_json(
    State(state): AppState,
) -> Result<Json<serde_json::Value>, ApiError> {
    let collector = Arc::clone(&state.collector);
    blocking(move || Json(collector.json())).await
}

/// `/plugins`: the directory and each file's verdict, with whether it is loaded.
#[derive(serde::Serialize)]
struct PluginsView<'a> {
    dir: &'a std::path::Path,
    plugins: Vec<Verdict>,
}

pub(super) async fn plugins(State(state): AppState) -> Response {
    let loaded = state.coordinator.loaded_libraries();
    let catalog = state.coordinator.catalog();
    let plugins = catalog
        .plugins
        .iter()
        .map(|plugin| Verdict {
            loaded: Some(loaded.contains(&plugin.path)),
            ..plugin.verdict()
        })
        .collect();
    Json(PluginsView {
        dir: &catalog.dir,
        plugins,
    })
    .into_response()
}

/// `POST /plugins/rescan`: discover the plugins directory now; answer what changed.
pub(super) async fn rescan(State(state): AppState) -> Response {
    let Some(handle) = &state.rescan else {
        return ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this host does not follow its plugins directory",
        )
        .into_response();
    };
    match handle.rescan().await {
        Ok(changes) => Json(changes).into_response(),
        Err(reason) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", reason).into_response()
        }
    }
}

/// `POST /plugins/{name}/reload`: a new worker process takes over the plugin's isolated
/// components on its file as last vetted; the old one finishes its calls.
pub(super) async fn reload(State(state): AppState, Path(name): Path<String>) -> Response {
    match state.coordinator.reload_plugin(&name).await {
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

pub(super) async fn components(
    State(state): AppState,
) -> Result<Json<serde_json::Value>, ApiError> {
    let collector = Arc::clone(&state.collector);
    blocking(move || Json(collector.components_json())).await
}

pub(super) async fn memory(State(state): AppState) -> Result<Json<serde_json::Value>, ApiError> {
    let coordinator = state.coordinator.clone();
    blocking(move || Json(serde_json::json!(coordinator.memory().status()))).await
}

pub(super) async fn locks(State(state): AppState) -> Json<serde_json::Value> {
    let locks = state.coordinator.locks();
    Json(serde_json::json!({ "locks": locks.stats(), "waits": locks.waits() }))
}

pub(super) async fn timeouts(State(state): AppState) -> Json<serde_json::Value> {
    let timeouts = state.coordinator.timeouts();
    Json(serde_json::json!({ "active": timeouts.active(), "stats": timeouts.stats() }))
}

pub(super) async fn cancel_timeout(State(state): AppState, Path(id): Path<u64>) -> Response {
    if state.coordinator.timeouts().cancel(id) {
        Json(serde_json::json!({ "cancelled": id })).into_response()
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
        GetError::Init(init) | GetError::Backoff { source: init, .. } => init_status(init),
        GetError::MissingDependency { .. }
        | GetError::ShuttingDown { .. }
        | GetError::InitStillRunning { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn call_status(err: &CallError) -> StatusCode {
    match err {
        CallError::Get(get) => get_status(get),
        CallError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        CallError::Cancelled { .. }
        | CallError::Saturated { .. }
        | CallError::Quarantined { .. } => StatusCode::SERVICE_UNAVAILABLE,
        CallError::Failed { source, .. } => match source {
            PluginError::BadInput { .. } => StatusCode::BAD_REQUEST,
            PluginError::UnknownMethod(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        CallError::Json { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        CallError::WorkerFailed { .. } => StatusCode::BAD_GATEWAY,
        CallError::UndeclaredMethod { .. } => StatusCode::NOT_FOUND,
    }
}

pub(super) async fn call(
    State(state): AppState,
    Path((name, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        b"null".to_vec()
    } else if let Err(err) = serde_json::from_slice::<serde_json::Value>(&body) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body is not valid JSON: {err}"),
        )
        .into_response();
    } else {
        body.to_vec()
    };
    match state.coordinator.call(&name, &method, input).await {
        Ok(output) => match serde_json::from_slice::<serde_json::Value>(&output) {
            Ok(value) => Json(value).into_response(),
            Err(_) => Json(serde_json::Value::String(
                String::from_utf8_lossy(&output).into_owned(),
            ))
            .into_response(),
        },
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

pub(super) async fn evict(
    State(state): AppState,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let cascade = query
        .get("cascade")
        .is_some_and(|v| v == "true" || v == "1");
    // The instances are dropped on the plugin executor.
    match state.coordinator.evict(&name, cascade).await {
        Ok(evicted) => Json(serde_json::json!({ "evicted": evicted })).into_response(),
        Err(err) => {
            let (status, kind) = match err {
                EvictError::UnknownComponent { .. } => (StatusCode::NOT_FOUND, "unknown_component"),
                _ => (StatusCode::CONFLICT, "conflict"),
            };
            ApiError::new(status, kind, err.to_string()).into_response()
        }
    }
}
