//! The sandbox on Linux, entered by a worker before it opens the plugin's library (so
//! before the library's first instruction, its constructors included) and before it
//! starts any thread (so every thread it starts inherits it), and by every scanner. In
//! order, each layer needing the ones before:
//!
//! 1. **No privilege**: every capability dropped from every set, the secure bits that
//!    would give root's back locked (`privileges`).
//! 2. **`no_new_privs`**: nothing it runs can gain privileges (setuid programs included).
//! 3. **Landlock** (`landlock`): files (read and execute its library, by the descriptor
//!    the host vetted, and the system's shared libraries; read `/proc/self`, a few devices
//!    and the time zone; what is granted, nothing else), TCP (connect to the granted ports
//!    only, bind nothing), and scopes (no signal to, and no abstract Unix socket of, any
//!    process outside the sandbox: the host, other workers).
//! 4. **seccomp** (`seccomp`): an allowlist of what plugin code needs (memory, threads,
//!    futexes, files through Landlock, its link to the host, time); everything else fails
//!    with `EPERM`: io_uring, ptrace, namespaces, mount, bpf, perf, keys, new sockets
//!    (unless granted), signals outside itself, `setsid`, metadata changes, and more.
//!
//! Refused operations fail inside the plugin with a permission error (`EACCES` or
//! `EPERM`); the kernel does not tell the host about them, so they are not counted.
//!
//! Two switches exist for tests only, read from the environment: a Landlock ABI to
//! pretend is the kernel's (`PLUGIN_HOST_TEST_LANDLOCK_ABI`, to test the refusal and the
//! warning of an older kernel), and layers to leave out (`PLUGIN_HOST_TEST_SANDBOX_SKIP`,
//! a comma-separated list of `capabilities`, `landlock`, `seccomp`: to prove each layer
//! is what refuses what it refuses).

mod landlock;
mod seccomp;

use std::fs::File;

use super::{SandboxPlan, SandboxRefused, SetupError};

/// The test switch naming layers to leave out.
const SKIP: &str = "PLUGIN_HOST_TEST_SANDBOX_SKIP";

/// Whether the test switch leaves `layer` out.
fn skipped(layer: &str) -> bool {
    std::env::var(SKIP).is_ok_and(|list| list.split(',').any(|l| l.trim() == layer))
}

/// What entering a sandbox did: each layer in words, and what could not be enforced.
#[derive(Debug, Default)]
struct Applied {
    layers: Vec<String>,
    missing: Vec<String>,
}

/// How one layer went.
enum Outcome {
    /// Enforced, as said.
    Full(String),
    /// Enforced in part (what is), and what is missing.
    Partial(String, String),
    /// Not enforced, and why.
    Off(String),
}

impl From<Result<String, SetupError>> for Outcome {
    fn from(result: Result<String, SetupError>) -> Self {
        match result {
            Ok(what) => Self::Full(what),
            Err(why) => Self::Off(why.to_string()),
        }
    }
}

impl Applied {
    /// Records `layer`'s outcome: what it enforces, and what it could not.
    fn layer(&mut self, name: &str, outcome: impl Into<Outcome>) {
        match outcome.into() {
            Outcome::Full(what) => self.layers.push(what),
            Outcome::Partial(what, missing) => {
                self.layers.push(what);
                self.missing.push(missing);
            }
            Outcome::Off(why) => {
                self.layers.push(format!("{name} off"));
                self.missing.push(why);
            }
        }
    }
}

/// Enters the sandbox `plan` describes, fencing in `libraries` (the vetted files, by
/// their descriptors); what was applied, or why the process must not go on (a strict
/// plan, and something could not be enforced). A best-effort plan logs a warning naming
/// what is missing, and goes on.
pub(crate) fn enter(plan: &SandboxPlan, libraries: &[&File]) -> Result<String, SandboxRefused> {
    let mut applied = Applied::default();
    if skipped("capabilities") {
        applied
            .layers
            .push("capabilities kept (test switch)".into());
    } else {
        applied.layer("capabilities", super::drop_capabilities());
    }
    applied.layer("no_new_privs", no_new_privs());
    if skipped("landlock") {
        applied.layers.push("Landlock off (test switch)".into());
    } else {
        applied.layer("Landlock", landlock::restrict(plan, libraries));
    }
    if skipped("seccomp") {
        applied.layers.push("seccomp off (test switch)".into());
    } else {
        applied.layer("seccomp", seccomp::restrict(plan));
    }
    let summary = applied.layers.join("; ");
    if applied.missing.is_empty() {
        return Ok(summary);
    }
    let missing = applied.missing.join("; ");
    if !plan.best_effort {
        return Err(SandboxRefused { missing });
    }
    tracing::warn!("sandbox in part ({summary}): {missing}");
    Ok(format!("{summary} ({missing})"))
}

fn no_new_privs() -> Result<String, SetupError> {
    // SAFETY: prctl with these arguments only sets a flag of this process.
    #[allow(unsafe_code)]
    let set = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0;
    if set {
        Ok("no_new_privs on".into())
    } else {
        Err(SetupError::last_os("no_new_privs could not be set"))
    }
}
