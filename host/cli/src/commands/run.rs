//! `plugin-host run`: discover, serve the admin API, start eager components, run until
//! SIGINT/SIGTERM, then stop components in reverse dependency order.

use std::{io::Write as _, process::ExitCode, sync::Arc, time::Duration};

use plugin_host::{Coordinator, ErrorChainDisplay};
use plugin_host_admin::{self as admin, AdminState, UnifiedMetricsCollector};

use super::{coordinator, CliResult, GlobalArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {}

pub(crate) async fn run(global: &GlobalArgs, _args: RunArgs) -> CliResult {
    let config = global.config()?;
    let (coordinator, catalog) = coordinator(&config).await?;
    let components = coordinator.components();
    let eager: Vec<String> = config
        .components
        .iter()
        .filter(|(name, c)| {
            c.eager && c.enabled && components.iter().any(|known| &&known.name == name)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in config
        .components
        .iter()
        .filter(|(_, c)| c.eager)
        .map(|(n, _)| n)
    {
        if !eager.contains(name) {
            tracing::warn!(component = %name, "eager component is not provided by any plugin");
        }
    }

    let catalog = Arc::new(catalog);
    let collector = Arc::new(UnifiedMetricsCollector::new(
        coordinator.clone(),
        Arc::clone(&catalog),
    ));
    let aggregator = collector.spawn_aggregator(config.metrics.aggregation_interval);
    let state = Arc::new(AdminState {
        coordinator: coordinator.clone(),
        catalog,
        collector: Arc::clone(&collector),
        eager: eager.clone(),
        token: Some(config.admin.token.clone()).filter(|t| !t.is_empty()),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = admin::serve(config.admin.listen, state, async {
        let _ = stop_rx.await;
    })
    .await?;
    println!("admin listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(components = components.len(), dir = %config.host.plugins_dir.display(), %addr, "host started");

    let watchdog = tokio::spawn(log_long_lock_holds(
        coordinator.clone(),
        config.locks.max_hold,
    ));
    let sampler = coordinator.spawn_memory_sampler();
    let log_flusher = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                coordinator.flush_log_suppression();
            }
        })
    };
    let starter = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            // Each get initialises dependencies first; independent ones run concurrently.
            let gets = eager.iter().map(|name| {
                let coordinator = coordinator.clone();
                async move { (name, coordinator.get(name).await) }
            });
            for (name, result) in futures::future::join_all(gets).await {
                if let Err(err) = result {
                    tracing::error!(component = %name, error = %ErrorChainDisplay(&err), "eager component failed to start");
                }
            }
        })
    };

    wait_for_stop_signal().await?;
    tracing::info!("stopping");
    starter.abort();
    watchdog.abort();
    sampler.abort();
    log_flusher.abort();
    aggregator.abort();
    let _ = stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        tracing::warn!("admin API did not stop within 5s");
    }
    let report = coordinator.shutdown(config.timeouts.stop).await;
    tracing::info!(stopped = ?report.stopped, timed_out = ?report.timed_out, "host stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Logs every lock held past `max_hold`, once per hold, with its holder.
async fn log_long_lock_holds(coordinator: Coordinator, max_hold: Duration) {
    let mut reported = std::collections::HashSet::new();
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
