//! Containment of the host's children on Windows (workers; scanners are not fenced
//! here): the host puts each worker in a Job object that kills everything in it when the
//! job is closed or the host dies, so a child has only to start clean.

/// Which fence holds a child of the host.
#[derive(Debug, Clone)]
pub(crate) struct Containment {
    /// In words, for `status`.
    pub(crate) fence: String,
    /// Never on Windows: no capabilities to gain.
    pub(crate) gained_capabilities: bool,
}

/// Starts a child of the host: its Job object is the host's to make (and its tasks are
/// not capped).
pub(crate) fn contain(_keep: i32, _tasks: Option<u32>) -> Containment {
    Containment {
        fence: "Job object (kill on close)".to_owned(),
        gained_capabilities: false,
    }
}

/// Exits this child with `code`: what it started ends with its Job object.
pub(crate) fn leave(code: i32) -> ! {
    std::process::exit(code)
}

/// This process's id as the host sees it.
pub(crate) fn pid_for_host() -> u32 {
    std::process::id()
}

/// A child forked to do a piece of work apart: never on Windows, which cannot fork.
#[derive(Debug)]
pub(crate) enum Apart {}

/// Where [`fork_apart`] returns.
#[derive(Debug)]
#[allow(dead_code)] // The names are every platform's; Windows never forks.
pub(crate) enum Forked {
    /// In the child.
    Child,
    /// In this process.
    Parent(Apart),
}

/// Windows cannot fork: the caller does its work in its own process.
pub(crate) fn fork_apart(_keep: &std::fs::File) -> std::io::Result<Forked> {
    Err(std::io::ErrorKind::Unsupported.into())
}

impl Apart {
    pub(crate) fn output(&mut self) -> &mut std::fs::File {
        match *self {}
    }

    pub(crate) fn wait(self) -> std::io::Result<std::process::ExitStatus> {
        match self {}
    }
}

/// Ends this process with `code` at once.
pub(crate) fn end_apart(code: i32) -> ! {
    std::process::exit(code)
}
