//! Deep Compression magnitude pruning over plain `f32` weight blobs.
//!
//! This crate knows no file format: it takes slices (and a shape where a rule needs one), zeroes
//! the weights a rule drops, and reports what it did. Every rule is deterministic.
//!
//! # The keep-fraction rule
//! For a blob of `N` weights and keep fraction `t` in `[0, 1]`: `k = floor((N - 1) * t)` in f64,
//! `cut = sort(|W|, descending)[k]` (0-based), and a weight survives when `|w| > cut` (strict,
//! so ties at the cut are dropped). This is the numpy definition used to make the golden pruned
//! LeNets, and gives the same masks bit for bit. `t = 1` leaves the blob untouched (not even the
//! smallest weight is zeroed). Dropped weights become `+0.0`. With distinct magnitudes exactly
//! `k` weights survive.
//!
//! The cut is found by selection, not sorting: up to 1 Ki weights `select_nth_unstable` on a stack
//! copy of the magnitude bits; above, a deterministic sample brackets the answer and one read-only
//! pass counts the weights above the bracket and collects the few inside it, which are then
//! selected (about `N^(2/3)` of them). If the bracket misses (heavily tied or adversarial data),
//! the exact fallbacks decide: selection on a scratch copy below 32 Ki weights, a two-level radix
//! histogram (two read-only passes) above. Every path gives the same cut. Blobs of 2 Mi weights and
//! more use the rayon pool.
//!
//! # Pruning and sparse export in one pass
//! [`keep_fraction_cut`] / [`global_cut`] decide without touching the blob; a caller that also
//! exports the blob can then zero and encode it in one pass with the `sparse` crate's
//! `encode_gaps_pruned(weights, bits, cut)`, which zeroes exactly the weights [`prune_in_place`]
//! zeroes (both compare magnitude bits, `|w| > cut` keeps).
//!
//! # Other rules
//! - [`global_cut`] / [`prune_global_in_place`]: one cut over several blobs together.
//! - [`Rule::StdMultiple`]: Han et al.'s `|w| > q * std(W)`.
//! - [`prune_filters`]: whole output filters by L1 norm.
//! - [`Mask`]: the kept set of a pruned blob, re-applied during retraining.
//!
//! ```
//! use prune::{prune_in_place, Mask, Rule};
//!
//! // N = 5, t = 0.5: k = floor(4 * 0.5) = 2; |W| descending 0.7, 0.5, 0.3, 0.2, 0.1: cut 0.3.
//! let mut w = [0.5f32, -0.1, 0.3, -0.7, 0.2];
//! let report = prune_in_place(&mut w, Rule::KeepFraction(0.5))?;
//! assert_eq!(w, [0.5, 0.0, 0.0, -0.7, 0.0]);
//! assert_eq!((report.kept, report.threshold), (2, Some(f64::from(0.3f32))));
//!
//! // Retraining moves every weight; the mask puts the pruned ones back to zero.
//! let mask = Mask::from_nonzero(&w);
//! let mut retrained = [0.45f32, 0.01, -0.02, -0.66, 0.03];
//! mask.apply(&mut retrained)?;
//! assert_eq!(retrained, [0.45, 0.0, 0.0, -0.66, 0.0]);
//! # Ok::<(), prune::PruneError>(())
//! ```
#![warn(missing_docs)]

mod cut;
mod error;
mod filters;
mod mask;
mod stats;

pub use error::PruneError;

#[cfg(feature = "synthetic")]
pub mod synthetic {
    //! Deterministic weights shared by the benchmarks and `xtask/baselines/prune_numpy.py` (feature `synthetic`).

    /// SplitMix64, then Irwin-Hall (sum of four 32-bit uniforms, two draws per weight) for a roughly
    /// normal value with std 0.05; the sums take ~2^34 values, so ties are as rare as in trained weights.
    /// `xtask/baselines/prune_numpy.py` makes the same weights bit for bit.
    pub fn weights(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let low = |x: u64| x & 0xffff_ffff;
        (0..len)
            .map(|_| {
                let (a, b) = (next(), next());
                let sum = low(a) + (a >> 32) + low(b) + (b >> 32);
                // sum / 2^32 has mean 2 and std sqrt(4/12); scale to std 0.05.
                ((sum as f64 / 4_294_967_296.0 - 2.0) * (0.05 / (1.0f64 / 3.0).sqrt())) as f32
            })
            .collect()
    }
}
pub use filters::{prune_filters, FilterReport};
pub use mask::Mask;

use cut::{apply_cut, check_keep_fraction, count_nonzero_checked, cut_rank, find_cut, total_len};

/// A per-blob magnitude pruning rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Keep fraction `t` in `[0, 1]`: keep `|w| > sort(|W|, descending)[floor((N - 1) * t)]`;
    /// `t = 1` leaves the blob untouched.
    KeepFraction(f64),
    /// Han et al.: keep `|w| > q * std(W)`, with `q` finite and `>= 0` and the population
    /// standard deviation of the blob accumulated in f64.
    StdMultiple(f64),
}

/// What pruning did to one blob.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobReport {
    /// The rule applied (for global pruning: the keep fraction asked of the whole group).
    pub rule: Rule,
    /// Number of weights `N`.
    pub len: usize,
    /// The threshold used: weights with `|w| > threshold` were kept. For a keep fraction this is
    /// the f32 cut, widened exactly; for a std multiple it is `q * std`, compared exactly.
    /// `None` when the blob was left untouched (keep fraction 1, or no weights).
    pub threshold: Option<f64>,
    /// Weights the rule kept: those above the threshold, or all `N` when untouched.
    pub kept: usize,
    /// Nonzero weights before pruning.
    pub nonzeros_before: usize,
    /// Nonzero weights after pruning.
    pub nonzeros_after: usize,
}

