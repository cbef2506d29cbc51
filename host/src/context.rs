//! The host side of the plugin context: what a plugin component can ask of the host.
//!
//! One context per component instance. It owns the instance's dependency handles and the
//! locks the instance's code holds, and it lives inside the instance: dropping the
//! instance drops it, which releases both. Locks belong to the call that took them (or,
//! outside any call, to the thread); a lock still held when its call ends is released
//! here and counted as leaked.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec},
};
use parking_lot::Mutex;
use plugin_api::{
    ffi::{
        CallContextRef, CallFlags, ComponentObj, ComponentObj_TO, ComponentRef, HostApi,
        HostApi_TO, HostBox, LogSinkBox, LogSink_TO, MetricBox, MetricKind, MetricObj_TO,
    },
    PluginError,
};

use crate::{
    call_context::CallToken,
    locks::{Holder, LockGuard},
    metrics::MetricHandle,
    plugin_log::PluginLogSink,
    services::HostServices,
};

/// What a context needs of a dependency: a way to call it. The coordinator's handles
/// implement it; the context knows nothing else of the coordinator.
pub(crate) trait DependencyCall: Send + Sync {
    /// Calls `method` on the dependency, on this thread.
    fn call_dependency(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, PluginError>;
}

/// The calls a plugin thread is serving, innermost last (a dependency call nests in its
/// caller's), for lock ownership. Entries past `depth` keep their method buffers for the
/// next calls: entering a call allocates nothing once a thread has served one.
struct CallStack {
    entries: Vec<CallEntry>,
    depth: usize,
}

/// One call a thread serves: its id, method and context.
struct CallEntry {
    id: u64,
    method: String,
    token: Option<Arc<CallToken>>,
}

impl CallStack {
    fn current(&self) -> Option<&CallEntry> {
        self.depth
            .checked_sub(1)
            .and_then(|top| self.entries.get(top))
    }
}

thread_local! {
    static CURRENT_CALL: RefCell<CallStack> = const {
        RefCell::new(CallStack {
            entries: Vec::new(),
            depth: 0,
        })
    };
    /// The context of the call this thread serves now (null: none), beside the stack so
    /// that lending it to a component costs one read of a cell. It always points into
    /// the `Arc` the stack's top entry holds: set from it whenever the stack changes
    /// (a scope entered or ended, in any order), so it is valid for as long as it is set.
    static LENT: Cell<*const CallToken> = const { Cell::new(std::ptr::null()) };
}

static NEXT_CALL_ID: AtomicU64 = AtomicU64::new(1);

/// Call ids a thread takes from the shared counter at once: calls on many threads do not
/// contend on one counter, and one thread's calls pay for it once in this many.
const CALL_ID_BLOCK: u64 = 256;

thread_local! {
    /// This thread's block of call ids: the next one and the end of the block.
    static CALL_IDS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// A fresh id for one call, unique in this process.
pub(crate) fn next_call_id() -> u64 {
    CALL_IDS.with(|ids| {
        let (next, end) = ids.get();
        if next < end {
            ids.set((next + 1, end));
            return next;
        }
        let start = NEXT_CALL_ID.fetch_add(CALL_ID_BLOCK, Ordering::Relaxed);
        ids.set((start + 1, start + CALL_ID_BLOCK));
        start
    })
}

/// The id of the call this thread serves now, if any.
pub(crate) fn current_call_id() -> Option<u64> {
    CURRENT_CALL.with(|current| current.borrow().current().map(|call| call.id))
}

/// The context of the call this thread serves now, if it has one.
pub(crate) fn current_call_token() -> Option<Arc<CallToken>> {
    CURRENT_CALL.with(|current| {
        current
            .borrow()
            .current()
            .and_then(|call| call.token.clone())
    })
}

/// Lends the context of the call this thread serves (its deadline, cancellation and
/// trace) to `serve`, as a component sees it; `stopping` is the host's stop flag.
#[inline(always)]
pub(crate) fn lend_current<T>(
    stopping: &AtomicBool,
    serve: impl FnOnce(CallContextRef<'_>, CallFlags) -> T,
) -> T {
    let token = LENT.with(Cell::get);
    // SAFETY: `LENT` points into the `Arc` the top entry of this thread's stack holds,
    // or is null; only `CallScope` changes the stack, and it sets `LENT` anew each time.
    // `serve` runs inside the current scope: the entry, and its `Arc`, outlive it.
    #[allow(unsafe_code)]
    let token = unsafe { token.as_ref() };
    crate::call_context::lend(token, stopping, serve)
}

/// While alive, locks taken on this thread belong to call `id`, and its code sees the
/// call's context.
pub(crate) struct CallScope {
    /// Not `Send`: it must end on the thread it began on.
    _thread: std::marker::PhantomData<*const ()>,
}

impl CallScope {
    /// Enters call `id` of `method` with context `token`; without one, a call nested in
    /// another on this thread (a dependency call) keeps that call's context.
    pub(crate) fn enter(id: u64, method: &str, token: Option<Arc<CallToken>>) -> Self {
        CURRENT_CALL.with(|current| {
            let mut stack = current.borrow_mut();
            let token = token.or_else(|| stack.current().and_then(|call| call.token.clone()));
            let lent = token.as_ref().map_or(std::ptr::null(), Arc::as_ptr);
            let depth = stack.depth;
            match stack.entries.get_mut(depth) {
                Some(entry) => {
                    entry.id = id;
                    entry.method.clear();
                    entry.method.push_str(method);
                    entry.token = token;
                }
                None => stack.entries.push(CallEntry {
                    id,
                    method: method.to_owned(),
                    token,
                }),
            }
            stack.depth += 1;
            LENT.set(lent);
        });
        Self {
            _thread: std::marker::PhantomData,
        }
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        CURRENT_CALL.with(|current| {
            let mut stack = current.borrow_mut();
            stack.depth = stack.depth.saturating_sub(1);
            let depth = stack.depth;
            let lent = stack
                .current()
                .and_then(|call| call.token.as_ref())
                .map_or(std::ptr::null(), Arc::as_ptr);
            // Before the token below may go: `LENT` never points at a freed one.
            LENT.set(lent);
            // The call's context goes with it (its caller may wait for the last holder).
            if let Some(entry) = stack.entries.get_mut(depth) {
                entry.token = None;
            }
        });
    }
}

/// Who takes a lock through a context: the call being served, else the thread.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum HolderKey {
    Call(u64),
    Thread(std::thread::ThreadId),
}

struct HeldLock {
    guard: LockGuard<'static>,
    key: HolderKey,
}

struct Inner {
    plugin: Arc<str>,
    component: String,
    config_json: String,
    dependencies: HashMap<String, Arc<dyn DependencyCall>>,
    services: Arc<HostServices>,
    sink: PluginLogSink,
    /// Locks held through this context, by token.
    held: Mutex<HashMap<u64, HeldLock>>,
    /// The lock holder of each call or thread that holds a lock now: every lock one call
    /// takes belongs to one holder, so order and re-entry checks see them together.
    holders: Mutex<HashMap<HolderKey, Holder>>,
    held_count: AtomicUsize,
    next_token: AtomicU64,
}

/// One component instance's view of the host. Cheap to clone; clones share state.
#[derive(Clone)]
pub(crate) struct PluginHostContext {
    inner: Arc<Inner>,
}

impl PluginHostContext {
    pub(crate) fn new(
        plugin: &str,
        component: &str,
        config: &serde_json::Value,
        dependencies: HashMap<String, Arc<dyn DependencyCall>>,
        services: Arc<HostServices>,
    ) -> Self {
        let plugin: Arc<str> = Arc::from(plugin);
        let sink = PluginLogSink {
            plugin: Arc::clone(&plugin),
            limits: Arc::clone(&services.logs),
        };
        Self {
            inner: Arc::new(Inner {
                plugin,
                component: component.to_owned(),
                config_json: config.to_string(),
                dependencies,
                services,
                sink,
                held: Mutex::default(),
                holders: Mutex::default(),
                held_count: AtomicUsize::new(0),
                next_token: AtomicU64::new(1),
            }),
        }
    }

    /// Lends the context of the call this thread serves (its deadline, cancellation and
    /// trace) to `serve`, as the plugin sees it.
    #[inline(always)]
    pub(crate) fn with_call_context<T>(
        &self,
        serve: impl FnOnce(CallContextRef<'_>, CallFlags) -> T,
    ) -> T {
        lend_current(&self.inner.services.stopping, serve)
    }

    /// The FFI object handed to the plugin's `create`.
    pub(crate) fn to_box(&self) -> HostBox {
        HostApi_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    /// Releases the locks call `call` still holds: it returned, or its caller abandoned it.
    pub(crate) fn end_call(&self, call: u64) {
        if self.inner.held_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let leaked: Vec<HeldLock> = {
            let mut held = self.inner.held.lock();
            let tokens: Vec<u64> = held
                .iter()
                .filter(|(_, lock)| lock.key == HolderKey::Call(call))
                .map(|(token, _)| *token)
                .collect();
            tokens
                .into_iter()
                .filter_map(|token| held.remove(&token))
                .collect()
        };
        self.inner.holders.lock().remove(&HolderKey::Call(call));
        self.inner.release_leaked(leaked, "its call ended");
    }

    /// Releases every lock held through this context: the process its code ran in died.
    pub(crate) fn release_all(&self, why: &str) {
        if self.inner.held_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let leaked: Vec<HeldLock> = self.inner.held.lock().drain().map(|(_, l)| l).collect();
        self.inner.holders.lock().clear();
        self.inner.release_leaked(leaked, why);
    }

    /// The holder for the calling thread's current call (or the thread itself).
    fn holder(&self) -> (HolderKey, Holder) {
        let component = &self.inner.component;
        let (key, label) = CURRENT_CALL.with(|current| match current.borrow().current() {
            Some(CallEntry { id, .. }) if id & crate::protocol::THREAD_HOLDER != 0 => (
                HolderKey::Call(*id),
                format!(
                    "{component} (worker thread {})",
                    id & !crate::protocol::THREAD_HOLDER
                ),
            ),
            Some(CallEntry { id, method, .. }) => (
                HolderKey::Call(*id),
                // A worker names its calls' methods: at most as long as a declared one.
                format!(
                    "{component}.{} (call {id})",
                    crate::util::cut_to(method, 128)
                ),
            ),
            None => {
                let thread = std::thread::current();
                let label = thread
                    .name()
                    .map_or_else(|| format!("{:?}", thread.id()), str::to_owned);
                (
                    HolderKey::Thread(thread.id()),
                    format!("{component} (thread {label})"),
                )
            }
        });
        let holder = self
            .inner
            .holders
            .lock()
            .entry(key)
            .or_insert_with(|| self.inner.services.locks.holder(label))
            .clone();
        (key, holder)
    }

    /// The host's stop flag, which every instance's context shares.
    pub(crate) fn stopping(&self) -> &Arc<AtomicBool> {
        &self.inner.services.stopping
    }

    /// Takes lock `name` for the current call (or thread), waiting up to `timeout_ms`
    /// (0: the lock's own timeout), or less if `give_up` is set and this thread unparked
    /// meanwhile (a worker that ended while its request waited); the token to release it.
    pub(crate) fn lock_unless(
        &self,
        name: &str,
        timeout_ms: u64,
        give_up: &AtomicBool,
    ) -> Result<u64, PluginError> {
        let inner = &self.inner;
        inner.services.admit_lock_name(&inner.plugin, name)?;
        let locks = &inner.services.locks;
        let lock = locks.lock(name).map_err(PluginError::failed)?;
        let timeout = match timeout_ms {
            0 => locks.timeout_of(name),
            ms => Duration::from_millis(ms),
        };
        let (key, holder) = self.holder();
        match holder
            .acquire_blocking_unless(&lock, timeout, give_up)
            .map(LockGuard::into_owned)
        {
            Ok(guard) => {
                let token = inner.next_token.fetch_add(1, Ordering::Relaxed);
                inner.held.lock().insert(token, HeldLock { guard, key });
                inner.held_count.fetch_add(1, Ordering::AcqRel);
                Ok(token)
            }
            Err(err) => {
                self.forget_idle_holder(key);
                Err(PluginError::failed(err))
            }
        }
    }

    /// Forgets `key`'s holder once it holds nothing through this context.
    fn forget_idle_holder(&self, key: HolderKey) {
        let held = self.inner.held.lock();
        if !held.values().any(|lock| lock.key == key) {
            self.inner.holders.lock().remove(&key);
        }
    }
}

impl Inner {
    fn release_leaked(&self, leaked: Vec<HeldLock>, why: &str) {
        if leaked.is_empty() {
            return;
        }
        self.held_count.fetch_sub(leaked.len(), Ordering::AcqRel);
        for lock in leaked {
            tracing::warn!(
                lock = %lock.guard.name(),
                holder = %lock.guard.holder(),
                "lock still held when {why}; the host released it"
            );
            self.services.locks.record_leak();
            drop(lock.guard);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let leaked: Vec<HeldLock> = self.held.get_mut().drain().map(|(_, lock)| lock).collect();
        self.holders.get_mut().clear();
        self.release_leaked(leaked, "its component instance was dropped");
    }
}

impl HostApi for PluginHostContext {
    fn component_name(&self) -> RString {
        self.inner.component.as_str().into()
    }

    fn log_sink(&self) -> LogSinkBox {
        LogSink_TO::from_ptr(RArc::new(self.inner.sink.clone()), TD_Opaque)
    }

    fn config_json(&self) -> RString {
        self.inner.config_json.as_str().into()
    }

    fn dependency(&self, name: RStr<'_>) -> ROption<ComponentRef> {
        self.inner
            .dependencies
            .get(name.as_str())
            .map(|handle| {
                ComponentObj_TO::from_ptr(
                    RArc::new(DependencyAdapter(Arc::clone(handle))),
                    TD_Opaque,
                )
            })
            .into()
    }

    fn lock(&self, name: RStr<'_>, timeout_ms: u64) -> RResult<u64, PluginError> {
        static NEVER: AtomicBool = AtomicBool::new(false);
        self.lock_unless(name.as_str(), timeout_ms, &NEVER).into()
    }

    fn unlock(&self, token: u64) -> RResult<(), PluginError> {
        let removed = self.inner.held.lock().remove(&token);
        match removed {
            Some(lock) => {
                self.inner.held_count.fetch_sub(1, Ordering::AcqRel);
                let released = lock.guard.release().map_err(PluginError::failed);
                self.forget_idle_holder(lock.key);
                released.into()
            }
            None => RResult::RErr(PluginError::failed(format!(
                "component `{}` holds no lock with token {token}; it was released already",
                self.inner.component
            ))),
        }
    }

    fn metric(
        &self,
        kind: MetricKind,
        name: RStr<'_>,
        help: RStr<'_>,
        buckets: RSlice<'_, f64>,
    ) -> RResult<MetricBox, PluginError> {
        self.inner
            .services
            .metrics
            .register(
                kind,
                name.as_str(),
                help.as_str(),
                buckets.as_slice(),
                &self.inner.plugin,
                &self.inner.component,
            )
            .map(|metric| MetricObj_TO::from_ptr(RArc::new(MetricHandle(metric)), TD_Opaque))
            .map_err(PluginError::failed)
            .into()
    }

    fn host_api_version(&self) -> RString {
        RString::from(plugin_api::API_VERSION)
    }
}

/// Exposes a host-side dependency to a plugin as an FFI component object.
struct DependencyAdapter(Arc<dyn DependencyCall>);

impl ComponentObj for DependencyAdapter {
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
        self.0
            .call_dependency(method.as_str(), input.as_slice())
            .map(RVec::from)
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call_context::CallOptions;

    /// A call's token with a deadline `secs` from now, by which a lent context is told.
    fn token(secs: u64) -> Arc<CallToken> {
        Arc::new(CallToken::new(
            &CallOptions::new(),
            Some(Duration::from_secs(secs)),
            &Arc::default(),
        ))
    }

    /// The call this thread serves, and the deadline (whole seconds left, rounded up) of
    /// the context a component on it is lent now.
    fn now() -> (Option<u64>, Option<u64>) {
        let left = lend_current(&AtomicBool::new(false), |context, _| {
            context.remaining_nanos()
        });
        let secs = (left != u64::MAX).then(|| left.div_ceil(1_000_000_000));
        (current_call_id(), secs)
    }

    #[test]
    fn the_lent_context_is_the_innermost_calls_whatever_order_scopes_end_in() {
        assert_eq!(now(), (None, None));
        let (outer_token, inner_token) = (token(60), token(30));
        let outer = CallScope::enter(1, "outer", Some(Arc::clone(&outer_token)));
        assert_eq!(now(), (Some(1), Some(60)));
        let inner = CallScope::enter(2, "inner", Some(Arc::clone(&inner_token)));
        assert_eq!(now(), (Some(2), Some(30)));
        // A dependency call nested in it keeps its context, cancellation included.
        let dependency = CallScope::enter(3, "dependency", None);
        assert_eq!(now(), (Some(3), Some(30)));
        inner_token.cancel();
        assert!(lend_current(&AtomicBool::new(false), |context, _| context.is_cancelled()));
        assert_eq!(Arc::strong_count(&inner_token), 3);
        // Scopes ending out of order: the innermost entry goes each time, and the lent
        // pointer moves to the one below before the entry's token may go.
        drop(inner);
        assert_eq!(now(), (Some(2), Some(30)));
        assert_eq!(Arc::strong_count(&inner_token), 2);
        drop(outer);
        assert_eq!(now(), (Some(1), Some(60)));
        assert_eq!(Arc::strong_count(&inner_token), 1);
        drop(dependency);
        assert_eq!(now(), (None, None));
        assert_eq!(Arc::strong_count(&outer_token), 1);
        // The entries are kept for the next calls, and start clean.
        let again = CallScope::enter(4, "again", None);
        assert_eq!(now(), (Some(4), None));
        drop(again);
    }
}
