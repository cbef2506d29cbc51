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

    /// A report as the host takes it from a scanner, which ran the library's code and so
    /// is not believed: its description checked again and its free text made safe to
    /// print (`PluginInfo::make_printable`), whatever the scanner said (an in-process
    /// scan's report too, for its text).
    pub(crate) fn vetted(mut self, path: &Path) -> Self {
        if let Ok(info) = &mut self.outcome {
            match info.check() {
                Ok(()) => info.make_printable(),
                Err(err) => {
                    self.outcome = Err(LoadError::Manifest {
                        path: path.to_owned(),
                        reason: err.to_string(),
                    })
                }
            }
        }
        self
    }

    pub(crate) fn failed(outcome: LoadError) -> Self {
        Self {
            identity: None,
            outcome: Err(outcome),
        }
    }
}

/// The stdout line of a scanner that opens a library itself (it cannot fork), written
/// before it does: it reports one more file at most, whatever else appears.
const ALONE_LINE: &str = "plugin-host-scan-alone";

/// Prefix of the stdout line that says how the scanner is fenced in.
const FENCE_PREFIX: &str = "plugin-host-scan-fence: ";

/// The descriptors a scanner keeps: standard input, output and error.
const KEEP_DESCRIPTORS: i32 = 3;

/// The threads and processes a scanner may run at once, its children and what their
/// libraries' constructors start included: a library that starts more while it is read
/// gets `EAGAIN` (where the kernel caps a PID namespace's tasks).
const SCANNER_TASKS: u32 = 256;

/// Serves as a scanner of `paths` (the arguments after [`SCAN_FLAG`]): one result line
/// per file, in order, each flushed before the next file is opened, so that if a library
/// kills this process the host knows which one did. Returns the exit code.
///
/// A library's constructors run when it is opened, so the scanner fences itself in
/// first, whatever the plugin's own setting: a PID namespace (nothing it starts outlives
/// it), and a sandbox of its own as strict as the kernel allows: no capabilities, no
/// program started, no socket, no signal outside, reading its library and the system's
/// shared libraries and nothing else. Its files are opened before the sandbox closes.
///
/// Each library is opened in a child of its own (on Unix), which enters that sandbox for
/// its one file, says how it is fenced, scans, and prints its result into a pipe this
/// process reads: a library's code never runs where the results of the libraries after
/// it are written, so it cannot speak for them (its constructor could print result lines
/// on the scanner's own output, which the host would take in order for the next files'),
/// and one that crashes costs only its own verdict. Where a child cannot be forked
/// (Windows; an embedder's program that started a thread before it became a scanner),
/// this process says so ([`ALONE_LINE`]), fences itself in with the file and scans it
/// itself, and that file only: the host scans the rest in fresh scanners.
pub(crate) fn serve(paths: &[std::ffi::OsString]) -> i32 {
    if paths.is_empty() {
        eprintln!("usage: {SCAN_FLAG} FILE...");
        return 2;
    }
    let containment = crate::platform::contain(KEEP_DESCRIPTORS, Some(SCANNER_TASKS));
    let opened: Vec<(PathBuf, Result<OpenedFile, LoadError>)> = paths
        .iter()
        .map(|path| (PathBuf::from(path), OpenedFile::open(Path::new(path))))
        .collect();
    let mut scanner = Serving {
        containment: containment.fence,
        fence_said: false,
        fenced_here: false,
    };
    for (path, file) in &opened {
        let report = match file {
            Ok(file) => scanner.scan(file),
            Err(err) => ScanReport::failed(err.clone()),
        };
        if let Err(err) = print_report(&report) {
            eprintln!("cannot encode the scan result of {}: {err}", path.display());
            return 1;
        }
        if scanner.fenced_here {
            break;
        }
    }
    0
}

/// A scanner at work: how its children are contained, and what it said of its fence.
struct Serving {
    containment: String,
    /// Whether the fence line went out (once per scanner).
    fence_said: bool,
    /// Whether this process entered the sandbox itself (it could not fork).
    fenced_here: bool,
}

