//! The host as operators feel it, with the real binary, each against its baseline in the
//! same run:
//!
//! - warm `run` start to `/readyz` 200, 200 and 1,000 plugins (registry cache hit),
//!   against an empty plugins directory;
//! - cold scan (`list` with an empty cache) of 200 and 1,000 plugins;
//! - eager start of 200 plugins (every component ready) against loading the same files
//!   with abi_stable alone (`abi-load-baseline`), time and RSS;
//! - admin HTTP calls (`POST /components/gen-0000/call/ping`) against `GET /healthz`,
//!   both loaded by `wrk` (2 threads, 32 connections, 5 s each), a load generator in a
//!   process of its own (`apt-get install wrk`).
//!
//! The plugins are generated (`generate-plugins`): one library copied as N distinct ones.
//! `cargo bench -p plugin-host-tests --bench host` (builds the workspace in release).

// Tests and benches read top to bottom, one scenario each: the 60-line rule is for the
// library, not for them.
#![allow(clippy::too_many_lines)]

use std::{
    io::BufRead,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use criterion::Criterion;
use plugin_host_tests::{binary, generate_plugins, generated_name, ratio, rss_of, target_dir};

const START: &str = "host_start";
const SCAN: &str = "host_scan";
const EAGER: &str = "host_eager";
const HTTP: &str = "host_http";

/// A plugins directory with `count` generated plugins, and its own cache directory.
struct Fixture {
    _root: tempfile::TempDir,
    plugins: PathBuf,
    cache: PathBuf,
    config: PathBuf,
}

impl Fixture {
    fn new(count: usize, eager: bool) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let plugins = root.path().join("plugins");
        generate_plugins(&plugins, count).expect("generated plugins");
        let mut config = "[admin]\nlisten = \"127.0.0.1:0\"\n[host]\nwatch = false\n".to_owned();
        if eager {
            for index in 0..count {
                config.push_str(&format!(
                    "[components.{}]\neager = true\n",
                    generated_name(index)
                ));
            }
        }
        let config_path = root.path().join("host.toml");
        std::fs::write(&config_path, config).expect("config");
        Self {
            cache: root.path().join("cache"),
            plugins,
            config: config_path,
            _root: root,
        }
    }

    fn command(&self, cache: &Path) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--plugins-dir")
            .arg(&self.plugins)
            .arg("--cache-dir")
            .arg(cache)
            .env_remove("RUST_LOG");
        command
    }

    /// Scans once so the next starts hit the registry cache.
    fn warm(&self) {
        let status = self
            .command(&self.cache)
            .arg("list")
            .stdout(Stdio::null())
            .status()
            .expect("list");
        assert!(status.success());
    }
}

/// A started `run`: time from spawn to `/readyz` 200, the host's RSS then, and its admin
/// API's base URL.
struct Started {
    child: Child,
    took: Duration,
    rss: u64,
    addr: String,
}

