//! What differs between operating systems, behind one small interface per concern; the
//! logic above it has no `cfg`. Today only Unix is implemented.

#[cfg(unix)]
mod unix;

use serde::{Deserialize, Serialize};

/// The sandbox a worker enters: what it grants beyond the library itself and the
/// system's shared libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SandboxPlan {
    /// Start anyway, with a warning, where something cannot be enforced.
    pub(crate) best_effort: bool,
    /// Paths it may read.
    pub(crate) read: Vec<std::path::PathBuf>,
    /// Paths it may read and write.
    pub(crate) write: Vec<std::path::PathBuf>,
    /// Whether it may open network connections.
    pub(crate) connect: bool,
    /// Whether it may start programs.
    pub(crate) spawn: bool,
}

#[cfg(unix)]
pub(crate) use self::unix::{end_group_when_host_dies, spawn_worker, ProcessWatch};

#[cfg(target_os = "linux")]
mod sandbox;

/// Enters the worker sandbox `plan` describes, fencing in `library` (the vetted file, by
/// its descriptor); what was applied, or why the worker must not go on.
#[cfg(target_os = "linux")]
pub(crate) fn enter_sandbox(plan: &SandboxPlan, library: &std::fs::File) -> Result<String, String> {
    sandbox::enter(plan, library)
}

/// There is no worker sandbox here: `sandbox = true` refuses to start, best-effort
/// starts unsandboxed.
#[cfg(not(target_os = "linux"))]
pub(crate) fn enter_sandbox(
    plan: &SandboxPlan,
    _library: &std::fs::File,
) -> Result<String, String> {
    if plan.best_effort {
        Ok("none (no sandbox on this platform)".into())
    } else {
        Err("this platform has no worker sandbox; use sandbox = \"best-effort\"".into())
    }
}
