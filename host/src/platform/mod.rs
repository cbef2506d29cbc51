//! What differs between operating systems, one module per concern, each with a Unix and a
//! Windows implementation behind the same names; the logic above has no `cfg`:
//!
//! - `file`: a file's identity; opening a plugin file so that what was vetted is what is
//!   loaded; the path the dynamic loader opens it by; reading at an offset;
//! - `shared`: shared memory a large frame travels in beside the link (a sealed memfd on
//!   Linux; none yet elsewhere, where frames stay on the link);
//! - `process`: starting a worker, learning of its end from the kernel, killing it with
//!   everything it started, a worker dying with its host, how a process ended in words;
//! - `link`: a worker's transport to its host (a socket pair on Unix, the worker's
//!   standard input and output pipes on Windows) and the vetted library handed over;
//! - `memory`: resident set sizes of this process and of workers; freed heap given back;
//! - `trust`: whether anyone but the owner (and the system's administrators) may change
//!   a plugin file or its directory: mode and owner on Unix, the DACL on Windows;
//! - `contain`: a child of the host (scanner or worker) starting clean and fenced in so
//!   that nothing it starts outlives it: a PID namespace on Linux, a process group
//!   elsewhere on Unix, a Job object on Windows; and, on Unix, a child forked to do one
//!   piece of work apart (a scanner's, for each library);
//! - `privileges`: dropping every capability (Unix);
//! - `descriptors`: raising the soft limit of open descriptors to the hard one (and, on
//!   Unix, the children's back to where it was).
//!
//! The sandbox is Linux's alone (`sandbox`); signals are the binary's (`run`).

mod error;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
use self::unix as os;
#[cfg(windows)]
use self::windows as os;

use serde::{Deserialize, Serialize};

pub(crate) use self::error::{NotOwnersAlone, SandboxRefused, SetupError};

pub(crate) use self::os::{
    contain::{contain, end_apart, fork_apart, leave, pid_for_host, Apart, Containment, Forked},
    descriptors::{keep_standard_output, raise_open_files_limit},
    file::{
        bytes_to_os_string, canonicalize, identity_of, identity_of_path, is_library_name,
        noexec_mount, odd_file_kind, open_for_load, private_copy, read_at, stat_with_identity,
        with_descriptor_path, with_loader_path,
    },
    link::{worker_link, LinkRead, LinkStop, LinkWrite, PendingLink},
    memory::{
        keep_freed_memory, own_rss, release_free_memory, rss_of_tree, thread_cpu_nanos, ThreadClock,
    },
    process::{describe_status, spawn_child, ProcessWatch},
    shared::{share, MappedRegion, SealedRegion},
    trust::{check_owner_only, owner_writes_only},
};

/// The prefix of the environment variables that weaken a child's fence for a test (see
/// `contain` and `sandbox`), or steer a test fixture; the config ignores them, and
/// scanners and workers keep them.
pub(crate) const TEST_SWITCH_PREFIX: &str = "PLUGIN_HOST_TEST_";

/// The test switches set in this process's environment, for a child to keep; each is
/// logged once as a warning.
pub(crate) fn test_switches() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let switches: Vec<_> = std::env::vars_os()
        .filter(|(name, _)| {
            name.to_str()
                .is_some_and(|name| name.starts_with(TEST_SWITCH_PREFIX))
        })
        .collect();
    if !switches.is_empty() {
        WARNED.call_once(|| {
            let names: Vec<_> = switches
                .iter()
                .map(|(n, v)| format!("{}={}", n.to_string_lossy(), v.to_string_lossy()))
                .collect();
            tracing::warn!(
                "test switches set (they may weaken the fence of scanners and workers): {}",
                names.join(" ")
            );
        });
    }
    switches
}

/// Environment variables a scanner or worker keeps; everything else is cleared, for a
/// plugin's code runs there and must not read the host's secrets from its environment.
const ENV_ALLOWLIST: [&str; 14] = [
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "RUST_BACKTRACE",
    // Windows: a process without these cannot find its system directory or a temp one.
    "SYSTEMROOT",
    "WINDIR",
    "TEMP",
    "TMP",
    "USERPROFILE",
];

/// The environment a child of the host (a scanner or a worker) starts with: the
/// allowlisted variables this process has, and its test switches.
pub(crate) fn child_environment() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut kept: Vec<_> = ENV_ALLOWLIST
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|value| ((*name).into(), value)))
        .collect();
    kept.extend(test_switches());
    kept
}

/// A scanner's environment: a child's, and the dynamic loader's own tracing (`LD_DEBUG`,
/// `LD_DEBUG_OUTPUT`) as this process has it, so that whoever traces the host (an
/// operator, the tests) sees which process mapped which library.
pub(crate) fn scanner_environment() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut kept = child_environment();
    kept.extend(
        ["LD_DEBUG", "LD_DEBUG_OUTPUT"]
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|value| ((*name).into(), value))),
    );
    kept
}

/// The identity of one version of a file, as git's index keeps it. On Unix: device,
/// inode, size, modification and status-change times (a file replaced by another, even
/// one of the same size and mtime, gets another inode or ctime). On Windows: volume
/// serial number, file index, size, last-write and creation times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Device (Unix), volume serial number (Windows).
    pub dev: u64,
    /// Inode (Unix), file index (Windows).
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Last status change (Unix: content, permissions, owner, links; it cannot be set
    /// back by a copying tool), creation (Windows), nanoseconds since the epoch.
    pub ctime_ns: i128,
}

/// The sandbox a worker (or a scanner) enters: what it grants beyond the library itself
/// and the system's shared libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SandboxPlan {
    /// Start anyway, with a warning, where something cannot be enforced.
    pub(crate) best_effort: bool,
    /// Paths it may read.
    pub(crate) read: Vec<std::path::PathBuf>,
    /// Paths it may read and write.
    pub(crate) write: Vec<std::path::PathBuf>,
    /// Which network connections it may open.
    pub(crate) connect: Connect,
    /// Whether it may start programs.
    pub(crate) spawn: bool,
}

/// Which network connections a sandbox allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Connect {
    /// None: no socket but its link to the host and pairs of its own.
    #[default]
    Nothing,
    /// TCP to these ports (any address), nothing else.
    Ports(Vec<u16>),
    /// TCP and UDP anywhere (and what name resolution reads).
    Anywhere,
}

#[cfg(target_os = "linux")]
mod sandbox;

/// Enters the sandbox `plan` describes, fencing in `libraries` (the vetted files, by
/// their descriptors); what was applied, or why the process must not go on.
#[cfg(target_os = "linux")]
pub(crate) fn enter_sandbox(
    plan: &SandboxPlan,
    libraries: &[&std::fs::File],
) -> Result<String, SandboxRefused> {
    sandbox::enter(plan, libraries)
}

/// Two ends of a link, for tests of what travels on it.
#[cfg(all(test, unix))]
pub(crate) use self::unix::link::link_pair;

/// Drops every capability this process holds.
#[cfg(unix)]
pub(crate) use self::unix::privileges::drop_capabilities;

/// There is no sandbox here: `sandbox = true` refuses to start, best-effort starts
/// unsandboxed.
#[cfg(not(target_os = "linux"))]
pub(crate) fn enter_sandbox(
    plan: &SandboxPlan,
    _libraries: &[&std::fs::File],
) -> Result<String, SandboxRefused> {
    if plan.best_effort {
        Ok("none (no sandbox on this platform)".into())
    } else {
        Err(SandboxRefused {
            missing: "this platform has no worker sandbox".into(),
        })
    }
}
