//! What was vetted is what is loaded, the trust policy, live discovery and a hardened
//! environment, against the real binary and real libraries.

use std::{
    fs,
    io::Write,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use plugin_host_tests::{
    host, library, library_file_name, listed, stdout_json, wait_for, RunningHost, Sandbox,
};

/// Replaces `target` with `replacement`'s bytes padded to `target`'s size, in place (the
/// same inode), and sets its mtime back: what `cp -p` over an existing file does.
fn swap_in_place_keeping_size_and_mtime(target: &Path, replacement: &Path) {
    let before = fs::metadata(target).expect("target");
    let mut bytes = fs::read(replacement).expect("replacement");
    assert!(
        bytes.len() as u64 <= before.len(),
        "the replacement fits in the original's size"
    );
    bytes.resize(before.len() as usize, 0);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(target)
        .expect("open for writing");
    file.write_all(&bytes).expect("write");
    file.set_modified(before.modified().expect("mtime"))
        .expect("set mtime back");
    drop(file);
    let after = fs::metadata(target).expect("target");
    assert_eq!(
        (after.len(), after.modified().ok()),
        (before.len(), before.modified().ok()),
        "same size and mtime, as the attack needs"
    );
}

#[test]
fn a_same_size_same_mtime_swap_by_an_aborting_library_is_rescanned_and_refused() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let list = stdout_json(&sandbox.run(&["list", "--json"]));
    let file = library_file_name("market-data");
    assert_eq!(listed(&list, &file)["usable"], true);

    let target = sandbox.plugins_dir().join(&file);
    swap_in_place_keeping_size_and_mtime(&target, &library("fixture-abort-on-load"));
    let output = sandbox.run(&["call", "market-data", "symbols"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the host survives and says why: {stderr}"
    );
    assert!(
        stderr.contains("scanner process crashed") && stderr.contains(&file),
        "{stderr}"
    );
    let list = stdout_json(&sandbox.run(&["list", "--json"]));
    assert_eq!(listed(&list, &file)["error"]["kind"], "scanner_crashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_swapped_between_scan_and_load_is_not_loaded() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let host = host(&sandbox, "").await;
    let coordinator = host.coordinator().clone();
    let target = sandbox.plugins_dir().join(library_file_name("market-data"));
    // A new file renamed over the vetted one: another inode. Were it loaded, this test
    // process would abort.
    let staged = sandbox.root().join("staged.so");
    fs::copy(library("fixture-abort-on-load"), &staged).expect("stage");
    fs::rename(&staged, &target).expect("swap");
    let err = coordinator
        .get("market-data")
        .await
        .expect_err("the swapped file is refused");
    let text = plugin_host::ErrorChainDisplay(&err).to_string();
    assert!(text.contains("changed after it was scanned"), "{text}");
    assert!(coordinator.loaded_libraries().is_empty());
}

#[cfg(unix)]
#[test]
fn group_writable_directory_and_file_are_refused_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let file = library_file_name("market-data");
    let dir = sandbox.plugins_dir();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).expect("chmod dir");
    let list = stdout_json(&sandbox.run(&["list", "--json"]));
    let entry = listed(&list, &file);
    assert_eq!(entry["error"]["kind"], "untrusted", "{entry}");
    let message = entry["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("plugins directory") && message.contains(&dir.display().to_string()),
        "{message}"
    );
    assert!(message.contains("chmod go-w"), "{message}");

    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod dir back");
    let path = dir.join(&file);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).expect("chmod file");
    let list = stdout_json(&sandbox.run(&["list", "--json"]));
    let message = listed(&list, &file)["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(
        message.contains("writable by its group") && message.contains(&path.display().to_string()),
        "{message}"
    );
    let inspect = sandbox.run(&["inspect", &path.display().to_string()]);
    assert_eq!(inspect.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("not trusted"));
}

