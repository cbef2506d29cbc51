//! Settings that parse but make no sense together: each rejected with its key and reason.

use super::{Config, ConfigProblem, MemoryLimit};

impl Config {
    /// Every incompatible setting, each with the reason.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                message,
                location: None,
            })
        };
        let limits = &self.limits;
        for (key, value) in [
            ("host.scan_concurrency", self.host.scan_concurrency),
            ("host.init_concurrency", self.host.init_concurrency),
            ("limits.max_concurrent_calls", limits.max_concurrent_calls),
            ("limits.quarantine_after", limits.quarantine_after),
            ("limits.locks_per_plugin", limits.locks_per_plugin),
            ("limits.metrics_per_plugin", limits.metrics_per_plugin),
        ] {
            if value == 0 {
                problem(key, "must be at least 1".into());
            }
        }
        let p = self.memory.pressure;
        for (key, value) in [
            ("memory.pressure.medium", p.medium),
            ("memory.pressure.high", p.high),
            ("memory.pressure.critical", p.critical),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                problem(
                    key,
                    format!(
                        "{value} is outside (0, 1]; thresholds are fractions of the memory limit"
                    ),
                );
            }
        }
        if !(p.medium < p.high && p.high < p.critical) {
            problem(
                "memory.pressure",
                format!(
                    "thresholds must rise: medium ({}) < high ({}) < critical ({})",
                    p.medium, p.high, p.critical
                ),
            );
        }
        let mut durations = vec![
            (
                "memory.sample_interval".to_owned(),
                self.memory.sample_interval,
            ),
            ("timeouts.default".to_owned(), self.timeouts.default),
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
        for (key, value) in durations {
            if value.is_zero() {
                problem(
                    &key,
                    "a zero duration makes no sense here; give a positive duration such as \"5s\""
                        .into(),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.metrics.sample_rate) {
            problem(
                "metrics.sample_rate",
                format!(
                    "{} is outside [0, 1]; it is the share of calls timed",
                    self.metrics.sample_rate
                ),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for name in &self.locks.order {
            if !seen.insert(name) {
                problem(
                    "locks.order",
                    format!("lock `{name}` is named twice; each lock has one place in the order"),
                );
            }
        }
        if !self.admin.listen.ip().is_loopback() && self.admin.token.is_empty() {
            problem(
                "admin.token",
                format!(
                    "admin.listen is {}, beyond loopback, so a token is required; set admin.token or listen on 127.0.0.1",
                    self.admin.listen
                ),
            );
        }
        for (name, component) in &self.components {
            if !crate::manifest::valid_name(name) {
                problem(
                    &format!("components.{name}"),
                    "not a valid component name".into(),
                );
            }
            if let Some(priority) = component.priority.filter(|p| *p > 100) {
                problem(
                    &format!("components.{name}.priority"),
                    format!(
                        "{priority} is above 100; priorities run from 0 (most important) to 100"
                    ),
                );
            }
            let calls = component
                .max_concurrent_calls
                .unwrap_or(limits.max_concurrent_calls);
            let quarantine = component
                .quarantine_after
                .unwrap_or(limits.quarantine_after);
            if calls == 0 || quarantine == 0 {
                problem(
                    &format!("components.{name}"),
                    "max_concurrent_calls and quarantine_after must be at least 1".into(),
                );
            }
            if component.eager && !component.enabled {
                problem(
                    &format!("components.{name}.eager"),
                    "an eager component cannot be disabled; drop one of the two".into(),
                );
            }
            if let (Some(estimate), MemoryLimit::Bytes(limit)) =
                (component.memory_estimate, self.memory.limit)
            {
                if estimate > limit {
                    problem(
                        &format!("components.{name}.memory_estimate"),
                        format!(
                            "{} is above the memory limit of {}; it could never be admitted",
                            crate::format_bytes(estimate),
                            crate::format_bytes(limit)
                        ),
                    );
                }
            }
        }
        problems
    }
}
