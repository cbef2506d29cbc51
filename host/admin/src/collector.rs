//! The unified metrics collector: gathers every subsystem's figures on demand and renders
//! them as Prometheus text or JSON; summarises histograms once per aggregation interval.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use parking_lot::Mutex;
use serde::Serialize;

use plugin_host::{
    metrics::{HistogramSnapshot, PluginInstrument, Quantiles},
    Catalog, ComponentState, ComponentStatus, Coordinator, LockStats, PressureLevel,
};

use crate::prometheus::{Exposition, Kind};

/// A metric family of items of type `T`: name, help, and how to read the value.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// A family with its Prometheus type.
type KindedFamily<T> = (&'static str, Kind, &'static str, fn(&T) -> f64);

/// p50/p95/p99 of one component's histograms at the last aggregation.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ComponentSummary {
    /// Call latency in seconds.
    pub call_latency: Quantiles,
    /// Init duration in seconds.
    pub init_duration: Quantiles,
}

#[derive(Debug, Default)]
struct Summaries {
    at: Option<SystemTime>,
    components: BTreeMap<String, ComponentSummary>,
}

/// Collects metrics from the coordinator, memory, locks, timeouts, discovery and plugins.
pub struct UnifiedMetricsCollector {
    coordinator: Coordinator,
    catalog: Arc<Catalog>,
    summaries: Mutex<Summaries>,
}

impl std::fmt::Debug for UnifiedMetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnifiedMetricsCollector")
            .finish_non_exhaustive()
    }
}

impl UnifiedMetricsCollector {
    /// A collector over `coordinator`, reporting `catalog`'s scan results.
    pub fn new(coordinator: Coordinator, catalog: Arc<Catalog>) -> Self {
        Self {
            coordinator,
            catalog,
            summaries: Mutex::default(),
        }
    }

    /// Summarises every component's histograms to p50/p95/p99 now.
    pub fn aggregate(&self) {
        let components = self
            .coordinator
            .components()
            .into_iter()
            .map(|c| {
                let summary = ComponentSummary {
                    call_latency: c.call_latency.quantiles(),
                    init_duration: c.init_duration.quantiles(),
                };
                (c.name, summary)
            })
            .collect();
        *self.summaries.lock() = Summaries {
            at: Some(SystemTime::now()),
            components,
        };
    }

    /// The summaries of the last aggregation, and when it ran.
    pub fn summaries(&self) -> (Option<SystemTime>, BTreeMap<String, ComponentSummary>) {
        let summaries = self.summaries.lock();
        (summaries.at, summaries.components.clone())
    }

