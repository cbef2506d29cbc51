//! The host maps a plugin library only when one of its components is needed, and a warm
//! start reads no library at all.

use std::time::{Duration, SystemTime};

use plugin_host_tests::{library_file_name, listed, stdout_json, success_stdout, Sandbox};

#[test]
fn list_reports_both_example_plugins_while_the_host_maps_neither() {
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    let (output, trace) = sandbox.run_traced(&["list", "--json"], &[]);
    let list = stdout_json(&output);

    let market = listed(&list, &library_file_name("market-data"));
    assert_eq!(market["plugin"]["name"], "market-data");
    assert_eq!(market["plugin"]["components"][0]["name"], "market-data");
    let history = listed(&list, &library_file_name("historical-data"));
    let component = &history["plugin"]["components"][0];
    assert_eq!(component["name"], "historical-data");
    assert_eq!(
        component["dependencies"],
        serde_json::json!(["market-data"])
    );
    assert_eq!(component["memory_estimate"], 100 * 1024 * 1024);

    for plugin in ["market-data", "historical-data"] {
        let path = sandbox.plugins_dir().join(library_file_name(plugin));
        assert!(
            !trace.host_mapped(&path),
            "the host process mapped {plugin}"
        );
    }
    assert_eq!(
        trace.child_mapped_descriptors(),
        2,
        "the scanners mapped both libraries, each by its vetted descriptor"
    );
}

#[test]
fn calling_historical_data_loads_both_libraries_and_initialises_market_data_first() {
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    let (output, trace) = sandbox.run_traced(
        &[
            "call",
            "historical-data",
            "bars",
            r#"{"symbol":"AAPL","count":3}"#,
        ],
        &[("RUST_LOG", "plugin_host=info")],
    );
    let bars = stdout_json(&output);
    let bars = bars.as_array().expect("an array of bars");
    assert_eq!(bars.len(), 3);
    assert_eq!(bars[0]["ts"], 1_704_205_800_000_u64);
    assert!(bars[0]["high"].as_f64() >= bars[0]["low"].as_f64());

    for plugin in ["market-data", "historical-data"] {
        let path = sandbox.plugins_dir().join(library_file_name(plugin));
        assert!(trace.host_mapped(&path), "the host did not load {plugin}");
        // Through the vetted descriptor (a link of the host's own to /proc/self/fd/N),
        // never by its path, which another file could have taken meanwhile.
        for name in trace.host_opened_as(&path) {
            assert!(
                name.contains("/plugin-host-load-") && name != path.display().to_string(),
                "{plugin} was loaded as {name}"
            );
        }
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let initialised: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("component initialised"))
        .collect();
    assert_eq!(initialised.len(), 2, "{stderr}");
    assert!(initialised[0].contains("component=market-data"), "{stderr}");
    assert!(
        initialised[1].contains("component=historical-data"),
        "{stderr}"
    );
}

#[test]
fn calling_market_data_leaves_historical_data_unmapped() {
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    let (output, trace) = sandbox.run_traced(
        &["call", "market-data", "quote", r#"{"symbol":"MSFT"}"#],
        &[],
    );
    let quote = stdout_json(&output);
    assert_eq!(quote["symbol"], "MSFT");
    assert!(quote["bid"].as_f64() < quote["ask"].as_f64());
    assert!(trace.host_mapped(&sandbox.plugins_dir().join(library_file_name("market-data"))));
    assert!(!trace.host_mapped(
        &sandbox
            .plugins_dir()
            .join(library_file_name("historical-data"))
    ));
}

#[test]
fn a_warm_list_spawns_no_scanner_and_a_touched_file_is_rescanned_alone() {
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    let history = sandbox
        .plugins_dir()
        .join(library_file_name("historical-data"));

    let (cold, trace) = sandbox.run_traced(&["list", "--json"], &[]);
    assert_eq!(stdout_json(&cold)["scanned"], 2);
    assert_eq!(trace.child_processes(), 2);

    let (warm, trace) = sandbox.run_traced(&["list", "--json"], &[]);
    let warm = stdout_json(&warm);
    assert_eq!(warm["scanned"], 0);
    assert_eq!(
        listed(&warm, &library_file_name("market-data"))["cached"],
        true
    );
    assert_eq!(trace.child_processes(), 0, "a warm start spawned a scanner");

    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&history)
        .and_then(|file| file.set_modified(later))
        .expect("touching the library");
    let (touched, trace) = sandbox.run_traced(&["list", "--json"], &[]);
    let touched = stdout_json(&touched);
    assert_eq!(touched["scanned"], 1);
    assert_eq!(trace.child_processes(), 1);
    assert_eq!(
        trace.child_mapped_descriptors(),
        1,
        "the one scanner mapped one library, the touched one (listed as not cached)"
    );
    assert_eq!(
        listed(&touched, &library_file_name("historical-data"))["cached"],
        false
    );

    // That rescan wrote the cache again: with the untouched file's verdict kept.
    let (again, trace) = sandbox.run_traced(&["list", "--json"], &[]);
    assert_eq!(stdout_json(&again)["scanned"], 0);
    assert_eq!(
        trace.child_processes(),
        0,
        "the rewritten cache lost a verdict"
    );
}

#[test]
fn the_text_listing_names_plugins_components_and_dependencies() {
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    let stdout = success_stdout(&sandbox.run(&["list"]));
    assert!(
        stdout.contains("historical-data (needs market-data)"),
        "{stdout}"
    );
    assert!(stdout.contains("2 scanned"), "{stdout}");
}
