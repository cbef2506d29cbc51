//! `plugin-host run`: start a [`Host`] and its admin API, tell systemd, and run until
//! SIGINT/SIGTERM (SIGHUP rescans), on Windows Ctrl-C or Ctrl-Break, then stop in reverse
//! dependency order; a second such signal ends the stop at once.

use std::{io::Write as _, process::ExitCode};

use plugin_host::Host;
use plugin_host_admin::AdminServer;

use super::{systemd, CliResult, GlobalArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {}

pub(crate) async fn run(global: &GlobalArgs, _args: RunArgs) -> CliResult {
    let mut signals = Signals::install()?;
    let config = global.config()?;
    match plugin_host::raise_open_files_limit() {
        Ok((before, after)) if after > before => {
            tracing::debug!(before, after, "raised the open-files limit");
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-files limit"),
    }
    let host = Host::start(config).await?;
    let admin = AdminServer::start(&host).await?;
    // A standard output that cannot be written (closed by a supervisor) does not stop a
    // running host: this line is a courtesy, the log has it too.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "admin listening on http://{}", admin.addr());
    let _ = stdout.flush();
    tracing::info!(addr = %admin.addr(), "admin API listening");
    let mut tasks = vec![tokio::spawn(notify_ready(host.clone()))];
    tasks.extend(systemd::watchdog());

    while signals.wait().await? == Signal::Rescan {
        tracing::info!("SIGHUP: rescanning the plugins directory");
        if let Err(err) = host.rescan().await {
            tracing::warn!(error = %err, "rescan failed");
        }
    }
    tracing::info!("stopping");
    systemd::notify(&[systemd::State::Stopping]);
    for task in tasks {
        task.abort();
    }
    // The admin API answers until the components are stopped: /readyz says 503 at once.
    let stop = async {
        host.shutdown().await;
        admin.stop().await;
    };
    tokio::select! {
        () = stop => Ok(ExitCode::SUCCESS),
        // An operator who asks twice will not wait for components that take their time.
        second = signals.stop() => {
            second?;
            tracing::warn!("a second stop signal: exiting now, without waiting for the components still stopping (their workers end with the host)");
            Ok(ExitCode::from(FORCED_STOP))
        }
    }
}

/// The exit code of a stop forced by a second signal: 128 + SIGINT, as a shell reports an
/// interrupted program.
const FORCED_STOP: u8 = 130;

/// Tells systemd the host is ready once its eager components have started.
async fn notify_ready(host: Host) {
    let report = host.eager_started().await;
    let eager = report.started.len() + report.failed.len();
    let status = if report.failed.is_empty() {
        format!("ready: {eager} eager components")
    } else {
        format!(
            "running; {} of {eager} eager components failed to start",
            report.failed.len()
        )
    };
    systemd::notify(&[systemd::State::Ready, systemd::State::Status(&status)]);
}

impl Signals {
    /// The next stop signal; rescans asked for meanwhile are let go (the host is stopping).
    async fn stop(&mut self) -> std::io::Result<()> {
        while self.wait().await? == Signal::Rescan {}
        Ok(())
    }
}

/// What a signal asks of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGINT or SIGTERM: stop.
    Stop,
    /// SIGHUP: rescan the plugins directory.
    #[cfg_attr(windows, allow(dead_code))]
    Rescan,
}

/// SIGINT, SIGTERM and SIGHUP, listened for from the start: a signal that arrives while
/// the host is still starting is handled, not fatal.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn wait(&mut self) -> std::io::Result<Signal> {
        tokio::select! {
            _ = self.interrupt.recv() => Ok(Signal::Stop),
            _ = self.terminate.recv() => Ok(Signal::Stop),
            _ = self.hangup.recv() => Ok(Signal::Rescan),
        }
    }
}

/// Ctrl-C, Ctrl-Break, the console closing and the system shutting down: each stops the
/// host. Windows has no SIGHUP: `POST /plugins/rescan` rescans.
#[cfg(windows)]
struct Signals {
    ctrl_c: tokio::signal::windows::CtrlC,
    ctrl_break: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
    shutdown: tokio::signal::windows::CtrlShutdown,
}

#[cfg(windows)]
impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
        Ok(Self {
            ctrl_c: ctrl_c()?,
            ctrl_break: ctrl_break()?,
            close: ctrl_close()?,
            shutdown: ctrl_shutdown()?,
        })
    }

    async fn wait(&mut self) -> std::io::Result<Signal> {
        tokio::select! {
            _ = self.ctrl_c.recv() => Ok(Signal::Stop),
            _ = self.ctrl_break.recv() => Ok(Signal::Stop),
            _ = self.close.recv() => Ok(Signal::Stop),
            _ = self.shutdown.recv() => Ok(Signal::Stop),
        }
    }
}
