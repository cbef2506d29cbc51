//! Providers: what creates a component. Plugin components and native Rust components look
//! the same to the coordinator.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::PathBuf,
    sync::Arc,
};

use plugin_api::{ffi::ComponentBox, Component, PluginError, Request};

use super::{
    handle::{Dependencies, Instance},
    spec::ComponentSpec,
    stream::ItemSender,
    InitError,
};
use crate::{
    call_context::NEVER_STOPS,
    config::Isolation,
    context::{lend_current, PluginHostContext},
    fault::CallFault,
    loader::{FileIdentity, Loader, Vetted},
    memory::MemoryManager,
    services::HostServices,
};

/// Creates instances of one component. Blocking; the coordinator runs it on its own thread
/// under the component's init timeout.
pub trait Provider: Send + Sync + 'static {
    /// Creates an instance with the component's config section (JSON) and its ready
    /// dependencies.
    ///
    /// # Errors
    ///
    /// [`InitError`] describing why the instance could not be created.
    fn create(
        &self,
        spec: &ComponentSpec,
        config: &serde_json::Value,
        dependencies: Dependencies,
    ) -> Result<Box<dyn Instance>, InitError>;

    /// Where its instances run. Defaults to in the host's process.
    fn isolation(&self) -> Isolation {
        Isolation::InProcess
    }

    /// For `isolation = "auto"`: why its instances moved to a worker process, once they
    /// have. Defaults to `None`.
    fn moved_to_worker(&self) -> Option<String> {
        None
    }

    /// What the sandbox of its running worker enforces; `None` when it has none (or no
    /// worker runs). Defaults to `None`.
    fn sandbox_applied(&self) -> Option<String> {
        None
    }

    /// What ends everything its running worker starts, in words; `None` when no worker
    /// runs. Defaults to `None`.
    fn fence(&self) -> Option<String> {
        None
    }

    /// For `isolation = "auto"`: moves its next instances to a worker process because of
    /// `reason`; true the first time. Defaults to doing nothing (false).
    fn move_to_worker(&self, reason: &str) -> bool {
        let _ = reason;
        false
    }
}

/// `isolation = "auto"`: a component created in the host's process until it misbehaves
/// (a panic, a timeout, quarantine), then in a worker process of the same file.
pub(super) struct AutoProvider {
    pub(super) in_process: Arc<dyn Provider>,
    pub(super) isolated: Arc<dyn Provider>,
    /// Why it moved, once it has: never back until the host restarts.
    pub(super) moved: parking_lot::Mutex<Option<String>>,
}

impl Provider for AutoProvider {
    fn create(
        &self,
        spec: &ComponentSpec,
        config: &serde_json::Value,
        dependencies: Dependencies,
    ) -> Result<Box<dyn Instance>, InitError> {
        let provider = if self.moved.lock().is_some() {
            &self.isolated
        } else {
            &self.in_process
        };
        provider.create(spec, config, dependencies)
    }

    fn isolation(&self) -> Isolation {
        Isolation::Auto
    }

    fn moved_to_worker(&self) -> Option<String> {
        self.moved.lock().clone()
    }

    fn fence(&self) -> Option<String> {
        self.moved.lock().as_ref()?;
        self.isolated.fence()
    }

    fn move_to_worker(&self, reason: &str) -> bool {
        let mut moved = self.moved.lock();
        if moved.is_some() {
            return false;
        }
        *moved = Some(reason.to_owned());
        true
    }
}

type CreateFn = dyn Fn(&Dependencies) -> Result<Box<dyn Component>, PluginError> + Send + Sync;

/// A component written in the embedding program, created by a closure.
pub struct NativeComponent {
    create: Box<CreateFn>,
}

impl NativeComponent {
    /// A native component created by `create`. Panics in `create` or in the component's
    /// `call` are caught and reported like a plugin's.
    pub fn new<F, C>(create: F) -> Self
    where
        F: Fn(&Dependencies) -> Result<C, PluginError> + Send + Sync + 'static,
        C: Component,
    {
        Self {
            create: Box::new(move |deps| create(deps).map(|c| Box::new(c) as Box<dyn Component>)),
        }
    }

    /// As [`Self::new`], for a `create` that returns its component boxed already (a
    /// plugin type's `Plugin::create`, say): no second box.
    pub fn boxed<F>(create: F) -> Self
    where
        F: Fn(&Dependencies) -> Result<Box<dyn Component>, PluginError> + Send + Sync + 'static,
    {
        Self {
            create: Box::new(create),
        }
    }
}

/// A native component's panic, reported like a plugin's but with no plugin named.
fn native_panic(
    component: &str,
    method: &str,
    payload: &(dyn std::any::Any + Send),
) -> PluginError {
    PluginError::panicked("", component, method, &plugin_api::panic_message(payload))
}

impl Provider for NativeComponent {
    fn create(
        &self,
        spec: &ComponentSpec,
        _config: &serde_json::Value,
        dependencies: Dependencies,
    ) -> Result<Box<dyn Instance>, InitError> {
        let created = catch_unwind(AssertUnwindSafe(|| (self.create)(&dependencies)))
            .unwrap_or_else(|payload| Err(native_panic(&spec.name, "create", &*payload)));
        match created {
            Ok(component) => Ok(Box::new(NativeInstance {
                name: spec.name.clone(),
                component,
            })),
            Err(source) => Err(InitError::Create {
                component: spec.name.clone(),
                plugin: None,
                source: crate::fault::bounded(source),
            }),
        }
    }
}

