//! Embedding plugin-host in your own program: the same host the `plugin-host` binary runs
//! (trust policy, discovery and its cache, live discovery, memory sampler, isolation
//! workers, ordered shutdown), started from a config in a few lines.
//!
//! It registers a native Rust component `spread-monitor` beside the plugins (it depends
//! on the `market-data` plugin component), calls `historical-data` (which loads
//! `market-data` first) and `spread-monitor`, prints both answers and stops everything in
//! reverse dependency order.
//!
//! ```sh
//! bash examples/demo.sh   # puts the example plugins in target/demo/plugins
//! cargo run -p embedding-example -- target/demo/plugins [host.toml]
//! ```

use plugin_host::{
    plugin_api::{json_reply, Component, PluginError, Request},
    ComponentHandle, ComponentSpec, Config, Dependencies, Host, NativeComponent,
};
use serde_json::{json, Value};

fn main() -> anyhow::Result<()> {
    // This program is also the host's plugin scanner and isolation worker: when started
    // as one, it serves as that and exits here.
    plugin_host::run_child_if_requested();
    let mut args = std::env::args().skip(1);
    let plugins_dir = args.next().unwrap_or_else(|| "plugins".into());
    let mut config = match args.next() {
        Some(file) => Config::load(Some(file.as_ref()))?,
        None => Config::default(),
    };
    config.host.plugins_dir = plugins_dir.into();
    tokio::runtime::Runtime::new()?.block_on(async {
        let spread = ComponentSpec::new("spread-monitor").with_dependency("market-data");
        let host = Host::builder(config)
            .with_native(spread, NativeComponent::new(SpreadMonitor::create))
            .start()
            .await?;
        for refused in host.catalog().failures() {
            eprintln!("skipping: {refused}");
        }
        let bars = json!({"symbol": "AAPL", "count": 3});
        let answer: anyhow::Result<(Value, Value)> = async {
            let bars = host.call_json("historical-data", "bars", &bars).await?;
            let spread = json!({"symbol": "AAPL"});
            Ok((
                bars,
                host.call_json("spread-monitor", "spread", &spread).await?,
            ))
        }
        .await;
        let report = host.shutdown().await;
        let (bars, spread): (Value, Value) = answer?;
        println!("{bars}\n{spread}");
        println!("stopped in order: {}", report.stopped.join(", "));
        Ok(())
    })
}

/// Quotes the bid/ask spread of a symbol, using the `market-data` plugin component.
struct SpreadMonitor {
    feed: ComponentHandle,
}

impl SpreadMonitor {
    fn create(deps: &Dependencies) -> Result<Self, PluginError> {
        let feed = deps.get("market-data").cloned();
        let feed = feed.ok_or_else(|| PluginError::dependency("market-data", "not provided"))?;
        Ok(Self { feed })
    }
}

impl Component for SpreadMonitor {
    fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
        match request.method() {
            "spread" => {
                let input: Value = request.json()?;
                // Component code runs on a plugin thread: a blocking call is the right one.
                let quote: Value = self
                    .feed
                    .call_json_blocking("quote", &input)
                    .map_err(|err| PluginError::dependency("market-data", err))?;
                let bid = quote["bid"].as_f64().unwrap_or_default();
                let ask = quote["ask"].as_f64().unwrap_or_default();
                let spread = ((ask - bid) * 100.0).round() / 100.0;
                json_reply(&json!({ "symbol": quote["symbol"], "spread": spread }))
            }
            _ => request.unknown_method(),
        }
    }
}
