//! The soak: a real `plugin-host run` under a random mix of calls, hung calls, cold gets,
//! evictions, a component allocating past its estimate and lock use, for 30 s (set
//! `SOAK_SECS` for longer). Throughout and at the end it checks what the host promises:
//! health answers within 1 s, every call gets a result or a typed error, the host's call
//! counters match the client's, RSS comes back under the limit, every instance is dropped
//! at shutdown, and the thread count stays bounded.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use plugin_host_tests::{RunningHost, Sandbox};

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 400 * MIB;

/// A small xorshift generator: the mix differs per run, and the seed is printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// What the client saw, per component: answers by status.
#[derive(Default)]
struct Tally {
    statuses: HashMap<(String, u16), u64>,
    untyped: Vec<String>,
}

impl Tally {
    fn count(&self, component: &str, status: u16) -> u64 {
        self.statuses
            .get(&(component.to_owned(), status))
            .copied()
            .unwrap_or(0)
    }
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One random action against the host; records the call's answer.
fn act(host: &RunningHost, rng: &mut Rng, tally: &Mutex<Tally>) {
    let (component, method, body) = match rng.next(10) {
        0..=2 => ("market-data", "quote", r#"{"symbol":"MSFT"}"#.to_owned()),
        3 => ("sleeper", "sleep", r#"{"ms":2000}"#.to_owned()),
        4 => ("sleeper", "sleep", r#"{"ms":5}"#.to_owned()),
        5 => ("hog-low", "size", String::new()),
        6 => ("leaf", "size", String::new()),
        7 => (
            "locker",
            "with_lock",
            r#"{"name":"soak","hold_ms":5,"timeout_ms":2000}"#.to_owned(),
        ),
        8 => {
            let victim = ["leaf", "counter", "hog-low"][rng.next(3) as usize];
            let (status, body) = host.post(&format!("/components/{victim}/evict"), "");
            assert!(
                matches!(status, 200 | 409),
                "evict {victim}: {status} {body}"
            );
            return;
        }
        _ => ("counter", "ping", String::new()),
    };
    let (status, answer) = host.post(&format!("/components/{component}/call/{method}"), &body);
    let mut tally = tally.lock().unwrap();
    *tally
        .statuses
        .entry((component.to_owned(), status))
        .or_default() += 1;
    let typed = match status {
        200 => serde_json::from_str::<plugin_host_admin::api::CallResult>(&answer).is_ok(),
        _ => serde_json::from_str::<plugin_host_admin::api::ErrorBody>(&answer).is_ok(),
    };
    if !typed || !matches!(status, 200 | 503 | 504 | 507) {
        tally
            .untyped
            .push(format!("{component}.{method}: {status} {answer}"));
    }
}

fn metric(text: &str, name: &str, component: &str) -> f64 {
    let prefix = format!("{name}{{component=\"{component}\"");
    text.lines()
        .find(|line| line.starts_with(&prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} for {component}"))
}

#[test]
fn soak_under_mixed_faults_keeps_every_promise() {
    let seconds: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("soak: {seconds} s, seed {seed}");
    let sandbox = Sandbox::with_plugins(&[
        "fixture-probe",
        "fixture-memory-hog",
        "fixture-leaf",
        "market-data",
    ]);
    let drops = sandbox.root().join("drops.log");
    // Which thread each probe instance is created and dropped on, to hold the host to
    // plugin threads (never an async worker).
    let log_file = format!(
        "log_file = {:?}\nrecord_threads = true\n",
        drops.display().to_string()
    );
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [memory]\nlimit = {LIMIT}\nmin_idle = \"0s\"\nsample_interval = \"200ms\"\n\
         [timeouts.operations]\nsleep = \"300ms\"\n\
         [components.sleeper]\nmax_concurrent_calls = 16\n\
         [components.sleeper.config]\n{log_file}\
         [components.counter.config]\n{log_file}\
         [components.locker.config]\n{log_file}\
         [components.leaf.config]\nbytes = {}\n{log_file}\
         [components.hog-low.config]\nbytes = {}\n",
        48 * MIB,
        420 * MIB,
    );
    let host = Arc::new(RunningHost::start(&sandbox, &config));
    let pid = host.pid();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let running = Arc::new(AtomicBool::new(true));
    let tally = Arc::new(Mutex::new(Tally::default()));

    let prober = {
        let (host, running) = (Arc::clone(&host), Arc::clone(&running));
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let (mut max_threads, mut rss) = (0, Vec::new());
            while running.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (status, _) = host.get("/healthz");
                assert_eq!(status, 200);
                slowest = slowest.max(started.elapsed());
                max_threads = max_threads.max(proc_status(pid, "Threads:"));
                rss.push((Instant::now(), proc_status(pid, "VmRSS:") * 1024));
                std::thread::sleep(Duration::from_millis(100));
            }
            (slowest, max_threads, rss)
        })
    };
    let clients: Vec<_> = (0..6)
        .map(|n| {
            let (host, tally) = (Arc::clone(&host), Arc::clone(&tally));
            let mut rng = Rng(seed.wrapping_mul(n * 2 + 1) | 1);
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    act(&host, &mut rng, &tally);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    // Let the last hung calls return before counting.
    plugin_host_tests::wait_for("the last hung calls to return", || {
        host.components()
            .iter()
            .all(|c| c.calls_in_flight == 0)
            .then_some(())
    });
    running.store(false, Ordering::Relaxed);
    let (slowest, max_threads, rss) = prober.join().expect("prober");
    let (_, metrics) = host.get("/metrics");

    let tally = tally.lock().unwrap();
    assert!(
        tally.untyped.is_empty(),
        "untyped answers: {:?}",
        tally.untyped
    );
    println!("soak: slowest health probe {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a health probe took {slowest:?}"
    );
    for (component, ran) in [
        ("market-data", tally.count("market-data", 200)),
        ("counter", tally.count("counter", 200)),
        ("leaf", tally.count("leaf", 200)),
        (
            "sleeper",
            tally.count("sleeper", 200) + tally.count("sleeper", 504),
        ),
    ] {
        assert_eq!(
            metric(&metrics, "plugin_host_component_calls_total", component) as u64,
            ran,
            "the host counted every call of {component} the client saw run"
        );
    }
    assert!(tally.count("market-data", 200) > 0 && tally.count("sleeper", 504) > 0);
    // RSS passes the limit once: hog-low's first creation allocates 420 MiB past its
    // 64 MiB estimate. The sampler (every 200 ms) must evict it within 2 s, and from then
    // on admission reserves what it used, so it is refused rather than let in again
    // (before, each re-creation overshot again, and the stretches ran together: 4.7 s).
    let (mut longest_over, mut over_since) = (Duration::ZERO, None);
    for (at, bytes) in &rss {
        if *bytes > LIMIT + LIMIT / 10 {
            let since = *over_since.get_or_insert(*at);
            longest_over = longest_over.max(at.duration_since(since));
        } else {
            over_since = None;
        }
    }
    println!("soak: RSS above the limit + 10% for at most {longest_over:?}");
    assert!(
        longest_over < Duration::from_secs(2),
        "RSS stayed above the limit + 10% for {longest_over:?}"
    );
    assert!(
        tally.count("hog-low", 200) > 0 && tally.count("hog-low", 507) > 0,
        "hog-low was let in once, then refused by what it used"
    );
    assert!(
        rss.iter().any(|(_, bytes)| *bytes > LIMIT * 3 / 4),
        "the mix put the memory budget under pressure"
    );
    assert!(max_threads < 200, "threads peaked at {max_threads}");

    let host = Arc::into_inner(host).expect("the only handle");
    assert_eq!(host.stop(), Some(0));
    let log = std::fs::read_to_string(&drops).unwrap_or_default();
    assert!(
        log.lines().filter(|l| l.ends_with(" on plugin")).count() >= 2,
        "the log says on which thread instances were created and dropped:\n{log}"
    );
    assert!(
        log.lines()
            .all(|l| !l.contains(" on ") || l.ends_with(" on plugin")),
        "an instance was created or dropped off the plugin executor:\n{log}"
    );
    for name in ["sleeper", "counter", "locker", "leaf"] {
        let creates = log
            .lines()
            .filter(|l| *l == format!("create {name}") || *l == format!("create {name} on plugin"))
            .count();
        let dropped = log
            .lines()
            .filter(|l| *l == format!("drop {name}") || *l == format!("drop {name} on plugin"))
            .count();
        assert_eq!(creates, dropped, "every {name} created was dropped:\n{log}");
    }
}
