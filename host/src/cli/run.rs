//! `plugin-host run`: discover, start eager components, serve until SIGINT/SIGTERM, stop.

use std::process::ExitCode;

use super::{coordinator, CliResult, GlobalArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {}

pub(crate) async fn run(global: &GlobalArgs, _args: RunArgs) -> CliResult {
    let config = global.config()?;
    let coordinator = coordinator(&config).await?;
    let components = coordinator.components();
    tracing::info!(components = components.len(), dir = %config.host.plugins_dir.display(), "host started");
    for (name, _) in config
        .components
        .iter()
        .filter(|(_, c)| c.eager && c.enabled)
    {
        if !components.iter().any(|c| &c.name == name) {
            tracing::warn!(component = %name, "eager component is not provided by any plugin");
            continue;
        }
        if let Err(err) = coordinator.get(name).await {
            tracing::error!(component = %name, error = %format!("{:#}", anyhow::Error::new(err)), "eager component failed to start");
        }
    }
    let watchdog = tokio::spawn(log_long_lock_holds(
        coordinator.clone(),
        config.locks.max_hold,
    ));
    wait_for_stop_signal().await?;
    watchdog.abort();
    tracing::info!("stopping");
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
async fn log_long_lock_holds(coordinator: plugin_host::Coordinator, max_hold: std::time::Duration) {
    let mut reported = std::collections::HashSet::new();
    let mut interval = tokio::time::interval(max_hold.min(std::time::Duration::from_secs(1)));
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
