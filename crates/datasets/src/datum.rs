//! Caffe LMDBs of `caffe.Datum` records: reading in key order (Caffe's `DataLayer`), raw or encoded (PNG/JPEG,
//! as `convert_imageset --encoded` writes them), and writing in `convert_mnist_data`'s layout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use caffe_proto::Datum;
use prost::Message;

use crate::dataset::{location, Dataset, Record, RecordReader, RecordValues, Shape};
use crate::decode::{decode_image, ColorMode};
use crate::lmdb::{Environment, LockState, Locking, ReadCursor};
use crate::Error;

/// A Caffe LMDB (the folder a `Data` layer's `source` names) read as a dataset of `Datum` records.
///
/// Raw Datums give their bytes or floats as stored; encoded ones (`encoded: true`, PNG or JPEG bytes in `data`)
/// are decoded as Caffe's `DataTransformer` decodes them, in the [`ColorMode`] set by [`LmdbDataset::with_color`]
/// (native by default; see [`crate::decode_image`] for how exactly that matches OpenCV). An encoded Datum's
/// channels, height and width fields are ignored, as in Caffe (convert_imageset leaves them unset).
///
/// Opened read-only as Caffe opens it (`MDB_RDONLY | MDB_NOTLS`). Opening the same folder again in this process
/// shares one LMDB handle, as LMDB requires.
pub struct LmdbDataset {
    path: PathBuf,
    env: Arc<Environment>,
    len: usize,
    color: ColorMode,
}

impl LmdbDataset {
    /// Opens `path` with readers registered in its `lock.mdb`, as Caffe does; when the lock file cannot be
    /// created or written (a read-only folder or mount) or belongs to another LMDB version, opens it with
    /// `MDB_NOLOCK` instead (see [`LmdbDataset::is_locked`]).
    ///
    /// The vendored LMDB (`mdb.master`) writes lock format 2 where liblmdb 0.9 writes format 1: while this
    /// process holds the lock, Caffe or py-lmdb cannot open the same folder (`MDB_VERSION_MISMATCH`); the
    /// other way round this crate falls back to `MDB_NOLOCK`. To read side by side with a Caffe that starts
    /// later, use [`LmdbDataset::open_unlocked`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(path.as_ref(), Locking::Auto)
    }

    /// Opens `path` with `MDB_RDONLY | MDB_NOLOCK`: nothing is written, not even `lock.mdb`. Only for folders
    /// no process writes to while they are read (then locks protect nothing).
    pub fn open_unlocked(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(path.as_ref(), Locking::Off)
    }

    fn open_with(path: &Path, locking: Locking) -> Result<Self, Error> {
        let env = Environment::open_read(path, locking)?;
        let len = ReadCursor::new(env.clone())?.entries()?;
        Ok(Self {
            path: path.to_path_buf(),
            env,
            len,
            color: ColorMode::Native,
        })
    }

    /// The same dataset decoding encoded Datums in `color` mode (from `transform_param`:
    /// [`ColorMode::from_transform`]). Raw Datums are not affected.
    pub fn with_color(mut self, color: ColorMode) -> Self {
        self.color = color;
        self
    }

    /// Whether readers are registered in `lock.mdb` (false when opened with `MDB_NOLOCK`).
    pub fn is_locked(&self) -> bool {
        self.lock_state() == LockState::Registered
    }

    /// How readers are guarded, and why without locks when they are not. A folder opened twice in this process
    /// shares one handle, so this is the first open's state.
    pub fn lock_state(&self) -> LockState {
        self.env.lock_state()
    }

    /// The raw key/value pairs in key order, once through, for checks and copies.
    pub fn raw_reader(&self) -> Result<RawReader, Error> {
        Ok(RawReader {
            cursor: ReadCursor::new(self.env.clone())?,
            done: false,
        })
    }
}

impl Dataset for LmdbDataset {
    fn source(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> usize {
        self.len
    }

    fn reader(&self) -> Result<Box<dyn RecordReader + Send>, Error> {
        let cursor = ReadCursor::new(self.env.clone())?;
        Ok(Box::new(DatumReader {
            path: self.path.clone(),
            len: cursor.entries()?,
            cursor,
            position: 0,
            datum: Datum::default(),
            color: self.color,
            pixels: Vec::new(),
        }))
    }
}

/// One key and its value, borrowed from the LMDB's memory map until the reader moves on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value (for Caffe, a serialized `Datum`).
    pub value: &'a [u8],
}

/// Key/value pairs of an LMDB in key order, once through (no wrapping).
pub struct RawReader {
    cursor: ReadCursor,
    done: bool,
}

