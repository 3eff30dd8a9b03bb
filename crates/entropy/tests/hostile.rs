//! Hostile input: truncations, flips, random bytes, broken tables, and each guarded invariant by name; the corpus
//! in tests/corpus replayed (also the seed corpus of the fuzz target in crates/entropy/fuzz).

use std::path::Path;

use entropy::fuzzing::check_decode;
use entropy::{decode, encode, DecodeError};
use proptest::prelude::*;

/// A few valid encodings: empty, lone symbol, small, skewed with long codes, all 256 symbols.
fn valid_encodings() -> Vec<Vec<u8>> {
    let mut fibonacci = Vec::new();
    let (mut a, mut b) = (1usize, 1usize);
    for symbol in 0..20u8 {
        fibonacci.extend(std::iter::repeat_n(symbol, a));
        (a, b) = (b, a + b);
    }
    fibonacci.reverse();
    vec![
        encode(&[]),
        encode(&[7; 20]),
        encode(&[0, 0, 1, 2, 0]),
        encode(&fibonacci),
        encode(&(0..=255u8).cycle().take(700).collect::<Vec<_>>()),
    ]
}

#[test]
fn every_truncation_is_refused() {
    for encoded in valid_encodings() {
        assert!(decode(&encoded).is_ok());
        for len in 0..encoded.len() {
            let result = decode(&encoded[..len]);
            assert!(
                result.is_err(),
                "a {len}-byte prefix of a {}-byte stream decoded",
                encoded.len()
            );
            check_decode(&encoded[..len]);
        }
    }
}

#[test]
fn every_appended_byte_is_refused() {
    for encoded in valid_encodings() {
        for byte in [0u8, 1, 0x80, 0xff] {
            let mut longer = encoded.clone();
            longer.push(byte);
            assert!(matches!(decode(&longer), Err(DecodeError::TrailingBytes { .. })));
        }
    }
}

