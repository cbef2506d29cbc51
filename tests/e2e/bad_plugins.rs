//! Every kind of bad plugin file ends in one clear error naming the file, and the good
//! plugins beside it stay listed and callable.

use std::{path::Path, process::Command};

use plugin_host_tests::{library, library_file_name, listed, stdout_json, success_stdout, Sandbox};

/// Lists the sandbox (which has market-data too), checks the bad file's error kind and
/// message, and that market-data is still listed and callable. Returns the message.
fn assert_rejected_while_others_work(
    sandbox: &Sandbox,
    file_name: &str,
    kind: &str,
    needles: &[&str],
) -> String {
    let list = stdout_json(&sandbox.run(&["list", "--json"]));
    let bad = listed(&list, file_name);
    let error = &bad["error"];
    assert_eq!(error["kind"], kind, "{bad:#}");
    let message = error["message"].as_str().expect("error message").to_owned();
    assert!(
        message.contains(file_name),
        "the message does not name the file: {message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "expected `{needle}` in: {message}"
        );
    }
    assert!(!message.contains('\n'), "one line, not a dump: {message}");

    let good = listed(&list, &library_file_name("market-data"));
    assert_eq!(good["plugin"]["name"], "market-data");
    let quote =
        stdout_json(&sandbox.run(&["call", "market-data", "quote", r#"{"symbol":"AAPL"}"#]));
    assert_eq!(quote["symbol"], "AAPL");
    message
}

#[test]
fn a_text_file_named_like_a_library_is_not_a_library() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    sandbox.write_plugin_file("x.so", b"these are notes, not a plugin\n");
    assert_rejected_while_others_work(&sandbox, "x.so", "not_a_library", &["text file"]);
}

/// A file that is no library for this platform is refused from its header, which the
/// scanner reads as bytes: no child is made and fenced in for it (a child says its fence
/// first), so a directory of stray files costs no fork each. A library still gets one.
#[cfg(unix)]
#[test]
fn a_file_that_is_no_library_is_refused_without_a_child_of_the_scanner() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    sandbox.write_plugin_file("notes.so", b"these are notes, not a plugin\n");
    sandbox.write_plugin_file("libempty.so", b"");
    let scan = |files: &[&str]| {
        let output = Command::new(plugin_host_tests::binary())
            .arg("--plugin-host-scan")
            .args(files.iter().map(|file| sandbox.plugins_dir().join(file)))
            .output()
            .expect("the scanner");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let said = scan(&["notes.so", "libempty.so"]);
    let results = said
        .lines()
        .filter(|line| line.starts_with("plugin-host-scan-result: "))
        .count();
    assert_eq!(results, 2, "{said}");
    assert!(
        said.contains("text file") && said.contains(r#""kind":"empty""#),
        "{said}"
    );
    assert!(
        !said.contains("plugin-host-scan-fence"),
        "a child was made for a file that is no library: {said}"
    );
    let said = scan(&[&library_file_name("market-data")]);
    assert!(said.contains("plugin-host-scan-fence"), "{said}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_program_named_like_a_library_is_named_a_program() {
    // A position-independent executable is an ELF shared object like a library: only
    // the dynamic loader tells them apart.
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let program = std::fs::read(plugin_host_tests::binary()).expect("reading plugin-host");
    sandbox.write_plugin_file("libprogram.so", &program);
    assert_rejected_while_others_work(&sandbox, "libprogram.so", "not_a_library", &["program"]);
}

#[test]
fn an_empty_library_file_is_reported_empty() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    sandbox.write_plugin_file("libempty.so", b"");
    assert_rejected_while_others_work(&sandbox, "libempty.so", "empty", &["empty"]);
}

#[test]
fn a_truncated_copy_of_a_real_plugin_cannot_be_opened() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let bytes = std::fs::read(library("market-data")).expect("reading the plugin");
    sandbox.write_plugin_file("libtruncated.so", &bytes[..bytes.len() / 3]);
    assert_rejected_while_others_work(
        &sandbox,
        "libtruncated.so",
        "truncated",
        &["truncated", "copy or build it again"],
    );
    // Cut inside the loaded segments too, where the dynamic loader itself would choke.
    sandbox.write_plugin_file("libstub.so", &bytes[..4096]);
    assert_rejected_while_others_work(&sandbox, "libstub.so", "truncated", &["truncated"]);
}

#[test]
fn a_c_library_without_the_root_module_is_not_a_plugin() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/no_root_module.c");
    let output = sandbox.plugins_dir().join("libplain_c.so");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&output)
        .arg(&source)
        .status()
        .expect("running the C compiler");
    assert!(status.success(), "compiling the C fixture failed");
    assert_rejected_while_others_work(
        &sandbox,
        "libplain_c.so",
        "no_root_module",
        &["export_plugin!"],
    );
}

