//! The host's background work, on its tokio runtime: metrics aggregation, the memory
//! sampler, the lock watchdog and the log-suppression reports.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::task::JoinHandle;

use super::MetricSummaries;
use crate::{config::Config, coordinator::Coordinator};

/// Starts every background task; the host aborts them when it stops.
pub(super) fn start(
    config: &Config,
    coordinator: &Coordinator,
    summaries: &Arc<MetricSummaries>,
) -> Vec<JoinHandle<()>> {
    let flusher = coordinator.clone();
    vec![
        aggregate(
            coordinator.clone(),
            Arc::clone(summaries),
            config.metrics.aggregation_interval,
        ),
        tokio::spawn(log_long_lock_holds(
            coordinator.clone(),
            config.locks.max_hold,
        )),
        coordinator.spawn_memory_sampler(),
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                flusher.flush_log_suppression();
            }
        }),
    ]
}

/// Summarises every component's histograms every `interval`. The first summary is due one
/// interval in: not at start, when the host has better things to do than summarise
/// components nobody has called.
fn aggregate(
    coordinator: Coordinator,
    summaries: Arc<MetricSummaries>,
    interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + interval;
        let mut ticker = tokio::time::interval_at(first, interval);
        loop {
            ticker.tick().await;
            summaries.aggregate(&coordinator);
        }
    })
}

/// Logs every lock held past `max_hold`, once per hold, with its holder.
async fn log_long_lock_holds(coordinator: Coordinator, max_hold: Duration) {
    let mut reported = HashSet::new();
    let mut interval = tokio::time::interval(max_hold.min(Duration::from_secs(1)));
    loop {
        interval.tick().await;
        let long = coordinator.locks().long_holds();
        reported.retain(|key: &(String, String)| {
            long.iter().any(|(l, h, _)| (l, h) == (&key.0, &key.1))
        });
        for (lock, holder, held_for) in long {
            if reported.insert((lock.clone(), holder.clone())) {
                tracing::warn!(lock = %lock, holder = %holder, held_for = ?held_for, "lock held longer than locks.max_hold");
            }
        }
    }
}
