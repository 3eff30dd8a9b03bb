//! Any bytes, read as an encoded stream: Ok or Err, never a panic, and what decodes re-encodes to the same bytes;
//! the same bytes as symbols roundtrip. Seeds: `cargo fuzz run decode <scratch dir> ../tests/corpus` from
//! crates/entropy/fuzz (stable toolchain: `RUSTC_BOOTSTRAP=1`); the seeds are replayed by
//! `cargo test -p entropy --test hostile`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    entropy::fuzzing::check_decode(data);
});
