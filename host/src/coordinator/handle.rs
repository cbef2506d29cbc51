//! Ready instances and the handles callers hold and call; the dependencies handed to a
//! provider.

use std::{
    collections::{HashMap, HashSet},
    panic::Location,
    sync::{atomic::Ordering, Arc, Weak},
    time::Instant,
};

use serde::{de::DeserializeOwned, Serialize};

use plugin_api::PluginError;

use super::{
    info::{Bulkhead, Hung, SlotInfo},
    CallError, Coordinator, GetError, Inner,
};
use crate::{
    call_context::{CallOptions, CallToken},
    context::DependencyCall,
    executor::PluginExecutor,
    fault::CallFault,
};

/// A ready component instance and where it came from.
///
/// Its last reference may go anywhere: a caller's handle, a shared init's stored result,
/// a hook. Wherever it goes, the instance's `Drop` (plugin code) runs on the plugin
/// executor, never on an async worker.
pub(crate) struct Ready {
    /// `Some` until dropped.
    instance: Option<Box<dyn Instance>>,
    pub(crate) info: Arc<SlotInfo>,
    /// Its abandoned calls still running (quarantine is an instance's).
    pub(crate) hung: Arc<Hung>,
    executor: PluginExecutor,
    /// The coordinator it came from, for calls through a handle (timeouts, the call
    /// limits); weak, so that a handle kept after the host went keeps nothing else.
    pub(crate) engine: Weak<Inner>,
}

