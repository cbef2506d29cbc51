//! Plugins as OCI artifacts, each against its baseline in the same run:
//!
//! - pull and verify a 10 MiB plugin from a loopback registry (Debian's `docker-registry`)
//!   with `plugin_host_oci::fetch` (index, manifest, description, library, every digest
//!   checked, the library renamed into a fresh store), against `skopeo copy --all` of the
//!   same artifact into an OCI layout directory;
//! - warm `run` start to `/readyz` with three plugins served from the artifact cache
//!   (`oci-layout` sources, pulled before), against the same three in a plain plugins
//!   directory.
//!
//! `cargo bench -p plugin-host-tests --bench oci` (needs `docker-registry` and `skopeo`).

use std::{
    io::BufRead,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use criterion::Criterion;
use plugin_host_oci::{Credentials, Origin, Platform, Registry, Want};
use plugin_host_tests::{binary, library, ratio, TestRegistry};

const PULL: &str = "oci_pull";
const START: &str = "oci_start";
/// The plugins both hosts serve.
const PLUGINS: [&str; 3] = ["market-data", "historical-data", "fixture-probe"];

fn run(args: &[&str]) {
    let output = Command::new(binary())
        .args(args)
        .output()
        .expect("plugin-host");
    assert!(
        output.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A 10 MiB build of market-data (bytes after the ELF's end pad it) pushed to `registry`.
fn push_10_mib(registry: &TestRegistry, dir: &Path) -> String {
    let padded = dir.join("libbig.so");
    let mut bytes = std::fs::read(library("market-data")).expect("market-data");
    bytes.resize(10 << 20, 0x5a);
    std::fs::write(&padded, bytes).expect("padded build");
    let reference = format!("{}/bench/big:1", registry.address);
    run(&[
        "push",
        "--insecure",
        padded.to_str().expect("utf-8"),
        &reference,
    ]);
    reference
}

fn fetch_into(reference: &plugin_host_oci::Reference, store: &Path) {
    let registry = Registry::new(reference, true, &Credentials::default());
    let origin = Origin::Registry {
        registry,
        reference: reference.clone(),
    };
    let platform = Platform::host();
    let want = Want {
        platform: &platform,
        keys: &[],
        require_signature: false,
        store,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(plugin_host_oci::fetch(&origin, want))
        .expect("fetch");
}

fn skopeo_copy(reference: &str, target: &Path) {
    let status = Command::new("skopeo")
        .args(["copy", "--all", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:1", target.display()))
        .status()
        .expect("skopeo");
    assert!(status.success());
}

/// Times `iters` runs of `each` into a fresh directory.
fn timed(iters: u64, mut each: impl FnMut(&Path)) -> Duration {
    (0..iters)
        .map(|_| {
            let dir = tempfile::tempdir().expect("temp dir");
            let started = Instant::now();
            each(&dir.path().join("out"));
            started.elapsed()
        })
        .sum()
}

/// Two hosts' worth of the same plugins: a plain directory, and `oci-layout` sources
/// already pulled into their cache.
struct Starts {
    _root: tempfile::TempDir,
    plain: (PathBuf, PathBuf, PathBuf),
    sourced: (PathBuf, PathBuf, PathBuf),
}

impl Starts {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let plain_plugins = root.path().join("plain");
        std::fs::create_dir(&plain_plugins).expect("plugins dir");
        let layout = root.path().join("layout");
        let mut sources = String::new();
        for name in PLUGINS {
            let file = plain_plugins.join(library(name).file_name().expect("file name"));
            std::fs::copy(library(name), &file).expect("plugin");
            let tag = format!("{}:{name}", layout.display());
            run(&["pack", file.to_str().expect("utf-8"), &tag]);
            sources.push_str(&format!(
                "[[sources]]\nname = \"{name}\"\noci-layout = \"{tag}\"\n"
            ));
        }
        let head = "[admin]\nlisten = \"127.0.0.1:0\"\n[host]\nwatch = false\n";
        let config = |name: &str, extra: &str| {
            let path = root.path().join(name);
            std::fs::write(&path, format!("{head}{extra}")).expect("config");
            path
        };
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).expect("empty plugins dir");
        let plain = (
            config("plain.toml", ""),
            plain_plugins,
            root.path().join("plain-cache"),
        );
        let sourced = (
            config("sourced.toml", &sources),
            empty,
            root.path().join("sourced-cache"),
        );
        let starts = Self {
            _root: root,
            plain,
            sourced,
        };
        for (config, plugins, cache) in [&starts.plain, &starts.sourced] {
            let dirs = [
                "--plugins-dir",
                plugins.to_str().expect("utf-8"),
                "--cache-dir",
                cache.to_str().expect("utf-8"),
            ];
            let mut args = vec!["--config", config.to_str().expect("utf-8")];
            args.extend(dirs);
            args.push("check");
            run(&args);
        }
        starts
    }
}

/// Spawn to `/readyz` 200, `iters` times.
fn warm_starts((config, plugins, cache): &(PathBuf, PathBuf, PathBuf), iters: u64) -> Duration {
    (0..iters)
        .map(|_| {
            let started = Instant::now();
            let mut child = Command::new(binary())
                .arg("--config")
                .arg(config)
                .arg("--plugins-dir")
                .arg(plugins)
                .arg("--cache-dir")
                .arg(cache)
                .arg("run")
                .env_remove("RUST_LOG")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("run");
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("admin address");
            let addr = line
                .trim()
                .strip_prefix("admin listening on ")
                .expect("address")
                .to_owned();
            while !matches!(ureq::get(&format!("{addr}/readyz")).call(), Ok(r) if r.status() == 200)
            {
                std::thread::sleep(Duration::from_micros(500));
            }
            let took = started.elapsed();
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            took
        })
        .sum()
}

fn main() {
    let Some(registry) = TestRegistry::start() else {
        println!("docker-registry is not installed: no OCI benchmarks");
        return;
    };
    let root = tempfile::tempdir().expect("temp dir");
    let reference = push_10_mib(&registry, root.path());
    let parsed: plugin_host_oci::Reference = reference.parse().expect("reference");
    let starts = Starts::new();

    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let mut group = criterion.benchmark_group(PULL);
    group.bench_function("plugin_host_fetch_10mib", |b| {
        b.iter_custom(|n| timed(n, |dir| fetch_into(&parsed, dir)))
    });
    group.bench_function("skopeo_copy_10mib", |b| {
        b.iter_custom(|n| timed(n, |dir| skopeo_copy(&reference, dir)))
    });
    group.finish();
    let mut group = criterion.benchmark_group(START);
    group.bench_function("plain_dir_3", |b| {
        b.iter_custom(|n| warm_starts(&starts.plain, n))
    });
    group.bench_function("artifact_cache_3", |b| {
        b.iter_custom(|n| warm_starts(&starts.sourced, n))
    });
    group.finish();
    criterion.final_summary();

    ratio::print_ratio(PULL, "plugin_host_fetch_10mib", "skopeo_copy_10mib");
    ratio::print_ratio(START, "artifact_cache_3", "plain_dir_3");
}
