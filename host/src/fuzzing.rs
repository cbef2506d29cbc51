//! Entry points for the fuzz targets (`host/fuzz`), the property tests and the
//! benchmarks: each feeds untrusted bytes to one parser or check of the host, or runs one
//! inner step of a hot path. Not part of the API.

use std::{ffi::OsString, path::Path};

/// The config loader on arbitrary text.
pub fn config(text: &str) {
    let _ = crate::Config::from_toml(text);
}

/// The size and duration parsers on arbitrary text.
pub fn units(text: &str) {
    let _ = crate::config::parse_size(text);
    let _ = crate::config::parse_duration(text);
}

/// The environment overlay: `data` is split at NUL bytes into name, value, name, value,
/// ... (names and values may be any bytes, as on Unix), applied over `text`.
pub fn env_overlay(text: &str, data: &[u8]) {
    let words: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    let env: Vec<(OsString, OsString)> = words
        .chunks(2)
        .map(|pair| {
            (
                os_string(pair[0]),
                os_string(pair.get(1).copied().unwrap_or(b"")),
            )
        })
        .collect();
    let _ = crate::Config::from_toml_with_env(text, env);
}

fn os_string(bytes: &[u8]) -> OsString {
    crate::platform::bytes_to_os_string(bytes)
}

/// A C plugin's description reader (`plugin_host.h`) on arbitrary text.
pub fn c_description(text: &str) {
    let _ = crate::loader::parse_c_description(text, 1);
}

/// The host's mirrors of `plugin_host.h`'s structs: each one's C name, size and the
/// offset of its last field, for a test to hold against the C compiler's.
pub fn c_layout() -> Vec<(&'static str, usize, usize)> {
    crate::loader::c_layout()
}

/// The registry cache reader on arbitrary bytes.
pub fn registry_cache(bytes: &[u8]) {
    let _ = crate::discovery::parse_cache(bytes);
}

/// The host's reader of a worker's link on arbitrary bytes (a worker runs plugin code, so
/// anything may come up it): message after message, to the end or the first error.
pub fn worker_frames(bytes: &[u8]) {
    let mut reader = crate::protocol::FrameReader::new(bytes, 1 << 20);
    while let Ok(Some(_)) = reader.read::<crate::protocol::FromWorker>() {}
}

/// The library header check (ELF, PE, Mach-O, text) on arbitrary bytes, as a file of
/// `file_len` bytes; and, with the bytes as the whole file, the ranges of it that the
/// host's private copy of a library holds, which must be sorted, aligned and apart.
///
/// # Panics
///
/// When the ranges break those rules.
pub fn elf_header(bytes: &[u8], file_len: u64) {
    let _ = crate::loader::check_header(Path::new("fuzz.so"), bytes, file_len);
    let Some(ranges) = crate::loader::mapped_ranges_in(bytes) else {
        return;
    };
    let align = 64 << 10;
    for (start, end) in &ranges {
        assert!(
            start < end && start % align == 0 && end % align == 0,
            "{ranges:?}"
        );
    }
    for pair in ranges.windows(2) {
        assert!(pair[0].1 < pair[1].0, "{ranges:?}");
    }
}

/// One component of a manifest, as plain data.
#[derive(Debug, Clone)]
pub struct FuzzComponent {
    /// Name.
    pub name: String,
    /// Dependencies.
    pub dependencies: Vec<String>,
    /// Memory estimate.
    pub memory_estimate: u64,
    /// Priority (any byte: the host must refuse >100).
    pub priority: u8,
    /// Init timeout in milliseconds.
    pub init_timeout_ms: Option<u64>,
}

/// The manifest conversion and checks; returns whether the manifest was accepted.
pub fn manifest(name: &str, version: &str, components: &[FuzzComponent]) -> bool {
    let mut manifest = plugin_api::Manifest::new(name, version);
    for component in components {
        let mut decl = plugin_api::ComponentDecl::new(&component.name)
            .with_memory_estimate(component.memory_estimate);
        // Set the field directly: a plugin built by hand need not clamp it.
        decl.priority = component.priority;
        if let Some(ms) = component.init_timeout_ms {
            decl = decl.with_init_timeout(std::time::Duration::from_millis(ms));
        }
        for dependency in &component.dependencies {
            decl = decl.with_dependency(dependency);
        }
        manifest = manifest.with_component(decl);
    }
    crate::manifest::PluginInfo::from_ffi(manifest, "0.0.0".into()).is_ok()
}

