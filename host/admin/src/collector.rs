//! The unified metrics collector: gathers every subsystem's figures on demand and renders
//! them as Prometheus text or JSON; summarises histograms once per aggregation interval.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use plugin_host::{
    metrics::{HistogramSnapshot, PluginInstrument},
    ComponentState, ComponentStatus, ComponentSummary, Host,
};

use crate::{
    api, families,
    prometheus::{Exposition, Kind},
    server::ConnectionStats,
};

/// Collects metrics from the host: components, memory, locks, timeouts, discovery and
/// plugins.
pub struct UnifiedMetricsCollector {
    host: Host,
    connections: Arc<ConnectionStats>,
}

impl std::fmt::Debug for UnifiedMetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnifiedMetricsCollector")
            .finish_non_exhaustive()
    }
}

impl UnifiedMetricsCollector {
    /// A collector over `host`: its components, managers and plugin files, and the
    /// summaries of its last metrics aggregation.
    pub fn new(host: Host) -> Self {
        Self::with_connections(host, Arc::default())
    }

    /// A collector that also reports the admin server's connections, as `stats` counts
    /// them.
    pub fn with_connections(host: Host, connections: Arc<ConnectionStats>) -> Self {
        Self { host, connections }
    }

    /// The summaries of the last aggregation, and when it ran.
    pub fn summaries(&self) -> (Option<SystemTime>, BTreeMap<String, ComponentSummary>) {
        self.host.metric_summaries().latest()
    }

