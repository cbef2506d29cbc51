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
    /// What its code needs in a sandbox (since 0.1.1; absent: nothing).
    #[serde(default)]
    pub sandbox: SandboxNeeds,
    /// Its streaming methods, by component (since 0.1.1; absent: none).
    #[serde(default)]
    pub streams: std::collections::BTreeMap<String, Vec<String>>,
}

/// What a plugin's code needs when the host runs it in a sandbox: see
/// [`crate::Plugin::sandbox`]. A builder; new kinds of needs are added as new methods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SandboxNeeds {
    /// Paths (files, or directories with everything beneath) it reads.
    #[serde(default)]
    pub read: Vec<String>,
    /// Paths (files, or directories with everything beneath) it reads and writes.
    #[serde(default)]
    pub write: Vec<String>,
    /// Whether it opens network connections anywhere (TCP to any port, and UDP, which
    /// name resolution needs).
    #[serde(default)]
    pub connect: bool,
    /// The TCP ports it connects to, at any address, when it does not connect anywhere
    /// (since 0.1.2; absent: none).
    #[serde(default)]
    pub connect_ports: Vec<u16>,
    /// Whether it starts programs (or forks).
    #[serde(default)]
    pub spawn: bool,
}

impl SandboxNeeds {
    /// Needs nothing beyond its own library and the system's shared libraries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also reads `path` (a file, or a directory and everything beneath it).
    pub fn read(mut self, path: &str) -> Self {
        self.read.push(path.to_owned());
        self
    }

    /// Also reads and writes `path` (a file, or a directory and everything beneath it).
    pub fn write(mut self, path: &str) -> Self {
        self.write.push(path.to_owned());
        self
    }

    /// Also opens network connections, anywhere: TCP to any port, and UDP (name
    /// resolution needs it). Prefer [`Self::connect_to`] where the ports are known.
    pub fn connect(mut self) -> Self {
        self.connect = true;
        self
    }

    /// Also connects to TCP port `port`, at any address (since 0.1.2). Names are not
    /// resolved for it (that needs UDP): connect to addresses, or use [`Self::connect`].
    pub fn connect_to(mut self, port: u16) -> Self {
        if !self.connect_ports.contains(&port) {
            self.connect_ports.push(port);
        }
        self
    }

    /// Also starts programs.
    pub fn spawn(mut self) -> Self {
        self.spawn = true;
        self
    }

    /// Whether it opens network connections (anywhere, or to some ports).
    pub fn wants_connect(&self) -> bool {
        self.connect || !self.connect_ports.is_empty()
    }
}

impl Description {
    /// The description of a plugin built against this plugin-api, needing `requires`.
    pub fn new(requires: Vec<String>) -> Self {
        Self {
            format: FORMAT,
            api_version: crate::API_VERSION.to_owned(),
            requires,
            sandbox: SandboxNeeds::default(),
            streams: std::collections::BTreeMap::new(),
        }
    }

    /// The description of plugin `P`, built against this plugin-api.
    pub fn of<P: crate::Plugin>() -> Self {
        // Nothing a plugin built against this version can use needs a newer host than
        // 0.1.0 yet (an older host runs it unsandboxed, as it runs every plugin); later
        // versions add what their features need here.
        let mut streams = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (component, method) in P::streams().methods {
            streams.entry(component).or_default().push(method);
        }
        Self {
            sandbox: P::sandbox(),
            streams,
            ..Self::new(Vec::new())
        }
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
