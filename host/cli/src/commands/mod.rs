//! Command-line interface: argument definitions and dispatch.

mod artifact;
mod call;
mod check;
mod inspect;
mod list;
mod logging;
mod new;
mod run;
mod status;
mod systemd;
mod trust;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use plugin_host::{telemetry::TelemetrySettings, Config, Discovery, Host};

/// `--version`: this binary's version, its plugin-api, and the plugin-api versions it loads.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (plugin-api {}; loads plugins built against plugin-api {}; abi_stable {})",
        env!("CARGO_PKG_VERSION"),
        plugin_host::plugin_api::API_VERSION,
        plugin_host::loadable_plugin_api(),
        plugin_host::plugin_api::ABI_STABLE_VERSION
    )
});

/// Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
pub(crate) const EXIT_FAILURE: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;

/// Hosts native plugins: finds them in a directory, loads each library only when one of
/// its components is first needed, and runs every component under one coordinator.
#[derive(Debug, Parser)]
#[command(name = "plugin-host", version = VERSION.as_str(), about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GlobalArgs {
    /// Configuration file (TOML); see examples/host.toml for every key.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Directory of plugin libraries [default: the config's host.plugins_dir, else ./plugins].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) plugins_dir: Option<PathBuf>,
    /// Registry cache directory [default: host.cache_dir, else $CACHE_DIRECTORY, else
    /// $XDG_CACHE_HOME/plugin-host; on Windows %LOCALAPPDATA%\plugin-host\cache].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Log format on stderr; RUST_LOG sets the filter.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    pub(crate) log_format: logging::LogFormat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List every plugin file with its status and components, without loading any.
    List(list::ListArgs),
    /// Show one plugin file's manifest and whether this host can use it.
    Inspect(inspect::InspectArgs),
    /// Initialise a component (dependencies first), call a method, print the JSON result.
    Call(call::CallArgs),
    /// Validate the config, the plugins and the dependency graph; print every problem.
    Check(check::CheckArgs),
    /// Discover plugins and run until SIGINT or SIGTERM, then stop components in reverse order
    /// (a second signal exits at once, with code 130).
    Run(run::RunArgs),
    /// Show a running host's plugins, components and memory (through its admin API).
    Status(status::StatusArgs),
    /// Manage the plugin builds a `pinned` host trusts: add, list, rm.
    Trust(trust::TrustArgs),
    /// Make a signing key for plugin artifacts; print its public half for `[[trust.keys]]`.
    Keygen(artifact::KeygenArgs),
    /// Pack plugin libraries into an OCI layout directory (an `oci-layout` source).
    Pack(artifact::PackArgs),
    /// Push plugin libraries to an OCI registry as one artifact (an `oci` source).
    Push(artifact::PushArgs),
    /// Write a new plugin crate (one component, one method, a unit test) that builds on
    /// its own.
    New(new::NewArgs),
    /// Print shell completions: `plugin-host completions bash > /etc/bash_completion.d/plugin-host`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `plugin-host man > plugin-host.1`.
    Man,
}

/// An error with the exit code it maps to.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) error: anyhow::Error,
}

impl Failure {
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            code: EXIT_FAILURE,
            error: error.into(),
        }
    }
}

pub(crate) type CliResult = Result<ExitCode, Failure>;

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    };
    let telemetry = match &cli.command {
        Command::Run(_) | Command::Call(_) => match cli.global.telemetry() {
            Ok(settings) => settings,
            Err(failure) => {
                say_err!("error: {}", each_cause_once(&failure.error));
                return ExitCode::from(failure.code);
            }
        },
        _ => None,
    };
    let telemetry = match logging::init(cli.global.log_format, default_level, telemetry.as_ref()) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            say_err!("error: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            say_err!("error: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // Plugin code that hangs must not hold the process open after the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Some(telemetry) = telemetry {
        // The spans still buffered go out before the process ends.
        telemetry.shutdown();
    }
    match result {
        Ok(code) => code,
        Err(failure) => {
            say_err!("error: {}", each_cause_once(&failure.error));
            ExitCode::from(failure.code)
        }
    }
}

async fn dispatch(cli: Cli) -> CliResult {
    let global = cli.global;
    match cli.command {
        Command::List(args) => list::run(&global, args).await,
        Command::Inspect(args) => inspect::run(&global, args).await,
        Command::Call(args) => call::run(&global, args).await,
        Command::Check(args) => check::run(&global, args).await,
        Command::Run(args) => run::run(&global, args).await,
        Command::Status(args) => status::run(&global, args).await,
        Command::Trust(args) => trust::run(&global, args).await,
        Command::New(args) => new::run(args),
        Command::Keygen(args) => artifact::keygen(args),
        Command::Pack(args) => artifact::pack(&global, args).await,
        Command::Push(args) => artifact::push(&global, args).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "plugin-host", &mut script);
            crate::write_out(&script);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            crate::write_out(&page);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Who signed an artifact, in words: `by KEY`, or `by no trusted key (WHY)`.
pub(crate) fn signature_words(signed_by: Option<&str>, unsigned_why: Option<&str>) -> String {
    match (signed_by, unsigned_why) {
        (Some(key), _) => format!("by {key}"),
        (None, Some(why)) => format!("by no trusted key ({why})"),
        (None, None) => "by no trusted key".to_owned(),
    }
}

/// Where a library delivered as an OCI artifact came from, in one line.
pub(crate) fn source_line(source: &plugin_host::sources::SourceRecord) -> String {
    let signed = signature_words(source.signed_by.as_deref(), source.unsigned_why.as_deref());
    format!(
        "{} ({}) {} {}, pulled {}, signed {signed}",
        source.name,
        source.reference,
        source.digest,
        source.platform,
        source.pulled_at_text()
    )
}

/// An error and its causes, each said once: a cause whose words its error already says
/// (errors of other crates often do both) is not said again.
pub(crate) fn each_cause_once(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(text.trim()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

impl GlobalArgs {
    /// Loads the config (file, environment) and applies the command-line flags on top.
    /// Where traces go, from the config's `[telemetry]` and the standard `OTEL_*`
    /// variables; `None` when nowhere. A config that cannot be read says nothing here:
    /// the command itself reports it.
    pub(crate) fn telemetry(&self) -> Result<Option<TelemetrySettings>, Failure> {
        let Ok(config) = Config::load(self.config.as_deref()) else {
            return Ok(None);
        };
        TelemetrySettings::resolve(&config.telemetry, |name| std::env::var(name).ok())
            .map_err(Failure::usage)
    }

    pub(crate) fn config(&self) -> Result<Config, Failure> {
        let mut config = Config::load(self.config.as_deref()).map_err(Failure::usage)?;
        if let Some(dir) = &self.plugins_dir {
            // A flag is relative to where the command runs, never to $STATE_DIRECTORY.
            config.host.plugins_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        }
        if let Some(dir) = &self.cache_dir {
            config.host.cache_dir = dir.clone();
        }
        for warning in &config.warnings {
            tracing::warn!("environment: {warning}");
        }
        Ok(config)
    }
}

/// Discovery as a host of the config runs it (scanning in subprocesses of this binary);
/// a trust file that cannot be read is a configuration error.
pub(crate) fn discovery(config: &Config) -> Result<Discovery, Failure> {
    Host::builder(config.clone())
        .discovery()
        .map_err(Failure::usage)
}
