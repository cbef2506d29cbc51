//! Streaming methods: a method that answers many times. The plugin's code gets the
//! request and a [`StreamSink`]; each [`StreamSink::send`] hands one item to the host,
//! blocking while the consumer is behind (the host keeps a bounded buffer), and fails
//! once the consumer has gone, so a feed loop ends by itself:
//!
//! ```
//! use plugin_api::{Component, PluginError, Request, StreamSink};
//!
//! struct Ticker;
//!
//! impl Component for Ticker {
//!     fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
//!         request.unknown_method()
//!     }
//!
//!     fn stream(&self, request: Request<'_>, sink: &StreamSink) -> Result<(), PluginError> {
//!         match request.method() {
//!             "count" => {
//!                 for n in 0.. {
//!                     // Err once the consumer went: the loop, and the stream, end.
//!                     if sink.send_json(&n).is_err() {
//!                         break;
//!                     }
//!                 }
//!                 Ok(())
//!             }
//!             _ => request.unknown_method(),
//!         }
//!     }
//! }
//!
//! let items = plugin_api::testing::collect_stream(&Ticker, "count", b"null", 3).unwrap();
//! assert_eq!(items, [b"0".to_vec(), b"1".to_vec(), b"2".to_vec()]);
//! ```
//!
//! Which methods stream is declared with [`crate::Plugin::streams`], so the host and
//! `plugin-host inspect` know without loading the plugin. Since plugin-api 0.1.1: a host
//! built before cannot stream and says so when asked to.

use std::fmt;

use serde::Serialize;

use crate::{ffi::StreamSinkBox, PluginError};

/// Where a streaming method's items go. Cheap to share by reference; `send` may be
/// called from any thread the method's code starts, as long as the method has not
/// returned.
pub struct StreamSink {
    inner: SinkInner,
}

/// A function that takes an item and says whether the consumer is still there.
type Accept = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

enum SinkInner {
    /// The host's end, across the boundary.
    Host(StreamSinkBox),
    /// A function, for tests and adapters.
    Local(Accept),
}

/// The consumer of a stream has gone (cancelled, disconnected, timed out): stop
/// producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamClosed;

impl fmt::Display for StreamClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stream's consumer has gone")
    }
}

impl std::error::Error for StreamClosed {}

impl From<StreamClosed> for PluginError {
    fn from(closed: StreamClosed) -> Self {
        PluginError::with_kind("cancelled", closed)
    }
}

impl StreamSink {
    /// The sink of the host's end of a stream.
    pub fn from_host(host: StreamSinkBox) -> Self {
        Self {
            inner: SinkInner::Host(host),
        }
    }

    /// A sink that hands each item to `accept`, which says whether the consumer is still
    /// there.
    pub fn from_fn(accept: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> Self {
        Self {
            inner: SinkInner::Local(Box::new(accept)),
        }
    }

    /// Sends one item, waiting while the consumer is behind.
    ///
    /// # Errors
    ///
    /// [`StreamClosed`] once the consumer has gone: stop producing.
    pub fn send(&self, item: &[u8]) -> Result<(), StreamClosed> {
        let accepted = match &self.inner {
            SinkInner::Host(host) => host.send(item.into()),
            SinkInner::Local(accept) => accept(item),
        };
        if accepted {
            Ok(())
        } else {
            Err(StreamClosed)
        }
    }

    /// Sends one item as JSON.
    ///
    /// # Errors
    ///
    /// [`PluginError`] of kind `cancelled` once the consumer has gone, or a failure to
    /// serialise.
    pub fn send_json<T: Serialize + ?Sized>(&self, item: &T) -> Result<(), PluginError> {
        let bytes = crate::json_reply(item)?;
        self.send(&bytes).map_err(Into::into)
    }
}

/// Which methods of a plugin's components stream: see [`crate::Plugin::streams`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Streams {
    pub(crate) methods: Vec<(String, String)>,
}

impl Streams {
    /// No streaming method.
    pub fn new() -> Self {
        Self::default()
    }

    /// Method `method` of component `component` streams.
    pub fn method(mut self, component: &str, method: &str) -> Self {
        self.methods.push((component.to_owned(), method.to_owned()));
        self
    }
}
