//! 1-D k-means over the nonzero weights, on sorted values and prefix sums.

use crate::codes::{assign_unchecked, limits};
use crate::error::QuantizeError;
use crate::init::{initial_centroids, Init};
use crate::prefix::{Prefix, RunSums};
use crate::sort::sorted_nonzero;

/// Settings of one weight-sharing run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansOptions {
    /// Bits per code, `1..=8`: at most `2^B - 1` shared nonzero values (code 0 is the pruned
    /// zeros).
    pub bits: u32,
    /// How the `2^B - 1` starting centroids are chosen.
    pub init: Init,
    /// k-means stops once the mean distortion changes by this much or less between two
    /// iterations, `|d_prev - d| <= threshold`. This is scipy's `thresh` and, as in scipy, an
    /// **absolute** change of the mean Euclidean (not squared) distance `|x - c|`, in the
    /// weights' own units; so on layers with small weights it stops early. `0.0` runs until the
    /// assignment no longer changes. Default [`KMeansOptions::DEFAULT_THRESHOLD`].
    pub threshold: f64,
    /// Safety cap on the number of iterations (scipy has none); reaching it is reported by
    /// [`Clustering::converged`], not as an error. Default
    /// [`KMeansOptions::DEFAULT_MAX_ITERATIONS`].
    pub max_iterations: u32,
}

impl KMeansOptions {
    /// scipy's default `thresh` of `scipy.cluster.vq.kmeans`.
    pub const DEFAULT_THRESHOLD: f64 = 1e-5;
    /// Far above what k-means needs on real weights; an iteration costs `O(k log n)`.
    pub const DEFAULT_MAX_ITERATIONS: u32 = 10_000;

    /// `bits` bits, [`Init::Linear`], scipy's threshold: the tutorial's
    /// `kmeans(W[W != 0], linspace(min, max, 2**B - 1))`.
    pub fn new(bits: u32) -> Self {
        Self {
            bits,
            init: Init::Linear,
            threshold: Self::DEFAULT_THRESHOLD,
            max_iterations: Self::DEFAULT_MAX_ITERATIONS,
        }
    }

    /// The same options with another initialisation.
    pub fn with_init(self, init: Init) -> Self {
        Self { init, ..self }
    }

    /// The same options with another stopping threshold (see [`KMeansOptions::threshold`]).
    pub fn with_threshold(self, threshold: f64) -> Self {
        Self { threshold, ..self }
    }

    /// The same options with another iteration cap.
    pub fn with_max_iterations(self, max_iterations: u32) -> Self {
        Self { max_iterations, ..self }
    }

    /// The number of shared nonzero values allowed, `2^B - 1`, once the options are checked.
    pub fn max_centroids(&self) -> Result<usize, QuantizeError> {
        if !(1..=8).contains(&self.bits) {
            return Err(QuantizeError::InvalidBits(self.bits));
        }
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return Err(QuantizeError::InvalidThreshold(self.threshold));
        }
        if self.max_iterations == 0 {
            return Err(QuantizeError::ZeroIterations);
        }
        Ok((1usize << self.bits) - 1)
    }
}

/// The centroids k-means found, as scipy's `kmeans` returns them, with how it got there.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// The shared nonzero values, strictly ascending, at most `2^B - 1` of them (fewer when
    /// clusters came out empty and were dropped, as scipy drops them, or when there are fewer
    /// distinct weights). Empty when the blob has no nonzero weight.
    pub centroids: Vec<f32>,
    /// scipy's returned distortion: the mean `|x - c|` over the nonzero weights, of the codebook
    /// before the last update (accumulated in f64). 0 for a blob without nonzero weights.
    pub distortion: f64,
    /// Number of updates (assign to the nearest centroid, then move each centroid to its
    /// cluster's mean) performed; at least 2 unless capped, as in scipy (0 for a blob without
    /// nonzero weights).
    pub iterations: u32,
    /// Whether the threshold stopped the run (rather than [`KMeansOptions::max_iterations`]).
    pub converged: bool,
    /// Number of nonzero weights clustered.
    pub nonzeros: usize,
}

