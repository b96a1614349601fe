#![no_main]
//! See `openframe::fuzzing::graphql_filters` for the input and what must hold.

libfuzzer_sys::fuzz_target!(|data: &[u8]| openframe::fuzzing::graphql_filters(data));
