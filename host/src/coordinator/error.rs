//! Errors of getting, initialising and calling components.

use std::{path::PathBuf, sync::Arc, time::Duration};

use plugin_api::PluginError;

use crate::{fault::WorkerFault, loader::LoadError};

/// Why a component could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Another provider already has the name.
    #[error("component `{name}` is provided by both {existing} (served) and {new} (not served); remove one of them")]
    Duplicate {
        /// The component name.
        name: String,
        /// Who provided it first.
        existing: String,
        /// Who tried to provide it again.
        new: String,
    },
    /// Registering it would close a dependency cycle.
    #[error("dependency cycle: {}; break the cycle in the components' declared dependencies", .path.join(" -> "))]
    Cycle {
        /// The cycle, first component repeated at the end.
        path: Vec<String>,
    },
    /// The name is not usable.
    #[error("component name `{name}` is not valid: {}", crate::names::NAME_RULE)]
    InvalidName {
        /// The name.
        name: String,
    },
}

/// Who provides a component, for messages: `plugin `x`` or `native`.
fn provider_label(plugin: Option<&str>) -> String {
    plugin.map_or_else(
        || "native".to_owned(),
        |plugin| format!("plugin `{plugin}`"),
    )
}

/// Why a component could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Its library could not be loaded.
    #[error("component `{component}`: cannot load its plugin library")]
    Load {
        /// The component.
        component: String,
        /// Why.
        #[source]
        source: Box<LoadError>,
    },
    /// The provider's create failed, panicked or the plugin reported an error.
    #[error("component `{component}` ({}) failed to initialise", provider_label(.plugin.as_deref()))]
    Create {
        /// The component.
        component: String,
        /// The plugin, or `None` for a native component.
        plugin: Option<String>,
        /// The plugin's error.
        #[source]
        source: PluginError,
    },
    /// Its worker process died (or was killed) while it was being created.
    #[error("component `{component}` failed to initialise: {fault}")]
    WorkerFailed {
        /// The component.
        component: String,
        /// What happened to the worker.
        fault: WorkerFault,
    },
    /// A dependency could not be made ready.
    #[error("component `{component}` cannot start because its dependency `{dependency}` failed")]
    Dependency {
        /// The component.
        component: String,
        /// The dependency that failed.
        dependency: String,
        /// Why the dependency failed.
        #[source]
        source: GetError,
    },
    /// A dependency is declared but nothing provides it.
    #[error("component `{component}` cannot start: it depends on `{dependency}`, which no plugin or native component provides; put a plugin that provides `{dependency}` in the plugins directory")]
    MissingDependency {
        /// The component.
        component: String,
        /// The missing dependency.
        dependency: String,
    },
    /// Initialisation took longer than its timeout; its thread was abandoned.
    #[error("component `{component}` did not finish initialising within {}; it is marked timed out and a late result will be dropped", humantime::format_duration(*.limit))]
    TimedOut {
        /// The component.
        component: String,
        /// The limit that expired.
        limit: Duration,
    },
    /// The memory budget cannot hold the component, even after evicting what could be.
    #[error("component `{component}` cannot be admitted: it {shortfall}; {evictions}; raise [memory] limit or lower the component's memory_estimate")]
    MemoryRefused {
        /// The component.
        component: String,
        /// The figures of the failed check.
        shortfall: crate::memory::Shortfall,
        /// What eviction freed and why the rest could not be evicted.
        evictions: EvictionReport,
    },
    /// An operator cancelled the initialisation; its thread was abandoned.
    #[error(
        "initialisation of component `{component}` was cancelled; a late result will be dropped"
    )]
    Cancelled {
        /// The component.
        component: String,
    },
    /// The host began shutting down while the component was initialising.
    #[error("component `{component}` finished initialising after shutdown began and was stopped")]
    ShuttingDown {
        /// The component.
        component: String,
    },
    /// The initialising thread could not be started or died.
    #[error("component `{component}`: initialisation thread failed: {reason}")]
    Thread {
        /// The component.
        component: String,
        /// What happened.
        reason: String,
    },
}

