//! The config loader on arbitrary text: errors, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| plugin_host::fuzzing::config(text));
