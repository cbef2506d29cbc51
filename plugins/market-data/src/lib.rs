//! Example plugin `market-data`: a simulated, deterministic market data feed.
//!
//! Prices are a pure function of symbol and tick, so tests and demos can assert exact
//! values. Methods:
//!
//! - `symbols` -> `["AAPL", ...]`
//! - `quote {"symbol", "tick"?}` -> `{"symbol","bid","ask","last","ts"}` (tick defaults to 0)
//! - `ticks {"symbol","from","count"}` -> `[{"ts","price","volume"}, ...]`
//! - `subscribe {"symbols", "interval_ms"?}` (a stream) -> one quote per symbol per tick,
//!   as they are made (a tick every `interval_ms`, 50 by default), until the subscriber
//!   goes

#![forbid(unsafe_code)]

use plugin_api::{
    json_reply, Component, ComponentDecl, Context, Manifest, Plugin, PluginError, Request,
};
use serde::{Deserialize, Serialize};

/// The symbols the feed knows.
pub const SYMBOLS: [&str; 5] = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA"];

/// Timestamp of tick 0, in milliseconds since the Unix epoch (2024-01-02 14:30 UTC).
pub const EPOCH_MS: u64 = 1_704_205_800_000;

/// Most ticks one `ticks` call returns.
pub const MAX_TICKS: u64 = 10_000;

/// The plugin type exported below.
pub struct MarketDataPlugin;

impl Plugin for MarketDataPlugin {
    fn manifest() -> Manifest {
        Manifest::new("market-data", env!("CARGO_PKG_VERSION"))
            .with_description("Simulated real-time quotes for a handful of equities")
            .with_component(
                ComponentDecl::new("market-data")
                    .with_memory_estimate(1024 * 1024)
                    .with_priority(10)
                    .with_method("symbols", "the symbols it quotes", "")
                    .with_method(
                        "quote",
                        "the price of a symbol at a tick (default 0)",
                        r#"{"symbol": "AAPL", "tick": 0}"#,
                    )
                    .with_method(
                        "ticks",
                        "count ticks of a symbol from a tick on",
                        r#"{"symbol": "AAPL", "from": 0, "count": 10}"#,
                    )
                    .with_method(
                        "subscribe",
                        "quotes of symbols as they are made, every interval_ms",
                        r#"{"symbols": ["AAPL", "MSFT"], "interval_ms": 50}"#,
                    ),
            )
    }

    fn streams() -> plugin_api::Streams {
        plugin_api::Streams::new().method("market-data", "subscribe")
    }

    fn create(name: &str, _ctx: Context) -> Result<Box<dyn Component>, PluginError> {
        match name {
            "market-data" => {
                tracing::info!(symbols = SYMBOLS.len(), "market data feed started");
                Ok(Box::new(MarketData))
            }
            other => Err(PluginError::UnknownComponent(other.into())),
        }
    }
}

plugin_api::export_plugin!(MarketDataPlugin);

/// The feed component.
pub struct MarketData;

/// A top-of-book quote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// Ticker symbol.
    pub symbol: String,
    /// Best bid.
    pub bid: f64,
    /// Best ask.
    pub ask: f64,
    /// Last traded price.
    pub last: f64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
}

/// One trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// Traded price.
    pub price: f64,
    /// Traded quantity.
    pub volume: u64,
}

#[derive(Deserialize)]
struct QuoteRequest {
    symbol: String,
    #[serde(default)]
    tick: u64,
}

#[derive(Deserialize)]
struct SubscribeRequest {
    symbols: Vec<String>,
    #[serde(default = "default_interval")]
    interval_ms: u64,
}

fn default_interval() -> u64 {
    50
}

#[derive(Deserialize)]
struct TicksRequest {
    symbol: String,
    #[serde(default)]
    from: u64,
    count: u64,
}

