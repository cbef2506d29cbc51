//! What the coordinator knows about a component before creating it.

use std::time::Duration;

/// What the coordinator knows about a component before creating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// Unique component name.
    pub name: String,
    /// The plugin that provides it, or `None` for a native component.
    pub plugin: Option<String>,
    /// Components it needs, initialised first.
    pub dependencies: Vec<String>,
    /// Expected memory use in bytes.
    pub memory_estimate: u64,
    /// 0 (most important) to 100.
    pub priority: u8,
    /// Init timeout; `None` uses the coordinator's default.
    pub init_timeout: Option<Duration>,
    /// The methods it declares for calls; empty accepts any name but one that only
    /// streams.
    pub methods: Vec<String>,
    /// The methods that stream (answer many items through `Coordinator::stream`); one
    /// that is not in `methods` too is never called.
    pub streams: Vec<String>,
}

impl ComponentSpec {
    /// A spec with no dependencies, no estimate, default priority and timeout.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            plugin: None,
            dependencies: Vec::new(),
            memory_estimate: 0,
            priority: plugin_api::DEFAULT_PRIORITY,
            init_timeout: None,
            methods: Vec::new(),
            streams: Vec::new(),
        }
    }

    /// Declares a streaming method. It is not called unless [`Self::with_method`]
    /// declares it too; calls to other methods are not affected. Defaults to none.
    pub fn with_stream_method(mut self, name: impl Into<String>) -> Self {
        self.streams.push(name.into());
        self
    }

    /// Declares a method: calls to undeclared ones are then refused. Defaults to none
    /// declared (any name is passed on).
    pub fn with_method(mut self, name: impl Into<String>) -> Self {
        self.methods.push(name.into());
        self
    }

    /// Whether a call to `method` may go through: it is declared for calls, or none is
    /// and it is not one that only streams.
    pub fn accepts(&self, method: &str) -> bool {
        if self.methods.iter().any(|m| m == method) {
            return true;
        }
        self.methods.is_empty() && !self.streams.iter().any(|m| m == method)
    }

    /// Refuses a call to an undeclared method, or to one that only streams, naming the
    /// declared ones.
    pub(crate) fn check_method(&self, method: &str) -> Result<(), super::CallError> {
        if self.accepts(method) {
            return Ok(());
        }
        if self.streams.iter().any(|m| m == method) {
            return Err(super::CallError::StreamOnly {
                component: self.name.clone(),
                method: method.to_owned(),
            });
        }
        Err(super::CallError::UndeclaredMethod {
            component: self.name.clone(),
            method: method.to_owned(),
            declared: self.methods.clone(),
        })
    }

    /// Refuses to stream a method that is not declared streaming, naming those that are.
    pub(crate) fn check_stream_method(&self, method: &str) -> Result<(), super::CallError> {
        if self.streams.iter().any(|m| m == method) {
            return Ok(());
        }
        Err(super::CallError::NotAStream {
            component: self.name.clone(),
            method: method.to_owned(),
            streams: self.streams.clone(),
        })
    }

    /// Adds a dependency.
    pub fn with_dependency(mut self, name: impl Into<String>) -> Self {
        self.dependencies.push(name.into());
        self
    }

    /// Sets the memory estimate in bytes. Defaults to 0.
    pub fn with_memory_estimate(mut self, bytes: u64) -> Self {
        self.memory_estimate = bytes;
        self
    }

    /// Sets the priority (0-100). Defaults to 50.
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority.min(100);
        self
    }

    /// Sets the init timeout. Defaults to the coordinator's default timeout.
    pub fn with_init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = Some(timeout);
        self
    }

    /// Who provides it, for messages: `plugin \`x\`` or `native`.
    pub fn provider_label(&self) -> String {
        match &self.plugin {
            Some(plugin) => format!("plugin `{plugin}`"),
            None => "a native component".to_owned(),
        }
    }
}
