//! Building a coordinator: concurrency, timeouts, per-component overrides, and the
//! managers it owns, from code or from a [`Config`].

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::{Coordinator, Inner};
use crate::{
    config::Config,
    context::HostServices,
    discovery::Catalog,
    executor::PluginExecutor,
    loader::Loader,
    metrics::{PluginMetrics, Sampler},
    plugin_log::LogLimits,
    timeout::TimeoutManager,
    trust::TrustPolicy,
};

/// Builds a [`Coordinator`].
#[derive(Debug, Clone)]
pub struct CoordinatorBuilder {
    init_concurrency: usize,
    default_timeout: Duration,
    failure_backoff: Duration,
    component_configs: HashMap<String, serde_json::Value>,
    config: Config,
    trust: TrustPolicy,
    worker_program: Option<PathBuf>,
}

impl Default for CoordinatorBuilder {
    fn default() -> Self {
        Self {
            init_concurrency: 4,
            default_timeout: Duration::from_secs(30),
            failure_backoff: Duration::from_secs(5),
            component_configs: HashMap::new(),
            config: Config::default(),
            trust: TrustPolicy::default(),
            worker_program: None,
        }
    }
}

impl CoordinatorBuilder {
    /// Takes concurrency, timeouts and per-component overrides from a [`Config`]:
    /// disabled components are not registered, priority, memory estimate and timeout
    /// overrides replace the manifest's, and `[components.NAME.config]` is handed to the
    /// component.
    pub fn from_config(config: &Config) -> Self {
        // Validation rejects a section without a JSON form, so this only logs for a
        // config built in code that skipped validation.
        let component_configs = config
            .components
            .iter()
            .filter_map(|(name, c)| match c.config_json() {
                Ok(value) => Some((name.clone(), value)),
                Err(err) => {
                    tracing::error!(component = %name, error = %err, "[components.{name}.config] has no JSON form; the component gets {{}}");
                    None
                }
            })
            .collect();
        Self {
            init_concurrency: config.host.init_concurrency.max(1),
            default_timeout: config.timeouts.default,
            component_configs,
            config: config.clone(),
            ..Self::default()
        }
    }

    /// How many `create`s may run at once. Defaults to 4.
    pub fn with_init_concurrency(mut self, n: usize) -> Self {
        self.init_concurrency = n.max(1);
        self
    }

    /// Init and call timeout when nothing more specific is set. Defaults to 30 s.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// How long a failed component is left alone before a `get` retries it. Defaults to 5 s.
    pub fn with_failure_backoff(mut self, backoff: Duration) -> Self {
        self.failure_backoff = backoff;
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
        self.component_configs.insert(component.into(), config);
        self
    }

    /// The coordinator, with no components yet.
    pub fn build(self) -> Coordinator {
        let locks = self.config.locks.builder().build();
        let memory = self.config.memory.builder().build();
        let sampler = Sampler::new(self.config.metrics.sample_rate);
        let limits = &self.config.limits;
        let services = Arc::new(HostServices::new(
            locks,
            Arc::new(PluginMetrics::new(limits.metrics_per_plugin)),
            Arc::new(LogLimits::default()),
            limits.locks_per_plugin,
        ));
        Coordinator {
            inner: Arc::new(Inner {
                slots: ArcSwap::from_pointee(super::SlotMap::default()),
                catalog: ArcSwap::from_pointee(Catalog::default()),
                registry_lock: Mutex::new(()),
                init_permits: Arc::new(Semaphore::new(self.init_concurrency)),
                default_timeout: self.default_timeout,
                failure_backoff: self.failure_backoff,
                component_configs: self.component_configs,
                config: self.config,
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
                    .map_or_else(|| std::env::current_exe().map_err(|e| e.to_string()), Ok),
            }),
        }
    }
}
