//! Errors: [`FormatError`] for a `.caffez` file that cannot be read, [`CompressError`] for a model that cannot
//! be written as one.

/// Why a `.caffez` file was refused. Every variant names the place: the section (`"header"`, `"section 0
/// (skeleton)"`, `"section 3 (ip1 blob 0)"`) and an absolute byte offset in the file.
///
/// Together the checks make reading total: every input either gives back the one model it was written from,
/// or is refused with one of these, with nothing allocated beyond what the checked sizes justify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Guards that the file starts with the magic bytes `\x89CAFFEZ\n`.
    #[error("not a .caffez file: it does not start with the magic bytes \\x89CAFFEZ\\n")]
    BadMagic,

    /// Guards the format version this reader knows (1).
    #[error("header at byte 8: format version {version} (this reader knows version 1)")]
    Version {
        /// The version found.
        version: u16,
    },

    /// Guards that every field lies inside the file: `what` at byte `offset` needs `needed` bytes and the file
    /// has `available` from there.
    #[error("{what} at byte {offset}: needs {needed} bytes, the file has {available} from there (truncated?)")]
    Truncated {
        /// The field or section cut short.
        what: String,
        /// Where it starts.
        offset: u64,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left.
        available: u64,
    },

    /// Guards integrity: the CRC-32 stored for `what` does not match its bytes.
    #[error(
        "{what} at byte {offset}: checksum {found:08x} does not match the stored {stored:08x} (the file is damaged)"
    )]
    Checksum {
        /// The header, a section, or the model given back.
        what: String,
        /// Where it starts.
        offset: u64,
        /// The CRC-32 stored in the file.
        stored: u32,
        /// The CRC-32 of the bytes.
        found: u32,
    },

    /// Guards every other rule of the format (see the crate docs): `what` at byte `offset` breaks it as
    /// `reason` says.
    #[error("{what} at byte {offset}: {reason}")]
    Invalid {
        /// The field or section.
        what: String,
        /// Where it is.
        offset: u64,
        /// The rule broken.
        reason: String,
    },

    /// Guards that a coded chunk decodes: the entropy coder refused it.
    #[error("{what} at byte {offset}: {source}")]
    Stream {
        /// The chunk.
        what: String,
        /// Where its stream starts.
        offset: u64,
        /// The coder's reason.
        source: entropy::DecodeError,
    },

    /// Guards memory: the model given back would need `bytes` bytes that cannot be allocated.
    #[error("the model given back needs {bytes} bytes, which cannot be allocated")]
    OutOfMemory {
        /// The bytes needed.
        bytes: u64,
    },
}

impl FormatError {
    pub(crate) fn invalid(what: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Why a model could not be written as a `.caffez` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// The model file could not be parsed.
    #[error(transparent)]
    Model(#[from] caffemodel::Error),

    /// Guards that the file is worth a `.caffez`: at least one weight blob is quantized (at most 255 distinct
    /// nonzero values, one packed float payload).
    #[error("{path}: no weight blob is quantized (each has more than 255 distinct values): run `caffe-prune quantize` first")]
    NothingQuantized {
        /// The model's path.
        path: String,
    },

    /// The entropy coder refused a chunk (a bug: the codes are built to fit).
    #[error("layer '{layer}' blob {blob}: {source}")]
    Encode {
        /// The layer.
        layer: String,
        /// The blob's index in the layer.
        blob: usize,
        /// The coder's reason.
        source: entropy::EncodeError,
    },
}
