//! The lock table: owners, FIFO waiters, the observed lock order and the wait-for graph.
//! Everything here runs under the manager's one mutex, so each check sees a consistent
//! picture and a deadlock is found (and counted) exactly once.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant, SystemTime},
};

use super::LockError;

/// Wakes a waiter that has been handed the lock.
pub(crate) enum Notify {
    Async(tokio::sync::oneshot::Sender<()>),
    Sync(std::sync::mpsc::SyncSender<()>),
}

impl Notify {
    fn send(self) -> bool {
        match self {
            Self::Async(sender) => sender.send(()).is_ok(),
            Self::Sync(sender) => sender.try_send(()).is_ok(),
        }
    }
}

struct Owner {
    holder: String,
    token: u64,
    since: Instant,
}

struct Waiter {
    holder: String,
    token: u64,
    since: Instant,
    notify: Notify,
}

#[derive(Default, Clone, Copy)]
pub(crate) struct RawStats {
    pub(crate) acquisitions: u64,
    pub(crate) contentions: u64,
    pub(crate) total_wait: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) total_hold: Duration,
    pub(crate) max_hold: Duration,
    pub(crate) timeouts: u64,
    pub(crate) order_violations: u64,
    pub(crate) deadlocks: u64,
}

#[derive(Default)]
pub(crate) struct Entry {
    owner: Option<Owner>,
    waiters: VecDeque<Waiter>,
    pub(crate) stats: RawStats,
}

/// One lock's state at a moment: owner and how long it has held it, waiters, counters.
pub(crate) struct Snapshot {
    pub(crate) owner: Option<(String, Duration)>,
    pub(crate) waiters: Vec<String>,
    pub(crate) stats: RawStats,
}

/// Where "held `a`, then took `b`" was first seen.
struct Seen {
    holder: String,
    at: SystemTime,
}

/// The outcome of asking for a lock.
pub(crate) enum Begin {
    /// Taken at once.
    Acquired(u64),
    /// Queued; `notify` fires when the lock is handed over.
    Queued(u64),
}

/// What an order check found.
pub(crate) struct Violation {
    pub(crate) held: String,
    pub(crate) first_seen: String,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) locks: HashMap<String, Entry>,
    /// Holder -> locks it holds, in acquisition order.
    held: HashMap<String, Vec<String>>,
    /// Holder -> the lock it waits for (a holder waits for one lock at a time).
    waiting: HashMap<String, String>,
    /// a -> b -> first seen: someone held `a` and then took `b`.
    edges: HashMap<String, HashMap<String, Seen>>,
    /// Configured rank of each lock in `[locks] order`.
    pub(crate) ranks: HashMap<String, usize>,
    next_token: u64,
}

impl State {
    pub(crate) fn new(order: &[String]) -> Self {
        let mut state = Self::default();
        for (rank, name) in order.iter().enumerate() {
            state.ranks.insert(name.clone(), rank);
            state.locks.entry(name.clone()).or_default();
        }
        state
    }

    /// Checks `holder` taking `requested` against the configured and observed order.
    pub(crate) fn order_violation(&self, holder: &str, requested: &str) -> Option<Violation> {
        let held = self.held.get(holder)?;
        for held in held {
            match (self.ranks.get(requested), self.ranks.get(held)) {
                (Some(r), Some(h)) if r < h => {
                    return Some(Violation {
                        held: held.clone(),
                        first_seen: format!("the configured [locks] order puts `{requested}` before `{held}`"),
                    })
                }
                (Some(_), None) => {
                    return Some(Violation {
                        held: held.clone(),
                        first_seen: format!(
                            "`{requested}` is in the configured [locks] order and unlisted locks such as `{held}` rank after it"
                        ),
                    })
                }
                _ => {}
            }
            if let Some(seen) = self.observed_path(requested, held) {
                return Some(Violation {
                    held: held.clone(),
                    first_seen: format!(
                        "{} took `{requested}` before `{held}` at {}",
                        seen.holder,
                        humantime::format_rfc3339_seconds(seen.at)
                    ),
                });
            }
        }
        None
    }

