//! MNIST's IDX files (LeCun's format): a big-endian magic number `0x0000TTDD` (element type TT, DD dimensions),
//! DD big-endian u32 sizes, then the elements in row-major order. Gzipped files are recognised by their magic.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dataset::{Dataset, Record, RecordReader, RecordValues, Shape};
use crate::Error;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Deflate's largest expansion (a 258-byte match in about 2 bits): inflated size <= 1032 x compressed size, so
/// reserving up to that is justified by the input.
const DEFLATE_MAX_RATIO: usize = 1032;

/// The two kinds of IDX file MNIST uses.
#[derive(Clone, Copy)]
struct Kind {
    magic: u32,
    dims: usize,
    name: &'static str,
}

const IMAGES: Kind = Kind {
    magic: 0x0000_0803,
    dims: 3,
    name: "IDX images: unsigned bytes, 3 dimensions",
};
const LABELS: Kind = Kind {
    magic: 0x0000_0801,
    dims: 1,
    name: "IDX labels: unsigned bytes, 1 dimension",
};

impl Kind {
    fn header_len(self) -> usize {
        4 + 4 * self.dims
    }
}

/// What a magic number denotes, for messages.
fn describe_magic(magic: u32) -> String {
    if magic >> 16 != 0 {
        return "not an IDX file: its first two bytes are not zero".into();
    }
    let element = match (magic >> 8) & 0xff {
        0x08 => "unsigned bytes",
        0x09 => "signed bytes",
        0x0b => "16-bit integers",
        0x0c => "32-bit integers",
        0x0d => "32-bit floats",
        0x0e => "64-bit floats",
        _ => "an unknown element type",
    };
    let dims = magic & 0xff;
    format!("IDX {element}, {dims} dimension{}", if dims == 1 { "" } else { "s" })
}

/// A whole IDX file in memory (decompressed), validated: `bytes[header..]` holds exactly the product of `dims`.
struct IdxFile {
    path: PathBuf,
    bytes: Vec<u8>,
    header: usize,
    dims: Vec<usize>,
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the magic number (as soon as 4 bytes are there: a wrong magic says more than a short file) and that
/// the whole header is present.
fn check_header(path: &Path, bytes: &[u8], kind: Kind) -> Result<(), Error> {
    if bytes.len() >= 4 {
        let magic = be_u32(bytes, 0);
        if magic != kind.magic {
            return Err(Error::IdxMagic {
                path: path.to_path_buf(),
                found: magic,
                found_kind: describe_magic(magic),
                expected: kind.magic,
                expected_kind: kind.name,
            });
        }
    }
    if bytes.len() < kind.header_len() {
        return Err(Error::IdxHeader {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            needed: kind.header_len() as u64,
        });
    }
    Ok(())
}

/// The dimensions of a checked header and the data length they call for (which, with the header, fits `usize`).
fn parse_dims(path: &Path, header: &[u8], kind: Kind) -> Result<(Vec<u32>, u64), Error> {
    let dims: Vec<u32> = (0..kind.dims).map(|i| be_u32(header, 4 + 4 * i)).collect();
    let data = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .filter(|&n| usize::try_from(n).is_ok_and(|n| n.checked_add(kind.header_len()).is_some()))
        .ok_or_else(|| Error::IdxTooLarge {
            path: path.to_path_buf(),
            dims: dims.clone(),
        })?;
    Ok((dims, data))
}

/// `bytes` were read from `path`; inflates them if gzipped, then validates them as `kind`.
fn load(path: PathBuf, bytes: Vec<u8>, kind: Kind) -> Result<IdxFile, Error> {
    let header_len = kind.header_len();
    let (bytes, dims, data_len, actual, at_least) = if bytes.starts_with(&GZIP_MAGIC) {
        let mut decoder = flate2::read::MultiGzDecoder::new(&bytes[..]);
        let mut out = Vec::new();
        let inflate_error = |out: &Vec<u8>, source| Error::Gzip {
            path: path.clone(),
            decompressed: out.len() as u64,
            source,
        };
        // The header first, so the rest can be bounded by what it announces.
        (&mut decoder)
            .take(header_len as u64)
            .read_to_end(&mut out)
            .map_err(|e| inflate_error(&out, e))?;
        check_header(&path, &out, kind)?;
        let (dims, data_len) = parse_dims(&path, &out, kind)?;
        // At most the announced length plus one byte (to detect trailing data), and never more than the
        // compressed input can inflate to.
        let reserve = (data_len as usize).min(bytes.len().saturating_mul(DEFLATE_MAX_RATIO));
        out.try_reserve_exact(reserve)
            .map_err(|e| inflate_error(&out, std::io::Error::other(e)))?;
        let limit = data_len + 1;
        (&mut decoder)
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|e| inflate_error(&out, e))?;
        let actual = (out.len() - header_len) as u64;
        (out, dims, data_len, actual, actual == limit)
    } else {
        check_header(&path, &bytes, kind)?;
        let (dims, data_len) = parse_dims(&path, &bytes, kind)?;
        let actual = (bytes.len() - header_len) as u64;
        (bytes, dims, data_len, actual, false)
    };
    if actual != data_len {
        return Err(Error::IdxLength {
            path,
            dims,
            header: header_len as u64,
            expected: data_len,
            actual,
            at_least,
        });
    }
    Ok(IdxFile {
        path,
        bytes,
        header: header_len,
        // Each fits usize: their product does (checked in parse_dims) and none is 0 unless the product is.
        dims: dims.iter().map(|&d| d as usize).collect(),
    })
}

