//! Any bytes, read as the arguments and stream of one sparse chunk (entropy::sparse::decode_sparse): the first
//! six bytes are the code width (`byte 0 % 10`, so widths 0 and 9 are tried too), the kept count (bytes 1-2,
//! little-endian) and the chunk's length (bytes 3-4, little-endian; or bytes 3-5, up to 2^24 - 1, when byte 0
//! is 0xF0 or more: long chunks are slow to fill, so most inputs stay short); the rest is the stream.
//! Decoding gives Ok or an error, never a panic, and whatever decodes keeps exactly `kept` weights with codes of
//! at most `bits` bits, and re-encodes to exactly the stream's bytes (one chunk, one encoding).
//!
//! Seeds (valid chunks of every width, gaps up to 2^24 - 1): `cargo test -p entropy --test sparse_props --
//! --ignored write_sparse_fuzz_seeds` writes them to corpus/sparse. Then, from crates/entropy/fuzz (stable
//! toolchain: `RUSTC_BOOTSTRAP=1`): `cargo fuzz run -s none sparse corpus/sparse -- -max_total_time=900`.
#![no_main]

use std::cell::RefCell;

use entropy::sparse::{decode_sparse, encode_sparse};

thread_local! {
    /// The chunk's output, reused: a chunk may claim up to 2^24 positions.
    static OUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((head, stream)) = data.split_first_chunk::<6>() else {
        return;
    };
    let bits = u32::from(head[0] % 10);
    let kept = u64::from(u16::from_le_bytes([head[1], head[2]]));
    let long = head[0] >= 0xF0;
    let len = u32::from_le_bytes([head[3], head[4], if long { head[5] } else { 0 }, 0]) as usize;
    OUT.with_borrow_mut(|out| {
        out.resize(len, 0xAA);
        let out = &mut out[..len];
        if decode_sparse(stream, bits, kept, out).is_err() {
            return;
        }
        assert!((1..=8).contains(&bits), "a width of {bits} bits decoded");
        assert_eq!(out.iter().filter(|&&c| c != 0).count() as u64, kept, "the kept count");
        assert!(
            out.iter().all(|&c| u32::from(c) >> bits == 0),
            "a code wider than {bits} bits"
        );
        let mut again = Vec::new();
        assert_eq!(encode_sparse(out, bits, &mut again), Ok(kept));
        assert!(again == stream, "a decoded chunk must re-encode to its own stream");
    });
});
