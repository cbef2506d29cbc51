//! Named locks with a global order, deadlock refusal, timeouts and statistics.
//!
//! The seed's lock manager sorted a lock list it never enforced and left ghost holders
//! after timeouts. Here every acquisition is checked against the global order (configured
//! ranks, then the order first observed, lockdep-style) and against the wait-for graph: an
//! acquire that would deadlock fails at once with the cycle, and is counted once. A waiter
//! that times out or is dropped leaves no edge and no holder behind.

mod error;
mod state;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::Serialize;

pub use self::error::LockError;
use self::state::{Begin, Notify, State};
use crate::config::{LocksConfig, OrderViolation};

/// Builds a [`LockManager`].
#[derive(Debug, Clone)]
pub struct LockManagerBuilder {
    order: Vec<String>,
    on_violation: OrderViolation,
    deadlock_detection: bool,
    default_timeout: Duration,
    max_hold: Duration,
    lock_timeouts: HashMap<String, Duration>,
}

impl Default for LockManagerBuilder {
    fn default() -> Self {
        Self::from_config(&LocksConfig::default())
    }
}

impl LockManagerBuilder {
    /// Settings from the `[locks]` config section.
    pub fn from_config(config: &LocksConfig) -> Self {
        Self {
            order: config.order.clone(),
            on_violation: config.on_order_violation,
            deadlock_detection: config.deadlock_detection,
            default_timeout: config.default_timeout,
            max_hold: config.max_hold,
            lock_timeouts: HashMap::new(),
        }
    }

    /// Lock names in their global order, first acquired first. Defaults to none.
    pub fn with_order<I: IntoIterator<Item = S>, S: Into<String>>(mut self, order: I) -> Self {
        self.order = order.into_iter().map(Into::into).collect();
        self
    }

    /// Refuse or only log out-of-order acquisitions. Defaults to [`OrderViolation::Deny`].
    pub fn with_order_violation(mut self, policy: OrderViolation) -> Self {
        self.on_violation = policy;
        self
    }

    /// Whether acquisitions that would deadlock are refused. Defaults to true.
    pub fn with_deadlock_detection(mut self, enabled: bool) -> Self {
        self.deadlock_detection = enabled;
        self
    }

    /// Acquire timeout for locks without their own. Defaults to 5 s.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Holding a lock longer than this is logged with its holder. Defaults to 30 s.
    pub fn with_max_hold(mut self, max_hold: Duration) -> Self {
        self.max_hold = max_hold;
        self
    }

    /// Acquire timeout for one lock. Defaults to the default timeout.
    pub fn with_lock_timeout(mut self, lock: impl Into<String>, timeout: Duration) -> Self {
        self.lock_timeouts.insert(lock.into(), timeout);
        self
    }

    /// The manager.
    pub fn build(self) -> LockManager {
        LockManager {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(&self.order)),
                settings: self,
                leaked: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }
}

struct Inner {
    state: Mutex<State>,
    settings: LockManagerBuilder,
    /// Locks released by the host because their holder ended without releasing them.
    leaked: std::sync::atomic::AtomicU64,
}

/// Named, ordered, deadlock-checked locks. Cheap to clone; clones share the lock table.
#[derive(Clone)]
pub struct LockManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LockManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockManager")
            .field("locks", &self.inner.state.lock().locks.len())
            .finish()
    }
}

impl Default for LockManager {
    fn default() -> Self {
        LockManagerBuilder::default().build()
    }
}

/// Statistics and current state of one lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockStats {
    /// The lock's name.
    pub name: String,
    /// Position in the configured order, if listed.
    pub rank: Option<usize>,
    /// Successful acquisitions.
    pub acquisitions: u64,
    /// Acquisitions that had to wait.
    pub contentions: u64,
    /// Total time spent waiting, in microseconds.
    pub total_wait_us: u64,
    /// Longest wait, in microseconds.
    pub max_wait_us: u64,
    /// Total time held, in microseconds (completed holds).
    pub total_hold_us: u64,
    /// Longest completed hold, in microseconds.
    pub max_hold_us: u64,
    /// Waits that timed out.
    pub timeouts: u64,
    /// Out-of-order acquisitions (refused or, in warn mode, logged).
    pub order_violations: u64,
    /// Acquisitions refused because they would deadlock.
    pub deadlocks: u64,
    /// Who holds it now.
    pub holder: Option<String>,
    /// Who waits for it, first in line first.
    pub waiters: Vec<String>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A held lock. Released when dropped, or explicitly with [`LockGuard::release`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    manager: LockManager,
    name: String,
    holder: String,
    token: u64,
    released: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.name)
            .field("holder", &self.holder)
            .finish()
    }
}

