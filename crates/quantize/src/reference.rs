//! The same k-means the naive way, one full pass over the weights per iteration (what scipy's
//! `_kmeans` does, with a binary search per weight instead of scipy's scan over every code).
//! Kept for the benchmark's baseline and as an independent check of the prefix-sum version in
//! the tests; not part of the supported API.

use crate::codes::SearchTable;
use crate::init::linspace_f32;
use crate::kmeans::Clustering;

/// [`crate::kmeans`] with [`crate::Init::Linear`] over finite weights (not checked), `k` the
/// number of centroids (`2^B - 1`).
pub fn kmeans_linear(weights: &[f32], k: usize, threshold: f64, max_iterations: u32) -> Clustering {
    let mut n = 0usize;
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &x in weights {
        if x != 0.0 {
            n += 1;
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    if n == 0 {
        return Clustering {
            centroids: Vec::new(),
            distortion: 0.0,
            iterations: 0,
            converged: true,
            nonzeros: 0,
        };
    }
    let mut centroids = linspace_f32(lo, hi, k);
    centroids.sort_unstable_by(f32::total_cmp);
    centroids.dedup_by(|a, b| a == b);

    let mut previous = f64::INFINITY;
    let mut distortion;
    let mut iterations = 0u32;
    let converged = loop {
        let m = centroids.len();
        let table = SearchTable::new(&centroids, weights.len());
        // Per cluster: count, sum, min, max; and the same split by sign for the zero rule.
        let mut count = vec![0usize; m];
        let mut sum = vec![0.0f64; m];
        let mut min = vec![f32::INFINITY; m];
        let mut max = vec![f32::NEG_INFINITY; m];
        let mut neg = vec![(0usize, 0.0f64, f32::INFINITY, f32::NEG_INFINITY); m];
        let mut pos = vec![(0usize, 0.0f64, f32::INFINITY, f32::NEG_INFINITY); m];
        let mut total = 0.0f64;
        for &x in weights {
            if x == 0.0 {
                continue;
            }
            let j = usize::from(table.code(x)) - 1;
            let xf = f64::from(x);
            total += (xf - f64::from(centroids[j])).abs();
            count[j] += 1;
            sum[j] += xf;
            min[j] = min[j].min(x);
            max[j] = max[j].max(x);
            let side = if x < 0.0 { &mut neg[j] } else { &mut pos[j] };
            side.0 += 1;
            side.1 += xf;
            side.2 = side.2.min(x);
            side.3 = side.3.max(x);
        }
        distortion = total / n as f64;
        let mean = |count: usize, sum: f64, min: f32, max: f32| {
            (sum / count as f64).clamp(f64::from(min), f64::from(max)) as f32
        };
        let nonempty = count.iter().filter(|&&c| c > 0).count();
        let mut room = k.saturating_sub(nonempty);
        let mut next = Vec::with_capacity(m);
        for j in 0..m {
            if count[j] == 0 {
                continue;
            }
            let c = mean(count[j], sum[j], min[j], max[j]);
            if c != 0.0 {
                next.push(c);
            } else {
                let (nn, ns, nmin, nmax) = neg[j];
                let (pn, ps, pmin, pmax) = pos[j];
                if room > 0 {
                    room -= 1;
                    next.push(mean(nn, ns, nmin, nmax));
                    next.push(mean(pn, ps, pmin, pmax));
                } else if nn > pn {
                    next.push(mean(nn, ns, nmin, nmax));
                } else {
                    next.push(mean(pn, ps, pmin, pmax));
                }
            }
        }
        centroids = next;
        iterations += 1;
        let change = (previous - distortion).abs();
        previous = distortion;
        if change <= threshold {
            break true;
        }
        if iterations >= max_iterations {
            break false;
        }
    };
    Clustering {
        centroids,
        distortion,
        iterations,
        converged,
        nonzeros: n,
    }
}
