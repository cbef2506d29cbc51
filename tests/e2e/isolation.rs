//! Process isolation: the same fixture libraries, run in worker processes of the real
//! binary. Crashes, hangs and memory hogs end their worker, not the host; the component
//! works again on the next call; dependencies cross between modes; a changed file is
//! taken up without a failed call.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use plugin_host::{CallError, Coordinator, Isolation};
use plugin_host_tests::{discover, host, library, runtime, wait_for_async, Sandbox};

async fn call_json(
    coordinator: &Coordinator,
    component: &str,
    method: &str,
    input: &str,
) -> Result<serde_json::Value, CallError> {
    let output = coordinator
        .call(component, method, input.as_bytes().to_vec())
        .await?;
    Ok(serde_json::from_slice(&output).expect("JSON reply"))
}

async fn pid_of(coordinator: &Coordinator, component: &str) -> u32 {
    let pid = call_json(coordinator, component, "pid", "null")
        .await
        .unwrap_or_else(|err| panic!("{component}.pid: {err}"));
    u32::try_from(pid.as_u64().expect("a pid")).expect("a pid")
}

const ISOLATED_PROBE: &str =
    "[components.counter]\nisolation = \"process\"\n[components.counter.config]\ndelay_ms = 0\n";

#[test]
fn an_isolated_component_runs_in_a_worker_and_an_in_process_one_in_the_host() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let config = format!("{ISOLATED_PROBE}[components.locker]\n");
        let host = host(&sandbox, &config).await;
        let coordinator = host.coordinator().clone();
        let worker = pid_of(&coordinator, "counter").await;
        let host = pid_of(&coordinator, "locker").await;
        assert_eq!(host, std::process::id());
        assert_ne!(worker, host);
        let status = coordinator.components();
        let counter = status
            .iter()
            .find(|c| c.name == "counter")
            .expect("counter");
        assert_eq!(counter.isolation, Isolation::Process);
        assert_eq!(counter.worker_pid, Some(worker));
        let locker = status.iter().find(|c| c.name == "locker").expect("locker");
        assert_eq!(locker.isolation, Isolation::InProcess);
        assert_eq!(locker.worker_pid, None);
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn a_crash_in_an_isolated_call_is_an_error_naming_the_signal_and_the_next_call_works() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let host = host(&sandbox, ISOLATED_PROBE).await;
        let coordinator = host.coordinator().clone();
        for (how, expected) in [
            ("abort", "SIGABRT"),
            ("segfault", "SIGSEGV"),
            ("exit", "exit code 7"),
        ] {
            let before = pid_of(&coordinator, "counter").await;
            let input = format!("{{\"how\":\"{how}\"}}");
            let err = call_json(&coordinator, "counter", "crash", &input)
                .await
                .expect_err("the worker crashed");
            let message = err.to_string();
            assert!(
                matches!(err, CallError::WorkerFailed { .. }) && message.contains(expected),
                "{how}: {message}"
            );
            assert!(message.contains(&before.to_string()), "{message}");
            let after = pid_of(&coordinator, "counter").await;
            assert_ne!(before, after, "{how}: a new worker serves the next call");
        }
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

const HANGING_PROBE: &str = "[timeouts]\nkill_grace = \"200ms\"\n[components.counter]\nisolation = \"process\"\ntimeout = \"300ms\"\n[components.counter.config]\ndelay_ms = 0\n[components.locker]\n";

