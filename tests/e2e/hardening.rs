//! Workers the host always knows and always kills: a worker's death comes from the kernel
//! even when a child it forked holds its socket; its descendants go with it, and with a
//! host killed by SIGKILL; a worker that breaks the protocol is killed at once; a reply
//! past `[limits] max_reply` fails its call and nothing else; plugin code using standard
//! input and output cannot reach the worker's link.

use std::time::Duration;

use plugin_host::{CallError, FaultKind};
use plugin_host_tests::{
    alive, descendants, host, runtime, wait_for, wait_for_async, RunningHost, Sandbox,
};

const ROGUE: &str = "[components.rogue]\nisolation = \"process\"\ntimeout = \"60s\"\n";

async fn pid(host: &plugin_host::Host) -> u32 {
    let pid: u32 = host.call_json("rogue", "pid", &()).await.expect("pid");
    pid
}

#[test]
fn a_worker_that_aborts_with_a_forked_child_holding_its_socket_fails_its_call_at_once() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
        let host = host(&sandbox, ROGUE).await;
        let worker = pid(&host).await;
        let pid_file = sandbox.root().join("forked.pid");
        let request = serde_json::json!({ "pid_file": pid_file });
        // Within the 60 s call timeout: the kernel says the worker died, whatever its
        // child still holds open.
        let err = host
            .call_json::<_, serde_json::Value>("rogue", "fork_then_abort", &request)
            .await
            .expect_err("the worker aborted");
        let CallError::WorkerFailed { fault, .. } = &err else {
            panic!("expected worker_died, got {err}");
        };
        assert_eq!(fault.kind, FaultKind::Died, "{err}");
        assert!(err.to_string().contains("SIGABRT"), "{err}");
        let forked: u32 = std::fs::read_to_string(&pid_file)
            .expect("the child's pid")
            .trim()
            .parse()
            .expect("a pid");
        wait_for("the forked child to go with its worker", || {
            (!alive(forked)).then_some(())
        });
        assert!(!alive(worker));
        assert_ne!(pid(&host).await, worker, "the next call gets a new worker");
        host.shutdown().await;
    });
}

#[test]
fn a_worker_writing_garbage_on_its_socket_is_killed_for_it_and_the_next_call_works() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
        let host = host(&sandbox, ROGUE).await;
        let worker = pid(&host).await;
        let err = host
            .call_json::<_, serde_json::Value>("rogue", "garbage", &())
            .await
            .expect_err("the worker broke the protocol");
        let CallError::WorkerFailed { fault, .. } = &err else {
            panic!("expected worker_protocol, got {err}");
        };
        assert_eq!(fault.kind, FaultKind::Protocol, "{err}");
        assert_eq!(err.kind(), "worker_protocol");
        assert!(err.to_string().contains("broke the protocol"), "{err}");
        wait_for("the worker to be gone", || (!alive(worker)).then_some(()));
        assert_ne!(pid(&host).await, worker, "the next call gets a new worker");
        host.shutdown().await;
    });
}

#[test]
fn each_protocol_breach_ends_the_worker_at_once_and_names_what_was_wrong() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
        let host = host(&sandbox, ROGUE).await;
        let cases = [
            ("unasked", "does not wait for an answer"),
            ("undecodable", "unreadable frame"),
            ("hang_up", "closed its end of the socket and kept running"),
            ("region_missing", "came without its region"),
            ("region_unsealed", "not sealed against change"),
        ];
        for (how, named) in cases {
            let worker = pid(&host).await;
            let started = std::time::Instant::now();
            let err = host
                .call_json::<_, serde_json::Value>(
                    "rogue",
                    "breach",
                    &serde_json::json!({ "how": how }),
                )
                .await
                .expect_err("the worker broke the protocol");
            // At once: not after the call's 60 s timeout, nor the rogue's 60 s sleep.
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{how}: {:?}",
                started.elapsed()
            );
            assert_eq!(err.kind(), "worker_protocol", "{how}: {err}");
            let chain = plugin_host_tests::error_chain(&err);
            assert!(chain.contains(named), "{how}: {chain}");
            wait_for("the worker to be gone", || (!alive(worker)).then_some(()));
            assert_ne!(
                pid(&host).await,
                worker,
                "{how}: the next call gets a new worker"
            );
        }
        host.shutdown().await;
    });
}

