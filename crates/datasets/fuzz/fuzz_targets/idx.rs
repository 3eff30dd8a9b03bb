//! Any bytes (plain or gzipped) as an IDX images file and an IDX labels file (see ../checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::idx(data);
});
