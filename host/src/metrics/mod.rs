//! Unified metrics: counters, gauges and histograms per component and host-wide, exported
//! as Prometheus text and JSON.
//!
//! The call path records into instruments cached in each component's slot (plain atomic
//! operations: no map lookup, no lock). Every call is counted; latency is timed for a
//! sampled share of calls and the exported histogram is scaled back to every call. The
//! collector reads everything only when asked to export, and summarises histograms to
//! p50/p95/p99 once per aggregation interval.

mod collector;
mod instruments;
mod plugin;
mod prometheus;

pub use self::collector::{ComponentSummary, UnifiedMetricsCollector};
pub use self::instruments::{
    Counter, Gauge, Histogram, HistogramSnapshot, Quantiles, Sampler, BYTE_BUCKETS, LATENCY_BUCKETS,
};
pub(crate) use self::plugin::MetricHandle;
pub use self::plugin::{MetricError, PluginInstrument, PluginMetric, PluginMetrics};
