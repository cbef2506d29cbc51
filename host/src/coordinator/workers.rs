//! The coordinator's side of process isolation: which components run in a worker, one
//! worker pool per library, upgrades when an isolated library's file changes or on a
//! reload, and stopping the workers at shutdown.

use std::{path::Path, sync::Arc, time::Duration};

use serde::Serialize;

use super::{isolated::WorkerProvider, provider::Provider, Coordinator};
use crate::{
    config::Isolation,
    discovery::DiscoveredPlugin,
    isolation::{PoolSetup, PoolTimes, Shared, WorkerPool},
    manifest::PluginInfo,
};

/// How long a worker may take to open its library and say it is ready.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// The plugin.
    pub plugin: String,
    /// The new worker's pid; `None` when no worker ran (the next one starts on the
    /// current file).
    pub worker_pid: Option<u32>,
}

/// An isolated component cannot have a worker: this program's executable is unknown.
#[derive(Debug, thiserror::Error)]
#[error("component `{component}` is isolated, but this program's executable (the worker) cannot be found: {error}")]
pub(super) struct NoWorkerProgram {
    component: String,
    error: Arc<std::io::Error>,
}

/// Why a reload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// No plugin of that name is in the catalog.
    #[error("no plugin is named `{plugin}`; `plugin-host list` shows the plugins")]
    UnknownPlugin {
        /// The name asked for.
        plugin: String,
    },
    /// The plugin runs in-process: a library cannot be unloaded.
    #[error("plugin `{plugin}` runs in the host's process, where a library cannot be replaced; restart the host to upgrade it, or set isolation = \"process\" for its components")]
    InProcess {
        /// The plugin.
        plugin: String,
    },
    /// The new worker could not take over; the old one keeps serving.
    #[error("plugin `{plugin}` could not be reloaded, the running worker keeps serving: {reason}")]
    Failed {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
}

impl ReloadError {
    /// A short machine-readable name for the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownPlugin { .. } => "unknown_plugin",
            Self::InProcess { .. } => "in_process",
            Self::Failed { .. } => "reload_failed",
        }
    }
}

impl Coordinator {
    /// Where component `name` runs, as planned.
    pub fn isolation_of(&self, name: &str) -> Isolation {
        self.inner.plans.component(name).isolation
    }

    /// The provider of an isolated component of `plugin`: its library's worker pool.
    pub(super) fn worker_provider(
        &self,
        plugin: &DiscoveredPlugin,
        info: &PluginInfo,
        component: &str,
    ) -> Result<Arc<dyn Provider>, NoWorkerProgram> {
        let program = self
            .inner
            .worker_program
            .clone()
            .map_err(|error| NoWorkerProgram {
                component: component.to_owned(),
                error,
            })?;
        let inner = &self.inner;
        let pool = Arc::clone(
            inner
                .pools
                .lock()
                .entry(plugin.path.clone())
                .or_insert_with(|| {
                    Arc::new(WorkerPool::new(PoolSetup {
                        library: plugin.path.clone(),
                        plugin: info.name.clone(),
                        program,
                        identity: plugin.identity,
                        sha256: plugin.sha256.clone(),
                        times: PoolTimes {
                            start: WORKER_START_TIMEOUT,
                            stop: inner.plans.engine.stop_timeout,
                            kill_grace: inner.plans.engine.kill_grace,
                            unread: inner.plans.engine.worker_unread,
                        },
                        loader: Arc::clone(&inner.loader),
                        shared: Shared {
                            executor: inner.executor.clone(),
                            memory: inner.memory.clone(),
                            services: Arc::clone(&inner.services),
                            max_reply: usize::try_from(inner.plans.engine.max_reply)
                                .unwrap_or(usize::MAX),
                            shared_memory_from: usize::try_from(
                                inner.plans.engine.shared_memory_from,
                            )
                            .unwrap_or(usize::MAX),
                            worker_tasks: inner.plans.engine.worker_tasks,
                            worker_requests: inner.plans.engine.worker_requests,
                        },
                        sandbox: crate::plan::worker_sandbox(&inner.plans, info),
                    }))
                }),
        );
        if let Some(limit) = inner.plans.component(component).memory_limit {
            pool.raise_memory_limit(limit);
        }
        Ok(Arc::new(WorkerProvider {
            pool,
            services: Arc::clone(&inner.services),
        }))
    }

