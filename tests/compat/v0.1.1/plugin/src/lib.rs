//! A plugin built against plugin-api 0.1.1, frozen: every later host must load it, in
//! process and isolated (sandboxed too), and serve what 0.1.1 brought. Component
//! `legacy-ticks` streams (`ticks {"count"}`: that many items, then the end), declares
//! that it reads `/etc/hostname` (`hostname` reads it: a sandbox must grant it), and
//! answers `pid` (the process it runs in).

use plugin_api::{
    json_reply, Component, ComponentDecl, Context, Manifest, Plugin, PluginError, Request,
    SandboxNeeds, StreamSink, Streams,
};
use serde::Deserialize;

struct StreamPlugin;

#[derive(Deserialize)]
struct Ticks {
    count: u64,
}

impl Plugin for StreamPlugin {
    fn manifest() -> Manifest {
        Manifest::new("compat-stream", "0.1.0")
            .with_description("Built against plugin-api 0.1.1")
            .with_component(
                ComponentDecl::new("legacy-ticks")
                    .with_memory_estimate(64 * 1024)
                    .with_method("hostname", "reads /etc/hostname, which it declares", "")
                    .with_method("pid", "the process it runs in", ""),
            )
    }

    fn sandbox() -> SandboxNeeds {
        SandboxNeeds::new().read("/etc/hostname")
    }

    fn streams() -> Streams {
        Streams::new().method("legacy-ticks", "ticks")
    }

    fn create(name: &str, _ctx: Context) -> Result<Box<dyn Component>, PluginError> {
        match name {
            "legacy-ticks" => Ok(Box::new(LegacyTicks)),
            other => Err(PluginError::UnknownComponent(other.into())),
        }
    }
}

struct LegacyTicks;

impl Component for LegacyTicks {
    fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
        match request.method() {
            "hostname" => {
                let text = std::fs::read_to_string("/etc/hostname").map_err(PluginError::failed)?;
                json_reply(text.trim())
            }
            "pid" => json_reply(&std::process::id()),
            _ => request.unknown_method(),
        }
    }

    fn stream(&self, request: Request<'_>, sink: &StreamSink) -> Result<(), PluginError> {
        match request.method() {
            "ticks" => {
                let input: Ticks = request.json()?;
                for tick in 0..input.count {
                    sink.send_json(&serde_json::json!({ "tick": tick }))?;
                }
                Ok(())
            }
            _ => request.unknown_method(),
        }
    }
}

plugin_api::export_plugin!(StreamPlugin);
