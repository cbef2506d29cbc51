//! Support for the end-to-end tests, one concern a module: the built binary and
//! libraries, sandboxes, loader traces, reading output, isolated tests, a running host
//! with its admin API and its metrics, coordinators in the test process, and the benches' ratio printing.

mod build;
mod coordinator;
mod generate;
mod host;
mod isolated;
pub mod metrics;
mod otlp;
mod output;
mod process;
pub mod ratio;
mod registry;
mod sandbox;
mod trace;
mod wait;

pub use self::{
    build::{binary, c_plugin, compat_dir, library, library_file_name, target_dir},
    coordinator::{discover, host, runtime, state},
    generate::{generate_plugins, generated_name},
    host::RunningHost,
    isolated::isolated,
    otlp::{OtlpReceiver, ReceivedSpan},
    output::{error_chain, listed, stdout_json, success_stdout},
    process::{alive, descendants, rss_of, running_as_root},
    registry::TestRegistry,
    sandbox::Sandbox,
    trace::LoadTrace,
    wait::{wait_for, wait_for_async, DEADLINE},
};

/// The user a test runs an unprivileged host as, when it runs as root: one with no name,
/// and not `nobody`, whose id (65534) is also the id a user namespace shows for an
/// unmapped one, so a host run as `nobody` hides ids mapped from the wrong side.
pub const UNPRIVILEGED_UID: u32 = 4242;
