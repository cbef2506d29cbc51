//! A minimal plugin: one component, `echo`, with one method, `echo {"text"}`.
//!
//! Build it with `cargo build -p plugin-template`, copy `target/debug/libplugin_template.so`
//! into the host's plugins directory, then `plugin-host call echo echo '{"text":"hi"}'`.

use plugin_api::{
    json_reply, Component, ComponentDecl, Context, Manifest, Plugin, PluginError, Request,
};
use serde::{Deserialize, Serialize};

/// The plugin: what it declares, and how it creates its components.
pub struct TemplatePlugin;

impl Plugin for TemplatePlugin {
    fn manifest() -> Manifest {
        Manifest::new("plugin-template", env!("CARGO_PKG_VERSION"))
            .with_description("Echoes what it is sent")
            .with_component(
                ComponentDecl::new("echo")
                    .with_memory_estimate(64 * 1024) // bytes one instance needs
                    .with_priority(50), // 0 = most important, 100 = first to evict
            )
    }

    fn create(name: &str, _ctx: Context) -> Result<Box<dyn Component>, PluginError> {
        match name {
            "echo" => Ok(Box::new(Echo)),
            other => Err(PluginError::UnknownComponent(other.into())),
        }
    }
}

// Exports the root module the host looks for. One per library.
plugin_api::export_plugin!(TemplatePlugin);

/// The component. Dropping it is its shutdown.
pub struct Echo;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct EchoMessage {
    text: String,
}

impl Component for Echo {
    fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
        match request.method() {
            "echo" => {
                let message: EchoMessage = request.json()?;
                tracing::debug!(len = message.text.len(), "echoing"); // shows up in the host's log
                json_reply(&message)
            }
            _ => request.unknown_method(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_returns_its_input() {
        let reply = Echo
            .call(Request::new("echo", br#"{"text":"hi"}"#))
            .unwrap();
        assert_eq!(reply, br#"{"text":"hi"}"#);
    }

    #[test]
    fn an_unknown_method_is_an_error_naming_it() {
        let err = Echo.call(Request::new("shout", b"")).unwrap_err();
        assert_eq!(err.to_string(), "unknown method `shout`");
    }
}
