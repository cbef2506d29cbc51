//! Starting a worker process: this program again, in worker mode, linked to the host and
//! handed the vetted library file as the platform does it (`platform::link`). The
//! environment is cleared to an allowlist; what the worker prints goes to the host log.

use std::{
    io::{BufRead, Read},
    path::Path,
    process::{Child, Command},
    sync::Arc,
    time::Duration,
};

use crate::{
    loader::OpenedFile,
    platform::ProcessWatch,
    plugin_log::LogLimits,
    protocol::{FrameReader, FromWorker, SandboxPlan, WorkerArgs, FRAME_OVERHEAD},
    worker::WORKER_FLAG,
};

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
    /// `[timeouts] worker_unread`: how long what the host writes may wait unread.
    pub(crate) unread_limit: Duration,
    /// `[limits] max_reply`: the worker refuses to send a larger reply.
    pub(crate) max_reply: usize,
    /// `[limits] shared_memory_from`: payloads this large or more travel in shared memory.
    pub(crate) shared_memory_from: usize,
    /// `[limits] worker_tasks`: the threads and processes it may run at once (0: any).
    pub(crate) worker_tasks: u32,
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

/// The worker's command line (its link and library are the platform's to add).
pub(super) fn command(spawn: &Spawn<'_>) -> Command {
    let args = WorkerArgs {
        library: spawn.opened.path().to_owned(),
        identity: spawn.opened.identity(),
        log_level: crate::plugin_log::lowest_enabled_level(),
        max_reply: spawn.max_reply,
        shared_memory_from: spawn.shared_memory_from,
        worker_tasks: spawn.worker_tasks,
        sandbox: spawn.sandbox.clone(),
    };
    let mut command = Command::new(spawn.program);
    command
        .arg(WORKER_FLAG)
        .arg(serde_json::to_string(&args).unwrap_or_default())
        .env_clear()
        .envs(crate::platform::child_environment());
    command
}

/// What a worker said when it was ready.
pub(super) struct Hello {
    /// The reader for what follows.
    pub(super) reader: FrameReader,
    /// The process that runs the plugin, as the host sees it.
    pub(super) pid: u32,
    /// What its sandbox enforces; `None` without one.
    pub(super) sandbox: Option<String>,
    /// What ends everything it starts.
    pub(super) fence: String,
}

/// Why a worker never said it was ready; `ended` says how it ended (it is killed).
#[derive(Debug, thiserror::Error)]
pub(super) enum HelloError {
    /// It said nothing within the start timeout.
    #[error("the worker did not open it within {timeout:?} ({ended})")]
    Silent {
        /// The start timeout.
        timeout: Duration,
        /// How it ended.
        ended: String,
    },
    /// It refused: it could not fence itself in or open the library.
    #[error("the worker could not open it: {error}")]
    Refused {
        /// The worker's words.
        error: String,
    },
    /// Its first word was another message.
    #[error("the worker said {said} before it was ready ({ended})")]
    OutOfTurn {
        /// What it said.
        said: String,
        /// How it ended.
        ended: String,
    },
    /// It ended first.
    #[error("the worker ended before it was ready ({ended})")]
    Ended {
        /// How it ended.
        ended: String,
    },
    /// Its first message could not be read.
    #[error("the worker's first message was unreadable: {error} ({ended})")]
    Unreadable {
        /// The reader's error.
        error: std::io::Error,
        /// How it ended.
        ended: String,
    },
}

