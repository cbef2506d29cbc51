//! Operators: systemd notifications, shell completions, the manual page, the version.

use std::{os::unix::net::UnixDatagram, time::Duration};

use plugin_host_tests::{success_stdout, RunningHost, Sandbox};

/// Datagrams received on `socket` until `until` is among them or 10 s pass.
fn receive_until(socket: &UnixDatagram, until: &str, got: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = text.lines().any(|line| line == until);
            got.push(text);
            if done {
                return;
            }
        }
    }
    panic!("no {until} within 10 s; got {got:?}");
}

#[test]
fn systemd_hears_ready_once_eager_components_are_up_watchdog_pings_and_stopping() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let path = sandbox.root().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("fake NOTIFY_SOCKET");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\n[components.market-data]\neager = true\n";
    let host = RunningHost::start_with_env(
        &sandbox,
        config,
        &[
            ("NOTIFY_SOCKET", &path.to_string_lossy()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut got = Vec::new();
    receive_until(&socket, "READY=1", &mut got);
    let ready = got.last().expect("the READY datagram");
    assert!(
        ready.contains("STATUS=ready: 1 eager components"),
        "{ready}"
    );
    assert_eq!(
        host.component("market-data").state,
        "ready",
        "READY=1 came after"
    );
    receive_until(&socket, "WATCHDOG=1", &mut got);
    receive_until(&socket, "WATCHDOG=1", &mut got);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status();
    receive_until(&socket, "STOPPING=1", &mut got);
    assert_eq!(host.wait(), Some(0));
}

#[test]
fn completions_the_manual_page_and_the_version_are_there() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = success_stdout(&sandbox.run(&["completions", shell]));
        assert!(
            script.contains("plugin-host") && script.contains("inspect"),
            "{shell}"
        );
    }
    let man = success_stdout(&sandbox.run(&["man"]));
    assert!(
        man.contains(".TH plugin-host") && man.contains("run"),
        "{man}"
    );
    let version = success_stdout(&sandbox.run(&["--version"]));
    assert!(
        version.contains(&format!(
            "plugin-api {}",
            plugin_host::plugin_api::API_VERSION
        )) && version.contains("loads plugins built against plugin-api 0.1.0 to 0.1.x"),
        "{version}"
    );
    let help = success_stdout(&sandbox.run(&["--help"]));
    assert!(
        !help.contains("worker"),
        "the worker subcommand is hidden: {help}"
    );
}

#[test]
fn under_systemd_the_cache_state_and_configuration_directories_are_used() {
    // What a unit with CacheDirectory=, StateDirectory= and ConfigurationDirectory= hands
    // the host: no flags, no XDG variables, no home.
    let sandbox = Sandbox::new();
    let (cache, state, etc) = (
        sandbox.root().join("var-cache"),
        sandbox.root().join("var-lib"),
        sandbox.root().join("etc"),
    );
    for dir in [&cache, &state.join("our-plugins"), &etc] {
        std::fs::create_dir_all(dir).expect("directory");
    }
    let plugin = plugin_host_tests::library("market-data");
    std::fs::copy(
        &plugin,
        state
            .join("our-plugins")
            .join(plugin.file_name().expect("name")),
    )
    .expect("copying the plugin");
    // Relative to $STATE_DIRECTORY, read from $CONFIGURATION_DIRECTORY/host.toml.
    std::fs::write(
        etc.join("host.toml"),
        "[host]\nplugins_dir = \"our-plugins\"\n",
    )
    .expect("config");
    let output = std::process::Command::new(plugin_host_tests::binary())
        .args(["list", "--json"])
        .current_dir(sandbox.root())
        .env_clear()
        .env("CACHE_DIRECTORY", &cache)
        .env("STATE_DIRECTORY", &state)
        .env("CONFIGURATION_DIRECTORY", &etc)
        .output()
        .expect("running plugin-host");
    let list = plugin_host_tests::stdout_json(&output);
    let listed =
        plugin_host_tests::listed(&list, &plugin_host_tests::library_file_name("market-data"));
    assert_eq!(listed["usable"], true, "{list:#}");
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .expect("the cache directory")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(
        cached
            .iter()
            .any(|name| name.to_string_lossy().starts_with("registry")),
        "the registry cache is written under $CACHE_DIRECTORY: {cached:?}"
    );
}
