//! Plugin files on Windows: identity from the open handle (volume serial number, file
//! index, size, last-write and creation times), and a file opened for loading is shared
//! with readers only: while the host holds it, nobody can write it, rename it or delete
//! it, so the path the loader opens names what was vetted.

use std::{
    fs::{File, OpenOptions},
    io,
    os::windows::{
        fs::{FileExt, OpenOptionsExt},
        io::AsRawHandle,
    },
    path::Path,
};

use windows_sys::Win32::{
    Foundation::FILETIME,
    Storage::FileSystem::{
        GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
    },
};

use crate::platform::FileIdentity;

/// 100-nanosecond intervals from 1601 (`FILETIME`'s epoch) to 1970.
const EPOCH_DIFFERENCE: i128 = 116_444_736_000_000_000;

fn join(high: u32, low: u32) -> u64 {
    (u64::from(high) << 32) | u64::from(low)
}

fn nanos(time: FILETIME) -> i128 {
    (i128::from(join(time.dwHighDateTime, time.dwLowDateTime)) - EPOCH_DIFFERENCE) * 100
}

/// The identity of the open `file`.
pub(crate) fn identity_of(file: &File) -> io::Result<FileIdentity> {
    // SAFETY: the handle is open for the call; the struct is written by the call only.
    #[allow(unsafe_code)]
    let info = unsafe {
        let mut info: BY_HANDLE_FILE_INFORMATION = std::mem::zeroed();
        if GetFileInformationByHandle(file.as_raw_handle(), &raw mut info) == 0 {
            return Err(io::Error::last_os_error());
        }
        info
    };
    Ok(FileIdentity {
        dev: u64::from(info.dwVolumeSerialNumber),
        ino: join(info.nFileIndexHigh, info.nFileIndexLow),
        size: join(info.nFileSizeHigh, info.nFileSizeLow),
        mtime_ns: nanos(info.ftLastWriteTime),
        ctime_ns: nanos(info.ftCreationTime),
    })
}

/// The identity of the file at `path` now (opened for its attributes only, disturbing
/// nobody).
pub(crate) fn identity_of_path(path: &Path) -> io::Result<FileIdentity> {
    let file = OpenOptions::new()
        .access_mode(FILE_READ_ATTRIBUTES)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    identity_of(&file)
}

/// The identity and metadata of the file at `path` now (the metadata has no volume
/// serial or file index here, so the identity comes from an attributes-only open).
pub(crate) fn stat_with_identity(path: &Path) -> io::Result<(FileIdentity, std::fs::Metadata)> {
    let metadata = std::fs::metadata(path)?;
    Ok((identity_of_path(path)?, metadata))
}

/// Opens a plugin file to vet and load it: read-only, shared with readers only, so that
/// it cannot be written, renamed or deleted while it is open.
pub(crate) fn open_for_load(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .share_mode(FILE_SHARE_READ)
        .open(path)
}

/// Reads into `buf` from `offset`.
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.seek_read(buf, offset)
}

/// No copy: the open `file` admits no writer while it is loaded, and Windows keeps a
/// loaded DLL's file from being written, so the file itself is loaded.
#[allow(clippy::unnecessary_wraps)] // As on Unix, where a copy is made and can fail.
pub(crate) fn private_copy(
    file: &File,
    len: u64,
    path: &Path,
    ranges: &[(u64, u64)],
) -> io::Result<Option<File>> {
    let _ = (file, len, path, ranges);
    Ok(None)
}

/// Runs `open` with the path: the open `file` keeps it naming what was vetted.
pub(crate) fn with_descriptor_path<T>(
    file: &File,
    path: &Path,
    open: impl FnOnce(&Path) -> T,
) -> T {
    let _ = file;
    open(path)
}

/// Runs `open` with the path: the open `file` keeps it naming what was vetted.
pub(crate) fn with_loader_path<T>(
    file: &File,
    path: &Path,
    open: impl FnOnce(&Path) -> T,
) -> io::Result<T> {
    let _ = file;
    Ok(open(path))
}

/// The absolute path with every link resolved, as an operator writes it: `C:\plugins`,
/// not the verbatim `\\?\C:\plugins` Windows hands back (kept where the plain form
/// cannot name the file: a UNC share, or a path too long).
pub(crate) fn canonicalize(path: &Path) -> io::Result<std::path::PathBuf> {
    let resolved = std::fs::canonicalize(path)?;
    let text = resolved.to_string_lossy();
    let plain = text
        .strip_prefix(r"\\?\")
        .filter(|rest| rest.as_bytes().get(1) == Some(&b':') && rest.len() < 260);
    Ok(plain.map_or_else(|| resolved.clone(), std::path::PathBuf::from))
}

/// Bytes as an OS string: as UTF-8, what is not replaced (a Windows string is UTF-16).
pub(crate) fn bytes_to_os_string(bytes: &[u8]) -> std::ffi::OsString {
    String::from_utf8_lossy(bytes).into_owned().into()
}

/// Windows has no `noexec` mounts: always `None`.
pub(crate) fn noexec_mount(_path: &Path) -> Option<std::path::PathBuf> {
    None
}

/// A file that is not a regular one, in words: `a directory, not a regular file`.
pub(crate) fn odd_file_kind(metadata: &std::fs::Metadata) -> String {
    if metadata.is_dir() {
        "a directory, not a regular file".into()
    } else {
        "not a regular file".into()
    }
}

/// Whether `path` is named as a DLL: `.dll` in any case (`PRICING.DLL`), as Windows
/// itself reads names.
pub(crate) fn is_library_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case(std::env::consts::DLL_EXTENSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_open_for_load_cannot_be_written_renamed_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin.dll");
        std::fs::write(&path, b"vetted bytes").unwrap();
        let before = identity_of_path(&path).unwrap();
        let open = open_for_load(&path).unwrap();
        assert_eq!(identity_of(&open).unwrap(), before);
        assert!(OpenOptions::new().append(true).open(&path).is_err());
        assert!(std::fs::rename(&path, dir.path().join("moved.dll")).is_err());
        assert!(std::fs::remove_file(&path).is_err());
        let mut buf = [0u8; 6];
        assert_eq!(read_at(&open, &mut buf, 0).unwrap(), 6);
        assert_eq!(&buf, b"vetted");
        drop(open);
        std::fs::write(&path, b"other bytes, longer").unwrap();
        assert_ne!(identity_of_path(&path).unwrap(), before);
    }

    #[test]
    fn a_canonical_path_is_the_plain_drive_form() {
        let dir = tempfile::tempdir().unwrap();
        let canonical = canonicalize(dir.path()).unwrap();
        assert!(
            !canonical.to_string_lossy().starts_with(r"\\?\"),
            "{canonical:?}"
        );
        assert!(
            canonical.is_absolute() && canonical.is_dir(),
            "{canonical:?}"
        );
    }
}
