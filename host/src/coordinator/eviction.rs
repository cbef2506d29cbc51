//! Memory admission and eviction on real RSS.
//!
//! Candidates are ready, not in use, without ready dependents and idle for at least
//! `min_idle`; the least important go first (highest priority number), then the longest
//! idle. Priority 0 is never evicted. After each eviction freed heap is returned to the OS
//! and the RSS drop is measured.
//!
//! Evicting drops plugin instances, so everything here runs on the plugin executor: the
//! admission inside an initialisation's job, the sampler's rounds and `free_memory` in
//! jobs of their own.

use std::{sync::Arc, time::Duration};

use super::{
    error::{EvictionReport, NotEvictable},
    slot::Slot,
    Coordinator, InitError, Inner, SlotState,
};
use crate::{
    memory::{release_free_memory, PressureLevel, Reservation},
    util::format_bytes,
};

/// Why `slot`, a ready component, may not be evicted now; `None` if it may.
fn not_evictable(
    slots: &super::SlotMap,
    slot: &Slot,
    ready: &Arc<super::handle::Ready>,
    min_idle: Duration,
    requester_priority: Option<u8>,
) -> Option<NotEvictable> {
    let spec = slot.spec();
    let dependents: Vec<String> = slots
        .values()
        .filter(|other| {
            other.ready.load().is_some() && other.spec().dependencies.contains(&spec.name)
        })
        .map(|other| other.name().to_owned())
        .collect();
    let idle = slot.info.stats.idle_for().unwrap_or_default();
    if spec.priority == 0 {
        Some(NotEvictable::PriorityZero)
    } else if let Some(requester) = requester_priority.filter(|p| spec.priority <= *p) {
        Some(NotEvictable::NotLessImportant {
            priority: spec.priority,
            requester,
        })
    } else if Arc::strong_count(ready) > 2 {
        // One reference is the slot's, one is `ready` here; more means a caller holds it.
        Some(NotEvictable::InUse)
    } else if !dependents.is_empty() {
        Some(NotEvictable::NeededBy { dependents })
    } else if idle < min_idle {
        Some(NotEvictable::NotIdleLongEnough { idle, min_idle })
    } else {
        None
    }
}

/// Eviction candidates in eviction order, and why every other ready component is not one.
fn candidates(
    inner: &Inner,
    min_idle: Duration,
    requester_priority: Option<u8>,
) -> (Vec<Arc<Slot>>, Vec<(String, NotEvictable)>) {
    let slots = inner.slots.load();
    let mut chosen = Vec::new();
    let mut kept = Vec::new();
    for slot in slots.values() {
        let Some(ready) = slot.ready.load_full() else {
            continue;
        };
        match not_evictable(&slots, slot, &ready, min_idle, requester_priority) {
            Some(reason) => kept.push((slot.name().to_owned(), reason)),
            None => {
                let idle = slot.info.stats.idle_for().unwrap_or_default();
                chosen.push((Arc::clone(slot), slot.spec().priority, idle));
            }
        }
    }
    chosen.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    (chosen.into_iter().map(|(slot, _, _)| slot).collect(), kept)
}

/// Evicts `slot` if it is still an idle candidate; returns the measured RSS drop.
fn evict_idle(inner: &Inner, slot: &Slot) -> Option<u64> {
    let before = inner.memory.read_rss();
    let ready = {
        let mut state = slot.state.lock();
        if !matches!(*state, SlotState::Ready) {
            return None;
        }
        let ready = slot.swap_ready(None)?;
        if Arc::strong_count(&ready) > 1 {
            // Someone took a handle since it was chosen: put it back.
            slot.swap_ready(Some(ready));
            return None;
        }
        *state = SlotState::Evicted;
        ready
    };
    drop(ready);
    release_free_memory();
    let reclaimed = before.saturating_sub(inner.memory.read_rss());
    inner.memory.record_eviction(slot.name(), reclaimed);
    tracing::info!(component = %slot.name(), reclaimed = %format_bytes(reclaimed), "component evicted to free memory");
    Some(reclaimed)
}

/// Evicts candidates until `bytes` are reclaimed or none are left: what was freed, and
/// why the rest could not be evicted.
fn free(
    inner: &Inner,
    bytes: u64,
    min_idle: Duration,
    requester_priority: Option<u8>,
    max: usize,
) -> EvictionReport {
    let (chosen, kept) = candidates(inner, min_idle, requester_priority);
    let mut freed = 0;
    for slot in chosen.into_iter().take(max) {
        if freed >= bytes {
            break;
        }
        freed += evict_idle(inner, &slot).unwrap_or(0);
    }
    EvictionReport { freed, kept }
}

/// Reserves the component's estimate, evicting less important idle components if needed.
/// Blocking, and drops instances: call it on the plugin executor.
pub(super) fn admit(inner: &Inner, slot: &Slot) -> Result<Reservation, InitError> {
    let spec = slot.spec();
    let shortfall = match inner.memory.reserve(&spec.name, spec.memory_estimate) {
        Ok(reservation) => return Ok(reservation),
        Err(shortfall) => shortfall,
    };
    let missing = shortfall.missing();
    let (priority, min_idle) = (spec.priority, inner.memory.min_idle());
    let evictions = free(inner, missing, min_idle, Some(priority), usize::MAX);
    inner
        .memory
        .reserve(&spec.name, spec.memory_estimate)
        .map_err(|shortfall| InitError::MemoryRefused {
            component: spec.name.clone(),
            shortfall,
            evictions,
        })
}

impl Coordinator {
    /// Evicts idle components (by the eviction policy, `min_idle` included) until `bytes`
    /// of RSS are reclaimed or no candidate is left. Returns the bytes reclaimed, measured.
    /// The instances are dropped on the plugin executor.
    pub async fn free_memory(&self, bytes: u64) -> u64 {
        let inner = Arc::clone(&self.inner);
        self.inner
            .executor
            .spawn(move || free(&inner, bytes, inner.memory.min_idle(), None, usize::MAX).freed)
            .await
    }

    /// One round of the memory sampler: read RSS and, under pressure, evict up to 2 / 5 / 10
    /// idle components (medium / high / critical) with `min_idle` scaled by 1, 1/2, 1/4.
    /// Returns the level seen and how many components were evicted. Runs on the plugin
    /// executor.
    pub(crate) async fn sample_memory(&self) -> (PressureLevel, usize) {
        let worker = self.clone();
        self.inner
            .executor
            .spawn(move || worker.sample_memory_blocking())
            .await
    }

    fn sample_memory_blocking(&self) -> (PressureLevel, usize) {
        let memory = &self.inner.memory;
        let level = memory.pressure_at(memory.read_rss());
        let (max, divisor) = level.eviction_budget();
        if max == 0 {
            return (level, 0);
        }
        let min_idle = memory.min_idle() / divisor;
        let (chosen, _) = candidates(&self.inner, min_idle, None);
        let evicted = chosen
            .into_iter()
            .take(max)
            .filter(|slot| evict_idle(&self.inner, slot).is_some())
            .count();
        if evicted > 0 {
            tracing::warn!(pressure = ?level, evicted, "memory pressure: evicted idle components");
        }
        (level, evicted)
    }

    /// Starts the background memory sampler on the current tokio runtime. A round whose
    /// evictions hang (a plugin's `Drop` that never returns) delays the next round, never
    /// the host.
    pub(crate) fn spawn_memory_sampler(&self) -> tokio::task::JoinHandle<()> {
        let coordinator = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(coordinator.inner.memory.sample_interval());
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                coordinator.sample_memory().await;
            }
        })
    }
}
