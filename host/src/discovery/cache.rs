//! The registry cache: what each plugin file provided the last time it was scanned.
//!
//! Keyed by canonical path, size and modification time, and valid only for the host build
//! (plugin-api version and executable) that wrote it; GStreamer's plugin registry works
//! the same way. A warm start with no file changed reads no library and spawns no scanner.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use serde::{Deserialize, Serialize};

use crate::{loader::LoadError, manifest::PluginInfo};

const FORMAT: u32 = 1;
const FILE_NAME: &str = "registry-v1.json";

/// Which host wrote a cache: its plugin-api version and its own executable's size and
/// mtime. A verdict such as "compatible" holds only for the host that reached it, so any
/// rebuilt or upgraded host rescans (a plugin-api change without a version bump included).
fn host_build() -> String {
    let exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| FileStamp::of(&m))
        .map_or_else(
            |_| "unknown".to_owned(),
            |s| format!("{}-{}", s.size, s.mtime_ns),
        );
    format!("{}/{exe}", plugin_api::API_VERSION)
}

/// The identity of one version of a file: if any of it changes, the file is rescanned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileStamp {
    pub(crate) size: u64,
    pub(crate) mtime_ns: u128,
}

impl FileStamp {
    pub(crate) fn of(metadata: &fs::Metadata) -> Self {
        let mtime_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Self {
            size: metadata.len(),
            mtime_ns,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) stamp: FileStamp,
    pub(crate) outcome: Result<PluginInfo, LoadError>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    /// [`host_build`] of the host that wrote it.
    host_build: String,
    entries: BTreeMap<PathBuf, Entry>,
}

/// The cache as loaded from disk, plus what this run learned.
#[derive(Debug)]
pub(crate) struct RegistryCache {
    file: Option<PathBuf>,
    entries: BTreeMap<PathBuf, Entry>,
    dirty: bool,
}

impl RegistryCache {
    /// Reads the cache in `dir`; a missing, unreadable or stale cache is an empty one.
    pub(crate) fn open(dir: Option<&Path>) -> Self {
        let file = dir.map(|dir| dir.join(FILE_NAME));
        let entries = file
            .as_deref()
            .and_then(|file| match fs::read(file) {
                Ok(bytes) => Some(bytes),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => {
                    tracing::warn!(file = %file.display(), error = %err, "cannot read the registry cache; rescanning every plugin");
                    None
                }
            })
            .and_then(|bytes| match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(cache) => Some(cache),
                Err(err) => {
                    tracing::warn!(error = %err, "registry cache is unreadable; rescanning every plugin");
                    None
                }
            })
            .filter(|cache| cache.format == FORMAT && cache.host_build == host_build())
            .map(|cache| cache.entries)
            .unwrap_or_default();
        Self {
            file,
            entries,
            dirty: false,
        }
    }

    /// The cached outcome for `path`, if it was scanned with exactly this stamp.
    pub(crate) fn lookup(&self, path: &Path, stamp: FileStamp) -> Option<&Entry> {
        self.entries.get(path).filter(|entry| entry.stamp == stamp)
    }

    pub(crate) fn insert(&mut self, path: PathBuf, entry: Entry) {
        self.entries.insert(path, entry);
        self.dirty = true;
    }

    /// Drops entries for files under `dir` that are gone.
    pub(crate) fn retain_present(&mut self, dir: &Path, present: &[PathBuf]) {
        let before = self.entries.len();
        self.entries
            .retain(|path, _| !path.starts_with(dir) || present.contains(path));
        self.dirty |= self.entries.len() != before;
    }

    /// Writes the cache back if anything changed, atomically (write + rename).
    pub(crate) fn save(&mut self) {
        let Some(file) = self.file.as_deref() else {
            return;
        };
        if !self.dirty {
            return;
        }
        let cache = CacheFile {
            format: FORMAT,
            host_build: host_build(),
            entries: std::mem::take(&mut self.entries),
        };
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = file.parent() {
                fs::create_dir_all(dir)?;
            }
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            fs::write(&tmp, serde_json::to_vec_pretty(&cache)?)?;
            fs::rename(&tmp, file)
        })();
        self.entries = cache.entries;
        match result {
            Ok(()) => self.dirty = false,
            Err(err) => tracing::warn!(
                file = %file.display(),
                error = %err,
                "cannot write the registry cache; the next start rescans every plugin"
            ),
        }
    }
}
