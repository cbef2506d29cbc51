//! Named locks with a global order, deadlock refusal, timeouts and statistics.
//!
//! A lock belongs to the acquisition that took it: a [`Holder`] (a call, a task or a
//! thread), never to a component or a label. Concurrent callers queue for a lock in FIFO
//! order and each gets it in turn; a holder asking again for a lock it holds is refused.
//!
//! Acquisitions are checked against the global order (configured ranks, then the order
//! first observed, lockdep-style) whenever the holder already holds a lock, and against
//! the wait-for graph whenever the acquisition is about to block: an acquire that would
//! deadlock fails at once, naming the cycle. The common case pays for neither: a holder
//! holding nothing takes a free lock with one compare-exchange on the lock's owner word,
//! through a handle interned once ([`LockManager::lock`]), without touching any mutex
//! shared with other locks. A waiter that times out or is dropped leaves no edge and no
//! holder behind.

mod entry;
mod error;
mod graph;
mod holder;
mod queue;

use std::{
    collections::HashMap,
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use self::{entry::LockEntry, graph::Graph};
pub use self::{
    error::LockError,
    holder::{Holder, LockGuard},
};

/// What to do when a lock is taken against the global order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderViolation {
    /// Refuse the acquisition.
    #[default]
    Deny,
    /// Log it and go on.
    Warn,
}

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
        Self {
            order: Vec::new(),
            on_violation: OrderViolation::Deny,
            deadlock_detection: true,
            default_timeout: Duration::from_secs(5),
            max_hold: Duration::from_secs(30),
            lock_timeouts: HashMap::new(),
        }
    }
}

impl LockManagerBuilder {
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
        let manager = LockManager {
            shared: Arc::new(Shared {
                epoch: Instant::now(),
                names: RwLock::default(),
                by_id: RwLock::default(),
                watch: Mutex::default(),
                graph: Mutex::default(),
                labels: Mutex::default(),
                next_holder: AtomicU64::new(1),
                leaked: AtomicU64::new(0),
                settings: self,
            }),
        };
        // Configured locks are listed (with their rank) before anyone takes them.
        for name in &manager.shared.settings.order {
            let _ = manager.lock(name);
        }
        manager
    }
}

/// One hold in this many is timed; the rest cost no clock read.
const HOLD_SAMPLE_EVERY: u64 = 32;

/// What the long-hold watchdog saw of one hold: who, which acquisition, since when.
struct Watched {
    owner: u64,
    acquisition: u64,
    seen: Instant,
}

/// What every handle, holder and guard of one manager shares.
struct Shared {
    settings: LockManagerBuilder,
    /// Time base of the locks' hold timestamps.
    epoch: Instant,
    /// The interned locks, by name.
    names: RwLock<HashMap<Arc<str>, Arc<LockEntry>>>,
    /// The same locks by id (their index here); never shrinks.
    by_id: RwLock<Vec<Arc<LockEntry>>>,
    /// Holds the watchdog has seen, by lock id.
    watch: Mutex<HashMap<u32, Watched>>,
    graph: Mutex<Graph>,
    /// Live holders' labels, for statistics and messages.
    labels: Mutex<HashMap<u64, Arc<str>>>,
    next_holder: AtomicU64,
    /// Locks released by the host because their holder ended without releasing them.
    leaked: AtomicU64,
}

impl Shared {
    fn entry_by_id(&self, id: u64) -> Option<Arc<LockEntry>> {
        let index = usize::try_from(id).ok()?;
        self.by_id.read().get(index).cloned()
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn label_of(&self, holder: u64) -> String {
        self.labels
            .lock()
            .get(&holder)
            .map_or_else(|| format!("holder {holder}"), ToString::to_string)
    }

    fn timeout_of(&self, lock: &str) -> Duration {
        self.settings
            .lock_timeouts
            .get(lock)
            .copied()
            .unwrap_or(self.settings.default_timeout)
    }
}

/// A lock's handle, interned once by name: acquiring through it costs no name lookup.
/// Cheap to clone.
#[derive(Clone)]
pub struct LockRef {
    entry: Arc<LockEntry>,
}

impl std::fmt::Debug for LockRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LockRef").field(&self.entry.name).finish()
    }
}

impl LockRef {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }
}

