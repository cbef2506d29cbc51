//! What a plugin declares about itself, readable without creating anything.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

/// Priority used when a component does not set one: the middle of 0 (most important) to 100.
pub const DEFAULT_PRIORITY: u8 = 50;

/// A plugin's declaration: its name, version and the components it provides.
///
/// The host reads it in a scanner process and caches it, so a plugin's library is never
/// mapped into the host until one of its components is needed.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, StableAbi)]
pub struct Manifest {
    /// Plugin name, unique among the plugins a host loads.
    pub name: RString,
    /// The plugin's own version (usually `env!("CARGO_PKG_VERSION")`).
    pub version: RString,
    /// One line saying what the plugin is for.
    pub description: RString,
    /// The components the plugin provides.
    pub components: RVec<ComponentDecl>,
}

impl Manifest {
    /// A manifest with no components yet.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: RString::new(),
            components: RVec::new(),
        }
    }

    /// Sets the one-line description. Defaults to empty.
    pub fn with_description(mut self, description: &str) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a component.
    pub fn with_component(mut self, component: ComponentDecl) -> Self {
        self.components.push(component);
        self
    }
}

/// One component a plugin provides.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, StableAbi)]
pub struct ComponentDecl {
    /// Component name, unique across every plugin the host loads.
    pub name: RString,
    /// Names of the components this one needs; the host initialises them first.
    pub dependencies: RVec<RString>,
    /// Expected memory use of one instance, in bytes.
    pub memory_estimate: u64,
    /// 0 (most important, never evicted) to 100.
    pub priority: u8,
    /// Longest time `create` may take, in milliseconds; `None` uses the host's default.
    pub init_timeout_ms: ROption<u64>,
    /// The methods it answers. When a component declares any, the host refuses calls to
    /// others before loading anything; a component that declares none accepts any name.
    pub methods: RVec<MethodDecl>,
}

/// One method a component answers: what `plugin-host inspect` and the admin API show.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, StableAbi)]
pub struct MethodDecl {
    /// The method's name, as callers pass it.
    pub name: RString,
    /// One line saying what it does.
    pub description: RString,
    /// An example input (JSON), for people trying it out; may be empty.
    pub example: RString,
}

impl ComponentDecl {
    /// A component with no dependencies, no memory estimate and the default priority.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            dependencies: RVec::new(),
            memory_estimate: 0,
            priority: DEFAULT_PRIORITY,
            init_timeout_ms: ROption::RNone,
            methods: RVec::new(),
        }
    }

    /// Declares a method: its name, one line on what it does, and an example input (JSON,
    /// or empty when it takes none).
    ///
    /// ```
    /// use plugin_api::ComponentDecl;
    ///
    /// let quotes = ComponentDecl::new("quotes")
    ///     .with_method("quote", "the last price of a symbol", r#"{"symbol": "AAPL"}"#);
    /// assert_eq!(quotes.methods[0].name.as_str(), "quote");
    /// ```
    pub fn with_method(mut self, name: &str, description: &str, example: &str) -> Self {
        self.methods.push(MethodDecl {
            name: name.into(),
            description: description.into(),
            example: example.into(),
        });
        self
    }

    /// Adds a dependency on another component, by name.
    pub fn with_dependency(mut self, name: &str) -> Self {
        self.dependencies.push(name.into());
        self
    }

    /// Sets the memory estimate in bytes. Defaults to 0.
    pub fn with_memory_estimate(mut self, bytes: u64) -> Self {
        self.memory_estimate = bytes;
        self
    }

    /// Sets the priority, clamped to 0..=100. Defaults to [`DEFAULT_PRIORITY`].
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority.min(100);
        self
    }

    /// Sets the init timeout. Defaults to the host's configured default.
    pub fn with_init_timeout(mut self, timeout: std::time::Duration) -> Self {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.init_timeout_ms = ROption::RSome(ms);
        self
    }
}
