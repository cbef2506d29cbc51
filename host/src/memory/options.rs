//! What a memory manager is built from: the limit, the pressure thresholds and the
//! eviction timing. The config file maps `[memory]` onto these; an embedder sets them in
//! code.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MemoryManager;

/// The memory limit: `Auto` (container or machine derived) or a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryLimit {
    /// The cgroup limit x 0.9, else 75% of physical memory.
    #[default]
    Auto,
    /// A fixed number of bytes.
    Bytes(u64),
}

/// RSS as a fraction of the limit at which each pressure level begins.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PressureThresholds {
    /// Defaults to 0.75.
    pub medium: f64,
    /// Defaults to 0.85.
    pub high: f64,
    /// Defaults to 0.95.
    pub critical: f64,
}

impl Default for PressureThresholds {
    fn default() -> Self {
        Self {
            medium: 0.75,
            high: 0.85,
            critical: 0.95,
        }
    }
}

/// Builds a [`MemoryManager`].
#[derive(Debug, Clone, Default)]
pub struct MemoryManagerBuilder {
    pub(super) limit: MemoryLimit,
    pub(super) pressure: PressureThresholds,
    pub(super) min_idle: Option<Duration>,
    pub(super) sample_interval: Option<Duration>,
}

impl MemoryManagerBuilder {
    /// The budget. Defaults to [`MemoryLimit::Auto`].
    pub fn with_limit(mut self, limit: MemoryLimit) -> Self {
        self.limit = limit;
        self
    }

    /// Pressure thresholds. Defaults to 0.75 / 0.85 / 0.95.
    pub fn with_pressure(mut self, pressure: PressureThresholds) -> Self {
        self.pressure = pressure;
        self
    }

    /// Least idle time before a component may be evicted. Defaults to 300 s.
    pub fn with_min_idle(mut self, min_idle: Duration) -> Self {
        self.min_idle = Some(min_idle);
        self
    }

    /// How often the sampler reads RSS. Defaults to 1 s.
    pub fn with_sample_interval(mut self, interval: Duration) -> Self {
        self.sample_interval = Some(interval);
        self
    }

    /// The manager, resolving `Auto` from the cgroup or the machine.
    pub fn build(self) -> MemoryManager {
        MemoryManager::new(self)
    }
}