/// Why a ready component was not evicted to make room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotEvictable {
    /// Priority 0 is never evicted.
    PriorityZero,
    /// Not less important than the component that needs the room.
    NotLessImportant {
        /// Its priority.
        priority: u8,
        /// The requester's priority.
        requester: u8,
    },
    /// A caller holds a handle to it.
    InUse,
    /// Ready components depend on it.
    NeededBy {
        /// Those components.
        dependents: Vec<String>,
    },
    /// Used too recently.
    NotIdleLongEnough {
        /// How long it has been idle.
        idle: Duration,
        /// The least idle time before eviction.
        min_idle: Duration,
    },
}

impl std::fmt::Display for NotEvictable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PriorityZero => f.write_str("priority 0 is never evicted"),
            Self::NotLessImportant {
                priority,
                requester,
            } => write!(
                f,
                "priority {priority} is not below the requester's {requester}"
            ),
            Self::InUse => f.write_str("in use"),
            Self::NeededBy { dependents } => {
                write!(f, "needed by ready {}", dependents.join(", "))
            }
            Self::NotIdleLongEnough { idle, min_idle } => write!(
                f,
                "idle {} < min_idle {}",
                humantime::format_duration(Duration::from_secs(idle.as_secs())),
                humantime::format_duration(*min_idle)
            ),
        }
    }
}

/// What eviction did for an admission: bytes freed, and the ready components kept, each
/// with why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EvictionReport {
    /// RSS reclaimed, measured.
    pub freed: u64,
    /// Components that could not be evicted, by name, with the reason.
    pub kept: Vec<(String, NotEvictable)>,
}

impl std::fmt::Display for EvictionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kept.is_empty() && self.freed == 0 {
            return f.write_str("no other component was ready to evict");
        }
        write!(
            f,
            "evictions freed {}; not evictable: ",
            crate::util::format_bytes(self.freed)
        )?;
        if self.kept.is_empty() {
            return f.write_str("none");
        }
        for (index, (name, reason)) in self.kept.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "`{name}`: {reason}")?;
        }
        Ok(())
    }
}

/// Why [`crate::Coordinator::get`] failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GetError {
    /// No plugin or native provider has that name.
    #[error("no component named `{name}`; `plugin-host list` shows the components available{}", unusable_note(.unusable))]
    UnknownComponent {
        /// The name asked for.
        name: String,
        /// Plugin files of the directory that cannot be used now (refused by the trust
        /// policy, or broken): one of them may be the one meant.
        unusable: Vec<PathBuf>,
    },
    /// The component was provided by a plugin file that cannot be used now (refused by
    /// the trust policy, or broken since it was last scanned).
    #[error("component `{name}` cannot be used: {reason}")]
    Unusable {
        /// The name asked for.
        name: String,
        /// The plugin file that provided it.
        path: PathBuf,
        /// Why that file cannot be used (the loader's error, which names it).
        reason: Arc<LoadError>,
    },
    /// A dependency is declared but nothing provides it.
    #[error("component `{component}` depends on `{dependency}`, which no plugin or native component provides")]
    MissingDependency {
        /// The component.
        component: String,
        /// The missing dependency.
        dependency: String,
    },
    /// Initialisation failed (the same error for every waiter).
    #[error(transparent)]
    Init(Arc<InitError>),
    /// The component failed recently and is not retried until the backoff passes.
    #[error("component `{component}` failed {} ago and is retried after {}", crate::util::for_people(*.since), humantime::format_duration(*.backoff))]
    Backoff {
        /// The component.
        component: String,
        /// Time since the failure.
        since: Duration,
        /// The retry backoff.
        backoff: Duration,
        /// The failure.
        #[source]
        source: Arc<InitError>,
    },
    /// The coordinator is shutting down.
    #[error("component `{name}` is not available: the host is shutting down")]
    ShuttingDown {
        /// The component.
        name: String,
    },
    /// An earlier initialisation timed out and its `create` still runs; no second one
    /// starts beside it.
    #[error("component `{component}`: an earlier initialisation timed out and is still running; it is tried again once that returns")]
    InitStillRunning {
        /// The component.
        component: String,
    },
}

/// ", and why N plugin file(s) cannot be used now: ...", naming at most three of them.
fn unusable_note(unusable: &[PathBuf]) -> String {
    const NAMED: usize = 3;
    if unusable.is_empty() {
        return String::new();
    }
    let mut names: Vec<String> = unusable
        .iter()
        .take(NAMED)
        .map(|path| path.display().to_string())
        .collect();
    if unusable.len() > NAMED {
        names.push(format!("{} more", unusable.len() - NAMED));
    }
    format!(
        ", and why {} plugin file(s) cannot be used now: {}",
        unusable.len(),
        names.join(", ")
    )
}

