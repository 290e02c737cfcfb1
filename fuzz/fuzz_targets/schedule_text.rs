#![no_main]
//! `wasmcron::fuzzing::schedule_text`: the checks live there (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmcron::fuzzing::schedule_text(data));
