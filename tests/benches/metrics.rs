//! Recording a counter increment and a histogram observation against a bare
//! `AtomicU64::fetch_add`, measured in the same run.

// Tests and benches read top to bottom, one scenario each: the 60-line rule is for the
// library, not for them.
#![allow(clippy::too_many_lines)]

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{black_box, criterion_group, Criterion};
use plugin_host::metrics::{Counter, Histogram, Sampler};

use plugin_host_tests::ratio;

const GROUP: &str = "metrics_record";

fn bench(c: &mut Criterion) {
    let atomic = AtomicU64::new(0);
    let counter = Counter::default();
    let histogram = Histogram::default();
    let sampler = Sampler::new(0.1);
    let sampled = Histogram::default();

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("atomic_fetch_add", |b| {
        b.iter(|| atomic.fetch_add(1, Ordering::Relaxed))
    });
    group.bench_function("counter_inc", |b| b.iter(|| counter.inc()));
    group.bench_function("histogram_record", |b| {
        b.iter(|| histogram.record(black_box(0.0042)))
    });
    group.bench_function("sampled_histogram_record", |b| {
        b.iter(|| {
            if sampler.sample() {
                sampled.record(black_box(0.0042));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    for subject in [
        "counter_inc",
        "histogram_record",
        "sampled_histogram_record",
    ] {
        ratio::print_ratio(GROUP, subject, "atomic_fetch_add");
    }
}
