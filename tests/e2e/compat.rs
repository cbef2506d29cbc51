//! plugin-api grows without breaking: a plugin built against the frozen plugin-api 0.1.0
//! (`tests/compat`) loads in this host and is served every host service, in-process and
//! isolated; a plugin built against this plugin-api loads in a host as old as 0.1.0; a
//! plugin that needs what this host lacks is refused, naming both versions. Plugins built
//! against the frozen 0.1.1 and 0.1.2 are served what those releases brought.

use plugin_host_tests::{
    compat_dir, library, library_file_name, listed, stdout_json, RunningHost, Sandbox,
};

/// Calls the 0.1.0 plugin through a running host, in `mode`, and checks every service.
fn serve_the_0_1_0_plugin(isolation: &str) {
    compat_dir();
    let sandbox = Sandbox::with_plugins(&["market-data", "compat-plugin"]);
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [components.legacy-quotes]\nisolation = \"{isolation}\"\n\
         [components.legacy-quotes.config]\nmarkup = 1.5\n"
    );
    let host = RunningHost::start(&sandbox, &config);

    let (status, quote) = host.call("legacy-quotes", "quote", r#"{"symbol":"MSFT"}"#);
    let quote = quote.unwrap_or_else(|err| panic!("{status}: {err:?}"));
    let (_, direct) = host.call("market-data", "quote", r#"{"symbol":"MSFT"}"#);
    let direct = direct.expect("market-data itself");
    assert_eq!(quote["via"], "compat", "{quote}");
    let marked_up = quote["last"].as_f64().expect("last") - direct["last"].as_f64().expect("last");
    assert!(
        (marked_up - 1.5).abs() < 1e-9,
        "config and dependency: {quote} vs {direct}"
    );

    let (status, failed) = host.call("legacy-quotes", "fail", "null");
    assert_eq!(status, 500);
    let failed = failed.expect_err("fails");
    assert!(failed.message.contains("fails on purpose"), "{failed:?}");

    let (status, pid) = host.call("legacy-quotes", "pid", "null");
    let pid = pid.unwrap_or_else(|err| panic!("{status}: {err:?}"));
    let in_host = pid.as_u64() == Some(u64::from(host.pid()));
    assert_eq!(in_host, isolation == "in-process", "{isolation}: pid {pid}");

    let (_, metrics) = host.get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("plugins_legacy_quotes_total")
                && l.contains("component=\"legacy-quotes\"")
                && l.ends_with(" 1")),
        "the plugin's metric reaches /metrics:\n{metrics}"
    );
    let (_, locks) = host.get("/locks");
    let locks: plugin_host_admin::api::Locks = serde_json::from_str(&locks).expect("locks");
    assert!(
        locks
            .locks
            .iter()
            .any(|l| l.name.ends_with("legacy.book") && l.acquisitions == 1),
        "the plugin took a host lock: {locks:?}"
    );
    assert_eq!(host.stop(), Some(0));
    let log = std::fs::read_to_string(sandbox.root().join("run.log")).expect("run.log");
    let line = log
        .lines()
        .find(|l| l.contains("legacy quote served"))
        .unwrap_or_else(|| panic!("the plugin's log record is in the host's log:\n{log}"));
    assert!(
        line.contains("plugin=compat") && line.contains("component=legacy-quotes"),
        "{line}"
    );
}

#[test]
fn a_plugin_built_against_plugin_api_0_1_0_is_served_every_host_service_in_process() {
    serve_the_0_1_0_plugin("in-process");
}

#[test]
fn inspect_shows_the_plugin_api_a_plugin_was_built_against_and_the_range_this_host_loads() {
    compat_dir();
    let sandbox = Sandbox::with_plugins(&["market-data", "compat-plugin"]);
    let inspected = plugin_host_tests::success_stdout(&sandbox.run(&["inspect", "legacy-quotes"]));
    let expected = format!(
        "plugin-api:  0.1.0 (this host: {}, loads 0.1.0 to 0.1.x)",
        plugin_host::plugin_api::API_VERSION
    );
    assert!(inspected.contains(&expected), "{inspected}");
}

#[test]
fn a_plugin_built_against_plugin_api_0_1_0_is_served_every_host_service_isolated() {
    serve_the_0_1_0_plugin("process");
}

