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
    /// Request as JSON [default: null]; `-` reads it from standard input, `@FILE` from
    /// FILE (for a request too large or awkward for the command line).
    json: Option<String>,
    /// The method streams: print each item as it arrives, one per line, until the stream
    /// ends (or Ctrl-C).
    #[arg(long)]
    stream: bool,
}

pub(crate) async fn run(global: &GlobalArgs, args: CallArgs) -> CliResult {
    let mut config = global.config()?;
    // One call: the directory is read once, and only what the call needs starts.
    config.host.watch = WatchMode::Off;
    let input = request(args.json.as_deref())?;
    crate::keep_standard_output();
    let host = Host::builder(config).with_eager(false).start().await?;
    if args.stream {
        let result = print_stream(&host, &args, input).await;
        host.shutdown().await;
        result?;
        return Ok(ExitCode::SUCCESS);
    }
    let result = host.call(&args.component, &args.method, input).await;
    host.shutdown().await;
    let output = result?;
    match serde_json::from_slice::<serde_json::Value>(&output) {
        Ok(value) => say!("{}", serde_json::to_string_pretty(&value)?),
        // Not JSON: the answer as it is, as a stream's items are (the answer is what the
        // operator asked for; what the host itself prints is made safe for a terminal).
        Err(_) => {
            crate::write_out(&output);
            crate::write_out(b"\n");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The request's bytes, checked to be JSON: the argument itself, standard input for `-`,
/// or a file for `@FILE`; `null` without one.
fn request(argument: Option<&str>) -> Result<Vec<u8>, Failure> {
    let (text, from) = match argument {
        None => return Ok(b"null".to_vec()),
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the request from standard input")
                .map_err(Failure::usage)?;
            (text, "the request on standard input".to_owned())
        }
        Some(path) if path.starts_with('@') => {
            let path = &path[1..];
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the request from {path}"))
                .map_err(Failure::usage)?;
            (text, format!("the request in {path}"))
        }
        Some(text) => (text.to_owned(), "the request argument".to_owned()),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|err| {
            let shown = plugin_host::shortened(&text, 200);
            anyhow::anyhow!("{from} is not valid JSON ({err}): {shown}")
        })
        .map_err(Failure::usage)?;
    Ok(serde_json::to_vec(&value).map_err(anyhow::Error::from)?)
}

/// Prints the items of a stream as they arrive, one per line.
async fn print_stream(host: &Host, args: &CallArgs, input: Vec<u8>) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let mut items = host.stream(&args.component, &args.method, input).await?;
    loop {
        let item = tokio::select! {
            item = items.next() => item,
            _ = tokio::signal::ctrl_c() => break,
        };
        match item {
            Some(Ok(item)) => {
                let written =
                    crate::try_write_out(&item).and_then(|()| crate::try_write_out(b"\n"));
                match written {
                    Ok(()) => {}
                    // The reader went (`| head`): the stream ends, and that is no error.
                    Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => break,
                    Err(err) => return Err(err.into()),
                }
            }
            Some(Err(err)) => return Err(err.into()),
            None => break,
        }
    }
    Ok(())
}
