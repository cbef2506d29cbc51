//! Ready instances and the handles callers hold and call; the dependencies handed to a
//! provider.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use serde::{de::DeserializeOwned, Serialize};

use plugin_api::PluginError;

use super::{info::SlotInfo, CallError};
use crate::{context::DependencyCall, executor::PluginExecutor, isolation::WorkerFault};

/// A ready component instance and where it came from.
///
/// Its last reference may go anywhere: a caller's handle, a shared init's stored result,
/// a hook. Wherever it goes, the instance's `Drop` (plugin code) runs on the plugin
/// executor, never on an async worker.
pub(crate) struct Ready {
    /// `Some` until dropped.
    instance: Option<Box<dyn Instance>>,
    pub(crate) info: Arc<SlotInfo>,
    executor: PluginExecutor,
}

impl Ready {
    pub(crate) fn new(
        instance: Box<dyn Instance>,
        info: Arc<SlotInfo>,
        executor: PluginExecutor,
    ) -> Self {
        Self {
            instance: Some(instance),
            info,
            executor,
        }
    }

    pub(crate) fn instance(&self) -> &dyn Instance {
        match &self.instance {
            Some(instance) => &**instance,
            None => unreachable!("the instance is taken only by Drop"),
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        let Some(instance) = self.instance.take() else {
            return;
        };
        let info = Arc::clone(&self.info);
        info.dropping.fetch_add(1, Ordering::AcqRel);
        let finish = move || {
            drop(instance);
            info.dropping.fetch_sub(1, Ordering::AcqRel);
        };
        if PluginExecutor::on_plugin_thread() {
            finish();
        } else {
            self.executor.execute(finish);
        }
    }
}

/// A handle to a ready component. Holding it keeps the instance alive, even if the
/// component is evicted or the host shuts down meanwhile. Cheap to clone.
#[derive(Clone)]
pub struct ComponentHandle {
    pub(crate) ready: Arc<Ready>,
}

impl std::fmt::Debug for ComponentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentHandle")
            .field("name", &self.name())
            .finish()
    }
}

/// Why an instance's call failed.
#[derive(Debug)]
pub enum CallFault {
    /// The component's own error (a caught panic included).
    Plugin(PluginError),
    /// Its worker process died or was killed while the call ran.
    Worker(WorkerFault),
}

impl From<PluginError> for CallFault {
    fn from(err: PluginError) -> Self {
        Self::Plugin(err)
    }
}

impl crate::context::DependencyCall for ComponentHandle {
    fn call_dependency(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        match self.call(method, input) {
            Ok(bytes) => Ok(bytes),
            Err(CallError::Failed { source, .. }) => Err(source),
            Err(other) => Err(PluginError::dependency(self.name(), other)),
        }
    }
}

impl ComponentHandle {
    /// The component's name.
    pub fn name(&self) -> &str {
        &self.ready.info.spec.name
    }

    /// Whether both handles point at the same instance.
    pub fn same_instance(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ready, &other.ready)
    }

    /// Calls `method` with raw input, on this thread, with no timeout.
    ///
    /// # Errors
    ///
    /// [`CallError::Failed`] with the component's error.
    pub fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
        self.call_as(crate::context::next_call_id(), method, input)
    }

    /// Calls `method` as call `id`: locks the component takes meanwhile belong to this
    /// call, and whatever it still holds when it returns is released.
    pub(crate) fn call_as(
        &self,
        id: u64,
        method: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        let scope = crate::context::CallScope::enter(id, method);
        let result = self.call_inner(method, input);
        drop(scope);
        self.ready.instance().end_call(id);
        result
    }

    fn call_inner(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
        let slot = &self.ready.info;
        slot.spec.check_method(method)?;
        slot.touch();
        let stats = &slot.stats;
        stats.calls.inc();
        let started = stats.sampler.sample().then(Instant::now);
        let result = self.ready.instance().call(method, input);
        if let Some(started) = started {
            stats.call_latency.record(started.elapsed().as_secs_f64());
        }
        if result.is_err() {
            stats.call_errors.inc();
        }
        result.map_err(|fault| match fault {
            CallFault::Plugin(source) => CallError::Failed {
                component: self.name().to_owned(),
                method: method.to_owned(),
                source,
            },
            CallFault::Worker(fault) => CallError::WorkerFailed {
                component: self.name().to_owned(),
                method: method.to_owned(),
                fault,
            },
        })
    }

    /// The worker process its instance runs in, if isolated and running.
    pub fn worker_pid(&self) -> Option<u32> {
        self.ready.instance().worker_pid()
    }

    /// Calls `method` with a JSON request and parses the JSON reply.
    ///
    /// # Errors
    ///
    /// [`CallError::Json`] when either side does not (de)serialise, else as [`Self::call`].
    pub fn call_json<Req, Resp>(&self, method: &str, request: &Req) -> Result<Resp, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let json_error = |message: String| CallError::Json {
            component: self.name().to_owned(),
            method: method.to_owned(),
            message,
        };
        let input = serde_json::to_vec(request).map_err(|e| json_error(format!("request: {e}")))?;
        let output = self.call(method, &input)?;
        serde_json::from_slice(&output)
            .map_err(|e| json_error(format!("reply is not the expected JSON: {e}")))
    }
}

/// A running component instance.
pub trait Instance: Send + Sync + 'static {
    /// Answers one call. Must not panic (plugin adapters and [`NativeComponent`] catch
    /// panics before they reach here).
    ///
    /// # Errors
    ///
    /// The component's error.
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFault>;

    /// The worker process it runs in, if it is isolated and its worker runs. Defaults to
    /// `None`.
    fn worker_pid(&self) -> Option<u32> {
        None
    }

    /// Releases what call `id` still holds (locks taken through a plugin context). The
    /// host calls it when the call returns or its caller abandons it. Defaults to nothing.
    fn end_call(&self, id: u64) {
        let _ = id;
    }
}

/// The ready dependencies handed to a provider's `create`.
#[derive(Clone, Default)]
pub struct Dependencies {
    handles: HashMap<String, ComponentHandle>,
}

impl Dependencies {
    pub(crate) fn new(handles: HashMap<String, ComponentHandle>) -> Self {
        Self { handles }
    }

    /// The handles as the plugin context takes them.
    pub(crate) fn into_calls(self) -> HashMap<String, Arc<dyn DependencyCall>> {
        self.handles
            .into_iter()
            .map(|(name, handle)| (name, Arc::new(handle) as Arc<dyn DependencyCall>))
            .collect()
    }

    /// The handle of dependency `name`, if it was declared.
    pub fn get(&self, name: &str) -> Option<&ComponentHandle> {
        self.handles.get(name)
    }
}
