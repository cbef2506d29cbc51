//! Starting a worker: the process, its link, its first word; then the host's side of it
//! with its reader, reaper and watcher threads.

use std::sync::Arc;

use super::{
    process::{Shared, WorkerProcess},
    spawn::{self, Spawn},
};
use crate::{
    loader::LoadError,
    platform::{PendingLink, ProcessWatch},
    protocol::FrameReader,
};

/// Starts a worker on `spawn.library` and waits until it has opened it.
pub(super) fn launch(spawn: &Spawn<'_>, shared: &Shared) -> Result<Arc<WorkerProcess>, LoadError> {
    let error = |reason: String| LoadError::Worker {
        path: spawn.opened.path().to_owned(),
        reason,
    };
    let mut command = spawn::command(spawn);
    let link = PendingLink::prepare(&mut command, spawn.opened.file())
        .map_err(|err| error(format!("cannot link a worker to the host: {err}")))?;
    let mut child = crate::platform::spawn_child(command)
        .map_err(|err| error(format!("cannot start {}: {err}", spawn.program.display())))?;
    let leader = child.id();
    let process = match ProcessWatch::new(&child) {
        Ok(process) => process,
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error(format!("cannot watch the worker: {err}")));
        }
    };
    let connected = link.connect(&mut child).and_then(|(read, write)| {
        write.give_up_after(spawn.unread_limit)?;
        Ok((read.stopper()?, read, write))
    });
    let (stop, read, write) = match connected {
        Ok(link) => link,
        Err(err) => {
            process.kill_group();
            let _ = process.wait();
            process.reap();
            return Err(error(format!("cannot reach the worker: {err}")));
        }
    };
    spawn::forward_output(&mut child, spawn.plugin, leader, &shared.services.logs);
    // From here on the kernel's word on the process is `process`'s, not `child`'s.
    drop(child);
    let reader = FrameReader::new(read, spawn.max_frame());
    let hello = spawn::await_hello(
        reader,
        &process,
        (spawn.plugin, &shared.services.logs),
        spawn.start_timeout,
    )
    .map_err(|err| error(err.to_string()))?;
    let worker = Arc::new(WorkerProcess::new(
        spawn,
        shared,
        process,
        (write, stop),
        hello,
    ));
    shared.memory.track_process(worker.pid, spawn.plugin);
    if let Err(err) = worker.start_threads() {
        worker.kill("the host could not start its threads for it");
        return Err(error(format!("cannot start the worker's threads: {err}")));
    }
    super::monitor::start(&worker);
    tracing::info!(plugin = %spawn.plugin, pid = worker.pid, "worker started");
    Ok(worker)
}
