//! The description a plugin gives of itself beyond its 0.1.0 [`crate::Manifest`]: a
//! versioned JSON document, read by the host through the C symbol
//! [`crate::ffi::DESCRIBE_SYMBOL`] (added in 0.1.1).
//!
//! Why JSON and not more `#[repr(C)]` fields: a `StableAbi` struct cannot gain a field
//! without changing its layout, and abi_stable refuses every library whose layout differs.
//! A document can gain keys freely: a host ignores keys it does not know, and a plugin
//! that needs something a host lacks says so in [`Description::requires`], so the host
//! refuses it with a message naming both versions instead of misbehaving.

use serde::{Deserialize, Serialize};

/// The document's format. It changes only if a key changes meaning, which the 0.1 line
/// never does; new keys do not change it.
pub const FORMAT: u32 = 1;

/// A plugin's description of itself, beyond its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Description {
    /// The document's format ([`FORMAT`]).
    pub format: u32,
    /// The plugin-api version the plugin was built against.
    pub api_version: String,
    /// Features the plugin cannot work without, by name. A host that does not know one
    /// of them refuses the plugin, naming it.
    #[serde(default)]
    pub requires: Vec<String>,
}

impl Description {
    /// The description of a plugin built against this plugin-api, needing `requires`.
    pub fn new(requires: Vec<String>) -> Self {
        Self {
            format: FORMAT,
            api_version: crate::API_VERSION.to_owned(),
            requires,
        }
    }

    /// The description of plugin `P`, built against this plugin-api.
    pub fn of<P: crate::Plugin>() -> Self {
        // Nothing a plugin built against this version can use needs a newer host than
        // 0.1.0 yet; later versions add what their features need here.
        Self::new(Vec::new())
    }

    /// The document's text.
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a document, ignoring keys this plugin-api does not know.
    ///
    /// # Errors
    ///
    /// The text is not a description.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
