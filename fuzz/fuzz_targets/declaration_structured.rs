#![no_main]
//! `wasmcron::fuzzing::declaration_structured`: the checks live there (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmcron::fuzzing::declaration_structured(data));
