//! `isolation = "auto"`: a component runs in the host's process until one of its calls
//! panics or times out, or it is quarantined; then it moves to a worker for good, and the
//! worker's instance starts clean.

use plugin_host::CallError;
use plugin_host_tests::{host, runtime, wait_for_async, Sandbox};

/// The pid serving `sleeper` once it has moved out of this process, and why it moved.
async fn moved(host: &plugin_host::Host) -> (u32, String) {
    let here = std::process::id();
    let worker: u32 = wait_for_async("a call served by a worker", || async {
        let pid: u32 = host.call_json("sleeper", "pid", &()).await.ok()?;
        (pid != here).then_some(pid)
    })
    .await;
    let status = host
        .components()
        .into_iter()
        .find(|c| c.name == "sleeper")
        .expect("sleeper");
    assert_eq!(status.isolation, plugin_host::Isolation::Auto);
    assert_eq!(status.worker_pid, Some(worker));
    (worker, status.moved_to_worker.unwrap_or_default())
}

#[test]
fn isolation_auto_moves_a_component_that_timed_out_into_a_worker_for_good() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let config = "[components.sleeper]\nisolation = \"auto\"\n\
                      [components.sleeper.operations]\nsleep = \"300ms\"\n";
        let host = host(&sandbox, config).await;
        let here: u32 = host.call_json("sleeper", "pid", &()).await.expect("pid");
        assert_eq!(here, std::process::id(), "auto starts in process");
        let err = host
            .call_json::<_, u64>("sleeper", "sleep", &serde_json::json!({ "ms": 3000 }))
            .await
            .expect_err("times out");
        assert!(matches!(err, CallError::TimedOut { .. }), "{err}");
        let (_, why) = moved(&host).await;
        assert!(why.contains("timed out"), "{why}");
        // For good: the next fault does not move it again, and it stays in a worker.
        let fast: u64 = host
            .call_json("sleeper", "sleep", &serde_json::json!({ "ms": 1 }))
            .await
            .expect("a call in the worker");
        assert_eq!(fast, 1);
        host.shutdown().await;
    });
}

#[test]
fn isolation_auto_moves_a_component_whose_call_panicked() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let host = host(&sandbox, "[components.sleeper]\nisolation = \"auto\"\n").await;
        let here: u32 = host.call_json("sleeper", "pid", &()).await.expect("pid");
        assert_eq!(here, std::process::id(), "auto starts in process");
        let err = host
            .call_json::<_, serde_json::Value>("sleeper", "panic", &())
            .await
            .expect_err("panics");
        let chain = plugin_host_tests::error_chain(&err);
        assert!(chain.contains("panics on purpose"), "{chain}");
        let (_, why) = moved(&host).await;
        assert!(why.contains("panicked"), "{why}");
        host.shutdown().await;
    });
}

#[test]
fn isolation_auto_moves_a_component_that_was_quarantined() {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        // One abandoned call quarantines it; the call is abandoned by a cancel (a timeout
        // would move it first, for its own reason).
        let config = "[components.sleeper]\nisolation = \"auto\"\nquarantine_after = 1\n";
        let host = std::sync::Arc::new(host(&sandbox, config).await);
        let hung = {
            let host = std::sync::Arc::clone(&host);
            tokio::spawn(async move {
                host.call_json::<_, u64>("sleeper", "sleep", &serde_json::json!({ "ms": 60000 }))
                    .await
            })
        };
        let id = wait_for_async("the hung call to be listed", || async {
            host.timeouts()
                .active()
                .into_iter()
                .find(|t| t.component == "sleeper" && t.method.as_deref() == Some("sleep"))
                .map(|t| t.id)
        })
        .await;
        assert!(host.timeouts().cancel(id), "cancelled");
        let err = hung.await.expect("task").expect_err("cancelled");
        assert!(matches!(err, CallError::Cancelled { .. }), "{err}");
        let err = host
            .call_json::<_, u64>("sleeper", "sleep", &serde_json::json!({ "ms": 1 }))
            .await
            .expect_err("quarantined while the abandoned call still runs");
        assert!(matches!(err, CallError::Quarantined { .. }), "{err}");
        // The worker's instance starts clean: the hung call is the in-process one's.
        let (_, why) = moved(&host).await;
        assert!(why.contains("quarantined"), "{why}");
        let fast: u64 = host
            .call_json("sleeper", "sleep", &serde_json::json!({ "ms": 1 }))
            .await
            .expect("a call in the worker");
        assert_eq!(fast, 1);
        host.shutdown().await;
    });
}
