//! Caffe's `convert_mnist_data` (LMDB backend) without Caffe: MNIST-format IDX images and labels, gzipped or not,
//! to a new LMDB of `caffe.Datum` records that Caffe's Data layer reads.
//!
//! ```sh
//! cargo run --release -p datasets --example convert_mnist_data -- \
//!     t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz mnist_test_lmdb
//! ```

use std::process::ExitCode;

use datasets::{write_lmdb, Dataset, IdxDataset};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [images, labels, out] = args.as_slice() else {
        eprintln!("usage: convert_mnist_data IMAGES LABELS OUT_LMDB_FOLDER");
        return ExitCode::from(2);
    };
    let result = IdxDataset::open(images, labels).and_then(|dataset| {
        let count = write_lmdb(&dataset, out)?;
        let source = dataset.source().display().to_string();
        Ok((count, source))
    });
    match result {
        Ok((count, source)) => {
            println!("{out}: {count} records from {source}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
