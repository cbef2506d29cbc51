//! The coordinator: every component, initialised lazily in dependency order, exactly once.
//!
//! `get` on a ready component is one lock-free map load and one atomic reference count
//! increment. A cold component is initialised by one task however many callers wait:
//! dependencies first (independent ones concurrently), then the provider's `create` on its
//! own thread under the init timeout. Shutdown stops components in reverse dependency order.

mod builder;
mod error;
mod eviction;
mod graph;
mod handle;
mod init;
mod provider;
mod shutdown;
mod slot;

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;

pub use self::{
    builder::CoordinatorBuilder,
    error::{CallError, EvictError, GetError, InitError, RegisterError},
    handle::ComponentHandle,
    provider::{ComponentSpec, Dependencies, Instance, NativeComponent, Provider},
    slot::ComponentState,
};
use self::{
    provider::PluginProvider,
    slot::{Slot, SlotState},
};
use crate::{
    config::Config,
    discovery::Catalog,
    loader::Loader,
    locks::LockManager,
    manifest::valid_name,
    memory::MemoryManager,
    metrics::{HistogramSnapshot, PluginMetrics, Sampler},
    timeout::{Interrupted, OperationKind, TimeoutManager},
};

struct Inner {
    /// Copy-on-write: readers never lock, registration swaps in a new map.
    slots: ArcSwap<HashMap<String, Arc<Slot>>>,
    registry_lock: Mutex<()>,
    init_permits: Arc<Semaphore>,
    default_timeout: Duration,
    failure_backoff: Duration,
    component_configs: HashMap<String, serde_json::Value>,
    config: Config,
    loader: Arc<Loader>,
    init_order: Mutex<Vec<String>>,
    shutting_down: std::sync::atomic::AtomicBool,
    timeouts: TimeoutManager,
    locks: LockManager,
    memory: MemoryManager,
    sampler: Sampler,
    plugin_metrics: Arc<PluginMetrics>,
}

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