#[test]
fn a_hung_isolated_call_times_out_its_worker_is_killed_and_the_host_serves_on() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let host = host(&sandbox, HANGING_PROBE).await;
        let coordinator = host.coordinator().clone();
        let before = pid_of(&coordinator, "counter").await;
        let hung = call_json(&coordinator, "counter", "sleep", "{\"ms\":3600000}");
        let other = call_json(&coordinator, "locker", "ping", "null");
        let (hung, other) = tokio::join!(hung, other);
        assert!(matches!(hung, Err(CallError::TimedOut { .. })), "{hung:?}");
        assert_eq!(other.expect("the host serves other components"), "pong");
        // The worker is killed after the grace period; the next call gets a new one.
        assert!(wait_gone(before).await, "worker {before} still runs");
        let after = pid_of(&coordinator, "counter").await;
        assert_ne!(before, after);
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn hundreds_of_hung_isolated_calls_leave_the_host_thread_count_bounded() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let config = HANGING_PROBE.replace("timeout = \"300ms\"", "timeout = \"100ms\"");
        let host = host(&sandbox, &config).await;
        let coordinator = host.coordinator().clone();
        pid_of(&coordinator, "counter").await;
        let baseline = threads();
        let mut timed_out = 0;
        for _wave in 0..15 {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..20 {
                let coordinator = coordinator.clone();
                calls.spawn(async move {
                    let input = b"{\"ms\":3600000}".to_vec();
                    coordinator.call("counter", "sleep", input).await
                });
            }
            while let Some(result) = calls.join_next().await {
                if matches!(result, Ok(Err(CallError::TimedOut { .. }))) {
                    timed_out += 1;
                }
            }
            // Each wave's worker is killed after the grace; its calls' threads return.
            wait_for_async("the wave's calls to return", || {
                let (_, busy) = host.plugin_threads();
                async move { (busy == 0).then_some(()) }
            })
            .await;
        }
        assert!(
            timed_out >= 250,
            "only {timed_out} of 300 calls hung and timed out"
        );
        let after = threads();
        eprintln!("threads: {baseline} before, {after} after 300 hung calls");
        assert!(
            after <= baseline + 48,
            "{after} threads after 300 hung calls, {baseline} before"
        );
        assert_eq!(
            call_json(&coordinator, "counter", "ping", "null")
                .await
                .expect("ping"),
            "pong"
        );
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn an_isolated_worker_past_its_memory_limit_is_killed_and_the_error_names_the_limit() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let config = format!("{ISOLATED_PROBE}memory_limit = \"96MiB\"\n");
        let config = config.replace(
            "[components.counter.config]\ndelay_ms = 0\nmemory_limit = \"96MiB\"\n",
            "memory_limit = \"96MiB\"\n[components.counter.config]\ndelay_ms = 0\n",
        );
        let host = host(&sandbox, &config).await;
        let coordinator = host.coordinator().clone();
        let before = pid_of(&coordinator, "counter").await;
        let err = call_json(
            &coordinator,
            "counter",
            "crash",
            "{\"how\":\"alloc\",\"mb\":400}",
        )
        .await
        .expect_err("the worker passed its limit");
        let message = err.to_string();
        assert!(
            matches!(err, CallError::WorkerFailed { .. }) && message.contains("memory_limit"),
            "{message}"
        );
        assert_ne!(pid_of(&coordinator, "counter").await, before);
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

/// `user` depends on `leaf`; the two come from different libraries.
async fn dependency_pids(config: &str) -> (u32, u32) {
    let sandbox = Sandbox::with_plugins(&["fixture-leaf", "fixture-user"]);
    let host = host(&sandbox, config).await;
    let coordinator = host.coordinator().clone();
    let user = pid_of(&coordinator, "user").await;
    let leaf = call_json(&coordinator, "user", "leaf_pid", "null")
        .await
        .expect("user calls leaf");
    let leaf = u32::try_from(leaf.as_u64().expect("pid")).expect("pid");
    assert_eq!(leaf, pid_of(&coordinator, "leaf").await);
    coordinator.shutdown(Duration::from_secs(5)).await;
    (user, leaf)
}

#[test]
fn dependencies_cross_between_modes_both_ways() {
    runtime().block_on(async {
        let host = std::process::id();
        let isolated = "isolation = \"process\"\n";
        let (user, leaf) = dependency_pids(&format!("[components.user]\n{isolated}")).await;
        assert!(
            user != host && leaf == host,
            "isolated user -> in-process leaf"
        );
        let (user, leaf) = dependency_pids(&format!("[components.leaf]\n{isolated}")).await;
        assert!(
            user == host && leaf != host,
            "in-process user -> isolated leaf"
        );
        let (user, leaf) = dependency_pids(&format!("[host]\n{isolated}")).await;
        assert!(
            user != host && leaf != host && user != leaf,
            "each library in its own worker"
        );
    });
}

