//! The registry of components: registering them (one, or a whole catalog in one batch),
//! and following the plugins directory as it changes.
//!
//! The slot map is copy-on-write, so a batch builds the next map once, whatever its size:
//! registering N components costs O(N), not one copy of the map per component.
//!
//! When the directory changes, a new catalog is compared with the last one, file by file:
//! a new usable file's components are registered; a removed or changed file whose library
//! was never loaded has its components unregistered (and a changed one's registered
//! anew); a file whose library is loaded keeps its components running, marked `gone` or
//! `changed` (a restart upgrades it: a library cannot be unloaded).

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
};

use serde::Serialize;

use super::{
    graph,
    provider::{AutoProvider, PluginProvider, Provider},
    slot::{FileState, Slot, SlotState},
    ComponentSpec, Coordinator, GetError, RegisterError,
};
use crate::{
    config::Isolation,
    discovery::{Catalog, DiscoveredPlugin},
    manifest::{ComponentInfo, PluginInfo},
    names::valid_name,
    plugin_log::LogRate,
};

/// What a refresh changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CatalogChanges {
    /// Components registered.
    pub registered: Vec<String>,
    /// Components unregistered (their file went or changed before they were loaded).
    pub unregistered: Vec<String>,
    /// Loaded components whose file is gone.
    pub gone: Vec<String>,
    /// Loaded components whose file changed: a restart upgrades them.
    pub changed: Vec<String>,
    /// Plugins whose worker process is being replaced by one running the new file.
    pub upgraded: Vec<String>,
    /// Components that could not be registered, with why.
    pub problems: Vec<String>,
    /// New or changed files that cannot be used, with why.
    pub failed: Vec<String>,
}

/// One component to register, and the file it comes from.
struct Registration {
    spec: ComponentSpec,
    provider: Arc<dyn Provider>,
    source: Option<PathBuf>,
}

impl Coordinator {
    /// Registers a component.
    ///
    /// # Errors
    ///
    /// [`RegisterError`] for a taken or invalid name, or a dependency cycle (with its path).
    pub fn register(
        &self,
        spec: ComponentSpec,
        provider: Arc<dyn Provider>,
    ) -> Result<(), RegisterError> {
        let registration = Registration {
            spec,
            provider,
            source: None,
        };
        self.register_batch(vec![registration])
            .into_iter()
            .next()
            .map_or(Ok(()), Err)
    }

    /// Registers every component of every usable plugin in `catalog`, and remembers the
    /// catalog as the current one (kept, not copied: a thousand plugins' descriptions).
    /// Returns the problems (duplicates, cycles); everything else is registered.
    pub fn register_catalog(&self, catalog: Catalog) -> Vec<RegisterError> {
        let count = catalog
            .usable()
            .map(|(_, info)| info.components.len())
            .sum();
        let mut registrations = Vec::with_capacity(count);
        for (plugin, info) in catalog.usable() {
            self.registrations(plugin, info, &mut registrations);
        }
        let problems = self.register_batch(registrations);
        self.inner.catalog.store(Arc::new(catalog));
        problems
    }

