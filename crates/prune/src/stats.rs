//! Han et al.'s rule: keep `|w| > q * std(W)`, with a deterministic f64 standard deviation.

use rayon::prelude::*;

use crate::cut::{first_nan, PARALLEL_MIN_LEN};
use crate::PruneError;

/// Sums are taken per chunk of this many weights and the partial sums added in chunk order, so
/// the result does not depend on whether (or how) the chunks ran in parallel.
const SUM_CHUNK_LEN: usize = 1 << 16;

/// Population standard deviation (divide by N) of `weights`, accumulated in f64 in two passes
/// (mean, then squared deviations). Refuses NaN and infinite weights. `weights` must be non-empty.
pub(crate) fn population_std(weights: &[f32]) -> Result<f64, PruneError> {
    let total = ordered_sum(weights, |x| x);
    // Finite f32s summed in f64 cannot overflow (2^53 * f32::MAX < f64::MAX), so a non-finite
    // sum means a non-finite weight: one pass both checks and sums.
    if !total.is_finite() {
        if weights.iter().any(|w| w.is_nan()) {
            return Err(first_nan(&[weights]));
        }
        let index = weights.iter().position(|w| w.is_infinite()).unwrap_or(0);
        return Err(PruneError::InfiniteWeight { index });
    }
    let n = weights.len() as f64;
    let mean = total / n;
    let squared_deviations = ordered_sum(weights, |x| (x - mean) * (x - mean));
    Ok((squared_deviations / n).sqrt())
}

/// Sum of `f(w as f64)` over `weights` in a fixed association order.
fn ordered_sum(weights: &[f32], f: impl Fn(f64) -> f64 + Sync) -> f64 {
    let partials: Vec<f64> = if weights.len() >= PARALLEL_MIN_LEN {
        weights
            .par_chunks(SUM_CHUNK_LEN)
            .map(|chunk| lane_sum(chunk, &f))
            .collect()
    } else {
        weights.chunks(SUM_CHUNK_LEN).map(|chunk| lane_sum(chunk, &f)).collect()
    };
    partials.iter().sum()
}

/// Eight independent accumulators (element i goes to lane i mod 8) so the adds pipeline.
fn lane_sum(chunk: &[f32], f: &impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut groups = chunk.chunks_exact(8);
    for group in &mut groups {
        for (lane, &w) in lanes.iter_mut().zip(group) {
            *lane += f(f64::from(w));
        }
    }
    for (lane, &w) in lanes.iter_mut().zip(groups.remainder()) {
        *lane += f(f64::from(w));
    }
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// The magnitude bits `c` of the largest f32 not above `threshold` (>= 0, not NaN), so that for
/// every f32 `w`, `|w| as f64 > threshold` exactly when `magnitude_bits(w) > c`: an f32 above `c`
/// is at least the next f32 after `c`, which is above `threshold` by the choice of `c`.
pub(crate) fn f32_cut_at_or_below(threshold: f64) -> u32 {
    let nearest = threshold as f32;
    if f64::from(nearest) > threshold {
        // Rounded up; nearest > threshold >= 0, so it is positive and has a predecessor.
        nearest.to_bits() - 1
    } else {
        nearest.to_bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn f32_cut_selects_like_an_f64_comparison(
            threshold in prop_oneof![
                0.0f64..10.0,
                Just(0.0),
                Just(f64::INFINITY),
                Just(f64::from(f32::MAX)),
                Just(f64::from(f32::MAX) * 1.5),
                (1u32..0x7f80_0000).prop_map(|b| f64::from(f32::from_bits(b))),
            ],
            weight_bits in any::<u32>(),
        ) {
            let weight = f32::from_bits(weight_bits);
            prop_assume!(!weight.is_nan());
            let cut = f32_cut_at_or_below(threshold);
            let magnitude = weight_bits & 0x7fff_ffff;
            prop_assert_eq!(magnitude > cut, f64::from(weight.abs()) > threshold);
            // The weight right at the cut and its successor must sit on either side.
            prop_assert!(f64::from(f32::from_bits(cut)) <= threshold);
            if cut < 0x7f80_0000 {
                prop_assert!(f64::from(f32::from_bits(cut + 1)) > threshold);
            }
        }
    }

    #[test]
    fn std_of_a_textbook_sample() {
        // mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32; 32 / 8 = 4; std 2.
        let weights = [2.0f32, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(population_std(&weights), Ok(2.0));
    }

    #[test]
    fn sums_do_not_depend_on_parallelism() {
        // Above PARALLEL_MIN_LEN the chunks run on the pool; the same chunks summed sequentially
        // in chunk order must give the same bits.
        let weights: Vec<f32> = (0..PARALLEL_MIN_LEN + 12_345)
            .map(|i| ((i as f32) * 0.618_034).sin())
            .collect();
        let sequential: f64 = weights
            .chunks(SUM_CHUNK_LEN)
            .map(|c| lane_sum(c, &|x| x))
            .collect::<Vec<_>>()
            .iter()
            .sum();
        assert_eq!(ordered_sum(&weights, |x| x).to_bits(), sequential.to_bits());
    }
}
