//! A worker's end: the host ending it (kill, stop, retire when idle, drain when replaced),
//! the kernel saying it ended, and what becomes of its requests and services then.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use super::{process::WorkerProcess, requests::Waiter};
use crate::{
    context::PluginHostContext,
    fault::{FaultKind, WorkerFault},
};

impl WorkerProcess {
    /// How long since the host last sent it a request.
    pub(super) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    pub(super) fn fault(&self, reason: &str) -> WorkerFault {
        WorkerFault {
            plugin: self.plugin.clone(),
            pid: Some(self.pid),
            reason: reason.to_owned(),
            kind: FaultKind::Died,
        }
    }

    pub(super) fn note_ending(&self, why: &str) {
        let mut ending = self.ending.lock();
        if ending.is_none() {
            *ending = Some(why.to_owned());
        }
    }

    /// Kills the worker now (SIGKILL), with everything it started, saying why. Logged
    /// once; a kill asked for again is sent again, quietly.
    pub(crate) fn kill(&self, why: &str) {
        self.note_ending(why);
        self.requests.lock().accepting = false;
        let _life = self.life.lock();
        if !self.has_exited() {
            if !self.killed.swap(true, Ordering::AcqRel) {
                tracing::warn!(plugin = %self.plugin, pid = self.pid, "killing the worker: {why}");
            }
            self.process.kill_group();
        }
    }

    /// Whether the host has killed it (it may not have ended yet).
    pub(super) fn was_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// The worker broke the protocol (a frame that does not decode, is too large, or
    /// answers what was not asked): nothing it says can be trusted any more, so it is
    /// killed at once and its calls fail with `worker_protocol`.
    pub(super) fn breach(&self, what: &str) {
        if self.has_exited() {
            return;
        }
        self.broke_protocol
            .lock()
            .get_or_insert_with(|| what.to_owned());
        self.kill(&format!("it broke the protocol: {what}"));
    }

    /// The worker's end of the socket closed. When the worker exits, that comes just
    /// before the kernel says so; a worker that closes it and stays has broken the
    /// protocol.
    pub(super) fn hung_up(&self) {
        if self.ending.lock().is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while !self.has_exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.breach("it closed its end of the socket and kept running");
    }

    /// Waits for the kernel to say the worker ended, kills what it left in its group,
    /// reaps it and ends it here.
    pub(super) fn reap(&self) {
        let status = self.process.wait();
        {
            let _life = self.life.lock();
            // Its descendants go with it; the group is still named by the unreaped pid.
            self.process.kill_group();
            self.exited.store(true, Ordering::Release);
        }
        self.process.reap();
        let status = status.map_or_else(
            |err| format!("ended ({err})"),
            crate::platform::describe_status,
        );
        self.ended(&status);
    }

    /// Asks the worker to stop: it takes no new request, drops its instances and exits.
    /// Requests in flight get a fault if it ends before answering them.
    pub(crate) fn stop(&self, why: &str) {
        self.note_ending(why);
        self.requests.lock().accepting = false;
        self.writer.lock().shutdown();
        self.watch.stop_deadline(Instant::now() + self.stop_limit);
    }

    /// Stops it if nothing is in flight; returns whether it did.
    pub(super) fn retire_if_idle(&self, why: &str) -> bool {
        {
            let mut requests = self.requests.lock();
            if !requests.pending.is_empty() || !requests.accepting {
                return false;
            }
            requests.accepting = false;
        }
        // Counted before the stop: the worker may be gone, and unlisted, the moment it is
        // told to go, and whoever sees it gone must see its memory counted.
        let rss = crate::memory::rss_of(self.pid).unwrap_or(0);
        self.memory.record_reclaimed(rss);
        self.stop(why);
        true
    }

    /// Takes no new request; stops once those in flight are answered, or kills it after
    /// `limit`. For a worker replaced by a new one (an upgrade, a reload).
    pub(crate) fn drain(self: &Arc<Self>, limit: Duration, why: String) {
        self.requests.lock().accepting = false;
        let worker = Arc::clone(self);
        let drained = std::thread::Builder::new()
            .name(format!("worker-{}-drain", self.pid))
            .spawn(move || {
                let deadline = Instant::now() + limit;
                while worker.is_busy() && !worker.has_exited() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if worker.is_busy() {
                    worker.kill(&format!(
                        "{why}, and its calls did not finish within {limit:?}"
                    ));
                } else {
                    worker.stop(&why);
                }
            });
        if drained.is_err() {
            self.stop("it was replaced (the host could not wait for its calls)");
        }
    }

    /// Kills the worker once `grace` passed, unless request `req` is answered by then:
    /// its caller gave up on it.
    pub(crate) fn kill_unless_answered(&self, req: u64, grace: Duration, why: String) {
        self.watch.deadline(req, Instant::now() + grace, why);
    }

    /// The worker is gone, as the kernel says: fail what waits, say how it ended.
    pub(super) fn ended(&self, status: &str) {
        self.requests.lock().accepting = false;
        // Its requests that wait for a lock wait no longer (`exited` is set).
        for thread in self.waiting_for_locks.lock().values() {
            thread.unpark();
        }
        // What it wrote before it ended (answers, stream items) is still in the socket:
        // the reader hands it on first. Bounded, for a process it forked may hold the
        // socket open.
        if !self.reading.wait_done(Duration::from_millis(250)) {
            // Someone holds its end open: whoever reads it (a caller, maybe) sees the end.
            self.reading.stop();
        }
        let ending = self.ending.lock().clone();
        let reason = match &ending {
            Some(why) => format!("{status}: {why}"),
            None => format!("{status}; it crashed"),
        };
        *self.ended_as.lock() = Some(reason.clone());
        let mut fault = self.fault(&format!("ended ({reason})"));
        if self.broke_protocol.lock().is_some() {
            fault.kind = FaultKind::Protocol;
        }
        // Emptied under the lock that sends take: a request is either failed here or
        // never sent.
        let waiting: Vec<Waiter> = self
            .requests
            .lock()
            .pending
            .drain()
            .map(|(_, waiter)| waiter)
            .collect();
        self.watch.wake();
        for waiter in waiting {
            waiter.fail(fault.clone());
        }
        self.wake_followers();
        self.memory.untrack_process(self.pid);
        // Locks its code took through the contexts die with it.
        let contexts: Vec<PluginHostContext> =
            self.contexts.lock().drain().map(|(_, c)| c).collect();
        for context in contexts {
            context.release_all("its worker process ended");
        }
        self.metrics.lock().clear();
        if ending.is_some() {
            tracing::info!(plugin = %self.plugin, pid = self.pid, "worker {reason}");
        } else {
            tracing::error!(plugin = %self.plugin, pid = self.pid, "worker {reason}");
        }
    }
}
