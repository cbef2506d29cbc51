//! Uncontended acquire + release of a LockManager lock (order and deadlock checks on)
//! against `parking_lot::Mutex` and `tokio::sync::Mutex`, measured in the same run.

use std::time::Duration;

use criterion::{criterion_group, Criterion};
use plugin_host::LockManager;

mod ratio;

const GROUP: &str = "lock_uncontended";

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let locks = LockManager::builder().with_order(["book"]).build();
    let parking = parking_lot::Mutex::new(0u64);
    let tokio_mutex = tokio::sync::Mutex::new(0u64);

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("parking_lot", |b| {
        b.iter(|| *parking.lock() += 1);
    });
    group.bench_function("lock_manager_blocking", |b| {
        b.iter(|| {
            let guard = locks
                .acquire_blocking("book", "bench", Duration::from_secs(1))
                .expect("free");
            guard.release().expect("release");
        });
    });
    group.bench_function("tokio_mutex", |b| {
        b.iter(|| runtime.block_on(async { *tokio_mutex.lock().await += 1 }));
    });
    group.bench_function("lock_manager_async", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let guard = locks.acquire("book", "bench").await.expect("free");
                guard.release().expect("release");
            })
        });
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio::print_ratio(GROUP, "lock_manager_blocking", "parking_lot");
    ratio::print_ratio(GROUP, "lock_manager_async", "tokio_mutex");
}
