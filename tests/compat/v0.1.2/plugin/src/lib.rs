//! A plugin built against plugin-api 0.1.2, frozen: every later host must load it, in
//! process and isolated (sandboxed too). Component `legacy-port` declares that it
//! connects to TCP port 47211 and nothing else (`connect {"port"}` tries any port of
//! 127.0.0.1 and answers what happened), streams (`ticks {"count"}`), logs (`log`), works
//! for as long as asked without looking at a cancellation it cannot see (`sleep {"ms"}`:
//! its caller's timeout ends the wait) and answers `pid` (the process it runs in).

use std::{io::Write, net::TcpStream, time::Duration};

use plugin_api::{
    json_reply, Component, ComponentDecl, Context, Manifest, Plugin, PluginError, Request,
    SandboxNeeds, StreamSink, Streams,
};
use serde::Deserialize;

/// The one port it declares.
pub const PORT: u16 = 47211;

struct PortPlugin;

#[derive(Deserialize)]
struct Ticks {
    count: u64,
}

#[derive(Deserialize)]
struct Port {
    port: u16,
}

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

impl Plugin for PortPlugin {
    fn manifest() -> Manifest {
        Manifest::new("compat-port", "0.1.0")
            .with_description("Built against plugin-api 0.1.2")
            .with_component(
                ComponentDecl::new("legacy-port")
                    .with_memory_estimate(64 * 1024)
                    .with_method("connect", "connects to 127.0.0.1:port", r#"{"port":47211}"#)
                    .with_method("log", "logs one record", "")
                    .with_method("sleep", "works for ms milliseconds", r#"{"ms":10}"#)
                    .with_method("pid", "the process it runs in", ""),
            )
    }

    fn sandbox() -> SandboxNeeds {
        SandboxNeeds::new().connect_to(PORT)
    }

    fn streams() -> Streams {
        Streams::new().method("legacy-port", "ticks")
    }

    fn create(name: &str, _ctx: Context) -> Result<Box<dyn Component>, PluginError> {
        match name {
            "legacy-port" => Ok(Box::new(LegacyPort)),
            other => Err(PluginError::UnknownComponent(other.into())),
        }
    }
}

struct LegacyPort;

impl Component for LegacyPort {
    fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
        match request.method() {
            "connect" => {
                let input: Port = request.json()?;
                let outcome = TcpStream::connect(("127.0.0.1", input.port))
                    .and_then(|mut stream| stream.write_all(b"0.1.2\n"));
                json_reply(&match outcome {
                    Ok(()) => "connected".to_owned(),
                    Err(err) => format!("refused: {err}"),
                })
            }
            "log" => {
                tracing::warn!(release = "0.1.2", "a record from an old plugin");
                json_reply(&true)
            }
            "sleep" => {
                let input: Sleep = request.json()?;
                std::thread::sleep(Duration::from_millis(input.ms));
                json_reply(&input.ms)
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

plugin_api::export_plugin!(PortPlugin);
