//! A holder's state (the locks it holds) and the slow paths of taking and releasing a
//! lock, under its queue: re-entry, the global order, deadlock checks, queueing,
//! hand-over to the first waiter still listening, and the statistics of holds.

use std::{
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{
    entry::{LockEntry, Notify, Waiter},
    graph::Graph,
    LockError, OrderViolation, Shared,
};

/// One holder's state: its id and label, and the locks it holds.
pub(super) struct HolderState {
    pub(super) id: u64,
    pub(super) label: Arc<str>,
    pub(super) manager: Arc<Shared>,
    /// How many locks it holds.
    pub(super) count: AtomicU32,
    /// `id + 1` of the lock it took while holding nothing (the uncontended path); 0 if
    /// that lock is released.
    pub(super) first: AtomicU64,
    /// Every other lock it holds, in acquisition order.
    pub(super) rest: Mutex<Vec<Arc<LockEntry>>>,
}

impl Drop for HolderState {
    fn drop(&mut self) {
        self.manager.labels.lock().remove(&self.id);
    }
}

impl HolderState {
    /// Every lock held, in acquisition order. Call with `rest` locked.
    pub(super) fn held(&self, rest: &[Arc<LockEntry>]) -> Vec<Arc<LockEntry>> {
        let first = self.first.load(Ordering::Acquire);
        let mut held = Vec::with_capacity(rest.len() + 1);
        if first != 0 {
            if let Some(entry) = self.manager.entry_by_id(first - 1) {
                held.push(entry);
            }
        }
        held.extend(rest.iter().cloned());
        held
    }

    /// Records `entry` as held. Call with `rest` locked.
    pub(super) fn add_locked(&self, entry: &Arc<LockEntry>, rest: &mut Vec<Arc<LockEntry>>) {
        if self.first.load(Ordering::Acquire) == 0 {
            self.first.store(u64::from(entry.id) + 1, Ordering::Release);
        } else {
            rest.push(Arc::clone(entry));
        }
        let count = self.count.load(Ordering::Acquire);
        self.count.store(count + 1, Ordering::Release);
    }

    /// Records `entry` as released. Plain loads and stores on the uncontended path: a
    /// holder is one flow of control, never used from two threads at once.
    pub(super) fn remove(&self, entry: &LockEntry) {
        let id = u64::from(entry.id) + 1;
        if self.first.load(Ordering::Acquire) == id {
            self.first.store(0, Ordering::Release);
        } else {
            self.rest.lock().retain(|held| held.id != entry.id);
        }
        let count = self.count.load(Ordering::Acquire);
        self.count.store(count.saturating_sub(1), Ordering::Release);
    }
}

/// What `begin` did.
pub(super) enum Begin {
    Acquired,
    Queued,
}

/// Records a new hold of `entry`: counted, and timed if it is one of every
/// [`super::HOLD_SAMPLE_EVERY`] acquisitions of the lock.
#[inline]
fn took(manager: &Shared, entry: &LockEntry) {
    // Only the lock's owner writes these (a hand-over writes them before waking the new
    // owner), so plain loads and stores suffice.
    let count = entry.stats.acquisitions.load(Ordering::Relaxed);
    entry.stats.acquisitions.store(count + 1, Ordering::Relaxed);
    let since = if count.is_multiple_of(super::HOLD_SAMPLE_EVERY) {
        manager.now_ns().max(1)
    } else {
        0
    };
    entry.since_ns.store(since, Ordering::Relaxed);
}

/// Checks, then takes the lock or queues the holder.
#[inline]
pub(super) fn begin(
    holder: &HolderState,
    entry: &Arc<LockEntry>,
    notify: impl FnOnce() -> Notify,
) -> Result<Begin, LockError> {
    // The uncontended path: nothing held means no order to check (and nothing to
    // re-enter), and a free lock means nobody to wait for.
    if holder.count.load(Ordering::Acquire) == 0 && entry.try_take(holder.id) {
        holder
            .first
            .store(u64::from(entry.id) + 1, Ordering::Release);
        holder.count.store(1, Ordering::Release);
        took(&holder.manager, entry);
        return Ok(Begin::Acquired);
    }
    begin_slow(holder, entry, notify)
}

/// Everything but the uncontended path: re-entry, order, deadlock checks, the queue.
#[cold]
#[inline(never)]
fn begin_slow(
    holder: &HolderState,
    entry: &Arc<LockEntry>,
    notify: impl FnOnce() -> Notify,
) -> Result<Begin, LockError> {
    let manager = &holder.manager;
    if entry.owner() == Some(holder.id) {
        return Err(LockError::AlreadyHeld {
            lock: entry.name.to_string(),
            holder: holder.label.to_string(),
        });
    }
    let mut rest = holder.rest.lock();
    let held = holder.held(&rest);
    let mut graph = manager.graph.lock();
    check_order(holder, &graph, &held, entry)?;
    if entry.try_take(holder.id) {
        graph.record_edges(&held, entry, &holder.label);
        holder.add_locked(entry, &mut rest);
        took(manager, entry);
        return Ok(Begin::Acquired);
    }
    // About to block: only now is the wait-for graph consulted.
    if manager.settings.deadlock_detection {
        check_deadlock(holder, &graph, entry)?;
    }
    let mut queue = entry.queue.lock();
    entry.mark_waiters();
    if queue.is_empty() && entry.take_if_free_locked(holder.id) {
        drop(queue);
        graph.record_edges(&held, entry, &holder.label);
        holder.add_locked(entry, &mut rest);
        took(manager, entry);
        return Ok(Begin::Acquired);
    }
    queue.push_back(Waiter {
        holder: holder.id,
        since: Instant::now(),
        notify: notify(),
    });
    graph.waiting.insert(holder.id, Arc::clone(entry));
    entry.stats.contentions.fetch_add(1, Ordering::Relaxed);
    Ok(Begin::Queued)
}

/// Refuses (or, in warn mode, logs) taking `entry` while holding `held` against the
/// global order.
fn check_order(
    holder: &HolderState,
    graph: &Graph,
    held: &[Arc<LockEntry>],
    entry: &LockEntry,
) -> Result<(), LockError> {
    let Some(violation) = graph.order_violation(held, entry) else {
        return Ok(());
    };
    entry.stats.order_violations.fetch_add(1, Ordering::Relaxed);
    let error = LockError::OrderViolation {
        requested: entry.name.to_string(),
        held: violation.held,
        holder: holder.label.to_string(),
        first_seen: violation.first_seen,
    };
    match holder.manager.settings.on_violation {
        OrderViolation::Deny => Err(error),
        OrderViolation::Warn => {
            tracing::warn!("{error}");
            Ok(())
        }
    }
}

/// Refuses waiting for `entry` if that would close a wait-for cycle.
fn check_deadlock(
    holder: &HolderState,
    graph: &Graph,
    entry: &Arc<LockEntry>,
) -> Result<(), LockError> {
    let Some(cycle) = graph.wait_cycle(holder.id, entry) else {
        return Ok(());
    };
    entry.stats.deadlocks.fetch_add(1, Ordering::Relaxed);
    let manager = &holder.manager;
    let error = LockError::DeadlockDetected {
        lock: entry.name.to_string(),
        holder: holder.label.to_string(),
        cycle: cycle
            .into_iter()
            .map(|(lock, owner)| (lock.to_string(), manager.label_of(owner)))
            .collect(),
    };
    tracing::warn!("{error}");
    Err(error)
}

/// The lock was handed to a queued holder: record it as held.
pub(super) fn granted_to(holder: &HolderState, entry: &Arc<LockEntry>) {
    let mut rest = holder.rest.lock();
    let held = holder.held(&rest);
    if !held.is_empty() {
        holder
            .manager
            .graph
            .lock()
            .record_edges(&held, entry, &holder.label);
    }
    holder.add_locked(entry, &mut rest);
}

/// A queued holder gives up (timeout or cancellation). Returns true if the lock was
/// handed to it meanwhile, so it owns it now.
pub(super) fn abandon(holder: &HolderState, entry: &LockEntry, timed_out: bool) -> bool {
    let mut graph = holder.manager.graph.lock();
    let mut queue = entry.queue.lock();
    let before = queue.len();
    queue.retain(|w| w.holder != holder.id);
    if queue.len() == before {
        // Not queued any more: the lock was handed over.
        return entry.owner() == Some(holder.id);
    }
    graph.waiting.remove(&holder.id);
    if queue.is_empty() {
        entry.clear_waiters_locked();
    }
    if timed_out {
        entry.stats.timeouts.fetch_add(1, Ordering::Relaxed);
    }
    false
}

/// Releases `entry` held by `holder` and hands it to the first waiter still listening.
#[inline]
pub(super) fn release(holder: &HolderState, entry: &LockEntry) {
    let since = entry.since_ns.load(Ordering::Relaxed);
    if since != 0 {
        record_hold(holder, entry, since);
    }
    holder.remove(entry);
    if !entry.try_free(holder.id) {
        hand_over(holder, entry);
    }
}

/// Adds a timed hold to the statistics; warns past `max_hold`.
#[cold]
pub(super) fn record_hold(holder: &HolderState, entry: &LockEntry, since: u64) {
    let manager = &holder.manager;
    let held_for = manager.now_ns().saturating_sub(since);
    entry.stats.add_hold(held_for);
    if Duration::from_nanos(held_for) > manager.settings.max_hold {
        tracing::warn!(
            lock = %entry.name,
            holder = %holder.label,
            held_for = ?Duration::from_nanos(held_for),
            max_hold = ?manager.settings.max_hold,
            "lock was held longer than max_hold"
        );
    }
}

/// Hands a released lock to the first waiter still listening, or frees it.
#[cold]
#[inline(never)]
pub(super) fn hand_over(holder: &HolderState, entry: &LockEntry) {
    let manager = &holder.manager;
    let mut graph = manager.graph.lock();
    let mut queue = entry.queue.lock();
    if entry.owner() != Some(holder.id) {
        return;
    }
    while let Some(waiter) = queue.pop_front() {
        entry.set_owner_locked(waiter.holder, !queue.is_empty());
        graph.waiting.remove(&waiter.holder);
        let waited = u64::try_from(waiter.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Counted before the wake: from then on the new owner writes the statistics.
        took(manager, entry);
        if waiter.notify.wake() {
            entry.stats.add_wait(waited);
            return;
        }
        // The waiter vanished without cleaning up: undo, and try the next one.
        let count = entry.stats.acquisitions.load(Ordering::Relaxed);
        entry.stats.acquisitions.store(count - 1, Ordering::Relaxed);
    }
    entry.set_owner_locked(0, false);
}
