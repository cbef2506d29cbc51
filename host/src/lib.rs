//! plugin-host: finds native plugins in a directory, knows what each provides without
//! loading it, loads a library only when one of its components is first needed, and runs
//! every component under one coordinator.
//!
//! # Embedding
//!
//! A [`Host`] is everything `plugin-host run` is (the trust policy, discovery and its
//! cache, live discovery, the memory sampler, isolation workers, an ordered shutdown),
//! started from a [`Config`]. [`plugin_host_admin`](../plugin_host_admin/index.html) serves
//! the same admin API for it in one call.
//!
//! ```no_run
//! use plugin_host::{
//!     plugin_api::{json_reply, Component, PluginError, Request},
//!     ComponentSpec, Config, Host, NativeComponent,
//! };
//!
//! fn main() -> anyhow::Result<()> {
//!     // Your program is also the host's scanner and worker: when started as one, it
//!     // serves as that and exits here. Call this before anything else.
//!     plugin_host::run_child_if_requested();
//!
//!     let mut config = Config::load(None)?; // PLUGIN_HOST_* variables apply
//!     config.host.plugins_dir = "plugins".into();
//!     tokio::runtime::Runtime::new()?.block_on(async {
//!         let host = Host::builder(config)
//!             .with_native(ComponentSpec::new("clock"), NativeComponent::new(|_| Ok(Clock)))
//!             .start()
//!             .await?;
//!         // Plugin code runs on the plugin executor under the call timeout, never on
//!         // this async task.
//!         let bars: serde_json::Value = host
//!             .call_json("historical-data", "bars", &serde_json::json!({"symbol": "AAPL", "count": 3}))
//!             .await?;
//!         println!("{bars}");
//!         let report = host.shutdown().await; // reverse dependency order
//!         println!("stopped: {:?}", report.stopped);
//!         Ok(())
//!     })
//! }
//!
//! struct Clock;
//!
//! impl Component for Clock {
//!     fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
//!         match request.method() {
//!             "now" => json_reply(&std::time::SystemTime::now()),
//!             _ => request.unknown_method(),
//!         }
//!     }
//! }
//! ```
//!
//! Inside component code (a native component calling a dependency, on a plugin thread),
//! [`ComponentHandle::call_blocking`] calls without a hop; from async code use
//! [`Host::call`] or [`ComponentHandle::call`] and `.await` them.

#![warn(missing_docs, unreachable_pub)]
#![deny(unsafe_code)]

mod call_context;
mod child;
pub mod config;
mod context;
mod coordinator;
mod cpu;
mod dirs;
pub mod discovery;
mod executor;
mod fault;
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod isolation;
pub mod live;
mod loader;
mod locks;
mod manifest;
mod memory;
pub mod metrics;
mod names;
mod plan;
mod platform;
mod plugin_log;
mod protocol;
mod services;
pub mod sources;
mod stream_buffer;
pub mod telemetry;
mod timeout;
pub mod trust;
mod util;
mod worker;

pub use self::{
    call_context::CallOptions,
    child::run_child_if_requested,
    config::{Config, ConfigError, Isolation, WatchMode},
    coordinator::{
        CallError, CatalogChanges, ComponentHandle, ComponentSpec, ComponentState, ComponentStatus,
        ComponentStream, Coordinator, CoordinatorBuilder, Dependencies, ErrorChainDisplay,
        EvictError, EvictionReport, FileState, GetError, InitError, Instance, ItemSender,
        NativeComponent, NotEvictable, Provider, RegisterError, ReloadError, ReloadReport,
        ResolvedComponent, SandboxStatus, ShutdownReport,
    },
    discovery::{Catalog, DiscoveredPlugin, Discovery, DiscoveryError, ScanMode},
    fault::{CallFault, FaultKind, WorkerFault, PLUGIN_TEXT_AT_MOST},
    host::{
        CheckReport, ComponentSummary, EagerReport, Host, HostBuilder, HostError, MetricSummaries,
    },
    loader::{loadable_c_abi, loadable_plugin_api, FileIdentity, LoadError},
    locks::{
        Holder, LockError, LockGuard, LockManager, LockManagerBuilder, LockRef, LockStats,
        OrderViolation,
    },
    manifest::{ComponentInfo, ManifestError, MethodInfo, PluginAbi, PluginInfo},
    memory::{
        ComponentMemory, LimitSource, MemoryLimit, MemoryManager, MemoryManagerBuilder,
        MemoryStatus, PressureLevel, PressureThresholds, Reservation, RssReader, Shortfall,
    },
    names::{printable, terminal_safe, valid_name, NAME_RULE},
    plan::{ComponentPlan, EnginePlan, Plans},
    plugin_log::PLUGIN_LOG_TARGET,
    timeout::{ActiveTimeout, OperationKind, TimeoutManager, TimeoutStats},
    util::{format_bytes, serialize_path_lossy, shortened},
};
pub use plugin_api;

/// Raises this process's soft limit of open descriptors to its hard limit (Unix; nothing
/// on Windows, where sockets are not limited so), as a server with many connections
/// needs: each admin connection takes one. The `plugin-host` binary does it at start;
/// an embedder serving many connections may too. The host's children (workers, scanners)
/// start with the soft limit from before. Returns the soft limit before and after.
///
/// # Errors
///
/// The limit cannot be read or set.
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    platform::raise_open_files_limit()
}

/// Keeps this process's standard output for its own output and points the rest at
/// standard error: what plugin code in process writes to its standard output
/// (`println!`, `printf`) then goes to the log stream, not into the data a script reads.
/// `plugin-host call` does it first; a program whose standard output is data may too.
/// Returns the kept standard output, to write that data to.
///
/// # Errors
///
/// The process has no standard output, or it cannot be copied.
pub fn keep_standard_output() -> std::io::Result<std::fs::File> {
    platform::keep_standard_output()
}

/// The old name of [`run_child_if_requested`]: it serves scanners and workers alike.
#[deprecated(note = "renamed run_child_if_requested: it serves scanners and workers alike")]
pub fn run_scanner_if_requested() {
    run_child_if_requested();
}
