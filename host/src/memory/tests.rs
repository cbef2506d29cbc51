//! Unit tests of the memory manager: reservations, admission, pressure, the limit.

use super::*;

fn manager(limit: u64) -> MemoryManager {
    MemoryManager::builder()
        .with_limit(MemoryLimit::Bytes(limit))
        .build()
}

#[test]
fn a_component_that_overshot_its_estimate_is_admitted_by_what_it_used() {
    let rss = RssReader::new().read();
    let manager = manager(rss + (1000 << 20));
    manager.reserve("hog", 64 << 20).expect("its estimate fits");
    let record = |measured: u64| {
        manager
            .inner
            .components
            .lock()
            .entry("hog".into())
            .or_default()
            .measured = Some(measured);
    };
    // Within twice its estimate: the estimate stands.
    record(120 << 20);
    assert_eq!(manager.admission_bytes("hog", 64 << 20), 64 << 20);
    // Past it: what it used, which no longer fits.
    record(1200 << 20);
    let refused = manager
        .reserve("hog", 64 << 20)
        .expect_err("1200 MiB do not fit");
    assert_eq!(refused.needed, 1200 << 20);
    assert_eq!(manager.component("hog").map(|c| c.estimate), Some(64 << 20));
}

#[test]
fn reservations_count_against_the_limit_until_released() {
    // Margins of hundreds of MiB: other tests of this process allocating or freeing
    // tens of MiB meanwhile cannot change the outcome.
    let rss = RssReader::new().read();
    let manager = manager(rss + (1000 << 20));
    let first = manager.reserve("a", 600 << 20).expect("fits");
    let refused = manager
        .reserve("b", 600 << 20)
        .expect_err("the first reservation holds 600 MiB");
    assert_eq!(refused.reserved, 600 << 20);
    assert!(
        refused.to_string().contains("600 MiB reserved"),
        "{refused}"
    );
    drop(first);
    manager.reserve("b", 600 << 20).expect("fits once released");
}

#[test]
fn pressure_levels_follow_the_thresholds() {
    let manager = manager(1000);
    assert_eq!(manager.pressure_at(500), PressureLevel::Normal);
    assert_eq!(manager.pressure_at(750), PressureLevel::Medium);
    assert_eq!(manager.pressure_at(850), PressureLevel::High);
    assert_eq!(manager.pressure_at(990), PressureLevel::Critical);
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
#[cfg(target_os = "linux")]
fn meminfo_total() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("MemTotal");
    kib * 1024
}

#[cfg(target_os = "linux")]
#[test]
fn the_auto_limit_is_nine_tenths_of_the_cgroup_limit_or_three_quarters_of_ram() {
    let manager = MemoryManager::builder().build();
    match manager.limit_source() {
        LimitSource::Cgroup {
            file, cgroup_limit, ..
        } => {
            let text = std::fs::read_to_string(file).expect("the cgroup file it names");
            assert_eq!(text.trim().parse::<u64>().ok(), Some(*cgroup_limit));
            assert_eq!(manager.limit(), cgroup_limit / 10 * 9);
        }
        LimitSource::PhysicalMemory { total } => {
            assert_eq!(*total, meminfo_total(), "the machine's own figure");
            assert_eq!(manager.limit(), total / 4 * 3);
        }
        other => panic!("an auto limit came from {other}"),
    }
}
