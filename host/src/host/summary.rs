//! Periodic aggregation: every component's histograms summarised to p50/p95/p99 once per
//! interval, so that views (the admin API, `status`) read figures without computing them
//! on every request.

use std::{collections::BTreeMap, time::SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use crate::{coordinator::Coordinator, metrics::Quantiles};

/// p50/p95/p99 of one component's histograms at the last aggregation.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ComponentSummary {
    /// Call latency in seconds.
    pub call_latency: Quantiles,
    /// Init duration in seconds.
    pub init_duration: Quantiles,
}

/// The summaries of the last aggregation.
#[derive(Debug, Default)]
pub struct MetricSummaries {
    last: Mutex<(Option<SystemTime>, BTreeMap<String, ComponentSummary>)>,
}

impl MetricSummaries {
    /// Summarises every component of `coordinator` now.
    pub fn aggregate(&self, coordinator: &Coordinator) {
        let components = coordinator
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
        *self.last.lock() = (Some(SystemTime::now()), components);
    }

    /// When the last aggregation ran (`None`: not yet), and what it found.
    pub fn latest(&self) -> (Option<SystemTime>, BTreeMap<String, ComponentSummary>) {
        self.last.lock().clone()
    }
}
