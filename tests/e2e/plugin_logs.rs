//! A plugin's log records are its own: whatever it writes (a record naming another plugin
//! or component, a line break and a forged line after it, a frame written behind its
//! worker's back), the host's log shows it under its own plugin, on one line.

use plugin_host_tests::Sandbox;

#[test]
fn a_plugin_cannot_log_under_another_plugins_name_or_component_nor_forge_a_line() {
    let sandbox = Sandbox::with_plugins(&["fixture-hostile", "fixture-probe"]);
    for isolation in ["in-process", "process"] {
        let config = sandbox.write_config(&format!(
            "[components.hostile]\nisolation = \"{isolation}\"\n"
        ));
        let output = sandbox
            .host()
            .env("RUST_LOG", "info")
            .args(["--config", &config.to_string_lossy()])
            .args(["call", "hostile", "forge_log"])
            .arg(format!(
                r#"{{"component": "probe", "frame": {}}}"#,
                isolation == "process"
            ))
            .output()
            .expect("plugin-host call");
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
