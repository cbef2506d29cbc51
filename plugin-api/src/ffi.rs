//! The FFI-safe objects that cross the boundary: the root module, components, the host.
//!
//! Plugin authors never touch these directly: they implement [`crate::Plugin`] and
//! [`crate::Component`], and [`crate::export_plugin!`] wires them to this module. The host
//! uses these types to drive a loaded library.

// The `StableAbi` and `sabi_trait` expansions contain the crate's only unsafe code.
#![allow(unsafe_code)]
// abi_stable 0.11's `sabi_trait` emits impls inside a const block (rodrimati1992/abi_stable_crates#105).
#![allow(non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::{RRef, VersionStrings},
    std_types::{RArc, RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::{Manifest, PluginError};

/// Severity of a log record forwarded from a plugin to the host.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, StableAbi)]
pub enum LogLevel {
    /// Very verbose diagnostics.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}

/// The kind of a metric a plugin registers with the host.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, StableAbi)]
pub enum MetricKind {
    /// A monotonically increasing count.
    Counter,
    /// A distribution of values in base units (seconds, bytes).
    Histogram,
}

/// A metric instrument owned by the host: counters add, histograms observe.
#[sabi_trait]
pub trait MetricObj: Send + Sync + Clone {
    /// Records `value`: added to a counter (rounded, negative ignored), observed by a
    /// histogram.
    #[sabi(last_prefix_field)]
    fn record(&self, value: f64);
}

/// A metric handle handed to a plugin.
pub type MetricBox = MetricObj_TO<'static, RArc<()>>;

/// A component instance as the host sees it.
#[sabi_trait]
pub trait ComponentObj: Send + Sync {
    /// Runs `method` with `input` (usually JSON) and returns the output bytes.
    #[sabi(last_prefix_field)]
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError>;

    // Methods added after 0.1.0 come below, each with a default body: a plugin built
    // before the method existed has no entry for it, and the host calling it there gets
    // the default instead.

    /// Runs streaming method `method` with `input`, sending its items to `sink`; returns
    /// when the stream is done (since 0.1.1; a plugin built before cannot stream).
    fn stream(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        sink: StreamSinkBox,
    ) -> RResult<(), PluginError> {
        let _ = (input, sink);
        RResult::RErr(PluginError::with_kind(
            "not_streaming",
            format!(
                "method `{method}` cannot stream: the plugin was built against plugin-api 0.1.0, before streams"
            ),
        ))
    }

    /// [`Self::call`] with the call's context: its deadline, whether it is cancelled, its
    /// trace (since 0.1.3; for a plugin built before, the host's call goes to `call` and
    /// the context is not seen).
    fn call_in(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        context: CallContextRef<'_>,
    ) -> RResult<RVec<u8>, PluginError> {
        let _ = context;
        self.call(method, input)
    }

    /// [`Self::stream`] with the stream's context (since 0.1.3, as [`Self::call_in`]).
    fn stream_in(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        sink: StreamSinkBox,
        context: CallContextRef<'_>,
    ) -> RResult<(), PluginError> {
        let _ = context;
        self.stream(method, input, sink)
    }

    /// [`Self::call_in`] as hosts call it (since 0.1.3): the context lent by reference (no
    /// copy of it through the stack) and what the host already knows of it as `flags`
    /// (an untraced call then costs the plugin no question across the boundary). For a
    /// plugin built before it, the host's call goes to `call_in` (or `call`).
    fn call_with(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        context: &CallContextRef<'_>,
        flags: CallFlags,
    ) -> RResult<RVec<u8>, PluginError> {
        let _ = flags;
        self.call_in(
            method,
            input,
            CallContextObj_TO::from_sabi(context.obj.clone()),
        )
    }
}

/// What the host tells a component of the one call it serves (since 0.1.3). Lent to
/// the plugin for the call's duration only; every method is cheap (no allocation).
#[sabi_trait]
pub trait CallContextObj: Sync {
    /// Nanoseconds left until the call's deadline (0 once it has passed); `u64::MAX`
    /// when the call has none.
    fn remaining_nanos(&self) -> u64;

    /// Whether the caller has gone: the call timed out, its client went away, its
    /// stream's consumer dropped it, or the host is stopping. Work done after this is
    /// thrown away.
    fn is_cancelled(&self) -> bool;

    /// The caller's W3C `traceparent` (`00-<trace id>-<parent span id>-<flags>`), empty
    /// when the call is not traced.
    fn traceparent(&self) -> RStr<'_>;

    /// The caller's W3C `tracestate`, often empty.
    #[sabi(last_prefix_field)]
    fn tracestate(&self) -> RStr<'_>;
}

/// A call's context, lent to the plugin for the call.
pub type CallContextRef<'a> = CallContextObj_TO<'a, RRef<'a, ()>>;

/// What the host tells a plugin of a call with its context, as bits (since 0.1.3): bits a
/// plugin does not know are ignored, so hosts may add more.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, StableAbi)]
pub struct CallFlags(u32);

impl CallFlags {
    /// The call carries a trace context: its `traceparent` is worth asking for.
    pub const TRACED: Self = Self(1);

    /// No flag set.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// These flags with `other`'s too.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The host's end of one stream, handed to a streaming call (since 0.1.1).
#[sabi_trait]
pub trait StreamSinkObj: Send + Sync {
    /// Hands one item to the host, waiting while its consumer is behind; false once the
    /// consumer has gone.
    #[sabi(last_prefix_field)]
    fn send(&self, item: RVec<u8>) -> bool;
}

/// The stream sink handed to a plugin.
pub type StreamSinkBox = StreamSinkObj_TO<'static, RBox<()>>;

/// An owned component instance, as returned by a plugin's `create`.
pub type ComponentBox = ComponentObj_TO<'static, RBox<()>>;

/// A shared handle to a component, as handed to a plugin for its dependencies.
pub type ComponentRef = ComponentObj_TO<'static, RArc<()>>;

/// Where a plugin's log records and panic reports go.
///
/// A plugin library keeps one of these in a static for its `tracing` layer and its panic
/// hook, so it must own no component state: no context, no dependency handle. The host
/// implements it with the plugin's name and a per-component rate limit only.
#[sabi_trait]
pub trait LogSink: Send + Sync + Clone {
    /// Whether records at `level` would be kept by the host's log filter.
    fn enabled(&self, level: LogLevel) -> bool;

    /// Emits one record into the host's log. `component` is empty when the record did not
    /// come from inside a component's code.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, component: RStr<'_>, target: RStr<'_>, message: RStr<'_>);

    // Methods added after 0.1.0 come below, each with a default body: a host built before
    // the method existed has no entry for it, and a plugin calling it there gets the
    // default instead.

    /// As [`Self::log`], for a record made inside a traced call: with the ids of the
    /// trace and of the span it was made in (since 0.1.3; an older host logs it without).
    fn log_traced(
        &self,
        level: LogLevel,
        component: RStr<'_>,
        target: RStr<'_>,
        message: RStr<'_>,
        trace: TraceIds,
    ) {
        let _ = trace;
        self.log(level, component, target, message);
    }

    /// Whether the host exports the spans of plugin code (since 0.1.3; an older host
    /// does not, and a plugin then records none).
    fn wants_spans(&self) -> bool {
        false
    }

    /// One finished span of plugin code inside a traced call, for the host to export in
    /// the call's trace (since 0.1.3).
    fn span(&self, span: SpanRecord<'_>) {
        let _ = span;
    }
}

/// The ids that place a log record in a trace (since 0.1.3).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, StableAbi)]
pub struct TraceIds {
    /// The trace's 16-byte id.
    pub trace_id: [u8; 16],
    /// The 8-byte id of the span the record was made in.
    pub span_id: [u8; 8],
}

/// One finished span of plugin code (since 0.1.3): its place in the trace, its name,
/// when it ran (nanoseconds since the Unix epoch) and its fields as `name=value` text.
#[repr(C)]
#[derive(Debug, Clone, Copy, StableAbi)]
pub struct SpanRecord<'a> {
    /// Its trace and its own id.
    pub ids: TraceIds,
    /// The span it is a child of: the plugin's enclosing span, or the host's span for
    /// the call.
    pub parent_span_id: [u8; 8],
    /// Its name.
    pub name: RStr<'a>,
    /// Its target (the plugin's module path, usually).
    pub target: RStr<'a>,
    /// The component whose code made it.
    pub component: RStr<'a>,
    /// When it began.
    pub start_unix_nanos: u64,
    /// When it closed.
    pub end_unix_nanos: u64,
    /// Its fields, as `name=value` separated by spaces.
    pub fields: RStr<'a>,
}

/// The log sink handed to a plugin.
pub type LogSinkBox = LogSink_TO<'static, RArc<()>>;

/// What the host offers a component. Implemented by the host, one per component instance.
///
/// An instance's context owns the handles of its dependencies: it must live inside the
/// instance and nowhere else (never in a static), so that dropping the instance releases
/// them.
#[sabi_trait]
pub trait HostApi: Send + Sync + Clone {
    /// The name of the component this context belongs to.
    fn component_name(&self) -> RString;

    /// The sink for this plugin's logs and panics; it holds no component state.
    fn log_sink(&self) -> LogSinkBox;

    /// This component's configuration section as JSON (`{}` when there is none).
    fn config_json(&self) -> RString;

    /// A handle to one of the component's declared dependencies, already initialised.
    fn dependency(&self, name: RStr<'_>) -> ROption<ComponentRef>;

    /// Takes the host's named lock `name` for the caller (the call being served, else this
    /// thread), blocking up to `timeout_ms` (0: the lock's configured timeout). The global
    /// lock order and deadlock checks apply. Returns a token that releases it.
    fn lock(&self, name: RStr<'_>, timeout_ms: u64) -> RResult<u64, PluginError>;

    /// Releases the lock taken with `token`.
    fn unlock(&self, token: u64) -> RResult<(), PluginError>;

    /// Registers (or finds) the metric `name` of this component and returns its handle.
    /// `buckets` are a histogram's upper bounds, rising; empty picks them from the name's
    /// unit (`_seconds`, `_bytes`), else the host's latency buckets.
    #[sabi(last_prefix_field)]
    fn metric(
        &self,
        kind: MetricKind,
        name: RStr<'_>,
        help: RStr<'_>,
        buckets: RSlice<'_, f64>,
    ) -> RResult<MetricBox, PluginError>;

    // Methods added after 0.1.0 come below, each with a default body: a host built before
    // the method existed has no entry for it, and a plugin calling it there gets the
    // default instead.

    /// The plugin-api version the host was built with (since 0.1.1; a host older than
    /// that answers "0.1.0").
    fn host_api_version(&self) -> RString {
        RString::from("0.1.0")
    }
}

/// The host context object passed to `create`.
pub type HostBox = HostApi_TO<'static, RArc<()>>;

/// The root module every plugin library exports.
///
/// It is an abi_stable prefix type, but its fields are public and plugins could build it
/// themselves, so a new field would break their source: it stays as 0.1.0 made it for
/// the whole 0.1 line. What a plugin says of itself beyond it travels as the versioned
/// document of [`crate::describe`], through the symbol [`DESCRIBE_SYMBOL`].
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRootRef)))]
#[sabi(missing_field(panic))]
pub struct PluginRoot {
    /// Returns the plugin's manifest. Never panics across the boundary.
    pub manifest: extern "C" fn() -> RResult<Manifest, PluginError>,

    /// Creates the component `name` with the given host context.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(name: RStr<'_>, host: HostBox) -> RResult<ComponentBox, PluginError>,
}

impl RootModule for PluginRootRef {
    declare_root_module_statics! {PluginRootRef}
    const BASE_NAME: &'static str = "plugin";
    const NAME: &'static str = "plugin-host plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The C symbol through which a plugin built against plugin-api 0.1.1 or later gives its
/// [`crate::describe::Description`]: `extern "C" fn(out: *mut u8, capacity: usize) ->
/// usize` writes the JSON document into `out` if it fits in `capacity` bytes and returns
/// its length either way. Plain C types only: nothing is allocated on one side and freed on
/// the other, and no layout needs checking. A plugin built against 0.1.0 has no such
/// symbol. `export_plugin!` exports it.
pub const DESCRIBE_SYMBOL: &str = "plugin_host_describe_v1";

/// The plugin-api version this crate was built as; plugins record it in their library.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The abi_stable version plugin-api is built with; a plugin pins the same one.
pub const ABI_STABLE_VERSION: &str = "0.11.3";