#[test]
fn a_plugin_built_against_this_plugin_api_loads_in_a_host_as_old_as_0_1_0() {
    let old_host = compat_dir().join("old-host");
    for (plugin, component, method, input, expected) in [
        (
            "market-data",
            "market-data",
            "quote",
            r#"{"symbol":"AAPL"}"#,
            "market-data {\"symbol\":\"AAPL\"",
        ),
        ("fixture-leaf", "leaf", "size", "null", "leaf "),
    ] {
        let output = std::process::Command::new(&old_host)
            .arg(library(plugin))
            .args([component, method, input])
            .output()
            .expect("running old-host");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.starts_with(expected),
            "{plugin}: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_plugin_that_needs_a_feature_this_host_lacks_is_refused_naming_both_versions() {
    let sandbox = Sandbox::with_plugins(&["fixture-from-the-future", "market-data"]);
    let list = stdout_json(&sandbox.run(&["list", "--json"]));
    let refused = &listed(&list, &library_file_name("fixture-from-the-future"))["error"];
    assert_eq!(refused["kind"], "needs_newer_host", "{list:#}");
    let message = refused["message"].as_str().expect("a message");
    for needle in [
        "from-the-future",
        "plugin-api 0.1.99",
        &format!("plugin-api {}", plugin_host::plugin_api::API_VERSION),
        "teleport",
        "upgrade plugin-host",
    ] {
        assert!(message.contains(needle), "`{needle}` in {message}");
    }
    assert_eq!(
        listed(&list, &library_file_name("market-data"))["usable"],
        true,
        "{list:#}"
    );
}

/// Serves the 0.1.1 plugin through a running host with `config`: its stream, the path it
/// declared, the process it runs in.
fn serve_the_0_1_1_plugin(mode: &str, config: &str) {
    compat_dir();
    let sandbox = Sandbox::with_plugins(&["compat-stream"]);
    let host = RunningHost::start(
        &sandbox,
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{config}"),
    );
    let (status, text) = host.post("/components/legacy-ticks/stream/ticks", r#"{"count": 5}"#);
    assert_eq!(status, 200, "{mode}: {text}");
    let ticks: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("an item"))
        .collect();
    assert_eq!(
        ticks,
        (0..5)
            .map(|tick| serde_json::json!({ "tick": tick }))
            .collect::<Vec<_>>(),
        "{mode}"
    );
    let (status, hostname) = host.call("legacy-ticks", "hostname", "null");
    let hostname = hostname.unwrap_or_else(|err| panic!("{mode}: {status}: {err:?}"));
    let expected = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert_eq!(hostname, expected.trim(), "{mode}");
    let (status, pid) = host.call("legacy-ticks", "pid", "null");
    let pid = pid.unwrap_or_else(|err| panic!("{mode}: {status}: {err:?}"));
    let in_host = pid.as_u64() == Some(u64::from(host.pid()));
    assert_eq!(in_host, mode == "in process", "{mode}: pid {pid}");
    assert_eq!(host.stop(), Some(0));
}

#[test]
fn a_plugin_built_against_plugin_api_0_1_1_streams_in_process_isolated_and_sandboxed() {
    serve_the_0_1_1_plugin("in process", "");
    serve_the_0_1_1_plugin(
        "isolated",
        "[components.legacy-ticks]\nisolation = \"process\"\n",
    );
    #[cfg(target_os = "linux")]
    serve_the_0_1_1_plugin(
        "sandboxed",
        "[components.legacy-ticks]\nisolation = \"process\"\nsandbox = true\n",
    );
}

/// Serves the 0.1.2 plugin through a running host with `config`: the one port it was
/// granted (and, `sandboxed`, no other), its stream, its log, a call that outlives its
/// timeout without seeing a cancellation, the process it runs in.
fn serve_the_0_1_2_plugin(mode: &str, config: &str, sandboxed: bool) {
    use std::io::Read;
    compat_dir();
    let granted = std::net::TcpListener::bind(("127.0.0.1", 47211))
        .expect("port 47211, the one the 0.1.2 plugin declares, is taken on this machine");
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let other_port = other.local_addr().expect("its address").port();
    let sandbox = Sandbox::with_plugins(&["compat-port"]);
    let host = RunningHost::start(
        &sandbox,
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nkill_grace = \"100ms\"\n\
             [timeouts.operations]\nsleep = \"300ms\"\n{config}"
        ),
    );
    let connect = |port: u16| {
        let (status, answer) =
            host.call("legacy-port", "connect", &format!(r#"{{"port":{port}}}"#));
        answer.unwrap_or_else(|err| panic!("{mode}: {status}: {err:?}"))
    };
    assert_eq!(connect(47211), "connected", "{mode}");
    let (mut accepted, _) = granted.accept().expect("the plugin's connection");
    let mut said = String::new();
    accepted.read_to_string(&mut said).expect("what it wrote");
    assert_eq!(said, "0.1.2\n", "{mode}");
    let elsewhere = connect(other_port);
    assert_eq!(elsewhere == "connected", !sandboxed, "{mode}: {elsewhere}");

    let (status, text) = host.post("/components/legacy-port/stream/ticks", r#"{"count": 3}"#);
    assert_eq!(status, 200, "{mode}: {text}");
    assert_eq!(text.lines().count(), 3, "{mode}: {text}");

    let (status, timed_out) = host.call("legacy-port", "sleep", r#"{"ms":3000}"#);
    let timed_out = timed_out.expect_err("a call past its timeout");
    assert_eq!(timed_out.kind, "timed_out", "{mode}: {status}: {timed_out}");
    let (status, logged) = host.call("legacy-port", "log", "null");
    assert_eq!(
        logged.ok(),
        Some(serde_json::json!(true)),
        "{mode}: {status}"
    );
    let (status, pid) = host.call("legacy-port", "pid", "null");
    let pid = pid.unwrap_or_else(|err| panic!("{mode}: {status}: {err:?}"));
    let in_host = pid.as_u64() == Some(u64::from(host.pid()));
    assert_eq!(in_host, mode == "in process", "{mode}: pid {pid}");
    assert_eq!(host.stop(), Some(0), "{mode}");
    let log = std::fs::read_to_string(sandbox.root().join("run.log")).expect("run.log");
    let line = log
        .lines()
        .find(|l| l.contains("a record from an old plugin"))
        .unwrap_or_else(|| panic!("{mode}: the plugin's record is in the host's log:\n{log}"));
    assert!(
        line.contains("plugin=compat-port") && line.contains("component=legacy-port"),
        "{mode}: {line}"
    );
}

#[test]
fn a_plugin_built_against_plugin_api_0_1_2_is_served_in_process_isolated_and_sandboxed() {
    serve_the_0_1_2_plugin("in process", "", false);
    serve_the_0_1_2_plugin(
        "isolated",
        "[components.legacy-port]\nisolation = \"process\"\n",
        false,
    );
    #[cfg(target_os = "linux")]
    serve_the_0_1_2_plugin(
        "sandboxed",
        "[components.legacy-port]\nisolation = \"process\"\nsandbox = true\n",
        true,
    );
}
