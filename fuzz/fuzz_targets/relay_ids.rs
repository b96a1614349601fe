#![no_main]
//! See `openframe::fuzzing::relay_ids` for the input and what must hold.

libfuzzer_sys::fuzz_target!(|data: &[u8]| openframe::fuzzing::relay_ids(data));