fn start(fixture: &Fixture) -> Started {
    let started = Instant::now();
    let mut child = fixture
        .command(&fixture.cache)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("admin address");
    let addr = line
        .trim()
        .strip_prefix("admin listening on ")
        .expect("the admin address line")
        .to_owned();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    loop {
        if matches!(agent.get(&format!("{addr}/readyz")).call(), Ok(r) if r.status() == 200) {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let took = started.elapsed();
    let rss = rss_of(child.id());
    Started {
        child,
        took,
        rss,
        addr,
    }
}

fn stop(mut started: Started) {
    let _ = Command::new("kill")
        .args(["-TERM", &started.child.id().to_string()])
        .status();
    let _ = started.child.wait();
}

/// Times `iters` warm starts of `fixture`.
fn warm_starts(fixture: &Fixture, iters: u64) -> Duration {
    (0..iters)
        .map(|_| {
            let started = start(fixture);
            let took = started.took;
            stop(started);
            took
        })
        .sum()
}

/// Times `iters` cold scans (`list`, empty cache) of `fixture`.
fn cold_scans(fixture: &Fixture, iters: u64) -> Duration {
    (0..iters)
        .map(|_| {
            let cache = tempfile::tempdir().expect("cache");
            let started = Instant::now();
            let status = fixture
                .command(cache.path())
                .arg("list")
                .stdout(Stdio::null())
                .status()
                .expect("list");
            assert!(status.success());
            started.elapsed()
        })
        .sum()
}

/// Times `iters` runs of the abi_stable-only loader over `fixture`; the last RSS growth.
fn baseline_loads(fixture: &Fixture, iters: u64, rss: &mut u64) -> Duration {
    let program = target_dir().join("abi-load-baseline");
    (0..iters)
        .map(|_| {
            let started = Instant::now();
            let output = Command::new(&program)
                .arg(&fixture.plugins)
                .output()
                .expect("abi-load-baseline");
            let took = started.elapsed();
            let report: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("the baseline's report");
            *rss = report["rss_growth"].as_u64().unwrap_or(0);
            took
        })
        .sum()
}

/// Requests per second `wrk` gets from `url` with 2 threads and 32 connections over 5 s;
/// `post` sends an empty POST instead of a GET.
fn wrk(url: &str, post: bool) -> f64 {
    let script = tempfile::NamedTempFile::new().expect("wrk script");
    std::fs::write(
        script.path(),
        if post {
            "wrk.method = \"POST\"\nwrk.body = \"\"\n"
        } else {
            ""
        },
    )
    .expect("writing the wrk script");
    let output = Command::new("wrk")
        .args(["-t2", "-c32", "-d5s", "--latency", "-s"])
        .arg(script.path())
        .arg(url)
        .output()
        .unwrap_or_else(|err| panic!("cannot run wrk ({err}): apt-get install wrk"));
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") {
        let request = ureq::request(if post { "POST" } else { "GET" }, url);
        let one = match if post {
            request.send_string("")
        } else {
            request.call()
        } {
            Ok(response) => format!(
                "{} {}",
                response.status(),
                response.into_string().unwrap_or_default()
            ),
            Err(ureq::Error::Status(status, response)) => {
                format!("{status} {}", response.into_string().unwrap_or_default())
            }
            Err(err) => err.to_string(),
        };
        panic!("{url} answered errors under load (one request answers: {one}):\n{text}");
    }
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

fn main() {
    let _ = target_dir();
    let empty = Fixture::new(0, false);
    let two_hundred = Fixture::new(200, false);
    let thousand = Fixture::new(1000, false);
    let eager = Fixture::new(200, true);
    for fixture in [&empty, &two_hundred, &thousand, &eager] {
        fixture.warm();
    }

    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let mut group = criterion.benchmark_group(START);
    group.bench_function("warm_empty", |b| b.iter_custom(|n| warm_starts(&empty, n)));
    group.bench_function("warm_200", |b| {
        b.iter_custom(|n| warm_starts(&two_hundred, n))
    });
    group.bench_function("warm_1000", |b| {
        b.iter_custom(|n| warm_starts(&thousand, n))
    });
    group.finish();

    let mut group = criterion.benchmark_group(SCAN);
    group.bench_function("cold_200", |b| {
        b.iter_custom(|n| cold_scans(&two_hundred, n))
    });
    group.bench_function("cold_1000", |b| b.iter_custom(|n| cold_scans(&thousand, n)));
    group.finish();

    let mut baseline_rss = 0;
    let mut eager_rss = 0;
    let empty_rss = {
        let started = start(&empty);
        let rss = started.rss;
        stop(started);
        rss
    };
    let mut group = criterion.benchmark_group(EAGER);
    group.bench_function("abi_stable_only_200", |b| {
        b.iter_custom(|n| baseline_loads(&eager, n, &mut baseline_rss))
    });
    group.bench_function("host_200", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    let started = start(&eager);
                    let took = started.took;
                    eager_rss = started.rss;
                    stop(started);
                    took
                })
                .sum()
        })
    });
    group.finish();

    criterion.final_summary();
    let host = start(&two_hundred);
    let healthz = wrk(&format!("{}/healthz", host.addr), false);
    let call = wrk(
        &format!("{}/components/gen-0000/call/ping", host.addr),
        true,
    );
    stop(host);

    ratio::print_ratio(START, "warm_200", "warm_empty");
    ratio::print_ratio(START, "warm_1000", "warm_empty");
    ratio::print_ratio(SCAN, "cold_1000", "cold_200");
    ratio::print_ratio(EAGER, "host_200", "abi_stable_only_200");
    println!(
        "rss {EAGER}: host_200 {:.1} MiB above an empty host / abi_stable_only_200 {:.1} MiB",
        eager_rss.saturating_sub(empty_rss) as f64 / 1048576.0,
        baseline_rss as f64 / 1048576.0
    );
    println!(
        "ratio {HTTP}: call {:.0} req/s / healthz {:.0} req/s = {:.2}x (wrk -t2 -c32, goal >= 0.7x)",
        call,
        healthz,
        call / healthz
    );
}
