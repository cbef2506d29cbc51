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
    /// Whether the scan ended its scanner process (a crash or a hang), rather than
    /// giving a verdict.
    pub(crate) fn ended_its_scanner(&self) -> bool {
        matches!(
            self.outcome,
            Err(LoadError::ScannerCrashed { .. } | LoadError::ScannerTimedOut { .. })
        )
    }

    pub(crate) fn failed(outcome: LoadError) -> Self {
        Self {
            identity: None,
            outcome: Err(outcome),
        }
    }
}

/// Serves as a scanner of `paths` (the arguments after [`SCAN_FLAG`]): one result line
/// per file, in order, each flushed before the next file is opened, so that if a library
/// kills this process the host knows which one did. Returns the exit code.
pub(crate) fn serve(paths: &[std::ffi::OsString]) -> i32 {
    use std::io::Write as _;
    if paths.is_empty() {
        eprintln!("usage: {SCAN_FLAG} FILE...");
        return 2;
    }
    for path in paths {
        let report = scan_in_process(Path::new(path));
        match serde_json::to_string(&report) {
            Ok(json) => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{RESULT_PREFIX}{json}");
                let _ = stdout.flush();
            }
            Err(err) => {
                eprintln!("cannot encode the scan result: {err}");
                return 1;
            }
        }
    }
    0
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

/// Scans `paths` in one scanner process (`program --plugin-host-scan PATH...`), each
/// file given `timeout`. Returns a report per path, in order. Where the process died or
/// hung, the file it was on gets that verdict and the rest are not reported: the caller
/// scans them again in a fresh process.
pub(crate) async fn scan_batch_in_subprocess(
    program: &Path,
    paths: &[PathBuf],
    timeout: Duration,
) -> Vec<ScanReport> {
    match run_scanner(program, paths, timeout).await {
        Ok(reports) => reports,
        Err(err) => vec![ScanReport::failed(err)],
    }
}

async fn run_scanner(
    program: &Path,
    paths: &[PathBuf],
    timeout: Duration,
) -> Result<Vec<ScanReport>, LoadError> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let first = paths.first().cloned().unwrap_or_default();
    let scanner_error = |path: &Path, reason: String| LoadError::Scanner {
        path: path.to_owned(),
        reason,
    };
    let mut child = tokio::process::Command::new(program)
        .arg(SCAN_FLAG)
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| {
            scanner_error(
                &first,
                format!("cannot start scanner `{}`: {err}", program.display()),
            )
        })?;
    tracing::debug!(files = paths.len(), pid = child.id(), "scanner started");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    // Read stderr all along: a library writing much there must not block the scanner.
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut reports = Vec::with_capacity(paths.len());
    while reports.len() < paths.len() {
        let path = &paths[reports.len()];
        match tokio::time::timeout(timeout, lines.next_line()).await {
            Err(_elapsed) => {
                reports.push(ScanReport::failed(LoadError::ScannerTimedOut {
                    path: path.clone(),
                    after: timeout,
                }));
                return Ok(reports);
            }
            Ok(Ok(Some(line))) => {
                // Anything a library prints itself is not a result line.
                let Some(json) = line.strip_prefix(RESULT_PREFIX) else {
                    continue;
                };
                let report = serde_json::from_str(json).unwrap_or_else(|err| {
                    ScanReport::failed(scanner_error(
                        path,
                        format!("unreadable scanner result: {err}"),
                    ))
                });
                reports.push(report);
            }
            Ok(Ok(None) | Err(_)) => break,
        }
    }
    if reports.len() < paths.len() {
        // The process ended on this file.
        let path = &paths[reports.len()];
        let status = child
            .wait()
            .await
            .map_or_else(|err| err.to_string(), crate::platform::describe_status);
        let text = stderr.await.unwrap_or_default();
        reports.push(ScanReport::failed(LoadError::ScannerCrashed {
            path: path.clone(),
            status,
            stderr: tail(&text),
        }));
    }
    Ok(reports)
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
