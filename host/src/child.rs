//! The host's own child processes: scanners and isolation workers are this program again,
//! started with a flag that says which. [`run_child_if_requested`] at the top of `main`
//! turns the process into the child it was started as; any program embedding the host
//! calls it, so its own executable can serve as scanner and worker.

use std::ffi::OsString;

use crate::{discovery::scanner, worker};

/// If this process was started as one of the host's children, serves as that child and
/// exits; otherwise returns at once and does nothing.
///
/// - `PROGRAM --plugin-host-scan FILE...` ([`crate::discovery::SCAN_FLAG`]): scans the
///   files, prints one result line each, exits.
/// - `PROGRAM --plugin-host-worker ARGS` (with the host's socket and the vetted library
///   as descriptors): serves isolated components until the host hangs up, then exits.
///
/// Call it first in `main`, before threads, a runtime or logging start: a child needs
/// none of the embedding program's own set-up.
pub fn run_child_if_requested() {
    let mut args = std::env::args_os().skip(1);
    let Some(flag) = args.next() else {
        return;
    };
    let rest: Vec<OsString> = args.collect();
    if flag == scanner::SCAN_FLAG {
        std::process::exit(scanner::serve(&rest));
    }
    if flag == worker::WORKER_FLAG {
        std::process::exit(worker::serve_host(&rest));
    }
}
