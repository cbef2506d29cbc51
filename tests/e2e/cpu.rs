//! CPU time per component: calls that burn a known amount of CPU are counted within 15%,
//! in process and in a worker, in `/components`, `/metrics` and `status`; a call over its
//! CPU budget (`cpu_per_call`) is abandoned as a hung call is.

use plugin_host_tests::{wait_for, RunningHost, Sandbox};

fn cpu_seconds(host: &RunningHost) -> f64 {
    host.component("counter").cpu_seconds
}

fn burns_are_counted(config: &str, mode: &str) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    // In process, every call's CPU read, not a sample of them.
    let config =
        format!("[admin]\nlisten = \"127.0.0.1:0\"\n[metrics]\ncpu_sample_rate = 1.0\n{config}");
    let host = RunningHost::start(&sandbox, &config);
    let (status, _) = host.call("counter", "ping", "null");
    assert_eq!(status, 200);
    for ms in [50u64, 200] {
        let before = cpu_seconds(&host);
        let (status, answer) = host.call("counter", "burn", &format!(r#"{{"ms": {ms}}}"#));
        assert_eq!(status, 200, "{answer:?}");
        let counted = cpu_seconds(&host) - before;
        let burnt = ms as f64 / 1000.0;
        println!("{mode}: burnt {burnt:.3} s, counted {counted:.4} s");
        assert!(
            (counted - burnt).abs() <= burnt * 0.15,
            "{mode}: a call that burnt {burnt} s of CPU was counted as {counted} s"
        );
    }
    let metrics = host.get("/metrics").1;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("plugin_host_component_cpu_seconds_total{") && l.contains("\"counter\"")
        })
        .unwrap_or_else(|| panic!("{mode}: no cpu metric for counter"));
    let value: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a value");
    assert!(value >= 0.25 * 0.85, "{mode}: {line}");
    let status = sandbox.run(&["status", "--addr", &host.addr.to_string()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("CPU") && text.contains(" s"),
        "{mode}: {text}"
    );
    host.stop();
}

#[test]
fn a_calls_cpu_time_is_counted_per_component_in_process() {
    burns_are_counted("", "in process");
}

#[test]
fn a_calls_cpu_time_is_counted_per_component_in_its_worker() {
    burns_are_counted(
        "[components.counter]\nisolation = \"process\"\n",
        "isolated",
    );
}

/// Burns `ms` of CPU in `component` (polling for cancellation with `polls`), which must
/// be refused for going over its CPU budget; the error's message.
fn over_budget(host: &RunningHost, component: &str, ms: u64, polls: bool) -> String {
    let input = format!(r#"{{"ms": {ms}, "polls": {polls}}}"#);
    let (status, answer) = host.call(component, "burn", &input);
    let error = answer.expect_err("a call over its budget fails");
    assert_eq!(status, 503, "{error}");
    assert_eq!(error.kind, "cpu_budget_exceeded", "{error}");
    assert!(
        error.message.contains("cpu_per_call") && error.message.contains("100ms"),
        "the error names the budget: {error}"
    );
    error.message
}

#[test]
fn a_call_over_its_cpu_budget_is_abandoned_as_a_hung_call_is_in_process() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[metrics]\ncpu_sample_rate = 1.0\n\
         [components.counter]\ncpu_per_call = \"100ms\"\nquarantine_after = 1\n",
    );
    let (status, answer) = host.call("counter", "burn", r#"{"ms": 20}"#);
    assert_eq!(status, 200, "a call within its budget answers: {answer:?}");

    // A call that does not look at its context burns on after it is abandoned: it is a
    // hung call, and with quarantine_after = 1 the component is quarantined until it
    // returns.
    over_budget(&host, "counter", 1500, false);
    let (status, answer) = host.call("counter", "ping", "null");
    assert_eq!(status, 503, "{answer:?}");
    assert_eq!(answer.expect_err("quarantined").kind, "quarantined");
    wait_for("the abandoned call to return", || {
        (host.call("counter", "ping", "null").0 == 200).then_some(())
    });

    // One that polls is cancelled when it is abandoned, and stops: far less CPU is
    // counted for it than it was asked to burn.
    let before = host.component("counter").cpu_seconds;
    over_budget(&host, "counter", 20_000, true);
    wait_for("the cancelled call to return", || {
        (host.component("counter").calls_abandoned == 0).then_some(())
    });
    let spent = host.component("counter").cpu_seconds - before;
    assert!(
        (0.1..5.0).contains(&spent),
        "a cancelled call stops soon after its budget: it used {spent} s"
    );

    let status = host.component("counter");
    assert_eq!(status.cpu_overruns, 2);
    assert_eq!(status.call_timeouts, 0, "an overrun is not a timeout");
    assert_eq!(
        host.metric("plugin_host_component_cpu_overruns_total", "counter"),
        Some(2.0)
    );
    host.stop();
    let log = std::fs::read_to_string(sandbox.root().join("run.log")).expect("run.log");
    assert!(
        log.contains("over its CPU budget") && log.contains("component=counter"),
        "each overrun is logged:\n{log}"
    );
}

#[test]
fn a_call_over_its_cpu_budget_in_a_worker_gets_the_worker_killed() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nkill_grace = \"100ms\"\n\
         [components.counter]\nisolation = \"process\"\ncpu_per_call = \"100ms\"\n",
    );
    let (status, answer) = host.call("counter", "burn", r#"{"ms": 20}"#);
    assert_eq!(status, 200, "a call within its budget answers: {answer:?}");
    let worker = host.component("counter").worker_pid.expect("a worker");
    // It burns for a minute unless stopped: the worker tells the host it is over its
    // budget, the host abandons it, and its worker is killed after the kill grace.
    over_budget(&host, "counter", 60_000, false);
    wait_for("the worker to be killed", || {
        (host.component("counter").worker_pid != Some(worker)).then_some(())
    });
    let (status, answer) = host.call("counter", "ping", "null");
    assert_eq!(status, 200, "the next call gets a new worker: {answer:?}");
    let status = host.component("counter");
    assert_ne!(status.worker_pid, Some(worker));
    assert_eq!(status.cpu_overruns, 1);
    host.stop();
}

#[test]
fn isolation_auto_moves_a_component_over_its_cpu_budget_into_a_worker() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [components.counter]\nisolation = \"auto\"\ncpu_per_call = \"100ms\"\n",
    );
    let (status, _) = host.call("counter", "ping", "null");
    assert_eq!(status, 200);
    assert_eq!(
        host.component("counter").worker_pid,
        None,
        "auto starts in process"
    );
    let message = over_budget(&host, "counter", 20_000, true);
    let why = wait_for("the component to move to a worker", || {
        let _ = host.call("counter", "ping", "null");
        let status = host.component("counter");
        status.worker_pid.and(status.moved_to_worker)
    });
    assert!(
        why.contains("CPU") && why.contains("burn"),
        "{why} ({message})"
    );
    // In its worker, the budget still holds.
    over_budget(&host, "counter", 20_000, true);
    host.stop();
}
