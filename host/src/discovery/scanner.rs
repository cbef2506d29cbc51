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
    loader::{open_library_at, FileIdentity, LoadError, OpenedFile, Via},
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

/// Prefix of the stdout line that says how the scanner is fenced in.
const FENCE_PREFIX: &str = "plugin-host-scan-fence: ";

/// The descriptors a scanner keeps: standard input, output and error.
const KEEP_DESCRIPTORS: i32 = 3;

/// Serves as a scanner of `paths` (the arguments after [`SCAN_FLAG`]): one result line
/// per file, in order, each flushed before the next file is opened, so that if a library
/// kills this process the host knows which one did. Returns the exit code.
///
/// A library's constructors run when it is opened, so the scanner fences itself in
/// first, whatever the plugin's own setting: a PID namespace (nothing it starts outlives
/// it), and a sandbox of its own as strict as the kernel allows: no capabilities, no
/// program started, no socket, no signal outside, reading its libraries and the system's
/// shared libraries and nothing else. Its files are opened before the sandbox closes.
pub(crate) fn serve(paths: &[std::ffi::OsString]) -> i32 {
    if paths.is_empty() {
        eprintln!("usage: {SCAN_FLAG} FILE...");
        return 2;
    }
    let containment = crate::platform::contain(KEEP_DESCRIPTORS);
    let opened: Vec<(PathBuf, Result<OpenedFile, LoadError>)> = paths
        .iter()
        .map(|path| (PathBuf::from(path), OpenedFile::open(Path::new(path))))
        .collect();
    let files: Vec<&std::fs::File> = opened
        .iter()
        .filter_map(|(_, file)| file.as_ref().ok().map(OpenedFile::file))
        .collect();
    let fence = match crate::platform::enter_sandbox(&scanner_plan(), &files) {
        Ok(applied) => format!("{}; {applied}", containment.fence),
        Err(why) => format!("{}; no sandbox: {why}", containment.fence),
    };
    print_line(FENCE_PREFIX, &fence);
    for (path, file) in &opened {
        let report = match file {
            Ok(opened) => scan_opened(opened, Via::Descriptor),
            Err(err) => ScanReport::failed(err.clone()),
        };
        match serde_json::to_string(&report) {
            Ok(json) => print_line(RESULT_PREFIX, &json),
            Err(err) => {
                eprintln!("cannot encode the scan result of {}: {err}", path.display());
                return 1;
            }
        }
    }
    0
}

/// The scanner's own sandbox: nothing granted, as much as the kernel can enforce.
fn scanner_plan() -> crate::platform::SandboxPlan {
    crate::platform::SandboxPlan {
        best_effort: true,
        ..crate::platform::SandboxPlan::default()
    }
}

fn print_line(prefix: &str, text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{prefix}{text}");
    let _ = stdout.flush();
}

/// Scans `path` in this process: the library is mapped here and stays mapped, and
/// whatever its initialisers do happens to this process. The scanner subprocess calls it;
/// [`ScanMode::InProcess`] is the embedder's explicit choice to run it in the host.
pub fn scan_in_process(path: &Path) -> ScanReport {
    match OpenedFile::open(path) {
        Ok(opened) => scan_opened(&opened, Via::Link),
        Err(err) => ScanReport::failed(err),
    }
}

/// Scans the open file, pointing the dynamic loader at it `via` a link or its descriptor.
fn scan_opened(opened: &OpenedFile, via: Via) -> ScanReport {
    // SAFETY: the caller chose this process to take the risk (see above).
    #[allow(unsafe_code)]
    let outcome = unsafe { open_library_at(opened, via) }.map(|library| library.info().clone());
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
    use tokio::io::AsyncBufReadExt;
    let first = paths.first().cloned().unwrap_or_default();
    let mut scanner = Scanner::start(program, paths).map_err(|err| LoadError::Scanner {
        path: first,
        reason: format!("cannot start scanner `{}`: {err}", program.display()),
    })?;
    let mut lines = tokio::io::BufReader::new(scanner.stdout.take().expect("piped stdout")).lines();
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
                if let Some(fence) = line.strip_prefix(FENCE_PREFIX) {
                    note_fence(fence);
                }
                // Anything a library prints itself is not a result line.
                let Some(json) = line.strip_prefix(RESULT_PREFIX) else {
                    continue;
                };
                reports.push(serde_json::from_str(json).unwrap_or_else(|err| {
                    ScanReport::failed(LoadError::Scanner {
                        path: path.clone(),
                        reason: format!("unreadable scanner result: {err}"),
                    })
                }));
            }
            Ok(Ok(None) | Err(_)) => break,
        }
    }
    if reports.len() < paths.len() {
        // The process ended on this file.
        let (status, stderr) = scanner.ended().await;
        reports.push(ScanReport::failed(LoadError::ScannerCrashed {
            path: paths[reports.len()].clone(),
            status,
            stderr: tail(&stderr),
        }));
    }
    Ok(reports)
}

/// How scanners are fenced in, logged at debug level; a scanner that could not be
/// sandboxed is said once as a warning.
fn note_fence(fence: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    tracing::debug!(fence, "scanner fence");
    if fence.contains("no sandbox") || fence.contains(" off") {
        WARNED.call_once(|| {
            tracing::warn!("scanners run plugin code (library constructors) less fenced than they could: {fence}");
        });
    }
}

/// A scanner process: started by the host's child spawner (so it dies with the host),
/// killed with everything it started when dropped.
struct Scanner {
    child: Option<std::process::Child>,
    watch: std::sync::Arc<crate::platform::ProcessWatch>,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Scanner {
    fn start(program: &Path, paths: &[PathBuf]) -> std::io::Result<Self> {
        use tokio::io::AsyncReadExt;
        let mut command = std::process::Command::new(program);
        command
            .arg(SCAN_FLAG)
            .args(paths)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = crate::platform::spawn_child(command)?;
        tracing::debug!(files = paths.len(), pid = child.id(), "scanner started");
        let watch = std::sync::Arc::new(crate::platform::ProcessWatch::new(&child)?);
        let stdout = child
            .stdout
            .take()
            .map(tokio::process::ChildStdout::from_std);
        let stderr = child
            .stderr
            .take()
            .map(tokio::process::ChildStderr::from_std);
        // Read stderr all along: a library writing much there must not block the scanner.
        let stderr = tokio::spawn(async move {
            let mut text = Vec::new();
            if let Some(Ok(mut stderr)) = stderr {
                let _ = stderr.read_to_end(&mut text).await;
            }
            String::from_utf8_lossy(&text).into_owned()
        });
        Ok(Self {
            child: Some(child),
            watch,
            stdout: stdout.transpose()?,
            stderr,
        })
    }

    /// How the process ended, and what it wrote on stderr.
    async fn ended(&mut self) -> (String, String) {
        // Not reaped here (`wait` leaves it for the drop): its pid names its group until
        // the kill there.
        let watch = std::sync::Arc::clone(&self.watch);
        let status = tokio::task::spawn_blocking(move || watch.wait()).await;
        let status = match status {
            Ok(Ok(status)) => crate::platform::describe_status(status),
            Ok(Err(err)) => err.to_string(),
            Err(err) => err.to_string(),
        };
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.watch.kill_group();
        if let Some(mut child) = self.child.take() {
            // Reaped off the async workers: it is dying, so this is short.
            let _ = std::thread::Builder::new()
                .name("scanner-reaper".into())
                .spawn(move || child.wait());
        }
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