#[test]
fn a_plugin_built_against_an_incompatible_plugin_api_gets_a_short_summary() {
    let sandbox = Sandbox::with_plugins(&["market-data", "fixture-abi-mismatch"]);
    let file = library_file_name("fixture-abi-mismatch");
    let message = assert_rejected_while_others_work(
        &sandbox,
        &file,
        "abi_mismatch",
        &["plugin-api", "rebuild", "expected `plugin-api`"],
    );
    assert!(
        message.len() < 800,
        "a summary, not abi_stable's full report: {message}"
    );
}

#[test]
fn another_applications_abi_stable_library_is_named_as_not_a_plugin() {
    let sandbox = Sandbox::with_plugins(&["market-data", "fixture-foreign"]);
    let file = library_file_name("fixture-foreign");
    let message = assert_rejected_while_others_work(
        &sandbox,
        &file,
        "not_a_plugin",
        &[
            "not a plugin-host plugin",
            "`text_operations`",
            "`TextOpsMod`",
            "`fixture-foreign` 3.2.1",
        ],
    );
    assert!(
        !message.contains("plugin-api") && !message.contains("rebuild"),
        "no plugin-api version is claimed for it, no rebuild advised: {message}"
    );
}

#[test]
fn a_library_that_aborts_while_loading_kills_only_the_scanner() {
    let sandbox = Sandbox::with_plugins(&["market-data", "fixture-abort-on-load"]);
    let file = library_file_name("fixture-abort-on-load");
    assert_rejected_while_others_work(&sandbox, &file, "scanner_crashed", &["SIGABRT"]);
}

#[test]
fn a_library_that_hangs_while_loading_times_out_in_the_scanner() {
    let sandbox = Sandbox::with_plugins(&["market-data", "fixture-hang-on-load"]);
    let config = sandbox.write_config("[host]\nscan_timeout = \"1s\"\n");
    let list = stdout_json(
        &sandbox
            .host()
            .arg("--config")
            .arg(&config)
            .args(["list", "--json"])
            .output()
            .expect("list"),
    );
    let bad = listed(&list, &library_file_name("fixture-hang-on-load"));
    assert_eq!(bad["error"]["kind"], "scanner_timed_out", "{bad:#}");
    assert_eq!(
        listed(&list, &library_file_name("market-data"))["plugin"]["name"],
        "market-data"
    );
}

#[test]
fn one_scanner_scans_many_files_and_a_library_that_kills_it_costs_only_its_own_verdict() {
    // One scanner process at a time: every file goes through one batch, the aborting and
    // the hanging library in the middle of it.
    let sandbox = Sandbox::with_plugins(&[
        "market-data",
        "fixture-abort-on-load",
        "historical-data",
        "fixture-hang-on-load",
        "fixture-leaf",
    ]);
    plugin_host_tests::generate_plugins(&sandbox.plugins_dir(), 6).expect("generated");
    let config = sandbox.write_config("[host]\nscan_concurrency = 1\nscan_timeout = \"2s\"\n");
    let config = config.to_string_lossy().into_owned();
    let (output, trace) = sandbox.run_traced(&["--config", &config, "list", "--json"], &[]);
    let list = stdout_json(&output);
    // Files sort by name: the aborting library ends the first scanner, the hanging one the
    // second, the nine others share a third.
    assert!(
        trace.child_processes() <= 4,
        "{} scanner processes for 11 files",
        trace.child_processes()
    );
    let kind =
        |crate_name: &str| listed(&list, &library_file_name(crate_name))["error"]["kind"].clone();
    assert_eq!(kind("fixture-abort-on-load"), "scanner_crashed", "{list:#}");
    assert_eq!(
        kind("fixture-hang-on-load"),
        "scanner_timed_out",
        "{list:#}"
    );
    for good in ["market-data", "historical-data", "fixture-leaf"] {
        assert_eq!(
            listed(&list, &library_file_name(good))["usable"],
            true,
            "{good}: {list:#}"
        );
    }
    let usable = list["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter(|p| p["usable"] == true)
        .count();
    assert_eq!(usable, 3 + 6, "every good file has its verdict: {list:#}");
}

#[cfg(unix)]
#[test]
fn a_world_writable_plugin_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let path = sandbox.add_plugin("fixture-panic-call");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let file = library_file_name("fixture-panic-call");
    assert_rejected_while_others_work(
        &sandbox,
        &file,
        "untrusted",
        &["writable by every user", "chmod go-w"],
    );
}

