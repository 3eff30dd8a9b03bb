//! Error types: [`SparseError`] for the in-memory codecs, [`NpzError`] for files.

use std::path::PathBuf;

/// What went wrong while encoding, decoding or converting a blob in memory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SparseError {
    /// Guards `1 <= index_bits <= 16`: a gap must fit the `u8`/`u16` it is
    /// stored in, and a 0-bit gap could never skip a zero.
    #[error("index bits must be in 1..=16, got {index_bits}")]
    InvalidIndexBits {
        /// The rejected bit count.
        index_bits: u8,
    },

    /// Guards that a pruning cut is a magnitude: at least 0 and not NaN.
    #[error("a pruning cut must be a magnitude (>= 0, not NaN), got {}", f32::from_bits(*cut_bits))]
    InvalidCut {
        /// The rejected cut, as `f32::to_bits` (bits keep the error `Eq`).
        cut_bits: u32,
    },

    /// Guards that every stored value has exactly one gap.
    #[error("gap-encoded values and gaps differ in length: {values} values, {gaps} gaps")]
    ValuesGapsLengthMismatch {
        /// Number of values given.
        values: usize,
        /// Number of gaps given.
        gaps: usize,
    },

    /// Guards that decoding never writes past the dense length: entry `entry`
    /// starts at dense position `position` and, after skipping `gap` zeros,
    /// would land at or beyond `dense_len`.
    #[error(
        "gap-encoded entry {entry} overruns the blob: it starts at position {position}, \
         skips {gap} zeros, but the blob has only {dense_len} elements"
    )]
    GapOverrun {
        /// Index of the offending entry.
        entry: usize,
        /// Its gap.
        gap: usize,
        /// Dense position reached before this entry.
        position: usize,
        /// The requested dense length.
        dense_len: usize,
    },

    /// Guards that the entries rebuild the whole blob: they cover only
    /// `decoded` of `dense_len` elements.
    #[error("gap-encoded entries rebuild only {decoded} of {dense_len} elements")]
    DecodedTooShort {
        /// Elements the entries cover.
        decoded: usize,
        /// The requested dense length.
        dense_len: usize,
    },

    /// Guards that a blob viewed as a matrix has a first dimension (rows).
    #[error("a blob viewed as a matrix needs at least one dimension, got shape []")]
    EmptyShape,

    /// Guards that the product of the shape is representable.
    #[error("shape {shape:?} has more elements than fit in memory")]
    ShapeOverflow {
        /// The shape.
        shape: Vec<usize>,
    },

    /// Guards that the blob holds exactly the elements its shape claims.
    #[error("shape {shape:?} has {expected} elements but the blob has {actual}")]
    ShapeLenMismatch {
        /// The shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Length of the blob.
        actual: usize,
    },

    /// Guards scipy's default `int32` index arrays: `what` (rows, columns or
    /// stored entries) must not exceed `i32::MAX`.
    #[error("{what} = {value} exceeds i32::MAX, the limit of int32 sparse indices")]
    IndexOverflow {
        /// Which quantity overflowed: "rows", "columns" or "nonzeros".
        what: &'static str,
        /// Its value.
        value: usize,
    },
}

/// What went wrong while writing or reading a `.npz` file.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    /// Guards the output: created beside its target, synced and renamed into place (see the `outfile` crate).
    #[error(transparent)]
    Output(#[from] outfile::OutputError),
    /// Guards every file-system operation on `path` (open, create, write,
    /// sync, rename).
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "create temporary file in".
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Guards the zip container: the archive (or, with `key`, one member of it)
    /// could not be read or written as a zip.
    #[error("zip archive error{}: {source}", key.as_ref().map(|k| format!(" at key {k:?}")).unwrap_or_default())]
    Zip {
        /// The member concerned, if any.
        key: Option<String>,
        /// The underlying error.
        #[source]
        source: zip::result::ZipError,
    },

    /// Guards reading one member's bytes (I/O or decompression failure).
    #[error("key {key:?}: reading member failed: {source}")]
    MemberIo {
        /// The member concerned.
        key: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Guards keys that `np.load` could not return unchanged: empty keys and
    /// keys holding a NUL byte (Python's zipfile cuts names at NUL).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// Guards that each key appears once in an archive being written.
    #[error("key {key:?} was already written to this archive")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },

    /// Guards reads of keys the archive does not have.
    #[error("key {key:?} is not in the archive")]
    MissingKey {
        /// The requested key.
        key: String,
    },

    /// Guards the `.npy` header syntax: `reason` at byte `offset` of member `key`.
    #[error("key {key:?}: bad .npy header at byte {offset}: {reason}")]
    Header {
        /// The member concerned.
        key: String,
        /// Byte offset within the member.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },

    /// Guards that the dtype is one this crate reads: little-endian
    /// f4/f8/u1/u2/i4/i8 or `|S<n>` with n >= 1.
    #[error("key {key:?}: unsupported dtype {descr:?}")]
    UnsupportedDtype {
        /// The member concerned.
        key: String,
        /// The header's `descr` value.
        descr: String,
    },

    /// Guards typed reads: the array's dtype is not the one asked for.
    #[error("key {key:?}: dtype is {found}, expected {expected}")]
    DtypeMismatch {
        /// The member concerned.
        key: String,
        /// The dtype asked for.
        expected: String,
        /// The dtype in the file.
        found: String,
    },

    /// Guards C order: Fortran-ordered data would be read transposed.
    #[error("key {key:?}: Fortran-ordered arrays are not supported (write it with C order)")]
    FortranOrder {
        /// The member concerned.
        key: String,
    },

    /// Guards that the shape's element and byte counts are representable.
    #[error("key {key:?}: shape {shape:?} is too large to address")]
    ShapeOverflow {
        /// The member concerned.
        key: String,
        /// The shape.
        shape: Vec<usize>,
    },

    /// Guards numpy's limit of 64 dimensions (which also keeps headers small).
    #[error("key {key:?}: {ndim} dimensions exceed numpy's limit of 64")]
    TooManyDims {
        /// The member concerned.
        key: String,
        /// Number of dimensions given.
        ndim: usize,
    },

    /// Guards writes: the data holds exactly the elements its shape claims.
    #[error("key {key:?}: shape {shape:?} has {expected} elements but {actual} were given")]
    ShapeLenMismatch {
        /// The member concerned.
        key: String,
        /// The shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Number of elements given.
        actual: usize,
    },

    /// Guards that the header's claimed data size equals what the zip member
    /// declares, before anything is allocated for it (a header claiming
    /// gigabytes in a small file stops here).
    #[error("key {key:?}: header claims {claimed} data bytes but the member holds {available} bytes after the header")]
    SizeMismatch {
        /// The member concerned.
        key: String,
        /// Bytes the header's shape and dtype imply.
        claimed: u64,
        /// Bytes the zip member declares after the header.
        available: u64,
    },

    /// Guards that the member really delivers the bytes it declares.
    #[error("key {key:?}: member truncated: expected {expected} data bytes, got {got}")]
    Truncated {
        /// The member concerned.
        key: String,
        /// Bytes expected.
        expected: u64,
        /// Bytes actually read.
        got: u64,
    },
}
