//! A plugins directory on a `noexec` mount (a read-only Kubernetes volume, a hardened
//! `/srv`): no library on it can be mapped, so each file that passes the trust policy
//! where it is is copied into the cache directory and discovered, vetted and loaded from
//! there. A copy is made again only when its original's size or mtime changes, so a warm
//! start copies nothing and keeps the registry cache's verdicts.

use std::path::{Path, PathBuf};

use super::{cache::RegistryCache, DiscoveredPlugin, Discovery, DiscoveryError};
use crate::loader::LoadError;

impl Discovery {
    /// Copies the library files `paths` of `dir` (mounted noexec at `mount`) that the
    /// trust policy accepts where they are; returns the copies' directory, the copies,
    /// and the verdicts of the originals refused.
    pub(super) fn copy_from_noexec(
        &self,
        dir: &Path,
        mount: &Path,
        paths: &[PathBuf],
    ) -> Result<(PathBuf, Vec<PathBuf>, Vec<DiscoveredPlugin>), DiscoveryError> {
        let refuse = |what| DiscoveryError::Noexec {
            dir: dir.to_owned(),
            mount: mount.to_owned(),
            what,
        };
        if !self.copy_from_noexec {
            return Err(refuse("mount it without noexec, or set [host] copy_from_noexec = true to load verified copies from the cache directory"));
        }
        let Some(cache) = &self.cache_dir else {
            return Err(refuse("its files are loaded from copies in the cache directory, and none is set: set [host] cache_dir"));
        };
        if let Some(cache_mount) = crate::platform::noexec_mount(cache) {
            tracing::warn!(cache = %cache.display(), mount = %cache_mount.display(), "the cache directory is on a noexec mount too");
            return Err(refuse("its files are loaded from copies in the cache directory, which is on a noexec mount too: set [host] cache_dir to a directory code may run from"));
        }
        let copies = cache.join("noexec").join(dir_key(dir));
        std::fs::create_dir_all(&copies).map_err(|error| DiscoveryError::ReadDir {
            dir: copies.clone(),
            error,
        })?;
        let dir_refusal = self.trust.check_dir(dir).err().map(|r| r.to_string());
        let (mut copied, mut refused) = (Vec::new(), Vec::new());
        for path in paths {
            // With no registry cache, vetting answers without a scan only for a refused
            // or unreadable file.
            let stat = crate::platform::stat_with_identity(path);
            let identity = stat.as_ref().map(|(id, _)| *id).unwrap_or_default();
            let mut no_cache = RegistryCache::open(None);
            if let Ok(verdict) = self.vet(path, stat, dir_refusal.as_deref(), &mut no_cache) {
                refused.push(verdict);
                continue;
            }
            let Some(name) = path.file_name() else {
                continue;
            };
            let copy = copies.join(name);
            match copy_if_changed(path, &copy) {
                Ok(()) => copied.push(copy),
                Err(error) => {
                    // Listed as unusable with why, not left out as if it were not there.
                    let reason = format!(
                        "it is on a noexec mount, and copying it into {} failed: {error}; free space there, or set [host] cache_dir to another directory",
                        copies.display()
                    );
                    refused.push(DiscoveredPlugin {
                        path: path.clone(),
                        outcome: Err(LoadError::Scanner {
                            path: path.clone(),
                            reason,
                        }),
                        cached: false,
                        identity,
                        sha256: None,
                        provided: Vec::new(),
                        source: None,
                    });
                }
            }
        }
        remove_stale(&copies, &copied);
        Ok((copies, copied, refused))
    }
}

/// A directory name for the copies of `dir`'s files: its path's SHA-256, shortened.
fn dir_key(dir: &Path) -> String {
    let hash = crate::trust::sha256_hex(dir.as_os_str().as_encoded_bytes()).unwrap_or_default();
    hash.chars().take(16).collect()
}

/// Copies `original` to `copy` (through a temporary file and a rename) unless the copy
/// has its size and mtime already.
fn copy_if_changed(original: &Path, copy: &Path) -> std::io::Result<()> {
    let source = std::fs::metadata(original)?;
    let modified = source.modified()?;
    if let Ok(existing) = std::fs::metadata(copy) {
        if existing.len() == source.len() && existing.modified().ok() == Some(modified) {
            return Ok(());
        }
    }
    let dir = copy.parent().unwrap_or(Path::new("."));
    let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
    std::io::copy(&mut std::fs::File::open(original)?, &mut temporary)?;
    temporary.as_file().set_modified(modified)?;
    temporary.as_file().sync_all()?;
    temporary.persist(copy).map_err(|e| e.error)?;
    Ok(())
}

/// Removes the copies whose originals are gone.
fn remove_stale(copies: &Path, kept: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(copies) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if !kept.contains(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}
