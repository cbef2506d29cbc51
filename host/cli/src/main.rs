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
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_all(bytes).and_then(|()| out.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        say_err!("error: cannot write to standard output: {err}");
        std::process::exit(1);
    }
}

mod commands;

use std::process::ExitCode;

fn main() -> ExitCode {
    // A re-executed scanner or worker never reaches argument parsing.
    plugin_host::run_child_if_requested();
    commands::main()
}
