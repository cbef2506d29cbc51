//! Why part of a child's fence or link could not be set up, typed: the worker turns it
//! into its refusal, the containment into the words of its fallback.

use std::io;

/// Why a child of the host could not set up part of its fence or link.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    /// A system call failed.
    #[error("{call}: {error}")]
    Os {
        /// The call, or what it was for.
        call: &'static str,
        /// The operating system's error.
        error: io::Error,
    },
    /// A test switch turned this part off.
    #[cfg(target_os = "linux")]
    #[error("{0} is set")]
    Switched(&'static str),
    /// Threads run already, so the process may not fork into a namespace.
    #[cfg(target_os = "linux")]
    #[error("the program started threads before run_child_if_requested")]
    Threaded,
    /// New namespaces could not be made, alone or in a user namespace.
    #[cfg(target_os = "linux")]
    #[error("unshare: {alone}; with a user namespace: {with_user}")]
    Unshare {
        /// The error without a user namespace.
        alone: io::Error,
        /// The error with one.
        with_user: io::Error,
    },
    /// Capability sets were not empty after dropping them all.
    #[cfg(unix)]
    #[error("capabilities still held: {}", .0.join(", "))]
    CapabilitiesHeld(Vec<String>),
    /// The seccomp filter could not be built or installed.
    #[cfg(target_os = "linux")]
    #[error("seccomp: {0}")]
    Seccomp(#[from] seccompiler::Error),
    /// There is no seccomp filter for this architecture.
    #[cfg(target_os = "linux")]
    #[error("seccomp: no filter for {0}")]
    NoSeccompFilter(&'static str),
    /// The library the host named could not be opened.
    #[cfg(windows)]
    #[error("cannot open {}: {error}", .path.display())]
    OpenLibrary {
        /// The library.
        path: std::path::PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// The handed-over link or library is not what the host hands a child.
    #[error("{0}")]
    NotFromHost(&'static str),
}

impl SetupError {
    /// A failed system call, with the last OS error.
    pub(crate) fn last_os(call: &'static str) -> Self {
        Self::os(call)(io::Error::last_os_error())
    }

    /// A failed system call, for `map_err`.
    pub(crate) fn os(call: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |error| Self::Os { call, error }
    }
}

/// Why a sandbox was not entered: what could not be enforced, for a strict plan.
#[derive(Debug, thiserror::Error)]
#[error("{missing}; sandbox = true refuses to run without it (sandbox = \"best-effort\" runs with a warning)")]
pub(crate) struct SandboxRefused {
    /// What could not be enforced, in words.
    pub(crate) missing: String,
}

/// Why a plugin file or directory is not the owner's alone: someone else could change
/// it, and so make the host run their code. Each names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotOwnersAlone {
    /// Its mode lets its group or every user write to it.
    #[cfg(unix)]
    #[error("the {what} {} is writable by {} (mode {mode:o}), so anyone there could make the host run their code; `chmod go-w {}`", .path.display(), if .mode & 0o002 != 0 { "every user" } else { "its group" }, .path.display())]
    Writable {
        /// "file", "plugins directory".
        what: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Someone but root and the host's user owns it.
    #[cfg(unix)]
    #[error("the {what} {} is owned by uid {owner}, neither root nor the host's user (uid {me}); `chown {me} {}` or run the host as its owner", .path.display(), .path.display())]
    Owner {
        /// "file", "plugins directory".
        what: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// Its owner.
        owner: u32,
        /// The host's effective user.
        me: u32,
    },
    /// Its permissions cannot be read.
    #[cfg(windows)]
    #[error("cannot read the permissions of the {what} {}: {error}", .path.display())]
    Unreadable {
        /// "file", "plugins directory".
        what: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The system's error.
        error: io::Error,
    },
    /// Its access control list lets someone else change it.
    #[cfg(windows)]
    #[error("the {what} {} may be changed by {writer}, so they could make the host run their code; remove that permission ({remove}), or use `trust = \"pinned\"`", .path.display())]
    Writer {
        /// "file", "plugins directory".
        what: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// Who may change it.
        writer: String,
        /// How to take that right away.
        remove: String,
    },
}
