#![no_main]
//! `wasmcron::fuzzing::api_request`: the checks live there (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmcron::fuzzing::api_request(data));
