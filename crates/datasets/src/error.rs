//! The one error type of this crate: every variant names the file or folder, and the record or byte where it can.

use std::fmt;
use std::path::PathBuf;

use crate::Shape;

/// Where a record sits: its file or folder, its position in file (key) order, and its LMDB key if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The IDX images file or the LMDB folder.
    pub path: PathBuf,
    /// 0-based position in file order (LMDB: key order).
    pub position: usize,
    /// The LMDB key, printable (non-ASCII bytes escaped); `None` for IDX files.
    pub key: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: record {}", self.path.display(), self.position)?;
        if let Some(key) = &self.key {
            write!(f, " (key '{key}')")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong reading, writing, batching or transforming data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be opened, read, created or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A gzip-compressed file does not inflate: corrupt, or cut short.
    #[error("{}: broken gzip stream after {decompressed} decompressed bytes: {source}", path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// How many bytes inflated correctly before the failure.
        decompressed: u64,
        /// What flate2 reported.
        source: std::io::Error,
    },
    /// Guards the IDX header: 4 magic bytes then one big-endian u32 per dimension must be present.
    #[error("{}: {len} bytes is too short for an IDX header ({needed} bytes)", path.display())]
    IdxHeader {
        /// The file.
        path: PathBuf,
        /// Its (decompressed) length.
        len: u64,
        /// Header bytes the expected kind of IDX file needs.
        needed: u64,
    },
    /// Guards the IDX magic number: element type and dimension count must be those of the expected kind.
    #[error("{}: magic number 0x{found:08x} at byte 0 ({found_kind}); expected 0x{expected:08x} ({expected_kind})", path.display())]
    IdxMagic {
        /// The file.
        path: PathBuf,
        /// The big-endian u32 found at byte 0.
        found: u32,
        /// What that magic number denotes.
        found_kind: String,
        /// The magic number required.
        expected: u32,
        /// What the required magic number denotes.
        expected_kind: &'static str,
    },
    /// Guards the IDX payload: it must hold exactly the product of the header's dimensions in bytes.
    #[error("{}: the header's dimensions {dims:?} need {expected} data bytes after the {header}-byte header, but {}{actual} follow", path.display(), if *at_least { "at least " } else { "" })]
    IdxLength {
        /// The file.
        path: PathBuf,
        /// The dimensions read from the header.
        dims: Vec<u32>,
        /// Header length in bytes (where the data starts).
        header: u64,
        /// Data bytes the dimensions call for.
        expected: u64,
        /// Data bytes present (with `at_least`, a lower bound: inflating stopped one byte past `expected`).
        actual: u64,
        /// Whether `actual` is a lower bound.
        at_least: bool,
    },
    /// Guards arithmetic on IDX dimensions: their product must fit in memory-sized integers.
    #[error("{}: the header's dimensions {dims:?} multiply past what this machine can address", path.display())]
    IdxTooLarge {
        /// The file.
        path: PathBuf,
        /// The dimensions read from the header.
        dims: Vec<u32>,
    },
    /// Guards pairing: an image file and a label file must hold the same number of items.
    #[error("{} holds {images} images but {} holds {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// Its item count.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// Its item count.
        labels: usize,
    },
    /// Guards LMDB opening: the path must be a folder holding an LMDB `data.mdb` (Caffe's LMDB layout).
    #[error("{}: not a Caffe LMDB: {reason}", path.display())]
    NotLmdb {
        /// The path given.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// Guards LevelDB opening: the path must be a folder holding a LevelDB that opens and reads.
    #[error("{}: not a readable LevelDB: {reason}", path.display())]
    NotLeveldb {
        /// The path given.
        path: PathBuf,
        /// What is missing or wrong (LevelDB's message).
        reason: String,
    },
    /// Guards HDF5Data sources: a list naming files, each with a numeric dataset per top, rows along the first
    /// axis, the same number of rows in every top and the same row shape in every file.
    #[error("{}: {message}", path.display())]
    Hdf5 {
        /// The list or the .h5 file.
        path: PathBuf,
        /// What is wrong (the dataset named).
        message: String,
    },
    /// An LMDB library call failed.
    #[error("{}: LMDB {operation} failed: {message} (code {code})", path.display())]
    Lmdb {
        /// The LMDB folder.
        path: PathBuf,
        /// The C function that failed, e.g. `mdb_env_open`.
        operation: &'static str,
        /// LMDB's return code (an errno value or an `MDB_*` code).
        code: i32,
        /// `mdb_strerror` of the code.
        message: String,
    },
    /// Guards LMDB's one-environment-per-process rule: a folder being written here is not read through a second
    /// handle, and a folder open here is not written through one.
    #[error("{}: {}", path.display(), if *writing {
        "this LMDB is being written in this process; finish the writer before reading it"
    } else {
        "this LMDB is already open in this process; close its readers before writing it"
    })]
    AlreadyOpen {
        /// The LMDB folder.
        path: PathBuf,
        /// Whether the handle already open is a writer's.
        writing: bool,
    },
    /// Guards Caffe's `db::NEW` mode: a new LMDB is written into a folder that must not exist yet.
    #[error("{}: already exists (a new LMDB needs a fresh folder, as in Caffe's convert tools)", path.display())]
    Exists {
        /// The folder.
        path: PathBuf,
    },
    /// Guards LMDB keys: 1 to 511 bytes.
    #[error("{}: record {record}: key of {len} bytes; LMDB keys hold 1 to 511 bytes", path.display())]
    Key {
        /// The LMDB folder.
        path: PathBuf,
        /// 0-based index of the put.
        record: usize,
        /// The key's length.
        len: usize,
    },
    /// Guards `'%08d'` keys: past 99,999,999 records they stop sorting in record order.
    #[error("{}: {count} records need keys wider than '%08d', which would no longer sort in record order", path.display())]
    TooManyRecords {
        /// The LMDB folder.
        path: PathBuf,
        /// Records to write.
        count: usize,
    },
    /// Guards reading batches: a dataset with no record cannot feed a batch (Caffe's Data layer would abort).
    #[error("{}: the dataset holds no record", path.display())]
    Empty {
        /// The file or folder.
        path: PathBuf,
    },
    /// Guards LMDB values: each must be a serialized `caffe.Datum`.
    #[error("{at}: value of {len} bytes is not a caffe.Datum: {source}")]
    DatumDecode {
        /// The record.
        at: Location,
        /// Length of the value.
        len: usize,
        /// What prost reported.
        source: prost::DecodeError,
    },
    /// Guards encoded images (an encoded Datum, an ImageData file): PNG or JPEG bytes that decode to 8-bit pixels.
    #[error("{at}: {message}")]
    ImageDecode {
        /// The record.
        at: Location,
        /// What is wrong with the image bytes.
        message: String,
    },
    /// Guards an ImageData list file: `path label` lines with integer labels, at least one line, and
    /// new_height / new_width set together.
    #[error("{}: {message}", path.display())]
    ImageList {
        /// The list file.
        path: PathBuf,
        /// What is wrong, with the line number.
        message: String,
    },
    /// An image listed by an ImageData list could not be read.
    #[error("{at}: cannot read {}: {source}", file.display())]
    ImageRead {
        /// The list file and the record.
        at: Location,
        /// The image file (root_folder + listed path).
        file: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Guards a Datum's shape against its payload: dimensions at least 1, product fitting in memory, and exactly
    /// channels x height x width bytes in `data` (or floats in `float_data`).
    #[error("{at}: {message}")]
    DatumInvalid {
        /// The record.
        at: Location,
        /// What is inconsistent.
        message: String,
    },
    /// Guards `transform_param` and the mean blob before any record is seen (Caffe CHECK-fails on these).
    #[error("transform_param: {message}")]
    TransformParam {
        /// What is wrong.
        message: String,
    },
    /// Guards a record against `transform_param`: crop no larger than the record, a mean of the record's shape,
    /// one mean value or one per channel, force_color/force_gray applicable.
    #[error("{at}: {message}")]
    Transform {
        /// The record.
        at: Location,
        /// What does not fit.
        message: String,
    },
    /// Guards batches: every record of a batch has the shape of the batch's first record (Caffe CHECK-fails).
    #[error("{at}: transforms to {found} but the batch's first record transforms to {expected}")]
    BatchShape {
        /// The record.
        at: Location,
        /// The transformed shape of the batch's first record.
        expected: Shape,
        /// This record's transformed shape.
        found: Shape,
    },
    /// Guards batching: a batch holds at least one record.
    #[error("batch size must be at least 1")]
    BatchSize,
    /// Guards `transform_into`: the output slice must have exactly the transformed record's length.
    #[error("output buffer holds {found} floats but the transformed record has {expected}")]
    OutputLength {
        /// Floats the transformed record needs.
        expected: usize,
        /// Floats the caller's buffer holds.
        found: usize,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
