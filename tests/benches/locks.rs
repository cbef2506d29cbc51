//! LockManager against `parking_lot::Mutex` and `tokio::sync::Mutex`, measured in the
//! same run: uncontended acquire + release (order and deadlock checks on, through an
//! interned handle), and a contended run of 4 threads on one lock.

// Tests and benches read top to bottom, one scenario each: the 60-line rule is for the
// library, not for them.
#![allow(clippy::too_many_lines)]

use std::{
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use criterion::{criterion_group, Criterion};
use plugin_host::LockManager;

use plugin_host_tests::ratio;

const GROUP: &str = "lock_uncontended";
const CONTENDED: &str = "lock_contended_4_threads";
const THREADS: usize = 4;

fn uncontended(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let locks = LockManager::builder().with_order(["book"]).build();
    let book = locks.lock("book").expect("a valid name");
    let holder = locks.holder("bench");
    let parking = parking_lot::Mutex::new(0u64);
    let tokio_mutex = tokio::sync::Mutex::new(0u64);

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("parking_lot", |b| {
        b.iter(|| *parking.lock() += 1);
    });
    group.bench_function("lock_manager_blocking", |b| {
        b.iter(|| {
            let guard = holder
                .acquire_blocking(&book, Duration::from_secs(1))
                .expect("free");
            drop(guard);
        });
    });
    group.bench_function("tokio_mutex", |b| {
        b.iter(|| runtime.block_on(async { *tokio_mutex.lock().await += 1 }));
    });
    group.bench_function("lock_manager_async", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let guard = holder.acquire(&book).await.expect("free");
                drop(guard);
            })
        });
    });
    group.finish();
}

/// Runs `THREADS` threads doing `per_thread` critical sections each (the section gets
/// the thread's index); returns the time.
fn contended_run(per_thread: u64, section: impl Fn(usize) + Send + Sync + 'static) -> Duration {
    let section = Arc::new(section);
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|index| {
            let (section, barrier) = (Arc::clone(&section), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..per_thread {
                    section(index);
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for thread in threads {
        thread.join().expect("bench thread");
    }
    started.elapsed()
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group(CONTENDED);
    group.sample_size(10);
    let parking = Arc::new(parking_lot::Mutex::new(0u64));
    group.bench_function("parking_lot", |b| {
        b.iter_custom(|iters| {
            let parking = Arc::clone(&parking);
            contended_run(iters, move |_| *parking.lock() += 1)
        });
    });
    let locks = LockManager::builder().build();
    let book = locks.lock("book").expect("a valid name");
    group.bench_function("lock_manager_blocking", |b| {
        b.iter_custom(|iters| {
            let (locks, book) = (locks.clone(), book.clone());
            let holders: Vec<_> = (0..THREADS)
                .map(|n| locks.holder(format!("t{n}")))
                .collect();
            contended_run(iters, move |index| {
                let guard = holders[index]
                    .acquire_blocking(&book, Duration::from_secs(30))
                    .expect("no timeout under contention");
                drop(guard);
            })
        });
    });
    group.finish();
}

criterion_group!(benches, uncontended, contended);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio::print_ratio(GROUP, "lock_manager_blocking", "parking_lot");
    ratio::print_ratio(GROUP, "lock_manager_async", "tokio_mutex");
    ratio::print_ratio(CONTENDED, "lock_manager_blocking", "parking_lot");
}
