//! The slow-path picture, under one mutex: the lock order observed so far (which lock was
//! taken while holding which, lockdep-style) and the wait-for graph (which holder waits
//! for which lock). The uncontended path never touches it: a holder that holds nothing
//! has no order to check, and a free lock has nobody to wait for.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::SystemTime,
};

use super::entry::LockEntry;

/// Where "held `a`, then took `b`" was first seen.
struct Seen {
    holder: String,
    at: SystemTime,
}

/// What an order check found.
pub(super) struct Violation {
    pub(super) held: String,
    pub(super) first_seen: String,
}

#[derive(Default)]
pub(super) struct Graph {
    /// a -> b -> first seen: someone held `a` and then took `b`.
    edges: HashMap<Arc<str>, HashMap<Arc<str>, Seen>>,
    /// Holder id -> the lock it waits for now.
    pub(super) waiting: HashMap<u64, Arc<LockEntry>>,
}

impl Graph {
    /// Checks a holder holding `held` taking `requested` against the configured ranks
    /// and the observed order.
    pub(super) fn order_violation(
        &self,
        held: &[Arc<LockEntry>],
        requested: &LockEntry,
    ) -> Option<Violation> {
        let wanted = &requested.name;
        for held in held {
            let name = &held.name;
            match (requested.rank, held.rank) {
                (Some(r), Some(h)) if r < h => {
                    return Some(Violation {
                        held: name.to_string(),
                        first_seen: format!(
                            "the configured [locks] order puts `{wanted}` before `{name}`"
                        ),
                    })
                }
                (Some(_), None) => {
                    return Some(Violation {
                        held: name.to_string(),
                        first_seen: format!(
                            "`{wanted}` is in the configured [locks] order and unlisted locks such as `{name}` rank after it"
                        ),
                    })
                }
                _ => {}
            }
            if let Some(seen) = self.observed_path(wanted, name) {
                return Some(Violation {
                    held: name.to_string(),
                    first_seen: format!(
                        "{} took `{wanted}` before `{name}` at {}",
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
            let mut queue = VecDeque::from([&**next]);
            let mut visited = HashSet::from([from]);
            while let Some(node) = queue.pop_front() {
                if node == to {
                    return Some(seen);
                }
                if visited.insert(node) {
                    if let Some(out) = self.edges.get(node) {
                        queue.extend(out.keys().map(|k| &**k));
                    }
                }
            }
        }
        None
    }

    /// Remembers that `holder`, holding `held`, took `taken`, unless that would
    /// contradict the order already known (a tolerated violation in warn mode).
    pub(super) fn record_edges(
        &mut self,
        held: &[Arc<LockEntry>],
        taken: &LockEntry,
        holder: &str,
    ) {
        for before in held {
            if before.name == taken.name || self.observed_path(&taken.name, &before.name).is_some()
            {
                continue;
            }
            self.edges
                .entry(Arc::clone(&before.name))
                .or_default()
                .entry(Arc::clone(&taken.name))
                .or_insert_with(|| Seen {
                    holder: holder.to_owned(),
                    at: SystemTime::now(),
                });
        }
    }

    /// The wait-for cycle that `holder` waiting for `requested` would close, if any, as
    /// `(lock, its owner)` pairs from `requested` round to `holder`.
    pub(super) fn wait_cycle(
        &self,
        holder: u64,
        requested: &Arc<LockEntry>,
    ) -> Option<Vec<(Arc<str>, u64)>> {
        let mut cycle = Vec::new();
        let mut lock = Arc::clone(requested);
        for _ in 0..=self.waiting.len() {
            let owner = lock.owner()?;
            cycle.push((Arc::clone(&lock.name), owner));
            if owner == holder {
                return Some(cycle);
            }
            lock = Arc::clone(self.waiting.get(&owner)?);
        }
        None
    }

    /// Whether `a` must come before `b`: configured ranks first, then observed order.
    fn must_precede(&self, a: &LockEntry, b: &LockEntry) -> bool {
        match (a.rank, b.rank) {
            (Some(ra), Some(rb)) => ra < rb,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => self.observed_path(&a.name, &b.name).is_some(),
        }
    }

    /// Orders `entries` globally: configured ranks first, then observed order, then name.
    pub(super) fn global_order(&self, mut remaining: Vec<Arc<LockEntry>>) -> Vec<Arc<LockEntry>> {
        remaining.sort_by(|a, b| a.name.cmp(&b.name));
        remaining.dedup_by(|a, b| a.name == b.name);
        let mut ordered = Vec::with_capacity(remaining.len());
        while !remaining.is_empty() {
            // The first lock that nothing remaining must precede.
            let pick = remaining
                .iter()
                .enumerate()
                .filter(|(_, candidate)| {
                    !remaining.iter().any(|other| {
                        other.name != candidate.name && self.must_precede(other, candidate)
                    })
                })
                .min_by_key(|(_, entry)| {
                    (entry.rank.unwrap_or(usize::MAX), Arc::clone(&entry.name))
                })
                .map_or(0, |(index, _)| index);
            ordered.push(remaining.remove(pick));
        }
        ordered
    }
}
