//! The plain Rust traits a plugin author implements, and the typed JSON helpers.

use serde::{de::DeserializeOwned, Serialize};

use crate::{Context, Manifest, PluginError};

/// A plugin: a manifest and a way to create each component it declares.
///
/// Implement it on a unit struct and export it with [`crate::export_plugin!`]. Both
/// functions may panic: the export adapters catch the panic and report it as
/// [`PluginError::Panicked`].
pub trait Plugin: 'static {
    /// Declares the plugin and its components. Called by the host's scanner process and
    /// again when the library is loaded; keep it cheap and deterministic.
    fn manifest() -> Manifest;

    /// Creates the component called `name`. Its declared dependencies are already
    /// initialised and reachable through `ctx`.
    ///
    /// # Errors
    ///
    /// Return [`PluginError`] when the component cannot be created; the host marks it failed.
    fn create(name: &str, ctx: Context) -> Result<Box<dyn Component>, PluginError>;

    /// What the plugin's code needs when the host runs it in a sandbox (`sandbox = true`
    /// for an isolated component): paths to read and write, network connections, starting
    /// programs. Without it, a sandboxed plugin may read its own library and the system's
    /// shared libraries, and nothing else. The operator may narrow or widen it per
    /// component. Since plugin-api 0.1.1; defaults to nothing.
    ///
    /// ```
    /// use plugin_api::SandboxNeeds;
    ///
    /// let needs = SandboxNeeds::new().read("/etc/ssl/certs").connect();
    /// assert!(needs.wants_connect());
    /// ```
    fn sandbox() -> crate::SandboxNeeds {
        crate::SandboxNeeds::new()
    }

    /// Which methods of its components stream (answer with many items through
    /// [`Component::stream`]). Declare them with `ComponentDecl::with_method` too, for
    /// their description and example. Since plugin-api 0.1.1; defaults to none.
    ///
    /// ```
    /// use plugin_api::Streams;
    ///
    /// let streams = Streams::new().method("market-data", "subscribe");
    /// # let _ = streams;
    /// ```
    fn streams() -> crate::Streams {
        crate::Streams::new()
    }
}

/// A running component instance. Dropping it shuts it down.
pub trait Component: Send + Sync + 'static {
    /// Answers one call.
    ///
    /// # Errors
    ///
    /// Return [`PluginError`] for unknown methods, bad input or failures.
    fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError>;

    /// Answers one streaming call: sends its items to `sink` and returns when done (or
    /// once `sink` says the consumer has gone). Called only for methods
    /// [`Plugin::streams`] declares. Since plugin-api 0.1.1; defaults to "unknown
    /// method".
    ///
    /// # Errors
    ///
    /// Return [`PluginError`] when the stream fails; items sent before it stay sent.
    fn stream(&self, request: Request<'_>, sink: &crate::StreamSink) -> Result<(), PluginError> {
        let _ = sink;
        request.unknown_method()
    }
}

/// One call to a component: a method name and its input bytes (JSON by convention).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    method: &'a str,
    input: &'a [u8],
}

impl<'a> Request<'a> {
    /// A request for `method` with raw `input`.
    pub fn new(method: &'a str, input: &'a [u8]) -> Self {
        Self { method, input }
    }

    /// The method name.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The raw input bytes.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// Parses the input as JSON. Empty input parses as `null`, so unit-like requests work.
    ///
    /// # Errors
    ///
    /// [`PluginError::BadInput`] naming the method and what did not parse.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let input: &[u8] = if self.input.is_empty() {
            b"null"
        } else {
            self.input
        };
        serde_json::from_slice(input).map_err(|err| PluginError::bad_input(self.method, err))
    }

    /// The standard answer for a method the component does not have.
    pub fn unknown_method<T>(&self) -> Result<T, PluginError> {
        Err(PluginError::unknown_method(self.method))
    }
}

/// Serialises a reply as JSON bytes.
///
/// # Errors
///
/// [`PluginError::Failed`] when the value cannot be serialised.
pub fn json_reply<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, PluginError> {
    serde_json::to_vec(value)
        .map_err(|err| PluginError::failed(format!("serialising reply: {err}")))
}
