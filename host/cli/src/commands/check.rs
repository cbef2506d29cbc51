//! `plugin-host check`: validate config, plugins and the dependency graph; print every
//! problem. Exit 0 clean, 1 problems in plugins or graph, 2 config invalid.

use std::process::ExitCode;

use plugin_host::Host;

use super::{CliResult, Failure, GlobalArgs, EXIT_FAILURE};

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {}

pub(crate) async fn run(global: &GlobalArgs, _args: CheckArgs) -> CliResult {
    let config = global.config()?;
    // The trust file is the config's: a bad one is a configuration error.
    config.trust_policy().map_err(Failure::usage)?;
    say!("config: ok");
    let report = Host::builder(config).check().await?;
    for warning in &report.warnings {
        say!("warning: {}", plugin_host::printable(warning));
    }
    say!(
        "plugins: {} usable of {} in {}",
        report.catalog.usable().count(),
        report.catalog.plugins.len(),
        report.catalog.dir.display()
    );
    say!("components: {}", report.components);
    say!(
        "memory limit: {} ({})",
        plugin_host::format_bytes(report.memory_limit),
        report.memory_limit_source
    );
    if report.problems.is_empty() {
        say!("no problems found");
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &report.problems {
            // One line each: a file name with a line break cannot start a line of its own.
            say!("problem: {}", plugin_host::printable(problem));
        }
        say!("{} problem(s) found", report.problems.len());
        Ok(ExitCode::from(EXIT_FAILURE))
    }
}
