//! Live discovery: the plugins directory, followed while the host runs.
//!
//! A watcher (inotify and the like, through the `notify` crate) reports changes to the
//! directory; after a short quiet spell the directory is discovered again (the registry
//! cache makes unchanged files free) and the coordinator refreshed: new plugins become
//! callable, removed ones that never loaded disappear, loaded ones whose file went or
//! changed are marked. Its parent is watched too, so a directory a deploy swaps in (renamed
//! over the old one, made again, a symlink repointed) is followed; while it is missing, and
//! where no watcher can be set up, the directory is polled every second instead. A rescan
//! can also be asked for at once ([`RescanHandle`]): `run` does on SIGHUP, the admin API
//! on `POST /plugins/rescan`.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

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

/// The plugins directory watched, and its parent for the directory itself: a deploy that
/// removes it, renames it away or swaps a new one in (or a symlink to one) is seen, and
/// the directory's own watch set up again on whatever now has its name.
struct DirWatch {
    watcher: notify::RecommendedWatcher,
    /// The directory, absolute: the paths the watcher reports are compared with it.
    dir: PathBuf,
    /// Set by the watcher when an event names the directory itself.
    replaced: Arc<AtomicBool>,
    /// The directory itself is watched (not while it is missing).
    armed: bool,
}

impl DirWatch {
    /// The watcher and its events, or `None` (and a warning) where there is no watcher.
    fn start(dir: &Path) -> (Option<Self>, mpsc::Receiver<()>) {
        let (events, changed) = mpsc::channel(16);
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let replaced = Arc::new(AtomicBool::new(false));
        let (seen, replaced_seen) = (dir.clone(), Arc::clone(&replaced));
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            // The parent's other entries are none of ours.
            let itself = event.paths.contains(&seen);
            if itself {
                replaced_seen.store(true, Ordering::Relaxed);
            }
            if itself || event.paths.iter().any(|path| path.parent() == Some(&seen)) {
                // Full means a rescan is already due: one is enough.
                let _ = events.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot watch the plugins directory; polling it every second instead");
                return (None, changed);
            }
        };
        if let Some(parent) = dir.parent() {
            if let Err(err) = watcher.watch(parent, notify::RecursiveMode::NonRecursive) {
                tracing::debug!(dir = %parent.display(), error = %err, "cannot watch the plugins directory's parent; a directory swapped in is found by the rescan");
            }
        }
        let mut watch = Self {
            watcher,
            dir,
            replaced,
            armed: false,
        };
        watch.arm();
        (Some(watch), changed)
    }

    /// Watches the directory itself if it is not watched or was replaced; false while it
    /// cannot be (it is missing): then it is polled every second until it is back.
    fn arm(&mut self) -> bool {
        if self.replaced.swap(false, Ordering::Relaxed) || !self.armed {
            // The old watch went with the old directory; removing it may fail for that.
            let _ = self.watcher.unwatch(&self.dir);
            self.armed = self
                .watcher
                .watch(&self.dir, notify::RecursiveMode::NonRecursive)
                .is_ok();
        }
        self.armed
    }
}

async fn follow(
    discovery: Discovery,
    coordinator: Coordinator,
    mut requests: mpsc::Receiver<Reply>,
    mode: WatchMode,
    every: Duration,
) {
    let (mut watch, mut changed) = if mode == WatchMode::Notify {
        DirWatch::start(discovery.dir())
    } else {
        (None, mpsc::channel(1).1)
    };
    if mode == WatchMode::Poll {
        tracing::info!(dir = %discovery.dir().display(), "polling the plugins directory every second");
    }
    let mut failing = false;
    loop {
        // Without following, nothing but a request rescans.
        let poll = match (mode, watch.as_mut().map(DirWatch::arm)) {
            (WatchMode::Off, _) => None,
            (_, Some(true)) => Some(every.max(Duration::from_secs(1))),
            (_, Some(false) | None) => Some(POLL_WITHOUT_WATCHER),
        };
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
        // A directory swapped in is watched before it is read: what arrives after the
        // read is then seen.
        if let Some(watch) = watch.as_mut() {
            watch.arm();
        }
        let outcome = rescan(&discovery, &coordinator).await;
        match &outcome {
            Err(RescanError::Discovery(err)) if !failing => {
                tracing::warn!(error = %err, "the plugins directory cannot be rescanned; its plugins stay as they are until a rescan succeeds");
                failing = true;
            }
            Err(err) => {
                tracing::debug!(error = %err, "the plugins directory still cannot be rescanned");
            }
            Ok(_) if failing => {
                tracing::info!(dir = %discovery.dir().display(), "the plugins directory is rescanned again");
                failing = false;
            }
            Ok(_) => {}
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

async fn rescan(
    discovery: &Discovery,
    coordinator: &Coordinator,
) -> Result<CatalogChanges, RescanError> {
    let catalog = discovery.discover().await?;
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
