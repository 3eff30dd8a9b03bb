//! The one error type of this crate: every variant names the file and says where the problem is.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a Caffe file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened, mapped, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A path that must be a regular file is a directory.
    #[error("{}: is a directory, not a file", path.display())]
    IsDirectory {
        /// The path.
        path: PathBuf,
    },
    /// A Caffe file is never empty (Caffe itself refuses to load an empty net).
    #[error("{}: file is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file starts with the signature of another format.
    #[error("{}: this is {what}, not a Caffe protobuf file", path.display())]
    ForeignFormat {
        /// The file.
        path: PathBuf,
        /// The format recognised, e.g. "a PNG image".
        what: &'static str,
    },
    /// The protobuf wire format is broken: truncated, a bad length, a wrong wire type.
    #[error("{}: not a valid {message}: {error}", path.display())]
    Wire {
        /// The file.
        path: PathBuf,
        /// The message the file was read as.
        message: &'static str,
        /// What is wrong and where.
        error: crate::tree::ParseError,
    },
    /// The bytes parse, but hold nothing a Caffe file of this kind would: no known field at all.
    #[error("{}: not a {message}: none of its fields are known to the schema (first field number {first_field} at byte 0)", path.display())]
    NotCaffe {
        /// The file.
        path: PathBuf,
        /// The message the file was read as.
        message: &'static str,
        /// The first field number found.
        first_field: u32,
    },
    /// A protobuf text file (prototxt) does not parse.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Text {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file is well-formed but its content is inconsistent (for example a blob whose shape and data disagree).
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is inconsistent, and where.
        message: String,
    },
    /// An output could not be written (the `outfile` error names the target and the step).
    #[error(transparent)]
    Output(#[from] outfile::OutputError),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
