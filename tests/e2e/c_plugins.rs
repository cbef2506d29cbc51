//! Plugins written in C and C++ against `plugin-api/include/plugin_host.h`, compiled by
//! the system compiler and served by the real binary like Rust plugins: listed without
//! being loaded, called in process and isolated, sandboxed, streaming, cancelled, with
//! the host's config, logs, metrics, locks and dependencies; a crash or a leak ends only
//! its worker; every malformed plugin is refused with one clear error.

use plugin_host_tests::{listed, stdout_json, success_stdout, wait_for, RunningHost, Sandbox};

const PROBE: &str = "tests/c/probe.c";
const PROBE_FILE: &str = "libc_probe.so";
const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";
const ISOLATED: &str = "[host]\nisolation = \"process\"\n";

/// A sandbox with the C probe and market-data (a Rust plugin beside it).
fn with_probe() -> Sandbox {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    sandbox.add_c_plugin(PROBE, &[], PROBE_FILE);
    sandbox
}

#[test]
fn a_c_plugin_is_listed_as_c_inspected_and_called_beside_a_rust_one() {
    let sandbox = with_probe();
    let list = stdout_json(&sandbox.run(&["list", "--json"]));
    let probe = listed(&list, PROBE_FILE);
    assert_eq!(probe["plugin"]["name"], "c-probe", "{probe:#}");
    assert_eq!(probe["plugin"]["abi"], "c", "{probe:#}");
    assert_eq!(probe["plugin"]["api_version"], "C ABI 1", "{probe:#}");
    let rust = listed(&list, &plugin_host_tests::library_file_name("market-data"));
    assert!(probe["path"].is_string(), "{probe:#}");
    assert_eq!(rust["plugin"]["abi"], "rust", "{rust:#}");

    let inspect = success_stdout(&sandbox.run(&["inspect", "c-probe"]));
    assert!(inspect.contains("C (plugin_host.h)"), "{inspect}");
    assert!(inspect.contains("answers its input"), "{inspect}");

    let echo = stdout_json(&sandbox.run(&["call", "c-probe", "echo", r#"{"bid":101.5}"#]));
    assert_eq!(echo, serde_json::json!({ "bid": 101.5 }));
    let failed = sandbox.run(&["call", "c-probe", "fail", "null"]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("no quote for NOPE"), "{stderr}");
    let quote =
        stdout_json(&sandbox.run(&["call", "market-data", "quote", r#"{"symbol":"AAPL"}"#]));
    assert_eq!(quote["symbol"], "AAPL");
}

/// The host services a C component uses, through the admin API, in process or isolated.
fn host_services(mode: &str) {
    let sandbox = with_probe();
    let config = format!(
        "{ADMIN}{mode}[components.c-probe]\ntimeout = \"5s\"\n[components.c-probe.config]\ndesk = \"rates\"\n\
         [components.c-user]\ntimeout = \"4s\"\n"
    );
    let host = RunningHost::start(&sandbox, &config);
    let (status, plugins) = host.get("/plugins");
    assert!(
        status == 200 && plugins.contains(r#""abi":"c""#),
        "{mode}: {plugins}"
    );
    let (status, config) = host.call("c-probe", "config", "null");
    assert_eq!(status, 200, "{mode}: {config:?}");
    assert_eq!(config.expect("config")["config"]["desk"], "rates", "{mode}");

    let (status, relayed) = host.call("c-user", "relay", r#"{"via":"c-user"}"#);
    assert_eq!(status, 200, "{mode}: {relayed:?}");
    assert_eq!(
        relayed.expect("relayed")["relayed"]["via"],
        "c-user",
        "{mode}"
    );

    // A dependency call carries its caller's deadline (4 s, not the callee's own 5 s).
    let (status, relayed) = host.call("c-user", "relay_deadline", "null");
    let left = relayed.expect("relayed")["relayed"].as_i64().expect("ms");
    assert!(
        status == 200 && (1..=4000).contains(&left),
        "{mode}: {left} ms left of 4 s"
    );

    let (status, error) = host.call("c-probe", "fail", "null");
    let error = error.expect_err("failed");
    assert_eq!(
        (status, error.kind.as_str()),
        (404, "not_found"),
        "{mode}: {error}"
    );
    assert!(
        error.message.contains("no quote for NOPE"),
        "{mode}: {error}"
    );
    let (status, error) = host.call("c-probe", "nope", "null");
    assert_eq!(status, 404, "{mode}: {error:?}");

    // A host service misused answers an error, and the lock is not left held.
    let (status, error) = host.call("c-probe", "call_undeclared", "null");
    let error = error.expect_err("no such dependency");
    assert_eq!(
        (status, error.kind.as_str()),
        (404, "not_found"),
        "{mode}: {error}"
    );
    assert!(
        error.message.contains("no dependency `nope`"),
        "{mode}: {error}"
    );
    let (status, error) = host.call("c-probe", "lock_without_token", "null");
    let error = error.expect_err("no token");
    assert!(
        error.message.contains("`token` is NULL"),
        "{mode}: {status} {error}"
    );
    let (status, locked) = host.call("c-probe", "lock", "null");
    assert_eq!(status, 200, "{mode}: {locked:?}");
    assert_eq!(locked.expect("locked"), "locked and freed", "{mode}");

    let (status, left) = host.call("c-probe", "deadline", "null");
    let left = left.expect("deadline").as_i64().expect("ms");
    assert!(
        status == 200 && (1..=5000).contains(&left),
        "{mode}: {left} ms left of 5 s"
    );

    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = host
        .request("POST", "/components/c-probe/call/trace")
        .set("traceparent", traceparent)
        .send_string("null")
        .expect("a traced call")
        .into_string()
        .expect("body");
    assert!(
        traced.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{mode}: {traced}"
    );

    for _ in 0..3 {
        assert_eq!(host.call("c-probe", "count", "null").0, 200);
    }
    assert_eq!(
        host.metric("plugins_c_probe_calls_total", "c-probe"),
        Some(3.0),
        "{mode}"
    );
    // Its log record, made inside a traced call, carries the call's trace.
    host.request("POST", "/components/c-probe/call/log")
        .set("traceparent", traceparent)
        .send_string("null")
        .expect("a traced call");
    let log = wait_for("the C plugin's log line in the host's log", || {
        let log = std::fs::read_to_string(sandbox.root().join("run.log")).unwrap_or_default();
        log.contains("hello from c").then_some(log)
    });
    let line = log
        .lines()
        .find(|line| line.contains("hello from c"))
        .expect("line");
    assert!(
        line.contains("WARN")
            && line.contains("c-probe")
            && line.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
        "{mode}: {line}"
    );
    host.stop();
}

#[test]
fn a_c_component_uses_config_dependencies_errors_locks_deadline_trace_metrics_and_logs_in_process()
{
    host_services("");
}

#[test]
fn a_c_component_uses_config_dependencies_errors_locks_deadline_trace_metrics_and_logs_isolated() {
    host_services(ISOLATED);
}

/// A C stream over HTTP (JSON lines), and a call cancelled by its timeout that the
/// plugin sees and stops, in process or isolated.
fn streams_and_cancellation(mode: &str) {
    let sandbox = with_probe();
    let config = format!("{ADMIN}{mode}[timeouts.operations]\nsleep = \"200ms\"\n");
    let host = RunningHost::start(&sandbox, &config);
    let lines = host
        .request("POST", "/components/c-probe/stream/ticks")
        .send_string(r#"{"n":4}"#)
        .expect("a stream")
        .into_string()
        .expect("body");
    let items: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(items.len(), 4, "{mode}: {lines}");
    assert_eq!(items[3]["n"], 3, "{mode}: {lines}");

    let (status, answer) = host.call("c-probe", "sleep", r#"{"ms":60000}"#);
    assert_eq!(status, 504, "{mode}: {answer:?}");
    wait_for("the C plugin to see its call cancelled", || {
        (host.metric("plugins_c_probe_cancelled_total", "c-probe") == Some(1.0)).then_some(())
    });
    host.stop();
}

#[test]
fn a_c_plugin_streams_and_sees_its_call_cancelled_in_process() {
    streams_and_cancellation("");
}

#[test]
fn a_c_plugin_streams_and_sees_its_call_cancelled_isolated() {
    streams_and_cancellation(ISOLATED);
}

#[test]
fn an_isolated_c_plugin_that_crashes_or_leaks_ends_only_its_worker() {
    let sandbox = with_probe();
    let config = format!("{ADMIN}{ISOLATED}[components.c-probe]\nmemory_limit = \"96MiB\"\n");
    let host = RunningHost::start(&sandbox, &config);
    let (status, error) = host.call("c-probe", "crash", "null");
    let error = error.expect_err("crashed");
    assert_eq!(
        (status, error.kind.as_str()),
        (502, "worker_died"),
        "{error}"
    );
    let (status, echo) = host.call("c-probe", "echo", "[1]");
    assert_eq!(status, 200, "a new worker answers: {echo:?}");

    let (status, error) = host.call("c-probe", "leak", r#"{"mib":400}"#);
    let error = error.expect_err("past its limit");
    assert!(error.message.contains("memory_limit"), "{status}: {error}");
    let (status, echo) = host.call("c-probe", "echo", "[2]");
    assert_eq!(status, 200, "a new worker answers: {echo:?}");
    let (status, quote) = host.call("market-data", "quote", r#"{"symbol":"AAPL"}"#);
    assert_eq!(status, 200, "the host serves on: {quote:?}");
    host.stop();
}

#[test]
fn a_c_plugin_that_crashes_in_process_takes_the_process_as_documented() {
    let sandbox = with_probe();
    let crashed = sandbox.run(&["call", "c-probe", "crash", "null"]);
    assert!(!crashed.status.success());
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(crashed.status.signal(), Some(11), "SIGSEGV: {crashed:?}");
    }
}

/// A sandboxed, isolated C probe, its host run as `user` (this test's when `None`):
/// the granted file reads, the other (readable by anyone, so only the sandbox stops it)
/// does not.
#[cfg(target_os = "linux")]
fn sandboxed_reads(user: Option<u32>) {
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    let sandbox = with_probe();
    let root = sandbox.root();
    let secret = root.join("secret.txt");
    std::fs::write(&secret, "s3cret").expect("secret");
    let granted = root.join("granted.txt");
    std::fs::write(&granted, "ok").expect("granted");
    let config = format!(
        "{ADMIN}{ISOLATED}[components.c-probe]\nsandbox = true\n\
         [components.c-probe.sandbox_grants]\nread = [{:?}]\n",
        granted.display().to_string()
    );
    if let Some(uid) = user {
        // The operator's files are the unprivileged host's own.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir_all(sandbox.cache_dir()).expect("cache dir");
        let config_file = sandbox.write_config(&config);
        for path in [
            root.to_path_buf(),
            sandbox.plugins_dir(),
            sandbox.cache_dir(),
            sandbox.plugins_dir().join(PROBE_FILE),
            config_file,
        ] {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid)).expect("chown");
        }
    }
    for file in [&secret, &granted] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let host = RunningHost::start_with(&sandbox, &config, |command| {
        if let Some(uid) = user {
            command.uid(uid).gid(uid); // std drops supplementary groups as root
        }
    });
    if let Some(uid) = user {
        let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid()))
            .expect("the host's status");
        let line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
        assert!(
            line.split_whitespace().nth(1) == Some(&uid.to_string()),
            "{line}"
        );
    }
    let read = |path: &std::path::Path| {
        let body = serde_json::json!({ "path": path }).to_string();
        let (status, answer) = host.call("c-probe", "read", &body);
        assert_eq!(status, 200, "{user:?}: {answer:?}");
        answer.expect("answer")
    };
    assert_eq!(read(&granted), "read", "{user:?}");
    assert_eq!(read(&secret), "denied", "{user:?}");
    host.stop();
}

#[cfg(target_os = "linux")]
#[test]
fn a_sandboxed_c_plugin_reads_only_what_it_is_granted() {
    sandboxed_reads(None);
}

#[cfg(target_os = "linux")]
#[test]
fn a_sandboxed_c_plugin_of_an_unprivileged_host_reads_only_what_it_is_granted() {
    if plugin_host_tests::running_as_root() {
        sandboxed_reads(Some(plugin_host_tests::UNPRIVILEGED_UID));
    } else {
        println!("not root: the test above ran the host unprivileged already");
    }
}

#[test]
fn every_malformed_c_plugin_is_refused_with_one_clear_error() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let cases = [
        ("1", "c_plugin", "returned NULL"),
        ("2", "c_abi_too_new", "C ABI 2"),
        ("3", "c_plugin", "description is not readable"),
        ("4", "c_plugin", "`Bad Name`"),
        ("5", "c_plugin", "no call function"),
    ];
    for (case, _, _) in cases {
        let file = format!("libc_bad{case}.so");
        sandbox.add_c_plugin(PROBE, &[&format!("-DPROBE_CASE={case}")], &file);
    }
    let list = stdout_json(&sandbox.run(&["list", "--json"]));
    for (case, kind, needle) in cases {
        let file = format!("libc_bad{case}.so");
        let error = &listed(&list, &file)["error"];
        assert_eq!(error["kind"], kind, "case {case}: {error:#}");
        let message = error["message"].as_str().expect("message");
        assert!(
            message.contains(&file) && message.contains(needle) && !message.contains('\n'),
            "case {case}: {message}"
        );
    }
    let too_new = listed(&list, "libc_bad2.so")["error"]["message"].to_string();
    assert!(
        too_new.contains("C ABI 1"),
        "names both versions: {too_new}"
    );
    let quote =
        stdout_json(&sandbox.run(&["call", "market-data", "quote", r#"{"symbol":"AAPL"}"#]));
    assert_eq!(quote["symbol"], "AAPL");
}

#[test]
fn the_example_c_and_cpp_plugins_answer_in_process_and_isolated() {
    for mode in ["", ISOLATED] {
        let sandbox = Sandbox::new();
        sandbox.add_c_plugin("plugins/c-spread/spread.c", &[], "libspread.so");
        sandbox.add_c_plugin("plugins/cpp-book/book.cpp", &[], "libbook.so");
        let config = format!("{ADMIN}{mode}[components.book-imbalance.config]\ndepth = 1\n");
        let host = RunningHost::start(&sandbox, &config);
        let (status, spread) = host.call("spread", "quote", r#"{"bid":101.25,"ask":101.31}"#);
        let spread = spread.expect("a spread");
        assert_eq!(status, 200);
        assert!(
            (spread["mid"].as_f64().expect("mid") - 101.28).abs() < 1e-9,
            "{spread}"
        );
        let (status, error) = host.call("spread", "quote", r#"{"bid":101.25}"#);
        assert_eq!(
            (status, error.expect_err("bad").kind.as_str()),
            (400, "bad_input")
        );
        let ladder = host
            .request("POST", "/components/spread/stream/ladder")
            .send_string(r#"{"mid":100,"step":0.5,"levels":3}"#)
            .expect("a stream")
            .into_string()
            .expect("body");
        assert_eq!(ladder.lines().count(), 3, "{mode}: {ladder}");

        // The configured depth (1) counts the best level of each side only.
        let book = r#"{"bids":[[101.1,500],[101.2,300]],"asks":[[101.3,100]]}"#;
        let (status, imbalance) = host.call("book-imbalance", "imbalance", book);
        let imbalance = imbalance.expect("an imbalance");
        assert_eq!(status, 200, "{mode}");
        assert_eq!(imbalance["bid_size"], 300.0, "{mode}: {imbalance}");
        assert_eq!(imbalance["imbalance"], 0.5, "{mode}: {imbalance}");
        let (status, error) = host.call("book-imbalance", "imbalance", r#"{"bids":3}"#);
        let error = error.expect_err("bad input");
        assert_eq!(status, 400, "{mode}: {error}");
        assert!(error.message.contains("expected '['"), "{mode}: {error}");
        host.stop();
    }
}

#[test]
fn the_hosts_mirrors_of_the_c_structs_match_the_c_compilers_layout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let program = dir.path().join("layout");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let compiled = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-I")
        .arg(root.join("plugin-api/include"))
        .arg("-o")
        .arg(&program)
        .arg(root.join("tests/c/layout.c"))
        .status()
        .expect("running the C compiler");
    assert!(compiled.success());
    let output = std::process::Command::new(&program)
        .output()
        .expect("layout");
    let c: Vec<(String, usize, usize)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            (
                words[0].to_owned(),
                words[1].parse().expect("size"),
                words[2].parse().expect("offset"),
            )
        })
        .collect();
    let host: Vec<(String, usize, usize)> = plugin_host::fuzzing::c_layout()
        .into_iter()
        .map(|(name, size, last)| (name.to_owned(), size, last))
        .collect();
    assert_eq!(
        c, host,
        "(struct, size, offset of its last field): C, then the host"
    );
}

#[test]
fn a_c_plugin_built_against_the_first_c_abi_header_loads_in_process_and_isolated() {
    // tests/compat/c-abi-1 holds plugin_host.h as C ABI 1 shipped, frozen: a plugin built
    // against it keeps loading whatever the header in plugin-api/include becomes.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let frozen = format!("-I{}", root.join("compat/c-abi-1").display());
    for mode in ["", ISOLATED] {
        let sandbox = Sandbox::new();
        sandbox.add_c_plugin(PROBE, &[&frozen], "libc_probe_abi1.so");
        let host = RunningHost::start(&sandbox, &format!("{ADMIN}{mode}"));
        let (status, echo) = host.call("c-probe", "echo", r#"{"abi":1}"#);
        assert_eq!(status, 200, "{mode}: {echo:?}");
        let (status, relayed) = host.call("c-user", "relay", "[1]");
        assert_eq!(status, 200, "{mode}: {relayed:?}");
        host.stop();
    }
}

/// Whether process `pid` has a file named `file` mapped.
#[cfg(target_os = "linux")]
fn maps(pid: u32, file: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("maps")
        .contains(file)
}

#[cfg(target_os = "linux")]
#[test]
fn a_c_plugin_is_mapped_on_first_use_and_held_to_its_bulkhead() {
    let sandbox = with_probe();
    let config = format!(
        "{ADMIN}[components.c-probe]\nmax_concurrent_calls = 2\n\
         [timeouts.operations]\nsleep = \"5s\"\n"
    );
    let host = std::sync::Arc::new(RunningHost::start(&sandbox, &config));
    assert_eq!(host.component("c-probe").state, "registered");
    assert!(!maps(host.pid(), PROBE_FILE), "mapped before it was needed");
    assert_eq!(host.call("c-probe", "empty", "null").0, 200);
    assert!(maps(host.pid(), PROBE_FILE), "mapped once needed");

    let calls: Vec<_> = (0..6)
        .map(|_| {
            let host = std::sync::Arc::clone(&host);
            std::thread::spawn(move || host.call("c-probe", "sleep", r#"{"ms":1500}"#))
        })
        .collect();
    let statuses: Vec<u16> = calls
        .into_iter()
        .map(|call| call.join().expect("caller").0)
        .collect();
    let served = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert!(
        (1..=2).contains(&served) && served + refused == 6,
        "two at a time, the rest refused: {statuses:?}"
    );
}

#[test]
fn an_isolated_c_plugin_is_upgraded_live_without_a_failed_call() {
    let sandbox = with_probe();
    let host = std::sync::Arc::new(RunningHost::start(&sandbox, &format!("{ADMIN}{ISOLATED}")));
    let (_, version) = host.call("c-probe", "version", "null");
    assert_eq!(version.expect("version"), "0.2.0");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (host, stop) = (std::sync::Arc::clone(&host), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                answers.push(host.call("c-probe", "echo", "[1]").0);
            }
            answers
        })
    };
    // A new build arrives: written aside, renamed over the old file.
    let built =
        plugin_host_tests::c_plugin(PROBE, &[r#"-DPROBE_VERSION="0.3.0""#], "libc_probe_v3.so");
    let aside = sandbox.root().join("new-build.so");
    std::fs::copy(&built, &aside).expect("copy");
    std::fs::rename(&aside, sandbox.plugins_dir().join(PROBE_FILE)).expect("rename");
    let (status, body) = host.post("/plugins/rescan", "");
    assert_eq!(status, 200, "{body}");
    wait_for("the new build to answer", || {
        let (_, version) = host.call("c-probe", "version", "null");
        (version.ok()? == "0.3.0").then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = traffic.join().expect("traffic");
    assert!(answers.len() > 5, "only {} calls", answers.len());
    assert!(
        answers.iter().all(|s| *s == 200),
        "failed calls: {answers:?}"
    );
}
