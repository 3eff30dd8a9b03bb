//! The one error type of this crate.

use thiserror::Error;

/// Why a request was refused. Each variant names the invariant it guards; nothing is returned
/// half-done when an error is.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum QuantizeError {
    /// The bit width `B` must lie in `1..=8`: a code is one byte and code 0 is reserved for the
    /// pruned zeros, so `2^B - 1 <= 255` shared nonzero values fit beside it.
    #[error("bit width {0} is not in 1..=8")]
    InvalidBits(u32),

    /// Weights must not be NaN: a NaN has no distance to any centroid.
    #[error("weight {index} is NaN")]
    NanWeight {
        /// Position of the first NaN.
        index: usize,
    },

    /// Weights must be finite: an infinite weight would make its cluster's mean infinite.
    #[error("weight {index} is infinite")]
    InfiniteWeight {
        /// Position of the first infinite weight.
        index: usize,
    },

    /// The stopping threshold (the change of the mean distortion at or below which k-means stops)
    /// must be finite and `>= 0`.
    #[error("k-means threshold {0} must be finite and >= 0")]
    InvalidThreshold(f64),

    /// At least one k-means iteration is needed to turn an initialisation into cluster means.
    #[error("max_iterations must be at least 1")]
    ZeroIterations,

    /// A codebook holds between 1 and 256 entries: index 0 (the pruned zeros) is always there,
    /// and a one-byte code cannot address more than 256.
    #[error("a codebook has 1..=256 entries, not {0}")]
    InvalidCodebookLength(usize),

    /// Index 0 of a codebook must be `+0.0`, so that code 0 rebuilds the pruned zeros exactly.
    #[error("codebook entry 0 is {0:e}, not +0.0")]
    NonZeroFirstEntry(f32),

    /// Centroids (codebook indices `1..`) must be finite and nonzero, so that every nonzero weight
    /// stays nonzero (the pruning mask is kept).
    #[error("codebook entry {index} is {value:e}; centroids must be finite and nonzero")]
    InvalidCentroid {
        /// Codebook index of the offending centroid (at least 1).
        index: usize,
        /// Its value.
        value: f32,
    },

    /// Centroids must be strictly ascending, so that nearest-centroid assignment is a search
    /// over the midpoints between neighbours and every code names one value.
    #[error("codebook entry {index} is not above entry {}", index - 1)]
    CentroidsNotAscending {
        /// Codebook index of the first centroid not above its predecessor (at least 2).
        index: usize,
    },

    /// Nonzero weights need at least one nonzero centroid to take.
    #[error("the codebook has no centroid for the nonzero weights")]
    NoCentroids,

    /// Every code must index the codebook.
    #[error("code {code} at position {index} is outside a codebook of {codebook_len} entries")]
    CodeOutOfRange {
        /// Position of the first offending code.
        index: usize,
        /// The code found there.
        code: u8,
        /// Entries in the codebook.
        codebook_len: usize,
    },

    /// Paired arrays (codes and weights, codes and gradients, codes and an output blob) must have
    /// the same length: element `i` of one belongs to element `i` of the other.
    #[error("{codes} codes paired with {values} values")]
    LengthMismatch {
        /// Number of codes.
        codes: usize,
        /// Number of values (weights, gradients or output slots).
        values: usize,
    },

    /// The entropy-constrained trade-off must be a finite number >= 0 (0 is plain k-means).
    #[error("entropy weight {lambda} must be finite and >= 0")]
    BadLambda {
        /// The value given.
        lambda: f64,
    },
}
