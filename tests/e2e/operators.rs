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
    assert_eq!(host.stop(), Some(0));
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
        )),
        "{version}"
    );
    let help = success_stdout(&sandbox.run(&["--help"]));
    assert!(
        !help.contains("worker"),
        "the worker subcommand is hidden: {help}"
    );
}
