//! The `plugin-host` binary: parse arguments, run, map the outcome to an exit code.

/// `println!`, made safe for a terminal first (`plugin_host::terminal_safe`): what the
/// command line prints may quote what a plugin wrote (its description, its stderr, its
/// errors), and a terminal escape in it must not rewrite what an operator reads. Written
/// by [`write_out`]: a reader that went away ends the command quietly.
macro_rules! say {
    () => { crate::write_out(b"\n") };
    ($($arg:tt)*) => {
        crate::write_out(format!("{}\n", plugin_host::terminal_safe(&format!($($arg)*))).as_bytes())
    };
}

/// `eprintln!`, made safe for a terminal first, as [`say!`]; a standard error that cannot
/// be written is let be (there is nowhere left to say so).
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{}", plugin_host::terminal_safe(&format!($($arg)*)));
    }};
}

/// Writes `bytes` to standard output. A reader that went away (`plugin-host list | head`)
/// ends the command quietly, with success, as it ends `cat`; another failure (a full
/// disk) ends it saying so. `println!` panicked on either.
pub(crate) fn write_out(bytes: &[u8]) {
    if let Err(err) = try_write_out(bytes) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        say_err!("error: cannot write to standard output: {err}");
        std::process::exit(1);
    }
}

/// Standard output as a command that runs plugin code in process kept it for its own
/// output ([`keep_standard_output`]).
static KEPT_OUT: std::sync::OnceLock<std::sync::Mutex<std::fs::File>> = std::sync::OnceLock::new();

/// Writes `bytes` to standard output (the kept one, if kept), flushed.
pub(crate) fn try_write_out(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    match KEPT_OUT.get() {
        Some(kept) => {
            let mut out = kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            out.write_all(bytes).and_then(|()| out.flush())
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
    }
}

/// Keeps standard output for the command's own output before plugin code runs in this
/// process: what a plugin prints goes to standard error, not into the JSON a script
/// reads. Without a standard output to keep there is nothing to protect.
pub(crate) fn keep_standard_output() {
    if let Ok(kept) = plugin_host::keep_standard_output() {
        let _ = KEPT_OUT.set(std::sync::Mutex::new(kept));
    }
}

mod commands;

use std::process::ExitCode;

fn main() -> ExitCode {
    // A re-executed scanner or worker never reaches argument parsing.
    plugin_host::run_child_if_requested();
    commands::main()
}
