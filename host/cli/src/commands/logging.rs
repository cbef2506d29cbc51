//! Logging setup: `RUST_LOG` filters, `--log-format` picks text or JSON, all on stderr.

use std::io::IsTerminal;

use plugin_host::telemetry::{Telemetry, TelemetryError, TelemetrySettings};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `default_level` applies when `RUST_LOG` is unset (and
/// the `notify` crate's notes on its own watch bookkeeping are left out: what they mean
/// for the plugins directory, live discovery says itself). With
/// `telemetry`, the host's spans are exported too; the pipeline is returned, to be shut
/// down (flushed) before the process ends.
pub(crate) fn init(
    format: LogFormat,
    default_level: &str,
    telemetry: Option<&TelemetrySettings>,
) -> Result<Option<Telemetry>, TelemetryError> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},notify=error")));
    // Each layer filters for itself: the log keeps `RUST_LOG`'s choice, the exporter takes
    // the host's spans whatever the log level.
    let (pipeline, spans) = match telemetry {
        Some(settings) => {
            let (pipeline, layer) = Telemetry::start(settings)?;
            (Some(pipeline), Some(layer))
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(spans);
    match format {
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            registry
                .with(
                    fmt::layer()
                        .with_ansi(ansi)
                        .with_writer(std::io::stderr)
                        .with_filter(filter),
                )
                .init();
        }
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .init(),
    }
    Ok(pipeline)
}