impl RawReader {
    /// The next pair, borrowed until the next call; `None` after the last.
    #[allow(clippy::should_implement_trait)] // a lending iterator: the pair borrows the reader
    pub fn next(&mut self) -> Result<Option<RawRecord<'_>>, Error> {
        if self.done {
            return Ok(None);
        }
        let entry = self.cursor.next()?;
        self.done = entry.is_none();
        Ok(entry.map(|(key, value, _)| RawRecord { key, value }))
    }
}

/// Datum records in key order, wrapping to the first after the last (Caffe's `DataLayer::Next`).
struct DatumReader {
    path: PathBuf,
    cursor: ReadCursor,
    /// Records in the cursor's snapshot (fixed for the life of its transaction).
    len: usize,
    /// Position of the next record, in `0..len`.
    position: usize,
    /// Decoded into again and again, so reading allocates nothing once its buffers have grown.
    datum: Datum,
    /// How encoded images are decoded.
    color: ColorMode,
    /// The pixels of the last encoded Datum, CHW.
    pixels: Vec<u8>,
}

impl RecordReader for DatumReader {
    fn position(&self) -> usize {
        self.position
    }

    fn next(&mut self) -> Result<Record<'_>, Error> {
        let Some((key, value, is_first)) = self.cursor.next_wrapping()? else {
            return Err(Error::Empty {
                path: self.path.clone(),
            });
        };
        // The start, or past the last record: Caffe's "Restarting data prefetching from start."
        let position = if is_first { 0 } else { self.position };
        self.position = (position + 1) % self.len.max(1);
        read_datum(
            &self.path,
            position,
            key,
            value,
            &mut self.datum,
            self.color,
            &mut self.pixels,
        )
    }
}

/// The record a serialized Datum `value` holds: decoded into `datum`, its image (if encoded) into `pixels`.
pub(crate) fn read_datum<'a>(
    path: &'a Path,
    position: usize,
    key: &'a [u8],
    value: &[u8],
    datum: &'a mut Datum,
    color: ColorMode,
    pixels: &'a mut Vec<u8>,
) -> Result<Record<'a>, Error> {
    datum.clear();
    if let Err(source) = datum.merge(value) {
        return Err(Error::DatumDecode {
            at: location(path, position, Some(key)),
            len: value.len(),
            source,
        });
    }
    if datum.encoded.unwrap_or(false) {
        let bytes = datum.data.as_deref().unwrap_or_default();
        let shape = decode_image(bytes, color, pixels).map_err(|message| Error::ImageDecode {
            at: location(path, position, Some(key)),
            message,
        })?;
        let label = datum.label.unwrap_or(0);
        return Record::new(path, position, Some(key), shape, label, RecordValues::Bytes(pixels)).ok_or_else(|| {
            Error::ImageDecode {
                at: location(path, position, Some(key)),
                message: "decoded pixels do not fill the image".into(),
            }
        });
    }
    datum_record(path, position, key, datum)
}

/// The record a decoded Datum describes, checked as Caffe's transformer would need it.
fn datum_record<'a>(path: &'a Path, position: usize, key: &'a [u8], datum: &'a Datum) -> Result<Record<'a>, Error> {
    let invalid = |message: String| Error::DatumInvalid {
        at: location(path, position, Some(key)),
        message,
    };
    let (c, h, w) = (
        datum.channels.unwrap_or(0),
        datum.height.unwrap_or(0),
        datum.width.unwrap_or(0),
    );
    let dims = [c, h, w].map(|d| usize::try_from(d).unwrap_or(0));
    let shape = Shape::new(dims[0], dims[1], dims[2]).ok_or_else(|| {
        invalid(format!(
            "channels {c}, height {h}, width {w}: every dimension must be at least 1"
        ))
    })?;
    // Caffe reads `data` when it is non-empty, `float_data` otherwise.
    let values = match datum.data.as_deref() {
        Some(bytes) if !bytes.is_empty() => RecordValues::Bytes(bytes),
        _ => RecordValues::Floats(&datum.float_data),
    };
    if values.len() != shape.count() {
        let what = match values {
            RecordValues::Bytes(_) => "bytes of data",
            RecordValues::Floats(_) if values.is_empty() => "values: neither data nor float_data is set",
            RecordValues::Floats(_) => "values in float_data",
        };
        return Err(invalid(format!(
            "channels x height x width = {shape} = {} but the Datum holds {} {what}",
            shape.count(),
            values.len()
        )));
    }
    // The length was just checked, so this is Some.
    Record::new(path, position, Some(key), shape, datum.label.unwrap_or(0), values)
        .ok_or_else(|| invalid("values do not fill the shape".into()))
}

