//! `threaded-embedder PLUGINS_DIR CACHE_DIR`: an embedder's program that starts a thread
//! before it serves as the host's scanner (which `run_child_if_requested` asks programs
//! not to do), so that its scanners cannot fork a child for each library and open
//! libraries themselves. Scans the directory with one scanner at a time and prints the
//! catalog as `plugin-host list --json` does.

use plugin_host::{Config, Host};

fn main() -> std::process::ExitCode {
    let _early = std::thread::spawn(|| loop {
        std::thread::park();
    });
    plugin_host::run_child_if_requested();
    let mut args = std::env::args_os().skip(1);
    let (Some(plugins_dir), Some(cache_dir)) = (args.next(), args.next()) else {
        eprintln!("usage: threaded-embedder PLUGINS_DIR CACHE_DIR");
        return std::process::ExitCode::from(2);
    };
    let mut config = Config::default();
    config.host.plugins_dir = plugins_dir.into();
    config.host.cache_dir = cache_dir.into();
    config.host.scan_concurrency = 1;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let catalog = runtime.block_on(async {
        let discovery = Host::builder(config)
            .discovery()
            .map_err(|err| err.to_string())?;
        discovery.discover().await.map_err(|err| err.to_string())
    });
    match catalog {
        Ok(catalog) => {
            println!(
                "{}",
                serde_json::to_string(&catalog).expect("a catalog in JSON")
            );
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