#[test]
fn a_reply_past_max_reply_fails_its_call_and_the_worker_keeps_running() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
        // Isolated with the default 64 MiB; in process with a small limit of its own.
        let host = host(&sandbox, ROGUE).await;
        let worker = pid(&host).await;
        let too_large = serde_json::json!({ "bytes": (64 << 20) + 1 });
        let err = host
            .call_json::<_, serde_json::Value>("rogue", "reply", &too_large)
            .await
            .expect_err("too large");
        assert!(
            matches!(err, CallError::ReplyTooLarge { size, limit, .. } if size == (64 << 20) + 1 && limit == 64 << 20),
            "{err}"
        );
        assert_eq!(err.kind(), "reply_too_large");
        assert!(err.to_string().contains("max_reply"), "{err}");
        assert_eq!(pid(&host).await, worker, "the same worker serves on");
        let fits: String = host
            .call_json("rogue", "reply", &serde_json::json!({ "bytes": 1 << 20 }))
            .await
            .expect("a reply within the limit");
        assert_eq!(fits.len(), (1 << 20) - 2);
        host.shutdown().await;

        let in_process = plugin_host_tests::host(&sandbox, "[limits]\nmax_reply = \"1MiB\"\n").await;
        let err = in_process
            .call_json::<_, serde_json::Value>("rogue", "reply", &serde_json::json!({ "bytes": (1 << 20) + 1 }))
            .await
            .expect_err("too large in process too");
        assert!(matches!(err, CallError::ReplyTooLarge { .. }), "{err}");
        in_process.shutdown().await;
    });
}

#[test]
fn a_program_a_worker_started_ends_with_the_worker() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
        let host = host(&sandbox, ROGUE).await;
        let worker = pid(&host).await;
        let sleeper: u32 = host.call_json("rogue", "spawn", &()).await.expect("spawn");
        assert!(alive(sleeper));
        host.coordinator()
            .evict("rogue", false)
            .await
            .expect("evict");
        wait_for_async("the worker to retire", || async {
            (!alive(worker)).then_some(())
        })
        .await;
        wait_for("the program it started to go with it", || {
            (!alive(sleeper)).then_some(())
        });
        host.shutdown().await;
    });
}

#[test]
fn a_program_that_leaves_its_session_still_ends_with_its_worker() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
        let host = host(&sandbox, ROGUE).await;
        let worker = pid(&host).await;
        let daemon: u32 = host
            .call_json("rogue", "spawn_detached", &())
            .await
            .expect("spawn");
        assert!(alive(daemon));
        let status = host
            .coordinator()
            .components()
            .into_iter()
            .find(|c| c.name == "rogue")
            .expect("rogue");
        assert!(
            status
                .fence
                .as_deref()
                .is_some_and(|f| f.starts_with("PID namespace")),
            "{:?}",
            status.fence
        );
        host.coordinator()
            .evict("rogue", false)
            .await
            .expect("evict");
        wait_for("the worker to retire", || (!alive(worker)).then_some(()));
        wait_for("the program in a session of its own to go with it", || {
            (!alive(daemon)).then_some(())
        });
        host.shutdown().await;
    });
}

/// Runs of the host killed with SIGKILL: each must leave nothing behind.
const SIGKILL_RUNS: usize = 100;

#[test]
fn a_host_killed_with_sigkill_takes_its_workers_and_their_programs_with_it() {
    let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
    let config = format!("[admin]\nlisten = \"127.0.0.1:0\"\n{ROGUE}");
    let pid_of = |host: &RunningHost, method: &str| {
        let (status, pid) = host.call("rogue", method, "null");
        let pid = pid.unwrap_or_else(|err| panic!("{status}: {err:?}"));
        u32::try_from(pid.as_u64().expect("pid")).expect("pid")
    };
    for run in 0..SIGKILL_RUNS {
        let host = RunningHost::start(&sandbox, &config);
        let programs = [
            pid_of(&host, "pid"),
            pid_of(&host, "spawn"),
            pid_of(&host, "spawn_detached"),
        ];
        let left = descendants(host.pid());
        assert!(
            programs.iter().all(|p| left.contains(p)),
            "run {run}: {programs:?} among {left:?}"
        );
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &host.pid().to_string()])
            .status();
        wait_for(
            &format!("run {run}: everything the host started ({left:?}) to die with it"),
            || left.iter().all(|p| !alive(*p)).then_some(()),
        );
        drop(host);
    }
}

