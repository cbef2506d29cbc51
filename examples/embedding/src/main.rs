//! Embedding plugin-host in your own program.
//!
//! Discovers the plugins in a directory (scanning them in subprocesses of *this* binary),
//! registers a native Rust component `spread-monitor` that depends on the `market-data`
//! plugin component, calls it, and shuts down in reverse dependency order.
//!
//! ```sh
//! bash examples/demo.sh   # puts the example plugins in target/demo/plugins
//! cargo run -p embedding-example -- target/demo/plugins
//! ```

use std::time::Duration;

use plugin_host::{
    plugin_api::{json_reply, Component, PluginError, Request},
    ComponentHandle, ComponentSpec, Coordinator, Discovery, NativeComponent,
};

/// Quotes the bid/ask spread of a symbol, using the `market-data` plugin component.
struct SpreadMonitor {
    feed: ComponentHandle,
}

impl Component for SpreadMonitor {
    fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
        match request.method() {
            "spread" => {
                let input: serde_json::Value = request.json()?;
                let quote: serde_json::Value = self
                    .feed
                    .call_json("quote", &input)
                    .map_err(|err| PluginError::dependency("market-data", err))?;
                let bid = quote["bid"].as_f64().unwrap_or_default();
                let ask = quote["ask"].as_f64().unwrap_or_default();
                let spread = ((ask - bid) * 100.0).round() / 100.0;
                json_reply(&serde_json::json!({ "symbol": quote["symbol"], "spread": spread }))
            }
            _ => request.unknown_method(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // This binary is its own plugin scanner: answer scan requests before anything else.
    plugin_host::run_scanner_if_requested();

    let dir = std::env::args().nth(1).unwrap_or_else(|| "plugins".into());
    let catalog = Discovery::new(&dir).discover().await?;
    for failure in catalog.failures() {
        eprintln!("skipping: {failure}");
    }

    let coordinator = Coordinator::builder()
        .with_default_timeout(Duration::from_secs(10))
        .build();
    for problem in coordinator.register_catalog(&catalog) {
        eprintln!("not registered: {problem}");
    }
    coordinator.register_native(
        ComponentSpec::new("spread-monitor")
            .with_dependency("market-data")
            .with_priority(20),
        NativeComponent::new(|deps| {
            let feed = deps
                .get("market-data")
                .cloned()
                .ok_or_else(|| PluginError::dependency("market-data", "not provided"))?;
            Ok(SpreadMonitor { feed })
        }),
    )?;

    let spread = coordinator.get("spread-monitor").await?;
    let answer: serde_json::Value =
        spread.call_json("spread", &serde_json::json!({ "symbol": "AAPL" }))?;
    println!("{answer}");

    let report = coordinator.shutdown(Duration::from_secs(5)).await;
    println!("stopped in order: {}", report.stopped.join(", "));
    Ok(())
}
