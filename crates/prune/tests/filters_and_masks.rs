//! Structured filter pruning and fixed masks.

use proptest::prelude::*;
use prune::{prune_filters, prune_in_place, FilterReport, Mask, PruneError, Rule};

fn bits(weights: &[f32]) -> Vec<u32> {
    weights.iter().map(|w| w.to_bits()).collect()
}

/// Rows ranked by L1 norm with a full sort: `k = floor((F-1) t)`, cut = k-th largest norm,
/// rows with norm > cut survive. Returns the pruned blob and the dropped rows.
fn reference_filters(weights: &[f32], filters: usize, t: f64) -> (Vec<f32>, Vec<usize>) {
    if weights.is_empty() || t == 1.0 {
        return (weights.to_vec(), Vec::new());
    }
    let row_len = weights.len() / filters;
    let norms: Vec<f64> = weights
        .chunks(row_len)
        .map(|row| row.iter().map(|w| f64::from(w.abs())).sum())
        .collect();
    let mut sorted = norms.clone();
    sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let cut = sorted[((filters - 1) as f64 * t).floor() as usize];
    let dropped: Vec<usize> = (0..filters).filter(|&i| norms[i] <= cut).collect();
    let mut pruned = weights.to_vec();
    for &i in &dropped {
        pruned[i * row_len..(i + 1) * row_len].fill(0.0);
    }
    (pruned, dropped)
}

/// Shapes of rank 1 to 4 with their weights: multiples of 1/8 in [-2, 2], so row norms are
/// exact in f64 whatever the summation order, and equal norms (ties) are common.
fn shaped_weights() -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
    prop::collection::vec(1usize..6, 1..5).prop_flat_map(|shape| {
        let len: usize = shape.iter().product();
        let weights = prop::collection::vec((-16i32..=16).prop_map(|i| i as f32 / 8.0), len);
        (Just(shape), weights)
    })
}

proptest! {
    #[test]
    fn filters_match_the_sort_reference(
        (shape, weights) in shaped_weights(),
        t in prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0],
    ) {
        let (expected, expected_dropped) = reference_filters(&weights, shape[0], t);
        let mut pruned = weights.clone();
        let report = prune_filters(&mut pruned, &shape, t)?;
        prop_assert_eq!(bits(&pruned), bits(&expected));
        prop_assert_eq!(&report.dropped, &expected_dropped);
        prop_assert_eq!(report.filters, shape[0]);
        prop_assert_eq!(report.filter_len * report.filters, weights.len());
        prop_assert_eq!(report.nonzeros_before, weights.iter().filter(|w| **w != 0.0).count());
        prop_assert_eq!(report.nonzeros_after, expected.iter().filter(|w| **w != 0.0).count());
    }

    #[test]
    fn a_mask_of_a_pruned_blob_holds_retrained_weights_to_its_pattern(
        weights in prop::collection::vec(-1.0f32..1.0, 0..300),
        update in prop::collection::vec(-0.5f32..0.5, 300),
        t in 0.0f64..1.0,
    ) {
        let mut pruned = weights.clone();
        let report = prune_in_place(&mut pruned, Rule::KeepFraction(t))?;
        let mask = Mask::from_nonzero(&pruned);
        prop_assert_eq!(mask.len(), weights.len());
        prop_assert_eq!(mask.count_kept(), report.kept);

        // A retraining step touches every weight; re-applying the mask restores the zeros.
        let mut retrained: Vec<f32> = pruned.iter().zip(&update).map(|(w, u)| w + u).collect();
        let stepped = retrained.clone();
        mask.apply(&mut retrained)?;
        for i in 0..weights.len() {
            let want = if pruned[i] != 0.0 { stepped[i] } else { 0.0 };
            prop_assert_eq!(retrained[i].to_bits(), want.to_bits());
            prop_assert_eq!(mask.is_kept(i), Some(pruned[i] != 0.0));
        }
        prop_assert_eq!(mask.is_kept(weights.len()), None);
    }
}