#[test]
fn a_lock_is_exclusive_between_an_isolated_and_an_in_process_component() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let host = host(&sandbox, &format!("{ISOLATED_PROBE}[components.locker]\n")).await;
        let coordinator = host.coordinator().clone();
        let request = "{\"name\":\"book\",\"hold_ms\":150,\"timeout_ms\":5000}";
        let (a, b) = tokio::join!(
            call_json(&coordinator, "counter", "with_lock", request),
            call_json(&coordinator, "locker", "with_lock", request),
        );
        let (a, b) = (a.expect("isolated holder"), b.expect("in-process holder"));
        let span = |v: &serde_json::Value| {
            (
                v["start_us"].as_u64().expect("start"),
                v["end_us"].as_u64().expect("end"),
            )
        };
        let ((a_start, a_end), (b_start, b_end)) = (span(&a), span(&b));
        assert!(
            a_end <= b_start || b_end <= a_start,
            "the holds overlapped: {a} {b}"
        );
        let stats = host.locks().stats_of("book").expect("book");
        assert_eq!(stats.acquisitions, 2);
        assert!(host
            .locks()
            .stats_of("book")
            .expect("book")
            .holder
            .is_none());
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn a_lock_held_in_a_worker_that_crashes_is_released() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let config = format!("{ISOLATED_PROBE}[components.locker]\n");
        let host = host(&sandbox, &config).await;
        let coordinator = host.coordinator().clone();
        let hold = "{\"name\":\"book\",\"hold_ms\":600000,\"timeout_ms\":1000}";
        let holder = call_json(&coordinator, "counter", "with_lock", hold);
        let crash = async {
            // Once the lock is held in the worker, crash the worker.
            wait_for_async("the lock to be held in the worker", || async {
                host.locks().stats_of("book").and_then(|s| s.holder)
            })
            .await;
            call_json(&coordinator, "counter", "crash", "{\"how\":\"abort\"}").await
        };
        let (held, crashed) = tokio::join!(holder, crash);
        assert!(
            matches!(held, Err(CallError::WorkerFailed { .. })),
            "{held:?}"
        );
        assert!(crashed.is_err());
        let request = "{\"name\":\"book\",\"hold_ms\":1,\"timeout_ms\":2000}";
        call_json(&coordinator, "locker", "with_lock", request)
            .await
            .expect("the lock is free again");
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

/// Calls `counter.ping` from `tasks` tasks until `stop`, counting answers in `answered`;
/// each task returns the failures it saw.
fn steady_traffic(
    coordinator: &Coordinator,
    tasks: usize,
    stop: &Arc<AtomicBool>,
    answered: &Arc<AtomicU64>,
) -> tokio::task::JoinSet<Vec<String>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (coordinator, stop, answered) =
            (coordinator.clone(), Arc::clone(stop), Arc::clone(answered));
        set.spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match coordinator.call("counter", "ping", b"null".to_vec()).await {
                    Ok(_) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => failures.push(err.to_string()),
                }
            }
            failures
        });
    }
    set
}

/// Waits until `answered` has grown by at least 20: the traffic flows.
async fn traffic_flows(answered: &AtomicU64) {
    let from = answered.load(Ordering::Relaxed);
    wait_for_async("20 more answered calls", || {
        let now = answered.load(Ordering::Relaxed);
        async move { (now >= from + 20).then_some(()) }
    })
    .await;
}

/// Waits for `counter` to answer from a worker other than `old`.
async fn new_worker(coordinator: &Coordinator, old: u32) -> u32 {
    wait_for_async(&format!("a worker other than {old}"), || async {
        let pid = pid_of(coordinator, "counter").await;
        (pid != old).then_some(pid)
    })
    .await
}

