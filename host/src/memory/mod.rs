//! The memory manager: a budget checked against the process's real RSS.
//!
//! Declared estimates alone say nothing about what a component really uses, so admission
//! reads RSS (`rss + reservations + estimate <= limit`), reservations stop
//! concurrent initialisations from over-admitting together, each component's real cost is
//! measured after creation, and eviction is followed by `malloc_trim` so RSS really drops.

mod cgroup;
mod options;
mod rss;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
use serde::Serialize;

pub(crate) use self::rss::rss_of;
pub use self::{
    options::{MemoryLimit, MemoryManagerBuilder, PressureThresholds},
    rss::RssReader,
};
pub(crate) use crate::platform::release_free_memory;
use crate::util::format_bytes;

/// Where the memory limit came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LimitSource {
    /// `[memory] limit` in the config.
    Configured,
    /// The cgroup limit x 0.9.
    Cgroup {
        /// 1 or 2.
        version: u8,
        /// The file the limit was read from.
        file: String,
        /// The cgroup's limit before the 0.9 margin.
        cgroup_limit: u64,
    },
    /// 75% of physical memory.
    PhysicalMemory {
        /// Physical memory in bytes.
        total: u64,
    },
    /// Nothing could be measured: no limit.
    Unlimited,
}

impl fmt::Display for LimitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configured => f.write_str("[memory] limit"),
            Self::Cgroup {
                version,
                file,
                cgroup_limit,
            } => {
                write!(
                    f,
                    "cgroup v{version} limit {} x 0.9 ({file})",
                    format_bytes(*cgroup_limit)
                )
            }
            Self::PhysicalMemory { total } => {
                write!(f, "75% of {} physical memory", format_bytes(*total))
            }
            Self::Unlimited => f.write_str("no limit could be determined"),
        }
    }
}

/// How close RSS is to the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PressureLevel {
    /// Below the medium threshold.
    Normal,
    /// At or above `pressure.medium`.
    Medium,
    /// At or above `pressure.high`.
    High,
    /// At or above `pressure.critical`.
    Critical,
}

impl PressureLevel {
    /// How many idle components the sampler evicts per round at this level, and the
    /// factor applied to `min_idle`.
    pub fn eviction_budget(self) -> (usize, u32) {
        match self {
            Self::Normal => (0, 1),
            Self::Medium => (2, 1),
            Self::High => (5, 2),
            Self::Critical => (10, 4),
        }
    }
}

/// Why a reservation did not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// Bytes asked for.
    pub needed: u64,
    /// RSS when asked.
    pub rss: u64,
    /// Bytes reserved by other in-flight initialisations.
    pub reserved: u64,
    /// The limit.
    pub limit: u64,
}

impl Shortfall {
    /// How many bytes would have to be freed.
    pub fn missing(&self) -> u64 {
        (self.rss.saturating_add(self.reserved))
            .saturating_add(self.needed)
            .saturating_sub(self.limit)
    }
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "needs {}, but RSS is {} with {} reserved and the limit is {} ({} short)",
            format_bytes(self.needed),
            format_bytes(self.rss),
            format_bytes(self.reserved),
            format_bytes(self.limit),
            format_bytes(self.missing())
        )
    }
}

/// Memory facts about one component.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComponentMemory {
    /// Declared (or configured) estimate in bytes.
    pub estimate: u64,
    /// RSS growth measured across its last creation, in bytes.
    pub measured: Option<u64>,
    /// Times it was evicted.
    pub evictions: u64,
}

/// The host's memory picture.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryStatus {
    /// The limit in bytes (`u64::MAX` when unlimited).
    pub limit: u64,
    /// Where the limit came from.
    pub limit_source: LimitSource,
    /// RSS at the last reading.
    pub rss: u64,
    /// Bytes reserved by in-flight initialisations.
    pub reserved: u64,
    /// Pressure level at the last reading.
    pub pressure: PressureLevel,
    /// Components evicted so far.
    pub evictions: u64,
    /// RSS reclaimed by evictions so far, measured.
    pub reclaimed: u64,
    /// Mapping cost of each loaded library (RSS growth when it was opened).
    pub libraries: HashMap<String, u64>,
    /// Per-component figures.
    pub components: HashMap<String, ComponentMemory>,
    /// RSS of each worker process (isolated plugins), by pid; included in `rss`.
    pub workers: HashMap<u32, u64>,
}

struct Inner {
    limit: u64,
    source: LimitSource,
    pressure: PressureThresholds,
    min_idle: Duration,
    sample_interval: Duration,
    rss: RssReader,
    /// In-flight reservations: id -> bytes. The admission check and the insert happen
    /// under this one lock, so concurrent initialisations cannot over-admit together.
    reservations: Mutex<HashMap<u64, u64>>,
    next_id: AtomicU64,
    last_rss: AtomicU64,
    evictions: AtomicU64,
    reclaimed: AtomicU64,
    components: Mutex<HashMap<String, ComponentMemory>>,
    libraries: Mutex<HashMap<String, u64>>,
    /// Library mapping cost measured inside a component's creation, not to be charged to it.
    library_cost_in_creation: Mutex<HashMap<String, u64>>,
    /// Worker processes whose RSS counts as the host's.
    processes: Mutex<HashMap<u32, String>>,
}

