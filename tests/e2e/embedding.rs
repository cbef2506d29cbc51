//! The embedding example: a program of its own that uses the host library, scans plugins
//! with its own executable, and adds a native component on top of a plugin component.

use std::process::Command;

use plugin_host_tests::{success_stdout, target_dir, Sandbox};

#[test]
fn the_embedding_example_runs_a_native_component_on_a_plugin_dependency() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let output = Command::new(target_dir().join("embedding-example"))
        .arg(sandbox.plugins_dir())
        .env("XDG_CACHE_HOME", sandbox.cache_dir())
        .output()
        .expect("running the embedding example");
    let stdout = success_stdout(&output);
    let first = stdout.lines().next().unwrap_or_default();
    let answer: serde_json::Value = serde_json::from_str(first).expect("JSON answer");
    assert_eq!(answer["symbol"], "AAPL");
    assert!(
        answer["spread"].as_f64().is_some_and(|s| s > 0.0),
        "{answer}"
    );
    assert!(
        stdout.contains("stopped in order: spread-monitor, market-data"),
        "{stdout}"
    );
}
