//! `plugin-host call COMPONENT METHOD [JSON]`: initialise, call, print the result.

use std::process::ExitCode;

use anyhow::Context as _;

use super::{coordinator, CliResult, Failure, GlobalArgs};

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
    let config = global.config()?;
    let input = match &args.json {
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(text)
                .with_context(|| format!("the request argument is not valid JSON: {text}"))
                .map_err(Failure::usage)?;
            serde_json::to_vec(&value)?
        }
        None => b"null".to_vec(),
    };
    let (coordinator, _catalog) = coordinator(&config).await?;
    let result = coordinator.call(&args.component, &args.method, input).await;
    coordinator.shutdown(config.timeouts.stop).await;
    let output = result?;
    match serde_json::from_slice::<serde_json::Value>(&output) {
        Ok(value) => println!("{}", serde_json::to_string_pretty(&value)?),
        Err(_) => println!("{}", String::from_utf8_lossy(&output)),
    }
    Ok(ExitCode::SUCCESS)
}