    /// Aggregates every `interval` on the current tokio runtime.
    pub fn spawn_aggregator(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let collector = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                collector.aggregate();
            }
        })
    }

    /// Everything as Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = Exposition::default();
        let components = self.coordinator.components();
        self.component_families(&mut out, &components);
        self.memory_families(&mut out);
        self.lock_families(&mut out);
        self.host_families(&mut out);
        self.plugin_families(&mut out);
        out.finish()
    }

    fn component_families(&self, out: &mut Exposition, components: &[ComponentStatus]) {
        let label = |c: &ComponentStatus| {
            vec![
                ("component", c.name.clone()),
                (
                    "plugin",
                    // Empty for a native component: it comes from no plugin.
                    c.plugin.clone().unwrap_or_default(),
                ),
            ]
        };
        let counters: [Family<ComponentStatus, u64>; 9] = [
            (
                "plugin_host_component_calls_total",
                "Calls made to the component.",
                |c| c.calls,
            ),
            (
                "plugin_host_component_call_errors_total",
                "Calls that returned an error.",
                |c| c.call_errors,
            ),
            (
                "plugin_host_component_call_timeouts_total",
                "Calls that timed out.",
                |c| c.call_timeouts,
            ),
            (
                "plugin_host_component_inits_total",
                "Successful initialisations.",
                |c| c.inits,
            ),
            (
                "plugin_host_component_init_failures_total",
                "Failed initialisations.",
                |c| c.init_failures,
            ),
            (
                "plugin_host_component_evictions_total",
                "Evictions to free memory.",
                |c| c.evictions,
            ),
            (
                "plugin_host_component_calls_saturated_total",
                "Calls refused at once because the component ran max_concurrent_calls already.",
                |c| c.refused_saturated,
            ),
            (
                "plugin_host_component_calls_quarantined_total",
                "Calls refused at once because the component was quarantined.",
                |c| c.refused_quarantined,
            ),
            (
                "plugin_host_component_log_suppressed_total",
                "Log records dropped by the component's log rate limit.",
                |c| c.log_suppressed,
            ),
        ];
        for (name, help, value) in counters {
            out.gauge_family(name, Kind::Counter, help, components, |c| {
                (label(c), value(c) as f64)
            });
        }
        let gauges: [Family<ComponentStatus, usize>; 2] = [
            (
                "plugin_host_component_calls_in_flight",
                "Calls running now, abandoned ones included.",
                |c| c.calls_in_flight,
            ),
            (
                "plugin_host_component_calls_abandoned",
                "Calls whose caller gave up (timeout) that still run.",
                |c| c.calls_abandoned,
            ),
        ];
        for (name, help, value) in gauges {
            out.gauge_family(name, Kind::Gauge, help, components, |c| {
                (label(c), value(c) as f64)
            });
        }
        out.family(
            "plugin_host_component_state",
            Kind::Gauge,
            "1 for the state the component is in.",
        );
        for c in components {
            for state in ComponentState::ALL {
                let pairs = [("component", c.name.as_str()), ("state", state.as_str())];
                out.sample(
                    "plugin_host_component_state",
                    &pairs,
                    f64::from(u8::from(c.state == state)),
                );
            }
        }
        out.gauge_family(
            "plugin_host_component_memory_estimate_bytes",
            Kind::Gauge,
            "Declared memory estimate.",
            components,
            |c| (label(c), c.memory_estimate as f64),
        );
        let measured: Vec<&ComponentStatus> = components
            .iter()
            .filter(|c| c.memory_measured.is_some())
            .collect();
        out.gauge_family(
            "plugin_host_component_memory_measured_bytes",
            Kind::Gauge,
            "RSS growth measured across the component's last creation.",
            &measured,
            |c| (label(c), c.memory_measured.unwrap_or_default() as f64),
        );
        for (name, help, pick) in [
            (
                "plugin_host_component_call_duration_seconds",
                "Call latency; timed for a sampled share of calls and scaled back to every call.",
                (|c: &ComponentStatus| &c.call_latency)
                    as fn(&ComponentStatus) -> &HistogramSnapshot,
            ),
            (
                "plugin_host_component_init_duration_seconds",
                "Duration of successful initialisations.",
                |c| &c.init_duration,
            ),
        ] {
            out.family(name, Kind::Histogram, help);
            for c in components {
                let pairs = label(c);
                let borrowed: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                out.histogram(name, &borrowed, pick(c));
            }
        }
    }

    fn memory_families(&self, out: &mut Exposition) {
        let status = self.coordinator.memory().status();
        let limit = if status.limit == u64::MAX {
            f64::INFINITY
        } else {
            status.limit as f64
        };
        let level = match status.pressure {
            PressureLevel::Normal => 0.0,
            PressureLevel::Medium => 1.0,
            PressureLevel::High => 2.0,
            PressureLevel::Critical => 3.0,
        };
        for (name, kind, help, value) in [
            (
                "plugin_host_memory_rss_bytes",
                Kind::Gauge,
                "Resident set size of the host process.",
                status.rss as f64,
            ),
            (
                "plugin_host_memory_limit_bytes",
                Kind::Gauge,
                "The memory budget.",
                limit,
            ),
            (
                "plugin_host_memory_reserved_bytes",
                Kind::Gauge,
                "Bytes reserved by in-flight initialisations.",
                status.reserved as f64,
            ),
            (
                "plugin_host_memory_pressure_level",
                Kind::Gauge,
                "0 normal, 1 medium, 2 high, 3 critical.",
                level,
            ),
            (
                "plugin_host_memory_evictions_total",
                Kind::Counter,
                "Components evicted to free memory.",
                status.evictions as f64,
            ),
            (
                "plugin_host_memory_reclaimed_bytes_total",
                Kind::Counter,
                "RSS reclaimed by evictions, measured.",
                status.reclaimed as f64,
            ),
        ] {
            out.family(name, kind, help);
            out.sample(name, &[], value);
        }
    }

    fn lock_families(&self, out: &mut Exposition) {
        let locks = self.coordinator.locks().stats();
        let label = |s: &LockStats| vec![("lock", s.name.clone())];
        let families: [KindedFamily<LockStats>; 9] = [
            (
                "plugin_host_lock_acquisitions_total",
                Kind::Counter,
                "Successful acquisitions.",
                |s| s.acquisitions as f64,
            ),
            (
                "plugin_host_lock_contentions_total",
                Kind::Counter,
                "Acquisitions that had to wait.",
                |s| s.contentions as f64,
            ),
            (
                "plugin_host_lock_timeouts_total",
                Kind::Counter,
                "Waits that timed out.",
                |s| s.timeouts as f64,
            ),
            (
                "plugin_host_lock_order_violations_total",
                Kind::Counter,
                "Out-of-order acquisitions.",
                |s| s.order_violations as f64,
            ),
            (
                "plugin_host_lock_deadlocks_total",
                Kind::Counter,
                "Acquisitions refused as deadlocks.",
                |s| s.deadlocks as f64,
            ),
            (
                "plugin_host_lock_wait_seconds_total",
                Kind::Counter,
                "Time spent waiting.",
                |s| s.total_wait_us as f64 / 1e6,
            ),
            (
                "plugin_host_lock_hold_seconds_total",
                Kind::Counter,
                "Time held (completed holds).",
                |s| s.total_hold_us as f64 / 1e6,
            ),
            (
                "plugin_host_lock_max_wait_seconds",
                Kind::Gauge,
                "Longest wait.",
                |s| s.max_wait_us as f64 / 1e6,
            ),
            (
                "plugin_host_lock_waiters",
                Kind::Gauge,
                "Holders waiting now.",
                |s| s.waiters.len() as f64,
            ),
        ];
        for (name, kind, help, value) in families {
            out.gauge_family(name, kind, help, &locks, |s| (label(s), value(s)));
        }
        out.family(
            "plugin_host_lock_leaked_total",
            Kind::Counter,
            "Locks the host released because their holder ended without releasing them.",
        );
        out.sample(
            "plugin_host_lock_leaked_total",
            &[],
            self.coordinator.locks().leaked() as f64,
        );
    }

    fn host_families(&self, out: &mut Exposition) {
        let timeouts = self.coordinator.timeouts().stats();
        for (name, kind, help, value) in [
            (
                "plugin_host_timeouts_started_total",
                Kind::Counter,
                "Operations started under a timeout.",
                timeouts.started,
            ),
            (
                "plugin_host_timeouts_expired_total",
                Kind::Counter,
                "Operations whose timeout expired.",
                timeouts.expired,
            ),
            (
                "plugin_host_timeouts_cancelled_total",
                Kind::Counter,
                "Operations cancelled by id.",
                timeouts.cancelled,
            ),
            (
                "plugin_host_timeouts_active",
                Kind::Gauge,
                "Operations running under a timeout now.",
                timeouts.active,
            ),
            (
                "plugin_host_plugin_threads",
                Kind::Gauge,
                "Threads of the plugin executor, idle ones included.",
                self.coordinator.plugin_threads().0 as u64,
            ),
            (
                "plugin_host_plugin_threads_busy",
                Kind::Gauge,
                "Threads of the plugin executor running plugin code now.",
                self.coordinator.plugin_threads().1 as u64,
            ),
        ] {
            out.family(name, kind, help);
            out.sample(name, &[], value as f64);
        }
        let loaded = self.coordinator.loaded_libraries();
        out.family(
            "plugin_host_plugin_info",
            Kind::Gauge,
            "One per plugin file: its status and whether it is loaded.",
        );
        for plugin in &self.catalog.plugins {
            let file = plugin
                .path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let (name, version, status) = match &plugin.outcome {
                Ok(info) => (info.name.clone(), info.version.clone(), "ok".to_owned()),
                Err(err) => (String::new(), String::new(), err.kind().to_owned()),
            };
            let is_loaded = if loaded.contains(&plugin.path) {
                "true"
            } else {
                "false"
            };
            let pairs = [
                ("file", file.as_str()),
                ("plugin", name.as_str()),
                ("version", version.as_str()),
                ("status", status.as_str()),
                ("loaded", is_loaded),
            ];
            out.sample("plugin_host_plugin_info", &pairs, 1.0);
        }
        out.family(
            "plugin_host_plugins",
            Kind::Gauge,
            "Plugin files by scan result.",
        );
        let usable = self.catalog.usable().count();
        out.sample("plugin_host_plugins", &[("result", "ok")], usable as f64);
        out.sample(
            "plugin_host_plugins",
            &[("result", "error")],
            (self.catalog.plugins.len() - usable) as f64,
        );
        out.family(
            "plugin_host_plugins_scanned",
            Kind::Gauge,
            "Plugin files scanned at start (the rest came from the cache).",
        );
        out.sample(
            "plugin_host_plugins_scanned",
            &[],
            self.catalog.scanned as f64,
        );
    }

    fn plugin_families(&self, out: &mut Exposition) {
        let mut current = String::new();
        for metric in self.coordinator.plugin_metrics().all() {
            let family = metric.family();
            let kind = match &metric.instrument {
                PluginInstrument::Counter(_) => Kind::Counter,
                PluginInstrument::Histogram(_) => Kind::Histogram,
            };
            if family != current {
                out.family(&family, kind, &metric.help);
                current.clone_from(&family);
            }
            let pairs = [
                ("plugin", metric.plugin.as_str()),
                ("component", metric.component.as_str()),
            ];
            match &metric.instrument {
                PluginInstrument::Counter(counter) => {
                    out.sample(&family, &pairs, counter.get() as f64)
                }
                PluginInstrument::Histogram(histogram) => {
                    out.histogram(&family, &pairs, &histogram.snapshot())
                }
            }
        }
    }

    /// Every component's status with its latency summary, as JSON.
    pub fn components_json(&self) -> serde_json::Value {
        let (_, summaries) = self.summaries();
        let components: Vec<serde_json::Value> = self
            .coordinator
            .components()
            .into_iter()
            .map(|c| {
                let summary = summaries.get(&c.name).copied();
                let mut value = serde_json::json!(c);
                value["latency"] = serde_json::json!(summary);
                value["call_count_estimate"] = serde_json::json!(c.call_latency.count);
                value
            })
            .collect();
        serde_json::Value::Array(components)
    }

    /// Everything as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        let (aggregated_at, _) = self.summaries();
        let components = self.components_json();
        let plugin_metrics: Vec<serde_json::Value> = self
            .coordinator
            .plugin_metrics()
            .all()
            .iter()
            .map(|m| {
                let value = match &m.instrument {
                    PluginInstrument::Counter(c) => serde_json::json!({ "kind": "counter", "value": c.get() }),
                    PluginInstrument::Histogram(h) => {
                        serde_json::json!({ "kind": "histogram", "quantiles": h.snapshot().quantiles() })
                    }
                };
                serde_json::json!({ "name": m.name, "plugin": m.plugin, "component": m.component, "metric": value })
            })
            .collect();
        serde_json::json!({
            "aggregated_at": aggregated_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            "components": components,
            "memory": self.coordinator.memory().status(),
            "locks": self.coordinator.locks().stats(),
            "timeouts": self.coordinator.timeouts().stats(),
            "plugins": { "files": self.catalog.plugins.len(), "usable": self.catalog.usable().count(), "scanned": self.catalog.scanned },
            "plugin_metrics": plugin_metrics,
        })
    }
}
