//! Any bytes, read as a `.caffez` file: Ok or a located error, never a panic; what decodes has the length and
//! CRC-32 the header promised (caffez::fuzzing::check_decode). Each input is also tried with its header and
//! section checksums recomputed, so mutations reach the parsers and decoders behind the CRC-32 checks.
//!
//! From crates/caffez/fuzz (stable toolchain: `RUSTC_BOOTSTRAP=1`):
//! `cargo fuzz run -s none decode corpus/decode ../tests/corpus/decode -- -jobs=1 -max_total_time=600`;
//! the committed corpus (tests/corpus/decode) is replayed by `cargo test -p caffez --test fuzz_corpus`. While
//! tests/corpus/crashes holds reproducers of unfixed bugs, add `-fork=1 -ignore_crashes=1` to fuzz past them.
#![no_main]

mod fix_checksums;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fix_checksums::check_decode_both(data);
});
