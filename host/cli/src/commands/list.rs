//! `plugin-host list`: every plugin file, its status and components; loads no library.

use std::process::ExitCode;

use plugin_host::{Catalog, Config, Isolation};

use super::{discovery, CliResult, GlobalArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(global: &GlobalArgs, args: ListArgs) -> CliResult {
    let config = global.config()?;
    let catalog = discovery(&config)?.discover().await?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&catalog)?);
    } else {
        print_table(&catalog, &config);
        // A source never pulled has no file to list: said, rather than left out unseen.
        let sources = plugin_host::sources::Sources::of(&config);
        for (name, reference) in sources.iter().flat_map(|s| s.unpulled()) {
            say!(
                "\nnote: source `{name}` ({reference}) has nothing pulled yet: `plugin-host check` (or `run`) pulls it"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(catalog: &Catalog, config: &Config) {
    // Files refused before any scan (not a regular file, unreadable, untrusted) came
    // neither from a scan nor from the cache.
    let cached = catalog.plugins.iter().filter(|p| p.cached).count();
    let unscanned = catalog
        .plugins
        .len()
        .saturating_sub(catalog.scanned + cached);
    let refused = if unscanned == 0 {
        String::new()
    } else {
        format!(", {unscanned} refused unscanned")
    };
    say!(
        "plugins in {} ({} scanned, {cached} from cache{refused})",
        catalog.dir.display(),
        catalog.scanned,
    );
    if catalog.plugins.is_empty() {
        say!("  no plugin files (*.{})", std::env::consts::DLL_EXTENSION);
        return;
    }
    // A line break in a file's name would start a row of its own: escaped, as any control.
    let file_name = |p: &std::path::Path| {
        p.file_name().map_or_else(String::new, |n| {
            plugin_host::printable(&n.to_string_lossy()).into_owned()
        })
    };
    let width = catalog
        .plugins
        .iter()
        .map(|p| file_name(&p.path).chars().count()) // as `{:<width$}` pads: by characters
        .max()
        .unwrap_or(4)
        .max(4);
    say!(
        "  {:<width$}  {:<18} {:<8} {:<6} {:<4} COMPONENTS",
        "FILE",
        "PLUGIN",
        "VERSION",
        "STATUS",
        "ABI"
    );
    for plugin in &catalog.plugins {
        let file = file_name(&plugin.path);
        match &plugin.outcome {
            Ok(info) => {
                let components: Vec<String> = info
                    .components
                    .iter()
                    .map(|c| component_column(c, config))
                    .collect();
                let abi = match info.abi {
                    plugin_host::PluginAbi::Rust => "rust",
                    plugin_host::PluginAbi::C => "c",
                };
                say!(
                    "  {file:<width$}  {:<18} {:<8} {:<6} {abi:<4} {}",
                    info.name,
                    info.version,
                    "ok",
                    components.join("; ")
                );
            }
            Err(_) => say!(
                "  {file:<width$}  {:<18} {:<8} {:<6} {:<4} -",
                "-",
                "-",
                "error",
                "-"
            ),
        }
    }
    let sourced: Vec<_> = catalog
        .plugins
        .iter()
        .filter_map(|p| Some((file_name(&p.path), p.source.as_ref()?)))
        .collect();
    if !sourced.is_empty() {
        say!("\n  {:<width$}  SOURCE", "FILE");
        for (file, source) in sourced {
            say!("  {file:<width$}  {}", super::source_line(source));
        }
    }
    for (component, served, unserved) in catalog.provided_twice() {
        say!(
            "\nwarning: component `{component}` is provided by both {} (served) and {} (not served); remove one of them",
            plugin_host::printable(&served.display().to_string()),
            plugin_host::printable(&unserved.display().to_string()),
        );
    }
    let failures: Vec<_> = catalog.failures().collect();
    if !failures.is_empty() {
        say!();
        for failure in failures {
            say!("error: {}", plugin_host::printable(&failure.to_string()));
        }
    }
}

/// One component in the table: its name, `[process]` or `[auto]` when the config isolates
/// it (or may), and
/// what it needs.
fn component_column(component: &plugin_host::ComponentInfo, config: &Config) -> String {
    let mut text = component.name.clone();
    let isolation = config
        .components
        .get(&component.name)
        .map_or(config.host.isolation, |o| {
            o.isolation_or(config.host.isolation)
        });
    match isolation {
        Isolation::Process => text.push_str(" [process]"),
        Isolation::Auto => text.push_str(" [auto]"),
        Isolation::InProcess => {}
    }
    if !component.dependencies.is_empty() {
        text.push_str(&format!(" (needs {})", component.dependencies.join(", ")));
    }
    text
}
