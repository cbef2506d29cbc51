//! What tracing adds to every call when it is off (the default): the call's span made,
//! entered and closed under the log subscriber the binary installs (`RUST_LOG=info`,
//! global), against no such code at all.
//!
//! Its own binary: the `calls` bench links a plugin crate, whose logging takes the
//! process's global subscriber, and a scoped subscriber is not what the binary runs.
//!
//! `cargo bench -p plugin-host-tests --bench tracing`

use std::hint::black_box;

use criterion::Criterion;
use plugin_host_tests::ratio;
use tracing_subscriber::{layer::SubscriberExt as _, Layer as _};

const TRACING: &str = "calls_tracing";

fn main() {
    let logs = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::EnvFilter::new("info")),
    );
    tracing::subscriber::set_global_default(logs).expect("the only subscriber");
    let mut criterion = Criterion::default().configure_from_args();
    let options = plugin_host::CallOptions::new();
    let mut group = criterion.benchmark_group(TRACING);
    group.bench_function("no_tracing", |b| {
        b.iter(|| {
            black_box((
                black_box("counter"),
                black_box("empty"),
                black_box(&options),
            ))
        })
    });
    group.bench_function("tracing_off", |b| {
        b.iter(|| {
            plugin_host::fuzzing::trace_one_call(
                black_box("counter"),
                black_box("empty"),
                black_box(&options),
            );
        })
    });
    group.finish();
    criterion.final_summary();
    ratio::print_difference(TRACING, "tracing_off", "no_tracing");
}
