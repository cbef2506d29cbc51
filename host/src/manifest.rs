//! The host's own, serialisable view of a plugin's manifest.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::{printable, valid_name, NAME_RULE};

/// What a plugin file provides, as read by the scanner and kept in the registry cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// What its code needs in a sandbox, as it declares (nothing for a plugin built
    /// against plugin-api 0.1.0, which cannot declare it).
    #[serde(default)]
    pub sandbox: plugin_api::SandboxNeeds,
    /// What it is written against: plugin-api (Rust) or the C header.
    #[serde(default)]
    pub abi: PluginAbi,
}

/// What a plugin is written against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginAbi {
    /// plugin-api, the Rust SDK (abi_stable).
    #[default]
    Rust,
    /// `plugin_host.h`, the C contract (C, C++ or any language that exports C).
    C,
}

impl std::fmt::Display for PluginAbi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rust => "Rust (plugin-api)",
            Self::C => "C (plugin_host.h)",
        })
    }
}

/// One component a plugin declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The methods it declares; empty when it declares none (then any name is passed on).
    #[serde(default)]
    pub methods: Vec<MethodInfo>,
}

/// One method a component declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodInfo {
    /// The method's name.
    pub name: String,
    /// One line on what it does.
    pub description: String,
    /// An example input (JSON); empty when it takes none.
    pub example: String,
    /// Whether it streams (answers many items), as the plugin declares (since plugin-api
    /// 0.1.1).
    #[serde(default)]
    pub streams: bool,
    /// Whether calls reach it: the manifest declares it. A method only
    /// `Plugin::streams` names is streamed, never called.
    #[serde(default = "calls_by_default")]
    pub calls: bool,
}

fn calls_by_default() -> bool {
    true
}

/// The most components one plugin may declare.
pub(crate) const MAX_COMPONENTS: usize = 256;
/// The most methods one component may declare.
pub(crate) const MAX_METHODS: usize = 256;
/// The most dependencies one component may declare (and paths a plugin's sandbox needs
/// may name to read, and to write).
pub(crate) const MAX_DEPENDENCIES: usize = 64;
/// The longest version, description or method description, in bytes.
pub(crate) const MAX_TEXT: usize = 4096;
/// The longest example input, in bytes.
pub(crate) const MAX_EXAMPLE: usize = 64 << 10;