/// Named, ordered, deadlock-checked locks. Cheap to clone; clones share the lock table.
#[derive(Clone)]
pub struct LockManager {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LockManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockManager")
            .field("locks", &self.shared.names.read().len())
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
    /// Total time held, in microseconds: completed holds, estimated from the timed
    /// share (one in 32) of holds.
    pub total_hold_us: u64,
    /// Longest completed hold among the timed ones, in microseconds.
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

impl LockManager {
    /// A manager with the documented defaults.
    pub fn builder() -> LockManagerBuilder {
        LockManagerBuilder::default()
    }

    /// The handle of lock `name`, interned on first use.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidName`] for a name outside the naming rule.
    pub fn lock(&self, name: &str) -> Result<LockRef, LockError> {
        if let Some(entry) = self.shared.names.read().get(name) {
            return Ok(LockRef {
                entry: Arc::clone(entry),
            });
        }
        if !crate::names::valid_name(name) {
            return Err(LockError::InvalidName {
                lock: name.to_owned(),
            });
        }
        let rank = self.shared.settings.order.iter().position(|n| n == name);
        let mut names = self.shared.names.write();
        if let Some(entry) = names.get(name) {
            return Ok(LockRef {
                entry: Arc::clone(entry),
            });
        }
        let mut by_id = self.shared.by_id.write();
        let id = u32::try_from(by_id.len()).map_err(|_| LockError::InvalidName {
            lock: name.to_owned(),
        })?;
        let entry = Arc::new(LockEntry::new(id, name, rank));
        by_id.push(Arc::clone(&entry));
        names.insert(Arc::from(name), Arc::clone(&entry));
        Ok(LockRef { entry })
    }

    /// A new acquisition identity labelled `label` (a component and method, a task name).
    pub fn holder(&self, label: impl Into<String>) -> Holder {
        Holder::new(Arc::clone(&self.shared), Arc::from(label.into()))
    }

    /// The acquire timeout of `lock`.
    pub fn timeout_of(&self, lock: &str) -> Duration {
        self.shared.timeout_of(lock)
    }

    /// Takes `lock` for a new holder labelled `label`, waiting up to the lock's timeout.
    /// Each call is an acquisition of its own; to hold several locks as one holder, use
    /// [`Self::holder`].
    ///
    /// # Errors
    ///
    /// [`LockError`]: invalid name, deadlock or order violation (at once), timeout.
    pub async fn acquire(&self, lock: &str, label: &str) -> Result<LockGuard<'static>, LockError> {
        let lock = self.lock(lock)?;
        let holder = self.holder(label);
        let guard = holder.acquire(&lock).await?;
        Ok(guard.into_owned())
    }

