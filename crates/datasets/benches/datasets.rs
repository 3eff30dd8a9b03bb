//! MNIST-sized reading, at the scale of one TEST pass of Caffe's LeNet example: 10,000 images of 28x28.
//!
//! The images are synthetic (deterministic pseudo-random strokes on a black border, so gzip compresses them
//! roughly as it does MNIST) and written once per bench to memory or a temporary LMDB; only reading is timed.
//! `memcpy` times copying the same 7.8 MB of pixels, the floor any reader is measured against.

use std::io::Write;

use caffe_proto::{Phase, TransformationParameter};
use datasets::{write_lmdb, Batch, Batcher, Dataset, IdxDataset, IdxImages, IdxLabels, LmdbDataset, Transformer};
use divan::Bencher;

fn main() {
    divan::main();
}

const COUNT: usize = 10_000;
const SIDE: usize = 28;

/// IDX images and labels files (uncompressed) of `COUNT` synthetic digits.
fn idx_files() -> (Vec<u8>, Vec<u8>) {
    let mut images = Vec::with_capacity(16 + COUNT * SIDE * SIDE);
    for v in [0x803u32, COUNT as u32, SIDE as u32, SIDE as u32] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..COUNT {
        for y in 0..SIDE {
            for x in 0..SIDE {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let inside = (4..24).contains(&y) && (6..22).contains(&x);
                // About a fifth of the inner pixels are ink, most of them saturated, as in MNIST.
                let pixel = match (inside, state % 10) {
                    (true, 0) => 255,
                    (true, 1) => (state >> 32) as u8,
                    _ => 0,
                };
                images.push(pixel);
            }
        }
    }
    let mut labels = Vec::with_capacity(8 + COUNT);
    for v in [0x801u32, COUNT as u32] {
        labels.extend_from_slice(&v.to_be_bytes());
    }
    labels.extend((0..COUNT).map(|i| (i % 10) as u8));
    (images, labels)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[divan::bench]
fn memcpy(bencher: Bencher) {
    let (images, _) = idx_files();
    let mut out = vec![0u8; images.len()];
    bencher.bench_local(|| out.copy_from_slice(divan::black_box(&images)));
}

#[divan::bench(args = ["raw", "gzip"])]
fn idx_images(bencher: Bencher, form: &str) {
    let (images, _) = idx_files();
    let bytes = if form == "gzip" { gzip(&images) } else { images };
    bencher
        .with_inputs(|| bytes.clone())
        .bench_local_values(|bytes| IdxImages::from_bytes("bench", bytes).unwrap());
}

/// A temporary LMDB of the synthetic images in convert_mnist_data's layout.
fn lmdb() -> (tempfile::TempDir, LmdbDataset) {
    let (images, labels) = idx_files();
    let dataset = IdxDataset::new(
        IdxImages::from_bytes("images", images).unwrap(),
        IdxLabels::from_bytes("labels", labels).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lmdb");
    write_lmdb(&dataset, &path).unwrap();
    let lmdb = LmdbDataset::open(&path).unwrap();
    (dir, lmdb)
}

/// Every record decoded from the LMDB once, pixels summed so nothing is optimised away.
#[divan::bench]
fn lmdb_records(bencher: Bencher) {
    let (_dir, lmdb) = lmdb();
    bencher.bench_local(|| {
        let mut reader = lmdb.reader().unwrap();
        let mut sum = 0u64;
        for _ in 0..COUNT {
            let record = reader.next().unwrap();
            if let datasets::RecordValues::Bytes(pixels) = record.values() {
                sum += pixels.iter().map(|&p| u64::from(p)).sum::<u64>();
            }
        }
        sum
    });
}

/// Every record of Caffe's own MNIST test LMDB (`golden/data/mnist_test_lmdb`, 10,000 Datums written by
/// `convert_mnist_data`) read in key order once, raw key and value only: the LMDB walk without Datum decoding.
#[divan::bench]
fn mnist_test_lmdb_raw(bencher: Bencher) {
    let Some(fixtures) = testkit::fixtures() else { return };
    let lmdb = LmdbDataset::open_unlocked(fixtures.join("golden/data/mnist_test_lmdb")).unwrap();
    bencher.bench_local(|| {
        let mut reader = lmdb.raw_reader().unwrap();
        let mut bytes = 0usize;
        while let Some(record) = reader.next().unwrap() {
            bytes += record.key.len() + divan::black_box(record.value).len();
        }
        bytes
    });
}

/// The same LMDB read as the data layer reads it: every record decoded into a Datum, pixels summed.
#[divan::bench]
fn mnist_test_lmdb_records(bencher: Bencher) {
    let Some(fixtures) = testkit::fixtures() else { return };
    let lmdb = LmdbDataset::open_unlocked(fixtures.join("golden/data/mnist_test_lmdb")).unwrap();
    bencher.bench_local(|| {
        let mut reader = lmdb.reader().unwrap();
        let mut sum = 0u64;
        for _ in 0..lmdb.len() {
            if let datasets::RecordValues::Bytes(pixels) = reader.next().unwrap().values() {
                sum += pixels.iter().map(|&p| u64::from(p)).sum::<u64>();
            }
        }
        sum
    });
}

/// LeNet's TEST data layer: 100 batches of 100, scale 1/256.
#[divan::bench]
fn lmdb_test_batches(bencher: Bencher) {
    let (_dir, lmdb) = lmdb();
    let param = TransformationParameter {
        scale: Some(0.00390625),
        ..Default::default()
    };
    let mut batch = Batch::default();
    bencher.bench_local(|| {
        let transformer = Transformer::new(&param, Phase::Test, None).unwrap();
        let mut batcher = Batcher::new(lmdb.reader().unwrap(), 100, transformer).unwrap();
        for _ in 0..COUNT / 100 {
            batcher.next_batch(&mut batch).unwrap();
        }
        batch.data[0]
    });
}

/// Writing the LMDB (10 transactions of 1000 records, each synced to disk as Caffe's tools do).
#[divan::bench(sample_count = 10)]
fn lmdb_write(bencher: Bencher) {
    let (images, labels) = idx_files();
    let dataset = IdxDataset::new(
        IdxImages::from_bytes("images", images).unwrap(),
        IdxLabels::from_bytes("labels", labels).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    bencher.bench_local(|| {
        n += 1;
        write_lmdb(&dataset, dir.path().join(format!("lmdb{n}"))).unwrap()
    });
}
