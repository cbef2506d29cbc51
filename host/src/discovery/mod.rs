//! Discovery: which plugin files exist and what each provides, without loading any of them.
//!
//! Each library's manifest is read by a scanner process (see [`scanner`]) and kept in the
//! registry cache, so the host maps no plugin code during discovery and a warm start with
//! nothing changed spawns no scanner at all.

mod cache;
pub mod scanner;
mod verdict;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use futures::{stream, StreamExt};
use serde::Serialize;

use self::cache::{Entry, FileStamp, RegistryCache};
pub use self::scanner::{
    run_scanner_if_requested, scan_in_process, ScanMode, ScanOutcome, SCAN_FLAG,
};
pub use self::verdict::{FileError, Verdict};
pub use crate::util::default_cache_dir;
use crate::{loader::LoadError, manifest::PluginInfo};

/// Why the plugin directory itself could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The directory is missing or unreadable.
    #[error("cannot read plugins directory {dir}: {source}; create it or pass --plugins-dir")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// There is no scanner to run: this program's own executable cannot be found.
    #[error("cannot find this program's executable to run as the plugin scanner ({reason}); name one with Discovery::with_scan_mode")]
    NoScanner {
        /// Why the executable could not be found.
        reason: String,
    },
}

/// One plugin file and what scanning it found.
#[derive(Debug, Clone)]
pub struct DiscoveredPlugin {
    /// Canonical path of the file.
    pub path: PathBuf,
    /// Its manifest, or why it cannot be used.
    pub outcome: ScanOutcome,
    /// Whether the outcome came from the registry cache rather than a scan this run.
    pub cached: bool,
    stamp: FileStamp,
}

impl DiscoveredPlugin {
    /// Its verdict, in the shape every view shows.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(self.path.clone(), &self.outcome, self.cached)
    }

    /// Whether the file on disk is still the one that was scanned.
    pub fn is_unchanged(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| FileStamp::of(&m) == self.stamp)
    }
}

/// Everything found in one plugins directory. Serialises as `{dir, scanned, plugins}`
/// with each plugin as its [`Verdict`].
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The directory scanned.
    pub dir: PathBuf,
    /// Every plugin file, sorted by path.
    pub plugins: Vec<DiscoveredPlugin>,
    /// How many files were scanned this run (the rest came from the cache).
    pub scanned: usize,
}

impl Serialize for Catalog {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            dir: &'a Path,
            scanned: usize,
            plugins: Vec<Verdict>,
        }
        View {
            dir: &self.dir,
            scanned: self.scanned,
            plugins: self.plugins.iter().map(DiscoveredPlugin::verdict).collect(),
        }
        .serialize(serializer)
    }
}

impl Catalog {
    /// The plugins that scanned cleanly.
    pub fn usable(&self) -> impl Iterator<Item = (&DiscoveredPlugin, &PluginInfo)> {
        self.plugins
            .iter()
            .filter_map(|plugin| plugin.outcome.as_ref().ok().map(|info| (plugin, info)))
    }

    /// The files that cannot be used, with why.
    pub fn failures(&self) -> impl Iterator<Item = &LoadError> {
        self.plugins
            .iter()
            .filter_map(|plugin| plugin.outcome.as_ref().err())
    }
}

/// Finds plugin files in a directory and reads their manifests safely.
#[derive(Debug, Clone)]
pub struct Discovery {
    dir: PathBuf,
    cache_dir: Option<PathBuf>,
    /// The scan mode, or why the default one (this executable) is unavailable.
    mode: Result<ScanMode, String>,
    concurrency: usize,
    scan_timeout: Duration,
}

