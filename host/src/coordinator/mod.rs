//! The coordinator: every component, initialised lazily in dependency order, exactly once.
//!
//! `get` on a ready component is one lock-free map load and one atomic reference count
//! increment. A cold component is initialised by one task however many callers wait:
//! dependencies first (independent ones concurrently), then the provider's `create` on its
//! own thread under the init timeout. Shutdown stops components in reverse dependency order.

mod builder;
mod call;
mod error;
mod evict;
mod eviction;
mod graph;
mod handle;
mod info;
mod init;
mod isolated;
mod provider;
mod registry;
mod resolved;
mod shutdown;
mod slot;
mod spec;
mod state;
mod status;
mod stream;
mod workers;

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;

pub use self::{
    builder::CoordinatorBuilder,
    error::{
        CallError, EvictError, EvictionReport, GetError, InitError, NotEvictable, RegisterError,
    },
    handle::{ComponentHandle, Dependencies, Instance},
    provider::{NativeComponent, Provider},
    registry::CatalogChanges,
    resolved::ResolvedComponent,
    slot::FileState,
    spec::ComponentSpec,
    state::ComponentState,
    status::{ComponentStatus, SandboxStatus},
    stream::{ComponentStream, ItemSender},
    workers::{ReloadError, ReloadReport},
};
use self::{
    info::CallLimits,
    slot::{Slot, SlotState},
};
use crate::{
    discovery::Catalog,
    executor::PluginExecutor,
    isolation::WorkerPool,
    loader::Loader,
    locks::LockManager,
    memory::MemoryManager,
    metrics::{PluginMetrics, Sampler},
    plan::{ComponentPlan, Plans},
    plugin_log::LogRate,
    services::HostServices,
    timeout::TimeoutManager,
};

pub(crate) struct Inner {
    /// Copy-on-write: readers never lock, registration swaps in a new map.
    slots: ArcSwap<SlotMap>,
    /// The plugin files last registered or refreshed.
    catalog: ArcSwap<Catalog>,
    registry_lock: Mutex<()>,
    init_permits: Arc<Semaphore>,
    failure_backoff: Duration,
    /// What each component, and the engine, works by.
    plans: Plans,
    loader: Arc<Loader>,
    /// Components in the order their last initialisation finished; each at most once.
    init_order: Mutex<Vec<String>>,
    shutting_down: std::sync::atomic::AtomicBool,
    /// Streams open now, by call id: a stop ends them.
    streams: stream::OpenStreams,
    timeouts: TimeoutManager,
    memory: MemoryManager,
    sampler: Sampler,
    services: Arc<HostServices>,
    executor: PluginExecutor,
    /// The worker pool of each library with isolated components, by path.
    pools: Mutex<HashMap<PathBuf, Arc<WorkerPool>>>,
    /// The program run as a worker, or why there is none.
    worker_program: Result<PathBuf, Arc<std::io::Error>>,
    /// The runtime the coordinator was built in, for blocking callers of cold components.
    runtime: Option<tokio::runtime::Handle>,
}

/// Components by name. Names are short and come from manifests and the config, so the
/// map hashes with FxHash: `get` on the hot path pays a few nanoseconds for it, not SipHash's
/// tens.
pub(crate) type SlotMap = HashMap<String, Arc<Slot>, rustc_hash::FxBuildHasher>;

/// Runs every component: registry, lazy dependency-ordered initialisation, shutdown.
/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("components", &self.inner.slots.load().len())
            .finish()
    }
}

/// What shutdown did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShutdownReport {
    /// Components stopped, in the order their stop finished.
    pub stopped: Vec<String>,
    /// Components whose stop did not finish within the stop timeout.
    pub timed_out: Vec<String>,
}

impl Coordinator {
    /// A builder with the documented defaults.
    pub fn builder() -> CoordinatorBuilder {
        CoordinatorBuilder::default()
    }

    /// The call limits and log rate of `component`, as planned.
    fn limits_of(&self, component: &str) -> (CallLimits, LogRate) {
        let plan = self.inner.plans.component(component);
        let calls = CallLimits {
            max_in_flight: plan.max_in_flight,
            quarantine_after: plan.quarantine_after,
            max_reply: self.inner.plans.engine.max_reply,
        };
        let log = LogRate {
            per_second: plan.log_records_per_second,
            burst: plan.log_burst,
        };
        (calls, log)
    }

