//! Keep-fraction, global and std-multiple rules against references written here.

use proptest::prelude::*;
use prune::{global_cut, keep_fraction_cut, prune_global_in_place, prune_in_place, BlobReport, PruneError, Rule};

/// The numpy definition, by full sort: `k = floor((N-1) t)`, `cut = sort(|W|, desc)[k]`,
/// keep `|w| > cut`, else +0.0; `t = 1` or no weights: untouched. Returns the pruned blobs and
/// the cut.
fn reference_keep_fraction(blobs: &[Vec<f32>], t: f64) -> (Vec<Vec<f32>>, Option<f32>) {
    let n: usize = blobs.iter().map(|b| b.len()).sum();
    if n == 0 || t == 1.0 {
        return (blobs.to_vec(), None);
    }
    let mut magnitudes: Vec<f32> = blobs.iter().flatten().map(|w| w.abs()).collect();
    magnitudes.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let k = ((n - 1) as f64 * t).floor() as usize;
    let cut = magnitudes[k];
    let pruned = blobs
        .iter()
        .map(|b| b.iter().map(|&w| if w.abs() > cut { w } else { 0.0 }).collect())
        .collect();
    (pruned, Some(cut))
}

fn bits(weights: &[f32]) -> Vec<u32> {
    weights.iter().map(|w| w.to_bits()).collect()
}

fn nonzeros(weights: &[f32]) -> usize {
    weights.iter().filter(|w| **w != 0.0).count()
}

/// Weights with many ties, zeros of both signs, tiny and infinite values.
fn weight() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -1.0f32..1.0,
        2 => prop::sample::select(vec![0.5f32, -0.5, 0.125, -0.125, 2.0]),
        1 => prop::sample::select(vec![0.0f32, -0.0, 1.0e-42, f32::INFINITY, f32::NEG_INFINITY]),
    ]
}

fn keep_fraction() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0]
}

/// Distinct magnitudes (i + 1) * 2^-20 with pseudo-random signs, in a pseudo-random order:
/// exact in f32 for up to 2^24 weights, so no two tie.
fn distinct_weights(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        // Numerical Recipes' 64-bit LCG; the high bits are good enough for shuffling.
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut weights: Vec<f32> = (0..len).map(|i| (i + 1) as f32 / (1 << 20) as f32).collect();
    for i in (1..len).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        weights.swap(i, j);
    }
    for w in &mut weights {
        if next() & 1 == 1 {
            *w = -*w;
        }
    }
    weights
}

proptest! {
    #[test]
    fn keep_fraction_matches_the_sort_reference(
        weights in prop::collection::vec(weight(), 0..300),
        t in keep_fraction(),
    ) {
        let (expected, expected_cut) = reference_keep_fraction(std::slice::from_ref(&weights), t);
        prop_assert_eq!(keep_fraction_cut(&weights, t)?.map(f32::to_bits), expected_cut.map(f32::to_bits));

        let mut pruned = weights.clone();
        let report = prune_in_place(&mut pruned, Rule::KeepFraction(t))?;
        prop_assert_eq!(bits(&pruned), bits(&expected[0]));
        prop_assert_eq!(report.threshold, expected_cut.map(f64::from));
        prop_assert_eq!(report.nonzeros_before, nonzeros(&weights));
        prop_assert_eq!(report.nonzeros_after, nonzeros(&expected[0]));
        let expected_kept = match expected_cut {
            None => weights.len(),
            Some(cut) => weights.iter().filter(|w| w.abs() > cut).count(),
        };
        prop_assert_eq!(report.kept, expected_kept);
        prop_assert_eq!(report.requested_keep(), Some(t));
    }

    #[test]
    fn global_matches_the_reference_on_the_concatenation(
        blobs in prop::collection::vec(prop::collection::vec(weight(), 0..100), 0..5),
        t in keep_fraction(),
    ) {
        let (expected, expected_cut) = reference_keep_fraction(&blobs, t);
        let views: Vec<&[f32]> = blobs.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(global_cut(&views, t)?.map(f32::to_bits), expected_cut.map(f32::to_bits));

        let mut pruned = blobs.clone();
        let mut slices: Vec<&mut [f32]> = pruned.iter_mut().map(Vec::as_mut_slice).collect();
        let reports = prune_global_in_place(&mut slices, t)?;
        prop_assert_eq!(reports.len(), blobs.len());
        for ((before, after), (want, report)) in blobs.iter().zip(&pruned).zip(expected.iter().zip(&reports)) {
            prop_assert_eq!(bits(after), bits(want));
            prop_assert_eq!(report.len, before.len());
            prop_assert_eq!(report.nonzeros_before, nonzeros(before));
            prop_assert_eq!(report.nonzeros_after, nonzeros(want));
        }
    }
}

