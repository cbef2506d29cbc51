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
    wait_for_stop_signal().await?;
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
