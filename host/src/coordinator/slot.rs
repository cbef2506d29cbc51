//! One registered component: its provider, its config, its state and its ready instance.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use serde::{Deserialize, Serialize};

use arc_swap::ArcSwapOption;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use super::{
    handle::Ready,
    info::{Bulkhead, CallLimits, SlotInfo, Stats},
    provider::Provider,
    spec::ComponentSpec,
    ComponentState, InitError,
};
use crate::metrics::Sampler;

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

pub(crate) struct Slot {
    pub(crate) info: Arc<SlotInfo>,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) config: serde_json::Value,
    /// The ready instance: the lock-free fast path of `get`. Changed only through
    /// [`Self::swap_ready`].
    pub(crate) ready: ArcSwapOption<Ready>,
    /// Bumped after every change of `ready`: a resolved component's cached instance is
    /// current while this has not moved.
    pub(crate) ready_generation: AtomicU64,
    pub(crate) state: Mutex<SlotState>,
    /// The last initialisation error, memory refusals included (which leave no failed
    /// state behind).
    pub(crate) last_error: Mutex<Option<Arc<InitError>>>,
    /// An initialisation whose caller gave up (timeout) still runs: no new one starts
    /// until it returns.
    pub(crate) init_abandoned: AtomicBool,
    /// The plugin file it comes from; `None` for a native component.
    pub(crate) source: Option<PathBuf>,
    /// What became of that file since it was registered: a [`FileState`] as `u8`.
    pub(crate) file_state: AtomicU8,
}

/// What became of a loaded component's plugin file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum FileState {
    /// The file is there, as registered.
    Present = 0,
    /// The file was removed; the component keeps running until it is evicted or stopped.
    Gone = 1,
    /// The file changed; the running component is the old build: restart to upgrade.
    Changed = 2,
}

impl FileState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Gone,
            2 => Self::Changed,
            _ => Self::Present,
        }
    }
}

impl Slot {
    pub(crate) fn new(
        spec: ComponentSpec,
        provider: Arc<dyn Provider>,
        config: serde_json::Value,
        sampler: Sampler,
        limits: CallLimits,
        source: Option<PathBuf>,
    ) -> Self {
        Self {
            info: Arc::new(SlotInfo {
                spec,
                stats: Stats::new(sampler),
                bulkhead: Bulkhead::new(limits),
                dropping: AtomicUsize::new(0),
                max_reply: limits.max_reply,
            }),
            provider,
            config,
            ready: ArcSwapOption::empty(),
            ready_generation: AtomicU64::new(0),
            state: Mutex::new(SlotState::Registered),
            last_error: Mutex::new(None),
            init_abandoned: AtomicBool::new(false),
            source,
            file_state: AtomicU8::new(FileState::Present as u8),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.info.spec.name
    }

    /// Replaces the ready instance (`None` clears it) and returns the one before.
    pub(crate) fn swap_ready(&self, ready: Option<Arc<Ready>>) -> Option<Arc<Ready>> {
        let before = self.ready.swap(ready);
        self.ready_generation.fetch_add(1, Ordering::Release);
        before
    }

    pub(crate) fn spec(&self) -> &ComponentSpec {
        &self.info.spec
    }

    /// Its state as callers see it: a ready instance with too many hung calls is
    /// quarantined.
    pub(crate) fn public_state(&self) -> ComponentState {
        match self.state.lock().public() {
            ComponentState::Ready if self.is_quarantined() => ComponentState::Quarantined,
            state => state,
        }
    }

    /// Whether its ready instance is quarantined.
    fn is_quarantined(&self) -> bool {
        self.ready
            .load()
            .as_ref()
            .is_some_and(|ready| self.info.bulkhead.quarantines(&ready.hung))
    }

    /// The abandoned calls of its ready instance still running, by method.
    pub(crate) fn stuck_methods(&self) -> Vec<(String, usize)> {
        self.ready
            .load()
            .as_ref()
            .map(|ready| ready.hung.stuck_methods())
            .unwrap_or_default()
    }

    /// What became of its plugin file; `None` for a native component.
    pub(crate) fn file(&self) -> Option<FileState> {
        self.source
            .as_ref()
            .map(|_| FileState::from_u8(self.file_state.load(Ordering::Acquire)))
    }
}
