//! `abi-load-baseline DIR`: the floor of an eager start, for the start bench: opens every
//! library in DIR with abi_stable alone (no host: no scan, no trust check, no
//! coordinator), initialises its root module and reads its manifest. Prints one JSON line:
//! libraries loaded, milliseconds, RSS growth in bytes.

use std::time::Instant;

use plugin_host::plugin_api::{abi_stable::library::lib_header_from_path, ffi::PluginRootRef};

fn rss() -> u64 {
    plugin_host_tests::rss_of(std::process::id())
}

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: abi-load-baseline DIR");
        return std::process::ExitCode::from(2);
    };
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(err) => {
            eprintln!("error: cannot read {dir}: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    files.sort();
    let before = rss();
    let started = Instant::now();
    let mut loaded = 0;
    for file in &files {
        let root = lib_header_from_path(file).and_then(|h| h.init_root_module::<PluginRootRef>());
        match root {
            Ok(root) => {
                if (root.manifest())().is_ok() {
                    loaded += 1;
                }
            }
            Err(err) => eprintln!("{}: {err}", file.display()),
        }
    }
    let millis = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "{{\"loaded\": {loaded}, \"millis\": {millis:.3}, \"rss_growth\": {}}}",
        rss().saturating_sub(before)
    );
    std::process::ExitCode::SUCCESS
}
