//! A scanner opens each library in a child of its own, so a library's code never runs
//! where the results of the others are written: it cannot speak for the next file of its
//! batch, and where the scanner cannot fork, it is the only file that scanner reports.

use std::process::Command;

use plugin_host_tests::{library_file_name, listed, stdout_json, Sandbox};

#[test]
fn a_library_in_a_scanner_cannot_speak_for_the_next_file_in_its_batch() {
    // The hostile library's constructor prints scan results for the leaf, which sorts
    // after it in the same batch (twice: the first is taken for its own file, were lines
    // counted, the second for the leaf's).
    let sandbox = Sandbox::with_plugins(&["fixture-hostile", "fixture-leaf"]);
    let config = sandbox.write_config("[host]\nscan_concurrency = 1\n");
    let (line, real) = forged_leaf(&sandbox);
    let output = sandbox
        .host()
        .env(
            "PLUGIN_HOST_TEST_HOSTILE_CTOR_PRINT",
            format!("{line}\n{line}"),
        )
        .arg("--config")
        .arg(&config)
        .args(["list", "--json"])
        .output()
        .expect("list");
    let list = stdout_json(&output);
    assert_eq!(leaf_components(&list), real, "{list:#}");
    assert_eq!(
        listed(&list, &library_file_name("fixture-hostile"))["usable"],
        true,
        "{list:#}"
    );
}

#[cfg(unix)]
#[test]
fn a_scanner_that_cannot_fork_opens_one_library_and_reports_no_other() {
    // An embedder's program that started a thread before serving as a scanner: its
    // scanners cannot fork a child per library and open the hostile one themselves,
    // where results are written.
    let sandbox = Sandbox::with_plugins(&["fixture-hostile", "fixture-leaf"]);
    let (line, real) = forged_leaf(&sandbox);
    let output = Command::new(env!("CARGO_BIN_EXE_threaded-embedder"))
        .env(
            "PLUGIN_HOST_TEST_HOSTILE_CTOR_PRINT",
            format!("{line}\n{line}"),
        )
        .arg(sandbox.plugins_dir())
        .arg(sandbox.cache_dir())
        .output()
        .expect("threaded-embedder");
    let list = stdout_json(&output);
    assert_eq!(leaf_components(&list), real, "{list:#}");
}

/// A scan result line for the leaf as the library before it could forge it (its true
/// report, its file identity intact, as any library could forge by `stat`ing the next
/// path, its components renamed), and the leaf's true component names.
fn forged_leaf(sandbox: &Sandbox) -> (String, Vec<String>) {
    let leaf = sandbox
        .plugins_dir()
        .join(library_file_name("fixture-leaf"));
    let mut forged = plugin_host::discovery::scan_in_process(&leaf);
    let info = forged.outcome.as_mut().expect("the leaf scans");
    let real = info.components.iter().map(|c| c.name.clone()).collect();
    for component in &mut info.components {
        component.name = format!("forged-{}", component.name);
    }
    let line = format!(
        "plugin-host-scan-result: {}",
        serde_json::to_string(&forged).expect("a report")
    );
    (line, real)
}

/// The component names listed for the leaf.
fn leaf_components(list: &serde_json::Value) -> Vec<String> {
    let listed_leaf = listed(list, &library_file_name("fixture-leaf"));
    listed_leaf["plugin"]["components"]
        .as_array()
        .unwrap_or_else(|| panic!("the leaf's components: {list:#}"))
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}