    /// The catalog of plugin files last registered or refreshed.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalog.load_full()
    }

    /// The error for a component that is not registered: [`GetError::Unusable`] when a
    /// file of the catalog provided it when last scanned and cannot be used now,
    /// otherwise [`GetError::UnknownComponent`].
    pub(crate) fn not_registered(&self, name: &str) -> GetError {
        let catalog = self.inner.catalog.load();
        match catalog.unusable_provider_of(name) {
            Some((path, reason)) => GetError::Unusable {
                name: name.to_owned(),
                path: path.to_owned(),
                reason: Arc::new(reason.clone()),
            },
            None => GetError::UnknownComponent {
                name: name.to_owned(),
                unusable: catalog
                    .plugins
                    .iter()
                    .filter(|plugin| plugin.outcome.is_err())
                    .map(|plugin| plugin.path.clone())
                    .collect(),
            },
        }
    }

    /// Follows a new scan of the plugins directory: registers what appeared, unregisters
    /// what went (or changed) before it was ever loaded, and marks loaded components
    /// whose file went or changed.
    pub fn refresh(&self, catalog: Catalog) -> CatalogChanges {
        let old = self.catalog();
        let mut changes = CatalogChanges::default();
        let before: HashMap<&Path, &DiscoveredPlugin> =
            old.plugins.iter().map(|p| (p.path.as_path(), p)).collect();
        let now: HashMap<&Path, &DiscoveredPlugin> = catalog
            .plugins
            .iter()
            .map(|p| (p.path.as_path(), p))
            .collect();
        let mut registrations = Vec::new();
        for (path, plugin) in &now {
            let mut upgrading = false;
            match before.get(path) {
                Some(previous) if same_verdict(previous, plugin) => continue,
                Some(_) => {
                    upgrading = self.upgrade_isolated(path, plugin, &mut changes);
                    self.retire(path, FileState::Changed, upgrading, &mut changes);
                }
                None => {}
            }
            if let Err(err) = &plugin.outcome {
                changes.failed.push(err.to_string());
            }
            if let Ok(info) = &plugin.outcome {
                let slots = self.inner.slots.load();
                let still_running = slots
                    .values()
                    .any(|slot| slot.source.as_deref() == Some(*path));
                if !still_running {
                    self.registrations(plugin, info, &mut registrations);
                } else if upgrading {
                    // The new build may bring components the old one lacked.
                    let mut all = Vec::new();
                    self.registrations(plugin, info, &mut all);
                    registrations.extend(
                        all.into_iter()
                            .filter(|r| !slots.contains_key(&r.spec.name)),
                    );
                }
            }
        }
        for path in before.keys().filter(|path| !now.contains_key(*path)) {
            self.retire(path, FileState::Gone, false, &mut changes);
        }
        changes.registered = registrations.iter().map(|r| r.spec.name.clone()).collect();
        for problem in self.register_batch(registrations) {
            changes.problems.push(problem.to_string());
        }
        changes
            .registered
            .retain(|name| self.inner.slots.load().contains_key(name));
        self.inner.catalog.store(Arc::new(catalog));
        changes
    }

    /// A file went or changed: unregister its components if its library was never
    /// loaded, else mark them. With `keep_isolated`, its isolated components are left
    /// alone: their worker is being upgraded.
    fn retire(
        &self,
        path: &Path,
        state: FileState,
        keep_isolated: bool,
        changes: &mut CatalogChanges,
    ) {
        let slots = self.inner.slots.load_full();
        let from_file: Vec<&Arc<Slot>> = slots
            .values()
            .filter(|slot| slot.source.as_deref() == Some(path))
            .filter(|slot| !keep_isolated || slot.provider.isolation() == Isolation::InProcess)
            .collect();
        if from_file.is_empty() {
            return;
        }
        let loaded = self.inner.loader.is_loaded(path)
            || from_file
                .iter()
                .any(|slot| !matches!(*slot.state.lock(), SlotState::Registered));
        if loaded {
            for slot in from_file {
                slot.file_state.store(state as u8, Ordering::Release);
                let list = match state {
                    FileState::Gone => &mut changes.gone,
                    _ => &mut changes.changed,
                };
                list.push(slot.name().to_owned());
            }
            return;
        }
        let names: HashSet<String> = from_file.iter().map(|s| s.name().to_owned()).collect();
        let _guard = self.inner.registry_lock.lock();
        let current = self.inner.slots.load_full();
        let mut next = HashMap::clone(&current);
        next.retain(|name, _| !names.contains(name));
        self.inner.slots.store(Arc::new(next));
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        changes.unregistered.extend(names);
    }

    /// The registrations of one usable plugin file's components, overrides applied,
    /// added to `into`.
    fn registrations(
        &self,
        plugin: &DiscoveredPlugin,
        info: &PluginInfo,
        into: &mut Vec<Registration>,
    ) {
        let registrations = info
            .components
            .iter()
            .filter(|component| {
                let disabled = !self.inner.plans.component(&component.name).enabled;
                if disabled {
                    tracing::info!(component = %component.name, "component disabled in the config");
                }
                !disabled
            })
            .filter_map(|component| {
                let in_process = || -> Arc<dyn Provider> {
                    Arc::new(PluginProvider {
                        path: plugin.path.clone(),
                        identity: plugin.identity,
                        sha256: plugin.sha256.clone(),
                        loader: Arc::clone(&self.inner.loader),
                        memory: self.inner.memory.clone(),
                        services: Arc::clone(&self.inner.services),
                    })
                };
                let isolated = || match self.worker_provider(plugin, info, &component.name) {
                    Ok(provider) => Some(provider),
                    Err(problem) => {
                        tracing::error!("{problem}; the component is not registered");
                        None
                    }
                };
                let provider: Arc<dyn Provider> = match self.isolation_of(&component.name) {
                    Isolation::InProcess => in_process(),
                    Isolation::Process => isolated()?,
                    Isolation::Auto => Arc::new(AutoProvider {
                        in_process: in_process(),
                        isolated: isolated()?,
                        moved: parking_lot::Mutex::new(None),
                    }),
                };
                Some(Registration {
                    spec: self.spec_of(&info.name, component),
                    provider,
                    source: Some(plugin.path.clone()),
                })
            });
        into.extend(registrations);
    }

    /// A plugin component's spec, its plan over its manifest.
    fn spec_of(&self, plugin: &str, component: &ComponentInfo) -> ComponentSpec {
        let plan = self.inner.plans.component(&component.name);
        ComponentSpec {
            name: component.name.clone(),
            plugin: Some(plugin.to_owned()),
            dependencies: component.dependencies.clone(),
            memory_estimate: plan.memory_estimate.unwrap_or(component.memory_estimate),
            priority: plan.priority.unwrap_or(component.priority),
            init_timeout: plan.timeout.or(component.init_timeout),
            methods: method_names(&component.methods, |m| m.calls),
            streams: method_names(&component.methods, |m| m.streams),
        }
    }

    /// Registers `registrations` with one copy of the slot map; returns what failed.
    fn register_batch(&self, registrations: Vec<Registration>) -> Vec<RegisterError> {
        let _guard = self.inner.registry_lock.lock();
        let current = self.inner.slots.load_full();
        let mut next = HashMap::clone(&current);
        next.reserve(registrations.len());
        let mut problems = Vec::new();
        let mut added = Vec::with_capacity(registrations.len());
        let mut logs = Vec::with_capacity(registrations.len());
        for registration in registrations {
            let spec = &registration.spec;
            if !valid_name(&spec.name) {
                problems.push(RegisterError::InvalidName {
                    name: spec.name.clone(),
                });
                continue;
            }
            if let Some(existing) = next.get(&spec.name) {
                problems.push(RegisterError::Duplicate {
                    name: spec.name.clone(),
                    existing: provider_from(
                        existing.spec().provider_label(),
                        existing.source.as_deref(),
                    ),
                    new: provider_from(spec.provider_label(), registration.source.as_deref()),
                });
                continue;
            }
            let name = spec.name.clone();
            added.push(name.clone());
            let (slot, log_rate) = self.slot_for(registration);
            let slot = Arc::new(slot);
            next.insert(name, Arc::clone(&slot));
            logs.push((slot, log_rate));
        }
        self.inner
            .services
            .logs
            .register_all(logs.iter().map(|(slot, rate)| {
                let plugin = slot.spec().plugin.as_deref().unwrap_or_default();
                (plugin, slot.name(), *rate)
            }));
        // Cycles are looked for once, over the whole graph; each one found costs the
        // latest of its members its registration.
        while let Some(path) = find_cycle(&next) {
            let Some(victim) = added.iter().rev().find(|name| path.contains(name)).cloned() else {
                break;
            };
            next.remove(&victim);
            added.retain(|name| *name != victim);
            problems.push(RegisterError::Cycle { path });
        }
        self.inner.slots.store(Arc::new(next));
        problems
    }

    /// The slot of a registration, and the log rate its component is held to.
    fn slot_for(&self, registration: Registration) -> (Slot, LogRate) {
        let spec = registration.spec;
        let config = self.inner.plans.component(&spec.name).config.clone();
        let (limits, log_rate) = self.limits_of(&spec.name);
        let slot = Slot::new(
            spec,
            registration.provider,
            config,
            self.inner.sampler,
            limits,
            registration.source,
        );
        (slot, log_rate)
    }
}

