//! Metric instruments: counters, gauges and bounded histograms on atomics, and the
//! registry of metrics plugins create.
//!
//! The call path records into instruments cached in each component's slot (plain atomic
//! operations: no map lookup, no lock). Every call is counted; latency is timed for a
//! sampled share of calls. Exporting (Prometheus text, JSON) is the admin server's job:
//! it reads these through the coordinator's public views.

mod instruments;
mod plugin;

pub use self::instruments::{
    Counter, Gauge, Histogram, HistogramSnapshot, Quantiles, Sampler, BYTE_BUCKETS, LATENCY_BUCKETS,
};
pub(crate) use self::plugin::MetricHandle;
pub use self::plugin::{MetricError, PluginInstrument, PluginMetric, PluginMetrics};