/// A quantized blob: `codebook[codes[i]]` is weight `i` after weight sharing.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// `+0.0` at index 0 (the pruned zeros), then the centroids strictly ascending, all nonzero:
    /// at most `2^B` entries.
    pub codebook: Vec<f32>,
    /// One code per weight: 0 exactly for the weights that were `+0.0` or `-0.0`, otherwise
    /// 1 + the index of the nearest centroid (the lower one at an exact midpoint).
    pub codes: Vec<u8>,
    /// See [`Clustering::distortion`].
    pub distortion: f64,
    /// See [`Clustering::iterations`].
    pub iterations: u32,
    /// See [`Clustering::converged`].
    pub converged: bool,
}

impl Quantized {
    /// The quantized blob, `codebook[codes[i]]` for every `i`.
    pub fn reconstruct(&self) -> Vec<f32> {
        self.codes.iter().map(|&c| self.codebook[usize::from(c)]).collect()
    }
}

/// 1-D k-means over the nonzero weights of a blob, as the tutorial's
/// `scipy.cluster.vq.kmeans(W[W != 0], init)` computes it: each iteration assigns every nonzero
/// weight to its nearest centroid (the first, i.e. lower, one on a tie), records the mean
/// distortion `mean |x - c|`, moves each centroid to the mean of its cluster and drops the
/// centroids whose cluster is empty; it stops when the distortion changed by at most
/// `threshold` (absolute), as scipy's `_kmeans` does.
///
/// Exact zeros (`+0.0`, `-0.0`) are left out. Refuses NaN and infinite weights (naming the first)
/// and invalid options. The crate documentation says how the arithmetic compares with scipy's
/// and which rule keeps centroids off zero.
pub fn kmeans(weights: &[f32], options: &KMeansOptions) -> Result<Clustering, QuantizeError> {
    let k = options.max_centroids()?;
    let prepared = Prepared::new(weights)?;
    Ok(prepared.run(k, options))
}

/// Weight sharing for one blob: [`kmeans`] over its nonzero weights, then one code per weight
/// against the resulting codebook (`+0.0` first, then the centroids).
///
/// Every zero stays `+0.0` with code 0, every nonzero weight takes its nearest (nonzero)
/// centroid: the pruning mask is kept exactly.
pub fn quantize(weights: &[f32], options: &KMeansOptions) -> Result<Quantized, QuantizeError> {
    let clustering = kmeans(weights, options)?;
    let codes = if clustering.centroids.is_empty() {
        vec![0; weights.len()]
    } else {
        assign_unchecked(weights, &clustering.centroids)
    };
    let mut codebook = Vec::with_capacity(clustering.centroids.len() + 1);
    codebook.push(0.0);
    codebook.extend_from_slice(&clustering.centroids);
    Ok(Quantized {
        codebook,
        codes,
        distortion: clustering.distortion,
        iterations: clustering.iterations,
        converged: clustering.converged,
    })
}

/// The nonzero weights sorted, with their f64 running sums.
pub(crate) struct Prepared {
    sorted: Vec<f32>,
    prefix: Prefix,
    /// Number of negative values: `sorted[..zero]` < 0 < `sorted[zero..]`.
    zero: usize,
}

impl Prepared {
    /// From the weights; refuses NaN and infinities.
    pub(crate) fn new(weights: &[f32]) -> Result<Self, QuantizeError> {
        let (sorted, runs) = sorted_nonzero(weights, |run| RunSums::of(run, false))?;
        let prefix = Prefix::from_runs(runs, false);
        let zero = sorted.partition_point(|&x| x < 0.0);
        Ok(Self { sorted, prefix, zero })
    }

