//! Plans: the configuration resolved once into what the component engine works by. The
//! coordinator receives [`Plans`] and never reads [`Config`]: a config key changes
//! `config` and this planner, nothing else.
//!
//! A component's plan is its `[components.NAME]` section over the host-wide sections
//! (`[host]`, `[limits]`, `[timeouts]`); a component no section names gets the host-wide
//! settings alone.

mod sandbox;

use std::{collections::BTreeMap, collections::HashMap, time::Duration};

pub(crate) use self::sandbox::worker_sandbox;
use crate::config::{ComponentConfig, Config, Isolation, SandboxGrants, SandboxMode};

/// How the host runs one component.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentPlan {
    /// Whether it is registered at all.
    pub enabled: bool,
    /// Whether `run` initialises it at start.
    pub eager: bool,
    /// Where it runs.
    pub isolation: Isolation,
    /// Whether its worker runs in a sandbox (isolated components only).
    pub sandbox: SandboxMode,
    /// What the operator grants its sandbox, replacing what the plugin declares.
    pub grants: SandboxGrants,
    /// Its priority, over the manifest's.
    pub priority: Option<u8>,
    /// Its memory estimate, over the manifest's.
    pub memory_estimate: Option<u64>,
    /// The most RSS its worker may use (isolated components only).
    pub memory_limit: Option<u64>,
    /// Its init and call timeout, over the manifest's and the host-wide default.
    pub timeout: Option<Duration>,
    /// Call timeouts by method: its own, then `[timeouts.operations]`'s.
    pub operations: BTreeMap<String, Duration>,
    /// The most CPU time one call may use.
    pub cpu_per_call: Option<Duration>,
    /// Calls it runs at once at most.
    pub max_in_flight: usize,
    /// Abandoned calls still running that quarantine it.
    pub quarantine_after: usize,
    /// Log records a second it may write, and the burst above that.
    pub log_records_per_second: u32,
    /// The burst of log records above the rate.
    pub log_burst: u32,
    /// Its own settings, handed to it as JSON.
    pub config: serde_json::Value,
}

/// Host-wide settings of the component engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EnginePlan {
    /// `create`s that may run at once.
    pub init_concurrency: usize,
    /// Init and call timeout when nothing more specific is set.
    pub default_timeout: Duration,
    /// How long a stop waits for calls and drops.
    pub stop_timeout: Duration,
    /// How long an abandoned call's worker lives on before it is killed.
    pub kill_grace: Duration,
    /// The longest gap between two items of a stream.
    pub stream_idle: Duration,
    /// How long a worker may leave what the host writes to it unread.
    pub worker_unread: Duration,
    /// The largest reply of one call.
    pub max_reply: u64,
    /// Payloads from this size on cross to workers in shared memory (0: never).
    pub shared_memory_from: u64,
    /// Threads and processes one worker may run at once (0: not capped).
    pub worker_tasks: u32,
    /// Requests of one worker's plugin code served at once.
    pub worker_requests: usize,
    /// The share of calls whose latency is timed.
    pub sample_rate: f64,
    /// The share of in-process calls whose CPU time is read.
    pub cpu_sample_rate: f64,
    /// Lock names one plugin may use.
    pub locks_per_plugin: usize,
    /// Metric names one plugin may register.
    pub metrics_per_plugin: usize,
}

/// Every component's plan, and the engine's.
#[derive(Debug, Clone, PartialEq)]
pub struct Plans {
    named: HashMap<String, ComponentPlan>,
    default: ComponentPlan,
    /// The engine's own settings.
    pub engine: EnginePlan,
}

impl Default for Plans {
    /// The plans of the default configuration.
    fn default() -> Self {
        Self::resolve(&Config::default())
    }
}

impl Plans {
    /// Resolves `config`: a plan for each component it names, one for the others.
    pub fn resolve(config: &Config) -> Self {
        let default = component_plan(config, "", &ComponentConfig::default());
        let named = config
            .components
            .iter()
            .map(|(name, section)| (name.clone(), component_plan(config, name, section)))
            .collect();
        Self {
            named,
            default,
            engine: engine_plan(config),
        }
    }

    /// Component `name`'s plan.
    pub fn component(&self, name: &str) -> &ComponentPlan {
        self.named.get(name).unwrap_or(&self.default)
    }

    /// Component `name`'s plan, to change (one is made from the defaults if it has none).
    pub fn component_mut(&mut self, name: &str) -> &mut ComponentPlan {
        let default = &self.default;
        self.named
            .entry(name.to_owned())
            .or_insert_with(|| default.clone())
    }

    /// The components the configuration names, sorted.
    pub fn named(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.named.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

fn component_plan(config: &Config, name: &str, section: &ComponentConfig) -> ComponentPlan {
    let limits = &config.limits;
    let mut operations = config.timeouts.operations.clone();
    operations.extend(section.operations.clone());
    ComponentPlan {
        enabled: section.enabled,
        eager: section.eager,
        isolation: section.isolation_or(config.host.isolation),
        sandbox: section.sandbox_or(config.host.sandbox),
        grants: section.sandbox_grants.clone(),
        priority: section.priority,
        memory_estimate: section.memory_estimate,
        memory_limit: section.memory_limit,
        timeout: section.timeout,
        operations,
        cpu_per_call: section.cpu_per_call,
        max_in_flight: section
            .max_concurrent_calls
            .unwrap_or(limits.max_concurrent_calls)
            .max(1),
        quarantine_after: section
            .quarantine_after
            .unwrap_or(limits.quarantine_after)
            .max(1),
        log_records_per_second: section
            .log_records_per_second
            .unwrap_or(limits.log_records_per_second),
        log_burst: limits.log_burst,
        // Validation rejects a section without a JSON form; a config built in code
        // that skipped validation gets `{}`, said once here.
        config: section.config_json().unwrap_or_else(|err| {
            tracing::error!(component = %name, error = %err, "[components.{name}.config] has no JSON form; the component gets {{}}");
            serde_json::Value::Object(serde_json::Map::new())
        }),
    }
}

fn engine_plan(config: &Config) -> EnginePlan {
    EnginePlan {
        init_concurrency: config.host.init_concurrency.max(1),
        default_timeout: config.timeouts.default,
        stop_timeout: config.timeouts.stop,
        kill_grace: config.timeouts.kill_grace,
        stream_idle: config.timeouts.stream_idle,
        worker_unread: config.timeouts.worker_unread,
        max_reply: config.limits.max_reply,
        shared_memory_from: config.limits.shared_memory_from,
        worker_tasks: config.limits.worker_tasks,
        worker_requests: config.limits.worker_requests,
        sample_rate: config.metrics.sample_rate,
        cpu_sample_rate: config.metrics.cpu_sample_rate,
        locks_per_plugin: config.limits.locks_per_plugin,
        metrics_per_plugin: config.limits.metrics_per_plugin,
    }
}

#[cfg(test)]
mod tests;
