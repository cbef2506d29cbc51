//! How many descriptors this process may open: raised from the soft limit to the hard one,
//! as servers with many connections do (each admin connection takes one).

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the limits before and after.
pub(crate) fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives for the call.
    #[allow(unsafe_code)]
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    // macOS refuses more than OPEN_MAX whatever the hard limit says.
    #[cfg(target_os = "macos")]
    let target = limit.rlim_max.min(libc::OPEN_MAX as libc::rlim_t);
    #[cfg(not(target_os = "macos"))]
    let target = limit.rlim_max;
    if target > before {
        limit.rlim_cur = target;
        // SAFETY: setrlimit reads the struct it is given.
        #[allow(unsafe_code)]
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // rlim_t is narrower than u64 on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    Ok((u64::from(before), u64::from(limit.rlim_cur)))
}