impl Ready {
    pub(crate) fn new(
        instance: Box<dyn Instance>,
        info: Arc<SlotInfo>,
        executor: PluginExecutor,
        engine: Weak<Inner>,
    ) -> Self {
        Self {
            instance: Some(instance),
            info,
            hung: Arc::default(),
            executor,
            engine,
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

impl crate::context::DependencyCall for ComponentHandle {
    fn call_dependency(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        // Plugin code calls its dependencies on its own plugin thread: inline.
        match self.call_blocking(method, input) {
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

    /// Calls `method` with raw input on the plugin executor, under the call timeout and
    /// the component's bulkhead, as [`Coordinator::call`] does: the plugin code never
    /// runs on the caller's thread, so this is the call for async code.
    ///
    /// # Errors
    ///
    /// [`CallError`]: the component's error, an expired timeout, a refusal by the
    /// bulkhead, or `ShuttingDown` when its coordinator is gone.
    pub async fn call(
        &self,
        method: &str,
        input: impl Into<Vec<u8>>,
    ) -> Result<Vec<u8>, CallError> {
        let Some(inner) = self.ready.engine.upgrade() else {
            return Err(CallError::Get(GetError::ShuttingDown {
                name: self.name().to_owned(),
            }));
        };
        Coordinator { inner }
            .call_handle(self.clone(), method, input.into(), &CallOptions::default())
            .await
    }

    /// [`Self::call`] with a JSON request and a JSON reply.
    ///
    /// # Errors
    ///
    /// As [`Self::call`], and [`CallError::Json`] when either side does not (de)serialise.
    pub async fn call_json<Req, Resp>(&self, method: &str, request: &Req) -> Result<Resp, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let input = serde_json::to_vec(request)
            .map_err(|e| self.json_error(method, format!("request: {e}")))?;
        let output = self.call(method, input).await?;
        self.parse_reply(method, &output)
    }

    /// Calls `method` and waits for it on this thread: for plugin code calling its
    /// dependencies, native components, and threads of the caller's own. Where this thread
    /// may run the plugin code without harm (a plugin thread, or a thread outside any
    /// tokio runtime) it does, with no hop and no timeout: the fastest call there is.
    /// On a thread of a tokio runtime the code runs on the plugin executor instead and this
    /// thread waits within the call timeout, logged once per calling location: from async
    /// code use [`Self::call`] and `.await` it rather than block a worker.
    ///
    /// # Errors
    ///
    /// [`CallError::Failed`] with the component's error; [`CallError::Saturated`] when
    /// the component already runs `max_concurrent_calls` calls and
    /// [`CallError::Quarantined`] when its instance is quarantined, as for every call;
    /// inside a runtime, as [`Self::call`].
    #[track_caller]
    pub fn call_blocking(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
        if PluginExecutor::on_plugin_thread() || tokio::runtime::Handle::try_current().is_err() {
            // The component's bulkhead and quarantine hold here too: a dependency call
            // from plugin code counts against `max_concurrent_calls` like any other.
            let _permit = Bulkhead::enter_here(&self.ready.info, &self.ready.hung, method)?;
            return self.call_as(crate::context::next_call_id(), method, input, None);
        }
        warn_blocking_in_runtime(Location::caller());
        let Some(inner) = self.ready.engine.upgrade() else {
            return Err(CallError::Get(GetError::ShuttingDown {
                name: self.name().to_owned(),
            }));
        };
        Coordinator { inner }.call_handle_waiting(self.clone(), method, input)
    }

    /// [`Self::call_blocking`] with a JSON request and a JSON reply.
    ///
    /// # Errors
    ///
    /// As [`Self::call_blocking`], and [`CallError::Json`] when either side does not
    /// (de)serialise.
    #[track_caller]
    pub fn call_json_blocking<Req, Resp>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let input = serde_json::to_vec(request)
            .map_err(|e| self.json_error(method, format!("request: {e}")))?;
        let output = self.call_blocking(method, &input)?;
        self.parse_reply(method, &output)
    }

    fn json_error(&self, method: &str, message: String) -> CallError {
        CallError::Json {
            component: self.name().to_owned(),
            method: method.to_owned(),
            message,
        }
    }

    fn parse_reply<Resp: DeserializeOwned>(
        &self,
        method: &str,
        output: &[u8],
    ) -> Result<Resp, CallError> {
        serde_json::from_slice(output)
            .map_err(|e| self.json_error(method, format!("reply is not the expected JSON: {e}")))
    }

    /// Calls `method` as call `id` on this thread, with context `token` (none: the
    /// context of the call this thread serves, if any): locks the component takes
    /// meanwhile belong to this call, and whatever it still holds when it returns is
    /// released.
    pub(crate) fn call_as(
        &self,
        id: u64,
        method: &str,
        input: &[u8],
        token: Option<Arc<CallToken>>,
    ) -> Result<Vec<u8>, CallError> {
        // Guards rather than statements after the call, so that its result is written
        // where the caller reads it, not copied past them (a 16-byte reload of a result
        // the callee wrote in 8-byte parts stalls on store forwarding). Dropped in
        // reverse: the scope ends first, then the instance hears the call ended.
        let _ended = EndCall {
            instance: self.ready.instance(),
            id,
        };
        let _scope = crate::context::CallScope::enter(id, method, token);
        self.call_inner(method, input)
    }

    fn call_inner(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
        let slot = &self.ready.info;
        slot.spec.check_method(method)?;
        slot.touch();
        let stats = &slot.stats;
        stats.calls.inc();
        let started = stats.sampler.sample().then(Instant::now);
        let cpu_before = stats.sampler.sample_cpu().then(crate::cpu::thread_nanos);
        let limit = slot.max_reply;
        // The reply taken apart at once: the whole result (a large enum) is never moved.
        let fault = match self.ready.instance().call(method, input) {
            Ok(reply) if reply.len() as u64 <= limit => {
                finish_call(stats, started, cpu_before);
                return Ok(reply);
            }
            Ok(reply) => CallFault::ReplyTooLarge {
                size: reply.len() as u64,
                limit,
            },
            Err(fault) => fault,
        };
        finish_call(stats, started, cpu_before);
        Err(self.failed(method, fault))
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, method: &str, fault: CallFault) -> CallError {
        self.ready.info.stats.call_errors.inc();
        self.fault_error(method, fault)
    }

    /// The call error of `fault` in a call of `method`.
    pub(crate) fn fault_error(&self, method: &str, fault: CallFault) -> CallError {
        let (component, method) = (self.name().to_owned(), method.to_owned());
        match fault {
            CallFault::Plugin(source) => CallError::Failed {
                component,
                method,
                source: crate::fault::bounded(source),
            },
            CallFault::Worker(fault) => CallError::WorkerFailed {
                component,
                method,
                fault,
            },
            CallFault::ReplyTooLarge { size, limit } => CallError::ReplyTooLarge {
                component,
                method,
                size,
                limit,
            },
        }
    }

    /// The worker process its instance runs in, if isolated and running.
    pub fn worker_pid(&self) -> Option<u32> {
        self.ready.instance().worker_pid()
    }
}

/// Logs, once per calling location, a blocking call made from a thread of a tokio runtime
/// (an async worker, or a `spawn_blocking` thread: tokio does not say which).
fn warn_blocking_in_runtime(location: &'static Location<'static>) {
    use parking_lot::Mutex;
    // Locations are few (call sites in the program); the set is bounded by the code.
    type Place = (&'static str, u32, u32);
    static WARNED: Mutex<Option<HashSet<Place>>> = Mutex::new(None);
    let key = (location.file(), location.line(), location.column());
    let first = WARNED.lock().get_or_insert_with(HashSet::new).insert(key);
    if first {
        tracing::warn!(
            caller = %location,
            "a blocking component call from a thread of a tokio runtime: the call ran on the plugin executor while this thread waited; from async code, `.await` ComponentHandle::call or Host::call instead"
        );
    }
}

/// Tells an instance its call `id` ended (when dropped), whatever way it ended.
struct EndCall<'a> {
    instance: &'a dyn Instance,
    id: u64,
}

impl Drop for EndCall<'_> {
    fn drop(&mut self) {
        self.instance.end_call(self.id);
    }
}

/// A call's CPU time and, when it was timed, its latency.
#[inline]
fn finish_call(stats: &super::info::Stats, started: Option<Instant>, cpu_before: Option<u64>) {
    count_cpu(stats, cpu_before);
    if let Some(started) = started {
        stats.call_latency.record(started.elapsed().as_secs_f64());
    }
}

/// Counts the CPU time of the call that just returned on this thread: what its worker
/// reported, exactly; else, for a call sampled for CPU (`cpu_before` read), this thread's
/// time since, scaled by the CPU sample rate.
fn count_cpu(stats: &super::info::Stats, cpu_before: Option<u64>) {
    if let Some(nanos) = crate::cpu::take_spent_elsewhere() {
        stats.cpu_nanos.add(nanos);
    } else if let Some(before) = cpu_before {
        let spent = crate::cpu::thread_nanos().saturating_sub(before) as f64;
        stats
            .cpu_nanos
            .add((spent / stats.sampler.cpu_rate()) as u64);
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

    /// Answers one streaming call, handing each item to `items` (which waits while the
    /// consumer is behind, and says when it has gone); returns when the stream is done.
    /// Must not panic. Defaults to refusing: the instance does not stream.
    ///
    /// # Errors
    ///
    /// The component's error.
    fn stream(
        &self,
        method: &str,
        input: &[u8],
        items: &super::stream::ItemSender,
    ) -> Result<(), CallFault> {
        let _ = (input, items);
        Err(CallFault::Plugin(PluginError::with_kind(
            "not_streaming",
            format!("this component cannot stream `{method}`"),
        )))
    }

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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use plugin_api::{json_reply, Component, PluginError, Request};
    use tracing_subscriber::layer::SubscriberExt as _;

    use crate::{ComponentSpec, Coordinator, NativeComponent};

    /// Answers with the name of the thread its code runs on.
    struct ThreadName;

    impl Component for ThreadName {
        fn call(&self, _request: Request<'_>) -> Result<Vec<u8>, PluginError> {
            json_reply(&std::thread::current().name().unwrap_or("unnamed"))
        }
    }

    /// Keeps the messages of warnings.
    struct Warnings(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Text(String);
            impl tracing::field::Visit for Text {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!("{}={value:?} ", field.name()));
                }
            }
            if *event.metadata().level() == tracing::Level::WARN {
                let mut text = Text(String::new());
                event.record(&mut text);
                self.0.lock().unwrap().push(text.0);
            }
        }
    }

