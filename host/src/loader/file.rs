//! A plugin file opened once: what was vetted is what is loaded.
//!
//! Checking a file by path and then opening it by path again leaves a window in which
//! the file can be swapped. So the file is opened once, its identity is read from that
//! descriptor, every check reads through it, and the dynamic loader is handed the same
//! open file (`/proc/self/fd/N` on Linux); on Windows the open file admits no writer, no
//! rename and no delete while it is loaded, so its path names what was vetted.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

pub use crate::platform::FileIdentity;

use super::LoadError;
use crate::platform;

impl FileIdentity {
    /// The identity of the open `file`.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    pub fn of_file(file: &File) -> std::io::Result<Self> {
        platform::identity_of(file)
    }

    /// The identity of the file at `path` now.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    pub fn of_path(path: &Path) -> std::io::Result<Self> {
        platform::identity_of_path(path)
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
    /// Opens `path` (read-only; on Windows shared with readers only) and reads its
    /// identity from the open file.
    pub(crate) fn open(path: &Path) -> Result<Self, LoadError> {
        let file = platform::open_for_load(path).map_err(|err| LoadError::Io {
            path: path.to_owned(),
            reason: super::error::io_reason(&err),
        })?;
        Self::from_file(file, path)
    }

    /// A file opened elsewhere (a worker process inherits the host's descriptor), known
    /// by `path`.
    pub(crate) fn from_file(file: File, path: &Path) -> Result<Self, LoadError> {
        let io = |err: std::io::Error| LoadError::Io {
            path: path.to_owned(),
            reason: err.to_string(),
        };
        let metadata = file.metadata().map_err(io)?;
        Ok(Self {
            identity: FileIdentity::of_file(&file).map_err(io)?,
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

    /// This file as a private copy that nothing can change while it is loaded (see
    /// `platform::private_copy`; of a library, the parts the loader maps): what the host
    /// maps in its own process, where a plugin file written over in place would change
    /// running code or take its pages away. The copy keeps this file's path and identity;
    /// the file must still have that identity once copied. Where no copy can be made the
    /// file itself is kept, with a warning.
    ///
    /// # Errors
    ///
    /// [`LoadError::Changed`] if the file changed while it was copied.
    pub(crate) fn into_private_copy(self) -> Result<Self, LoadError> {
        let ranges = super::segments::mapped_ranges(&self.file).unwrap_or_default();
        let copy = match platform::private_copy(&self.file, self.identity.size, &self.path, &ranges)
        {
            Ok(Some(copy)) => copy,
            Ok(None) => return Ok(self),
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(LoadError::Changed { path: self.path })
            }
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "no private copy of the plugin file could be made; it is loaded in place (replace it by renaming a new file over it, never by writing into it, while the host runs)");
                return Ok(self);
            }
        };
        let now = FileIdentity::of_file(&self.file).ok();
        if now != Some(self.identity) {
            return Err(LoadError::Changed { path: self.path });
        }
        Ok(Self { file: copy, ..self })
    }

    /// Runs `open` with the descriptor's own path (`/proc/self/fd/N` on Linux), for a
    /// process that maps no other library this way (a worker): no temporary link, so it
    /// works where nothing may be written (a sandbox).
    pub(crate) fn with_descriptor_path<T>(&self, open: impl FnOnce(&Path) -> T) -> T {
        platform::with_descriptor_path(&self.file, &self.path, open)
    }

    /// Runs `open` with a path the dynamic loader can open that leads to this very open
    /// file (see `platform::with_loader_path`).
    pub(crate) fn with_loader_path<T>(
        &self,
        open: impl FnOnce(&Path) -> T,
    ) -> Result<T, LoadError> {
        platform::with_loader_path(&self.file, &self.path, open).map_err(|err| LoadError::Io {
            path: self.path.clone(),
            reason: format!("cannot prepare the file for the dynamic loader: {err}"),
        })
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

    #[test]
    fn the_private_copy_holds_the_vetted_bytes_and_nothing_can_write_it() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("libcopied.so");
        std::fs::copy(system_library(), &path).expect("copy");
        let original = std::fs::read(&path).expect("read");
        let opened = OpenedFile::open(&path).expect("open");
        let ranges = super::super::segments::mapped_ranges(opened.file()).expect("an ELF library");
        let copy = opened.into_private_copy().expect("a private copy");
        assert_eq!(copy.identity(), FileIdentity::of_path(&path).expect("stat"));
        // Written over in place, as `cp` does: the copy keeps what was vetted.
        std::fs::write(&path, "not a library").expect("written over");
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut copy.file(), &mut bytes).expect("read the copy");
        assert_eq!(bytes.len(), original.len());
        for (start, end) in ranges {
            let range = start as usize..(end as usize).min(original.len());
            assert!(
                bytes[range.clone()] == original[range],
                "the copy holds what is mapped"
            );
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(copy.file())
            ))
            .and_then(|mut file| file.write_all(b"x"));
        assert!(written.is_err(), "the copy is sealed against writes");
        let loaded = copy
            .with_loader_path(abi_stable::library::RawLibrary::load_at)
            .expect("a loader path");
        assert!(loaded.is_ok(), "the copy loads: {:?}", loaded.err());

        // A file that changes between its check and its copy is refused.
        let opened = OpenedFile::open(&path).expect("open");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(b" grown"))
            .expect("appended");
        assert!(matches!(
            opened.into_private_copy(),
            Err(LoadError::Changed { .. })
        ));
    }
}
