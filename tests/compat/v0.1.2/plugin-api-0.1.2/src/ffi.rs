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
    sabi_types::VersionStrings,
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
