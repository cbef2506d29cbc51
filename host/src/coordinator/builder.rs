//! Building a coordinator: concurrency, timeouts, per-component plans, and the managers
//! it owns, from code or from [`Plans`] (the planner resolves a `Config` into them:
//! `CoordinatorBuilder::from_config`).

use std::{path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::{Coordinator, Inner};
use crate::{
    discovery::Catalog,
    executor::PluginExecutor,
    loader::Loader,
    locks::LockManager,
    memory::MemoryManager,
    metrics::{PluginMetrics, Sampler},
    plan::Plans,
    plugin_log::LogLimits,
    services::HostServices,
    timeout::TimeoutManager,
    trust::TrustPolicy,
};

/// Builds a [`Coordinator`].
#[derive(Debug, Clone)]
pub struct CoordinatorBuilder {
    plans: Plans,
    failure_backoff: Duration,
    locks: Option<LockManager>,
    memory: Option<MemoryManager>,
    trust: TrustPolicy,
    worker_program: Option<PathBuf>,
}

impl Default for CoordinatorBuilder {
    fn default() -> Self {
        Self::from_plans(Plans::default())
    }
}

impl CoordinatorBuilder {
    /// Works by `plans`: each component's settings and the engine's.
    pub fn from_plans(plans: Plans) -> Self {
        Self {
            plans,
            failure_backoff: Duration::from_secs(5),
            locks: None,
            memory: None,
            trust: TrustPolicy::default(),
            worker_program: None,
        }
    }

    /// How many `create`s may run at once. Defaults to 4.
    pub fn with_init_concurrency(mut self, n: usize) -> Self {
        self.plans.engine.init_concurrency = n.max(1);
        self
    }

    /// Init and call timeout when nothing more specific is set. Defaults to 30 s.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.plans.engine.default_timeout = timeout;
        self
    }

    /// How long a failed component is left alone before a `get` retries it. Defaults to 5 s.
    pub fn with_failure_backoff(mut self, backoff: Duration) -> Self {
        self.failure_backoff = backoff;
        self
    }

    /// The lock manager components share. Defaults to one with the documented defaults.
    pub fn with_locks(mut self, locks: LockManager) -> Self {
        self.locks = Some(locks);
        self
    }

    /// The memory manager that admits and evicts components. Defaults to one with the
    /// documented defaults.
    pub fn with_memory(mut self, memory: MemoryManager) -> Self {
        self.memory = Some(memory);
        self
    }

    /// The trust policy a library must pass (again) when it is loaded. Defaults to
    /// [`TrustPolicy::permissions`]; give the one discovery used.
    pub fn with_trust(mut self, trust: TrustPolicy) -> Self {
        self.trust = trust;
        self
    }

    /// The program run as the worker process of isolated components: it must call
    /// [`crate::run_child_if_requested`] first in `main`. Defaults to this executable
    /// (the `plugin-host` binary does).
    pub fn with_worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// A component's config section, handed to it at creation. Defaults to `{}`.
    pub fn with_component_config(
        mut self,
        component: impl Into<String>,
        config: serde_json::Value,
    ) -> Self {
        self.plans.component_mut(&component.into()).config = config;
        self
    }

    /// The coordinator, with no components yet.
    pub fn build(self) -> Coordinator {
        let engine = &self.plans.engine;
        let locks = self.locks.unwrap_or_else(|| LockManager::builder().build());
        let memory = self
            .memory
            .unwrap_or_else(|| MemoryManager::builder().build());
        let sampler = Sampler::new(engine.sample_rate).with_cpu_rate(engine.cpu_sample_rate);
        let services = Arc::new(HostServices::new(
            locks,
            Arc::new(PluginMetrics::new(engine.metrics_per_plugin)),
            Arc::new(LogLimits::default()),
            engine.locks_per_plugin,
        ));
        Coordinator {
            inner: Arc::new(Inner {
                slots: ArcSwap::from_pointee(super::SlotMap::default()),
                catalog: ArcSwap::from_pointee(Catalog::default()),
                registry_lock: Mutex::new(()),
                init_permits: Arc::new(Semaphore::new(engine.init_concurrency)),
                failure_backoff: self.failure_backoff,
                plans: self.plans,
                loader: Arc::new(Loader::new(self.trust)),
                init_order: Mutex::new(Vec::new()),
                shutting_down: std::sync::atomic::AtomicBool::new(false),
                streams: super::stream::OpenStreams::default(),
                timeouts: TimeoutManager::new(),
                memory,
                sampler,
                services,
                executor: PluginExecutor::new(),
                pools: Mutex::default(),
                runtime: tokio::runtime::Handle::try_current().ok(),
                worker_program: self
                    .worker_program
                    .map_or_else(|| std::env::current_exe().map_err(Arc::new), Ok),
            }),
        }
    }
}
