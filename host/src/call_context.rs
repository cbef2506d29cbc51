//! What the host tells a component of the call it serves: its deadline, whether its
//! caller has gone, and the caller's trace (W3C `traceparent`/`tracestate`).
//!
//! A call made through the coordinator's call paths gets a [`CallToken`], shared by the
//! caller (whose abandonment, by timeout or by dropping its future, cancels it) and the
//! thread running the call (which lends it to the plugin for the call's duration). A call
//! made inline on a thread already serving one (a dependency call) inherits that call's
//! token. The coordinator's stop cancels every call at once through a flag every
//! instance's context shares, so a stop costs no registry of calls.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use abi_stable::{sabi_trait::TD_Opaque, std_types::RStr};
use plugin_api::ffi::{CallContextObj, CallContextObj_TO, CallContextRef, CallFlags};

use crate::cpu::CpuBudget;

/// How a caller wants a call made, beyond its method and input: its trace, and a
/// deadline sooner than the component's call timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    pub(crate) trace: Option<Trace>,
    pub(crate) deadline: Option<Instant>,
}

impl CallOptions {
    /// No trace, the component's own call timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The call belongs to the caller's trace: `traceparent` (W3C, version 00) and
    /// `tracestate` as received. An invalid `traceparent` is ignored (the call is then not
    /// traced), as the W3C specification asks.
    pub fn with_trace(mut self, traceparent: &str, tracestate: &str) -> Self {
        self.trace = Trace::parse(traceparent, tracestate);
        self
    }

    /// The caller stops waiting at `deadline` if that comes before the call timeout.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The trace the call carries, as its `traceparent` header.
    pub fn traceparent(&self) -> Option<&str> {
        self.trace.as_ref().map(|trace| trace.parent.as_str())
    }
}

/// A valid W3C trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trace {
    pub(crate) parent: String,
    pub(crate) state: String,
}

impl Trace {
    /// The trace context of these two headers, if `traceparent` is valid. A `tracestate`
    /// over 512 bytes (the specification's limit) is dropped.
    pub(crate) fn parse(traceparent: &str, tracestate: &str) -> Option<Self> {
        plugin_api::TraceContext::parse(traceparent, "")?;
        let state = if tracestate.len() <= 512 {
            tracestate
        } else {
            ""
        };
        Some(Self {
            parent: traceparent.to_owned(),
            state: state.to_owned(),
        })
    }
}

/// One call's context, shared by its caller and the thread that runs it.
#[derive(Debug)]
pub(crate) struct CallToken {
    cancelled: AtomicBool,
    /// The host's stop flag: a stop cancels every call.
    stopping: Arc<AtomicBool>,
    deadline: Option<Instant>,
    trace: Option<Trace>,
    /// `cpu_per_call`, watched as the call runs.
    cpu: Option<CpuBudget>,
    /// For what a worker's code asks of the host: the call it asks within (if any) and
    /// the worker's end; either cancels this one too.
    within: Option<Within>,
}

/// See [`CallToken::within`].
#[derive(Debug)]
struct Within {
    call: Option<Arc<CallToken>>,
    ended: Arc<AtomicBool>,
}

impl CallToken {
    /// The context of a call whose caller waits at most `limit` (or until the options'
    /// deadline, if sooner).
    pub(crate) fn new(
        options: &CallOptions,
        limit: Option<Duration>,
        stopping: &Arc<AtomicBool>,
    ) -> Self {
        Self::with_trace(options, options.trace.clone(), limit, stopping)
    }

    /// As [`Self::new`], with `trace` (the host's span for the call) in place of the
    /// caller's.
    pub(crate) fn with_trace(
        options: &CallOptions,
        trace: Option<Trace>,
        limit: Option<Duration>,
        stopping: &Arc<AtomicBool>,
    ) -> Self {
        let timeout = limit.and_then(|limit| Instant::now().checked_add(limit));
        let deadline = match (timeout, options.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            cancelled: AtomicBool::new(false),
            stopping: Arc::clone(stopping),
            deadline,
            trace,
            cpu: None,
            within: None,
        }
    }

