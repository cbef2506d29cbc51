//! The registry cache: what each plugin file provided the last time it was scanned.
//!
//! Keyed by canonical path and valid only for the file's exact identity (device, inode,
//! size, mtime and ctime, as git's index keeps them) and for the host build (plugin-api
//! version and executable) that wrote it; GStreamer's plugin registry works the same way.
//! A warm start with no file changed reads no library and spawns no scanner.

use std::{
    collections::HashMap,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    loader::{FileIdentity, LoadError},
    manifest::PluginInfo,
};

const FORMAT: u32 = 3;
const FILE_NAME: &str = "registry-v3.bin";
/// The files of earlier formats (JSON), removed when a cache is written.
const EARLIER: [&str; 2] = ["registry-v1.json", "registry-v2.json"];

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
    #[serde(with = "stored_outcome")]
    pub(crate) outcome: Result<PluginInfo, LoadError>,
    /// Its SHA-256, when a pinned trust policy needed it.
    pub(crate) sha256: Option<String>,
}

/// What a cache file starts with: read first, so that a cache of another format or
/// host build is passed over without reading its entries.
#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    /// [`host_build`] of the host that wrote it.
    host_build: String,
}

/// Looked up once per plugin file on every start: hashed, not ordered (an ordered map
/// compared paths component by component, a tenth of a warm start of 1,000 plugins),
/// and by the path's bytes (canonical paths; `Path` hashes component by component).
type Entries = HashMap<OsString, Entry>;

/// The entries on disk: a sequence of (path bytes, entry), read straight into the map
/// (through a list first, each entry was moved twice and the list grown by copying:
/// half the reading).
mod stored_entries {
    use serde::{
        de::{SeqAccess, Visitor},
        Deserializer, Serialize, Serializer,
    };

    use super::{Entries, Entry};

    /// Room made before reading more than this many entries is made as they come: the
    /// count is the file's word, and the file may be anything.
    const TRUSTED_COUNT: usize = 4096;

    struct PathBytes<'a>(&'a [u8]);

    impl Serialize for PathBytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    /// The entries to write: in path order, so that the same cache is the same file.
    pub(super) struct Sorted<'a>(pub(super) &'a Entries);

    impl Serialize for Sorted<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut sorted: Vec<(PathBytes<'_>, &Entry)> = self
                .0
                .iter()
                .map(|(path, entry)| (PathBytes(path.as_encoded_bytes()), entry))
                .collect();
            sorted.sort_unstable_by_key(|(path, _)| path.0);
            serializer.collect_seq(sorted)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Entries, D::Error> {
        struct Read;
        impl<'de> Visitor<'de> for Read {
            type Value = Entries;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of (path, entry)")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries, A::Error> {
                let room = seq.size_hint().unwrap_or(0).min(TRUSTED_COUNT);
                let mut entries = Entries::with_capacity(room);
                while let Some((path, entry)) = seq.next_element::<(&'de [u8], Entry)>()? {
                    entries.insert(crate::platform::bytes_to_os_string(path), entry);
                }
                Ok(entries)
            }
        }
        deserializer.deserialize_seq(Read)
    }
}

/// What follows the [`Header`] (written as [`stored_entries::Sorted`]).
#[derive(Deserialize)]
struct Body {
    #[serde(deserialize_with = "stored_entries::deserialize")]
    entries: Entries,
}

/// A verdict as the cache stores it. The cache is postcard, read on every start (JSON
/// took 2.4 ms for 1,000 plugins, a fifth of a warm start); a refusal goes as JSON
/// inside it, because [`LoadError`] is tagged by its `kind`, which only a
/// self-describing format reads. Refusals are few.
mod stored_outcome {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::{loader::LoadError, manifest::PluginInfo};

    #[derive(Serialize)]
    enum Written<'a> {
        Usable(&'a PluginInfo),
        Refused(String),
    }

    #[derive(Deserialize)]
    enum Read {
        Usable(PluginInfo),
        Refused(String),
    }

    pub(super) fn serialize<S: Serializer>(
        outcome: &Result<PluginInfo, LoadError>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match outcome {
            Ok(info) => Written::Usable(info),
            Err(error) => {
                Written::Refused(serde_json::to_string(error).map_err(serde::ser::Error::custom)?)
            }
        }
        .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Result<PluginInfo, LoadError>, D::Error> {
        Ok(match Read::deserialize(deserializer)? {
            Read::Usable(info) => Ok(info),
            Read::Refused(json) => {
                Err(serde_json::from_str(&json).map_err(serde::de::Error::custom)?)
            }
        })
    }
}

/// The cache as loaded from disk, plus what this run learned.
#[derive(Debug)]
pub(crate) struct RegistryCache {
    file: Option<PathBuf>,
    entries: Entries,
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
            .get(path.as_os_str())
            .filter(|entry| entry.identity == identity)
    }

    /// Takes the cached entry for `path` out, if it was scanned with exactly this
    /// identity.
    pub(crate) fn take(&mut self, path: &Path, identity: FileIdentity) -> Option<Entry> {
        self.lookup(path, identity)?;
        self.entries.remove(path.as_os_str())
    }

    /// Whether this run changed the cache, so that [`Self::save`] writes it.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The cached entry for `path` whatever its identity: what the file was when it was
    /// last scanned.
    pub(crate) fn lookup_path(&self, path: &Path) -> Option<&Entry> {
        self.entries.get(path.as_os_str())
    }

