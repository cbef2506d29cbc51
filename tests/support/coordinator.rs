//! Hosts in the test process, over a sandbox's plugins, through the real scanner: built
//! by [`plugin_host::Host`] as the binary and embedders build them.

use crate::{build::binary, sandbox::Sandbox};

/// A multi-threaded runtime of two workers, as the tests that drive hosts in this process
/// use (the machines CI runs on have two cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A host configured by `config` (TOML) over `sandbox`'s plugins and cache, discovered
/// through the real scanner binary, which is also the worker of isolated components.
/// Live discovery is off unless `config` sets `watch`: tests rescan when they mean to.
pub async fn host(sandbox: &Sandbox, config: &str) -> plugin_host::Host {
    let mut parsed = plugin_host::Config::from_toml(config).expect("test config");
    parsed.host.plugins_dir = sandbox.plugins_dir();
    parsed.host.cache_dir = sandbox.cache_dir();
    if !config.contains("watch") {
        parsed.host.watch = plugin_host::WatchMode::Off;
    }
    plugin_host::Host::builder(parsed)
        .with_child_program(binary())
        .start()
        .await
        .expect("the host starts")
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
