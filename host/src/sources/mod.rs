//! Sources: plugins delivered as OCI artifacts (`[[sources]]`), pulled into the artifact
//! cache and served from its own plugins directory, which discovery scans beside the
//! operator's.
//!
//! ```text
//! CACHE/oci/blobs/sha256/HEX     each library, content-addressed, renamed in once verified
//! CACHE/oci/plugins/NAME.so      the library source NAME serves (a hard link to its blob)
//! CACHE/oci/sources/NAME.json    what was pulled: reference, digests, platform, when, signer
//! ```
//!
//! With `pull = "if-not-present"` a source whose record matches its config is served from
//! the cache without a single registry request; a pull that fails keeps the previous one
//! serving and says so.

mod error;
mod record;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use plugin_host_oci::{Credentials, Origin, Platform, Registry, TrustedKey, Want};

pub use self::{
    error::{PullError, SourceError},
    record::SourceRecord,
};
use crate::config::{Config, PullPolicy, SourceConfig};

/// How many sources a start pulls at once.
const PULLS_AT_ONCE: usize = 8;

/// The configured sources and where their artifacts are kept.
#[derive(Debug, Clone)]
pub struct Sources {
    root: PathBuf,
    sources: Vec<SourceConfig>,
    keys: Vec<TrustedKey>,
    require_signature: bool,
    /// Pulls so far by (source, result): `pulled`, `unchanged`, `cached`, `failed`.
    pulls: Arc<parking_lot::Mutex<BTreeMap<(String, &'static str), u64>>>,
}

/// What a sync did: the sources served, and each problem in one line.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Each source served, with what was pulled.
    pub served: Vec<SourceRecord>,
    /// Each source that could not be pulled, and whether an earlier pull serves instead.
    pub problems: Vec<SourceError>,
}

impl Sources {
    /// The sources `config` names, kept under its cache directory; `None` when it names
    /// none. Keys that do not parse were refused by the config's validation.
    pub fn of(config: &Config) -> Option<Self> {
        if config.sources.is_empty() {
            return None;
        }
        let cache = config
            .cache_dir()
            .unwrap_or_else(|| PathBuf::from(".plugin-host-cache"));
        Some(Self {
            root: cache.join("oci"),
            sources: config.sources.clone(),
            keys: config
                .trust
                .keys
                .iter()
                .filter_map(|key| TrustedKey::new(&key.name, &key.public).ok())
                .collect(),
            require_signature: config.trust.require_signature,
            pulls: Arc::default(),
        })
    }

    /// The directory of the libraries the sources serve, scanned by discovery.
    pub fn plugins_dir(&self) -> PathBuf {
        self.root.join("plugins")
    }

    fn records_dir(&self) -> PathBuf {
        self.root.join("sources")
    }

    /// What each source serves now, as recorded by the last pulls.
    pub fn records(&self) -> Vec<SourceRecord> {
        self.sources
            .iter()
            .filter_map(|source| SourceRecord::read(&self.records_dir(), &source.display_name()))
            .filter(|record| self.plugins_dir().join(&record.file).is_file())
            .collect()
    }

    /// The sources nothing has been pulled from yet (name, reference): `run` and `check`
    /// pull them; `list` and `inspect` read only what was pulled.
    pub fn unpulled(&self) -> Vec<(String, String)> {
        let records = self.records();
        self.sources
            .iter()
            .map(|source| (source.display_name(), source.reference().to_owned()))
            .filter(|(name, _)| !records.iter().any(|record| &record.name == name))
            .collect()
    }

    /// The SHA-256 (hex) and file of each library pinned by digest or signed by a trusted
    /// key: what `trust = "pinned"` accepts without a `trust add`. The records vouch for
    /// trust only while their directory is writable by its owner alone (as the plugins
    /// directory must be): whoever could write them could otherwise trust any build.
    pub fn verified(&self) -> Vec<(String, String)> {
        if let Err(refusal) =
            crate::trust::TrustPolicy::permissions().check_dir(&self.records_dir())
        {
            if self.records_dir().exists() {
                tracing::warn!(%refusal, "the sources' records vouch for no build");
            }
            return Vec::new();
        }
        self.records()
            .into_iter()
            .filter(|record| record.pinned || record.signed_by.is_some())
            .map(|record| (record.library_sha256(), record.file))
            .collect()
    }

