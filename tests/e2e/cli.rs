//! The binary's exit codes and messages for bad requests, bad configs and bad directories.

use plugin_host_tests::{binary, Sandbox};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn calling_an_unknown_component_exits_1_and_says_how_to_find_one() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let output = sandbox.run(&["call", "order-book", "depth"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no component named `order-book`"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("plugin-host list"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_request_that_is_not_json_is_a_usage_error() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let output = sandbox.run(&["call", "market-data", "quote", "{symbol: AAPL"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not valid JSON"),
        "{}",
        stderr(&output)
    );
}

/// A request too large or awkward for the command line comes from standard input (`-`)
/// or a file (`@FILE`); a file that is not there is named.
#[test]
fn a_request_comes_from_standard_input_or_a_file() {
    use std::io::Write as _;
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let mut child = sandbox
        .host()
        .args(["call", "market-data", "quote", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("plugin-host");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"symbol": "AAPL"}"#)
        .expect("request");
    let output = child.wait_with_output().expect("call");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("AAPL"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    let file = sandbox.root().join("request.json");
    std::fs::write(&file, r#"{"symbol": "NOPE"}"#).expect("request file");
    let argument = format!("@{}", file.display());
    let output = sandbox.run(&["call", "market-data", "quote", &argument]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("NOPE"), "{}", stderr(&output));

    let output = sandbox.run(&["call", "market-data", "quote", "@/nowhere/request.json"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot read the request from /nowhere/request.json"),
        "{}",
        stderr(&output)
    );
}

/// `status` pointed at a server that is not a plugin-host's admin API (a 404 in another
/// shape) says so, and asks whether a host listens there.
#[test]
fn status_against_another_server_says_it_is_not_the_admin_api() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("address").to_string();
    let server = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found",
            );
        }
    });
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["status", "--addr", &addr]);
    server.join().expect("server");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("answered 404: not the admin API's answer"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_method_error_from_the_plugin_reaches_the_caller_with_its_context() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let output = sandbox.run(&["call", "market-data", "quote", r#"{"symbol":"NOPE"}"#]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("component `market-data` method `quote` failed"),
        "{text}"
    );
    assert!(text.contains("unknown symbol `NOPE`"), "{text}");
}

#[test]
fn a_missing_plugins_directory_is_a_clear_runtime_error() {
    let sandbox = Sandbox::new();
    let missing = sandbox.root().join("nowhere");
    let output = std::process::Command::new(binary())
        .arg("--plugins-dir")
        .arg(&missing)
        .arg("--cache-dir")
        .arg(sandbox.cache_dir())
        .arg("list")
        .output()
        .expect("list");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot read plugins directory"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_invalid_config_exits_2_naming_the_key() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let config = sandbox.write_config("[host]\nplugins_dirr = \"x\"\n");
    let output = sandbox
        .host()
        .arg("--config")
        .arg(&config)
        .arg("list")
        .output()
        .expect("list");
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("plugins_dirr"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn list_exits_0_even_when_every_plugin_is_broken() {
    let sandbox = Sandbox::new();
    sandbox.write_plugin_file("libbroken.so", b"");
    let output = sandbox.run(&["list"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("libbroken.so"));
}

#[test]
fn help_lists_every_command() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["--help"]);
    let text = String::from_utf8_lossy(&output.stdout);
    // Each command has a line of its own in the Commands section: its name, then its
    // one-line description (the about text above may mention any of these words).
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for command in ["list", "inspect", "call", "check", "run", "status"] {
        assert!(
            commands.contains(&command),
            "--help lacks {command}: {text}"
        );
    }
}

#[test]
fn json_logs_carry_the_plugin_and_component_of_plugin_records() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let output = sandbox
        .host()
        .args(["--log-format", "json", "call", "market-data", "symbols"])
        .env("RUST_LOG", "info")
        .output()
        .expect("call");
    assert!(output.status.success(), "{}", stderr(&output));
    let records: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    let from_plugin = records
        .iter()
        .find(|r| r["target"] == "plugin")
        .unwrap_or_else(|| panic!("no plugin record in {records:#?}"));
    assert_eq!(from_plugin["fields"]["plugin"], "market-data");
    assert_eq!(from_plugin["fields"]["component"], "market-data");
    assert!(from_plugin["fields"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("market data feed started")));
}

