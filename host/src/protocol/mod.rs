//! What host and worker say to each other over their link (see `platform::link`), the
//! one module the host's side of isolation (`isolation`) and the worker program
//! (`worker`) share: the messages, and the frames they travel in (`frames`).
//! Requests carry ids, so calls in flight are multiplexed on one socket; payloads are raw
//! bytes.

mod frames;

use plugin_api::PluginError;
use serde::{Deserialize, Serialize};

pub(crate) use self::frames::{FrameReader, FrameWriter};
use crate::loader::FileIdentity;
pub(crate) use crate::platform::SandboxPlan;

/// What a frame holds besides its payload (the message's other fields, postcard's
/// lengths): a frame may be this much larger than the largest reply.
pub(crate) const FRAME_OVERHEAD: usize = 64 << 10;

/// From the host to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Create instance `instance` of `component`.
    Create {
        req: u64,
        instance: u64,
        component: String,
        config: String,
        dependencies: Vec<String>,
    },
    /// Call `method` on `instance`; `req` is the call's id (locks taken belong to it).
    Call {
        req: u64,
        instance: u64,
        method: String,
        #[serde(with = "serde_bytes")]
        input: Vec<u8>,
        context: WireContext,
    },
    /// Drop `instance`; answered once its `Drop` returned.
    Drop { req: u64, instance: u64 },
    /// Open a stream of `method` on `instance` as request `req`; the worker may send
    /// `credit` items and `credit_bytes` bytes (by [`charge`]) before it is given more.
    Stream {
        req: u64,
        instance: u64,
        method: String,
        #[serde(with = "serde_bytes")]
        input: Vec<u8>,
        credit: u32,
        credit_bytes: u64,
        context: WireContext,
    },
    /// The consumer of stream `req` took items: `n` more items and `bytes` more bytes may
    /// come.
    Credit { req: u64, n: u32, bytes: u64 },
    /// The caller of call or stream `req` has gone (it timed out, its client went, its
    /// consumer dropped the stream): its code sees it as cancelled, and a stream's sink
    /// refuses items from now on.
    Cancel { req: u64 },
    /// The host is stopping: every call in flight is cancelled.
    Stopping,
    /// The answer to the worker's request `req`.
    Reply { req: u64, reply: Reply },
}

/// A finished span of plugin code, as a worker sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireSpan {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) parent_span_id: [u8; 8],
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) component: String,
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: u64,
    pub(crate) fields: String,
}

/// A call's context as it travels to a worker: its time left, its trace, its CPU budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireContext {
    /// Nanoseconds left until the call's deadline when the host sent it.
    pub(crate) remaining_nanos: Option<u64>,
    /// W3C `traceparent` and `tracestate`, empty when the call is not traced.
    pub(crate) traceparent: String,
    pub(crate) tracestate: String,
    /// The most CPU time the call may use (`cpu_per_call`), in nanoseconds: the worker
    /// watches it and says `Overrun` once it has used more.
    pub(crate) cpu_budget_nanos: Option<u64>,
}

/// What an item of `len` bytes costs of a stream's byte credit, whose whole window is
/// `window` bytes: its size, or the whole window for an item larger than it (which is sent
/// alone, once everything before it has been taken).
pub(crate) fn charge(len: usize, window: u64) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX).min(window)
}

/// From a worker to the host.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The worker is fenced in, in the sandbox it says (if any), and opens the library
    /// next: said before any of the plugin's code runs (its constructors included), so
    /// that the plugin cannot say it instead (another pid, for the memory limit to read;
    /// another sandbox, for `status` to show).
    Hello {
        /// The process that runs the plugin, as the host sees it (its memory is the
        /// worker's).
        pid: u32,
        sandbox: Option<String>,
        /// What ends everything it starts when it ends, in words.
        fence: String,
    },
    /// The sandbox could not be entered or the library opened; the worker exits.
    Refused { error: String },
    /// Answer to `Create`.
    Created {
        req: u64,
        result: Result<(), WireError>,
    },
    /// Answer to `Drop`.
    Dropped { req: u64 },
    /// Answer to `Call`, with the CPU time the call spent on its worker thread.
    Returned {
        req: u64,
        result: Outcome<serde_bytes::ByteBuf>,
        cpu_nanos: u64,
    },
    /// One item of stream `req` (within its credit).
    Item {
        req: u64,
        #[serde(with = "serde_bytes")]
        item: Vec<u8>,
    },
    /// Stream `req` is done.
    StreamEnd { req: u64, result: Outcome<()> },
    /// A log record of the plugin's.
    Log {
        level: u8,
        component: String,
        target: String,
        message: String,
        /// The trace and span it was made in, inside a traced call.
        trace: Option<([u8; 16], [u8; 8])>,
    },
    /// One finished span of plugin code inside a traced call.
    Span(WireSpan),
    /// A log record of the worker's own (0 trace .. 4 error), not its plugin's.
    WorkerLog {
        level: u8,
        target: String,
        message: String,
    },
    /// A value for metric `metric` (a handle the host gave out).
    Record { metric: u64, value: f64 },
    /// Plugin code asks the host for something (a lock, a dependency, a metric).
    Request {
        req: u64,
        instance: u64,
        /// The call it asks from (id and method), if inside one; outside any, a thread of
        /// the worker's own, its number with [`THREAD_HOLDER`] set.
        call: Option<(u64, String)>,
        request: WorkerRequest,
    },
    /// Call `req` has used `cpu_nanos` of CPU, over its budget: the host abandons it as a
    /// hung call. Said once per call; the call goes on until it returns or the worker is
    /// killed.
    Overrun { req: u64, cpu_nanos: u64 },
    /// Stream `req` waits for credit: the host grants what its consumer has taken now,
    /// not at the next batch.
    Starved { req: u64 },
    /// The library is open: the worker is ready (it follows `Hello`; last here because a
    /// variant's place is its number on the wire, which test fixtures write by hand).
    Ready,
}

