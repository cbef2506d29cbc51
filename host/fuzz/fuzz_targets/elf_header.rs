//! The library header check (ELF, and PE for Windows DLLs) on arbitrary headers and
//! file lengths, and the ranges of a library the host's private copy holds.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (u64, &[u8])| {
    plugin_host::fuzzing::elf_header(input.1, input.0)
});
