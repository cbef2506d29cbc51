//! One watcher thread per worker: it kills the worker when a call its caller gave up on
//! is still unanswered after the grace period, when its RSS passes its memory limit, when
//! one write to it has taken longer than `worker_unread`, and stops it when it has been
//! idle for `min_idle`. One thread per worker, however many
//! calls hang: the host's thread count stays bounded.

use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use super::process::WorkerProcess;
use crate::util::format_bytes;

/// Starts the watcher of `worker`; it ends with the worker.
pub(super) fn start(worker: &Arc<WorkerProcess>) {
    let weak = Arc::downgrade(worker);
    let started = std::thread::Builder::new()
        .name(format!("worker-{}-watch", worker.pid))
        .spawn(move || watch(&weak));
    if let Err(err) = started {
        tracing::error!(pid = worker.pid, error = %err, "cannot start the worker's watcher; its memory limit and hung calls go unchecked");
    }
}

fn watch(weak: &Weak<WorkerProcess>) {
    let mut kills = KillRetry::default();
    let mut memory = MemoryPace::default();
    loop {
        let Some(worker) = weak.upgrade() else { return };
        if worker.has_exited() {
            return;
        }
        if worker.was_killed() {
            // Whatever it did to its process group, it is killed again, not in a loop.
            kills.again(&worker);
            continue;
        }
        let stop_overdue = worker.watch.stop_overdue();
        if stop_overdue {
            worker.kill("it did not exit in time after it was asked to stop");
        } else if worker.watch.write_overdue() {
            worker.end_overdue_write();
        } else if let Some(why) = overdue(&worker).or_else(|| memory.over(&worker)) {
            worker.kill(&why);
        } else if worker.watch.min_idle() > Duration::ZERO
            && worker.idle_for() >= worker.watch.min_idle()
            && worker.retire_if_idle(&format!(
                "it was stopped after {:?} without calls (min_idle)",
                worker.watch.min_idle()
            ))
        {
            tracing::info!(plugin = %worker.plugin, pid = worker.pid, "idle worker stopped");
        }
        // Holding the worker while asleep is fine: the watcher ends when the process
        // does, and a stopped process that does not end is killed at its stop deadline.
        worker.watch.sleep();
    }
}

/// A killed worker that has not ended yet is killed again, at growing intervals, and
/// said once to be stuck: never a tight loop, never a line per attempt.
#[derive(Default)]
struct KillRetry {
    since: Option<Instant>,
    interval: Duration,
    reported: bool,
}

impl KillRetry {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(1);
    const REPORT_AFTER: Duration = Duration::from_secs(5);

    fn again(&mut self, worker: &WorkerProcess) {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.interval = (self.interval * 2).clamp(Self::FIRST, Self::MAX);
        worker.watch.pause(self.interval);
        if worker.has_exited() {
            return;
        }
        worker.kill("it was killed and has not ended");
        if !self.reported && since.elapsed() >= Self::REPORT_AFTER {
            self.reported = true;
            tracing::error!(
                plugin = %worker.plugin,
                pid = worker.pid,
                "the worker has not ended {:?} after it was killed; the host keeps killing it every {:?}",
                Self::REPORT_AFTER,
                Self::MAX
            );
        }
    }
}

/// The reason to kill the worker if a call abandoned by its caller is still unanswered
/// past its deadline.
fn overdue(worker: &WorkerProcess) -> Option<String> {
    let now = Instant::now();
    let mut deadlines = worker.watch.deadlines();
    deadlines.retain(|(req, _, _)| worker.is_pending(*req));
    deadlines
        .iter()
        .find(|(_, at, _)| *at <= now)
        .map(|(_, _, why)| why.clone())
}

/// How often the watcher reads a worker's memory: every round while its tree of processes
/// is small, once in `n / PROCESSES_PER_ROUND` rounds for a tree of `n`, so that the reads
/// (a few files per process) cost the host about the same however many programs the
/// plugin starts.
#[derive(Default)]
struct MemoryPace {
    /// Rounds to let pass before the next read.
    skip: usize,
}

impl MemoryPace {
    /// The processes read in one round at most, on average.
    const PROCESSES_PER_ROUND: usize = 64;

    /// The reason to kill the worker if its RSS (with its programs') is past its limit.
    fn over(&mut self, worker: &WorkerProcess) -> Option<String> {
        let limit = worker.watch.memory_limit()?;
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let tree = crate::platform::rss_of_tree(worker.pid)?;
        self.skip = tree.processes / Self::PROCESSES_PER_ROUND;
        (tree.bytes > limit).then(|| {
            format!(
                "its RSS of {} passed its memory_limit of {}",
                format_bytes(tree.bytes),
                format_bytes(limit)
            )
        })
    }
}
