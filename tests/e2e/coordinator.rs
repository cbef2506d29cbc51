//! The coordinator, driven in-process through the library with the real loader and the
//! `probe` fixture plugin: exactly-once init, parallel branches, failures, timeouts,
//! eviction and shutdown order. The key cases run twice: with the components in the
//! host's process, and isolated in worker processes.

use std::{sync::Arc, time::Duration};

use plugin_host::{
    CallError, ComponentSpec, ComponentState, Coordinator, CoordinatorBuilder, GetError, InitError,
    NativeComponent, RegisterError,
};
use plugin_host_tests::{error_chain, host, state, Sandbox};

/// Where the plugin components of a case run.
#[derive(Clone, Copy)]
enum Mode {
    InProcess,
    Isolated,
}

impl Mode {
    /// The case's config, with every component isolated in `Isolated` mode.
    fn config(self, rest: &str) -> String {
        match self {
            Self::InProcess => rest.to_owned(),
            Self::Isolated => format!("[host]\nisolation = \"process\"\n{rest}"),
        }
    }
}

/// Runs an `async fn case(mode: Mode)` as two tests: `case::in_process` and
/// `case::isolated` (every plugin component in a worker process).
macro_rules! in_both_modes {
    ($case:ident, $threads:literal) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
            async fn in_process() {
                super::$case(super::Mode::InProcess).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
            async fn isolated() {
                super::$case(super::Mode::Isolated).await;
            }
        }
    };
}

in_both_modes!(
    a_thousand_concurrent_gets_of_a_cold_component_run_its_init_once,
    4
);

async fn a_thousand_concurrent_gets_of_a_cold_component_run_its_init_once(mode: Mode) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = host(&sandbox, &mode.config("")).await;
    let coordinator = host.coordinator().clone();
    let gets = (0..1000).map(|_| {
        let coordinator = coordinator.clone();
        tokio::spawn(async move { coordinator.get("counter").await })
    });
    let handles: Vec<_> = futures_join(gets).await;
    let first = handles[0].clone();
    for handle in &handles {
        assert!(
            handle.same_instance(&first),
            "callers got different instances"
        );
    }
    let creates: u64 = first.call_json("creates", &()).await.expect("creates");
    assert_eq!(creates, 1, "counted inside the component");
    assert_eq!(
        first.worker_pid().is_some(),
        matches!(mode, Mode::Isolated),
        "runs where the mode says"
    );
}

async fn futures_join(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<Result<plugin_host::ComponentHandle, GetError>>>,
) -> Vec<plugin_host::ComponentHandle> {
    let mut handles = Vec::new();
    for task in tasks {
        handles.push(task.await.expect("task").expect("get"));
    }
    handles
}

in_both_modes!(two_independent_dependencies_initialise_concurrently, 4);

async fn two_independent_dependencies_initialise_concurrently(mode: Mode) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = host(&sandbox, &mode.config("")).await;
    let coordinator = host.coordinator().clone();
    let joiner = coordinator.get("joiner").await.expect("joiner");
    let spans: serde_json::Value = joiner.call_json("spans", &()).await.expect("spans");
    let (a, b) = (&spans["slow-a"], &spans["slow-b"]);
    let start = |v: &serde_json::Value| v["start_us"].as_u64().expect("start");
    let end = |v: &serde_json::Value| v["end_us"].as_u64().expect("end");
    assert!(
        start(a) < end(b) && start(b) < end(a),
        "slow-a and slow-b did not overlap: {spans}"
    );
}

in_both_modes!(
    a_failing_dependency_fails_its_dependent_with_the_cause_chain,
    2
);

async fn a_failing_dependency_fails_its_dependent_with_the_cause_chain(mode: Mode) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = host(&sandbox, &mode.config("")).await;
    let coordinator = host.coordinator().clone();
    let err = coordinator
        .get("needs-fails")
        .await
        .expect_err("needs-fails must fail");
    let chain = error_chain(&err);
    assert!(
        chain.contains("`needs-fails` cannot start because its dependency `fails` failed"),
        "{chain}"
    );
    assert!(chain.contains("configured to fail"), "{chain}");
    assert_eq!(state(&coordinator, "fails"), ComponentState::Failed);
    assert_eq!(state(&coordinator, "needs-fails"), ComponentState::Failed);
}

