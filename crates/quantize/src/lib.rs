//! Deep Compression weight sharing (stage 2) over plain `f32` weight blobs.
//!
//! This crate knows no file format and no other crate of this workspace but the `pages` helper
//! for large buffers: it takes a slice of weights and a bit width `B` (`1..=8`) and returns a
//! codebook and one byte-sized code per weight. Biases, layers and files are the callers' business.
//!
//! # What comes out
//! A [`Quantized`] blob: `codebook[0] = +0.0` for the pruned weights, then at most `2^B - 1`
//! shared nonzero values (the centroids) strictly ascending, and `codes[i]` such that
//! `codebook[codes[i]]` is weight `i` after sharing. Exact zeros (`+0.0` and `-0.0`) get code 0
//! and come back as `+0.0`; every nonzero weight takes its nearest centroid, which is never
//! zero, so the pruning mask is kept exactly.
//!
//! # k-means, as the tutorial runs it
//! [`kmeans`] clusters the nonzero weights in one dimension. With the default [`Init::Linear`]
//! it reproduces the Deep Compression tutorial's call
//! `scipy.cluster.vq.kmeans(W[W != 0], np.linspace(min, max, 2**B - 1))` step for step, as
//! scipy's `_kmeans` (1.17) computes it:
//! - each iteration assigns every weight to its nearest centroid, the **first** (here: lower)
//!   one on a tie (scipy's `vq` keeps the first code with the smallest distance), records the
//!   mean distortion, then moves each centroid to its cluster's mean;
//! - a centroid whose cluster is empty is **dropped** (`code_book[has_members]`), so fewer than
//!   `2^B - 1` centroids can come out;
//! - it stops when `|d_prev - d| <= thresh` with `thresh = 1e-5`, where `d` is the mean
//!   **Euclidean** distance `|x - c|` (not its square) of the codebook before the update, and
//!   the change is **absolute**, not relative (scipy: `diff = abs(prev_avg_dists[0] -
//!   prev_avg_dists[1])`; the first comparison is against infinity, so there are at least two
//!   iterations). An absolute threshold in the weights' units means that layers with small
//!   weights stop early; [`KMeansOptions::threshold`] can be lowered (0 runs to a fixed point).
//!
//! With `B = 1` the guess has one element, which scipy's `kmeans` takes for a cluster count and
//! refuses; its `_kmeans` (which `kmeans` calls for every longer guess) gives the answer used
//! here: the mean of the nonzero weights (subject to the zero rule below).
//!
//! ## Precision
//! For float32 input scipy works in float32 throughout: `linspace` in f32, squared distances in
//! f32, each cluster's sum accumulated sequentially in f32, the mean distortion by numpy's f32
//! pairwise sum. This crate computes the starting `linspace` in f32 exactly as numpy does, keeps
//! the centroids as f32 between iterations (as scipy's code book is), but takes sums and
//! distortions from running sums in f64 and decides nearest centroids exactly (no rounding at
//! all, see [`assign`]). The two therefore differ by scipy's f32 accumulation error, which grows
//! with the cluster sizes: `tests/scipy_parity.rs` (LeNet-like blobs of 500 to 400,000 weights,
//! every `B`) measures at most `4.5e-6 * max|w|` against the tolerance `1e-5 * max|w|`, at
//! 400,000 dense weights, while the same runs of scipy in float64 lie within `5e-8 * max|w|` of
//! ours (the f32 rounding of the centroids), and the returned mean distortions agree within
//! `1.1e-6` relative (scipy reports no iteration count; a different count would show there
//! first). A run could in
//! principle take one iteration more or less than scipy's when scipy's f32 distortion change
//! lands within its rounding error of `thresh`; none of the test blobs does. Codes assigned
//! against scipy's own centroids equal `vq`'s on all 484,509 nonzero test weights.
//!
//! ## The zero rule
//! A cluster's mean can be exactly `0.0` (or round to it) only when the cluster holds weights
//! of both signs that balance, e.g. `{-a, +a}` with `B = 1`; scipy would return a `0.0`
//! centroid and its weights would be pruned by the codebook. Here such a cluster is instead
//! **split at zero** into its negative and its positive weights, each taking its own mean, when
//! the codebook has room (fewer than `2^B - 1` nonempty clusters); without room the centroid
//! becomes the mean of the side with more weights (the positive side on a tie), and the other
//! side's weights take their nearest centroid. The mean of a one-signed cluster is never zero
//! (it is kept between its smallest and largest member, which the rounding to f32 cannot
//! cross), so no centroid is ever `0.0`. The rule changes nothing unless an update produces a
//! mean of exactly zero, which is where scipy's code book would hold a `0.0` centroid.
//!
//! ## Speed
//! In one dimension each cluster is a contiguous range of the sorted weights. The nonzero
//! weights are sorted once (radix sort) with f64 prefix sums; an iteration then finds each
//! cluster's boundary by binary search for the midpoint between neighbouring centroids, its mean
//! from two prefix sums, and its distortion from prefix sums split at the centroid: `O(k log n)`
//! per iteration, no pass over the weights. The codes take one pass with a binary search over
//! the `k - 1` midpoints per weight (a table over the weights' top 16 bits answers most weights
//! without searching). Memory: 8 bytes per nonzero weight while sorting, 4.5 during the
//! iterations, plus the codes.
//!
//! ## Other initialisations
//! [`Init::Density`], [`Init::Random`] and [`Init::KMeansPlusPlus`] choose the starting
//! centroids differently and then run the same iterations. The random ones use the crate's own
//! seeded SplitMix64, so a seed gives the same bytes on every machine.
//!
//! # Entropy-constrained sharing
//! [`entropy_constrained`] re-shares a layer from a k-means start so that its codes cost fewer bits once
//! entropy-coded, at a chosen price in distortion (ECSQ; see the function).
//!
//! # Trained quantization
//! [`centroid_gradients`] sums the gradients of the weights sharing each centroid (Han et al.'s
//! rule; code 0 gets none), [`reconstruct`] / [`reconstruct_into`] rebuild a blob from a
//! (possibly updated) codebook and the codes, [`assign`] re-assigns weights to a given codebook.
//!
//! # Example
//! ```
//! use quantize::{quantize, KMeansOptions};
//!
//! let w = [0.0f32, 0.9, -0.4, 1.1, 0.0, -0.6, 1.0, -0.0];
//! let q = quantize(&w, &KMeansOptions::new(1))?;
//! // One bit: one shared nonzero value, here the mean of all nonzero weights.
//! assert_eq!(q.codebook, [0.0, 0.4]);
//! assert_eq!(q.codes, [0, 1, 1, 1, 0, 1, 1, 0]);
//!
//! let q = quantize(&w, &KMeansOptions::new(2))?;
//! // Two bits: linspace(-0.6, 1.1, 3) = [-0.6, 0.25, 1.1] moves to the cluster means.
//! assert_eq!(q.codebook, [0.0, -0.5, 1.0]);
//! assert_eq!(q.reconstruct(), [0.0, 1.0, -0.5, 1.0, 0.0, -0.5, 1.0, 0.0]);
//!
//! // Fine-tuning: the gradient of a centroid is the sum of its weights' gradients.
//! let grads = [9.0f32, 0.1, 0.2, 0.3, 9.0, 0.4, 0.5, 9.0];
//! let g = quantize::centroid_gradients(&q.codes, &grads, q.codebook.len())?;
//! assert_eq!(g, [0.0, 0.6, 0.90000004]);
//! # Ok::<(), quantize::QuantizeError>(())
//! ```
#![warn(missing_docs)]

