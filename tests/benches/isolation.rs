//! Process isolation, measured: an empty call through an in-process component, through
//! an isolated one (a round trip to its worker process), and the floor of that
//! transport, a bare socketpair ping-pong between two processes; and a worker's cold
//! start. Criterion measures each; then the same run samples every round trip one by one
//! and prints p50/p99 and the ratios the goals are stated in, and the isolated calls a
//! second of one caller and of eight calling at once.
//!
//! `cargo bench -p plugin-host-tests --bench isolation` (builds the workspace in release).

// Tests and benches read top to bottom, one scenario each: the 60-line rule is for the
// library, not for them.
#![allow(clippy::too_many_lines)]

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use criterion::Criterion;
use plugin_host::{ComponentHandle, Coordinator};
use plugin_host_tests::{host, Sandbox};

const CONFIG: &str = "[components.counter]\nisolation = \"process\"\n[components.counter.config]\ndelay_ms = 0\n[components.locker]\n";

/// The same isolated component, its large payloads in shared memory.
const SHARED_CONFIG: &str = "[limits]\nshared_memory_from = \"64KiB\"\n[components.counter]\nisolation = \"process\"\n[components.counter.config]\ndelay_ms = 0\n";

/// The other end of a socket pair, in a forked child that echoes 16-byte messages.
struct Echo {
    stream: UnixStream,
    child: libc::pid_t,
}

impl Echo {
    fn start() -> Self {
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        // SAFETY: the child only reads, writes and exits (async-signal-safe calls) on a
        // descriptor it owns; it never returns into the parent's code.
        #[allow(unsafe_code)]
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            use std::os::fd::AsRawFd;
            let fd = theirs.as_raw_fd();
            let mut buf = [0u8; 16];
            loop {
                // SAFETY: reading into and writing from a buffer of this frame.
                #[allow(unsafe_code)]
                unsafe {
                    if libc::read(fd, buf.as_mut_ptr().cast(), 16) != 16
                        || libc::write(fd, buf.as_ptr().cast(), 16) != 16
                    {
                        libc::_exit(0);
                    }
                }
            }
        }
        drop(theirs);
        Self {
            stream: ours,
            child,
        }
    }

    fn round_trip(&mut self) {
        let mut buf = [7u8; 16];
        self.stream.write_all(&buf).expect("ping");
        self.stream.read_exact(&mut buf).expect("pong");
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        // SAFETY: reaping the child forked above.
        #[allow(unsafe_code)]
        unsafe {
            libc::waitpid(self.child, std::ptr::null_mut(), 0);
        }
    }
}

