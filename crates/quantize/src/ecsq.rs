//! Entropy-constrained scalar quantization (Chou, Lookabaugh and Gray, 1989; for network weights: Choi, El-Khamy
//! and Lee, "Towards the limit of network quantization", ICLR 2017).
//!
//! k-means minimises the distortion alone, so after retraining it spreads a layer's weights over all `2^B - 1`
//! values almost evenly, and the codes cost nearly `B` bits each once entropy-coded. ECSQ assigns each weight to
//! the value minimising `(w - c)^2 / D + lambda * (-log2 p_c)`, where `D` is the starting mean squared error and
//! `p_c` the share of weights at `c`: a little more distortion buys codes that are cheaper to code. Then each value
//! moves to the mean of its weights, and again, until nothing changes. `lambda = 0` is k-means.
//!
//! In one dimension each cost is a parabola of the same curvature, so after subtracting `w^2 / D` they are lines
//! in `w`; their lower envelope (the convex hull trick) splits the axis into intervals, one per surviving value,
//! and each weight is placed by a binary search over the breakpoints: `O(n log k)` an iteration.

use crate::{QuantizeError, Quantized};

/// The iterations cap: ECSQ settles in a few dozen on real layers.
const MAX_ITERATIONS: u32 = 100;

/// Breakpoints of the lower envelope of `cost_k(w) = (w - c_k)^2 / d + penalty_k` over ascending `centroids`:
/// the indices of the clusters that win somewhere, left to right, and the `w` where each hands over to the next.
fn envelope(centroids: &[f64], penalties: &[f64], d: f64) -> (Vec<usize>, Vec<f64>) {
    // cost_k(w) - w^2 / d = slope_k * w + intercept_k, slopes strictly decreasing with k.
    let line = |k: usize| (-2.0 * centroids[k] / d, centroids[k] * centroids[k] / d + penalties[k]);
    let cross = |p: usize, q: usize| {
        let ((ap, bp), (aq, bq)) = (line(p), line(q));
        (bq - bp) / (ap - aq)
    };
    let mut hull: Vec<usize> = Vec::with_capacity(centroids.len());
    for k in 0..centroids.len() {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], k) <= cross(hull[hull.len() - 2], hull[hull.len() - 1]) {
            hull.pop();
        }
        hull.push(k);
    }
    let breaks = hull.windows(2).map(|pair| cross(pair[0], pair[1])).collect();
    (hull, breaks)
}

