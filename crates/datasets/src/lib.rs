//! Data for Caffe nets without Caffe: MNIST's IDX files, Caffe LMDBs of `caffe.Datum` records (read and write),
//! batches in Caffe's order, and Caffe's `transform_param`.
//!
//! * [`IdxImages`], [`IdxLabels`], [`IdxDataset`]: IDX files, gzipped or not, validated against their headers.
//! * [`LmdbDataset`]: a Caffe LMDB (what a `Data` layer's `source` names), records in key order, raw or encoded
//!   (PNG/JPEG, decoded by [`decode_image`] as OpenCV does, BGR, in a [`ColorMode`]);
//!   [`LmdbWriter`] and [`write_lmdb`] write one in `convert_mnist_data`'s layout.
//! * [`LeveldbDataset`]: the same records in a Caffe LevelDB (`backend: LEVELDB`), in key order.
//! * [`ImageDataset`]: an `ImageData` layer's list of `path label` lines, images decoded, resized as OpenCV's
//!   bilinear `cv::resize` ([`resize_linear`]) and shuffled as Caffe does ([`ImageOptions`]).
//! * [`Hdf5Data`]: an `HDF5Data` layer's list of `.h5` files, a dataset per top, batches of rows.
//! * [`Dataset`] / [`RecordReader`]: the common view, records in file order, wrapping after the last as
//!   Caffe's Data layer does; [`Batcher`] makes NCHW batches of them.
//! * [`Mt19937`]: the generator behind Caffe's `caffe::rng_t`, for draws seeded as Caffe seeds them.
//! * [`Transformer`]: Caffe's `DataTransformer` (scale, mean file or values, crop, mirror) for TRAIN and TEST.
//!
//! ```no_run
//! use caffe_proto::{Phase, TransformationParameter};
//! use datasets::{Batch, Batcher, Dataset, LmdbDataset, Transformer};
//!
//! # fn main() -> Result<(), datasets::Error> {
//! // The TEST data layer of Caffe's LeNet example: batch 100, scale 1/256.
//! let lmdb = LmdbDataset::open("examples/mnist/mnist_test_lmdb")?;
//! let param = TransformationParameter { scale: Some(0.00390625), ..Default::default() };
//! let transformer = Transformer::new(&param, Phase::Test, None)?;
//! let mut batcher = Batcher::new(lmdb.reader()?, 100, transformer)?;
//! let mut batch = Batch::default();
//! batcher.next_batch(&mut batch)?; // batch.shape == [100, 1, 28, 28]
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod dataset;
mod datum;
mod decode;
mod error;
mod hdf5;
mod idx;
mod image_data;
mod leveldb;
mod lmdb;
mod rng;
mod transform;

pub use dataset::{Batch, Batcher, Dataset, Record, RecordReader, RecordValues, Shape};
pub use datum::{write_lmdb, LmdbDataset, LmdbWriter, RawReader, RawRecord, CAFFE_COMMIT_EVERY};
pub use decode::{decode_image, ColorMode};
pub use error::{Error, Location};
pub use hdf5::Hdf5Data;
pub use idx::{labels_path_for, IdxDataset, IdxImages, IdxLabels};
pub use image_data::{resize_linear, ImageDataset, ImageOptions};
pub use leveldb::LeveldbDataset;
pub use lmdb::LockState;
pub use rng::Mt19937;
pub use transform::Transformer;
