//! The ceiling on a contained child's tasks (threads and processes), so that a plugin's
//! thread or fork bomb fails inside its worker (`EAGAIN`) instead of taking every process
//! id the host and the rest of the machine need.
//!
//! The ceiling is the `pid_max` of the child's own PID namespace, which Linux keeps per
//! namespace since 6.14: a task needs an id in every namespace it is in, and its own
//! namespace has no more than `pid_max - 1`. Once the ids wrap, the kernel hands out only
//! those from 300 up ([`RESERVED_IDS`]), so the namespace gets `tasks + 300`: never fewer
//! than `tasks` at once, and at most 300 more until the ids first wrap. Only a process of
//! that namespace may set it (its init, before the worker starts); before 6.14 the file
//! is the whole machine's, so it is never written there.

/// The ids below which the kernel does not go again once a namespace's ids wrap
/// (`RESERVED_PIDS`).
const RESERVED_IDS: u32 = 300;

/// The first kernel that keeps `pid_max` per PID namespace.
const PER_NAMESPACE_SINCE: (u32, u32) = (6, 14);

/// What [`cap`] did: the ceiling set, or why there is none. Its words go into the
/// child's fence as `status` shows it.
#[derive(Debug)]
pub(super) enum Ceiling {
    /// The namespace holds at most this many tasks.
    Set(u32),
    /// The kernel keeps one `pid_max` for the whole machine: its release.
    OldKernel(String),
    /// Writing `pid_max` failed.
    NotSet(std::io::Error),
}

impl std::fmt::Display for Ceiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Set(tasks) => write!(f, "at most {tasks} tasks"),
            Self::OldKernel(release) => write!(
                f,
                "tasks not capped: Linux {release} keeps no pid_max per namespace (6.14 does)"
            ),
            Self::NotSet(err) => write!(f, "tasks not capped: pid_max could not be set: {err}"),
        }
    }
}

/// Caps the tasks of this process's PID namespace at `tasks` (see the module); call it
/// in the namespace's init, while it holds its capabilities.
pub(super) fn cap(tasks: u32) -> Ceiling {
    let release = kernel_release();
    match parse_release(&release) {
        Some(version) if version >= PER_NAMESPACE_SINCE => {}
        _ => return Ceiling::OldKernel(release),
    }
    let pid_max = tasks.saturating_add(RESERVED_IDS);
    match std::fs::write("/proc/sys/kernel/pid_max", pid_max.to_string()) {
        Ok(()) => Ceiling::Set(tasks),
        Err(err) => Ceiling::NotSet(err),
    }
}

/// The kernel's release, as `uname -r` says it.
fn kernel_release() -> String {
    // SAFETY: uname writes the struct it is given; the release is a NUL-terminated
    // string inside it.
    #[allow(unsafe_code)]
    unsafe {
        let mut name: libc::utsname = std::mem::zeroed();
        if libc::uname(&raw mut name) != 0 {
            return String::from("(unknown)");
        }
        std::ffi::CStr::from_ptr(name.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// `(major, minor)` of a release such as `6.18.44-generic`.
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::parse_release;

    #[test]
    fn releases_are_read_up_to_their_minor_version() {
        assert_eq!(parse_release("6.18.44-fc-v1272"), Some((6, 18)));
        assert_eq!(parse_release("6.14"), Some((6, 14)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_release("10.2-rc1"), Some((10, 2)));
        assert_eq!(parse_release("(unknown)"), None);
        assert_eq!(parse_release("6"), None);
    }
}
