//! Windows has no descriptor limit to raise for sockets: handles are limited by memory.

/// Nothing to raise: `(0, 0)` says so.
#[allow(clippy::unnecessary_wraps)]
pub(crate) fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    Ok((0, 0))
}

/// This process's standard output, kept for its own output; the standard output handle
/// and the C runtime's descriptor 1 then name standard error, so what plugin code in this
/// process writes there joins the log stream rather than the output a script reads.
pub(crate) fn keep_standard_output() -> std::io::Result<std::fs::File> {
    use windows_sys::Win32::{
        Foundation::INVALID_HANDLE_VALUE,
        System::Console::{GetStdHandle, SetStdHandle, STD_ERROR_HANDLE, STD_OUTPUT_HANDLE},
    };
    // SAFETY: the standard handles are this process's; the copy is owned by the returned
    // file alone, and the standard slot and descriptor 1 are only repointed.
    #[allow(unsafe_code)]
    unsafe {
        let output = GetStdHandle(STD_OUTPUT_HANDLE);
        if output.is_null() || output == INVALID_HANDLE_VALUE {
            return Err(std::io::Error::other("this process has no standard output"));
        }
        let kept = super::link::duplicate(output).ok_or_else(std::io::Error::last_os_error)?;
        SetStdHandle(STD_OUTPUT_HANDLE, GetStdHandle(STD_ERROR_HANDLE));
        libc::dup2(2, 1);
        Ok(std::fs::File::from(kept))
    }
}
