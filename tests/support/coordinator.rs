//! A coordinator in the test process, over a sandbox's plugins, through the real scanner.

use crate::{build::binary, sandbox::Sandbox};

/// A coordinator configured by `config` (TOML) with every usable plugin of `sandbox`
/// registered, discovered through the real scanner binary, which is also the worker of
/// isolated components.
pub async fn coordinator(sandbox: &Sandbox, config: &str) -> plugin_host::Coordinator {
    let config = plugin_host::Config::from_toml(config).expect("test config");
    let catalog = discover(sandbox).await;
    // Isolated components run in workers of the real binary.
    let coordinator = plugin_host::CoordinatorBuilder::from_config(&config)
        .with_worker_program(binary())
        .build();
    let problems = coordinator.register_catalog(&catalog);
    assert!(problems.is_empty(), "{problems:?}");
    coordinator
}

/// The state of component `name`.
pub fn state(coordinator: &plugin_host::Coordinator, name: &str) -> plugin_host::ComponentState {
    coordinator
        .components()
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.state)
        .unwrap_or_else(|| panic!("no component {name}"))
}

/// The sandbox's plugins, discovered now through the real scanner binary.
pub async fn discover(sandbox: &Sandbox) -> plugin_host::Catalog {
    plugin_host::Discovery::new(sandbox.plugins_dir())
        .with_cache_dir(Some(sandbox.cache_dir()))
        .with_scan_mode(plugin_host::ScanMode::Subprocess(binary()))
        .discover()
        .await
        .expect("discovery")
}
