//! Process isolation: the same plugin file, run in a worker process the host can kill.
//!
//! This is the host's side: starting, watching, pooling and calling workers. A component
//! with `isolation = "process"` is created and called in a worker process of its library
//! (one per library, shared by its isolated components): this program again, started as
//! the worker program (`worker`), which opens the very file the host vetted (the host
//! hands it over open) with the same abi_stable checks, and serves create / call / drop
//! over a link (on Unix a socket pair each way); the two share only `protocol`. Plugin
//! code there reaches the host's services (logs, metrics, locks, config, dependencies in
//! either mode) through the same link.
//!
//! What isolation buys: an abort, a segfault or an exit in plugin code ends the worker,
//! not the host, and its calls get a [`crate::WorkerFault`] naming the signal or exit
//! code; a call that outlives its timeout gets the worker killed after a grace period; a
//! worker past its `memory_limit` is killed; each worker's RSS counts in the host's
//! memory budget; an idle worker exits after `min_idle`; a changed file is taken up by a
//! new worker while the old one finishes its calls.

mod credits;
mod inbound;
mod instance;
mod launch;
mod life;
mod monitor;
mod pool;
mod process;
mod reading;
mod requests;
mod serve;
mod spawn;
mod turn;
mod watch;

pub(crate) use self::{
    instance::{Bound, Created},
    pool::{PoolSetup, PoolTimes, WorkerPool},
    process::Shared,
    requests::CreateFault,
};