    /// What component `name` works by.
    pub fn plan_of(&self, name: &str) -> &ComponentPlan {
        self.inner.plans.component(name)
    }

    /// Registers a native Rust component.
    ///
    /// # Errors
    ///
    /// As [`Self::register`].
    pub fn register_native(
        &self,
        spec: ComponentSpec,
        component: NativeComponent,
    ) -> Result<(), RegisterError> {
        self.register(
            ComponentSpec {
                plugin: None,
                ..spec
            },
            Arc::new(component),
        )
    }

    /// The state of component `name`, if registered: one map lookup, no figures (see
    /// [`Self::components`] for those).
    pub fn state_of(&self, name: &str) -> Option<ComponentState> {
        let slots = self.inner.slots.load();
        let slot = slots.get(name)?;
        Some(slot.public_state())
    }

    /// The names of every registered component, sorted.
    pub fn component_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.slots.load().keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether shutdown has begun: no component starts any more.
    pub fn is_shutting_down(&self) -> bool {
        self.inner
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Names of `[components.NAME]` config sections for which no component is registered.
    pub fn overrides_without_component(&self) -> Vec<String> {
        let slots = self.inner.slots.load();
        self.inner
            .plans
            .named()
            .into_iter()
            .filter(|name| !slots.contains_key(*name))
            .map(str::to_owned)
            .collect()
    }

    /// Problems in the registered graph: dependencies nothing provides.
    pub fn validate(&self) -> Vec<GetError> {
        let slots = self.inner.slots.load();
        let mut problems: Vec<GetError> = slots
            .values()
            .flat_map(|slot| {
                slot.spec()
                    .dependencies
                    .iter()
                    .filter(|dep| !slots.contains_key(dep.as_str()))
                    .map(|dep| GetError::MissingDependency {
                        component: slot.name().to_owned(),
                        dependency: dep.clone(),
                    })
            })
            .collect();
        problems.sort_by_key(|p| p.to_string());
        problems
    }

    /// The component `name`, initialising it and its dependencies first if needed.
    ///
    /// # Errors
    ///
    /// [`GetError`] when it is unknown or it or a dependency cannot be initialised.
    pub async fn get(&self, name: &str) -> Result<ComponentHandle, GetError> {
        let slot = {
            let slots = self.inner.slots.load();
            match slots.get(name) {
                Some(slot) => {
                    if let Some(ready) = slot.ready.load_full() {
                        ready.info.touch();
                        return Ok(ComponentHandle { ready });
                    }
                    Arc::clone(slot)
                }
                None => return Err(self.not_registered(name)),
            }
        };
        init::initialize(Arc::clone(&self.inner), slot).await
    }

    /// Metrics plugins registered through their host context.
    pub(crate) fn plugin_metrics(&self) -> &PluginMetrics {
        &self.inner.services.metrics
    }

    /// The memory manager: limit, RSS, reservations, per-component figures.
    pub(crate) fn memory(&self) -> &MemoryManager {
        &self.inner.memory
    }

    /// The named locks shared by the host and every plugin component.
    pub(crate) fn locks(&self) -> &LockManager {
        &self.inner.services.locks
    }

    /// Writes a "suppressed N records" line for each component whose records were
    /// dropped since its last one. The host calls it every second.
    pub(crate) fn flush_log_suppression(&self) {
        self.inner.services.logs.flush();
    }

    /// Threads of the plugin executor alive now, and how many run plugin code.
    pub(crate) fn plugin_threads(&self) -> (usize, usize) {
        (self.inner.executor.threads(), self.inner.executor.busy())
    }

    /// The timeout manager: operations in flight, cancellation, counters.
    pub(crate) fn timeouts(&self) -> &TimeoutManager {
        &self.inner.timeouts
    }

    /// The paths of plugin libraries mapped into this process so far.
    pub fn loaded_libraries(&self) -> Vec<std::path::PathBuf> {
        self.inner.loader.loaded()
    }

    /// Components in the order their last initialisation finished, each listed once.
    pub fn init_order(&self) -> Vec<String> {
        self.inner.init_order.lock().clone()
    }
}

/// Shows an error with its whole cause chain on one line.
pub struct ErrorChainDisplay<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChainDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}
