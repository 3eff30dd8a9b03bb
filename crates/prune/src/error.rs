//! The one error type of this crate.

use thiserror::Error;

/// Why a pruning request was refused. Nothing is modified when an error is returned.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PruneError {
    /// A keep fraction must lie in `[0, 1]` (NaN is refused): it is the share of weights that survive.
    #[error("keep fraction {0} is not in [0, 1]")]
    InvalidKeepFraction(f64),

    /// The multiple `q` of Han et al.'s `q * std(W)` threshold must be finite and non-negative.
    #[error("std multiple {0} must be finite and >= 0")]
    InvalidStdMultiple(f64),

    /// Weights must not be NaN: a NaN has no magnitude to rank, so no cut can be defined.
    /// `blob` is the position in the list given (0 for single-blob functions), `index` the element.
    #[error("weight {index} of blob {blob} is NaN")]
    NanWeight {
        /// Which blob of the list holds the NaN (0 for single-blob functions).
        blob: usize,
        /// Position of the first NaN inside that blob.
        index: usize,
    },

    /// The std-multiple rule needs a finite standard deviation, so every weight must be finite.
    #[error("weight {index} is infinite; the standard deviation is undefined")]
    InfiniteWeight {
        /// Position of the first infinite weight.
        index: usize,
    },

    /// The rank `k = floor((N - 1) * t)` is computed in f64, which is exact only for `N <= 2^53`.
    #[error("{0} weights are too many for an exact rank (limit 2^53)")]
    TooManyWeights(u128),

    /// A filter shape needs at least one dimension (the output filters).
    #[error("filter pruning needs a shape of rank >= 1")]
    EmptyShape,

    /// The product of the shape must equal the number of weights (and fit in `usize`).
    #[error("shape {shape:?} does not describe {len} weights")]
    ShapeMismatch {
        /// The shape given.
        shape: Vec<usize>,
        /// The number of weights given.
        len: usize,
    },

    /// A mask can only be applied to a blob of the length it was built for.
    #[error("mask of {mask_len} entries applied to {len} weights")]
    MaskLengthMismatch {
        /// Entries in the mask.
        mask_len: usize,
        /// Weights in the blob.
        len: usize,
    },
}