/// Records per write transaction in Caffe's convert tools.
pub const CAFFE_COMMIT_EVERY: usize = 1000;
/// Initial map size of a new LMDB; doubled whenever a transaction does not fit (Caffe 1.0's `DoubleMapSize`).
const INITIAL_MAP_SIZE: usize = 1 << 30;
/// LMDB's largest key (`MDB_MAXKEYSIZE` without `MDB_DEVEL`).
const MAX_KEY_LEN: usize = 511;

/// Writes a new LMDB as Caffe's convert tools do: records buffered and committed every
/// [`CAFFE_COMMIT_EVERY`] puts, the rest on [`LmdbWriter::finish`].
///
/// Dropping the writer without `finish` abandons the uncommitted records (earlier commits stay).
pub struct LmdbWriter {
    path: PathBuf,
    env: Arc<Environment>,
    /// Keys and values of the uncommitted records, back to back; `pending` holds each record's
    /// (key start, key end = value start, value end) offsets into it.
    buffer: Vec<u8>,
    pending: Vec<(usize, usize, usize)>,
    puts: usize,
}

impl LmdbWriter {
    /// Creates the folder `path` (it must not exist, as with Caffe's `db::NEW`) and an empty LMDB in it.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        Ok(Self {
            path: path.to_path_buf(),
            env: Environment::create(path, INITIAL_MAP_SIZE)?,
            buffer: Vec::new(),
            pending: Vec::new(),
            puts: 0,
        })
    }

    /// Stores `value` under `key` (1 to 511 bytes; a repeated key replaces the earlier value, as in Caffe).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Error::Key {
                path: self.path.clone(),
                record: self.puts,
                len: key.len(),
            });
        }
        let key_start = self.buffer.len();
        self.buffer.extend_from_slice(key);
        let key_end = self.buffer.len();
        self.buffer.extend_from_slice(value);
        self.pending.push((key_start, key_end, self.buffer.len()));
        self.puts += 1;
        if self.pending.len() == CAFFE_COMMIT_EVERY {
            self.commit()?;
        }
        Ok(())
    }

    /// Serializes `datum` (fields in number order, as Caffe's C++ protobuf writes them) and stores it.
    pub fn put_datum(&mut self, key: &[u8], datum: &Datum) -> Result<(), Error> {
        let value = datum.encode_to_vec();
        self.put(key, &value)
    }

    /// Commits the remaining records, flushes the file to disk and returns how many puts there were.
    pub fn finish(mut self) -> Result<usize, Error> {
        if !self.pending.is_empty() {
            self.commit()?;
        }
        self.env.sync()?;
        Ok(self.puts)
    }

    fn commit(&mut self) -> Result<(), Error> {
        let buffer = &self.buffer;
        let items = self
            .pending
            .iter()
            .map(|&(start, key_end, end)| (&buffer[start..key_end], &buffer[key_end..end]));
        self.env.put_all(items)?;
        self.buffer.clear();
        self.pending.clear();
        Ok(())
    }
}

/// Writes every record of `dataset` (once, in file order) to a new LMDB at `path` in the layout of Caffe's
/// `convert_mnist_data`: key `'%08d' % index`, a `Datum` with channels, height, width, the raw bytes in `data`
/// (or the values in `float_data`) and the label, committed every 1000 records. Returns the record count.
pub fn write_lmdb(dataset: &dyn Dataset, path: impl AsRef<Path>) -> Result<usize, Error> {
    let path = path.as_ref();
    let count = dataset.len();
    if count > 100_000_000 {
        return Err(Error::TooManyRecords {
            path: path.to_path_buf(),
            count,
        });
    }
    let mut reader = dataset.reader()?;
    let mut writer = LmdbWriter::create(path)?;
    let mut datum = Datum::default();
    let mut value = Vec::new();
    for index in 0..count {
        let record = reader.next()?;
        let shape = record.shape();
        // The shape came from an int32 Datum or was checked against these bounds when read from IDX.
        let dim = |d: usize| {
            i32::try_from(d).map_err(|_| Error::DatumInvalid {
                at: record.location(),
                message: format!("shape {shape} does not fit a Datum's int32 fields"),
            })
        };
        datum.channels = Some(dim(shape.channels())?);
        datum.height = Some(dim(shape.height())?);
        datum.width = Some(dim(shape.width())?);
        datum.label = Some(record.label());
        datum.float_data.clear();
        match record.values() {
            RecordValues::Bytes(bytes) => {
                let data = datum.data.get_or_insert_with(Vec::new);
                data.clear();
                data.extend_from_slice(bytes);
            }
            RecordValues::Floats(floats) => {
                datum.data = None;
                datum.float_data.extend_from_slice(floats);
            }
        }
        value.clear();
        datum.encode_raw(&mut value);
        writer.put(format!("{index:08}").as_bytes(), &value)?;
    }
    writer.finish()
}