/// Per-round-trip times of `n` runs of `f`, sorted, in microseconds.
fn samples(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn call(handle: &ComponentHandle) {
    let reply = handle.call_blocking("ping", b"null").expect("ping");
    assert_eq!(reply, br#""pong""#);
}

fn echo_large(handle: &ComponentHandle, payload: &[u8]) {
    let reply = handle.call_blocking("echo", payload).expect("echo");
    assert_eq!(reply.len(), payload.len());
}

/// Calls per second through `handle` from `callers` threads calling at once for `span`.
fn throughput(handle: &ComponentHandle, callers: usize, span: Duration) -> f64 {
    let until = Instant::now() + span;
    let calls: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..callers)
            .map(|_| {
                let handle = handle.clone();
                scope.spawn(move || {
                    let mut calls = 0u64;
                    while Instant::now() < until {
                        call(&handle);
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("caller")).sum()
    });
    #[allow(clippy::cast_precision_loss)] // a count of calls in seconds
    let rate = calls as f64 / span.as_secs_f64();
    rate
}

/// Evicts the isolated component (its worker exits with its last instance) and gets it
/// again: a new worker starts, opens the library and creates the component.
fn cold_start(runtime: &tokio::runtime::Runtime, coordinator: &Coordinator) -> Duration {
    runtime
        .block_on(coordinator.evict("counter", false))
        .expect("evict");
    let started = Instant::now();
    let handle = runtime.block_on(coordinator.get("counter")).expect("get");
    let took = started.elapsed();
    call(&handle);
    let pid = handle.worker_pid();
    drop(handle);
    assert!(pid.is_some(), "the component runs in a worker");
    took
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = runtime.block_on(host(&sandbox, CONFIG));
    let coordinator = host.coordinator().clone();
    let isolated = runtime
        .block_on(coordinator.get("counter"))
        .expect("counter");
    let in_process = runtime.block_on(coordinator.get("locker")).expect("locker");
    assert!(isolated.worker_pid().is_some() && in_process.worker_pid().is_none());
    let mut echo = Echo::start();

    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let mut group = criterion.benchmark_group("isolation");
    group.bench_function("in_process_call", |b| b.iter(|| call(&in_process)));
    group.bench_function("isolated_call", |b| b.iter(|| call(&isolated)));
    group.bench_function("socketpair_ping_pong", |b| b.iter(|| echo.round_trip()));
    group.finish();

    // The same run, one round trip at a time, for percentiles.
    let n = 20_000;
    let floor = samples(n, || echo.round_trip());
    let remote = samples(n, || call(&isolated));
    let local = samples(n, || call(&in_process));
    let payload = vec![7u8; 1 << 20];
    let local_large = samples(300, || echo_large(&in_process, &payload));
    let remote_large = samples(300, || echo_large(&isolated, &payload));
    let shared_large = {
        let sharing = runtime.block_on(plugin_host_tests::host(&sandbox, SHARED_CONFIG));
        let isolated = runtime
            .block_on(sharing.coordinator().get("counter"))
            .expect("counter");
        let times = samples(300, || echo_large(&isolated, &payload));
        drop(isolated);
        runtime.block_on(sharing.coordinator().shutdown(Duration::from_secs(5)));
        times
    };
    let alone = throughput(&isolated, 1, Duration::from_secs(3));
    let eight = throughput(&isolated, 8, Duration::from_secs(3));
    // Nothing may hold the instance, or eviction leaves it (and its worker) alive.
    drop(isolated);
    let starts: Vec<f64> = {
        let mut times: Vec<f64> = (0..20)
            .map(|_| cold_start(&runtime, &coordinator).as_secs_f64() * 1e3)
            .collect();
        times.sort_by(f64::total_cmp);
        times
    };
    println!("\nisolation, {n} round trips each (us):");
    println!("  {:<24} {:>8} {:>8}", "", "p50", "p99");
    for (name, times) in [
        ("in-process call", &local),
        ("isolated call", &remote),
        ("socketpair ping-pong", &floor),
    ] {
        println!(
            "  {name:<24} {:>8.1} {:>8.1}",
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    }
    println!(
        "echo of 1 MiB (p50): in process {:.1} us, isolated {:.1} us: {:.2}x (goal <= 2x); isolated through shared memory {:.1} us: {:.2}x",
        percentile(&local_large, 0.5),
        percentile(&remote_large, 0.5),
        percentile(&remote_large, 0.5) / percentile(&local_large, 0.5),
        percentile(&shared_large, 0.5),
        percentile(&shared_large, 0.5) / percentile(&local_large, 0.5)
    );
    let ratio = percentile(&remote, 0.5) / percentile(&floor, 0.5);
    println!(
        "ratio isolated / ping-pong (p50): {ratio:.2}x (goal <= 1.5x); isolated p50 {:.1} us (goal <= 25 us)",
        percentile(&remote, 0.5)
    );
    println!(
        "isolated calls per second: 1 caller {alone:.0}, 8 callers at once {eight:.0}: {:.2}x (goal >= 4x)",
        eight / alone
    );
    println!(
        "worker cold start (evict + get, worker start + open + create): p50 {:.1} ms, max {:.1} ms (goal <= 20 ms)",
        percentile(&starts, 0.5),
        starts[starts.len() - 1]
    );
    drop(echo);
    runtime.block_on(coordinator.shutdown(Duration::from_secs(5)));
    criterion.final_summary();
}
