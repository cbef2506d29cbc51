//! The description a C plugin gives of itself (`ph_plugin.description`, see
//! `plugin-api/include/plugin_host.h`): one JSON document with what a Rust plugin says in
//! its manifest and its description together.

use std::time::Duration;

use serde::Deserialize;

use crate::manifest::{ComponentInfo, MethodInfo, PluginAbi, PluginInfo};

/// The document's format this host reads.
pub(crate) const FORMAT: u32 = 1;

#[derive(Deserialize)]
struct Document {
    format: u32,
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    sandbox: plugin_api::SandboxNeeds,
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Component {
    name: String,
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default)]
    memory_estimate: u64,
    #[serde(default = "default_priority")]
    priority: u8,
    #[serde(default)]
    init_timeout_ms: Option<u64>,
    #[serde(default)]
    methods: Vec<Method>,
}

#[derive(Deserialize)]
struct Method {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    example: String,
    #[serde(default)]
    stream: bool,
}

fn default_priority() -> u8 {
    plugin_api::DEFAULT_PRIORITY
}

/// A C plugin's description, read: what it provides, and the features it needs.
#[derive(Debug)]
pub(crate) struct Described {
    pub(crate) info: PluginInfo,
    pub(crate) requires: Vec<String>,
}

/// What is wrong with a C plugin's `ph_plugin` or its description.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Invalid {
    /// The entry point returned no table.
    #[error("`plugin_host_c_plugin_v1` returned NULL")]
    NoTable,
    /// The table's leading fields are not set.
    #[error("its ph_plugin says size {size}, abi {abi}: set them to sizeof(ph_plugin) and PLUGIN_HOST_C_ABI")]
    Header {
        /// `ph_plugin.size`.
        size: u32,
        /// `ph_plugin.abi`.
        abi: u32,
    },
    /// A field the contract requires is NULL.
    #[error("its ph_plugin has no {0}")]
    Missing(&'static str),
    /// The description is not UTF-8.
    #[error("its description is not UTF-8")]
    NotUtf8,
    /// The description is not the JSON document the header describes.
    #[error("its description is not readable: {0}")]
    Unreadable(#[from] serde_json::Error),
    /// The description is of another format.
    #[error("its description has format {0}, this host reads format {FORMAT}")]
    Format(u32),
    /// The description breaks a rule every plugin's manifest keeps.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
}

/// Reads a C plugin's description document, built against C ABI `abi`.
///
/// # Errors
///
/// What is wrong with it, naming the key (or the rule it breaks).
pub(crate) fn parse(text: &str, abi: u32) -> Result<Described, Invalid> {
    let document: Document = serde_json::from_str(text)?;
    if document.format != FORMAT {
        return Err(Invalid::Format(document.format));
    }
    let info = PluginInfo {
        name: document.name,
        version: document.version,
        description: document.description,
        api_version: format!("C ABI {abi}"),
        abi: PluginAbi::C,
        sandbox: document.sandbox,
        components: document.components.into_iter().map(component).collect(),
    };
    info.check()?;
    Ok(Described {
        info,
        requires: document.requires,
    })
}

fn component(component: Component) -> ComponentInfo {
    ComponentInfo {
        name: component.name,
        dependencies: component.dependencies,
        memory_estimate: component.memory_estimate,
        priority: component.priority,
        init_timeout: component.init_timeout_ms.map(Duration::from_millis),
        methods: component
            .methods
            .into_iter()
            .map(|method| MethodInfo {
                name: method.name,
                description: method.description,
                example: method.example,
                streams: method.stream,
                calls: !method.stream,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOK: &str = r#"{"format":1,"name":"book","version":"0.1.0","components":[
        {"name":"imbalance","methods":[{"name":"compute"},{"name":"ticks","stream":true}]}]}"#;

    #[test]
    fn a_description_gives_components_and_methods_streaming_or_called() {
        let described = parse(BOOK, 1).expect("readable");
        let info = described.info;
        assert_eq!((info.name.as_str(), info.abi), ("book", PluginAbi::C));
        assert_eq!(info.api_version, "C ABI 1");
        let component = &info.components[0];
        assert_eq!(component.priority, plugin_api::DEFAULT_PRIORITY);
        assert!(component.accepts("compute"));
        assert!(
            !component.accepts("ticks"),
            "a streaming method is not called"
        );
        assert!(component.methods[1].streams);
    }

    #[test]
    fn each_malformed_description_is_refused_naming_what_is_wrong() {
        for (text, expected) in [
            ("", "not readable"),
            ("[]", "not readable"),
            (r#"{"format":1,"name":"x","version":"1"}"#, "components"),
            (
                r#"{"format":2,"name":"x","version":"1","components":[]}"#,
                "format 2",
            ),
            (
                r#"{"format":1,"name":"x","version":"1","components":[]}"#,
                "no components",
            ),
            (
                r#"{"format":1,"name":"Bad Name","version":"1","components":[{"name":"a"}]}"#,
                "`Bad Name`",
            ),
            (
                r#"{"format":1,"name":"x","version":"1","components":[{"name":"a","priority":101}]}"#,
                "priority 101",
            ),
            (
                r#"{"format":1,"name":"x","version":"1","components":[{"name":"a","priority":300}]}"#,
                "not readable",
            ),
            (
                r#"{"format":1,"name":"x","version":"1","components":[{"name":"a"},{"name":"a"}]}"#,
                "twice",
            ),
            (
                r#"{"format":1,"name":"x","version":"1","components":[{"name":"a","dependencies":["a"]}]}"#,
                "itself",
            ),
            (
                r#"{"format":1,"name":"x","version":"1","components":[{"name":"a","methods":[{"name":""}]}]}"#,
                "empty",
            ),
        ] {
            let err = parse(text, 1).expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