/// Re-shares `weights` starting from `start` (a codebook and codes of these weights, code 0 for exact zeros) by
/// ECSQ with trade-off `lambda` (>= 0). The result keeps the mask exactly (zeros get code 0, every nonzero weight a
/// nonzero value), at most as many values as `start`, ascending.
pub fn entropy_constrained(weights: &[f32], start: &Quantized, lambda: f64) -> Result<Quantized, QuantizeError> {
    if !(lambda >= 0.0 && lambda.is_finite()) {
        return Err(QuantizeError::BadLambda { lambda });
    }
    crate::check_codebook(&start.codebook)?;
    if start.codes.len() != weights.len() {
        return Err(QuantizeError::LengthMismatch {
            codes: start.codes.len(),
            values: weights.len(),
        });
    }
    let nonzero: Vec<f64> = weights.iter().filter(|w| **w != 0.0).map(|&w| f64::from(w)).collect();
    let n = nonzero.len();
    let mse = weights
        .iter()
        .zip(&start.codes)
        .filter(|(w, _)| **w != 0.0)
        .map(|(&w, &c)| (f64::from(w) - f64::from(start.codebook[usize::from(c)])).powi(2))
        .sum::<f64>()
        / n.max(1) as f64;
    if lambda == 0.0 || n == 0 || mse == 0.0 {
        return Ok(start.clone());
    }
    let mut centroids: Vec<f64> = start.codebook[1..].iter().map(|&c| f64::from(c)).collect();
    let mut counts = vec![0usize; centroids.len()];
    for &c in start.codes.iter().filter(|&&c| c != 0) {
        counts[usize::from(c) - 1] += 1;
    }
    let mut iterations = 0;
    loop {
        // Values nobody takes are dropped (their cost would be infinite).
        let alive: Vec<usize> = (0..centroids.len()).filter(|&k| counts[k] > 0).collect();
        centroids = alive.iter().map(|&k| centroids[k]).collect();
        counts = alive.iter().map(|&k| counts[k]).collect();
        let penalties: Vec<f64> = counts.iter().map(|&m| -lambda * (m as f64 / n as f64).log2()).collect();
        let (hull, breaks) = envelope(&centroids, &penalties, mse);
        let mut sums = vec![0.0f64; centroids.len()];
        let mut new_counts = vec![0usize; centroids.len()];
        for &w in &nonzero {
            let k = hull[breaks.partition_point(|&b| b < w)];
            sums[k] += w;
            new_counts[k] += 1;
        }
        let mut moved = false;
        for k in 0..centroids.len() {
            if new_counts[k] > 0 {
                let mean = (sums[k] / new_counts[k] as f64) as f32;
                // A balanced two-signed cluster could average to zero: keep its value, which never is.
                if mean != 0.0 && f64::from(mean) != centroids[k] {
                    centroids[k] = f64::from(mean);
                    moved = true;
                }
            }
        }
        moved |= new_counts != counts;
        counts = new_counts;
        iterations += 1;
        if !moved || iterations >= MAX_ITERATIONS {
            break;
        }
    }
    let alive: Vec<usize> = (0..centroids.len()).filter(|&k| counts[k] > 0).collect();
    let values: Vec<f64> = alive.iter().map(|&k| centroids[k]).collect();
    let penalties: Vec<f64> = alive
        .iter()
        .map(|&k| -lambda * (counts[k] as f64 / n as f64).log2())
        .collect();
    let (hull, breaks) = envelope(&values, &penalties, mse);
    // The final assignment uses the final values; a value that then loses every weight is dropped from the codebook.
    let mut code_of_hull = vec![0u8; values.len()];
    let mut codebook = vec![0.0f32];
    let mut used = vec![false; values.len()];
    for &w in &nonzero {
        used[hull[breaks.partition_point(|&b| b < w)]] = true;
    }
    for k in 0..values.len() {
        if used[k] {
            codebook.push(values[k] as f32);
            code_of_hull[k] = (codebook.len() - 1) as u8;
        }
    }
    let mut distortion = 0.0f64;
    let codes: Vec<u8> = weights
        .iter()
        .map(|&w| {
            if w == 0.0 {
                return 0;
            }
            let k = hull[breaks.partition_point(|&b| b < f64::from(w))];
            distortion += (f64::from(w) - values[k]).abs();
            code_of_hull[k]
        })
        .collect();
    Ok(Quantized {
        codebook,
        codes,
        distortion: distortion / n as f64,
        iterations: start.iterations + iterations,
        converged: iterations < MAX_ITERATIONS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{quantize, synthetic, KMeansOptions};

    fn entropy_bits(q: &Quantized) -> f64 {
        let mut counts = vec![0usize; q.codebook.len()];
        q.codes
            .iter()
            .filter(|&&c| c != 0)
            .for_each(|&c| counts[usize::from(c)] += 1);
        let n: usize = counts.iter().sum();
        counts
            .iter()
            .filter(|&&m| m > 0)
            .map(|&m| -(m as f64 / n as f64) * (m as f64 / n as f64).log2())
            .sum()
    }

    #[test]
    fn a_larger_lambda_buys_cheaper_codes_with_the_mask_kept() {
        let w = synthetic::pruned(50_000, 7, 0.05);
        let start = quantize(&w, &KMeansOptions::new(5)).unwrap();
        assert_eq!(entropy_constrained(&w, &start, 0.0).unwrap(), start);
        // A small lambda may first cost more bits than scipy's early-stopped k-means: ECSQ's iterations run Lloyd
        // to its end, which spreads the weights; from there the bits fall as lambda grows.
        let mut last = f64::INFINITY;
        for lambda in [1.0, 3.0, 6.0] {
            let q = entropy_constrained(&w, &start, lambda).unwrap();
            crate::check_codebook(&q.codebook).unwrap();
            assert!(q.codebook.len() <= start.codebook.len());
            assert!(
                w.iter().zip(&q.codes).all(|(w, &c)| (*w == 0.0) == (c == 0)),
                "mask kept"
            );
            let bits = entropy_bits(&q);
            assert!(bits < last, "lambda {lambda}: {bits} bits, before {last}");
            last = bits;
        }
        assert!(last < entropy_bits(&start) - 0.5, "{last}");
        assert!(entropy_constrained(&w, &start, -1.0).is_err());
        assert!(entropy_constrained(&w, &start, f64::NAN).is_err());
    }

    #[test]
    fn the_envelope_picks_the_cheapest_value_everywhere() {
        let centroids = [-1.0, -0.2, 0.1, 0.5, 2.0];
        let penalties = [3.0, 0.1, 5.0, 0.2, 0.4];
        let (hull, breaks) = envelope(&centroids, &penalties, 0.3);
        for i in 0..=400 {
            let w = -3.0 + i as f64 * 0.0151;
            let best = (0..5)
                .min_by(|&a, &b| {
                    let cost = |k: usize| (w - centroids[k]).powi(2) / 0.3 + penalties[k];
                    cost(a).total_cmp(&cost(b))
                })
                .unwrap();
            assert_eq!(hull[breaks.partition_point(|&b| b < w)], best, "w = {w}");
        }
    }
}