/// An IDX images file (magic `0x00000803`): N images of rows x cols unsigned bytes, held in memory.
pub struct IdxImages {
    file: IdxFile,
}

impl IdxImages {
    /// The magic number of an IDX file of 3-dimensional unsigned bytes.
    pub const MAGIC: u32 = IMAGES.magic;

    /// Reads and validates `path`, inflating it first if it is gzipped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        Self::from_bytes(path, read_file(path)?)
    }

    /// Validates the content of a file (gzipped or not); `path` names it in errors.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, Error> {
        Ok(Self {
            file: load(path.into(), bytes, IMAGES)?,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.file.dims[0]
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows per image.
    pub fn rows(&self) -> usize {
        self.file.dims[1]
    }

    /// Columns per image.
    pub fn cols(&self) -> usize {
        self.file.dims[2]
    }

    /// All pixels, image after image, row-major.
    pub fn pixels(&self) -> &[u8] {
        &self.file.bytes[self.file.header..]
    }

    /// The pixels of image `index`, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let size = self.rows() * self.cols();
        let start = index.checked_mul(size)?;
        self.pixels().get(start..start.checked_add(size)?)
    }
}

/// An IDX labels file (magic `0x00000801`): N unsigned bytes, held in memory.
pub struct IdxLabels {
    file: IdxFile,
}

impl IdxLabels {
    /// The magic number of an IDX file of 1-dimensional unsigned bytes.
    pub const MAGIC: u32 = LABELS.magic;

    /// Reads and validates `path`, inflating it first if it is gzipped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        Self::from_bytes(path, read_file(path)?)
    }

    /// Validates the content of a file (gzipped or not); `path` names it in errors.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, Error> {
        Ok(Self {
            file: load(path.into(), bytes, LABELS)?,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.file.dims[0]
    }

    /// Whether there is no label.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All labels in file order.
    pub fn labels(&self) -> &[u8] {
        &self.file.bytes[self.file.header..]
    }
}

/// An images file and its labels file as one dataset of 1 x rows x cols byte records (convert_mnist_data's view).
#[derive(Clone)]
pub struct IdxDataset {
    images: Arc<IdxImages>,
    labels: Arc<IdxLabels>,
    shape: Option<Shape>,
}

/// The labels file that goes with an MNIST-style images file: the same name with `images-idx3` replaced by
/// `labels-idx1` (`t10k-images-idx3-ubyte.gz` -> `t10k-labels-idx1-ubyte.gz`), or `None` when the name has no
/// `images-idx3` to replace.
pub fn labels_path_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    name.contains("images-idx3")
        .then(|| images.with_file_name(name.replace("images-idx3", "labels-idx1")))
}

impl IdxDataset {
    /// Pairs images with labels; their counts must be equal (Caffe's convert_mnist_data CHECKs it).
    pub fn new(images: IdxImages, labels: IdxLabels) -> Result<Self, Error> {
        if images.len() != labels.len() {
            return Err(Error::CountMismatch {
                images_path: images.path().to_path_buf(),
                images: images.len(),
                labels_path: labels.path().to_path_buf(),
                labels: labels.len(),
            });
        }
        // None only for 0-row or 0-column images, which can only be read from an empty file.
        let shape = Shape::new(1, images.rows(), images.cols());
        Ok(Self {
            images: Arc::new(images),
            labels: Arc::new(labels),
            shape,
        })
    }

    /// Reads both files (each gzipped or not) and pairs them.
    pub fn open(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Self, Error> {
        Self::new(IdxImages::open(images)?, IdxLabels::open(labels)?)
    }

    /// The images.
    pub fn images(&self) -> &IdxImages {
        &self.images
    }

    /// The labels.
    pub fn labels(&self) -> &IdxLabels {
        &self.labels
    }
}

impl Dataset for IdxDataset {
    fn source(&self) -> &Path {
        self.images.path()
    }

    fn len(&self) -> usize {
        match self.shape {
            Some(_) => self.images.len(),
            None => 0,
        }
    }

    fn reader(&self) -> Result<Box<dyn RecordReader + Send>, Error> {
        Ok(Box::new(IdxReader {
            dataset: self.clone(),
            position: 0,
        }))
    }
}

struct IdxReader {
    dataset: IdxDataset,
    position: usize,
}

impl RecordReader for IdxReader {
    fn position(&self) -> usize {
        self.position
    }

    fn next(&mut self) -> Result<Record<'_>, Error> {
        let dataset = &self.dataset;
        let (Some(shape), false) = (dataset.shape, dataset.images.is_empty()) else {
            return Err(Error::Empty {
                path: dataset.source().to_path_buf(),
            });
        };
        let position = self.position;
        self.position = (position + 1) % dataset.images.len();
        let pixels = dataset.images.image(position);
        let label = dataset.labels.labels()[position];
        // The file was validated to hold len x rows x cols bytes, so the image exists and fills the shape.
        pixels
            .and_then(|p| {
                Record::new(
                    dataset.source(),
                    position,
                    None,
                    shape,
                    i32::from(label),
                    RecordValues::Bytes(p),
                )
            })
            .ok_or_else(|| Error::Empty {
                path: dataset.source().to_path_buf(),
            })
    }
}
