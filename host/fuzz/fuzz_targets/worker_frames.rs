//! The host's reader of a worker's link on arbitrary bytes: lengths, messages and frames
//! announcing shared memory that a worker running hostile plugin code may send.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| plugin_host::fuzzing::worker_frames(bytes));
