//! Shutdown: every ready component stopped, dependents before their dependencies,
//! independent ones concurrently, each instance dropped on the plugin executor under the
//! stop timeout.

use std::{
    collections::HashSet,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use super::{
    slot::{Slot, SlotState},
    Coordinator, ShutdownReport,
};
use crate::executor::PluginExecutor;

impl Coordinator {
    /// Stops every ready component: dependents before their dependencies, independent
    /// ones concurrently, each drop under `stop_timeout`. No component starts afterwards.
    pub async fn shutdown(&self, stop_timeout: Duration) -> ShutdownReport {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        // Open streams end now, each with what it buffered and then `shutting_down`:
        // their code is told to stop, so it does not hold the stop up. Before the calls
        // are cancelled: stream code that polls its request and returns when told would
        // otherwise end its stream as if it had finished, and its consumer could not tell
        // a stream cut short from a whole one.
        self.inner.streams.stop_all();
        // Every call in flight is cancelled: code that polls its request stops early, so
        // it does not hold the stop up.
        self.inner.services.stopping.store(true, Ordering::SeqCst);
        self.cancel_worker_calls();
        let slots = self.inner.slots.load_full();
        let mut remaining: HashSet<String> = slots
            .values()
            // Read under each slot's lock: an init either published before this (and is
            // stopped here) or sees the shutdown flag and never publishes.
            // Evicted instances still alive (held by a call, or dropping) count too.
            .filter(|slot| {
                let _state = slot.state.lock();
                slot.ready.load().is_some() || slot.info.is_busy()
            })
            .map(|slot| slot.name().to_owned())
            .collect();
        let mut report = ShutdownReport::default();
        while !remaining.is_empty() {
            // A component may stop once nothing still running depends on it.
            let wave: Vec<Arc<Slot>> = remaining
                .iter()
                .filter(|name| {
                    !remaining.iter().any(|other| {
                        slots[other.as_str()]
                            .spec()
                            .dependencies
                            .iter()
                            .any(|d| d == *name)
                    })
                })
                .map(|name| Arc::clone(&slots[name.as_str()]))
                .collect();
            let wave = if wave.is_empty() {
                // Unreachable while the graph is acyclic; stop everything rather than hang.
                remaining
                    .iter()
                    .map(|n| Arc::clone(&slots[n.as_str()]))
                    .collect()
            } else {
                wave
            };
            let stops = wave
                .iter()
                .map(|slot| stop_slot(&self.inner.executor, Arc::clone(slot), stop_timeout));
            for (name, finished) in futures::future::join_all(stops).await {
                remaining.remove(&name);
                if finished {
                    report.stopped.push(name);
                } else {
                    report.timed_out.push(name);
                }
            }
        }
        self.stop_workers();
        report
    }
}

/// Drops a slot's instance on the plugin executor; `(name, finished within timeout)`.
async fn stop_slot(
    executor: &PluginExecutor,
    slot: Arc<Slot>,
    stop_timeout: Duration,
) -> (String, bool) {
    let name = slot.name().to_owned();
    *slot.state.lock() = SlotState::Stopped;
    // Calls still running, or an earlier instance still dropping: wait for them too,
    // within the stop timeout.
    let ready = slot.swap_ready(None);
    let info = Arc::clone(&slot.info);
    let task = executor.spawn(move || drop(ready));
    let finished = tokio::time::timeout(stop_timeout, async {
        task.await;
        while info.is_busy() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok();
    if finished {
        tracing::info!(component = %name, "component stopped");
    } else {
        tracing::warn!(component = %name, limit = ?stop_timeout, "component did not stop in time; abandoned");
    }
    (name, finished)
}
