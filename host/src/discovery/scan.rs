//! Discovering a directory: list the library files, vet each against the trust policy,
//! take unchanged ones from the registry cache, and scan the rest in scanner processes.
//!
//! A file is known by its identity (device, inode, size, mtime, ctime). The scanner
//! reports the identity of the file it actually opened; if that is not the file the host
//! stat'ed, the file changed meanwhile and its verdict is `changed`, never cached. Only a
//! file with a usable verdict and an identity is ever handed to the loader, which checks
//! the identity again on the descriptor it loads from.

use std::path::{Path, PathBuf};

use futures::{stream, StreamExt};

use super::{
    cache::{Entry, RegistryCache},
    scanner::{self, scan_in_process, ScanReport},
    Catalog, DiscoveredPlugin, Discovery, DiscoveryError, ScanMode, ScanOutcome,
};
use crate::loader::{FileIdentity, LoadError};

/// A file listed and vetted, waiting for a scan.
struct Pending {
    path: PathBuf,
    identity: FileIdentity,
    sha256: Option<String>,
}

impl Discovery {
    /// Scans the directory: cached results for unchanged files, a scan for the others.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::ReadDir`] when the directory cannot be listed,
    /// [`DiscoveryError::NoScanner`] when there is no scanner to run. A bad or untrusted
    /// plugin file is never an error here: it is a [`DiscoveredPlugin`] whose outcome
    /// says why.
    pub async fn discover(&self) -> Result<Catalog, DiscoveryError> {
        if let Err(reason) = &self.mode {
            return Err(DiscoveryError::NoScanner {
                reason: reason.clone(),
            });
        }
        let (dir, paths) = self.list_files()?;
        let mut cache = RegistryCache::open(self.cache_dir.as_deref());
        let dir_refusal = self.trust.check_dir(&dir).err();
        let mut plugins = Vec::with_capacity(paths.len());
        let mut to_scan = Vec::new();
        for path in &paths {
            match self.vet(path, dir_refusal.as_deref(), &cache) {
                Ok(known) => plugins.push(known),
                Err(pending) => to_scan.push(pending),
            }
        }
        let scanned = to_scan.len();
        for plugin in self.scan_all(to_scan).await {
            remember(&mut cache, &plugin);
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

    /// Scans one file now, bypassing the cache (but not the trust policy).
    pub async fn scan_file(&self, path: &Path) -> DiscoveredPlugin {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let dir_refusal = path
            .parent()
            .and_then(|dir| self.trust.check_dir(dir).err());
        match self.vet(&path, dir_refusal.as_deref(), &RegistryCache::open(None)) {
            Ok(known) => known,
            Err(pending) => self.scan_pending(pending).await,
        }
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

    /// A file's verdict without a scan (unreadable, untrusted, or cached), or what a
    /// scan needs to know about it.
    fn vet(
        &self,
        path: &Path,
        dir_refusal: Option<&str>,
        cache: &RegistryCache,
    ) -> Result<DiscoveredPlugin, Pending> {
        let known = |identity, outcome: ScanOutcome, cached, sha256| DiscoveredPlugin {
            path: path.to_owned(),
            outcome,
            cached,
            identity,
            sha256,
        };
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) => {
                let outcome = Err(LoadError::Io {
                    path: path.to_owned(),
                    reason: err.to_string(),
                });
                return Ok(known(FileIdentity::default(), outcome, false, None));
            }
        };
        let identity = FileIdentity::of(&metadata);
        let entry = cache.lookup(path, identity);
        let mut sha256 = entry.and_then(|entry| entry.sha256.clone());
        let verdict = match dir_refusal {
            Some(reason) => Err(reason.to_owned()),
            None => self.trust.check_file(path, &metadata, || {
                if let Some(hash) = &sha256 {
                    return Ok(hash.clone());
                }
                let hash = sha256_of_identity(path, identity)?;
                sha256 = Some(hash.clone());
                Ok(hash)
            }),
        };
        if let Err(reason) = verdict {
            let outcome = Err(LoadError::Untrusted {
                path: path.to_owned(),
                reason,
            });
            return Ok(known(identity, outcome, false, sha256));
        }
        match entry {
            Some(entry) => Ok(known(identity, entry.outcome.clone(), true, sha256)),
            None => Err(Pending {
                path: path.to_owned(),
                identity,
                sha256,
            }),
        }
    }

    /// Scans `files`, a few at a time.
    async fn scan_all(&self, files: Vec<Pending>) -> Vec<DiscoveredPlugin> {
        stream::iter(files)
            .map(|pending| self.scan_pending(pending))
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Scans one vetted file; a file that is not the one vetted is `changed`.
    async fn scan_pending(&self, pending: Pending) -> DiscoveredPlugin {
        let report = self.scan_one(&pending.path).await;
        let outcome = match report.identity {
            Some(scanned) if scanned != pending.identity => Err(LoadError::Changed {
                path: pending.path.clone(),
            }),
            _ => report.outcome,
        };
        match &outcome {
            Err(LoadError::AbiMismatch { path, report, .. }) => {
                tracing::debug!(path = %path.display(), %report, "abi_stable's full layout report");
            }
            Err(err) => tracing::debug!(error = %err, "plugin file cannot be used"),
            Ok(_) => {}
        }
        DiscoveredPlugin {
            path: pending.path,
            outcome,
            cached: false,
            identity: pending.identity,
            sha256: pending.sha256,
        }
    }

    async fn scan_one(&self, path: &Path) -> ScanReport {
        match &self.mode {
            Err(reason) => ScanReport {
                identity: None,
                outcome: Err(LoadError::Scanner {
                    path: path.to_owned(),
                    reason: format!("no scanner to run: {reason}"),
                }),
            },
            Ok(ScanMode::Subprocess(program)) => {
                scanner::scan_in_subprocess(program, path, self.scan_timeout).await
            }
            Ok(ScanMode::InProcess) => {
                let owned = path.to_owned();
                tokio::task::spawn_blocking(move || scan_in_process(&owned))
                    .await
                    .unwrap_or_else(|err| ScanReport {
                        identity: None,
                        outcome: Err(LoadError::Scanner {
                            path: path.to_owned(),
                            reason: format!("in-process scan failed: {err}"),
                        }),
                    })
            }
        }
    }
}

/// Caches a fresh scan's verdict, unless it depends on the moment (a changed file, an
/// I/O error, an untrusted file, a scanner that could not run): those are looked at
/// again next time.
fn remember(cache: &mut RegistryCache, plugin: &DiscoveredPlugin) {
    let transient = matches!(
        &plugin.outcome,
        Err(LoadError::Changed { .. }
            | LoadError::Io { .. }
            | LoadError::Untrusted { .. }
            | LoadError::Scanner { .. })
    );
    if transient {
        return;
    }
    cache.insert(
        plugin.path.clone(),
        Entry {
            identity: plugin.identity,
            outcome: plugin.outcome.clone(),
            sha256: plugin.sha256.clone(),
        },
    );
}

/// The SHA-256 of the file at `path`, read through a descriptor that is checked to be
/// the file of `identity` (else the file changed since it was stat'ed).
fn sha256_of_identity(path: &Path, identity: FileIdentity) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    if FileIdentity::of(&file.metadata()?) != identity {
        return Err(std::io::Error::other(
            "the file changed while it was being hashed; it is looked at again",
        ));
    }
    crate::trust::sha256_hex(file)
}
