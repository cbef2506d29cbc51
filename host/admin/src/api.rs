//! The admin API's JSON contract, defined once: the server answers with these types, and
//! `plugin-host status` and the tests read them back.
//!
//! Every endpoint answers an object. Units are in the field names: durations are
//! milliseconds (`_ms`), sizes are bytes (`_bytes`); counts have no suffix. Every error is
//! [`ErrorBody`]: `{"error": {"kind": "...", "message": "..."}}`.

use std::{collections::BTreeMap, path::PathBuf};

use plugin_host::{
    discovery::Verdict, ComponentStatus, FileState, Isolation, LimitSource, LockStats,
    MemoryStatus, MethodInfo,
};
use serde::{Deserialize, Serialize};

use plugin_host::ComponentSummary;

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok` when the host answers.
    pub status: String,
}

/// `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// Whether every eager component is ready and the host is not stopping.
    pub ready: bool,
    /// Whether the stop has begun (then `ready` is false).
    pub shutting_down: bool,
    /// The eager components not ready yet, with their state.
    pub waiting: Vec<Waiting>,
}

/// An eager component `/readyz` waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// The component.
    pub component: String,
    /// Its state (`initializing`, `failed`, ...); `None` if it is not registered.
    pub state: Option<String>,
}

/// `GET /plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plugins {
    /// The plugins directory.
    #[serde(serialize_with = "plugin_host::serialize_path_lossy")]
    pub dir: PathBuf,
    /// Every plugin file, in the shape `list --json` and `inspect --json` use.
    pub plugins: Vec<Verdict>,
}

/// `GET /components`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Components {
    /// Every component, sorted by name.
    pub components: Vec<Component>,
}

/// One component's state and figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Its name.
    pub name: String,
    /// `registered`, `initializing`, `ready`, `failed`, `timed_out`, `evicted`,
    /// `quarantined` or `stopped`.
    pub state: String,
    /// The plugin providing it; `None` for a native component.
    pub plugin: Option<String>,
    /// Where it runs.
    pub isolation: Isolation,
    /// With `isolation = "auto"`: why it moved to a worker process, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to_worker: Option<String>,
    /// Its sandbox: declared, granted and applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<plugin_host::SandboxStatus>,
    /// Its worker process, when isolated and running.
    pub worker_pid: Option<u32>,
    /// What ends everything its worker starts (a PID namespace, or its process group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// What became of its plugin file; `None` for a native component.
    pub file: Option<FileState>,
    /// The methods it declares (empty: any name is passed on).
    pub methods: Vec<MethodInfo>,
    /// Components it needs.
    pub dependencies: Vec<String>,
    /// Registered components that need it.
    pub dependents: Vec<String>,
    /// 0 (most important) to 100.
    pub priority: u8,
    /// Declared memory use.
    pub memory_estimate_bytes: u64,
    /// RSS growth measured across its last creation.
    pub memory_measured_bytes: Option<u64>,
    /// Times it was evicted.
    pub evictions: u64,
    /// How long its last successful initialisation took.
    pub init_ms: Option<f64>,
    /// Time since its last use.
    pub idle_ms: Option<u64>,
    /// Calls made.
    pub calls: u64,
    /// CPU seconds its calls spent (in process: the sampled calls', scaled).
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Calls that failed.
    pub call_errors: u64,
    /// Calls that timed out.
    pub call_timeouts: u64,
    /// Calls abandoned for using more CPU than `cpu_per_call`.
    #[serde(default)]
    pub cpu_overruns: u64,
    /// Streams open now.
    #[serde(default)]
    pub streams_open: u64,
    /// Calls running now, abandoned ones included.
    pub calls_in_flight: usize,
    /// Calls abandoned by their callers that still run.
    pub calls_abandoned: usize,
    /// Stuck methods and how many abandoned calls of each still run.
    pub stuck_methods: BTreeMap<String, usize>,
    /// The most calls it may run at once.
    pub max_concurrent_calls: usize,
    /// Abandoned calls at which it is quarantined.
    pub quarantine_after: usize,
    /// Calls refused because it was saturated.
    pub refused_saturated: u64,
    /// Calls refused because it was quarantined.
    pub refused_quarantined: u64,
    /// Log records dropped by its rate limit.
    pub log_suppressed: u64,
    /// Successful initialisations.
    pub inits: u64,
    /// Failed initialisations.
    pub init_failures: u64,
    /// The last initialisation error, with its causes.
    pub last_error: Option<String>,
    /// Call latency over the last aggregation window.
    pub call_latency: Latency,
    /// Initialisation time over the last aggregation window.
    pub init_duration: Latency,
}

/// Estimated quantiles of a latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Events the estimate rests on.
    pub count: f64,
}

