//! The gap codec: hand-worked examples, edge runs, and property tests.

use proptest::prelude::*;
use sparse::{decode_gaps, decode_gaps_into, encode_gaps, gap_entry_count, Gaps, GapsRef, SparseError};

/// Gaps widened to usize for comparisons.
fn widen(gaps: &Gaps) -> Vec<usize> {
    match gaps {
        Gaps::U8(g) => g.iter().map(|&x| usize::from(x)).collect(),
        Gaps::U16(g) => g.iter().map(|&x| usize::from(x)).collect(),
    }
}

fn bits_of(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Checks `flat` encodes to exactly `values`/`gaps` and decodes back.
fn check_example(flat: &[f32], index_bits: u8, values: &[f32], gaps: &[usize]) {
    let encoded = encode_gaps(flat, index_bits).unwrap();
    assert_eq!(bits_of(&encoded.values), bits_of(values), "values, B={index_bits}");
    assert_eq!(widen(&encoded.gaps), gaps, "gaps, B={index_bits}");
    assert_eq!(encoded.dense_len, flat.len());
    assert_eq!(gap_entry_count(flat, index_bits).unwrap(), values.len());
    let decoded = encoded.decode().unwrap();
    let normalized: Vec<f32> = flat.iter().map(|&v| if v == 0.0 { 0.0 } else { v }).collect();
    assert_eq!(bits_of(&decoded), bits_of(&normalized));
}

// Each example was walked by hand through the rule; the comments show the walk.

#[test]
fn example_b1_filler_between_values() {
    // max gap 1. [1] stored (gap 0); zero (run 1); zero with run 1 = max:
    // filler (0, 1); zero (run 1); 2 stored with gap 1.
    check_example(&[1.0, 0.0, 0.0, 0.0, 2.0], 1, &[1.0, 0.0, 2.0], &[0, 1, 1]);
}

#[test]
fn example_b2_leading_filler_and_trailing_zeros() {
    // max gap 3. Zeros 0..=2 (run 3); zero 3 with run 3: filler (0, 3);
    // 5 with gap 0; zeros 5, 6 (run 2) end the blob: (0, 1).
    check_example(&[0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0], 2, &[0.0, 5.0, 0.0], &[3, 0, 1]);
}

#[test]
fn example_b3_all_zero_longer_than_max() {
    // max gap 7. Ten zeros: zero 7 is a filler (0, 7); zeros 8, 9 (run 2): (0, 1).
    check_example(&[0.0; 10], 3, &[0.0, 0.0], &[7, 1]);
}

#[test]
fn example_b1_all_zero_exact_multiple() {
    // max gap 1. Zero 0 (run 1); zero 1 with run 1: filler (0, 1); nothing pending.
    check_example(&[0.0, 0.0], 1, &[0.0], &[1]);
    // Four zeros: two fillers.
    check_example(&[0.0; 4], 1, &[0.0, 0.0], &[1, 1]);
}

#[test]
fn example_single_zero_and_empty() {
    for bits in [1, 8, 16] {
        check_example(&[0.0], bits, &[0.0], &[0]);
        check_example(&[], bits, &[], &[]);
    }
}

#[test]
fn example_negative_zero_and_nan() {
    // -0.0 is a zero (skipped, decodes as +0.0); NaN is nonzero.
    check_example(&[-0.0, 3.0, f32::NAN, -0.0], 4, &[3.0, f32::NAN, 0.0], &[1, 0, 0]);
}

#[test]
fn example_b8_gap_200_is_unsigned() {
    // The int8 format wrapped gaps >= 128; u8 holds 200.
    let mut flat = vec![0.0; 200];
    flat.push(1.0);
    check_example(&flat, 8, &[1.0], &[200]);
    assert_eq!(encode_gaps(&flat, 8).unwrap().gaps, Gaps::U8(vec![200]));
}

#[test]
fn example_b16_filler_then_value() {
    // max gap 65535. Zeros 0..=65534 (run 65535); zero 65535 is a filler;
    // 70000 - 65536 = 4464 zeros remain before the 1.
    let mut flat = vec![0.0; 70_000];
    flat.push(1.0);
    check_example(&flat, 16, &[0.0, 1.0], &[65535, 4464]);
    assert!(matches!(encode_gaps(&flat, 16).unwrap().gaps, Gaps::U16(_)));
}

#[test]
fn runs_at_the_gap_limit_for_every_b() {
    // A run of k zeros before a value v: floor(k / 2^B) fillers, then (v, k mod 2^B).
    for bits in 1..=16u8 {
        let period = 1usize << bits;
        for k in [
            period - 2,
            period - 1,
            period,
            period + 1,
            2 * period - 1,
            2 * period,
            2 * period + 1,
        ] {
            let mut flat = vec![0.0; k];
            flat.push(7.0);
            let fillers = k / period;
            let mut values = vec![0.0; fillers];
            values.push(7.0);
            let mut gaps = vec![period - 1; fillers];
            gaps.push(k % period);
            check_example(&flat, bits, &values, &gaps);

            // The same run at the end of a blob, after a value: fillers for
            // every full 2^B zeros, then (0, rest - 1) if any zeros remain.
            let mut trailing = vec![7.0];
            trailing.extend(std::iter::repeat_n(0.0, k));
            let mut values = vec![7.0];
            let mut gaps = vec![0];
            values.extend(std::iter::repeat_n(0.0, fillers));
            gaps.extend(std::iter::repeat_n(period - 1, fillers));
            if k % period > 0 {
                values.push(0.0);
                gaps.push(k % period - 1);
            }
            check_example(&trailing, bits, &values, &gaps);
        }
    }
}

#[test]
fn invalid_index_bits() {
    for bits in [0u8, 17, 255] {
        assert_eq!(
            encode_gaps(&[1.0], bits),
            Err(SparseError::InvalidIndexBits { index_bits: bits })
        );
        assert_eq!(
            gap_entry_count(&[1.0], bits),
            Err(SparseError::InvalidIndexBits { index_bits: bits })
        );
    }
}

#[test]
fn decode_errors() {
    assert_eq!(
        decode_gaps(&[1.0, 2.0], GapsRef::U8(&[0]), 2),
        Err(SparseError::ValuesGapsLengthMismatch { values: 2, gaps: 1 })
    );
    // Entry 1 starts at 2, skips 3 zeros -> index 5, past a 5-element blob.
    assert_eq!(
        decode_gaps(&[1.0, 2.0], GapsRef::U16(&[1, 3]), 5),
        Err(SparseError::GapOverrun {
            entry: 1,
            gap: 3,
            position: 2,
            dense_len: 5
        })
    );
    assert_eq!(
        decode_gaps(&[1.0, 2.0], GapsRef::U8(&[1, 0]), 4),
        Err(SparseError::DecodedTooShort {
            decoded: 3,
            dense_len: 4
        })
    );
    assert_eq!(
        decode_gaps(&[], GapsRef::U8(&[]), 1),
        Err(SparseError::DecodedTooShort {
            decoded: 0,
            dense_len: 1
        })
    );
    assert_eq!(decode_gaps(&[], GapsRef::U8(&[]), 0), Ok(vec![]));
    // A rejected decode leaves the caller's buffer untouched.
    let mut out = [9.0f32; 4];
    assert_eq!(
        decode_gaps_into(&[1.0, 2.0], GapsRef::U8(&[1, 0]), &mut out),
        Err(SparseError::DecodedTooShort {
            decoded: 3,
            dense_len: 4
        })
    );
    assert_eq!(out, [9.0; 4]);
    decode_gaps_into(&[1.0, 2.0], GapsRef::U8(&[1, 1]), &mut out).unwrap();
    assert_eq!(out, [0.0, 1.0, 0.0, 2.0]);
    // Hand-decoded: 2 zeros, 1.5, 0 zeros, -2, 1 zero, 0.0.
    assert_eq!(
        decode_gaps(&[1.5, -2.0, 0.0], GapsRef::U8(&[2, 0, 1]), 6),
        Ok(vec![0.0, 0.0, 1.5, -2.0, 0.0, 0.0])
    );
}

/// The rule, one element at a time, written from the spec in the test (an
/// oracle independent of the block-wise encoder).
fn oracle_encode(flat: &[f32], index_bits: u8) -> (Vec<u32>, Vec<usize>) {
    let max_gap = (1usize << index_bits) - 1;
    let (mut values, mut gaps) = (Vec::new(), Vec::new());
    let mut run = 0;
    for &v in flat {
        if v != 0.0 {
            values.push(v.to_bits());
            gaps.push(run);
            run = 0;
        } else if run == max_gap {
            values.push(0.0f32.to_bits());
            gaps.push(max_gap);
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        values.push(0.0f32.to_bits());
        gaps.push(run - 1);
    }
    (values, gaps)
}

/// A nonzero-or-special value: ordinary floats, -0.0, NaN, infinities, subnormals.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => any::<f32>(),
        1 => Just(-0.0f32),
        1 => Just(f32::NAN),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::from_bits(1)),
    ]
}