#[test]
fn under_pinned_trust_only_files_added_to_the_trust_file_are_used() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let trust_file = sandbox.root().join("trusted.toml");
    let config = sandbox.write_config(&format!(
        "[host]\ntrust = \"pinned\"\ntrust_file = {:?}\n",
        trust_file.display().to_string()
    ));
    let config = config.display().to_string();
    let file = library_file_name("market-data");
    let path = sandbox.plugins_dir().join(&file).display().to_string();

    let list = stdout_json(&sandbox.run(&["--config", &config, "list", "--json"]));
    let message = listed(&list, &file)["error"]["message"]
        .as_str()
        .expect("refused")
        .to_owned();
    assert!(
        message.contains("SHA-256") && message.contains("trust add") && message.contains(&path),
        "{message}"
    );

    // Never scanned: nothing says what it provides, but the miss names the refused file.
    let call = sandbox.run(&["--config", &config, "call", "market-data", "symbols"]);
    let stderr = String::from_utf8_lossy(&call.stderr);
    assert!(
        !call.status.success() && stderr.contains("no component named") && stderr.contains(&path),
        "{call:?}"
    );

    let added = sandbox.run(&["--config", &config, "trust", "add", &path]);
    assert!(added.status.success(), "{added:?}");
    let list = stdout_json(&sandbox.run(&["--config", &config, "list", "--json"]));
    assert_eq!(listed(&list, &file)["usable"], true, "{list}");
    let call = sandbox.run(&["--config", &config, "call", "market-data", "symbols"]);
    assert!(call.status.success(), "{call:?}");

    let listed_trust = sandbox.run(&["--config", &config, "trust", "list"]);
    assert!(String::from_utf8_lossy(&listed_trust.stdout).contains(&file));
    let removed = sandbox.run(&["--config", &config, "trust", "rm", &file]);
    assert!(removed.status.success(), "{removed:?}");
    let list = stdout_json(&sandbox.run(&["--config", &config, "list", "--json"]));
    assert_eq!(listed(&list, &file)["error"]["kind"], "untrusted");
    // Known from its last scan: the call says its file is refused, and why.
    let call = sandbox.run(&["--config", &config, "call", "market-data", "symbols"]);
    let stderr = String::from_utf8_lossy(&call.stderr);
    assert!(
        !call.status.success()
            && stderr.contains("component `market-data` cannot be used")
            && stderr.contains("not trusted")
            && stderr.contains(&path),
        "{call:?}"
    );
}

