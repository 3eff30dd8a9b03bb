//! Invariants of weight sharing over random blobs, for every initialisation and bit width.

use proptest::prelude::*;
use quantize::reference::kmeans_linear;
use quantize::{assign, centroid_gradients, kmeans, quantize, reconstruct, Init, KMeansOptions, QuantizeError};

/// Zeros of both signs, duplicates and exact midpoints (multiples of 1/4), and spread values.
/// Magnitudes stay within [2^-10, 8], so differences of f32 values are exact in f64 and the
/// nearest-centroid check below is exact too.
fn weight() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => Just(0.0f32),
        1 => Just(-0.0f32),
        2 => (-8i32..=8).prop_map(|i| if i == 0 { 0.25 } else { i as f32 / 4.0 }),
        6 => (-8.0f32..8.0).prop_map(|x| if x.abs() < 1.0 / 1024.0 { 1.0 / 1024.0 } else { x }),
    ]
}

fn init() -> impl Strategy<Value = Init> {
    prop_oneof![
        Just(Init::Linear),
        Just(Init::Density),
        any::<u64>().prop_map(|seed| Init::Random { seed }),
        any::<u64>().prop_map(|seed| Init::KMeansPlusPlus { seed }),
    ]
}

/// Every invariant of one run: the codebook's shape, the codes (mask, range, nearest, ties),
/// reconstruction, consistency with `assign`, determinism and order independence.
fn check_invariants(w: &[f32], bits: u32, init: Init) -> Result<(), TestCaseError> {
    let options = KMeansOptions::new(bits).with_init(init);
    let q = quantize(w, &options).unwrap();
    let cb = &q.codebook;

    // Codebook: +0.0 first, then at most 2^B - 1 finite nonzero centroids, strictly ascending.
    prop_assert_eq!(cb[0].to_bits(), 0);
    prop_assert!(cb.len() <= 1 << bits, "{} centroids", cb.len() - 1);
    for pair in cb[1..].windows(2) {
        prop_assert!(pair[0] < pair[1], "not ascending: {:?}", cb);
    }
    for &c in &cb[1..] {
        prop_assert!(c.is_finite() && c != 0.0);
    }

    // Codes: one per weight, in range, 0 exactly for the zeros (the mask is kept).
    prop_assert_eq!(q.codes.len(), w.len());
    for (i, (&x, &code)) in w.iter().zip(&q.codes).enumerate() {
        prop_assert!(usize::from(code) < cb.len());
        prop_assert_eq!(code == 0, x == 0.0, "weight {} = {} has code {}", i, x, code);
        if x == 0.0 {
            continue;
        }
        // A nearest centroid, the lower one on a tie (exact in f64 for these magnitudes).
        let x = f64::from(x);
        let own = (x - f64::from(cb[usize::from(code)])).abs();
        for (j, &c) in cb.iter().enumerate().skip(1) {
            let d = (x - f64::from(c)).abs();
            prop_assert!(
                own <= d,
                "weight {} = {}: code {} at {} but centroid {} at {}",
                i,
                x,
                code,
                own,
                j,
                d
            );
            if d == own {
                prop_assert!(usize::from(code) <= j, "tie at weight {} went to the upper centroid", i);
            }
        }
    }

    // Reconstruction: zeros come back +0.0, nonzeros stay nonzero.
    let rebuilt = reconstruct(cb, &q.codes).unwrap();
    prop_assert_eq!(&rebuilt, &q.reconstruct());
    for (&x, &r) in w.iter().zip(&rebuilt) {
        if x == 0.0 {
            prop_assert_eq!(r.to_bits(), 0);
        } else {
            prop_assert!(r != 0.0);
        }
    }

    // assign() against the same codebook gives the same codes.
    prop_assert_eq!(&assign(w, cb).unwrap(), &q.codes);

    // Same input and options, same bytes.
    let again = quantize(w, &options).unwrap();
    prop_assert_eq!(
        q.codebook.iter().map(|c| c.to_bits()).collect::<Vec<_>>(),
        again.codebook.iter().map(|c| c.to_bits()).collect::<Vec<_>>()
    );
    prop_assert_eq!(&q.codes, &again.codes);
    prop_assert_eq!(q.distortion.to_bits(), again.distortion.to_bits());

    // The result depends on the multiset of weights only, not on their order.
    let mut reversed = w.to_vec();
    reversed.reverse();
    let r = kmeans(&reversed, &options).unwrap();
    prop_assert_eq!(&r.centroids, &cb[1..].to_vec());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Blobs large enough for the radix sort (4 Ki nonzeros) and the bucket table of the code
    /// assignment (32 Ki weights), with pruned-layer statistics.
    #[test]
    fn large_blobs_hold_the_invariants(
        seed in any::<u64>(),
        len in 32_768usize..60_000,
        cut in 0.0f32..0.1,
        bits in 1u32..=8,
        init in init(),
    ) {
        let w = quantize::synthetic::pruned(len, seed, cut);
        check_invariants(&w, bits, init)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold(w in prop::collection::vec(weight(), 0..400), bits in 1u32..=8, init in init()) {
        check_invariants(&w, bits, init)?;
    }

    /// Blobs made of pairs `{-v, +v}` (multiples of 1/4, so sums are exact): at small bit widths
    /// some cluster's mean is exactly 0, and the zero rule must keep every nonzero weight nonzero.
    #[test]
    fn balanced_clusters_keep_the_mask(
        halves in prop::collection::vec(1i32..=16, 1..40),
        zeros in 0usize..10,
        bits in 1u32..=3,
        init in init(),
    ) {
        let mut w: Vec<f32> = halves.iter().flat_map(|&i| [i as f32 / 4.0, -(i as f32) / 4.0]).collect();
        w.extend(std::iter::repeat_n(0.0f32, zeros));
        check_invariants(&w, bits, init)?;
    }

    /// A weight exactly halfway between two neighbouring centroids takes the lower one.
    #[test]
    fn midpoints_go_to_the_lower_centroid(
        eighths in prop::collection::btree_set((-64i32..64).prop_filter("nonzero", |&i| i != 0), 1..30),
    ) {
        let centroids: Vec<f32> = eighths.iter().map(|&i| i as f32 / 8.0).collect();
        let mut codebook = vec![0.0f32];
        codebook.extend(&centroids);
        let midpoints: Vec<f32> = centroids.windows(2).map(|p| (p[0] + p[1]) / 2.0).collect();
        let codes = assign(&midpoints, &codebook).unwrap();
        for (j, (&m, &code)) in midpoints.iter().zip(&codes).enumerate() {
            if m == 0.0 {
                prop_assert_eq!(code, 0);
            } else {
                prop_assert_eq!(usize::from(code), j + 1, "midpoint {} of {:?}", m, centroids);
            }
        }
        let exact = assign(&centroids, &codebook).unwrap();
        prop_assert_eq!(exact, (1..=centroids.len()).map(|c| c as u8).collect::<Vec<_>>());
    }

    #[test]
    fn prefix_sums_agree_with_full_passes(w in prop::collection::vec(weight(), 1..400), bits in 1u32..=8) {
        let options = KMeansOptions::new(bits);
        let fast = kmeans(&w, &options).unwrap();
        let naive = kmeans_linear(&w, (1 << bits) - 1, options.threshold, options.max_iterations);
        prop_assert_eq!(fast.centroids.len(), naive.centroids.len());
        prop_assert_eq!(fast.iterations, naive.iterations);
        let scale = w.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (a, b) in fast.centroids.iter().zip(&naive.centroids) {
            prop_assert!((a - b).abs() <= 1e-6 * scale, "{:?} vs {:?}", fast.centroids, naive.centroids);
        }
        prop_assert!((fast.distortion - naive.distortion).abs() <= 1e-9 * f64::from(scale).max(1.0));
    }

    #[test]
    fn centroid_gradients_sum_each_code(
        pairs in prop::collection::vec((0u8..20, -10.0f32..10.0), 0..300),
        extra in 0usize..5,
    ) {
        let codes: Vec<u8> = pairs.iter().map(|p| p.0).collect();
        let grads: Vec<f32> = pairs.iter().map(|p| p.1).collect();
        let len = 20 + extra;
        let g = centroid_gradients(&codes, &grads, len).unwrap();
        prop_assert_eq!(g.len(), len);
        prop_assert_eq!(g[0], 0.0);
        for (k, &gk) in g.iter().enumerate().skip(1) {
            let expected: f64 = pairs.iter().filter(|p| usize::from(p.0) == k).map(|p| f64::from(p.1)).sum();
            prop_assert_eq!(gk, expected as f32);
        }
    }

    #[test]
    fn the_first_nan_or_infinity_is_named(
        w in prop::collection::vec(weight(), 1..100),
        at in any::<prop::sample::Index>(),
        nan in any::<bool>(),
    ) {
        let mut w = w;
        let index = at.index(w.len());
        w[index] = if nan { f32::NAN } else { f32::NEG_INFINITY };
        let expected = if nan {
            QuantizeError::NanWeight { index }
        } else {
            QuantizeError::InfiniteWeight { index }
        };
        prop_assert_eq!(quantize(&w, &KMeansOptions::new(4)).unwrap_err(), expected.clone());
        prop_assert_eq!(assign(&w, &[0.0, 1.0]).unwrap_err(), expected);
    }
}