/// Index bits with a blob made of runs of zeros around the gap limit, random
/// values and a trailing zero run of up to 3 * 2^B (capped for large B).
fn runs_blob() -> impl Strategy<Value = (u8, Vec<f32>)> {
    (1u8..=16).prop_flat_map(|bits| {
        let period = 1usize << bits;
        let cap = (3 * period + 2).min(4000);
        let around_limit = prop_oneof![
            Just(period.saturating_sub(2)),
            Just(period - 1),
            Just(period),
            Just(period + 1),
            0..cap,
        ];
        let segment = (around_limit.prop_map(move |k| k.min(cap)), value());
        (Just(bits), prop::collection::vec(segment, 0..6), 0..cap).prop_map(|(bits, segments, trailing)| {
            let mut flat = Vec::new();
            for (zeros, v) in segments {
                flat.extend(std::iter::repeat_n(0.0f32, zeros));
                flat.push(v);
            }
            flat.extend(std::iter::repeat_n(0.0f32, trailing));
            (bits, flat)
        })
    })
}

/// Index bits with a blob of random length and random density.
fn random_blob() -> impl Strategy<Value = (u8, Vec<f32>)> {
    (1u8..=16, 0.0f64..=1.0, 0usize..3000).prop_flat_map(|(bits, density, len)| {
        let element = prop::bool::weighted(density).prop_flat_map(|nonzero| {
            if nonzero {
                value().boxed()
            } else {
                prop_oneof![Just(0.0f32), Just(-0.0f32)].boxed()
            }
        });
        (Just(bits), prop::collection::vec(element, len))
    })
}