    /// The initialisation, then Lloyd iterations until scipy's stopping rule holds.
    pub(crate) fn run(&self, k: usize, options: &KMeansOptions) -> Clustering {
        let n = self.sorted.len();
        if n == 0 {
            return Clustering {
                centroids: Vec::new(),
                distortion: 0.0,
                iterations: 0,
                converged: true,
                nonzeros: 0,
            };
        }
        let mut centroids = initial_centroids(options.init, &self.sorted, &self.prefix, k);
        let mut bounds = Vec::with_capacity(k + 1);
        // scipy keeps the last two mean distortions, starting from [inf].
        let mut previous = f64::INFINITY;
        let mut distortion;
        let mut iterations = 0u32;
        let converged = loop {
            cluster_bounds(&self.sorted, &centroids, &mut bounds);
            distortion = self.distortion(&centroids, &bounds) / n as f64;
            centroids = self.update(&centroids, &bounds, k);
            iterations += 1;
            let change = (previous - distortion).abs();
            previous = distortion;
            if change <= options.threshold {
                break true;
            }
            if iterations >= options.max_iterations {
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

    /// Sum over `sorted[l..r]` (as f64).
    fn sum(&self, l: usize, r: usize) -> f64 {
        self.prefix.range(&self.sorted, l, r)
    }

    /// Mean of the nonempty range `sorted[l..r]`, kept inside `[sorted[l], sorted[r - 1]]` (where
    /// the exact mean lies) against rounding, then rounded to f32.
    fn mean(&self, l: usize, r: usize) -> f32 {
        let mean = self.sum(l, r) / (r - l) as f64;
        let (lo, hi) = (f64::from(self.sorted[l]), f64::from(self.sorted[r - 1]));
        mean.clamp(lo, hi) as f32
    }

    /// Total `|x - c_j|` over every cluster, split at `c_j` so that each side is a prefix-sum
    /// difference.
    fn distortion(&self, centroids: &[f32], bounds: &[usize]) -> f64 {
        let mut total = 0.0f64;
        for (j, &c) in centroids.iter().enumerate() {
            let (l, r) = (bounds[j], bounds[j + 1]);
            if l == r {
                continue;
            }
            let s = l + self.sorted[l..r].partition_point(|&x| x < c);
            let c = f64::from(c);
            let below = c * (s - l) as f64 - self.sum(l, s);
            let above = self.sum(s, r) - c * (r - s) as f64;
            total += below.max(0.0) + above.max(0.0);
        }
        total
    }

    /// New centroids: the mean of each nonempty cluster, empty clusters dropped (scipy's
    /// `update_cluster_means` + `code_book[has_members]`), and the zero rule applied.
    fn update(&self, centroids: &[f32], bounds: &[usize], k: usize) -> Vec<f32> {
        let nonempty = (0..centroids.len()).filter(|&j| bounds[j] < bounds[j + 1]).count();
        let mut room = k.saturating_sub(nonempty);
        let mut next = Vec::with_capacity(nonempty + 1);
        for j in 0..centroids.len() {
            let (l, r) = (bounds[j], bounds[j + 1]);
            if l == r {
                continue;
            }
            let mean = self.mean(l, r);
            if mean != 0.0 {
                next.push(mean);
                continue;
            }
            // The mean of a one-signed range lies strictly on its side of zero (the clamp keeps
            // it there), so this cluster holds negative and positive weights: l < zero < r.
            let z = self.zero.clamp(l, r);
            let (negatives, positives) = (z - l, r - z);
            if negatives == 0 || positives == 0 {
                // Unreachable by the argument above; keep a nonzero member rather than zero.
                next.push(self.sorted[l]);
            } else if room > 0 {
                room -= 1;
                next.push(self.mean(l, z));
                next.push(self.mean(z, r));
            } else if negatives > positives {
                next.push(self.mean(l, z));
            } else {
                next.push(self.mean(z, r));
            }
        }
        next
    }
}

/// `bounds[j]..bounds[j + 1]` is the range of `sorted` nearest to `centroids[j]` (strictly
/// ascending centroids; ties at a midpoint go to the lower centroid). `O(k log n)`.
pub(crate) fn cluster_bounds(sorted: &[f32], centroids: &[f32], bounds: &mut Vec<usize>) {
    bounds.clear();
    bounds.push(0);
    let mut start = 0;
    for t in limits(centroids) {
        start += sorted[start..].partition_point(|&x| x <= t);
        bounds.push(start);
    }
    bounds.push(sorted.len());
}
