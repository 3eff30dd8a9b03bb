//! Property tests of the coder: roundtrips, the length limit, Kraft sums, sizes, optimality against a textbook
//! Huffman and against brute force, determinism and the pinned format.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use entropy::{decode, encode, encoded_len, CodeLengths, DecodeError, EncodedStream, Histogram, MAX_CODE_LEN};
use proptest::prelude::*;

/// splitmix64, for streams drawn from a seed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stream over `alphabet` symbols where symbol `floor(alphabet * u^(skew + 1))` is drawn for uniform `u`: low
/// symbols dominate more as `skew` grows (skew 0 is uniform).
fn skewed(seed: u64, len: usize, alphabet: u32, skew: u32) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            let u = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
            ((alphabet as f64 * u.powi(skew as i32 + 1)) as u32).min(alphabet - 1) as u8
        })
        .collect()
}

fn skewed_streams() -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), 0usize..20_000, 1u32..=256, 0u32..6)
        .prop_map(|(seed, len, alphabet, skew)| skewed(seed, len, alphabet, skew))
}

fn any_streams() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..3000),
        skewed_streams(),
        // Few distinct symbols, including one.
        (
            prop::collection::vec(any::<u8>(), 1..4),
            prop::collection::vec(any::<prop::sample::Index>(), 0..3000)
        )
            .prop_map(|(symbols, picks)| picks.iter().map(|pick| *pick.get(&symbols)).collect()),
    ]
}

/// Counts for up to 256 symbols, from tiny to 2^50, with zeros.
fn any_counts() -> impl Strategy<Value = [u64; 256]> {
    prop::collection::vec(prop_oneof![Just(0u64), 1u64..10, 1u64..100_000, 1u64..(1 << 50)], 256).prop_map(|counts| {
        let mut array = [0u64; 256];
        array.copy_from_slice(&counts);
        array
    })
}

/// Textbook Huffman with unlimited lengths: the total payload bits (the sum of the merged weights) and the longest
/// code.
fn textbook_huffman(counts: &[u64; 256]) -> (u128, u32) {
    let mut heap: BinaryHeap<Reverse<(u128, usize)>> = BinaryHeap::new();
    let mut parent: Vec<usize> = Vec::new();
    for &count in counts.iter().filter(|&&count| count > 0) {
        heap.push(Reverse((u128::from(count), parent.len())));
        parent.push(usize::MAX);
    }
    let leaves = parent.len();
    if leaves <= 1 {
        return (u128::from(counts.iter().sum::<u64>()), leaves as u32);
    }
    let mut total = 0u128;
    while heap.len() > 1 {
        let Reverse((a, ia)) = heap.pop().unwrap();
        let Reverse((b, ib)) = heap.pop().unwrap();
        let node = parent.len();
        parent.push(usize::MAX);
        parent[ia] = node;
        parent[ib] = node;
        total += a + b;
        heap.push(Reverse((a + b, node)));
    }
    let depth = |mut node: usize| {
        let mut depth = 0;
        while parent[node] != usize::MAX {
            node = parent[node];
            depth += 1;
        }
        depth
    };
    (total, (0..leaves).map(depth).max().unwrap())
}

fn total_bits(lengths: &CodeLengths, counts: &[u64; 256]) -> u128 {
    counts
        .iter()
        .zip(lengths.lengths())
        .map(|(&count, &length)| u128::from(count) * u128::from(length))
        .sum()
}

/// The least `sum count * len` over all length vectors in `1..=max_len` with Kraft sum at most 1.
fn brute_force_optimum(counts: &[u64], max_len: u8) -> u128 {
    fn search(counts: &[u64], max_len: u8, kraft: f64, bits: u128, best: &mut u128) {
        let Some((&count, rest)) = counts.split_first() else {
            *best = (*best).min(bits);
            return;
        };
        for length in 1..=max_len {
            let kraft = kraft + 0.5f64.powi(length as i32);
            if kraft <= 1.0 {
                search(
                    rest,
                    max_len,
                    kraft,
                    bits + u128::from(count) * u128::from(length),
                    best,
                );
            }
        }
    }
    let mut best = u128::MAX;
    search(counts, max_len, 0.0, 0, &mut best);
    best
}