fn check_round_trip(bits: u8, flat: &[f32]) -> Result<(), TestCaseError> {
    let encoded = encode_gaps(flat, bits).unwrap();
    let (values, gaps) = oracle_encode(flat, bits);
    prop_assert_eq!(bits_of(&encoded.values), values);
    prop_assert_eq!(widen(&encoded.gaps), gaps);
    prop_assert_eq!(matches!(encoded.gaps, Gaps::U8(_)), bits <= 8);
    prop_assert_eq!(gap_entry_count(flat, bits).unwrap(), encoded.values.len());
    let decoded = decode_gaps(&encoded.values, encoded.gaps.as_gaps_ref(), flat.len()).unwrap();
    let expected: Vec<u32> = flat.iter().map(|&v| if v == 0.0 { 0 } else { v.to_bits() }).collect();
    prop_assert_eq!(bits_of(&decoded), expected.clone());
    // Into a dirty buffer: every element must be overwritten.
    let mut reused = vec![f32::NAN; flat.len()];
    decode_gaps_into(&encoded.values, encoded.gaps.as_gaps_ref(), &mut reused).unwrap();
    prop_assert_eq!(bits_of(&reused), expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip_runs_near_the_limit((bits, flat) in runs_blob()) {
        check_round_trip(bits, &flat)?;
    }

    #[test]
    fn round_trip_random_density((bits, flat) in random_blob()) {
        check_round_trip(bits, &flat)?;
    }

    #[test]
    fn all_zero_blobs(bits in 1u8..=16, len in 0usize..200_000, negative in any::<bool>()) {
        let zero = if negative { -0.0f32 } else { 0.0 };
        check_round_trip(bits, &vec![zero; len])?;
    }

    /// Arbitrary entries never panic the decoder; when accepted they fill `len` exactly.
    #[test]
    fn decoder_never_panics(
        values in prop::collection::vec(any::<f32>(), 0..50),
        gaps in prop::collection::vec(any::<u16>(), 0..50),
        wide in any::<bool>(),
        len in prop_oneof![0usize..2000, Just(usize::MAX), Just(usize::MAX - 1)],
    ) {
        let narrow: Vec<u8> = gaps.iter().map(|&g| g as u8).collect();
        let gaps = if wide { GapsRef::U16(&gaps) } else { GapsRef::U8(&narrow) };
        if let Ok(dense) = decode_gaps(&values, gaps, len) {
            prop_assert_eq!(dense.len(), len);
        }
    }
}
