//! The registry cache: what each plugin file provided the last time it was scanned.
//!
//! Keyed by canonical path and valid only for the file's exact identity (device, inode,
//! size, mtime and ctime, as git's index keeps them) and for the host build (plugin-api
//! version and executable) that wrote it; GStreamer's plugin registry works the same way.
//! A warm start with no file changed reads no library and spawns no scanner.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    loader::{FileIdentity, LoadError},
    manifest::PluginInfo,
};

const FORMAT: u32 = 2;
const FILE_NAME: &str = "registry-v2.json";

/// Which host wrote a cache: its plugin-api version and its own executable's size and
/// mtime. A verdict such as "compatible" holds only for the host that reached it, so any
/// rebuilt or upgraded host rescans (a plugin-api change without a version bump included).
fn host_build() -> String {
    let exe = std::env::current_exe()
        .and_then(|exe| FileIdentity::of_path(&exe))
        .map_or_else(
            |_| "unknown".to_owned(),
            |s| format!("{}-{}-{}", s.size, s.mtime_ns, s.ino),
        );
    format!("{}/{exe}", plugin_api::API_VERSION)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The identity of the file the scanner opened.
    pub(crate) identity: FileIdentity,
    pub(crate) outcome: Result<PluginInfo, LoadError>,
    /// Its SHA-256, when a pinned trust policy needed it.
    #[serde(default)]
    pub(crate) sha256: Option<String>,
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
            .and_then(|bytes| match Self::parse(&bytes) {
                Ok(entries) => entries,
                Err(err) => {
                    tracing::warn!(error = %err, "registry cache is unreadable; rescanning every plugin");
                    None
                }
            })
            .unwrap_or_default();
        Self {
            file,
            entries,
            dirty: false,
        }
    }

    /// The cached entry for `path`, if it was scanned with exactly this identity.
    pub(crate) fn lookup(&self, path: &Path, identity: FileIdentity) -> Option<&Entry> {
        self.entries
            .get(path)
            .filter(|entry| entry.identity == identity)
    }

    /// The cached entry for `path` whatever its identity: what the file was when it was
    /// last scanned.
    pub(crate) fn lookup_path(&self, path: &Path) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Reads cache bytes: the entries, if they are a cache of this format written by this
    /// host build. Public to the crate for the fuzz targets.
    pub(crate) fn parse(
        bytes: &[u8],
    ) -> Result<Option<BTreeMap<PathBuf, Entry>>, serde_json::Error> {
        let cache: CacheFile = serde_json::from_slice(bytes)?;
        Ok((cache.format == FORMAT && cache.host_build == host_build()).then_some(cache.entries))
    }

    pub(crate) fn insert(&mut self, path: PathBuf, entry: Entry) {
        self.entries.insert(path, entry);
        self.dirty = true;
    }

    /// Drops entries for files under `dir` that are gone.
    pub(crate) fn retain_present(&mut self, dir: &Path, present: &[PathBuf]) {
        let before = self.entries.len();
        let present: std::collections::HashSet<&Path> =
            present.iter().map(PathBuf::as_path).collect();
        self.entries
            .retain(|path, _| !path.starts_with(dir) || present.contains(path.as_path()));
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
