//! plugin-host: finds native plugins in a directory, knows what each provides without
//! loading it, loads a library only when one of its components is first needed, and runs
//! every component under one [`Coordinator`].
//!
//! # Embedding
//!
//! ```no_run
//! use plugin_host::{Coordinator, Discovery};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! // Your binary is the scanner too: let it answer scan requests first thing in main.
//! plugin_host::run_scanner_if_requested();
//!
//! let catalog = Discovery::new("plugins").discover().await?;
//! let coordinator = Coordinator::builder().build();
//! for problem in coordinator.register_catalog(&catalog) {
//!     eprintln!("{problem}");
//! }
//! let quotes = coordinator.get("market-data").await?;
//! let quote: serde_json::Value = quotes.call_json("quote", &serde_json::json!({"symbol": "AAPL"}))?;
//! println!("{quote}");
//! coordinator.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]
#![deny(unsafe_code)]

pub mod config;
mod context;
mod coordinator;
mod dirs;
pub mod discovery;
mod executor;
#[doc(hidden)]
pub mod fuzzing;
mod isolation;
pub mod live;
mod loader;
mod locks;
mod manifest;
mod memory;
pub mod metrics;
mod plugin_log;
mod timeout;
pub mod trust;
mod util;

pub use self::{
    config::{Config, ConfigError, Isolation, WatchMode},
    coordinator::{
        CallError, CallFault, CatalogChanges, ComponentHandle, ComponentSpec, ComponentState,
        ComponentStatus, Coordinator, CoordinatorBuilder, Dependencies, ErrorChainDisplay,
        EvictError, EvictionReport, FileState, GetError, InitError, Instance, NativeComponent,
        NotEvictable, Provider, RegisterError, ReloadError, ReloadReport, ResolvedComponent,
        ShutdownReport,
    },
    discovery::{
        run_scanner_if_requested, Catalog, DiscoveredPlugin, Discovery, DiscoveryError, ScanMode,
    },
    isolation::{run_worker, WorkerFault, WORKER_FLAG},
    loader::{FileIdentity, LoadError},
    locks::{
        Holder, LockError, LockGuard, LockManager, LockManagerBuilder, LockRef, LockStats,
        OrderViolation,
    },
    manifest::{valid_name, ComponentInfo, ManifestError, MethodInfo, PluginInfo, NAME_RULE},
    memory::{
        ComponentMemory, LimitSource, MemoryLimit, MemoryManager, MemoryManagerBuilder,
        MemoryStatus, PressureLevel, PressureThresholds, Reservation, RssReader, Shortfall,
    },
    plugin_log::PLUGIN_LOG_TARGET,
    timeout::{ActiveTimeout, OperationKind, TimeoutManager, TimeoutStats},
    util::format_bytes,
};
pub use plugin_api;
