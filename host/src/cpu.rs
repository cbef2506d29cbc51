//! CPU time per component: what each call spends on the thread that runs it.
//!
//! In process, the call's own thread is read before and after (a clock read that is a
//! system call, so only for the sampled share of calls, scaled by the rate); isolated, the
//! worker reads its thread around every call (small beside the round trip) and sends the
//! figure with the answer, which the calling thread leaves here for the coordinator to
//! count exactly.
//!
//! A call with a CPU budget (`cpu_per_call`) is watched as it runs: its caller reads the
//! clock of the thread that runs it (in process), or its worker does and says when it is
//! over (isolated).

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::Duration,
};

use crate::platform::ThreadClock;

thread_local! {
    /// CPU time the last call made from this thread spent in a worker, not yet counted.
    static ELSEWHERE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Notes that the call this thread waited for spent `nanos` of CPU in a worker.
pub(crate) fn spent_elsewhere(nanos: u64) {
    ELSEWHERE.with(|cell| cell.set(Some(nanos)));
}

/// What [`spent_elsewhere`] noted since the last look, if anything.
pub(crate) fn take_spent_elsewhere() -> Option<u64> {
    ELSEWHERE.with(Cell::take)
}

/// CPU time this thread has used, in nanoseconds.
pub(crate) fn thread_nanos() -> u64 {
    crate::platform::thread_cpu_nanos()
}

/// One call's CPU budget, watched while the call runs.
#[derive(Debug)]
pub(crate) struct CpuBudget {
    limit: Duration,
    /// The clock of the thread that runs the call, and its reading when the call began.
    start: OnceLock<(ThreadClock, u64)>,
    /// The CPU time the call had used when its worker said it was over (0: not said).
    reported: AtomicU64,
}

impl CpuBudget {
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            limit,
            start: OnceLock::new(),
            reported: AtomicU64::new(0),
        }
    }

    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// The call begins on this thread: its clock is what the watcher reads.
    pub(crate) fn start_here(&self) {
        let Some(clock) = ThreadClock::current() else {
            return;
        };
        if let Some(now) = clock.nanos() {
            let _ = self.start.set((clock, now));
        }
    }

    /// The call's worker says it has used `nanos`, over its budget.
    pub(crate) fn report(&self, nanos: u64) {
        self.reported.fetch_max(nanos.max(1), Ordering::AcqRel);
    }

    /// The CPU time the call has used, once that is over its budget.
    pub(crate) fn overrun(&self) -> Option<Duration> {
        let here = self
            .start
            .get()
            .and_then(|(clock, start)| Some(clock.nanos()?.saturating_sub(*start)))
            .unwrap_or(0);
        let spent = Duration::from_nanos(here.max(self.reported.load(Ordering::Acquire)));
        (spent > self.limit).then_some(spent)
    }

    /// How often a watcher looks: an eighth of the budget, within 2 to 50 ms.
    pub(crate) fn period(&self) -> Duration {
        (self.limit / 8).clamp(Duration::from_millis(2), Duration::from_millis(50))
    }
}
