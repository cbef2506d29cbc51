//! Returns freed heap to the operating system, where the allocator allows it.

/// Asks glibc to give free heap pages back to the kernel (`malloc_trim(0)`), so that RSS
/// really drops after an eviction. Plugins share the host's malloc, so their freed memory
/// is covered too. A no-op elsewhere.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists under its own locks;
    // it has no preconditions and touches no memory the caller owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}
