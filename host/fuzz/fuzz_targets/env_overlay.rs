//! The environment overlay: arbitrary variables (any bytes) over an arbitrary file.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (&str, &[u8])| {
    plugin_host::fuzzing::env_overlay(input.0, input.1)
});
