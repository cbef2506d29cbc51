//! Plugin files on Unix: identity from `stat`, opened read-only (a file cannot be
//! locked against writers here; the identity says whether it changed), and handed to the
//! dynamic loader as the open descriptor itself (`/proc/self/fd/N` on Linux).

use std::{
    fs::File,
    io,
    os::unix::fs::{FileExt, MetadataExt},
    path::Path,
};

use crate::platform::FileIdentity;

fn identity_from(metadata: &std::fs::Metadata) -> FileIdentity {
    let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    FileIdentity {
        dev: metadata.dev(),
        ino: metadata.ino(),
        size: metadata.size(),
        mtime_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
        ctime_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
    }
}

/// The identity of the open `file`.
pub(crate) fn identity_of(file: &File) -> io::Result<FileIdentity> {
    file.metadata().map(|m| identity_from(&m))
}

/// The identity of the file at `path` now.
pub(crate) fn identity_of_path(path: &Path) -> io::Result<FileIdentity> {
    std::fs::metadata(path).map(|m| identity_from(&m))
}

/// A file that is not a regular one, in words: `a directory, not a regular file`.
pub(crate) fn odd_file_kind(metadata: &std::fs::Metadata) -> String {
    let kind = odd_kind(metadata);
    if kind.is_empty() {
        "not a regular file".into()
    } else {
        format!("{kind}, not a regular file")
    }
}

fn odd_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        ""
    }
}

/// The identity and metadata of the file at `path` now, from one `stat`.
pub(crate) fn stat_with_identity(path: &Path) -> io::Result<(FileIdentity, std::fs::Metadata)> {
    std::fs::metadata(path).map(|m| (identity_from(&m), m))
}

/// Opens a plugin file to vet and load it, read-only, without blocking: a named pipe
/// dropped in its place opens at once (and is then refused as not a regular file) instead
/// of waiting for a writer.
pub(crate) fn open_for_load(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Reads into `buf` from `offset`, without moving the file's offset.
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.read_at(buf, offset)
}

/// Runs `open` with the descriptor's own path (`/proc/self/fd/N` on Linux), for a process
/// that maps no other library this way (a worker): no temporary link, so it works where
/// nothing may be written (a sandbox).
pub(crate) fn with_descriptor_path<T>(
    file: &File,
    path: &Path,
    open: impl FnOnce(&Path) -> T,
) -> T {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let _ = path;
        open(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        open(path)
    }
}

/// Runs `open` with a path the dynamic loader can open that leads to the open `file`.
///
/// On Linux that is `/proc/self/fd/N`, reached through a symlink of a name used once:
/// glibc's `dlopen` first matches a new name against the names of libraries already
/// loaded, and descriptor numbers are reused, so `/proc/self/fd/N` itself could name an
/// earlier library.
pub(crate) fn with_loader_path<T>(
    file: &File,
    path: &Path,
    open: impl FnOnce(&Path) -> T,
) -> io::Result<T> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let dir = tempfile::Builder::new()
            .prefix("plugin-host-load-")
            .tempdir()?;
        let file_name = path.file_name().unwrap_or("plugin.so".as_ref());
        let link = dir.path().join(file_name);
        std::os::unix::fs::symlink(format!("/proc/self/fd/{}", file.as_raw_fd()), &link)?;
        Ok(open(&link))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Ok(open(path))
    }
}

/// The absolute path with every link resolved.
pub(crate) fn canonicalize(path: &Path) -> io::Result<std::path::PathBuf> {
    std::fs::canonicalize(path)
}

/// Bytes as an OS string, as they are: any bytes are one on Unix.
pub(crate) fn bytes_to_os_string(bytes: &[u8]) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(bytes.to_vec())
}

/// The mount point of `path`'s file system when it is mounted `noexec` (nothing on it can
/// be mapped executable, so no library on it loads); `None` when code may run from it or
/// it cannot be told.
#[allow(unsafe_code)]
pub(crate) fn noexec_mount(path: &Path) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a valid C string, and a buffer statvfs fills on success.
    if unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let flags = unsafe { stats.assume_init() }.f_flag;
    if flags & libc::ST_NOEXEC == 0 {
        return None;
    }
    Some(mount_point_of(path).unwrap_or_else(|| path.to_owned()))
}

/// The longest mount point above `path`, from `/proc/self/mounts` (Linux).
fn mount_point_of(path: &Path) -> Option<std::path::PathBuf> {
    let path = canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        // The kernel writes a space in a mount point as \040.
        .map(|point| std::path::PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| path.starts_with(point))
        .max_by_key(|point| point.as_os_str().len())
}

/// Whether `path` is named as a shared library of this system: `.so` (`.dylib` on macOS,
/// whose file systems ignore case by default, so in any case there).
pub(crate) fn is_library_name(path: &Path) -> bool {
    path.extension().is_some_and(|ext| {
        if cfg!(target_os = "macos") {
            ext.eq_ignore_ascii_case(std::env::consts::DLL_EXTENSION)
        } else {
            ext == std::env::consts::DLL_EXTENSION
        }
    })
}