proptest! {
    // Blobs past 64 Ki weights take the histogram path; few cases keep this fast.
    #![proptest_config(ProptestConfig::with_cases(6))]
    #[test]
    fn large_blobs_match_the_sort_reference(
        weights in prop::collection::vec(weight(), 65_536..90_000),
        t in keep_fraction(),
    ) {
        let (expected, _) = reference_keep_fraction(std::slice::from_ref(&weights), t);
        let mut pruned = weights;
        prune_in_place(&mut pruned, Rule::KeepFraction(t))?;
        prop_assert_eq!(bits(&pruned), bits(&expected[0]));
    }
}

#[test]
fn hand_worked_keep_fractions() {
    // N = 5, t = 0.5: k = floor(4 * 0.5) = 2; |W| descending 0.7, 0.5, 0.3, 0.2, 0.1; cut 0.3.
    let mut w = [0.5f32, -0.1, 0.3, -0.7, 0.2];
    let report = prune_in_place(&mut w, Rule::KeepFraction(0.5)).unwrap();
    assert_eq!(w, [0.5, 0.0, 0.0, -0.7, 0.0]);
    assert_eq!(
        report,
        BlobReport {
            rule: Rule::KeepFraction(0.5),
            len: 5,
            threshold: Some(f64::from(0.3f32)),
            kept: 2,
            nonzeros_before: 5,
            nonzeros_after: 2,
        }
    );
    assert_eq!(report.achieved_keep(), 0.4);

    // t = 0: k = 0, the cut is the largest magnitude, and nothing is strictly above it.
    let mut w = [0.5f32, -0.1, 0.3];
    let report = prune_in_place(&mut w, Rule::KeepFraction(0.0)).unwrap();
    assert_eq!(bits(&w), bits(&[0.0, 0.0, 0.0]));
    assert_eq!(report.kept, 0);

    // Ties at the cut are all dropped: k = floor(3 * 0.5) = 1, |W| = 1, 1, 1, 0.5, cut 1.
    let mut w = [1.0f32, -1.0, 1.0, 0.5];
    prune_in_place(&mut w, Rule::KeepFraction(0.5)).unwrap();
    assert_eq!(bits(&w), bits(&[0.0, 0.0, 0.0, 0.0]));

    // Zeros: k = floor(3 * 0.9) = 2, |W| = 2, 0, 0, 0, cut 0: only 2 survives; -0.0 becomes +0.0.
    let mut w = [-0.0f32, 0.0, 2.0, 0.0];
    let report = prune_in_place(&mut w, Rule::KeepFraction(0.9)).unwrap();
    assert_eq!(bits(&w), bits(&[0.0, 0.0, 2.0, 0.0]));
    assert_eq!((report.kept, report.nonzeros_before), (1, 1));

    // t = 1 leaves everything, even the smallest weight and the sign of -0.0.
    let mut w = [0.5f32, -0.0, 1.0e-30];
    let report = prune_in_place(&mut w, Rule::KeepFraction(1.0)).unwrap();
    assert_eq!(bits(&w), bits(&[0.5, -0.0, 1.0e-30]));
    assert_eq!(report.threshold, None);
    assert_eq!((report.kept, report.nonzeros_after), (3, 2));
    assert_eq!(keep_fraction_cut(&w, 1.0), Ok(None));
}

