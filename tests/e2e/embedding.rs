//! The embedding example: a program of its own that starts the host library's `Host`
//! (scanning and isolating with its own executable), adds a native component on top of a
//! plugin component, and gets the binary's trust policy without asking for it.

use std::process::Command;

use plugin_host_tests::{
    library_file_name, listed, stdout_json, success_stdout, target_dir, Sandbox,
};

fn embedding_example(sandbox: &Sandbox) -> std::process::Output {
    Command::new(target_dir().join("embedding-example"))
        .arg(sandbox.plugins_dir())
        .env("XDG_CACHE_HOME", sandbox.cache_dir())
        .output()
        .expect("running the embedding example")
}

#[test]
fn the_embedding_example_calls_historical_data_and_a_native_component_then_stops_in_order() {
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    let stdout = success_stdout(&embedding_example(&sandbox));
    let mut lines = stdout.lines();
    let bars: serde_json::Value =
        serde_json::from_str(lines.next().unwrap_or_default()).expect("bars as JSON");
    let bars = bars.as_array().expect("an array of bars");
    assert_eq!(bars.len(), 3);
    assert_eq!(bars[0]["ts"], 1_704_205_800_000_u64);
    let spread: serde_json::Value =
        serde_json::from_str(lines.next().unwrap_or_default()).expect("spread as JSON");
    assert_eq!(spread["symbol"], "AAPL");
    assert!(
        spread["spread"].as_f64().is_some_and(|s| s > 0.0),
        "{spread}"
    );
    let stopped = lines.next().unwrap_or_default();
    assert!(
        stopped.starts_with("stopped in order: ") && stopped.ends_with(", market-data"),
        "dependents stop before their dependency: {stdout}"
    );
}

#[cfg(unix)]
#[test]
fn the_embedding_example_refuses_a_group_writable_plugin_as_the_binary_does() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    let file = sandbox
        .plugins_dir()
        .join(library_file_name("historical-data"));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).expect("chmod");

    let binary = stdout_json(&sandbox.run(&["list", "--json"]));
    let refusal = listed(&binary, &library_file_name("historical-data"))["error"]["message"]
        .as_str()
        .expect("the binary's message")
        .to_owned();
    assert!(refusal.contains("chmod"), "{refusal}");

    let output = embedding_example(&sandbox);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("skipping: {refusal}")),
        "the same message as the binary:\n{refusal}\nin:\n{stderr}"
    );
    assert!(stderr.contains("historical-data"), "{stderr}");
}

/// An embedder may run two hosts in one process (two plugin directories, two tenants):
/// each has its own components, the same plugin in both is two independent components
/// (from two copies, or in process over one mapping of a shared file; isolated in
/// workers of its own host), and one host stopping leaves the other serving.
#[test]
fn two_hosts_in_one_process_keep_to_themselves() {
    let first = Sandbox::with_plugins(&["market-data", "fixture-probe"]);
    let second = Sandbox::with_plugins(&["market-data", "fixture-probe"]);
    plugin_host_tests::runtime().block_on(async {
        let isolated = "[components.sleeper]\nisolation = \"process\"\n";
        let a = plugin_host_tests::host(&first, isolated).await;
        let b = plugin_host_tests::host(&second, "").await;
        // A third over the first one's directory and cache: the same files, mapped once.
        let c = plugin_host_tests::host(&first, "").await;
        let quote = serde_json::json!({"symbol": "AAPL"});
        for host in [&a, &b, &c] {
            let answer: serde_json::Value = host
                .call_json("market-data", "quote", &quote)
                .await
                .expect("quote");
            assert_eq!(answer["symbol"], "AAPL");
        }
        // Each host initialises what it is asked for, and only that.
        a.call("counter", "ping", Vec::new())
            .await
            .expect("a's counter");
        let state = |host: &plugin_host::Host, name: &str| host.state_of(name);
        assert_eq!(
            state(&a, "counter"),
            Some(plugin_host::ComponentState::Ready)
        );
        assert_eq!(
            state(&b, "counter"),
            Some(plugin_host::ComponentState::Registered)
        );
        let mut pids = Vec::new();
        for host in [&a, &b] {
            let answer = host.call("sleeper", "pid", Vec::new()).await.expect("pid");
            pids.push(serde_json::from_slice::<u32>(&answer).expect("a pid"));
        }
        assert_ne!(pids[0], std::process::id(), "a's sleeper in a worker");
        assert_eq!(pids[1], std::process::id(), "b's sleeper in process");

        let report = a.shutdown().await;
        assert!(
            report.stopped.iter().any(|name| name == "market-data"),
            "{report:?}"
        );
        for host in [&b, &c] {
            let answer: serde_json::Value = host
                .call_json("market-data", "quote", &quote)
                .await
                .expect("the others serve after a stopped");
            assert_eq!(answer["symbol"], "AAPL");
        }
        assert!(a
            .call_json::<_, serde_json::Value>("market-data", "quote", &quote)
            .await
            .is_err());
        b.shutdown().await;
        c.shutdown().await;
    });
}

/// A config built in code is held to what a config file is: a host refuses to start on
/// one with problems (a zero timeout, a grace no deadline can hold), naming each key,
/// rather than failing every call or overflowing a deadline later.
#[test]
fn a_host_refuses_a_config_built_in_code_with_problems_naming_each_key() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let mut config = plugin_host::Config::default();
    config.host.plugins_dir = sandbox.plugins_dir();
    config.host.cache_dir = sandbox.cache_dir();
    config.timeouts.default = std::time::Duration::ZERO;
    config.timeouts.kill_grace = std::time::Duration::MAX;
    let refused = plugin_host_tests::runtime().block_on(async {
        match plugin_host::Host::builder(config)
            .with_child_program(plugin_host_tests::binary())
            .start()
            .await
        {
            Ok(_) => panic!("a host started on a config with problems"),
            Err(err) => err.to_string(),
        }
    });
    for key in ["timeouts.default", "timeouts.kill_grace", "100years"] {
        assert!(refused.contains(key), "{key} not named in: {refused}");
    }
}