#[test]
fn filters_by_hand() {
    // Rows: [1, -1] norm 2, [0.5, 0.5] norm 1, [3, 0] norm 3. F = 3, t = 0.5: k = 1, cut = 2.
    let original = [1.0f32, -1.0, 0.5, 0.5, 3.0, 0.0];
    let mut w = original;
    let report = prune_filters(&mut w, &[3, 2], 0.5).unwrap();
    assert_eq!(w, [0.0, 0.0, 0.0, 0.0, 3.0, 0.0]);
    assert_eq!(
        report,
        FilterReport {
            requested_keep: 0.5,
            filters: 3,
            filter_len: 2,
            norm_cut: Some(2.0),
            dropped: vec![0, 1],
            nonzeros_before: 5,
            nonzeros_after: 1,
        }
    );
    assert_eq!(report.kept_filters(), 1);
    assert_eq!(report.achieved_keep(), 1.0 / 3.0);

    // t = 1: untouched; t = 0: the cut is the largest norm, every filter goes.
    let mut w = original;
    let report = prune_filters(&mut w, &[3, 2], 1.0).unwrap();
    assert_eq!((w, report.dropped.len(), report.norm_cut), (original, 0, None));
    let mut w = original;
    let report = prune_filters(&mut w, &[3, 2], 0.0).unwrap();
    assert_eq!((w, report.dropped), ([0.0; 6], vec![0, 1, 2]));

    // A 4-D conv blob [2, 1, 2, 2]: filter norms 1 and 4; F = 2, t = 0.99: k = floor(0.99) = 0,
    // cut 4, and no filter is strictly above it.
    let mut w = [0.25f32, 0.25, 0.25, 0.25, 1.0, 1.0, 1.0, 1.0];
    let report = prune_filters(&mut w, &[2, 1, 2, 2], 0.99).unwrap();
    assert_eq!(report.dropped, vec![0, 1]);
    // Ties: norms 2, 2, 1; F = 3, t = 0.5: k = 1, cut 2: neither tied row is strictly above it.
    let mut w = [1.0f32, 1.0, -1.0, 1.0, 0.5, 0.5];
    let report = prune_filters(&mut w, &[3, 2], 0.5).unwrap();
    assert_eq!(report.dropped, vec![0, 1, 2]);
}

#[test]
fn filter_errors() {
    let mut w = [1.0f32, 2.0, 3.0, 4.0];
    assert_eq!(prune_filters(&mut w, &[], 0.5), Err(PruneError::EmptyShape));
    assert_eq!(
        prune_filters(&mut w, &[3, 2], 0.5),
        Err(PruneError::ShapeMismatch {
            shape: vec![3, 2],
            len: 4
        })
    );
    assert_eq!(
        prune_filters(&mut w, &[usize::MAX, 2, 2], 0.5),
        Err(PruneError::ShapeMismatch {
            shape: vec![usize::MAX, 2, 2],
            len: 4
        })
    );
    assert!(matches!(
        prune_filters(&mut w, &[2, 2], 1.5),
        Err(PruneError::InvalidKeepFraction(_))
    ));
    w[3] = f32::NAN;
    assert_eq!(
        prune_filters(&mut w, &[2, 2], 0.5),
        Err(PruneError::NanWeight { blob: 0, index: 3 })
    );
    assert_eq!(bits(&w[..3]), bits(&[1.0, 2.0, 3.0]));

    // No weights: nothing to do, whatever the number of (empty) filters.
    let mut empty: [f32; 0] = [];
    let report = prune_filters(&mut empty, &[4, 0], 0.5).unwrap();
    assert_eq!((report.filters, report.dropped.len(), report.norm_cut), (4, 0, None));
}

#[test]
fn mask_by_hand() {
    let mask = Mask::from_nonzero(&[0.5, 0.0, -0.0, -2.0, f32::NAN]);
    assert_eq!((mask.len(), mask.count_kept()), (5, 3));
    let mut w = [-1.0f32, -1.0, 7.0, 0.0, 3.0];
    mask.apply(&mut w).unwrap();
    assert_eq!(bits(&w), bits(&[-1.0, 0.0, 0.0, 0.0, 3.0]));

    // Across word boundaries: every third of 200 weights kept.
    let pattern: Vec<f32> = (0..200).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
    let mask = Mask::from_nonzero(&pattern);
    assert_eq!(mask.count_kept(), 67);
    let mut w = vec![-4.0f32; 200];
    mask.apply(&mut w).unwrap();
    assert_eq!(
        bits(&w),
        bits(&pattern.iter().map(|p| p * -4.0 + 0.0).collect::<Vec<_>>())
    );

    assert!(Mask::from_nonzero(&[]).is_empty());
    assert_eq!(
        mask.apply(&mut [0.0; 199]),
        Err(PruneError::MaskLengthMismatch {
            mask_len: 200,
            len: 199
        })
    );
}
