//! A C plugin's call against a Rust plugin's call through the host, in the same run: the
//! `empty` method of the C probe fixture (`tests/c/probe.c`, built with `cc -O2`) and of
//! the Rust probe fixture's `counter`, each through `ComponentHandle::call_blocking` and
//! through `Coordinator::call` (async: the call runs on the plugin executor). The C adapter's cost is the difference (goal: <= 1.2x).
//!
//! `cargo bench -p plugin-host-tests --bench languages` (builds the workspace in release).

use std::time::Duration;

use criterion::{black_box, Criterion};
use plugin_host_tests::{host, ratio, Sandbox};

const HANDLE: &str = "languages_handle_call_blocking";
const ASYNC: &str = "languages_coordinator_call";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    sandbox.add_c_plugin("tests/c/probe.c", &[], "libc_probe.so");
    let config = "[components.counter.config]\ndelay_ms = 0\n[metrics]\nsample_rate = 0.1\n";
    let host = runtime.block_on(host(&sandbox, config));
    let coordinator = host.coordinator().clone();
    let rust = runtime
        .block_on(coordinator.get("counter"))
        .expect("counter");
    let c = runtime
        .block_on(coordinator.get("c-probe"))
        .expect("c-probe");

    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let mut group = criterion.benchmark_group(HANDLE);
    group.bench_function("rust", |b| {
        b.iter(|| black_box(rust.call_blocking(black_box("empty"), black_box(b""))))
    });
    group.bench_function("c", |b| {
        b.iter(|| black_box(c.call_blocking(black_box("empty"), black_box(b""))))
    });
    group.finish();
    let mut group = criterion.benchmark_group(ASYNC);
    group.bench_function("rust", |b| {
        b.iter(|| runtime.block_on(coordinator.call("counter", "empty", Vec::new())))
    });
    group.bench_function("c", |b| {
        b.iter(|| runtime.block_on(coordinator.call("c-probe", "empty", Vec::new())))
    });
    group.finish();
    criterion.final_summary();

    ratio::print_ratio(HANDLE, "c", "rust");
    ratio::print_difference(HANDLE, "c", "rust");
    ratio::print_ratio(ASYNC, "c", "rust");
    drop((rust, c));
    runtime.block_on(coordinator.shutdown(Duration::from_secs(5)));
}
