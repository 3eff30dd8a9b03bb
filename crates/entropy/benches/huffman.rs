//! Encode and decode throughput on a 1 MiB skewed stream, the codes of a 5-bit quantized layer in which code 0
//! dominates, against copying the same bytes in the same run. Divan prints MB/s beside each median (bytes of
//! symbols, for the coder and the copy alike).
//!
//! `cargo bench -p entropy --bench huffman`

use std::sync::LazyLock;

use divan::counter::BytesCount;
use divan::{black_box, Bencher};

fn main() {
    let codes = &*CODES;
    let encoded = &*ENCODED;
    let report = entropy::Histogram::of(codes).size_report();
    println!(
        "skewed 5-bit stream: {} symbols, {} distinct; encoded {} bytes ({:.3} bits/symbol, ratio {:.2}x); \
         Shannon bound {:.3} bits/symbol ({} bytes), Huffman {:.2}% above it",
        codes.len(),
        report.distinct,
        encoded.len(),
        report.bits_per_symbol(),
        codes.len() as f64 / encoded.len() as f64,
        report.entropy_per_symbol(),
        report.entropy_bytes(),
        100.0 * (report.payload_bits as f64 / report.entropy_bits - 1.0),
    );
    divan::main();
}

/// 1 MiB of symbols.
const LEN: usize = 1 << 20;

/// splitmix64: a fixed-seed generator so every run measures the same stream.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Code 0 (a pruned weight, or a filler) with probability 0.6; otherwise one of the 31 nonzero centroids of a
/// 5-bit layer, the middle ones (weights near zero) most often: a bell over 1..=31 from the sum of four uniforms.
static CODES: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut state = 5;
    (0..LEN)
        .map(|_| {
            let r = splitmix64(&mut state);
            if r % 10 < 6 {
                return 0;
            }
            let bell: u64 = (0..4).map(|k| (r >> (16 + 12 * k)) & 0xfff).sum(); // 0..=4 * 4095
            (1 + bell * 31 / (4 * 4096)) as u8
        })
        .collect()
});

static ENCODED: LazyLock<Vec<u8>> = LazyLock::new(|| entropy::encode(&CODES));

#[divan::bench(sample_count = 50)]
fn copy(bencher: Bencher) {
    let codes = &*CODES;
    let mut copy = vec![0u8; codes.len()];
    bencher.counter(BytesCount::new(codes.len())).bench_local(|| {
        copy.copy_from_slice(black_box(codes));
        black_box(&copy);
    });
}

#[divan::bench(sample_count = 50)]
fn encode(bencher: Bencher) {
    let codes = &*CODES;
    let mut out = Vec::with_capacity(ENCODED.len());
    bencher.counter(BytesCount::new(codes.len())).bench_local(|| {
        out.clear();
        entropy::encode_into(black_box(codes), &mut out);
        black_box(&out);
    });
}

#[divan::bench(sample_count = 50)]
fn decode(bencher: Bencher) {
    let encoded = &*ENCODED;
    let mut out = vec![0u8; CODES.len()];
    bencher.counter(BytesCount::new(CODES.len())).bench_local(|| {
        let stream = entropy::EncodedStream::parse(black_box(encoded)).unwrap();
        stream.decode_into(&mut out).unwrap();
        black_box(&out);
    });
    assert!(out == *CODES);
}

#[divan::bench(sample_count = 50)]
fn encoded_len(bencher: Bencher) {
    let codes = &*CODES;
    bencher
        .counter(BytesCount::new(codes.len()))
        .bench_local(|| entropy::encoded_len(black_box(codes)));
}

/// Short streams, as a small layer's codes are: the lookup table is built per stream, so its cost shows here.
#[divan::bench(sample_count = 200, args = [100, 1000, 10_000])]
fn decode_short(bencher: Bencher, len: usize) {
    let encoded = entropy::encode(&CODES[..len]);
    let mut out = vec![0u8; len];
    bencher.counter(BytesCount::new(len)).bench_local(|| {
        let stream = entropy::EncodedStream::parse(black_box(&encoded)).unwrap();
        stream.decode_into(&mut out).unwrap();
        black_box(&out);
    });
    assert!(out == CODES[..len]);
}
