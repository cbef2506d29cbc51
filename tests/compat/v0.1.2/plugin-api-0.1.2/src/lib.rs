//! The stable ABI that plugin-host plugins are written against.
//!
//! A plugin is a `cdylib` that implements two plain Rust traits, [`Plugin`] and
//! [`Component`], and exports them with [`export_plugin!`]. This crate turns them into an
//! [`abi_stable`] root module whose layout the host checks before it calls anything, catches
//! every panic at the boundary and forwards the plugin's `tracing` events into the host's log.
//!
//! Both sides link this crate and nothing else of each other: the host never sees a
//! plugin's types, a plugin never sees the host's.
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! plugin-api = "0.1"
//! abi_stable = "0.11"   # the export attribute names it
//! serde = { version = "1", features = ["derive"] }
//! tracing = "0.1"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use plugin_api::{json_reply, Component, ComponentDecl, Context, Manifest, Plugin, PluginError, Request};
//!
//! struct Greeter;
//!
//! impl Plugin for Greeter {
//!     fn manifest() -> Manifest {
//!         Manifest::new("greeter", "0.1.0")
//!             .with_description("Says hello")
//!             .with_component(ComponentDecl::new("greeter").with_memory_estimate(64 * 1024))
//!     }
//!
//!     fn create(name: &str, _ctx: Context) -> Result<Box<dyn Component>, PluginError> {
//!         match name {
//!             "greeter" => Ok(Box::new(Hello)),
//!             other => Err(PluginError::UnknownComponent(other.into())),
//!         }
//!     }
//! }
//!
//! struct Hello;
//!
//! #[derive(serde::Deserialize)]
//! struct HelloRequest {
//!     name: String,
//! }
//!
//! impl Component for Hello {
//!     fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
//!         match request.method() {
//!             "hello" => {
//!                 let input: HelloRequest = request.json()?;
//!                 tracing::info!(name = %input.name, "greeting");
//!                 json_reply(&format!("hello, {}", input.name))
//!             }
//!             _ => request.unknown_method(),
//!         }
//!     }
//! }
//!
//! // In the real cdylib: plugin_api::export_plugin!(Greeter);
//! # let reply = Hello.call(Request::new("hello", br#"{"name":"ada"}"#)).unwrap();
//! # assert_eq!(reply, br#""hello, ada""#);
//! ```
//!
//! # Rules of the boundary
//!
//! - Panics in `manifest`, `create`, `call` or a component's `Drop` are caught and become
//!   [`PluginError::Panicked`] naming the plugin, component and method. Build plugins with
//!   the default `panic = "unwind"`: with `panic = "abort"` nothing can be caught.
//! - Component code is synchronous and runs on host threads; the host applies timeouts.
//! - Records from `tracing` macros reach the host's log tagged with plugin and component,
//!   filtered by the host (`RUST_LOG=plugin=debug` shows plugins' debug records).

#![warn(missing_docs, unreachable_pub)]
#![deny(unsafe_code)]

mod component;
mod context;
pub mod describe;
mod error;
#[doc(hidden)]
pub mod export;
pub mod ffi;
mod logging;
mod manifest;
mod stream;
pub mod testing;

pub use self::{
    component::{json_reply, Component, Plugin, Request},
    context::{Context, Dependency, HostLock, MetricCounter, MetricHistogram},
    describe::SandboxNeeds,
    error::{panic_message, PanicReport, PluginError},
    ffi::{LogLevel, ABI_STABLE_VERSION, API_VERSION},
    logging::HostLayer,
    manifest::{ComponentDecl, Manifest, MethodDecl, DEFAULT_PRIORITY},
    stream::{StreamClosed, StreamSink, Streams},
};

#[doc(hidden)]
pub use abi_stable;
