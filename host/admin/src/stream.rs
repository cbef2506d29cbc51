//! `POST /components/{name}/stream/{method}`: a streaming method over HTTP, one item per
//! line of `application/x-ndjson` (flushed as each comes), or as server-sent events when
//! the request's `Accept` asks for `text/event-stream`. A stream that fails after it
//! began ends with an error item; a client that disconnects cancels it.

use std::sync::Arc;
use tracing::Instrument as _;

use axum::{
    body::{Body, Bytes},
    extract::{
        rejection::{BytesRejection, PathRejection},
        Path, State,
    },
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use plugin_host::{CallError, ErrorChainDisplay};

use super::{routes, AdminState, ApiError};

/// How the items are framed on the wire.
#[derive(Clone, Copy)]
enum Framing {
    /// One JSON value per line.
    NdJson,
    /// `data: <json>` events; an error is `event: error`.
    Events,
}

impl Framing {
    fn of(headers: &HeaderMap) -> Self {
        let wants_events = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/event-stream"));
        if wants_events {
            Self::Events
        } else {
            Self::NdJson
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::NdJson => "application/x-ndjson",
            Self::Events => "text/event-stream",
        }
    }

    /// One item, as JSON: passed through when it is JSON, else as a JSON string; in as
    /// many pieces as keep it from being copied (a large item is the plugin's bytes,
    /// moved, not copied twice into a frame).
    fn item(self, item: Vec<u8>) -> Vec<Bytes> {
        let json = if serde_json::from_slice::<serde::de::IgnoredAny>(&item).is_ok() {
            item
        } else {
            let text = serde_json::Value::String(String::from_utf8_lossy(&item).into_owned());
            serde_json::to_vec(&text).unwrap_or_default()
        };
        match self {
            // A JSON value from serde has no raw newline in it.
            Self::NdJson => vec![Bytes::from(json), Bytes::from_static(b"\n")],
            Self::Events => vec![
                Bytes::from_static(b"data: "),
                Bytes::from(json),
                Bytes::from_static(b"\n\n"),
            ],
        }
    }

    /// The error that ended the stream.
    fn error(self, err: &CallError) -> Bytes {
        let body = serde_json::json!({
            "error": { "kind": err.kind(), "message": ErrorChainDisplay(err).to_string() }
        });
        self.frame(
            Some("error"),
            &serde_json::to_vec(&body).unwrap_or_default(),
        )
    }

    fn frame(self, event: Option<&str>, json: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(json.len() + 16);
        match self {
            Self::NdJson => {
                // A JSON value from serde has no raw newline in it.
                out.extend_from_slice(json);
                out.push(b'\n');
            }
            Self::Events => {
                if let Some(event) = event {
                    out.extend_from_slice(format!("event: {event}\n").as_bytes());
                }
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n\n");
            }
        }
        Bytes::from(out)
    }
}

pub(super) async fn stream(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (Path((name, method)), body) = match (path, body) {
        (Ok(path), Ok(body)) => (path, body),
        (Err(rejection), _) => return routes::refused(&rejection),
        (_, Err(rejection)) => return routes::refused(&rejection),
    };
    let input = match routes::json_input(&body) {
        Ok(input) => input,
        Err(refusal) => return refusal.into_response(),
    };
    let options = routes::call_options(&headers);
    let span =
        plugin_host::telemetry::request_span("POST /components/{name}/stream/{method}", &options);
    let opened = state
        .host
        .stream_with(&name, &method, input, &options)
        .instrument(span)
        .await;
    let items = match opened {
        Ok(items) => items,
        Err(err) => {
            return ApiError::new(
                routes::call_status(&err),
                err.kind(),
                ErrorChainDisplay(&err).to_string(),
            )
            .into_response()
        }
    };
    let framing = Framing::of(&headers);
    // Each item becomes one chunk as it comes; when the client goes, axum drops the
    // body, the body drops the stream, and the stream's code is told to stop.
    let chunks = items
        .map(move |item| match item {
            Ok(item) => framing.item(item),
            Err(err) => vec![framing.error(&err)],
        })
        .flat_map(futures::stream::iter)
        .map(Ok::<_, std::convert::Infallible>);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, framing.content_type()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}
