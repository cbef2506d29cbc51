//! The `plugin-host` binary: parse arguments, run, map the outcome to an exit code.

mod commands;

use std::process::ExitCode;

fn main() -> ExitCode {
    // A re-executed scanner or worker never reaches argument parsing.
    plugin_host::run_child_if_requested();
    commands::main()
}