/// Budgets memory against real RSS. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct MemoryManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryManager")
            .field("limit", &self.inner.limit)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl MemoryManager {
    /// A builder with the documented defaults.
    pub fn builder() -> MemoryManagerBuilder {
        MemoryManagerBuilder::default()
    }

    fn new(options: MemoryManagerBuilder) -> Self {
        let rss = RssReader::new();
        let (limit, source) = match options.limit {
            MemoryLimit::Bytes(bytes) => (bytes, LimitSource::Configured),
            MemoryLimit::Auto => auto_limit(&rss),
        };
        let manager = Self {
            inner: Arc::new(Inner {
                limit,
                source,
                pressure: options.pressure,
                min_idle: options.min_idle.unwrap_or(Duration::from_secs(300)),
                sample_interval: options.sample_interval.unwrap_or(Duration::from_secs(1)),
                last_rss: AtomicU64::new(rss.read()),
                rss,
                reservations: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                reclaimed: AtomicU64::new(0),
                components: Mutex::new(HashMap::new()),
                libraries: Mutex::new(HashMap::new()),
                library_cost_in_creation: Mutex::new(HashMap::new()),
                processes: Mutex::new(HashMap::new()),
            }),
        };
        tracing::info!(limit = %format_bytes(limit), source = %manager.inner.source, "memory limit");
        manager
    }

    /// Why no component can be admitted, when the limit is at or below the latest RSS
    /// sample. Asked before any plugin has run (as `check` does, reporting it as a
    /// problem, and a starting host, as a warning), it finds a limit no component can
    /// ever fit under: one written in the wrong unit, say.
    pub fn below_rss(&self) -> Option<String> {
        let rss = self.inner.last_rss.load(Ordering::Relaxed);
        (self.inner.limit <= rss).then(|| {
            format!(
                "the memory limit, {} ({}), is at or below the host's own RSS, {}: no component \
                 can be admitted; raise [memory] limit",
                format_bytes(self.inner.limit),
                self.inner.source,
                format_bytes(rss)
            )
        })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// Where the limit came from.
    pub fn limit_source(&self) -> &LimitSource {
        &self.inner.source
    }

    /// The least idle time before a component may be evicted.
    pub fn min_idle(&self) -> Duration {
        self.inner.min_idle
    }

    /// How often the sampler runs.
    pub fn sample_interval(&self) -> Duration {
        self.inner.sample_interval
    }

    /// Reads RSS now, this process's and its worker processes' (and remembers it as the
    /// latest sample).
    pub fn read_rss(&self) -> u64 {
        let workers: u64 = self.worker_rss().values().sum();
        let rss = self.inner.rss.read().saturating_add(workers);
        self.inner.last_rss.store(rss, Ordering::Relaxed);
        rss
    }

    /// Counts worker process `pid` (running plugin `plugin`) in RSS from now on.
    pub(crate) fn track_process(&self, pid: u32, plugin: &str) {
        self.inner.processes.lock().insert(pid, plugin.to_owned());
    }

    /// Stops counting worker process `pid`.
    pub(crate) fn untrack_process(&self, pid: u32) {
        self.inner.processes.lock().remove(&pid);
    }

    /// Records that a worker that used `bytes` exited because it was idle.
    pub(crate) fn record_reclaimed(&self, bytes: u64) {
        self.inner.reclaimed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The RSS of each worker process counted, by pid. A worker that has ended is not
    /// listed, even before the host has learned of its end: a process gone from `/proc`,
    /// or dead and not yet reaped (no memory left), uses none.
    pub fn worker_rss(&self) -> HashMap<u32, u64> {
        let pids: Vec<u32> = self.inner.processes.lock().keys().copied().collect();
        pids.into_iter()
            .filter_map(|pid| Some((pid, rss_of(pid).filter(|rss| *rss > 0)?)))
            .collect()
    }

    /// The latest RSS reading, without reading again.
    pub fn last_rss(&self) -> u64 {
        self.inner.last_rss.load(Ordering::Relaxed)
    }

    /// Bytes reserved by in-flight initialisations.
    pub fn reserved(&self) -> u64 {
        self.inner.reservations.lock().values().sum()
    }

    /// Reserves what creating `component` will take, if `rss + reserved + that <= limit`:
    /// its estimate `estimate`, or what its last creation measured when that was more than
    /// twice the estimate (a component known to overshoot is admitted by what it uses,
    /// not by what it declares).
    ///
    /// # Errors
    ///
    /// The [`Shortfall`] with every figure of the check.
    pub fn reserve(&self, component: &str, estimate: u64) -> Result<Reservation, Shortfall> {
        let bytes = self.admission_bytes(component, estimate);
        let mut reservations = self.inner.reservations.lock();
        let reserved: u64 = reservations.values().sum();
        let rss = self.read_rss();
        if rss.saturating_add(reserved).saturating_add(bytes) > self.inner.limit {
            return Err(Shortfall {
                needed: bytes,
                rss,
                reserved,
                limit: self.inner.limit,
            });
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        reservations.insert(id, bytes);
        self.inner
            .components
            .lock()
            .entry(component.to_owned())
            .or_default()
            .estimate = estimate;
        Ok(Reservation {
            manager: self.clone(),
            id,
            component: component.to_owned(),
            bytes: estimate,
            rss_before: rss,
        })
    }

    /// The bytes admission reserves for `component`: its estimate, or its last measured
    /// creation when that overshot the estimate more than twice.
    fn admission_bytes(&self, component: &str, estimate: u64) -> u64 {
        let measured = self
            .inner
            .components
            .lock()
            .get(component)
            .and_then(|memory| memory.measured)
            .unwrap_or(0);
        if measured > estimate.saturating_mul(2) {
            measured
        } else {
            estimate
        }
    }

    fn release(&self, id: u64) {
        self.inner.reservations.lock().remove(&id);
    }

    /// The pressure level for `rss`.
    pub fn pressure_at(&self, rss: u64) -> PressureLevel {
        if self.inner.limit == u64::MAX || self.inner.limit == 0 {
            return PressureLevel::Normal;
        }
        let ratio = rss as f64 / self.inner.limit as f64;
        let p = self.inner.pressure;
        if ratio >= p.critical {
            PressureLevel::Critical
        } else if ratio >= p.high {
            PressureLevel::High
        } else if ratio >= p.medium {
            PressureLevel::Medium
        } else {
            PressureLevel::Normal
        }
    }

    /// Records that `component` was evicted and RSS dropped by `reclaimed` bytes.
    pub(crate) fn record_eviction(&self, component: &str, reclaimed: u64) {
        self.inner.evictions.fetch_add(1, Ordering::Relaxed);
        self.inner.reclaimed.fetch_add(reclaimed, Ordering::Relaxed);
        self.inner
            .components
            .lock()
            .entry(component.to_owned())
            .or_default()
            .evictions += 1;
    }

    /// Records what opening a library cost, measured while creating `component` (so the
    /// component's own figure excludes it).
    pub(crate) fn record_library(&self, path: &str, component: &str, bytes: u64) {
        self.inner.libraries.lock().insert(path.to_owned(), bytes);
        self.inner
            .library_cost_in_creation
            .lock()
            .insert(component.to_owned(), bytes);
    }

    /// Everything the manager knows, with RSS read now.
    pub fn status(&self) -> MemoryStatus {
        let rss = self.read_rss();
        MemoryStatus {
            limit: self.inner.limit,
            limit_source: self.inner.source.clone(),
            rss,
            reserved: self.reserved(),
            pressure: self.pressure_at(rss),
            evictions: self.inner.evictions.load(Ordering::Relaxed),
            reclaimed: self.inner.reclaimed.load(Ordering::Relaxed),
            libraries: self.inner.libraries.lock().clone(),
            components: self.inner.components.lock().clone(),
            workers: self.worker_rss(),
        }
    }

    /// One component's figures.
    pub fn component(&self, name: &str) -> Option<ComponentMemory> {
        self.inner.components.lock().get(name).cloned()
    }
}

/// Bytes set aside for one initialisation. Released when dropped; [`Self::commit`] also
/// records the RSS growth the creation caused.
#[derive(Debug)]
pub struct Reservation {
    manager: MemoryManager,
    id: u64,
    component: String,
    bytes: u64,
    rss_before: u64,
}

impl Reservation {
    /// The creation succeeded: measure what it cost and release the reservation.
    pub(crate) fn commit(self) -> u64 {
        let after = self.manager.read_rss();
        let library = self
            .manager
            .inner
            .library_cost_in_creation
            .lock()
            .remove(&self.component);
        let measured = after
            .saturating_sub(self.rss_before)
            .saturating_sub(library.unwrap_or(0));
        if self.bytes > 0 && measured > self.bytes.saturating_mul(2) {
            tracing::warn!(
                component = %self.component,
                estimate = %format_bytes(self.bytes),
                measured = %format_bytes(measured),
                "component uses more than twice its memory estimate; it is admitted by what it used from now on; raise memory_estimate"
            );
        }
        self.manager
            .inner
            .components
            .lock()
            .entry(self.component.clone())
            .or_default()
            .measured = Some(measured);
        measured
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.manager.release(self.id);
    }
}

fn auto_limit(rss: &RssReader) -> (u64, LimitSource) {
    // No such file outside Linux (or without /proc): then there is no cgroup limit.
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_else(|err| {
        tracing::debug!(error = %err, "no /proc/self/cgroup; no container limit to read");
        String::new()
    });
    if let Some(limit) = cgroup::detect(std::path::Path::new("/"), &proc_cgroup) {
        return (
            limit.bytes / 10 * 9,
            LimitSource::Cgroup {
                version: limit.version,
                file: limit.file.display().to_string(),
                cgroup_limit: limit.bytes,
            },
        );
    }
    match rss.total_memory() {
        0 => (u64::MAX, LimitSource::Unlimited),
        total => (total / 4 * 3, LimitSource::PhysicalMemory { total }),
    }
}

#[cfg(test)]
mod tests;
