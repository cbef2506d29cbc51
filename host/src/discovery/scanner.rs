//! The scanner: reads one plugin file's manifest in a separate process.
//!
//! Opening a library runs its code (static constructors, the root module's initialiser),
//! and a broken library can abort, hang or corrupt the process that opens it. So the host
//! re-executes a scanner binary, normally itself, with [`SCAN_FLAG`] and a path; the
//! scanner opens the library, runs abi_stable's checks, prints one result line and exits.
//! Whatever the library does, only the scanner dies.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    loader::{open_library, FileIdentity, LoadError, OpenedFile},
    manifest::PluginInfo,
};

/// The first argument that puts a binary into scanner mode.
pub const SCAN_FLAG: &str = "--plugin-host-scan";

/// Prefix of the one stdout line that carries the result; anything a library prints
/// itself is ignored.
const RESULT_PREFIX: &str = "plugin-host-scan-result: ";

/// The outcome of scanning one file.
pub type ScanOutcome = Result<PluginInfo, LoadError>;

/// What one scan found: the identity of the file the scanner actually opened (so the
/// host can tell whether it is the file it meant), and the outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanReport {
    /// The opened file's identity; `None` if it could not be opened or the scanner died.
    pub identity: Option<FileIdentity>,
    /// Its manifest, or why it cannot be used.
    pub outcome: ScanOutcome,
}

impl ScanReport {
    fn failed(outcome: LoadError) -> Self {
        Self {
            identity: None,
            outcome: Err(outcome),
        }
    }
}

/// If this process was started as a scanner (`BINARY --plugin-host-scan FILE`), scans the
/// file, prints the result and exits; if it was started as a worker for an isolated
/// plugin ([`crate::WORKER_FLAG`]), serves the host until it hangs up, then exits.
/// Otherwise returns and does nothing.
///
/// An embedder that uses its own executable as the scanner and worker (the default)
/// calls this first in `main`.
pub fn run_scanner_if_requested() {
    crate::isolation::run_if_requested();
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(SCAN_FLAG.as_ref()) {
        return;
    }
    let Some(path) = args.next() else {
        eprintln!("usage: {SCAN_FLAG} FILE");
        std::process::exit(2);
    };
    let report = scan_in_process(Path::new(&path));
    match serde_json::to_string(&report) {
        Ok(json) => {
            println!("{RESULT_PREFIX}{json}");
            std::process::exit(0);
        }
        Err(err) => {
            eprintln!("cannot encode the scan result: {err}");
            std::process::exit(1);
        }
    }
}

/// Scans `path` in this process: the library is mapped here and stays mapped, and
/// whatever its initialisers do happens to this process. The scanner subprocess calls it;
/// [`ScanMode::InProcess`] is the embedder's explicit choice to run it in the host.
pub fn scan_in_process(path: &Path) -> ScanReport {
    let opened = match OpenedFile::open(path) {
        Ok(opened) => opened,
        Err(err) => return ScanReport::failed(err),
    };
    // SAFETY: the caller chose this process to take the risk (see above).
    #[allow(unsafe_code)]
    let outcome = unsafe { open_library(&opened) }.map(|library| library.info().clone());
    ScanReport {
        identity: Some(opened.identity()),
        outcome,
    }
}

/// Scans `path` by running `program --plugin-host-scan path`, giving up after `timeout`.
pub(crate) async fn scan_in_subprocess(
    program: &Path,
    path: &Path,
    timeout: Duration,
) -> ScanReport {
    match run_scanner(program, path, timeout).await {
        Ok(report) => report,
        Err(err) => ScanReport::failed(err),
    }
}

async fn run_scanner(
    program: &Path,
    path: &Path,
    timeout: Duration,
) -> Result<ScanReport, LoadError> {
    let scanner_error = |reason: String| LoadError::Scanner {
        path: path.to_owned(),
        reason,
    };
    let child = tokio::process::Command::new(program)
        .arg(SCAN_FLAG)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| {
            scanner_error(format!(
                "cannot start scanner `{}`: {err}",
                program.display()
            ))
        })?;
    tracing::debug!(path = %path.display(), pid = child.id(), "scanner started");
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_elapsed) => {
            return Err(LoadError::ScannerTimedOut {
                path: path.to_owned(),
                after: timeout,
            })
        }
        Ok(Err(err)) => return Err(scanner_error(format!("waiting for the scanner: {err}"))),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(RESULT_PREFIX));
    match (output.status.success(), result) {
        (true, Some(json)) => serde_json::from_str(json)
            .map_err(|err| scanner_error(format!("unreadable scanner result: {err}"))),
        _ => Err(LoadError::ScannerCrashed {
            path: path.to_owned(),
            status: crate::util::describe_status(output.status),
            stderr: tail(&String::from_utf8_lossy(&output.stderr)),
        }),
    }
}

/// The last few lines of a scanner's stderr, short enough for one error message.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(3);
    let text = lines[start..].join(" | ");
    let skip = text.chars().count().saturating_sub(400);
    text.chars().skip(skip).collect()
}

/// How plugin files are scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanMode {
    /// In a child process running this executable (the default, and the safe choice).
    Subprocess(PathBuf),
    /// In this process: a library that crashes takes the host with it, and every scanned
    /// library stays mapped. For embedders that accept that risk.
    InProcess,
}