    /// Reads cache bytes: the entries, if they are a cache of this format written by this
    /// host build. Public to the crate for the fuzz targets.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Entries>, postcard::Error> {
        let (header, rest) = postcard::take_from_bytes::<Header>(bytes)?;
        if header.format != FORMAT || header.host_build != host_build() {
            return Ok(None);
        }
        let body: Body = postcard::from_bytes(rest)?;
        Ok(Some(body.entries))
    }

    /// The cache's bytes: the header, then the entries, each path as its bytes (any
    /// file name, UTF-8 or not).
    fn to_bytes(&self) -> Result<Vec<u8>, postcard::Error> {
        let header = Header {
            format: FORMAT,
            host_build: host_build(),
        };
        let mut bytes = postcard::to_stdvec(&header)?;
        bytes.extend(postcard::to_stdvec(&stored_entries::Sorted(&self.entries))?);
        Ok(bytes)
    }

    pub(crate) fn insert(&mut self, path: PathBuf, entry: Entry) {
        self.entries.insert(path.into_os_string(), entry);
        self.dirty = true;
    }

    /// Drops entries for files of `dir` that are gone.
    pub(crate) fn retain_present(&mut self, dir: &Path, present: &[PathBuf]) {
        let before = self.entries.len();
        let present: std::collections::HashSet<&std::ffi::OsStr> =
            present.iter().map(|path| path.as_os_str()).collect();
        self.entries.retain(|path, _| {
            Path::new(path).parent() != Some(dir) || present.contains(path.as_os_str())
        });
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
        let result = (|| -> std::io::Result<()> {
            let bytes = self.to_bytes().map_err(std::io::Error::other)?;
            if let Some(dir) = file.parent() {
                if dir.exists() && !dir.is_dir() {
                    return Err(std::io::Error::other(format!(
                        "{} is not a directory; point host.cache_dir (--cache-dir) at one",
                        dir.display()
                    )));
                }
                fs::create_dir_all(dir)?;
                for earlier in EARLIER {
                    let _ = fs::remove_file(dir.join(earlier));
                }
            }
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            fs::write(&tmp, bytes)?;
            fs::rename(&tmp, file)
        })();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ComponentInfo;

    fn entry(outcome: Result<PluginInfo, LoadError>) -> Entry {
        Entry {
            identity: FileIdentity {
                dev: 1,
                ino: 2,
                size: 3,
                mtime_ns: -4,
                ctime_ns: i128::MAX,
            },
            outcome,
            sha256: Some("ab".repeat(32)),
        }
    }

    fn usable() -> PluginInfo {
        PluginInfo {
            name: "quotes".into(),
            components: vec![ComponentInfo {
                name: "quotes".into(),
                init_timeout: Some(std::time::Duration::from_millis(1500)),
                ..ComponentInfo::default()
            }],
            ..PluginInfo::default()
        }
    }

    #[test]
    fn a_written_cache_reads_back_whole_refusals_included_and_the_json_one_goes() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("registry-v2.json"), "{}").expect("an earlier cache");
        let refused = LoadError::NotALibrary {
            path: "/p/b.so".into(),
            detail: "text".into(),
        };
        // Not UTF-8 where a file name may be any bytes (Unix).
        let odd = PathBuf::from(crate::platform::bytes_to_os_string(b"/p/\xff.so"));
        let mut cache = RegistryCache::open(Some(dir.path()));
        cache.insert("/p/a.so".into(), entry(Ok(usable())));
        cache.insert("/p/b.so".into(), entry(Err(refused.clone())));
        cache.insert(odd.clone(), entry(Ok(PluginInfo::default())));
        cache.save();
        assert!(!dir.path().join("registry-v2.json").exists());

        let read = RegistryCache::open(Some(dir.path()));
        assert_eq!(read.entries.len(), 3);
        let a = read.lookup_path(Path::new("/p/a.so")).expect("a.so");
        assert_eq!(a.outcome, Ok(usable()));
        assert_eq!(a.identity, entry(Ok(usable())).identity);
        assert_eq!(a.sha256, Some("ab".repeat(32)));
        let b = read.lookup_path(Path::new("/p/b.so")).expect("b.so");
        assert_eq!(b.outcome, Err(refused));
        assert!(read.lookup_path(&odd).is_some(), "a path that is not UTF-8");
    }

    #[test]
    fn a_cache_of_another_host_build_or_format_is_passed_over() {
        let mut cache = RegistryCache::open(None);
        cache.insert("/p/a.so".into(), entry(Ok(usable())));
        let bytes = cache.to_bytes().expect("bytes");
        assert!(RegistryCache::parse(&bytes).expect("ours").is_some());
        for header in [
            Header {
                format: FORMAT,
                host_build: "another build".into(),
            },
            Header {
                format: FORMAT + 1,
                host_build: host_build(),
            },
        ] {
            let mut other = postcard::to_stdvec(&header).expect("header");
            other.extend(b"entries of a layout this host may not know");
            assert!(RegistryCache::parse(&other).expect("a header").is_none());
        }
    }

    #[test]
    fn a_taken_entry_is_gone_and_only_for_its_identity() {
        let mut cache = RegistryCache::open(None);
        cache.insert("/p/a.so".into(), entry(Ok(usable())));
        let identity = entry(Ok(usable())).identity;
        let other = FileIdentity {
            size: 9,
            ..identity
        };
        assert!(cache.take(Path::new("/p/a.so"), other).is_none());
        assert!(cache.take(Path::new("/p/a.so"), identity).is_some());
        assert!(cache.lookup_path(Path::new("/p/a.so")).is_none());
    }
}
