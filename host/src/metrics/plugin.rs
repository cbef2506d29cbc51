//! Metrics that plugins register through the host context.

use std::{collections::BTreeMap, sync::Arc};

use parking_lot::Mutex;
use plugin_api::ffi::{MetricKind, MetricObj};

use super::{Counter, Histogram};

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

/// A plugin metric's instrument.
#[derive(Debug)]
pub enum PluginInstrument {
    /// A counter.
    Counter(Counter),
    /// A histogram.
    Histogram(Histogram),
}

/// Every plugin metric, by (name, plugin, component). Registration takes a lock; recording
/// goes through the handle and does not.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    metrics: Mutex<BTreeMap<(String, String, String), Arc<PluginMetric>>>,
}

fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= 100
}

impl PluginMetrics {
    /// Finds or registers a metric.
    ///
    /// # Errors
    ///
    /// A message when the name is invalid or registered with another kind.
    pub fn register(
        &self,
        kind: MetricKind,
        name: &str,
        help: &str,
        plugin: &str,
        component: &str,
    ) -> Result<Arc<PluginMetric>, String> {
        if !valid_metric_name(name) {
            return Err(format!(
                "metric name `{name}` is not valid: use a-z, 0-9 and `_`, starting with a letter"
            ));
        }
        let key = (name.to_owned(), plugin.to_owned(), component.to_owned());
        let mut metrics = self.metrics.lock();
        if let Some(existing) = metrics.get(&key) {
            let same_kind = matches!(
                (&existing.instrument, kind),
                (PluginInstrument::Counter(_), MetricKind::Counter)
                    | (PluginInstrument::Histogram(_), MetricKind::Histogram)
            );
            return if same_kind {
                Ok(Arc::clone(existing))
            } else {
                Err(format!(
                    "metric `{name}` is already registered as another kind"
                ))
            };
        }
        let instrument = match kind {
            MetricKind::Counter => PluginInstrument::Counter(Counter::default()),
            MetricKind::Histogram => PluginInstrument::Histogram(Histogram::default()),
        };
        let metric = Arc::new(PluginMetric {
            name: name.to_owned(),
            plugin: plugin.to_owned(),
            component: component.to_owned(),
            help: help.to_owned(),
            instrument,
        });
        metrics.insert(key, Arc::clone(&metric));
        Ok(metric)
    }

    /// Every registered metric, sorted by name, plugin, component.
    pub fn all(&self) -> Vec<Arc<PluginMetric>> {
        self.metrics.lock().values().cloned().collect()
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
