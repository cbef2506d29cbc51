//! Settings that parse but make no sense together: each rejected with its key and reason.

use std::time::Duration;

use super::{ComponentConfig, Config, ConfigProblem, MemoryLimit};
use super::{Isolation, SandboxMode};
use crate::{
    format_bytes,
    names::{valid_name, NAME_RULE},
};

/// The fewest threads and processes a worker may be held to.
const MIN_WORKER_TASKS: u32 = 32;

/// The most of anything a count key lets a host hold at once (calls, connections,
/// initialisations, scanners, lock and metric names): far beyond any real need, and well
/// inside what a semaphore can count.
const MOST_AT_ONCE: usize = 1_000_000;

/// The least `memory_limit` a worker process can live with.
const MIN_WORKER_LIMIT: u64 = 8 << 20;

/// Collects problems as the checks find them.
#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, key: &str, message: String) {
        self.0.push(ConfigProblem {
            key: key.to_owned(),
            message,
            location: None,
        });
    }
}

impl Config {
    /// Every incompatible setting, each with the reason.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        self.check_counts(&mut problems);
        self.check_pressure(&mut problems);
        self.check_durations(&mut problems);
        self.check_metrics_and_locks(&mut problems);
        self.check_admin(&mut problems);
        if self.host.sandbox != SandboxMode::Off && self.host.isolation != Isolation::Process {
            problems.add(
                "host.sandbox",
                "applies to isolated components only (the sandbox fences in a worker process); set [host] isolation = \"process\" too, or sandbox the isolated components one by one".into(),
            );
        }
        for (name, component) in &self.components {
            self.check_component(name, component, &mut problems);
        }
        for (key, message) in super::sources::problems(&self.sources, &self.trust) {
            problems.add(&key, message);
        }
        problems.0
    }

    fn check_counts(&self, problems: &mut Problems) {
        let limits = &self.limits;
        let mut counts: Vec<(String, usize)> = [
            ("host.scan_concurrency", self.host.scan_concurrency),
            ("host.init_concurrency", self.host.init_concurrency),
            ("limits.max_concurrent_calls", limits.max_concurrent_calls),
            ("limits.quarantine_after", limits.quarantine_after),
            ("limits.locks_per_plugin", limits.locks_per_plugin),
            ("limits.metrics_per_plugin", limits.metrics_per_plugin),
            ("limits.worker_requests", limits.worker_requests),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        for (name, component) in &self.components {
            for (key, value) in [
                ("max_concurrent_calls", component.max_concurrent_calls),
                ("quarantine_after", component.quarantine_after),
            ] {
                if let Some(value) = value {
                    counts.push((format!("components.{name}.{key}"), value));
                }
            }
        }
        for (key, value) in counts {
            if value == 0 {
                problems.add(&key, "must be at least 1".into());
            } else if value > MOST_AT_ONCE {
                // Each is a count of permits, threads or names held at once.
                problems.add(
                    &key,
                    format!(
                        "{value} is more than any host holds at once; give at most {MOST_AT_ONCE}"
                    ),
                );
            }
        }
        // A frame's length is 32 bits, and a reply travels in one with its message.
        let most = u64::from(u32::MAX) - crate::protocol::FRAME_OVERHEAD as u64;
        if limits.max_reply == 0 || limits.max_reply > most {
            problems.add(
                "limits.max_reply",
                format!(
                    "{} is outside 1 B to {}: 0 refuses every reply but an empty one, and more does not fit a frame to and from a worker",
                    format_bytes(limits.max_reply),
                    format_bytes(most)
                ),
            );
        }
        // A worker runs a dozen threads of its own before its plugin starts one.
        if (1..MIN_WORKER_TASKS).contains(&limits.worker_tasks) {
            problems.add(
                "limits.worker_tasks",
                format!(
                    "{} is too few for a worker's own threads; give at least {MIN_WORKER_TASKS}, or 0 for no ceiling",
                    limits.worker_tasks
                ),
            );
        }
    }

    fn check_pressure(&self, problems: &mut Problems) {
        let p = self.memory.pressure;
        for (key, value) in [
            ("memory.pressure.medium", p.medium),
            ("memory.pressure.high", p.high),
            ("memory.pressure.critical", p.critical),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                problems.add(
                    key,
                    format!(
                        "{value} is outside (0, 1]; thresholds are fractions of the memory limit"
                    ),
                );
            }
        }
        if !(p.medium < p.high && p.high < p.critical) {
            problems.add(
                "memory.pressure",
                format!(
                    "thresholds must rise: medium ({}) < high ({}) < critical ({})",
                    p.medium, p.high, p.critical
                ),
            );
        }
    }

    /// Every duration in the file, by key.
    fn durations(&self) -> Vec<(String, Duration)> {
        let mut durations = vec![
            (
                "memory.sample_interval".to_owned(),
                self.memory.sample_interval,
            ),
            ("host.scan_timeout".to_owned(), self.host.scan_timeout),
            ("timeouts.default".to_owned(), self.timeouts.default),
            ("timeouts.stream_idle".to_owned(), self.timeouts.stream_idle),
            (
                "timeouts.worker_unread".to_owned(),
                self.timeouts.worker_unread,
            ),
            ("timeouts.stop".to_owned(), self.timeouts.stop),
            (
                "metrics.aggregation_interval".to_owned(),
                self.metrics.aggregation_interval,
            ),
            (
                "locks.default_timeout".to_owned(),
                self.locks.default_timeout,
            ),
            ("locks.max_hold".to_owned(), self.locks.max_hold),
        ];
        for (method, value) in &self.timeouts.operations {
            durations.push((format!("timeouts.operations.{method}"), *value));
        }
        for (name, component) in &self.components {
            if let Some(timeout) = component.timeout {
                durations.push((format!("components.{name}.timeout"), timeout));
            }
            for (method, value) in &component.operations {
                durations.push((format!("components.{name}.operations.{method}"), *value));
            }
        }
        durations
    }

    fn check_durations(&self, problems: &mut Problems) {
        for (key, value) in self.durations() {
            if value.is_zero() {
                problems.add(
                    &key,
                    "a zero duration makes no sense here; give a positive duration such as \"5s\""
                        .into(),
                );
            }
        }
        let mut every = self.durations();
        every.extend([
            ("host.watch_rescan".to_owned(), self.host.watch_rescan),
            ("memory.min_idle".to_owned(), self.memory.min_idle),
            ("timeouts.kill_grace".to_owned(), self.timeouts.kill_grace),
            ("admin.header_timeout".to_owned(), self.admin.header_timeout),
            ("admin.body_timeout".to_owned(), self.admin.body_timeout),
        ]);
        for (name, component) in &self.components {
            if let Some(budget) = component.cpu_per_call {
                every.push((format!("components.{name}.cpu_per_call"), budget));
            }
        }
        for (at, source) in self.sources.iter().enumerate() {
            for (key, value) in [("follow", source.follow), ("timeout", source.timeout)] {
                if let Some(value) = value {
                    every.push((format!("sources[{at}].{key}"), value));
                }
            }
        }
        for (key, value) in every {
            if value > super::units::LONGEST_DURATION {
                problems.add(
                    &key,
                    "is longer than the host can wait for (its deadlines would overflow); give at most \"100years\"".into(),
                );
            }
        }
        if self.host.watch_rescan < Duration::from_secs(1) {
            problems.add(
                "host.watch_rescan",
                format!(
                    "{:?} would rescan the plugins directory without pause; give at least \"1s\" (the default is \"30s\")",
                    self.host.watch_rescan
                ),
            );
        }
    }

    fn check_metrics_and_locks(&self, problems: &mut Problems) {
        if !(0.0..=1.0).contains(&self.metrics.sample_rate) {
            problems.add(
                "metrics.sample_rate",
                format!(
                    "{} is outside [0, 1]; it is the share of calls timed",
                    self.metrics.sample_rate
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            problems.add(
                "telemetry.sample_ratio",
                format!(
                    "{} is outside [0, 1]; it is the share of new traces recorded",
                    self.telemetry.sample_ratio
                ),
            );
        }
        if let Err(why) = super::sections::check_protocol(&self.telemetry.otlp_protocol) {
            problems.add("telemetry.otlp_protocol", why.to_string());
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            if let Err(why) = super::sections::check_endpoint(endpoint) {
                problems.add("telemetry.otlp_endpoint", why.to_string());
            }
        }
        if let Some(path) = &self.telemetry.otlp_certificate {
            // Without an endpoint here, the variables may name one when the host starts.
            let read = match &self.telemetry.otlp_endpoint {
                Some(url) => super::sections::read_certificate(path, url),
                None => super::sections::read_pem(path),
            };
            if let Err(why) = read {
                problems.add(
                    "telemetry.otlp_certificate",
                    format!("{}: {why}", path.display()),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.metrics.cpu_sample_rate) {
            problems.add(
                "metrics.cpu_sample_rate",
                format!(
                    "{} is outside [0, 1]; it is the share of in-process calls whose CPU time is read",
                    self.metrics.cpu_sample_rate
                ),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for name in &self.locks.order {
            if !seen.insert(name) {
                problems.add(
                    "locks.order",
                    format!("lock `{name}` is named twice; each lock has one place in the order"),
                );
            }
            if !valid_name(name) {
                problems.add(
                    "locks.order",
                    format!("lock name `{name}` is not valid: {NAME_RULE}"),
                );
            }
        }
    }

    fn check_admin(&self, problems: &mut Problems) {
        if !self.admin.listen.ip().is_loopback() && self.admin.token.is_empty() {
            problems.add(
                "admin.token",
                format!(
                    "admin.listen is {}, beyond loopback, so a token is required; set admin.token or listen on 127.0.0.1",
                    self.admin.listen
                ),
            );
        }
        if self.admin.max_header_size < super::admin::MIN_HEADER_SIZE {
            problems.add(
                "admin.max_header_size",
                format!(
                    "{} bytes is too small for a request head; use at least 8KiB",
                    self.admin.max_header_size
                ),
            );
        }
        if self.admin.max_connections > MOST_AT_ONCE {
            problems.add(
                "admin.max_connections",
                format!(
                    "{} is more than any host serves at once; give at most {MOST_AT_ONCE}",
                    self.admin.max_connections
                ),
            );
        }
        for (key, value) in [
            ("admin.max_connections", self.admin.max_connections as u64),
            ("admin.max_body", self.admin.max_body),
            (
                "admin.header_timeout",
                self.admin.header_timeout.as_nanos() as u64,
            ),
            (
                "admin.body_timeout",
                self.admin.body_timeout.as_nanos() as u64,
            ),
        ] {
            if value == 0 {
                problems.add(
                    key,
                    "must be more than 0: the admin API could serve nothing".to_owned(),
                );
            }
        }
    }

    fn check_component(&self, name: &str, component: &ComponentConfig, problems: &mut Problems) {
        let key = |field: &str| format!("components.{name}{field}");
        if !valid_name(name) {
            problems.add(
                &key(""),
                format!("`{name}` is not a valid component name: {NAME_RULE}"),
            );
        }
        if let Some(priority) = component.priority.filter(|p| *p > 100) {
            problems.add(
                &key(".priority"),
                format!("{priority} is above 100; priorities run from 0 (most important) to 100"),
            );
        }
        if component
            .cpu_per_call
            .is_some_and(|budget| budget.is_zero())
        {
            problems.add(
                &key(".cpu_per_call"),
                "a CPU budget of 0 refuses every call; set a positive duration (\"200ms\") or drop the key".into(),
            );
        }
        if component.eager && !component.enabled {
            problems.add(
                &key(".eager"),
                "an eager component cannot be disabled; drop one of the two".into(),
            );
        }
        if let (Some(estimate), MemoryLimit::Bytes(limit)) =
            (component.memory_estimate, self.memory.limit)
        {
            if estimate > limit {
                problems.add(
                    &key(".memory_estimate"),
                    format!(
                        "{} is above the memory limit of {}; it could never be admitted",
                        format_bytes(estimate),
                        format_bytes(limit)
                    ),
                );
            }
        }
        self.check_isolation(name, component, problems);
        if let Err(err) = component.config_json() {
            problems.add(
                &key(".config"),
                format!("cannot be handed to the component as JSON: {err}"),
            );
        }
    }

    fn check_isolation(&self, name: &str, component: &ComponentConfig, problems: &mut Problems) {
        let isolation = component.isolation_or(self.host.isolation);
        if component
            .sandbox
            .is_some_and(|mode| mode != SandboxMode::Off)
            && isolation != Isolation::Process
        {
            problems.add(
                &format!("components.{name}.sandbox"),
                "applies to isolated components only (the sandbox fences in a worker process); set isolation = \"process\" for it, or drop it".into(),
            );
        }
        let Some(limit) = component.memory_limit else {
            return;
        };
        let key = format!("components.{name}.memory_limit");
        if component.isolation_or(self.host.isolation) == Isolation::InProcess {
            problems.add(
                &key,
                "applies to isolated components only; set isolation = \"process\" (or \"auto\") for it, or drop it".into(),
            );
        }
        if limit < MIN_WORKER_LIMIT {
            problems.add(
                &key,
                format!(
                    "{} is below {}, less than a worker process needs to start",
                    format_bytes(limit),
                    format_bytes(MIN_WORKER_LIMIT)
                ),
            );
        }
        if let MemoryLimit::Bytes(host) = self.memory.limit {
            if limit > host {
                problems.add(
                    &key,
                    format!(
                        "{} is above the host's memory limit of {}",
                        format_bytes(limit),
                        format_bytes(host)
                    ),
                );
            }
        }
    }
}
