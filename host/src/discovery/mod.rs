//! Discovery: which plugin files exist and what each provides, without loading any of them.
//!
//! Each library's manifest is read by a scanner process (see [`scanner`]) and kept in the
//! registry cache, so the host maps no plugin code during discovery and a warm start with
//! nothing changed spawns no scanner at all.

mod cache;
mod noexec;
mod scan;
pub mod scanner;
mod verdict;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;

pub use self::scanner::{scan_in_process, ScanMode, ScanOutcome, ScanReport, SCAN_FLAG};
pub use self::verdict::{FileError, Verdict};
pub use crate::dirs::default_cache_dir;

/// Reads registry cache bytes (for the fuzz targets).
pub(crate) fn parse_cache(bytes: &[u8]) -> Result<bool, postcard::Error> {
    cache::RegistryCache::parse(bytes).map(|entries| entries.is_some())
}
use crate::{
    loader::{FileIdentity, LoadError},
    manifest::PluginInfo,
    trust::TrustPolicy,
};

/// Why the plugin directory itself could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The directory is missing or unreadable.
    #[error("cannot read plugins directory {dir}: {error}; create it or pass --plugins-dir")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's error (in the message, so not a `source`: a chain
        /// printed whole says it once).
        error: std::io::Error,
    },
    /// The plugins directory is on a `noexec` mount, and copying from it is off or
    /// impossible.
    #[error("plugins directory {dir} is on a noexec mount ({mount}): no library there can be loaded; {what}")]
    Noexec {
        /// The directory.
        dir: PathBuf,
        /// Its mount point.
        mount: PathBuf,
        /// What to do.
        what: &'static str,
    },
    /// There is no scanner to run: this program's own executable cannot be found.
    #[error("cannot find this program's executable to run as the plugin scanner ({error}); name one with Discovery::with_scan_mode")]
    NoScanner {
        /// Why the executable could not be found.
        error: std::sync::Arc<std::io::Error>,
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
    /// The identity of the file that was vetted: only that file is ever loaded.
    pub identity: FileIdentity,
    /// Its SHA-256, when the trust policy took it.
    pub sha256: Option<String>,
    /// For a file that cannot be used now but could when it was last scanned (the
    /// registry cache knows it): the components it provided then, so a call of one of
    /// them is told why it is missing.
    pub provided: Vec<String>,
    /// The source that serves it, for a library delivered as an OCI artifact.
    pub source: Option<crate::sources::SourceRecord>,
}

impl DiscoveredPlugin {
    /// Its verdict, in the shape every view shows.
    pub fn verdict(&self) -> Verdict {
        Verdict {
            source: self.source.clone(),
            ..Verdict::of(self.path.clone(), &self.outcome, self.cached)
        }
    }

    /// Whether the file on disk is still the one that was vetted.
    pub fn is_unchanged(&self) -> bool {
        FileIdentity::of_path(&self.path).is_ok_and(|identity| identity == self.identity)
    }
}

/// Everything found in one plugins directory. Serialises as `{dir, scanned, plugins}`
/// with each plugin as its [`Verdict`].
#[derive(Debug, Clone, Default)]
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
            #[serde(serialize_with = "crate::util::serialize_path_lossy")]
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

    /// Components two usable files provide: (component, the file a starting host serves it
    /// from, the file it does not). A host registers files in the catalog's order (by
    /// path), so the first provider serves; a file added while it runs never displaces a
    /// registered one.
    pub fn provided_twice(&self) -> Vec<(&str, &Path, &Path)> {
        let mut first: std::collections::HashMap<&str, &Path> = std::collections::HashMap::new();
        let mut twice = Vec::new();
        for (plugin, info) in self.usable() {
            for component in &info.components {
                match first.entry(component.name.as_str()) {
                    std::collections::hash_map::Entry::Occupied(served) => {
                        twice.push((
                            component.name.as_str(),
                            *served.get(),
                            plugin.path.as_path(),
                        ));
                    }
                    std::collections::hash_map::Entry::Vacant(free) => {
                        free.insert(plugin.path.as_path());
                    }
                }
            }
        }
        twice
    }

    /// The file that provided component `name` when it was last scanned and cannot be
    /// used now, and why.
    pub fn unusable_provider_of(&self, name: &str) -> Option<(&Path, &LoadError)> {
        self.plugins
            .iter()
            .find_map(|plugin| match &plugin.outcome {
                Err(err) if plugin.provided.iter().any(|c| c == name) => {
                    Some((plugin.path.as_path(), err))
                }
                _ => None,
            })
    }
}

/// Finds plugin files in a directory and reads their manifests safely.
#[derive(Debug, Clone)]
pub struct Discovery {
    dir: PathBuf,
    /// Whether a `dir` on a `noexec` mount is loaded from copies in the cache directory.
    copy_from_noexec: bool,
    /// The sources, whose libraries are scanned beside `dir` (see [`crate::sources`]).
    sources: Option<crate::sources::Sources>,
    cache_dir: Option<PathBuf>,
    /// The scan mode, or why the default one (this executable) is unavailable.
    mode: Result<ScanMode, std::sync::Arc<std::io::Error>>,
    concurrency: usize,
    scan_timeout: Duration,
    trust: TrustPolicy,
}

impl Discovery {
    /// Discovery of `dir`, scanning in subprocesses of the current executable.
    ///
    /// The current executable must call [`crate::run_child_if_requested`] first in `main`
    /// (the `plugin-host` binary does); otherwise name another with [`Self::with_scan_mode`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        // Never a silent fall back to scanning in-process: without an executable, discovery
        // fails and says so.
        let mode = std::env::current_exe()
            .map(ScanMode::Subprocess)
            .map_err(std::sync::Arc::new);
        Self {
            dir: dir.into(),
            sources: None,
            copy_from_noexec: true,
            cache_dir: default_cache_dir(),
            mode,
            concurrency: 4,
            scan_timeout: Duration::from_secs(10),
            trust: TrustPolicy::default(),
        }
    }

    /// Where the registry cache lives; `None` disables it. Defaults to
    /// [`default_cache_dir`].
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Whether a plugins directory on a `noexec` mount is loaded from vetted copies in the
    /// cache directory (`true`) or refused. Defaults to true.
    pub fn with_copy_from_noexec(mut self, copy: bool) -> Self {
        self.copy_from_noexec = copy;
        self
    }

    /// Scans the libraries `sources` serve too, under the same trust policy, each named
    /// with its source. Defaults to none.
    pub fn with_sources(mut self, sources: crate::sources::Sources) -> Self {
        self.sources = Some(sources);
        self
    }

    /// How files are scanned. Defaults to a subprocess of the current executable.
    pub fn with_scan_mode(mut self, mode: ScanMode) -> Self {
        self.mode = Ok(mode);
        self
    }

    /// How many scanners run at once. Defaults to 4.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long one scan may take before the file is marked failed. Defaults to 10 s.
    pub fn with_scan_timeout(mut self, timeout: Duration) -> Self {
        self.scan_timeout = timeout;
        self
    }

    /// The trust policy files must pass before they are scanned. Defaults to
    /// [`TrustPolicy::permissions`].
    pub fn with_trust(mut self, trust: TrustPolicy) -> Self {
        self.trust = trust;
        self
    }

    /// The trust policy in force.
    pub fn trust(&self) -> &TrustPolicy {
        &self.trust
    }

    /// The directory this discovers.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
