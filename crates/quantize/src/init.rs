//! Initial centroids for k-means, from the sorted nonzero weights.

use crate::prefix::Prefix;
use crate::rng::SplitMix64;

/// How k-means chooses its `k = 2^B - 1` starting centroids among or between the nonzero weights.
///
/// Whatever the rule, the starting centroids are sorted and duplicates are merged (scipy's `vq`
/// gives every weight to the first of equal centroids, so the others would come out empty and be
/// dropped after the first iteration anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Init {
    /// `np.linspace(min, max, k)` over the nonzero weights, computed in f32 exactly as numpy 2
    /// computes it for float32 endpoints (`step = (max - min) / (k - 1)` rounded to f32, then
    /// `i * step + min` in f32, the last point set to `max`). Deep Compression found it best
    /// (it keeps centroids for the rare large weights) and it is the tutorial's choice, so it is
    /// the default. When `max - min` overflows f32 the points are computed in f64 and rounded.
    #[default]
    Linear,
    /// Evenly spaced on the weights' empirical CDF: centroid `j` (of `k`) is the sorted nonzero
    /// weight at rank `floor((2j + 1) n / 2k)`, the middle of the `j`-th of `k` equal shares.
    /// Puts the centroids where the weights are dense.
    Density,
    /// `k` distinct nonzero weights (distinct positions) chosen uniformly at random, as scipy's
    /// `kmeans(obs, k)` picks its starting points; fewer than `k` weights are all taken.
    Random {
        /// Seed of the crate's SplitMix64 generator; the same seed gives the same centroids.
        seed: u64,
    },
    /// k-means++ (Arthur and Vassilvitskii): the first centroid a uniformly chosen nonzero weight,
    /// each next one a weight chosen with probability proportional to its squared distance to
    /// the nearest centroid so far. The squared distances are summed from prefix sums over the
    /// sorted weights (rounded f64), so each draw costs `O(k + log n)` rather than a pass.
    /// Stops early when every weight already coincides with a centroid.
    KMeansPlusPlus {
        /// Seed of the crate's SplitMix64 generator; the same seed gives the same centroids.
        seed: u64,
    },
}

/// numpy's `linspace(start, stop, num)` for float32 `start` and `stop` (numpy >= 2).
pub(crate) fn linspace_f32(start: f32, stop: f32, num: usize) -> Vec<f32> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f32;
    let delta = stop - start;
    let mut y: Vec<f32> = if !delta.is_finite() {
        // numpy would produce inf and NaN here; use f64 and round once.
        let (a, b) = (f64::from(start), f64::from(stop));
        let step = (b - a) / (num - 1) as f64;
        (0..num).map(|i| (a + i as f64 * step) as f32).collect()
    } else {
        let step = delta / div;
        if step == 0.0 {
            // numpy's branch for a zero (or underflowed) step: y / div * delta.
            (0..num).map(|i| i as f32 / div * delta + start).collect()
        } else {
            (0..num).map(|i| i as f32 * step + start).collect()
        }
    };
    y[num - 1] = stop;
    y
}

/// Starting centroids for `k` clusters over the sorted nonzero weights (`sorted` nonempty,
/// `prefix` its running sums). Sorted, duplicates merged.
pub(crate) fn initial_centroids(init: Init, sorted: &[f32], prefix: &Prefix, k: usize) -> Vec<f32> {
    let n = sorted.len();
    let mut centroids = match init {
        Init::Linear => linspace_f32(sorted[0], sorted[n - 1], k),
        Init::Density => (0..k)
            .map(|j| {
                let rank = ((2 * j as u128 + 1) * n as u128) / (2 * k as u128);
                sorted[rank as usize]
            })
            .collect(),
        Init::Random { seed } => random_distinct(sorted, k, seed),
        Init::KMeansPlusPlus { seed } => kmeans_plus_plus(sorted, prefix, k, seed),
    };
    centroids.sort_unstable_by(f32::total_cmp);
    centroids.dedup_by(|a, b| a == b);
    centroids
}

/// `min(k, n)` weights at distinct positions, uniformly (Floyd's sampling without replacement).
fn random_distinct(sorted: &[f32], k: usize, seed: u64) -> Vec<f32> {
    let n = sorted.len();
    if n <= k {
        return sorted.to_vec();
    }
    let mut rng = SplitMix64::new(seed);
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    for j in n - k..n {
        let t = rng.below(j as u64 + 1) as usize;
        if chosen.contains(&t) {
            chosen.push(j);
        } else {
            chosen.push(t);
        }
    }
    chosen.iter().map(|&i| sorted[i]).collect()
}

/// k-means++ seeding over sorted weights, with squared distances from prefix sums.
fn kmeans_plus_plus(sorted: &[f32], prefix: &Prefix, k: usize, seed: u64) -> Vec<f32> {
    let n = sorted.len();
    let mut rng = SplitMix64::new(seed);
    // Running sums of squares, only for this initialisation.
    let squares = prefix.squares_of(sorted);
    // Sum over sorted[l..r] of (x - c)^2.
    let mass = |l: usize, r: usize, c: f64| -> f64 {
        let count = (r - l) as f64;
        let m = squares.range(sorted, l, r) - 2.0 * c * prefix.range(sorted, l, r) + c * c * count;
        m.max(0.0)
    };

    let mut chosen = vec![sorted[rng.below(n as u64) as usize]];
    let mut masses = Vec::with_capacity(k);
    let mut bounds = Vec::with_capacity(k + 1);
    while chosen.len() < k {
        let mut centroids = chosen.clone();
        centroids.sort_unstable_by(f32::total_cmp);
        centroids.dedup_by(|a, b| a == b);
        crate::kmeans::cluster_bounds(sorted, &centroids, &mut bounds);
        masses.clear();
        let mut total = 0.0f64;
        for (j, &c) in centroids.iter().enumerate() {
            let m = mass(bounds[j], bounds[j + 1], f64::from(c));
            total += m;
            masses.push(m);
        }
        if total <= 0.0 {
            break; // every weight sits on a centroid (the masses are clamped, never NaN)
        }
        let mut u = rng.unit_f64() * total;
        // The cluster holding the draw (the last one with mass if rounding runs past the end).
        let mut j = 0;
        while j + 1 < masses.len() && (u >= masses[j] || masses[j] == 0.0) {
            u -= masses[j];
            j += 1;
        }
        let (l, r, c) = (bounds[j], bounds[j + 1], f64::from(centroids[j]));
        // First position i in [l, r) whose cumulative mass over [l, i] exceeds u.
        let (mut lo, mut hi) = (l, r - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if mass(l, mid + 1, c) <= u {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = lo;
        chosen.push(sorted[i]);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_float32() {
        // np.linspace(np.float32(-0.1), np.float32(0.3), 5) in numpy 2.4 (checked there).
        assert_eq!(linspace_f32(-0.1, 0.3, 5), [-0.1, 0.0, 0.1, 0.200_000_02, 0.3]);
        assert_eq!(linspace_f32(2.0, 2.0, 3), [2.0, 2.0, 2.0]);
        assert_eq!(linspace_f32(-1.0, 1.0, 1), [-1.0]);
        let wide = linspace_f32(-f32::MAX, f32::MAX, 3);
        assert_eq!(wide, [-f32::MAX, 0.0, f32::MAX]);
    }
}