    /// Pulls what needs pulling, serves each source's library, and removes what no source
    /// names any more. Runs on the blocking pool (it reads, hashes and copies files), never
    /// on an async worker.
    pub async fn sync(&self) -> SyncReport {
        let this = self.clone();
        off_the_runtime(move || async move { this.sync_here().await })
            .await
            .unwrap_or_else(|stopped| SyncReport {
                served: Vec::new(),
                problems: vec![SourceError::Stopped(stopped)],
            })
    }

    async fn sync_here(&self) -> SyncReport {
        use futures::StreamExt as _;
        let mut report = SyncReport::default();
        // Several at once, so that one slow or silent registry delays a start by its own
        // timeout, not by that times the sources behind it; in the config's order.
        let mut synced = futures::stream::iter(&self.sources)
            .map(|source| self.sync_one(source, false))
            .buffered(PULLS_AT_ONCE);
        while let Some(outcome) = synced.next().await {
            match outcome {
                Ok(record) => report.served.push(record),
                Err(problem) => report.problems.push(problem),
            }
        }
        drop(synced);
        self.remove_unnamed();
        self.remove_unserved_blobs();
        report
    }

    /// Removes the libraries in the store that no source serves any more (once at start,
    /// before any follow task pulls beside it). A library still mapped stays on disk
    /// through its link until the process that mapped it ends.
    fn remove_unserved_blobs(&self) {
        let store = self.root.join("blobs").join("sha256");
        let Ok(entries) = std::fs::read_dir(&store) else {
            return;
        };
        // What each source serves now, a failed pull's previous one included.
        let kept: Vec<String> = self
            .records()
            .iter()
            .map(SourceRecord::library_sha256)
            .collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && !kept.contains(&name) {
                if let Err(error) = std::fs::remove_file(entry.path()) {
                    tracing::debug!(blob = %name, %error, "cannot remove a library no source serves");
                }
            }
        }
    }

    /// The sources `run` follows, and how often.
    pub fn followed(&self) -> Vec<(String, Duration)> {
        self.sources
            .iter()
            .filter_map(|source| Some((source.display_name(), source.follow?)))
            .collect()
    }

    /// Asks whether source `name`'s tag moved; pulls and serves it if it did. Returns
    /// whether what it serves changed.
    ///
    /// # Errors
    ///
    /// The pull failed: the previous pull keeps serving, and the message says so.
    pub async fn refresh(&self, name: &str) -> Result<bool, SourceError> {
        let (this, name) = (self.clone(), name.to_owned());
        off_the_runtime(move || async move { this.refresh_here(&name).await }).await?
    }

    async fn refresh_here(&self, name: &str) -> Result<bool, SourceError> {
        let Some(source) = self.sources.iter().find(|s| s.display_name() == name) else {
            return Ok(false);
        };
        let before = SourceRecord::read(&self.records_dir(), name).map(|r| r.digest);
        let after = self.sync_one(source, true).await?.digest;
        Ok(before.as_ref() != Some(&after))
    }

    /// Pulls so far: (source, result, count), result one of `pulled`, `unchanged`,
    /// `cached` (served from the cache without asking) and `failed`.
    pub fn pull_counts(&self) -> Vec<(String, &'static str, u64)> {
        self.pulls
            .lock()
            .iter()
            .map(|((source, result), count)| (source.clone(), *result, *count))
            .collect()
    }

    fn count(&self, source: &str, result: &'static str) {
        *self
            .pulls
            .lock()
            .entry((source.to_owned(), result))
            .or_default() += 1;
    }

    async fn sync_one(
        &self,
        source: &SourceConfig,
        force: bool,
    ) -> Result<SourceRecord, SourceError> {
        let name = source.display_name();
        let platform = wanted_platform(source);
        let previous = SourceRecord::read(&self.records_dir(), &name)
            .filter(|record| self.plugins_dir().join(&record.file).is_file());
        if let Some(record) = &previous {
            if !force
                && source.pull == PullPolicy::IfNotPresent
                && record.matches(source, &platform)
            {
                tracing::debug!(source = %name, digest = %record.digest, "served from the artifact cache");
                self.count(&name, "cached");
                return Ok(record.clone());
            }
        }
        match self.pull(source, &name, &platform, previous.as_ref()).await {
            Ok(record) => Ok(record),
            Err(error) => Err(match previous {
                Some(record) => SourceError::StillServing {
                    name,
                    error,
                    pulled: record.pulled_at_text(),
                    digest: record.digest,
                    reference: record.reference,
                },
                None => SourceError::NothingServed { name, error },
            }),
        }
    }

    /// Pulls one source and serves it.
    async fn pull(
        &self,
        source: &SourceConfig,
        name: &str,
        platform: &Platform,
        previous: Option<&SourceRecord>,
    ) -> Result<SourceRecord, PullError> {
        let origin = origin(source)?;
        let want = Want {
            platform,
            keys: &self.keys,
            require_signature: self.require_signature,
            store: &self.root,
        };
        let fetched = match plugin_host_oci::fetch(&origin, want).await {
            Ok(fetched) => fetched,
            Err(error) => {
                self.count(name, "failed");
                return Err(error.into());
            }
        };
        let unchanged =
            previous.filter(|r| r.matches(source, platform) && r.digest == fetched.digest);
        if let Some(record) = unchanged {
            self.count(name, "unchanged");
            return Ok(record.clone());
        }
        self.count(name, "pulled");
        let file = format!("{name}.{}", std::env::consts::DLL_EXTENSION);
        serve(&fetched.library, &self.plugins_dir(), &file).map_err(|error| PullError::Place {
            file: file.clone(),
            dir: self.plugins_dir(),
            error,
        })?;
        let record = SourceRecord::new(source, &fetched, file);
        record
            .write(&self.records_dir())
            .map_err(|error| PullError::Record {
                dir: self.records_dir(),
                error,
            })?;
        tracing::info!(source = %name, digest = %record.digest, platform = %record.platform, signed_by = ?record.signed_by, "pulled");
        Ok(record)
    }

    /// Removes the libraries and records of sources the config no longer names.
    fn remove_unnamed(&self) {
        let named: Vec<String> = self
            .sources
            .iter()
            .map(SourceConfig::display_name)
            .collect();
        let stale = |path: &Path| {
            path.file_stem()
                .and_then(|stem| stem.to_str())
                .is_some_and(|stem| !named.iter().any(|n| n == stem))
        };
        for dir in [self.plugins_dir(), self.records_dir()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()).filter(|p| stale(p)) {
                if let Err(error) = std::fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), %error, "cannot remove what no source names any more");
                }
            }
        }
    }
}

