#![no_main]
//! See `openframe::fuzzing::agent_reports` for the input and what must hold.

libfuzzer_sys::fuzz_target!(|data: &[u8]| openframe::fuzzing::agent_reports(data));
