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

/// The most files one scanner process scans. Several files a process spare most of the
/// process starts (a scan of a small library is mostly exec and dynamic linking); a
/// library that kills its scanner costs a rescan of the rest of its batch.
const SCAN_BATCH: usize = 32;

/// A listed file's identity and metadata, or why they could not be read.
pub(super) type Stat = std::io::Result<(FileIdentity, std::fs::Metadata)>;

/// The listed files, stat'ed by whichever thread takes them: a few at a time, in order.
struct StatQueue<'a> {
    paths: Vec<&'a Path>,
    next: std::sync::atomic::AtomicUsize,
}

impl<'a> StatQueue<'a> {
    /// Files a thread takes at once: enough that the queue costs nothing beside the
    /// `stat`s, few enough that two threads end together.
    const CHUNK: usize = 32;

    fn new(listed: &'a [(PathBuf, Vec<PathBuf>)]) -> Self {
        Self {
            paths: listed
                .iter()
                .flat_map(|(_, paths)| paths.iter().map(PathBuf::as_path))
                .collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Stats files until none is left; each with its place in the list.
    fn work(&self) -> Vec<(usize, Stat)> {
        let mut done = Vec::new();
        loop {
            let start = self
                .next
                .fetch_add(Self::CHUNK, std::sync::atomic::Ordering::Relaxed);
            let Some(chunk) = self.paths.get(start..) else {
                return done;
            };
            for (offset, path) in chunk.iter().take(Self::CHUNK).enumerate() {
                done.push((start + offset, crate::platform::stat_with_identity(path)));
            }
        }
    }
}

/// The largest file taken for a plugin library: what a 64-bit loader maps and a
/// release build of the largest libraries stays well within.
const MAX_PLUGIN_FILE: u64 = 4 << 30;

/// A file listed and vetted, waiting for a scan.
pub(super) struct Pending {
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
        if let Err(error) = &self.mode {
            return Err(DiscoveryError::NoScanner {
                error: std::sync::Arc::clone(error),
            });
        }
        let (dir, paths) = self.list_files(&self.dir)?;
        let mut refused_originals = Vec::new();
        let mut listed = match crate::platform::noexec_mount(&dir) {
            Some(mount) => {
                let (copies, copied, refused) = self.copy_from_noexec(&dir, &mount, &paths)?;
                refused_originals = refused;
                vec![(copies, copied)]
            }
            None => vec![(dir.clone(), paths)],
        };
        let sources_dir = self
            .sources
            .as_ref()
            .map(crate::sources::Sources::plugins_dir);
        // A sources directory not made yet holds nothing.
        if let Some(extra) = sources_dir.filter(|d| d.is_dir()) {
            listed.push(self.list_files(&extra)?);
        }
        let (mut cache, stats) = self.stat_beside_cache(&listed);
        let mut plugins = refused_originals;
        plugins.reserve(listed.iter().map(|(_, paths)| paths.len()).sum());
        let mut to_scan = Vec::new();
        for ((dir, paths), stats) in listed.iter().zip(stats) {
            let dir_refusal = self.trust.check_dir(dir).err().map(|r| r.to_string());
            for (path, stat) in paths.iter().zip(stats) {
                match self.vet(path, stat, dir_refusal.as_deref(), &mut cache) {
                    Ok(known) => plugins.push(known),
                    Err(pending) => to_scan.push(pending),
                }
            }
        }
        let scanned = to_scan.len();
        for mut plugin in self.scan_all(to_scan).await {
            if plugin.outcome.is_err() {
                plugin.provided = provided_before(&cache, &plugin.path);
            }
            remember(&mut cache, &plugin);
            plugins.push(plugin);
        }
        // By the paths' bytes: mostly in order already, and bytes compare faster than
        // path components.
        plugins.sort_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
        if let Some(sources) = &self.sources {
            attach_sources(&mut plugins, sources);
        }
        for (dir, paths) in &listed {
            cache.retain_present(dir, paths);
        }
        restore_taken(&mut cache, &plugins);
        cache.save();
        tracing::debug!(dir = %dir.display(), files = plugins.len(), scanned, "discovery done");
        Ok(Catalog {
            dir,
            plugins,
            scanned,
        })
    }

    /// Scans one file now, bypassing the cache (but not the trust policy).
    pub async fn scan_file(&self, path: &Path) -> DiscoveredPlugin {
        let path = crate::platform::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let dir_refusal = path
            .parent()
            .and_then(|dir| self.trust.check_dir(dir).err())
            .map(|refusal| refusal.to_string());
        let stat = crate::platform::stat_with_identity(&path);
        match self.vet(
            &path,
            stat,
            dir_refusal.as_deref(),
            &mut RegistryCache::open(None),
        ) {
            Ok(known) => known,
            Err(pending) => self.scan_pending(pending).await,
        }
    }

    /// The registry cache, and the stat of every listed file (in `listed`'s shape): a
    /// thread of its own reads the cache, then helps with the stats. On a warm start
    /// these are the two costs that grow with the number of plugins; neither waits
    /// for the other.
    fn stat_beside_cache(
        &self,
        listed: &[(PathBuf, Vec<PathBuf>)],
    ) -> (RegistryCache, Vec<Vec<Stat>>) {
        let cache_dir = self.cache_dir.as_deref();
        let queue = StatQueue::new(listed);
        let (cache, mut stats) = std::thread::scope(|scope| {
            let reader = std::thread::Builder::new()
                .name("registry-cache".into())
                .spawn_scoped(scope, || (RegistryCache::open(cache_dir), queue.work()));
            let mut stats = queue.work();
            let cache = match reader {
                Ok(reader) => {
                    let (cache, theirs) = reader
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    stats.extend(theirs);
                    cache
                }
                // No thread to be had: read it here.
                Err(_) => RegistryCache::open(cache_dir),
            };
            (cache, stats)
        });
        stats.sort_unstable_by_key(|(index, _)| *index);
        let mut stats = stats.into_iter().map(|(_, stat)| stat);
        let shaped = listed
            .iter()
            .map(|(_, paths)| stats.by_ref().take(paths.len()).collect())
            .collect();
        (cache, shaped)
    }

    /// The canonical `dir` and its library files, sorted.
    fn list_files(&self, dir: &Path) -> Result<(PathBuf, Vec<PathBuf>), DiscoveryError> {
        let read_dir_error = |source| DiscoveryError::ReadDir {
            dir: dir.to_owned(),
            error: source,
        };
        let dir = crate::platform::canonicalize(dir).map_err(read_dir_error)?;
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(read_dir_error)? {
            let path = entry.map_err(read_dir_error)?.path();
            if crate::platform::is_library_name(&path) {
                paths.push(path);
            }
        }
        // One directory's files: their paths order as their names' bytes do, and bytes
        // compare faster than path components.
        paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        Ok((dir, paths))
    }

    /// A file's verdict without a scan (unreadable, untrusted, or cached), or what a
    /// scan needs to know about it; `stat` is the file's, taken just before. A cached
    /// verdict is taken out of `cache`, not copied (see [`restore_taken`]).
    pub(super) fn vet(
        &self,
        path: &Path,
        stat: Stat,
        dir_refusal: Option<&str>,
        cache: &mut RegistryCache,
    ) -> Result<DiscoveredPlugin, Pending> {
        let known = |identity, outcome: ScanOutcome, cached, sha256| DiscoveredPlugin {
            provided: Vec::new(),
            source: None,
            path: path.to_owned(),
            outcome,
            cached,
            identity,
            sha256,
        };
        let (identity, metadata) = match stat {
            Ok(found) => found,
            Err(err) => {
                let outcome = Err(LoadError::Io {
                    path: path.to_owned(),
                    reason: unreadable(path, &err),
                });
                return Ok(known(FileIdentity::default(), outcome, false, None));
            }
        };
        // Never opened: a named pipe would block the open (and its hash, the host), and a
        // file of terabytes (sparse, say) would be hashed for minutes.
        let odd = if !metadata.is_file() {
            Some(crate::platform::odd_file_kind(&metadata))
        } else if metadata.len() > MAX_PLUGIN_FILE {
            Some(format!(
                "{}, larger than a plugin library may be ({})",
                crate::format_bytes(metadata.len()),
                crate::format_bytes(MAX_PLUGIN_FILE)
            ))
        } else {
            None
        };
        if let Some(detail) = odd {
            let outcome = Err(LoadError::NotALibrary {
                path: path.to_owned(),
                detail,
            });
            return Ok(known(identity, outcome, false, None));
        }
        let mut sha256 = cache
            .lookup(path, identity)
            .and_then(|entry| entry.sha256.clone());
        let verdict = match dir_refusal {
            Some(reason) => Err(reason.to_owned()),
            None => self
                .trust
                .check_file(path, &metadata, || {
                    if let Some(hash) = &sha256 {
                        return Ok(hash.clone());
                    }
                    let hash = sha256_of_identity(path, identity)?;
                    sha256 = Some(hash.clone());
                    Ok(hash)
                })
                .map_err(|refusal| refusal.to_string()),
        };
        if let Err(reason) = verdict {
            let outcome = Err(LoadError::Untrusted {
                path: path.to_owned(),
                reason,
            });
            let mut refused = known(identity, outcome, false, sha256);
            refused.provided = provided_before(cache, path);
            return Ok(refused);
        }
        match cache.take(path, identity) {
            Some(entry) => Ok(known(identity, entry.outcome, true, sha256)),
            None => Err(Pending {
                path: path.to_owned(),
                identity,
                sha256,
            }),
        }
    }

    /// Scans `files`: in batches of up to [`SCAN_BATCH`] per scanner process, a few
    /// processes at a time.
    async fn scan_all(&self, files: Vec<Pending>) -> Vec<DiscoveredPlugin> {
        let per_process = files.len().div_ceil(self.concurrency).clamp(1, SCAN_BATCH);
        let mut batches: Vec<Vec<Pending>> = Vec::new();
        let mut files = files.into_iter().peekable();
        while files.peek().is_some() {
            batches.push(files.by_ref().take(per_process).collect());
        }
        stream::iter(batches)
            .map(|batch| self.scan_batch(batch))
            .buffer_unordered(self.concurrency)
            .flat_map(stream::iter)
            .collect()
            .await
    }

    /// Scans one batch in one scanner process. When the process dies or hangs on a file
    /// that was not its first, that file is scanned again alone (a library before it in
    /// the same process may have been the cause); the files after it go to a fresh
    /// process.
    async fn scan_batch(&self, batch: Vec<Pending>) -> Vec<DiscoveredPlugin> {
        let mut done = Vec::with_capacity(batch.len());
        let mut rest = batch;
        while !rest.is_empty() {
            let paths: Vec<PathBuf> = rest.iter().map(|p| p.path.clone()).collect();
            let mut reports = self.scan_paths(&paths).await;
            reports.truncate(paths.len());
            let reported = reports.len().max(1);
            if reported > 1 && reports.last().is_some_and(ScanReport::ended_its_scanner) {
                let alone = self.scan_paths(&paths[reported - 1..reported]).await;
                if let (Some(last), Some(again)) = (reports.last_mut(), alone.into_iter().next()) {
                    *last = again;
                }
            }
            let remaining = rest.split_off(reported.min(rest.len()));
            for (pending, report) in rest.into_iter().zip(reports) {
                done.push(checked(pending, report));
            }
            rest = remaining;
        }
        done
    }

    /// Scans one vetted file.
    async fn scan_pending(&self, pending: Pending) -> DiscoveredPlugin {
        let report = self.scan_one(&pending.path).await;
        checked(pending, report)
    }

    /// Reports for `paths`, in order; fewer than asked when a scanner process ended early
    /// (the last one then says how).
    async fn scan_paths(&self, paths: &[PathBuf]) -> Vec<ScanReport> {
        match &self.mode {
            Ok(ScanMode::Subprocess(program)) => {
                scanner::scan_batch_in_subprocess(program, paths, self.scan_timeout).await
            }
            _ => {
                let mut reports = Vec::with_capacity(paths.len());
                for path in paths {
                    reports.push(self.scan_one(path).await);
                }
                reports
            }
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
                let paths = [path.to_path_buf()];
                let reports =
                    scanner::scan_batch_in_subprocess(program, &paths, self.scan_timeout).await;
                reports.into_iter().next().unwrap_or_else(|| {
                    ScanReport::failed(LoadError::Scanner {
                        path: path.to_owned(),
                        reason: "the scanner reported nothing".into(),
                    })
                })
            }
            Ok(ScanMode::InProcess) => {
                let owned = path.to_owned();
                tokio::task::spawn_blocking(move || scan_in_process(&owned).vetted(&owned))
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

/// A scan's verdict on a vetted file; a file that is not the one vetted is `changed`.
/// The components `path` provided when it was last scanned and usable, for the calls
/// that now miss them.
fn provided_before(cache: &RegistryCache, path: &Path) -> Vec<String> {
    match cache.lookup_path(path).map(|entry| &entry.outcome) {
        Some(Ok(info)) => info.components.iter().map(|c| c.name.clone()).collect(),
        _ => Vec::new(),
    }
}

fn checked(pending: Pending, report: ScanReport) -> DiscoveredPlugin {
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
        provided: Vec::new(),
        source: None,
        path: pending.path,
        outcome,
        cached: false,
        identity: pending.identity,
        sha256: pending.sha256,
    }
}

/// Names the source of each library a source serves.
fn attach_sources(plugins: &mut [DiscoveredPlugin], sources: &crate::sources::Sources) {
    let dir = crate::platform::canonicalize(&sources.plugins_dir())
        .unwrap_or_else(|_| sources.plugins_dir());
    let records = sources.records();
    for plugin in plugins
        .iter_mut()
        .filter(|p| p.path.parent() == Some(dir.as_path()))
    {
        let file = plugin.path.file_name().and_then(|n| n.to_str());
        plugin.source = records
            .iter()
            .find(|r| Some(r.file.as_str()) == file)
            .cloned();
    }
}

/// Puts back the cached verdicts [`Discovery::vet`] took out of `cache`, when it is to
/// be written: a warm start with nothing changed writes nothing, and so copies nothing.
fn restore_taken(cache: &mut RegistryCache, plugins: &[DiscoveredPlugin]) {
    if cache.is_dirty() {
        for plugin in plugins.iter().filter(|plugin| plugin.cached) {
            remember(cache, plugin);
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
    let file = crate::platform::open_for_load(path)?;
    if FileIdentity::of_file(&file)? != identity {
        return Err(std::io::Error::other(
            "the file changed while it was being hashed; it is looked at again",
        ));
    }
    crate::trust::sha256_hex(file)
}

/// Why `path` could not be read, in words: a symbolic link whose target is gone, or that
/// leads back to itself, is named as one (the system's own words name no link, only a
/// file not found or "too many levels of symbolic links"); other errors as
/// [`crate::loader::io_reason`] says them.
fn unreadable(path: &Path, err: &std::io::Error) -> String {
    match std::fs::read_link(path) {
        Ok(target) if err.kind() == std::io::ErrorKind::NotFound => format!(
            "it is a symbolic link to {}, which does not exist; fix or remove the link",
            target.display()
        ),
        Ok(target) if links_in_a_loop(path) => format!(
            "it is a symbolic link to {}, and the links from there lead back in a loop; \
             fix or remove the link",
            target.display()
        ),
        _ => crate::loader::io_reason(err),
    }
}

/// Whether following the symbolic links from `path` comes back to a link already passed
/// (or goes on for longer than any system follows).
fn links_in_a_loop(path: &Path) -> bool {
    let mut passed = std::collections::HashSet::new();
    let mut at: std::path::PathBuf = path.components().collect();
    for _ in 0..64 {
        let Ok(target) = std::fs::read_link(&at) else {
            return false;
        };
        if !passed.insert(at.clone()) {
            return true;
        }
        // A relative target is read from the link's own directory.
        at = at
            .parent()
            .map_or_else(|| target.clone(), |dir| dir.join(&target))
            .components()
            .collect();
    }
    true
}
