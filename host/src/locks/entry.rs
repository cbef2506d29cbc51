//! One named lock: an atomic owner word for the uncontended path, a FIFO queue of waiters
//! for the rest, and its statistics as atomics.
//!
//! The owner word is 0 when the lock is free, else the owning holder's id, with
//! [`WAITERS`] set while anyone queues. A free lock is taken with one compare-exchange; a
//! release with nobody queued is one compare-exchange back to 0. With waiters queued, a
//! release hands the lock straight to the first of them (the word goes from one holder's
//! id to the next without passing 0), so a newcomer can never overtake the queue.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::Thread,
    time::Instant,
};

use parking_lot::Mutex;

/// Set in the owner word while waiters are queued.
pub(super) const WAITERS: u64 = 1 << 63;

/// How a queued waiter is woken once the lock is handed to it.
pub(super) enum Notify {
    Async(tokio::sync::oneshot::Sender<()>),
    Sync {
        thread: Thread,
        granted: Arc<AtomicBool>,
    },
}

impl Notify {
    /// Wakes the waiter; false if it is gone (its future was dropped).
    pub(super) fn wake(self) -> bool {
        match self {
            Self::Async(sender) => sender.send(()).is_ok(),
            Self::Sync { thread, granted } => {
                granted.store(true, Ordering::Release);
                thread.unpark();
                true
            }
        }
    }
}

pub(super) struct Waiter {
    pub(super) holder: u64,
    pub(super) since: Instant,
    pub(super) notify: Notify,
}

/// Counters of one lock, updated without a lock: the owner's with plain stores, the
/// others (contention, timeouts, refusals) with atomic adds.
#[derive(Default)]
pub(super) struct EntryStats {
    pub(super) acquisitions: AtomicU64,
    pub(super) contentions: AtomicU64,
    pub(super) wait_ns: AtomicU64,
    pub(super) max_wait_ns: AtomicU64,
    pub(super) hold_ns: AtomicU64,
    pub(super) max_hold_ns: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) order_violations: AtomicU64,
    pub(super) deadlocks: AtomicU64,
}

impl EntryStats {
    pub(super) fn add_wait(&self, ns: u64) {
        self.wait_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_wait_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Adds a completed hold. Called by the owner before it frees the lock, so no other
    /// thread writes these meanwhile.
    pub(super) fn add_hold(&self, ns: u64) {
        let total = self.hold_ns.load(Ordering::Relaxed);
        self.hold_ns.store(total + ns, Ordering::Relaxed);
        if ns > self.max_hold_ns.load(Ordering::Relaxed) {
            self.max_hold_ns.store(ns, Ordering::Relaxed);
        }
    }
}

/// One interned lock.
pub(super) struct LockEntry {
    /// Index in the manager's table of locks.
    pub(super) id: u32,
    pub(super) name: Arc<str>,
    /// Position in the configured order, if listed.
    pub(super) rank: Option<usize>,
    /// The owner word: 0 free, else the holder id (| [`WAITERS`]).
    owner: AtomicU64,
    /// When the current owner took it, in nanoseconds since the manager's epoch, if this
    /// hold is one of the timed ones; 0 if not.
    pub(super) since_ns: AtomicU64,
    pub(super) queue: Mutex<VecDeque<Waiter>>,
    pub(super) stats: EntryStats,
}

impl LockEntry {
    pub(super) fn new(id: u32, name: &str, rank: Option<usize>) -> Self {
        Self {
            id,
            name: Arc::from(name),
            rank,
            owner: AtomicU64::new(0),
            since_ns: AtomicU64::new(0),
            queue: Mutex::default(),
            stats: EntryStats::default(),
        }
    }

    /// The owning holder's id, if any.
    pub(super) fn owner(&self) -> Option<u64> {
        match self.owner.load(Ordering::Acquire) & !WAITERS {
            0 => None,
            id => Some(id),
        }
    }

    /// Takes the lock if it is free and nobody queues: the whole uncontended acquire.
    #[inline]
    pub(super) fn try_take(&self, holder: u64) -> bool {
        self.owner
            .compare_exchange(0, holder, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Frees the lock if nobody queues: the whole uncontended release.
    #[inline]
    pub(super) fn try_free(&self, holder: u64) -> bool {
        self.owner
            .compare_exchange(holder, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// Marks that a waiter is about to queue. Call with the queue locked.
    pub(super) fn mark_waiters(&self) {
        self.owner.fetch_or(WAITERS, Ordering::AcqRel);
    }

    /// Takes the lock while the queue is locked and empty, if it has become free.
    pub(super) fn take_if_free_locked(&self, holder: u64) -> bool {
        self.owner
            .compare_exchange(WAITERS, holder, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            || self.try_take(holder)
    }

    /// Sets the owner word with the queue locked: the next owner (or 0), with
    /// [`WAITERS`] if anyone is still queued.
    pub(super) fn set_owner_locked(&self, holder: u64, queued: bool) {
        let word = if queued { holder | WAITERS } else { holder };
        self.owner.store(word, Ordering::Release);
    }

    /// Clears [`WAITERS`] once the queue is empty. Call with the queue locked.
    pub(super) fn clear_waiters_locked(&self) {
        self.owner.fetch_and(!WAITERS, Ordering::AcqRel);
    }
}
