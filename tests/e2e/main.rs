//! End-to-end tests: the real `plugin-host` binary, the real example plugins and the
//! fixture plugins under `tests/fixtures/`, loaded through the real loader.

// Tests and benches read top to bottom, one scenario each: the 60-line rule is for the
// library, not for them.
#![allow(clippy::too_many_lines)]

mod admin;
mod architecture;
mod authors;
mod auto;
mod bad_plugins;
// C plugins are compiled with the system's `cc` as `.so` files (the Windows leg builds
// and calls the C example with mingw-w64 instead).
#[cfg(unix)]
mod c_plugins;
mod cancel;
mod cli;
mod compat;
mod connections;
mod containment;
mod coordinator;
mod cpu;
mod docs;
mod embedding;
mod fence;
#[cfg(target_os = "linux")]
mod grants;
mod hardening;
mod isolation;
mod lazy_loading;
// Unix: a plugin takes its worker's link away with dup2.
#[cfg(unix)]
mod link;
mod locks;
mod memory;
mod oci;
mod operators;
mod payloads;
mod plugin_logs;
mod run;
mod soak;
mod streams;
mod timeouts;
mod traces;
mod trust;
