//! The host's background work, on its tokio runtime: metrics aggregation, the memory
//! sampler, the lock watchdog and the log-suppression reports.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::task::JoinHandle;

use super::MetricSummaries;
use crate::{config::Config, coordinator::Coordinator, live::RescanHandle, sources::Sources};

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

/// For each source with `follow`: asks every so often whether its tag moved, and when it
/// did (the new artifact pulled, verified and served), rescans, so live discovery
/// registers it (an isolated component is upgraded live; an in-process one is reported
/// changed).
pub(super) fn follow_sources(sources: &Sources, rescan: &RescanHandle) -> Vec<JoinHandle<()>> {
    sources
        .followed()
        .into_iter()
        .map(|(name, every)| {
            let (sources, rescan) = (sources.clone(), rescan.clone());
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    ticker.tick().await;
                    match sources.refresh(&name).await {
                        Ok(false) => {}
                        Ok(true) => {
                            tracing::info!(source = %name, "the source's tag moved: serving what it names now");
                            if let Err(error) = rescan.rescan().await {
                                tracing::warn!(source = %name, %error, "rescan after a pull failed");
                            }
                        }
                        Err(problem) => tracing::warn!("{problem}"),
                    }
                }
            })
        })
        .collect()
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