/// Every single-bit flip either fails or decodes to a stream that re-encodes to the flipped bytes.
#[test]
fn every_bit_flip_is_refused_or_consistent() {
    for encoded in valid_encodings() {
        for bit in 0..encoded.len() * 8 {
            let mut flipped = encoded.clone();
            flipped[bit / 8] ^= 0x80 >> (bit % 8);
            check_decode(&flipped);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check_decode(&bytes);
    }

    /// Random bytes after a plausible header, so the table and payload checks are reached often.
    #[test]
    fn random_payloads_never_panic(count in 1u8..60, max_symbol in 0u8..8, rest in prop::collection::vec(any::<u8>(), 0..40)) {
        let mut bytes = vec![count, (rest.len() as u8).saturating_sub(max_symbol / 2 + 1), max_symbol];
        bytes.extend(rest);
        check_decode(&bytes);
    }
}

/// Header, table and payload assembled by hand.
fn stream(count: &[u8], payload_len: &[u8], max_symbol: u8, table: &[u8], payload: &[u8]) -> Vec<u8> {
    [count, payload_len, &[max_symbol], table, payload].concat()
}

#[test]
fn each_invariant_by_name() {
    use DecodeError::*;
    type Expected = fn(&DecodeError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        (
            "over-subscribed: lengths 1, 1, 1",
            stream(&[1], &[1], 2, &[0x11, 0x10], &[0]),
            |e| matches!(e, OverSubscribed { kraft: 49152 }),
        ),
        ("incomplete: lengths 1, 2", stream(&[1], &[1], 1, &[0x12], &[0]), |e| {
            matches!(
                e,
                Incomplete {
                    kraft: 24576,
                    symbols: 2
                }
            )
        }),
        ("a lone symbol of length 2", stream(&[1], &[1], 0, &[0x20], &[0]), |e| {
            matches!(e, Incomplete { symbols: 1, .. })
        }),
        ("untrimmed table", stream(&[1], &[1], 2, &[0x11, 0x00], &[0]), |e| {
            matches!(e, UntrimmedTable { max_symbol: 2 })
        }),
        ("padding nibble", stream(&[1], &[1], 0, &[0x13], &[0]), |e| {
            matches!(e, TablePadding { nibble: 3 })
        }),
        (
            "2^60 symbols in 13 bytes",
            stream(
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10],
                &[1],
                0,
                &[0x10],
                &[0],
            ),
            |e| matches!(e, CountExceedsPayload { count, min_len: 1, payload_bytes: 1 } if *count == 1 << 60),
        ),
        (
            "9 one-bit symbols in one byte",
            stream(&[9], &[1], 1, &[0x11], &[0]),
            |e| matches!(e, CountExceedsPayload { count: 9, .. }),
        ),
        (
            "a payload of 2^62 bytes",
            stream(
                &[1],
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40],
                0,
                &[0x10],
                &[0],
            ),
            |e| matches!(e, TruncatedPayload { needed, available: 1, .. } if *needed == 1 << 62),
        ),
        (
            "payload cut short",
            stream(&[20], &[3], 7, &[0, 0, 0, 1], &[0, 0]),
            |e| {
                matches!(
                    e,
                    TruncatedPayload {
                        needed: 3,
                        available: 2,
                        ..
                    }
                )
            },
        ),
        (
            "a payload byte 2-bit codes cannot reach",
            stream(&[3], &[2], 2, &[0x12, 0x20], &[0, 0]),
            |e| {
                matches!(
                    e,
                    PayloadTooLong {
                        count: 3,
                        max_len: 2,
                        payload_bytes: 2
                    }
                )
            },
        ),
        (
            "codes run past the payload",
            stream(&[5], &[1], 2, &[0x12, 0x20], &[0xff]),
            |e| {
                matches!(
                    e,
                    PayloadExhausted {
                        count: 5,
                        needed_bits: 9,
                        payload_bits: 8
                    }
                )
            },
        ),
        (
            "a 1 bit where the lone code is 0",
            stream(&[3], &[1], 0, &[0x10], &[0b0100_0000]),
            |e| matches!(e, InvalidCode { bit_offset: 1 }),
        ),
        (
            "an unused payload byte",
            stream(&[8], &[2], 2, &[0x12, 0x20], &[0, 0]),
            |e| {
                matches!(
                    e,
                    UnusedPayload {
                        used_bytes: 1,
                        payload_bytes: 2
                    }
                )
            },
        ),
        ("nonzero padding", stream(&[3], &[1], 1, &[0x11], &[0b0000_0001]), |e| {
            matches!(e, NonZeroPadding { bits: 5 })
        }),
        ("trailing garbage", [encode(&[1, 2, 3]), vec![0]].concat(), |e| {
            matches!(e, TrailingBytes { extra: 1, .. })
        }),
        ("trailing garbage after the empty stream", vec![0, 0], |e| {
            matches!(e, TrailingBytes { offset: 1, extra: 1 })
        }),
        ("overlong varint", vec![0x80, 0x00], |e| {
            matches!(
                e,
                BadVarint {
                    what: "symbol count",
                    ..
                }
            )
        }),
        ("varint above 2^64", vec![0xff; 10], |e| matches!(e, BadVarint { .. })),
        ("varint of 11 bytes", [vec![0xff; 9], vec![0x81, 0x00]].concat(), |e| {
            matches!(e, BadVarint { .. })
        }),
        ("no payload length", vec![5], |e| {
            matches!(
                e,
                Truncated {
                    what: "payload length",
                    ..
                }
            )
        }),
        ("no table", vec![5, 1, 200], |e| {
            matches!(
                e,
                Truncated {
                    what: "code-length table",
                    needed: 101,
                    available: 0,
                    ..
                }
            )
        }),
        ("empty input", vec![], |e| {
            matches!(
                e,
                Truncated {
                    what: "symbol count",
                    ..
                }
            )
        }),
    ];
    for (name, bytes, expected) in cases {
        let error = decode(&bytes).expect_err(name);
        assert!(expected(&error), "{name}: got {error:?}");
        check_decode(&bytes);
    }
}