/// What the rogue gets for each attempt, in `host`.
async fn attempts(host: &plugin_host::Host, dir: &std::path::Path, port: u16) -> Vec<String> {
    let tries = [
        serde_json::json!({ "read": dir.join("secret").display().to_string() }),
        serde_json::json!({ "write": dir.join("granted/out.txt").display().to_string() }),
        serde_json::json!({ "write": dir.join("elsewhere.txt").display().to_string() }),
        serde_json::json!({ "connect": format!("127.0.0.1:{port}") }),
        serde_json::json!({ "exec": "/bin/true" }),
        serde_json::json!({ "read": "/etc/hostname" }),
    ];
    let mut answers = Vec::new();
    for attempt in tries {
        let answer: String = host.call_json("rogue", "try", &attempt).await.expect("try");
        answers.push(answer);
    }
    answers
}

#[test]
fn a_sandboxed_worker_is_refused_what_was_not_granted_and_allowed_what_was() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
        let dir = sandbox.root().join("files");
        std::fs::create_dir_all(dir.join("granted")).expect("dirs");
        std::fs::write(dir.join("secret"), "not yours").expect("secret");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let port = listener.local_addr().expect("addr").port();

        // Unsandboxed, everything works.
        let open = host(&sandbox, ROGUE).await;
        assert_eq!(attempts(&open, &dir, port).await, ["ok"; 6]);
        open.shutdown().await;

        // Sandboxed: granted writing beneath `granted`; the plugin declared /etc/hostname.
        let config = format!(
            "{ROGUE}sandbox = true\n[components.rogue.sandbox_grants]\nwrite = [{:?}]\n",
            dir.join("granted").display().to_string()
        );
        let fenced = host(&sandbox, &config).await;
        let answers = attempts(&fenced, &dir, port).await;
        let refused = |answer: &String| {
            answer.contains("Permission denied") || answer.contains("Operation not permitted")
        };
        assert!(refused(&answers[0]), "read outside the grant: {answers:?}");
        assert_eq!(answers[1], "ok", "write inside the grant: {answers:?}");
        assert!(refused(&answers[2]), "write outside the grant: {answers:?}");
        assert!(refused(&answers[3]), "connect: {answers:?}");
        assert!(refused(&answers[4]), "exec: {answers:?}");
        assert_eq!(answers[5], "ok", "what the plugin declared: {answers:?}");
        let status = fenced
            .coordinator()
            .components()
            .into_iter()
            .find(|c| c.name == "rogue")
            .and_then(|c| c.sandbox)
            .expect("a sandbox status");
        assert_eq!(status.mode, "on");
        assert_eq!(status.declared.read, ["/etc/hostname"]);
        assert_eq!(
            status.granted.write,
            [dir.join("granted").display().to_string()]
        );
        assert!(
            status
                .applied
                .as_deref()
                .is_some_and(|a| a.contains("Landlock") && a.contains("seccomp allowlist")),
            "{status:?}"
        );
        fenced.shutdown().await;

        // Widened: connections and programs granted by the operator.
        let widened = host(
            &sandbox,
            &format!("{ROGUE}sandbox = true\n[components.rogue.sandbox_grants]\nconnect = true\nspawn = true\n"),
        )
        .await;
        let answers = attempts(&widened, &dir, port).await;
        assert_eq!((answers[3].as_str(), answers[4].as_str()), ("ok", "ok"), "{answers:?}");
        assert!(refused(&answers[0]), "still no reading outside: {answers:?}");
        widened.shutdown().await;
        drop(listener);
    });
}

