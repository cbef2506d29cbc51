//! How many descriptors this process may open: raised from the soft limit to the hard one,
//! as servers with many connections do (each admin connection takes one). The host's
//! children (workers, scanners) start with the soft limit it had before: plugin code there
//! runs as it would in a program of its own (`select` cannot watch descriptors past
//! 1023, and a plugin should not get more than the system's default for being isolated).

use std::sync::atomic::{AtomicU64, Ordering};

/// The soft limit before this process first raised it; 0 while it has not.
static SOFT_BEFORE_RAISE: AtomicU64 = AtomicU64::new(0);

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
        #[allow(clippy::useless_conversion)]
        let _ = SOFT_BEFORE_RAISE.compare_exchange(
            0,
            u64::from(before),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    // rlim_t is narrower than u64 on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    Ok((u64::from(before), u64::from(limit.rlim_cur)))
}

/// The soft limit a child of this process should start with, if this process raised its
/// own: the one it had before.
pub(crate) fn children_open_files_limit() -> Option<libc::rlim_t> {
    match SOFT_BEFORE_RAISE.load(Ordering::Relaxed) {
        0 => None,
        soft => libc::rlim_t::try_from(soft).ok(),
    }
}

/// Lowers this process's soft limit of open descriptors to `soft` (never raises it).
/// Async-signal-safe: for a child between `fork` and `exec`. Best effort: a limit that
/// cannot be set stays as it was.
pub(crate) fn lower_open_files_limit(soft: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes, and setrlimit reads, the struct they are given, which
    // lives for the calls; both are system calls, safe after fork.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 && limit.rlim_cur > soft {
            limit.rlim_cur = soft;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
    }
}

/// This process's standard output, kept for its own output; descriptor 1 then names
/// standard error, so what plugin code in this process writes there (`println!`,
/// `printf`) joins the log stream rather than the output a script reads.
pub(crate) fn keep_standard_output() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: descriptor 1 is this process's; the copy (close-on-exec, so no child keeps
    // it) is owned by the returned file alone, and `dup2` only repoints descriptor 1.
    #[allow(unsafe_code)]
    unsafe {
        let kept = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if kept < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let kept = std::fs::File::from_raw_fd(kept);
        if libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(kept)
    }
}
