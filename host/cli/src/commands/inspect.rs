//! `plugin-host inspect FILE`: one file's manifest and compatibility verdict.

use std::{path::PathBuf, process::ExitCode};

use plugin_host::{format_bytes, Discovery};

use super::{CliResult, GlobalArgs, EXIT_FAILURE};

#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// The plugin library to inspect.
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(global: &GlobalArgs, args: InspectArgs) -> CliResult {
    let config = global.config()?;
    // Vetted and scanned in a subprocess like any other, without the registry cache.
    let scanned = Discovery::new(".")
        .with_cache_dir(None)
        .with_scan_timeout(config.host.scan_timeout)
        .with_trust(super::trust(&config)?)
        .scan_file(&args.file)
        .await;
    let outcome = &scanned.outcome;
    if args.json {
        let value = scanned.verdict();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match outcome {
            Ok(info) => {
                println!("{}: usable", args.file.display());
                println!("  plugin:      {} {}", info.name, info.version);
                if !info.description.is_empty() {
                    println!("  description: {}", info.description);
                }
                println!(
                    "  plugin-api:  {} (host: {})",
                    info.api_version,
                    plugin_host::plugin_api::API_VERSION
                );
                for component in &info.components {
                    println!("  component {}", component.name);
                    if !component.dependencies.is_empty() {
                        println!("    depends on:      {}", component.dependencies.join(", "));
                    }
                    println!(
                        "    memory estimate: {}",
                        format_bytes(component.memory_estimate)
                    );
                    println!("    priority:        {}", component.priority);
                    if let Some(timeout) = component.init_timeout {
                        println!(
                            "    init timeout:    {}",
                            humantime::format_duration(timeout)
                        );
                    }
                }
            }
            Err(err) => println!("{}: not usable\n  {err}", args.file.display()),
        }
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}