#[test]
fn sandbox_on_an_in_process_component_is_refused_by_check() {
    let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
    let config = sandbox.write_config("[components.rogue]\nsandbox = true\n");
    let output = sandbox.run(&["--config", &config.to_string_lossy(), "check"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("components.rogue.sandbox") && stderr.contains("isolated components only"),
        "{stderr}"
    );
    let inspected = plugin_host_tests::success_stdout(&sandbox.run(&["inspect", "rogue"]));
    assert!(
        inspected
            .contains("sandbox needs: read /etc/hostname, write nothing, connect no, spawn no"),
        "{inspected}"
    );
}

#[test]
fn a_worker_that_sends_stream_items_past_its_credit_is_killed_for_breaking_the_protocol() {
    use std::io::BufRead;
    let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
    let config = format!("[admin]\nlisten = \"127.0.0.1:0\"\n{ROGUE}");
    let host = RunningHost::start_with_env(
        &sandbox,
        &config,
        &[("RUST_LOG", "info,plugin_host::isolation=debug")],
    );
    let req_file = sandbox.root().join("req");
    let request = serde_json::json!({ "req_file": req_file, "items": 2000 });
    let response = host
        .request("POST", "/components/rogue/stream/overrun")
        .send_string(&request.to_string())
        .expect("stream");
    // The stream's request id, as the host logs it, for the rogue to forge items of.
    let req = wait_for("the host to log the stream's request id", || {
        let log = std::fs::read_to_string(sandbox.root().join("run.log")).unwrap_or_default();
        let line = log.lines().find(|l| l.contains("stream opened"))?;
        let req = line.split("req=").nth(1)?.split_whitespace().next()?;
        Some(req.to_owned())
    });
    std::fs::write(&req_file, req).expect("req file");

    let lines: Vec<String> = std::io::BufReader::new(response.into_reader())
        .lines()
        .map(|line| line.expect("a line"))
        .collect();
    let (last, items) = lines.split_last().expect("an error line at least");
    // Not all of them: the host takes what fits the credit it granted (its first window of
    // 64, and more as its HTTP side drains items into the socket's buffers, which depends
    // on timing), then refuses the rest.
    assert!(
        items.len() < 2000,
        "all {} forged items passed",
        items.len()
    );
    let error: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(error["error"]["kind"], "worker_protocol", "{last}");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains("beyond the credit"), "{message}");
    // A new worker serves the next call.
    let (status, pid) = host.call("rogue", "pid", "null");
    assert!(pid.is_ok(), "{status}: {pid:?}");
}

#[test]
fn plugin_code_using_standard_input_and_output_leaves_the_workers_link_alone() {
    let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
    let config = format!("[admin]\nlisten = \"127.0.0.1:0\"\n{ROGUE}");
    let host = RunningHost::start_with_env(&sandbox, &config, &[("RUST_LOG", "info")]);
    let worker = host.call("rogue", "pid", "null").1.expect("pid");
    // It reads nothing from standard input, and what it writes reaches the host's log.
    let (status, read) = host.call("rogue", "stdio", "null");
    assert_eq!(read.expect("an answer"), serde_json::json!(0), "{status}");
    let same = host.call("rogue", "pid", "null").1.expect("pid");
    assert_eq!(same, worker, "the same worker serves on");
    wait_for("the plugin's output in the host's log", || {
        let log = std::fs::read_to_string(sandbox.root().join("run.log")).unwrap_or_default();
        (log.contains("rogue writes on descriptor 1") && log.contains("rogue says hello on stdout"))
            .then_some(())
    });
}

/// `plugin-host call rogue METHOD INPUT` with `config`, `env` set: its output.
fn call_rogue(
    sandbox: &Sandbox,
    config: &str,
    env: &[(&str, &str)],
    method: &str,
    input: &str,
) -> std::process::Output {
    let config = sandbox.write_config(config);
    sandbox
        .host()
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .args([
            "--config",
            &config.to_string_lossy(),
            "call",
            "rogue",
            method,
            input,
        ])
        .output()
        .expect("plugin-host call")
}

