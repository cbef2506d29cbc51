//! One isolated component instance: what it takes to create it in any worker, and the
//! worker it is bound to now.
//!
//! An isolated instance is bound to a worker, not part of it: when its worker ended (a
//! crash, a kill after a hung call, an idle stop) the next call creates it again in a
//! new worker, with the same config and dependencies; after an upgrade its calls go to
//! the worker running the new file. A component that keeps state in memory must expect
//! it to start afresh whenever its worker does.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use plugin_api::PluginError;

use super::{
    pool::{Member, WorkerPool},
    process::WorkerProcess,
    requests::{CreateFault, Failure},
};
use crate::{
    context::{self, PluginHostContext},
    fault::{CallFault, FaultKind, WorkerFault},
    loader::LoadError,
    stream_buffer::ItemSink,
};

/// Why an instance could not be created.
pub(crate) enum Created {
    /// No worker could be started.
    NoWorker(Box<LoadError>),
    /// The worker or the plugin failed the creation.
    Failed(CreateFault),
}

/// How many times a call looks for a worker that takes it (one may retire meanwhile).
const SEND_ATTEMPTS: usize = 3;

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
    worker: ArcSwapOption<WorkerProcess>,
    /// One rebinding at a time.
    rebinding: Mutex<()>,
}

impl Bound {
    /// Creates instance of `component` in its pool's worker, with `context` as its view
    /// of the host.
    pub(crate) fn create(
        pool: &Arc<WorkerPool>,
        component: &str,
        config: &serde_json::Value,
        dependencies: Vec<String>,
        context: PluginHostContext,
    ) -> Result<Arc<Self>, Created> {
        let bound = Arc::new(Self {
            id: context::next_call_id(),
            component: component.to_owned(),
            config: config.to_string(),
            dependencies,
            context,
            pool: Arc::clone(pool),
            worker: ArcSwapOption::empty(),
            rebinding: Mutex::new(()),
        });
        pool.add_instance(bound.id, Arc::downgrade(&bound) as Weak<Bound>);
        let worker = pool
            .worker_for(component)
            .map_err(|err| Created::NoWorker(Box::new(err)))?;
        match bound.create_in(&worker) {
            Ok(()) => {
                bound.switch_to(&worker);
                Ok(bound)
            }
            Err(Failure::NotSent) => Err(Created::Failed(CreateFault::Worker(WorkerFault {
                plugin: pool.plugin.clone(),
                pid: Some(worker.pid),
                reason: "stopped before the component could be created in it".into(),
                kind: FaultKind::Died,
            }))),
            Err(Failure::Failed(fault)) => Err(Created::Failed(fault)),
        }
    }

    /// Calls `method`: in the current call's name (locks its code takes belong to it),
    /// in its worker, creating it again in a new worker first if its worker ended.
    pub(crate) fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFault> {
        let req = context::current_call_id().unwrap_or_else(context::next_call_id);
        let token = context::current_call_token();
        for _ in 0..SEND_ATTEMPTS {
            let worker = self.bound_worker()?;
            match worker.call(self.id, req, method, input, token.as_ref()) {
                Err(Failure::NotSent) => {}
                Err(Failure::Failed(fault @ CallFault::Worker(_))) => return Err(fault),
                answered => {
                    self.pool.note_success();
                    return answered.map_err(Failure::into_fault);
                }
            }
        }
        Err(self.untaken("call"))
    }

    /// Streams `method` into `items` in its worker, creating it again in a new worker
    /// first if its worker ended; returns when the stream is done.
    pub(crate) fn stream(
        &self,
        method: &str,
        input: &[u8],
        items: &Arc<dyn ItemSink>,
    ) -> Result<(), CallFault> {
        let req = context::current_call_id().unwrap_or_else(context::next_call_id);
        let token = context::current_call_token();
        for _ in 0..SEND_ATTEMPTS {
            let worker = self.bound_worker()?;
            match worker.stream(
                self.id,
                req,
                method,
                input,
                Arc::clone(items),
                token.as_ref(),
            ) {
                Err(Failure::NotSent) => {}
                Err(Failure::Failed(fault @ CallFault::Worker(_))) => return Err(fault),
                answered => {
                    self.pool.note_success();
                    return answered.map_err(Failure::into_fault);
                }
            }
        }
        Err(self.untaken("stream"))
    }

