//! Isolated components as the coordinator sees them: a provider that creates instances
//! in its library's worker, and instances that call there.
//!
//! An isolated instance is bound to a worker, not part of it: when its worker ended (a
//! crash, a kill after a hung call, an idle stop) the next call creates it again in a
//! new worker, with the same config and dependencies; after an upgrade its calls go to
//! the worker running the new file. A component that keeps state in memory must expect
//! it to start afresh whenever its worker does.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use plugin_api::PluginError;

use super::{
    pool::WorkerPool,
    process::{Failure, Worker},
    Isolation,
};
use crate::{
    context::{self, HostServices, PluginHostContext},
    coordinator::{
        CallFault, ComponentSpec, Dependencies, InitError, Instance, Provider, WorkerFault,
    },
};

/// Creates a component's instances in its library's worker process.
pub(crate) struct WorkerProvider {
    pub(crate) pool: Arc<WorkerPool>,
    pub(crate) services: Arc<HostServices>,
}

impl Provider for WorkerProvider {
    fn create(
        &self,
        spec: &ComponentSpec,
        config: &serde_json::Value,
        dependencies: Dependencies,
    ) -> Result<Box<dyn Instance>, InitError> {
        let names: Vec<String> = spec.dependencies.clone();
        let context = PluginHostContext::new(
            &self.pool.plugin,
            &spec.name,
            config,
            dependencies.into_calls(),
            Arc::clone(&self.services),
        );
        let bound = Arc::new(Bound {
            id: context::next_call_id(),
            component: spec.name.clone(),
            config: config.to_string(),
            dependencies: names,
            context,
            pool: Arc::clone(&self.pool),
            worker: ArcSwapOption::empty(),
            rebinding: Mutex::new(()),
        });
        self.pool.add_instance(bound.id, Arc::downgrade(&bound));
        let worker = self.pool.worker().map_err(|source| InitError::Load {
            component: spec.name.clone(),
            source: Box::new(source),
        })?;
        match bound.create_in(&worker) {
            Ok(()) => {
                bound.switch_to(&worker);
                Ok(Box::new(WorkerInstance(bound)))
            }
            Err(Failure::Plugin(source)) => Err(InitError::Create {
                component: spec.name.clone(),
                plugin: Some(self.pool.plugin.clone()),
                source,
            }),
            Err(Failure::Worker(fault)) => Err(InitError::WorkerFailed {
                component: spec.name.clone(),
                fault,
            }),
            Err(Failure::NotSent) => Err(InitError::WorkerFailed {
                component: spec.name.clone(),
                fault: WorkerFault {
                    plugin: self.pool.plugin.clone(),
                    pid: Some(worker.pid),
                    reason: "stopped before the component could be created in it".into(),
                },
            }),
        }
    }

    fn isolation(&self) -> Isolation {
        Isolation::Process
    }
}

/// One isolated instance: what it takes to create it again in any worker, and the
/// worker it is bound to now.
pub(crate) struct Bound {
    id: u64,
    pub(crate) component: String,
    config: String,
    dependencies: Vec<String>,
    /// Its view of the host, the same whichever worker its code runs in.
    context: PluginHostContext,
    pool: Arc<WorkerPool>,
    worker: ArcSwapOption<Worker>,
    /// One rebinding at a time.
    rebinding: Mutex<()>,
}

impl Bound {
    /// Creates this instance in `worker` (not yet bound to it).
    pub(crate) fn create_in(&self, worker: &Worker) -> Result<(), Failure> {
        worker.create(
            self.id,
            &self.component,
            self.context.clone(),
            self.config.clone(),
            self.dependencies.clone(),
        )
    }

    /// Sends its calls to `worker` from now on.
    pub(crate) fn switch_to(&self, worker: &Arc<Worker>) {
        self.worker.store(Some(Arc::clone(worker)));
    }

    /// The worker its calls go to, creating it in a new one if its worker ended.
    fn bound_worker(&self) -> Result<Arc<Worker>, CallFault> {
        if let Some(worker) = self.worker.load_full().filter(|w| w.is_accepting()) {
            return Ok(worker);
        }
        let _rebinding = self.rebinding.lock();
        if let Some(worker) = self.worker.load_full().filter(|w| w.is_accepting()) {
            return Ok(worker);
        }
        let worker = self.pool.worker().map_err(|err| {
            CallFault::Worker(WorkerFault {
                plugin: self.pool.plugin.clone(),
                pid: None,
                reason: format!("could not be started again: {err}"),
            })
        })?;
        match self.create_in(&worker) {
            Ok(()) => {
                tracing::info!(component = %self.component, pid = worker.pid, "component created again in a new worker");
                self.switch_to(&worker);
                Ok(worker)
            }
            Err(Failure::Plugin(err)) => Err(CallFault::Plugin(PluginError::failed(format!(
                "its worker was restarted, and creating the component in it again failed: {err}"
            )))),
            Err(Failure::Worker(fault)) => Err(CallFault::Worker(fault)),
            Err(Failure::NotSent) => Err(CallFault::Worker(WorkerFault {
                plugin: self.pool.plugin.clone(),
                pid: Some(worker.pid),
                reason: "stopped while the component was created in it again".into(),
            })),
        }
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        self.pool.remove_instance(self.id);
        if let Some(worker) = self.worker.load_full() {
            if worker.drop_instance(self.id) == 0 && !worker.has_exited() {
                worker.stop("its last component instance was dropped");
            }
        }
    }
}

/// The coordinator's handle on an isolated instance.
struct WorkerInstance(Arc<Bound>);

/// How many times a call looks for a worker that takes it (one may retire meanwhile).
const SEND_ATTEMPTS: usize = 3;

impl Instance for WorkerInstance {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFault> {
        let bound = &self.0;
        // Worker requests carry the call's id: the locks its code takes belong to it.
        let req = context::current_call_id().unwrap_or_else(context::next_call_id);
        for _ in 0..SEND_ATTEMPTS {
            let worker = bound.bound_worker()?;
            match worker.call(bound.id, req, method, input) {
                Ok(output) => {
                    bound.pool.note_success();
                    return Ok(output);
                }
                Err(Failure::Plugin(err)) => {
                    bound.pool.note_success();
                    return Err(CallFault::Plugin(err));
                }
                Err(Failure::Worker(fault)) => return Err(CallFault::Worker(fault)),
                Err(Failure::NotSent) => {}
            }
        }
        Err(CallFault::Worker(WorkerFault {
            plugin: bound.pool.plugin.clone(),
            pid: None,
            reason: "took no call: every worker tried was stopping".into(),
        }))
    }

    fn end_call(&self, id: u64) {
        let bound = &self.0;
        bound.context.end_call(id);
        let Some(worker) = bound.worker.load_full() else {
            return;
        };
        if worker.is_pending(id) {
            // Its caller gave up: the code may hang for ever, and only the worker's end
            // stops it.
            let grace = bound.pool.times.kill_grace;
            worker.kill_unless_answered(
                id,
                grace,
                format!(
                    "a call to `{}` outlived its timeout by the kill grace of {grace:?}",
                    bound.component
                ),
            );
        }
    }

    fn worker_pid(&self) -> Option<u32> {
        self.0
            .worker
            .load()
            .as_ref()
            .filter(|w| w.is_accepting())
            .map(|w| w.pid)
    }
}