in_both_modes!(
    a_hanging_init_times_out_while_others_work_and_its_late_result_is_dropped,
    2
);

async fn a_hanging_init_times_out_while_others_work_and_its_late_result_is_dropped(mode: Mode) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let log = sandbox.root().join("events.log");
    let config = format!(
        "[components.hang.config]\nhang_ms = 4000\nlog_file = {:?}\n",
        log.display().to_string()
    );
    let host = host(&sandbox, &mode.config(&config)).await;
    let coordinator = host.coordinator().clone();
    let started = std::time::Instant::now();
    let err = coordinator
        .get("hang")
        .await
        .expect_err("hang must time out");
    let waited = started.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(
        err.to_string().contains("`hang`") && err.to_string().contains("500ms"),
        "{err}"
    );
    // The margin is wide for loaded CI machines, and still well short of the 4 s hang.
    assert!(
        waited < Duration::from_millis(3000),
        "waited {waited:?} for a 500ms timeout"
    );
    assert_eq!(state(&coordinator, "hang"), ComponentState::TimedOut);

    let other = coordinator
        .call("rec-base", "ping", b"null".to_vec())
        .await
        .expect("others keep working");
    assert_eq!(other, br#""pong""#);

    // The abandoned create finishes later; its instance is dropped, never handed out.
    let events = plugin_host_tests::wait_for_async("the late instance's drop", || async {
        let events = std::fs::read_to_string(&log).unwrap_or_default();
        events.contains("drop hang").then_some(events)
    })
    .await;
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(
        lines,
        ["late-finish hang", "create hang", "drop hang"],
        "{events}"
    );
    assert_eq!(state(&coordinator, "hang"), ComponentState::TimedOut);
    // The plugin logs its drop before the host hears that the abandoned create returned
    // (isolated, the answer crosses the worker's socket): until then a get is told the
    // earlier initialisation still runs, which is the truth, not a failure.
    let later =
        plugin_host_tests::wait_for_async("the abandoned init's end to reach the host", || async {
            match coordinator.get("hang").await {
                Err(plugin_host::GetError::InitStillRunning { .. }) => None,
                other => Some(other),
            }
        })
        .await
        .expect_err("the late instance is not used");
    assert!(later.is_timeout(), "{later}");
}

in_both_modes!(shutdown_stops_components_in_reverse_init_order, 2);

async fn shutdown_stops_components_in_reverse_init_order(mode: Mode) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let log = sandbox.root().join("events.log");
    let log_setting = format!("log_file = {:?}\n", log.display().to_string());
    let config: String = ["rec-base", "rec-mid", "rec-top", "rec-side"]
        .iter()
        .map(|name| format!("[components.{name}.config]\n{log_setting}"))
        .collect();
    let host = host(&sandbox, &mode.config(&config)).await;
    let coordinator = host.coordinator().clone();
    coordinator.get("rec-top").await.expect("rec-top");
    coordinator.get("rec-side").await.expect("rec-side");
    let report = coordinator.shutdown(Duration::from_secs(5)).await;
    assert!(report.timed_out.is_empty());

    let events = std::fs::read_to_string(&log).expect("event log");
    let position = |line: &str| {
        events
            .lines()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("`{line}` missing from:\n{events}"))
    };
    let created: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("create "))
        .collect();
    assert_eq!(created, ["rec-base", "rec-mid", "rec-top", "rec-side"]);
    // Every component is dropped after everything that depends on it.
    assert!(position("drop rec-top") < position("drop rec-mid"));
    assert!(position("drop rec-mid") < position("drop rec-base"));
    assert!(position("drop rec-side") < position("drop rec-base"));
    assert!(matches!(
        coordinator.get("rec-base").await,
        Err(GetError::ShuttingDown { .. })
    ));
}

in_both_modes!(an_instance_held_by_a_caller_survives_evict, 2);

