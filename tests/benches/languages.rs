//! A C plugin's call against a Rust plugin's call through the host, in the same run: the
//! `empty` method of the C probe fixture (`tests/c/probe.c`, built with `cc -O2`) and of
//! the Rust probe fixture's `counter`, each through `ComponentHandle::call` and through
//! `Coordinator::call_blocking`. The C adapter's cost is the difference (goal: <= 1.2x).
//!
//! `cargo bench -p plugin-host-tests --bench languages` (builds the workspace in release).

use std::time::Duration;

use criterion::{black_box, Criterion};
use plugin_host_tests::{host, ratio, Sandbox};

const HANDLE: &str = "languages_handle_call";
const BLOCKING: &str = "languages_call_blocking";

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
        b.iter(|| black_box(rust.call(black_box("empty"), black_box(b""))))
    });
    group.bench_function("c", |b| {
        b.iter(|| black_box(c.call(black_box("empty"), black_box(b""))))
    });
    group.finish();
    let mut group = criterion.benchmark_group(BLOCKING);
    group.bench_function("rust", |b| {
        b.iter(|| black_box(coordinator.call_blocking("counter", "empty", b"")))
    });
    group.bench_function("c", |b| {
        b.iter(|| black_box(coordinator.call_blocking("c-probe", "empty", b"")))
    });
    group.finish();
    criterion.final_summary();

    ratio::print_ratio(HANDLE, "c", "rust");
    ratio::print_difference(HANDLE, "c", "rust");
    ratio::print_ratio(BLOCKING, "c", "rust");
    drop((rust, c));
    runtime.block_on(coordinator.shutdown(Duration::from_secs(5)));
}