    /// If the observed order has a path `from` ->* `to`, the first edge of it.
    fn observed_path(&self, from: &str, to: &str) -> Option<&Seen> {
        let first_edges = self.edges.get(from)?;
        if let Some(seen) = first_edges.get(to) {
            return Some(seen);
        }
        for (next, seen) in first_edges {
            let mut queue = VecDeque::from([next.as_str()]);
            let mut visited = HashSet::from([from]);
            while let Some(node) = queue.pop_front() {
                if node == to {
                    return Some(seen);
                }
                if visited.insert(node) {
                    if let Some(out) = self.edges.get(node) {
                        queue.extend(out.keys().map(String::as_str));
                    }
                }
            }
        }
        None
    }

    /// The wait-for cycle that `holder` waiting for `requested` would close, if any:
    /// `holder -> requested -> owner -> lock it waits for -> ... -> holder`.
    pub(crate) fn wait_cycle(&self, holder: &str, requested: &str) -> Option<Vec<String>> {
        let mut path = vec![holder.to_owned(), requested.to_owned()];
        let mut lock = requested;
        for _ in 0..=self.waiting.len() {
            let owner = &self.locks.get(lock)?.owner.as_ref()?.holder;
            path.push(owner.clone());
            if owner == holder {
                return Some(path);
            }
            lock = self.waiting.get(owner)?;
            path.push(lock.to_owned());
        }
        None
    }

    /// Takes `name` for `holder` now if it is free, else queues the holder.
    pub(crate) fn begin(
        &mut self,
        name: &str,
        holder: &str,
        notify: impl FnOnce() -> Notify,
    ) -> Begin {
        self.next_token += 1;
        let token = self.next_token;
        let entry = self.locks.entry(name.to_owned()).or_default();
        if entry.owner.is_none() {
            entry.owner = Some(Owner {
                holder: holder.to_owned(),
                token,
                since: Instant::now(),
            });
            entry.stats.acquisitions += 1;
            self.record_edges(holder, name);
            self.held
                .entry(holder.to_owned())
                .or_default()
                .push(name.to_owned());
            return Begin::Acquired(token);
        }
        entry.stats.contentions += 1;
        entry.waiters.push_back(Waiter {
            holder: holder.to_owned(),
            token,
            since: Instant::now(),
            notify: notify(),
        });
        self.waiting.insert(holder.to_owned(), name.to_owned());
        Begin::Queued(token)
    }

    /// Remembers that `holder` took `name` while holding what it holds, unless that
    /// would contradict the order already known (a tolerated violation in warn mode).
    fn record_edges(&mut self, holder: &str, name: &str) {
        let Some(held) = self.held.get(holder) else {
            return;
        };
        let held = held.clone();
        for before in held {
            if before == name || self.observed_path(name, &before).is_some() {
                continue;
            }
            self.edges
                .entry(before)
                .or_default()
                .entry(name.to_owned())
                .or_insert_with(|| Seen {
                    holder: holder.to_owned(),
                    at: SystemTime::now(),
                });
        }
    }

    pub(crate) fn holds(&self, holder: &str, name: &str) -> bool {
        self.held
            .get(holder)
            .is_some_and(|held| held.iter().any(|h| h == name))
    }

    pub(crate) fn owner_token(&self, name: &str) -> Option<u64> {
        self.locks.get(name)?.owner.as_ref().map(|o| o.token)
    }

    pub(crate) fn owner(&self, name: &str) -> Option<&str> {
        self.locks
            .get(name)?
            .owner
            .as_ref()
            .map(|o| o.holder.as_str())
    }

    /// A queued waiter gives up (timeout or cancellation). Returns true if the lock was
    /// handed to it meanwhile, so the caller now owns it.
    pub(crate) fn abandon_wait(
        &mut self,
        name: &str,
        holder: &str,
        token: u64,
        timed_out: bool,
    ) -> bool {
        if self.owner_token(name) == Some(token) {
            return true;
        }
        if let Some(entry) = self.locks.get_mut(name) {
            entry.waiters.retain(|w| w.token != token);
            if timed_out {
                entry.stats.timeouts += 1;
            }
        }
        if self.waiting.get(holder).is_some_and(|l| l == name) {
            self.waiting.remove(holder);
        }
        false
    }

