//! `plugin-host run`: discover, serve the admin API, start eager components, run until
//! SIGINT/SIGTERM, then stop components in reverse dependency order.

use std::{io::Write as _, process::ExitCode, sync::Arc, time::Duration};

use plugin_host::{
    live::{LiveDiscovery, RescanHandle},
    Config, Coordinator, ErrorChainDisplay,
};
use plugin_host_admin::{self as admin, AdminState, UnifiedMetricsCollector};

use super::{coordinator, discovery, systemd, CliResult, GlobalArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {}

pub(crate) async fn run(global: &GlobalArgs, _args: RunArgs) -> CliResult {
    let mut signals = Signals::install()?;
    let config = global.config()?;
    let (coordinator, _catalog) = coordinator(&config).await?;
    let live = LiveDiscovery::start(discovery(&config)?, coordinator.clone(), config.host.watch);
    let eager = eager_components(&config, &coordinator);
    let collector = Arc::new(UnifiedMetricsCollector::new(coordinator.clone()));
    let admin = Admin::start(&config, &coordinator, &collector, &eager, live.handle()).await?;
    let mut tasks = start_background(&config, &coordinator, &collector);
    tasks.push(tokio::spawn(start_eager(coordinator.clone(), eager)));
    tasks.extend(systemd::watchdog());

    while signals.wait().await? == Signal::Rescan {
        tracing::info!("SIGHUP: rescanning the plugins directory");
        if let Err(err) = live.handle().rescan().await {
            tracing::warn!(error = %err, "rescan failed");
        }
    }
    tracing::info!("stopping");
    systemd::notify(&[systemd::State::Stopping]);
    drop(live);
    for task in tasks {
        task.abort();
    }
    // The admin API answers until the components are stopped: /readyz says 503 at once.
    let report = coordinator.shutdown(config.timeouts.stop).await;
    admin.stop().await;
    tracing::info!(stopped = ?report.stopped, timed_out = ?report.timed_out, "host stopped");
    Ok(ExitCode::SUCCESS)
}

/// The eager components the config names that some plugin provides; the rest are
/// logged.
fn eager_components(config: &Config, coordinator: &Coordinator) -> Vec<String> {
    let mut eager = Vec::new();
    for (name, component) in config.components.iter().filter(|(_, c)| c.eager) {
        if component.enabled && coordinator.state_of(name).is_some() {
            eager.push(name.clone());
        } else {
            tracing::warn!(component = %name, "eager component is not provided by any plugin");
        }
    }
    eager
}

/// The admin API, serving until stopped.
struct Admin {
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Admin {
    async fn start(
        config: &Config,
        coordinator: &Coordinator,
        collector: &Arc<UnifiedMetricsCollector>,
        eager: &[String],
        rescan: RescanHandle,
    ) -> std::io::Result<Self> {
        let state = Arc::new(AdminState {
            coordinator: coordinator.clone(),
            collector: Arc::clone(collector),
            eager: eager.to_vec(),
            token: Some(config.admin.token.clone()).filter(|t| !t.is_empty()),
            probes_without_token: config.admin.probes_without_token,
            rescan: Some(rescan),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = admin::serve(config.admin.listen, state, async {
            let _ = stopped.await;
        })
        .await?;
        println!("admin listening on http://{addr}");
        let _ = std::io::stdout().flush();
        tracing::info!(components = coordinator.component_names().len(), dir = %config.plugins_dir().display(), %addr, "host started");
        Ok(Self { stop, server })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .is_err()
        {
            tracing::warn!("admin API did not stop within 5s");
        }
    }
}

/// The host's background work: metric aggregation, the lock watchdog, the memory
/// sampler, the log-suppression reports, and starting the eager components.
fn start_background(
    config: &Config,
    coordinator: &Coordinator,
    collector: &Arc<UnifiedMetricsCollector>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let flusher = coordinator.clone();
    vec![
        collector.spawn_aggregator(config.metrics.aggregation_interval),
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

/// Starts the eager components (each get initialises dependencies first; independent
/// ones run concurrently), then tells systemd the host is ready.
async fn start_eager(coordinator: Coordinator, eager: Vec<String>) {
    let gets = eager.iter().map(|name| {
        let coordinator = coordinator.clone();
        async move { (name, coordinator.get(name).await) }
    });
    let mut failed = 0;
    for (name, result) in futures::future::join_all(gets).await {
        if let Err(err) = result {
            failed += 1;
            tracing::error!(component = %name, error = %ErrorChainDisplay(&err), "eager component failed to start");
        }
    }
    let status = if failed == 0 {
        format!("ready: {} eager components", eager.len())
    } else {
        format!(
            "running; {failed} of {} eager components failed to start",
            eager.len()
        )
    };
    systemd::notify(&[systemd::State::Ready, systemd::State::Status(&status)]);
}

/// What a signal asks of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGINT or SIGTERM: stop.
    Stop,
    /// SIGHUP: rescan the plugins directory.
    Rescan,
}

/// SIGINT, SIGTERM and SIGHUP, listened for from the start: a signal that arrives while
/// the host is still starting is handled, not fatal.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn wait(&mut self) -> std::io::Result<Signal> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Ok(Signal::Stop),
                _ = self.terminate.recv() => Ok(Signal::Stop),
                _ = self.hangup.recv() => Ok(Signal::Rescan),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.map(|()| Signal::Stop)
        }
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