impl Latency {
    fn of(quantiles: plugin_host::metrics::Quantiles) -> Self {
        Self {
            p50_ms: quantiles.p50 * 1e3,
            p95_ms: quantiles.p95 * 1e3,
            p99_ms: quantiles.p99 * 1e3,
            count: quantiles.count,
        }
    }
}

impl Component {
    /// A component's view from its status and latency summary.
    pub fn of(status: ComponentStatus, summary: Option<ComponentSummary>) -> Self {
        let summary = summary.unwrap_or_default();
        Self {
            state: status.state.as_str().to_owned(),
            isolation: status.isolation,
            moved_to_worker: status.moved_to_worker.clone(),
            sandbox: status.sandbox.clone(),
            worker_pid: status.worker_pid,
            fence: status.fence.clone(),
            file: status.file,
            methods: status.methods,
            dependencies: status.dependencies,
            dependents: status.dependents,
            priority: status.priority,
            memory_estimate_bytes: status.memory_estimate,
            memory_measured_bytes: status.memory_measured,
            evictions: status.evictions,
            init_ms: status.init_ms,
            idle_ms: status.idle_ms,
            calls: status.calls,
            cpu_seconds: status.cpu_seconds,
            call_errors: status.call_errors,
            call_timeouts: status.call_timeouts,
            cpu_overruns: status.cpu_overruns,
            calls_in_flight: status.calls_in_flight,
            streams_open: status.streams_open,
            calls_abandoned: status.calls_abandoned,
            stuck_methods: status.stuck_methods.into_iter().collect(),
            max_concurrent_calls: status.max_concurrent_calls,
            quarantine_after: status.quarantine_after,
            refused_saturated: status.refused_saturated,
            refused_quarantined: status.refused_quarantined,
            log_suppressed: status.log_suppressed,
            inits: status.inits,
            init_failures: status.init_failures,
            last_error: status.last_error,
            call_latency: Latency::of(summary.call_latency),
            init_duration: Latency::of(summary.init_duration),
            name: status.name,
            plugin: status.plugin,
        }
    }
}

/// `GET /memory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The memory limit.
    pub limit_bytes: u64,
    /// Where it came from: `configured`, `cgroup`, `physical_memory` or `unlimited`.
    pub limit_source: String,
    /// RSS now: the host's and its worker processes'.
    pub rss_bytes: u64,
    /// Reserved by initialisations in flight.
    pub reserved_bytes: u64,
    /// `normal`, `medium`, `high` or `critical`.
    pub pressure: String,
    /// Evictions so far.
    pub evictions: u64,
    /// RSS reclaimed by evictions and idle workers so far.
    pub reclaimed_bytes: u64,
    /// What opening each loaded library cost.
    pub libraries: BTreeMap<String, u64>,
    /// Per component.
    pub components: BTreeMap<String, ComponentMemory>,
    /// RSS of each worker process, by pid.
    pub workers: BTreeMap<u32, u64>,
}

/// One component's memory figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentMemory {
    /// Its estimate.
    pub estimate_bytes: u64,
    /// Measured across its last creation.
    pub measured_bytes: Option<u64>,
    /// Times it was evicted.
    pub evictions: u64,
}

impl From<MemoryStatus> for Memory {
    fn from(status: MemoryStatus) -> Self {
        let limit_source = match status.limit_source {
            LimitSource::Configured => "configured",
            LimitSource::Cgroup { .. } => "cgroup",
            LimitSource::PhysicalMemory { .. } => "physical_memory",
            LimitSource::Unlimited => "unlimited",
        };
        Self {
            limit_bytes: status.limit,
            limit_source: limit_source.to_owned(),
            rss_bytes: status.rss,
            reserved_bytes: status.reserved,
            pressure: serde_json::to_value(status.pressure)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            evictions: status.evictions,
            reclaimed_bytes: status.reclaimed,
            libraries: status.libraries.into_iter().collect(),
            components: status
                .components
                .into_iter()
                .map(|(name, c)| {
                    let memory = ComponentMemory {
                        estimate_bytes: c.estimate,
                        measured_bytes: c.measured,
                        evictions: c.evictions,
                    };
                    (name, memory)
                })
                .collect(),
            workers: status.workers.into_iter().collect(),
        }
    }
}

/// `GET /locks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Locks {
    /// Every lock used so far.
    pub locks: Vec<Lock>,
    /// Who waits for whom now: (waiter, holder).
    pub waits: Vec<(String, String)>,
}

impl Locks {
    /// The view of a lock manager.
    pub fn of(locks: &plugin_host::LockManager) -> Self {
        Self {
            locks: locks.stats().into_iter().map(Lock::from).collect(),
            waits: locks.waits(),
        }
    }
}

