//! Snapshots of every component for people, the admin API and metrics.

use std::{collections::HashMap, sync::atomic::Ordering};

use serde::Serialize;

use super::{
    slot::{FileState, Slot},
    ComponentState, Coordinator, ErrorChainDisplay,
};
use crate::{config::Isolation, manifest::MethodInfo, metrics::HistogramSnapshot};

/// A snapshot of one component for people and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    /// Component name.
    pub name: String,
    /// Current state.
    pub state: ComponentState,
    /// Providing plugin, or `None` for native components.
    pub plugin: Option<String>,
    /// Declared dependencies.
    pub dependencies: Vec<String>,
    /// Registered components that depend on it.
    pub dependents: Vec<String>,
    /// 0 (most important) to 100.
    pub priority: u8,
    /// Declared memory use in bytes.
    pub memory_estimate: u64,
    /// RSS growth measured across its last creation, in bytes.
    pub memory_measured: Option<u64>,
    /// Times it was evicted to free memory.
    pub evictions: u64,
    /// How long the last successful init took, in milliseconds.
    pub init_ms: Option<f64>,
    /// Milliseconds since last use, if used.
    pub idle_ms: Option<u64>,
    /// Calls made.
    pub calls: u64,
    /// CPU seconds its calls spent: in its worker, every call; in process, the sampled
    /// calls' (`[metrics] sample_rate`) scaled up.
    pub cpu_seconds: f64,
    /// Calls that returned an error.
    pub call_errors: u64,
    /// Calls that timed out.
    pub call_timeouts: u64,
    /// Calls abandoned for using more CPU than `cpu_per_call`.
    pub cpu_overruns: u64,
    /// Calls running now, abandoned ones included.
    pub calls_in_flight: usize,
    /// Calls abandoned by their callers (timed out) that still run, of every instance
    /// it has had.
    pub calls_abandoned: usize,
    /// The stuck methods of its ready instance and how many abandoned calls of each
    /// still run.
    pub stuck_methods: Vec<(String, usize)>,
    /// The most calls it may run at once.
    pub max_concurrent_calls: usize,
    /// Abandoned calls of one instance at which it is quarantined.
    pub quarantine_after: usize,
    /// Calls refused because it was running `max_concurrent_calls` already.
    pub refused_saturated: u64,
    /// Calls refused because it was quarantined.
    pub refused_quarantined: u64,
    /// Log records dropped by its log rate limit.
    pub log_suppressed: u64,
    /// Latency of the sampled share of calls (its count is the calls timed).
    #[serde(skip)]
    pub call_latency: HistogramSnapshot,
    /// Duration of successful initialisations.
    #[serde(skip)]
    pub init_duration: HistogramSnapshot,
    /// Successful initialisations.
    pub inits: u64,
    /// Failed initialisations.
    pub init_failures: u64,
    /// The last initialisation error, with its causes.
    pub last_error: Option<String>,
    /// What became of its plugin file (`changed`: a restart upgrades it); `None` for a
    /// native component.
    pub file: Option<FileState>,
    /// Where it runs: `in-process`, `process` or `auto`.
    pub isolation: Isolation,
    /// With `auto`: why it moved to a worker process, once it has.
    pub moved_to_worker: Option<String>,
    /// The pid of the worker process its instance runs in (isolated, ready, worker up).
    pub worker_pid: Option<u32>,
    /// What ends everything that worker starts when it ends: a PID namespace of its
    /// own, or (where none can be made) its process group, and why.
    pub fence: Option<String>,
    /// The methods it declares (empty: any name is passed on).
    pub methods: Vec<MethodInfo>,
    /// Its sandbox, when it has one.
    pub sandbox: Option<SandboxStatus>,
    /// Streams open now.
    pub streams_open: u64,
    /// Items its streams sent.
    pub stream_items: u64,
    /// Bytes its streams sent.
    pub stream_bytes: u64,
    /// How long its streams ran, in seconds.
    pub stream_duration: HistogramSnapshot,
}

/// An isolated component's sandbox: what its plugin declares, what the host grants, and
/// what its worker enforces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SandboxStatus {
    /// `on` or `best-effort`.
    pub mode: String,
    /// What the plugin declares it needs.
    pub declared: plugin_api::SandboxNeeds,
    /// What the host grants (the declaration, with the config's grants in its place),
    /// together with what the library's other sandboxed components are granted: they
    /// share one worker.
    pub granted: plugin_api::SandboxNeeds,
    /// What its running worker enforces, as the worker reported when it started; `None`
    /// while no worker runs.
    pub applied: Option<String>,
}