mod codes;
mod ecsq;
mod error;
mod init;
mod kmeans;
mod prefix;
mod rng;
mod sort;

#[doc(hidden)]
pub mod reference;

pub use codes::{assign, centroid_gradients, check_codebook, reconstruct, reconstruct_into};
pub use ecsq::entropy_constrained;
pub use error::QuantizeError;
pub use init::Init;
pub use kmeans::{kmeans, quantize, Clustering, KMeansOptions, Quantized};

#[cfg(feature = "synthetic")]
pub mod synthetic {
    //! Deterministic weights for the tests and benchmarks (feature `synthetic`).

    /// SplitMix64, then Irwin-Hall (sum of four 32-bit uniforms) for a roughly normal value with
    /// std 0.05, like trained layers; the same generator as the `prune` crate's benchmarks.
    pub fn weights(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let low = |x: u64| x & 0xffff_ffff;
        (0..len)
            .map(|_| {
                let (a, b) = (rng.next_u64(), rng.next_u64());
                let sum = low(a) + (a >> 32) + low(b) + (b >> 32);
                ((sum as f64 / 4_294_967_296.0 - 2.0) * (0.05 / (1.0f64 / 3.0).sqrt())) as f32
            })
            .collect()
    }

    /// `values` as the tests' quantized models have them: the smallest `1 - keep` of the magnitudes set to `+0.0`
    /// (none for `keep >= 1`), then shared to `bits` bits by [`crate::quantize`] with its defaults.
    pub fn prune_and_share(values: &[f32], keep: f64, bits: u32) -> Vec<f32> {
        let mut magnitudes: Vec<f32> = values.iter().map(|v| v.abs()).collect();
        magnitudes.sort_by(f32::total_cmp);
        let cut = if keep >= 1.0 || values.is_empty() {
            -1.0
        } else {
            magnitudes[((1.0 - keep) * (magnitudes.len() - 1) as f64) as usize]
        };
        let pruned: Vec<f32> = values.iter().map(|&v| if v.abs() <= cut { 0.0 } else { v }).collect();
        crate::quantize(&pruned, &crate::KMeansOptions::new(bits))
            .expect("finite weights and 1..=8 bits")
            .reconstruct()
    }

    /// [`weights`] with every `|w| <= cut` set to `+0.0`, as magnitude pruning leaves a layer
    /// (`cut = 0.05` keeps about a third, `0.0825` about a tenth).
    pub fn pruned(len: usize, seed: u64, cut: f32) -> Vec<f32> {
        let mut w = weights(len, seed);
        for x in &mut w {
            if x.abs() <= cut {
                *x = 0.0;
            }
        }
        w
    }
}