    #[test]
    fn a_blocking_call_from_an_async_task_runs_on_a_plugin_thread_and_is_logged_once() {
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Warnings(Arc::clone(&warnings)));
        let _default = tracing::subscriber::set_default(subscriber);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let names: Vec<String> = runtime.block_on(async {
            let coordinator = Coordinator::builder().build();
            coordinator
                .register_native(
                    ComponentSpec::new("where"),
                    NativeComponent::new(|_| Ok(ThreadName)),
                )
                .unwrap();
            let handle = coordinator.get("where").await.unwrap();
            // On the runtime's only thread: run inline, this would block the runtime;
            // the call must go to the plugin executor and still answer.
            let names = (0..3)
                .map(|_| {
                    handle
                        .call_json_blocking::<_, String>("where", &())
                        .unwrap()
                })
                .collect();
            let awaited: String = handle.call_json("where", &()).await.unwrap();
            assert_eq!(awaited, "plugin");
            names
        });
        assert_eq!(names, ["plugin", "plugin", "plugin"]);
        let warnings = warnings.lock().unwrap();
        let about_blocking: Vec<&String> = warnings
            .iter()
            .filter(|w| w.contains("blocking component call"))
            .collect();
        assert_eq!(about_blocking.len(), 1, "once per location: {warnings:?}");
        assert!(
            about_blocking[0].contains("handle.rs"),
            "names the caller's location: {about_blocking:?}"
        );
        // Outside any runtime the call runs inline, on this thread.
        let coordinator = Coordinator::builder().build();
        coordinator
            .register_native(
                ComponentSpec::new("here"),
                NativeComponent::new(|_| Ok(ThreadName)),
            )
            .unwrap();
        let here = runtime.block_on(coordinator.get("here")).unwrap();
        let name: String = here.call_json_blocking("where", &()).unwrap();
        assert_eq!(Some(name.as_str()), std::thread::current().name());
    }
}