#[test]
fn on_a_kernel_that_lacks_what_the_sandbox_needs_true_refuses_and_best_effort_warns() {
    let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
    let strict = format!("{ROGUE}sandbox = true\n");
    let lenient = format!("{ROGUE}sandbox = \"best-effort\"\n");
    let kernel_5 = [("PLUGIN_HOST_TEST_LANDLOCK_ABI", "5")];

    // Without scopes, a strict sandbox does not start, and says what is missing.
    let refused = call_rogue(&sandbox, &strict, &kernel_5, "pid", "null");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("Landlock pretends to be V5")
            && stderr.contains("lacks signal and abstract Unix socket scoping")
            && stderr.contains("sandbox = true refuses to run without it"),
        "{stderr}"
    );

    // Best effort starts, and the worker's warning (from before the library loaded)
    // reaches the host's log, naming what is missing.
    for (abi, missing) in [
        ("5", "lacks signal and abstract Unix socket scoping"),
        ("0", "files and network are not fenced in"),
    ] {
        let started = call_rogue(
            &sandbox,
            &lenient,
            &[("PLUGIN_HOST_TEST_LANDLOCK_ABI", abi)],
            "pid",
            "null",
        );
        let stdout = plugin_host_tests::success_stdout(&started);
        let stderr = String::from_utf8_lossy(&started.stderr);
        assert!(stdout.trim().parse::<u32>().is_ok(), "{stdout}");
        let warning = stderr
            .lines()
            .find(|line| line.contains(" WARN ") && line.contains("worker: sandbox in part"))
            .unwrap_or_else(|| panic!("ABI {abi}: no warning from the worker:\n{stderr}"));
        assert!(
            warning.contains(missing) && warning.contains(" plugin=rogue"),
            "ABI {abi}: {warning}"
        );
    }
}

#[test]
fn operator_grants_narrow_and_widen_what_a_plugin_declares_ports_included() {
    let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let (open_port, closed_port) = (
        open.local_addr().expect("addr").port(),
        closed.local_addr().expect("addr").port(),
    );
    // [host] sandbox for every component; the plugin declares it reads /etc/hostname;
    // the operator takes that away and grants one port.
    let config = format!(
        "[host]\nisolation = \"process\"\nsandbox = true\n\
         [components.rogue.sandbox_grants]\nread = []\nconnect = [{open_port}]\n"
    );
    let attempt = |what: serde_json::Value| {
        let output = call_rogue(&sandbox, &config, &[], "try", &what.to_string());
        let answer: String =
            serde_json::from_str(plugin_host_tests::success_stdout(&output).trim())
                .expect("answer");
        answer
    };
    let refused = |answer: &str| {
        answer.contains("Permission denied") || answer.contains("Operation not permitted")
    };
    assert_eq!(
        attempt(serde_json::json!({ "connect": format!("127.0.0.1:{open_port}") })),
        "ok",
        "the granted port"
    );
    let other = attempt(serde_json::json!({ "connect": format!("127.0.0.1:{closed_port}") }));
    assert!(refused(&other), "another port: {other}");
    let read = attempt(serde_json::json!({ "read": "/etc/hostname" }));
    assert!(
        refused(&read),
        "what the plugin declared, narrowed away: {read}"
    );
    drop((open, closed));
}

/// The soft and hard limits of open descriptors of process `pid`.
#[cfg(target_os = "linux")]
fn open_files(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("its limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("the open-files line");
    let value = |word: &str| word.parse().unwrap_or(u64::MAX);
    let words: Vec<&str> = line.split_whitespace().collect();
    (value(words[3]), value(words[4]))
}

/// `run` raises its soft limit of open descriptors to the hard one for its connections;
/// its workers start with the limit it had before, as any program would.
#[cfg(target_os = "linux")]
#[test]
fn a_worker_starts_with_the_open_files_limit_the_host_had_before_raising_its_own() {
    const SOFT: u64 = 256;
    let (_, hard) = open_files(std::process::id());
    if hard <= SOFT {
        eprintln!("skipped: the hard limit of open files here is {hard}, nothing to raise");
        return;
    }
    let sandbox = Sandbox::with_plugins(&["fixture-rogue"]);
    let host = RunningHost::start_with(&sandbox, ROGUE, |command| {
        // SAFETY: getrlimit and setrlimit are async-signal-safe and touch only the struct
        // on this stack.
        #[allow(unsafe_code)]
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(command, || {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_cur = SOFT;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    assert_eq!(
        open_files(host.pid()),
        (hard, hard),
        "the host raised its own"
    );
    let (status, worker) = host.call("rogue", "pid", "null");
    assert_eq!(status, 200, "{worker:?}");
    let worker = u32::try_from(worker.expect("pid").as_u64().expect("a pid")).expect("pid");
    assert_ne!(worker, host.pid());
    assert_eq!(open_files(worker), (SOFT, hard));
}
