//! The memory admission check (RSS read + reservation bookkeeping) next to a bare sysinfo
//! one-pid refresh, measured in the same run.

// Tests and benches read top to bottom, one scenario each: the 60-line rule is for the
// library, not for them.
#![allow(clippy::too_many_lines)]

use criterion::{criterion_group, Criterion};
use plugin_host::MemoryManager;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use plugin_host_tests::ratio;

const GROUP: &str = "memory_admission";

fn bench(c: &mut Criterion) {
    let manager = MemoryManager::builder().build();
    let pid = sysinfo::get_current_pid().expect("pid");
    let mut system = System::new().expect("sysinfo");

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("sysinfo_refresh_one_pid", |b| {
        b.iter(|| {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::nothing().with_memory(),
            );
            system.process(pid).map(sysinfo::Process::memory)
        });
    });
    group.bench_function("admission_reserve_release", |b| {
        b.iter(|| drop(manager.reserve("bench", 1 << 20).expect("fits")));
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio::print_ratio(
        GROUP,
        "admission_reserve_release",
        "sysinfo_refresh_one_pid",
    );
}