impl LockGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who holds it.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Releases the lock now.
    ///
    /// # Errors
    ///
    /// [`LockError::NotHeld`] if the lock was somehow released already.
    pub fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        self.manager.release(&self.name, &self.holder, self.token)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.manager.release(&self.name, &self.holder, self.token);
        }
    }
}

/// Cleans up a queued wait if the waiting future is dropped (cancelled) mid-wait.
struct PendingWait<'a> {
    manager: &'a LockManager,
    name: &'a str,
    holder: &'a str,
    token: u64,
    armed: bool,
}

impl Drop for PendingWait<'_> {
    fn drop(&mut self) {
        if self.armed {
            let handed_over = self.manager.inner.state.lock().abandon_wait(
                self.name,
                self.holder,
                self.token,
                false,
            );
            if handed_over {
                let _ = self.manager.release(self.name, self.holder, self.token);
            }
        }
    }
}

enum Prepared {
    Acquired(u64),
    Queued(u64),
}

impl LockManager {
    /// A manager with the documented defaults.
    pub fn builder() -> LockManagerBuilder {
        LockManagerBuilder::default()
    }

    /// Counts one lock released by the host because its holder (a call that returned or
    /// was abandoned, a dropped instance) never released it.
    pub(crate) fn record_leak(&self) {
        self.inner
            .leaked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Locks the host had to release for holders that ended without releasing them.
    pub fn leaked(&self) -> u64 {
        self.inner.leaked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The acquire timeout of `lock`.
    pub fn timeout_of(&self, lock: &str) -> Duration {
        let settings = &self.inner.settings;
        settings
            .lock_timeouts
            .get(lock)
            .copied()
            .unwrap_or(settings.default_timeout)
    }

    /// Takes `lock` for `holder`, waiting up to the lock's timeout.
    ///
    /// # Errors
    ///
    /// [`LockError`]: deadlock or order violation (at once), timeout, re-entry.
    pub async fn acquire(&self, lock: &str, holder: &str) -> Result<LockGuard, LockError> {
        self.acquire_timeout(lock, holder, self.timeout_of(lock))
            .await
    }

    /// Takes `lock` for `holder`, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Self::acquire`].
    pub async fn acquire_timeout(
        &self,
        lock: &str,
        holder: &str,
        timeout: Duration,
    ) -> Result<LockGuard, LockError> {
        // The channel is made only when the lock is contended.
        let mut receiver = None;
        let notify = || {
            let (sender, rx) = tokio::sync::oneshot::channel();
            receiver = Some(rx);
            Notify::Async(sender)
        };
        let token = match self.prepare(lock, holder, notify)? {
            Prepared::Acquired(token) => return Ok(self.guard(lock, holder, token)),
            Prepared::Queued(token) => token,
        };
        let receiver = receiver.expect("a queued waiter has a channel");
        let mut pending = PendingWait {
            manager: self,
            name: lock,
            holder,
            token,
            armed: true,
        };
        let started = Instant::now();
        let handed_over = tokio::time::timeout(timeout, receiver)
            .await
            .is_ok_and(|r| r.is_ok());
        pending.armed = false;
        self.finish_wait(lock, holder, token, handed_over, started.elapsed())
    }

    /// Takes `lock` from synchronous code (a plugin's thread), blocking up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Self::acquire`].
    pub fn acquire_blocking(
        &self,
        lock: &str,
        holder: &str,
        timeout: Duration,
    ) -> Result<LockGuard, LockError> {
        let mut receiver = None;
        let notify = || {
            let (sender, rx) = std::sync::mpsc::sync_channel(1);
            receiver = Some(rx);
            Notify::Sync(sender)
        };
        let token = match self.prepare(lock, holder, notify)? {
            Prepared::Acquired(token) => return Ok(self.guard(lock, holder, token)),
            Prepared::Queued(token) => token,
        };
        let receiver = receiver.expect("a queued waiter has a channel");
        let started = Instant::now();
        let handed_over = receiver.recv_timeout(timeout).is_ok();
        self.finish_wait(lock, holder, token, handed_over, started.elapsed())
    }

    /// Takes every lock in `locks`, in the global order, waiting for each up to its
    /// timeout. On failure the ones already taken are released.
    ///
    /// # Errors
    ///
    /// The first [`LockError`] met.
    pub async fn acquire_many(
        &self,
        locks: &[&str],
        holder: &str,
    ) -> Result<Vec<LockGuard>, LockError> {
        let order = self.global_order(locks);
        let mut guards = Vec::with_capacity(order.len());
        for lock in &order {
            guards.push(self.acquire(lock, holder).await?);
        }
        Ok(guards)
    }

    /// `locks` sorted in the global order: configured ranks, then the observed order.
    pub fn global_order(&self, locks: &[&str]) -> Vec<String> {
        self.inner.state.lock().global_order(locks)
    }

    fn guard(&self, name: &str, holder: &str, token: u64) -> LockGuard {
        LockGuard {
            manager: self.clone(),
            name: name.to_owned(),
            holder: holder.to_owned(),
            token,
            released: false,
        }
    }

    /// Checks and either takes the lock or queues the holder, all under one state lock.
    fn prepare(
        &self,
        lock: &str,
        holder: &str,
        notify: impl FnOnce() -> Notify,
    ) -> Result<Prepared, LockError> {
        if !crate::manifest::valid_name(lock) {
            return Err(LockError::InvalidName {
                lock: lock.to_owned(),
            });
        }
        let settings = &self.inner.settings;
        let mut state = self.inner.state.lock();
        if state.holds(holder, lock) {
            return Err(LockError::AlreadyHeld {
                lock: lock.to_owned(),
                holder: holder.to_owned(),
            });
        }
        if let Some(violation) = state.order_violation(holder, lock) {
            state
                .locks
                .entry(lock.to_owned())
                .or_default()
                .stats
                .order_violations += 1;
            let error = LockError::OrderViolation {
                requested: lock.to_owned(),
                held: violation.held,
                holder: holder.to_owned(),
                first_seen: violation.first_seen,
            };
            match settings.on_violation {
                OrderViolation::Deny => return Err(error),
                OrderViolation::Warn => tracing::warn!("{error}"),
            }
        }
        if settings.deadlock_detection && state.owner(lock).is_some() {
            if let Some(cycle) = state.wait_cycle(holder, lock) {
                state
                    .locks
                    .entry(lock.to_owned())
                    .or_default()
                    .stats
                    .deadlocks += 1;
                let error = LockError::DeadlockDetected {
                    lock: lock.to_owned(),
                    holder: holder.to_owned(),
                    cycle,
                };
                tracing::warn!("{error}");
                return Err(error);
            }
        }
        Ok(match state.begin(lock, holder, notify) {
            Begin::Acquired(token) => Prepared::Acquired(token),
            Begin::Queued(token) => Prepared::Queued(token),
        })
    }

    fn finish_wait(
        &self,
        lock: &str,
        holder: &str,
        token: u64,
        handed_over: bool,
        waited: Duration,
    ) -> Result<LockGuard, LockError> {
        let mut state = self.inner.state.lock();
        // A hand-over can race the timeout; whoever owns the lock now decides.
        if handed_over || state.abandon_wait(lock, holder, token, true) {
            drop(state);
            return Ok(self.guard(lock, holder, token));
        }
        Err(LockError::Timeout {
            lock: lock.to_owned(),
            waited,
            held_by: state.owner(lock).map(str::to_owned),
        })
    }

    fn release(&self, lock: &str, holder: &str, token: u64) -> Result<(), LockError> {
        let held_for = self.inner.state.lock().release(lock, holder, token)?;
        if held_for > self.inner.settings.max_hold {
            tracing::warn!(
                lock,
                holder,
                held_for = ?held_for,
                max_hold = ?self.inner.settings.max_hold,
                "lock was held longer than max_hold"
            );
        }
        Ok(())
    }

    /// Locks held longer than `max_hold` right now: `(lock, holder, held for)`.
    pub fn long_holds(&self) -> Vec<(String, String, Duration)> {
        let state = self.inner.state.lock();
        let mut names: Vec<&String> = state.locks.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| {
                let (holder, held_for) = state.snapshot(name)?.owner?;
                (held_for > self.inner.settings.max_hold).then(|| (name.clone(), holder, held_for))
            })
            .collect()
    }

    /// The wait-for graph's edges now: `(holder, lock it waits for)`.
    pub fn waits(&self) -> Vec<(String, String)> {
        self.inner.state.lock().waits()
    }

    /// Statistics of every lock seen so far, sorted by name.
    pub fn stats(&self) -> Vec<LockStats> {
        let state = self.inner.state.lock();
        let mut names: Vec<&String> = state.locks.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| {
                let snapshot = state.snapshot(name)?;
                let raw = snapshot.stats;
                Some(LockStats {
                    name: name.clone(),
                    rank: state.ranks.get(name).copied(),
                    acquisitions: raw.acquisitions,
                    contentions: raw.contentions,
                    total_wait_us: micros(raw.total_wait),
                    max_wait_us: micros(raw.max_wait),
                    total_hold_us: micros(raw.total_hold),
                    max_hold_us: micros(raw.max_hold),
                    timeouts: raw.timeouts,
                    order_violations: raw.order_violations,
                    deadlocks: raw.deadlocks,
                    holder: snapshot.owner.map(|(holder, _)| holder),
                    waiters: snapshot.waiters,
                })
            })
            .collect()
    }

    /// Statistics of one lock.
    pub fn stats_of(&self, lock: &str) -> Option<LockStats> {
        self.stats().into_iter().find(|s| s.name == lock)
    }
}

#[cfg(test)]
mod tests;