    /// Everything as Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = Exposition::default();
        let components = self.host.components();
        out.table(families::COMPONENT, &components, component_labels);
        component_states(&mut out, &components);
        component_measurements(&mut out, &components);
        let memory = self.host.memory().status();
        out.table(families::MEMORY, std::slice::from_ref(&memory), |_| {
            Vec::new()
        });
        let locks = self.host.locks();
        out.table(families::LOCK, &locks.stats(), |s| {
            vec![("lock", s.name.clone())]
        });
        out.single(
            "plugin_host_lock_leaked_total",
            Kind::Counter,
            "Locks the host released because their holder ended without releasing them.",
            locks.leaked() as f64,
        );
        let timeouts = self.host.timeouts().stats();
        out.table(families::TIMEOUTS, std::slice::from_ref(&timeouts), |_| {
            Vec::new()
        });
        let (threads, busy) = self.host.plugin_threads();
        out.single(
            "plugin_host_plugin_threads",
            Kind::Gauge,
            "Threads of the plugin executor, idle ones included.",
            threads as f64,
        );
        out.single(
            "plugin_host_plugin_threads_busy",
            Kind::Gauge,
            "Threads of the plugin executor running plugin code now.",
            busy as f64,
        );
        self.plugin_files(&mut out);
        source_pulls(&mut out, &self.host);
        self.plugin_families(&mut out);
        crate::process::write(&mut out);
        connections(&mut out, &self.connections);
        out.finish()
    }

    /// One sample per plugin file, and counts by scan result.
    fn plugin_files(&self, out: &mut Exposition) {
        let loaded: std::collections::HashSet<std::path::PathBuf> =
            self.host.loaded_libraries().into_iter().collect();
        let catalog = self.host.catalog();
        out.family(
            "plugin_host_plugin_info",
            Kind::Gauge,
            "One per plugin file: its status and whether it is loaded.",
        );
        for plugin in &catalog.plugins {
            let file = plugin
                .path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let (name, version, status) = match &plugin.outcome {
                Ok(info) => (info.name.as_str(), info.version.as_str(), "ok"),
                Err(err) => ("", "", err.kind()),
            };
            let is_loaded = if loaded.contains(&plugin.path) {
                "true"
            } else {
                "false"
            };
            let pairs = [
                ("file", file.as_str()),
                ("plugin", name),
                ("version", version),
                ("status", status),
                ("loaded", is_loaded),
            ];
            out.sample("plugin_host_plugin_info", &pairs, 1.0);
        }
        out.family(
            "plugin_host_plugins",
            Kind::Gauge,
            "Plugin files by scan result.",
        );
        let usable = catalog.usable().count();
        out.sample("plugin_host_plugins", &[("result", "ok")], usable as f64);
        let unusable = catalog.plugins.len() - usable;
        out.sample(
            "plugin_host_plugins",
            &[("result", "error")],
            unusable as f64,
        );
        out.single(
            "plugin_host_plugins_scanned",
            Kind::Gauge,
            "Plugin files scanned at start (the rest came from the cache).",
            catalog.scanned as f64,
        );
    }

    fn plugin_families(&self, out: &mut Exposition) {
        let mut current = String::new();
        for metric in self.host.plugin_metrics().all() {
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

    /// Every component's status with its latency summary.
    pub fn components(&self) -> Vec<api::Component> {
        let (_, summaries) = self.summaries();
        self.host
            .components()
            .into_iter()
            .map(|c| {
                let summary = summaries.get(&c.name).copied();
                api::Component::of(c, summary)
            })
            .collect()
    }

    /// Everything at once: `GET /metrics.json`.
    pub fn snapshot(&self) -> api::Snapshot {
        let (aggregated_at, _) = self.summaries();
        let catalog = self.host.catalog();
        let plugin_metrics = self
            .host
            .plugin_metrics()
            .all()
            .iter()
            .map(|m| api::PluginMetric {
                name: m.name.clone(),
                plugin: m.plugin.clone(),
                component: m.component.clone(),
                value: match &m.instrument {
                    PluginInstrument::Counter(c) => {
                        api::PluginMetricValue::Counter { value: c.get() }
                    }
                    PluginInstrument::Histogram(h) => {
                        let q = h.snapshot().quantiles();
                        api::PluginMetricValue::Histogram {
                            p50: q.p50,
                            p95: q.p95,
                            p99: q.p99,
                            count: q.count,
                        }
                    }
                },
            })
            .collect();
        api::Snapshot {
            aggregated_at: aggregated_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            components: self.components(),
            memory: api::Memory::from(self.host.memory().status()),
            locks: api::Locks::of(self.host.locks()),
            timeouts: api::Timeouts::of(self.host.timeouts()),
            plugins: api::PluginCounts {
                files: catalog.plugins.len(),
                usable: catalog.usable().count(),
                scanned: catalog.scanned,
            },
            plugin_metrics,
        }
    }
}

/// A component's labels: its name and plugin (empty for a native component).
fn component_labels(c: &ComponentStatus) -> Vec<(&'static str, String)> {
    vec![
        ("component", c.name.clone()),
        ("plugin", c.plugin.clone().unwrap_or_default()),
    ]
}

/// One gauge per component and state, 1 for the state it is in.
fn component_states(out: &mut Exposition, components: &[ComponentStatus]) {
    out.family(
        "plugin_host_component_state",
        Kind::Gauge,
        "1 for the state the component is in.",
    );
    for c in components {
        for state in ComponentState::ALL {
            let pairs = [("component", c.name.as_str()), ("state", state.as_str())];
            let value = f64::from(u8::from(c.state == state));
            out.sample("plugin_host_component_state", &pairs, value);
        }
    }
}

/// A histogram family of components: name, help, and which histogram to read.
type HistogramFamily = (
    &'static str,
    &'static str,
    fn(&ComponentStatus) -> &HistogramSnapshot,
);

/// Measured memory, and the latency and init-duration histograms, per component.
fn component_measurements(out: &mut Exposition, components: &[ComponentStatus]) {
    let measured: Vec<(&ComponentStatus, u64)> = components
        .iter()
        .filter_map(|c| c.memory_measured.map(|bytes| (c, bytes)))
        .collect();
    out.table(
        &[families::Family {
            name: "plugin_host_component_memory_measured_bytes",
            kind: Kind::Gauge,
            help: "RSS growth measured across the component's last creation.",
            value: |(_, bytes)| *bytes as f64,
        }],
        &measured,
        |(c, _)| component_labels(c),
    );
    let histograms: [HistogramFamily; 3] = [
        (
            "plugin_host_component_call_duration_seconds",
            "Latency of a sample of calls ([metrics] sample_rate); its _count is the calls timed, plugin_host_component_calls_total counts every call.",
            |c| &c.call_latency,
        ),
        (
            "plugin_host_component_init_duration_seconds",
            "Duration of successful initialisations.",
            |c| &c.init_duration,
        ),
        (
            "plugin_host_stream_duration_seconds",
            "How long the component's streams ran, from open to end.",
            |c| &c.stream_duration,
        ),
    ];
    for (name, help, pick) in histograms {
        out.family(name, Kind::Histogram, help);
        for c in components {
            let pairs = component_labels(c);
            let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            out.histogram(name, &borrowed, pick(c));
        }
    }
}

/// `plugin_host_source_pulls_total{source,result}`.
fn source_pulls(out: &mut Exposition, host: &Host) {
    const NAME: &str = "plugin_host_source_pulls_total";
    out.family(
        NAME,
        Kind::Counter,
        "Pulls of each [[sources]] entry by result: pulled (a new artifact served), unchanged (its tag had not moved), cached (served from the cache without asking the registry), failed (the previous pull keeps serving).",
    );
    for (source, result, count) in host.source_pulls() {
        out.sample(
            NAME,
            &[("source", &source), ("result", result)],
            count as f64,
        );
    }
}

/// The admin server's own connections, and what it refused its clients.
fn connections(out: &mut Exposition, stats: &ConnectionStats) {
    let read = |counter: &std::sync::atomic::AtomicU64| {
        counter.load(std::sync::atomic::Ordering::Relaxed) as f64
    };
    let singles = [
        (
            "plugin_host_admin_connections",
            Kind::Gauge,
            "Connections to the admin API open now.",
            &stats.open,
        ),
        (
            "plugin_host_admin_connections_accepted_total",
            Kind::Counter,
            "Connections the admin API accepted and served.",
            &stats.accepted,
        ),
        (
            "plugin_host_admin_connections_refused_total",
            Kind::Counter,
            "Connections answered 503 too_many_connections and closed: admin.max_connections were open.",
            &stats.refused,
        ),
        (
            "plugin_host_admin_accept_errors_total",
            Kind::Counter,
            "Connections the admin API could not accept (out of descriptors, most often).",
            &stats.accept_errors,
        ),
        (
            "plugin_host_admin_idle_closed_total",
            Kind::Counter,
            "Keep-alive connections closed after admin.header_timeout without a request.",
            &stats.idle_closed,
        ),
    ];
    for (name, kind, help, counter) in singles {
        out.single(name, kind, help, read(counter));
    }
    const REFUSED: &str = "plugin_host_admin_requests_refused_total";
    out.family(
        REFUSED,
        Kind::Counter,
        "Requests the admin API refused by reason: header_timeout (408: the head took longer than admin.header_timeout), header_too_large (431: over admin.max_header_size), body_timeout (408: admin.body_timeout), body_too_large (413: admin.max_body), cross_origin (403: a browser's request for another site's page), foreign_host (403: without a token, a Host other than loopback's, as DNS rebinding sends).",
    );
    for (reason, counter) in [
        ("header_timeout", &stats.header_timeouts),
        ("header_too_large", &stats.header_too_large),
        ("body_timeout", &stats.body_timeouts),
        ("body_too_large", &stats.body_too_large),
        ("cross_origin", &stats.cross_origin),
        ("foreign_host", &stats.foreign_host),
    ] {
        out.sample(REFUSED, &[("reason", reason)], read(counter));
    }
}
