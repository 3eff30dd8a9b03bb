//! The common view of every source: records with a shape, a label and values, read in file order and wrapping
//! around as Caffe's Data layer does, and batches built from them.

use std::fmt;
use std::path::Path;

use crate::error::Location;
use crate::{Error, Transformer};

/// Channels x height x width of one record; every dimension is at least 1 and their product fits in `usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    channels: usize,
    height: usize,
    width: usize,
}

impl Shape {
    /// The shape, or `None` if a dimension is 0 or the product overflows `usize`.
    pub fn new(channels: usize, height: usize, width: usize) -> Option<Self> {
        if channels == 0 || height == 0 || width == 0 {
            return None;
        }
        channels.checked_mul(height)?.checked_mul(width)?;
        Some(Self {
            channels,
            height,
            width,
        })
    }

    /// C.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// H.
    pub fn height(&self) -> usize {
        self.height
    }

    /// W.
    pub fn width(&self) -> usize {
        self.width
    }

    /// C x H x W (cannot overflow: checked at construction).
    pub fn count(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// A record's values as stored, channel-major (C, then H, then W).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RecordValues<'a> {
    /// Raw 8-bit pixels (IDX images, a Datum's `data`).
    Bytes(&'a [u8]),
    /// Floats (a Datum's `float_data`).
    Floats(&'a [f32]),
}

impl RecordValues<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            RecordValues::Bytes(v) => v.len(),
            RecordValues::Floats(v) => v.len(),
        }
    }

    /// Whether there are none (never true for a [`Record`]'s values).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `index` as Caffe's transformer reads it (a byte converted exactly to `f32`).
    pub fn get(&self, index: usize) -> Option<f32> {
        match self {
            RecordValues::Bytes(v) => v.get(index).map(|&b| f32::from(b)),
            RecordValues::Floats(v) => v.get(index).copied(),
        }
    }
}

/// One record, borrowed from its reader until the reader moves on.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    source: &'a Path,
    position: usize,
    key: Option<&'a [u8]>,
    shape: Shape,
    label: i32,
    values: RecordValues<'a>,
}

impl<'a> Record<'a> {
    /// A record whose values hold exactly `shape.count()` elements, or `None` if they do not.
    pub fn new(
        source: &'a Path,
        position: usize,
        key: Option<&'a [u8]>,
        shape: Shape,
        label: i32,
        values: RecordValues<'a>,
    ) -> Option<Self> {
        (values.len() == shape.count()).then_some(Self {
            source,
            position,
            key,
            shape,
            label,
            values,
        })
    }

    /// The file or folder the record comes from.
    pub fn source(&self) -> &'a Path {
        self.source
    }

    /// 0-based position in file order (LMDB: key order).
    pub fn position(&self) -> usize {
        self.position
    }

    /// The LMDB key (`None` for IDX files).
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// C x H x W.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The label (a Datum without one has Caffe's default, 0).
    pub fn label(&self) -> i32 {
        self.label
    }

    /// The values, `shape().count()` of them.
    pub fn values(&self) -> RecordValues<'a> {
        self.values
    }

    /// Where the record is, for messages.
    pub fn location(&self) -> Location {
        location(self.source, self.position, self.key)
    }
}

pub(crate) fn location(path: &Path, position: usize, key: Option<&[u8]>) -> Location {
    Location {
        path: path.to_path_buf(),
        position,
        key: key.map(|k| k.escape_ascii().to_string()),
    }
}

/// A source of records: an IDX pair ([`crate::IdxDataset`]) or a Caffe LMDB ([`crate::LmdbDataset`]).
pub trait Dataset {
    /// The file or folder, for messages (IDX: the images file).
    fn source(&self) -> &Path;

    /// Number of records (LMDB: in the snapshot seen when it was opened).
    fn len(&self) -> usize;

    /// Whether there is no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader at the first record. Readers own what they need, so one can outlive the dataset value.
    fn reader(&self) -> Result<Box<dyn RecordReader + Send>, Error>;
}

