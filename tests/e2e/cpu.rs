//! CPU time per component: calls that burn a known amount of CPU are counted within 15%,
//! in process and in a worker, in `/components`, `/metrics` and `status`.

use plugin_host_tests::{RunningHost, Sandbox};

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
