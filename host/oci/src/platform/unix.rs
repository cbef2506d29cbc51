//! The Unix side of what differs by operating system.

/// A file created with `options` may be read and written by its owner alone.
pub(crate) fn owner_only(options: &mut std::fs::OpenOptions) {
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
}
