//! `plugin-host call COMPONENT METHOD [JSON]`: initialise, call, print the result.

use std::process::ExitCode;

use anyhow::Context as _;

use plugin_host::{config::WatchMode, Host};

use super::{CliResult, Failure, GlobalArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct CallArgs {
    /// Component to call.
    component: String,
    /// Method to call.
    method: String,
    /// Request as JSON [default: null].
    json: Option<String>,
}

pub(crate) async fn run(global: &GlobalArgs, args: CallArgs) -> CliResult {
    let mut config = global.config()?;
    // One call: the directory is read once, and only what the call needs starts.
    config.host.watch = WatchMode::Off;
    let input = match &args.json {
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(text)
                .with_context(|| format!("the request argument is not valid JSON: {text}"))
                .map_err(Failure::usage)?;
            serde_json::to_vec(&value)?
        }
        None => b"null".to_vec(),
    };
    let host = Host::builder(config).with_eager(false).start().await?;
    let result = host.call(&args.component, &args.method, input).await;
    host.shutdown().await;
    let output = result?;
    match serde_json::from_slice::<serde_json::Value>(&output) {
        Ok(value) => println!("{}", serde_json::to_string_pretty(&value)?),
        Err(_) => println!("{}", String::from_utf8_lossy(&output)),
    }
    Ok(ExitCode::SUCCESS)
}