#[test]
fn rust_log_filters_plugin_records_by_the_host_filter() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let quiet = sandbox
        .host()
        .args(["call", "market-data", "symbols"])
        .env("RUST_LOG", "info,plugin=warn")
        .output()
        .expect("call");
    assert!(
        !stderr(&quiet).contains("market data feed started"),
        "{}",
        stderr(&quiet)
    );
    let loud = sandbox
        .host()
        .args(["call", "market-data", "symbols"])
        .env("RUST_LOG", "warn,plugin=info")
        .output()
        .expect("call");
    assert!(
        stderr(&loud).contains("market data feed started"),
        "{}",
        stderr(&loud)
    );
}

#[test]
fn command_line_flags_beat_the_environment_which_beats_the_file() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let config = sandbox.write_config("[host]\nplugins_dir = \"/from/the/file\"\n");
    // The environment overrides the file; --plugins-dir (set by the sandbox) overrides both.
    let output = sandbox
        .host()
        .arg("--config")
        .arg(&config)
        .arg("list")
        .env("PLUGIN_HOST_HOST_PLUGINS_DIR", "/from/the/environment")
        .output()
        .expect("list");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("market-data"));

    // Without the flag the environment wins over the file, and names its directory.
    let output = std::process::Command::new(binary())
        .arg("--config")
        .arg(&config)
        .arg("--cache-dir")
        .arg(sandbox.cache_dir())
        .arg("list")
        .env("PLUGIN_HOST_HOST_PLUGINS_DIR", "/from/the/environment")
        .output()
        .expect("list");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("/from/the/environment"),
        "{}",
        stderr(&output)
    );
}

/// The clauses of an error line (split where a cause or a hint begins) that appear twice.
fn repeated_clauses(line: &str) -> Vec<String> {
    let clauses: Vec<&str> = line
        .split([':', ';'])
        .map(str::trim)
        .filter(|clause| clause.len() > 8)
        .collect();
    let mut repeated: Vec<String> = clauses
        .iter()
        .enumerate()
        .filter(|(index, clause)| clauses[..*index].contains(clause))
        .map(|(_, clause)| (*clause).to_owned())
        .collect();
    repeated.dedup();
    repeated
}

#[test]
fn every_error_says_each_cause_once() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let missing = sandbox.root().join("nowhere");
    let missing = missing.to_str().expect("utf-8 path");
    let bad_config = sandbox.write_config("[host]\nmemory_limit = \"lots\"\n");
    let bad_config = bad_config.to_str().expect("utf-8 path");
    // A port nothing listens on: bound, then let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .to_string();
    let cases: [&[&str]; 8] = [
        &["list", "--plugins-dir", missing],
        &["status", "--addr", &closed],
        &["--config", missing, "list"],
        &["--config", bad_config, "list"],
        &["call", "nothing", "ping"],
        &["call", "market-data", "quote", "{symbol"],
        &["inspect", missing],
        &["trust", "rm", "unknown.so"],
    ];
    for args in cases {
        let output = sandbox.run(args);
        let text = stderr(&output);
        assert!(!output.status.success(), "{args:?} succeeded: {text}");
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: one error line expected: {text}");
        assert_eq!(
            repeated_clauses(errors[0]),
            Vec::<String>::new(),
            "{args:?}: a cause said twice: {text}"
        );
    }
}

#[test]
fn a_repeated_cause_is_caught_by_the_check_above() {
    let line = "error: cannot read x: No such file or directory (os error 2); create it: No such file or directory (os error 2)";
    assert_eq!(
        repeated_clauses(line),
        vec!["No such file or directory (os error 2)".to_owned()]
    );
}

