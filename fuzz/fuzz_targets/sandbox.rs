#![no_main]
//! `wasmcron::fuzzing::sandbox_run`: the checks live there (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmcron::fuzzing::sandbox_run(data));