/// A snapshot of one component for people and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    /// Component name.
    pub name: String,
    /// Current state.
    pub state: ComponentState,
    /// Providing plugin, or `None` for native components.
    pub plugin: Option<String>,
    /// Declared dependencies.
    pub dependencies: Vec<String>,
    /// Registered components that depend on it.
    pub dependents: Vec<String>,
    /// 0 (most important) to 100.
    pub priority: u8,
    /// Declared memory use in bytes.
    pub memory_estimate: u64,
    /// RSS growth measured across its last creation, in bytes.
    pub memory_measured: Option<u64>,
    /// Times it was evicted to free memory.
    pub evictions: u64,
    /// How long the last successful init took, in milliseconds.
    pub init_ms: Option<f64>,
    /// Milliseconds since last use, if used.
    pub idle_ms: Option<u64>,
    /// Calls made.
    pub calls: u64,
    /// Calls that returned an error.
    pub call_errors: u64,
    /// Calls that timed out.
    pub call_timeouts: u64,
    /// Latency of calls (sampled, scaled back to every call).
    #[serde(skip)]
    pub call_latency: HistogramSnapshot,
    /// Duration of successful initialisations.
    #[serde(skip)]
    pub init_duration: HistogramSnapshot,
    /// Successful initialisations.
    pub inits: u64,
    /// Failed initialisations.
    pub init_failures: u64,
    /// The last initialisation error, with its causes.
    pub last_error: Option<String>,
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

    /// Registers a component.
    ///
    /// # Errors
    ///
    /// [`RegisterError`] for a taken or invalid name, or a dependency cycle (with its path).
    pub fn register(
        &self,
        spec: ComponentSpec,
        provider: Arc<dyn Provider>,
    ) -> Result<(), RegisterError> {
        if !valid_name(&spec.name) {
            return Err(RegisterError::InvalidName { name: spec.name });
        }
        let _guard = self.inner.registry_lock.lock();
        let current = self.inner.slots.load_full();
        if let Some(existing) = current.get(&spec.name) {
            return Err(RegisterError::Duplicate {
                name: spec.name.clone(),
                existing: existing.spec().provider_label(),
                new: spec.provider_label(),
            });
        }
        let mut deps: HashMap<&str, &[String]> = current
            .values()
            .map(|slot| (slot.name(), slot.spec().dependencies.as_slice()))
            .collect();
        deps.insert(&spec.name, &spec.dependencies);
        if let Some(path) = graph::find_cycle(&deps) {
            return Err(RegisterError::Cycle { path });
        }
        let config = self
            .inner
            .component_configs
            .get(&spec.name)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        let mut next = HashMap::clone(&current);
        next.insert(
            spec.name.clone(),
            Arc::new(Slot::new(spec, provider, config, self.inner.sampler)),
        );
        self.inner.slots.store(Arc::new(next));
        Ok(())
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

    /// Registers every component of every usable plugin in `catalog`. Returns the problems
    /// (duplicates, cycles); everything else is registered.
    pub fn register_catalog(&self, catalog: &Catalog) -> Vec<RegisterError> {
        let mut problems = Vec::new();
        for (plugin, info) in catalog.usable() {
            for component in &info.components {
                let overrides = self.inner.config.components.get(&component.name);
                if overrides.is_some_and(|o| !o.enabled) {
                    tracing::info!(component = %component.name, "component disabled in the config");
                    continue;
                }
                let spec = ComponentSpec {
                    name: component.name.clone(),
                    plugin: Some(info.name.clone()),
                    dependencies: component.dependencies.clone(),
                    memory_estimate: overrides
                        .and_then(|o| o.memory_estimate)
                        .unwrap_or(component.memory_estimate),
                    priority: overrides
                        .and_then(|o| o.priority)
                        .unwrap_or(component.priority),
                    init_timeout: overrides.and_then(|o| o.timeout).or(component.init_timeout),
                };
                let provider = PluginProvider {
                    plugin: plugin.clone(),
                    loader: Arc::clone(&self.inner.loader),
                    locks: self.inner.locks.clone(),
                    memory: self.inner.memory.clone(),
                    metrics: Arc::clone(&self.inner.plugin_metrics),
                };
                if let Err(err) = self.register(spec, Arc::new(provider)) {
                    problems.push(err);
                }
            }
        }
        problems
    }

    /// Names of `[components.NAME]` config sections for which no component is registered.
    pub fn overrides_without_component(&self) -> Vec<String> {
        let slots = self.inner.slots.load();
        self.inner
            .config
            .components
            .keys()
            .filter(|name| !slots.contains_key(name.as_str()))
            .cloned()
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
                None => {
                    return Err(GetError::UnknownComponent {
                        name: name.to_owned(),
                    })
                }
            }
        };
        init::initialize(Arc::clone(&self.inner), slot).await
    }

    /// Gets `component` and calls `method` on a blocking thread, under its call timeout
    /// (see [`Config::call_timeout`]).
    ///
    /// # Errors
    ///
    /// [`CallError`] for init failures, the component's error, or an expired timeout.
    pub async fn call(
        &self,
        component: &str,
        method: &str,
        input: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        let handle = self.get(component).await?;
        let info = Arc::clone(&handle.ready.info);
        let limit = self.call_timeout(component, method);
        let method_owned = method.to_owned();
        let task = tokio::task::spawn_blocking(move || handle.call(&method_owned, &input));
        let timed = self
            .inner
            .timeouts
            .run(OperationKind::Call, component, Some(method), limit, task)
            .await;
        match timed {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => Err(CallError::Failed {
                component: component.to_owned(),
                method: method.to_owned(),
                source: plugin_api::PluginError::failed(format!(
                    "call thread failed: {join_error}"
                )),
            }),
            Err(Interrupted::Expired) => {
                info.stats.call_timeouts.inc();
                Err(CallError::TimedOut {
                    component: component.to_owned(),
                    method: method.to_owned(),
                    limit,
                })
            }
            Err(Interrupted::Cancelled) => Err(CallError::Cancelled {
                component: component.to_owned(),
                method: method.to_owned(),
            }),
        }
    }

    /// The timeout for calls to `component.method`, most specific setting first.
    pub fn call_timeout(&self, component: &str, method: &str) -> Duration {
        let config = &self.inner.config;
        let overrides = config.components.get(component);
        overrides
            .and_then(|c| c.operations.get(method).copied())
            .or_else(|| config.timeouts.operations.get(method).copied())
            .or_else(|| overrides.and_then(|c| c.timeout))
            .unwrap_or(self.inner.default_timeout)
    }

    /// Every component's state and counters, sorted by name.
    pub fn components(&self) -> Vec<ComponentStatus> {
        let slots = self.inner.slots.load();
        let mut dependents: HashMap<&str, Vec<String>> = HashMap::new();
        for slot in slots.values() {
            for dep in &slot.spec().dependencies {
                dependents
                    .entry(dep.as_str())
                    .or_default()
                    .push(slot.name().to_owned());
            }
        }
        let mut list: Vec<ComponentStatus> = slots
            .values()
            .map(|slot| {
                let spec = slot.spec();
                let stats = &slot.info.stats;
                let (state, last_error) = {
                    let state = slot.state.lock();
                    let error = match &*state {
                        SlotState::Failed { error, .. } | SlotState::TimedOut { error, .. } => {
                            Some(ErrorChainDisplay(&**error).to_string())
                        }
                        _ => None,
                    };
                    (state.public(), error)
                };
                let init_micros = stats.init_micros.load(Ordering::Relaxed);
                let memory = self.inner.memory.component(&spec.name).unwrap_or_default();
                let mut deps_of = dependents
                    .get(spec.name.as_str())
                    .cloned()
                    .unwrap_or_default();
                deps_of.sort();
                ComponentStatus {
                    name: spec.name.clone(),
                    state,
                    plugin: spec.plugin.clone(),
                    dependencies: spec.dependencies.clone(),
                    dependents: deps_of,
                    priority: spec.priority,
                    memory_estimate: spec.memory_estimate,
                    memory_measured: memory.measured,
                    evictions: memory.evictions,
                    init_ms: (init_micros > 0).then(|| init_micros as f64 / 1000.0),
                    idle_ms: stats.idle_for().map(|d| d.as_millis() as u64),
                    calls: stats.calls.get(),
                    call_errors: stats.call_errors.get(),
                    call_timeouts: stats.call_timeouts.get(),
                    call_latency: stats.call_latency.snapshot(),
                    init_duration: stats.init_duration.snapshot(),
                    inits: stats.inits.get(),
                    init_failures: stats.init_failures.get(),
                    last_error,
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Drops the ready instance of `name` (handles callers hold keep theirs alive until
    /// they let go); the next `get` creates a new one. With `cascade`, ready dependents are
    /// evicted first. Returns the components evicted, dependents first.
    ///
    /// # Errors
    ///
    /// [`EvictError`] when the component is unknown, not ready, or needed by ready
    /// dependents and `cascade` is false.
    pub fn evict(&self, name: &str, cascade: bool) -> Result<Vec<String>, EvictError> {
        let slots = self.inner.slots.load_full();
        let slot = slots
            .get(name)
            .ok_or_else(|| EvictError::UnknownComponent {
                name: name.to_owned(),
            })?;
        let mut state = slot.state.lock();
        if !matches!(*state, SlotState::Ready) {
            return Err(EvictError::NotReady {
                name: name.to_owned(),
                state: state.public(),
            });
        }
        let mut dependents: Vec<String> = slots
            .values()
            .filter(|other| {
                other.ready.load().is_some() && other.spec().dependencies.iter().any(|d| d == name)
            })
            .map(|other| other.name().to_owned())
            .collect();
        dependents.sort();
        let mut evicted = Vec::new();
        if !dependents.is_empty() {
            if !cascade {
                return Err(EvictError::HasReadyDependents {
                    name: name.to_owned(),
                    dependents,
                });
            }
            // Dependents lock their own slots; release ours meanwhile.
            drop(state);
            for dependent in &dependents {
                match self.evict(dependent, true) {
                    Ok(more) => evicted.extend(more),
                    Err(EvictError::NotReady { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
            state = slot.state.lock();
            if !matches!(*state, SlotState::Ready) {
                return Ok(evicted);
            }
        }
        slot.ready.store(None);
        *state = SlotState::Evicted;
        tracing::info!(component = %name, "component evicted");
        evicted.push(name.to_owned());
        Ok(evicted)
    }

    /// Metrics plugins registered through their host context.
    pub fn plugin_metrics(&self) -> &PluginMetrics {
        &self.inner.plugin_metrics
    }

    /// The memory manager: limit, RSS, reservations, per-component figures.
    pub fn memory(&self) -> &MemoryManager {
        &self.inner.memory
    }

    /// The named locks shared by the host and every plugin component.
    pub fn locks(&self) -> &LockManager {
        &self.inner.locks
    }

    /// The timeout manager: operations in flight, cancellation, counters.
    pub fn timeouts(&self) -> &TimeoutManager {
        &self.inner.timeouts
    }

    /// The paths of plugin libraries mapped into this process so far.
    pub fn loaded_libraries(&self) -> Vec<std::path::PathBuf> {
        self.inner.loader.loaded()
    }

    /// Components in the order their initialisation finished.
    pub fn init_order(&self) -> Vec<String> {
        self.inner.init_order.lock().clone()
    }

    /// Stops every ready component: dependents before their dependencies, independent
    /// ones concurrently, each drop under `stop_timeout`. No component starts afterwards.
    pub async fn shutdown(&self, stop_timeout: Duration) -> ShutdownReport {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let slots = self.inner.slots.load_full();
        let mut remaining: HashSet<String> = slots
            .values()
            // Read under each slot's lock: an init either published before this (and is
            // stopped here) or sees the shutdown flag and never publishes.
            .filter(|slot| {
                let _state = slot.state.lock();
                slot.ready.load().is_some()
            })
            .map(|slot| slot.name().to_owned())
            .collect();
        let mut report = ShutdownReport::default();
        while !remaining.is_empty() {
            // A component may stop once nothing still running depends on it.
            let wave: Vec<Arc<Slot>> = remaining
                .iter()
                .filter(|name| {
                    !remaining.iter().any(|other| {
                        slots[other.as_str()]
                            .spec()
                            .dependencies
                            .iter()
                            .any(|d| d == *name)
                    })
                })
                .map(|name| Arc::clone(&slots[name.as_str()]))
                .collect();
            let wave = if wave.is_empty() {
                // Unreachable while the graph is acyclic; stop everything rather than hang.
                remaining
                    .iter()
                    .map(|n| Arc::clone(&slots[n.as_str()]))
                    .collect()
            } else {
                wave
            };
            let stops = wave
                .iter()
                .map(|slot| shutdown::stop_slot(Arc::clone(slot), stop_timeout));
            for (name, finished) in futures::future::join_all(stops).await {
                remaining.remove(&name);
                if finished {
                    report.stopped.push(name);
                } else {
                    report.timed_out.push(name);
                }
            }
        }
        report
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
