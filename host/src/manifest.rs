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

/// What is wrong with a plugin's manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The plugin's name breaks the naming rule.
    #[error("plugin name `{name}` is not valid: {NAME_RULE}")]
    InvalidPluginName {
        /// The name.
        name: String,
    },
    /// The plugin provides nothing.
    #[error("plugin `{plugin}` declares no components")]
    NoComponents {
        /// The plugin.
        plugin: String,
    },
    /// A component's name breaks the naming rule.
    #[error("component name `{name}` is not valid: {NAME_RULE}")]
    InvalidComponentName {
        /// The name.
        name: String,
    },
    /// Two components share a name.
    #[error("component `{name}` is declared twice")]
    DuplicateComponent {
        /// The name.
        name: String,
    },
    /// A priority above 100.
    #[error("component `{component}` has priority {priority}; priorities run from 0 to 100")]
    PriorityOutOfRange {
        /// The component.
        component: String,
        /// The priority it declares.
        priority: u8,
    },
    /// A component lists itself as a dependency.
    #[error("component `{component}` depends on itself")]
    DependsOnItself {
        /// The component.
        component: String,
    },
}

impl PluginInfo {
    /// Converts the FFI manifest and checks it, naming the first problem found.
    pub(crate) fn from_ffi(
        manifest: plugin_api::Manifest,
        api_version: String,
    ) -> Result<Self, ManifestError> {
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

    fn validate(&self) -> Result<(), ManifestError> {
        if !valid_name(&self.name) {
            return Err(ManifestError::InvalidPluginName {
                name: self.name.clone(),
            });
        }
        if self.components.is_empty() {
            return Err(ManifestError::NoComponents {
                plugin: self.name.clone(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for component in &self.components {
            let name = || component.name.clone();
            if !valid_name(&component.name) {
                return Err(ManifestError::InvalidComponentName { name: name() });
            }
            if !seen.insert(component.name.as_str()) {
                return Err(ManifestError::DuplicateComponent { name: name() });
            }
            if component.priority > 100 {
                return Err(ManifestError::PriorityOutOfRange {
                    component: name(),
                    priority: component.priority,
                });
            }
            if component.dependencies.contains(&component.name) {
                return Err(ManifestError::DependsOnItself { component: name() });
            }
        }
        Ok(())
    }
}

/// How plugin, component and lock names are written; every message about a bad name
/// quotes it.
pub(crate) const NAME_RULE: &str = "use 1-64 characters of a-z, 0-9, `-`, `_` or `.`";

/// Whether `name` is a usable plugin or component name.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}
