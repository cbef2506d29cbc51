//! The context of each call and stream the worker serves: its deadline and trace as the
//! host sent them, and whether the host cancelled it (`Cancel`) or is stopping
//! (`Stopping`), lent to the plugin for the call's duration.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use abi_stable::{sabi_trait::TD_Opaque, std_types::RStr};
use parking_lot::Mutex;
use plugin_api::ffi::{CallContextObj, CallContextObj_TO, CallContextRef};

use crate::protocol::WireContext;

/// The calls and streams in flight, by request id.
#[derive(Default)]
pub(super) struct OpenCalls {
    open: Mutex<HashMap<u64, Arc<CallState>>>,
    /// The host is stopping: every call is cancelled.
    stopping: Arc<AtomicBool>,
}

/// One call's context in the worker.
pub(super) struct CallState {
    cancelled: AtomicBool,
    stopping: Arc<AtomicBool>,
    deadline: Option<Instant>,
    context: WireContext,
}

impl OpenCalls {
    /// Call `req` begins, with the context the host sent.
    pub(super) fn open(&self, req: u64, context: WireContext) -> Arc<CallState> {
        let deadline = context
            .remaining_nanos
            .and_then(|nanos| Instant::now().checked_add(Duration::from_nanos(nanos)));
        let state = Arc::new(CallState {
            cancelled: AtomicBool::new(false),
            stopping: Arc::clone(&self.stopping),
            deadline,
            context,
        });
        self.open.lock().insert(req, Arc::clone(&state));
        state
    }

    /// Call `req` has returned.
    pub(super) fn close(&self, req: u64) {
        self.open.lock().remove(&req);
    }

    /// The host cancelled `req` (a late cancel, for a call that returned, finds nothing).
    pub(super) fn cancel(&self, req: u64) {
        if let Some(state) = self.open.lock().get(&req) {
            state.cancelled.store(true, Ordering::Release);
        }
    }

    /// The host is stopping.
    pub(super) fn stop_all(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

impl CallState {
    /// Lends this context to `serve`, as the plugin sees it.
    pub(super) fn lend<T>(&self, serve: impl FnOnce(CallContextRef<'_>) -> T) -> T {
        serve(CallContextObj_TO::from_ptr(self, TD_Opaque))
    }
}

impl CallContextObj for CallState {
    fn remaining_nanos(&self) -> u64 {
        self.deadline.map_or(u64::MAX, |deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            u64::try_from(left.as_nanos()).unwrap_or(u64::MAX - 1)
        })
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire) || self.stopping.load(Ordering::Relaxed)
    }

    fn traceparent(&self) -> RStr<'_> {
        RStr::from_str(&self.context.traceparent)
    }

    fn tracestate(&self) -> RStr<'_> {
        RStr::from_str(&self.context.tracestate)
    }
}