async fn an_instance_held_by_a_caller_survives_evict(mode: Mode) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = host(&sandbox, &mode.config("")).await;
    let coordinator = host.coordinator().clone();
    let held = coordinator.get("rec-base").await.expect("rec-base");
    let dependent = coordinator.get("rec-mid").await.expect("rec-mid");
    drop(dependent);
    let refused = coordinator
        .evict("rec-base", false)
        .await
        .expect_err("rec-mid is ready and needs it");
    assert!(refused.to_string().contains("rec-mid"), "{refused}");

    let evicted = coordinator.evict("rec-base", true).await.expect("cascade");
    assert_eq!(evicted, ["rec-mid", "rec-base"]);
    assert_eq!(state(&coordinator, "rec-base"), ComponentState::Evicted);
    let reply: String = held
        .call_json("ping", &())
        .await
        .expect("the held instance still answers");
    assert_eq!(reply, "pong");

    let fresh = coordinator
        .get("rec-base")
        .await
        .expect("re-initialised after eviction");
    assert!(!fresh.same_instance(&held));
}

in_both_modes!(
    a_panicking_call_is_an_error_and_the_component_keeps_answering,
    2
);

async fn a_panicking_call_is_an_error_and_the_component_keeps_answering(mode: Mode) {
    let sandbox = Sandbox::with_plugins(&["fixture-panic-call"]);
    let host = host(&sandbox, &mode.config("")).await;
    let coordinator = host.coordinator().clone();
    let err = coordinator
        .call("panic-call", "boom", b"null".to_vec())
        .await
        .expect_err("boom panics");
    let chain = error_chain(&err);
    for needle in [
        "plugin `panic-call` panicked",
        "component `panic-call`",
        "`boom`",
        "panic-call fixture: boom",
    ] {
        assert!(chain.contains(needle), "expected `{needle}` in: {chain}");
    }
    assert!(matches!(err, CallError::Failed { .. }));
    let pong = coordinator
        .call("panic-call", "ping", b"null".to_vec())
        .await
        .expect("ping after panic");
    assert_eq!(pong, br#""pong""#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_is_refused_with_its_whole_path() {
    let coordinator = Coordinator::builder().build();
    let native = || NativeComponent::new(|_| Ok(Echo));
    coordinator
        .register_native(ComponentSpec::new("a").with_dependency("b"), native())
        .expect("a");
    coordinator
        .register_native(ComponentSpec::new("b").with_dependency("c"), native())
        .expect("b");
    let err = coordinator
        .register_native(ComponentSpec::new("c").with_dependency("a"), native())
        .expect_err("c closes a cycle");
    assert!(matches!(err, RegisterError::Cycle { .. }));
    assert!(err.to_string().contains("a -> b -> c -> a"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_depends_on_itself_is_refused_and_nothing_else_is() {
    let coordinator = Coordinator::builder().build();
    let native = || NativeComponent::new(|_| Ok(Echo));
    let err = coordinator
        .register_native(
            ComponentSpec::new("ouroboros").with_dependency("ouroboros"),
            native(),
        )
        .expect_err("a component that needs itself can never start");
    assert!(matches!(err, RegisterError::Cycle { .. }), "{err}");
    assert!(err.to_string().contains("ouroboros -> ouroboros"), "{err}");
    assert_eq!(coordinator.state_of("ouroboros"), None, "not registered");
    coordinator
        .register_native(ComponentSpec::new("plain"), native())
        .expect("others still register");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_component_can_depend_on_a_plugin_component() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let host = host(&sandbox, "").await;
    let coordinator = host.coordinator().clone();
    coordinator
        .register_native(
            ComponentSpec::new("spread-monitor").with_dependency("market-data"),
            NativeComponent::new(|deps| {
                let feed = deps
                    .get("market-data")
                    .expect("declared dependency")
                    .clone();
                Ok(Spread { feed })
            }),
        )
        .expect("register");
    let spread: f64 = coordinator
        .get("spread-monitor")
        .await
        .expect("spread-monitor")
        .call_json("spread", &serde_json::json!({"symbol": "AAPL"}))
        .await
        .expect("spread");
    assert!(spread > 0.0 && spread < 1.0, "{spread}");
    assert_eq!(coordinator.init_order(), ["market-data", "spread-monitor"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_component_is_retried_after_the_backoff() {
    let coordinator = CoordinatorBuilder::default()
        .with_failure_backoff(Duration::from_secs(1))
        .build();
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    coordinator
        .register_native(
            ComponentSpec::new("flaky"),
            NativeComponent::new(move |_| {
                if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    Err(plugin_host::plugin_api::PluginError::failed(
                        "first start fails",
                    ))
                } else {
                    Ok(Echo)
                }
            }),
        )
        .expect("register");
    let first = coordinator
        .get("flaky")
        .await
        .expect_err("first attempt fails");
    assert!(matches!(first, GetError::Init(ref e) if matches!(**e, InitError::Create { .. })));
    let during = coordinator
        .get("flaky")
        .await
        .expect_err("within the backoff");
    assert!(matches!(during, GetError::Backoff { .. }), "{during}");
    plugin_host_tests::wait_for_async("a get after the backoff", || async {
        match coordinator.get("flaky").await {
            Ok(_) => Some(()),
            Err(GetError::Backoff { .. }) => None,
            Err(other) => panic!("retried after the backoff: {other}"),
        }
    })
    .await;
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
}

struct Echo;

impl plugin_host::plugin_api::Component for Echo {
    fn call(
        &self,
        request: plugin_host::plugin_api::Request<'_>,
    ) -> Result<Vec<u8>, plugin_host::plugin_api::PluginError> {
        Ok(request.input().to_vec())
    }
}

struct Spread {
    feed: plugin_host::ComponentHandle,
}

impl plugin_host::plugin_api::Component for Spread {
    fn call(
        &self,
        request: plugin_host::plugin_api::Request<'_>,
    ) -> Result<Vec<u8>, plugin_host::plugin_api::PluginError> {
        use plugin_host::plugin_api::{json_reply, PluginError};
        let quote: serde_json::Value = self
            .feed
            .call_json_blocking(
                "quote",
                &serde_json::from_slice::<serde_json::Value>(request.input())
                    .map_err(|e| PluginError::bad_input(request.method(), e))?,
            )
            .map_err(|e| PluginError::dependency("market-data", e))?;
        let spread =
            quote["ask"].as_f64().unwrap_or_default() - quote["bid"].as_f64().unwrap_or_default();
        json_reply(&((spread * 100.0).round() / 100.0))
    }
}

in_both_modes!(
    a_plugin_takes_and_releases_a_named_lock_through_the_host_context,
    2
);

async fn a_plugin_takes_and_releases_a_named_lock_through_the_host_context(mode: Mode) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = host(&sandbox, &mode.config("[locks]\norder = [\"book\"]\n")).await;
    let coordinator = host.coordinator().clone();
    let request = |timeout_ms: u64| {
        serde_json::to_vec(
            &serde_json::json!({"name": "book", "hold_ms": 5, "timeout_ms": timeout_ms}),
        )
        .unwrap()
    };

    let done = coordinator
        .call("locker", "with_lock", request(1000))
        .await
        .expect("lock through the context");
    let span: serde_json::Value = serde_json::from_slice(&done).expect("JSON span");
    assert!(
        span["end_us"].as_u64() >= span["start_us"].as_u64(),
        "{span}"
    );
    let stats = host.locks().stats_of("book").expect("book stats");
    assert_eq!((stats.acquisitions, stats.holder.as_deref()), (1, None));

    // The host holds the lock: the plugin waits, times out, and is told who holds it.
    let held = host
        .locks()
        .acquire("book", "host-task")
        .await
        .expect("host takes book");
    let err = coordinator
        .call("locker", "with_lock", request(50))
        .await
        .expect_err("book is held");
    let chain = error_chain(&err);
    assert!(
        chain.contains("timed out") && chain.contains("`book`") && chain.contains("host-task"),
        "{chain}"
    );
    held.release().expect("release");

    coordinator
        .call("locker", "with_lock", request(1000))
        .await
        .expect("free again");
    let stats = host.locks().stats_of("book").expect("book stats");
    assert_eq!(
        (stats.acquisitions, stats.contentions, stats.timeouts),
        (3, 1, 1),
        "{stats:?}"
    );
    assert!(host.locks().waits().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_provider_of_a_component_name_is_rejected_naming_both() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let host = host(&sandbox, "").await;
    let coordinator = host.coordinator().clone();
    let err = coordinator
        .register_native(
            ComponentSpec::new("market-data"),
            NativeComponent::new(|_| Ok(Echo)),
        )
        .expect_err("market-data is taken");
    assert!(matches!(err, RegisterError::Duplicate { .. }));
    let text = err.to_string();
    assert!(
        text.contains("plugin `market-data`") && text.contains("native"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_that_finishes_during_shutdown_is_stopped_not_left_running() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let log = sandbox.root().join("events.log");
    let config = format!(
        "[components.slow-a.config]\ndelay_ms = 500\nlog_file = {:?}\n",
        log.display().to_string()
    );
    let host = host(&sandbox, &config).await;
    let coordinator = host.coordinator().clone();
    let pending = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move { coordinator.get("slow-a").await })
    };
    plugin_host_tests::wait_for_async("slow-a to initialise", || async {
        (state(&coordinator, "slow-a") == ComponentState::Initializing).then_some(())
    })
    .await;
    let report = coordinator.shutdown(Duration::from_secs(5)).await;
    assert!(
        report.stopped.is_empty(),
        "nothing was ready yet: {report:?}"
    );

    let err = pending.await.expect("task").expect_err("shutdown began");
    assert!(err.to_string().contains("after shutdown began"), "{err}");
    assert_eq!(state(&coordinator, "slow-a"), ComponentState::Stopped);
    // The late instance is dropped on its plugin thread, which may finish just after.
    let events = plugin_host_tests::wait_for_async("the late instance's drop", || async {
        let events = std::fs::read_to_string(&log).unwrap_or_default();
        events.contains("drop slow-a").then_some(events)
    })
    .await;
    assert_eq!(
        events.lines().collect::<Vec<_>>(),
        ["create slow-a", "drop slow-a"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_component_hands_out_the_ready_instance_and_never_keeps_an_evicted_one() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let log = sandbox.root().join("events.log");
    let config = format!(
        "[components.rec-base.config]\nlog_file = {:?}\n",
        log.display().to_string()
    );
    let host = host(&sandbox, &config).await;
    let coordinator = host.coordinator().clone();
    let unknown = coordinator.resolve("nothing").expect_err("not registered");
    assert!(
        matches!(unknown, GetError::UnknownComponent { .. }),
        "{unknown}"
    );

    let mut resolved = coordinator.resolve("rec-base").expect("resolved");
    assert!(resolved.get_ready().is_none(), "cold: nothing ready yet");
    let first = resolved.get().await.expect("initialised on first get");
    let again = resolved.get_ready().expect("ready now");
    assert!(first.same_instance(&again));
    let by_name = coordinator.get("rec-base").await.expect("by name");
    assert!(by_name.same_instance(&again));
    drop((first, again, by_name));

    // Eviction drops the instance although the resolved component is still held.
    coordinator.evict("rec-base", false).await.expect("evict");
    plugin_host_tests::wait_for("the evicted instance to be dropped", || {
        let events = std::fs::read_to_string(&log).unwrap_or_default();
        events.contains("drop rec-base").then_some(())
    });
    assert!(
        resolved.get_ready().is_none(),
        "the evicted instance is not handed out"
    );
    let fresh = resolved.get().await.expect("initialised again");
    assert_eq!(state(&coordinator, "rec-base"), ComponentState::Ready);
    assert!(resolved.get_ready().expect("ready").same_instance(&fresh));
    let events = std::fs::read_to_string(&log).expect("events");
    assert_eq!(
        events.lines().collect::<Vec<_>>(),
        ["create rec-base", "drop rec-base", "create rec-base"]
    );
    drop(fresh);
    coordinator.shutdown(Duration::from_secs(5)).await;
}
