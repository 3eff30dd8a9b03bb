//! Caffe's `HDF5Data` layer: a text file naming `.h5` files, each holding one dataset per top (named after the
//! top), rows along the first axis; batches of rows in order, or shuffled.

use std::path::{Path, PathBuf};

use hdf5_reader::{Datatype, Hdf5File};

use crate::rng::Mt19937;
use crate::Error;

/// One top's rows in the current file: the per-row shape and all values, row-major.
struct Blob {
    row_shape: Vec<usize>,
    values: Vec<f32>,
}

/// An `HDF5Data` layer's source (`hdf5_data_param`): the listed files read one at a time, each dataset named
/// after a top converted to `f32` (as Caffe's `H5LTread_dataset_float`), rows given out batch by batch in
/// Caffe's order (`HDF5DataLayer::Next`): through a file's rows, then the next file, back to the first after the
/// last.
///
/// With `shuffle`, the file order is shuffled at the start and at every wrap, and a file's rows each time it is
/// loaded and each time it is exhausted, by Caffe's shuffle algorithm on MT19937 seeded with the given seed
/// (Caffe uses `std::random_shuffle`, whose draws depend on the C library, so orders differ from a real run).
pub struct Hdf5Data {
    list: PathBuf,
    files: Vec<PathBuf>,
    tops: Vec<String>,
    shuffle: bool,
    rng: Mt19937,
    file_order: Vec<usize>,
    file: usize,
    blobs: Vec<Blob>,
    rows: usize,
    row_order: Vec<usize>,
    row: usize,
}

impl Hdf5Data {
    /// Reads the list `list` (whitespace-separated file names, as Caffe reads it; relative ones resolved against
    /// `relative_to`) and loads the first file's datasets named `tops`.
    pub fn open(list: &Path, tops: &[String], shuffle: bool, seed: u32, relative_to: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
        let files: Vec<PathBuf> = text.split_whitespace().map(|f| relative_to.join(f)).collect();
        if files.is_empty() {
            return Err(Error::Hdf5 {
                path: list.to_path_buf(),
                message: "the list names no file".into(),
            });
        }
        if tops.is_empty() {
            return Err(Error::Hdf5 {
                path: list.to_path_buf(),
                message: "the layer has no top to read".into(),
            });
        }
        let mut data = Hdf5Data {
            list: list.to_path_buf(),
            file_order: (0..files.len()).collect(),
            files,
            tops: tops.to_vec(),
            shuffle,
            rng: Mt19937::new(seed),
            file: 0,
            blobs: Vec::new(),
            rows: 0,
            row_order: Vec::new(),
            row: 0,
        };
        if shuffle {
            shuffle_in_place(&mut data.file_order, &mut data.rng);
        }
        data.load(data.file_order[0])?;
        Ok(data)
    }

    /// The list file.
    pub fn list(&self) -> &Path {
        &self.list
    }

    /// Rows in all listed files together (one pass over the data): each file is opened and its first top's
    /// dataset counted, so a missing file or dataset is reported here, naming the file.
    pub fn total_rows(&self) -> Result<usize, Error> {
        let mut total = 0usize;
        for path in &self.files {
            let fail = |message: String| Error::Hdf5 {
                path: path.clone(),
                message,
            };
            let file = Hdf5File::open(path).map_err(|e| fail(one_line(&e)))?;
            let top = &self.tops[0];
            let dataset = file
                .dataset(top)
                .map_err(|e| fail(format!("dataset '{top}': {}", one_line(&e))))?;
            let rows = dataset
                .shape()
                .first()
                .copied()
                .ok_or_else(|| fail(format!("dataset '{top}' is a scalar; it needs a first axis of rows")))?;
            let rows = usize::try_from(rows).map_err(|_| fail(format!("dataset '{top}' has {rows} rows")))?;
            total = total
                .checked_add(rows)
                .ok_or_else(|| fail("the files hold more rows than memory sizes can count".into()))?;
        }
        Ok(total)
    }

    /// Each top's shape in a batch of `batch` rows (the first file's per-row shape after the batch axis).
    pub fn top_shapes(&self, batch: usize) -> Vec<Vec<usize>> {
        self.blobs
            .iter()
            .map(|b| std::iter::once(batch).chain(b.row_shape.iter().copied()).collect())
            .collect()
    }

    /// Fills `out` (one vector per top, replaced) with the next `batch` rows.
    pub fn next_batch(&mut self, batch: usize, out: &mut Vec<Vec<f32>>) -> Result<(), Error> {
        out.resize_with(self.tops.len(), Vec::new);
        for o in out.iter_mut() {
            o.clear();
        }
        for _ in 0..batch {
            let row = self.row_order[self.row];
            for (o, blob) in out.iter_mut().zip(&self.blobs) {
                let dim = blob.values.len() / self.rows;
                o.extend_from_slice(&blob.values[row * dim..(row + 1) * dim]);
            }
            self.next()?;
        }
        Ok(())
    }