impl Coordinator {
    /// Every component's state and counters, sorted by name.
    pub fn components(&self) -> Vec<ComponentStatus> {
        let slots = self.inner.slots.load();
        let mut dependents: HashMap<&str, Vec<String>> = HashMap::new();
        for slot in slots.values() {
            for dep in &slot.spec().dependencies {
                dependents
                    .entry(dep.as_str())
                    .or_default()
                    .push(slot.name().to_owned());
            }
        }
        let catalog = self.inner.catalog.load();
        let methods: HashMap<&str, &Vec<MethodInfo>> = catalog
            .usable()
            .flat_map(|(_, info)| info.components.iter())
            .map(|component| (component.name.as_str(), &component.methods))
            .collect();
        let plugins: HashMap<&str, &crate::manifest::PluginInfo> = catalog
            .usable()
            .flat_map(|(_, info)| info.components.iter().map(move |c| (c.name.as_str(), info)))
            .collect();
        let mut list: Vec<ComponentStatus> = slots
            .values()
            .map(|slot| {
                let mut of = dependents.get(slot.name()).cloned().unwrap_or_default();
                of.sort();
                let declared = methods.get(slot.name()).map(|m| (*m).clone());
                let mut status = self.status_of(slot, of, declared);
                status.sandbox = plugins.get(slot.name()).and_then(|info| {
                    let (mode, granted) = self.plan_of(slot.name()).sandbox_for(&info.sandbox)?;
                    Some(SandboxStatus {
                        mode: mode.as_str().to_owned(),
                        declared: info.sandbox.clone(),
                        granted,
                        applied: slot.provider.sandbox_applied(),
                    })
                });
                status
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// One component's status; `declared` is its methods as its plugin's manifest
    /// describes them (a native component's are names only).
    fn status_of(
        &self,
        slot: &Slot,
        dependents: Vec<String>,
        declared: Option<Vec<MethodInfo>>,
    ) -> ComponentStatus {
        let spec = slot.spec();
        let stats = &slot.info.stats;
        let bulkhead = &slot.info.bulkhead;
        let state = slot.public_state();
        let last_error = slot
            .last_error
            .lock()
            .as_ref()
            .map(|error| ErrorChainDisplay(&**error).to_string());
        let init_micros = stats.init_micros.load(Ordering::Relaxed);
        let memory = self.inner.memory.component(&spec.name).unwrap_or_default();
        let limits = bulkhead.limits();
        ComponentStatus {
            name: spec.name.clone(),
            state,
            plugin: spec.plugin.clone(),
            dependencies: spec.dependencies.clone(),
            dependents,
            priority: spec.priority,
            memory_estimate: spec.memory_estimate,
            memory_measured: memory.measured,
            evictions: memory.evictions,
            init_ms: (init_micros > 0).then(|| init_micros as f64 / 1000.0),
            idle_ms: stats.idle_for().map(|d| d.as_millis() as u64),
            calls: stats.calls.get(),
            cpu_seconds: stats.cpu_nanos.get() as f64 / 1e9,
            call_errors: stats.call_errors.get(),
            call_timeouts: stats.call_timeouts.get(),
            cpu_overruns: stats.cpu_overruns.get(),
            calls_in_flight: bulkhead.in_flight(),
            calls_abandoned: bulkhead.abandoned(),
            stuck_methods: slot.stuck_methods(),
            max_concurrent_calls: limits.max_in_flight,
            quarantine_after: limits.quarantine_after,
            refused_saturated: bulkhead.refused_saturated.get(),
            refused_quarantined: bulkhead.refused_quarantined.get(),
            log_suppressed: self.inner.services.logs.suppressed_of(&spec.name),
            methods: declared.unwrap_or_else(|| names_only(&spec.methods, &spec.streams)),
            isolation: slot.provider.isolation(),
            moved_to_worker: slot.provider.moved_to_worker(),
            worker_pid: slot
                .ready
                .load()
                .as_ref()
                .and_then(|ready| ready.instance().worker_pid()),
            fence: slot.provider.fence(),
            call_latency: stats.call_latency.snapshot(),
            init_duration: stats.init_duration.snapshot(),
            inits: stats.inits.get(),
            init_failures: stats.init_failures.get(),
            last_error,
            file: slot.file(),
            sandbox: None,
            streams_open: stats.streams_open.load(Ordering::Relaxed),
            stream_items: stats.stream_items.get(),
            stream_bytes: stats.stream_bytes.get(),
            stream_duration: stats.stream_duration.snapshot(),
        }
    }
}

/// Methods known by name only (a native component's).
fn names_only(calls: &[String], streams: &[String]) -> Vec<MethodInfo> {
    let info = |name: &String| MethodInfo {
        name: name.clone(),
        description: String::new(),
        example: String::new(),
        streams: streams.contains(name),
        calls: calls.contains(name),
    };
    calls
        .iter()
        .chain(streams.iter().filter(|name| !calls.contains(name)))
        .map(info)
        .collect()
}
