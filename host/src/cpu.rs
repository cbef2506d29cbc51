//! CPU time per component: what each call spends on the thread that runs it.
//!
//! In process, the call's own thread is read before and after (a clock read that is a
//! system call, so only for the sampled share of calls, scaled by the rate); isolated, the
//! worker reads its thread around every call (small beside the round trip) and sends the
//! figure with the answer, which the calling thread leaves here for the coordinator to
//! count exactly.

use std::cell::Cell;

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
