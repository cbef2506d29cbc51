//! Holders and guards: who takes a lock, and the acquire and release paths.
//!
//! A [`Holder`] is one acquisition identity (a call, a task, a thread) with an id of its
//! own; two holders never share a lock, however they are labelled.
//!
//! The uncontended path, a holder holding nothing taking a free lock, is two
//! compare-exchanges and a counter: the holder's count (0 to 1) and the lock's owner word
//! (0 to the holder's id). No mutex, no clock read (hold times are timed for a sampled
//! share of holds), no reference count when the guard borrows its holder and lock.
//! Everything else (a second lock, a busy one) takes the slow path, where internal
//! locks are always taken in one order: the holder's list, the manager's graph, the
//! lock's queue.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{
    entry::{LockEntry, Notify},
    queue::{abandon, begin, granted_to, release, Begin, HolderState},
    LockError, LockRef, Shared,
};

/// One acquisition identity: a call, a task or a thread. Locks it takes belong to it and
/// to nothing else: another holder with the same label still queues behind it. Cheap to
/// clone; clones are the same holder, so use one from one flow of control at a time.
#[derive(Clone)]
pub struct Holder {
    pub(super) state: Arc<HolderState>,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("id", &self.state.id)
            .field("label", &self.state.label)
            .finish()
    }
}

/// What a guard holds on to: borrowed from the caller, or its own.
enum Refs<'a> {
    Borrowed {
        holder: &'a Holder,
        lock: &'a LockRef,
    },
    Owned {
        holder: Holder,
        lock: LockRef,
    },
}

/// A held lock. Released when dropped, or explicitly with [`LockGuard::release`].
///
/// A guard from [`Holder`] borrows its holder and lock handle; [`Self::into_owned`] (or
/// the [`super::LockManager`] shortcuts) gives a `LockGuard<'static>` to keep anywhere.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    refs: Refs<'a>,
    released: bool,
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.name())
            .field("holder", &self.holder())
            .finish()
    }
}

impl<'a> LockGuard<'a> {
    fn parts(&self) -> (&HolderState, &LockEntry) {
        match &self.refs {
            Refs::Borrowed { holder, lock } => (&holder.state, &lock.entry),
            Refs::Owned { holder, lock } => (&holder.state, &lock.entry),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.parts().1.name
    }

    /// The holder's label.
    pub fn holder(&self) -> &str {
        &self.parts().0.label
    }

    /// The same guard, owning its holder and lock handle.
    pub fn into_owned(mut self) -> LockGuard<'static> {
        let refs = match &self.refs {
            Refs::Borrowed { holder, lock } => Refs::Owned {
                holder: (*holder).clone(),
                lock: (*lock).clone(),
            },
            Refs::Owned { holder, lock } => Refs::Owned {
                holder: holder.clone(),
                lock: lock.clone(),
            },
        };
        self.released = true;
        LockGuard {
            refs,
            released: false,
        }
    }

    /// Releases the lock now.
    ///
    /// # Errors
    ///
    /// Never today; kept fallible for holders that may lose a lock to the host.
    pub fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        let (holder, entry) = self.parts();
        release(holder, entry);
        Ok(())
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let (holder, entry) = self.parts();
            release(holder, entry);
        }
    }
}

impl Holder {
    pub(super) fn new(manager: Arc<Shared>, label: Arc<str>) -> Self {
        let id = manager.next_holder.fetch_add(1, Ordering::Relaxed);
        manager.labels.lock().insert(id, Arc::clone(&label));
        Self {
            state: Arc::new(HolderState {
                id,
                label,
                manager,
                count: AtomicU32::new(0),
                first: AtomicU64::new(0),
                rest: Mutex::new(Vec::new()),
            }),
        }
    }

    /// This holder's id, unique in its manager.
    pub fn id(&self) -> u64 {
        self.state.id
    }

    /// This holder's label, as shown in statistics and errors.
    pub fn label(&self) -> &str {
        &self.state.label
    }

    /// Takes `lock`, waiting up to its configured timeout.
    ///
    /// # Errors
    ///
    /// [`LockError`]: deadlock or order violation (at once), timeout, re-entry.
    pub async fn acquire<'a>(&'a self, lock: &'a LockRef) -> Result<LockGuard<'a>, LockError> {
        let timeout = self.state.manager.timeout_of(&lock.entry.name);
        self.acquire_timeout(lock, timeout).await
    }

