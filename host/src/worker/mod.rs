//! The worker program: what runs inside the child process the host starts for isolated
//! components. It fences itself in (`platform::contain`, then the sandbox if the host
//! asks for one), opens one plugin library with the host's own checks, and serves
//! create / call / drop / stream for the host over the link it inherited
//! (`platform::link`). Plugin code here asks the host for everything a context offers
//! (logs, metrics, locks, dependencies) over the same link; the host answers.
//!
//! The host's side of a worker (starting, watching, pooling, calling it) is
//! `isolation`; the two share only `protocol`.

mod calls;
mod conn;
mod host_api;
mod logs;
mod server;
mod streams;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use parking_lot::Mutex;

use self::{conn::Conn, server::Server};
use crate::{
    executor::PluginExecutor,
    loader::{open_library_at, LoadError, LoadedLibrary, OpenedFile, Via},
    platform::{Containment, LinkRead, LinkWrite},
    protocol::{FrameReader, FrameWriter, FromWorker, ToWorker, WorkerArgs, FRAME_OVERHEAD},
};

/// The first argument that makes a binary a worker: `BINARY --plugin-host-worker ARGS`,
/// linked to its host.
pub(crate) const WORKER_FLAG: &str = "--plugin-host-worker";

/// How long a worker whose host hung up may take to drop its instances before it exits
/// regardless.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The descriptors a worker keeps: standard input, output and error, its link (two
/// sockets on Unix) and its library (`platform::link`); every other one it inherited is
/// closed.
const KEEP_DESCRIPTORS: i32 = 6;

/// Serves as the worker the host started, with `args` (after [`WORKER_FLAG`]) as the
/// host wrote them, and the link and library file it handed over; returns the exit code.
pub(crate) fn serve_host(args: &[std::ffi::OsString]) -> i32 {
    let json = args
        .first()
        .map(|a| a.to_string_lossy())
        .unwrap_or_default();
    let Ok(worker_args) = serde_json::from_str::<WorkerArgs>(&json) else {
        eprintln!(
            "a worker is started by the host for isolated plugins, with its arguments and its link to the host; it is not run by hand"
        );
        return 2;
    };
    // Before anything else (it closes every descriptor but the link and the library):
    // from here on this is the process that runs the plugin.
    let tasks = (worker_args.worker_tasks > 0).then_some(worker_args.worker_tasks);
    let containment = crate::platform::contain(KEEP_DESCRIPTORS, tasks);
    let (read, write, library) = match crate::platform::worker_link(&worker_args.library) {
        Ok(link) => link,
        Err(why) => {
            eprintln!("{why}; a worker is started by the host only");
            return 2;
        }
    };
    serve(read, write, library, &worker_args, &containment)
}

/// Freed memory a worker keeps for reuse: each large payload (a request decoded, a reply
/// encoded) would otherwise fault in new pages.
const KEPT_FREED: usize = 8 << 20;

/// Fences the worker in, opens the library and serves the host on its link; the exit
/// code.
fn serve(
    read: LinkRead,
    write: LinkWrite,
    library: std::fs::File,
    args: &WorkerArgs,
    containment: &Containment,
) -> i32 {
    let max_frame = args.max_reply.saturating_add(FRAME_OVERHEAD);
    crate::platform::keep_freed_memory(KEPT_FREED);
    let conn = Arc::new(Conn::new(
        FrameWriter::new(write, max_frame).sharing_from(args.shared_memory_from),
        args.log_level,
    ));
    logs::forward_to(&conn);
    // The sandbox first: before the library's first instruction, and before this
    // process starts a thread (every thread it starts inherits it). Then the hello, while
    // only this code has run.
    let refuse = |refusal: &dyn std::fmt::Display| {
        conn.send(&FromWorker::Refused {
            error: refusal.to_string(),
        });
        3
    };
    let sandbox = match fence(args, &library, containment) {
        Ok(sandbox) => sandbox,
        Err(refusal) => return refuse(&refusal),
    };
    conn.send(&FromWorker::Hello {
        pid: crate::platform::pid_for_host(),
        sandbox,
        fence: containment.fence.clone(),
    });
    let library = match open(library, args) {
        Ok(library) => Arc::new(library),
        Err(refusal) => return refuse(&refusal),
    };
    conn.send(&FromWorker::Ready);
    let server = Arc::new(Server {
        conn,
        library,
        instances: Arc::default(),
        executor: PluginExecutor::new(),
        max_reply: args.max_reply,
        streams: Arc::default(),
        calls: Arc::default(),
    });
    let reading = Arc::new(SharedReader::new(FrameReader::new(read, max_frame)));
    // A second reader: while one thread runs a call it read, the other reads on.
    let (second, shared) = (Arc::clone(&server), Arc::clone(&reading));
    if let Err(err) = std::thread::Builder::new()
        .name("link".into())
        .spawn(move || serve_link(&second, &shared))
    {
        tracing::warn!(error = %err, "cannot start a second link reader; calls run on plugin threads");
    }
    serve_link(&server, &reading)
}

