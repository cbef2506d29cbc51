//! Every way a plugin file can fail to load, each with what to do about it.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// Why a plugin file cannot be used. Each message names the file and the next step.
///
/// It is serialisable because the scanner process reports it to the host and the registry
/// cache keeps it, so a broken file is not rescanned until it changes. Its paths go as
/// text, bytes that are not UTF-8 replaced: a file of any name gets its verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read the file: {reason}")]
    Io {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// The operating system's error.
        reason: String,
    },
    /// The file is empty.
    #[error("{path}: the file is empty; rebuild the plugin or remove the file")]
    Empty {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
    },
    /// The file is not a shared library at all.
    #[error("{path}: not a shared library ({detail}); only plugin libraries belong in the plugins directory")]
    NotALibrary {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// What the file looks like instead.
        detail: String,
    },
    /// A shared library for another machine or OS.
    #[error("{path}: built for {found}, but this host runs on {expected}; rebuild the plugin for this platform")]
    WrongPlatform {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// What the library was built for.
        found: String,
        /// What this host needs.
        expected: String,
    },
    /// The file is shorter than its own headers say.
    #[error("{path}: the file is truncated: its headers describe {expected} bytes but it has {actual}; copy or build it again")]
    Truncated {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// Bytes the headers need.
        expected: u64,
        /// Bytes the file has.
        actual: u64,
    },
    /// The trust policy refuses the file: who may change it, or it is not pinned.
    #[error("{path}: not trusted: {reason}")]
    Untrusted {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// The file is not the one that was vetted: it changed after it was scanned.
    #[error("{path}: the file changed after it was scanned (another inode, size or time); it is scanned again before it is loaded")]
    Changed {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
    },
    /// The dynamic loader refused the file.
    #[error("{path}: the dynamic loader cannot open it: {reason}; the file may be truncated or need libraries that are missing")]
    Open {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// A shared library, but not a plugin.
    #[error("{path}: not a plugin-host plugin: it exports no plugin root module and no `plugin_host_c_plugin_v1`; build it with `plugin_api::export_plugin!` (Rust) or against plugin_host.h (C)")]
    NoRootModule {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
    },
    /// An abi_stable library of another application: its root module is not
    /// plugin-api's.
    #[error("{path}: not a plugin-host plugin: it is an abi_stable library exporting root module `{root_module}` (type `{root_type}` from package {package}); remove it from the plugins directory")]
    Foreign {
        /// The file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// The name its root module gives itself.
        root_module: String,
        /// The root module's type.
        root_type: String,
        /// The package that type comes from, and its version (`name 1.2.3`).
        package: String,
    },
    /// Built with an abi_stable whose ABI this host cannot read.
    #[error("{path}: built with an incompatible abi_stable ({detail}); rebuild it against plugin-api {host_api}")]
    AbiHeader {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// What the header said.
        detail: String,
        /// The host's plugin-api version.
        host_api: String,
    },
    /// Built against a plugin-api version this host does not accept.
    #[error("{path}: built against plugin-api {plugin_api}, but this host uses plugin-api {host_api}; rebuild the plugin against plugin-api {host_api}")]
    IncompatibleVersion {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// The plugin's plugin-api version.
        plugin_api: String,
        /// The host's plugin-api version.
        host_api: String,
    },
    /// Built against a later plugin-api and needs a feature this host does not have.
    #[error("{path}: plugin `{plugin}` was built against plugin-api {plugin_api} and needs {}, which this host (plugin-api {host_api}) does not have; upgrade plugin-host, or rebuild the plugin against plugin-api {host_api} without it", missing.join(", "))]
    NeedsNewerHost {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// The plugin's name.
        plugin: String,
        /// The plugin's plugin-api version.
        plugin_api: String,
        /// The host's plugin-api version.
        host_api: String,
        /// The features it needs that this host lacks.
        missing: Vec<String>,
    },
    /// Same version number, different type layouts.
    #[error("{path}: its plugin-api {plugin_api} types do not match this host's plugin-api {host_api}: {first_mismatch}; rebuild the plugin against the host's plugin-api (RUST_LOG=debug shows the full report)")]
    AbiMismatch {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// The plugin's plugin-api version.
        plugin_api: String,
        /// The host's plugin-api version.
        host_api: String,
        /// The first mismatching item abi_stable reported.
        first_mismatch: String,
        /// abi_stable's full report, for debug logs.
        #[serde(default)]
        report: String,
    },
    /// The library's own initialisation failed or panicked.
    #[error("{path}: the library failed while initialising its root module: {reason}")]
    RootModule {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// What it reported.
        reason: String,
    },
    /// The manifest could not be read or is invalid.
    #[error("{path}: invalid manifest: {reason}; fix the plugin's `Plugin::manifest`")]
    Manifest {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A C plugin (`plugin_host.h`) whose `ph_plugin` or description is unusable.
    #[error("{path}: invalid C plugin: {reason}; fix what its `plugin_host_c_plugin_v1` returns (see plugin_host.h)")]
    CPlugin {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A C plugin built against a later `plugin_host.h` than this host reads.
    #[error("{path}: built against C ABI {plugin_abi} (plugin_host.h), but this host reads C ABI {host_abi} and older; upgrade plugin-host, or rebuild the plugin against this host's plugin_host.h")]
    CAbiTooNew {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// The C ABI the plugin was built against.
        plugin_abi: u32,
        /// The newest C ABI this host reads.
        host_abi: u32,
    },
    /// The scanner process died while reading the file.
    #[error("{path}: the scanner process crashed while reading it ({status}); the library crashes when loaded, so fix or remove it{}", stderr_suffix(.stderr))]
    ScannerCrashed {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// How the scanner ended (signal or exit code).
        status: String,
        /// The last lines the scanner wrote to stderr.
        stderr: String,
    },
    /// The scanner took too long.
    #[error("{path}: the scanner gave up after {}: the library hangs while loading; fix or remove it", humantime::format_duration(*.after))]
    ScannerTimedOut {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// How long it waited.
        #[serde(with = "crate::util::millis")]
        after: Duration,
    },
    /// The scanner could not be run or answered nonsense.
    #[error("{path}: could not scan it: {reason}")]
    Scanner {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A worker process for the file (process isolation) could not be started, or could
    /// not open it.
    #[error("{path}: cannot run it in a worker process: {reason}")]
    Worker {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file cannot be read where plugin code is opened: scanners and workers run
    /// without the host's privileges (root's included), so its mode must let the host's
    /// user read it.
    #[error("{path}: permission denied where plugin code is opened (scanners and workers run without the host's privileges, root's included); make it readable by the host's user, e.g. chmod a+r")]
    Unreadable {
        /// The plugin file.
        #[serde(serialize_with = "crate::util::serialize_path_lossy")]
        path: PathBuf,
    },
}

/// An I/O error on a plugin file in words, with what to do where there is one.
pub(crate) fn io_reason(err: &std::io::Error) -> String {
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        "permission denied; make it readable by the host's user, e.g. chmod a+r".into()
    } else {
        err.to_string()
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; scanner stderr: {}", stderr.trim())
    }
}

impl LoadError {
    /// The plugin file this error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Io { path, .. }
            | Self::Empty { path }
            | Self::NotALibrary { path, .. }
            | Self::WrongPlatform { path, .. }
            | Self::Truncated { path, .. }
            | Self::Untrusted { path, .. }
            | Self::Changed { path }
            | Self::Open { path, .. }
            | Self::NoRootModule { path }
            | Self::Foreign { path, .. }
            | Self::AbiHeader { path, .. }
            | Self::IncompatibleVersion { path, .. }
            | Self::NeedsNewerHost { path, .. }
            | Self::AbiMismatch { path, .. }
            | Self::RootModule { path, .. }
            | Self::Manifest { path, .. }
            | Self::CPlugin { path, .. }
            | Self::CAbiTooNew { path, .. }
            | Self::ScannerCrashed { path, .. }
            | Self::ScannerTimedOut { path, .. }
            | Self::Scanner { path, .. }
            | Self::Worker { path, .. }
            | Self::Unreadable { path } => path,
        }
    }

    /// A short machine-readable name for the kind of failure (`no_root_module`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Empty { .. } => "empty",
            Self::NotALibrary { .. } => "not_a_library",
            Self::WrongPlatform { .. } => "wrong_platform",
            Self::Truncated { .. } => "truncated",
            Self::Untrusted { .. } => "untrusted",
            Self::Changed { .. } => "changed",
            Self::Open { .. } => "open",
            Self::NoRootModule { .. } => "no_root_module",
            Self::Foreign { .. } => "not_a_plugin",
            Self::AbiHeader { .. } => "abi_header",
            Self::IncompatibleVersion { .. } => "incompatible_version",
            Self::NeedsNewerHost { .. } => "needs_newer_host",
            Self::AbiMismatch { .. } => "abi_mismatch",
            Self::RootModule { .. } => "root_module",
            Self::Manifest { .. } => "manifest",
            Self::CPlugin { .. } => "c_plugin",
            Self::CAbiTooNew { .. } => "c_abi_too_new",
            Self::ScannerCrashed { .. } => "scanner_crashed",
            Self::ScannerTimedOut { .. } => "scanner_timed_out",
            Self::Worker { .. } => "worker",
            Self::Scanner { .. } => "scanner",
            Self::Unreadable { .. } => "unreadable",
        }
    }
}
