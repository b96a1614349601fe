#![no_main]
//! See `openframe::fuzzing::nats_client` for the input and what must hold.

libfuzzer_sys::fuzz_target!(|data: &[u8]| openframe::fuzzing::nats_client(data));
