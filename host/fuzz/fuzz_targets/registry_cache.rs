//! The registry cache reader on arbitrary bytes (the cache file is on disk, so anyone who
//! can write there can feed it anything).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| plugin_host::fuzzing::registry_cache(bytes));
