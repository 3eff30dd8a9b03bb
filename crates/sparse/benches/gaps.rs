//! Gap encoding and CSC/CSR building of a 100 M-element f32 blob at ~1 %
//! density, against a plain `copy_from_slice` of the same blob (the "memcpy
//! pass" baseline: one read and one write of every byte).

use std::sync::LazyLock;

use divan::{black_box, Bencher};
use sparse::{decode_gaps_into, encode_gaps, gap_entry_count, Csc, Csr};

fn main() {
    divan::main();
}

/// 100 M elements = 400 MB, viewed as 10 000 x 10 000.
const ROWS: usize = 10_000;
const COLS: usize = 10_000;
const LEN: usize = ROWS * COLS;

/// splitmix64: a fixed-seed generator so every run measures the same blob.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Each element is nonzero with probability 1/100, uniformly placed.
static BLOB: LazyLock<Vec<f32>> = LazyLock::new(|| {
    let mut state = 42u64;
    (0..LEN)
        .map(|_| {
            let r = splitmix64(&mut state);
            if r.is_multiple_of(100) {
                ((r >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            } else {
                0.0
            }
        })
        .collect()
});

#[divan::bench(sample_count = 15)]
fn memcpy_pass(bencher: Bencher) {
    let blob = &*BLOB;
    let mut copy = vec![0.0f32; blob.len()];
    bencher.bench_local(|| {
        copy.copy_from_slice(black_box(blob));
        black_box(&copy);
    });
}

#[divan::bench(sample_count = 15, args = [4, 8, 16])]
fn encode(bencher: Bencher, index_bits: u8) {
    let blob = &*BLOB;
    bencher.bench_local(|| encode_gaps(black_box(blob), index_bits).unwrap());
}

#[divan::bench(sample_count = 15, args = [8])]
fn entry_count(bencher: Bencher, index_bits: u8) {
    let blob = &*BLOB;
    bencher.bench_local(|| gap_entry_count(black_box(blob), index_bits).unwrap());
}

#[divan::bench(sample_count = 15)]
fn decode(bencher: Bencher) {
    let encoded = encode_gaps(&BLOB, 8).unwrap();
    bencher.bench_local(|| black_box(&encoded).decode().unwrap());
}

/// Decoding into a reused buffer: no page faults of a fresh 400 MB allocation.
#[divan::bench(sample_count = 15)]
fn decode_into(bencher: Bencher) {
    let encoded = encode_gaps(&BLOB, 8).unwrap();
    let mut out = vec![0.0f32; LEN];
    bencher.bench_local(|| decode_gaps_into(&encoded.values, encoded.gaps.as_gaps_ref(), black_box(&mut out)).unwrap());
}

#[divan::bench(sample_count = 15)]
fn csr_build(bencher: Bencher) {
    let blob = &*BLOB;
    bencher.bench_local(|| Csr::from_dense(black_box(blob), &[ROWS, COLS]).unwrap());
}

#[divan::bench(sample_count = 15)]
fn csc_build(bencher: Bencher) {
    let blob = &*BLOB;
    bencher.bench_local(|| Csc::from_dense(black_box(blob), &[ROWS, COLS]).unwrap());
}
