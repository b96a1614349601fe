#![no_main]
//! See `openframe::fuzzing::backup_archive` for the input and what must hold.

libfuzzer_sys::fuzz_target!(|data: &[u8]| openframe::fuzzing::backup_archive(data));
