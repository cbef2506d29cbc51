//! The standard `process_*` metrics of the host process (the names every Prometheus client
//! library exports), read from `/proc/self`, and `plugin_host_build_info`.

use crate::prometheus::{Exposition, Kind};

/// Clock ticks per second of the CPU times in `/proc/self/stat`: USER_HZ, which Linux
/// fixes at 100 for what it exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// A `kB` figure of `/proc/self/status` (`VmRSS`), in bytes.
fn status_kb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix(key))?;
    let kb: f64 = line
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

/// The fields of `/proc/self/stat` after the command name, from field 3 (state) on.
fn stat_fields() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Seconds since the epoch at which the system booted.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Writes the `process_*` families (where `/proc` has them) and the build info.
pub(crate) fn write(out: &mut Exposition) {
    write_stat(out);
    write_files(out);
    write_build_info(out);
}

/// What `/proc/self/stat` and `/proc/self/status` tell: CPU, start, memory, threads.
fn write_stat(out: &mut Exposition) {
    if let Some(fields) = stat_fields() {
        // Index 0 here is field 3 of proc(5): utime is 14, stime 15, num_threads 20,
        // starttime 22, vsize 23.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let ticks = TICKS_PER_SECOND;
        if let (Some(user), Some(system)) = (field(14), field(15)) {
            out.single(
                "process_cpu_seconds_total",
                Kind::Counter,
                "Total user and system CPU time spent in seconds.",
                (user + system) / ticks,
            );
        }
        if let (Some(start), Some(boot)) = (field(22), boot_time()) {
            out.single(
                "process_start_time_seconds",
                Kind::Gauge,
                "Start time of the process since unix epoch in seconds.",
                boot + start / ticks,
            );
        }
        if let Some(vsize) = field(23) {
            out.single(
                "process_virtual_memory_bytes",
                Kind::Gauge,
                "Virtual memory size in bytes.",
                vsize,
            );
        }
        if let Some(rss) = status_kb("VmRSS") {
            out.single(
                "process_resident_memory_bytes",
                Kind::Gauge,
                "Resident memory size in bytes (this process; worker processes are in plugin_host_memory_rss_bytes).",
                rss,
            );
        }
        if let Some(threads) = field(20) {
            out.single(
                "process_threads",
                Kind::Gauge,
                "Number of OS threads in the process.",
                threads,
            );
        }
    }
}

/// Open and allowed file descriptors.
fn write_files(out: &mut Exposition) {
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.single(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
    if let Some(max) = max_fds() {
        out.single(
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            max,
        );
    }
}

fn write_build_info(out: &mut Exposition) {
    out.family(
        "plugin_host_build_info",
        Kind::Gauge,
        "Always 1: the host's version and the plugin-api and abi_stable versions plugins must match.",
    );
    out.sample(
        "plugin_host_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("plugin_api", plugin_host::plugin_api::API_VERSION),
            ("abi_stable", plugin_host::plugin_api::ABI_STABLE_VERSION),
        ],
        1.0,
    );
}
