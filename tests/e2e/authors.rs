//! Plugin authors: a plugin from nothing outside this repository (`plugin-host new`),
//! in Rust or in C, methods declared in the manifest and shown by `inspect`, undeclared methods refused
//! before anything is loaded.

use std::{path::Path, process::Command};

use plugin_host::CallError;
use plugin_host_tests::{host, success_stdout, target_dir, wait_for, RunningHost, Sandbox};

/// The workspace root (for its lock file).
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Same versions as the host (its lock file), no network needed, and the workspace's
    // build directory so compiled dependencies are shared.
    let output = Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env(
            "CARGO_TARGET_DIR",
            target_dir().parent().expect("target directory"),
        )
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "cargo {args:?} in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_plugin_made_by_new_outside_the_workspace_builds_tests_and_answers_through_the_host() {
    let outside = tempfile::tempdir().expect("temp dir");
    let crate_dir = outside.path().join("order-book");
    let sandbox = Sandbox::new();
    let made = sandbox.run(&["new", "order-book", "--path", &crate_dir.to_string_lossy()]);
    let said = success_stdout(&made);
    assert!(said.contains("created plugin `order-book`"), "{said}");
    assert!(!crate_dir.starts_with(workspace_root()));
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .expect("lock file");
    // Its unit tests run against plugin_api::testing's fake host.
    cargo(&crate_dir, &["test", "--quiet"]);
    cargo(&crate_dir, &["build", "--quiet"]);
    let library = format!(
        "{}order_book{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let built = target_dir()
        .parent()
        .expect("target directory")
        .join("debug")
        .join(&library);
    std::fs::copy(&built, sandbox.plugins_dir().join(&library)).expect("install the plugin");

    let reply = sandbox.run(&["call", "order-book", "hello", r#"{"name": "Ada"}"#]);
    assert_eq!(success_stdout(&reply).trim(), r#""Hello, Ada!""#);
    let inspected = success_stdout(&sandbox.run(&["inspect", "order-book"]));
    assert!(
        inspected.contains("method hello: greets someone by name")
            && inspected.contains(r#"example: {"name": "Ada"}"#),
        "{inspected}"
    );

    // Its long method stops once its caller has gone: past its timeout, the abandoned
    // call returns at once instead of counting primes for hours.
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [components.order-book.operations]\ncount_primes = \"300ms\"\n",
    );
    abandons_count_primes(&sandbox, &host, "order-book");
    host.stop();
}

#[cfg(unix)]
#[test]
fn a_c_plugin_made_by_new_builds_with_the_command_it_prints_and_answers() {
    let outside = tempfile::tempdir().expect("temp dir");
    let dir = outside.path().join("greeter");
    let sandbox = Sandbox::new();
    let made = sandbox.run(&[
        "new",
        "greeter",
        "--lang",
        "c",
        "--path",
        &dir.to_string_lossy(),
    ]);
    let said = success_stdout(&made);
    // The command it prints, run as printed (with the compiler the tests use).
    let command = said
        .lines()
        .find_map(|line| {
            line.trim()
                .split_once(" && ")
                .map(|(_, build)| build.to_owned())
        })
        .unwrap_or_else(|| panic!("no build command in: {said}"));
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("cc"), "{command}");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(compiler)
        .args(words)
        .args(["-Wall", "-Wextra", "-Werror"])
        .current_dir(&dir)
        .output()
        .expect("running the C compiler");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::copy(
        dir.join("libgreeter.so"),
        sandbox.plugins_dir().join("libgreeter.so"),
    )
    .expect("install the plugin");

    let reply = sandbox.run(&["call", "greeter", "hello", r#"{"name": "Ada"}"#]);
    assert_eq!(success_stdout(&reply).trim(), r#""Hello, Ada!""#);
    let counted = sandbox.run(&["call", "greeter", "count_primes", r#"{"below": 1000}"#]);
    assert_eq!(success_stdout(&counted).trim(), "168");
    let inspected = success_stdout(&sandbox.run(&["inspect", "greeter"]));
    assert!(
        inspected.contains("C (plugin_host.h)")
            && inspected.contains("method hello: greets someone by name"),
        "{inspected}"
    );

    // Its config section reaches it, and its long method stops once its caller has gone.
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[components.greeter]\ntimeout = \"300ms\"\n\
         [components.greeter.config]\ngreeting = \"Hi\"\n",
    );
    let (status, hello) = host.call("greeter", "hello", r#"{"name": "Ada"}"#);
    assert_eq!(
        (status, hello.expect("hello")),
        (200, serde_json::json!("Hi, Ada!"))
    );
    abandons_count_primes(&sandbox, &host, "greeter");
    host.stop();
}

/// `component`'s `count_primes` of a number far too large times out (the host's
/// configured timeout), and the plugin's code returns soon after, as it sees it was
/// cancelled: the host logs the abandoned call's return.
fn abandons_count_primes(sandbox: &Sandbox, host: &RunningHost, component: &str) {
    let (status, answer) = host.call(component, "count_primes", r#"{"below": 4000000000}"#);
    assert_eq!(status, 504, "{answer:?}");
    wait_for("the abandoned count_primes to return", || {
        std::fs::read_to_string(sandbox.root().join("run.log"))
            .ok()
            .filter(|log| log.contains("an abandoned call returned"))
    });
}

#[test]
fn new_refuses_a_bad_name_and_a_directory_in_use() {
    let sandbox = Sandbox::new();
    let bad = sandbox.run(&["new", "Order Book"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("a-z, 0-9"));
    let taken = sandbox.root().join("taken");
    std::fs::create_dir_all(&taken).expect("dir");
    std::fs::write(taken.join("keep.txt"), "mine").expect("file");
    let refused = sandbox.run(&["new", "fine", "--path", &taken.to_string_lossy()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).expect("kept"),
        "mine"
    );
}

#[test]
fn inspect_takes_a_file_a_plugin_or_a_component_and_shows_methods() {
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    for target in ["market-data", "historical-data"] {
        let text = success_stdout(&sandbox.run(&["inspect", target]));
        assert!(text.contains(&format!("component {target}")), "{text}");
    }
    let by_component = success_stdout(&sandbox.run(&["inspect", "historical-data"]));
    assert!(
        by_component.contains("method bars (stream): ") && by_component.contains(r#""count": 5"#),
        "{by_component}"
    );
    let file = sandbox
        .plugins_dir()
        .join(plugin_host_tests::library_file_name("market-data"));
    let by_file = success_stdout(&sandbox.run(&["inspect", &file.to_string_lossy()]));
    assert!(
        by_file.contains("method quote: ") && by_file.contains("method ticks: "),
        "{by_file}"
    );
    let json = sandbox.run(&["inspect", "market-data", "--json"]);
    let verdict: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let methods = &verdict["plugin"]["components"][0]["methods"];
    assert_eq!(methods[0]["name"], "symbols", "{verdict}");
    let unknown = sandbox.run(&["inspect", "no-such-thing"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("plugin-host list"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_method_is_refused_before_anything_is_loaded() {
    let sandbox = Sandbox::with_plugins(&["fixture-leaf"]);
    let host = host(&sandbox, "").await;
    let coordinator = host.coordinator().clone();
    let err = coordinator
        .call("leaf", "grow", b"null".to_vec())
        .await
        .expect_err("leaf declares size and pid only");
    assert!(matches!(err, CallError::UndeclaredMethod { .. }), "{err}");
    assert!(
        err.to_string().contains("size, pid"),
        "the error lists the declared methods: {err}"
    );
    assert!(
        coordinator.loaded_libraries().is_empty(),
        "nothing was loaded"
    );
    let status = coordinator.components();
    let leaf = status.iter().find(|c| c.name == "leaf").expect("leaf");
    let names: Vec<&str> = leaf.methods.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["size", "pid"]);
}