impl InitError {
    /// A short machine-readable name for the failure (`init_timed_out`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Load { .. } => "load_failed",
            Self::Create { .. } => "init_failed",
            Self::WorkerFailed { fault, .. } => fault.kind.as_str(),
            Self::Dependency { source, .. } => source.kind(),
            Self::MissingDependency { .. } => "missing_dependency",
            Self::TimedOut { .. } => "init_timed_out",
            Self::MemoryRefused { .. } => "memory_refused",
            Self::Cancelled { .. } => "cancelled",
            Self::ShuttingDown { .. } => "shutting_down",
            Self::Thread { .. } => "internal",
        }
    }

    /// Whether the root cause is a memory refusal (of this component or a dependency).
    /// Such a refusal is not a failure of the component: it is not remembered, and the
    /// next attempt runs admission again.
    pub fn is_memory_refusal(&self) -> bool {
        match self {
            Self::MemoryRefused { .. } => true,
            Self::Dependency {
                source: GetError::Init(source),
                ..
            } => source.is_memory_refusal(),
            _ => false,
        }
    }
}

impl GetError {
    /// A short machine-readable name for the failure, looking through dependencies.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownComponent { .. } => "unknown_component",
            Self::Unusable { .. } => "unusable",
            Self::MissingDependency { .. } => "missing_dependency",
            Self::Init(init) | Self::Backoff { source: init, .. } => init.kind(),
            Self::ShuttingDown { .. } => "shutting_down",
            Self::InitStillRunning { .. } => "init_still_running",
        }
    }

    /// Whether the root cause is an expired init timeout.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Init(err) | Self::Backoff { source: err, .. } => match &**err {
                InitError::TimedOut { .. } => true,
                InitError::Dependency { source, .. } => source.is_timeout(),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The component could not be made ready.
    #[error(transparent)]
    Get(#[from] GetError),
    /// The component declares its methods, and not this one: refused before anything was
    /// loaded.
    #[error("component `{component}` has no method `{method}`; it declares: {}", .declared.join(", "))]
    UndeclaredMethod {
        /// The component.
        component: String,
        /// The method asked for.
        method: String,
        /// The methods it declares.
        declared: Vec<String>,
    },
    /// The component answered with an error (or panicked; the panic was caught).
    #[error("component `{component}` method `{method}` failed")]
    Failed {
        /// The component.
        component: String,
        /// The method.
        method: String,
        /// The component's error.
        #[source]
        source: PluginError,
    },
    /// The call did not return within its timeout.
    #[error("component `{component}` method `{method}` did not return within {}", humantime::format_duration(*.limit))]
    TimedOut {
        /// The component.
        component: String,
        /// The method.
        method: String,
        /// The limit.
        limit: Duration,
    },
    /// The component's worker process died (crashed, or was killed after a call outlived
    /// its timeout, or for its memory) while the call ran. The next call starts a new
    /// worker.
    #[error("component `{component}` method `{method}` failed: {fault}")]
    WorkerFailed {
        /// The component.
        component: String,
        /// The method.
        method: String,
        /// What happened to the worker.
        fault: WorkerFault,
    },
    /// A call (one answer) was asked of a method that streams: open it as a stream.
    #[error("component `{component}` method `{method}` streams: open it as a stream (POST /components/{component}/stream/{method}, or plugin-host call --stream)")]
    StreamOnly {
        /// The component.
        component: String,
        /// The method.
        method: String,
    },
    /// A stream was asked of a method that does not stream.
    #[error("component `{component}` method `{method}` does not stream; {}", if .streams.is_empty() { "the component has no streaming methods; call it instead".to_owned() } else { format!("its streaming methods: {}", .streams.join(", ")) })]
    NotAStream {
        /// The component.
        component: String,
        /// The method.
        method: String,
        /// The methods that do stream.
        streams: Vec<String>,
    },
    /// A stream produced no item for `[timeouts] stream_idle`.
    #[error("component `{component}` stream `{method}` sent nothing for {limit:?} ([timeouts] stream_idle); it was ended")]
    StreamIdle {
        /// The component.
        component: String,
        /// The method.
        method: String,
        /// The idle limit.
        limit: std::time::Duration,
    },
    /// The component's reply was larger than `[limits] max_reply`. An isolated worker
    /// does not send it and keeps running.
    #[error("component `{component}` method `{method}` answered {size} bytes, more than [limits] max_reply ({limit} bytes); ask for less per call, or raise max_reply")]
    ReplyTooLarge {
        /// The component.
        component: String,
        /// The method.
        method: String,
        /// The reply's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The component already runs as many calls as it may; retry shortly.
    #[error("component `{component}` already runs {limit} calls, its limit; `{method}` was refused at once (retry later, or raise max_concurrent_calls)")]
    Saturated {
        /// The component.
        component: String,
        /// The method refused.
        method: String,
        /// The limit on calls in flight.
        limit: usize,
    },
    /// Too many of the component's calls timed out and still run; calls fail fast until
    /// they return.
    #[error("component `{component}` is quarantined: {} timed-out call(s) still running ({}); `{method}` was refused at once", .stuck.iter().map(|(_, n)| n).sum::<usize>(), .stuck.iter().map(|(m, n)| format!("{n} x `{m}`")).collect::<Vec<_>>().join(", "))]
    Quarantined {
        /// The component.
        component: String,
        /// The method refused.
        method: String,
        /// The stuck methods and how many calls of each still run.
        stuck: Vec<(String, usize)>,
    },
    /// The call used more CPU time than `[components.NAME] cpu_per_call`: it was
    /// abandoned as a hung call is.
    #[error("component `{component}` method `{method}` used {} of CPU, over its budget of {} (cpu_per_call); the call was abandoned", crate::util::for_people(*.spent), humantime::format_duration(*.budget))]
    CpuBudgetExceeded {
        /// The component.
        component: String,
        /// The method.
        method: String,
        /// `cpu_per_call`.
        budget: Duration,
        /// The CPU time it had used when it was abandoned (rounded to the millisecond).
        spent: Duration,
    },
    /// An operator cancelled the call.
    #[error("call to component `{component}` method `{method}` was cancelled")]
    Cancelled {
        /// The component.
        component: String,
        /// The method.
        method: String,
    },
    /// The input or output was not valid JSON for the types asked for.
    #[error("component `{component}` method `{method}`: {message}")]
    Json {
        /// The component.
        component: String,
        /// The method.
        method: String,
        /// What did not (de)serialise.
        message: String,
    },
}

impl CallError {
    /// A short machine-readable name for the failure (`saturated`, `timed_out`, ...). A
    /// component's own error gives its kind: a variant's, or one a plugin named with
    /// `PluginError::with_kind` (`not_found`, `unavailable`, ...).
    pub fn kind(&self) -> &str {
        match self {
            Self::Get(get) => get.kind(),
            Self::Failed { source, .. } => match source {
                PluginError::Dependency { .. } => "dependency_failed",
                other => other.kind(),
            },
            Self::TimedOut { .. } => "timed_out",
            Self::Cancelled { .. } => "cancelled",
            Self::CpuBudgetExceeded { .. } => "cpu_budget_exceeded",
            Self::WorkerFailed { fault, .. } => fault.kind.as_str(),
            Self::ReplyTooLarge { .. } => "reply_too_large",
            Self::NotAStream { .. } => "not_a_stream",
            Self::StreamOnly { .. } => "stream_only",
            Self::StreamIdle { .. } => "stream_idle",
            Self::UndeclaredMethod { .. } => "unknown_method",
            Self::Saturated { .. } => "saturated",
            Self::Quarantined { .. } => "quarantined",
            Self::Json { .. } => "bad_reply",
        }
    }
}

/// Why [`crate::Coordinator::evict`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvictError {
    /// No component has that name.
    #[error("no component named `{name}`")]
    UnknownComponent {
        /// The name asked for.
        name: String,
    },
    /// Only ready components can be evicted.
    #[error("component `{name}` is {state}, not ready; there is nothing to evict")]
    NotReady {
        /// The component.
        name: String,
        /// Its state.
        state: super::ComponentState,
    },
    /// Ready components depend on it.
    #[error("component `{name}` is needed by ready component(s) {}; evict those first or ask for a cascade", .dependents.join(", "))]
    HasReadyDependents {
        /// The component.
        name: String,
        /// The ready components that depend on it.
        dependents: Vec<String>,
    },
}
