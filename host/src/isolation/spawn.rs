//! Starting a worker process: this program again, in worker mode, with the socket as
//! descriptor 3 and the vetted library file, already open, as descriptor 4. Stdin is
//! closed, the environment cleared to an allowlist, stdout and stderr go to the host log.

use std::{
    io::BufRead,
    os::{
        fd::AsRawFd,
        unix::{net::UnixStream, process::CommandExt},
    },
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{
    protocol::{FrameReader, FromWorker, SandboxPlan, WorkerArgs, FRAME_OVERHEAD},
    worker::{LIBRARY_FD, SOCKET_FD, WORKER_FLAG},
};
use crate::{loader::OpenedFile, platform::ProcessWatch};

/// Environment variables a worker keeps; everything else is cleared.
const ENV_ALLOWLIST: [&str; 9] = [
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "RUST_BACKTRACE",
];

/// How a worker is started.
pub(crate) struct Spawn<'a> {
    /// The program run as the worker: normally this one.
    pub(crate) program: &'a Path,
    /// The library, opened and vetted by the host.
    pub(crate) opened: &'a OpenedFile,
    /// The plugin's name, for logs and errors.
    pub(crate) plugin: &'a str,
    pub(crate) memory_limit: Option<u64>,
    /// How long the worker may take to open the library.
    pub(crate) start_timeout: Duration,
    /// How long it may take to exit once asked to stop.
    pub(crate) stop_timeout: Duration,
    /// `[limits] max_reply`: the worker refuses to send a larger reply.
    pub(crate) max_reply: usize,
    /// The sandbox the worker enters before it opens the library.
    pub(crate) sandbox: Option<SandboxPlan>,
}

impl Spawn<'_> {
    /// The largest frame either side accepts: the largest reply, and the rest of its
    /// message.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_reply.saturating_add(FRAME_OVERHEAD)
    }
}

/// The worker's command line.
pub(super) fn command(spawn: &Spawn<'_>, socket: &UnixStream) -> Command {
    let args = WorkerArgs {
        library: spawn.opened.path().to_owned(),
        identity: spawn.opened.identity(),
        log_level: crate::plugin_log::lowest_enabled_level(),
        max_reply: spawn.max_reply,
        sandbox: spawn.sandbox.clone(),
    };
    let mut command = Command::new(spawn.program);
    command
        .arg(WORKER_FLAG)
        .arg(serde_json::to_string(&args).unwrap_or_default())
        .env_clear()
        .envs(
            ENV_ALLOWLIST
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (name, value))),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let socket = socket.as_raw_fd();
    let library = spawn.opened.file().as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls are made (fcntl, dup2)
    // on descriptors this process owns. Both are first copied above the targets
    // (close-on-exec), so neither can overwrite the other.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            let high_socket = libc::fcntl(socket, libc::F_DUPFD_CLOEXEC, 10);
            let high_library = libc::fcntl(library, libc::F_DUPFD_CLOEXEC, 10);
            if high_socket < 0
                || high_library < 0
                || libc::dup2(high_socket, SOCKET_FD) < 0
                || libc::dup2(high_library, LIBRARY_FD) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Waits for the worker's first word: it opened the library (a reader for what follows,
/// and what its sandbox enforces), or why not. A worker that does not get there is
/// killed.
pub(super) fn await_hello(
    socket: &UnixStream,
    process: &ProcessWatch,
    timeout: Duration,
    max_frame: usize,
) -> Result<(FrameReader, Option<String>), String> {
    let read_half = socket.try_clone().map_err(|err| format!("socket: {err}"))?;
    read_half
        .set_read_timeout(Some(timeout))
        .map_err(|err| format!("socket: {err}"))?;
    let mut reader = FrameReader::new(read_half, max_frame);
    let first = reader.read::<FromWorker>();
    let ended = || {
        process.kill_group();
        let status = process
            .wait()
            .map_or_else(|err| err.to_string(), crate::util::describe_status);
        process.reap();
        status
    };
    match first {
        Ok(Some(FromWorker::Hello { sandbox, .. })) => {
            reader
                .set_read_timeout(None)
                .map_err(|err| format!("socket: {err}"))?;
            Ok((reader, sandbox))
        }
        Ok(Some(FromWorker::Refused { error })) => {
            ended();
            Err(format!("the worker could not open it: {error}"))
        }
        Ok(Some(other)) => Err(format!(
            "the worker said {other:?} before it was ready ({})",
            ended()
        )),
        Ok(None) => Err(format!(
            "the worker ended before it was ready ({})",
            ended()
        )),
        Err(err)
            if err.kind() == std::io::ErrorKind::WouldBlock
                || err.kind() == std::io::ErrorKind::TimedOut =>
        {
            Err(format!(
                "the worker did not open it within {timeout:?} ({})",
                ended()
            ))
        }
        Err(err) => Err(format!(
            "the worker's first message was unreadable: {err} ({})",
            ended()
        )),
    }
}

/// Copies the worker's stdout and stderr into the host's log, a line a record.
pub(super) fn forward_output(child: &mut Child, plugin: &str, pid: u32) {
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for (stream, name) in [(stdout, "stdout"), (stderr, "stderr")] {
        let Some(stream) = stream else { continue };
        let owned = plugin.to_owned();
        let started = std::thread::Builder::new()
            .name(format!("worker-{pid}-{name}"))
            .spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    tracing::info!(target: "plugin", plugin = %owned, worker = pid, stream = name, "{line}");
                }
            });
        if let Err(err) = started {
            tracing::warn!(plugin, pid, error = %err, "cannot forward the worker's {name}; it is dropped");
        }
    }
}
