//! What a slot shares with every handle of its instances: the spec, the counters, and the
//! bulkhead that caps calls in flight.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;

use super::{spec::ComponentSpec, CallError};
use crate::metrics::{Counter, Histogram, Sampler};

/// Per-component instruments, cached in the slot so the call path records with plain
/// atomic operations: no map lookup, no lock.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) calls: Counter,
    /// CPU nanoseconds its calls spent (see [`crate::cpu`]).
    pub(crate) cpu_nanos: Counter,
    pub(crate) call_errors: Counter,
    pub(crate) call_timeouts: Counter,
    /// Calls abandoned for going over their CPU budget.
    pub(crate) cpu_overruns: Counter,
    pub(crate) inits: Counter,
    pub(crate) init_failures: Counter,
    /// Latency of the sampled share of calls, counted exactly as sampled (`calls` counts
    /// every call).
    pub(crate) call_latency: Histogram,
    pub(crate) init_duration: Histogram,
    pub(crate) sampler: Sampler,
    /// Microseconds the last successful init took.
    pub(crate) init_micros: AtomicU64,
    /// The coarse clock's milliseconds at the last use ([`crate::util::coarse_millis`]),
    /// plus one; 0 means never used.
    last_used: AtomicU64,
    /// Streams open now.
    pub(crate) streams_open: AtomicU64,
    /// Items and bytes its streams sent.
    pub(crate) stream_items: Counter,
    pub(crate) stream_bytes: Counter,
    /// How long its streams ran.
    pub(crate) stream_duration: Histogram,
}

impl Stats {
    pub(super) fn new(sampler: Sampler) -> Self {
        Self {
            calls: Counter::default(),
            cpu_nanos: Counter::default(),
            call_errors: Counter::default(),
            call_timeouts: Counter::default(),
            cpu_overruns: Counter::default(),
            inits: Counter::default(),
            init_failures: Counter::default(),
            call_latency: Histogram::default(),
            init_duration: Histogram::default(),
            sampler,
            init_micros: AtomicU64::new(0),
            last_used: AtomicU64::new(0),
            streams_open: AtomicU64::new(0),
            stream_items: Counter::default(),
            stream_bytes: Counter::default(),
            stream_duration: Histogram::default(),
        }
    }

    /// How long ago the component was last used, if ever.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        match self.last_used.load(Ordering::Relaxed) {
            0 => None,
            stamp => Some(Duration::from_millis(
                crate::util::coarse_millis().saturating_sub(stamp - 1),
            )),
        }
    }
}

/// How many calls of one component may run, and how many abandoned ones it tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallLimits {
    pub(crate) max_in_flight: usize,
    pub(crate) quarantine_after: usize,
    /// `[limits] max_reply`, in bytes.
    pub(crate) max_reply: u64,
}

/// A component's share of the plugin executor: calls in flight, and calls abandoned by
/// their callers (a timeout) that still run. Lock-free on the call path.
#[derive(Debug)]
pub(crate) struct Bulkhead {
    limits: CallLimits,
    in_flight: AtomicUsize,
    /// Abandoned calls still running, of every instance the component has had.
    abandoned: AtomicUsize,
    pub(crate) refused_saturated: Counter,
    pub(crate) refused_quarantined: Counter,
}

/// The abandoned calls of one instance that still run, by method. An instance with
/// `quarantine_after` of them is quarantined; the count is the instance's, so one that
/// replaces a hung instance (after an eviction, or a move to a worker) starts clean,
/// while the hung calls still hold their places in the component's bulkhead.
#[derive(Debug, Default)]
pub(crate) struct Hung {
    count: AtomicUsize,
    /// Method -> abandoned calls of it still running. At most `max_in_flight` entries.
    stuck: Mutex<BTreeMap<String, usize>>,
}

impl Hung {
    /// The abandoned calls of this instance still running.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The abandoned calls still running, by method.
    pub(crate) fn stuck_methods(&self) -> Vec<(String, usize)> {
        self.stuck
            .lock()
            .iter()
            .map(|(method, n)| (method.clone(), *n))
            .collect()
    }