/// Waits for the worker's words on `reader`: its hello (how it is fenced in, said before
/// the plugin's code runs), then that it opened the library; or why not (its own log
/// records meanwhile go to the host's log). A worker that does not get there within
/// `timeout` is killed.
pub(super) fn await_hello(
    reader: FrameReader,
    process: &ProcessWatch,
    (plugin, limits): (&str, &LogLimits),
    timeout: Duration,
) -> Result<Hello, HelloError> {
    let timed_out = std::sync::atomic::AtomicBool::new(false);
    let (heard, hearing) = std::sync::mpsc::channel::<()>();
    let first = std::thread::scope(|scope| {
        // The watchdog: a worker silent past the timeout is killed, which ends the read.
        let timed_out = &timed_out;
        scope.spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = hearing.recv_timeout(timeout) {
                timed_out.store(true, std::sync::atomic::Ordering::Release);
                process.kill_group();
            }
        });
        // Its hello (fenced in), then its word that the library is open.
        let (reader, hello) = first_word(reader, plugin, limits);
        let (reader, ready) = match hello {
            Ok(Some(FromWorker::Hello { .. })) => first_word(reader, plugin, limits),
            _ => (reader, Ok(None)),
        };
        let _ = heard.send(());
        (reader, hello, ready)
    });
    let ended = || {
        process.kill_group();
        let status = process
            .wait()
            .map_or_else(|err| err.to_string(), crate::platform::describe_status);
        process.reap();
        status
    };
    if timed_out.load(std::sync::atomic::Ordering::Acquire) {
        return Err(HelloError::Silent {
            timeout,
            ended: ended(),
        });
    }
    let (reader, hello, ready) = first;
    let (pid, sandbox, fence) = match hello {
        Ok(Some(FromWorker::Hello {
            pid,
            sandbox,
            fence,
        })) => (pid, sandbox, fence),
        word => return Err(not_ready(word, ended)),
    };
    match ready {
        Ok(Some(FromWorker::Ready)) => Ok(Hello {
            reader,
            pid,
            sandbox,
            fence,
        }),
        word => Err(not_ready(word, ended)),
    }
}

/// How much of an out-of-turn message an error quotes (a frame may be as large as a
/// reply).
const SAID_AT_MOST: usize = 200;

/// How much of a refusal an error quotes (the plugin's constructor can write one too).
const REFUSAL_AT_MOST: usize = 4096;

/// Why `word`, where the worker should have said hello or that it is ready, is not that;
/// the worker is ended (`ended`, which says how).
fn not_ready(
    word: std::io::Result<Option<FromWorker>>,
    ended: impl FnOnce() -> String,
) -> HelloError {
    match word {
        Ok(Some(FromWorker::Refused { error })) => {
            ended();
            HelloError::Refused {
                error: crate::util::shortened(&error, REFUSAL_AT_MOST),
            }
        }
        Ok(Some(other)) => HelloError::OutOfTurn {
            said: crate::util::shortened(format_args!("{other:?}"), SAID_AT_MOST),
            ended: ended(),
        },
        Ok(None) => HelloError::Ended { ended: ended() },
        Err(error) => HelloError::Unreadable {
            error,
            ended: ended(),
        },
    }
}

/// The first message of the worker's that is not one of its own log records, which go
/// to the host's log as they come.
fn first_word(
    mut reader: FrameReader,
    plugin: &str,
    limits: &LogLimits,
) -> (FrameReader, std::io::Result<Option<FromWorker>>) {
    loop {
        match reader.read::<FromWorker>() {
            Ok(Some(FromWorker::WorkerLog {
                level,
                target,
                message,
            })) => {
                if limits.admit_output(plugin) {
                    crate::plugin_log::worker_record(plugin, None, level, &target, &message);
                }
            }
            other => return (reader, other),
        }
    }
}

/// The longest line of a worker's output logged as one record (a longer one is logged in
/// parts).
const MAX_OUTPUT_LINE: u64 = 16 << 10;

/// Copies the worker's stdout and stderr into the host's log, a line a record, each line
/// within the plugin's log rate (`limits`), the rest read and dropped.
pub(super) fn forward_output(child: &mut Child, plugin: &str, pid: u32, limits: &Arc<LogLimits>) {
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
        let (owned, limits) = (plugin.to_owned(), Arc::clone(limits));
        let started = std::thread::Builder::new()
            .name(format!("worker-{pid}-{name}"))
            .spawn(move || {
                let mut reader = std::io::BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match (&mut reader).take(MAX_OUTPUT_LINE).read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if !limits.admit_output(&owned) => continue,
                        Ok(_) => {}
                    }
                    let text = String::from_utf8_lossy(&line);
                    let text = crate::names::printable(text.trim_end_matches(['\n', '\r']));
                    tracing::info!(target: "plugin", plugin = %owned, worker = pid, stream = name, "{text}");
                }
            });
        if let Err(err) = started {
            tracing::warn!(plugin, pid, error = %err, "cannot forward the worker's {name}; it is dropped");
        }
    }
}