#[cfg(unix)]
#[test]
fn a_plugin_no_one_may_read_is_refused_saying_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let path = sandbox.add_plugin("fixture-leaf");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    // As root the host opens it, and its scanner, without root's privileges, cannot.
    let kind = if plugin_host_tests::running_as_root() {
        "unreadable"
    } else {
        "io"
    };
    assert_rejected_while_others_work(
        &sandbox,
        &library_file_name("fixture-leaf"),
        kind,
        &["permission denied", "chmod a+r"],
    );
}

#[test]
fn a_plugin_whose_create_panics_fails_its_call_with_the_panic_and_the_host_goes_on() {
    let sandbox = Sandbox::with_plugins(&["market-data", "fixture-panic-create"]);
    let output = sandbox.run(&["call", "panic-create", "anything"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "plugin `panic-create` panicked",
        "component `panic-create`",
        "`create`",
        "create always panics",
    ] {
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    }
    let quote =
        stdout_json(&sandbox.run(&["call", "market-data", "quote", r#"{"symbol":"AAPL"}"#]));
    assert_eq!(quote["symbol"], "AAPL");
}

#[test]
fn inspect_gives_a_verdict_and_exit_code_per_file() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let good = sandbox.plugins_dir().join(library_file_name("market-data"));
    let text = success_stdout(
        &sandbox
            .host()
            .arg("inspect")
            .arg(&good)
            .output()
            .expect("inspect"),
    );
    assert!(
        text.contains("usable") && text.contains("market-data"),
        "{text}"
    );

    let bad = sandbox.write_plugin_file("libnotes.so", b"notes\n");
    let output = sandbox
        .host()
        .arg("inspect")
        .arg(&bad)
        .arg("--json")
        .output()
        .expect("inspect");
    assert_eq!(output.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON verdict");
    assert_eq!(verdict["usable"], false);
    assert_eq!(verdict["error"]["kind"], "not_a_library");
}

#[test]
fn a_directory_named_like_a_library_is_named_as_a_directory() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let name = plugin_named("folder");
    std::fs::create_dir(sandbox.plugins_dir().join(&name)).expect("a directory");
    assert_rejected_while_others_work(
        &sandbox,
        &name,
        "not_a_library",
        &["(a directory, not a regular file)"],
    );
}

#[cfg(unix)]
#[test]
fn a_named_pipe_dropped_in_as_a_plugin_is_refused_without_a_wait() {
    // Opening a named pipe waits for a writer, and hashing it (trust "pinned") waited in
    // the host itself, for ever: it is refused from its `stat`, under either trust.
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let name = plugin_named("named_pipe");
    let pipe = sandbox.plugins_dir().join(&name);
    let path = std::ffi::CString::new(pipe.to_string_lossy().as_bytes()).expect("a path");
    // SAFETY: mkfifo reads the path it is given.
    #[allow(unsafe_code)]
    let made = unsafe { libc::mkfifo(path.as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo: {}", std::io::Error::last_os_error());
    for trust in ["permissions", "pinned"] {
        let config = trusting(&sandbox, trust, "scan_timeout = \"60s\"\n");
        /// Killed if the test gives up on it.
        struct Listing(std::process::Child);
        impl Drop for Listing {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut listing = Listing(
            sandbox
                .host()
                .arg("--config")
                .arg(&config)
                .args(["list", "--json"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("list"),
        );
        plugin_host_tests::wait_for("list to end", || {
            listing.0.try_wait().expect("list's status")
        });
        let mut stdout = Vec::new();
        std::io::Read::read_to_end(
            &mut listing.0.stdout.take().expect("list's stdout"),
            &mut stdout,
        )
        .expect("list's output");
        let list: serde_json::Value = serde_json::from_slice(&stdout).expect("json");
        let bad = listed(&list, &name);
        assert_eq!(bad["error"]["kind"], "not_a_library", "{trust}: {bad:#}");
        assert!(
            bad["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("(a named pipe, not a regular file)")),
            "{trust}: {bad:#}"
        );
    }
    // The table's count says the pipe was neither scanned nor taken from the cache.
    let table = sandbox.host().arg("list").output().expect("list");
    let header = String::from_utf8_lossy(&table.stdout);
    let header = header.lines().next().unwrap_or_default();
    assert!(header.ends_with(", 1 refused unscanned)"), "{header}");
}

#[test]
fn a_file_larger_than_any_plugin_is_refused_without_being_read() {
    // 5 GiB, sparse: hashing it (trust "pinned") would read every byte.
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let name = plugin_named("huge");
    let file = std::fs::File::create(sandbox.plugins_dir().join(&name)).expect("huge file");
    file.set_len(5 << 30).expect("5 GiB, sparse");
    let config = trusting(&sandbox, "pinned", "");
    let output = sandbox
        .host()
        .arg("--config")
        .arg(&config)
        .args(["list", "--json"])
        .output()
        .expect("list");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let huge = listed(&list, &name);
    assert_eq!(huge["error"]["kind"], "not_a_library", "{huge:#}");
    assert!(
        huge["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("larger than a plugin library may be")),
        "{huge:#}"
    );
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_to_nothing_or_in_a_loop_is_named_as_one() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let (dangling, looping) = (plugin_named("dangling"), plugin_named("looping"));
    let missing = sandbox.root().join("gone.so");
    std::os::unix::fs::symlink(&missing, sandbox.plugins_dir().join(&dangling)).expect("link");
    std::os::unix::fs::symlink(&looping, sandbox.plugins_dir().join(&looping)).expect("link");
    let output = sandbox
        .host()
        .args(["list", "--json"])
        .output()
        .expect("list");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    for (name, wanted) in [
        (&dangling, format!("it is a symbolic link to {}, which does not exist", missing.display())),
        (&looping, format!("it is a symbolic link to {looping}, and the links from there lead back in a loop; fix or remove the link")),
    ] {
        let entry = listed(&list, name);
        assert_eq!(entry["error"]["kind"], "io", "{entry:#}");
        let message = entry["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&wanted), "{entry:#}");
    }
}

/// A file whose name holds a line break cannot forge a line of `check` or `list`: each
/// problem is printed on one line, the break written as an escape.
#[test]
fn a_line_break_in_a_file_name_forges_no_line_of_check_or_list() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let name = plugin_named("notes\nproblem: all is well");
    std::fs::write(sandbox.plugins_dir().join(&name), "not a library").expect("file");
    for command in ["check", "list"] {
        let output = sandbox.run(&[command]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout
                .lines()
                .any(|line| line.starts_with("problem: all is well")),
            "{command}: {stdout}"
        );
        assert!(
            stdout.contains("notes\\nproblem: all is well"),
            "{command}: {stdout}"
        );
    }
}

/// A file name the host takes for a plugin library, with `stem` in it.
fn plugin_named(stem: &str) -> String {
    format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A config with `trust` (and an empty trust file) and `more` of `[host]`.
fn trusting(sandbox: &Sandbox, trust: &str, more: &str) -> std::path::PathBuf {
    let trusted = sandbox.root().join("trusted.toml");
    std::fs::write(&trusted, "").expect("trust file");
    sandbox.write_config(&format!(
        "[host]\ntrust = {trust:?}\ntrust_file = {:?}\n{more}",
        trusted.display().to_string()
    ))
}

/// What an operator reads of a plugin (`list`, `inspect`, their errors) holds no terminal
/// escape and no carriage return the plugin wrote: its free text, a refused method name
/// and the stderr of a constructor that crashed the scanner are all shown as escapes, and
/// no line a plugin forged ("sandbox needs: nothing") starts a line of the output.
#[cfg(unix)]
#[test]
fn what_a_plugin_writes_cannot_rewrite_the_operators_terminal() {
    const PROBE: &str = "tests/c/probe.c";
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    for (case, file) in [
        ("6", "libc_escapes.so"),
        ("7", "libc_escaped_method.so"),
        ("8", "libc_escaping_constructor.so"),
    ] {
        sandbox.add_c_plugin(PROBE, &[&format!("-DPROBE_CASE={case}")], file);
    }
    let list = stdout_json(&sandbox.run(&["list", "--json"]));
    assert_eq!(
        listed(&list, "libc_escapes.so")["error"],
        serde_json::Value::Null
    );
    for (file, kind) in [
        ("libc_escaped_method.so", "c_plugin"),
        ("libc_escaping_constructor.so", "scanner_crashed"),
    ] {
        assert_eq!(listed(&list, file)["error"]["kind"], kind, "{list:#}");
    }
    let path = |file: &str| sandbox.plugins_dir().join(file).display().to_string();
    let commands = [
        vec!["list".to_owned()],
        vec!["inspect".to_owned(), "c-escapes".to_owned()],
        vec!["inspect".to_owned(), path("libc_escaped_method.so")],
        vec!["inspect".to_owned(), path("libc_escaping_constructor.so")],
    ];
    for args in commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = sandbox.run(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !text.contains(['\u{1b}', '\r', '\u{7}']),
            "{args:?} wrote a control character: {text:?}"
        );
        assert!(
            text.contains("\\u{1b}"),
            "{args:?} shows the escape: {text}"
        );
        assert!(
            !text
                .lines()
                .any(|line| line.trim_start().starts_with("sandbox needs: nothing")),
            "{args:?} let a plugin forge a line: {text}"
        );
    }
}
