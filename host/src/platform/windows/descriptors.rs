//! Windows has no descriptor limit to raise for sockets: handles are limited by memory.

/// Nothing to raise: `(0, 0)` says so.
#[allow(clippy::unnecessary_wraps)]
pub(crate) fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    Ok((0, 0))
}
