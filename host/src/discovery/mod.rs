//! Discovery: which plugin files exist and what each provides, without loading any of them.
//!
//! Each library's manifest is read by a scanner process (see [`scanner`]) and kept in the
//! registry cache, so the host maps no plugin code during discovery and a warm start with
//! nothing changed spawns no scanner at all.

mod cache;
pub mod scanner;

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
}

/// One plugin file and what scanning it found.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveredPlugin {
    /// Canonical path of the file.
    pub path: PathBuf,
    /// Its manifest, or why it cannot be used.
    #[serde(serialize_with = "serialize_outcome")]
    pub outcome: ScanOutcome,
    /// Whether the outcome came from the registry cache rather than a scan this run.
    pub cached: bool,
    #[serde(skip)]
    stamp: FileStamp,
}

fn serialize_outcome<S: serde::Serializer>(outcome: &ScanOutcome, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(1))?;
    match outcome {
        Ok(info) => map.serialize_entry("ok", info)?,
        Err(err) => map.serialize_entry(
            "error",
            &serde_json::json!({ "kind": err.kind(), "message": err.to_string() }),
        )?,
    }
    map.end()
}

impl DiscoveredPlugin {
    /// Whether the file on disk is still the one that was scanned.
    pub fn is_unchanged(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| FileStamp::of(&m) == self.stamp)
    }
}

/// Everything found in one plugins directory.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    /// The directory scanned.
    pub dir: PathBuf,
    /// Every plugin file, sorted by path.
    pub plugins: Vec<DiscoveredPlugin>,
    /// How many files were scanned this run (the rest came from the cache).
    pub scanned: usize,
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
    mode: ScanMode,
    concurrency: usize,
    scan_timeout: Duration,
}

impl Discovery {
    /// Discovery of `dir`, scanning in subprocesses of the current executable.
    ///
    /// The current executable must call [`run_scanner_if_requested`] first in `main`
    /// (the `plugin-host` binary does); otherwise name another with [`Self::with_scan_mode`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let mode = std::env::current_exe().map_or(ScanMode::InProcess, ScanMode::Subprocess);
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
        self.mode = mode;
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
    /// [`DiscoveryError::ReadDir`] when the directory cannot be listed. A bad plugin file
    /// is never an error here: it is a [`DiscoveredPlugin`] whose outcome says why.
    pub async fn discover(&self) -> Result<Catalog, DiscoveryError> {
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

        let mut cache = RegistryCache::open(self.cache_dir.as_deref());
        let mut plugins = Vec::with_capacity(paths.len());
        let mut to_scan = Vec::new();
        for path in &paths {
            let stamp = match std::fs::metadata(path) {
                Ok(metadata) => FileStamp::of(&metadata),
                Err(err) => {
                    let outcome = Err(LoadError::Io {
                        path: path.clone(),
                        reason: err.to_string(),
                    });
                    plugins.push(DiscoveredPlugin {
                        path: path.clone(),
                        outcome,
                        cached: false,
                        stamp: FileStamp {
                            size: 0,
                            mtime_ns: 0,
                        },
                    });
                    continue;
                }
            };
            match cache.lookup(path, stamp) {
                Some(entry) => plugins.push(DiscoveredPlugin {
                    path: path.clone(),
                    outcome: entry.outcome.clone(),
                    cached: true,
                    stamp,
                }),
                None => to_scan.push((path.clone(), stamp)),
            }
        }

        let scanned = to_scan.len();
        let results: Vec<(PathBuf, FileStamp, ScanOutcome)> = stream::iter(to_scan)
            .map(|(path, stamp)| async move {
                let outcome = self.scan_one(&path).await;
                (path, stamp, outcome)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for (path, stamp, outcome) in results {
            match &outcome {
                Err(LoadError::AbiMismatch { path, report, .. }) => {
                    tracing::debug!(path = %path.display(), %report, "abi_stable's full layout report");
                }
                Err(err) => tracing::debug!(error = %err, "plugin file cannot be used"),
                Ok(_) => {}
            }
            cache.insert(
                path.clone(),
                Entry {
                    stamp,
                    outcome: outcome.clone(),
                },
            );
            plugins.push(DiscoveredPlugin {
                path,
                outcome,
                cached: false,
                stamp,
            });
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
            ScanMode::Subprocess(program) => {
                scanner::scan_in_subprocess(program, path, self.scan_timeout).await
            }
            ScanMode::InProcess => {
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
