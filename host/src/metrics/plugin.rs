//! Metrics that plugins register through the host context.
//!
//! Plugin metrics are exported under their own prefix, `plugins_`, which no host family
//! (`plugin_host_`, `process_`) can share. One name is one family of one kind, whichever
//! plugin registers it first; names that would collide with another family's samples
//! (`_total`, `_count`, `_sum`, `_bucket`) are refused. Each plugin may register a capped
//! number of names, so a plugin cannot grow the exposition without bound.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use parking_lot::Mutex;
use plugin_api::ffi::{MetricKind, MetricObj};

use super::{Counter, Histogram, BYTE_BUCKETS, LATENCY_BUCKETS};

/// The prefix of every plugin metric family.
pub(crate) const PLUGIN_METRIC_PREFIX: &str = "plugins_";

/// Most buckets a plugin histogram may have.
const MAX_BUCKETS: usize = 64;

/// One plugin metric: its identity, help text and instrument.
#[derive(Debug)]
pub struct PluginMetric {
    /// Metric name as the plugin gave it.
    pub name: String,
    /// The plugin.
    pub plugin: String,
    /// The component.
    pub component: String,
    /// Help text.
    pub help: String,
    /// The instrument.
    pub instrument: PluginInstrument,
}

impl PluginMetric {
    /// The exported family name: `plugins_NAME_total` for counters, `plugins_NAME` for
    /// histograms.
    pub fn family(&self) -> String {
        match self.instrument {
            PluginInstrument::Counter(_) => format!("{PLUGIN_METRIC_PREFIX}{}_total", self.name),
            PluginInstrument::Histogram(_) => format!("{PLUGIN_METRIC_PREFIX}{}", self.name),
        }
    }
}

/// A plugin metric's instrument.
#[derive(Debug)]
pub enum PluginInstrument {
    /// A counter.
    Counter(Counter),
    /// A histogram.
    Histogram(Histogram),
}

/// Why a plugin metric was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// The name breaks the naming rule.
    #[error("metric name `{name}` is not valid: use 1-100 of a-z, 0-9 and `_`, starting with a letter, not ending in _total, _count, _sum or _bucket")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The name is registered with the other kind.
    #[error("metric `{name}` is already registered as a {existing}; one name is one kind")]
    KindConflict {
        /// The name.
        name: String,
        /// The kind it has.
        existing: &'static str,
    },
    /// The histogram's buckets are unusable.
    #[error("histogram `{name}` buckets are not valid: {reason}")]
    InvalidBuckets {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The plugin has registered as many names as it may.
    #[error("plugin `{plugin}` already registered {limit} metric names, its limit; `{name}` is refused (raise [limits] metrics_per_plugin)")]
    TooMany {
        /// The plugin.
        plugin: String,
        /// The refused name.
        name: String,
        /// The cap.
        limit: usize,
    },
}

#[derive(Debug, Default)]
struct Registry {
    /// (name, plugin, component) -> metric; sorted by name, so families stay together.
    metrics: BTreeMap<(String, String, String), Arc<PluginMetric>>,
    /// Name -> its kind, fixed by the first registration.
    kinds: HashMap<String, MetricKind>,
    /// Plugin -> names it registered.
    names_per_plugin: HashMap<String, Vec<String>>,
}

impl Registry {
    /// The metric already registered under `key`, `None` if a new one may be made, or
    /// why not: the name has another kind, or the plugin is at its cap.
    fn admit(
        &self,
        kind: MetricKind,
        key: &(String, String, String),
        per_plugin: usize,
    ) -> Result<Option<Arc<PluginMetric>>, MetricError> {
        let (name, plugin, _) = key;
        if let Some(existing) = self.kinds.get(name) {
            if *existing != kind {
                return Err(MetricError::KindConflict {
                    name: name.clone(),
                    existing: kind_name(*existing),
                });
            }
        }
        if let Some(existing) = self.metrics.get(key) {
            return Ok(Some(Arc::clone(existing)));
        }
        let names = self
            .names_per_plugin
            .get(plugin)
            .map_or(&[][..], Vec::as_slice);
        if !names.iter().any(|n| n == name) && names.len() >= per_plugin {
            return Err(MetricError::TooMany {
                plugin: plugin.clone(),
                name: name.clone(),
                limit: per_plugin,
            });
        }
        Ok(None)
    }
}