/// What is wrong with a plugin's manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The plugin's name breaks the naming rule.
    #[error("plugin name `{}` is not valid: {NAME_RULE}", printable(name))]
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
    /// More of something than a plugin may declare: whatever a plugin names is capped
    /// (each component has its own metrics, bulkhead and slot).
    #[error("plugin `{plugin}` declares {what}: {count}, over the most a plugin may declare ({limit}); split it into several plugins or declare less")]
    TooMany {
        /// The plugin.
        plugin: String,
        /// What, and where ("components", "methods of component `x`", ...).
        what: String,
        /// How many it declares (or, for text, how long it is in bytes).
        count: usize,
        /// The most it may.
        limit: usize,
    },
    /// A component's name breaks the naming rule.
    #[error("component name `{}` is not valid: {NAME_RULE}", printable(name))]
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
    /// A dependency's name breaks the naming rule.
    #[error(
        "component `{component}` depends on `{}`, which is not a valid name: {NAME_RULE}",
        printable(dependency)
    )]
    InvalidDependency {
        /// The component.
        component: String,
        /// The name it depends on.
        dependency: String,
    },
    /// A component lists itself as a dependency.
    #[error("component `{component}` depends on itself")]
    DependsOnItself {
        /// The component.
        component: String,
    },
    /// A method name that is empty, too long, or declared twice.
    #[error(
        "component `{component}` declares method `{}` {problem}",
        printable(method)
    )]
    BadMethod {
        /// The component.
        component: String,
        /// The method.
        method: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl PluginInfo {
    /// Marks the streaming methods a plugin's description names (declaring any it did
    /// not declare as methods).
    pub(crate) fn mark_streams(
        &mut self,
        streams: &std::collections::BTreeMap<String, Vec<String>>,
    ) {
        for component in &mut self.components {
            let Some(methods) = streams.get(&component.name) else {
                continue;
            };
            for name in methods {
                match component.methods.iter_mut().find(|m| &m.name == name) {
                    Some(method) => method.streams = true,
                    None => component.methods.push(MethodInfo {
                        name: name.clone(),
                        description: String::new(),
                        example: String::new(),
                        streams: true,
                        calls: false,
                    }),
                }
            }
        }
    }

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
            sandbox: plugin_api::SandboxNeeds::default(),
            abi: PluginAbi::Rust,
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
                    methods: decl
                        .methods
                        .into_iter()
                        .map(|method| MethodInfo {
                            name: method.name.into_string(),
                            description: method.description.into_string(),
                            example: method.example.into_string(),
                            streams: false,
                            calls: true,
                        })
                        .collect(),
                })
                .collect(),
        };
        info.check()?;
        Ok(info)
    }

    /// Its free text (version, descriptions, examples, the paths its sandbox needs) made
    /// safe to print: a plugin could otherwise write a terminal escape or a line break
    /// into what `list` and `inspect` show an operator reviewing it. A one-line field has
    /// its control characters written as escapes; an example (JSON, where a control
    /// character can only be whitespace) has them made spaces.
    pub(crate) fn make_printable(&mut self) {
        fn one_line(text: &mut String) {
            if let std::borrow::Cow::Owned(safe) = printable(text) {
                *text = safe;
            }
        }
        one_line(&mut self.version);
        one_line(&mut self.description);
        one_line(&mut self.api_version);
        for path in self.sandbox.read.iter_mut().chain(&mut self.sandbox.write) {
            one_line(path);
        }
        for method in self.components.iter_mut().flat_map(|c| &mut c.methods) {
            one_line(&mut method.description);
            if method.example.contains(char::is_control) {
                method.example = method.example.replace(char::is_control, " ");
            }
        }
    }

    /// Checks what it declares, naming the first problem found.
    pub(crate) fn check(&self) -> Result<(), ManifestError> {
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
        self.check_sizes()?;
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
            if let Some(bad) = component.dependencies.iter().find(|d| !valid_name(d)) {
                return Err(ManifestError::InvalidDependency {
                    component: name(),
                    dependency: bad.clone(),
                });
            }
            if component.dependencies.contains(&component.name) {
                return Err(ManifestError::DependsOnItself { component: name() });
            }
            component.validate_methods()?;
        }
        Ok(())
    }

    /// Counts and lengths within their caps ([`MAX_COMPONENTS`] and the rest).
    fn check_sizes(&self) -> Result<(), ManifestError> {
        let too_many = |what: String, count: usize, limit: usize| {
            (count > limit).then(|| ManifestError::TooMany {
                plugin: self.name.clone(),
                what,
                count,
                limit,
            })
        };
        let text = |what: &str, text: &str, limit: usize| {
            too_many(format!("a {what} of that many bytes"), text.len(), limit)
        };
        let mut problems = [
            too_many("components".into(), self.components.len(), MAX_COMPONENTS),
            text("version", &self.version, MAX_TEXT),
            text("description", &self.description, MAX_TEXT),
            too_many(
                "paths to read".into(),
                self.sandbox.read.len(),
                MAX_DEPENDENCIES,
            ),
            too_many(
                "paths to write".into(),
                self.sandbox.write.len(),
                MAX_DEPENDENCIES,
            ),
        ]
        .into_iter()
        .flatten()
        .chain(
            (self.sandbox.read.iter().chain(&self.sandbox.write))
                .filter_map(|path| text("sandbox path", path, MAX_TEXT)),
        )
        .chain(self.components.iter().flat_map(|c| {
            let of = |what: &str| format!("{what} of component `{}`", printable(&c.name));
            [
                too_many(of("methods"), c.methods.len(), MAX_METHODS),
                too_many(of("dependencies"), c.dependencies.len(), MAX_DEPENDENCIES),
            ]
            .into_iter()
            .flatten()
            .chain(c.methods.iter().flat_map(move |m| {
                [
                    text("method description", &m.description, MAX_TEXT),
                    text("method example", &m.example, MAX_EXAMPLE),
                ]
                .into_iter()
                .flatten()
            }))
        }));
        problems.next().map_or(Ok(()), Err)
    }
}

impl ComponentInfo {
    fn validate_methods(&self) -> Result<(), ManifestError> {
        let mut seen = std::collections::HashSet::new();
        for method in &self.methods {
            let problem = if method.name.is_empty() || method.name.len() > 128 {
                "with an empty or over-long name (1-128 characters)"
            } else if method.name.contains(char::is_control) {
                "with a control character in its name"
            } else if !seen.insert(method.name.as_str()) {
                "twice"
            } else {
                continue;
            };
            return Err(ManifestError::BadMethod {
                component: self.name.clone(),
                method: method.name.clone(),
                problem,
            });
        }
        Ok(())
    }

    /// Whether a call to `method` may go through: the manifest declares it, or declares
    /// no methods at all and `method` is not one that only streams.
    pub fn accepts(&self, method: &str) -> bool {
        match self.methods.iter().find(|m| m.name == method) {
            Some(found) => found.calls,
            None => !self.methods.iter().any(|m| m.calls),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(components: usize) -> PluginInfo {
        PluginInfo {
            name: "wide".into(),
            components: (0..components)
                .map(|i| ComponentInfo {
                    name: format!("c{i}"),
                    ..ComponentInfo::default()
                })
                .collect(),
            ..PluginInfo::default()
        }
    }

    #[test]
    fn whatever_a_plugin_declares_is_capped_and_the_refusal_names_the_cap() {
        assert_eq!(plugin(MAX_COMPONENTS).check(), Ok(()));
        let wide = plugin(MAX_COMPONENTS + 1).check().unwrap_err().to_string();
        assert!(
            wide.contains("components: 257") && wide.contains("(256)"),
            "{wide}"
        );
        let mut long = plugin(1);
        long.description = "x".repeat(MAX_TEXT + 1);
        let long = long.check().unwrap_err().to_string();
        assert!(
            long.contains("description") && long.contains("4096"),
            "{long}"
        );
        let mut many = plugin(1);
        many.components[0].methods = (0..=MAX_METHODS)
            .map(|i| MethodInfo {
                name: format!("m{i}"),
                description: String::new(),
                example: String::new(),
                streams: false,
                calls: true,
            })
            .collect();
        let many = many.check().unwrap_err().to_string();
        assert!(many.contains("methods of component `c0`"), "{many}");
    }
}