impl BlobReport {
    /// The keep fraction asked for, if the rule was one.
    pub fn requested_keep(&self) -> Option<f64> {
        match self.rule {
            Rule::KeepFraction(t) => Some(t),
            Rule::StdMultiple(_) => None,
        }
    }

    /// `kept / N`; 1 for a blob with no weights (nothing was removed).
    pub fn achieved_keep(&self) -> f64 {
        if self.len == 0 {
            1.0
        } else {
            self.kept as f64 / self.len as f64
        }
    }

    /// The report for a blob of `len` weights, `nonzeros` of them nonzero, that the rule left as it was.
    pub fn untouched(rule: Rule, len: usize, nonzeros: usize) -> BlobReport {
        BlobReport {
            rule,
            len,
            threshold: None,
            kept: len,
            nonzeros_before: nonzeros,
            nonzeros_after: nonzeros,
        }
    }

    /// The report for a blob of `len` weights pruned at `threshold` (weights with `|w| > threshold` kept), from
    /// `counts`: the nonzeros before, and the weights kept. For a caller that prunes by other means (in one pass
    /// with its sparse encoding, say) and reports as [`prune_in_place`] does.
    pub fn pruned(rule: Rule, len: usize, threshold: f64, counts: (usize, usize)) -> BlobReport {
        let (nonzeros_before, kept) = counts;
        BlobReport {
            rule,
            len,
            threshold: Some(threshold),
            kept,
            nonzeros_before,
            // Kept weights have |w| > threshold >= 0, so they are exactly the nonzeros left.
            nonzeros_after: kept,
        }
    }
}

/// The keep-fraction cut of one blob: `sort(|W|, descending)[floor((N - 1) * t)]`, or `None`
/// when the blob is to be left untouched (`t = 1`, or no weights). Weights with `|w| > cut` are
/// the ones to keep.
pub fn keep_fraction_cut(weights: &[f32], t: f64) -> Result<Option<f32>, PruneError> {
    global_cut(&[weights], t)
}

/// One keep-fraction cut over the concatenation of `blobs`' magnitudes (Deep Compression's
/// global threshold). `None` when nothing is to be pruned (`t = 1`, or no weights at all).
/// A NaN is reported with the position of its blob in `blobs`.
pub fn global_cut(blobs: &[&[f32]], t: f64) -> Result<Option<f32>, PruneError> {
    Ok(match decide(blobs, t)? {
        Decision::Untouched(_) => None,
        Decision::Cut(bits) => Some(f32::from_bits(bits)),
    })
}

/// What a keep-fraction request decides for a group of blobs.
enum Decision {
    /// Leave every blob as it is; the nonzero count of each (the NaN check counted them).
    Untouched(Vec<usize>),
    /// Keep weights whose magnitude bits are above these.
    Cut(u32),
}

/// Validates and decides a keep-fraction request over `blobs`.
fn decide(blobs: &[&[f32]], t: f64) -> Result<Decision, PruneError> {
    check_keep_fraction(t)?;
    let total = total_len(blobs.iter().map(|b| b.len()))?;
    if total == 0 || t == 1.0 {
        return Ok(Decision::Untouched(count_nonzero_checked(blobs)?));
    }
    Ok(Decision::Cut(find_cut(blobs, cut_rank(total, t))?))
}

/// Prunes one blob in place by `rule`; dropped weights become `+0.0`.
/// On error the blob is unchanged.
pub fn prune_in_place(weights: &mut [f32], rule: Rule) -> Result<BlobReport, PruneError> {
    let len = weights.len();
    match rule {
        Rule::KeepFraction(t) => {
            let mut reports = prune_global_in_place(&mut [weights], t)?;
            Ok(BlobReport {
                rule,
                ..reports.swap_remove(0)
            })
        }
        Rule::StdMultiple(q) => {
            if !(q.is_finite() && q >= 0.0) {
                return Err(PruneError::InvalidStdMultiple(q));
            }
            if len == 0 {
                return Ok(BlobReport::untouched(rule, 0, 0));
            }
            let threshold = q * stats::population_std(weights)?;
            let cut = stats::f32_cut_at_or_below(threshold);
            Ok(BlobReport::pruned(rule, len, threshold, apply_cut(weights, cut)))
        }
    }
}

/// Prunes several blobs with one global keep-fraction cut ([`global_cut`]); returns one report
/// per blob, in order. On error no blob is changed.
pub fn prune_global_in_place(blobs: &mut [&mut [f32]], t: f64) -> Result<Vec<BlobReport>, PruneError> {
    let rule = Rule::KeepFraction(t);
    let views: Vec<&[f32]> = blobs.iter().map(|b| &**b).collect();
    let cut = match decide(&views, t)? {
        Decision::Cut(cut) => cut,
        Decision::Untouched(nonzeros) => {
            return Ok(views
                .iter()
                .zip(nonzeros)
                .map(|(b, nz)| BlobReport::untouched(rule, b.len(), nz))
                .collect());
        }
    };
    let threshold = f64::from(f32::from_bits(cut));
    Ok(blobs
        .iter_mut()
        .map(|b| BlobReport::pruned(rule, b.len(), threshold, apply_cut(b, cut)))
        .collect())
}
