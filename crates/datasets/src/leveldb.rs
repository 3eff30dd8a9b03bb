//! Caffe's LevelDB backend (`backend: LEVELDB`): `Datum` records in key order, read with `rusty-leveldb`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use caffe_proto::Datum;
use rusty_leveldb::{LdbIterator, Options, DB};

use crate::dataset::{Dataset, Record, RecordReader};
use crate::datum::read_datum;
use crate::decode::ColorMode;
use crate::Error;

/// A Caffe LevelDB (the folder a `Data` layer with `backend: LEVELDB` names) read as a dataset of `Datum`
/// records in key order (LevelDB's bytewise order, the order Caffe's `LevelDBCursor` walks), raw or encoded as
/// for [`crate::LmdbDataset`].
///
/// Every record is read into memory when the folder is opened (LevelDB allows one open handle per folder, and
/// readers must be `Send`), which suits the datasets Caffe keeps in LevelDB (MNIST, CIFAR-10) but not ones larger
/// than memory. Opening writes to the folder as Caffe's LevelDB does (its lock file; a log left by the writer is
/// compacted into a table), so the folder must be writable.
pub struct LeveldbDataset {
    path: PathBuf,
    records: Arc<Vec<(Vec<u8>, Vec<u8>)>>,
    color: ColorMode,
}

impl LeveldbDataset {
    /// Opens `path` (it must hold a LevelDB: a `CURRENT` file) and reads every record.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let fail = |reason: String| Error::NotLeveldb {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_dir() {
            return Err(fail("no such folder".into()));
        }
        if !path.join("CURRENT").is_file() {
            return Err(fail("no CURRENT file in the folder".into()));
        }
        let options = Options {
            create_if_missing: false,
            ..Options::default()
        };
        let one_line = |e: rusty_leveldb::Status| e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        let mut db = DB::open(path, options).map_err(|e| fail(one_line(e)))?;
        let mut records = Vec::new();
        {
            let mut iter = db.new_iter().map_err(|e| fail(one_line(e)))?;
            while let Some((key, value)) = iter.next() {
                records.push((key.to_vec(), value.to_vec()));
            }
        }
        db.close().map_err(|e| fail(one_line(e)))?;
        Ok(LeveldbDataset {
            path: path.to_path_buf(),
            records: Arc::new(records),
            color: ColorMode::Native,
        })
    }

    /// The same dataset decoding encoded Datums in `color` mode (see [`crate::LmdbDataset::with_color`]).
    pub fn with_color(mut self, color: ColorMode) -> Self {
        self.color = color;
        self
    }

    /// The keys and values, in key order.
    pub fn records(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.records
    }
}

impl Dataset for LeveldbDataset {
    fn source(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn reader(&self) -> Result<Box<dyn RecordReader + Send>, Error> {
        Ok(Box::new(LeveldbReader {
            path: self.path.clone(),
            records: self.records.clone(),
            position: 0,
            color: self.color,
            datum: Datum::default(),
            pixels: Vec::new(),
        }))
    }
}

struct LeveldbReader {
    path: PathBuf,
    records: Arc<Vec<(Vec<u8>, Vec<u8>)>>,
    position: usize,
    color: ColorMode,
    datum: Datum,
    pixels: Vec<u8>,
}

impl RecordReader for LeveldbReader {
    fn position(&self) -> usize {
        self.position
    }

    fn next(&mut self) -> Result<Record<'_>, Error> {
        if self.records.is_empty() {
            return Err(Error::Empty {
                path: self.path.clone(),
            });
        }
        let position = self.position;
        // Past the last record, back to the first (Caffe's DataLayer::Next).
        self.position = (position + 1) % self.records.len();
        let (key, value) = &self.records[position];
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