impl Serving {
    /// Scans `file` in a child of its own, or here if none can be forked (then fenced
    /// in first with that one file, the last this scanner scans).
    fn scan(&mut self, file: &OpenedFile) -> ScanReport {
        // A file that is no library for this platform (text, empty, another architecture)
        // is known from its header, read here as bytes: no child, no sandbox to set up.
        if let Err(refused) = crate::loader::check_file(file) {
            return ScanReport {
                identity: Some(file.identity()),
                outcome: Err(refused),
            };
        }
        if !self.fenced_here {
            match crate::platform::fork_apart(file.file()) {
                Ok(crate::platform::Forked::Child) => {
                    print_line(FENCE_PREFIX, &self.fence_in(&[file.file()]));
                    let report = scan_opened(file, Via::Descriptor);
                    crate::platform::end_apart(i32::from(print_report(&report).is_err()));
                }
                Ok(crate::platform::Forked::Parent(child)) => return self.hear(child, file),
                Err(_) => {
                    // The library is opened here, where the results are written: this
                    // scanner scans this one file and no other (its constructor could
                    // print results for the files after it), and says so before any
                    // library code runs; the host sends the rest to a fresh scanner.
                    print_line(ALONE_LINE, "");
                    let fence = self.fence_in(&[file.file()]);
                    self.say_fence(&fence);
                    self.fenced_here = true;
                }
            }
        }
        scan_opened(file, Via::Descriptor)
    }

    /// Enters the scanner's sandbox, fencing in `files`; the fence in words.
    fn fence_in(&self, files: &[&std::fs::File]) -> String {
        match crate::platform::enter_sandbox(&scanner_plan(), files) {
            Ok(applied) => format!("{}; {applied}", self.containment),
            Err(why) => format!("{}; no sandbox: {why}", self.containment),
        }
    }

    fn say_fence(&mut self, fence: &str) {
        if !self.fence_said {
            print_line(FENCE_PREFIX, fence);
            self.fence_said = true;
        }
    }

    /// The report of the child scanning `file`: its result line, with the identity of
    /// the file it was given; or, if it printed none or did not end as a scan does, how
    /// it ended and the last it wrote.
    fn hear(&mut self, mut child: crate::platform::Apart, file: &OpenedFile) -> ScanReport {
        let said = Said::read(child.output());
        let status = child.wait();
        if let Some(fence) = &said.fence {
            self.say_fence(fence);
        }
        let report = said
            .result
            .as_deref()
            .and_then(|json| serde_json::from_str::<ScanReport>(json).ok());
        match (status, report) {
            (Ok(status), Some(report)) if status.success() => ScanReport {
                identity: Some(file.identity()),
                outcome: report.outcome,
            },
            (Ok(status), None) if status.success() && said.result.is_some() => {
                ScanReport::failed(LoadError::Scanner {
                    path: file.path().to_owned(),
                    reason: format!(
                        "its description cannot be read (a result over {} MiB, or garbled)",
                        MAX_LINE >> 20
                    ),
                })
            }
            (status, _) => {
                let (path, stderr) = (file.path().to_owned(), tail(&said.rest));
                let status = match status {
                    Ok(status) => crate::platform::describe_status(status),
                    Err(err) => err.to_string(),
                };
                match said.fence {
                    Some(_) => ScanReport::failed(LoadError::ScannerCrashed {
                        path,
                        status,
                        stderr,
                    }),
                    // A child says its fence before it opens the library: one that ended
                    // without a word ran none of the library's code. The fault is the
                    // scanner's (and not remembered as the file's verdict).
                    None => ScanReport::failed(LoadError::Scanner {
                        path,
                        reason: format!(
                            "the scanner's child for it ended ({status}) before it opened \
                             the library, so the file is not at fault; run with \
                             RUST_LOG=plugin_host=debug and report it{}",
                            if stderr.is_empty() {
                                String::new()
                            } else {
                                format!("; it wrote: {stderr}")
                            }
                        ),
                    }),
                }
            }
        }
    }
}

/// What a scanning child wrote: its fence (its first line, written before its library
/// was opened), its last result line, and the tail of everything else (the first of
/// which also goes on to this process's standard error).
#[derive(Debug, Default)]
struct Said {
    fence: Option<String>,
    result: Option<String>,
    rest: String,
}

/// The longest line a child's output is read in (a longer one is read in parts).
const MAX_LINE: u64 = 16 << 20;

/// How much of what a child wrote besides its result is kept, for a crash's message.
const MAX_REST: usize = 4096;

/// How much of what a child wrote besides its result goes on to this process's standard
/// error (where a library's own output went when libraries were opened here; bounded, for
/// the host reads it all).
const MAX_FORWARDED: usize = 64 << 10;