    /// Every worker tried took no `what`: they were all stopping.
    fn untaken(&self, what: &str) -> CallFault {
        CallFault::Worker(WorkerFault {
            plugin: self.pool.plugin.clone(),
            pid: None,
            reason: format!("took no {what}: every worker tried was stopping"),
            kind: FaultKind::Died,
        })
    }

    /// Call `id` ended (it returned, or its caller gave up on it): its locks go; if it
    /// still runs, its worker is killed after the kill grace.
    pub(crate) fn end_call(&self, id: u64) {
        self.context.end_call(id);
        let Some(worker) = self.worker.load_full() else {
            return;
        };
        if worker.is_pending(id) {
            // Its caller gave up: its code is told, and may stop early; if it does not
            // (it may hang for ever), only the worker's end stops it.
            worker.cancel(id);
            let grace = self.pool.times.kill_grace;
            worker.kill_unless_answered(
                id,
                grace,
                format!(
                    "a call to `{}` ran on for the kill grace of {grace:?} after its caller gave up on it (its timeout, its CPU budget, or the caller gone)",
                    self.component
                ),
            );
        }
    }

    /// The pid of the worker it is bound to, if that worker takes calls.
    pub(crate) fn worker_pid(&self) -> Option<u32> {
        self.worker
            .load()
            .as_ref()
            .filter(|w| w.is_accepting())
            .map(|w| w.pid)
    }

    /// The worker its calls go to, creating it in a new one if its worker ended.
    fn bound_worker(&self) -> Result<Arc<WorkerProcess>, CallFault> {
        if let Some(worker) = self.worker.load_full().filter(|w| w.is_accepting()) {
            return Ok(worker);
        }
        let _rebinding = self.rebinding.lock();
        if let Some(worker) = self.worker.load_full().filter(|w| w.is_accepting()) {
            return Ok(worker);
        }
        let died = |pid, reason: String| {
            CallFault::Worker(WorkerFault {
                plugin: self.pool.plugin.clone(),
                pid,
                reason,
                kind: FaultKind::Died,
            })
        };
        let worker = self
            .pool
            .worker()
            .map_err(|err| died(None, format!("could not be started again: {err}")))?;
        match self.create_in(&worker) {
            Ok(()) => {
                tracing::info!(component = %self.component, pid = worker.pid, "component created again in a new worker");
                self.switch_to(&worker);
                Ok(worker)
            }
            Err(Failure::Failed(CreateFault::Plugin(err))) => {
                Err(CallFault::Plugin(PluginError::failed(format!(
                    "its worker was restarted, and creating the component in it again failed: {err}"
                ))))
            }
            Err(Failure::Failed(CreateFault::Worker(fault))) => Err(CallFault::Worker(fault)),
            Err(Failure::NotSent) => Err(died(
                Some(worker.pid),
                "stopped while the component was created in it again".into(),
            )),
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

impl Member for Bound {
    fn component(&self) -> &str {
        &self.component
    }

    /// Creates this instance in `worker` (not yet bound to it).
    fn create_in(&self, worker: &Arc<WorkerProcess>) -> Result<(), Failure<CreateFault>> {
        worker.create(
            self.id,
            &self.component,
            self.context.clone(),
            self.config.clone(),
            self.dependencies.clone(),
        )
    }

    fn switch_to(&self, worker: &Arc<WorkerProcess>) {
        self.worker.store(Some(Arc::clone(worker)));
    }
}
