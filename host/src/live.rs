//! Live discovery: the plugins directory, followed while the host runs.
//!
//! A watcher (inotify and the like, through the `notify` crate) reports changes to the
//! directory; after a short quiet spell the directory is discovered again (the registry
//! cache makes unchanged files free) and the coordinator refreshed: new plugins become
//! callable, removed ones that never loaded disappear, loaded ones whose file went or
//! changed are marked. Where no watcher can be set up, the directory is polled every
//! second instead. A rescan can also be asked for at once ([`RescanHandle`]): `run` does
//! on SIGHUP, the admin API on `POST /plugins/rescan`.

use std::time::Duration;

use notify::Watcher;
use tokio::sync::{mpsc, oneshot};

use crate::{
    config::WatchMode,
    coordinator::{CatalogChanges, Coordinator},
    discovery::{Discovery, DiscoveryError},
};

/// How long the directory must be quiet before a change is acted on: a file being copied
/// in fires several events.
const QUIET: Duration = Duration::from_millis(250);

/// How often the directory is rescanned without a watcher (`watch = "poll"`, or where
/// none can be set up); with one, `[host] watch_rescan` says.
const POLL_WITHOUT_WATCHER: Duration = Duration::from_secs(1);

type Reply = oneshot::Sender<Result<CatalogChanges, RescanError>>;

impl From<DiscoveryError> for RescanError {
    fn from(err: DiscoveryError) -> Self {
        Self::Discovery(err)
    }
}

/// Why a rescan did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RescanError {
    /// The plugins directory could not be scanned.
    #[error("rescanning the plugins directory failed: {0}")]
    Discovery(DiscoveryError),
    /// The host stopped following its plugins directory (it is stopping).
    #[error("live discovery has stopped; the host is stopping")]
    Stopped,
}

/// Asks a running [`LiveDiscovery`] to rescan now. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RescanHandle {
    requests: mpsc::Sender<Reply>,
}

impl RescanHandle {
    /// Rescans now and returns what changed.
    ///
    /// # Errors
    ///
    /// Why the directory could not be discovered, or that live discovery has stopped.
    pub async fn rescan(&self) -> Result<CatalogChanges, RescanError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| RescanError::Stopped)?;
        answer.await.map_err(|_| RescanError::Stopped)?
    }
}

/// The plugins directory, watched; stops when dropped.
#[derive(Debug)]
pub struct LiveDiscovery {
    handle: RescanHandle,
    task: tokio::task::JoinHandle<()>,
}

impl LiveDiscovery {
    /// Follows `discovery`'s directory as `mode` says and refreshes `coordinator` on every
    /// change (with [`WatchMode::Off`], only when asked to through [`Self::handle`]); with
    /// [`WatchMode::Notify`] it also rescans every `rescan` in case a notification was
    /// missed. Call it on a tokio runtime, after the first catalog is registered.
    pub fn start(
        discovery: Discovery,
        coordinator: Coordinator,
        mode: WatchMode,
        rescan: Duration,
    ) -> Self {
        let (requests, incoming) = mpsc::channel(8);
        let task = tokio::spawn(follow(discovery, coordinator, incoming, mode, rescan));
        Self {
            handle: RescanHandle { requests },
            task,
        }
    }

    /// A handle to ask for a rescan.
    pub fn handle(&self) -> RescanHandle {
        self.handle.clone()
    }
}

impl Drop for LiveDiscovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watcher's events, or `None` (and a warning) where there is no watcher.
fn watch(discovery: &Discovery) -> (Option<notify::RecommendedWatcher>, mpsc::Receiver<()>) {
    let (events, changed) = mpsc::channel(16);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // Full means a rescan is already due: one is enough.
            let _ = events.try_send(());
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(discovery.dir(), notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match watcher {
        Ok(watcher) => (Some(watcher), changed),
        Err(err) => {
            tracing::warn!(dir = %discovery.dir().display(), error = %err, "cannot watch the plugins directory; polling it every second instead");
            (None, changed)
        }
    }
}

async fn follow(
    discovery: Discovery,
    coordinator: Coordinator,
    mut requests: mpsc::Receiver<Reply>,
    mode: WatchMode,
    every: Duration,
) {
    let (watcher, mut changed) = if mode == WatchMode::Notify {
        watch(&discovery)
    } else {
        (None, mpsc::channel(1).1)
    };
    // Without following, nothing but a request rescans.
    let poll = match (mode, watcher.is_some()) {
        (WatchMode::Off, _) => None,
        (_, true) => Some(every.max(Duration::from_secs(1))),
        (_, false) => Some(POLL_WITHOUT_WATCHER),
    };
    if mode == WatchMode::Poll {
        tracing::info!(dir = %discovery.dir().display(), "polling the plugins directory every second");
    }
    loop {
        let reply = tokio::select! {
            Some(()) = changed.recv() => {
                // Wait for the directory to be quiet, then act once for all events.
                while let Ok(Some(())) = tokio::time::timeout(QUIET, changed.recv()).await {}
                None
            }
            request = requests.recv() => match request {
                Some(reply) => Some(reply),
                None => return,
            },
            () = tokio::time::sleep(poll.unwrap_or(Duration::ZERO)), if poll.is_some() => None,
        };
        let outcome = rescan(&discovery, &coordinator).await;
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

async fn rescan(
    discovery: &Discovery,
    coordinator: &Coordinator,
) -> Result<CatalogChanges, RescanError> {
    let catalog = discovery.discover().await.map_err(|err| {
        tracing::warn!(error = %err, "rescanning the plugins directory failed");
        RescanError::Discovery(err)
    })?;
    let changes = coordinator.refresh(catalog);
    for failure in &changes.failed {
        tracing::warn!("{failure}");
    }
    if changes != CatalogChanges::default() {
        tracing::info!(
            registered = ?changes.registered,
            unregistered = ?changes.unregistered,
            gone = ?changes.gone,
            changed = ?changes.changed,
            problems = ?changes.problems,
            "plugins directory changed"
        );
    }
    Ok(changes)
}