/// Set in the "call" a worker names for a request of a thread outside any call: the locks
/// that thread takes belong to it, as a call's belong to the call.
pub(crate) const THREAD_HOLDER: u64 = 1 << 62;

/// What plugin code in a worker asks of the host.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WorkerRequest {
    /// Call `method` on dependency `name`.
    Dependency {
        name: String,
        method: String,
        #[serde(with = "serde_bytes")]
        input: Vec<u8>,
    },
    /// Take lock `name`.
    Lock { name: String, timeout_ms: u64 },
    /// Release the lock taken with `token`.
    Unlock { token: u64 },
    /// Register (or find) a metric.
    Metric {
        histogram: bool,
        name: String,
        help: String,
        buckets: Vec<f64>,
    },
}

/// The host's answer to a worker request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    Token(u64),
    Done,
    Error(WireError),
}

/// A [`PluginError`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireError {
    Failed(String),
    BadInput {
        method: String,
        message: String,
    },
    UnknownMethod(String),
    UnknownComponent(String),
    Dependency {
        name: String,
        message: String,
    },
    Panicked {
        plugin: String,
        component: String,
        method: String,
        message: String,
    },
}

/// How a call or a stream the worker ran ended.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome<T> {
    /// It returned this.
    Done(T),
    /// The plugin's error.
    Failed(WireError),
    /// Its reply (or an item) was larger than `[limits] max_reply`; the worker did not
    /// send it, and carries on.
    TooLarge { size: u64, limit: u64 },
}

impl<T> From<Result<T, plugin_api::PluginError>> for Outcome<T> {
    fn from(result: Result<T, plugin_api::PluginError>) -> Self {
        match result {
            Ok(value) => Self::Done(value),
            Err(err) => Self::Failed(err.into()),
        }
    }
}

impl From<PluginError> for WireError {
    fn from(err: PluginError) -> Self {
        match err {
            PluginError::Failed(message) => Self::Failed(message.into()),
            PluginError::BadInput { method, message } => Self::BadInput {
                method: method.into(),
                message: message.into(),
            },
            PluginError::UnknownMethod(method) => Self::UnknownMethod(method.into()),
            PluginError::UnknownComponent(name) => Self::UnknownComponent(name.into()),
            PluginError::Dependency { name, message } => Self::Dependency {
                name: name.into(),
                message: message.into(),
            },
            PluginError::Panicked(report) => Self::Panicked {
                plugin: report.plugin.to_string(),
                component: report.component.to_string(),
                method: report.method.to_string(),
                message: report.message.to_string(),
            },
        }
    }
}

impl From<WireError> for PluginError {
    fn from(err: WireError) -> Self {
        match err {
            WireError::Failed(message) => Self::failed(message),
            WireError::BadInput { method, message } => Self::bad_input(&method, message),
            WireError::UnknownMethod(method) => Self::unknown_method(&method),
            WireError::UnknownComponent(name) => Self::UnknownComponent(name.into()),
            WireError::Dependency { name, message } => Self::dependency(&name, message),
            WireError::Panicked {
                plugin,
                component,
                method,
                message,
            } => Self::panicked(&plugin, &component, &method, &message),
        }
    }
}

/// How the host starts a worker: the library, as vetted.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    /// The library's path, for messages: the file itself arrives open as descriptor 4.
    pub(crate) library: std::path::PathBuf,
    /// The identity the host vetted, checked again on the descriptor.
    pub(crate) identity: FileIdentity,
    /// The lowest log level the host records for plugins (0 trace .. 4 error, 5 none):
    /// records below it are not sent at all.
    pub(crate) log_level: u8,
    /// The largest reply a call may return (`[limits] max_reply`): a larger one is the
    /// call's error, and never sent.
    pub(crate) max_reply: usize,
    /// Messages this large or more travel in shared memory (`[limits] shared_memory_from`;
    /// 0: none does).
    pub(crate) shared_memory_from: usize,
    /// The threads and processes the worker may run at once (`[limits] worker_tasks`;
    /// 0: any number).
    #[serde(default)]
    pub(crate) worker_tasks: u32,
    /// The sandbox to enter before the library is opened, if any.
    pub(crate) sandbox: Option<SandboxPlan>,
}