    /// Caffe's `HDF5DataLayer::Next`.
    fn next(&mut self) -> Result<(), Error> {
        self.row += 1;
        if self.row == self.rows {
            if self.files.len() > 1 {
                self.file += 1;
                if self.file == self.files.len() {
                    self.file = 0;
                    if self.shuffle {
                        shuffle_in_place(&mut self.file_order, &mut self.rng);
                    }
                }
                let first_shapes: Vec<Vec<usize>> = self.blobs.iter().map(|b| b.row_shape.clone()).collect();
                self.load(self.file_order[self.file])?;
                for (blob, (top, shape)) in self.blobs.iter().zip(self.tops.iter().zip(&first_shapes)) {
                    if &blob.row_shape != shape {
                        return Err(Error::Hdf5 {
                            path: self.files[self.file_order[self.file]].clone(),
                            message: format!(
                                "dataset '{top}' has rows of shape {:?} but the first file's have {shape:?}",
                                blob.row_shape
                            ),
                        });
                    }
                }
            }
            self.row = 0;
            if self.shuffle {
                shuffle_in_place(&mut self.row_order, &mut self.rng);
            }
        }
        Ok(())
    }

    /// Caffe's `LoadHDF5FileData`: every top's dataset, the same number of rows in each.
    fn load(&mut self, index: usize) -> Result<(), Error> {
        let path = self.files[index].clone();
        let fail = |message: String| Error::Hdf5 {
            path: path.clone(),
            message,
        };
        let file = Hdf5File::open(&path).map_err(|e| fail(one_line(&e)))?;
        let mut blobs = Vec::new();
        let mut rows = None;
        for top in &self.tops {
            let dataset = file
                .dataset(top)
                .map_err(|e| fail(format!("dataset '{top}': {}", one_line(&e))))?;
            let shape: Vec<usize> = dataset.shape().iter().map(|&d| d as usize).collect();
            let Some((&n, row_shape)) = shape.split_first() else {
                return Err(fail(format!(
                    "dataset '{top}' is a scalar; it needs a first axis of rows"
                )));
            };
            if n == 0 {
                return Err(fail(format!("dataset '{top}' has no row")));
            }
            match rows {
                None => rows = Some(n),
                Some(r) if r != n => {
                    return Err(fail(format!(
                        "dataset '{top}' has {n} rows but '{}' has {r}",
                        self.tops[0]
                    )))
                }
                Some(_) => {}
            }
            let read = |e: hdf5_reader::error::Error| fail(format!("dataset '{top}': {}", one_line(&e)));
            let values: Vec<f32> = match dataset.dtype() {
                Datatype::FloatingPoint { size: 4, .. } => {
                    dataset.read_array::<f32>().map_err(read)?.into_iter().collect()
                }
                Datatype::FloatingPoint { size: 8, .. } => dataset
                    .read_array::<f64>()
                    .map_err(read)?
                    .iter()
                    .map(|&v| v as f32)
                    .collect(),
                Datatype::FixedPoint { size, signed, .. } => match (size, signed) {
                    (1, false) => dataset
                        .read_array::<u8>()
                        .map_err(read)?
                        .iter()
                        .map(|&v| f32::from(v))
                        .collect(),
                    (1, true) => dataset
                        .read_array::<i8>()
                        .map_err(read)?
                        .iter()
                        .map(|&v| f32::from(v))
                        .collect(),
                    (2, false) => dataset
                        .read_array::<u16>()
                        .map_err(read)?
                        .iter()
                        .map(|&v| f32::from(v))
                        .collect(),
                    (2, true) => dataset
                        .read_array::<i16>()
                        .map_err(read)?
                        .iter()
                        .map(|&v| f32::from(v))
                        .collect(),
                    (4, false) => dataset
                        .read_array::<u32>()
                        .map_err(read)?
                        .iter()
                        .map(|&v| v as f32)
                        .collect(),
                    (4, true) => dataset
                        .read_array::<i32>()
                        .map_err(read)?
                        .iter()
                        .map(|&v| v as f32)
                        .collect(),
                    (8, false) => dataset
                        .read_array::<u64>()
                        .map_err(read)?
                        .iter()
                        .map(|&v| v as f32)
                        .collect(),
                    (8, true) => dataset
                        .read_array::<i64>()
                        .map_err(read)?
                        .iter()
                        .map(|&v| v as f32)
                        .collect(),
                    _ => return Err(fail(format!("dataset '{top}': {size}-byte integers are not supported"))),
                },
                other => return Err(fail(format!("dataset '{top}' is not numeric ({other:?})"))),
            };
            let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if count != Some(values.len()) {
                return Err(fail(format!(
                    "dataset '{top}' of shape {shape:?} gave {} values",
                    values.len()
                )));
            }
            blobs.push(Blob {
                row_shape: row_shape.to_vec(),
                values,
            });
        }
        let rows = rows.unwrap_or(0);
        self.blobs = blobs;
        self.rows = rows;
        self.row_order = (0..rows).collect();
        if self.shuffle {
            shuffle_in_place(&mut self.row_order, &mut self.rng);
        }
        Ok(())
    }
}

/// An error message on one line.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Caffe's `shuffle` (rng.hpp) on MT19937: see [`crate::ImageDataset`].
fn shuffle_in_place(order: &mut [usize], rng: &mut Mt19937) {
    for i in (1..order.len()).rev() {
        let bucket = (1u64 << 32) / (i as u64 + 1);
        let j = loop {
            let v = u64::from(rng.next_u32()) / bucket;
            if v <= i as u64 {
                break v as usize;
            }
        };
        order.swap(i, j);
    }
}