/// Records in file order, endlessly: after the last comes the first again (Caffe's `DataLayer::Next`).
pub trait RecordReader {
    /// Position of the record the next call to [`RecordReader::next`] returns.
    fn position(&self) -> usize;

    /// The record at the current position; the reader then moves to the next one, wrapping after the last.
    /// Fails on an empty source or a record that does not decode (naming it).
    fn next(&mut self) -> Result<Record<'_>, Error>;
}

/// One batch in Caffe's NCHW layout, reused from call to call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// N, C, H, W of `data` (after cropping).
    pub shape: [usize; 4],
    /// N x C x H x W transformed values.
    pub data: Vec<f32>,
    /// N labels, as Caffe's label top holds them (`f32` of the Datum's `int32`).
    pub labels: Vec<f32>,
    /// Position of the batch's first record in file order.
    pub first_position: usize,
}

/// Caffe's Data layer: fixed-size batches of transformed records, in file order from the first record, wrapping
/// to the first after the last (so a TEST pass of `iterations x batch_size` records covers what Caffe covers).
///
/// As in Caffe, each batch takes its shape from its first record (after the transform); every other record of
/// the batch must transform to the same shape. Multi-solver record skipping (`Skip()`) is not modelled.
pub struct Batcher {
    reader: Box<dyn RecordReader + Send>,
    transformer: Transformer,
    batch_size: usize,
}

impl Batcher {
    /// Batches of `batch_size` records from `reader`, each transformed by `transformer`.
    pub fn new(
        reader: Box<dyn RecordReader + Send>,
        batch_size: usize,
        transformer: Transformer,
    ) -> Result<Self, Error> {
        if batch_size == 0 {
            return Err(Error::BatchSize);
        }
        Ok(Self {
            reader,
            transformer,
            batch_size,
        })
    }

    /// Records per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Position of the record the next batch starts with.
    pub fn position(&self) -> usize {
        self.reader.position()
    }

    /// The transformer (its RNG state advances with every mirrored or randomly cropped record).
    pub fn transformer(&self) -> &Transformer {
        &self.transformer
    }

    /// Reads and drops the next `records` records (wrapping after the last, as batches do): Caffe's `rand_skip`.
    pub fn skip_records(&mut self, records: usize) -> Result<(), Error> {
        for _ in 0..records {
            self.reader.next()?;
        }
        Ok(())
    }

    /// Fills `batch` with the next `batch_size` records (Caffe's `DataLayer::load_batch`), reusing its buffers.
    pub fn next_batch(&mut self, batch: &mut Batch) -> Result<(), Error> {
        batch.first_position = self.reader.position();
        batch.labels.clear();
        let mut item_len = 0;
        let mut item_shape = None;
        for item in 0..self.batch_size {
            let record = self.reader.next()?;
            let out_shape = self.transformer.output_shape(&record)?;
            match item_shape {
                None => {
                    item_len = out_shape.count();
                    let total = item_len.checked_mul(self.batch_size).ok_or_else(|| Error::Transform {
                        at: record.location(),
                        message: format!(
                            "a batch of {} records of {out_shape} overflows memory sizes",
                            self.batch_size
                        ),
                    })?;
                    batch.data.resize(total, 0.0);
                    batch.shape = [
                        self.batch_size,
                        out_shape.channels(),
                        out_shape.height(),
                        out_shape.width(),
                    ];
                    item_shape = Some(out_shape);
                }
                Some(expected) if expected != out_shape => {
                    return Err(Error::BatchShape {
                        at: record.location(),
                        expected,
                        found: out_shape,
                    })
                }
                Some(_) => {}
            }
            let out = &mut batch.data[item * item_len..(item + 1) * item_len];
            self.transformer.transform_into(&record, out)?;
            // Caffe: top_label[item_id] = datum.label(), an int converted to Dtype.
            batch.labels.push(record.label() as f32);
        }
        Ok(())
    }
}