/// A provider for messages, with the file it comes from: two copies of one plugin
/// (`libx.so` and `libx.so.old`, say) have the same name and differ only there.
fn provider_from(label: String, file: Option<&std::path::Path>) -> String {
    match file {
        Some(file) => format!("{label} ({})", file.display()),
        None => label,
    }
}

/// Whether two scans of one path say the same: same file, same usability.
fn same_verdict(a: &DiscoveredPlugin, b: &DiscoveredPlugin) -> bool {
    a.identity == b.identity && a.outcome.is_ok() == b.outcome.is_ok()
}

fn find_cycle(slots: &super::SlotMap) -> Option<Vec<String>> {
    // Every member of a cycle depends on something, so a component that depends on
    // nothing is left out of the search (most are: a start of 1,000 plugins with no
    // dependencies then searches nothing).
    let deps: HashMap<&str, &[String]> = slots
        .values()
        .filter(|slot| !slot.spec().dependencies.is_empty())
        .map(|slot| (slot.name(), slot.spec().dependencies.as_slice()))
        .collect();
    graph::find_cycle(&deps)
}

/// The names of the methods that are `kind` (called, or streamed).
fn method_names(
    methods: &[crate::manifest::MethodInfo],
    kind: impl Fn(&crate::manifest::MethodInfo) -> bool,
) -> Vec<String> {
    methods
        .iter()
        .filter(|m| kind(m))
        .map(|m| m.name.clone())
        .collect()
}