    /// Releases `name` held by `holder` with `token` and hands it to the next waiter.
    /// Returns how long it was held.
    pub(crate) fn release(
        &mut self,
        name: &str,
        holder: &str,
        token: u64,
    ) -> Result<Duration, LockError> {
        let not_held = || LockError::NotHeld {
            lock: name.to_owned(),
            holder: holder.to_owned(),
        };
        let entry = self.locks.get_mut(name).ok_or_else(not_held)?;
        if entry.owner.as_ref().map(|o| o.token) != Some(token) {
            return Err(not_held());
        }
        let owner = entry.owner.take().ok_or_else(not_held)?;
        let held_for = owner.since.elapsed();
        entry.stats.total_hold += held_for;
        entry.stats.max_hold = entry.stats.max_hold.max(held_for);
        if let Some(held) = self.held.get_mut(holder) {
            held.retain(|h| h != name);
            if held.is_empty() {
                self.held.remove(holder);
            }
        }
        self.hand_over(name);
        Ok(held_for)
    }

    /// Gives a free lock to the first waiter still listening.
    fn hand_over(&mut self, name: &str) {
        loop {
            let Some(entry) = self.locks.get_mut(name) else {
                return;
            };
            let Some(waiter) = entry.waiters.pop_front() else {
                return;
            };
            let waited = waiter.since.elapsed();
            entry.stats.acquisitions += 1;
            entry.stats.total_wait += waited;
            entry.stats.max_wait = entry.stats.max_wait.max(waited);
            entry.owner = Some(Owner {
                holder: waiter.holder.clone(),
                token: waiter.token,
                since: Instant::now(),
            });
            self.waiting.remove(&waiter.holder);
            self.record_edges(&waiter.holder, name);
            self.held
                .entry(waiter.holder.clone())
                .or_default()
                .push(name.to_owned());
            if waiter.notify.send() {
                return;
            }
            // The waiter vanished without cleaning up: undo and try the next one.
            let entry = self.locks.get_mut(name).expect("entry exists");
            entry.owner = None;
            entry.stats.acquisitions -= 1;
            if let Some(held) = self.held.get_mut(&waiter.holder) {
                held.retain(|h| h != name);
            }
        }
    }

    /// Who waits for which lock: the wait-for graph's edges.
    pub(crate) fn waits(&self) -> Vec<(String, String)> {
        let mut waits: Vec<(String, String)> = self
            .waiting
            .iter()
            .map(|(h, l)| (h.clone(), l.clone()))
            .collect();
        waits.sort();
        waits
    }

    pub(crate) fn snapshot(&self, name: &str) -> Option<Snapshot> {
        let entry = self.locks.get(name)?;
        Some(Snapshot {
            owner: entry
                .owner
                .as_ref()
                .map(|o| (o.holder.clone(), o.since.elapsed())),
            waiters: entry.waiters.iter().map(|w| w.holder.clone()).collect(),
            stats: entry.stats,
        })
    }

    /// Orders `names` globally: configured ranks first, then observed order, then name.
    pub(crate) fn global_order(&self, names: &[&str]) -> Vec<String> {
        let mut remaining: Vec<&str> = names.to_vec();
        remaining.sort_unstable();
        remaining.dedup();
        let mut ordered = Vec::with_capacity(remaining.len());
        while !remaining.is_empty() {
            // The first lock that nothing remaining must precede.
            let pick = remaining
                .iter()
                .copied()
                .filter(|candidate| {
                    !remaining
                        .iter()
                        .any(|other| other != candidate && self.must_precede(other, candidate))
                })
                .min_by_key(|name| (self.ranks.get(*name).copied().unwrap_or(usize::MAX), *name))
                .unwrap_or(remaining[0]);
            ordered.push(pick.to_owned());
            remaining.retain(|name| *name != pick);
        }
        ordered
    }

    fn must_precede(&self, a: &str, b: &str) -> bool {
        match (self.ranks.get(a), self.ranks.get(b)) {
            (Some(ra), Some(rb)) => ra < rb,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => self.observed_path(a, b).is_some(),
        }
    }
}