impl Said {
    fn read(output: &mut std::fs::File) -> Self {
        use std::io::{BufRead as _, Read as _};
        let mut reader = std::io::BufReader::new(output);
        let mut said = Self::default();
        let mut line = Vec::new();
        let mut forwarded = 0;
        for number in 0.. {
            line.clear();
            match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\n');
            match (
                number,
                text.strip_prefix(FENCE_PREFIX),
                text.strip_prefix(RESULT_PREFIX),
            ) {
                (0, Some(fence), _) => said.fence = Some(fence.to_owned()),
                (_, _, Some(result)) => said.result = Some(result.to_owned()),
                _ => {
                    if forwarded < MAX_FORWARDED {
                        forwarded += text.len() + 1;
                        eprintln!("{text}");
                    }
                    said.rest.push_str(text);
                    said.rest.push('\n');
                    if said.rest.len() > 2 * MAX_REST {
                        let cut = said.rest.len() - MAX_REST;
                        let cut = (cut..said.rest.len())
                            .find(|at| said.rest.is_char_boundary(*at))
                            .unwrap_or(said.rest.len());
                        said.rest.drain(..cut);
                    }
                }
            }
        }
        said
    }
}

fn print_report(report: &ScanReport) -> Result<(), serde_json::Error> {
    print_line(RESULT_PREFIX, &serde_json::to_string(report)?);
    Ok(())
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
    let first = paths.first().cloned().unwrap_or_default();
    let mut scanner = Scanner::start(program, paths).map_err(|err| LoadError::Scanner {
        path: first,
        reason: format!("cannot start scanner `{}`: {err}", program.display()),
    })?;
    let mut stdout = tokio::io::BufReader::new(scanner.stdout.take().expect("piped stdout"));
    let mut reports = Vec::with_capacity(paths.len());
    // How many reports this scanner may give: one more once it says it scans alone.
    let mut wanted = paths.len();
    let mut line = Vec::new();
    while reports.len() < wanted {
        let path = &paths[reports.len()];
        let read = read_line(&mut stdout, &mut line, MAX_LINE);
        let whole = match tokio::time::timeout(timeout, read).await {
            Err(_elapsed) => {
                reports.push(ScanReport::failed(LoadError::ScannerTimedOut {
                    path: path.clone(),
                    after: timeout,
                }));
                return Ok(reports);
            }
            Ok(Ok(Some(whole))) => whole,
            Ok(Ok(None) | Err(_)) => break,
        };
        let text = String::from_utf8_lossy(&line);
        if text == ALONE_LINE {
            wanted = wanted.min(reports.len() + 1);
        } else if let Some(fence) = text.strip_prefix(FENCE_PREFIX) {
            note_fence(fence);
        } else if let Some(json) = text.strip_prefix(RESULT_PREFIX) {
            // Anything a library prints itself is not a result line.
            let report = if whole {
                serde_json::from_str::<ScanReport>(json)
                    .map(|report| report.vetted(path))
                    .map_err(|err| err.to_string())
            } else {
                Err(format!("a result over {} MiB", MAX_LINE >> 20))
            };
            reports.push(report.unwrap_or_else(|reason| {
                ScanReport::failed(LoadError::Scanner {
                    path: path.clone(),
                    reason: format!("unreadable scanner result: {reason}"),
                })
            }));
        }
    }
    if reports.len() < wanted {
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

/// Reads one line into `line` (without its newline), at most `max` bytes of it: whether
/// it was read whole (a longer one is read to its end, its rest dropped); `None` at the
/// end of the output.
async fn read_line<R>(reader: &mut R, line: &mut Vec<u8>, max: u64) -> std::io::Result<Option<bool>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    line.clear();
    // One byte more than the bound: a line of `max` bytes has room for its newline.
    if (&mut *reader).take(max + 1).read_until(b'\n', line).await? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Some(true));
    }
    if line.len() as u64 <= max {
        return Ok(Some(true));
    }
    line.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(Some(false));
        }
        let (used, ended) = match buffer.iter().position(|byte| *byte == b'\n') {
            Some(at) => (at + 1, true),
            None => (buffer.len(), false),
        };
        reader.consume(used);
        if ended {
            return Ok(Some(false));
        }
    }
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
            .env_clear()
            .envs(crate::platform::scanner_environment())
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
        // Read stderr all along: a library writing much there must not block the scanner,
        // nor grow the host (its last few KiB are kept, for a crash's message).
        let stderr = tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut chunk = vec![0; 8192];
            if let Some(Ok(mut stderr)) = stderr {
                while let Ok(read @ 1..) = stderr.read(&mut chunk).await {
                    kept.extend_from_slice(&chunk[..read]);
                    if kept.len() > 2 * MAX_REST {
                        kept.drain(..kept.len() - MAX_REST);
                    }
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
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

#[cfg(test)]
mod tests;
