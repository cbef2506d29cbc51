//! A plugin built against plugin-api 0.1.0, frozen: every later host must load it and
//! serve it every host service 0.1.0 offered. Component `legacy-quotes` depends on the
//! `market-data` plugin (built against the current plugin-api) and, on `quote`, reads
//! its config, takes a host lock, calls its dependency, records a metric and logs.

use std::time::Duration;

use plugin_api::{
    json_reply, Component, ComponentDecl, Context, Manifest, Plugin, PluginError, Request,
};
use serde::Deserialize;

struct CompatPlugin;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    /// Added to every quote's `last`, to show the config arrived.
    markup: f64,
}

#[derive(Deserialize)]
struct QuoteRequest {
    symbol: String,
}

impl Plugin for CompatPlugin {
    fn manifest() -> Manifest {
        Manifest::new("compat", "0.1.0")
            .with_description("Built against plugin-api 0.1.0")
            .with_component(
                ComponentDecl::new("legacy-quotes")
                    .with_dependency("market-data")
                    .with_memory_estimate(64 * 1024)
                    .with_method("quote", "a quote of the dependency, marked up", r#"{"symbol": "AAPL"}"#)
                    .with_method("fail", "fails with a plugin error", "")
                    .with_method("pid", "the process it runs in", ""),
            )
    }

    fn create(name: &str, ctx: Context) -> Result<Box<dyn Component>, PluginError> {
        match name {
            "legacy-quotes" => {
                let settings: Settings = ctx.config()?;
                tracing::info!(markup = settings.markup, "legacy quotes created");
                Ok(Box::new(LegacyQuotes { ctx, markup: settings.markup }))
            }
            other => Err(PluginError::UnknownComponent(other.into())),
        }
    }
}

struct LegacyQuotes {
    ctx: Context,
    markup: f64,
}

impl Component for LegacyQuotes {
    fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
        match request.method() {
            "quote" => {
                let input: QuoteRequest = request.json()?;
                let _book = self.ctx.lock("legacy.book", Some(Duration::from_secs(5)))?;
                let feed = self.ctx.dependency("market-data")?;
                let mut quote: serde_json::Value =
                    feed.call_json("quote", &serde_json::json!({ "symbol": input.symbol }))?;
                let last = quote["last"].as_f64().unwrap_or_default();
                quote["last"] = serde_json::json!(last + self.markup);
                quote["via"] = serde_json::json!("compat");
                self.ctx.counter("legacy_quotes", "Quotes served by the 0.1.0 plugin")?.add(1);
                tracing::info!(symbol = %input.symbol, "legacy quote served");
                json_reply(&quote)
            }
            "fail" => Err(PluginError::failed("the 0.1.0 plugin fails on purpose")),
            "pid" => json_reply(&std::process::id()),
            _ => request.unknown_method(),
        }
    }
}

plugin_api::export_plugin!(CompatPlugin);
