//! Call timeouts through the coordinator: the most specific setting applies, and a call
//! is listed while it runs and can be cancelled by its id.

use std::time::Duration;

use plugin_host::CallError;
use plugin_host_tests::{host, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_runs_under_its_operation_timeout_most_specific_first() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let config = "[timeouts]\ndefault = \"20s\"\n[timeouts.operations]\nsleep = \"10s\"\n\
                  [components.sleeper]\ntimeout = \"15s\"\n[components.sleeper.operations]\nsleep = \"200ms\"\n";
    let host = host(&sandbox, config).await;
    let coordinator = host.coordinator().clone();
    assert_eq!(
        coordinator.call_timeout("sleeper", "sleep"),
        Duration::from_millis(200)
    );
    assert_eq!(
        coordinator.call_timeout("sleeper", "ping"),
        Duration::from_secs(15)
    );
    assert_eq!(
        coordinator.call_timeout("counter", "sleep"),
        Duration::from_secs(10)
    );
    assert_eq!(
        coordinator.call_timeout("counter", "ping"),
        Duration::from_secs(20)
    );

    let err = coordinator
        .call("sleeper", "sleep", br#"{"ms": 3000}"#.to_vec())
        .await
        .expect_err("3 s sleep under a 200 ms limit");
    assert!(matches!(err, CallError::TimedOut { .. }), "{err}");
    assert!(
        err.to_string().contains("`sleeper` method `sleep`") && err.to_string().contains("200ms"),
        "{err}"
    );
    let fast = coordinator
        .call("sleeper", "sleep", br#"{"ms": 1}"#.to_vec())
        .await
        .expect("fast sleep");
    assert_eq!(fast, b"1");
    let stats = host.timeouts().stats();
    assert_eq!(stats.expired, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_call_is_listed_and_can_be_cancelled_by_id() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = host(&sandbox, "").await;
    let coordinator = host.coordinator().clone();
    coordinator.get("sleeper").await.expect("sleeper");
    let running = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            coordinator
                .call("sleeper", "sleep", br#"{"ms": 5000}"#.to_vec())
                .await
        })
    };
    let active = plugin_host_tests::wait_for_async("the call to be listed while it runs", || {
        let active = host.timeouts().active();
        async move { (!active.is_empty()).then_some(active) }
    })
    .await;
    let entry = &active[0];
    assert_eq!(
        (entry.component.as_str(), entry.method.as_deref()),
        ("sleeper", Some("sleep"))
    );
    assert!(host.timeouts().cancel(entry.id));
    let err = running.await.expect("task").expect_err("cancelled");
    assert!(matches!(err, CallError::Cancelled { .. }), "{err}");
    assert_eq!(host.timeouts().stats().cancelled, 1);
    assert!(host.timeouts().active().is_empty());
}
