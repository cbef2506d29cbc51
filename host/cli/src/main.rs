//! The `plugin-host` binary: parse arguments, run, map the outcome to an exit code.

/// `println!`, made safe for a terminal first (`plugin_host::terminal_safe`): what the
/// command line prints may quote what a plugin wrote (its description, its stderr, its
/// errors), and a terminal escape in it must not rewrite what an operator reads.
macro_rules! say {
    () => { println!() };
    ($($arg:tt)*) => { println!("{}", plugin_host::terminal_safe(&format!($($arg)*))) };
}

/// `eprintln!`, made safe for a terminal first, as [`say!`].
macro_rules! say_err {
    ($($arg:tt)*) => { eprintln!("{}", plugin_host::terminal_safe(&format!($($arg)*))) };
}

mod commands;

use std::process::ExitCode;

fn main() -> ExitCode {
    // A re-executed scanner or worker never reaches argument parsing.
    plugin_host::run_child_if_requested();
    commands::main()
}