struct NativeInstance {
    name: String,
    component: Box<dyn Component>,
}

impl Instance for NativeInstance {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFault> {
        lend_current(&NEVER_STOPS, |context, _| {
            catch_unwind(AssertUnwindSafe(|| {
                self.component
                    .call(Request::new(method, input).with_context(&context))
            }))
        })
        .unwrap_or_else(|payload| Err(native_panic(&self.name, method, &*payload)))
        .map_err(CallFault::Plugin)
    }

    fn stream(&self, method: &str, input: &[u8], items: &ItemSender) -> Result<(), CallFault> {
        let items = items.clone();
        let sink = plugin_api::StreamSink::from_fn(move |item| items.send(item.to_vec()));
        lend_current(&NEVER_STOPS, |context, _| {
            catch_unwind(AssertUnwindSafe(|| {
                self.component
                    .stream(Request::new(method, input).with_context(&context), &sink)
            }))
        })
        .unwrap_or_else(|payload| Err(native_panic(&self.name, method, &*payload)))
        .map_err(CallFault::Plugin)
    }
}

/// A plugin's reply as the host's vector. `RVec::into_vec` asks both libraries for the
/// vector's type id and, the vtables being the plugin's, copies the bytes and frees the
/// plugin's buffer through its vtable; a reply that owns no buffer has nothing to copy or
/// free.
fn into_vec(reply: abi_stable::std_types::RVec<u8>) -> Vec<u8> {
    if reply.capacity() == 0 {
        std::mem::forget(reply);
        return Vec::new();
    }
    reply.into_vec()
}

/// A plugin's error as a call fault, off the fast path.
#[cold]
#[inline(never)]
fn plugin_fault(err: plugin_api::PluginError) -> CallFault {
    CallFault::Plugin(err)
}

/// The host's end of a plugin's stream, across the boundary.
struct HostSink(ItemSender);

impl plugin_api::ffi::StreamSinkObj for HostSink {
    fn send(&self, item: abi_stable::std_types::RVec<u8>) -> bool {
        self.0.send_with(item.len(), || item.into_vec())
    }
}

/// A component provided by a plugin library, loaded on first use: the file as it was
/// vetted, and what loading it needs.
pub(crate) struct PluginProvider {
    pub(crate) path: PathBuf,
    pub(crate) identity: FileIdentity,
    /// Its SHA-256, when the trust policy pinned it.
    pub(crate) sha256: Option<String>,
    pub(crate) loader: Arc<Loader>,
    pub(crate) memory: MemoryManager,
    pub(crate) services: Arc<HostServices>,
}

impl Provider for PluginProvider {
    fn create(
        &self,
        spec: &ComponentSpec,
        config: &serde_json::Value,
        dependencies: Dependencies,
    ) -> Result<Box<dyn Instance>, InitError> {
        let path = &self.path;
        let load_error = |source| InitError::Load {
            component: spec.name.clone(),
            source: Box::new(source),
        };
        let first_load = !self.loader.is_loaded(path);
        let rss_before = if first_load {
            self.memory.read_rss()
        } else {
            0
        };
        // Only the file the scanner vetted is mapped: the loader checks its identity (and
        // the trust policy) on the descriptor it loads from.
        let vetted = Vetted {
            identity: self.identity,
            sha256: self.sha256.as_deref(),
        };
        let library = self.loader.load(path, vetted).map_err(load_error)?;
        if first_load {
            let cost = self.memory.read_rss().saturating_sub(rss_before);
            self.memory
                .record_library(&path.display().to_string(), &spec.name, cost);
        }
        let plugin = library.info().name.clone();
        let context = PluginHostContext::new(
            &plugin,
            &spec.name,
            config,
            dependencies.into_calls(),
            Arc::clone(&self.services),
        );
        let component = library
            .create(&spec.name, context.to_box())
            .map_err(|source| InitError::Create {
                component: spec.name.clone(),
                plugin: Some(plugin),
                source: crate::fault::bounded(source),
            })?;
        Ok(Box::new(PluginInstance { component, context }))
    }
}

/// A plugin's component and its context. The component is dropped first: its `Drop` may
/// still use the context, which then releases the dependency handles and any lock left.
struct PluginInstance {
    component: ComponentBox,
    context: PluginHostContext,
}

impl Instance for PluginInstance {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFault> {
        use abi_stable::std_types::{RResult, RSlice, RStr};
        let answer = self.context.with_call_context(|context, flags| {
            self.component.call_with(
                RStr::from_str(method),
                RSlice::from_slice(input),
                &context,
                flags,
            )
        });
        // Taken apart where it lies: the whole answer (a large enum) is not moved
        // through `Result` adapters on the way out.
        match answer {
            RResult::ROk(reply) => Ok(into_vec(reply)),
            RResult::RErr(err) => Err(plugin_fault(err)),
        }
    }

    fn stream(&self, method: &str, input: &[u8], items: &ItemSender) -> Result<(), CallFault> {
        use abi_stable::{
            sabi_trait::TD_Opaque,
            std_types::{RSlice, RStr},
        };
        let sink =
            plugin_api::ffi::StreamSinkObj_TO::from_value(HostSink(items.clone()), TD_Opaque);
        self.context
            .with_call_context(|context, _| {
                self.component.stream_in(
                    RStr::from_str(method),
                    RSlice::from_slice(input),
                    sink,
                    context,
                )
            })
            .into_result()
            .map_err(CallFault::Plugin)
    }

    fn end_call(&self, id: u64) {
        self.context.end_call(id);
    }
}
