//! One registered component: its provider, its config, its state and its ready instance.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize},
        Arc,
    },
    time::Instant,
};

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
    /// The ready instance: the lock-free fast path of `get`.
    pub(crate) ready: ArcSwapOption<Ready>,
    pub(crate) state: Mutex<SlotState>,
    /// The last initialisation error, memory refusals included (which leave no failed
    /// state behind).
    pub(crate) last_error: Mutex<Option<Arc<InitError>>>,
    /// An initialisation whose caller gave up (timeout) still runs: no new one starts
    /// until it returns.
    pub(crate) init_abandoned: AtomicBool,
}

impl Slot {
    pub(crate) fn new(
        spec: ComponentSpec,
        provider: Arc<dyn Provider>,
        config: serde_json::Value,
        sampler: Sampler,
        limits: CallLimits,
    ) -> Self {
        Self {
            info: Arc::new(SlotInfo {
                spec,
                stats: Stats::new(sampler),
                bulkhead: Bulkhead::new(limits),
                dropping: AtomicUsize::new(0),
            }),
            provider,
            config,
            ready: ArcSwapOption::empty(),
            state: Mutex::new(SlotState::Registered),
            last_error: Mutex::new(None),
            init_abandoned: AtomicBool::new(false),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.info.spec.name
    }

    pub(crate) fn spec(&self) -> &ComponentSpec {
        &self.info.spec
    }
}