proptest! {
    #[test]
    fn any_stream_roundtrips(data in any_streams()) {
        let encoded = encode(&data);
        prop_assert_eq!(decode(&encoded), Ok(data.clone()));
        let stream = EncodedStream::parse(&encoded).unwrap();
        prop_assert_eq!(stream.symbol_count(), data.len() as u64);
        prop_assert_eq!(stream.encoded_len(), encoded.len());
    }

    #[test]
    fn encoded_size_is_what_the_size_functions_report(data in any_streams()) {
        let encoded = encode(&data);
        prop_assert_eq!(encoded.len() as u64, encoded_len(&data));
        let report = Histogram::of(&data).size_report();
        prop_assert_eq!(report.encoded_bytes, encoded.len() as u64);
        prop_assert_eq!(report.payload_bits.div_ceil(8), EncodedStream::parse(&encoded).unwrap().payload().len() as u64);
        // Huffman never beats the Shannon bound, and is within one bit a symbol of it.
        prop_assert!(report.payload_bits as f64 >= report.entropy_bits * (1.0 - 1e-12));
        prop_assert!((report.payload_bits as f64) < report.entropy_bits + report.symbols as f64 + 1e-9 || report.distinct == 1);
    }

    #[test]
    fn lengths_respect_the_limit_and_kraft_is_one(counts in any_counts(), limit in 1u8..=MAX_CODE_LEN) {
        let histogram = Histogram::from_counts(counts).unwrap();
        let distinct = histogram.distinct();
        let Some(lengths) = CodeLengths::limited(&histogram, limit) else {
            prop_assert!(distinct > 1 << limit);
            return Ok(());
        };
        prop_assert!(lengths.max_length() <= limit);
        for symbol in 0..=255u8 {
            prop_assert_eq!(lengths.length(symbol) > 0, histogram.count(symbol) > 0);
        }
        match distinct {
            0 => prop_assert_eq!(lengths.kraft_sum(), 0),
            1 => prop_assert_eq!(lengths.kraft_sum(), 1 << 14),
            _ => prop_assert_eq!(lengths.kraft_sum(), 1 << 15),
        }
        // The checked constructor accepts what package-merge builds.
        prop_assert_eq!(CodeLengths::new(*lengths.lengths()), Ok(lengths.clone()));
        // A tighter limit never spends fewer bits.
        if limit < MAX_CODE_LEN {
            let looser = CodeLengths::limited(&histogram, limit + 1).unwrap();
            prop_assert!(total_bits(&looser, &counts) <= total_bits(&lengths, &counts));
        }
    }

    #[test]
    fn equals_textbook_huffman_where_the_limit_does_not_bind(counts in any_counts()) {
        let histogram = Histogram::from_counts(counts).unwrap();
        let ours = total_bits(&histogram.code_lengths(), &counts);
        let (textbook, depth) = textbook_huffman(&counts);
        if histogram.distinct() >= 2 {
            if depth <= u32::from(MAX_CODE_LEN) {
                prop_assert_eq!(ours, textbook);
            } else {
                prop_assert!(ours >= textbook);
            }
        }
    }

    #[test]
    fn streams_equal_textbook_huffman(data in skewed_streams()) {
        let histogram = Histogram::of(&data);
        let (textbook, depth) = textbook_huffman(histogram.counts());
        prop_assume!(histogram.distinct() >= 2 && depth <= 15);
        prop_assert_eq!(u128::from(histogram.size_report().payload_bits), textbook);
    }

    #[test]
    fn package_merge_is_optimal_when_the_limit_binds(
        counts in prop::collection::vec(prop_oneof![1u64..4, 1u64..1000, 1u64..1_000_000], 2..=6),
        slack in 0u8..3,
    ) {
        let min_limit = (counts.len() as u32).next_power_of_two().trailing_zeros() as u8;
        let limit = (min_limit + slack).max(1);
        let mut array = [0u64; 256];
        array[..counts.len()].copy_from_slice(&counts);
        let lengths = CodeLengths::limited(&Histogram::from_counts(array).unwrap(), limit).unwrap();
        prop_assert_eq!(total_bits(&lengths, &array), brute_force_optimum(&counts, limit));
    }

    #[test]
    fn encoding_is_deterministic(data in any_streams()) {
        prop_assert_eq!(encode(&data), encode(&data.clone()));
    }
}