/// The corpus: files named `ok-*` decode; files named `err-<Variant>-*` fail with that variant. Every file also
/// goes through the fuzz target's checks.
#[test]
fn corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = std::fs::read(&path).unwrap();
        check_decode(&bytes);
        let result = decode(&bytes);
        if name.starts_with("ok-") {
            assert!(result.is_ok(), "{name}: {result:?}");
        } else if let Some(rest) = name.strip_prefix("err-") {
            let variant = rest.split('-').next().unwrap();
            let error = format!("{:?}", result.expect_err(&name));
            assert_eq!(
                error.split([' ', '{', '(']).next(),
                Some(variant),
                "{name}: got {error}"
            );
        } else {
            // Inputs the fuzzer found: checked above, whatever they decode to.
        }
        count += 1;
    }
    assert!(count >= 20, "the corpus at {} has only {count} inputs", dir.display());
}

/// Writes the named corpus. Run by hand when the seeds should change:
/// `cargo test -p entropy --test hostile -- --ignored`.
#[test]
#[ignore]
fn regenerate_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    std::fs::create_dir_all(&dir).unwrap();
    let valid = valid_encodings();
    let names = ["empty", "lone-symbol", "small", "fibonacci", "all-256"];
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, bytes) in names.iter().zip(&valid) {
        files.push((format!("ok-{name}"), bytes.clone()));
    }
    let skewed: Vec<u8> = (0..3000u32)
        .map(|i| if i % 3 == 0 { (i % 31 + 1) as u8 } else { 0 })
        .collect();
    files.push(("ok-skewed-5bit".into(), encode(&skewed)));
    let fibonacci = &valid[3];
    files.push(("err-Truncated-fibonacci-table".into(), fibonacci[..8].to_vec()));
    files.push((
        "err-TruncatedPayload-small".into(),
        valid[2][..valid[2].len() - 1].to_vec(),
    ));
    files.push(("err-TrailingBytes-small".into(), [valid[2].clone(), vec![0]].concat()));
    files.push((
        "err-OverSubscribed-3x1".into(),
        stream(&[1], &[1], 2, &[0x11, 0x10], &[0]),
    ));
    files.push(("err-Incomplete-1-2".into(), stream(&[1], &[1], 1, &[0x12], &[0])));
    files.push((
        "err-Incomplete-lone-length-2".into(),
        stream(&[1], &[1], 0, &[0x20], &[0]),
    ));
    files.push(("err-UntrimmedTable".into(), stream(&[1], &[1], 2, &[0x11, 0x00], &[0])));
    files.push(("err-TablePadding".into(), stream(&[1], &[1], 0, &[0x13], &[0])));
    files.push((
        "err-CountExceedsPayload-2pow60".into(),
        stream(
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10],
            &[1],
            0,
            &[0x10],
            &[0],
        ),
    ));
    files.push((
        "err-TruncatedPayload-2pow62-bytes".into(),
        stream(
            &[1],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40],
            0,
            &[0x10],
            &[0],
        ),
    ));
    files.push((
        "err-PayloadTooLong".into(),
        stream(&[3], &[2], 2, &[0x12, 0x20], &[0, 0]),
    ));
    files.push((
        "err-PayloadExhausted".into(),
        stream(&[5], &[1], 2, &[0x12, 0x20], &[0xff]),
    ));
    files.push((
        "err-InvalidCode-lone".into(),
        stream(&[3], &[1], 0, &[0x10], &[0b0100_0000]),
    ));
    files.push((
        "err-UnusedPayload".into(),
        stream(&[8], &[2], 2, &[0x12, 0x20], &[0, 0]),
    ));
    files.push((
        "err-NonZeroPadding".into(),
        stream(&[3], &[1], 1, &[0x11], &[0b0000_0001]),
    ));
    files.push(("err-BadVarint-overlong".into(), vec![0x80, 0x00]));
    files.push(("err-BadVarint-above-u64".into(), vec![0xff; 10]));
    files.push(("err-Truncated-empty-input".into(), vec![]));
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
