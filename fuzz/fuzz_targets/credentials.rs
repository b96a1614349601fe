#![no_main]
//! See `openframe::fuzzing::credentials` for the input and what must hold.

libfuzzer_sys::fuzz_target!(|data: &[u8]| openframe::fuzzing::credentials(data));
