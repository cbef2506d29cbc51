//! The context of each call and stream the worker serves: its deadline and trace as the
//! host sent them, and whether the host cancelled it (`Cancel`) or is stopping
//! (`Stopping`), lent to the plugin for the call's duration; and the CPU each call with a
//! budget has used, which a watchdog thread reads while it runs.

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
use plugin_api::ffi::{CallContextObj, CallContextObj_TO, CallContextRef, CallFlags};

use super::conn::Conn;
use crate::{
    cpu::CpuBudget,
    protocol::{FromWorker, WireContext},
};

/// The calls and streams in flight, by request id.
#[derive(Default)]
pub(super) struct OpenCalls {
    open: Mutex<HashMap<u64, Arc<CallState>>>,
    /// The host is stopping: every call is cancelled.
    stopping: Arc<AtomicBool>,
    /// The thread that watches calls with a CPU budget, once one came.
    watchdog: std::sync::OnceLock<std::thread::Thread>,
}

/// One call's context in the worker.
pub(super) struct CallState {
    cancelled: AtomicBool,
    stopping: Arc<AtomicBool>,
    deadline: Option<Instant>,
    context: WireContext,
    /// Its CPU budget, and whether the host was told it is over.
    cpu: Option<(CpuBudget, AtomicBool)>,
}

impl OpenCalls {
    /// Call `req` begins, with the context the host sent.
    pub(super) fn open(&self, req: u64, context: WireContext) -> Arc<CallState> {
        let deadline = context
            .remaining_nanos
            .and_then(|nanos| Instant::now().checked_add(Duration::from_nanos(nanos)));
        let cpu = context.cpu_budget_nanos.map(|nanos| {
            (
                CpuBudget::new(Duration::from_nanos(nanos)),
                AtomicBool::new(false),
            )
        });
        let budgeted = cpu.is_some();
        let state = Arc::new(CallState {
            cancelled: AtomicBool::new(false),
            stopping: Arc::clone(&self.stopping),
            deadline,
            context,
            cpu,
        });
        self.open.lock().insert(req, Arc::clone(&state));
        if budgeted {
            if let Some(watchdog) = self.watchdog.get() {
                watchdog.unpark();
            }
        }
        state
    }

    /// Starts the thread that tells the host, on `conn`, of each call over its CPU
    /// budget (once).
    pub(super) fn watch_budgets(self: &Arc<Self>, conn: &Arc<Conn>) {
        if self.watchdog.get().is_some() {
            return;
        }
        let (calls, conn) = (Arc::clone(self), Arc::clone(conn));
        let started = std::thread::Builder::new()
            .name("cpu-budget".into())
            .spawn(move || calls.watch(&conn));
        match started {
            Ok(thread) => {
                let _ = self.watchdog.set(thread.thread().clone());
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot start the CPU budget watchdog; calls over cpu_per_call end only at their timeout");
            }
        }
    }

    /// The watchdog: every budget period, the calls over their budget are told to the
    /// host; with no budgeted call open, it sleeps until one opens.
    fn watch(&self, conn: &Conn) {
        loop {
            let mut period: Option<Duration> = None;
            let mut over = Vec::new();
            for (req, state) in self.open.lock().iter() {
                let Some((budget, told)) = &state.cpu else {
                    continue;
                };
                period = Some(period.map_or(budget.period(), |p| p.min(budget.period())));
                if told.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(spent) = budget.overrun() {
                    told.store(true, Ordering::Relaxed);
                    over.push((*req, u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX)));
                }
            }
            for (req, cpu_nanos) in over {
                conn.send(&FromWorker::Overrun { req, cpu_nanos });
            }
            match period {
                Some(period) => std::thread::sleep(period),
                None => std::thread::park(),
            }
        }
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
    /// The call begins on this thread: its CPU budget counts from here.
    pub(super) fn start_cpu(&self) {
        if let Some((budget, _)) = &self.cpu {
            budget.start_here();
        }
    }

    /// Lends this context to `serve`, as the plugin sees it.
    pub(super) fn lend<T>(&self, serve: impl FnOnce(CallContextRef<'_>, CallFlags) -> T) -> T {
        let flags = if self.context.traceparent.is_empty() {
            CallFlags::empty()
        } else {
            CallFlags::TRACED
        };
        serve(CallContextObj_TO::from_ptr(self, TD_Opaque), flags)
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
