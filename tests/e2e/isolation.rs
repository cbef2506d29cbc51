//! Process isolation: the same fixture libraries, run in worker processes of the real
//! binary. Crashes, hangs and memory hogs end their worker, not the host; the component
//! works again on the next call; dependencies cross between modes; a changed file is
//! taken up without a failed call.

use std::time::Duration;

use plugin_host::{CallError, Coordinator, Isolation};
use plugin_host_tests::{coordinator, Sandbox};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn call_json(
    coordinator: &Coordinator,
    component: &str,
    method: &str,
    input: &str,
) -> Result<serde_json::Value, CallError> {
    let output = coordinator
        .call(component, method, input.as_bytes().to_vec())
        .await?;
    Ok(serde_json::from_slice(&output).expect("JSON reply"))
}

async fn pid_of(coordinator: &Coordinator, component: &str) -> u32 {
    let pid = call_json(coordinator, component, "pid", "null")
        .await
        .unwrap_or_else(|err| panic!("{component}.pid: {err}"));
    u32::try_from(pid.as_u64().expect("a pid")).expect("a pid")
}

const ISOLATED_PROBE: &str =
    "[components.counter]\nisolation = \"process\"\n[components.counter.config]\ndelay_ms = 0\n";

#[test]
fn an_isolated_component_runs_in_a_worker_and_an_in_process_one_in_the_host() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let config = format!("{ISOLATED_PROBE}[components.locker]\n");
        let coordinator = coordinator(&sandbox, &config).await;
        let worker = pid_of(&coordinator, "counter").await;
        let host = pid_of(&coordinator, "locker").await;
        assert_eq!(host, std::process::id());
        assert_ne!(worker, host);
        let status = coordinator.components();
        let counter = status
            .iter()
            .find(|c| c.name == "counter")
            .expect("counter");
        assert_eq!(counter.isolation, Isolation::Process);
        assert_eq!(counter.worker_pid, Some(worker));
        let locker = status.iter().find(|c| c.name == "locker").expect("locker");
        assert_eq!(locker.isolation, Isolation::InProcess);
        assert_eq!(locker.worker_pid, None);
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn a_crash_in_an_isolated_call_is_an_error_naming_the_signal_and_the_next_call_works() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let coordinator = coordinator(&sandbox, ISOLATED_PROBE).await;
        for (how, expected) in [
            ("abort", "SIGABRT"),
            ("segfault", "SIGSEGV"),
            ("exit", "exit code 7"),
        ] {
            let before = pid_of(&coordinator, "counter").await;
            let input = format!("{{\"how\":\"{how}\"}}");
            let err = call_json(&coordinator, "counter", "crash", &input)
                .await
                .expect_err("the worker crashed");
            let message = err.to_string();
            assert!(
                matches!(err, CallError::WorkerFailed { .. }) && message.contains(expected),
                "{how}: {message}"
            );
            assert!(message.contains(&before.to_string()), "{message}");
            let after = pid_of(&coordinator, "counter").await;
            assert_ne!(before, after, "{how}: a new worker serves the next call");
        }
        coordinator.shutdown(Duration::from_secs(5)).await;
    });
}
