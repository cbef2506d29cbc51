//! The worker program: what runs inside the child process the host starts for isolated
//! components. It opens one plugin library with the host's own checks and serves
//! create / call / drop / stream for the host over the link it inherited
//! (`platform::link`). Plugin code here asks the host for everything a context offers
//! (logs, metrics, locks, dependencies) over the same link; the host answers.
//!
//! The host's side of a worker (starting, watching, pooling, calling it) is
//! `crate::isolation`; the two share only `crate::protocol`.

mod conn;
mod host_api;
mod server;
mod streams;

use std::sync::Arc;

use self::{conn::Conn, server::Server};
use crate::{
    executor::PluginExecutor,
    loader::{open_library_at, LoadedLibrary, OpenedFile, Via},
    platform::{HostWatch, LinkRead, LinkWrite},
    protocol::{FrameReader, FrameWriter, FromWorker, ToWorker, WorkerArgs, FRAME_OVERHEAD},
};

/// The first argument that makes a binary a worker: `BINARY --plugin-host-worker ARGS`,
/// linked to its host.
pub(crate) const WORKER_FLAG: &str = "--plugin-host-worker";

/// How long a worker whose host hung up may take to drop its instances before it exits
/// regardless.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

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
    let (read, write, library) = match crate::platform::worker_link(&worker_args.library) {
        Ok(link) => link,
        Err(why) => {
            eprintln!("{why}; a worker is started by the host only");
            return 2;
        }
    };
    serve(read, write, library, &worker_args)
}

/// Serves the host on its link; the exit code.
fn serve(read: LinkRead, write: LinkWrite, library: std::fs::File, args: &WorkerArgs) -> i32 {
    let max_frame = args.max_reply.saturating_add(FRAME_OVERHEAD);
    let host = HostWatch::now();
    crate::platform::end_group_when_host_dies();
    let conn = Arc::new(Conn::new(
        FrameWriter::new(write, max_frame),
        args.log_level,
    ));
    // The sandbox first: before the library's first instruction, and before this
    // process starts a thread (every thread it starts inherits it).
    let sandbox = match &args.sandbox {
        None => None,
        Some(plan) => match crate::platform::enter_sandbox(plan, &library) {
            Ok(applied) => Some(applied),
            Err(why) => {
                conn.send(&FromWorker::Refused {
                    error: format!("its sandbox could not be set up: {why}"),
                });
                return 3;
            }
        },
    };
    let library = match open(library, args) {
        Ok(library) => Arc::new(library),
        Err(error) => {
            conn.send(&FromWorker::Refused { error });
            return 3;
        }
    };
    conn.send(&FromWorker::Hello {
        pid: std::process::id(),
        plugin: library.info().clone(),
        sandbox,
    });
    let server = Server {
        conn,
        library,
        instances: Arc::default(),
        executor: PluginExecutor::new(),
        max_reply: args.max_reply,
        streams: Arc::default(),
    };
    let mut reader = FrameReader::new(read, max_frame);
    while let Ok(Some(message)) = reader.read::<ToWorker>() {
        server.handle(message);
    }
    // The host hung up: drop every instance (their `Drop` runs), then leave; if a drop
    // hangs, leave anyway. A host that asked this worker to stop reaps it and whatever it
    // started; a host that died cannot, so the worker ends its own process group, and
    // with it what its plugin started.
    let _ = std::thread::Builder::new().spawn(move || {
        std::thread::sleep(EXIT_GRACE);
        leave(&host, 4);
    });
    server.drop_all();
    leave(&host, 0)
}

/// Exits with `code`; if the host is gone, takes what this worker started down first.
fn leave(host: &HostWatch, code: i32) -> i32 {
    if host.host_gone() {
        host.end_own_group();
    }
    std::process::exit(code)
}

fn open(file: std::fs::File, args: &WorkerArgs) -> Result<LoadedLibrary, String> {
    let opened = OpenedFile::from_file(file, &args.library).map_err(|err| err.to_string())?;
    opened
        .expect_identity(args.identity)
        .map_err(|err| err.to_string())?;
    // SAFETY: this process exists to take that risk: the host isolates it. It maps this
    // library alone, through the descriptor (a sandbox may forbid writing a link).
    #[allow(unsafe_code)]
    unsafe { open_library_at(&opened, Via::Descriptor) }.map_err(|err| err.to_string())
}
