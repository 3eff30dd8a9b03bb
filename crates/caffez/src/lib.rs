//! The `.caffez` file: a pruned, quantized Caffe model in the fewest bytes, given back byte for byte.
//!
//! Deep Compression's third stage. A quantized model (every weight blob holds at most 255 distinct values
//! besides the pruned `+0.0`, as `caffe-prune quantize` leaves it) is split into
//! - a **skeleton**: the `.caffemodel` bytes with the payloads of the coded weight blobs cut out (layer
//!   definitions, biases, every other blob, unknown fields: all as they were), deflated;
//! - per coded blob, its **codebook** (the distinct nonzero values, ascending) and its codes (0 = pruned),
//!   arithmetic-coded in chunks ([`entropy::sparse`]: gaps between kept weights and the codes of the kept
//!   weights, with adaptive contexts; within about 1% of their entropy).
//!
//! [`decompress`] rebuilds the exact `.caffemodel` bytes: the skeleton with each blob's payload written
//! back at its place, checked against the CRC-32 of the original. The complete layout, precise enough to
//! write a decoder from, is in `docs/caffez.md` of the repository; [`mod@format`] has the reader.
//!
//! Reading is safe against hostile files: every size is checked against the bytes that back it before
//! anything is allocated, every section has a CRC-32, every error names the section and byte offset.
//!
//! ```no_run
//! let model = caffemodel::ModelFile::open("quantized.caffemodel")?;
//! let compressed = caffez::compress(&model)?;
//! let back = caffez::decompress(&compressed.bytes)?;
//! assert_eq!(back, model.bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod codec;
mod error;
pub mod format;
/// The fuzz target's body, for `fuzz/` and the corpus-replaying tests (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use codec::{compress, decompress, BlobReport, Compressed, CHUNK_LEN};
pub use error::{CompressError, FormatError};
pub use format::{CaffezFile, MAGIC};

/// True when `bytes` start like a `.caffez` file.
pub fn is_caffez(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Why [`open_model`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The model file (or the model a `.caffez` gave back) could not be read.
    #[error(transparent)]
    Model(#[from] caffemodel::Error),
    /// The `.caffez` file is damaged or not one.
    #[error("{path}: {source}")]
    Caffez {
        /// The file.
        path: String,
        /// What is wrong.
        source: FormatError,
    },
}

/// Opens a model for reading whatever its form: a `.caffez` (recognised by its first bytes) is given back in
/// memory, any other file is memory-mapped as [`caffemodel::ModelFile::open`] does.
pub fn open_model(path: impl AsRef<std::path::Path>) -> Result<caffemodel::ModelFile, OpenError> {
    use std::io::Read as _;
    let path = path.as_ref();
    let mut head = [0u8; MAGIC.len()];
    let is_caffez = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| is_caffez(&head));
    if !is_caffez {
        return Ok(caffemodel::ModelFile::open(path)?);
    }
    let bytes = std::fs::read(path).map_err(|e| caffemodel::Error::io(path, e))?;
    let model = decompress(&bytes).map_err(|source| OpenError::Caffez {
        path: path.display().to_string(),
        source,
    })?;
    Ok(caffemodel::ModelFile::from_bytes(path, model)?)
}
