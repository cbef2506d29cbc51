//! Talking to systemd when it supervises the host (`Type=notify`): READY=1 once the eager
//! components are up, STOPPING=1 when the stop begins, and watchdog pings when the unit
//! sets `WatchdogSec`. Outside systemd (no `NOTIFY_SOCKET`), and on every system but
//! Linux, every call does nothing.

use std::time::Duration;

/// What the host tells systemd.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum State<'a> {
    Ready,
    Stopping,
    Status(&'a str),
    Watchdog,
}

/// Sends `states`; a failure is logged, never fatal.
pub(crate) fn notify(states: &[State<'_>]) {
    if let Err(err) = send(states) {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
}

#[cfg(target_os = "linux")]
fn send(states: &[State<'_>]) -> std::io::Result<()> {
    let states: Vec<sd_notify::NotifyState<'_>> = states
        .iter()
        .map(|state| match state {
            State::Ready => sd_notify::NotifyState::Ready,
            State::Stopping => sd_notify::NotifyState::Stopping,
            State::Status(text) => sd_notify::NotifyState::Status(text),
            State::Watchdog => sd_notify::NotifyState::Watchdog,
        })
        .collect();
    sd_notify::notify(false, &states)
}

/// systemd is Linux only.
#[cfg(not(target_os = "linux"))]
fn send(_states: &[State<'_>]) -> std::io::Result<()> {
    Ok(())
}

/// The watchdog interval systemd set, as `sd_watchdog_enabled(3)` reads it:
/// `WATCHDOG_USEC`, for this process unless `WATCHDOG_PID` names another.
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us = std::env::var("WATCHDOG_PID")
        .ok()
        .is_none_or(|pid| pid.parse::<u32>() == Ok(std::process::id()));
    (usec > 0 && for_us).then_some(usec)
}

/// When systemd asks for watchdog pings (`WATCHDOG_USEC`), a task sending one every half
/// interval, from the async runtime: if the runtime stalls, the pings stop and systemd
/// restarts the host.
pub(crate) fn watchdog() -> Option<tokio::task::JoinHandle<()>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let usec = watchdog_usec()?;
    let every = Duration::from_micros(usec / 2);
    tracing::info!(interval = ?every, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        loop {
            interval.tick().await;
            if let Err(err) = send(&[State::Watchdog]) {
                tracing::warn!(error = %err, "cannot ping the systemd watchdog");
            }
        }
    }))
}
