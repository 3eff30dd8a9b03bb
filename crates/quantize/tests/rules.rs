//! The documented rules, one case each: the zero rule, scipy's stopping rule and empty clusters,
//! the initialisations, edge cases of the input, and every error.

use quantize::synthetic::pruned;
use quantize::{
    assign, centroid_gradients, check_codebook, kmeans, quantize, reconstruct, reconstruct_into, Init, KMeansOptions,
    QuantizeError,
};

fn q(w: &[f32], bits: u32) -> quantize::Quantized {
    quantize(w, &KMeansOptions::new(bits)).unwrap()
}

#[test]
fn a_balanced_cluster_takes_the_larger_side_without_room() {
    // B = 1: one centroid; the mean of {-1, 1} is 0. Equal sides: the positive one.
    let r = q(&[-1.0, 1.0], 1);
    assert_eq!(r.codebook, [0.0, 1.0]);
    assert_eq!(r.codes, [1, 1]);
    // More negatives: the negative side's mean.
    let r = q(&[-1.0, -1.0, 2.0], 1);
    assert_eq!(r.codebook, [0.0, -1.0]);
    // Four weights, two a side: positive side, mean 1.5.
    let r = q(&[-2.0, -1.0, 1.0, 2.0, 0.0], 1);
    assert_eq!(r.codebook, [0.0, 1.5]);
    assert_eq!(r.reconstruct(), [1.5, 1.5, 1.5, 1.5, 0.0]);
}

#[test]
fn a_balanced_cluster_is_split_at_zero_when_there_is_room() {
    // linspace(-1, 10.5, 3) = [-1, 4.75, 10.5]: {-1, 1} go to -1 (1 <= midpoint 1.875), the
    // middle centroid is empty and dropped, and {-1, 1} has mean 0: with room for one more
    // centroid it splits into -1 and 1.
    let r = q(&[-1.0, 1.0, 10.0, 10.5], 2);
    assert_eq!(r.codebook, [0.0, -1.0, 1.0, 10.25]);
    assert_eq!(r.codes, [1, 2, 3, 3]);
    assert!(r.converged);
}

#[test]
fn an_unbalanced_straddling_cluster_keeps_its_mean() {
    // Like scipy: a cluster across zero whose mean is not zero is left alone.
    let r = q(&[-1.0, 3.0], 1);
    assert_eq!(r.codebook, [0.0, 1.0]);
}