/// One lock's statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    /// Its name.
    pub name: String,
    /// Its place in the configured order, if it has one.
    pub rank: Option<usize>,
    /// Acquisitions.
    pub acquisitions: u64,
    /// Acquisitions that had to wait.
    pub contentions: u64,
    /// Time spent waiting, in total and at most.
    pub total_wait_ms: f64,
    /// The longest wait.
    pub max_wait_ms: f64,
    /// Time held (sampled, scaled), in total.
    pub total_hold_ms: f64,
    /// The longest hold seen.
    pub max_hold_ms: f64,
    /// Acquisitions that timed out.
    pub timeouts: u64,
    /// Acquisitions refused for breaking the order.
    pub order_violations: u64,
    /// Acquisitions refused because they would deadlock.
    pub deadlocks: u64,
    /// Who holds it now.
    pub holder: Option<String>,
    /// Who waits for it now.
    pub waiters: Vec<String>,
}

impl From<LockStats> for Lock {
    fn from(stats: LockStats) -> Self {
        let ms = |us: u64| us as f64 / 1e3;
        Self {
            total_wait_ms: ms(stats.total_wait_us),
            max_wait_ms: ms(stats.max_wait_us),
            total_hold_ms: ms(stats.total_hold_us),
            max_hold_ms: ms(stats.max_hold_us),
            name: stats.name,
            rank: stats.rank,
            acquisitions: stats.acquisitions,
            contentions: stats.contentions,
            timeouts: stats.timeouts,
            order_violations: stats.order_violations,
            deadlocks: stats.deadlocks,
            holder: stats.holder,
            waiters: stats.waiters,
        }
    }
}

/// `GET /timeouts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// Operations under a timeout now.
    pub active: Vec<ActiveTimeout>,
    /// Operations started under a timeout so far.
    pub started: u64,
    /// ... that expired.
    pub expired: u64,
    /// ... that were cancelled.
    pub cancelled: u64,
}

/// One operation under a timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveTimeout {
    /// Its id, for `POST /timeouts/{id}/cancel`.
    pub id: u64,
    /// `init` or `call`.
    pub kind: String,
    /// The component.
    pub component: String,
    /// The method, for a call.
    pub method: Option<String>,
    /// Its limit.
    pub limit_ms: u64,
    /// How long it has run.
    pub elapsed_ms: u64,
}

impl Timeouts {
    /// The view of a timeout manager.
    pub fn of(timeouts: &plugin_host::TimeoutManager) -> Self {
        let stats = timeouts.stats();
        Self {
            active: timeouts
                .active()
                .into_iter()
                .map(|active| ActiveTimeout {
                    id: active.id,
                    kind: active.kind.as_str().to_owned(),
                    component: active.component,
                    method: active.method,
                    limit_ms: active.limit_ms,
                    elapsed_ms: active.elapsed_ms,
                })
                .collect(),
            started: stats.started,
            expired: stats.expired,
            cancelled: stats.cancelled,
        }
    }
}

/// `GET /metrics.json`: everything at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When latencies were last summarised (RFC 3339).
    pub aggregated_at: Option<String>,
    /// Every component.
    pub components: Vec<Component>,
    /// Memory.
    pub memory: Memory,
    /// Locks.
    pub locks: Locks,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Plugin files.
    pub plugins: PluginCounts,
    /// Metrics plugins registered.
    pub plugin_metrics: Vec<PluginMetric>,
}

/// How many plugin files there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginCounts {
    /// Files in the plugins directory.
    pub files: usize,
    /// Usable ones.
    pub usable: usize,
    /// Scanned this run (the rest came from the registry cache).
    pub scanned: usize,
}

/// One metric a plugin registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginMetric {
    /// Its name, as the plugin gave it.
    pub name: String,
    /// The plugin.
    pub plugin: String,
    /// The component that registered it.
    pub component: String,
    /// Its value.
    pub value: PluginMetricValue,
}

/// A plugin metric's value. Histograms are in the plugin's own unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PluginMetricValue {
    /// A counter.
    Counter {
        /// Its count.
        value: u64,
    },
    /// A histogram's estimated quantiles.
    Histogram {
        /// Median.
        p50: f64,
        /// 95th percentile.
        p95: f64,
        /// 99th percentile.
        p99: f64,
        /// Observations.
        count: f64,
    },
}

/// `POST /components/{name}/call/{method}`: the component's JSON reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallResult {
    /// What the component answered.
    pub result: serde_json::Value,
}

/// `POST /components/{name}/evict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evicted {
    /// The components evicted, dependents first.
    pub evicted: Vec<String>,
}

/// `POST /timeouts/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    /// The operation cancelled.
    pub cancelled: u64,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`kind`) and people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `unknown_component`, `timed_out`, `saturated`, `method_not_allowed`, ...
    pub kind: String,
    /// The whole message: what happened and what to do.
    pub message: String,
}

impl std::fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl std::error::Error for ErrorDetail {}
