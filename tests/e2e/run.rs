//! `plugin-host run` and `plugin-host check` as an operator uses them.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use plugin_host_tests::{library_file_name, wait_for, RunningHost, Sandbox};

#[test]
fn run_starts_eager_components_and_stops_them_in_reverse_order_on_sigterm() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let log = sandbox.root().join("events.log");
    let mut config = String::from("[admin]\nlisten = \"127.0.0.1:0\"\n");
    for name in ["rec-base", "rec-mid", "rec-top"] {
        config.push_str(&format!(
            "[components.{name}]\neager = {}\n",
            name == "rec-top"
        ));
        config.push_str(&format!(
            "[components.{name}.config]\nlog_file = {:?}\n",
            log.display().to_string()
        ));
    }
    let config_path = sandbox.write_config(&config);
    let mut child = sandbox
        .host()
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting plugin-host run");
    // Lines arrive through a channel so a host that never logs cannot hang the test.
    let stderr = child.stderr.take().expect("stderr");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let ready = line.contains("component initialised") && line.contains("component=rec-top");
        seen.push(line);
        if ready {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("component=rec-top")),
        "rec-top never started:\n{}",
        seen.join("\n")
    );

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("waiting for plugin-host");
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(exit.code(), Some(0), "{}", rest.join("\n"));
    assert!(
        rest.iter().any(|l| l.contains("host stopped")),
        "{}",
        rest.join("\n")
    );

    let events = std::fs::read_to_string(&log).expect("event log");
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(
        lines,
        [
            "create rec-base",
            "create rec-mid",
            "create rec-top",
            "drop rec-top",
            "drop rec-mid",
            "drop rec-base"
        ]
    );
}

#[test]
fn check_reports_every_problem_and_exits_by_kind() {
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    let clean = sandbox.run(&["check"]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    // Broken plugin file, a missing dependency and an override for nothing.
    std::fs::remove_file(sandbox.plugins_dir().join(library_file_name("market-data"))).expect("rm");
    sandbox.write_plugin_file("libnotes.so", b"notes\n");
    let config = sandbox.write_config("[components.order-book]\npriority = 5\n");
    let output = sandbox
        .host()
        .arg("--config")
        .arg(&config)
        .arg("check")
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("libnotes.so") && stdout.contains("text file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("`historical-data` depends on `market-data`, which no plugin"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: config has [components.order-book]"),
        "{stdout}"
    );
    assert!(stdout.contains("2 problem(s) found"), "{stdout}");
    // Called anyway: one clause says what is missing and what to do, no "failed".
    let called = sandbox.run(&["call", "historical-data", "bars"]);
    let stderr = String::from_utf8_lossy(&called.stderr);
    let error = stderr.lines().last().unwrap_or_default();
    assert_eq!(called.status.code(), Some(1), "{stderr}");
    assert_eq!(
        error,
        "error: component `historical-data` cannot start: it depends on `market-data`, which \
         no plugin or native component provides; put a plugin that provides `market-data` \
         in the plugins directory",
        "{stderr}"
    );

    let invalid = sandbox.write_config("[metrics]\nsample_rate = -1\n[timeouts]\nstop = \"0s\"\n");
    let output = sandbox
        .host()
        .arg("--config")
        .arg(&invalid)
        .arg("check")
        .output()
        .expect("check");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("metrics.sample_rate") && stderr.contains("timeouts.stop"),
        "{stderr}"
    );
}

/// A stop waits for the calls in flight (up to `timeouts.stop`); an operator who asks a
/// second time does not wait: the host exits at once, with 130.
#[test]
fn a_second_stop_signal_ends_a_stop_that_waits_on_a_call() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[timeouts]\ndefault = \"5m\"\nstop = \"5m\"\n",
    );
    let call = host.request("POST", "/components/sleeper/call/sleep");
    std::thread::spawn(move || RunningHost::answer(call.send_string(r#"{"ms":300000}"#)));
    wait_for("the call to run", || {
        (host.component("sleeper").calls_in_flight == 1).then_some(())
    });
    let term = || {
        let status = Command::new("kill")
            .args(["-TERM", &host.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    term();
    wait_for("the stop to begin", || {
        (host.get("/readyz").0 == 503).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(host.get("/readyz").0, 503, "the stop waits on the call");
    let asked = Instant::now();
    assert_eq!(host.stop(), Some(130), "the second signal's exit code");
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "the host exited {took:?} after the second signal, as if it waited on the call"
    );
    let log = std::fs::read_to_string(sandbox.root().join("run.log")).expect("run.log");
    assert!(log.contains("a second stop signal"), "{log}");
}