/// Reads the host's messages and serves each, with the other threads that do: one reads
/// at a time (the leader); a call it reads it runs itself when another thread waits to
/// read on (a follower, which the leader's release wakes), so a call costs the worker one
/// wake-up, not two. Otherwise the call goes to a plugin thread. Ends the process when the
/// host hangs up.
fn serve_link(server: &Server, reading: &SharedReader) -> ! {
    loop {
        reading.followers.fetch_add(1, Ordering::AcqRel);
        let mut reader = reading.reader.lock();
        reading.followers.fetch_sub(1, Ordering::AcqRel);
        let Ok(Some(message)) = reader.read::<ToWorker>() else {
            // The lock stays held: no one reads past the end.
            host_hung_up(server);
        };
        let here = matches!(message, ToWorker::Call { .. })
            && reading.followers.load(Ordering::Acquire) > 0;
        drop(reader);
        server.handle(message, here);
    }
}

/// The worker's end of the link, shared by the threads that read it in turn.
struct SharedReader {
    reader: Mutex<FrameReader>,
    /// How many threads wait to read next.
    followers: AtomicUsize,
}

impl SharedReader {
    fn new(reader: FrameReader) -> Self {
        Self {
            reader: Mutex::new(reader),
            followers: AtomicUsize::new(0),
        }
    }
}

/// The host hung up: drop every instance (their `Drop` runs), then leave; if a drop
/// hangs, leave anyway. Whatever the plugin started ends with the worker.
fn host_hung_up(server: &Server) -> ! {
    let _ = std::thread::Builder::new().spawn(|| {
        std::thread::sleep(EXIT_GRACE);
        crate::platform::leave(4);
    });
    server.drop_all();
    crate::platform::leave(0)
}

/// Why a worker refuses to serve: it could not fence itself in, or open its library.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// The sandbox the host asked for could not be entered.
    #[error("its sandbox could not be set up: {0}")]
    Sandbox(#[from] crate::platform::SandboxRefused),
    /// A user namespace handed it capabilities it could not drop.
    #[cfg(unix)]
    #[error("the capabilities of its user namespace could not be dropped: {0}")]
    Capabilities(crate::platform::SetupError),
    /// The library is not the vetted one, or cannot be opened.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Enters the sandbox the host asked for, if any (what it enforces), and drops the
/// capabilities a user namespace handed this process in any case.
fn fence(
    args: &WorkerArgs,
    library: &std::fs::File,
    containment: &Containment,
) -> Result<Option<String>, Refusal> {
    match &args.sandbox {
        Some(plan) => Ok(Some(crate::platform::enter_sandbox(plan, &[library])?)),
        None => {
            if containment.gained_capabilities {
                drop_gained_capabilities()?;
            }
            Ok(None)
        }
    }
}

#[cfg(unix)]
fn drop_gained_capabilities() -> Result<(), Refusal> {
    crate::platform::drop_capabilities()
        .map(drop)
        .map_err(Refusal::Capabilities)
}

#[cfg(not(unix))]
fn drop_gained_capabilities() -> Result<(), Refusal> {
    Ok(())
}

fn open(file: std::fs::File, args: &WorkerArgs) -> Result<LoadedLibrary, Refusal> {
    let opened = OpenedFile::from_file(file, &args.library)?;
    opened.expect_identity(args.identity)?;
    // SAFETY: this process exists to take that risk: the host isolates it. It maps this
    // library alone, through the descriptor (a sandbox may forbid writing a link).
    #[allow(unsafe_code)]
    Ok(unsafe { open_library_at(&opened, Via::Descriptor) }?)
}