impl Discovery {
    /// Discovery of `dir`, scanning in subprocesses of the current executable.
    ///
    /// The current executable must call [`run_scanner_if_requested`] first in `main`
    /// (the `plugin-host` binary does); otherwise name another with [`Self::with_scan_mode`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        // Never a silent fall back to scanning in-process: without an executable, discovery
        // fails and says so.
        let mode = std::env::current_exe()
            .map(ScanMode::Subprocess)
            .map_err(|err| err.to_string());
        Self {
            dir: dir.into(),
            cache_dir: default_cache_dir(),
            mode,
            concurrency: 2,
            scan_timeout: Duration::from_secs(10),
        }
    }

    /// Where the registry cache lives; `None` disables it. Defaults to
    /// [`default_cache_dir`].
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// How files are scanned. Defaults to a subprocess of the current executable.
    pub fn with_scan_mode(mut self, mode: ScanMode) -> Self {
        self.mode = Ok(mode);
        self
    }

    /// How many scanners run at once. Defaults to 2.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long one scan may take before the file is marked failed. Defaults to 10 s.
    pub fn with_scan_timeout(mut self, timeout: Duration) -> Self {
        self.scan_timeout = timeout;
        self
    }

    /// The directory this discovers.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Scans the directory: cached results for unchanged files, a scan for the others.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::ReadDir`] when the directory cannot be listed,
    /// [`DiscoveryError::NoScanner`] when there is no scanner to run. A bad plugin file is
    /// never an error here: it is a [`DiscoveredPlugin`] whose outcome says why.
    pub async fn discover(&self) -> Result<Catalog, DiscoveryError> {
        if let Err(reason) = &self.mode {
            return Err(DiscoveryError::NoScanner {
                reason: reason.clone(),
            });
        }
        let (dir, paths) = self.list_files()?;
        let mut cache = RegistryCache::open(self.cache_dir.as_deref());
        let (mut plugins, to_scan) = from_cache(&cache, &paths);
        let scanned = to_scan.len();
        for plugin in self.scan_all(to_scan).await {
            if let Err(LoadError::AbiMismatch { path, report, .. }) = &plugin.outcome {
                tracing::debug!(path = %path.display(), %report, "abi_stable's full layout report");
            } else if let Err(err) = &plugin.outcome {
                tracing::debug!(error = %err, "plugin file cannot be used");
            }
            cache.insert(
                plugin.path.clone(),
                Entry {
                    stamp: plugin.stamp,
                    outcome: plugin.outcome.clone(),
                },
            );
            plugins.push(plugin);
        }
        plugins.sort_by(|a, b| a.path.cmp(&b.path));
        cache.retain_present(&dir, &paths);
        cache.save();
        tracing::debug!(dir = %dir.display(), files = paths.len(), scanned, "discovery done");
        Ok(Catalog {
            dir,
            plugins,
            scanned,
        })
    }

    /// The canonical directory and its library files, sorted.
    fn list_files(&self) -> Result<(PathBuf, Vec<PathBuf>), DiscoveryError> {
        let read_dir_error = |source| DiscoveryError::ReadDir {
            dir: self.dir.clone(),
            source,
        };
        let dir = std::fs::canonicalize(&self.dir).map_err(read_dir_error)?;
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(read_dir_error)? {
            let path = entry.map_err(read_dir_error)?.path();
            if path
                .extension()
                .is_some_and(|ext| ext == std::env::consts::DLL_EXTENSION)
            {
                paths.push(path);
            }
        }
        paths.sort();
        Ok((dir, paths))
    }

    /// Scans `files` (with their stamps), a few at a time.
    async fn scan_all(&self, files: Vec<(PathBuf, FileStamp)>) -> Vec<DiscoveredPlugin> {
        stream::iter(files)
            .map(|(path, stamp)| async move {
                let outcome = self.scan_one(&path).await;
                DiscoveredPlugin {
                    path,
                    outcome,
                    cached: false,
                    stamp,
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Scans one file now, bypassing the cache.
    pub async fn scan_file(&self, path: &Path) -> ScanOutcome {
        let path = std::fs::canonicalize(path).map_err(|err| LoadError::Io {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
        self.scan_one(&path).await
    }

    async fn scan_one(&self, path: &Path) -> ScanOutcome {
        match &self.mode {
            Err(reason) => Err(LoadError::Scanner {
                path: path.to_owned(),
                reason: format!("no scanner to run: {reason}"),
            }),
            Ok(ScanMode::Subprocess(program)) => {
                scanner::scan_in_subprocess(program, path, self.scan_timeout).await
            }
            Ok(ScanMode::InProcess) => {
                let owned = path.to_owned();
                tokio::task::spawn_blocking(move || scan_in_process(&owned))
                    .await
                    .unwrap_or_else(|err| {
                        Err(LoadError::Scanner {
                            path: path.to_owned(),
                            reason: format!("in-process scan failed: {err}"),
                        })
                    })
            }
        }
    }
}

/// Splits `paths` into what the cache already knows (unchanged files) and what needs a
/// scan; a file that cannot even be stat'ed is a failure of its own.
fn from_cache(
    cache: &RegistryCache,
    paths: &[PathBuf],
) -> (Vec<DiscoveredPlugin>, Vec<(PathBuf, FileStamp)>) {
    let mut known = Vec::with_capacity(paths.len());
    let mut to_scan = Vec::new();
    for path in paths {
        let stamp = match std::fs::metadata(path) {
            Ok(metadata) => FileStamp::of(&metadata),
            Err(err) => {
                known.push(DiscoveredPlugin {
                    path: path.clone(),
                    outcome: Err(LoadError::Io {
                        path: path.clone(),
                        reason: err.to_string(),
                    }),
                    cached: false,
                    stamp: FileStamp::default(),
                });
                continue;
            }
        };
        match cache.lookup(path, stamp) {
            Some(entry) => known.push(DiscoveredPlugin {
                path: path.clone(),
                outcome: entry.outcome.clone(),
                cached: true,
                stamp,
            }),
            None => to_scan.push((path.clone(), stamp)),
        }
    }
    (known, to_scan)
}