#[test]
fn lenet_sized_blobs_keep_exactly_k_distinct_weights() {
    // conv1, conv2, ip1, ip2 at the tutorial's fractions: k = 149, 2499, 3999, 999 by hand.
    for (i, (len, t, expected)) in [
        (500, 0.3, 149),
        (25_000, 0.1, 2_499),
        (400_000, 0.01, 3_999),
        (5_000, 0.2, 999),
    ]
    .into_iter()
    .enumerate()
    {
        let mut w = distinct_weights(len, i as u64);
        let report = prune_in_place(&mut w, Rule::KeepFraction(t)).unwrap();
        assert_eq!(report.kept, expected, "blob of {len}");
        assert_eq!(nonzeros(&w), expected, "blob of {len}");
        // The survivors are the `expected` largest magnitudes: (len - expected + 1 ..= len) * 2^-20.
        let smallest_kept = w
            .iter()
            .filter(|x| **x != 0.0)
            .map(|x| x.abs())
            .fold(f32::MAX, f32::min);
        assert_eq!(smallest_kept, (len - expected + 1) as f32 / (1 << 20) as f32);
        assert_eq!(
            report.threshold,
            Some(f64::from((len - expected) as f32 / (1 << 20) as f32))
        );
    }
}

#[test]
fn parallel_sized_blob_matches_the_reference_and_repeats_bit_for_bit() {
    // 3 Mi weights: past the size where the passes run on the rayon pool.
    let weights: Vec<f32> = distinct_weights(3 << 20, 7)
        .iter()
        .enumerate()
        .map(|(i, w)| if i % 5 == 0 { w.signum() * 0.25 } else { *w }) // plenty of ties
        .collect();
    let (expected, _) = reference_keep_fraction(std::slice::from_ref(&weights), 0.37);
    let mut first = weights.clone();
    let mut second = weights;
    let report = prune_in_place(&mut first, Rule::KeepFraction(0.37)).unwrap();
    assert_eq!(prune_in_place(&mut second, Rule::KeepFraction(0.37)).unwrap(), report);
    assert_eq!(bits(&first), bits(&expected[0]));
    assert_eq!(bits(&first), bits(&second));
}

#[test]
fn empty_blobs_are_a_no_op() {
    let mut empty: [f32; 0] = [];
    let report = prune_in_place(&mut empty, Rule::KeepFraction(0.3)).unwrap();
    assert_eq!((report.len, report.kept, report.threshold), (0, 0, None));
    assert_eq!(report.achieved_keep(), 1.0);
    assert_eq!(keep_fraction_cut(&[], 0.0), Ok(None));
    assert_eq!(global_cut(&[], 0.5), Ok(None));
    assert_eq!(global_cut(&[&[], &[]], 0.5), Ok(None));
    let report = prune_in_place(&mut empty, Rule::StdMultiple(1.0)).unwrap();
    assert_eq!((report.len, report.threshold), (0, None));
}

#[test]
fn global_cut_spans_blobs_by_hand() {
    // Concatenation |W| = 0.9, 0.8, 0.4, 0.3, 0.2, 0.1; N = 6, t = 0.5: k = floor(2.5) = 2, cut 0.4.
    let mut a = [0.1f32, -0.9, 0.4];
    let mut b = [0.3f32, 0.2, -0.8];
    let reports = prune_global_in_place(&mut [&mut a, &mut b], 0.5).unwrap();
    assert_eq!(a, [0.0, -0.9, 0.0]);
    assert_eq!(b, [0.0, 0.0, -0.8]);
    assert_eq!((reports[0].kept, reports[1].kept), (1, 1));
    assert_eq!(reports[0].threshold, Some(f64::from(0.4f32)));
    assert_eq!(reports[0].achieved_keep(), 1.0 / 3.0);
}

#[test]
fn invalid_keep_fractions_are_refused() {
    let mut w = [1.0f32, 2.0];
    for t in [-0.1, 1.000_000_1, f64::NAN, f64::INFINITY] {
        let err = prune_in_place(&mut w, Rule::KeepFraction(t)).unwrap_err();
        assert!(matches!(err, PruneError::InvalidKeepFraction(x) if x.to_bits() == t.to_bits()));
        assert!(matches!(
            keep_fraction_cut(&w, t),
            Err(PruneError::InvalidKeepFraction(_))
        ));
        assert!(matches!(global_cut(&[&w], t), Err(PruneError::InvalidKeepFraction(_))));
    }
    // Refused even when there is nothing to prune.
    assert!(keep_fraction_cut(&[], 2.0).is_err());
    assert_eq!(w, [1.0, 2.0]);
}