/// Lends `serve` the context a component's call gets on this thread, as the host makes it
/// for every in-process call (the benchmark of its cost).
#[inline(always)]
pub fn with_call_context<T>(
    serve: impl FnOnce(plugin_api::ffi::CallContextRef<'_>, plugin_api::ffi::CallFlags) -> T,
) -> T {
    crate::context::lend_current(&crate::call_context::NEVER_STOPS, serve)
}

/// Runs `f` as the code of one call runs: inside the call's scope, with its context (no
/// deadline, no trace), as [`with_call_context`] then finds it.
pub fn in_call<T>(f: impl FnOnce() -> T) -> T {
    let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let token = crate::call_context::CallToken::new(&crate::CallOptions::new(), None, &stopping);
    let id = crate::context::next_call_id();
    let _scope = crate::context::CallScope::enter(id, "in_call", Some(std::sync::Arc::new(token)));
    f()
}

/// What tracing adds to every call's path: the call's span made, entered on the plugin
/// thread and closed (nothing when telemetry is off but a disabled callsite).
pub fn trace_one_call(component: &str, method: &str, options: &crate::CallOptions) {
    let (span, trace) = crate::telemetry::call_span(component, method, options);
    span.in_scope(|| drop(trace));
}

/// The fuzz targets' properties, run by `cargo test` on a few hundred random inputs each
/// (the fuzzers run them by the million; see the README).
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        #[test]
        fn the_config_loader_never_panics(text in "\\PC{0,200}", table in "\\[[a-z]{1,8}\\]\n[a-z_]{1,12} = [0-9\"a-z. ]{0,12}\n") {
            config(&text);
            config(&table);
        }

        #[test]
        fn sizes_written_with_a_unit_read_back(bytes in 0u64..(1 << 40), unit in 0usize..4) {
            let (suffix, factor) = [("B", 1u64), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)][unit];
            let whole = bytes / factor;
            prop_assert_eq!(crate::config::parse_size(&format!("{whole}{suffix}")), Ok(whole * factor));
            units(&format!("{bytes}{suffix}x"));
        }

        #[test]
        fn the_environment_overlay_never_panics(text in "(\\[host\\]\n)?", data in proptest::collection::vec(any::<u8>(), 0..200)) {
            env_overlay(&text, &data);
            let mut named = b"PLUGIN_HOST_".to_vec();
            named.extend_from_slice(&data);
            env_overlay(&text, &named);
        }

        #[test]
        fn the_cache_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), text in "\\PC{0,200}") {
            registry_cache(&bytes);
            registry_cache(text.as_bytes());
        }

        #[test]
        fn the_elf_check_never_panics(mut header in proptest::collection::vec(any::<u8>(), 0..80), len in any::<u64>()) {
            elf_header(&header, len);
            if header.len() >= 4 {
                header[..4].copy_from_slice(b"\x7fELF");
            }
            elf_header(&header, len);
        }

        #[test]
        fn the_ranges_a_library_copy_holds_are_sorted_aligned_and_apart(
            count in 1u16..6,
            segments in proptest::collection::vec((any::<u64>(), 0u64..(1 << 24)), 6),
            near in any::<bool>(),
        ) {
            let mut file = b"\x7fELF\x02\x01".to_vec();
            file.resize(64, 0);
            file[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
            file[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
            file[0x38..0x3a].copy_from_slice(&count.to_le_bytes());
            for (offset, size) in &segments[..usize::from(count)] {
                let mut header = [0u8; 56];
                // Offsets near the start, as libraries have, or anywhere.
                let offset = if near { offset % (1 << 26) } else { *offset };
                header[8..16].copy_from_slice(&offset.to_le_bytes());
                header[0x20..0x28].copy_from_slice(&size.to_le_bytes());
                file.extend_from_slice(&header);
            }
            prop_assert!(crate::loader::mapped_ranges_in(&file).is_some() || !near);
            elf_header(&file, file.len() as u64);
        }

        #[test]
        fn an_accepted_manifest_has_valid_names_and_priorities(
            name in "[a-z.-]{0,6}",
            components in proptest::collection::vec(("[a-z]{0,3}", any::<u8>()), 0..4),
        ) {
            let list: Vec<FuzzComponent> = components
                .iter()
                .map(|(name, priority)| FuzzComponent {
                    name: name.clone(),
                    dependencies: vec![name.clone() + "x"],
                    memory_estimate: 0,
                    priority: *priority,
                    init_timeout_ms: None,
                })
                .collect();
            if manifest(&name, "1", &list) {
                prop_assert!(!list.is_empty());
                prop_assert!(crate::names::valid_name(&name));
                prop_assert!(list.iter().all(|c| c.priority <= 100 && crate::names::valid_name(&c.name)));
                let mut names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                prop_assert_eq!(names.len(), list.len());
            }
        }
    }
}