/// Polls `path` until it answers 200; returns how long that took.
fn callable(host: &RunningHost, path: &str) -> Duration {
    let started = Instant::now();
    wait_for(&format!("{path} to answer 200"), || {
        (host.post(path, r#"{"symbol":"AAPL"}"#).0 == 200).then_some(())
    });
    started.elapsed()
}

/// Waits for `condition`, named by `what`.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    wait_for(what, || condition().then_some(()));
}

/// How soon a change notification has a new plugin callable: the directory quiet for
/// 250 ms, one scan, one registration, loaded on the call. Far under it on an idle
/// machine; the backup rescan, set an hour out, cannot pass in its place.
const NOTIFIED_WITHIN: Duration = Duration::from_secs(2);

#[test]
fn a_plugin_copied_into_a_running_host_becomes_callable() {
    let sandbox = Sandbox::new();
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[host]\nwatch_rescan = \"1h\"\n",
    );
    let path = "/components/market-data/call/quote";
    assert_eq!(host.post(path, "{}").0, 404, "not there yet");
    sandbox.add_plugin("market-data");
    let took = callable(&host, path);
    assert!(
        took <= NOTIFIED_WITHIN,
        "market-data callable {took:?} after its file arrived: the notification was missed"
    );

    // A loaded library cannot be replaced in-process: a changed file says so.
    let file = sandbox.plugins_dir().join(library_file_name("market-data"));
    let mut appended = fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("open");
    appended.write_all(&[0; 16]).expect("append");
    drop(appended);
    eventually(
        "a loaded component whose file changed to say a restart upgrades it",
        || host.get("/components").1.contains(r#""file":"changed""#),
    );

    fs::remove_file(sandbox.plugins_dir().join(library_file_name("market-data"))).expect("remove");
    eventually("a loaded component whose file went to say so", || {
        host.get("/components").1.contains(r#""file":"gone""#)
    });
    assert_eq!(
        host.post(path, r#"{"symbol":"AAPL"}"#).0,
        200,
        "and keeps running"
    );
}

#[test]
#[cfg(unix)]
fn a_loaded_library_written_over_in_place_keeps_serving_what_was_loaded() {
    // `cp new.so plugins/old.so` truncates the loaded file and writes into the same
    // inode: mapped in place, the library's pages would be taken away (SIGBUS in the
    // host) or become the new file's code. The host maps a sealed copy instead.
    let sandbox = Sandbox::new();
    let file = sandbox.add_plugin("market-data");
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[host]\nwatch_rescan = \"1h\"\n",
    );
    let path = "/components/market-data/call/quote";
    let body = r#"{"symbol":"AAPL","tick":7}"#;
    let before = host.post(path, body);
    assert_eq!(before.0, 200, "{before:?}");

    let inode =
        |file: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(file).expect("stat"));
    let loaded = inode(&file);
    fs::File::create(&file).expect("truncated in place");
    fs::copy(library("historical-data"), &file).expect("written in place");
    assert_eq!(inode(&file), loaded, "the same file, written over");
    for _ in 0..3 {
        assert_eq!(
            host.post(path, body),
            before,
            "the loaded library keeps serving"
        );
    }
    eventually("the component to say its file changed", || {
        host.get("/components").1.contains(r#""file":"changed""#)
    });
    assert_eq!(host.post(path, body), before, "and still serves");
}

#[test]
fn an_isolated_component_its_new_file_no_longer_provides_keeps_its_worker() {
    // A new file at the same path (renamed over it, as a deploy does) holding another
    // plugin: the worker is not upgraded onto it (the probe fixture would create a
    // component of any name asked for, and answer `quote` with unknown_method).
    let sandbox = Sandbox::new();
    let file = sandbox.add_plugin("market-data");
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[host]\nwatch_rescan = \"1h\"\n\
         [components.market-data]\nisolation = \"process\"\n",
    );
    let path = "/components/market-data/call/quote";
    let body = r#"{"symbol":"AAPL","tick":7}"#;
    let before = host.post(path, body);
    assert_eq!(before.0, 200, "{before:?}");

    let aside = sandbox.root().join("new-build");
    fs::copy(library("fixture-probe"), &aside).expect("copy");
    fs::rename(&aside, &file).expect("renamed over");
    eventually("the component to say its file changed", || {
        host.get("/components").1.contains(r#""file":"changed""#)
    });
    assert_eq!(
        host.post(path, body),
        before,
        "the old worker keeps serving"
    );
    let (status, text) = host.post("/plugins/market-data/reload", "");
    assert!(
        status >= 400,
        "no reload onto a file without the plugin: {status} {text}"
    );
}

/// Makes directory `dir` as a deploy would, writable by its owner alone (as the trust
/// policy wants).
fn make_plugins_dir(dir: &Path) {
    fs::create_dir(dir).expect("plugins directory");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("its mode");
    }
}

#[test]
fn a_plugins_directory_swapped_or_removed_under_a_running_host_is_followed() {
    let sandbox = Sandbox::new();
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[host]\nwatch_rescan = \"1h\"\n",
    );
    let dir = sandbox.plugins_dir();
    // A deploy builds the new directory beside the old one and swaps it in.
    let staged = sandbox.root().join("plugins.new");
    make_plugins_dir(&staged);
    fs::copy(
        library("market-data"),
        staged.join(library_file_name("market-data")),
    )
    .expect("copy");
    fs::rename(&dir, sandbox.root().join("plugins.old")).expect("old directory away");
    fs::rename(&staged, &dir).expect("new directory in");
    let took = callable(&host, "/components/market-data/call/quote");
    assert!(
        took <= NOTIFIED_WITHIN,
        "market-data callable {took:?} after its directory was swapped in: the swap was missed"
    );
    // What arrives in the new directory is seen: it is the one watched now.
    let listed_within = |name: &str| {
        let started = Instant::now();
        eventually(&format!("{name} listed"), || {
            host.get("/plugins").1.contains(&library_file_name(name))
        });
        started.elapsed()
    };
    sandbox.add_plugin("historical-data");
    let took = listed_within("historical-data");
    assert!(
        took <= NOTIFIED_WITHIN,
        "historical-data listed {took:?} after it arrived in the swapped-in directory"
    );

    // Removed, the directory's plugins stay as they were, with one warning (not one a
    // second), until it is back.
    fs::remove_dir_all(&dir).expect("remove the plugins directory");
    std::thread::sleep(Duration::from_secs(3));
    assert!(host.get("/plugins").1.contains("historical-data"));
    make_plugins_dir(&dir);
    sandbox.add_plugin("market-data");
    eventually(
        "historical-data gone with the directory that held it",
        || !host.get("/plugins").1.contains("historical-data"),
    );
    sandbox.add_plugin("historical-data");
    let took = listed_within("historical-data");
    assert!(
        took <= NOTIFIED_WITHIN,
        "historical-data listed {took:?} after it arrived in the directory made again"
    );
    assert_eq!(host.stop(), Some(0));
    let log = fs::read_to_string(sandbox.root().join("run.log")).expect("run.log");
    assert_eq!(
        log.matches("the plugins directory cannot be rescanned")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("the plugins directory is rescanned again"),
        "{log}"
    );
    assert!(!log.contains("notify::"), "the watcher's own notes: {log}");
}