/// Fibonacci counts over 24 symbols make Huffman's tree a 23-deep chain: the limit binds, and still holds.
#[test]
fn fibonacci_counts_hit_the_limit() {
    let mut counts = [0u64; 256];
    let (mut a, mut b) = (1u64, 1u64);
    for count in counts.iter_mut().take(24) {
        *count = a;
        (a, b) = (b, a + b);
    }
    let histogram = Histogram::from_counts(counts).unwrap();
    let (textbook, depth) = textbook_huffman(&counts);
    assert_eq!(depth, 23);
    let lengths = histogram.code_lengths();
    assert_eq!(lengths.max_length(), MAX_CODE_LEN);
    assert_eq!(lengths.kraft_sum(), 1 << 15);
    assert!(total_bits(&lengths, &counts) > textbook);
    // A stream with these counts roundtrips through the slow path of the longest codes.
    let data: Vec<u8> = (0..24u8)
        .flat_map(|symbol| std::iter::repeat_n(symbol, counts[symbol as usize] as usize))
        .collect();
    let mut shuffled = data.clone();
    let mut state = 7;
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, (splitmix64(&mut state) % (i as u64 + 1)) as usize);
    }
    assert_eq!(decode(&encode(&shuffled)).unwrap(), shuffled);
}

/// 256 symbols, all equally likely: 8 bits each, the whole 128-byte table.
#[test]
fn all_256_symbols() {
    let data: Vec<u8> = (0..4096).map(|i| (i % 256) as u8).collect();
    let encoded = encode(&data);
    let stream = EncodedStream::parse(&encoded).unwrap();
    assert!(stream.code_lengths().lengths().iter().all(|&length| length == 8));
    assert_eq!(
        stream.payload(),
        &data[..],
        "canonical 8-bit codes of symbols 0..=255 are the symbols themselves"
    );
    // count 4096 (2 bytes), payload 4096 (2 bytes), max symbol, 128 table bytes, payload.
    assert_eq!(encoded.len(), 2 + 2 + 1 + 128 + 4096);
    assert_eq!(decode(&encoded).unwrap(), data);
}

#[test]
fn the_empty_stream_is_one_zero_byte() {
    assert_eq!(encode(&[]), [0]);
    assert_eq!(encoded_len(&[]), 1);
    assert_eq!(decode(&[0]), Ok(vec![]));
    assert_eq!(Histogram::of(&[]).entropy_bits(), 0.0);
}

/// A lone symbol takes one 0 bit per symbol.
#[test]
fn a_lone_symbol_takes_one_bit() {
    let data = vec![7u8; 20];
    let encoded = encode(&data);
    // count 20, payload 3 bytes, max symbol 7, table 0x00 0x00 0x00 0x01 (symbol 7 has length 1), 3 zero bytes.
    assert_eq!(encoded, [20, 3, 7, 0x00, 0x00, 0x00, 0x01, 0, 0, 0]);
    assert_eq!(decode(&encoded).unwrap(), data);
    assert_eq!(Histogram::of(&data).entropy_bits(), 0.0);
}

/// The format pinned by a hand-worked example: counts 0:3, 1:1, 2:1 give lengths 1, 2, 2, canonical codes 0, 10,
/// 11; the stream 0 0 1 2 0 is the bits 0 0 10 11 0, padded: 0010_1100.
#[test]
fn the_format_by_hand() {
    let encoded = encode(&[0, 0, 1, 2, 0]);
    assert_eq!(encoded, [5, 1, 2, 0x12, 0x20, 0b0010_1100]);
}

/// Equal counts: lower symbols never get longer codes.
#[test]
fn ties_favour_lower_symbols() {
    let lengths = Histogram::of(&[3, 2, 1]).code_lengths();
    assert_eq!(&lengths.lengths()[..4], &[0, 1, 2, 2]);
    let lengths = Histogram::of(&[9, 8, 7, 6, 5]).code_lengths();
    assert_eq!(&lengths.lengths()[5..10], &[2, 2, 2, 3, 3]);
}