#[test]
fn a_changed_file_and_a_reload_move_an_isolated_plugin_to_a_new_worker_without_a_failed_call() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let host = host(&sandbox, ISOLATED_PROBE).await;
        let coordinator = host.coordinator().clone();
        let first = pid_of(&coordinator, "counter").await;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let mut traffic = steady_traffic(&coordinator, 3, &stop, &answered);
        traffic_flows(&answered).await;

        // A new build arrives: written aside, renamed over the old file.
        let source = library("fixture-probe");
        let target = sandbox
            .plugins_dir()
            .join(source.file_name().expect("name"));
        let aside = sandbox.root().join("new-build.so");
        std::fs::copy(&source, &aside).expect("copy");
        std::fs::rename(&aside, &target).expect("rename");
        let changes = coordinator.refresh(discover(&sandbox).await);
        assert_eq!(changes.upgraded, ["probe"], "{changes:?}");
        assert!(changes.changed.is_empty(), "{changes:?}");
        let second = new_worker(&coordinator, first).await;
        traffic_flows(&answered).await;

        // A reload starts yet another worker on the same file.
        let report = coordinator.reload_plugin("probe").await.expect("reload");
        assert!(
            report.worker_pid.is_some_and(|pid| pid != second),
            "{report:?}"
        );
        let third = new_worker(&coordinator, second).await;
        traffic_flows(&answered).await;

        stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        while let Some(result) = traffic.join_next().await {
            failures.extend(result.expect("traffic task"));
        }
        let answered = answered.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} failed calls: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(answered > 50, "only {answered} calls in the test");
        for old in [first, second] {
            let gone = wait_gone(old).await;
            assert!(gone, "old worker {old} still runs");
        }
        assert_eq!(pid_of(&coordinator, "counter").await, third);
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

/// Waits for process `pid` to be gone (and reaped); true once it is.
async fn wait_gone(pid: u32) -> bool {
    wait_for_async(&format!("process {pid} to be gone"), || async move {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(true)
    })
    .await
}

#[test]
fn an_idle_worker_exits_after_min_idle_its_memory_counts_as_reclaimed() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let config = format!("[memory]\nmin_idle = \"300ms\"\n{ISOLATED_PROBE}");
        let host = host(&sandbox, &config).await;
        let coordinator = host.coordinator().clone();
        let first = pid_of(&coordinator, "counter").await;
        assert!(host.memory().status().workers.contains_key(&first));
        assert!(wait_gone(first).await, "idle worker {first} still runs");
        let memory = host.memory().status();
        assert!(memory.reclaimed > 0, "{memory:?}");
        assert!(!memory.workers.contains_key(&first), "{memory:?}");
        // The component is still ready; its next call starts a worker again.
        assert_ne!(pid_of(&coordinator, "counter").await, first);
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn the_binary_shows_modes_serves_isolated_calls_and_reloads_over_http() {
    let sandbox = Sandbox::with_plugins(&["fixture-leaf", "fixture-user"]);
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\n[components.user]\nisolation = \"process\"\n";
    let host = plugin_host_tests::RunningHost::start(&sandbox, config);
    let pid_of = |component: &str, method: &str| {
        let (status, answer) = host.call(component, method, "null");
        let pid = answer.unwrap_or_else(|err| panic!("{status}: {err:?}"));
        u32::try_from(pid.as_u64().expect("a pid")).expect("a pid")
    };
    assert_eq!(
        pid_of("user", "leaf_pid"),
        host.pid(),
        "leaf runs in the host"
    );
    let worker = pid_of("user", "pid");
    assert_ne!(worker, host.pid());

    let user = host.component("user");
    assert_eq!(user.isolation, Isolation::Process);
    assert_eq!(user.worker_pid, Some(worker));
    assert_eq!(host.component("leaf").isolation, Isolation::InProcess);

    let (status, body) = host.post("/plugins/user/reload", "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = host.post("/plugins/leaf/reload", "");
    assert_eq!(
        status, 409,
        "an in-process plugin cannot be reloaded: {body}"
    );
    assert!(body.contains("restart"), "{body}");
    let (status, body) = host.post("/plugins/nothing/reload", "");
    assert_eq!(status, 404, "{body}");
    assert_ne!(pid_of("user", "pid"), worker, "a new worker serves");
    assert_eq!(host.stop(), Some(0));
    // The plugin's log record from inside the worker is in the host's log.
    let log = std::fs::read_to_string(sandbox.root().join("run.log")).expect("run.log");
    let line = log
        .lines()
        .find(|line| line.contains("user created"))
        .unwrap_or_else(|| panic!("no plugin log line in:\n{log}"));
    assert!(
        line.contains("plugin=user") && line.contains("component=user"),
        "{line}"
    );
    assert!(!std::path::Path::new(&format!("/proc/{worker}")).exists());
}

#[test]
fn check_refuses_a_memory_limit_on_an_in_process_component() {
    let sandbox = Sandbox::with_plugins(&["fixture-leaf"]);
    let config = sandbox.write_config("[components.leaf]\nmemory_limit = \"64MiB\"\n");
    let output = sandbox
        .host()
        .arg("--config")
        .arg(&config)
        .arg("check")
        .output()
        .expect("check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("components.leaf.memory_limit") && text.contains("isolation = \"process\""),
        "{text}"
    );
}