impl Component for MarketData {
    fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
        match request.method() {
            "symbols" => json_reply(&SYMBOLS),
            "quote" => {
                let input: QuoteRequest = request.json()?;
                json_reply(&quote(known(&request, &input.symbol)?, input.tick))
            }
            "ticks" => {
                let input: TicksRequest = request.json()?;
                let symbol = known(&request, &input.symbol)?;
                if input.count > MAX_TICKS {
                    return Err(PluginError::bad_input(
                        request.method(),
                        format!("count {} is above the limit of {MAX_TICKS}", input.count),
                    ));
                }
                let ticks: Vec<Tick> = (input.from..input.from + input.count)
                    .map(|tick| Tick {
                        ts: timestamp(tick),
                        price: price_at(symbol, tick),
                        volume: volume_at(symbol, tick),
                    })
                    .collect();
                json_reply(&ticks)
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
            "subscribe" => {
                let input: SubscribeRequest = request.json()?;
                for symbol in &input.symbols {
                    known(&request, symbol)?;
                }
                let interval = std::time::Duration::from_millis(input.interval_ms);
                for tick in 0.. {
                    for symbol in &input.symbols {
                        // The subscriber went: the feed ends here.
                        if sink.send_json(&quote(symbol, tick)).is_err() {
                            return Ok(());
                        }
                    }
                    std::thread::sleep(interval);
                }
                Ok(())
            }
            _ => request.unknown_method(),
        }
    }
}

fn known<'a>(request: &Request<'_>, symbol: &'a str) -> Result<&'a str, PluginError> {
    if SYMBOLS.contains(&symbol) {
        Ok(symbol)
    } else {
        Err(PluginError::bad_input(
            request.method(),
            format!("unknown symbol `{symbol}`; known: {}", SYMBOLS.join(", ")),
        ))
    }
}

/// The quote for `symbol` at `tick`.
pub fn quote(symbol: &str, tick: u64) -> Quote {
    let last = price_at(symbol, tick);
    let half_spread = cents((last * 0.0001).max(0.01));
    Quote {
        symbol: symbol.to_owned(),
        bid: cents(last - half_spread),
        ask: cents(last + half_spread),
        last,
        ts: timestamp(tick),
    }
}

/// Timestamp of `tick`: one tick per second from [`EPOCH_MS`].
pub fn timestamp(tick: u64) -> u64 {
    EPOCH_MS + tick * 1000
}

/// The traded price of `symbol` at `tick`, in cents precision.
pub fn price_at(symbol: &str, tick: u64) -> f64 {
    let seed = fnv1a(symbol);
    let base = 50.0 + (seed % 45_000) as f64 / 100.0;
    let phase = (seed % 628) as f64 / 100.0;
    let t = tick as f64;
    let wave = 0.02 * (t / 97.0 + phase).sin() + 0.006 * (t / 13.0 + phase * 2.0).sin();
    let noise = (mix(seed ^ tick) % 1000) as f64 / 1000.0 - 0.5;
    cents(base * (1.0 + wave + 0.002 * noise))
}

fn volume_at(symbol: &str, tick: u64) -> u64 {
    1 + mix(fnv1a(symbol).rotate_left(17) ^ tick) % 500
}

fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finaliser: a cheap, well-spread hash of one integer.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_deterministic_and_bid_is_below_ask() {
        let first = quote("AAPL", 42);
        assert_eq!(first, quote("AAPL", 42));
        assert!(
            first.bid < first.last && first.last < first.ask,
            "{first:?}"
        );
        assert_eq!(first.ts, EPOCH_MS + 42_000);
    }

    #[test]
    fn unknown_symbol_is_bad_input_naming_the_symbol() {
        let err = MarketData
            .call(Request::new("quote", br#"{"symbol":"NOPE"}"#))
            .unwrap_err();
        assert!(matches!(err, PluginError::BadInput { .. }));
        assert!(err.to_string().contains("NOPE"), "{err}");
    }

    #[test]
    fn subscribe_streams_quotes_until_the_subscriber_goes() {
        let items = plugin_api::testing::collect_stream(
            &MarketData,
            "subscribe",
            br#"{"symbols":["AAPL","MSFT"],"interval_ms":0}"#,
            5,
        )
        .unwrap();
        assert_eq!(items.len(), 5);
        let third: Quote = serde_json::from_slice(&items[2]).unwrap();
        assert_eq!(third, quote("AAPL", 1));
    }

    #[test]
    fn ticks_returns_the_requested_count() {
        let reply = MarketData
            .call(Request::new(
                "ticks",
                br#"{"symbol":"MSFT","from":10,"count":3}"#,
            ))
            .unwrap();
        let ticks: Vec<Tick> = serde_json::from_slice(&reply).unwrap();
        assert_eq!(ticks.len(), 3);
        assert_eq!(ticks[0].price, price_at("MSFT", 10));
    }
}