/// Every plugin metric. Registration takes a lock; recording goes through the handle and
/// does not.
#[derive(Debug)]
pub struct PluginMetrics {
    registry: Mutex<Registry>,
    per_plugin: usize,
}

impl Default for PluginMetrics {
    fn default() -> Self {
        Self::new(64)
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= 100
        && !["_total", "_count", "_sum", "_bucket"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Histogram => "histogram",
    }
}

/// The buckets of histogram `name`: the plugin's own, else by the name's unit.
fn buckets_for(name: &str, given: &[f64]) -> Result<Vec<f64>, MetricError> {
    if given.is_empty() {
        let unit: &[f64] = if name.ends_with("_bytes") {
            &BYTE_BUCKETS
        } else {
            &LATENCY_BUCKETS
        };
        return Ok(unit.to_vec());
    }
    let invalid = |reason: &str| MetricError::InvalidBuckets {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if given.len() > MAX_BUCKETS {
        return Err(invalid(&format!(
            "{} bounds, at most {MAX_BUCKETS}",
            given.len()
        )));
    }
    if given.iter().any(|b| !b.is_finite()) {
        return Err(invalid("every bound must be a finite number"));
    }
    if given.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(invalid("bounds must rise strictly"));
    }
    Ok(given.to_vec())
}

impl PluginMetrics {
    /// A registry allowing each plugin `per_plugin` metric names.
    pub fn new(per_plugin: usize) -> Self {
        Self {
            registry: Mutex::default(),
            per_plugin,
        }
    }

    /// Finds or registers a metric. `buckets` apply to histograms (empty: by unit).
    ///
    /// # Errors
    ///
    /// [`MetricError`] when the name is invalid, registered with another kind, the
    /// buckets are unusable, or the plugin's cap is reached.
    pub fn register(
        &self,
        kind: MetricKind,
        name: &str,
        help: &str,
        buckets: &[f64],
        plugin: &str,
        component: &str,
    ) -> Result<Arc<PluginMetric>, MetricError> {
        if !valid_metric_name(name) {
            return Err(MetricError::InvalidName {
                // Quoted, not kept whole: it may be as long as the plugin likes.
                name: crate::util::cut_to(name, 200).into_owned(),
            });
        }
        let mut registry = self.registry.lock();
        let key = (name.to_owned(), plugin.to_owned(), component.to_owned());
        if let Some(existing) = registry.admit(kind, &key, self.per_plugin)? {
            return Ok(existing);
        }
        let instrument = match kind {
            MetricKind::Counter => PluginInstrument::Counter(Counter::default()),
            MetricKind::Histogram => {
                PluginInstrument::Histogram(Histogram::with_bounds(&buckets_for(name, buckets)?))
            }
        };
        let metric = Arc::new(PluginMetric {
            name: name.to_owned(),
            plugin: plugin.to_owned(),
            component: component.to_owned(),
            help: help_text(help),
            instrument,
        });
        registry.kinds.entry(name.to_owned()).or_insert(kind);
        let names = registry
            .names_per_plugin
            .entry(plugin.to_owned())
            .or_default();
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        registry.metrics.insert(key, Arc::clone(&metric));
        Ok(metric)
    }

