use std::time::Duration;

use plugin_api::SandboxNeeds;

use super::*;
use crate::{
    manifest::{ComponentInfo, PluginInfo},
    platform::Connect,
};

fn resolve(text: &str) -> Plans {
    Plans::resolve(&Config::from_toml(text).expect("a valid config"))
}

#[test]
fn a_component_no_section_names_gets_the_host_wide_settings() {
    let plans = resolve(
        "[host]\nisolation = \"process\"\n[limits]\nmax_concurrent_calls = 9\n\
         quarantine_after = 3\nlog_records_per_second = 7\nlog_burst = 11\n\
         [timeouts.operations]\nbars = \"2s\"\n",
    );
    let plan = plans.component("anything");
    assert!(plan.enabled && !plan.eager);
    assert_eq!(plan.isolation, Isolation::Process);
    assert_eq!((plan.max_in_flight, plan.quarantine_after), (9, 3));
    assert_eq!((plan.log_records_per_second, plan.log_burst), (7, 11));
    assert_eq!(plan.operations["bars"], Duration::from_secs(2));
    assert_eq!(plan.timeout, None);
    assert_eq!(plan.config, serde_json::json!({}));
    assert!(plans.named().is_empty());
}

#[test]
fn a_section_overrides_the_host_wide_settings_key_by_key() {
    let plans = resolve(
        "[host]\nisolation = \"process\"\nsandbox = true\n\
         [timeouts]\ndefault = \"9s\"\n[timeouts.operations]\nbars = \"2s\"\nticks = \"3s\"\n\
         [components.quotes]\neager = true\nisolation = \"process\"\nsandbox = \"best-effort\"\n\
         max_concurrent_calls = 2\ntimeout = \"4s\"\npriority = 7\nmemory_limit = \"64MiB\"\n\
         [components.quotes.operations]\nbars = \"1s\"\n\
         [components.quotes.config]\nsymbol = \"AAPL\"\n",
    );
    let plan = plans.component("quotes");
    assert!(plan.eager);
    assert_eq!(plan.isolation, Isolation::Process);
    assert_eq!(plan.sandbox, SandboxMode::BestEffort);
    assert_eq!(plan.max_in_flight, 2);
    assert_eq!(plan.quarantine_after, 8, "not set: [limits]' default");
    assert_eq!(plan.timeout, Some(Duration::from_secs(4)));
    assert_eq!(
        (plan.priority, plan.memory_limit),
        (Some(7), Some(64 << 20))
    );
    assert_eq!(
        plan.operations["bars"],
        Duration::from_secs(1),
        "its own first"
    );
    assert_eq!(
        plan.operations["ticks"],
        Duration::from_secs(3),
        "then the host's"
    );
    assert_eq!(plan.config, serde_json::json!({ "symbol": "AAPL" }));
    assert_eq!(plans.engine.default_timeout, Duration::from_secs(9));
    assert_eq!(plans.named(), ["quotes"]);
    assert_eq!(plans.component("other").sandbox, SandboxMode::On);
}

#[test]
fn a_sandbox_is_planned_for_isolated_components_only_with_grants_replacing_the_declared() {
    let declared = SandboxNeeds::new().read("/etc/ssl").connect().spawn();
    let mut plans = resolve(
        "[components.a]\nisolation = \"process\"\nsandbox = true\n\
         [components.a.sandbox_grants]\nread = []\nconnect = [5432]\n\
         [components.c]\nisolation = \"process\"\n",
    );
    // What validation refuses in a file, made in code: a sandbox for an in-process one.
    plans.component_mut("b").sandbox = SandboxMode::On;
    let (mode, granted) = plans
        .component("a")
        .sandbox_for(&declared)
        .expect("a sandbox");
    assert_eq!(mode, SandboxMode::On);
    assert!(granted.read.is_empty(), "narrowed: {granted:?}");
    assert_eq!(
        (granted.connect, granted.connect_ports.as_slice()),
        (false, &[5432][..])
    );
    assert!(granted.spawn, "not set: as declared");
    assert_eq!(
        plans.component("b").sandbox_for(&declared),
        None,
        "in process"
    );
    assert_eq!(plans.component("c").sandbox_for(&declared), None, "off");
}

#[test]
fn a_worker_is_sandboxed_if_any_of_its_components_is_strictly_if_any_is_with_every_grant() {
    let component = |name: &str| ComponentInfo {
        name: name.to_owned(),
        ..ComponentInfo::default()
    };
    let info = PluginInfo {
        name: "quotes".to_owned(),
        components: vec![component("a"), component("b"), component("c")],
        sandbox: SandboxNeeds::new().read("/data"),
        ..PluginInfo::default()
    };
    let plans = resolve(
        "[host]\nisolation = \"process\"\n\
         [components.a]\nsandbox = \"best-effort\"\n[components.a.sandbox_grants]\nconnect = [80]\n\
         [components.b]\nsandbox = true\n[components.b.sandbox_grants]\nconnect = [443, 80]\nwrite = [\"/tmp/b\"]\n",
    );
    let plan = worker_sandbox(&plans, &info).expect("sandboxed");
    assert!(!plan.best_effort, "b asks strictly");
    assert_eq!(plan.connect, Connect::Ports(vec![80, 443]));
    assert_eq!(plan.read, [std::path::PathBuf::from("/data")]);
    assert_eq!(plan.write, [std::path::PathBuf::from("/tmp/b")]);
    let unsandboxed = resolve("[host]\nisolation = \"process\"\n");
    assert_eq!(worker_sandbox(&unsandboxed, &info), None);
}
