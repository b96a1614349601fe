#![no_main]
//! See `openframe::fuzzing::ingest_body` for the input and what must hold.

libfuzzer_sys::fuzz_target!(|data: &[u8]| openframe::fuzzing::ingest_body(data));