    fn abandon(&self, method: &str) {
        *self.stuck.lock().entry(method.to_owned()).or_default() += 1;
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn returned(&self, method: &str) {
        let mut stuck = self.stuck.lock();
        if let Some(count) = stuck.get_mut(method) {
            *count -= 1;
            if *count == 0 {
                stuck.remove(method);
            }
        }
        drop(stuck);
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkhead {
    pub(super) fn new(limits: CallLimits) -> Self {
        Self {
            limits,
            in_flight: AtomicUsize::new(0),
            abandoned: AtomicUsize::new(0),
            refused_saturated: Counter::default(),
            refused_quarantined: Counter::default(),
        }
    }

    pub(crate) fn limits(&self) -> CallLimits {
        self.limits
    }

    /// Calls through the coordinator running now, abandoned ones included.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Calls abandoned by their callers that still run, of every instance.
    pub(crate) fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Whether an instance with these hung calls is quarantined.
    pub(crate) fn quarantines(&self, hung: &Hung) -> bool {
        hung.count() >= self.limits.quarantine_after
    }

    /// Admits one more call of the instance whose hung calls are `hung`, or says why not;
    /// the permit keeps the slot alive for as long as the call runs.
    pub(crate) fn enter(
        info: &Arc<SlotInfo>,
        hung: &Hung,
        method: &str,
    ) -> Result<CallPermit, CallError> {
        info.bulkhead.admit(&info.spec.name, hung, method)?;
        Ok(CallPermit {
            info: Arc::clone(info),
        })
    }

    /// As [`Self::enter`], for a call that runs on this thread while the caller holds
    /// the slot: a permit borrowed from it (no reference count to take and drop).
    #[inline]
    pub(crate) fn enter_here<'a>(
        info: &'a SlotInfo,
        hung: &Hung,
        method: &str,
    ) -> Result<HerePermit<'a>, CallError> {
        info.bulkhead.admit(&info.spec.name, hung, method)?;
        Ok(HerePermit {
            bulkhead: &info.bulkhead,
        })
    }

    /// Takes a place for one more call of component `component`, or says why not.
    #[inline]
    fn admit(&self, component: &str, hung: &Hung, method: &str) -> Result<(), CallError> {
        if self.quarantines(hung) {
            return Err(self.refuse_quarantined(component, hung, method));
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.limits.max_in_flight {
            return Err(self.refuse_saturated(component, method));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn refuse_quarantined(&self, component: &str, hung: &Hung, method: &str) -> CallError {
        self.refused_quarantined.inc();
        CallError::Quarantined {
            component: component.to_owned(),
            method: method.to_owned(),
            stuck: hung.stuck_methods(),
        }
    }

    #[cold]
    #[inline(never)]
    fn refuse_saturated(&self, component: &str, method: &str) -> CallError {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.refused_saturated.inc();
        CallError::Saturated {
            component: component.to_owned(),
            method: method.to_owned(),
            limit: self.limits.max_in_flight,
        }
    }

    /// A caller stopped waiting for a call of `method` of the instance whose hung calls
    /// are `hung`; the call still runs.
    pub(crate) fn abandon(&self, hung: &Hung, method: &str) {
        hung.abandon(method);
        self.abandoned.fetch_add(1, Ordering::AcqRel);
    }

    /// An abandoned call of `method` returned.
    pub(crate) fn returned(&self, hung: &Hung, method: &str) {
        hung.returned(method);
        self.abandoned.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One admitted call; leaving the bulkhead when dropped, which is when the call's code
/// returns (not when its caller stops waiting).
pub(crate) struct CallPermit {
    info: Arc<SlotInfo>,
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        self.info.bulkhead.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One admitted call running on the thread that holds its slot: leaves the bulkhead when
/// dropped.
pub(crate) struct HerePermit<'a> {
    bulkhead: &'a Bulkhead,
}

impl Drop for HerePermit<'_> {
    fn drop(&mut self) {
        self.bulkhead.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The immutable part of a slot, shared with every handle of its instances.
#[derive(Debug)]
pub(crate) struct SlotInfo {
    pub(crate) spec: ComponentSpec,
    pub(crate) stats: Stats,
    pub(crate) bulkhead: Bulkhead,
    /// Instances whose drop has begun and not finished.
    pub(crate) dropping: AtomicUsize,
    /// `[limits] max_reply`: the largest reply a call may return.
    pub(crate) max_reply: u64,
}

impl SlotInfo {
    /// Whether calls (through the coordinator or a handle) or an instance's drop still
    /// run: shutdown waits for them. (Handles an embedder holds do not count while
    /// nothing calls through them: they keep their instance as long as they like.)
    pub(crate) fn is_busy(&self) -> bool {
        self.bulkhead.in_flight() > 0 || self.dropping.load(Ordering::Acquire) > 0
    }

    /// Records a use: the coarse clock (one load), written only when it
    /// moved, so concurrent users of one component do not contend on the cache line.
    #[inline]
    pub(crate) fn touch(&self) {
        let stamp = crate::util::coarse_millis().saturating_add(1);
        if self.stats.last_used.load(Ordering::Relaxed) != stamp {
            self.stats.last_used.store(stamp, Ordering::Relaxed);
        }
    }
}
