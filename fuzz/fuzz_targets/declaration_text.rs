#![no_main]
//! `wasmcron::fuzzing::declaration_text`: the checks live there (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmcron::fuzzing::declaration_text(data));