    /// As [`Self::acquire`], from synchronous code, blocking up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Self::acquire`].
    pub fn acquire_blocking(
        &self,
        lock: &str,
        label: &str,
        timeout: Duration,
    ) -> Result<LockGuard<'static>, LockError> {
        let lock = self.lock(lock)?;
        let holder = self.holder(label);
        let guard = holder.acquire_blocking(&lock, timeout)?;
        Ok(guard.into_owned())
    }

    /// Takes every lock in `locks` for one new holder, in the global order, waiting for
    /// each up to its timeout. On failure the ones already taken are released.
    ///
    /// # Errors
    ///
    /// The first [`LockError`] met.
    pub async fn acquire_many(
        &self,
        locks: &[&str],
        label: &str,
    ) -> Result<Vec<LockGuard<'static>>, LockError> {
        let holder = self.holder(label);
        let mut guards = Vec::with_capacity(locks.len());
        for lock in self.ordered(locks)? {
            guards.push(holder.acquire(&lock).await?.into_owned());
        }
        Ok(guards)
    }

    fn ordered(&self, locks: &[&str]) -> Result<Vec<LockRef>, LockError> {
        let entries = locks
            .iter()
            .map(|name| self.lock(name).map(|lock| lock.entry))
            .collect::<Result<Vec<_>, _>>()?;
        let ordered = self.shared.graph.lock().global_order(entries);
        Ok(ordered.into_iter().map(|entry| LockRef { entry }).collect())
    }

    /// `locks` sorted in the global order: configured ranks, then the observed order.
    /// Invalid names are left out.
    pub fn global_order(&self, locks: &[&str]) -> Vec<String> {
        let valid: Vec<&str> = locks
            .iter()
            .copied()
            .filter(|name| crate::names::valid_name(name))
            .collect();
        self.ordered(&valid)
            .unwrap_or_default()
            .iter()
            .map(|lock| lock.name().to_owned())
            .collect()
    }

    /// Counts one lock released by the host because its holder (a call that returned or
    /// was abandoned, a dropped instance) never released it.
    pub(crate) fn record_leak(&self) {
        self.shared
            .leaked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Locks the host had to release for holders that ended without releasing them.
    pub fn leaked(&self) -> u64 {
        self.shared
            .leaked
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn entries(&self) -> Vec<Arc<LockEntry>> {
        let mut entries: Vec<Arc<LockEntry>> = self.shared.names.read().values().cloned().collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// Locks held longer than `max_hold` right now: `(lock, holder, held for)`.
    ///
    /// Holds are not timestamped on the uncontended path, so this watches them: a hold
    /// (an owner and an acquisition count) seen again is as old as its first sighting.
    /// Call it periodically (`run` does, every second); a hold's age is then known to
    /// within one period.
    pub fn long_holds(&self) -> Vec<(String, String, Duration)> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Instant::now();
        let mut watch = self.shared.watch.lock();
        let mut long = Vec::new();
        let mut seen = Vec::new();
        for entry in self.entries() {
            let Some(owner) = entry.owner() else {
                continue;
            };
            let acquisition = entry.stats.acquisitions.load(Relaxed);
            seen.push(entry.id);
            let watched = watch.entry(entry.id).or_insert(Watched {
                owner,
                acquisition,
                seen: now,
            });
            if watched.owner != owner || watched.acquisition != acquisition {
                *watched = Watched {
                    owner,
                    acquisition,
                    seen: now,
                };
            }
            let held_for = now.duration_since(watched.seen);
            if held_for > self.shared.settings.max_hold {
                long.push((
                    entry.name.to_string(),
                    self.shared.label_of(owner),
                    held_for,
                ));
            }
        }
        watch.retain(|id, _| seen.contains(id));
        long
    }

    /// The wait-for graph's edges now: `(holder, lock it waits for)`.
    pub fn waits(&self) -> Vec<(String, String)> {
        let waiting: Vec<(u64, Arc<str>)> = self
            .shared
            .graph
            .lock()
            .waiting
            .iter()
            .map(|(holder, entry)| (*holder, Arc::clone(&entry.name)))
            .collect();
        let mut waits: Vec<(String, String)> = waiting
            .into_iter()
            .map(|(holder, lock)| (self.shared.label_of(holder), lock.to_string()))
            .collect();
        waits.sort();
        waits
    }

    /// Statistics of every lock seen so far, sorted by name.
    pub fn stats(&self) -> Vec<LockStats> {
        self.entries()
            .iter()
            .map(|entry| self.stats_of_entry(entry))
            .collect()
    }

    /// Statistics of one lock.
    pub fn stats_of(&self, lock: &str) -> Option<LockStats> {
        let entry = Arc::clone(self.shared.names.read().get(lock)?);
        Some(self.stats_of_entry(&entry))
    }

    fn stats_of_entry(&self, entry: &LockEntry) -> LockStats {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &entry.stats;
        let micros = |ns: &AtomicU64| ns.load(Relaxed) / 1000;
        let waiters: Vec<u64> = entry.queue.lock().iter().map(|w| w.holder).collect();
        LockStats {
            name: entry.name.to_string(),
            rank: entry.rank,
            acquisitions: stats.acquisitions.load(Relaxed),
            contentions: stats.contentions.load(Relaxed),
            total_wait_us: micros(&stats.wait_ns),
            max_wait_us: micros(&stats.max_wait_ns),
            total_hold_us: micros(&stats.hold_ns) * HOLD_SAMPLE_EVERY,
            max_hold_us: micros(&stats.max_hold_ns),
            timeouts: stats.timeouts.load(Relaxed),
            order_violations: stats.order_violations.load(Relaxed),
            deadlocks: stats.deadlocks.load(Relaxed),
            holder: entry.owner().map(|id| self.shared.label_of(id)),
            waiters: waiters
                .into_iter()
                .map(|id| self.shared.label_of(id))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
