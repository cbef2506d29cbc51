//! The worker of one plugin library: the isolated components of a library share one
//! worker process. The pool starts it on first use and again after it ended (with a
//! backoff when it keeps crashing), and replaces it with one on a new file (upgrade)
//! without failing a call.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{
    process::{Shared, WorkerProcess},
    requests::{CreateFault, Failure},
    spawn::Spawn,
};
use crate::{
    loader::{FileIdentity, LoadError, Loader, Vetted},
    protocol::SandboxPlan,
};

/// Why a new worker could not take over from the running one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeError {
    /// The new worker did not start on the new file.
    #[error(transparent)]
    Start(#[from] LoadError),
    /// One of the running instances could not be created in it.
    #[error("component `{component}` could not be created in the new worker: {fault}")]
    Create {
        /// The component.
        component: String,
        /// Why.
        fault: Failure<CreateFault>,
    },
}

/// After this many crashes in a row, starts wait (doubling up to [`MAX_BACKOFF`]).
const FREE_RESTARTS: u32 = 2;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Times a pool's workers work by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolTimes {
    /// How long a worker may take to open the library.
    pub(crate) start: Duration,
    /// How long a worker may take to exit once asked to stop (and a replaced one to
    /// finish its calls).
    pub(crate) stop: Duration,
    /// How long a call abandoned by its caller may run on before its worker is killed.
    pub(crate) kill_grace: Duration,
    /// How long a worker may leave what the host writes to it unread.
    pub(crate) unread: Duration,
}

/// The file the pool's workers run: as discovery vetted it.
#[derive(Debug, Clone)]
struct Target {
    identity: FileIdentity,
    sha256: Option<String>,
}

#[derive(Default)]
struct Crashes {
    in_a_row: u32,
    last: Option<(Instant, String)>,
}

/// An instance a pool's workers serve, as an upgrade moves it to a new worker.
pub(crate) trait Member: Send + Sync {
    /// Its component's name.
    fn component(&self) -> &str;
    /// Creates it in `worker` (before calls move there).
    fn create_in(&self, worker: &Arc<WorkerProcess>) -> Result<(), Failure<CreateFault>>;
    /// Sends its calls to `worker` from now on.
    fn switch_to(&self, worker: &Arc<WorkerProcess>);
}

/// The worker process of one plugin library, and the instances bound to it.
pub(crate) struct WorkerPool {
    library: PathBuf,
    pub(crate) plugin: String,
    program: PathBuf,
    target: Mutex<Target>,
    /// The largest `memory_limit` of its components; 0 for none.
    memory_limit: AtomicU64,
    pub(crate) times: PoolTimes,
    loader: Arc<Loader>,
    pub(crate) shared: Shared,
    /// The sandbox its workers enter, if any.
    pub(crate) sandbox: Option<SandboxPlan>,
    current: Mutex<Option<Arc<WorkerProcess>>>,
    /// One start (or upgrade) at a time.
    starting: Mutex<()>,
    crashes: Mutex<Crashes>,
    instances: Mutex<HashMap<u64, Weak<dyn Member>>>,
}

/// How a pool is made.
pub(crate) struct PoolSetup {
    pub(crate) library: PathBuf,
    pub(crate) plugin: String,
    pub(crate) program: PathBuf,
    pub(crate) identity: FileIdentity,
    pub(crate) sha256: Option<String>,
    pub(crate) times: PoolTimes,
    pub(crate) loader: Arc<Loader>,
    pub(crate) shared: Shared,
    pub(crate) sandbox: Option<SandboxPlan>,
}

impl WorkerPool {
    pub(crate) fn new(setup: PoolSetup) -> Self {
        Self {
            library: setup.library,
            plugin: setup.plugin,
            program: setup.program,
            target: Mutex::new(Target {
                identity: setup.identity,
                sha256: setup.sha256,
            }),
            memory_limit: AtomicU64::new(0),
            times: setup.times,
            loader: setup.loader,
            shared: setup.shared,
            sandbox: setup.sandbox,
            current: Mutex::default(),
            starting: Mutex::new(()),
            crashes: Mutex::default(),
            instances: Mutex::default(),
        }
    }

    /// Raises the worker's memory limit to `limit` if it is higher (a worker's limit is
    /// the largest of its components'). Applies from the next worker started.
    pub(crate) fn raise_memory_limit(&self, limit: u64) {
        self.memory_limit.fetch_max(limit, Ordering::Relaxed);
    }

    /// Remembers `bound` as one of the instances its workers serve (an upgrade moves
    /// them all).
    pub(crate) fn add_instance(&self, id: u64, bound: Weak<dyn Member>) {
        self.instances.lock().insert(id, bound);
    }

    pub(crate) fn remove_instance(&self, id: u64) {
        self.instances.lock().remove(&id);
    }

    /// The running worker, or a new one.
    ///
    /// # Errors
    ///
    /// The file no longer passes its checks, the worker could not start, or it keeps
    /// crashing and the next start is not due yet.
    pub(crate) fn worker(&self) -> Result<Arc<WorkerProcess>, LoadError> {
        if let Some(worker) = self.running() {
            return Ok(worker);
        }
        let _starting = self.starting.lock();
        if let Some(worker) = self.running() {
            return Ok(worker);
        }
        self.check_backoff()?;
        let target = self.target.lock().clone();
        let worker = self.start(&target)?;
        *self.current.lock() = Some(Arc::clone(&worker));
        Ok(worker)
    }