/// Runs the future `make` returns on a thread of the blocking pool, driven by the current
/// runtime's handle: its file work (reading, hashing, copying a library) blocks that
/// thread, not an async worker.
async fn off_the_runtime<F, T>(
    make: impl FnOnce() -> F + Send + 'static,
) -> Result<T, tokio::task::JoinError>
where
    F: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(make())).await
}

fn wanted_platform(source: &SourceConfig) -> Platform {
    source.platform.parse().unwrap_or_else(|_| Platform::host())
}

/// Where `source` is fetched from.
fn origin(source: &SourceConfig) -> Result<Origin, PullError> {
    if source.oci.is_empty() {
        let (dir, tag) = source.layout();
        return Ok(Origin::Layout { dir, tag });
    }
    let reference: plugin_host_oci::Reference =
        source.oci.parse().map_err(|error| PullError::Reference {
            oci: source.oci.clone(),
            error,
        })?;
    let registry = Registry::with_timeout(
        &reference,
        source.insecure,
        &Credentials::from_docker_config(),
        source.timeout.unwrap_or(plugin_host_oci::DEFAULT_TIMEOUT),
    );
    Ok(Origin::Registry {
        registry,
        reference,
    })
}

/// Makes `dir/file` the library `blob`, all at once: a hard link (a copy where links are
/// not possible) under a temporary name, renamed over the old one.
fn serve(blob: &Path, dir: &Path, file: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let target = dir.join(file);
    let temporary = dir.join(format!(".{file}.{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    if std::fs::hard_link(blob, &temporary).is_err() {
        std::fs::copy(blob, &temporary)?;
    }
    std::fs::rename(&temporary, &target)
}
