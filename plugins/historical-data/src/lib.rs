//! Example plugin `historical-data`: one-minute OHLCV bars built from `market-data` ticks.
//!
//! Depends on the `market-data` component. On creation it builds a bar cache for every
//! symbol the feed knows; `bars` serves from the cache and extends it on demand. Methods:
//!
//! - `bars {"symbol","count"}` -> `[{"ts","open","high","low","close","volume"}, ...]`,
//!   the first `count` bars from tick 0, oldest first. Streamed (`bars {"symbol","count",
//!   "chunk"?}`), the same bars come in arrays of `chunk` (100 by default), each sent as
//!   soon as it is built.

#![forbid(unsafe_code)]

use std::{collections::HashMap, sync::Mutex};

use plugin_api::{
    json_reply, Component, ComponentDecl, Context, Dependency, Manifest, Plugin, PluginError,
    Request,
};
use serde::{Deserialize, Serialize};

/// Ticks per bar: one-minute bars from one-second ticks.
pub const TICKS_PER_BAR: u64 = 60;

/// Bars built per symbol when the component starts.
pub const PRELOAD_BARS: usize = 120;

/// Most bars one call may ask for.
pub const MAX_BARS: usize = 10_000;

/// The plugin type exported below.
pub struct HistoricalDataPlugin;

impl Plugin for HistoricalDataPlugin {
    fn manifest() -> Manifest {
        Manifest::new("historical-data", env!("CARGO_PKG_VERSION"))
            .with_description("OHLCV bars aggregated from market-data ticks, cached in memory")
            .with_component(
                ComponentDecl::new("historical-data")
                    .with_dependency("market-data")
                    .with_memory_estimate(100 * 1024 * 1024)
                    .with_priority(60)
                    .with_method(
                        "bars",
                        "the last count one-minute OHLCV bars of a symbol (streamed: in chunks)",
                        r#"{"symbol": "AAPL", "count": 5}"#,
                    ),
            )
    }

    fn streams() -> plugin_api::Streams {
        plugin_api::Streams::new().method("historical-data", "bars")
    }

    fn create(name: &str, ctx: Context) -> Result<Box<dyn Component>, PluginError> {
        if name != "historical-data" {
            return Err(PluginError::UnknownComponent(name.into()));
        }
        let feed = ctx.dependency("market-data")?;
        let symbols: Vec<String> = feed.call_json("symbols", &())?;
        let history = HistoricalData {
            feed,
            cache: Mutex::new(HashMap::new()),
        };
        for symbol in &symbols {
            history.bars(symbol, PRELOAD_BARS)?;
        }
        tracing::info!(
            symbols = symbols.len(),
            bars = PRELOAD_BARS,
            "bar cache built"
        );
        Ok(Box::new(history))
    }
}

plugin_api::export_plugin!(HistoricalDataPlugin);

/// One OHLCV bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Start of the bar, milliseconds since the Unix epoch.
    pub ts: u64,
    /// First price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last price.
    pub close: f64,
    /// Total traded quantity.
    pub volume: u64,
}

#[derive(Deserialize)]
struct Tick {
    ts: u64,
    price: f64,
    volume: u64,
}

#[derive(Deserialize)]
struct BarsRequest {
    symbol: String,
    count: usize,
    /// Bars per streamed chunk.
    #[serde(default = "default_chunk")]
    chunk: usize,
}

fn default_chunk() -> usize {
    100
}

struct HistoricalData {
    feed: Dependency,
    cache: Mutex<HashMap<String, Vec<Bar>>>,
}

impl HistoricalData {
    /// The first `count` bars of `symbol`, building missing ones from the feed.
    fn bars(&self, symbol: &str, count: usize) -> Result<Vec<Bar>, PluginError> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| PluginError::failed("bar cache lock poisoned"))?;
        let bars = cache.entry(symbol.to_owned()).or_default();
        while bars.len() < count {
            let from = bars.len() as u64 * TICKS_PER_BAR;
            let ticks: Vec<Tick> = self.feed.call_json(
                "ticks",
                &serde_json::json!({ "symbol": symbol, "from": from, "count": TICKS_PER_BAR }),
            )?;
            bars.push(
                aggregate(&ticks).ok_or_else(|| PluginError::failed("feed returned no ticks"))?,
            );
        }
        Ok(bars[..count].to_vec())
    }
}

/// Folds ticks into one bar; `None` for no ticks.
fn aggregate(ticks: &[Tick]) -> Option<Bar> {
    let first = ticks.first()?;
    let mut bar = Bar {
        ts: first.ts,
        open: first.price,
        high: first.price,
        low: first.price,
        close: first.price,
        volume: 0,
    };
    for tick in ticks {
        bar.high = bar.high.max(tick.price);
        bar.low = bar.low.min(tick.price);
        bar.close = tick.price;
        bar.volume += tick.volume;
    }
    Some(bar)
}

impl Component for HistoricalData {
    fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
        match request.method() {
            "bars" => {
                let input: BarsRequest = request.json()?;
                if input.count > MAX_BARS {
                    return Err(PluginError::bad_input(
                        "bars",
                        format!("count {} is above the limit of {MAX_BARS}", input.count),
                    ));
                }
                json_reply(&self.bars(&input.symbol, input.count)?)
            }
            _ => request.unknown_method(),
        }
    }

    fn stream(
        &self,
        request: Request<'_>,
        sink: &plugin_api::StreamSink,
    ) -> Result<(), PluginError> {
        match request.method() {
            "bars" => {
                let input: BarsRequest = request.json()?;
                if input.count > MAX_BARS || input.chunk == 0 {
                    return Err(PluginError::bad_input(
                        "bars",
                        format!("count must be at most {MAX_BARS} and chunk at least 1"),
                    ));
                }
                let mut sent = 0;
                while sent < input.count {
                    let upto = (sent + input.chunk).min(input.count);
                    let bars = self.bars(&input.symbol, upto)?;
                    if sink.send_json(&bars[sent..upto]).is_err() {
                        return Ok(());
                    }
                    sent = upto;
                }
                Ok(())
            }
            _ => request.unknown_method(),
        }
    }
}
