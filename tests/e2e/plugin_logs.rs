//! A plugin's log records are its own: whatever it writes (a record naming another plugin
//! or component, a line break and a forged line after it, a frame written behind its
//! worker's back), the host's log shows it under its own plugin, on one line.

use std::process::Output;

use plugin_host_tests::Sandbox;

/// `plugin-host call hostile METHOD INPUT` with the component `isolation`, logging at info.
fn call_hostile(sandbox: &Sandbox, isolation: &str, method: &str, input: &str) -> Output {
    let config = sandbox.write_config(&format!(
        "[components.hostile]\nisolation = \"{isolation}\"\n"
    ));
    sandbox
        .host()
        .env("RUST_LOG", "info")
        .args(["--config", &config.to_string_lossy()])
        .args(["call", "hostile", method, input])
        .output()
        .expect("plugin-host call")
}

#[test]
fn a_plugin_cannot_log_under_another_plugins_name_or_component_nor_forge_a_line() {
    let sandbox = Sandbox::with_plugins(&["fixture-hostile", "fixture-probe"]);
    for isolation in ["in-process", "process"] {
        let input = format!(
            r#"{{"component": "probe", "frame": {}}}"#,
            isolation == "process"
        );
        let output = call_hostile(&sandbox, isolation, "forge_log", &input);
        let stdout = plugin_host_tests::success_stdout(&output);
        let log = String::from_utf8_lossy(&output.stderr);
        let forged: Vec<&str> = log.lines().filter(|l| l.contains("forged")).collect();
        let frames: u32 = serde_json::from_str(stdout.trim()).expect("frames written");
        let expected: usize = if isolation == "process" { 2 } else { 1 };
        assert_eq!(frames as usize + 1, expected, "{isolation}: {stdout}");
        assert_eq!(
            forged.len(),
            expected,
            "{isolation}: every forged record logged:\n{log}"
        );
        for line in &forged {
            assert!(
                line.contains(" plugin=hostile "),
                "{isolation}: under its own plugin: {line}"
            );
            assert!(
                !line.contains("component=probe") && !line.contains("plugin=victim "),
                "{isolation}: never under another plugin's name or component: {line}"
            );
        }
        assert!(
            !log.lines().any(|line| line.starts_with("2026-01-01")),
            "{isolation}: a line break in a record starts no line of its own:\n{log}"
        );
    }
}

#[test]
fn a_workers_output_and_own_records_are_held_to_the_plugins_log_rate() {
    // 3,000 lines on the worker's stdout and as many log frames of the worker's own
    // written by the plugin behind its back, then a line of 100,000 bytes: at 5 records a
    // second with a burst of 10, the host's log takes a few of them, in lines it can hold.
    let sandbox = Sandbox::with_plugins(&["fixture-hostile"]);
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\n[limits]\nlog_records_per_second = 5\n\
                  log_burst = 10\n[components.hostile]\nisolation = \"process\"\n";
    let host =
        plugin_host_tests::RunningHost::start_with_env(&sandbox, config, &[("RUST_LOG", "info")]);
    let started = std::time::Instant::now();
    let (status, answer) = host.call(
        "hostile",
        "flood",
        r#"{"lines": 3000, "unterminated": 100000}"#,
    );
    assert_eq!(status, 200, "{answer:?}");
    let log = || std::fs::read_to_string(sandbox.root().join("run.log")).unwrap_or_default();
    plugin_host_tests::wait_for("the plugin's last record", || {
        log().contains("flood-done").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let log = log();
    let seconds = started.elapsed().as_secs() + 1;
    let flood = log
        .lines()
        .filter(|line| line.contains("flood line") || line.contains("flood frame"))
        .count();
    let allowed = 10 + 5 * usize::try_from(seconds).unwrap_or(usize::MAX);
    assert!(
        flood <= allowed,
        "{flood} flood lines logged in {seconds} s, at most {allowed} allowed"
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 20_000, "a line of {longest} bytes in the log");
}

#[test]
fn a_plugins_huge_record_and_huge_error_are_cut_to_a_bound() {
    // A record and an error of a million bytes each, in process and in a worker: the
    // host's log and the error it prints keep the first 16 Ki characters of each.
    let sandbox = Sandbox::with_plugins(&["fixture-hostile"]);
    for isolation in ["in-process", "process"] {
        let output = call_hostile(&sandbox, isolation, "huge", "1000000");
        assert!(!output.status.success(), "{isolation}: the call fails");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line_of = |what: &str| {
            stderr
                .lines()
                .find(|line| line.contains(what))
                .unwrap_or_else(|| panic!("{isolation}: no `{what}` in:\n{stderr:.2000}"))
        };
        for (what, cut) in [("huge record", "rrr..."), ("huge error", "eee...")] {
            let line = line_of(what);
            assert!(
                (16_000..20_000).contains(&line.len()) && line.contains(cut),
                "{isolation}: `{what}` cut to about 16 KiB, a line of {} bytes",
                line.len()
            );
        }
        let longest = stderr.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 20_000, "{isolation}: a line of {longest} bytes");
    }
}
