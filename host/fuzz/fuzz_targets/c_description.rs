//! A C plugin's description reader on arbitrary text: an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| plugin_host::fuzzing::c_description(text));
