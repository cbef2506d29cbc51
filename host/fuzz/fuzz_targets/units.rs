//! Sizes and durations on arbitrary text.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| plugin_host::fuzzing::units(text));
