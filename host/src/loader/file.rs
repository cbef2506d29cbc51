//! A plugin file opened once: what was vetted is what is loaded.
//!
//! Checking a file by path and then opening it by path again leaves a window in which
//! the file can be swapped. So the file is opened once, its identity is read from that
//! descriptor (`fstat`), every check reads through it, and the dynamic loader is handed
//! the same open file (`/proc/self/fd/N` on Linux), not the path.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::LoadError;

/// The identity of one version of a file, as git's index keeps it: device, inode, size,
/// modification and status-change times (nanoseconds). A file replaced by another, even
/// one of the same size and mtime (`cp -p`, `rsync -a`), gets another inode or ctime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Last status change (content, permissions, owner, links), nanoseconds since the
    /// epoch. Unlike mtime it cannot be set back by a copying tool.
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity in `metadata`.
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
            Self {
                dev: metadata.dev(),
                ino: metadata.ino(),
                size: metadata.size(),
                mtime_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
                ctime_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let mtime_ns = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Self {
                size: metadata.len(),
                mtime_ns,
                ..Self::default()
            }
        }
    }

    /// The identity of the file at `path` now.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    pub fn of_path(path: &Path) -> std::io::Result<Self> {
        std::fs::metadata(path).map(|m| Self::of(&m))
    }
}

/// A plugin file, open; checked and loaded through this one descriptor.
#[derive(Debug)]
pub(crate) struct OpenedFile {
    file: File,
    path: PathBuf,
    metadata: std::fs::Metadata,
    identity: FileIdentity,
}

impl OpenedFile {
    /// Opens `path` (read-only) and reads its identity from the descriptor.
    pub(crate) fn open(path: &Path) -> Result<Self, LoadError> {
        let io = |err: std::io::Error| LoadError::Io {
            path: path.to_owned(),
            reason: err.to_string(),
        };
        let file = File::open(path).map_err(io)?;
        let metadata = file.metadata().map_err(io)?;
        Ok(Self {
            identity: FileIdentity::of(&metadata),
            file,
            path: path.to_owned(),
            metadata,
        })
    }

    /// A file opened elsewhere (a worker process inherits the host's descriptor), known
    /// by `path`.
    pub(crate) fn from_file(file: File, path: &Path) -> Result<Self, LoadError> {
        let metadata = file.metadata().map_err(|err| LoadError::Io {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
        Ok(Self {
            identity: FileIdentity::of(&metadata),
            file,
            path: path.to_owned(),
            metadata,
        })
    }

    /// The path it was opened by (for messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor's metadata.
    pub(crate) fn metadata(&self) -> &std::fs::Metadata {
        &self.metadata
    }

    /// The identity of the open file.
    pub(crate) fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// The open file, for reading.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Refuses the file if it is not the one vetted earlier.
    pub(crate) fn expect_identity(&self, vetted: FileIdentity) -> Result<(), LoadError> {
        if self.identity == vetted {
            return Ok(());
        }
        Err(LoadError::Changed {
            path: self.path.clone(),
        })
    }

    /// Runs `open` with the descriptor's own path (`/proc/self/fd/N` on Linux), for a
    /// process that maps no other library this way (a worker): no temporary link, so it
    /// works where nothing may be written (a sandbox).
    pub(crate) fn with_descriptor_path<T>(&self, open: impl FnOnce(&Path) -> T) -> T {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            open(Path::new(&format!(
                "/proc/self/fd/{}",
                self.file.as_raw_fd()
            )))
        }
        #[cfg(not(target_os = "linux"))]
        {
            open(&self.path)
        }
    }

    /// Runs `open` with a path the dynamic loader can open that leads to this very open
    /// file.
    ///
    /// On Linux that is `/proc/self/fd/N`, reached through a symlink of a name used once:
    /// glibc's `dlopen` first matches a new name against the names of libraries already
    /// loaded, and descriptor numbers are reused, so `/proc/self/fd/N` itself could name
    /// an earlier library.
    pub(crate) fn with_loader_path<T>(
        &self,
        open: impl FnOnce(&Path) -> T,
    ) -> Result<T, LoadError> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let io = |err: std::io::Error| LoadError::Io {
                path: self.path.clone(),
                reason: format!("cannot prepare the file for the dynamic loader: {err}"),
            };
            let dir = tempfile::Builder::new()
                .prefix("plugin-host-load-")
                .tempdir()
                .map_err(io)?;
            let file_name = self.path.file_name().unwrap_or("plugin.so".as_ref());
            let link = dir.path().join(file_name);
            let target = format!("/proc/self/fd/{}", self.file.as_raw_fd());
            std::os::unix::fs::symlink(target, &link).map_err(io)?;
            Ok(open(&link))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(open(&self.path))
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A shared library of the system to stand in for a plugin: any ELF library will do.
    fn system_library() -> PathBuf {
        [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
            "/lib64/libm.so.6",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("a libm to load")
    }

    #[test]
    fn the_loader_maps_the_open_file_even_when_the_path_now_names_another() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("libvetted.so");
        std::fs::copy(system_library(), &path).expect("copy");
        let opened = OpenedFile::open(&path).expect("open");
        // Swapped after the check: the path now names a text file.
        let swap = dir.path().join("swap");
        std::fs::write(&swap, "not a library").expect("write");
        std::fs::rename(&swap, &path).expect("rename over");

        // libm's initialisers are the C library's own and run safely in a second copy.
        let loaded = opened
            .with_loader_path(abi_stable::library::RawLibrary::load_at)
            .expect("a loader path");
        assert!(
            loaded.is_ok(),
            "the vetted library loads, not what its path names now: {:?}",
            loaded.err()
        );
        // The text file at the path would not have.
        let by_path = abi_stable::library::RawLibrary::load_at(&path);
        assert!(by_path.is_err(), "loading by path maps the swapped-in file");
    }
}
