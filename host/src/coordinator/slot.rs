//! One registered component: its spec, its provider, its state and its counters.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use serde::Serialize;

use super::{handle::Ready, provider::Provider, ComponentSpec, InitError};
use crate::metrics::{Counter, Histogram, Sampler};

/// The lifecycle of a component.
///
/// - `Registered`: known, never initialised (or stopped at shutdown).
/// - `Initializing`: dependencies or `create` are running; callers wait for the one init.
/// - `Ready`: an instance answers calls.
/// - `Failed`: `create` or a dependency failed; retried by a later `get` after a backoff.
/// - `TimedOut`: `create` outlived its timeout; its thread was abandoned, a late result is
///   dropped; retried like `Failed`.
/// - `Evicted`: the instance was dropped to free memory; the next `get` creates a new one.
/// - `Stopped`: stopped by shutdown; not initialised again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Known, not initialised.
    Registered,
    /// Being initialised.
    Initializing,
    /// Answering calls.
    Ready,
    /// The last initialisation failed.
    Failed,
    /// The last initialisation timed out.
    TimedOut,
    /// Dropped to free memory; re-initialisable.
    Evicted,
    /// Stopped at shutdown.
    Stopped,
}

impl std::fmt::Display for ComponentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Self::Registered => "registered",
            Self::Initializing => "initializing",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::TimedOut => "timed out",
            Self::Evicted => "evicted",
            Self::Stopped => "stopped",
        };
        f.write_str(text)
    }
}

pub(crate) type InitResult = Result<Arc<Ready>, Arc<InitError>>;
pub(crate) type SharedInit = Shared<BoxFuture<'static, InitResult>>;

pub(crate) enum SlotState {
    Registered,
    Initializing(SharedInit),
    Ready,
    Failed { error: Arc<InitError>, at: Instant },
    TimedOut { error: Arc<InitError>, at: Instant },
    Evicted,
    Stopped,
}

impl SlotState {
    pub(crate) fn public(&self) -> ComponentState {
        match self {
            Self::Registered => ComponentState::Registered,
            Self::Initializing(_) => ComponentState::Initializing,
            Self::Ready => ComponentState::Ready,
            Self::Failed { .. } => ComponentState::Failed,
            Self::TimedOut { .. } => ComponentState::TimedOut,
            Self::Evicted => ComponentState::Evicted,
            Self::Stopped => ComponentState::Stopped,
        }
    }
}

/// Per-component instruments, cached in the slot so the call path records with plain
/// atomic operations: no map lookup, no lock.
#[derive(Debug)]
pub(crate) struct Stats {
    epoch: Instant,
    pub(crate) calls: Counter,
    pub(crate) call_errors: Counter,
    pub(crate) call_timeouts: Counter,
    pub(crate) inits: Counter,
    pub(crate) init_failures: Counter,
    /// Latency of the sampled share of calls; exported scaled back to every call.
    pub(crate) call_latency: Histogram,
    pub(crate) init_duration: Histogram,
    pub(crate) sampler: Sampler,
    /// Microseconds the last successful init took.
    pub(crate) init_micros: AtomicU64,
    /// Milliseconds after `epoch` of the last use, plus one; 0 means never used.
    last_used: AtomicU64,
}

impl Stats {
    fn new(sampler: Sampler) -> Self {
        Self {
            epoch: Instant::now(),
            calls: Counter::default(),
            call_errors: Counter::default(),
            call_timeouts: Counter::default(),
            inits: Counter::default(),
            init_failures: Counter::default(),
            call_latency: Histogram::with_scale(sampler.scale()),
            init_duration: Histogram::default(),
            sampler,
            init_micros: AtomicU64::new(0),
            last_used: AtomicU64::new(0),
        }
    }

    /// How long ago the component was last used, if ever.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        match self.last_used.load(Ordering::Relaxed) {
            0 => None,
            stamp => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(stamp - 1)),
            ),
        }
    }
}

/// The immutable part of a slot, shared with every handle of its instances.
#[derive(Debug)]
pub(crate) struct SlotInfo {
    pub(crate) spec: ComponentSpec,
    pub(crate) stats: Stats,
}

impl SlotInfo {
    /// Records a use. Reads the monotonic clock (vDSO, no system call); no lock.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.stats.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.stats.last_used.store(ms + 1, Ordering::Relaxed);
    }
}

pub(crate) struct Slot {
    pub(crate) info: Arc<SlotInfo>,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) config: serde_json::Value,
    /// The ready instance: the lock-free fast path of `get`.
    pub(crate) ready: ArcSwapOption<Ready>,
    pub(crate) state: Mutex<SlotState>,
}

impl Slot {
    pub(crate) fn new(
        spec: ComponentSpec,
        provider: Arc<dyn Provider>,
        config: serde_json::Value,
        sampler: Sampler,
    ) -> Self {
        Self {
            info: Arc::new(SlotInfo {
                spec,
                stats: Stats::new(sampler),
            }),
            provider,
            config,
            ready: ArcSwapOption::empty(),
            state: Mutex::new(SlotState::Registered),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.info.spec.name
    }

    pub(crate) fn spec(&self) -> &ComponentSpec {
        &self.info.spec
    }
}