#[test]
fn with_watch_poll_a_new_plugin_is_found_by_polling_alone() {
    // No watcher is set up in this mode: only the poll can find the file. Set through the
    // environment, as an operator on NFS might.
    let sandbox = Sandbox::new();
    let host = RunningHost::start_with_env(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        &[("PLUGIN_HOST_HOST_WATCH", "poll")],
    );
    let path = "/components/market-data/call/quote";
    sandbox.add_plugin("market-data");
    let took = callable(&host, path);
    eprintln!("market-data callable {took:?} after its file arrived");
    assert_eq!(host.stop(), Some(0));
    let log = fs::read_to_string(sandbox.root().join("run.log")).expect("run.log");
    assert!(log.contains("polling the plugins directory"), "{log}");
}

#[test]
fn sighup_and_the_rescan_endpoint_rescan_at_once() {
    let sandbox = Sandbox::new();
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[host]\nwatch = false\n",
    );
    let quote = "/components/market-data/call/quote";
    sandbox.add_plugin("market-data");
    // Nothing to wait for: without watch nothing happens, however long one looks.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(host.post(quote, "{}").0, 404, "not followed without watch");
    let status = Command::new("kill")
        .args(["-HUP", &host.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    callable(&host, quote);

    sandbox.add_plugin("historical-data");
    let (status, body) = host.post("/plugins/rescan", "");
    assert_eq!(status, 200, "{body}");
    let changes: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        changes["registered"],
        serde_json::json!(["historical-data"])
    );
}

#[cfg(unix)]
#[test]
fn the_host_runs_with_a_non_utf8_variable_in_its_environment() {
    use std::os::unix::ffi::OsStringExt;
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    for name in [b"PLUGIN_HOST_\xff".to_vec(), b"SOMETHING_\xfe".to_vec()] {
        let output = sandbox
            .host()
            .env(std::ffi::OsString::from_vec(name), "1")
            .args(["list", "--json"])
            .output()
            .expect("list");
        assert!(output.status.success(), "{output:?}");
    }
    let output = sandbox
        .host()
        .env(
            "PLUGIN_HOST_ADMIN_TOKEN",
            std::ffi::OsString::from_vec(b"\xfe".to_vec()),
        )
        .args(["list"])
        .output()
        .expect("list");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("not UTF-8"));
}

#[test]
fn a_numeric_token_in_the_environment_is_a_string_and_unknown_variables_only_warn() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let output = sandbox
        .host()
        .env("PLUGIN_HOST_ADMIN_TOKEN", "12345")
        .env("PLUGIN_HOST_SOMETHING_ELSE", "x")
        .env("PLUGIN_HOST_MEMORY_PRESSURE_HIGH", "0.9")
        .arg("check")
        .output()
        .expect("check");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PLUGIN_HOST_SOMETHING_ELSE") && stderr.contains("names no config key"),
        "{stderr}"
    );
}
