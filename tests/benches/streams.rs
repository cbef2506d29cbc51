//! Streams, measured: items per second from a component's streaming method to an async
//! consumer, in process and isolated (items cross the worker's socket under credit-based
//! flow control), against the baseline of a bounded tokio mpsc channel of the same depth
//! fed from a blocking thread, in the same run. Items are 1 KiB, made fresh each time
//! (the probe's `produce` with `raw`), 10,000 a stream.
//!
//! `cargo bench -p plugin-host-tests --bench streams` (builds the workspace in release).

// Tests and benches read top to bottom, one scenario each: the 60-line rule is for the
// library, not for them.
#![allow(clippy::too_many_lines)]

use std::time::Duration;

use criterion::{Criterion, Throughput};
use futures::StreamExt;
use plugin_host_tests::{host, ratio, Sandbox};

const GROUP: &str = "streams";
const ITEMS: u64 = 10_000;
const ITEM_BYTES: usize = 1024;
/// The host buffers 256 items a stream; the baseline channel holds as many.
const DEPTH: usize = 256;
const CONFIG: &str = "[components.counter]\nisolation = \"process\"\n\
                      [components.counter.config]\ndelay_ms = 0\n";

/// The baseline: a producer on a blocking thread makes each item and sends it into a
/// bounded channel; the consumer takes them all.
async fn channel_stream() -> u64 {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(DEPTH);
    let source = vec![b'x'; ITEM_BYTES];
    let producer = tokio::task::spawn_blocking(move || {
        for _ in 0..ITEMS {
            if sender.blocking_send(source.clone()).is_err() {
                break;
            }
        }
    });
    let mut received = 0;
    while let Some(item) = receiver.recv().await {
        received += item.len() as u64 / ITEM_BYTES as u64;
    }
    producer.await.expect("producer");
    received
}

/// One stream of `component`'s `produce`, consumed to the end.
async fn host_stream(host: &plugin_host::Host, component: &str) -> u64 {
    let request = serde_json::json!({ "bytes": ITEM_BYTES, "count": ITEMS, "raw": true });
    let mut items = host
        .stream(
            component,
            "produce",
            serde_json::to_vec(&request).expect("json"),
        )
        .await
        .expect("stream");
    let mut received = 0;
    while let Some(item) = items.next().await {
        received += item.expect("an item").len() as u64 / ITEM_BYTES as u64;
    }
    received
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = runtime.block_on(host(&sandbox, CONFIG));
    // Both ready, and each stream whole, before anything is measured.
    assert_eq!(runtime.block_on(host_stream(&host, "sleeper")), ITEMS);
    assert_eq!(runtime.block_on(host_stream(&host, "counter")), ITEMS);
    assert_eq!(runtime.block_on(channel_stream()), ITEMS);

    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));
    let mut group = criterion.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(20);
    group.bench_function("tokio_mpsc_bounded", |b| {
        b.iter(|| runtime.block_on(channel_stream()));
    });
    group.bench_function("in_process", |b| {
        b.iter(|| runtime.block_on(host_stream(&host, "sleeper")));
    });
    group.bench_function("isolated", |b| {
        b.iter(|| runtime.block_on(host_stream(&host, "counter")));
    });
    group.finish();

    println!();
    ratio::print_throughput_share(GROUP, "in_process", "tokio_mpsc_bounded", 0.5);
    ratio::print_throughput_share(GROUP, "isolated", "tokio_mpsc_bounded", 0.2);
    runtime.block_on(host.shutdown());
    criterion.final_summary();
}
