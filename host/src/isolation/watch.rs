//! What the watcher of one worker checks (`monitor`): the deadlines of calls their
//! callers gave up on, the deadline of a stop, its memory limit, how long it may idle and
//! how long one write to it has taken.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex, MutexGuard};

/// How often the RSS of a worker with a memory limit is read.
const MEMORY_TICK: Duration = Duration::from_millis(20);

/// What the watcher of one worker checks.
pub(crate) struct Watch {
    /// Requests abandoned by their callers: (request, kill deadline, why).
    deadlines: Mutex<Vec<Deadline>>,
    /// When a worker asked to stop is killed if it has not exited.
    stop_deadline: Mutex<Option<Instant>>,
    wake: Condvar,
    memory_limit: Option<u64>,
    min_idle: Duration,
    /// When the write under way began, in nanoseconds after `born` (0: none is).
    writing_since: AtomicU64,
    born: Instant,
    /// How long one write may take (`[timeouts] worker_unread`).
    unread_limit: Duration,
}

/// A request abandoned by its caller: its id, when its worker is killed, and why.
pub(super) type Deadline = (u64, Instant, String);

impl Watch {
    pub(super) fn new(
        memory_limit: Option<u64>,
        min_idle: Duration,
        unread_limit: Duration,
    ) -> Self {
        Self {
            deadlines: Mutex::default(),
            stop_deadline: Mutex::default(),
            wake: Condvar::new(),
            memory_limit,
            min_idle,
            writing_since: AtomicU64::new(0),
            born: Instant::now(),
            unread_limit,
        }
    }

    /// A write to the worker begins: two stores a write, no wake-up (the watcher looks
    /// on its own rounds, at least once a second).
    pub(super) fn write_begins(&self) {
        let since = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.writing_since.store(since.max(1), Ordering::Relaxed);
    }

    /// The write under way ended.
    pub(super) fn write_ends(&self) {
        self.writing_since.store(0, Ordering::Relaxed);
    }

    /// Whether one write has taken longer than `worker_unread`: a worker that reads
    /// nothing, or reads a little now and then (which keeps a socket's own timeout from
    /// ever firing) while the host's writer, and every call behind it, waits.
    pub(super) fn write_overdue(&self) -> bool {
        let since = self.writing_since.load(Ordering::Relaxed);
        let now = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        since != 0 && Duration::from_nanos(now.saturating_sub(since)) > self.unread_limit
    }

    /// Kill the worker at `at` unless request `req` is answered by then.
    pub(super) fn deadline(&self, req: u64, at: Instant, why: String) {
        self.deadlines.lock().push((req, at, why));
        self.wake.notify_one();
    }

    /// Kill the worker at `at` if it has not exited by then.
    pub(super) fn stop_deadline(&self, at: Instant) {
        let mut deadline = self.stop_deadline.lock();
        if deadline.is_none_or(|d| at < d) {
            *deadline = Some(at);
        }
        drop(deadline);
        self.wake.notify_one();
    }

    /// Wakes the watcher (the worker ended).
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The abandoned requests' deadlines.
    pub(super) fn deadlines(&self) -> MutexGuard<'_, Vec<Deadline>> {
        self.deadlines.lock()
    }

    /// Whether the worker was asked to stop and its time to exit has passed.
    pub(super) fn stop_overdue(&self) -> bool {
        self.stop_deadline
            .lock()
            .is_some_and(|at| at <= Instant::now())
    }

    /// The RSS past which the worker is killed.
    pub(super) fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// How long the worker may go without calls before it is stopped.
    pub(super) fn min_idle(&self) -> Duration {
        self.min_idle
    }

    /// Waits at most `pause`, or until woken.
    pub(super) fn pause(&self, pause: Duration) {
        let mut deadlines = self.deadlines.lock();
        self.wake.wait_for(&mut deadlines, pause);
    }

    /// Waits until the next check is due.
    pub(super) fn sleep(&self) {
        let mut deadlines = self.deadlines.lock();
        let mut next = Instant::now()
            + self
                .min_idle
                .clamp(Duration::from_millis(50), Duration::from_secs(1));
        if self.memory_limit.is_some() {
            next = next.min(Instant::now() + MEMORY_TICK);
        }
        if let Some(first) = deadlines.iter().map(|(_, at, _)| *at).min() {
            next = next.min(first);
        }
        if let Some(stop) = *self.stop_deadline.lock() {
            next = next.min(stop);
        }
        self.wake.wait_until(&mut deadlines, next);
    }
}
