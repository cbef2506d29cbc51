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
                    .with_priority(50) // 0 = most important, 100 = first to evict
                    .with_method("echo", "returns what it is sent", r#"{"text": "hi"}"#),
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
    use plugin_api::testing::TestHost;
    use serde_json::json;

    use super::TemplatePlugin;

    #[test]
    fn echo_returns_its_input() {
        let echo = TestHost::new().create::<TemplatePlugin>("echo").unwrap();
        let reply: serde_json::Value = echo.call_json("echo", &json!({ "text": "hi" })).unwrap();
        assert_eq!(reply, json!({ "text": "hi" }));
    }

    #[test]
    fn an_undeclared_method_is_refused_naming_the_declared_ones() {
        let echo = TestHost::new().create::<TemplatePlugin>("echo").unwrap();
        let err = echo.call("shout", b"").unwrap_err();
        assert!(err.to_string().contains("shout (declared: echo)"), "{err}");
    }
}