#[test]
fn empty_clusters_are_dropped() {
    // linspace(1, 3, 255): each value takes the nearest of 255 points, the rest are empty.
    let r = q(&[1.0, 2.0, 3.0, 2.0, 0.0], 8);
    assert_eq!(r.codebook, [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(r.codes, [1, 2, 3, 2, 0]);
    assert_eq!(r.distortion, 0.0);
}

#[test]
fn one_iteration_from_linspace() {
    // linspace(-0.6, 1.1, 3) = [-0.6, 0.25, 1.1]; nobody is nearest to 0.25.
    let w = [0.9f32, -0.4, 1.1, -0.6, 1.0];
    let c = kmeans(&w, &KMeansOptions::new(2).with_max_iterations(1)).unwrap();
    assert_eq!(c.centroids, [-0.5, 1.0]);
    assert_eq!(c.iterations, 1);
    assert!(!c.converged);
    // Distortion of the starting codebook: (0.2 + 0.2 + 0.2 + 0 + 0.1) / 5 (f32 inputs).
    let expected = [(0.9, 1.1), (-0.4, -0.6), (1.1, 1.1), (-0.6, -0.6), (1.0, 1.1)]
        .iter()
        .map(|&(x, c): &(f32, f32)| (f64::from(x) - f64::from(c)).abs())
        .sum::<f64>()
        / 5.0;
    assert!(
        (c.distortion - expected).abs() < 1e-15,
        "{} vs {expected}",
        c.distortion
    );
}

#[test]
fn the_threshold_is_an_absolute_change() {
    // Scaling every weight by 2^10 is exact and scales every distortion by 2^10: a relative
    // threshold would stop after the same number of iterations, scipy's absolute one does not.
    let w = pruned(20_000, 11, 0.05);
    let scaled: Vec<f32> = w.iter().map(|&x| x * 1024.0).collect();
    let small = kmeans(&w, &KMeansOptions::new(5)).unwrap();
    let large = kmeans(&scaled, &KMeansOptions::new(5)).unwrap();
    assert!(
        large.iterations > small.iterations,
        "{} iterations at 1x, {} at 1024x",
        small.iterations,
        large.iterations
    );
    // With threshold 0 both run to the same fixed point, scaled.
    let small = kmeans(&w, &KMeansOptions::new(5).with_threshold(0.0)).unwrap();
    let large = kmeans(&scaled, &KMeansOptions::new(5).with_threshold(0.0)).unwrap();
    assert!(small.converged && large.converged);
    assert_eq!(small.iterations, large.iterations);
    let rescaled: Vec<f32> = small.centroids.iter().map(|&c| c * 1024.0).collect();
    assert_eq!(rescaled, large.centroids);
}

#[test]
fn threshold_zero_ends_at_a_fixed_point() {
    // Every centroid is the (f64, rounded) mean of the weights that take it.
    let w = pruned(5_000, 12, 0.03);
    for init in [
        Init::Linear,
        Init::Density,
        Init::Random { seed: 1 },
        Init::KMeansPlusPlus { seed: 2 },
    ] {
        let r = quantize(&w, &KMeansOptions::new(4).with_init(init).with_threshold(0.0)).unwrap();
        assert!(r.converged, "{init:?}");
        for (k, &c) in r.codebook.iter().enumerate().skip(1) {
            let members: Vec<f64> = w
                .iter()
                .zip(&r.codes)
                .filter(|&(_, &code)| usize::from(code) == k)
                .map(|(&x, _)| f64::from(x))
                .collect();
            assert!(!members.is_empty(), "{init:?}: centroid {k} has no weight");
            let mean = members.iter().sum::<f64>() / members.len() as f64;
            assert!(
                (f64::from(c) - mean).abs() <= f64::from(c).abs() * 1e-6,
                "{init:?}: centroid {k} = {c}, mean {mean}"
            );
        }
    }
}

#[test]
fn the_iteration_cap_is_reported() {
    let w = pruned(5_000, 13, 0.02);
    let c = kmeans(&w, &KMeansOptions::new(6).with_max_iterations(2)).unwrap();
    assert_eq!(c.iterations, 2);
    assert!(!c.converged);
}

#[test]
fn density_starts_on_the_cdf() {
    // n = 10, k = 3: ranks floor((2j + 1) * 10 / 6) = 1, 5, 8: starting centroids 2, 6, 9;
    // one update: {1..4} -> 2.5, {5, 6, 7} -> 6, {8, 9, 10} -> 9.
    let w: Vec<f32> = (1..=10).map(|i| i as f32).collect();
    let options = KMeansOptions::new(2).with_init(Init::Density).with_max_iterations(1);
    assert_eq!(kmeans(&w, &options).unwrap().centroids, [2.5, 6.0, 9.0]);
}

#[test]
fn seeded_initialisations_are_reproducible_and_seed_dependent() {
    let w = pruned(50_000, 14, 0.05);
    for make in [(|seed| Init::Random { seed }) as fn(u64) -> Init, |seed| {
        Init::KMeansPlusPlus { seed }
    }] {
        let options = |seed| KMeansOptions::new(4).with_init(make(seed)).with_max_iterations(1);
        let a = kmeans(&w, &options(1)).unwrap();
        assert_eq!(a, kmeans(&w, &options(1)).unwrap());
        let differs = (2..6).any(|seed| kmeans(&w, &options(seed)).unwrap().centroids != a.centroids);
        assert!(differs, "{:?}: every seed gave the same start", make(1));
    }
}

#[test]
fn kmeans_plus_plus_stops_when_every_weight_is_a_centroid() {
    let w = [1.0f32, 1.0, 1.0, 2.0, 0.0];
    let options = KMeansOptions::new(8).with_init(Init::KMeansPlusPlus { seed: 9 });
    assert_eq!(kmeans(&w, &options).unwrap().centroids, [1.0, 2.0]);
    let options = KMeansOptions::new(8).with_init(Init::Random { seed: 9 });
    assert_eq!(kmeans(&w, &options).unwrap().centroids, [1.0, 2.0]);
}

#[test]
fn zeros_empty_blobs_and_single_weights() {
    let r = q(&[], 5);
    assert_eq!((r.codebook, r.codes), (vec![0.0], vec![]));
    let r = q(&[0.0, -0.0, 0.0], 5);
    assert_eq!(r.codebook, [0.0]);
    assert_eq!(r.codes, [0, 0, 0]);
    assert_eq!(r.reconstruct()[1].to_bits(), 0, "-0.0 comes back as +0.0");
    let r = q(&[0.0, -0.25, -0.0], 8);
    assert_eq!(r.codebook, [0.0, -0.25]);
    assert_eq!(r.codes, [0, 1, 0]);
}

#[test]
fn extreme_magnitudes_stay_finite_and_nonzero() {
    let tiny = f32::from_bits(1); // the smallest subnormal
    for w in [
        vec![tiny, -tiny, 2.0 * tiny, 3.0 * tiny, 0.0],
        vec![f32::MAX, -f32::MAX, f32::MAX / 2.0, 1.0],
        vec![f32::MAX, tiny, -1e-30, 1e30],
    ] {
        for bits in 1..=8 {
            for init in [
                Init::Linear,
                Init::Density,
                Init::Random { seed: 3 },
                Init::KMeansPlusPlus { seed: 3 },
            ] {
                let r = quantize(&w, &KMeansOptions::new(bits).with_init(init)).unwrap();
                check_codebook(&r.codebook).unwrap();
                for (&x, &y) in w.iter().zip(&r.reconstruct()) {
                    assert_eq!(x == 0.0, y == 0.0, "{w:?} B={bits} {init:?}: {x} -> {y}");
                }
            }
        }
    }
}

#[test]
fn options_are_checked() {
    let w = [1.0f32];
    for bits in [0, 9, 32] {
        assert_eq!(q_err(&w, KMeansOptions::new(bits)), QuantizeError::InvalidBits(bits));
    }
    for t in [f64::NAN, -1e-9, f64::INFINITY] {
        let err = q_err(&w, KMeansOptions::new(3).with_threshold(t));
        assert!(matches!(err, QuantizeError::InvalidThreshold(x) if x.to_bits() == t.to_bits()));
    }
    assert_eq!(
        q_err(&w, KMeansOptions::new(3).with_max_iterations(0)),
        QuantizeError::ZeroIterations
    );
    // Options are checked before the weights.
    assert_eq!(q_err(&[f32::NAN], KMeansOptions::new(0)), QuantizeError::InvalidBits(0));
}

fn q_err(w: &[f32], options: KMeansOptions) -> QuantizeError {
    quantize(w, &options).unwrap_err()
}

#[test]
fn codebooks_are_checked() {
    use QuantizeError::*;
    assert_eq!(assign(&[1.0], &[]), Err(InvalidCodebookLength(0)));
    assert_eq!(assign(&[1.0], &[0.0; 257]), Err(InvalidCodebookLength(257)));
    assert_eq!(assign(&[1.0], &[-0.0, 1.0]), Err(NonZeroFirstEntry(-0.0)));
    assert_eq!(
        assign(&[1.0], &[0.0, 1.0, 0.0]),
        Err(InvalidCentroid { index: 2, value: 0.0 })
    );
    assert!(matches!(
        assign(&[1.0], &[0.0, f32::NAN]),
        Err(InvalidCentroid { index: 1, .. })
    ));
    assert_eq!(
        assign(&[1.0], &[0.0, 1.0, 1.0]),
        Err(CentroidsNotAscending { index: 2 })
    );
    assert_eq!(
        assign(&[1.0], &[0.0, 2.0, 1.0]),
        Err(CentroidsNotAscending { index: 2 })
    );
    assert_eq!(assign(&[0.0, 1.0], &[0.0]), Err(NoCentroids));
    assert_eq!(assign(&[0.0, -0.0], &[0.0]), Ok(vec![0, 0]));
}

#[test]
fn reconstruction_checks_codes_and_lengths() {
    use QuantizeError::*;
    let codebook = [0.0f32, -0.5, 0.5];
    assert_eq!(reconstruct(&codebook, &[0, 2, 1]), Ok(vec![0.0, 0.5, -0.5]));
    assert_eq!(
        reconstruct(&codebook, &[0, 2, 3, 7]),
        Err(CodeOutOfRange {
            index: 2,
            code: 3,
            codebook_len: 3
        })
    );
    assert_eq!(reconstruct(&[], &[]), Err(InvalidCodebookLength(0)));
    assert_eq!(reconstruct(&[1.0], &[0]), Err(NonZeroFirstEntry(1.0)));
    let mut out = [9.0f32; 2];
    assert_eq!(
        reconstruct_into(&codebook, &[1, 2, 0], &mut out),
        Err(LengthMismatch { codes: 3, values: 2 })
    );
    assert_eq!(
        reconstruct_into(&codebook, &[1, 5], &mut out),
        Err(CodeOutOfRange {
            index: 1,
            code: 5,
            codebook_len: 3
        })
    );
    assert_eq!(out, [9.0, 9.0], "untouched on error");
    reconstruct_into(&codebook, &[1, 0], &mut out).unwrap();
    assert_eq!(out, [-0.5, 0.0]);
    // A full 256-entry codebook takes every code.
    let full: Vec<f32> = (0..256).map(|i| i as f32).collect();
    let codes: Vec<u8> = (0..=255).collect();
    assert_eq!(reconstruct(&full, &codes).unwrap(), full);
}

#[test]
fn centroid_gradients_rules() {
    use QuantizeError::*;
    // Code 0 (the pruned zeros) gets nothing; unused centroid 3 gets 0.
    let g = centroid_gradients(&[0, 1, 2, 1, 0], &[5.0, 0.25, -1.0, 0.5, 7.0], 4).unwrap();
    assert_eq!(g, [0.0, 0.75, -1.0, 0.0]);
    assert_eq!(
        centroid_gradients(&[0, 1], &[1.0], 2),
        Err(LengthMismatch { codes: 2, values: 1 })
    );
    assert_eq!(centroid_gradients(&[], &[], 0), Err(InvalidCodebookLength(0)));
    assert_eq!(centroid_gradients(&[], &[], 257), Err(InvalidCodebookLength(257)));
    assert_eq!(
        centroid_gradients(&[1, 4], &[1.0, 1.0], 3),
        Err(CodeOutOfRange {
            index: 1,
            code: 4,
            codebook_len: 3
        })
    );
    // Summed in f64: 2^24 + 1 + 1 is not representable step by step in f32.
    let g = centroid_gradients(&[1, 1, 1], &[16_777_216.0, 1.0, 1.0], 2).unwrap();
    assert_eq!(g[1], 16_777_218.0);
}