    /// [`Self::worker`] for the creation of `component`: when this call started the
    /// worker, what it holds before any component exists (its runtime and the library) is
    /// recorded as its library's cost, as an in-process library's mapping is, so that the
    /// component's own figure is what its creation added.
    pub(crate) fn worker_for(&self, component: &str) -> Result<Arc<WorkerProcess>, LoadError> {
        let before = self.running().map(|worker| worker.pid);
        let worker = self.worker()?;
        if before != Some(worker.pid) {
            if let Some(base) = crate::memory::rss_of(worker.pid) {
                let library = self.library.display().to_string();
                self.shared.memory.record_library(&library, component, base);
            }
        }
        Ok(worker)
    }

    fn running(&self) -> Option<Arc<WorkerProcess>> {
        self.current
            .lock()
            .as_ref()
            .filter(|worker| worker.is_accepting())
            .cloned()
    }

    fn start(&self, target: &Target) -> Result<Arc<WorkerProcess>, LoadError> {
        let vetted = Vetted {
            identity: target.identity,
            sha256: target.sha256.as_deref(),
        };
        let opened = self.loader.vet(&self.library, vetted)?;
        let limit = self.memory_limit.load(Ordering::Relaxed);
        let spawn = Spawn {
            program: &self.program,
            opened: &opened,
            plugin: &self.plugin,
            memory_limit: (limit > 0).then_some(limit),
            start_timeout: self.times.start,
            stop_timeout: self.times.stop,
            unread_limit: self.times.unread,
            max_reply: self.shared.max_reply,
            shared_memory_from: self.shared.shared_memory_from,
            worker_tasks: self.shared.worker_tasks,
            sandbox: self.sandbox.clone(),
        };
        super::launch::launch(&spawn, &self.shared)
    }

    /// Counts the last worker's crash, if it crashed, and refuses a start that comes too
    /// soon after crashes in a row.
    fn check_backoff(&self) -> Result<(), LoadError> {
        let previous = self.current.lock().take();
        let mut crashes = self.crashes.lock();
        if let Some(worker) = previous.filter(|w| w.crashed()) {
            // A worker that answered calls before it crashed starts a new series.
            if worker.answered() > 0 {
                crashes.in_a_row = 0;
            }
            crashes.in_a_row += 1;
            crashes.last = Some((Instant::now(), worker.end_reason()));
        }
        let Some((at, reason)) = &crashes.last else {
            return Ok(());
        };
        if crashes.in_a_row <= FREE_RESTARTS {
            return Ok(());
        }
        let doublings = (crashes.in_a_row - FREE_RESTARTS - 1).min(16);
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF);
        let since = at.elapsed();
        if since >= wait {
            return Ok(());
        }
        Err(LoadError::Worker {
            path: self.library.clone(),
            reason: format!(
                "its worker crashed {} times in a row (last: {reason}); the next start is allowed in {:?}",
                crashes.in_a_row,
                wait - since
            ),
        })
    }

    /// A worker served a call: it is not crashing at once.
    pub(crate) fn note_success(&self) {
        let mut crashes = self.crashes.lock();
        if crashes.in_a_row > 0 {
            crashes.in_a_row = 0;
        }
    }

    /// Replaces the worker with one running the file now at the library's path (vetted
    /// as `identity` and `sha256`): every instance is created in the new worker first,
    /// then calls move to it, and the old worker stops once its calls are answered.
    /// With no worker running, only the file to run next changes.
    ///
    /// # Errors
    ///
    /// Why the new worker could not take over; the old one then keeps serving.
    pub(crate) fn upgrade(
        &self,
        identity: FileIdentity,
        sha256: Option<String>,
    ) -> Result<Option<u32>, UpgradeError> {
        let _starting = self.starting.lock();
        let target = Target { identity, sha256 };
        let old = self.running();
        if old.is_none() {
            *self.target.lock() = target;
            return Ok(None);
        }
        let new = self.start(&target)?;
        let instances: Vec<Arc<dyn Member>> = self
            .instances
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for bound in &instances {
            if let Err(fault) = bound.create_in(&new) {
                new.stop("an upgrade was abandoned");
                return Err(UpgradeError::Create {
                    component: bound.component().to_owned(),
                    fault,
                });
            }
        }
        for bound in &instances {
            bound.switch_to(&new);
        }
        *self.target.lock() = target;
        *self.crashes.lock() = Crashes::default();
        let pid = new.pid;
        if let Some(old) = self.current.lock().replace(new) {
            old.drain(
                self.times.stop,
                format!("it was replaced by worker {pid}, running the new file"),
            );
        }
        tracing::info!(plugin = %self.plugin, pid, "worker upgraded: new calls go to the new file");
        Ok(Some(pid))
    }

    /// Tells the running worker the host is stopping: the calls in it are cancelled.
    pub(crate) fn host_stopping(&self) {
        if let Some(worker) = self.current.lock().as_ref() {
            worker.host_stopping();
        }
    }

    /// Stops the running worker (the host shuts down).
    pub(crate) fn stop(&self) {
        if let Some(worker) = self.current.lock().take() {
            worker.stop("the host stopped it");
        }
    }
}

impl WorkerPool {
    /// What the sandbox of its current worker enforces, as the worker said when it
    /// started; `None` without a sandbox or a running worker.
    pub(crate) fn sandbox_applied(&self) -> Option<String> {
        self.current
            .lock()
            .as_ref()
            .filter(|worker| !worker.has_exited())
            .and_then(|worker| worker.sandbox.clone())
    }

    /// What ends everything its current worker starts, as the worker said when it
    /// started; `None` without a running worker.
    pub(crate) fn fence(&self) -> Option<String> {
        self.current
            .lock()
            .as_ref()
            .filter(|worker| !worker.has_exited())
            .map(|worker| worker.fence.clone())
    }
}