#[test]
fn nan_weights_are_refused_and_nothing_changes() {
    for len in [10, 100_000] {
        for t in [0.0, 0.5, 1.0] {
            let mut w: Vec<f32> = (0..len).map(|i| i as f32).collect();
            w[len - 3] = f32::NAN;
            let before = bits(&w);
            assert_eq!(
                prune_in_place(&mut w, Rule::KeepFraction(t)),
                Err(PruneError::NanWeight {
                    blob: 0,
                    index: len - 3
                })
            );
            assert_eq!(bits(&w), before);
        }
    }
    let mut a = [1.0f32, 2.0];
    let mut b = [3.0f32, f32::NAN];
    assert_eq!(
        prune_global_in_place(&mut [&mut a, &mut b], 0.5),
        Err(PruneError::NanWeight { blob: 1, index: 1 })
    );
    assert_eq!(a, [1.0, 2.0]);
    assert_eq!(
        global_cut(&[&a, &b], 1.0),
        Err(PruneError::NanWeight { blob: 1, index: 1 })
    );
}

/// Two-pass population std summed sequentially in f64.
fn reference_std(weights: &[f32]) -> f64 {
    let n = weights.len() as f64;
    let mean = weights.iter().map(|&w| f64::from(w)).sum::<f64>() / n;
    (weights.iter().map(|&w| (f64::from(w) - mean).powi(2)).sum::<f64>() / n).sqrt()
}

proptest! {
    #[test]
    fn std_multiple_matches_the_reference(
        weights in prop::collection::vec(-3.0f32..3.0, 1..400),
        q in prop_oneof![Just(0.0), 0.0f64..3.0],
    ) {
        let threshold = q * reference_std(&weights);
        // A weight within rounding of the threshold could go either way with another summation
        // order; such cases say nothing about the rule.
        prop_assume!(weights.iter().all(|w| (f64::from(w.abs()) - threshold).abs() > 1e-9));
        let mut pruned = weights.clone();
        let report = prune_in_place(&mut pruned, Rule::StdMultiple(q))?;
        let got = report.threshold.unwrap();
        prop_assert!((got - threshold).abs() <= 1e-12 * threshold.max(1.0));
        for (&before, &after) in weights.iter().zip(&pruned) {
            let want = if f64::from(before.abs()) > threshold { before } else { 0.0 };
            prop_assert_eq!(after.to_bits(), want.to_bits());
        }
        prop_assert_eq!(report.kept, nonzeros(&pruned));
        prop_assert_eq!(report.requested_keep(), None);
    }
}

#[test]
fn std_multiple_by_hand() {
    // mean 5, population std 2 (see the squared deviations 9,1,1,1,0,0,4,16 / 8 = 4).
    let mut w = [2.0f32, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
    let report = prune_in_place(&mut w, Rule::StdMultiple(1.0)).unwrap();
    assert_eq!(w, [0.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]); // 2 is not strictly above 2
    assert_eq!(report.threshold, Some(2.0));
    assert_eq!((report.kept, report.nonzeros_before, report.nonzeros_after), (7, 8, 7));

    // mean 0, std sqrt(5) ~ 2.236: only the 3s survive q = 1; q = 0 keeps every nonzero.
    let mut w = [3.0f32, 1.0, -1.0, -3.0, 0.0];
    let mut copy = w;
    prune_in_place(&mut w, Rule::StdMultiple(1.0)).unwrap();
    assert_eq!(w, [3.0, 0.0, 0.0, -3.0, 0.0]);
    prune_in_place(&mut copy, Rule::StdMultiple(0.0)).unwrap();
    assert_eq!(copy, [3.0, 1.0, -1.0, -3.0, 0.0]);
}

#[test]
fn std_multiple_errors() {
    let mut w = [1.0f32, -2.0, 3.0];
    for q in [-0.5, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            prune_in_place(&mut w, Rule::StdMultiple(q)),
            Err(PruneError::InvalidStdMultiple(_))
        ));
    }
    let mut w = [1.0f32, f32::NEG_INFINITY, 3.0, f32::INFINITY];
    assert_eq!(
        prune_in_place(&mut w, Rule::StdMultiple(1.0)),
        Err(PruneError::InfiniteWeight { index: 1 })
    );
    let mut w = [1.0f32, f32::INFINITY, f32::NAN];
    assert_eq!(
        prune_in_place(&mut w, Rule::StdMultiple(1.0)),
        Err(PruneError::NanWeight { blob: 0, index: 2 })
    );
    assert_eq!(w[0], 1.0);
}