#[test]
fn a_worker_that_keeps_crashing_is_restarted_after_a_backoff() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let host = host(&sandbox, ISOLATED_PROBE).await;
        let coordinator = host.coordinator().clone();
        pid_of(&coordinator, "counter").await;
        for _ in 0..3 {
            call_json(&coordinator, "counter", "crash", "{\"how\":\"abort\"}")
                .await
                .expect_err("abort");
        }
        let refused = call_json(&coordinator, "counter", "ping", "null")
            .await
            .expect_err("three crashes in a row: the next start waits");
        let message = refused.to_string();
        assert!(message.contains("crashed 3 times in a row"), "{message}");
        assert!(message.contains("SIGABRT"), "{message}");
        let pong = wait_for_async("a start after the backoff", || async {
            call_json(&coordinator, "counter", "ping", "null")
                .await
                .ok()
        })
        .await;
        assert_eq!(pong, "pong");
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn over_http_a_worker_crash_is_502_its_metrics_reach_the_host_and_its_environment_is_cleared() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let config =
        format!("[admin]\nlisten = \"127.0.0.1:0\"\n{ISOLATED_PROBE}[components.locker]\n");
    let host = plugin_host_tests::RunningHost::start_with_env(
        &sandbox,
        &config,
        &[("PROBE_SECRET", "hunter2"), ("LANG", "C.UTF-8")],
    );

    // Metrics a plugin records inside its worker reach the host's /metrics.
    let (status, answer) = host.call("counter", "record", "null");
    assert_eq!(status, 200, "{answer:?}");
    let (_, metrics) = host.get("/metrics");
    let events = metrics
        .lines()
        .find(|l| {
            l.starts_with("plugins_probe_events_total") && l.contains("component=\"counter\"")
        })
        .unwrap_or_else(|| panic!("no probe_events of counter in:\n{metrics}"));
    assert!(events.ends_with(" 2"), "{events}");

    // The worker's environment keeps the allowlist only; the host's own process has all.
    let env_of = |component: &str| -> Vec<String> {
        let (status, answer) = host.call(component, "env", "null");
        let names = answer.unwrap_or_else(|err| panic!("{status}: {err:?}"));
        serde_json::from_value(names).expect("names")
    };
    let in_host = env_of("locker");
    assert!(in_host.iter().any(|n| n == "PROBE_SECRET"), "{in_host:?}");
    let in_worker = env_of("counter");
    assert!(
        !in_worker.iter().any(|n| n == "PROBE_SECRET"),
        "{in_worker:?}"
    );
    assert!(in_worker.iter().any(|n| n == "LANG"), "{in_worker:?}");

    // A crash answers 502 with kind worker_died; the next call gets a new worker.
    let (status, answer) = host.call("counter", "crash", r#"{"how":"abort"}"#);
    assert_eq!(status, 502, "{answer:?}");
    let error = answer.expect_err("an error");
    assert_eq!(error.kind, "worker_died", "{error:?}");
    assert!(error.message.contains("SIGABRT"), "{error:?}");
    assert_eq!(host.call("counter", "ping", "null").0, 200);
    assert_eq!(host.stop(), Some(0));
}
