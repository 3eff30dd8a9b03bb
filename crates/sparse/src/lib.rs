//! Sparse forms of pruned weight blobs, and the numpy files that carry them.
//!
//! This crate knows nothing of Caffe: it works on plain `f32` slices in
//! row-major order with a shape.
//!
//! * [`encode_gaps`] / [`decode_gaps`]: Deep Compression's relative-index
//!   ("gap") encoding with `B`-bit unsigned gaps and filler zeros;
//!   [`encode_gaps_pruned`] zeroes the values at or below a magnitude cut
//!   and encodes the rest in the same pass (pruning and export in one read
//!   of the blob); [`encode_gaps_cut`] gives the same encoding and leaves
//!   the blob as it is.
//!   Blobs of 2 Mi values and more are encoded in parallel chunks, stitched
//!   into exactly the sequential output.
//! * [`Csr`] / [`Csc`]: a blob viewed as `shape[0]` rows by the product of the
//!   remaining dimensions, with scipy's `int32` index arrays.
//! * [`NpzWriter`] / [`NpzReader`]: deterministic, atomic `.npz` files that
//!   `np.load(..., allow_pickle=False)` reads, and [`write_scipy_sparse`] for
//!   `scipy.sparse.load_npz`.
//!
//! Everywhere, "nonzero" means `v != 0.0`: -0.0 counts as zero (and comes back
//! as +0.0), NaN counts as nonzero.
#![warn(missing_docs)]

mod compressed;
mod error;
mod gaps;
mod npy;
mod npz;
mod scan;

pub use compressed::{CompressedMatrix, Csc, Csr};
pub use error::{NpzError, SparseError};
pub use gaps::{
    decode_gaps, decode_gaps_into, encode_gaps, encode_gaps_cut, encode_gaps_pruned, gap_entry_count, gap_width_bytes,
    GapEncoded, Gaps, GapsRef, PruneCounts, MAX_INDEX_BITS, MIN_INDEX_BITS,
};
pub use npy::{Array, ByteStrings, DType, NpyElement, NpyHeader, MAX_DIMS};
pub use npz::{read_npy, write_npy, write_scipy_sparse, NpzReader, NpzWriter};
