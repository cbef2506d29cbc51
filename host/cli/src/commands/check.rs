//! `plugin-host check`: validate config, plugins and the dependency graph; print every
//! problem. Exit 0 clean, 1 problems in plugins or graph, 2 config invalid.

use std::process::ExitCode;

use plugin_host::CoordinatorBuilder;

use super::{discovery, CliResult, GlobalArgs, EXIT_FAILURE};

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {}

pub(crate) async fn run(global: &GlobalArgs, _args: CheckArgs) -> CliResult {
    let config = global.config()?;
    println!("config: ok");
    let catalog = discovery(&config)?.discover().await?;
    let mut problems: Vec<String> = catalog.failures().map(ToString::to_string).collect();
    let coordinator = CoordinatorBuilder::from_config(&config).build();
    problems.extend(
        coordinator
            .register_catalog(&catalog)
            .iter()
            .map(ToString::to_string),
    );
    problems.extend(coordinator.validate().iter().map(ToString::to_string));
    for name in coordinator.overrides_without_component() {
        println!(
            "warning: config has [components.{name}], but no plugin provides a component `{name}`"
        );
    }
    println!(
        "plugins: {} usable of {} in {}",
        catalog.usable().count(),
        catalog.plugins.len(),
        catalog.dir.display()
    );
    println!("components: {}", coordinator.components().len());
    let memory = config.memory.builder().build();
    println!(
        "memory limit: {} ({})",
        plugin_host::format_bytes(memory.limit()),
        memory.limit_source()
    );
    if problems.is_empty() {
        println!("no problems found");
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            println!("problem: {problem}");
        }
        println!("{} problem(s) found", problems.len());
        Ok(ExitCode::from(EXIT_FAILURE))
    }
}