    /// Every registered metric, sorted by name, plugin, component.
    pub fn all(&self) -> Vec<Arc<PluginMetric>> {
        self.registry.lock().metrics.values().cloned().collect()
    }
}

/// The FFI handle given to a plugin for one metric.
#[derive(Clone)]
pub(crate) struct MetricHandle(pub(crate) Arc<PluginMetric>);

impl MetricObj for MetricHandle {
    fn record(&self, value: f64) {
        match &self.0.instrument {
            PluginInstrument::Counter(counter) => {
                if value.is_finite() && value > 0.0 {
                    counter.add(value.round() as u64);
                }
            }
            PluginInstrument::Histogram(histogram) => {
                if value.is_finite() {
                    histogram.record(value);
                }
            }
        }
    }
}

/// The longest help text a plugin's metric keeps, in bytes.
const MAX_HELP: usize = 1024;

/// A plugin's help text as `/metrics` shows it: one line, its control characters written
/// as escapes, cut to [`MAX_HELP`] bytes (whatever a plugin names is capped).
fn help_text(help: &str) -> String {
    let mut help = crate::names::printable(help).into_owned();
    if help.len() > MAX_HELP {
        let mut end = MAX_HELP;
        while !help.is_char_boundary(end) {
            end -= 1;
        }
        help.truncate(end);
    }
    help
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(
        metrics: &PluginMetrics,
        kind: MetricKind,
        name: &str,
        plugin: &str,
    ) -> Result<Arc<PluginMetric>, MetricError> {
        metrics.register(kind, name, "help", &[], plugin, "c")
    }

    #[test]
    fn a_help_text_is_one_printable_line_of_at_most_its_cap() {
        let metrics = PluginMetrics::default();
        let long = format!("line\n\u{1b}[2J{}", "é".repeat(MAX_HELP));
        let metric = metrics
            .register(MetricKind::Counter, "wordy", &long, &[], "p", "c")
            .expect("registered");
        assert!(
            metric.help.starts_with("line\\n\\u{1b}[2J"),
            "{}",
            metric.help
        );
        assert!(metric.help.len() <= MAX_HELP && !metric.help.contains(char::is_control));
    }

    #[test]
    fn names_that_would_collide_with_other_families_are_refused() {
        let metrics = PluginMetrics::default();
        for name in ["x_total", "x_count", "x_sum", "x_bucket", "Upper", "_x", ""] {
            let err = register(&metrics, MetricKind::Counter, name, "p").unwrap_err();
            assert!(
                matches!(err, MetricError::InvalidName { .. }),
                "{name}: {err}"
            );
        }
        let metric = register(&metrics, MetricKind::Counter, "host_component_calls", "p")
            .expect("a plugin may use any valid name");
        assert_eq!(metric.family(), "plugins_host_component_calls_total");
    }

    #[test]
    fn one_name_is_one_kind_across_plugins() {
        let metrics = PluginMetrics::default();
        register(&metrics, MetricKind::Counter, "events", "a").unwrap();
        let err = register(&metrics, MetricKind::Histogram, "events", "b").unwrap_err();
        assert!(matches!(err, MetricError::KindConflict { .. }), "{err}");
        register(&metrics, MetricKind::Counter, "events", "b").expect("same kind is shared");
    }

    #[test]
    fn each_plugin_has_a_cap_on_names() {
        let metrics = PluginMetrics::new(3);
        for n in 0..3 {
            register(&metrics, MetricKind::Counter, &format!("m{n}"), "a").unwrap();
        }
        register(&metrics, MetricKind::Counter, "m0", "a").expect("an existing name is found");
        let err = register(&metrics, MetricKind::Counter, "m3", "a").unwrap_err();
        assert!(
            matches!(err, MetricError::TooMany { limit: 3, .. }),
            "{err}"
        );
        register(&metrics, MetricKind::Counter, "m3", "b").expect("other plugins have their own");
    }

    #[test]
    fn histogram_buckets_follow_the_unit_or_the_plugin() {
        let metrics = PluginMetrics::default();
        let bytes = register(&metrics, MetricKind::Histogram, "payload_bytes", "p").unwrap();
        let PluginInstrument::Histogram(h) = &bytes.instrument else {
            panic!("a histogram")
        };
        h.record(3000.0);
        let snapshot = h.snapshot();
        assert_eq!(snapshot.buckets.len(), BYTE_BUCKETS.len() + 1);
        assert_eq!(snapshot.buckets[1], (4096.0, 1.0));
        let own = metrics
            .register(MetricKind::Histogram, "depth", "h", &[1.0, 10.0], "p", "c")
            .unwrap();
        let PluginInstrument::Histogram(h) = &own.instrument else {
            panic!("a histogram")
        };
        assert_eq!(h.snapshot().buckets.len(), 3);
        let err = metrics
            .register(MetricKind::Histogram, "bad", "h", &[2.0, 1.0], "p", "c")
            .unwrap_err();
        assert!(matches!(err, MetricError::InvalidBuckets { .. }), "{err}");
    }
}