#[test]
fn two_copies_of_one_plugin_are_a_problem_naming_both_files() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let original = sandbox.add_plugin("market-data");
    let copy = sandbox.plugins_dir().join("market-data.so.old.so");
    std::fs::copy(&original, &copy).expect("copying the plugin");
    let output = sandbox.run(&["check"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let problem = text
        .lines()
        .find(|line| line.contains("provided by both"))
        .unwrap_or_else(|| panic!("no duplicate named: {text}"));
    // Each file named, and which of them serves (the first by name, registered first),
    // by `check` and by `list`, which loads neither.
    let list = sandbox.run(&["list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    for (file, role) in [(&original, "served"), (&copy, "not served")] {
        let named = format!("{}) ({role})", file.display());
        assert!(problem.contains(&named), "{named} not in: {problem}");
        let named = format!("{} ({role})", file.display());
        assert!(listed.contains(&named), "{named} not in: {listed}");
    }
    let call = sandbox.run(&["call", "market-data", "symbols"]);
    assert_eq!(call.status.code(), Some(0), "{}", stderr(&call));
}

/// `plugin-host list | head -1`, `man | less` quit early: the command ends quietly with
/// success, as `cat` does, instead of panicking with a backtrace.
#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["man"],
        &["completions", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output = sandbox
            .host()
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("plugin-host");
        let stderr = stderr(&output);
        assert!(
            output.status.success() && !stderr.contains("panicked"),
            "{args:?}: {}\n{stderr}",
            output.status
        );
    }
}

/// A plugin file's name is the operator's, but may come from anywhere (an archive, a
/// copy tool): a line break in it cannot start a row of `list` of its own.
#[cfg(unix)]
#[test]
fn a_file_name_with_a_line_break_is_listed_on_one_row() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let copied = sandbox.add_plugin("historical-data");
    let renamed = sandbox
        .plugins_dir()
        .join("historical\n  libforged.so       forged             9.9.9    ok.so");
    std::fs::rename(&copied, &renamed).expect("rename");
    let output = sandbox.run(&["list"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        !stdout
            .lines()
            .any(|line| line.trim_start().starts_with("libforged.so")),
        "a file's name made a row of its own: {stdout}"
    );
    assert!(stdout.contains(r"historical\n  libforged.so"), "{stdout}");
}

/// A second host started on the first one's admin address is told what is in the way
/// and how to choose another.
#[test]
fn a_taken_admin_address_is_named_with_the_way_out() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let first =
        plugin_host_tests::RunningHost::start(&sandbox, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let output = sandbox
        .host()
        .arg("run")
        .env("PLUGIN_HOST_ADMIN_LISTEN", first.addr.to_string())
        .output()
        .expect("second host");
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("cannot listen on {}", first.addr))
            && said.contains("plugin-host already running")
            && said.contains("[admin] listen"),
        "{said}"
    );
    assert_eq!(first.get("/healthz").0, 200, "the first host is unharmed");
}

/// A memory limit no component fits under (the wrong unit, say: "512KiB" for "512MiB")
/// is a problem `check` names with the figures, not "no problems found".
#[test]
fn check_names_a_memory_limit_below_the_hosts_own_rss() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let config = sandbox.write_config("[memory]\nlimit = \"512KiB\"\n");
    let output = sandbox.run(&["--config", config.to_str().expect("utf-8 path"), "check"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("problem: the memory limit, 512 KiB ([memory] limit), is at or below the host's own RSS")
            && stdout.contains("raise [memory] limit"),
        "{stdout}"
    );
}

/// `plugin-host call ... | jq`: what a plugin prints on its standard output in process
/// goes to standard error, so the command's standard output is the answer alone.
#[test]
fn what_a_plugin_prints_in_process_stays_out_of_calls_output() {
    let sandbox = Sandbox::with_plugins(&["fixture-hostile"]);
    let output = sandbox.run(&["call", "hostile", "print"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "\"printed\"\n");
    assert!(
        stderr(&output).contains("hostile prints on its standard output"),
        "{}",
        stderr(&output)
    );
}

/// `inspect DIR` says it is a directory and how to list one, rather than "neither a file
/// nor a plugin".
#[test]
fn inspect_of_a_directory_says_so_and_how_to_list_it() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let dir = sandbox.plugins_dir();
    let output = sandbox.run(&["inspect", &dir.display().to_string()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains("is a directory") && said.contains("plugin-host list --plugins-dir"),
        "{said}"
    );
}

/// A file named in bytes that are not UTF-8 (allowed on Unix) gets its verdict like any
/// other: from the scanner, into the registry cache, in `list --json`; it never fails the
/// scan of the directory, its cache, or a JSON view.
#[cfg(unix)]
#[test]
fn a_file_named_in_bytes_that_are_not_utf8_gets_its_verdict_like_any_other() {
    use std::os::unix::ffi::OsStrExt as _;
    let sandbox = Sandbox::new();
    let dir = sandbox.plugins_dir();
    let name = |bytes: &[u8]| dir.join(std::ffi::OsStr::from_bytes(bytes));
    std::fs::copy(
        plugin_host_tests::library("market-data"),
        name(b"lib\xff\xfe.so"),
    )
    .expect("the plugin");
    std::fs::write(name(b"notes\xff.so"), "not a library\n").expect("a text file");
    let first = sandbox.run(&["list"]);
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains("(2 scanned, 0 from cache)") && text.contains("market-data"),
        "{text}{}",
        stderr(&first)
    );
    assert!(
        text.contains("not a shared library (it is a text file)"),
        "{text}"
    );
    let again = sandbox.run(&["list"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("(0 scanned, 2 from cache)"),
        "{text}{}",
        stderr(&again)
    );
    let json = sandbox.run(&["list", "--json"]);
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let listed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(
        listed["plugins"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
}