    /// Takes `lock`, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Self::acquire`].
    pub async fn acquire_timeout<'a>(
        &'a self,
        lock: &'a LockRef,
        timeout: Duration,
    ) -> Result<LockGuard<'a>, LockError> {
        let entry = &lock.entry;
        let mut receiver = None;
        let notify = || {
            let (sender, rx) = tokio::sync::oneshot::channel();
            receiver = Some(rx);
            Notify::Async(sender)
        };
        if let Begin::Acquired = begin(&self.state, entry, notify)? {
            return Ok(guard(self, lock));
        }
        let Some(receiver) = receiver else {
            unreachable!("a queued waiter has a channel")
        };
        let mut pending = PendingWait {
            holder: &self.state,
            entry,
            armed: true,
        };
        let started = Instant::now();
        let granted = tokio::time::timeout(timeout, receiver)
            .await
            .is_ok_and(|r| r.is_ok());
        pending.armed = false;
        self.finish_wait(lock, granted, started.elapsed())
    }

    /// Takes `lock` from synchronous code (a plugin's thread), blocking up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Self::acquire`].
    pub fn acquire_blocking<'a>(
        &'a self,
        lock: &'a LockRef,
        timeout: Duration,
    ) -> Result<LockGuard<'a>, LockError> {
        static NEVER: AtomicBool = AtomicBool::new(false);
        self.acquire_blocking_unless(lock, timeout, &NEVER)
    }

    /// As [`Self::acquire_blocking`], but a wait ends as a timeout as soon as `give_up`
    /// is set and the waiting thread unparked (for a worker that ended while its request
    /// waited, on a thread of the host's).
    ///
    /// # Errors
    ///
    /// As [`Self::acquire`].
    pub(crate) fn acquire_blocking_unless<'a>(
        &'a self,
        lock: &'a LockRef,
        timeout: Duration,
        give_up: &AtomicBool,
    ) -> Result<LockGuard<'a>, LockError> {
        let entry = &lock.entry;
        // The flag is made only when the lock is contended.
        let mut granted = None;
        let notify = || {
            let flag = Arc::new(AtomicBool::new(false));
            granted = Some(Arc::clone(&flag));
            Notify::Sync {
                thread: std::thread::current(),
                granted: flag,
            }
        };
        if let Begin::Acquired = begin(&self.state, entry, notify)? {
            return Ok(guard(self, lock));
        }
        let Some(granted) = granted else {
            unreachable!("a queued waiter has a flag")
        };
        let started = Instant::now();
        wait_for_grant(&granted, started + timeout, give_up);
        self.finish_wait(lock, granted.load(Ordering::Acquire), started.elapsed())
    }

    fn finish_wait<'a>(
        &'a self,
        lock: &'a LockRef,
        granted: bool,
        waited: Duration,
    ) -> Result<LockGuard<'a>, LockError> {
        let entry = &lock.entry;
        // A hand-over can race the timeout; whoever owns the lock now decides.
        if granted || abandon(&self.state, entry, true) {
            granted_to(&self.state, entry);
            return Ok(guard(self, lock));
        }
        let manager = &self.state.manager;
        Err(LockError::Timeout {
            lock: entry.name.to_string(),
            waited,
            held_by: entry.owner().map(|id| manager.label_of(id)),
        })
    }
}

fn guard<'a>(holder: &'a Holder, lock: &'a LockRef) -> LockGuard<'a> {
    LockGuard {
        refs: Refs::Borrowed { holder, lock },
        released: false,
    }
}

/// Yields for a while (a hand-over to a waiter that is still runnable is far cheaper
/// than waking a parked one, and yielding, unlike spinning, lets the owner run when
/// threads outnumber cores), then parks until granted or `deadline`.
fn wait_for_grant(granted: &AtomicBool, deadline: Instant, give_up: &AtomicBool) {
    for _ in 0..YIELDS_BEFORE_PARKING {
        if granted.load(Ordering::Acquire) || Instant::now() >= deadline {
            return;
        }
        std::thread::yield_now();
    }
    while !granted.load(Ordering::Acquire) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || give_up.load(Ordering::Acquire) {
            return;
        }
        std::thread::park_timeout(left);
    }
}

/// How often a blocked waiter yields before it parks.
const YIELDS_BEFORE_PARKING: u32 = 256;

/// Cleans up a queued wait if the waiting future is dropped (cancelled) mid-wait.
struct PendingWait<'a> {
    holder: &'a HolderState,
    entry: &'a Arc<LockEntry>,
    armed: bool,
}

impl Drop for PendingWait<'_> {
    fn drop(&mut self) {
        if self.armed && abandon(self.holder, self.entry, false) {
            // Handed over as the future was dropped: record it, then pass it on.
            granted_to(self.holder, self.entry);
            release(self.holder, self.entry);
        }
    }
}
