#![no_main]
//! `wasmcron::fuzzing::units`: the checks live there (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmcron::fuzzing::units(data));
