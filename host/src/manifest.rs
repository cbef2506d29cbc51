//! The host's own, serialisable view of a plugin's manifest.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a plugin file provides, as read by the scanner and kept in the registry cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// The plugin-api version the plugin was built against.
    pub api_version: String,
    /// The components it provides.
    pub components: Vec<ComponentInfo>,
}

/// One component a plugin declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Component name.
    pub name: String,
    /// Components it needs, initialised before it.
    pub dependencies: Vec<String>,
    /// Declared memory use in bytes.
    pub memory_estimate: u64,
    /// 0 (most important) to 100.
    pub priority: u8,
    /// Declared init timeout, if any.
    #[serde(with = "crate::util::opt_millis", default)]
    pub init_timeout: Option<Duration>,
}

impl PluginInfo {
    /// Converts the FFI manifest and checks it, naming the first problem found.
    pub(crate) fn from_ffi(
        manifest: plugin_api::Manifest,
        api_version: String,
    ) -> Result<Self, String> {
        let info = Self {
            name: manifest.name.into_string(),
            version: manifest.version.into_string(),
            description: manifest.description.into_string(),
            api_version,
            components: manifest
                .components
                .into_iter()
                .map(|decl| ComponentInfo {
                    name: decl.name.into_string(),
                    dependencies: decl
                        .dependencies
                        .into_iter()
                        .map(|d| d.into_string())
                        .collect(),
                    memory_estimate: decl.memory_estimate,
                    priority: decl.priority,
                    init_timeout: decl
                        .init_timeout_ms
                        .into_option()
                        .map(Duration::from_millis),
                })
                .collect(),
        };
        info.validate()?;
        Ok(info)
    }

    fn validate(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!(
                "plugin name `{}` is not valid: {NAME_RULE}",
                self.name
            ));
        }
        if self.components.is_empty() {
            return Err(format!("plugin `{}` declares no components", self.name));
        }
        let mut seen = std::collections::HashSet::new();
        for component in &self.components {
            if !valid_name(&component.name) {
                return Err(format!(
                    "component name `{}` is not valid: {NAME_RULE}",
                    component.name
                ));
            }
            if !seen.insert(component.name.as_str()) {
                return Err(format!("component `{}` is declared twice", component.name));
            }
            if component.priority > 100 {
                return Err(format!(
                    "component `{}` has priority {}; priorities run from 0 to 100",
                    component.name, component.priority
                ));
            }
            if component.dependencies.contains(&component.name) {
                return Err(format!("component `{}` depends on itself", component.name));
            }
        }
        Ok(())
    }
}

const NAME_RULE: &str = "use 1-64 characters of a-z, 0-9, `-`, `_` or `.`";

/// Whether `name` is a usable plugin or component name.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}
