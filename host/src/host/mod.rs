//! [`Host`]: everything that makes a plugin host, started from a [`Config`] in one call.
//!
//! The coordinator is the component engine; a host is that engine with what surrounds it
//! in production: the trust policy (applied as the config says, exactly as the
//! `plugin-host` binary applies it), discovery and its registry cache, live discovery,
//! the memory sampler and eviction, metrics aggregation, the lock watchdog, isolation
//! workers, the eager components, and an ordered shutdown. The binary, the admin API, the
//! tests and every embedder start the same `Host`, so none of them gets less.

mod background;
mod builder;
mod eager;
mod error;
mod summary;

use std::sync::Arc;

use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};

pub use self::{
    builder::{CheckReport, HostBuilder},
    eager::EagerReport,
    error::HostError,
    summary::{ComponentSummary, MetricSummaries},
};
use crate::{
    config::Config,
    coordinator::{
        CallError, CatalogChanges, ComponentState, ComponentStatus, Coordinator, EvictError,
        ReloadError, ReloadReport, ShutdownReport,
    },
    discovery::Catalog,
    live::{LiveDiscovery, RescanError, RescanHandle},
    locks::LockManager,
    memory::MemoryManager,
    metrics::PluginMetrics,
    timeout::TimeoutManager,
};

/// A running plugin host. Cheap to clone; clones share everything.
///
/// Build one with [`Host::builder`] (or [`Host::start`] for the config alone); stop it
/// with [`Host::shutdown`]. Plugin code never runs on the caller's async task: calls go
/// to the plugin executor under the component's timeout and bulkhead.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    coordinator: Coordinator,
    rescan: RescanHandle,
    /// Live discovery while the host runs; taken at shutdown.
    live: Mutex<Option<LiveDiscovery>>,
    summaries: Arc<MetricSummaries>,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    eager: eager::Eager,
    /// The `[[sources]]`, when the config names any.
    sources: Option<crate::sources::Sources>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("plugins_dir", &self.inner.config.plugins_dir())
            .field("coordinator", &self.inner.coordinator)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A builder for a host configured by `config`, for what the config does not say
    /// (native components, the program that serves as scanner and worker).
    pub fn builder(config: Config) -> HostBuilder {
        HostBuilder::new(config)
    }

    /// Starts a host configured by `config` alone: `Host::builder(config).start()`.
    ///
    /// # Errors
    ///
    /// As [`HostBuilder::start`].
    pub async fn start(config: Config) -> Result<Self, HostError> {
        Self::builder(config).start().await
    }

    /// The config the host runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The component engine: register, get, call, evict, status.
    pub fn coordinator(&self) -> &Coordinator {
        &self.inner.coordinator
    }

    /// Every registered component's state and figures, sorted by name.
    pub fn components(&self) -> Vec<ComponentStatus> {
        self.inner.coordinator.components()
    }

    /// The state of component `name`, if registered.
    pub fn state_of(&self, name: &str) -> Option<ComponentState> {
        self.inner.coordinator.state_of(name)
    }

    /// Pulls of the `[[sources]]` so far: (source, result, count), result one of
    /// `pulled`, `unchanged`, `cached` and `failed`.
    pub fn source_pulls(&self) -> Vec<(String, &'static str, u64)> {
        self.inner
            .sources
            .as_ref()
            .map(crate::sources::Sources::pull_counts)
            .unwrap_or_default()
    }

    /// The plugin libraries mapped into this process.
    pub fn loaded_libraries(&self) -> Vec<std::path::PathBuf> {
        self.inner.coordinator.loaded_libraries()
    }

    /// Drops component `name`'s instance (and, with `cascade`, its dependents'); the
    /// next call creates it again. What was evicted.
    ///
    /// # Errors
    ///
    /// As [`Coordinator::evict`].
    pub async fn evict(&self, name: &str, cascade: bool) -> Result<Vec<String>, EvictError> {
        self.inner.coordinator.evict(name, cascade).await
    }

    /// Moves plugin `plugin`'s isolated components to a new worker on its file as last
    /// vetted; the old worker finishes its calls.
    ///
    /// # Errors
    ///
    /// As [`Coordinator::reload_plugin`].
    pub async fn reload_plugin(&self, plugin: &str) -> Result<ReloadReport, ReloadError> {
        self.inner.coordinator.reload_plugin(plugin).await
    }

    /// Calls `method` of `component` with `input`, initialising it (and its dependencies)
    /// first if needed. The plugin code runs on the plugin executor, never on the
    /// caller's thread, under the call timeout and the component's bulkhead.
    ///
    /// # Errors
    ///
    /// [`CallError`]: the component's own error, a timeout, a refusal (saturated,
    /// quarantined, not admitted), or why it could not be initialised.
    pub async fn call(
        &self,
        component: &str,
        method: &str,
        input: impl Into<Vec<u8>>,
    ) -> Result<Vec<u8>, CallError> {
        self.inner
            .coordinator
            .call(component, method, input.into())
            .await
    }

    /// [`Self::call`] in the caller's trace and by its deadline, if sooner than the call
    /// timeout ([`crate::CallOptions`]): the component sees both, and whether the call
    /// was cancelled, through its request.
    ///
    /// # Errors
    ///
    /// As [`Self::call`].
    pub async fn call_with(
        &self,
        component: &str,
        method: &str,
        input: impl Into<Vec<u8>>,
        options: &crate::CallOptions,
    ) -> Result<Vec<u8>, CallError> {
        self.inner
            .coordinator
            .call_with(component, method, input.into(), options)
            .await
    }

    /// [`Self::call`] with a JSON request and a JSON reply.
    ///
    /// # Errors
    ///
    /// As [`Self::call`], and [`CallError::Json`] when either side does not (de)serialise.
    pub async fn call_json<Req, Resp>(
        &self,
        component: &str,
        method: &str,
        request: &Req,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let json_error = |message: String| CallError::Json {
            component: component.to_owned(),
            method: method.to_owned(),
            message,
        };
        let input = serde_json::to_vec(request).map_err(|e| json_error(format!("request: {e}")))?;
        let output = self.call(component, method, input).await?;
        serde_json::from_slice(&output)
            .map_err(|e| json_error(format!("reply is not the expected JSON: {e}")))
    }

    /// Opens a stream of streaming method `method` of `component`: its items as they
    /// come (see [`crate::ComponentStream`]); dropping it cancels the stream.
    ///
    /// # Errors
    ///
    /// As [`Coordinator::stream`].
    pub async fn stream(
        &self,
        component: &str,
        method: &str,
        input: impl Into<Vec<u8>>,
    ) -> Result<crate::ComponentStream, CallError> {
        self.inner
            .coordinator
            .stream(component, method, input.into())
            .await
    }

    /// [`Self::stream`] in the caller's trace ([`crate::CallOptions`]; a stream has no
    /// deadline, its idle timeout bounds the gaps between items).
    ///
    /// # Errors
    ///
    /// As [`Coordinator::stream`].
    pub async fn stream_with(
        &self,
        component: &str,
        method: &str,
        input: impl Into<Vec<u8>>,
        options: &crate::CallOptions,
    ) -> Result<crate::ComponentStream, CallError> {
        self.inner
            .coordinator
            .stream_with(component, method, input.into(), options)
            .await
    }

    /// Rescans the plugins directory now and applies what changed.
    ///
    /// # Errors
    ///
    /// Why the directory could not be scanned, or that the host has stopped.
    pub async fn rescan(&self) -> Result<CatalogChanges, RescanError> {
        self.inner.rescan.rescan().await
    }

    /// A handle that asks this host to rescan, for code that does not hold the host.
    pub fn rescan_handle(&self) -> RescanHandle {
        self.inner.rescan.clone()
    }

    /// The plugin files found at the last scan, and what each provides or why it cannot
    /// be used.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.coordinator.catalog()
    }

    /// The components `[components.NAME] eager = true` names that some plugin provides,
    /// started when the host starts; `/readyz` waits for them.
    pub fn eager_components(&self) -> &[String] {
        self.inner.eager.names()
    }

    /// Waits until every eager component has been started (or has failed to), and says
    /// which.
    pub async fn eager_started(&self) -> EagerReport {
        self.inner.eager.finished().await
    }

    /// The memory manager: limit, RSS, reservations, per-component figures.
    pub fn memory(&self) -> &MemoryManager {
        self.inner.coordinator.memory()
    }

    /// The named locks shared by the host and every plugin component.
    pub fn locks(&self) -> &LockManager {
        self.inner.coordinator.locks()
    }

    /// The timeout manager: operations in flight, cancellation, counters.
    pub fn timeouts(&self) -> &TimeoutManager {
        self.inner.coordinator.timeouts()
    }

    /// Metrics plugins registered through their host context.
    pub fn plugin_metrics(&self) -> &PluginMetrics {
        self.inner.coordinator.plugin_metrics()
    }

    /// Threads of the plugin executor alive now, and how many run plugin code.
    pub fn plugin_threads(&self) -> (usize, usize) {
        self.inner.coordinator.plugin_threads()
    }

    /// Every component's histograms summarised at the last aggregation (every
    /// `[metrics] aggregation_interval`).
    pub fn metric_summaries(&self) -> &MetricSummaries {
        &self.inner.summaries
    }

    /// Whether the stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.inner.coordinator.is_shutting_down()
    }

    /// Stops the host: live discovery and the background work first, then every
    /// component in reverse dependency order (each within `[timeouts] stop`), then the
    /// isolation workers. Calls already running are waited for within the same timeout.
    /// A second call finds nothing left to stop.
    pub async fn shutdown(&self) -> ShutdownReport {
        drop(self.inner.live.lock().take());
        for task in self.inner.background.lock().drain(..) {
            task.abort();
        }
        self.inner.eager.abort();
        let report = self
            .inner
            .coordinator
            .shutdown(self.inner.config.timeouts.stop)
            .await;
        tracing::info!(stopped = ?report.stopped, timed_out = ?report.timed_out, "host stopped");
        report
    }
}
