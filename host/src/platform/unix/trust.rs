//! Who may change a plugin file on Unix: its mode and owner, as sshd's `StrictModes`.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use crate::platform::NotOwnersAlone;

/// Refuses `path` if group or others may write to it, or its owner is neither root nor
/// this process's user.
pub(crate) fn check_owner_only(
    path: &Path,
    what: &'static str,
    metadata: &std::fs::Metadata,
) -> Result<(), NotOwnersAlone> {
    let mode = metadata.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(NotOwnersAlone::Writable {
            what,
            path: path.to_owned(),
            mode,
        });
    }
    let (owner, me) = (metadata.uid(), effective_uid());
    if owner != 0 && owner != me {
        return Err(NotOwnersAlone::Owner {
            what,
            path: path.to_owned(),
            owner,
            me,
        });
    }
    Ok(())
}

/// This process's effective user id, read once: the host never changes it, and a
/// directory of a thousand plugins asks a thousand times.
fn effective_uid() -> u32 {
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    *EUID.get_or_init(|| unsafe { libc::geteuid() })
}

/// Makes a file the host writes (the trust file) writable by its owner only, readable by
/// all: mode 644.
pub(crate) fn owner_writes_only(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_writable_file_is_refused_naming_it_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libx.so");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        let metadata = std::fs::metadata(&file).unwrap();
        let err = check_owner_only(&file, "file", &metadata)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("its group") && err.contains("chmod go-w"),
            "{err}"
        );
        assert!(err.contains(&file.display().to_string()), "{err}");
        owner_writes_only(&file).unwrap();
        let metadata = std::fs::metadata(&file).unwrap();
        check_owner_only(&file, "file", &metadata).expect("owner-writable only");
    }
}
