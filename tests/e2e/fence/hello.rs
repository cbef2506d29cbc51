//! A worker says how it is fenced in (and which process it is, for the memory limit to
//! read) before the plugin's code runs, so the plugin cannot say it instead: a library
//! whose constructor writes a hello of its own on the link (pid 1, a sandbox it does not
//! have) is refused as a worker out of turn, and nothing it claimed is shown.

use plugin_host_tests::{RunningHost, Sandbox};

#[test]
fn a_plugin_cannot_say_its_workers_hello() {
    let sandbox = Sandbox::with_plugins(&["fixture-hostile"]);
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\n[components.hostile]\n\
                  isolation = \"process\"\nsandbox = true\nmemory_limit = \"256MiB\"\n";
    let host =
        RunningHost::start_with_env(&sandbox, config, &[("PLUGIN_HOST_TEST_HOSTILE_HELLO", "1")]);
    let (status, answer) = host.call("hostile", "attacks", "null");
    let refusal = answer.expect_err("the worker is refused");
    assert!(status >= 500, "{status}: {refusal:?}");
    let refusal = refusal.to_string();
    assert!(
        refusal.contains("before it was ready") && refusal.contains("Hello"),
        "{refusal}"
    );
    let (status, components) = host.get("/components");
    assert_eq!(status, 200);
    let components: serde_json::Value = serde_json::from_str(&components).expect("json");
    let hostile = &components["components"][0];
    assert_eq!(
        hostile["worker_pid"],
        serde_json::Value::Null,
        "{hostile:#}"
    );
    assert_eq!(
        hostile["sandbox"]["applied"],
        serde_json::Value::Null,
        "{hostile:#}"
    );
    let error = hostile["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("before it was ready"), "{hostile:#}");
}
