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

/// A copy of the open plugin `file` (`len` bytes) that nothing can change while it is
/// mapped, for the host to load in place of the file: on Linux a memfd of its size
/// holding its bytes in `ranges` (start, end; all of it if none are given: the rest reads
/// as zeros and takes no memory), sealed against writes, size changes and unsealing. A
/// library maps its file's pages as they are, so a file written over in place (`cp
/// new.so plugins/old.so` truncates and rewrites the same inode) would change code this
/// process runs, or take its pages away (SIGBUS). `None` where there is no such copy
/// (other Unixes): the caller loads the file.
///
/// # Errors
///
/// The file read short of `len` (it shrank while copied: `UnexpectedEof`); a system that
/// lets no code run from such a copy (`vm.memfd_noexec = 2`, a security module); the
/// operating system's error making it.
pub(crate) fn private_copy(
    file: &File,
    len: u64,
    path: &Path,
    ranges: &[(u64, u64)],
) -> io::Result<Option<File>> {
    #[cfg(target_os = "linux")]
    {
        executable_memfd::copy_of(file, len, path, ranges)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len, path, ranges);
        Ok(None)
    }
}

#[cfg(target_os = "linux")]
mod executable_memfd {
    use std::{ffi::OsStr, fs::File, io, os::unix::ffi::OsStrExt, path::Path};

    use rustix::{
        fs::{fcntl_add_seals, memfd_create, sendfile, MemfdFlags, SealFlags},
        io::Errno,
        mm::{mmap, munmap, MapFlags, ProtFlags},
    };

    /// The longest name a memfd takes (255 bytes, less the `memfd:` the kernel puts first).
    const NAME_AT_MOST: usize = 249;

    pub(super) fn copy_of(
        file: &File,
        len: u64,
        path: &Path,
        ranges: &[(u64, u64)],
    ) -> io::Result<Option<File>> {
        if len == 0 {
            return Ok(None); // Nothing to map: the loader refuses it.
        }
        // Named by the file's path (its last bytes, if long), so that `/proc/PID/maps`
        // (and `lsof`, `pmap`) still say which plugin is mapped:
        // `/memfd:/srv/plugins/libx.so (deleted)`.
        let path = path.as_os_str().as_bytes();
        let name = OsStr::from_bytes(&path[path.len().saturating_sub(NAME_AT_MOST)..]);
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        // MFD_EXEC says the copy holds code (kernels from 6.3; refused as unknown before,
        // where every memfd may hold code). Refused as not allowed: vm.memfd_noexec = 2.
        let fd = match memfd_create(name, flags | MemfdFlags::EXEC) {
            Err(Errno::INVAL) => memfd_create(name, flags),
            made => made,
        };
        let copy = File::from(fd?);
        copy.set_len(len)?;
        let whole = [(0, len)];
        for &(start, end) in if ranges.is_empty() { &whole } else { ranges } {
            let (mut at, end) = (start.min(len), end.min(len));
            // In the kernel, page cache to page cache; the file's own offset is not moved.
            io::Seek::seek(&mut &copy, io::SeekFrom::Start(at))?;
            while at < end {
                let want = usize::try_from(end - at).unwrap_or(usize::MAX).min(1 << 30);
                if sendfile(&copy, file, Some(&mut at), want)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the file ended at byte {at} of {len} while it was copied"),
                    ));
                }
            }
        }
        // Read from its start, as a file just opened is.
        io::Seek::rewind(&mut &copy)?;
        fcntl_add_seals(
            &copy,
            SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )?;
        if !may_run_code(&copy) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "this system lets no code run from a memory file",
            ));
        }
        Ok(Some(copy))
    }

    /// Whether this process may map `copy` executable (a security module may refuse code
    /// from memory files).
    fn may_run_code(copy: &File) -> bool {
        // SAFETY: a new private mapping of a file this process holds, at no address asked
        // for, unmapped at once and never touched.
        #[allow(unsafe_code)]
        unsafe {
            match mmap(
                std::ptr::null_mut(),
                1,
                ProtFlags::READ | ProtFlags::EXEC,
                MapFlags::PRIVATE,
                copy,
                0,
            ) {
                Ok(start) => munmap(start, 1).is_ok(),
                Err(_) => false,
            }
        }
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