    /// The context of what a worker's code asks of the host (a dependency call, say)
    /// within `call` (none: outside any call): `call`'s deadline and trace, cancelled
    /// when `call` is, when the worker ends (`ended` set) or the host stops (`stopping`),
    /// so nothing the host runs for a dead worker goes on unasked.
    pub(crate) fn for_worker(
        call: Option<Arc<CallToken>>,
        ended: &Arc<AtomicBool>,
        stopping: &Arc<AtomicBool>,
    ) -> Self {
        let parent = call.as_deref();
        Self {
            cancelled: AtomicBool::new(false),
            stopping: Arc::clone(stopping),
            deadline: parent.and_then(|p| p.deadline),
            trace: parent.and_then(|p| p.trace.clone()),
            cpu: None,
            within: Some(Within {
                call,
                ended: Arc::clone(ended),
            }),
        }
    }

    /// The call may use at most `budget` of CPU time (none: no budget).
    pub(crate) fn with_cpu_budget(mut self, budget: Option<Duration>) -> Self {
        self.cpu = budget.map(CpuBudget::new);
        self
    }

    /// Its CPU budget, if it has one.
    pub(crate) fn cpu(&self) -> Option<&CpuBudget> {
        self.cpu.as_ref()
    }

    /// The caller has gone: the call's code sees it from now on.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
            || self.stopping.load(Ordering::Relaxed)
            || self.within.as_ref().is_some_and(|within| {
                within.ended.load(Ordering::Acquire)
                    || within.call.as_ref().is_some_and(|call| call.is_cancelled())
            })
    }

    /// Time left until its deadline, if it has one.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    pub(crate) fn trace(&self) -> Option<&Trace> {
        self.trace.as_ref()
    }
}

/// What a plugin is lent for one call: the call's token (if it has one) and the host's
/// stop flag (a call with no token, made inline outside any call, sees the stop too).
struct CallView<'a> {
    token: Option<&'a CallToken>,
    stopping: &'a AtomicBool,
}

/// A stop flag that is never set, for instances that have no host services.
pub(crate) static NEVER_STOPS: AtomicBool = AtomicBool::new(false);

impl CallContextObj for CallView<'_> {
    fn remaining_nanos(&self) -> u64 {
        self.token
            .and_then(CallToken::remaining)
            .map_or(u64::MAX, |left| {
                u64::try_from(left.as_nanos()).unwrap_or(u64::MAX - 1)
            })
    }

    fn is_cancelled(&self) -> bool {
        self.stopping.load(Ordering::Relaxed) || self.token.is_some_and(CallToken::is_cancelled)
    }

    fn traceparent(&self) -> RStr<'_> {
        self.token
            .and_then(CallToken::trace)
            .map_or(RStr::from_str(""), |trace| RStr::from_str(&trace.parent))
    }

    fn tracestate(&self) -> RStr<'_> {
        self.token
            .and_then(CallToken::trace)
            .map_or(RStr::from_str(""), |trace| RStr::from_str(&trace.state))
    }
}

/// Lends the context of call `token` (its deadline, cancellation and trace; none outside
/// a call) to `serve`, as a component sees it, with what the plugin may know of it at
/// once; `stopping` is the host's stop flag.
#[inline(always)]
pub(crate) fn lend<T>(
    token: Option<&CallToken>,
    stopping: &AtomicBool,
    serve: impl FnOnce(CallContextRef<'_>, CallFlags) -> T,
) -> T {
    let flags = if token.is_some_and(|token| token.trace.is_some()) {
        CallFlags::TRACED
    } else {
        CallFlags::empty()
    };
    let view = CallView { token, stopping };
    serve(CallContextObj_TO::from_ptr(&view, TD_Opaque), flags)
}
