//! `plugin-host inspect TARGET`: one plugin's manifest and compatibility verdict, by file,
//! plugin name or component name.

use std::{path::PathBuf, process::ExitCode};

use anyhow::anyhow;
use plugin_host::{format_bytes, ComponentInfo, DiscoveredPlugin, PluginInfo};
use plugin_host_oci::{Credentials, Platform, Registry};

use super::{discovery, signature_words, CliResult, Failure, GlobalArgs, EXIT_FAILURE};

#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// A plugin library file, the name of a plugin or a component in the plugins
    /// directory, or an artifact: `oci://HOST:PORT/REPO:TAG` (or `@sha256:...`) or
    /// `oci-layout:DIR:TAG`, read without pulling its library.
    target: std::ffi::OsString,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Plain HTTP for an `oci://` registry on loopback.
    #[arg(long)]
    insecure: bool,
    /// How long an `oci://` registry may stay silent before the command fails.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::artifact::registry_timeout)]
    timeout: std::time::Duration,
}

pub(crate) async fn run(global: &GlobalArgs, args: InspectArgs) -> CliResult {
    let config = global.config()?;
    // A file's name may be any bytes; a reference or a name is text.
    let target = args.target.to_string_lossy().into_owned();
    if target.starts_with("oci://") || target.starts_with("oci-layout:") {
        return inspect_artifact(&config, &target, &args).await;
    }
    let path = PathBuf::from(&args.target);
    let (plugin, component) = match std::fs::metadata(&path) {
        Ok(found) if found.is_dir() => {
            return Err(Failure::usage(anyhow!(
                "`{}` is a directory; inspect takes one plugin file, or a plugin or component name (`plugin-host list --plugins-dir {}` lists a directory's plugins)",
                target,
                target
            )))
        }
        // Any other file (a pipe or a device too: vetting refuses them unopened) is
        // vetted and scanned in a subprocess like any other, bypassing the registry cache.
        Ok(_) => (discovery(&config)?.scan_file(&path).await, None),
        Err(_) => find(&discovery(&config)?.discover().await?, &target)?,
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&plugin.verdict())?);
    } else {
        match &plugin.outcome {
            Ok(info) => print_info(&plugin, info, component.as_deref()),
            Err(err) => say!("{}: not usable\n  {err}", plugin.path.display()),
        }
    }
    Ok(if plugin.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

/// The plugin named `name`, or the one providing component `name` (and that component).
fn find(
    catalog: &plugin_host::Catalog,
    name: &str,
) -> Result<(DiscoveredPlugin, Option<String>), Failure> {
    for (plugin, info) in catalog.usable() {
        if info.name == name {
            return Ok((plugin.clone(), None));
        }
        if info.components.iter().any(|c| c.name == name) {
            return Ok((plugin.clone(), Some(name.to_owned())));
        }
    }
    Err(Failure::usage(anyhow!(
        "`{name}` is neither a file nor a plugin or component in {}; `plugin-host list` shows them",
        catalog.dir.display()
    )))
}

fn print_info(plugin: &DiscoveredPlugin, info: &PluginInfo, only: Option<&str>) {
    say!("{}: usable", plugin.path.display());
    say!("  plugin:      {} {}", info.name, info.version);
    if let Some(source) = &plugin.source {
        say!("  source:      {}", super::source_line(source));
    }
    print_description(info, only);
}

/// What a plugin says of itself: description, plugin-api, sandbox needs, components.
fn print_description(info: &PluginInfo, only: Option<&str>) {
    if !info.description.is_empty() {
        say!("  description: {}", info.description);
    }
    say!("  written for: {}", info.abi);
    match info.abi {
        plugin_host::PluginAbi::Rust => say!(
            "  plugin-api:  {} (this host: {}, loads {})",
            info.api_version,
            plugin_host::plugin_api::API_VERSION,
            plugin_host::loadable_plugin_api()
        ),
        plugin_host::PluginAbi::C => say!(
            "  C ABI:       {} (this host reads {})",
            info.api_version.trim_start_matches("C ABI "),
            plugin_host::loadable_c_abi()
        ),
    }
    let needs = &info.sandbox;
    say!(
        "  sandbox needs: read {}, write {}, connect {}, spawn {}",
        list_or_none(&needs.read),
        list_or_none(&needs.write),
        yes_no(needs.connect),
        yes_no(needs.spawn)
    );
    for component in &info.components {
        if only.is_none_or(|name| name == component.name) {
            print_component(component);
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_owned()
    } else {
        items.join(", ")
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

fn print_component(component: &ComponentInfo) {
    say!("  component {}", component.name);
    if !component.dependencies.is_empty() {
        say!("    depends on:      {}", component.dependencies.join(", "));
    }
    say!(
        "    memory estimate: {}",
        format_bytes(component.memory_estimate)
    );
    say!("    priority:        {}", component.priority);
    if let Some(timeout) = component.init_timeout {
        say!(
            "    init timeout:    {}",
            humantime::format_duration(timeout)
        );
    }
    if !component.methods.iter().any(|m| m.calls) {
        say!("    calls:           not declared (any name is passed on)");
    }
    for method in &component.methods {
        let kind = if method.streams { " (stream)" } else { "" };
        if method.description.is_empty() {
            say!("    method {}{kind}", method.name);
        } else {
            say!("    method {}{kind}: {}", method.name, method.description);
        }
        if !method.example.is_empty() {
            say!("      example: {}", method.example);
        }
    }
}

/// `plugin-host inspect oci://REF | oci-layout:DIR:TAG`: what an artifact says of itself
/// (its description, platform, digests, signer), read without pulling its library, with
/// the config's `[trust]` keys.
pub(super) async fn inspect_artifact(
    config: &plugin_host::Config,
    target: &str,
    args: &InspectArgs,
) -> CliResult {
    let origin = if let Some(reference) = target.strip_prefix("oci://") {
        let reference: plugin_host_oci::Reference = reference.parse().map_err(|error| {
            Failure::usage(anyhow!("{reference:?} is not a reference ({error})"))
        })?;
        let registry = Registry::with_timeout(
            &reference,
            args.insecure,
            &Credentials::from_docker_config(),
            args.timeout,
        );
        plugin_host_oci::Origin::Registry {
            registry,
            reference,
        }
    } else {
        let layout = plugin_host::config::SourceConfig {
            oci_layout: target.trim_start_matches("oci-layout:").to_owned(),
            ..plugin_host::config::SourceConfig::default()
        };
        let (dir, tag) = layout.layout();
        plugin_host_oci::Origin::Layout { dir, tag }
    };
    let keys: Vec<_> = config
        .trust
        .keys
        .iter()
        .filter_map(|key| plugin_host_oci::TrustedKey::new(&key.name, &key.public).ok())
        .collect();
    let platform = Platform::host();
    let store = std::env::temp_dir();
    let want = plugin_host_oci::Want {
        platform: &platform,
        keys: &keys,
        require_signature: config.trust.require_signature,
        store: &store,
    };
    let described = plugin_host_oci::describe(&origin, want).await?;
    let info: plugin_host::PluginInfo =
        serde_json::from_slice(&described.description).map_err(|error| {
            anyhow!("{target}: its description is not a plugin description: {error}")
        })?;
    if args.json {
        let view = serde_json::json!({
            "reference": target,
            "digest": described.digest,
            "manifest_digest": described.manifest_digest,
            "platform": described.platform.to_string(),
            "library": {"file": described.file_name, "digest": described.library_digest(), "size": described.library_size()},
            "signed_by": described.signed_by,
            "unsigned_why": described.unsigned_why,
            "plugin": info,
        });
        say!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!("{target}: {} ({})", described.digest, described.platform);
    say!("  plugin:      {} {}", info.name, info.version);
    say!(
        "  library:     {} ({}, {}), not pulled",
        described.file_name,
        plugin_host::format_bytes(described.library_size()),
        described.library_digest()
    );
    say!(
        "  signed:      {}",
        signature_words(
            described.signed_by.as_deref(),
            described.unsigned_why.as_deref()
        )
    );
    print_description(&info, None);
    Ok(ExitCode::SUCCESS)
}