/// A leaf goes before a package of equal weight: of the optimal codes, the flatter one (here the longest code has 3
/// bits, where placing the package first gives 2, 4, 4, 2, 3, 2 at the same total).
#[test]
fn ties_between_leaves_and_packages_favour_leaves() {
    let histogram = |counts: &[u64]| {
        let mut array = [0u64; 256];
        array[..counts.len()].copy_from_slice(counts);
        Histogram::from_counts(array).unwrap()
    };
    let lengths = histogram(&[7, 3, 2, 6, 4, 5]).code_lengths();
    assert_eq!(&lengths.lengths()[..6], &[2, 3, 3, 2, 3, 3]);
    let lengths = CodeLengths::limited(&histogram(&[7, 5, 1, 8, 8, 3, 6, 3]), 4).unwrap();
    assert_eq!(&lengths.lengths()[..8], &[3, 3, 4, 2, 3, 3, 3, 4]);
}

#[test]
fn entropy_bound_of_a_known_distribution() {
    // p = 1/2, 1/4, 1/4: 1.5 bits a symbol, which Huffman meets exactly.
    let data = [0u8, 0, 1, 2];
    let report = Histogram::of(&data).size_report();
    assert!((report.entropy_bits - 6.0).abs() < 1e-12);
    assert_eq!(report.payload_bits, 6);
    assert!((entropy::entropy_bits(&data) - 6.0).abs() < 1e-12);
}

#[test]
fn checked_tables() {
    let mut lengths = [0u8; 256];
    assert!(CodeLengths::new(lengths).is_ok(), "the empty table");
    lengths[3] = 1;
    assert!(CodeLengths::new(lengths).is_ok(), "a lone symbol of length 1");
    lengths[3] = 2;
    assert_eq!(
        CodeLengths::new(lengths),
        Err(DecodeError::Incomplete {
            kraft: 1 << 13,
            symbols: 1
        })
    );
    lengths[3] = 16;
    assert_eq!(
        CodeLengths::new(lengths),
        Err(DecodeError::LengthTooLong { symbol: 3, length: 16 })
    );
    let mut lengths = [0u8; 256];
    lengths[..3].copy_from_slice(&[1, 1, 2]);
    assert_eq!(
        CodeLengths::new(lengths),
        Err(DecodeError::OverSubscribed { kraft: 5 << 13 })
    );
    lengths[..3].copy_from_slice(&[1, 2, 3]);
    assert_eq!(
        CodeLengths::new(lengths),
        Err(DecodeError::Incomplete {
            kraft: 7 << 12,
            symbols: 3
        })
    );
    assert!(
        CodeLengths::limited(&Histogram::of(&[0, 1, 2]), 1).is_none(),
        "3 symbols need 2 bits"
    );
    assert!(CodeLengths::limited(&Histogram::of(&[0, 1]), 0).is_none());
    assert!(CodeLengths::limited(&Histogram::of(&[0, 1]), 16).is_none());
}

#[test]
fn encode_with_refuses_a_symbol_without_code() {
    let lengths = Histogram::of(&[0, 1]).code_lengths();
    let mut out = vec![9];
    let error = entropy::encode_with(&[0, 1, 5, 5], &lengths, &mut out).unwrap_err();
    assert_eq!(
        error,
        entropy::EncodeError::SymbolWithoutCode { symbol: 5, position: 2 }
    );
    assert_eq!(out, [9], "nothing appended");
    // A code with symbols the data does not use is written as given.
    entropy::encode_with(&[1, 1], &lengths, &mut out).unwrap();
    assert_eq!(out, [9, 2, 1, 1, 0x11, 0b1100_0000]);
}

#[test]
fn streams_back_to_back() {
    let (a, b) = (skewed(1, 1000, 32, 2), skewed(2, 77, 200, 0));
    let mut bytes = Vec::new();
    entropy::encode_into(&a, &mut bytes);
    entropy::encode_into(&b, &mut bytes);
    let (first, rest) = EncodedStream::parse_prefix(&bytes).unwrap();
    let (second, rest) = EncodedStream::parse_prefix(rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!(first.decode().unwrap(), a);
    assert_eq!(second.decode().unwrap(), b);
    assert!(matches!(
        EncodedStream::parse(&bytes),
        Err(DecodeError::TrailingBytes { .. })
    ));
    let mut short = vec![0; b.len() - 1];
    assert_eq!(
        second.decode_into(&mut short),
        Err(DecodeError::OutputLength { expected: 77, got: 76 })
    );
}