    /// The worker pool of the library at `path`, if it has isolated components.
    pub(super) fn pool_of(&self, path: &Path) -> Option<Arc<WorkerPool>> {
        self.inner.pools.lock().get(path).cloned()
    }

    /// Moves plugin `plugin`'s isolated components to a new worker process running its
    /// file as discovery last vetted it; the old worker finishes its calls, then stops.
    /// Calls go on meanwhile, none fails.
    ///
    /// # Errors
    ///
    /// [`ReloadError`]: no such plugin, it runs in-process, or the new worker could not
    /// take over (the old one then keeps serving).
    pub async fn reload_plugin(&self, plugin: &str) -> Result<ReloadReport, ReloadError> {
        let catalog = self.catalog();
        let (found, info) = catalog
            .usable()
            .find(|(_, info)| info.name == plugin)
            .ok_or_else(|| ReloadError::UnknownPlugin {
                plugin: plugin.to_owned(),
            })?;
        let missing = self.not_provided(&found.path, info);
        let found = found.clone();
        let pool = self
            .pool_of(&found.path)
            .ok_or_else(|| ReloadError::InProcess {
                plugin: plugin.to_owned(),
            })?;
        if !missing.is_empty() {
            return Err(ReloadError::Failed {
                plugin: plugin.to_owned(),
                reason: format!(
                    "its file no longer provides {}, which its worker serves",
                    missing.join(", ")
                ),
            });
        }
        // Starting a worker and creating instances in it runs plugin code: a plugin thread.
        let upgraded = self
            .inner
            .executor
            .spawn(move || pool.upgrade(found.identity, found.sha256.clone()))
            .await;
        upgraded
            .map(|worker_pid| ReloadReport {
                plugin: plugin.to_owned(),
                worker_pid,
            })
            .map_err(|err| ReloadError::Failed {
                plugin: plugin.to_owned(),
                reason: err.to_string(),
            })
    }

    /// The components served from `path` in worker processes that `info`, the file's
    /// new description, does not provide: a worker on the new file could not serve them
    /// (and a plugin that creates whatever it is asked for would serve the wrong thing).
    fn not_provided(&self, path: &Path, info: &PluginInfo) -> Vec<String> {
        let slots = self.inner.slots.load();
        let mut missing: Vec<String> = slots
            .values()
            .filter(|slot| slot.source.as_deref() == Some(path))
            .filter(|slot| slot.provider.isolation() != Isolation::InProcess)
            .map(|slot| slot.name().to_owned())
            .filter(|name| !info.components.iter().any(|c| &c.name == name))
            .collect();
        missing.sort();
        missing
    }

    /// A changed file with a worker running: a new worker takes over on the new file
    /// (in the background; it runs plugin code). Returns whether one was started.
    pub(super) fn upgrade_isolated(
        &self,
        path: &Path,
        plugin: &DiscoveredPlugin,
        changes: &mut super::CatalogChanges,
    ) -> bool {
        let (Some(pool), Ok(info)) = (self.pool_of(path), &plugin.outcome) else {
            return false;
        };
        let missing = self.not_provided(path, info);
        if !missing.is_empty() {
            tracing::warn!(path = %path.display(), plugin = %info.name, ?missing, "the changed file no longer provides components its worker serves: they keep running on the file they started from until the host restarts");
            return false;
        }
        let (identity, sha256) = (plugin.identity, plugin.sha256.clone());
        let name = info.name.clone();
        changes.upgraded.push(name.clone());
        self.inner.executor.execute(move || {
            if let Err(reason) = pool.upgrade(identity, sha256) {
                tracing::error!(plugin = %name, "the changed file could not be taken up; the running worker keeps serving: {reason}");
            }
        });
        true
    }

    /// Stops every worker still running (after shutdown dropped the instances).
    /// Tells every worker the host is stopping: the calls in them are cancelled.
    pub(super) fn cancel_worker_calls(&self) {
        let pools: Vec<Arc<WorkerPool>> = self.inner.pools.lock().values().cloned().collect();
        for pool in pools {
            pool.host_stopping();
        }
    }

    pub(super) fn stop_workers(&self) {
        let pools: Vec<Arc<WorkerPool>> = self.inner.pools.lock().values().cloned().collect();
        for pool in pools {
            pool.stop();
        }
    }
}
