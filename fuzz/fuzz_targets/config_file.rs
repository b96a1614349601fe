#![no_main]
//! See `openframe::fuzzing::config_file` for the input and what must hold.

libfuzzer_sys::fuzz_target!(|data: &[u8]| openframe::fuzzing::config_file(data));
