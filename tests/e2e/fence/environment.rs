//! A plugin's code never sees the host's environment (where operators keep tokens and
//! keys): scanners, as workers (`isolation::over_http_a_worker_crash_is_502_...`), start
//! with an allowlist of it and the test switches.

use plugin_host_tests::{library_file_name, listed, stdout_json, Sandbox};

/// A variable of the host's environment a plugin must not read.
const SECRET: (&str, &str) = ("PLUGIN_HOST_E2E_SECRET_TOKEN", "hunter2");

#[test]
fn a_plugin_reads_nothing_of_the_hosts_environment_in_its_scanner() {
    let sandbox = Sandbox::with_plugins(&["fixture-hostile"]);
    // Told to look for a variable a scanner keeps (one of the allowlist), the probe
    // aborts: it can fail. Each scan starts from an empty cache.
    let probe_works = sandbox
        .host()
        .env("PLUGIN_HOST_TEST_HOSTILE_ABORT_IF_SET", "PATH")
        .args(["list", "--json"])
        .output()
        .expect("list");
    let aborted = stdout_json(&probe_works);
    let aborted = listed(&aborted, &library_file_name("fixture-hostile"));
    assert_eq!(aborted["usable"], false, "{aborted:#}");
    let _ = std::fs::remove_dir_all(sandbox.cache_dir());

    // The hostile library aborts while loading when it can read the secret: scanned
    // with it in the host's environment, its verdict says so.
    let output = sandbox
        .host()
        .env(SECRET.0, SECRET.1)
        .env("PLUGIN_HOST_TEST_HOSTILE_ABORT_IF_SET", SECRET.0)
        .args(["list", "--json"])
        .output()
        .expect("list");
    let list = stdout_json(&output);
    let hostile = listed(&list, &library_file_name("fixture-hostile"));
    assert_eq!(hostile["usable"], true, "{hostile:#}");
}
